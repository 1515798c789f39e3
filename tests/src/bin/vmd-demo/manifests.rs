//! The objects the demo applies: the seed example with a third zone and demo-sized durations, and
//! a VMDistributed with a cross-namespace `ref` that the webhook must reject.

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

/// Namespace the demo works in.
pub const NAMESPACE: &str = "demo";
/// The namespace the rejected object points into.
pub const OTHER_NAMESPACE: &str = "team-b";
/// Name of the rejected object.
pub const REJECTED_NAME: &str = "cross-namespace";

/// Demo settings that end up in the CR.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    pub update_pause: String,
    pub ready_timeout: String,
    pub version_before: String,
    pub version_after: String,
}

/// `examples/seed.yaml` (zone-a, zone-b) plus `zone-c`, the durations and the starting
/// `clusterVersion`, in [`NAMESPACE`].
pub fn seed(seed_yaml: &str, demo: &DemoSpec) -> Result<Value> {
    let docs = harness::parse_yaml_documents(seed_yaml).context("parsing examples/seed.yaml")?;
    let mut cr = docs
        .into_iter()
        .find(|d| d["kind"] == "VMDistributed")
        .ok_or_else(|| anyhow!("examples/seed.yaml has no VMDistributed"))?;
    cr["metadata"]["namespace"] = json!(NAMESPACE);
    let spec = cr
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("examples/seed.yaml: VMDistributed without spec"))?;
    let zones = spec
        .get_mut("zones")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow!("examples/seed.yaml: spec.zones is not a list"))?;
    if !zones.iter().any(|z| z["name"] == "zone-c") {
        zones.push(json!({"name": "zone-c"}));
    }
    let common = spec
        .entry("zoneCommon")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| anyhow!("examples/seed.yaml: spec.zoneCommon is not an object"))?;
    common.insert("updatePause".into(), json!(demo.update_pause));
    common.insert("readyTimeout".into(), json!(demo.ready_timeout));
    let cluster_spec = common
        .entry("vmcluster")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| anyhow!("examples/seed.yaml: spec.zoneCommon.vmcluster is not an object"))?
        .entry("spec")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            anyhow!("examples/seed.yaml: spec.zoneCommon.vmcluster.spec is not an object")
        })?;
    cluster_spec.insert("clusterVersion".into(), json!(demo.version_before));
    Ok(cr)
}

/// The change that starts the rollout, as a JSON merge patch.
pub fn version_patch(version: &str) -> Value {
    json!({"spec": {"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": version}}}}})
}

/// A CR whose zone points at a VMCluster in another namespace: validation rejects it (docs/api.md
/// "Validation summary").
pub fn cross_namespace() -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": REJECTED_NAME, "namespace": NAMESPACE},
        "spec": {
            "zones": [
                {"name": "zone-a", "vmcluster": {"ref": {"name": "shared-cluster", "namespace": OTHER_NAMESPACE}}},
                {"name": "zone-b", "vmcluster": {"ref": {"name": "shared-cluster-b"}}}
            ]
        }
    })
}

/// Compact YAML-ish one-liners of what the demo changed in the seed, for the console.
pub fn describe(demo: &DemoSpec) -> Vec<String> {
    vec![
        "examples/seed.yaml (zone-a, zone-b) plus a third zone, zone-c".to_string(),
        format!(
            "zoneCommon: updatePause {}, readyTimeout {}, vmcluster.spec.clusterVersion {}",
            demo.update_pause, demo.ready_timeout, demo.version_before
        ),
        format!("(step 8 changes clusterVersion to {})", demo.version_after),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> DemoSpec {
        DemoSpec {
            update_pause: "3s".into(),
            ready_timeout: "1m".into(),
            version_before: "v1".into(),
            version_after: "v2".into(),
        }
    }

    #[test]
    fn the_seed_example_gets_a_third_zone_and_demo_settings() {
        let text = std::fs::read_to_string(harness::workspace_root().join("examples/seed.yaml"))
            .expect("examples/seed.yaml");
        let cr = seed(&text, &demo()).expect("seed");
        let zones: Vec<&str> = cr["spec"]["zones"]
            .as_array()
            .expect("zones")
            .iter()
            .filter_map(|z| z["name"].as_str())
            .collect();
        assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
        assert_eq!(cr["metadata"]["namespace"], NAMESPACE);
        assert_eq!(cr["spec"]["zoneCommon"]["updatePause"], "3s");
        assert_eq!(
            cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["clusterVersion"],
            "v1"
        );
        // The seed's own cluster settings are kept.
        assert!(cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["vminsert"].is_object());
        // The result is a valid CR by the project's own rules.
        let report = shared::validation::validate_value(&cr, None);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn the_rejected_object_fails_validation_with_the_cross_namespace_message() {
        let report = shared::validation::validate_value(&cross_namespace(), None);
        let text: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.contains("cross-namespace reference")
                && e.contains(&format!("{OTHER_NAMESPACE}/shared-cluster"))),
            "{text:?}"
        );
    }

    #[test]
    fn a_seed_without_a_vmdistributed_is_an_error() {
        let err = seed(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            &demo(),
        )
        .expect_err("no CR");
        assert!(err.to_string().contains("no VMDistributed"));
    }
}
