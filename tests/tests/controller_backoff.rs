//! A reconcile that fails permanently is retried ever more slowly: the controller's requests for
//! that object decay (exponential backoff with jitter) instead of repeating every 2 s forever, and
//! a new spec ends the wait at once.
//!
//! The permanent failure is real: a ValidatingAdmissionPolicy in the API server refuses every
//! status write of the test's `VMDistributed` objects (as the upstream CRD's status schema
//! refused the controller's status), so every reconcile fails right after its preflight.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use harness::controller_env::standalone_controller;
use harness::policy::{RefusalPolicy, delete_refusal_policy};
use harness::{ControlPlane, free_port};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

async fn metrics(port: u16) -> Result<String> {
    Ok(harness::http_get(port, "/metrics").await?.1)
}

/// The sum of the samples whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Status writes the controller sent (each one an API request; the policy refuses them all).
async fn status_writes(port: u16) -> Result<f64> {
    Ok(sample(
        &metrics(port).await?,
        "vmdistributed_child_writes_total{verb=\"status\"}",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_failing_object_is_retried_ever_more_slowly() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "backoff").await?;
    let policy = format!("refuse-status-{ns}");
    RefusalPolicy {
        name: &policy,
        namespace: &ns,
        api_version: "v1alpha1",
        operations: &["UPDATE"],
        resource: "vmdistributed/status",
        validation: "false",
        message: "status writes are refused in this namespace",
    }
    .apply(&client)
    .await?;
    let port = free_port()?;
    // No HTTP_PROXY (ProcessSpec::agent_metrics_proxy): no simulator runs here, so no VMAgent has
    // endpoints or becomes ready, and the controller never gets to poll one.
    let controller = cp.spawn(standalone_controller(
        cp,
        "controller-backoff",
        cp.kubeconfig_path(),
        Some(&ns),
        port,
    )?)?;
    let cr = json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "failing", "namespace": ns},
        "spec": {
            "vmauth": {"enabled": false},
            "zoneCommon": {"vmcluster": {"spec": {
                "vmstorage": {"replicaCount": 1},
                "vmselect": {"replicaCount": 1},
                "vminsert": {"replicaCount": 1}
            }}},
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }
    });
    // The policy takes effect asynchronously: the first status write must already be refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    harness::apply_value(&client, Some(&ns), cr, &PatchParams::apply("test").force()).await?;

    // The first refused status write starts the clock.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Ok(writes) = status_writes(port).await
            && writes >= 1.0
        {
            break writes;
        }
        if Instant::now() > deadline {
            bail!("no status write was attempted; log:\n{}", controller.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let started = Instant::now();
    let at = |secs: u64| started + Duration::from_secs(secs);
    tokio::time::sleep_until(at(15).into()).await;
    let after_15s = status_writes(port).await?;
    tokio::time::sleep_until(at(45).into()).await;
    let after_45s = status_writes(port).await?;
    let (first_window, second_window) = (after_15s - first, after_45s - after_15s);
    // Without backoff (a retry every 2 s) that is about 7 and then 15 attempts. With it the
    // delays double (2, 4, 8, 16, 32 s, each between half and all of that): about 3 attempts in
    // the first 15 s and 1 or 2 in the 30 s after, though the second window is twice as long.
    assert!(
        first_window >= 2.0 && second_window < first_window,
        "status writes: {first_window} in the first 15 s, {second_window} in the next 30 s; log:\n{}",
        controller.log()
    );
    let text = metrics(port).await?;
    assert!(
        sample(
            &text,
            "vmdistributed_reconcile_retries_total{reason=\"rejected\"}"
        ) >= 3.0,
        "{text}"
    );
    assert!(
        sample(&text, "vmdistributed_reconcile_backoff_objects") >= 1.0,
        "{text}"
    );

    // Fixed: the policy is gone and the spec changes; the new generation is not held back by
    // the (now long) backoff, and its status is written within seconds.
    delete_refusal_policy(&client, &policy).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let crs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &vmdistributed_runtime::resources::vmdistributed(),
    );
    crs.patch(
        "failing",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"zoneCommon": {"updatePause": "2s"}}})),
    )
    .await?;
    let fixed_at = Instant::now();
    let deadline = fixed_at + Duration::from_secs(15);
    loop {
        let live = crs.get("failing").await?;
        let observed = live
            .data
            .pointer("/status/observedGeneration")
            .and_then(serde_json::Value::as_i64);
        if observed.is_some() && observed == live.metadata.generation {
            break;
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the new generation's status was not written within 15 s; log:\n{}",
                controller.log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(controller);
    Ok(())
}
