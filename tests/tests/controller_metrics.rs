//! Per-object metric series follow the objects and the Lease: the series of a deleted
//! `VMDistributed` go away (also when it never got the finalizer, so no cleanup step ran), and a
//! replica that lost the Lease exports no per-object gauges (its values would be stale: only the
//! leader reconciles).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use harness::controller_env::{Controller, Env};
use kube::api::DeleteParams;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(120);

/// The `operator_object_status` lines of the object `name`, and whether any zone gauge is
/// above zero.
async fn object_series(controller: &Controller, name: &str) -> Result<(Vec<String>, bool)> {
    let (_, body) = controller.http_get("/metrics").await?;
    let series = body
        .lines()
        .filter(|l| {
            l.starts_with("operator_object_status{") && l.contains(&format!("name=\"{name}\""))
        })
        .map(str::to_owned)
        .collect();
    let zones = body
        .lines()
        .filter(|l| l.starts_with("vmdistributed_zones{"))
        .any(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) != Some(0.0));
    Ok((series, zones))
}

async fn wait_series(
    controller: &Controller,
    name: &str,
    present: bool,
    what: &str,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (series, zones) = object_series(controller, name).await?;
        if series.is_empty() != present && zones == present {
            return Ok(series);
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: series {series:?}, zone gauges above 0: {zones}; log:\n{}",
                controller.process.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An object refused as `InvalidSpec` never gets the finalizer, so its deletion is immediate
/// and no cleanup step of the controller runs for it: its series must still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_a_deleted_object_disappear_from_metrics() -> Result<()> {
    let env = Env::new("ctl-metrics-gone", "300ms").await?;
    let controller = env.ready_controller().await?;
    env.apply(
        r"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: invalid
spec:
  zones: [{name: zone-a}, {name: zone-a}]
",
    )
    .await?;
    env.wait_cr("invalid", LONG, "InvalidSpec", |cr| {
        harness::controller_env::condition(cr, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await?;
    let series = wait_series(&controller, "invalid", true, "series of the invalid object").await?;
    assert!(
        series
            .iter()
            .any(|l| l.contains("status=\"failed\"") && l.ends_with(" 1")),
        "{series:?}"
    );
    let cr = env.crs().get("invalid").await?;
    assert!(
        cr.metadata.finalizers.unwrap_or_default().is_empty(),
        "the invalid object got a finalizer"
    );
    env.crs()
        .delete("invalid", &DeleteParams::default())
        .await?;
    wait_series(&controller, "invalid", false, "series after the deletion").await?;
    Ok(())
}

/// The leader is stopped (SIGSTOP) until the other replica took the Lease over, then continued:
/// it becomes a follower and its per-object gauges go, while the new leader exports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_the_lease_exports_no_per_object_gauges() -> Result<()> {
    let env = Env::new("ctl-metrics-follower", "300ms").await?;
    let replicas = env.replicas().await?;
    env.apply(&harness::manifests::three_zones(
        "followed", "v1.0.0", "20s", "0s",
    ))
    .await?;
    env.wait_operational("followed", LONG).await?;
    let (leader, follower, follower_name) = env.leader_and_follower(replicas).await?;
    wait_series(&leader, "followed", true, "the leader's series").await?;
    wait_series(&follower, "followed", false, "a follower's series").await?;

    leader.process.signal(Signal::SIGSTOP)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.lease_holder().await?.as_deref() != Some(follower_name) {
        if Instant::now() > deadline {
            leader.process.signal(Signal::SIGCONT)?;
            bail!("the other replica never took the Lease over");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_series(&follower, "followed", true, "the new leader's series").await?;
    leader.process.signal(Signal::SIGCONT)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while leader.metric("vmdistributed_leader ").await? != 0.0 {
        if Instant::now() > deadline {
            bail!("the old leader still claims to lead");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_series(&leader, "followed", false, "the old leader's series").await?;
    Ok(())
}
