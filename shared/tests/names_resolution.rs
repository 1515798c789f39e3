//! Name resolution and merged zone specs (docs/api.md "Name resolution") on the examples and on the
//! precedence rules.

use std::path::PathBuf;

use serde_json::{Value, json};
use shared::VMDistributed;
use shared::names::{ChildKind, NameSource, child_name, resolve_child_name, vmauth_name};
use shared::parse::strict;
use shared::spec::{adopts_backend_by_name, zone_child_spec, zone_remote_write};

fn example(name: &str) -> VMDistributed {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let value: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("example")).expect("YAML");
    strict(&value).expect("decodes")
}

fn names(cr: &VMDistributed, kind: ChildKind) -> Vec<String> {
    cr.spec
        .zones
        .iter()
        .map(|z| child_name(cr, z, kind))
        .collect()
}

#[test]
fn names_of_the_examples() {
    let seed = example("seed.yaml");
    assert_eq!(
        names(&seed, ChildKind::VMCluster),
        ["demo-zone-a", "demo-zone-b"]
    );
    assert_eq!(
        names(&seed, ChildKind::VMAgent),
        ["demo-zone-a", "demo-zone-b"]
    );
    assert_eq!(vmauth_name(&seed), "demo");

    let chart = example("distributed-chart.yaml");
    assert_eq!(
        names(&chart, ChildKind::VMCluster),
        ["vmcluster-zone-1", "vmcluster-zone-2"]
    );
    assert_eq!(
        names(&chart, ChildKind::VMAgent),
        ["vm-distributed-zone-1", "vm-distributed-zone-2"]
    );
    assert_eq!(vmauth_name(&chart), "vmauth-global");
    assert!(
        chart
            .spec
            .zones
            .iter()
            .all(|z| adopts_backend_by_name(&chart, z))
    );

    let templated = example("zone-template.yaml");
    assert_eq!(
        names(&templated, ChildKind::VMCluster),
        ["vm-us-east-1a", "vm-us-east-1b", "vm-us-east-1c"]
    );
    assert_eq!(
        names(&templated, ChildKind::VMAgent),
        [
            "vmagent-us-east-1a",
            "vmagent-us-east-1b",
            "vmagent-us-east-1c"
        ]
    );
    assert!(
        !templated
            .spec
            .zones
            .iter()
            .any(|z| adopts_backend_by_name(&templated, z))
    );

    let with_ref = example("ref.yaml");
    let zone_a = &with_ref.spec.zones[0];
    assert_eq!(
        resolve_child_name(&with_ref, zone_a, ChildKind::VMCluster),
        ("legacy-cluster".to_owned(), NameSource::Ref)
    );
    assert!(
        !adopts_backend_by_name(&with_ref, zone_a),
        "a ref is not adoption by name"
    );
    assert_eq!(
        resolve_child_name(&with_ref, &with_ref.spec.zones[1], ChildKind::VMCluster),
        ("with-ref-zone-b".to_owned(), NameSource::Derived)
    );
}

#[test]
fn merged_specs_of_the_template_example() {
    let cr = example("zone-template.yaml");
    let [a, b, _] = &cr.spec.zones[..] else {
        panic!("three zones")
    };
    assert_eq!(
        zone_child_spec(&cr, a, ChildKind::VMCluster)["vminsert"],
        json!({"replicaCount": 2, "nodeSelector": {"topology.kubernetes.io/zone": "us-east-1a"}})
    );
    // zone b deletes the common vminsert nodeSelector with {$patch: delete}.
    assert_eq!(
        zone_child_spec(&cr, b, ChildKind::VMCluster)["vminsert"],
        json!({"replicaCount": 2})
    );
    assert_eq!(
        zone_child_spec(&cr, b, ChildKind::VMCluster)["vmselect"]["nodeSelector"],
        json!({"topology.kubernetes.io/zone": "us-east-1b"})
    );
    assert_eq!(
        zone_child_spec(&cr, b, ChildKind::VMAgent),
        json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-east-1b"}})
    );
    assert_eq!(zone_remote_write(&cr, a), json!({"sendTimeout": "30s"}));
    assert_eq!(
        zone_remote_write(&cr, b),
        json!({"sendTimeout": "30s", "maxDiskUsage": "5GB"})
    );
    assert_eq!(zone_child_spec(&cr, a, ChildKind::VMAuth), json!({}));
}

#[test]
fn zone_null_deletes_a_common_key() {
    let cr: VMDistributed = strict(&json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "x"},
        "spec": {
            "zoneCommon": {"vmagent": {"spec": {"nodeSelector": {"zone": "%ZONE%"}, "replicaCount": 2}}},
            "zones": [{"name": "a", "vmagent": {"spec": {"nodeSelector": null}}}, {"name": "b"}]
        }
    }))
    .expect("decodes");
    assert_eq!(
        zone_child_spec(&cr, &cr.spec.zones[0], ChildKind::VMAgent),
        json!({"replicaCount": 2})
    );
    assert_eq!(
        zone_child_spec(&cr, &cr.spec.zones[1], ChildKind::VMAgent),
        json!({"replicaCount": 2, "nodeSelector": {"zone": "b"}})
    );
}
