//! Admission warns when a child's version is left to the VictoriaMetrics operator's default: the
//! controller then pins one (docs/rollout.md "Pinned versions"), and the user should know which.

use serde_json::{Value, json};
use shared::validation::validate_value;

fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "vmd", "namespace": "monitoring"},
        "spec": spec
    })
}

fn version_warnings(spec: Value) -> Vec<String> {
    let report = validate_value(&object(spec), None);
    assert!(report.is_valid(), "{:?}", report.errors);
    report
        .warnings
        .into_iter()
        .filter(|w| w.contains("pins"))
        .collect()
}

fn cluster() -> Value {
    json!({"vminsert": {}, "vmselect": {}, "vmstorage": {}})
}

#[test]
fn unset_versions_are_warned_about_once_per_kind() {
    let warnings = version_warnings(json!({
        "zoneCommon": {"vmcluster": {"spec": cluster()}},
        "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
    }));
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with(
            "spec.zoneCommon.vmcluster.spec.clusterVersion: not set for zones zone-a, zone-b: \
             the controller pins"
        ),
        "{warnings:#?}"
    );
    assert!(warnings[0].contains("v1.148.0-cluster"), "{warnings:#?}");
    assert!(
        warnings[1].starts_with(
            "spec.zoneCommon.vmagent.spec.image.tag: not set for zones zone-a, zone-b: \
             the controller pins"
        ),
        "{warnings:#?}"
    );
}

#[test]
fn only_zones_that_leave_it_unset_are_named() {
    let warnings = version_warnings(json!({
        "backendType": "VMSingle",
        "zoneCommon": {"vmsingle": {"spec": {"retentionPeriod": "1"}},
                       "vmagent": {"spec": {"image": {"tag": "v1.120.0"}}}},
        "zones": [
            {"name": "zone-a", "vmsingle": {"spec": {"image": {"tag": "v1.120.0"}}}},
            {"name": "zone-b"}
        ]
    }));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0]
            .starts_with("spec.zoneCommon.vmsingle.spec.image.tag: not set for zones zone-b:"),
        "{warnings:#?}"
    );
}

#[test]
fn set_versions_refs_and_adoptions_get_no_warning() {
    // Versions set; a ref and an adopted cluster are their owner's to version.
    let mut with_version = cluster();
    with_version["clusterVersion"] = json!("v1.120.0-cluster");
    assert!(
        version_warnings(json!({
            "zoneCommon": {"vmcluster": {"spec": with_version},
                           "vmagent": {"spec": {"componentVersion": "v1.120.0"}}},
            "zones": [
                {"name": "zone-a"},
                {"name": "zone-b", "vmcluster": {"ref": {"name": "theirs"}},
                 "vmagent": {"ref": {"name": "their-agent"}}}
            ]
        }))
        .is_empty()
    );
    // The distributed chart's layout: adopted clusters, and agents with a tag.
    assert!(
        version_warnings(json!({
            "zoneCommon": {"vmagent": {"spec": {"image": {"tag": "v1.120.0"}}}},
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }))
        .is_empty()
    );
}
