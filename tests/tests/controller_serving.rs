//! Serving safety end to end (docs/rollout.md "Serving guard"), with the controller as a real
//! process, a real API server and the simulated VictoriaMetrics operator: a change that moves
//! every zone's remote-write URL, a `maintenance` zone beside the one being updated, a VMAuth
//! renamed or deleted mid-rollout, and the CR deleted mid-rollout. Every VMAuth state is
//! recorded through watches and judged by the shared invariant checker: no target ever loses
//! its last serving zone, and at most one zone is out at a time.

use std::time::Duration;

use anyhow::Result;
use harness::controller_env::{Env, is_operational};
use harness::state_recorder::{StateRecorder, rolled_zone_by_zone};
use kube::api::DeleteParams;
use serde_json::{Value, json};
use shared::api::ZonePhase;
use shared::names::ChildKind;
use shared::rollout::membership::LiveRefs;

const LONG: Duration = Duration::from_secs(120);

/// A VMDistributed with the given zones (`name` or `name:trafficMode`).
fn manifest(name: &str, zones: &[&str], extra: &str) -> String {
    harness::manifests::one_replica(name, zones, "30s", "1s", extra, "")
}

async fn wait_generation(env: &Env, name: &str, generation: i64) -> Result<()> {
    env.wait_cr(name, LONG, "the change rolled out", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(generation)
    })
    .await?;
    Ok(())
}

async fn wait_phase(env: &Env, name: &str, zone: &str, phase: ZonePhase) -> Result<()> {
    env.wait_cr(name, LONG, &format!("{zone} in {phase:?}"), |cr| {
        cr.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.zone.as_deref() == Some(zone) && r.phase == Some(phase))
    })
    .await?;
    Ok(())
}

async fn routes(env: &Env, vmauth: &str) -> Result<LiveRefs> {
    let auth = env.child_value(ChildKind::VMAuth, vmauth).await?;
    Ok(LiveRefs::from_vmauth_spec(&auth["spec"]))
}

/// Moving every zone's remote-write URL (here the vminsert port) used to bring each updated
/// zone back for writes only: with three zones two were out of `read` at once, then `read` was
/// the empty placeholder. Now each zone leaves and rejoins both targets in its own phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_url_change_never_leaves_read_without_a_serving_zone() -> Result<()> {
    let env = Env::new("ctl-url", "400ms").await?;
    let zones = ["zone-a", "zone-b", "zone-c"];
    let (controller, _) = env
        .operational("url", &manifest("url", &zones, ""), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "url",
        json!({"zoneCommon": {"vmcluster": {"spec": {"vminsert": {"port": "8481"}}}}}),
    )
    .await?;
    wait_generation(&env, "url", 2).await?;

    let replay = recorder.check("url")?;
    // Never more than one zone missing from read, and read never empty.
    rolled_zone_by_zone(&replay, "url", &zones)?;
    for zone in zones {
        let urls = env.remote_write_urls(&format!("url-{zone}")).await?;
        assert_eq!(urls.len(), 3, "{urls:?}");
        assert!(urls.iter().all(|u| u.contains(":8481/")), "{urls:?}");
    }
    drop(controller);
    Ok(())
}

/// With the only other zone in `maintenance`, the updated zone is the only one serving both
/// targets: it is updated in place, never taken out, with a Warning event saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_serving_zone_beside_a_maintenance_zone_is_updated_in_place() -> Result<()> {
    let env = Env::new("ctl-maint", "400ms").await?;
    let zones = ["zone-a", "zone-b:maintenance"];
    let (controller, _) = env
        .operational("maint", &manifest("maint", &zones, ""), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "maint",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    wait_generation(&env, "maint", 2).await?;

    let replay = recorder.check("maint")?;
    let a = vec!["maint-zone-a".to_owned()];
    assert!(!replay.write_refs.is_empty() && !replay.read_refs.is_empty());
    assert!(replay.write_refs.iter().all(|w| *w == a), "{replay:?}");
    assert!(replay.read_refs.iter().all(|r| *r == a), "{replay:?}");
    assert!(replay.exclusions.is_empty(), "{replay:?}");
    let written: Vec<&str> = replay
        .child_spec_writes
        .iter()
        .map(|(zone, ..)| zone.as_str())
        .collect();
    assert!(
        written.contains(&"zone-a") && written.contains(&"zone-b"),
        "{written:?}"
    );
    let events = env.events("maint").await?;
    let in_place: Vec<_> = events
        .iter()
        .filter(|(t, r, _)| t == "Warning" && r == "UpdatingInPlace")
        .collect();
    assert_eq!(in_place.len(), 1, "{events:?}");
    assert!(in_place[0].2.contains("zone-a"), "{in_place:?}");
    drop(controller);
    Ok(())
}

