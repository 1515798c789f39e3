//! What the status says when something the rollout needs fails: a child write the API server
//! refuses, a child the VictoriaMetrics operator reports `failed`, a VMAuth the operator never
//! reconciles (walked in the simulated cluster of `world`).

use crate::world::{World, settled_world, zones_cr};
use serde_json::json;
use shared::api::{UpdateStatus, ZonePhase};
use shared::names::ChildKind;
use shared::rollout::EventReason;
use shared::versions::PinnedVersions;

fn zone_message(world: &World, zone: &str) -> Option<String> {
    world
        .status()
        .zones
        .iter()
        .find(|z| z.name == zone)
        .and_then(|z| z.message.clone())
}

const REFUSAL: &str = "VMCluster.operator.victoriametrics.com \"demo-z1\" is invalid: spec.clusterVersion: Invalid value: \"v2\": refused by policy";

/// Reconcile (with operator ticks) until the refused write was tried once.
fn until_refused(world: &mut World) -> usize {
    for step in 0..200 {
        world.reconcile(None);
        world.check_invariants();
        if !world.memory_child_failures.is_empty() {
            return step;
        }
        world.operator_tick();
        world.check_invariants();
    }
    panic!("the refused write was never tried: {:?}", world.status());
}

#[test]
fn a_refused_child_write_is_reported_in_the_reconcile_that_met_it_and_clears_itself() {
    let mut world = settled_world(3);
    world
        .refused
        .insert((ChildKind::VMCluster, "demo-z1".into()), REFUSAL.into());
    world.set_version("v2");
    until_refused(&mut world);
    // Already in the status written by the reconcile whose write failed.
    let (status, reason, message) = world.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ChildRejected")
    );
    assert!(
        message.contains("the API server refused the apply of VMCluster demo-z1 in zone z1")
            && message.contains(REFUSAL),
        "{message}"
    );
    assert_eq!(world.status().update_status, Some(UpdateStatus::Failed));
    assert!(
        zone_message(&world, "z1").is_some_and(|m| m.contains(REFUSAL)),
        "{:?}",
        world.status().zones
    );
    assert_eq!(zone_message(&world, "z0"), None);
    assert_eq!(world.events_with(EventReason::ChildRejected).len(), 1);
    // Every retry meets the same refusal: no new event, the same status.
    let before = world.status();
    world.run_steps(20);
    assert_eq!(world.events_with(EventReason::ChildRejected).len(), 1);
    assert_eq!(world.condition("Degraded").1, "ChildRejected");
    assert_eq!(world.status().conditions, before.conditions);
    // No other zone was touched meanwhile.
    assert_eq!(world.backend_spec("z2")["clusterVersion"], "v1");

    // The cause goes away (the policy is removed): the next attempt goes through, the report
    // clears and the rollout finishes.
    world.refused.clear();
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert_eq!(world.condition("Degraded").0, "False");
    assert_eq!(zone_message(&world, "z1"), None);
    assert!(world.memory_child_failures.is_empty());
    for zone in ["z0", "z1", "z2"] {
        assert_eq!(world.backend_spec(zone)["clusterVersion"], "v2");
    }
}

#[test]
fn a_distinct_cause_gets_its_own_event_and_a_spec_that_needs_no_such_write_clears_it() {
    let mut world = settled_world(2);
    let key = (ChildKind::VMCluster, "demo-z0".to_owned());
    world.refused.insert(key.clone(), "denied: first".into());
    world.set_version("v2");
    until_refused(&mut world);
    assert_eq!(world.events_with(EventReason::ChildRejected).len(), 1);
    // Another refusal of the same write is another cause.
    world.refused.insert(key, "denied: second".into());
    world.run_steps(3);
    let notes: Vec<&str> = world
        .events_with(EventReason::ChildRejected)
        .iter()
        .map(|e| e.note.as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[1].contains("denied: second"), "{notes:?}");
    // The user goes back to the version every zone runs: the refused write is not wanted any
    // more, so its report goes at once, without a successful write.
    world.set_version("v1");
    world.reconcile(None);
    assert_ne!(world.condition("Degraded").1, "ChildRejected");
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert_eq!(zone_message(&world, "z0"), None);
}

