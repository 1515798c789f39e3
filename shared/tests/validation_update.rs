//! UPDATE rules (docs/api.md "Validation summary"): backendType immutable, rename protection with
//! the allow-rename escape, zone-removal warnings, and no validation for unchanged specs or objects
//! being deleted.

use serde_json::{Value, json};
use shared::VMDistributed;
use shared::parse::strict;
use shared::validation::{ALLOW_RENAME_ANNOTATION, Report, validate, validate_value};

fn stored() -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "vmd", "namespace": "monitoring"},
        "spec": {
            "zoneCommon": {
                "vmcluster": {"name": "vm-%ZONE%", "spec": {"vminsert": {}, "vmselect": {}, "vmstorage": {}}}
            },
            "zones": [{"name": "a"}, {"name": "b"}, {"name": "c", "vmcluster": {"ref": {"name": "legacy"}}}]
        }
    })
}

fn updated(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut value = stored();
    mutate(&mut value);
    value
}

#[track_caller]
fn only_error(report: &Report, path: &str, fragments: &[&str]) {
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    let error = &report.errors[0];
    assert_eq!(error.path, path, "{error}");
    for fragment in fragments {
        assert!(
            error.message.contains(fragment),
            "{fragment:?} not in {error}"
        );
    }
}

#[test]
fn backend_type_cannot_change() {
    let report = validate_value(
        &updated(|v| {
            v["spec"]["backendType"] = json!("VMSingle");
            v["spec"]["zoneCommon"] = json!({"vmsingle": {"spec": {"retentionPeriod": "1"}}});
            v["spec"]["zones"] = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        }),
        Some(&stored()),
    );
    only_error(
        &report,
        "spec.backendType",
        &["cannot change from VMCluster to VMSingle", "immutable"],
    );
    // Writing the default explicitly is not a change.
    let report = validate_value(
        &updated(|v| v["spec"]["backendType"] = json!("VMCluster")),
        Some(&stored()),
    );
    assert!(report.is_valid(), "{:?}", report.errors);
}

#[test]
fn renaming_a_zone_child_is_refused_with_instructions() {
    let report = validate_value(
        &updated(|v| v["spec"]["zones"][1]["vmcluster"] = json!({"name": "renamed"})),
        Some(&stored()),
    );
    only_error(
        &report,
        "spec.zones[1].vmcluster.name",
        &[
            "zone \"b\" would switch from VMCluster \"vm-b\" to \"renamed\"",
            "new, empty VMCluster",
            "remove the zone, apply, then add it back",
            "zoneRemovalPolicy: Retain",
            "operator.victoriametrics.com/allow-rename: \"true\"",
        ],
    );

    // Changing the template renames every zone created from it.
    let report = validate_value(
        &updated(|v| v["spec"]["zoneCommon"]["vmagent"] = json!({"name": "agent-%ZONE%"})),
        Some(&stored()),
    );
    assert_eq!(report.errors.len(), 3, "{:#?}", report.errors);
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.path == "spec.zoneCommon.vmagent.name"
                && e.message.contains("from VMAgent \"vmd-"))
    );

    // Pointing a zone at another existing cluster is a rename too.
    let report = validate_value(
        &updated(|v| v["spec"]["zones"][2]["vmcluster"]["ref"]["name"] = json!("other")),
        Some(&stored()),
    );
    only_error(
        &report,
        "spec.zones[2].vmcluster.ref.name",
        &["from VMCluster \"legacy\" to \"other\""],
    );

    // Removing an explicit name falls back to the template: still a rename.
    let report = validate_value(
        &updated(|v| v["spec"]["zones"][2] = json!({"name": "c"})),
        Some(&stored()),
    );
    only_error(
        &report,
        "spec.zoneCommon.vmcluster.name",
        &["from VMCluster \"legacy\" to \"vm-c\""],
    );
}

#[test]
fn allow_rename_annotation_lifts_the_check() {
    let report = validate_value(
        &updated(|v| {
            v["metadata"]["annotations"] = json!({ALLOW_RENAME_ANNOTATION: "true"});
            v["spec"]["zones"][1]["vmcluster"] = json!({"name": "renamed"});
        }),
        Some(&stored()),
    );
    assert!(report.is_valid(), "{:?}", report.errors);
    assert!(
        report.warnings.iter().any(|w| w
            .contains("switches from VMCluster \"vm-b\" to \"renamed\"")
            && w.contains("\"vm-b\" will be released")),
        "{:?}",
        report.warnings
    );
    // Any other value keeps the check.
    let report = validate_value(
        &updated(|v| {
            v["metadata"]["annotations"] = json!({ALLOW_RENAME_ANNOTATION: "yes"});
            v["spec"]["zones"][1]["vmcluster"] = json!({"name": "renamed"});
        }),
        Some(&stored()),
    );
    assert_eq!(report.errors.len(), 1);
}

