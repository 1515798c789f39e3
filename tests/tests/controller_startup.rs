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

/// A ServiceAccount that may read VMDistributed and its CRD but not write children or status:
/// the controller exits 1 at start, naming every missing permission and none it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rbac_verbs_stop_the_controller_naming_each_one() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "rbac-forbidden").await?;
    let grants = format!(
        r"apiVersion: v1
kind: ServiceAccount
metadata:
  name: limited
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: limited
rules:
  - apiGroups: [operator.victoriametrics.com]
    resources: [vmdistributed]
    verbs: [get, list, watch, patch]
  - apiGroups: [operator.victoriametrics.com]
    resources: [vmclusters, vmsingles, vmagents, vmauths]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: limited
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: limited}}
subjects: [{{kind: ServiceAccount, name: limited, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {ns}-crd-reader
rules:
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {ns}-crd-reader
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-crd-reader}}
subjects: [{{kind: ServiceAccount, name: limited, namespace: {ns}}}]
"
    );
    harness::apply_yaml(&client, Some(&ns), &grants).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = cp.service_account_kubeconfig(&ns, "limited", dir.path())?;
    let controller = cp.spawn(
        ProcessSpec::new(
            harness::controller_binary()?,
            cp.log_path("controller-rbac"),
        )
        .args([
            "run".to_owned(),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".to_owned(),
            format!("--watch-namespace={ns}"),
            format!("--http-addr=127.0.0.1:{}", free_port()?),
        ]),
    )?;
    let status = wait_exit(&controller, Duration::from_secs(30)).await?;
    assert!(status.contains('1'), "exit status {status}");
    let log = controller.log();
    assert!(
        log.contains("RBAC forbids verbs this controller needs"),
        "{log}"
    );
    for missing in [
        "create vmclusters",
        "patch vmagents",
        "delete vmauths",
        "update vmdistributed/status",
        "update vmdistributed/finalizers",
        "create events",
    ] {
        assert!(log.contains(missing), "{missing} not named:\n{log}");
    }
    for granted in [
        "list vmdistributed (",
        "watch vmclusters (",
        "get customresourcedefinitions",
    ] {
        assert!(!log.contains(granted), "{granted} was granted:\n{log}");
    }
    // Nothing was reconciled: the CR namespace got no children.
    let clusters: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        &ns,
        &controller_support::child_resource(shared::names::ChildKind::VMCluster),
    );
    assert!(clusters.list(&Default::default()).await?.items.is_empty());
    Ok(())
}
