//! Version pinning in the rendered intents (docs/rollout.md "Pinned versions"): where the spec
//! leaves a child's version to the VictoriaMetrics operator's default, the intent carries the
//! version the controller pins, so an operator upgrade with a new default changes no zone, and a
//! new pinned version is an ordinary change of every zone's intent, rolled one zone at a time.

use serde_json::{Value, json};
use shared::VMDistributed;
use shared::model::{Intents, Observed};
use shared::rollout::render_intents;
use shared::versions::PinnedVersions;

fn cr(spec: Value) -> VMDistributed {
    serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid"},
        "spec": spec
    }))
    .expect("valid CR")
}

fn cluster_spec() -> Value {
    json!({"vminsert": {"replicaCount": 1}, "vmselect": {"replicaCount": 1},
           "vmstorage": {"replicaCount": 1}})
}

fn with_pins(cr: &VMDistributed, pins: PinnedVersions) -> Intents {
    render_intents(
        cr,
        &Observed {
            pinned_versions: pins,
            ..Observed::default()
        },
    )
}

fn pins(cluster: &str, agent: &str, single: &str) -> PinnedVersions {
    PinnedVersions {
        vmcluster: Some(cluster.to_owned()),
        vmagent: Some(agent.to_owned()),
        vmsingle: Some(single.to_owned()),
    }
}

#[test]
fn unset_versions_are_pinned() {
    let cluster = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": cluster_spec()}},
        "zones": [{"name": "a"}, {"name": "b"}]
    }));
    let intents = with_pins(&cluster, PinnedVersions::operator_defaults());
    for zone in &intents.zones {
        assert_eq!(zone.backend.spec["clusterVersion"], "v1.148.0-cluster");
        assert_eq!(zone.agent.spec["image"]["tag"], "v1.148.0");
        // Nothing else is added: the components follow clusterVersion.
        assert_eq!(zone.backend.spec["vminsert"], json!({"replicaCount": 1}));
    }
    let single = cr(json!({
        "backendType": "VMSingle",
        "zoneCommon": {"vmsingle": {"spec": {"retentionPeriod": "1"}},
                       "vmagent": {"spec": {"image": {"repository": "mirror/vmagent"}}}},
        "zones": [{"name": "a"}]
    }));
    let intents = with_pins(&single, pins("x-cluster", "v1.2.3", "v1.2.4"));
    assert_eq!(
        intents.zones[0].backend.spec["image"],
        json!({"tag": "v1.2.4"})
    );
    // A repository of the user's own keeps it; only the tag is added.
    assert_eq!(
        intents.zones[0].agent.spec["image"],
        json!({"repository": "mirror/vmagent", "tag": "v1.2.3"})
    );
    // Without pins (the default of `Observed`), nothing is added.
    let unpinned = render_intents(&cluster, &Observed::default());
    assert_eq!(unpinned.zones[0].backend.spec.get("clusterVersion"), None);
    assert_eq!(unpinned.zones[0].agent.spec.get("image"), None);
}

#[test]
fn versions_the_user_decides_are_never_pinned() {
    let defaults = PinnedVersions::operator_defaults();
    let backend = |vmcluster: Value, zone: Value| {
        let mut zone_entry = json!({"name": "a"});
        zone_entry["vmcluster"] = json!({"spec": zone});
        let cr =
            cr(json!({"zoneCommon": {"vmcluster": {"spec": vmcluster}}, "zones": [zone_entry]}));
        with_pins(&cr, defaults.clone()).zones[0]
            .backend
            .spec
            .clone()
    };
    // clusterVersion set (in common or in the zone): kept.
    let mut spec = cluster_spec();
    spec["clusterVersion"] = json!("v1.120.0-cluster");
    assert_eq!(
        backend(spec, json!({}))["clusterVersion"],
        "v1.120.0-cluster"
    );
    let zone_set = backend(
        cluster_spec(),
        json!({"clusterVersion": "v1.121.0-cluster"}),
    );
    assert_eq!(zone_set["clusterVersion"], "v1.121.0-cluster");
    // Every component tagged: clusterVersion would change nothing, so it is not added.
    let tagged = json!({
        "vminsert": {"image": {"tag": "v1.1.0-cluster"}},
        "vmselect": {"componentVersion": "v1.1.0-cluster"},
        "vmstorage": {"image": {"tag": "v1.1.0-cluster"}}
    });
    assert_eq!(backend(tagged, json!({})).get("clusterVersion"), None);
    // One component left to the default: clusterVersion pins it (the tagged ones keep theirs).
    let partly = json!({
        "vminsert": {"image": {"tag": "v1.1.0-cluster"}},
        "vmselect": {},
        "vmstorage": {"image": {"tag": "v1.1.0-cluster"}}
    });
    let partly = backend(partly, json!({}));
    assert_eq!(partly["clusterVersion"], "v1.148.0-cluster");
    assert_eq!(partly["vminsert"]["image"]["tag"], "v1.1.0-cluster");
    // An agent with its own tag or componentVersion keeps it.
    for agent in [
        json!({"image": {"tag": "v1.100.0"}}),
        json!({"componentVersion": "v1.100.0"}),
    ] {
        let cr = cr(json!({
            "zoneCommon": {"vmcluster": {"spec": cluster_spec()}, "vmagent": {"spec": agent}},
            "zones": [{"name": "a"}]
        }));
        let spec = with_pins(&cr, defaults.clone()).zones[0].agent.spec.clone();
        assert_eq!(spec.get("image"), agent.get("image"), "{agent}");
    }
}

