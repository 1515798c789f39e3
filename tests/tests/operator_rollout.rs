//! The real-operator tier: the controller as a real process with the **real VictoriaMetrics
//! operator** (built from its Go module, its own CRDs) turning the children into StatefulSets,
//! Deployments and pods on kwok nodes (see `harness::operator_world`).
//!
//! Every example in `examples/` becomes operational and then rolls a change zone by zone, with
//! the rollout invariants checked on every state seen through watches; a `VMSingle` backend; a
//! zone whose pods cannot be scheduled halts the rollout and heals when fixed; deletion with
//! `retain` false and true; adoption of a VMCluster a user created first (the distributed chart's
//! case, `examples/distributed-chart.yaml`); serving safety (docs/rollout.md "Serving guard"): a
//! change that moves every zone's remote-write URL, and a `maintenance` zone beside the updated
//! one; the persistent-queue drain (docs/rollout.md "Persistent-queue drain") waiting for, halting
//! on and resuming after a vmagent queue of the operator's pods.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use harness::controller_env::{Controller, Env, condition, is_operational};
use harness::state_recorder::{StateRecorder, rolled_zone_by_zone};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shared::api::{DrainState, ZonePhase};
use shared::names::ChildKind;

/// Upper bound of each wait: the operator's own readiness polling adds seconds to every step.
const LONG: Duration = Duration::from_secs(240);
const FROM_VERSION: &str = "v1.110.0-cluster";
const TO_VERSION: &str = "v1.111.0-cluster";

fn example(name: &str) -> Result<Value> {
    let path = harness::workspace_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// The example with test durations: a short pause between zones, a readyTimeout that leaves the
/// operator room.
fn with_test_durations(mut cr: Value, ready_timeout: &str) -> Value {
    let common = &mut cr["spec"]["zoneCommon"];
    if common.is_null() {
        *common = json!({});
    }
    common["updatePause"] = json!("1s");
    common["readyTimeout"] = json!(ready_timeout);
    cr
}

async fn apply_cr(env: &Env, cr: &Value) -> Result<()> {
    harness::apply_value(
        &env.client,
        Some(&env.ns),
        cr.clone(),
        &PatchParams::apply("kubectl").force(),
    )
    .await?;
    Ok(())
}

async fn started(env: &Env) -> Result<Controller> {
    let controller = env.controller()?;
    controller.wait_ready(Duration::from_secs(60)).await?;
    Ok(controller)
}

/// Components (`app.kubernetes.io/name`) of a VMCluster's pods.
const CLUSTER_COMPONENTS: &str = "vmstorage,vmselect,vminsert";

/// Images of the pods of the backend `instance` (its agent has the same instance label, so
/// the components are named too: [`CLUSTER_COMPONENTS`] or `vmsingle`).
async fn pod_images(env: &Env, instance: &str, components: &str) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let selector =
        format!("app.kubernetes.io/instance={instance},app.kubernetes.io/name in ({components})");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
        .filter_map(|c| c.image.clone())
        .collect())
}

/// Every pod of the namespace is Ready, on a kwok node, with a loopback IP.
async fn pods_ready_on_kwok(env: &Env) -> Result<usize> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let list = pods.list(&ListParams::default()).await?;
    for pod in &list.items {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        ensure!(
            node.is_some_and(|n| n.starts_with("kwok-")),
            "pod {name} is on node {node:?}"
        );
        let status = pod.status.as_ref();
        let ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
        ensure!(ip.starts_with("127."), "pod {name} has IP {ip:?}");
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        ensure!(ready, "pod {name} is not Ready");
    }
    Ok(list.items.len())
}

/// Whether the operator's workloads for a VMCluster `cluster` exist: storage and select
/// StatefulSets, insert Deployment.
async fn cluster_workloads(env: &Env, cluster: &str) -> Result<(bool, bool, bool)> {
    let sts: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.ns);
    let deploy: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    Ok((
        sts.get_opt(&format!("vmstorage-{cluster}"))
            .await?
            .is_some(),
        sts.get_opt(&format!("vmselect-{cluster}")).await?.is_some(),
        deploy
            .get_opt(&format!("vminsert-{cluster}"))
            .await?
            .is_some(),
    ))
}

