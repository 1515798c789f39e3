//! Adoption, references, ownership conflicts, deletion and zone removal, with the controller as
//! a real process against a real API server and the simulated VictoriaMetrics operator. Every
//! test replays all states it saw and checks the rollout invariants (docs/rollout.md) on each.

use std::time::Duration;

use anyhow::Result;
use harness::controller_env::{CONTROLLER_MANAGER, Env, condition, is_operational};
use harness::state_recorder::StateRecorder;
use kube::ResourceExt;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shared::names::ChildKind;

const LONG: Duration = Duration::from_secs(90);
const CLAIM: &str = "operator.victoriametrics.com/vmdistributed";
const CREATED_BY: &str = "operator.victoriametrics.com/created-by";

/// Create a VMCluster as another tool would (POST, so its manager owns the fields with Update).
async fn precreate_cluster(
    env: &Env,
    name: &str,
    version: &str,
    manager: &str,
) -> Result<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMCluster",
        "metadata": {"name": name, "labels": {"team": "storage"}},
        "spec": {
            "clusterVersion": version,
            "retentionPeriod": "30d",
            "vmstorage": {"replicaCount": 2},
            "vmselect": {"replicaCount": 1},
            "vminsert": {"replicaCount": 1}
        }
    }))?;
    let params = PostParams {
        dry_run: false,
        field_manager: Some(manager.to_owned()),
    };
    Ok(env
        .children(ChildKind::VMCluster)
        .create(&params, &object)
        .await?)
}

fn durations(yaml: &str) -> String {
    if yaml.contains("  zoneCommon:\n") {
        yaml.replace(
            "  zoneCommon:\n",
            "  zoneCommon:\n    readyTimeout: 20s\n    updatePause: 1s\n",
        )
    } else {
        yaml.replace(
            "spec:\n",
            "spec:\n  zoneCommon:\n    readyTimeout: 20s\n    updatePause: 1s\n",
        )
    }
}

fn example(name: &str) -> Result<String> {
    Ok(durations(&std::fs::read_to_string(
        harness::workspace_root().join("examples").join(name),
    )?))
}