#[test]
fn refs_and_adoptions_by_name_are_not_pinned() {
    let cr = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": {"retentionPeriod": "1"}}},
        "zones": [
            {"name": "a", "vmcluster": {"ref": {"name": "theirs"}}, "vmagent": {"ref": {"name": "their-agent"}}},
            {"name": "b"}
        ]
    }));
    let intents = with_pins(&cr, PinnedVersions::operator_defaults());
    // A ref is written only with what the user wrote: its owner decides its version.
    assert_eq!(intents.zones[0].backend.spec.get("clusterVersion"), None);
    assert_eq!(intents.zones[0].agent.spec.get("image"), None);
    // A cluster adopted by name (no component in the spec) has no component to pin; its agent,
    // created by this object, is pinned.
    assert_eq!(intents.zones[1].backend.spec.get("clusterVersion"), None);
    assert_eq!(intents.zones[1].agent.spec["image"]["tag"], "v1.148.0");
}

#[test]
fn a_licensed_child_runs_the_enterprise_build_as_the_operator_would() {
    let cr = cr(json!({
        "license": {"keyRef": {"name": "vm-license", "key": "key"}},
        "zoneCommon": {"vmcluster": {"spec": cluster_spec()}},
        "zones": [{"name": "a"}]
    }));
    let intents = with_pins(&cr, PinnedVersions::operator_defaults());
    // The operator appends -enterprise to a clusterVersion-derived tag itself ...
    assert_eq!(
        intents.zones[0].backend.spec["clusterVersion"],
        "v1.148.0-cluster"
    );
    // ... but never to an explicit image.tag, so the pin carries it.
    assert_eq!(
        intents.zones[0].agent.spec["image"]["tag"],
        "v1.148.0-enterprise"
    );
}

#[test]
fn a_new_pinned_version_changes_every_zones_intent() {
    let cr = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": cluster_spec()}},
        "zones": [{"name": "a"}, {"name": "b"}]
    }));
    let before = with_pins(&cr, pins("v1.110.0-cluster", "v1.110.0", "v1.110.0"));
    let after = with_pins(&cr, pins("v1.111.0-cluster", "v1.111.0", "v1.111.0"));
    for (old, new) in before.zones.iter().zip(&after.zones) {
        assert_ne!(old.backend.spec_hash, new.backend.spec_hash);
        assert_ne!(old.agent.spec_hash, new.agent.spec_hash);
    }
    // The VMAuth is not pinned: it is one object, shared by every zone.
    assert_eq!(before.vmauth, after.vmauth);
}

#[test]
fn what_an_object_gets_pinned_is_named_per_kind() {
    let cr = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": cluster_spec()},
                       "vmagent": {"spec": {"image": {"tag": "v1.100.0"}}}},
        "zones": [{"name": "a"}, {"name": "b", "vmcluster": {"spec": {"clusterVersion": "v1.1.0-cluster"}}}]
    }));
    let defaults = PinnedVersions::operator_defaults();
    // Zone a's cluster is pinned; every agent has a tag; VMSingle is not this object's kind.
    assert_eq!(
        shared::versions::pinned_for(&cr, &defaults),
        PinnedVersions {
            vmcluster: Some("v1.148.0-cluster".to_owned()),
            ..PinnedVersions::default()
        }
    );
    assert_eq!(
        shared::versions::pinned_for(&cr, &PinnedVersions::default()),
        PinnedVersions::default()
    );
}