#[test]
fn a_child_reporting_failed_halts_the_rollout_at_once_with_its_reason() {
    let mut world = settled_world(3);
    world.failing.insert(
        "demo-z1".into(),
        "cannot create statefulset: quota exceeded".into(),
    );
    world.set_version("v2");
    // Far less than readyTimeout (30 one-second ticks) after z1 is applied.
    let mut halted_after = None;
    for step in 0..80 {
        world.reconcile(None);
        world.operator_tick();
        world.check_invariants();
        if world.condition("Degraded").0 == "True" {
            halted_after = Some(step);
            break;
        }
    }
    assert!(halted_after.is_some(), "never halted: {:?}", world.status());
    let rollout = world.status().rollout.unwrap_or_default();
    assert_eq!(
        (rollout.zone.as_deref(), rollout.phase),
        (Some("z1"), Some(ZonePhase::Applying))
    );
    let since = rollout.phase_since.expect("phaseSince").0;
    assert!(
        since.duration_until(world.now) < jiff::SignedDuration::from_secs(10),
        "halted {} after the phase began",
        since.duration_until(world.now)
    );
    let (_, reason, message) = world.condition("Degraded");
    assert_eq!(reason, "ZoneNotReady");
    assert!(
        message.contains(
            "VMCluster demo-z1 reports failed: cannot create statefulset: quota exceeded"
        ),
        "{message}"
    );
    assert_eq!(world.status().update_status, Some(UpdateStatus::Failed));
    assert_eq!(world.events_with(EventReason::ZoneNotReady).len(), 1);
    assert_eq!(world.backend_spec("z2")["clusterVersion"], "v1");
    // The operator recovers: the rollout resumes and finishes.
    world.failing.clear();
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert_eq!(world.backend_spec("z2")["clusterVersion"], "v2");
}

#[test]
fn a_vmauth_the_operator_never_reconciles_is_named_when_the_phase_times_out() {
    let mut world = settled_world(2);
    world.frozen.insert("demo".into());
    world.set_version("v2");
    world.run_steps(60);
    let (status, reason, message) = world.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "VMAuthNotReady")
    );
    assert!(
        message.contains(
            "the VictoriaMetrics operator has not reconciled VMAuth demo (observedGeneration "
        ) && message.ends_with("is its VMAuth controller running?; the rollout is halted"),
        "{message}"
    );
}

#[test]
fn the_status_records_the_versions_pinned_into_the_children() {
    // zones_cr sets clusterVersion: only the agents leave their version to the operator.
    let mut world = World::new(zones_cr(2, "v1"));
    world.pins = PinnedVersions::operator_defaults();
    assert!(world.run_until_settled(400), "{:?}", world.status());
    let pinned = world.status().pinned_versions.expect("pinnedVersions");
    assert_eq!(
        pinned,
        PinnedVersions {
            vmagent: PinnedVersions::operator_defaults().vmagent,
            ..PinnedVersions::default()
        }
    );
    assert_eq!(
        serde_json::to_value(world.status()).expect("serializes")["pinnedVersions"],
        json!({"vmagent": shared::versions::OPERATOR_DEFAULT_VERSION})
    );
    // Nothing pinned, nothing recorded.
    let mut unpinned = World::new(zones_cr(2, "v1"));
    assert!(unpinned.run_until_settled(400));
    assert_eq!(unpinned.status().pinned_versions, None);
}

/// Zones whose backend and agent are ready in the world right now.
fn actually_ready(world: &World) -> usize {
    let observed = world.observed();
    world
        .status()
        .zones
        .iter()
        .filter(|zone| {
            let ready = |kind: ChildKind, name: &Option<String>| {
                name.as_deref()
                    .and_then(|name| observed.find(kind, name))
                    .is_some_and(shared::children::ChildObject::is_ready)
            };
            ready(ChildKind::VMCluster, &zone.vmcluster) && ready(ChildKind::VMAgent, &zone.vmagent)
        })
        .count()
}

#[test]
fn ready_zones_is_what_the_writes_a_status_authorizes_leave_ready() {
    let mut world = settled_world(3);
    world.set_version("v2");
    let mut checked = 0;
    for _ in 0..200 {
        let decision = world.reconcile(None);
        world.check_invariants();
        let zone_writes = decision.actions.iter().any(|a| {
            matches!(a.target(), Some((kind, _)) if kind != ChildKind::VMAuth) && a.is_child_write()
        });
        if zone_writes {
            // The stored status authorized these writes; it counts the zones as they left them.
            let status = world.status();
            let total = status.zones.len();
            assert_eq!(
                status.ready_zones,
                Some(format!("{}/{total}", actually_ready(&world))),
                "{status:?}"
            );
            assert_eq!(
                status.zones.iter().filter(|z| z.ready).count(),
                actually_ready(&world)
            );
            checked += 1;
        }
        if world.status().update_status == Some(UpdateStatus::Operational) && checked > 0 {
            break;
        }
        world.operator_tick();
        world.check_invariants();
    }
    assert!(checked >= 3, "only {checked} zone writes seen");
}

#[test]
fn a_preflight_rejection_is_told_to_the_zones_it_refused() {
    let mut world = World::new(zones_cr(2, "v1"));
    let line = "preflight: spec.zones[1].vmcluster.spec.x: field not declared in schema (refused for VMCluster demo-z1 in zone z1)";
    world.memory_preflight = Some(shared::model::PreflightOutcome {
        generation: 1,
        rejection: Some(line.to_owned()),
        zone_messages: [("z1".to_owned(), line.to_owned())].into(),
    });
    world.run_steps(3);
    let (status, reason, message) = world.condition("Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert_eq!(message, line);
    assert_eq!(zone_message(&world, "z1").as_deref(), Some(line));
    assert_eq!(zone_message(&world, "z0"), None);
    assert!(world.children.is_empty(), "nothing is written");
}