fn field_owners(obj: &DynamicObject, field: &str) -> Vec<String> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer(&format!("/f:spec/{field}")).is_some())
        })
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_clusters_are_adopted_by_name_and_updated_in_place() -> Result<()> {
    let env = Env::new("ctl-adopt", "500ms").await?;
    let mut uids = Vec::new();
    for zone in ["zone-1", "zone-2"] {
        let created = precreate_cluster(
            &env,
            &format!("vmcluster-{zone}"),
            "v1.119.0-cluster",
            "helm",
        )
        .await?;
        uids.push(created.uid().unwrap_or_default());
    }
    // Wait until the simulated operator reports them operational, as a running install would be.
    env.wait_until(LONG, "pre-existing clusters operational", || async {
        let mut ready = true;
        for zone in ["zone-1", "zone-2"] {
            let c = env
                .child_value(ChildKind::VMCluster, &format!("vmcluster-{zone}"))
                .await?;
            ready &= c.pointer("/status/updateStatus") == Some(&json!("operational"));
        }
        Ok(ready)
    })
    .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let (controller, cr) = env
        .operational("vm-distributed", &example("distributed-chart.yaml")?, LONG)
        .await?;
    let uid = cr.uid().unwrap_or_default();

    for (zone, old_uid) in ["zone-1", "zone-2"].iter().zip(&uids) {
        let name = format!("vmcluster-{zone}");
        let cluster = env
            .child(ChildKind::VMCluster, &name)
            .await?
            .expect("cluster exists");
        assert_eq!(
            cluster.uid().as_deref(),
            Some(old_uid.as_str()),
            "{name} was re-created"
        );
        assert_eq!(
            cluster.labels().get(CLAIM).map(String::as_str),
            Some("vm-distributed")
        );
        assert_eq!(
            cluster.labels().get("team").map(String::as_str),
            Some("storage")
        );
        assert!(
            !cluster.annotations().contains_key(CREATED_BY),
            "adopted {name} got created-by"
        );
        assert!(
            cluster.owner_references().is_empty(),
            "adopted {name} got an owner reference"
        );
        let value = serde_json::to_value(&cluster)?;
        assert_eq!(
            value.pointer("/spec/clusterVersion"),
            Some(&json!("v1.120.0-cluster"))
        );
        // Fields the intent does not set stay as their owner left them.
        assert_eq!(value.pointer("/spec/retentionPeriod"), Some(&json!("30d")));
        assert_eq!(
            value.pointer("/spec/vmstorage/replicaCount"),
            Some(&json!(2))
        );
        // The intent's fields moved from the other manager to ours; the rest stayed with it.
        assert_eq!(
            field_owners(&cluster, "f:clusterVersion"),
            [CONTROLLER_MANAGER]
        );
        assert_eq!(field_owners(&cluster, "f:retentionPeriod"), ["helm"]);

        let agent = env
            .child(ChildKind::VMAgent, &format!("vm-distributed-{zone}"))
            .await?
            .expect("agent created");
        assert_eq!(agent.annotations().get(CREATED_BY), Some(&uid));
    }
    let auth = env
        .child(ChildKind::VMAuth, "vmauth-global")
        .await?
        .expect("vmauth created");
    assert_eq!(auth.annotations().get(CREATED_BY), Some(&uid));

    let replay = recorder.check("vm-distributed")?;
    assert!(
        replay
            .child_spec_writes
            .iter()
            .any(|(zone, kind, ..)| zone == "zone-1" && *kind == ChildKind::VMCluster),
        "{replay:?}"
    );
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_is_never_created_and_a_missing_one_is_reported() -> Result<()> {
    let env = Env::new("ctl-ref", "500ms").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let controller = env.ready_controller().await?;
    env.apply(&example("ref.yaml")?).await?;

    let waiting = env
        .wait_cr("with-ref", LONG, "missing ref reported", |cr| {
            cr.status.as_ref().is_some_and(|s| {
                s.zones.iter().any(|z| {
                    z.name == "zone-a"
                        && z.message
                            .as_deref()
                            .is_some_and(|m| m.contains("legacy-cluster"))
                })
            })
        })
        .await?;
    // The other zone is created meanwhile; the ref never is.
    env.wait_until(LONG, "zone-b created", || async {
        Ok(env
            .child(ChildKind::VMCluster, "with-ref-zone-b")
            .await?
            .is_some())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.child(ChildKind::VMCluster, "legacy-cluster")
            .await?
            .is_none()
    );
    assert!(!is_operational(&waiting));

    let created = precreate_cluster(&env, "legacy-cluster", "v1.119.0-cluster", "kubectl").await?;
    let cr = env.wait_operational("with-ref", LONG).await?;
    let legacy = env
        .child(ChildKind::VMCluster, "legacy-cluster")
        .await?
        .expect("ref exists");
    assert_eq!(legacy.uid(), created.uid());
    assert!(!legacy.annotations().contains_key(CREATED_BY));
    assert!(legacy.owner_references().is_empty());
    assert_eq!(
        legacy.labels().get(CLAIM).map(String::as_str),
        Some("with-ref")
    );
    let status = cr.status.unwrap_or_default();
    assert!(
        status.zones.iter().all(|z| z.ready && z.message.is_none()),
        "{status:?}"
    );
    recorder.check("with-ref")?;
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_claimed_by_another_vmdistributed_is_a_conflict_and_never_written() -> Result<()> {
    let env = Env::new("ctl-conflict", "500ms").await?;
    let controller = env.ready_controller().await?;
    env.apply(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: first
spec:
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmcluster:
      spec:
        clusterVersion: v1.110.0-cluster
        vminsert: {replicaCount: 1}
        vmselect: {replicaCount: 1}
        vmstorage: {replicaCount: 1}
  zones:
    - name: zone-a
    - name: zone-b
"#,
    )
    .await?;
    env.wait_operational("first", LONG).await?;
    let before = env
        .child_value(ChildKind::VMCluster, "first-zone-a")
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.apply(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: second
spec:
  vmauth:
    name: second-auth
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmcluster:
      spec:
        clusterVersion: v1.999.0-cluster
        vminsert: {replicaCount: 3}
        vmselect: {replicaCount: 1}
        vmstorage: {replicaCount: 1}
  zones:
    - name: zone-x
      vmcluster:
        name: first-zone-a
    - name: zone-y
"#,
    )
    .await?;
    let second = env
        .wait_cr("second", LONG, "ownership conflict reported", |cr| {
            condition(cr, "Ready").is_some_and(|c| c.reason == "OwnershipConflict")
                || cr.status.as_ref().is_some_and(|s| {
                    s.zones.iter().any(|z| {
                        z.message
                            .as_deref()
                            .is_some_and(|m| m.contains("first-zone-a") && m.contains("first"))
                    })
                })
        })
        .await?;
    assert!(!is_operational(&second));
    env.wait_event("second", "Warning", "OwnershipConflict", LONG)
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env
        .child_value(ChildKind::VMCluster, "first-zone-a")
        .await?;
    assert_eq!(
        after["spec"], before["spec"],
        "the conflicting child was written"
    );
    assert_eq!(
        after.pointer("/metadata/labels"),
        before.pointer("/metadata/labels")
    );
    assert_eq!(
        after.pointer("/metadata/annotations"),
        before.pointer("/metadata/annotations")
    );
    assert!(is_operational(&env.crs().get("first").await?));
    recorder.check("first")?;
    recorder.check("second")?;
    drop(controller);
    Ok(())
}

const DELETION: &str = r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: gone
spec:
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmcluster:
      spec:
        clusterVersion: v1.110.0-cluster
        vminsert: {replicaCount: 1}
        vmselect: {replicaCount: 1}
        vmstorage: {replicaCount: 1}
  zones:
    - name: zone-a
    - name: zone-b
      vmcluster:
        name: adopted-b
"#;

fn released(obj: &DynamicObject) -> bool {
    !obj.labels().contains_key(CLAIM)
        && !obj
            .labels()
            .contains_key("operator.victoriametrics.com/zone")
        && !obj.annotations().contains_key(CREATED_BY)
        && !obj
            .annotations()
            .contains_key("operator.victoriametrics.com/spec-hash")
        && obj.owner_references().is_empty()
        // Its fields are handed back too: no entry of ours stays in `managedFields`.
        && obj
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|entry| entry.manager.as_deref() != Some(CONTROLLER_MANAGER))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_without_retain_deletes_created_children_and_releases_adopted_ones() -> Result<()>
{
    let env = Env::new("ctl-delete", "300ms").await?;
    let adopted = precreate_cluster(&env, "adopted-b", "v1.110.0-cluster", "helm").await?;
    let (controller, _) = env.operational("gone", DELETION, LONG).await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.crs().delete("gone", &DeleteParams::default()).await?;
    env.wait_cr_gone("gone", LONG).await?;
    env.ensure_gone(&[
        (ChildKind::VMCluster, "gone-zone-a"),
        (ChildKind::VMAgent, "gone-zone-a"),
        (ChildKind::VMAgent, "gone-zone-b"),
        (ChildKind::VMAuth, "gone"),
    ])
    .await?;
    let kept = env
        .child(ChildKind::VMCluster, "adopted-b")
        .await?
        .expect("adopted cluster kept");
    assert_eq!(kept.uid(), adopted.uid());
    assert!(
        released(&kept),
        "adopted cluster not released: {:?}",
        kept.metadata
    );
    assert_eq!(
        kept.labels().get("team").map(String::as_str),
        Some("storage")
    );
    recorder.check("gone")?;
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_removes_owner_references_and_deletion_releases_everything() -> Result<()> {
    let env = Env::new("ctl-retain", "300ms").await?;
    precreate_cluster(&env, "adopted-b", "v1.110.0-cluster", "helm").await?;
    let (controller, _) = env.operational("gone", DELETION, LONG).await?;
    let created = env
        .child(ChildKind::VMCluster, "gone-zone-a")
        .await?
        .expect("created");
    assert_eq!(created.owner_references().len(), 1);
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec("gone", json!({"retain": true})).await?;
    env.wait_until(LONG, "owner references removed", || async {
        let mut none = true;
        for (kind, name) in [
            (ChildKind::VMCluster, "gone-zone-a"),
            (ChildKind::VMAgent, "gone-zone-a"),
            (ChildKind::VMAgent, "gone-zone-b"),
            (ChildKind::VMAuth, "gone"),
        ] {
            none &= env
                .child(kind, name)
                .await?
                .is_some_and(|c| c.owner_references().is_empty());
        }
        Ok(none)
    })
    .await?;
    env.wait_operational("gone", LONG).await?;

    env.crs().delete("gone", &DeleteParams::default()).await?;
    env.wait_cr_gone("gone", LONG).await?;
    for (kind, name) in [
        (ChildKind::VMCluster, "gone-zone-a"),
        (ChildKind::VMCluster, "adopted-b"),
        (ChildKind::VMAgent, "gone-zone-a"),
        (ChildKind::VMAgent, "gone-zone-b"),
        (ChildKind::VMAuth, "gone"),
    ] {
        let child = env.child(kind, name).await?;
        let child = child.unwrap_or_else(|| panic!("{kind} {name} was deleted despite retain"));
        assert!(
            released(&child),
            "{kind} {name} not released: {:?}",
            child.metadata
        );
    }
    assert_eq!(
        env.child(ChildKind::VMCluster, "gone-zone-a")
            .await?
            .and_then(|c| c.uid()),
        created.uid()
    );
    recorder.check("gone")?;
    drop(controller);
    Ok(())
}

async fn zone_removal(policy: &str) -> Result<()> {
    let env = Env::new(&format!("ctl-rm-{}", policy.to_lowercase()), "300ms").await?;
    let controller = env.ready_controller().await?;
    let manifest = |zones: &str| {
        format!(
            r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: shrink
spec:
  zoneRemovalPolicy: {policy}
  zoneCommon:
    readyTimeout: 20s
    updatePause: 1s
    vmcluster:
      spec:
        vminsert: {{replicaCount: 1}}
        vmselect: {{replicaCount: 1}}
        vmstorage: {{replicaCount: 1}}
  zones:
{zones}"#
        )
    };
    env.apply(&manifest(
        "    - name: zone-a\n    - name: zone-b\n    - name: zone-c\n",
    ))
    .await?;
    env.wait_operational("shrink", LONG).await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.apply(&manifest("    - name: zone-a\n    - name: zone-b\n"))
        .await?;
    env.wait_cr("shrink", LONG, "operational with two zones", |cr| {
        is_operational(cr) && cr.status.as_ref().is_some_and(|s| s.zones.len() == 2)
    })
    .await?;
    // Wait for the removed zone's children to be handled.
    env.wait_until(LONG, "zone-c handled", || async {
        let cluster = env.child(ChildKind::VMCluster, "shrink-zone-c").await?;
        let agent = env.child(ChildKind::VMAgent, "shrink-zone-c").await?;
        Ok(match policy {
            "Delete" => cluster.is_none() && agent.is_none(),
            _ => cluster.as_ref().is_some_and(released) && agent.as_ref().is_some_and(released),
        })
    })
    .await?;
    if policy == "Retain" {
        // Whoever manages the released cluster now applies it as their own: a field our intent
        // set (vmstorage's replicaCount 1) takes their value without a conflict to force.
        let mine = json!({
            "apiVersion": "operator.victoriametrics.com/v1beta1",
            "kind": "VMCluster",
            "metadata": {"name": "shrink-zone-c"},
            "spec": {"vmstorage": {"replicaCount": 2}},
        });
        let applied = env
            .children(ChildKind::VMCluster)
            .patch(
                "shrink-zone-c",
                &PatchParams::apply("platform-team"),
                &Patch::Apply(&mine),
            )
            .await?;
        assert_eq!(
            applied.data["spec"]["vmstorage"]["replicaCount"], 2,
            "{:?}",
            applied.data
        );
    }
    for zone in ["zone-a", "zone-b"] {
        let agent = env
            .child_value(ChildKind::VMAgent, &format!("shrink-{zone}"))
            .await?;
        let urls: Vec<&str> = agent
            .pointer("/spec/remoteWrite")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|e| e["url"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(urls.len(), 2, "{urls:?}");
        assert!(urls.iter().all(|u| !u.contains("zone-c")), "{urls:?}");
    }
    let auth = env.child_value(ChildKind::VMAuth, "shrink").await?;
    let refs = shared::rollout::membership::LiveRefs::from_vmauth_spec(&auth["spec"]);
    assert!(!refs.write.contains("shrink-zone-c") && !refs.read.contains("shrink-zone-c"));
    recorder.check("shrink")?;
    drop(controller);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_zone_with_retain_policy_releases_its_children() -> Result<()> {
    zone_removal("Retain").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_zone_with_delete_policy_deletes_its_created_children() -> Result<()> {
    zone_removal("Delete").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_with_the_garbage_collector_keeps_adopted_and_retained_children()
-> Result<()> {
    let env = Env::new("ctl-fg", "300ms").await?;
    env.cp.ensure_controller_manager().await?;
    precreate_cluster(&env, "adopted-b", "v1.110.0-cluster", "helm").await?;
    let (controller, _) = env.operational("gone", DELETION, LONG).await?;
    // A second CR with retain: true, whose children must all survive a foreground deletion.
    env.apply(
        &DELETION
            .replace("name: gone", "name: kept")
            .replace("name: adopted-b", "name: kept-b")
            .replace(
                "spec:\n  zoneCommon:",
                "spec:\n  retain: true\n  zoneCommon:",
            ),
    )
    .await?;
    env.wait_operational("kept", LONG).await?;

    let foreground = DeleteParams::foreground();
    env.crs().delete("gone", &foreground).await?;
    env.crs().delete("kept", &foreground).await?;
    env.wait_until(LONG, "both CRs are gone", || async {
        Ok(
            env.crs().get_opt("gone").await?.is_none()
                && env.crs().get_opt("kept").await?.is_none(),
        )
    })
    .await?;
    env.ensure_gone(&[
        (ChildKind::VMCluster, "gone-zone-a"),
        (ChildKind::VMAgent, "gone-zone-a"),
        (ChildKind::VMAgent, "gone-zone-b"),
        (ChildKind::VMAuth, "gone"),
    ])
    .await?;
    let adopted = env
        .child(ChildKind::VMCluster, "adopted-b")
        .await?
        .expect("adopted kept");
    assert!(released(&adopted), "{:?}", adopted.metadata);
    for (kind, name) in [
        (ChildKind::VMCluster, "kept-zone-a"),
        (ChildKind::VMCluster, "kept-b"),
        (ChildKind::VMAgent, "kept-zone-a"),
        (ChildKind::VMAgent, "kept-zone-b"),
        (ChildKind::VMAuth, "kept"),
    ] {
        let child = env.child(kind, name).await?;
        let child = child.unwrap_or_else(|| panic!("retained {kind} {name} was deleted"));
        assert!(
            released(&child),
            "{kind} {name} not released: {:?}",
            child.metadata
        );
    }
    drop(controller);
    Ok(())
}
