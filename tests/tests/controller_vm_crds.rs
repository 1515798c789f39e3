//! The controller without some VictoriaMetrics CRDs (the operator and its CRDs uninstalled before
//! this project, a common order): it stays up and not ready, saying which CRDs are missing,
//! reconciles what it can, and lets deletion finish (a kind whose CRD is gone has no objects
//! left to delete or release), so no namespace stays `Terminating`. When the CRD comes back it
//! resumes without a restart.
//!
//! Each test has a control plane of its own: they delete CRDs.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use harness::controller_env::{Controller, Env, is_operational};
use harness::{ControlPlane, Options};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use shared::names::ChildKind;

const VMAUTH_CRD: &str = "vmauths.operator.victoriametrics.com";
const CLAIM: &str = "operator.victoriametrics.com/vmdistributed";

/// A control plane for one test, kept for the rest of the test process (the supervisor stops
/// its processes when the process exits).
async fn own_control_plane() -> Result<&'static ControlPlane> {
    harness::install_crypto_provider();
    Ok(Box::leak(Box::new(
        ControlPlane::start(Options::default()).await?,
    )))
}

/// Wait until `/readyz` answers `code` with a body containing `needle`; returns the body.
async fn wait_readyz(controller: &Controller, code: u16, needle: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((got, body)) = controller.http_get("/readyz").await
            && got == code
            && body.contains(needle)
        {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!(
                "/readyz never answered {code} with {needle:?}; log:\n{}",
                controller.process.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_gone(env: &Env, name: &str, controller: &Controller) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.crs().get_opt(name).await?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "VMDistributed {name} was never deleted (finalizer kept); log:\n{}",
                controller.process.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn claimed(env: &Env, kind: ChildKind, cr: &str) -> Result<Vec<String>> {
    Ok(env
        .children(kind)
        .list(&ListParams::default().labels(&format!("{CLAIM}={cr}")))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect())
}

fn assert_running(controller: &Controller) -> Result<()> {
    if let Some(status) = controller.process.exit_status()? {
        bail!(
            "the controller exited ({status}); log:\n{}",
            controller.process.log()
        );
    }
    Ok(())
}

/// The VMAuth CRD deleted while two objects run: the controller stays up and not ready naming
/// the missing CRD; deleting one object deletes its VMClusters and VMAgents and removes the
/// finalizer; re-installing the CRD makes it ready again and the other object gets its VMAuth
/// back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_crd_uninstalled_at_runtime_keeps_it_up_and_lets_deletion_finish() -> Result<()> {
    let cp = own_control_plane().await?;
    harness::install_crds(&cp.client().await?).await?;
    let env = Env::on(cp, "crd-gone", "300ms").await?;
    let controller = env.controller()?;
    controller.wait_ready(Duration::from_secs(60)).await?;
    for name in ["one", "two"] {
        env.apply(&harness::manifests::three_zones(
            name, "v1.0.0", "30s", "0s",
        ))
        .await?;
    }
    for name in ["one", "two"] {
        env.wait_operational(name, Duration::from_secs(90)).await?;
    }

    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.delete(VMAUTH_CRD, &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while crds.get_opt(VMAUTH_CRD).await?.is_some() {
        if Instant::now() > deadline {
            bail!("the VMAuth CRD was never deleted");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = wait_readyz(&controller, 503, "VMAuth").await?;
    assert!(
        body.contains("VictoriaMetrics operator CRDs are missing"),
        "{body}"
    );
    assert!(
        !body.contains("VMCluster"),
        "only the VMAuth CRD is missing: {body}"
    );

    env.crs().delete("one", &DeleteParams::default()).await?;
    wait_gone(&env, "one", &controller).await?;
    for kind in [ChildKind::VMCluster, ChildKind::VMAgent] {
        let left = claimed(&env, kind, "one").await?;
        assert!(left.is_empty(), "{kind} left behind: {left:?}");
    }
    // The other object's clusters are untouched.
    assert_eq!(claimed(&env, ChildKind::VMCluster, "two").await?.len(), 3);
    assert_running(&controller)?;
    let (code, _) = controller.http_get("/readyz").await?;
    assert_eq!(code, 503, "ready while the VMAuth CRD is missing");

    // The CRD back: ready again and the remaining object's VMAuth re-created, no restart.
    harness::install_vm_operator_crds(&env.client, &["VMAuth"]).await?;
    wait_readyz(&controller, 200, "ok").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.child(ChildKind::VMAuth, "two").await?.is_none() {
        if Instant::now() > deadline {
            bail!(
                "the VMAuth of two was never re-created; log:\n{}",
                controller.process.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_operational("two", Duration::from_secs(90)).await?;
    assert_running(&controller)?;
    assert!(
        !controller.process.log().contains("panicked"),
        "{}",
        controller.process.log()
    );
    Ok(())
}

/// Started while the VMAuth CRD is missing: the controller stays up and not ready naming it,
/// finishes the deletion of an object it finds (deleting the VMCluster that object created),
/// and leaves an object that needs a VMAuth alone until the CRD is installed, then rolls it
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_without_a_vm_crd_it_stays_up_and_deletion_works() -> Result<()> {
    let cp = own_control_plane().await?;
    let client = cp.client().await?;
    harness::apply_crd_file(&client, &harness::project_crd_path()).await?;
    harness::wait_crd_established(
        &client,
        "vmdistributed.operator.victoriametrics.com",
        Duration::from_secs(60),
    )
    .await?;
    harness::install_vm_operator_crds(&client, &["VMCluster", "VMAgent", "VMSingle"]).await?;
    let env = Env::on(cp, "crd-missing", "300ms").await?;

    // An object a previous controller was handling: finalizer set, one VMCluster created.
    let mut leaving: shared::VMDistributed = serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "leaving", "finalizers": ["apps.victoriametrics.com/finalizer"]},
        "spec": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}
    }))?;
    leaving = env.crs().create(&PostParams::default(), &leaving).await?;
    let uid = leaving.uid().unwrap_or_default();
    let cluster: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMCluster",
        "metadata": {
            "name": "leaving-zone-a",
            "labels": {CLAIM: "leaving", "app.kubernetes.io/managed-by": "vmdistributed",
                "operator.victoriametrics.com/zone": "zone-a"},
            "annotations": {"operator.victoriametrics.com/created-by": uid}
        },
        "spec": {"vminsert": {}, "vmselect": {}, "vmstorage": {}}
    }))?;
    env.children(ChildKind::VMCluster)
        .create(&PostParams::default(), &cluster)
        .await?;

    let controller = env.controller()?;
    let body = wait_readyz(&controller, 503, "VMAuth").await?;
    assert!(
        body.contains("VictoriaMetrics operator CRDs are missing"),
        "{body}"
    );
    env.apply(&harness::manifests::three_zones(
        "waiting", "v1.0.0", "30s", "0s",
    ))
    .await?;

    env.crs()
        .delete("leaving", &DeleteParams::default())
        .await?;
    wait_gone(&env, "leaving", &controller).await?;
    assert!(
        env.child(ChildKind::VMCluster, "leaving-zone-a")
            .await?
            .is_none(),
        "the VMCluster the object created was not deleted"
    );
    // Nothing was written for the object that needs the missing kind.
    assert!(
        claimed(&env, ChildKind::VMCluster, "waiting")
            .await?
            .is_empty()
    );
    assert_running(&controller)?;

    harness::install_vm_operator_crds(&client, &["VMAuth"]).await?;
    wait_readyz(&controller, 200, "ok").await?;
    let cr = env
        .wait_operational("waiting", Duration::from_secs(90))
        .await?;
    assert!(is_operational(&cr));
    assert!(env.child(ChildKind::VMAuth, "waiting").await?.is_some());
    assert_running(&controller)?;
    Ok(())
}
