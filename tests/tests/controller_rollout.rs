//! The controller as a real process against a real API server with the simulated VictoriaMetrics
//! operator: creation of the seed example, zone-by-zone rollouts, a zone that never becomes
//! ready, pausing, and zero writes at steady state. Every test replays all states it saw through
//! watches and checks the rollout invariants (docs/rollout.md) on each of them.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, ensure};
use harness::controller_env::{Controller, Env, SIM_STUCK, condition, is_operational};
use harness::state_recorder::StateRecorder;
use kube::ResourceExt;
use serde_json::{Value, json};
use shared::api::UpdateStatus;
use shared::names::ChildKind;

const LONG: Duration = Duration::from_secs(90);

/// The seed example with short durations and a cluster version to change.
fn manifest(name: &str, zones: &[&str], ready_timeout: &str, update_pause: &str) -> String {
    harness::manifests::one_replica(
        name,
        zones,
        ready_timeout,
        update_pause,
        harness::manifests::VMAUTH_ONE_REPLICA,
        "        retentionPeriod: \"14\"\n",
    )
}

/// A controller that has brought `manifest(name, zones, ready_timeout, update_pause)` to
/// `operational`.
async fn rolled_out(
    env: &Env,
    name: &str,
    zones: &[&str],
    ready_timeout: &str,
    update_pause: &str,
) -> Result<Controller> {
    let (controller, _) = env
        .operational(
            name,
            &manifest(name, zones, ready_timeout, update_pause),
            LONG,
        )
        .await?;
    Ok(controller)
}

