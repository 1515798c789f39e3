//! Ownership of the children, with the controller as a real process against a real API server,
//! the upstream VictoriaMetrics CRDs and the simulated operator: what the spec stops sending
//! disappears from the children the controller created (unless another manager owns it), a
//! `ref` is never deleted or given an owner reference even when this CR once created it, and a
//! rename that bypassed the webhook is refused before anything is deleted. Every test replays
//! the states it saw through watches and checks the rollout invariants (docs/rollout.md) on each.

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::controller_env::{Env, condition, is_operational};
use harness::state_recorder::StateRecorder;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use shared::names::ChildKind;

const LONG: Duration = Duration::from_secs(90);
const CLAIM: &str = "operator.victoriametrics.com/vmdistributed";
const CREATED_BY: &str = "operator.victoriametrics.com/created-by";

/// A two-zone CR whose zones, VMAgents and VMAuth carry settings the tests later remove.
const REMOVALS: &str = r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: shrink
spec:
  vmauth:
    spec:
      unauthorizedUserAccessSpec:
        targetRefs:
          - name: write
          - name: read
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmagent:
      spec:
        extraArgs:
          promscrape.maxScrapeSize: 16MB
          remoteWrite.maxDiskUsagePerURL: 1GB
    vmcluster:
      spec:
        clusterVersion: v1.110.0-cluster
        vmstorage:
          replicaCount: 1
          nodeSelector:
            topology.kubernetes.io/zone: "%ZONE%"
          extraArgs:
            dedup.minScrapeInterval: 1s
            search.maxUniqueTimeseries: "1000"
        vmselect:
          replicaCount: 1
        vminsert:
          extraArgs:
            maxLabelsPerTimeseries: "40"
  zones:
    - name: zone-a
    - name: zone-b
      trafficMode: maintenance
"#;

/// `REMOVALS` after the user dropped settings: a storage flag, the agents' scrape-size flag,
/// the VMAuth's unauthenticated access, zone-a's common `nodeSelector` (`$patch: delete`), and
/// zone-b back from `maintenance` to `read-write`.
const REMOVED: &str = r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: shrink
spec:
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmagent:
      spec:
        extraArgs:
          remoteWrite.maxDiskUsagePerURL: 1GB
    vmcluster:
      spec:
        clusterVersion: v1.110.0-cluster
        vmstorage:
          replicaCount: 1
          nodeSelector:
            topology.kubernetes.io/zone: "%ZONE%"
          extraArgs:
            dedup.minScrapeInterval: 1s
        vmselect:
          replicaCount: 1
        vminsert:
          extraArgs:
            maxLabelsPerTimeseries: "40"
  zones:
    - name: zone-a
      vmcluster:
        spec:
          vmstorage:
            nodeSelector:
              $patch: delete
    - name: zone-b
"#;

/// docs/rollout.md "Ownership": whatever the intent stops sending disappears from a child the
/// controller created, except what another manager owns. The children were created with a POST;
/// before the fix the API server recorded that as an `Update` of ours that kept every created field
/// forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_dropped_from_the_spec_disappear_from_created_children() -> Result<()> {
    let env = Env::new("ctl-removal", "300ms").await?;
    let (controller, _) = env.operational("shrink", REMOVALS, LONG).await?;
    let zone_b = env
        .child_value(ChildKind::VMCluster, "shrink-zone-b")
        .await?;
    assert_eq!(
        zone_b.pointer("/spec/vminsert/replicaCount"),
        Some(&json!(0)),
        "a zone in maintenance runs no vminsert"
    );
    let auth = env.child_value(ChildKind::VMAuth, "shrink").await?;
    ensure!(
        auth.pointer("/spec/unauthorizedUserAccessSpec").is_some(),
        "{auth}"
    );
    // Another manager sets a field the spec never mentions, and a flag beside ours.
    let other = PatchParams {
        field_manager: Some("someone-else".to_owned()),
        ..PatchParams::default()
    };
    for zone in ["zone-a", "zone-b"] {
        env.children(ChildKind::VMCluster)
            .patch(
                &format!("shrink-{zone}"),
                &other,
                &Patch::Merge(json!({"spec": {
                    "retentionPeriod": "7d",
                    "vmstorage": {"extraArgs": {"loggerLevel": "WARN"}}
                }})),
            )
            .await?;
    }
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.apply(REMOVED).await?;
    let cr = env
        .wait_cr("shrink", LONG, "the removals rolled out", |cr| {
            is_operational(cr) && cr.metadata.generation == Some(2)
        })
        .await?;
    ensure!(
        cr.status.as_ref().is_some_and(|s| s
            .zones
            .iter()
            .all(|z| z.ready && z.current && z.in_read && z.in_write)),
        "{:?}",
        cr.status
    );

    for zone in ["zone-a", "zone-b"] {
        let cluster = env
            .child_value(ChildKind::VMCluster, &format!("shrink-{zone}"))
            .await?;
        let storage_args = cluster.pointer("/spec/vmstorage/extraArgs");
        assert_eq!(
            storage_args,
            Some(&json!({"dedup.minScrapeInterval": "1s", "loggerLevel": "WARN"})),
            "{zone}: the dropped flag is gone, ours and the other manager's stay"
        );
        assert_eq!(
            cluster.pointer("/spec/retentionPeriod"),
            Some(&json!("7d")),
            "{zone}: another manager's field stays"
        );
        assert_eq!(
            cluster.pointer("/spec/vminsert/extraArgs"),
            Some(&json!({"maxLabelsPerTimeseries": "40"}))
        );
        let agent = env
            .child_value(ChildKind::VMAgent, &format!("shrink-{zone}"))
            .await?;
        assert_eq!(
            agent.pointer("/spec/extraArgs"),
            Some(&json!({"remoteWrite.maxDiskUsagePerURL": "1GB"})),
            "{zone}: the agent's dropped flag is gone"
        );
    }
    let zone_a = env
        .child_value(ChildKind::VMCluster, "shrink-zone-a")
        .await?;
    assert_eq!(
        zone_a.pointer("/spec/vmstorage/nodeSelector"),
        None,
        "`$patch: delete` removed the common nodeSelector from zone-a"
    );
    let zone_b = env
        .child_value(ChildKind::VMCluster, "shrink-zone-b")
        .await?;
    assert_eq!(
        zone_b.pointer("/spec/vmstorage/nodeSelector"),
        Some(&json!({"topology.kubernetes.io/zone": "zone-b"}))
    );
    assert_eq!(
        zone_b.pointer("/spec/vminsert/replicaCount"),
        None,
        "back in read-write, zone-b's vminsert runs the operator's default count again"
    );
    let auth = env.child_value(ChildKind::VMAuth, "shrink").await?;
    assert_eq!(
        auth.pointer("/spec/unauthorizedUserAccessSpec"),
        None,
        "unauthenticated access is closed"
    );
    recorder.check("shrink")?;
    drop(controller);
    Ok(())
}