/// Three zones, the middle one in `maintenance`: the other two take turns, and each target
/// always keeps one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_zone_beside_the_updated_ones_never_empties_a_target() -> Result<()> {
    let env = Env::new("ctl-maint3", "400ms").await?;
    let zones = ["zone-a", "zone-b:maintenance", "zone-c"];
    let (controller, _) = env
        .operational("maint3", &manifest("maint3", &zones, ""), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;

    env.patch_spec(
        "maint3",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    wait_generation(&env, "maint3", 2).await?;

    let replay = recorder.check("maint3")?;
    assert!(
        replay.write_refs.iter().all(|w| !w.is_empty()),
        "{replay:?}"
    );
    assert!(replay.read_refs.iter().all(|r| !r.is_empty()), "{replay:?}");
    assert_eq!(replay.exclusions, ["zone-a", "zone-c"], "{replay:?}");
    drop(controller);
    Ok(())
}

/// A `vmauth.name` change after a rollout: the controller creates the new VMAuth (generation
/// 1) and must judge it by that generation, not by the last one it wrote to the old VMAuth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_vmauth_settles_without_a_restart() -> Result<()> {
    let env = Env::new("ctl-rename", "300ms").await?;
    let zones = ["zone-a", "zone-b"];
    let (controller, _) = env
        .operational("rename", &manifest("rename", &zones, ""), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    // A rollout first, so the old VMAuth is past generation 1.
    env.patch_spec(
        "rename",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    wait_generation(&env, "rename", 2).await?;
    let old = env.child_value(ChildKind::VMAuth, "rename").await?;
    assert!(old["metadata"]["generation"].as_i64().unwrap_or(0) > 1);

    env.patch_spec("rename", json!({"vmauth": {"name": "global"}}))
        .await?;
    wait_generation(&env, "rename", 3).await?;
    let new = routes(&env, "global").await?;
    assert_eq!(new.write.len(), 2, "{new:?}");
    assert_eq!(new.read.len(), 2, "{new:?}");
    let old = env.child_value(ChildKind::VMAuth, "rename").await?;
    assert!(
        old.pointer("/metadata/labels/operator.victoriametrics.com~1vmdistributed")
            .is_none(),
        "the old VMAuth is released: {:?}",
        old["metadata"]
    );
    assert_eq!(LiveRefs::from_vmauth_spec(&old["spec"]).read.len(), 2);
    recorder.check("rename")?;
    drop(controller);
    Ok(())
}

/// Someone deletes the VMAuth while a zone is being applied: the controller creates it again
/// (routing the other zones, as before) and the rollout finishes without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmauth_deleted_mid_phase_comes_back_and_the_rollout_finishes() -> Result<()> {
    let env = Env::new("ctl-vmauth-gone", "1500ms").await?;
    let zones = ["zone-a", "zone-b", "zone-c"];
    let (controller, _) = env
        .operational("lost", &manifest("lost", &zones, ""), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.patch_spec(
        "lost",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    wait_phase(&env, "lost", "zone-b", ZonePhase::Applying).await?;
    let before = env.child_value(ChildKind::VMAuth, "lost").await?;
    env.children(ChildKind::VMAuth)
        .delete("lost", &DeleteParams::default())
        .await?;
    wait_generation(&env, "lost", 2).await?;
    let after = env.child_value(ChildKind::VMAuth, "lost").await?;
    assert_ne!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "re-created"
    );
    let refs = LiveRefs::from_vmauth_spec(&after["spec"]);
    assert_eq!(refs.write.len(), 3, "{refs:?}");
    assert_eq!(refs.read.len(), 3, "{refs:?}");
    recorder.check("lost")?;
    drop(controller);
    Ok(())
}

/// Deleting a CR with `retain: true` while a zone is out of the VMAuth: the VMAuth survives, so
/// the zone goes back into it before it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_cr_mid_rollout_puts_the_zone_back_into_a_vmauth_that_survives() -> Result<()>
{
    let env = Env::new("ctl-del-mid", "1500ms").await?;
    let zones = ["zone-a", "zone-b", "zone-c"];
    let (controller, _) = env
        .operational("kept", &manifest("kept", &zones, "  retain: true\n"), LONG)
        .await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    env.patch_spec(
        "kept",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.111.0-cluster"}}}}),
    )
    .await?;
    wait_phase(&env, "kept", "zone-b", ZonePhase::Applying).await?;
    let excluded = routes(&env, "kept").await?;
    assert!(!excluded.write.contains("kept-zone-b"), "{excluded:?}");
    env.crs().delete("kept", &DeleteParams::default()).await?;
    env.wait_cr_gone("kept", LONG).await?;
    let auth = env.child_value(ChildKind::VMAuth, "kept").await?;
    let refs = LiveRefs::from_vmauth_spec(&auth["spec"]);
    assert_eq!(refs.write.len(), 3, "{refs:?}");
    assert_eq!(refs.read.len(), 3, "{refs:?}");
    assert_eq!(
        auth.pointer("/metadata/labels/operator.victoriametrics.com~1vmdistributed"),
        None::<&Value>,
        "released"
    );
    recorder.check("kept")?;
    drop(controller);
    Ok(())
}
