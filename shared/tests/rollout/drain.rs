//! The persistent-queue drain (docs/rollout.md "Persistent-queue drain") walked in the simulated
//! cluster: each agent has one pod whose `/metrics` page reports, per `remoteWrite` entry, what
//! the test says its queue holds. The world checks the invariants on every state.

use crate::world::{World, remote_write_urls, run_until, settled_world};
use shared::api::{DrainState, UpdateStatus, ZonePhase};
use shared::names::ChildKind;
use shared::rollout::EventReason;

const MIB: u64 = 1 << 20;

/// The URL agents write `zone`'s backend at.
fn backend_url(world: &World, zone: usize) -> String {
    remote_write_urls(world, "demo-z0")[zone].clone()
}

fn drain_state(world: &World) -> Option<DrainState> {
    world.status().rollout.and_then(|r| r.drain)
}

fn start_update(world: &mut World) {
    world.set_version("v2");
}

#[test]
fn a_zone_leaves_writes_only_once_every_agent_sent_what_it_queued_for_it() {
    let mut world = settled_world(3);
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z2".into(), url.clone()), MIB);
    let auth_before = world.vmauth().expect("vmauth").object.clone();
    start_update(&mut world);
    run_until(&mut world, 20, "draining in Excluding", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Excluding))
            && drain_state(w) == Some(DrainState::Draining)
            && w.probes > 0
    });
    world.run_steps(5);
    assert_eq!(
        world.phase(),
        (Some("z0".into()), Some(ZonePhase::Excluding))
    );
    let (_, reason, message) = world.condition("Progressing");
    assert_eq!(reason, "DrainingQueues");
    assert!(
        message.contains("VMAgent demo-z2 pod demo-z2-0 holds 1.0 MiB for VMCluster demo-z0"),
        "{message}"
    );
    assert_eq!(
        world.vmauth().expect("vmauth").object["spec"],
        auth_before["spec"],
        "the VMAuth still routes writes to z0"
    );
    world.queued.clear();
    run_until(&mut world, 10, "Applying", |w| {
        w.phase().1 == Some(ZonePhase::Applying)
    });
    assert!(world.run_until_settled(400), "{:?}", world.status());
}

#[test]
fn a_zone_rejoins_reads_only_once_its_backlog_is_delivered() {
    let mut world = settled_world(3);
    start_update(&mut world);
    run_until(&mut world, 60, "z0 restoring", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Restoring))
    });
    // What the other agents buffered while z0's cluster restarted.
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z1".into(), url.clone()), 300);
    world.run_steps(6);
    assert_eq!(
        world.phase(),
        (Some("z0".into()), Some(ZonePhase::Restoring))
    );
    assert!(
        !world.status().zones[0].in_read,
        "z0 must not serve reads while demo-z1 still holds data for it"
    );
    world.queued.clear();
    run_until(&mut world, 20, "z0 back in read", |w| {
        w.status().zones[0].in_read
    });
    assert!(world.run_until_settled(400), "{:?}", world.status());
}

#[test]
fn a_queue_that_never_drains_halts_the_rollout_until_the_drain_is_skipped() {
    let mut world = settled_world(3);
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z1".into(), url), 5 * MIB);
    start_update(&mut world);
    // readyTimeout 30s, no drainTimeout: the drain gets 30s.
    run_until(&mut world, 80, "halted", |w| {
        w.status().update_status == Some(UpdateStatus::Failed)
    });
    let (_, reason, message) = world.condition("Degraded");
    assert_eq!(reason, "QueueNotDrained");
    assert!(message.contains("within drainTimeout (30s)"), "{message}");
    assert!(
        message.contains("VMAgent demo-z1 pod demo-z1-0 holds 5.0 MiB"),
        "{message}"
    );
    assert!(
        message.contains("operator.victoriametrics.com/skip-drain"),
        "{message}"
    );
    assert_eq!(world.events_with(EventReason::QueueNotDrained).len(), 1);
    // No other zone is touched while halted.
    let before = world.writes.len();
    world.run_steps(10);
    assert!(
        world.writes[before..]
            .iter()
            .all(|w| w.0 == ChildKind::VMAuth || w.1 == "demo-z0"),
        "{:?}",
        &world.writes[before..]
    );
    world.edit(|cr| {
        cr.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "operator.victoriametrics.com/skip-drain".into(),
                "true".into(),
            );
    });
    assert!(world.run_until_settled(400), "{:?}", world.status());
}

#[test]
fn a_short_drain_timeout_is_its_own() {
    let mut world = settled_world(2);
    world.edit(|cr| {
        cr.spec.zone_common.as_mut().expect("common").drain_timeout = Some("5s".into());
    });
    assert!(world.run_until_settled(50));
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z1".into(), url), 10);
    start_update(&mut world);
    run_until(&mut world, 30, "halted", |w| {
        w.status().update_status == Some(UpdateStatus::Failed)
    });
    let (_, _, message) = world.condition("Degraded");
    assert!(message.contains("within drainTimeout (5s)"), "{message}");
}