/// A two-zone CR with the default `retain: false`; every child is created by it.
fn created(name: &str) -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: {name}
spec:
  zoneRemovalPolicy: Delete
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmcluster:
      spec:
        clusterVersion: v1.110.0-cluster
        vminsert: {{replicaCount: 1}}
        vmselect: {{replicaCount: 1}}
        vmstorage: {{replicaCount: 1}}
  zones:
    - name: zone-a
    - name: zone-b
"#
    )
}

/// Whether a child carries nothing of a `VMDistributed`: no claim, no created-by, no owner
/// reference.
fn unmarked(child: &Value) -> bool {
    child
        .pointer(&format!("/metadata/labels/{}", CLAIM.replace('/', "~1")))
        .is_none()
        && child
            .pointer(&format!(
                "/metadata/annotations/{}",
                CREATED_BY.replace('/', "~1")
            ))
            .is_none()
        && owner_references(child).is_empty()
}

fn owner_references(child: &Value) -> Vec<Value> {
    child
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// docs/rollout.md "Ownership": a `ref` is never deleted or given an owner reference, even when
/// this CR created it. A created zone and the created VMAuth are switched to `ref`; the CR is then
/// deleted in the foreground while the garbage collector runs (which deletes every dependent that
/// still names the CR before any finalizer can act): both survive, and from the moment the
/// controller let go of them no state of theirs carries an owner reference again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_zone_and_vmauth_switched_to_ref_survive_the_deletion_of_their_cr() -> Result<()>
{
    let env = Env::new("ctl-to-ref", "300ms").await?;
    env.cp.ensure_controller_manager().await?;
    let (controller, cr) = env.operational("keep", &created("keep"), LONG).await?;
    let cr_uid = cr.uid().unwrap_or_default();
    let cluster = env.child_value(ChildKind::VMCluster, "keep-zone-a").await?;
    let auth = env.child_value(ChildKind::VMAuth, "keep").await?;
    for child in [&cluster, &auth] {
        assert_eq!(owner_references(child).len(), 1, "{child}");
        assert_eq!(
            child.pointer(&format!(
                "/metadata/annotations/{}",
                CREATED_BY.replace('/', "~1")
            )),
            Some(&json!(cr_uid))
        );
    }
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "keep",
        json!({
            "vmauth": {"ref": {"name": "keep"}},
            "zones": [
                {"name": "zone-a", "vmcluster": {"ref": {"name": "keep-zone-a"}}},
                {"name": "zone-b"}
            ]
        }),
    )
    .await?;
    env.wait_cr("keep", LONG, "the refs taken over", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(2)
    })
    .await?;
    for (kind, name) in [
        (ChildKind::VMCluster, "keep-zone-a"),
        (ChildKind::VMAuth, "keep"),
    ] {
        let child = env.child_value(kind, name).await?;
        assert!(
            owner_references(&child).is_empty(),
            "{kind} {name}: {child}"
        );
        assert_eq!(
            child.pointer(&format!(
                "/metadata/annotations/{}",
                CREATED_BY.replace('/', "~1")
            )),
            None,
            "{kind} {name} still says this CR created it"
        );
    }

    env.crs()
        .delete("keep", &DeleteParams::foreground())
        .await?;
    env.wait_cr_gone("keep", LONG).await?;
    for (kind, name, before) in [
        (ChildKind::VMCluster, "keep-zone-a", &cluster),
        (ChildKind::VMAuth, "keep", &auth),
    ] {
        let kept = env.child_value(kind, name).await?;
        assert_eq!(
            kept.pointer("/metadata/uid"),
            before.pointer("/metadata/uid"),
            "{kind} {name} was re-created"
        );
        assert!(unmarked(&kept), "{kind} {name} not released: {kept}");
        // Watched through the switch and the deletion: once the controller removed its owner
        // reference, no state of it names the CR again, and it is never deleted.
        let states: Vec<_> = recorder
            .records()
            .into_iter()
            .filter(|r| r.kind == kind.kind() && r.name == name)
            .collect();
        ensure!(!states.is_empty(), "no state of {kind} {name} recorded");
        ensure!(
            states.iter().all(|r| !r.deleted),
            "{kind} {name} was deleted"
        );
        let released_at = states
            .iter()
            .position(|r| owner_references(&r.object).is_empty())
            .unwrap_or(states.len());
        ensure!(
            states[released_at..]
                .iter()
                .all(|r| owner_references(&r.object).is_empty()),
            "{kind} {name} got an owner reference back"
        );
    }
    env.ensure_gone(&[
        (ChildKind::VMCluster, "keep-zone-b"),
        (ChildKind::VMAgent, "keep-zone-a"),
        (ChildKind::VMAgent, "keep-zone-b"),
    ])
    .await?;
    drop(controller);
    Ok(())
}

