//! The check logic never panics, whatever the input, and its exit code follows its report.

use proptest::prelude::*;
use shared::offline::check::{check_documents, split_documents};

/// Lines that look like YAML manifests, document markers and broken syntax.
fn yamlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("---".to_owned()),
        Just("...".to_owned()),
        Just("--- # c".to_owned()),
        Just("apiVersion: operator.victoriametrics.com/v1alpha1".to_owned()),
        Just("kind: VMDistributed".to_owned()),
        Just("kind: ConfigMap".to_owned()),
        Just("metadata: {name: x}".to_owned()),
        Just("spec:".to_owned()),
        Just("  zones: [{name: a}, {name: b}]".to_owned()),
        Just("  zones:".to_owned()),
        Just("    - name: %ZONE%".to_owned()),
        Just("  zoneCommon: {readyTimeout: 5 minutes}".to_owned()),
        Just("a: [1,".to_owned()),
        Just("\t- x".to_owned()),
        "\\PC{0,20}",
    ];
    prop::collection::vec(line, 0..20).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn never_panics(input in yamlish()) {
        let out = check_documents(&input);
        prop_assert!(out.exit_code == 0 || out.exit_code == 1);
        prop_assert_eq!(out.exit_code == 1, out.stderr.contains("error") || out.stderr.contains("invalid YAML"));
        for doc in split_documents(&input) {
            prop_assert!(input.contains(doc.text));
            prop_assert!(doc.first_line >= 1 && doc.first_line <= input.lines().count().max(1));
        }
    }

    #[test]
    fn never_panics_on_any_text(input in "\\PC{0,200}") {
        let _ = check_documents(&input);
    }
}
