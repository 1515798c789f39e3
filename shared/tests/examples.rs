//! Upstream manifest shapes deserialize strictly and round-trip unchanged.

use std::path::PathBuf;

use serde_json::{Value, json};
use shared::VMDistributed;
use shared::api::{BackendType, TrafficMode};
use shared::parse::strict;

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("example exists");
    serde_saphyr::from_str(&text).expect("example is YAML")
}

fn round_trip(value: &Value) -> VMDistributed {
    let cr: VMDistributed = strict(value).expect("strict decode");
    let back = serde_json::to_value(&cr).expect("encode");
    assert_eq!(&back, value, "round trip changed the object");
    cr
}

#[test]
fn every_example_round_trips() {
    for name in [
        "seed.yaml",
        "distributed-chart.yaml",
        "zone-template.yaml",
        "license.yaml",
        "ref.yaml",
    ] {
        round_trip(&example(name));
    }
}

#[test]
fn seed_example_has_two_zones_and_templates() {
    let cr = round_trip(&example("seed.yaml"));
    let names: Vec<&str> = cr.spec.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["zone-a", "zone-b"]);
    let common = cr.spec.zone_common.as_ref().expect("zoneCommon");
    assert_eq!(
        common
            .vmcluster
            .as_ref()
            .and_then(|c| c.spec.as_ref())
            .map(|s| &s["vminsert"]["replicaCount"]),
        Some(&json!(1))
    );
    assert!(
        cr.spec.backend_type.is_none(),
        "no default is added by decoding"
    );
}

#[test]
fn distributed_chart_shape_names_clusters_per_zone() {
    let cr = round_trip(&example("distributed-chart.yaml"));
    assert_eq!(
        cr.spec.vmauth.as_ref().and_then(|a| a.name.as_deref()),
        Some("vmauth-global")
    );
    let cluster = cr.spec.zones[1].vmcluster.as_ref().expect("vmcluster");
    assert_eq!(cluster.name.as_deref(), Some("vmcluster-zone-2"));
    assert!(cluster.spec.is_none());
}

#[test]
fn zone_templates_and_enums_decode() {
    let cr = round_trip(&example("zone-template.yaml"));
    let common = cr.spec.zone_common.as_ref().expect("zoneCommon");
    assert_eq!(
        common.vmcluster.as_ref().and_then(|c| c.name.as_deref()),
        Some("vm-%ZONE%")
    );
    assert_eq!(cr.spec.zones[2].traffic_mode, Some(TrafficMode::ReadOnly));
    assert_eq!(
        cr.spec.zones[1]
            .vmcluster
            .as_ref()
            .and_then(|c| c.spec.as_ref())
            .map(|s| &s["vminsert"]["nodeSelector"]),
        Some(&json!({"$patch": "delete"}))
    );
}

#[test]
fn license_key_ref_decodes() {
    let cr = round_trip(&example("license.yaml"));
    let license = cr.spec.license.as_ref().expect("license");
    let key_ref = license.key_ref.as_ref().expect("keyRef");
    assert_eq!(
        (key_ref.name.as_str(), key_ref.key.as_str()),
        ("vm-license", "license")
    );
    assert_eq!(license.reload_interval.as_deref(), Some("30s"));
}

#[test]
fn ref_decodes_into_reference() {
    let cr = round_trip(&example("ref.yaml"));
    let reference = cr.spec.zones[0]
        .vmcluster
        .as_ref()
        .and_then(|c| c.reference.as_ref())
        .expect("ref");
    assert_eq!(reference.name, "legacy-cluster");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let mut value = example("seed.yaml");
    value["spec"]["zoneCommonn"] = json!({});
    let err = strict::<VMDistributed>(&value).expect_err("unknown spec field");
    assert_eq!(err.path, "spec.zoneCommonn");
    assert!(err.message.contains("zoneCommonn"), "{err}");

    let mut value = example("seed.yaml");
    value["spec"]["zones"][1]["trafficMode"] = json!("read-mostly");
    let err = strict::<VMDistributed>(&value).expect_err("unknown enum value");
    assert_eq!(err.path, "spec.zones[1].trafficMode");

    let mut value = example("seed.yaml");
    value["spec"]["zones"][0]["vmcluster"] = json!({"nmae": "x"});
    let err = strict::<VMDistributed>(&value).expect_err("typo in zone child");
    assert_eq!(err.path, "spec.zones[0].vmcluster.nmae");
}

#[test]
fn backend_type_values_are_upstream_spelling() {
    let mut value = example("seed.yaml");
    value["spec"]["backendType"] = json!("VMSingle");
    let cr = round_trip(&value);
    assert_eq!(cr.spec.backend_type, Some(BackendType::VMSingle));
}