fn labels(obj: &Value) -> Value {
    obj.pointer("/metadata/labels")
        .cloned()
        .unwrap_or(Value::Null)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_becomes_operational_with_children_as_specified() -> Result<()> {
    let env = Env::new("ctl-seed", "500ms").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let controller = env.ready_controller().await?;
    let seed = std::fs::read_to_string(harness::workspace_root().join("examples/seed.yaml"))?
        .replace(
            "  zoneCommon:\n",
            "  zoneCommon:\n    readyTimeout: 20s\n    updatePause: 1s\n",
        );
    env.apply(&seed).await?;
    let cr = env.wait_operational("demo", LONG).await?;
    let uid = cr.uid().unwrap_or_default();
    let ns = env.ns.as_str();

    let status = cr.status.clone().unwrap_or_default();
    assert_eq!(status.ready_zones.as_deref(), Some("2/2"));
    assert_eq!(status.zones.len(), 2);
    for zone in &status.zones {
        assert!(
            zone.ready && zone.current && zone.in_read && zone.in_write,
            "{zone:?}"
        );
    }
    assert!(
        cr.finalizers()
            .iter()
            .any(|f| f == "apps.victoriametrics.com/finalizer")
    );

    let owner = json!([{
        "apiVersion": "operator.victoriametrics.com/v1alpha1", "kind": "VMDistributed",
        "name": "demo", "uid": uid, "controller": true, "blockOwnerDeletion": true
    }]);
    for zone in ["zone-a", "zone-b"] {
        let name = format!("demo-{zone}");
        let expected_labels = json!({
            "app.kubernetes.io/managed-by": "vmdistributed",
            "operator.victoriametrics.com/vmdistributed": "demo",
            "operator.victoriametrics.com/zone": zone,
        });
        let cluster = env.child_value(ChildKind::VMCluster, &name).await?;
        assert_eq!(labels(&cluster), expected_labels);
        assert_eq!(
            annotation(&cluster, "operator.victoriametrics.com/created-by"),
            Some(uid.as_str())
        );
        assert!(
            annotation(&cluster, "operator.victoriametrics.com/spec-hash")
                .is_some_and(|h| !h.is_empty())
        );
        assert_eq!(cluster.pointer("/metadata/ownerReferences"), Some(&owner));
        // The seed sets no version: the controller pins its default (docs/rollout.md "Pinned
        // versions").
        assert_eq!(
            cluster["spec"],
            json!({
                "clusterVersion": shared::versions::OPERATOR_DEFAULT_CLUSTER_VERSION,
                "retentionPeriod": "14",
                "vmstorage": {"replicaCount": 1, "storage": {"volumeClaimTemplate": {"spec": {
                    "resources": {"requests": {"storage": "10Gi"}}}}}},
                "vmselect": {"replicaCount": 1},
                "vminsert": {"replicaCount": 1}
            })
        );

        let agent = env.child_value(ChildKind::VMAgent, &name).await?;
        assert_eq!(labels(&agent), expected_labels);
        assert_eq!(
            annotation(&agent, "operator.victoriametrics.com/created-by"),
            Some(uid.as_str())
        );
        assert_eq!(agent.pointer("/metadata/ownerReferences"), Some(&owner));
        assert_eq!(agent.pointer("/spec/replicaCount"), Some(&json!(1)));
        assert_eq!(
            agent.pointer("/spec/image/tag"),
            Some(&json!(shared::versions::OPERATOR_DEFAULT_VERSION))
        );
        assert_eq!(agent.pointer("/spec/ingestOnlyMode"), Some(&json!(true)));
        assert_eq!(
            agent.pointer("/spec/remoteWriteSettings/useMultiTenantMode"),
            Some(&json!(true))
        );
        let urls: Vec<&str> = agent
            .pointer("/spec/remoteWrite")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|e| e["url"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            urls,
            vec![
                format!(
                    "http://vminsert-demo-zone-a.{ns}.svc:8480/insert/multitenant/prometheus/api/v1/write"
                ),
                format!(
                    "http://vminsert-demo-zone-b.{ns}.svc:8480/insert/multitenant/prometheus/api/v1/write"
                ),
            ]
        );
    }

    let auth = env.child_value(ChildKind::VMAuth, "demo").await?;
    assert_eq!(
        labels(&auth),
        json!({"app.kubernetes.io/managed-by": "vmdistributed",
               "operator.victoriametrics.com/vmdistributed": "demo"})
    );
    assert_eq!(
        annotation(&auth, "operator.victoriametrics.com/created-by"),
        Some(uid.as_str())
    );
    assert_eq!(auth.pointer("/metadata/ownerReferences"), Some(&owner));
    assert_eq!(auth.pointer("/spec/replicaCount"), Some(&json!(1)));
    assert_eq!(
        auth.pointer("/spec/waitForConfigReload"),
        Some(&json!(true))
    );
    let objects =
        json!([{"name": "demo-zone-a", "namespace": ns}, {"name": "demo-zone-b", "namespace": ns}]);
    assert_eq!(
        auth.pointer("/spec/defaultTargetRefs"),
        Some(&json!([
            {"name": "write", "crd": {"kind": "VMAgent", "name": "", "namespace": "", "objects": objects},
             "paths": ["/insert/.+", "/api/v1/write"],
             "load_balancing_policy": "least_loaded", "retry_status_codes": [500, 502, 503]},
            {"name": "read", "crd": {"kind": "VMCluster/vmselect", "name": "", "namespace": "", "objects": objects},
             "paths": ["/select/.+", "/admin/tenants", "/flags", "/metrics"],
             "load_balancing_policy": "first_available", "retry_status_codes": [500, 502, 503]}
        ]))
    );

    let replay = recorder.check("demo")?;
    ensure!(
        replay.states > 5,
        "too few states recorded: {}",
        replay.states
    );
    // Creation is not a rollout: no zone was excluded or updated.
    assert!(replay.exclusions.is_empty(), "{replay:?}");
    let (_, metrics) = controller.http_get("/metrics").await?;
    for family in [
        "vmdistributed_reconciles_total",
        "vmdistributed_reconcile_duration_seconds_bucket",
        "vmdistributed_zones{state=\"ready\"} 2",
        "vmdistributed_rollout_duration_seconds",
        "vmdistributed_seconds_since_last_successful_reconcile",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from /metrics:\n{metrics}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_version_change_rolls_zones_one_at_a_time_in_order() -> Result<()> {
    let env = Env::new("ctl-roll", "500ms").await?;
    let controller = rolled_out(&env, "roll", &["zone-a", "zone-b", "zone-c"], "20s", "2s").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "roll",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    env.wait_cr("roll", LONG, "rollout finished", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(2)
    })
    .await?;
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let cluster = env
            .child_value(ChildKind::VMCluster, &format!("roll-{zone}"))
            .await?;
        assert_eq!(
            cluster.pointer("/spec/clusterVersion"),
            Some(&json!("v1.111.0-cluster"))
        );
    }

    // Each zone's agent was drained before it left the writes: its queues were read through the
    // simulator's stand-in for vmagent /metrics.
    let (polls, by_agent) = harness::vmagent_standin::answered(env.agent_metrics_proxy()).await?;
    assert!(
        polls > 0,
        "the controller never read a vmagent's queues through {}: {by_agent:?}",
        env.agent_metrics_proxy()
    );

    let replay = recorder.check("roll")?;
    // Zones were written in spec order, each while it was the one in phase Applying.
    let written: Vec<&str> = replay
        .child_spec_writes
        .iter()
        .map(|(zone, ..)| zone.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Vec::new(), |mut acc, z| {
            if acc.last() != Some(&z) {
                acc.push(z);
            }
            acc
        });
    assert_eq!(written, ["zone-a", "zone-b", "zone-c"], "{replay:?}");
    assert!(
        replay
            .child_spec_writes
            .iter()
            .all(|(_, kind, ..)| *kind == ChildKind::VMCluster),
        "only the clusters changed: {replay:?}"
    );
    // Each zone went through Excluding, Applying, Restoring, one zone after the other.
    let expected: Vec<(String, String)> = ["zone-a", "zone-b", "zone-c"]
        .iter()
        .flat_map(|z| {
            ["Excluding", "Applying", "Restoring"]
                .iter()
                .map(move |p| ((*z).to_owned(), (*p).to_owned()))
        })
        .collect();
    assert_eq!(replay.phases, expected);
    // Each zone left the VMAuth while under update and came back.
    assert_eq!(
        replay.exclusions,
        ["zone-a", "zone-b", "zone-c"],
        "{replay:?}"
    );
    let all: Vec<String> = ["roll-zone-a", "roll-zone-b", "roll-zone-c"]
        .map(String::from)
        .to_vec();
    assert_eq!(replay.write_refs.last(), Some(&all));
    let without = |z: &str| {
        all.iter()
            .filter(|a| !a.ends_with(z))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        replay.write_refs,
        vec![
            all.clone(),
            without("zone-a"),
            all.clone(),
            without("zone-b"),
            all.clone(),
            without("zone-c"),
            all.clone()
        ]
    );
    // updatePause: the next zone entered Excluding no earlier than the previous pauseUntil.
    let mut pause_until = None;
    let mut checked = 0;
    for record in recorder
        .records()
        .iter()
        .filter(|r| r.kind == "VMDistributed")
    {
        let rollout = record
            .object
            .pointer("/status/rollout")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(until) = rollout.get("pauseUntil").and_then(Value::as_str) {
            pause_until = Some(until.parse::<jiff::Timestamp>()?);
        }
        if rollout.get("phase").and_then(Value::as_str) == Some("Excluding")
            && let (Some(until), Some(since)) = (
                pause_until,
                rollout.get("phaseSince").and_then(Value::as_str),
            )
        {
            let since = since.parse::<jiff::Timestamp>()?;
            ensure!(
                since >= until,
                "zone started at {since} before the pause ended at {until}"
            );
            checked += 1;
            pause_until = None;
        }
    }
    assert!(
        checked >= 2,
        "the pause between zones was not observed ({checked})"
    );
    let events = env.events("roll").await?;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    for reason in ["RolloutStarted", "ZoneUpdated", "RolloutFinished"] {
        assert!(
            reasons.contains(&reason),
            "{reason} missing from {events:?}"
        );
    }
    assert_eq!(
        reasons.iter().filter(|r| **r == "ZoneUpdated").count(),
        3,
        "{events:?}"
    );
    drop(controller);
    Ok(())
}

/// The live VMAuth's target refs.
async fn routes(env: &Env, vmauth: &str) -> Result<shared::rollout::membership::LiveRefs> {
    let auth = env.child_value(ChildKind::VMAuth, vmauth).await?;
    Ok(shared::rollout::membership::LiveRefs::from_vmauth_spec(
        &auth["spec"],
    ))
}

/// `spec.vminsert.replicaCount` of a live VMCluster.
async fn vminsert_replicas(env: &Env, cluster: &str) -> Result<Option<Value>> {
    let cluster = env.child_value(ChildKind::VMCluster, cluster).await?;
    Ok(cluster.pointer("/spec/vminsert/replicaCount").cloned())
}

/// docs/rollout.md "Traffic modes and vminsert": a zone switched to `read-only` is rolled like any
/// other change: it leaves the VMAuth, its vminsert is scaled to zero, and it comes back for reads
/// only; back to `read-write`, it gets its replicas and the writes again. No other zone is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_zone_runs_no_vminsert_and_takes_no_writes() -> Result<()> {
    let env = Env::new("ctl-traffic", "300ms").await?;
    let controller = rolled_out(
        &env,
        "traffic",
        &["zone-a", "zone-b", "zone-c"],
        "20s",
        "1s",
    )
    .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let zones = |mode: &str| {
        json!({"zones": [
            {"name": "zone-a"},
            {"name": "zone-b", "trafficMode": mode},
            {"name": "zone-c"}
        ]})
    };
    env.patch_spec("traffic", zones("read-only")).await?;
    env.wait_cr("traffic", LONG, "read-only applied", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(2)
    })
    .await?;
    assert_eq!(
        vminsert_replicas(&env, "traffic-zone-b").await?,
        Some(json!(0))
    );
    for zone in ["zone-a", "zone-c"] {
        assert_eq!(
            vminsert_replicas(&env, &format!("traffic-{zone}")).await?,
            Some(json!(1)),
            "{zone}"
        );
    }
    let refs = routes(&env, "traffic").await?;
    assert!(!refs.write.contains("traffic-zone-b"), "{refs:?}");
    assert!(refs.read.contains("traffic-zone-b"), "{refs:?}");
    assert!(refs.write.contains("traffic-zone-a") && refs.write.contains("traffic-zone-c"));

    env.patch_spec("traffic", zones("read-write")).await?;
    env.wait_cr("traffic", LONG, "read-write applied", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(3)
    })
    .await?;
    assert_eq!(
        vminsert_replicas(&env, "traffic-zone-b").await?,
        Some(json!(1))
    );
    let refs = routes(&env, "traffic").await?;
    assert!(
        refs.write.contains("traffic-zone-b") && refs.read.contains("traffic-zone-b"),
        "{refs:?}"
    );

    let replay = recorder.check("traffic")?;
    assert!(
        replay
            .child_spec_writes
            .iter()
            .all(|(zone, kind, ..)| zone == "zone-b" && *kind == ChildKind::VMCluster),
        "only zone-b's cluster changed: {replay:?}"
    );
    assert_eq!(
        replay.child_spec_writes.len(),
        2,
        "one write each way: {replay:?}"
    );
    let rolled: BTreeSet<&str> = replay.phases.iter().map(|(z, _)| z.as_str()).collect();
    assert_eq!(rolled, BTreeSet::from(["zone-b"]), "{replay:?}");
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_that_never_becomes_ready_halts_the_rollout_until_healed() -> Result<()> {
    let env = Env::new("ctl-stuck", "500ms").await?;
    let controller = rolled_out(&env, "stuck", &["zone-a", "zone-b", "zone-c"], "4s", "1s").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    // The first zone in order is made stuck (the simulator reports it `expanding` from the moment
    // the annotation appears), so the rollout starts with it and must not touch the others.
    let mut untouched = Vec::new();
    for zone in ["zone-b", "zone-c"] {
        for kind in [ChildKind::VMCluster, ChildKind::VMAgent] {
            let name = format!("stuck-{zone}");
            let generation = env
                .child(kind, &name)
                .await?
                .and_then(|c| c.metadata.generation);
            untouched.push((kind, name, generation));
        }
    }

    env.patch_child_meta(
        ChildKind::VMCluster,
        "stuck-zone-a",
        json!({"annotations": {SIM_STUCK: "true"}}),
    )
    .await?;
    env.patch_spec(
        "stuck",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    env.wait_halted_in_applying("stuck", "zone-a", LONG).await?;

    // Stay halted for several timeouts: one Warning, the other zones untouched, zone-a out of the
    // VMAuth.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let warnings = env.events_of("stuck", "Warning", "ZoneNotReady").await?;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].2.contains("zone-a"), "{warnings:?}");
    for (kind, name, generation) in &untouched {
        let child = env.child_value(*kind, name).await?;
        assert_eq!(
            child
                .pointer("/metadata/generation")
                .and_then(Value::as_i64),
            *generation,
            "{kind} {name} was written while the rollout was halted"
        );
    }
    let auth = env.child_value(ChildKind::VMAuth, "stuck").await?;
    let refs = shared::rollout::membership::LiveRefs::from_vmauth_spec(&auth["spec"]);
    assert!(
        !refs.write.contains("stuck-zone-a") && !refs.read.contains("stuck-zone-a"),
        "{refs:?}"
    );
    assert!(refs.write.contains("stuck-zone-b") && refs.write.contains("stuck-zone-c"));
    let cr = env.crs().get("stuck").await?;
    assert_eq!(
        cr.status.and_then(|s| s.update_status),
        Some(UpdateStatus::Failed)
    );

    // Heal the zone: the rollout resumes and finishes.
    env.patch_child_meta(
        ChildKind::VMCluster,
        "stuck-zone-a",
        json!({"annotations": {SIM_STUCK: null}}),
    )
    .await?;
    let done = env.wait_operational("stuck", LONG).await?;
    assert!(
        condition(&done, "Degraded").is_none_or(|c| c.status == "False"),
        "{:?}",
        done.status
    );
    let zone_c = env
        .child_value(ChildKind::VMCluster, "stuck-zone-c")
        .await?;
    assert_eq!(
        zone_c.pointer("/spec/clusterVersion"),
        Some(&json!("v1.111.0-cluster"))
    );
    let replay = recorder.check("stuck")?;
    let zones: BTreeSet<&str> = replay
        .child_spec_writes
        .iter()
        .map(|(z, ..)| z.as_str())
        .collect();
    assert_eq!(zones, BTreeSet::from(["zone-a", "zone-b", "zone-c"]));
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_stops_child_writes_and_unpausing_applies_the_pending_change() -> Result<()> {
    let env = Env::new("ctl-pause", "500ms").await?;
    let controller = rolled_out(&env, "pause", &["zone-a", "zone-b"], "20s", "1s").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let generations = |env: &Env| {
        let env_ns = env.ns.clone();
        let client = env.client.clone();
        async move {
            let mut out = Vec::new();
            for kind in [ChildKind::VMCluster, ChildKind::VMAgent, ChildKind::VMAuth] {
                let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                    client.clone(),
                    &env_ns,
                    &vmdistributed_runtime::resources::child(kind),
                );
                for obj in api.list(&Default::default()).await?.items {
                    out.push((
                        kind,
                        obj.name_any(),
                        obj.metadata.generation,
                        obj.metadata.annotations.clone(),
                        obj.metadata.labels.clone(),
                    ));
                }
            }
            anyhow::Ok(out)
        }
    };
    let before = generations(&env).await?;

    env.patch_spec(
        "pause",
        json!({"paused": true, "zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    env.wait_cr("pause", LONG, "paused", |cr| {
        cr.status.as_ref().and_then(|s| s.update_status) == Some(UpdateStatus::Paused)
            && cr.status.as_ref().and_then(|s| s.observed_generation) == cr.metadata.generation
    })
    .await?;
    // Several reconciles' worth of time: nothing is written to any child.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(generations(&env).await?, before);
    let cr = env.crs().get("pause").await?;
    assert!(
        cr.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .and_then(|r| r.zone.as_ref())
            .is_none()
    );

    env.patch_spec("pause", json!({"paused": false})).await?;
    env.wait_cr("pause", LONG, "unpaused rollout finished", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(3)
    })
    .await?;
    for zone in ["zone-a", "zone-b"] {
        let cluster = env
            .child_value(ChildKind::VMCluster, &format!("pause-{zone}"))
            .await?;
        assert_eq!(
            cluster.pointer("/spec/clusterVersion"),
            Some(&json!("v1.111.0-cluster"))
        );
    }
    let replay = recorder.check("pause")?;
    assert_eq!(replay.exclusions, ["zone-a", "zone-b"], "{replay:?}");
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_reconcile_performs_zero_writes() -> Result<()> {
    let env = Env::new("ctl-steady", "300ms").await?;
    let controller = rolled_out(&env, "steady", &["zone-a", "zone-b"], "20s", "1s").await?;
    // Let the last watch events settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapshot = |env: &Env| {
        let client = env.client.clone();
        let ns = env.ns.clone();
        async move {
            let mut out = Vec::new();
            for kind in ChildKind::ALL {
                let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
                    client.clone(),
                    &ns,
                    &vmdistributed_runtime::resources::child(kind),
                );
                for obj in api.list(&Default::default()).await?.items {
                    out.push((kind, obj.name_any(), obj.resource_version()));
                }
            }
            anyhow::Ok(out)
        }
    };
    let children_before = snapshot(&env).await?;
    let writes_before = controller.writes().await?;
    let reconciles_before = controller.metric("vmdistributed_reconciles_total").await?;

    // Force reconciles: a metadata change of the CR wakes the controller.
    for i in 0..3 {
        env.crs()
            .patch(
                "steady",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    json!({"metadata": {"annotations": {"test/touch": i.to_string()}}}),
                ),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let touched_rv = env.crs().get("steady").await?.resource_version();
    env.wait_until(
        Duration::from_secs(20),
        "reconciles after the touch",
        || async {
            Ok(controller.metric("vmdistributed_reconciles_total").await?
                >= reconciles_before + 3.0)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(
        snapshot(&env).await?,
        children_before,
        "a child was written"
    );
    assert_eq!(
        env.crs().get("steady").await?.resource_version(),
        touched_rv,
        "the CR was written"
    );
    assert_eq!(
        controller.writes().await?,
        writes_before,
        "the controller counted writes"
    );
    Ok(())
}
