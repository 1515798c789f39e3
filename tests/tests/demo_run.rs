//! The README's first command: `vmd-demo` (behind `./scripts/demo`) runs a zone-by-zone rollout on
//! its own control plane. These tests run the real program end to end and check what it prints,
//! its exit code, and that it leaves no process or directory behind. Timeouts are generous and
//! nothing is timed: the machine may be busy.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Each demo run starts a whole control plane and rollout; one at a time keeps a 2-core machine
/// responsive.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const RUN_TIMEOUT: Duration = Duration::from_secs(25 * 60);

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        // The demo runs the webhook and controller binaries next to it; build them as the script
        // would.
        harness::webhook_binary().expect("building vmdistributed-webhook");
        harness::controller_binary().expect("building vmdistributed-controller");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmd-demo"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting vmd-demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Run {
            child,
            lines,
            output: Vec::new(),
            stderr,
        }
    }

    /// Reads lines until one contains `needle`; false on timeout or end of output.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.output.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the exit (killing the demo by PID after `timeout`) and returns status and the
    /// whole stdout and stderr.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for vmd-demo") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("reaping vmd-demo");
                self.output.extend(self.lines.try_iter());
                panic!(
                    "vmd-demo did not finish within {timeout:?} ({status}); output:\n{}",
                    self.output.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // The reader thread ends at EOF; collect what is left.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.output.push(line);
        }
        let stderr = self.stderr.join().unwrap_or_default();
        (status, self.output.join("\n"), stderr)
    }
}

/// The control plane directory and every PID the demo reported stopping.
fn cleanup_facts(stdout: &str) -> (Option<PathBuf>, Vec<i32>) {
    let dir = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("removed "))
        .map(PathBuf::from);
    let mut pids = Vec::new();
    for line in stdout.lines().filter(|l| l.trim().starts_with("stopped ")) {
        let Some(inner) = line.split("(pid").nth(1) else {
            continue;
        };
        let inner = inner.split(')').next().unwrap_or_default();
        pids.extend(
            inner
                .trim_start_matches('s')
                .split(',')
                .filter_map(|p| p.trim().parse::<i32>().ok()),
        );
    }
    (dir, pids)
}

fn assert_cleaned_up(stdout: &str) {
    let (dir, pids) = cleanup_facts(stdout);
    let dir = dir.unwrap_or_else(|| panic!("no 'removed DIR' line in:\n{stdout}"));
    assert!(!dir.exists(), "{} still exists", dir.display());
    // supervisor, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
    // vm-pod-standin, vm-operator, webhook, controller
    assert!(
        pids.len() >= 10,
        "expected at least 10 stopped PIDs, got {pids:?}:\n{stdout}"
    );
    for pid in pids {
        // Signal 0 only checks existence. The processes were reaped by their parent, so a
        // surviving PID would mean something is still running.
        let alive = kill(Pid::from_raw(pid), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
        assert!(
            !alive,
            "process {pid} is still running after the demo exited"
        );
    }
}

fn assert_summary(stdout: &str) {
    assert!(
        stdout.contains("zones updated in order: zone-a, zone-b, zone-c"),
        "zones not updated in spec order:\n{stdout}"
    );
    assert!(
        stdout.contains("invariants: all held"),
        "invariants not held:\n{stdout}"
    );
    assert!(
        !stdout.contains("[FAILED]"),
        "an invariant failed:\n{stdout}"
    );
    // The rejected apply shows the webhook's own message with the field path.
    assert!(
        stdout.contains("admission webhook")
            && stdout.contains("spec.zones[0].vmcluster.ref")
            && stdout.contains(
                "cross-namespace reference: VMDistributed demo/cross-namespace cannot reference \
                 VMCluster team-b/shared-cluster"
            ),
        "no cross-namespace rejection from the webhook:\n{stdout}"
    );
    assert!(
        stdout.contains("kubectl get vmd -n demo -w") && stdout.contains("KUBECONFIG="),
        "no kubectl line:\n{stdout}"
    );
    // The real operator replaced every zone's VMCluster pods with the new version.
    for zone in ["zone-a", "zone-b", "zone-c"] {
        assert!(
            stdout.contains(&format!("{zone}: VMCluster pods now [3 new]")),
            "{zone}'s pods were not all replaced:\n{stdout}"
        );
    }
    // Every zone was seen out of the load balancer during the rollout.
    for zone in ["zone-a", "zone-b", "zone-c"] {
        assert!(
            stdout.contains(&format!("{zone}: out of the load balancer for")),
            "{zone} never left the load balancer:\n{stdout}"
        );
    }
}

#[test]
fn demo_no_wait_rolls_zones_out_in_spec_order_and_cleans_up() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let run = Run::start(&["--no-wait"]);
    let (status, stdout, stderr) = run.finish(RUN_TIMEOUT);
    assert!(
        status.success(),
        "vmd-demo --no-wait failed ({status}):\n{stdout}\nstderr:\n{stderr}"
    );
    assert_summary(&stdout);
    // The defaults came from the mutating webhook.
    assert!(
        stdout.contains("spec.backendType: \"VMCluster\""),
        "no defaults shown:\n{stdout}"
    );
    assert_cleaned_up(&stdout);
}

#[test]
fn demo_keeps_running_until_sigint_then_stops_everything() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&[]);
    let waiting = run.wait_for("Press Ctrl-C", RUN_TIMEOUT);
    if !waiting {
        let (status, stdout, stderr) = run.finish(Duration::from_secs(60));
        panic!("the demo never reached its waiting state ({status}):\n{stdout}\nstderr:\n{stderr}");
    }
    // Still running: the waiting state lasts until a signal.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        run.child.try_wait().expect("try_wait").is_none(),
        "the demo exited without being interrupted"
    );
    let pid = Pid::from_raw(i32::try_from(run.child.id()).expect("pid fits"));
    kill(pid, Signal::SIGINT).expect("sending SIGINT to vmd-demo");
    let (status, stdout, stderr) = run.finish(Duration::from_secs(120));
    assert!(
        status.success(),
        "vmd-demo failed after SIGINT ({status}):\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Interrupted."), "{stdout}");
    assert_summary(&stdout);
    assert_cleaned_up(&stdout);
}