/// Changes `clusterVersion` in `zoneCommon.vmcluster.spec` and waits for the new generation to
/// be operational; returns the replay of every state seen meanwhile.
async fn roll_version(
    env: &Env,
    cr: &str,
    version: &str,
) -> Result<harness::state_recorder::Replay> {
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let before = env.crs().get(cr).await?.metadata.generation.unwrap_or(0);
    env.patch_spec(
        cr,
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": version}}}}),
    )
    .await?;
    env.wait_cr(cr, LONG, "the version rollout to finish", |c| {
        is_operational(c) && c.metadata.generation.unwrap_or(0) > before
    })
    .await?;
    recorder.check(cr)
}

/// The zones in the order their children were first written during a rollout.
fn zones_in_write_order(replay: &harness::state_recorder::Replay) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for (zone, ..) in &replay.child_spec_writes {
        if !order.contains(zone) {
            order.push(zone.clone());
        }
    }
    order
}

/// Brings `cr` to operational, rolls a `clusterVersion` change and checks the rollout went
/// zone by zone in `order` with the real operator replacing the pods.
async fn operational_then_rolled(env: &Env, cr: &Value, order: &[&str]) -> Result<()> {
    let name = cr["metadata"]["name"].as_str().context("name")?.to_owned();
    let _controller = started(env).await?;
    apply_cr(env, cr).await?;
    env.wait_operational(&name, LONG).await?;
    let pods = pods_ready_on_kwok(env).await?;
    ensure!(pods > 0, "the operator made no pods");

    let replay = roll_version(env, &name, TO_VERSION).await?;
    ensure!(replay.states > 10, "too few states observed: {replay:?}");
    assert_eq!(zones_in_write_order(&replay), order, "{replay:?}");
    let typed = env.crs().get(&name).await?;
    for zone in &typed.spec.zones {
        let cluster = shared::names::child_name(&typed, zone, ChildKind::VMCluster);
        let images = pod_images(env, &cluster, CLUSTER_COMPONENTS).await?;
        // The operator adds `-enterprise` to the tag when a license is set.
        let version = TO_VERSION.trim_end_matches("-cluster");
        ensure!(
            images.len() >= 3 && images.iter().all(|i| i.contains(&format!(":{version}-"))),
            "pods of {cluster} do not all run {TO_VERSION}: {images:?}"
        );
    }
    pods_ready_on_kwok(env).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_runs_and_rolls_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-seed").await?;
    let cr = with_test_durations(example("seed.yaml")?, "2m");
    operational_then_rolled(&env, &cr, &["zone-a", "zone-b"]).await?;
    // The operator's workloads are there, and the VMAuth routes both zones.
    for zone in ["zone-a", "zone-b"] {
        assert_eq!(
            cluster_workloads(&env, &format!("demo-{zone}")).await?,
            (true, true, true)
        );
    }
    let deploy: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    ensure!(
        deploy.get_opt("vmauth-demo").await?.is_some(),
        "no vmauth Deployment"
    );
    ensure!(
        deploy.get_opt("vmagent-demo-zone-a").await?.is_some(),
        "no vmagent Deployment"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_template_example_runs_and_rolls_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-template").await?;
    // Its pods select nodes by zone name.
    env.cp
        .add_zone_nodes(&["us-east-1a", "us-east-1b", "us-east-1c"])
        .await?;
    let cr = with_test_durations(example("zone-template.yaml")?, "2m");
    operational_then_rolled(&env, &cr, &["us-east-1a", "us-east-1b", "us-east-1c"]).await?;
    // The read-only zone runs no vminsert pods.
    let deploy: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let vminsert = deploy.get("vminsert-vm-us-east-1c").await?;
    assert_eq!(vminsert.spec.and_then(|s| s.replicas), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_example_runs_and_rolls_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-license").await?;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "vm-license"},
                "stringData": {"license": "test-license-key"}
            }))?,
        )
        .await?;
    let mut cr = with_test_durations(example("license.yaml")?, "2m");
    // The example pins an enterprise version; roll from the plain one the other tests use.
    cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["clusterVersion"] = json!(FROM_VERSION);
    operational_then_rolled(&env, &cr, &["zone-a", "zone-b"]).await?;
    let cluster = env
        .child_value(ChildKind::VMCluster, "enterprise-zone-a")
        .await?;
    assert_eq!(
        cluster.pointer("/spec/license/keyRef/name"),
        Some(&json!("vm-license")),
        "the license is copied into every child"
    );
    Ok(())
}

