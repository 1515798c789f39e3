//! `vmdistributed-webhook check` logic: defaulted objects on stdout, warnings and errors with
//! document numbers and field paths on stderr, exit code 1 on any error.

use std::path::PathBuf;

use serde_json::{Value, json};
use shared::offline::check::check_documents;

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(path).expect("example exists")
}

const EXAMPLES: [&str; 5] = [
    "seed.yaml",
    "distributed-chart.yaml",
    "zone-template.yaml",
    "license.yaml",
    "ref.yaml",
];

/// The YAML documents printed on stdout, parsed.
fn printed(stdout: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(stdout).expect("stdout is YAML")
}

#[test]
fn examples_pass_and_print_defaulted_objects() {
    for name in EXAMPLES {
        let out = check_documents(&example(name));
        assert_eq!(out.exit_code, 0, "{name}: {}", out.stderr);
        let docs = printed(&out.stdout);
        assert_eq!(docs.len(), 1, "{name}");
        let doc = &docs[0];
        assert_eq!(doc["kind"], json!("VMDistributed"));
        assert_eq!(doc["spec"]["backendType"], json!("VMCluster"), "{name}");
        assert_eq!(doc["spec"]["vmauth"]["enabled"], json!(true), "{name}");
        assert!(
            doc["spec"]["zones"]
                .as_array()
                .expect("zones")
                .iter()
                .all(|z| z.get("trafficMode").is_some())
        );
        assert!(doc.get("status").is_none());
        assert!(
            out.stderr
                .contains("checked 1 VMDistributed: 1 valid, 0 with errors"),
            "{}",
            out.stderr
        );
    }
    let seed = printed(&check_documents(&example("seed.yaml")).stdout).remove(0);
    assert_eq!(seed["spec"]["zoneCommon"]["readyTimeout"], json!("5m"));
    assert_eq!(seed["spec"]["zoneCommon"]["updatePause"], json!("1m"));
    assert_eq!(
        seed["spec"]["zoneCommon"]["vmcluster"]["spec"]["retentionPeriod"],
        json!("14")
    );
}

#[test]
fn adoption_warning_is_printed_for_the_distributed_chart_example() {
    let out = check_documents(&example("distributed-chart.yaml"));
    assert_eq!(out.exit_code, 0);
    assert!(
        out.stderr.contains(
            "document 1 (line 1): VMDistributed vm-distributed: warning: spec.zones[0].vmcluster: \
             VMCluster \"vmcluster-zone-1\" has no vminsert, vmselect or vmstorage"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn all_examples_in_one_stream_with_other_kinds_skipped() {
    let mut input = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n");
    for name in EXAMPLES {
        input.push_str("---\n");
        input.push_str(&example(name));
    }
    input.push_str("---\n# trailing comment only\n");
    let out = check_documents(&input);
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert_eq!(printed(&out.stdout).len(), 5);
    assert!(
        out.stderr
            .contains("document 1 (line 1): skipped ConfigMap \"settings\": not a VMDistributed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("checked 5 VMDistributed: 5 valid, 0 with errors"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("1 other document(s) skipped"),
        "{}",
        out.stderr
    );
}

#[test]
fn invalid_object_reports_errors_with_paths_and_exits_1() {
    let input = "\
apiVersion: v1
kind: Secret
metadata: {name: s}
---
apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: bad
  namespace: monitoring
spec:
  zoneCommon:
    readyTimeout: 5 minutes
  zones:
    - name: Zone-A
    - name: b
      vmcluster:
        ref: {name: legacy, namespace: other}
";
    let out = check_documents(input);
    assert_eq!(out.exit_code, 1);
    let prefix = "document 2 (line 4): VMDistributed monitoring/bad: error: ";
    for expected in [
        "spec.zoneCommon.readyTimeout: invalid duration \"5 minutes\"",
        "spec.zones[0].name: zone name \"Zone-A\" must be a DNS-1123 label",
        "spec.zones[1].vmcluster.ref.namespace: cross-namespace reference: VMDistributed monitoring/bad cannot reference VMCluster other/legacy",
    ] {
        assert!(
            out.stderr.contains(&format!("{prefix}{expected}")),
            "{expected}\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("single zone"),
        "two zones: no single-zone warning"
    );
    // The defaulted object is still shown, so the user sees what would be stored.
    let docs = printed(&out.stdout);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["spec"]["zoneCommon"]["readyTimeout"],
        json!("5 minutes")
    );
    assert!(
        out.stderr
            .contains("checked 1 VMDistributed: 0 valid, 1 with errors"),
        "{}",
        out.stderr
    );
}

#[test]
fn yaml_errors_name_the_document_and_line() {
    let input = format!(
        "{}---\nkind: VMDistributed\nspec: [1,\n",
        example("seed.yaml")
    );
    let first_line_of_bad = example("seed.yaml").lines().count() + 1;
    let out = check_documents(&input);
    assert_eq!(out.exit_code, 1);
    let expected = format!("document 2 (line {first_line_of_bad}): invalid YAML: ");
    assert!(out.stderr.contains(&expected), "{expected}\n{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("at line {}", first_line_of_bad + 2)),
        "absolute line of the error: {}",
        out.stderr
    );
    // The valid document before it is still checked and printed.
    assert_eq!(printed(&out.stdout).len(), 1);
}

#[test]
fn decoding_errors_keep_their_path_and_print_nothing() {
    let input = "\
apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata: {name: typo}
spec:
  zones:
    - name: a
      trafficMode: readwrite
";
    let out = check_documents(input);
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr
            .contains("error: spec.zones[0].trafficMode: unknown variant `readwrite`"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn empty_input_and_no_vmdistributed() {
    let out = check_documents("");
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
    assert!(out.stderr.contains("no VMDistributed found"));
    let out = check_documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert_eq!(out.exit_code, 0);
    assert!(out.stderr.contains("skipped ConfigMap \"x\""));
    let out = check_documents("- just\n- a list\n");
    assert_eq!(out.exit_code, 0);
    assert!(
        out.stderr.contains("skipped a document without kind"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_decoding_error_of_a_document_is_reported() {
    let input = "\
apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata: {name: typos}
spec:
  backendType: VMClustr
  zoneComon: {}
  zoneCommon:
    readyTimeout: 5
    vmcluster: {nmae: c-%ZONE%}
  zones:
    - name: a
      trafficMode: readwrite
    - {trafficMode: read-only}
    - name: c
      vmagent: {ref: {namespace: x}}
";
    let out = check_documents(input);
    assert_eq!(out.exit_code, 1);
    for expected in [
        "error: spec.backendType: unknown variant `VMClustr`, expected one of `VMCluster`, `VMSingle`",
        "error: spec.zoneComon: unknown field `zoneComon`",
        "error: spec.zoneCommon.readyTimeout: invalid type: integer `5`, expected a string",
        "error: spec.zoneCommon.vmcluster.nmae: unknown field `nmae`, expected one of `name`, `spec`",
        "error: spec.zones[0].trafficMode: unknown variant `readwrite`",
        "error: spec.zones[1]: missing field `name`",
        "error: spec.zones[2].vmagent.ref: missing field `name`",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} missing:\n{}",
            out.stderr
        );
    }
    assert_eq!(out.stderr.matches("error: ").count(), 7, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}
