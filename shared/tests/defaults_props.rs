//! Defaulting (docs/api.md "`spec`"): exactly the documented defaults are stored, user values are
//! never changed, and applying defaults twice changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use shared::VMDistributed;
use shared::api::{
    BackendType, ChildRef, CommonChild, TrafficMode, VMAuthSettings, VMDistributedSpec, Zone,
    ZoneChild, ZoneCommon, ZoneRemovalPolicy,
};
use shared::defaults::{Settings, apply_defaults};
use shared::parse::strict;

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("example")).expect("YAML")
}

#[test]
fn fills_exactly_the_documented_defaults() {
    let cr: VMDistributed = strict(&json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "x"},
        "spec": {"zones": [{"name": "a"}, {"name": "b", "trafficMode": "read-only"}]}
    }))
    .expect("decodes");
    let defaulted = serde_json::to_value(apply_defaults(&cr)).expect("encode");
    assert_eq!(
        defaulted["spec"],
        json!({
            "retain": false,
            "paused": false,
            "backendType": "VMCluster",
            "zoneRemovalPolicy": "Retain",
            "vmauth": {"enabled": true},
            "zoneCommon": {"readyTimeout": "5m", "updatePause": "1m"},
            "zones": [
                {"name": "a", "trafficMode": "read-write"},
                {"name": "b", "trafficMode": "read-only"}
            ]
        })
    );
    assert_eq!(defaulted["metadata"], json!({"name": "x"}));
}

#[test]
fn keeps_user_values_and_free_form_specs_of_examples() {
    let value = example("zone-template.yaml");
    let cr: VMDistributed = strict(&value).expect("decodes");
    let defaulted = serde_json::to_value(apply_defaults(&cr)).expect("encode");
    let common = &defaulted["spec"]["zoneCommon"];
    assert_eq!(common["readyTimeout"], json!("10m"));
    assert_eq!(common["updatePause"], json!("30s"));
    assert_eq!(
        common["vmcluster"],
        value["spec"]["zoneCommon"]["vmcluster"]
    );
    assert_eq!(
        defaulted["spec"]["zones"][1]["vmcluster"],
        value["spec"]["zones"][1]["vmcluster"]
    );
    assert_eq!(
        defaulted["spec"]["zones"][2]["trafficMode"],
        json!("read-only")
    );
    assert!(
        defaulted["spec"]["vmauth"].get("name").is_none(),
        "vmauth.name is resolved, not stored"
    );
    assert_eq!(Settings::of(&cr).ready_timeout, Duration::from_secs(600));
    assert_eq!(Settings::of(&cr).update_pause, Duration::from_secs(30));
}

