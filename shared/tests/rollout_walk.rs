//! Whole rollouts walked step by step in a simulated cluster (see `rollout_world`).

mod rollout_world;

use rollout_world::{World, zones_cr};
use serde_json::json;
use shared::api::{UpdateStatus, ZonePhase};
use shared::names::ChildKind;
use shared::rollout::EventReason;

fn set_version(world: &mut World, version: &str) {
    world.edit(|cr| {
        let common = cr.spec.zone_common.as_mut().expect("zoneCommon");
        let cluster = common.vmcluster.as_mut().expect("vmcluster");
        cluster.spec.as_mut().expect("spec")["clusterVersion"] = json!(version);
    });
}

fn settled_world(n: usize) -> World {
    let mut world = World::new(zones_cr(n, "v1"));
    assert!(
        world.run_until_settled(400),
        "initial creation did not settle: {:?}",
        world.status()
    );
    world
}

#[test]
fn creation_from_scratch_settles_with_zero_writes_at_steady_state() {
    for n in [1, 2, 3, 7] {
        let mut world = settled_world(n);
        let status = world.status();
        assert_eq!(
            status.update_status,
            Some(UpdateStatus::Operational),
            "{n} zones"
        );
        assert_eq!(
            status.ready_zones.as_deref(),
            Some(format!("{n}/{n}").as_str())
        );
        assert!(
            status
                .zones
                .iter()
                .all(|z| z.ready && z.current && z.in_read && z.in_write)
        );
        // Every zone was created together: no rollouts were needed.
        assert!(
            world.events_with(EventReason::RolloutStarted).is_empty(),
            "{n} zones"
        );
        assert_eq!(world.events_with(EventReason::RolloutFinished).len(), 1);
        // Steady state: zero writes, no status change, over many reconciles.
        for _ in 0..5 {
            let decision = world.reconcile(None);
            assert!(decision.actions.is_empty(), "{:?}", decision.actions);
            assert!(!decision.status_changed);
            assert!(decision.events.is_empty());
            world.operator_tick();
        }
        let auth = world.vmauth().expect("vmauth created");
        let refs = &auth.object["spec"]["defaultTargetRefs"];
        assert_eq!(refs[0]["crd"]["objects"].as_array().map(Vec::len), Some(n));
        assert_eq!(refs[1]["crd"]["objects"].as_array().map(Vec::len), Some(n));
    }
}

#[test]
fn version_change_rolls_zones_one_at_a_time_in_spec_order_with_pauses() {
    for n in [1, 2, 3, 7] {
        let mut world = settled_world(n);
        let from = world.events.len();
        set_version(&mut world, "v2");
        assert!(
            world.run_until_settled(2000),
            "{n} zones: rollout did not finish: {:?}",
            world.status()
        );
        let expected: Vec<String> = (0..n).map(|i| format!("z{i}")).collect();
        assert_eq!(world.started_order(from), expected, "{n} zones");
        for i in 0..n {
            assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v2");
        }
        // updatePause (5s) between a zone's end and the next zone's start.
        let updated: Vec<_> = world.events[from..]
            .iter()
            .filter(|(_, e)| e.reason == EventReason::ZoneUpdated)
            .map(|(t, _)| *t)
            .collect();
        let started: Vec<_> = world.events[from..]
            .iter()
            .filter(|(_, e)| e.reason == EventReason::RolloutStarted)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(updated.len(), n);
        for i in 1..n {
            let gap = started[i].duration_since(updated[i - 1]);
            assert!(
                gap >= jiff::SignedDuration::from_secs(5),
                "{n} zones: gap {gap:?}"
            );
        }
        assert_eq!(world.events_with(EventReason::RolloutFinished).len(), 2);
        // Every zone child write happened in that zone's Applying phase (asserted by the world)
        // and nothing else was written at creation time.
        assert!(world.writes.iter().all(|(kind, _, zone, phase, what)| {
            *kind == ChildKind::VMAuth
                || *what == "create"
                || *what == "patch"
                || (zone.is_some() && *phase == Some(ZonePhase::Applying))
                || *what == "apply"
        }));
    }
}
