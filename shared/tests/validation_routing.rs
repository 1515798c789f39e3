//! Admission warnings about the order of `unauthorizedUserAccessSpec.targetRefs`: vmauth sends a
//! request to the first listed ref whose paths match it, so anything before `write` that takes
//! writes keeps them from being replicated (docs/rollout.md "Routing").

use serde_json::{Value, json};
use shared::validation::validate_value;

fn with_target_refs(target_refs: Value) -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "vmd", "namespace": "monitoring"},
        "spec": {
            "backendType": "VMSingle",
            "vmauth": {"spec": {"unauthorizedUserAccessSpec": {"targetRefs": target_refs}}},
            "zoneCommon": {"vmsingle": {"spec": {"retentionPeriod": "1"}}},
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }
    })
}

fn routing_warnings(target_refs: Value) -> Vec<String> {
    let report = validate_value(&with_target_refs(target_refs), None);
    assert!(report.is_valid(), "{:?}", report.errors);
    report
        .warnings
        .into_iter()
        .filter(|w| w.starts_with("spec.vmauth.spec.unauthorizedUserAccessSpec"))
        .collect()
}

#[test]
fn read_listed_before_write_is_warned_about() {
    let warnings = routing_warnings(json!([{"name": "read"}, {"name": "write"}]));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "spec.vmauth.spec.unauthorizedUserAccessSpec.targetRefs[0]: `read` is listed before `write`"
        ),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("list `write` first"), "{warnings:?}");
}

#[test]
fn write_first_or_no_write_at_all_is_fine() {
    assert!(routing_warnings(json!([{"name": "write"}, {"name": "read"}])).is_empty());
    // Without `write`, unauthenticated requests cannot write at all: nothing to replicate.
    assert!(routing_warnings(json!([{"name": "read"}])).is_empty());
}

#[test]
fn an_own_ref_before_write_that_takes_writes_is_warned_about() {
    let catch_all = json!({"static": {"url": "http://elsewhere:8428"}, "paths": ["/.*"]});
    let without_paths = json!({"static": {"url": "http://elsewhere:8428"}});
    let one_vminsert =
        json!({"crd": {"kind": "VMCluster/vminsert", "name": "x", "namespace": "monitoring"}});
    for (i, entry) in [catch_all, without_paths, one_vminsert]
        .into_iter()
        .enumerate()
    {
        let warnings = routing_warnings(json!([entry.clone(), {"name": "write"}]));
        assert_eq!(warnings.len(), 1, "{entry}: {warnings:?}");
        assert!(
            warnings[0].contains("targetRefs[0]: listed before `write`")
                && warnings[0].contains("such as /"),
            "case {i}: {warnings:?}"
        );
    }
    // Paths that take no write, or the same ref after `write`, are fine.
    let grafana = json!({"static": {"url": "http://grafana:3000"}, "paths": ["/grafana/.*"]});
    assert!(routing_warnings(json!([grafana, {"name": "write"}])).is_empty());
    let catch_all = json!({"static": {"url": "http://elsewhere:8428"}, "paths": ["/.*"]});
    assert!(routing_warnings(json!([{"name": "write"}, catch_all])).is_empty());
}
