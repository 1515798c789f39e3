//! `vmdistributed-controller render` run as a binary: the CI-pipeline use of the offline renderer.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn render(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmdistributed-controller"))
        .arg("render")
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the controller binary starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child
        .wait_with_output()
        .expect("the controller binary exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn seed_example_renders_every_child_of_both_zones() {
    let out = render(&["-f", "examples/seed.yaml"], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    for header in [
        "VMCluster demo-zone-a",
        "VMAgent demo-zone-a",
        "VMCluster demo-zone-b",
        "VMAgent demo-zone-b",
    ] {
        assert!(stdout.contains(header), "missing {header} in:\n{stdout}");
    }
    assert!(stdout.contains("kind: VMAuth"), "{stdout}");
    assert!(
        stdout.contains("operator.victoriametrics.com/spec-hash:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/insert/multitenant/prometheus/api/v1/write"),
        "the agents write to every zone: {stdout}"
    );
    assert!(
        text(&out.stderr).contains("offline"),
        "the offline caveat is stated"
    );
}

#[test]
fn invalid_input_from_stdin_fails_with_the_field_path() {
    let bad = "apiVersion: operator.victoriametrics.com/v1alpha1\nkind: VMDistributed\n\
               metadata: {name: bad, namespace: x}\nspec:\n  zones: [{name: a}, {name: a}]\n";
    let out = render(&["-f", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing is rendered for an invalid object"
    );
    assert!(
        text(&out.stderr).contains("spec.zones[1].name"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = render(&["-f", "does/not/exist.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read does/not/exist.yaml"),
        "{}",
        text(&out.stderr)
    );
}