#[test]
fn an_agent_with_no_ready_pod_is_named_on_its_zone() {
    let mut world = settled_world(3);
    world.agents_without_pods.insert("demo-z2".into());
    start_update(&mut world);
    run_until(&mut world, 20, "draining", |w| {
        drain_state(w) == Some(DrainState::Draining) && w.probes > 1
    });
    world.run_steps(2);
    let zone = &world.status().zones[2];
    assert_eq!(
        zone.message.as_deref(),
        Some(
            "VMAgent demo-z2 has no ready pod: the drain of its queue for VMCluster demo-z0 waits for one"
        )
    );
    world.agents_without_pods.clear();
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert_eq!(world.status().zones[2].message, None);
}

#[test]
fn removing_a_middle_zone_waits_for_the_queues_it_would_shift() {
    let mut world = settled_world(3);
    // demo-z0 still holds data for z2, whose queue is entry 3 and becomes entry 2.
    let url_z2 = backend_url(&world, 2);
    world.queued.insert(("demo-z0".into(), url_z2), 4096);
    world.edit(|cr| {
        cr.spec.zones.remove(1);
    });
    run_until(&mut world, 40, "z0 applying, draining", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Applying))
            && drain_state(w) == Some(DrainState::Draining)
    });
    world.run_steps(5);
    assert_eq!(
        remote_write_urls(&world, "demo-z0").len(),
        3,
        "demo-z0 keeps its list"
    );
    let (_, reason, message) = world.condition("Progressing");
    assert_eq!(reason, "DrainingQueues");
    assert!(
        message.contains("holds 4.0 KiB for VMCluster demo-z2"),
        "{message}"
    );
    world.queued.clear();
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert_eq!(remote_write_urls(&world, "demo-z0").len(), 2);
}

#[test]
fn a_crash_mid_drain_polls_again_and_does_not_pass_on_old_polls() {
    let mut world = settled_world(3);
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z1".into(), url), 1);
    start_update(&mut world);
    run_until(&mut world, 20, "draining", |w| {
        drain_state(w) == Some(DrainState::Draining) && w.probes > 1
    });
    world.crash();
    world.run_steps(4);
    assert_eq!(
        world.phase(),
        (Some("z0".into()), Some(ZonePhase::Excluding))
    );
    world.queued.clear();
    assert!(world.run_until_settled(400), "{:?}", world.status());
}

#[test]
fn a_settled_world_never_polls() {
    let mut world = settled_world(3);
    let probes = world.probes;
    world.run_steps(20);
    assert_eq!(world.probes, probes);
}

#[test]
fn an_empty_queue_drains_with_no_status_write_but_its_end() {
    let mut world = settled_world(3);
    start_update(&mut world);
    run_until(&mut world, 20, "draining", |w| {
        drain_state(w) == Some(DrainState::Draining)
    });
    let mut writes = 0;
    for _ in 0..10 {
        let decision = world.reconcile(None);
        world.check_invariants();
        if decision.status_changed {
            writes += 1;
        }
        if drain_state(&world) != Some(DrainState::Draining) {
            break;
        }
        world.operator_tick();
    }
    assert_eq!(
        drain_state(&world),
        Some(DrainState::Drained),
        "{:?}",
        world.status()
    );
    assert_eq!(writes, 1, "only the transition to Drained is written");
}

#[test]
fn a_url_change_waits_for_the_queues_the_agents_new_list_renames() {
    let mut world = settled_world(3);
    // demo-z0 still holds data for z1 at the URL about to change.
    let old_url_z1 = backend_url(&world, 1);
    world
        .queued
        .insert(("demo-z0".into(), old_url_z1.clone()), 2048);
    world.edit_common_cluster(|spec| spec["vminsert"]["port"] = serde_json::json!("8481"));
    run_until(&mut world, 60, "z0's agent held in Applying", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Applying))
            && drain_state(w) == Some(DrainState::Draining)
    });
    world.run_steps(5);
    assert!(
        remote_write_urls(&world, "demo-z0").contains(&old_url_z1),
        "demo-z0 keeps the list whose queue is not empty"
    );
    let (_, reason, message) = world.condition("Progressing");
    assert_eq!(reason, "DrainingQueues");
    assert!(
        message.contains("holds 2.0 KiB for VMCluster demo-z1"),
        "{message}"
    );
    world.queued.clear();
    assert!(world.run_until_settled(600), "{:?}", world.status());
    assert!(
        remote_write_urls(&world, "demo-z0")
            .iter()
            .all(|url| url.contains(":8481/")),
        "{:?}",
        remote_write_urls(&world, "demo-z0")
    );
}

#[test]
fn a_decision_right_after_a_poll_asks_for_the_next_one_only_when_it_is_due() {
    let mut world = settled_world(3);
    let url = backend_url(&world, 0);
    world.queued.insert(("demo-z1".into(), url), 10);
    start_update(&mut world);
    run_until(&mut world, 20, "polled", |w| {
        drain_state(w) == Some(DrainState::Draining) && w.probes > 0
    });
    // Decided again at once, as the controller does after a poll: no second poll yet.
    let probes = world.probes;
    let decision = world.reconcile(None);
    assert_eq!(world.probes, probes, "{:?}", decision.actions);
    let wait = decision.requeue_after.expect("a requeue for the next poll");
    assert!(
        wait <= shared::queues::POLL_INTERVAL,
        "next poll in {wait:?}"
    );
    // Once it is due, the next decision polls.
    world.now = world
        .now
        .checked_add(shared::queues::POLL_INTERVAL)
        .expect("time");
    world.reconcile(None);
    assert_eq!(world.probes, probes + 1);
}
