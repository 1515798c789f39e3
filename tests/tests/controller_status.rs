//! The status tells the truth about what keeps a rollout from progressing, on a real API server
//! with the VictoriaMetrics operator's own CRDs and the simulated operator: a child write the API
//! server refuses, a child the operator reports `failed`, a preflight rejection whose cause goes
//! away without a change the controller watches; and what it records besides (the versions it
//! pins).
//!
//! The refusals are real: a ValidatingAdmissionPolicy in the API server refuses the writes, as a
//! cluster's own policy would.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use harness::controller_env::{Env, condition};
use harness::policy::{RefusalPolicy, delete_refusal_policy};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use shared::VMDistributed;
use shared::names::ChildKind;

const LONG: Duration = Duration::from_secs(90);

/// A two-zone CR with short durations, the VMAuth on.
fn manifest(name: &str, update_pause: &str, ready_timeout: &str) -> String {
    harness::manifests::one_replica(
        name,
        &["zone-a", "zone-b"],
        ready_timeout,
        update_pause,
        harness::manifests::VMAUTH_ONE_REPLICA,
        "",
    )
}

/// A ValidatingAdmissionPolicy (and its binding, both named `name`) that refuses creates and
/// updates of VMClusters in `ns` for which `refuse` (CEL) holds, with `message`.
async fn refuse_vmclusters(env: &Env, name: &str, refuse: &str, message: &str) -> Result<()> {
    RefusalPolicy {
        name,
        namespace: &env.ns,
        api_version: "v1beta1",
        operations: &["CREATE", "UPDATE"],
        resource: "vmclusters",
        validation: &format!("!({refuse})"),
        message,
    }
    .apply(&env.client)
    .await
}

