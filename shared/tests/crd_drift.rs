//! The committed CRD must be exactly what the Rust types generate.

use std::path::PathBuf;

use shared::crd::{CRD_PATH, REGENERATE_COMMAND, crd_yaml};

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CRD_PATH)
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = crd_yaml();
    let path = committed_path();
    if std::env::var_os("VMD_REGENERATE_CRD").is_some() {
        std::fs::write(&path, &generated).expect("write the CRD");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{CRD_PATH} is out of date with shared/src/api.rs; regenerate it with `{REGENERATE_COMMAND}`"
    );
}

#[test]
fn crd_has_the_documented_shape() {
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).expect("CRD YAML parses");
    assert_eq!(
        crd["metadata"]["name"],
        "vmdistributed.operator.victoriametrics.com"
    );
    let names = &crd["spec"]["names"];
    assert_eq!(names["plural"], "vmdistributed");
    assert_eq!(names["singular"], "vmdistributed");
    assert_eq!(names["kind"], "VMDistributed");
    assert_eq!(names["shortNames"][0], "vmd");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Status", "Ready zones", "Rollout zone", "Phase", "Age"]
    );

    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["zones"]["minItems"], 1);
    assert_eq!(
        spec["properties"]["zones"]["maxItems"],
        shared::api::MAX_ZONES
    );
    assert_eq!(spec["required"][0], "zones");
    let zone = &spec["properties"]["zones"]["items"];
    assert_eq!(
        zone["properties"]["trafficMode"]["enum"],
        serde_json::json!(["read-write", "read-only", "write-only", "maintenance"])
    );
    assert_eq!(
        spec["properties"]["backendType"]["enum"],
        serde_json::json!(["VMCluster", "VMSingle"])
    );
    let free = &zone["properties"]["vmcluster"]["properties"]["spec"];
    assert_eq!(free["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(free["type"], "object");
    // Status carries this project's rollout fields (the controller checks for them at start).
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert!(status["rollout"].is_object() && status["zones"].is_object());
}

/// Every property of the typed part of the schema has a description (it is `kubectl explain`).
#[test]
fn every_schema_property_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                let skip_meta =
                    path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
                if !skip_meta
                    && prop
                        .get("description")
                        .and_then(|d| d.as_str())
                        .unwrap_or("")
                        .is_empty()
                {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).expect("CRD YAML parses");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    walk("", root, &mut missing);
    // Condition comes from k8s-openapi and is documented there.
    missing.retain(|p| !p.starts_with(".status.conditions"));
    assert!(
        missing.is_empty(),
        "schema properties without a description: {missing:?}"
    );
}

/// `kubectl explain vmd` opens with the root description and prints every description's line
/// breaks as they are: the root says what a VMDistributed is, and no sentence is broken where
/// a doc comment was wrapped.
#[test]
fn descriptions_read_well_in_kubectl_explain() {
    fn walk(path: &str, value: &serde_json::Value, broken: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    match child.as_str() {
                        Some(text)
                            if key == "description" && text.replace("\n\n", " ").contains('\n') =>
                        {
                            broken.push(format!("{path}: {text:?}"));
                        }
                        _ => walk(&format!("{path}/{key}"), child, broken),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}/{i}"), item, broken);
                }
            }
            _ => {}
        }
    }
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).expect("CRD YAML parses");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let description = root["description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with("VictoriaMetrics clusters, one per availability zone"),
        "{description}"
    );
    assert!(!description.contains("Auto-generated"), "{description}");
    let mut broken = Vec::new();
    walk("", root, &mut broken);
    assert!(
        broken.is_empty(),
        "descriptions broken mid-sentence: {broken:#?}"
    );
}
