//! Stopping a control plane leaves no processes and no temporary directories: on drop, and when
//! the process that owns it is killed outright.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harness::{ControlPlane, Options, create_namespace};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};

/// Alive = /proc/PID exists and is not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive and `dir` is gone; the error says what is left.
fn wait_gone(pids: &[u32], dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() && !dir.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after {timeout:?}: processes still alive {left:?}, directory exists: {}",
                dir.exists()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn dropping_an_owned_control_plane_leaves_no_processes_or_directories() -> Result<()> {
    let cp = ControlPlane::start(Options {
        controller_manager: true,
    })
    .await?;
    cp.install_crds().await?;
    cp.ensure_sim_operator().await?;
    let extra = cp.spawn(harness::ProcessSpec::new("sleep", cp.log_path("sleep")).arg("600"))?;
    let mut pids = cp.pids();
    pids.push(extra.pid());
    // supervisor, etcd, apiserver, controller-manager, sim operator, the extra process
    assert_eq!(pids.len(), 6, "{pids:?}");
    let dir = cp.dir().to_path_buf();
    assert!(dir.join("kubeconfig").is_file());
    assert!(
        pids.iter().all(|p| alive(*p)),
        "all running before the stop: {pids:?}"
    );

    // Even a handle that is never dropped (leaked, like anything in a static) does not outlive the
    // control plane: the supervisor kills every child it has.
    std::mem::forget(extra);
    drop(cp);
    wait_gone(&pids, &dir, Duration::from_secs(10))
}

#[tokio::test]
async fn killing_the_owning_process_leaves_no_processes_or_directories() -> Result<()> {
    // envtest-up owns a control plane like a test binary does; SIGKILL gives it no chance to clean
    // up, so only the supervisor pattern can.
    let mut child = Command::new(env!("CARGO_BIN_EXE_envtest-up"))
        .args(["--controller-manager", "--sim"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting envtest-up")?;
    let stdout = child.stdout.take().context("envtest-up stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let info: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("envtest-up said {line:?}"))?;
    let dir = PathBuf::from(info["dir"].as_str().context("dir")?);
    let mut pids: Vec<u32> = info["pids"]
        .as_array()
        .context("pids")?
        .iter()
        .filter_map(|p| p.as_u64().map(|p| p as u32))
        .collect();
    assert_eq!(
        pids.len(),
        5,
        "supervisor, etcd, apiserver, controller-manager, sim: {pids:?}"
    );
    assert!(dir.is_dir());
    pids.push(child.id());

    child.kill()?; // SIGKILL, by PID, of our own child
    child.wait()?;
    // The stdin pipe we hold is irrelevant: the supervisor's stdin belonged to envtest-up.
    wait_gone(&pids, &dir, Duration::from_secs(10))
}

#[tokio::test]
async fn controller_manager_deletes_namespaces() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.ensure_controller_manager().await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, "deleted").await?;
    let api: Api<Namespace> = Api::all(client);
    api.delete(&ns, &DeleteParams::default()).await?;
    // Without the namespace controller it would stay Terminating forever.
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(&ns).await?.is_some() {
        if Instant::now() > deadline {
            bail!("namespace {ns} still exists after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
