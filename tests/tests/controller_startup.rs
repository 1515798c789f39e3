//! Start-up checks of the controller against a control plane of its own: a missing CRD makes it
//! exit with a clear message; another project's VMDistributed CRD (the upstream operator's, whose
//! typed status lacks `rollout` and `zones`) keeps it up but not ready, saying what to change,
//! until this project's CRD is served.

mod controller_support;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use controller_support::{free_port, http_get};
use harness::{ControlPlane, Options, ProcessSpec};
use serde_json::json;

async fn wait_exit(process: &harness::SupervisedProcess, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.exit_status()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("the controller did not exit; log:\n{}", process.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The upstream operator's CRD shape, reduced: same names, a typed status without our fields.
fn foreign_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "vmdistributed.operator.victoriametrics.com"},
        "spec": {
            "group": "operator.victoriametrics.com",
            "names": {"kind": "VMDistributed", "plural": "vmdistributed", "singular": "vmdistributed", "listKind": "VMDistributedList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "properties": {
                        "updateStatus": {"type": "string"},
                        "reason": {"type": "string"}
                    }}
                }}}
            }]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_foreign_crds_are_refused_with_a_clear_message() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    let start = |name: &str| -> Result<(harness::SupervisedProcess, u16)> {
        let port = free_port()?;
        let process = cp.spawn(
            ProcessSpec::new(harness::controller_binary()?, cp.log_path(name)).args([
                "run".to_owned(),
                "--kubeconfig".to_owned(),
                cp.kubeconfig_path().display().to_string(),
                "--leader-elect=false".to_owned(),
                "--http-addr".to_owned(),
                format!("127.0.0.1:{port}"),
            ]),
        )?;
        Ok((process, port))
    };

    // No CRD at all: exit 1 naming the CRD and how to install it.
    let (missing, _) = start("controller-missing")?;
    let status = wait_exit(&missing, Duration::from_secs(30)).await?;
    assert!(status.contains('1'), "exit status {status}");
    let log = missing.log();
    assert!(
        log.contains("vmdistributed.operator.victoriametrics.com is not installed"),
        "{log}"
    );

    // The upstream CRD: stays up, /readyz fails and says what to change.
    harness::apply_value(
        &client,
        None,
        foreign_crd(),
        &kube::api::PatchParams::apply("test").force(),
    )
    .await?;
    harness::wait_crd_established(
        &client,
        "vmdistributed.operator.victoriametrics.com",
        Duration::from_secs(30),
    )
    .await?;
    let (foreign, port) = start("controller-foreign")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok((503, body)) = http_get(port, "/readyz").await
            && body.contains("rollout")
        {
            break body;
        }
        if Instant::now() > deadline {
            bail!(
                "/readyz never reported the foreign CRD; log:\n{}",
                foreign.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("lacks `rollout` and `zones`"), "{body}");
    assert!(
        foreign.log().contains("refusing to reconcile"),
        "{}",
        foreign.log()
    );
    assert!(foreign.exit_status()?.is_none(), "the controller exited");

    // Installing this project's CRD (and the VictoriaMetrics CRDs) makes it ready without a restart.
    cp.install_crds().await?;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok((200, _)) = http_get(port, "/readyz").await {
            break;
        }
        if Instant::now() > deadline {
            bail!("never became ready; log:\n{}", foreign.log());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(foreign);
    drop(missing);
    cp.stop()?;
    Ok(())
}