/// Wait until a server-side dry-run apply of `patch` to VMCluster `name` is refused with a
/// message containing `needle`: the API server's policy informer has seen the policy.
async fn wait_policy_active(
    env: &Env,
    name: &str,
    patch: serde_json::Value,
    needle: &str,
) -> Result<()> {
    let api = env.children(ChildKind::VMCluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut params = PatchParams::apply("policy-probe").force();
    params.dry_run = true;
    loop {
        match api.patch(name, &params, &Patch::Apply(&patch)).await {
            Err(err) if err.to_string().contains(needle) => return Ok(()),
            other => {
                if Instant::now() > deadline {
                    bail!("the policy never took effect: {other:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reconciles that failed, for any reason but a conflict (a stale read decided again).
async fn failed_reconciles(controller: &harness::controller_env::Controller) -> Result<f64> {
    let (_, body) = controller.http_get("/metrics").await?;
    Ok(body
        .lines()
        .filter(|l| {
            l.starts_with("vmdistributed_reconcile_errors_total{")
                && !l.contains("reason=\"conflict\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

fn zone_message(cr: &VMDistributed, zone: &str) -> Option<String> {
    cr.status
        .as_ref()?
        .zones
        .iter()
        .find(|z| z.name == zone)?
        .message
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_child_write_is_in_the_status_at_once_with_one_event_and_clears_itself()
-> Result<()> {
    let env = Env::new("ctl-refused", "300ms").await?;
    let controller = env.ready_controller().await?;
    // A pause between the zones long enough to bring in the policy after the preflight of the
    // change passed and zone-a is done: only the real write of zone-b meets it.
    env.apply(&manifest("refused", "6s", "5m")).await?;
    let operational = env.wait_operational("refused", LONG).await?;
    // The versions pinned where the spec sets none are recorded (the agents set no version;
    // the clusters do).
    let pinned = operational
        .status
        .as_ref()
        .and_then(|s| s.pinned_versions.clone());
    assert_eq!(
        pinned,
        Some(shared::versions::pinned_for(
            &shared::defaults::apply_defaults(&operational),
            &shared::versions::PinnedVersions::operator_defaults()
        )),
    );
    assert_eq!(
        pinned.and_then(|p| p.vmagent).as_deref(),
        Some(shared::versions::OPERATOR_DEFAULT_VERSION)
    );

    env.patch_spec(
        "refused",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    env.wait_cr("refused", LONG, "zone-a updated, the pause running", |cr| {
        let rollout = cr
            .status
            .as_ref()
            .and_then(|s| s.rollout.clone())
            .unwrap_or_default();
        rollout.zone.is_none() && rollout.pause_until.is_some()
    })
    .await?;
    let policy = format!("freeze-{}", env.ns);
    let message = "zone-b is frozen by the change board";
    refuse_vmclusters(
        &env,
        &policy,
        "object.metadata.name == 'refused-zone-b' && has(object.spec.clusterVersion) && object.spec.clusterVersion == 'v1.111.0-cluster'",
        message,
    )
    .await?;
    wait_policy_active(
        &env,
        "refused-zone-b",
        json!({
            "apiVersion": ChildKind::API_VERSION, "kind": "VMCluster",
            "metadata": {"name": "refused-zone-b"},
            "spec": {"clusterVersion": "v1.111.0-cluster"}
        }),
        message,
    )
    .await?;

    // The first refused apply is reported by the reconcile that met it, before any retry.
    let refused = env
        .wait_cr("refused", LONG, "Degraded=True, ChildRejected", |cr| {
            condition(cr, "Degraded").is_some_and(|c| c.status == "True")
        })
        .await?;
    let failures = failed_reconciles(&controller).await?;
    ensure!(
        failures <= 1.0,
        "reported only after {failures} failed reconciles"
    );
    let degraded = condition(&refused, "Degraded").cloned().expect("Degraded");
    ensure!(degraded.reason == "ChildRejected", "{degraded:?}");
    ensure!(
        degraded.message.contains(
            "the API server refused the apply of VMCluster refused-zone-b in zone zone-b"
        ) && degraded.message.contains(message),
        "{degraded:?}"
    );
    let status = refused.status.clone().unwrap_or_default();
    ensure!(
        status.update_status == Some(shared::api::UpdateStatus::Failed),
        "{status:?}"
    );
    ensure!(
        zone_message(&refused, "zone-b").is_some_and(|m| m.contains(message)),
        "{:?}",
        status.zones
    );
    ensure!(
        zone_message(&refused, "zone-a").is_none(),
        "{:?}",
        status.zones
    );

    // Retried with backoff (1-2 s, then 2-4 s, then 4-8 s): still one event for the one cause.
    let retried = Instant::now();
    while failed_reconciles(&controller).await? < 3.0 {
        ensure!(
            retried.elapsed() < Duration::from_secs(30),
            "not retried; log:\n{}",
            controller.process.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events: Vec<_> = env
        .events("refused")
        .await?
        .into_iter()
        .filter(|(_, reason, _)| reason == "ChildRejected")
        .collect();
    ensure!(events.len() == 1, "{events:?}");
    ensure!(
        events[0].0 == "Warning" && events[0].2.contains(message),
        "{events:?}"
    );

    // The policy goes: the next attempt goes through, the report clears and the rollout
    // finishes, in the same controller process.
    let pid = controller.process.pid();
    delete_refusal_policy(&env.client, &policy).await?;
    let done = env.wait_operational("refused", LONG).await?;
    ensure!(
        condition(&done, "Degraded").is_some_and(|c| c.status == "False"),
        "{:?}",
        done.status
    );
    ensure!(zone_message(&done, "zone-b").is_none(), "{:?}", done.status);
    ensure!(controller.process.pid() == pid);
    let events = env.events("refused").await?;
    ensure!(
        events
            .iter()
            .filter(|(_, r, _)| r == "ChildRejected")
            .count()
            == 1,
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_reporting_failed_halts_the_rollout_at_once_with_its_reason() -> Result<()> {
    let env = Env::new("ctl-failed", "300ms").await?;
    let _controller = env.ready_controller().await?;
    // readyTimeout is long: the halt must not wait for it.
    env.apply(&manifest("failing", "1s", "10m")).await?;
    env.wait_operational("failing", LONG).await?;
    env.patch_child_meta(
        ChildKind::VMCluster,
        "failing-zone-b",
        json!({"annotations": {harness::sim::FAIL_ANNOTATION: "true"}}),
    )
    .await?;
    env.patch_spec(
        "failing",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    let started = Instant::now();
    let halted = env
        .wait_cr("failing", Duration::from_secs(60), "Degraded=True", |cr| {
            condition(cr, "Degraded").is_some_and(|c| c.status == "True")
        })
        .await?;
    ensure!(started.elapsed() < Duration::from_secs(60));
    let degraded = condition(&halted, "Degraded").cloned().expect("Degraded");
    ensure!(
        degraded.reason == "ZoneNotReady"
            && degraded.message.contains(&format!(
                "VMCluster failing-zone-b reports failed: {}",
                harness::sim::FAIL_REASON
            )),
        "{degraded:?}"
    );
    let rollout = halted
        .status
        .as_ref()
        .and_then(|s| s.rollout.clone())
        .unwrap_or_default();
    ensure!(
        rollout.zone.as_deref() == Some("zone-b")
            && rollout.phase == Some(shared::api::ZonePhase::Applying),
        "{rollout:?}"
    );
    // The operator recovers: the rollout resumes and finishes.
    env.patch_child_meta(
        ChildKind::VMCluster,
        "failing-zone-b",
        json!({"annotations": {harness::sim::FAIL_ANNOTATION: null}}),
    )
    .await?;
    env.wait_operational("failing", LONG).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_rejection_is_dry_run_again_when_its_hold_is_over() -> Result<()> {
    let env = Env::new("ctl-recheck", "300ms").await?;
    // A short hold: 1 s, then 2 s, 4 s... (2 min by default).
    let controller =
        env.controller_with(&["--leader-elect=false", "--preflight-recheck-base=1s"])?;
    controller.wait_ready(Duration::from_secs(30)).await?;
    let policy = format!("no-clusters-{}", env.ns);
    let message = "no new clusters this week";
    refuse_vmclusters(&env, &policy, "true", message).await?;
    // The policy is in force once it refuses a dry-run create.
    wait_policy_active(
        &env,
        "probe",
        json!({
            "apiVersion": ChildKind::API_VERSION, "kind": "VMCluster",
            "metadata": {"name": "probe"}, "spec": {}
        }),
        message,
    )
    .await?;
    env.apply(&manifest("recheck", "1s", "5m")).await?;
    let rejected = env
        .wait_cr("recheck", LONG, "preflight rejection", |cr| {
            condition(cr, "Ready").is_some_and(|c| {
                c.reason == "InvalidSpec"
                    && c.message.contains("preflight")
                    && c.message.contains(message)
            })
        })
        .await?;
    let generation = rejected.metadata.generation;
    // The cause goes away outside anything the controller watches (no CRD, no spec change).
    delete_refusal_policy(&env.client, &policy).await?;
    let done = env.wait_operational("recheck", LONG).await?;
    ensure!(done.metadata.generation == generation);
    ensure!(
        done.status.as_ref().and_then(|s| s.preflight_generation) == generation,
        "{:?}",
        done.status
    );
    Ok(())
}

/// Whether the latest recorded `kind` `name` at or before the record `upto` is operational at
/// its current generation.
fn ready_at(
    records: &[harness::state_recorder::Record],
    upto: usize,
    kind: &str,
    name: &str,
) -> bool {
    records[..upto]
        .iter()
        .rev()
        .find(|r| r.kind == kind && r.name == name)
        .is_some_and(|r| {
            !r.deleted && shared::children::ChildObject::from_value(&r.object, None).is_ready()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_zones_in_every_written_status_counts_the_zones_as_its_writes_leave_them()
-> Result<()> {
    let env = Env::new("ctl-readyzones", "1s").await?;
    let recorder = harness::state_recorder::StateRecorder::start(&env.client, &env.ns).await?;
    let (_controller, _) = env
        .operational("counted", &manifest("counted", "1s", "5m"), LONG)
        .await?;
    env.patch_spec(
        "counted",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    env.wait_cr("counted", LONG, "rolled out", |cr| {
        harness::controller_env::is_operational(cr) && cr.metadata.generation == Some(2)
    })
    .await?;
    recorder.check("counted")?;
    let records = recorder.records();
    let mut applying = 0;
    for (i, record) in records.iter().enumerate() {
        if record.kind != "VMDistributed" || record.deleted {
            continue;
        }
        let cr: VMDistributed = serde_json::from_value(record.object.clone())?;
        let Some(status) = cr.status else { continue };
        if status.zones.is_empty() {
            continue;
        }
        let ready: Vec<&str> = status
            .zones
            .iter()
            .filter(|z| z.ready)
            .map(|z| z.name.as_str())
            .collect();
        ensure!(
            status.ready_zones == Some(format!("{}/{}", ready.len(), status.zones.len())),
            "readyZones {:?} with zones {:?}",
            status.ready_zones,
            status.zones
        );
        // A zone counted ready is ready.
        for zone in status.zones.iter().filter(|z| z.ready) {
            let backend = zone.vmcluster.as_deref().unwrap_or_default();
            let agent = zone.vmagent.as_deref().unwrap_or_default();
            ensure!(
                ready_at(&records, i, "VMCluster", backend)
                    && ready_at(&records, i, "VMAgent", agent),
                "zone {} counted ready at revision {:?} while its children are not",
                zone.name,
                record.rv
            );
        }
        // The status that authorizes a zone's apply counts it as the apply leaves it.
        let rollout = status.rollout.clone().unwrap_or_default();
        if rollout.phase == Some(shared::api::ZonePhase::Applying)
            && let Some(zone) = status
                .zones
                .iter()
                .find(|z| Some(z.name.as_str()) == rollout.zone.as_deref())
            && !zone.current
        {
            applying += 1;
            ensure!(
                !zone.ready,
                "zone {} counted ready in the status that authorizes its apply: {:?}",
                zone.name,
                status.ready_zones
            );
        }
    }
    ensure!(applying >= 2, "{applying} statuses authorized an apply");
    Ok(())
}
