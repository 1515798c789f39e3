//! `vmdistributed-controller run` logs: text logs written to a file or a pipe carry no terminal
//! colour codes.

use std::process::Command;

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmdistributed-controller"))
        .args([
            "run",
            "--log-format=text",
            "--http-addr=127.0.0.1:0",
            "--kubeconfig=/nonexistent/missing-kubeconfig",
        ])
        .output()
        .expect("the controller binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("missing-kubeconfig"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}
