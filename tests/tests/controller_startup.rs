//! Start-up checks of the controller against a control plane of its own: a missing CRD makes it
//! exit with a clear message; another project's VMDistributed CRD (the upstream operator's, whose
//! typed status lacks `rollout` and `zones`) keeps it up but not ready, saying what to change,
//! until this project's CRD is served.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use harness::controller_env::standalone_controller;
use harness::{ControlPlane, Options};
use harness::{free_port, http_get};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

const CRD: &str = "vmdistributed.operator.victoriametrics.com";

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
        let process = cp.spawn(standalone_controller(
            &cp,
            name,
            cp.kubeconfig_path(),
            None,
            port,
        )?)?;
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

/// The CRD replaced while the controller runs (the operator chart re-installing its own
/// VMDistributed CRD on upgrade): `/readyz` turns 503 saying what to change, the log says it
/// refuses to reconcile, a Warning event is recorded on the CRD, and this project's CRD being
/// applied again makes it ready again, all without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_replaced_at_runtime_makes_it_unready_until_restored() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::start(Options::default()).await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let port = free_port()?;
    let controller = cp.spawn(standalone_controller(
        &cp,
        "controller-swap",
        cp.kubeconfig_path(),
        None,
        port,
    )?)?;
    let wait_for = |code: u16, needle: &'static str, what: &'static str| {
        let controller = &controller;
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Ok((got, body)) = http_get(port, "/readyz").await
                    && got == code
                    && body.contains(needle)
                {
                    return Ok::<String, anyhow::Error>(body);
                }
                if Instant::now() > deadline {
                    bail!("/readyz never {what}; log:\n{}", controller.log());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(200, "ok", "became ready").await?;

    // Replace this project's CRD with the upstream shape (a PUT, as an upgrade of the other
    // chart would leave it).
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let mut crd = crds.get(CRD).await?;
    let foreign: CustomResourceDefinition = serde_json::from_value(foreign_crd())?;
    crd.spec = foreign.spec;
    crd.status = None;
    crds.replace(CRD, &Default::default(), &crd).await?;
    let body = wait_for(503, "rollout", "reported the replaced CRD").await?;
    assert!(body.contains("lacks `rollout` and `zones`"), "{body}");
    assert!(
        controller.log().contains("refusing to reconcile"),
        "{}",
        controller.log()
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("ForeignCRD")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(CRD)
            });
        if found {
            break;
        }
        if Instant::now() > deadline {
            bail!("no ForeignCRD event; log:\n{}", controller.log());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(controller.exit_status()?.is_none(), "the controller exited");

    // This project's CRD again: ready again, without a restart.
    harness::apply_crd_file(&client, &harness::project_crd_path()).await?;
    wait_for(200, "ok", "became ready again").await?;
    assert!(
        controller.log().contains("usable again: resuming"),
        "{}",
        controller.log()
    );
    drop(controller);
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
    let controller = cp.spawn(standalone_controller(
        cp,
        "controller-rbac",
        &kubeconfig,
        Some(&ns),
        free_port()?,
    )?)?;
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
        &vmdistributed_runtime::resources::child(shared::names::ChildKind::VMCluster),
    );
    assert!(clusters.list(&Default::default()).await?.items.is_empty());
    Ok(())
}