#[test]
fn invalid_user_values_are_kept_for_validation_to_report() {
    let mut cr = VMDistributed::new("x", VMDistributedSpec::default());
    cr.spec.zone_common = Some(ZoneCommon {
        ready_timeout: Some("5 minutes".into()),
        ..ZoneCommon::default()
    });
    let defaulted = apply_defaults(&cr);
    let common = defaulted.spec.zone_common.expect("zoneCommon");
    assert_eq!(common.ready_timeout.as_deref(), Some("5 minutes"));
    assert_eq!(common.update_pause.as_deref(), Some("1m"));
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

fn child() -> impl Strategy<Value = ZoneChild> {
    (
        opt("[a-z]{1,6}"),
        opt("[a-z]{1,6}".prop_map(|n| ChildRef {
            name: n,
            namespace: None,
        })),
        opt(Just(json!({"replicaCount": 1}))),
    )
        .prop_map(|(name, reference, spec)| ZoneChild {
            name,
            reference,
            spec,
        })
}

fn zone() -> impl Strategy<Value = Zone> {
    (
        "[a-z]{1,6}",
        opt(prop_oneof![
            Just(TrafficMode::ReadWrite),
            Just(TrafficMode::ReadOnly),
            Just(TrafficMode::WriteOnly),
            Just(TrafficMode::Maintenance)
        ]),
        opt(child()),
        opt(child()),
        opt(Just(json!({"sendTimeout": "1m"}))),
    )
        .prop_map(
            |(name, traffic_mode, vmcluster, vmagent, remote_write)| Zone {
                name,
                traffic_mode,
                vmcluster,
                vmagent,
                remote_write,
                ..Zone::default()
            },
        )
}

fn spec() -> impl Strategy<Value = VMDistributedSpec> {
    (
        (opt(any::<bool>()), opt(any::<bool>())),
        opt(prop_oneof![
            Just(BackendType::VMCluster),
            Just(BackendType::VMSingle)
        ]),
        opt(prop_oneof![
            Just(ZoneRemovalPolicy::Retain),
            Just(ZoneRemovalPolicy::Delete)
        ]),
        opt(
            (opt(any::<bool>()), opt("[a-z]{1,6}")).prop_map(|(enabled, name)| VMAuthSettings {
                enabled,
                name,
                ..VMAuthSettings::default()
            }),
        ),
        opt((
            opt("[0-9]{1,2}[smh]"),
            opt("[0-9]{1,2}[smh]"),
            opt("[a-z%]{1,8}"),
        )
            .prop_map(|(ready_timeout, update_pause, name)| ZoneCommon {
                ready_timeout,
                update_pause,
                vmcluster: name.map(|n| CommonChild {
                    name: Some(n),
                    spec: None,
                }),
                ..ZoneCommon::default()
            })),
        prop::collection::vec(zone(), 0..4),
    )
        .prop_map(
            |((retain, paused), backend_type, zone_removal_policy, vmauth, zone_common, zones)| {
                VMDistributedSpec {
                    retain,
                    paused,
                    backend_type,
                    zone_removal_policy,
                    vmauth,
                    zone_common,
                    zones,
                    ..VMDistributedSpec::default()
                }
            },
        )
}

/// Every leaf of `user` is present with the same value in `defaulted`.
fn contains(defaulted: &Value, user: &Value) -> bool {
    match (defaulted, user) {
        (Value::Object(d), Value::Object(u)) => u
            .iter()
            .all(|(k, v)| d.get(k).is_some_and(|dv| contains(dv, v))),
        (Value::Array(d), Value::Array(u)) => {
            d.len() == u.len() && d.iter().zip(u).all(|(a, b)| contains(a, b))
        }
        (d, u) => d == u,
    }
}

proptest! {
    #[test]
    fn idempotent_and_never_changes_user_values(spec in spec()) {
        let cr = VMDistributed::new("x", spec);
        let once = apply_defaults(&cr);
        let twice = apply_defaults(&once);
        prop_assert_eq!(&once.spec, &twice.spec);
        prop_assert_eq!(&once.metadata, &cr.metadata);

        let user = serde_json::to_value(&cr.spec).expect("encode");
        let defaulted = serde_json::to_value(&once.spec).expect("encode");
        prop_assert!(contains(&defaulted, &user), "{defaulted} does not contain {user}");

        // Every stored default is present, and nothing else was added.
        prop_assert!(once.spec.retain.is_some() && once.spec.paused.is_some());
        prop_assert!(once.spec.backend_type.is_some() && once.spec.zone_removal_policy.is_some());
        let auth = once.spec.vmauth.as_ref().expect("vmauth");
        prop_assert!(auth.enabled.is_some());
        prop_assert_eq!(&auth.name, &cr.spec.vmauth.as_ref().and_then(|a| a.name.clone()));
        let common = once.spec.zone_common.as_ref().expect("zoneCommon");
        prop_assert!(common.ready_timeout.is_some() && common.update_pause.is_some());
        prop_assert_eq!(
            &common.vmcluster,
            &cr.spec.zone_common.as_ref().and_then(|c| c.vmcluster.clone())
        );
        for (before, after) in cr.spec.zones.iter().zip(&once.spec.zones) {
            prop_assert!(after.traffic_mode.is_some());
            prop_assert_eq!(&before.vmcluster, &after.vmcluster);
            prop_assert_eq!(&before.vmagent, &after.vmagent);
            prop_assert_eq!(&before.remote_write, &after.remote_write);
        }
    }
}
