//! The `vmdistributed-webhook` binary: `check` on files and stdin, `serve` exiting 0 on SIGTERM.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_vmdistributed-webhook");

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn check_prints_the_defaulted_seed_and_exits_0() {
    let out = Command::new(BIN)
        .args(["check", "-f"])
        .arg(workspace().join("examples/seed.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "readyTimeout: 5m",
        "updatePause: 1m",
        "backendType: VMCluster",
        "trafficMode: read-write",
        "enabled: true",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in\n{stdout}");
    }
}

#[test]
fn check_reads_stdin_and_exits_1_with_field_paths_on_errors() {
    let yaml = "apiVersion: operator.victoriametrics.com/v1alpha1\nkind: VMDistributed\nmetadata: {name: x, namespace: ns}\nspec:\n  zones: [{name: Bad_Zone}, {name: b, vmcluster: {ref: {name: c, namespace: other}}}]\n";
    let mut child = Command::new(BIN)
        .args(["check", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.zones[0].name"), "{stderr}");
    assert!(
        stderr.contains(
            "cross-namespace reference: VMDistributed ns/x cannot reference VMCluster other/c"
        ),
        "{stderr}"
    );
}

#[test]
fn check_refuses_more_than_sixteen_zones_naming_the_limit() {
    let zones: Vec<String> = (0..17).map(|i| format!("{{name: zone-{i}}}")).collect();
    let yaml = format!(
        "apiVersion: operator.victoriametrics.com/v1alpha1\nkind: VMDistributed\nmetadata: {{name: x, namespace: ns}}\nspec:\n  zoneCommon: {{vmcluster: {{spec: {{vminsert: {{}}, vmselect: {{}}, vmstorage: {{}}}}}}}}\n  zones: [{}]\n",
        zones.join(", ")
    );
    let mut child = Command::new(BIN)
        .args(["check", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spec.zones: at most 16 zones are supported, got 17"),
        "{stderr}"
    );
}

#[test]
fn check_of_a_missing_file_exits_1() {
    let out = Command::new(BIN)
        .args(["check", "-f", "/nonexistent/file.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.yaml"));
}

#[test]
fn serve_refuses_to_start_without_usable_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--tls-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"])
        .arg(format!(
            "--tls-cert-file={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--tls-key-file={}",
            dir.path().join("tls.key").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.crt"), "{stderr}");
    // Text logs (the default) written to a pipe carry no terminal colour codes.
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}

fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn serve_logs_json_with_addresses_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new("ca").unwrap();
    let pair = ca.issue_serving("webhook", &["127.0.0.1"]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pair.key_pem).unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--tls-addr=127.0.0.1:0",
            "--http-addr=127.0.0.1:0",
            "--log-format=json",
        ])
        .arg(format!(
            "--tls-cert-file={}",
            dir.path().join("tls.crt").display()
        ))
        .arg(format!(
            "--tls-key-file={}",
            dir.path().join("tls.key").display()
        ))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let http_port = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let port = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|e| {
                e["http_addr"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            });
        if let Some(port) = port {
            break port;
        }
        assert!(Instant::now() < deadline, "no listen line in {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        get(http_port, "/readyz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get(http_port, "/metrics")
            .unwrap()
            .contains("vmdistributed_webhook_admission_requests_total")
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "every log line is JSON:\n{text}"
    );
    assert!(text.contains("SIGTERM"), "{text}");
}
