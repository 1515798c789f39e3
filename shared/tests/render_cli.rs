//! The offline `render` command's logic.

use serde_json::Value;
use shared::offline::render::render_documents;

fn documents(stdout: &str) -> Vec<Value> {
    stdout
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("valid YAML output"))
        .collect()
}

#[test]
fn renders_the_seed_example() {
    let input = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/seed.yaml"
    ))
    .expect("seed example");
    let out = render_documents(&input);
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    let docs = documents(&out.stdout);
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["VMCluster", "VMAgent", "VMCluster", "VMAgent", "VMAuth"]
    );
    assert_eq!(docs[0]["metadata"]["name"], "demo-zone-a");
    assert_eq!(docs[0]["metadata"]["namespace"], "default");
    assert_eq!(
        docs[0]["metadata"]["labels"]["operator.victoriametrics.com/zone"],
        "zone-a"
    );
    assert!(
        docs[0]["metadata"]["annotations"]["operator.victoriametrics.com/spec-hash"].is_string()
    );
    assert_eq!(docs[1]["spec"]["ingestOnlyMode"], true);
    assert_eq!(
        docs[1]["spec"]["remoteWrite"][1]["url"],
        "http://vminsert-demo-zone-b.default.svc:8480/insert/multitenant/prometheus/api/v1/write"
    );
    assert_eq!(
        docs[4]["spec"]["defaultTargetRefs"][0]["crd"]["objects"][1]["name"],
        "demo-zone-b"
    );
    assert!(out.stderr.contains("offline"), "{}", out.stderr);
    assert!(out.stderr.contains("merged spec"));
}

#[test]
fn other_kinds_are_skipped_with_a_note() {
    let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n";
    let out = render_documents(input);
    assert_eq!(out.exit_code, 0);
    assert!(
        out.stderr
            .contains("document 1 (line 1): skipped ConfigMap"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn parse_errors_name_the_document_and_line() {
    let input = "kind: ConfigMap\n---\nkind: VMDistributed\nspec: [unclosed\n";
    let out = render_documents(input);
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.contains("document 2 (line 2): invalid YAML"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line"), "{}", out.stderr);
}

#[test]
fn invalid_objects_are_reported_with_field_paths_and_not_rendered() {
    let input = "apiVersion: operator.victoriametrics.com/v1alpha1\nkind: VMDistributed\nmetadata: {name: d}\nspec:\n  zones:\n  - name: Bad_Zone\n";
    let out = render_documents(input);
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.contains("spec.zones[0].name"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}