/// docs/api.md "Validation summary": the UPDATE protections run in the controller too, against the
/// stored state. A rename applied where no webhook checks it (here: no webhook at all) is refused
/// with `InvalidSpec`, and under `zoneRemovalPolicy: Delete` nothing is deleted or created; the
/// documented annotation then lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_that_bypassed_the_webhook_is_refused_and_deletes_nothing() -> Result<()> {
    let env = Env::new("ctl-rename", "300ms").await?;
    let (controller, _) = env.operational("moved", &created("moved"), LONG).await?;
    let before = env
        .child_value(ChildKind::VMCluster, "moved-zone-a")
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "moved",
        json!({"zones": [
            {"name": "zone-a", "vmcluster": {"name": "moved-a-new"}},
            {"name": "zone-b"}
        ]}),
    )
    .await?;
    let refused = env
        .wait_cr(
            "moved",
            Duration::from_secs(30),
            "the rename refused",
            |cr| {
                condition(cr, "Ready").is_some_and(|c| {
                    c.status == "False"
                        && c.reason == "InvalidSpec"
                        && c.message.contains("moved-zone-a")
                        && c.message.contains("moved-a-new")
                        && c.message
                            .contains("operator.victoriametrics.com/allow-rename")
                })
            },
        )
        .await?;
    assert_eq!(
        refused.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    env.wait_event("moved", "Warning", "InvalidSpec", LONG)
        .await?;
    // Give a controller that would act on the rename time to do so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = env
        .child_value(ChildKind::VMCluster, "moved-zone-a")
        .await?;
    assert_eq!(
        kept.pointer("/metadata/uid"),
        before.pointer("/metadata/uid")
    );
    assert_eq!(kept["spec"], before["spec"]);
    assert!(
        env.child(ChildKind::VMCluster, "moved-a-new")
            .await?
            .is_none()
    );
    ensure!(
        recorder.records().iter().all(|r| !r.deleted),
        "something was deleted"
    );
    recorder.check("moved")?;

    // The documented way through: the annotation lifts the check; the old cluster, created by
    // this CR, goes under `zoneRemovalPolicy: Delete`.
    env.crs()
        .patch(
            "moved",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "operator.victoriametrics.com/allow-rename": "true"
            }}})),
        )
        .await?;
    env.wait_cr("moved", LONG, "the rename rolled out", |cr| {
        is_operational(cr)
            && cr.status.as_ref().is_some_and(|s| {
                s.zones.first().and_then(|z| z.vmcluster.as_deref()) == Some("moved-a-new")
            })
    })
    .await?;
    env.wait_until(LONG, "the old cluster deleted", || async {
        Ok(env
            .child(ChildKind::VMCluster, "moved-zone-a")
            .await?
            .is_none())
    })
    .await?;
    // The allowed rename kept the invariants on every state too: the other zone stayed in
    // `read` while only its agent changed.
    recorder.check("moved")?;
    drop(controller);
    Ok(())
}