#[test]
fn removing_a_zone_warns_which_children_go() {
    let retain = validate_value(
        &updated(|v| v["spec"]["zones"] = json!([{"name": "a"}, {"name": "b"}])),
        Some(&stored()),
    );
    assert!(retain.is_valid(), "{:?}", retain.errors);
    // Exactly one warning is about the removal (others say which versions get pinned).
    let removals: Vec<&String> = retain
        .warnings
        .iter()
        .filter(|w| w.contains("is removed"))
        .collect();
    assert_eq!(removals.len(), 1, "{:?}", retain.warnings);
    let warning = removals[0];
    assert!(warning.contains("zone \"c\" is removed"), "{warning}");
    assert!(
        warning.contains("VMCluster \"legacy\" will be released (a ref is never deleted)"),
        "{warning}"
    );
    assert!(
        warning.contains("VMAgent \"vmd-c\" will be released"),
        "{warning}"
    );
    assert!(warning.contains("zoneRemovalPolicy: Retain"), "{warning}");

    let delete = validate_value(
        &updated(|v| {
            v["spec"]["zoneRemovalPolicy"] = json!("Delete");
            v["spec"]["zones"] =
                json!([{"name": "b"}, {"name": "c", "vmcluster": {"ref": {"name": "legacy"}}}]);
        }),
        Some(&updated(|v| {
            v["spec"]["zoneRemovalPolicy"] = json!("Delete")
        })),
    );
    assert!(delete.is_valid(), "{:?}", delete.errors);
    assert!(
        delete
            .warnings
            .iter()
            .any(|w| w.contains("zone \"a\" is removed")
                && w.contains(
                    "VMCluster \"vm-a\" will be deleted if this VMDistributed created it"
                )
                && w.contains("zoneRemovalPolicy: Delete")),
        "{:?}",
        delete.warnings
    );
}

#[test]
fn unchanged_spec_or_deletion_skips_validation() {
    // A stored object that today's rules reject (empty zone list) must stay deletable and its
    // metadata editable.
    let invalid = updated(|v| v["spec"]["zones"] = json!([]));
    assert!(!validate_value(&invalid, None).is_valid());

    let mut relabeled = invalid.clone();
    relabeled["metadata"]["labels"] = json!({"team": "x"});
    relabeled["metadata"]["finalizers"] = json!([]);
    assert_eq!(
        validate_value(&relabeled, Some(&invalid)),
        Report::default()
    );

    let mut deleting = invalid.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    deleting["spec"]["zones"] = json!([{"name": "BAD"}]);
    assert_eq!(validate_value(&deleting, Some(&invalid)), Report::default());

    // The typed entry point behaves the same.
    let old: VMDistributed = strict(&invalid).expect("decodes");
    let new: VMDistributed = strict(&relabeled).expect("decodes");
    assert_eq!(validate(&new, Some(&old)), Report::default());
    let mut new_deleting: VMDistributed = strict(&invalid).expect("decodes");
    new_deleting.spec.zones.clear();
    new_deleting.spec.paused = Some(true);
    new_deleting.metadata.deletion_timestamp = old
        .metadata
        .creation_timestamp
        .clone()
        .or_else(|| serde_json::from_value(json!("2025-01-01T00:00:00Z")).ok());
    assert_eq!(validate(&new_deleting, Some(&old)), Report::default());
    // On CREATE (no old object) the same invalid object is rejected.
    assert!(!validate(&new, None).is_valid());
}

#[test]
fn undecodable_stored_object_skips_update_checks_with_a_warning() {
    let mut old = stored();
    old["spec"]["legacyField"] = json!(true);
    let report = validate_value(
        &updated(|v| v["spec"]["zones"][1]["vmcluster"] = json!({"name": "renamed"})),
        Some(&old),
    );
    assert!(report.is_valid(), "{:?}", report.errors);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("stored object does not decode") && w.contains("spec.legacyField")),
        "{:?}",
        report.warnings
    );
}