/// A VMCluster as the user (or the distributed Helm chart) creates it before the VMDistributed.
async fn user_cluster(env: &Env, name: &str) -> Result<()> {
    env.apply(&format!(
        r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMCluster
metadata:
  name: {name}
spec:
  clusterVersion: {FROM_VERSION}
  retentionPeriod: "1"
  vmstorage:
    replicaCount: 1
  vmselect:
    replicaCount: 1
  vminsert:
    replicaCount: 1
"#
    ))
    .await?;
    env.wait_until(LONG, &format!("VMCluster {name} operational"), || async {
        let cluster = env.child(ChildKind::VMCluster, name).await?;
        Ok(cluster
            .is_some_and(|c| c.data.pointer("/status/updateStatus") == Some(&json!("operational"))))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_chart_example_adopts_the_users_clusters() -> Result<()> {
    let env = Env::with_operator("op-adopt").await?;
    for name in ["vmcluster-zone-1", "vmcluster-zone-2"] {
        user_cluster(&env, name).await?;
    }
    let mut cr = with_test_durations(example("distributed-chart.yaml")?, "2m");
    cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["clusterVersion"] = json!(FROM_VERSION);
    operational_then_rolled(&env, &cr, &["zone-1", "zone-2"]).await?;
    for name in ["vmcluster-zone-1", "vmcluster-zone-2"] {
        let cluster = env.child_value(ChildKind::VMCluster, name).await?;
        ensure!(
            cluster.pointer("/metadata/ownerReferences").is_none()
                && cluster
                    .pointer("/metadata/annotations/operator.victoriametrics.com~1created-by")
                    .is_none(),
            "an adopted cluster is marked as created: {}",
            cluster["metadata"]
        );
        // The user's own fields stay as the user left them.
        assert_eq!(cluster.pointer("/spec/retentionPeriod"), Some(&json!("1")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_example_updates_but_never_owns_the_referenced_cluster() -> Result<()> {
    let env = Env::with_operator("op-ref").await?;
    user_cluster(&env, "legacy-cluster").await?;
    let mut cr = with_test_durations(example("ref.yaml")?, "2m");
    cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["clusterVersion"] = json!(FROM_VERSION);
    operational_then_rolled(&env, &cr, &["zone-a", "zone-b"]).await?;
    let legacy = env
        .child_value(ChildKind::VMCluster, "legacy-cluster")
        .await?;
    ensure!(
        legacy.pointer("/metadata/ownerReferences").is_none(),
        "a ref got an owner reference: {}",
        legacy["metadata"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmsingle_backend_runs_and_rolls_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-single").await?;
    let _controller = started(&env).await?;
    let cr = json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "single"},
        "spec": {
            "backendType": "VMSingle",
            "zoneCommon": {
                "updatePause": "1s",
                "readyTimeout": "2m",
                "vmsingle": {"spec": {"retentionPeriod": "1",
                    "image": {"tag": "v1.110.0"}}},
                "vmagent": {"spec": {"replicaCount": 1}}
            },
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }
    });
    apply_cr(&env, &cr).await?;
    env.wait_operational("single", LONG).await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.patch_spec(
        "single",
        json!({"zoneCommon": {"vmsingle": {"spec": {"image": {"tag": "v1.111.0"}}}}}),
    )
    .await?;
    env.wait_cr("single", LONG, "the VMSingle rollout to finish", |c| {
        is_operational(c) && c.metadata.generation == Some(2)
    })
    .await?;
    let replay = recorder.check("single")?;
    assert_eq!(zones_in_write_order(&replay), ["zone-a", "zone-b"]);
    for zone in ["zone-a", "zone-b"] {
        let images = pod_images(&env, &format!("single-{zone}"), "vmsingle").await?;
        ensure!(
            !images.is_empty() && images.iter().all(|i| i.ends_with(":v1.111.0")),
            "pods of single-{zone}: {images:?}"
        );
    }
    let auth = env.child_value(ChildKind::VMAuth, "single").await?;
    let refs = shared::rollout::membership::LiveRefs::from_vmauth_spec(&auth["spec"]);
    assert_eq!(refs.read.len(), 2, "{refs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_zone_halts_the_rollout_until_fixed() -> Result<()> {
    let env = Env::with_operator("op-stuck").await?;
    let _controller = started(&env).await?;
    let cr = with_test_durations(example("seed.yaml")?, "20s");
    apply_cr(&env, &cr).await?;
    env.wait_operational("demo", LONG).await?;
    let generation = |obj: &Value| obj.pointer("/metadata/generation").and_then(Value::as_i64);
    let zone_b_before = generation(&env.child_value(ChildKind::VMCluster, "demo-zone-b").await?);
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    // zone-a's vmselect pods are sent to a zone without nodes: the scheduler never places them.
    let zones = |selector: &str| {
        json!([
            {"name": "zone-a", "vmcluster": {"spec": {"vmselect": {"nodeSelector": {
                harness::ZONE_LABEL: selector}}}}},
            {"name": "zone-b"}
        ])
    };
    env.patch_spec("demo", json!({"zones": zones("nowhere")}))
        .await?;
    env.wait_halted_in_applying("demo", "zone-a", LONG).await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let pending = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo-zone-a"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
        .count();
    ensure!(pending > 0, "no zone-a pod is Pending");
    // The other zone was never touched and still serves.
    assert_eq!(
        generation(&env.child_value(ChildKind::VMCluster, "demo-zone-b").await?),
        zone_b_before
    );
    let warnings = env.events_of("demo", "Warning", "ZoneNotReady").await?;
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    // A node selector that matches a node heals the zone and finishes the rollout.
    env.patch_spec("demo", json!({"zones": zones("zone-a")}))
        .await?;
    let healed = env.wait_operational("demo", LONG).await?;
    ensure!(
        condition(&healed, "Degraded").is_none_or(|c| c.status == "False"),
        "{:?}",
        healed.status
    );
    recorder.check("demo")?;
    pods_ready_on_kwok(&env).await?;
    Ok(())
}

/// The persistent-queue drain on the real operator: the agents' pods are the operator's kwok
/// pods, found through their Services' EndpointSlices (the stand-in's mirror: the API server
/// refuses the pods' loopback addresses in kube-controller-manager's own slices) and read
/// through the world's proxy, which answers with what each VMAgent's annotation says it queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_waits_for_the_vmagent_queues_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-drain").await?;
    let _controller = started(&env).await?;
    let mut cr = with_test_durations(example("seed.yaml")?, "2m");
    cr["spec"]["zoneCommon"]["drainTimeout"] = json!("15s");
    apply_cr(&env, &cr).await?;
    env.wait_operational("demo", LONG).await?;
    let before = env
        .crs()
        .get("demo")
        .await?
        .metadata
        .generation
        .unwrap_or(0);
    let auth_before = env.child_value(ChildKind::VMAuth, "demo").await?["spec"].clone();

    // zone-b's agent still holds 1 MiB for zone-a's cluster, entry 1 of its remoteWrite list.
    let hold = |value: Value| json!({"annotations": {harness::vmagent_standin::PENDING_BYTES_ANNOTATION: value}});
    env.patch_child_meta(ChildKind::VMAgent, "demo-zone-b", hold(json!("1=1048576")))
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.patch_spec(
        "demo",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": TO_VERSION}}}}),
    )
    .await?;

    // zone-a waits before the VMAuth stops sending it writes, and says for what.
    let draining = env
        .wait_cr("demo", LONG, "zone-a draining in Excluding", |c| {
            let rollout = c
                .status
                .as_ref()
                .and_then(|s| s.rollout.clone())
                .unwrap_or_default();
            rollout.zone.as_deref() == Some("zone-a")
                && rollout.phase == Some(ZonePhase::Excluding)
                && rollout.drain == Some(DrainState::Draining)
                && condition(c, "Progressing").is_some_and(|p| {
                    p.reason == "DrainingQueues" && p.message.contains("holds 1.0 MiB")
                })
        })
        .await?;
    let message = condition(&draining, "Progressing")
        .map(|p| p.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("VMAgent demo-zone-b pod ")
            && message.contains("holds 1.0 MiB for VMCluster demo-zone-a"),
        "{message}"
    );
    assert_eq!(
        env.child_value(ChildKind::VMAuth, "demo").await?["spec"],
        auth_before,
        "the VMAuth still routes zone-a"
    );

    // It halts once drainTimeout has passed, zone-a still in, nothing else touched.
    let halted = env
        .wait_cr("demo", LONG, "the halt on the queue", |c| {
            condition(c, "Degraded")
                .is_some_and(|d| d.status == "True" && d.reason == "QueueNotDrained")
        })
        .await?;
    let degraded = condition(&halted, "Degraded")
        .map(|d| d.message.clone())
        .unwrap_or_default();
    ensure!(
        degraded.contains("within drainTimeout (15s)") && degraded.contains("holds 1.0 MiB"),
        "{degraded}"
    );
    assert_eq!(
        env.events_of("demo", "Warning", "QueueNotDrained")
            .await?
            .len(),
        1
    );

    // The queue empties: the rollout goes on by itself and finishes.
    env.patch_child_meta(ChildKind::VMAgent, "demo-zone-b", hold(Value::Null))
        .await?;
    env.wait_cr("demo", LONG, "the rollout to finish", |c| {
        is_operational(c) && c.metadata.generation.unwrap_or(0) > before
    })
    .await?;
    recorder.check("demo")?;
    Ok(())
}

/// Names of the VM objects of each kind in the namespace.
async fn vm_objects(env: &Env) -> Result<BTreeMap<ChildKind, Vec<String>>> {
    let mut out = BTreeMap::new();
    for kind in [ChildKind::VMCluster, ChildKind::VMAgent, ChildKind::VMAuth] {
        let list = env.children(kind).list(&ListParams::default()).await?;
        out.insert(
            kind,
            list.items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect(),
        );
    }
    Ok(out)
}

async fn delete_and_wait_gone(env: &Env, name: &str) -> Result<()> {
    env.crs().delete(name, &DeleteParams::default()).await?;
    env.wait_until(LONG, "the VMDistributed to be gone", || async {
        Ok(env.crs().get_opt(name).await?.is_none())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_removes_created_children_and_their_pods_unless_retained() -> Result<()> {
    let env = Env::with_operator("op-delete").await?;
    let _controller = started(&env).await?;
    let mut kept = with_test_durations(example("seed.yaml")?, "2m");
    kept["metadata"]["name"] = json!("kept");
    kept["spec"]["retain"] = json!(true);
    let dropped = with_test_durations(example("seed.yaml")?, "2m");
    apply_cr(&env, &kept).await?;
    apply_cr(&env, &dropped).await?;
    env.wait_operational("kept", LONG).await?;
    env.wait_operational("demo", LONG).await?;

    delete_and_wait_gone(&env, "demo").await?;
    delete_and_wait_gone(&env, "kept").await?;
    let left = vm_objects(&env).await?;
    assert_eq!(
        left.get(&ChildKind::VMCluster),
        Some(&vec!["kept-zone-a".to_owned(), "kept-zone-b".to_owned()])
    );
    assert_eq!(
        left.get(&ChildKind::VMAgent),
        Some(&vec!["kept-zone-a".to_owned(), "kept-zone-b".to_owned()])
    );
    assert_eq!(left.get(&ChildKind::VMAuth), Some(&vec!["kept".to_owned()]));
    // The retained children are released: no claim label, no owner reference, and no field
    // still owned by the controller.
    for (kind, name) in [
        (ChildKind::VMCluster, "kept-zone-a"),
        (ChildKind::VMAgent, "kept-zone-b"),
        (ChildKind::VMAuth, "kept"),
    ] {
        let child = env.child_value(kind, name).await?;
        let managers: Vec<&str> = child["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["manager"].as_str())
            .collect();
        ensure!(
            child
                .pointer("/metadata/labels/operator.victoriametrics.com~1vmdistributed")
                .is_none()
                && child.pointer("/metadata/ownerReferences").is_none()
                && !managers.contains(&shared::model::FIELD_MANAGER),
            "{kind} {name} was not released: {}",
            child["metadata"]
        );
    }
    // Whoever runs the released cluster now applies it as their own, without a conflict over a
    // field the controller used to set.
    let theirs = json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMCluster",
        "metadata": {"name": "kept-zone-a"},
        "spec": {"retentionPeriod": "30"},
    });
    let applied = env
        .children(ChildKind::VMCluster)
        .patch(
            "kept-zone-a",
            &PatchParams::apply("platform-team"),
            &Patch::Apply(&theirs),
        )
        .await
        .context("a server-side apply of the released cluster by its new manager")?;
    assert_eq!(applied.data["spec"]["retentionPeriod"], "30");
    // The operator removes the workloads of the deleted clusters (its own owner references and
    // the garbage collector); the retained ones keep running.
    env.wait_until(LONG, "demo-zone-a's workloads to be gone", || async {
        Ok(cluster_workloads(&env, "demo-zone-a").await? == (false, false, false))
    })
    .await?;
    assert_eq!(
        cluster_workloads(&env, "kept-zone-a").await?,
        (true, true, true)
    );
    Ok(())
}

/// Sanity check of the tier itself: a CR that cannot become ready is not reported operational
/// (the operator really gates readiness on pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_gates_readiness_on_pods() -> Result<()> {
    let env = Env::with_operator("op-gate").await?;
    env.apply(
        r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMCluster
metadata:
  name: nowhere
spec:
  retentionPeriod: "1"
  vmstorage:
    replicaCount: 1
    nodeSelector:
      topology.kubernetes.io/zone: nowhere
  vmselect:
    replicaCount: 1
  vminsert:
    replicaCount: 1
"#,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let cluster = env.child_value(ChildKind::VMCluster, "nowhere").await?;
    if cluster.pointer("/status/updateStatus") == Some(&json!("operational")) {
        bail!("a VMCluster whose storage pod is Pending was reported operational");
    }
    let sts: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.ns);
    let patch = json!({"spec": {"vmstorage": {"nodeSelector": {harness::ZONE_LABEL: "zone-b"}}}});
    env.children(ChildKind::VMCluster)
        .patch("nowhere", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    env.wait_until(LONG, "VMCluster nowhere operational", || async {
        let c = env.child_value(ChildKind::VMCluster, "nowhere").await?;
        Ok(c.pointer("/status/updateStatus") == Some(&json!("operational")))
    })
    .await?;
    ensure!(sts.get_opt("vmstorage-nowhere").await?.is_some());
    Ok(())
}

/// The seed example with `trafficMode`s (`zone` or `zone:mode`) and three zones' worth of names.
fn seed_with_zones(name: &str, zones: &[&str]) -> Result<Value> {
    let mut cr = with_test_durations(example("seed.yaml")?, "2m");
    cr["metadata"]["name"] = json!(name);
    cr["spec"]["zoneCommon"]["vmcluster"]["spec"]["clusterVersion"] = json!(FROM_VERSION);
    cr["spec"]["zones"] = zones
        .iter()
        .map(|z| match z.split_once(':') {
            Some((zone, mode)) => json!({"name": zone, "trafficMode": mode}),
            None => json!({"name": z}),
        })
        .collect();
    Ok(cr)
}

/// Moving every zone's remote-write URL (the vminsert port) on the real operator: the operator
/// really moves each zone's vminsert Service, and `read` never loses more than one zone, never
/// empties, and every agent ends up writing to the new port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_url_change_keeps_read_served_on_the_real_operator() -> Result<()> {
    let env = Env::with_operator("op-url").await?;
    let _controller = started(&env).await?;
    let zones = ["zone-a", "zone-b", "zone-c"];
    apply_cr(&env, &seed_with_zones("url", &zones)?).await?;
    env.wait_operational("url", LONG).await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.patch_spec(
        "url",
        json!({"zoneCommon": {"vmcluster": {"spec": {"vminsert": {"port": "8481"}}}}}),
    )
    .await?;
    env.wait_cr("url", LONG, "the port change rolled out", |c| {
        is_operational(c) && c.metadata.generation == Some(2)
    })
    .await?;

    let replay = recorder.check("url")?;
    rolled_zone_by_zone(&replay, "url", &zones)?;
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(env.client.clone(), &env.ns);
    for zone in zones {
        let urls = env.remote_write_urls(&format!("url-{zone}")).await?;
        ensure!(
            urls.len() == 3 && urls.iter().all(|u| u.contains(":8481/")),
            "{urls:?}"
        );
        // The operator moved the Service the URL points at.
        let service = services.get(&format!("vminsert-url-{zone}")).await?;
        let ports: Vec<i32> = service
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        ensure!(ports.contains(&8481), "vminsert-url-{zone} ports {ports:?}");
    }
    Ok(())
}

/// With the only other zone in `maintenance`, the one serving zone is updated in place on the
/// real operator: neither target is ever emptied, and a Warning event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_serving_zone_beside_a_maintenance_zone_is_updated_in_place_on_the_real_operator()
-> Result<()> {
    let env = Env::with_operator("op-maint").await?;
    let _controller = started(&env).await?;
    apply_cr(
        &env,
        &seed_with_zones("maint", &["zone-a", "zone-b:maintenance"])?,
    )
    .await?;
    env.wait_operational("maint", LONG).await?;
    // The maintenance zone runs no vminsert pods.
    let deploy: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let vminsert = deploy.get("vminsert-maint-zone-b").await?;
    assert_eq!(vminsert.spec.and_then(|s| s.replicas), Some(0));

    let replay = roll_version(&env, "maint", TO_VERSION).await?;
    let a = vec!["maint-zone-a".to_owned()];
    ensure!(
        !replay.write_refs.is_empty() && replay.write_refs.iter().all(|w| *w == a),
        "{replay:?}"
    );
    ensure!(replay.read_refs.iter().all(|r| *r == a), "{replay:?}");
    ensure!(replay.exclusions.is_empty(), "{replay:?}");
    let in_place = env.events_of("maint", "Warning", "UpdatingInPlace").await?;
    assert_eq!(in_place.len(), 1, "{in_place:?}");
    let images = pod_images(&env, "maint-zone-a", CLUSTER_COMPONENTS).await?;
    ensure!(
        images.iter().all(|i| i.contains(":v1.111.0-")),
        "{images:?}"
    );
    Ok(())
}

/// Whether every pod of the zone `zone` of CR `demo` runs `cluster_tag` (its VMCluster
/// components) and `agent_tag` (its VMAgent).
async fn zone_runs(env: &Env, zone: &str, cluster_tag: &str, agent_tag: &str) -> Result<bool> {
    let instance = format!("demo-{zone}");
    let cluster = pod_images(env, &instance, CLUSTER_COMPONENTS).await?;
    let agent = pod_images(env, &instance, "vmagent").await?;
    Ok(cluster.len() >= 3
        && cluster
            .iter()
            .all(|i| i.ends_with(&format!(":{cluster_tag}")))
        && !agent.is_empty()
        && agent.iter().all(|i| i.ends_with(&format!(":{agent_tag}"))))
}

/// The controller's flags pinning these versions.
fn pinned(cluster: &str, agent: &str) -> [String; 3] {
    [
        "--leader-elect=false".to_owned(),
        format!("--pinned-vmcluster-version={cluster}"),
        format!("--pinned-vmagent-version={agent}"),
    ]
}

/// A spec that sets no version runs the version the controller pins, not the operator's default;
/// a new pinned version (the controller restarted with new flags, as after a chart upgrade that
/// follows an operator upgrade) is rolled out zone by zone like any spec change, though the CR
/// itself does not change, and the operator really replaces the pods' images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pinned_version_is_rolled_out_zone_by_zone() -> Result<()> {
    let env = Env::with_operator("op-pin").await?;
    let cr = with_test_durations(example("seed.yaml")?, "2m");
    ensure!(
        cr.pointer("/spec/zoneCommon/vmcluster/spec/clusterVersion")
            .is_none(),
        "the seed example sets no version"
    );
    let first = env.controller_with(
        &pinned("v1.110.0-cluster", "v1.110.0")
            .each_ref()
            .map(String::as_str),
    )?;
    first.wait_ready(Duration::from_secs(60)).await?;
    apply_cr(&env, &cr).await?;
    env.wait_operational("demo", LONG).await?;
    for zone in ["zone-a", "zone-b"] {
        ensure!(
            zone_runs(&env, zone, "v1.110.0-cluster", "v1.110.0").await?,
            "zone {zone} does not run the pinned versions: {:?} {:?}",
            pod_images(&env, &format!("demo-{zone}"), CLUSTER_COMPONENTS).await?,
            pod_images(&env, &format!("demo-{zone}"), "vmagent").await?
        );
    }
    let cluster = env.child_value(ChildKind::VMCluster, "demo-zone-a").await?;
    assert_eq!(cluster["spec"]["clusterVersion"], "v1.110.0-cluster");
    let generation = env.crs().get("demo").await?.metadata.generation;
    first.process.stop(Duration::from_secs(10))?;

    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let second = env.controller_with(
        &pinned("v1.111.0-cluster", "v1.111.0")
            .each_ref()
            .map(String::as_str),
    )?;
    second.wait_ready(Duration::from_secs(60)).await?;
    env.wait_until(
        LONG,
        "every zone to run the new pinned versions",
        || async {
            let cr = env.crs().get("demo").await?;
            Ok(is_operational(&cr)
                && zone_runs(&env, "zone-a", "v1.111.0-cluster", "v1.111.0").await?
                && zone_runs(&env, "zone-b", "v1.111.0-cluster", "v1.111.0").await?)
        },
    )
    .await?;
    let replay = recorder.check("demo")?;
    // One zone at a time, in spec order, each through its own phases; the CR never changed.
    assert_eq!(
        zones_in_write_order(&replay),
        ["zone-a", "zone-b"],
        "{replay:?}"
    );
    for zone in ["zone-a", "zone-b"] {
        ensure!(
            replay
                .phases
                .iter()
                .any(|(z, phase)| z == zone && phase == "Applying"),
            "zone {zone} was not applied in its own phase: {replay:?}"
        );
    }
    assert_eq!(env.crs().get("demo").await?.metadata.generation, generation);
    pods_ready_on_kwok(&env).await?;
    // The operator's own metric for the object, under its name and labels.
    let status = |s: &str| {
        format!(
            "operator_object_status{{controller=\"vmdistributed\",namespace=\"{}\",name=\"demo\",status=\"{s}\"}}",
            env.ns
        )
    };
    assert_eq!(second.metric(&status("operational")).await?, 1.0);
    assert_eq!(second.metric(&status("expanding")).await?, 0.0);
    Ok(())
}
