//! Whole rollouts walked step by step in a simulated cluster (see `world`).

use crate::world::{World, settled_world, zones_cr};
use serde_json::json;
use shared::api::{UpdateStatus, ZonePhase};
use shared::names::ChildKind;
use shared::rollout::EventReason;

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
        world.set_version("v2");
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
        // The checker saw every zone leave and come back (a single zone is updated in place).
        let excluded = if n > 1 { expected.clone() } else { Vec::new() };
        assert_eq!(world.checker.replay().exclusions, excluded, "{n} zones");
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

#[test]
fn a_transition_is_written_once_with_the_status_of_the_phase_it_enters() {
    let mut world = settled_world(3);
    world.set_version("v2");
    let mut transitions = 0;
    for _ in 0..2000 {
        let before = world.status().rollout;
        let decision = world.reconcile(None);
        world.check_invariants();
        if decision.status.rollout != before {
            transitions += 1;
            assert!(decision.actions.iter().all(|a| !a.is_child_write()));
            assert!(
                !decision
                    .status
                    .reason
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty(),
                "{:?}",
                decision.status
            );
            // Deciding again on the stored transition, with nothing else changed, performs
            // the writes it authorizes without rewriting the status.
            let next = world.reconcile(None);
            world.check_invariants();
            assert!(
                !next.status_changed,
                "transition to {:?} was followed by another status write: {:?} -> {:?}",
                decision.status.rollout, decision.status, next.status
            );
            assert!(next.events.is_empty(), "{:?}", next.events);
        }
        if decision.actions.is_empty()
            && !decision.status_changed
            && world.status().update_status == Some(UpdateStatus::Operational)
        {
            break;
        }
        world.operator_tick();
        world.check_invariants();
    }
    assert_eq!(
        world.status().update_status,
        Some(UpdateStatus::Operational),
        "{:?}",
        world.status()
    );
    // Three zones, each Excluding, Applying, Restoring and leaving the zone.
    assert!(transitions >= 12, "{transitions} transitions");
}

fn condition(world: &World, type_: &str) -> (String, String) {
    let (status, reason, _) = world.condition(type_);
    (status, reason)
}

#[test]
fn a_zone_that_never_becomes_ready_halts_the_rollout_and_fixing_it_resumes() {
    for n in [2, 3, 7] {
        let mut world = settled_world(n);
        world.broken.insert("demo-z1".into());
        world.set_version("v2");
        // 30s readyTimeout, 1s ticks: plenty of time to halt.
        world.run_steps(150);
        assert_eq!(
            world.phase(),
            (Some("z1".into()), Some(ZonePhase::Applying)),
            "{n} zones"
        );
        assert_eq!(world.status().update_status, Some(UpdateStatus::Failed));
        assert_eq!(
            condition(&world, "Degraded"),
            ("True".into(), "ZoneNotReady".into())
        );
        assert_eq!(
            world.events_with(EventReason::ZoneNotReady).len(),
            1,
            "one Warning event"
        );
        // No other zone was touched: later zones still run v1.
        for i in 2..n {
            assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v1");
        }
        world.run_steps(50);
        assert_eq!(
            world.events_with(EventReason::ZoneNotReady).len(),
            1,
            "never one per retry"
        );
        // Fix the zone: the rollout resumes and finishes.
        world.broken.clear();
        assert!(world.run_until_settled(2000), "{n} zones: did not resume");
        for i in 0..n {
            assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v2");
        }
        assert_eq!(
            condition(&world, "Degraded"),
            ("False".into(), "AsExpected".into())
        );
    }
}

#[test]
fn a_spec_change_resumes_a_halted_rollout_on_the_halted_zone_first() {
    let mut world = settled_world(3);
    world.broken.insert("demo-z1".into());
    world.set_version("bad");
    world.run_steps(150);
    assert_eq!(
        condition(&world, "Degraded"),
        ("True".into(), "ZoneNotReady".into())
    );
    // The user reverts; the broken zone takes the new spec (our simulated operator recovers
    // once a new, good generation is applied).
    let from = world.events.len();
    world.broken.clear();
    world.set_version("good");
    world.reconcile(None);
    assert_eq!(
        world.phase(),
        (Some("z1".into()), Some(ZonePhase::Applying))
    );
    assert!(world.run_until_settled(2000));
    assert_eq!(
        world.started_order(from),
        ["z0", "z2"],
        "z1 first (already running), then the others by readiness and spec order"
    );
    for i in 0..3 {
        assert_eq!(
            world.backend_spec(&format!("z{i}"))["clusterVersion"],
            "good"
        );
    }
}

#[test]
fn a_spec_change_mid_rollout_is_applied_and_the_rollout_finishes_on_the_latest_spec() {
    let mut world = settled_world(3);
    world.set_version("v2");
    // Run until z1 is Applying, then change again.
    for _ in 0..500 {
        world.reconcile(None);
        world.check_invariants();
        world.operator_tick();
        if world.phase() == (Some("z1".into()), Some(ZonePhase::Applying)) {
            break;
        }
    }
    assert_eq!(world.phase().0.as_deref(), Some("z1"));
    world.set_version("v3");
    assert!(world.run_until_settled(3000));
    for i in 0..3 {
        assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v3");
    }
}

#[test]
fn crash_restart_from_any_intermediate_state() {
    // Crash at every k-th reconcile: the controller's memory is lost, and the crashed
    // reconcile executes only part of its actions. State is rebuilt from the simulated
    // children and the CR status only.
    for n in [1, 2, 3, 7] {
        // (Crashing every other reconcile would lose every preflight outcome before it is used:
        // the controller feeds it back in the next decision of the same process.)
        for every in [3, 4, 5, 7] {
            let mut world = settled_world(n);
            world.set_version("v2");
            let mut settled = false;
            for step in 0..4000 {
                let limit = (step % every == 0).then_some(step % 2);
                if limit.is_some() {
                    world.crash();
                }
                let decision = world.reconcile(limit);
                world.check_invariants();
                if limit.is_none()
                    && decision.actions.is_empty()
                    && !decision.status_changed
                    && world.status().update_status == Some(UpdateStatus::Operational)
                {
                    settled = true;
                    break;
                }
                world.operator_tick();
                world.check_invariants();
            }
            assert!(
                settled,
                "{n} zones, crash every {every}: did not finish: {:#?} {:#?}",
                world.status(),
                world
                    .observed()
                    .children
                    .iter()
                    .map(|c| (
                        &c.name,
                        &c.annotations,
                        &c.update_status,
                        c.generation,
                        c.observed_generation
                    ))
                    .collect::<Vec<_>>()
            );
            for i in 0..n {
                assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v2");
            }
        }
    }
}

#[test]
fn paused_stops_child_writes_and_unpausing_applies_the_pending_change() {
    let mut world = settled_world(3);
    world.set_version("v2");
    world.run_steps(12);
    world.edit(|cr| cr.spec.paused = Some(true));
    let writes_before = world.writes.len();
    for _ in 0..40 {
        let decision = world.reconcile(None);
        assert!(
            decision.actions.is_empty(),
            "no writes while paused: {:?}",
            decision.actions
        );
        world.operator_tick();
    }
    assert_eq!(world.writes.len(), writes_before);
    assert_eq!(world.status().update_status, Some(UpdateStatus::Paused));
    world.edit(|cr| cr.spec.paused = Some(false));
    let decision = world.reconcile(None);
    if let Some(since) = decision
        .status
        .rollout
        .as_ref()
        .and_then(|r| r.phase_since.as_ref())
    {
        assert_eq!(since.0, world.now, "unpausing restarts the phase clock");
    }
    assert!(world.run_until_settled(2000));
    for i in 0..3 {
        assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v2");
    }
}

#[test]
fn removed_zone_is_drained_then_deleted_or_released() {
    for policy in ["Delete", "Retain"] {
        let mut world = settled_world(3);
        world.edit(|cr| {
            cr.spec.zones.pop();
            cr.spec.zone_removal_policy =
                Some(serde_json::from_value(json!(policy)).expect("policy"));
        });
        assert!(world.run_until_settled(3000), "{policy}: did not settle");
        let url = "http://vminsert-demo-z2.ns.svc:8480/insert/multitenant/prometheus/api/v1/write";
        for agent in ["demo-z0", "demo-z1"] {
            let spec = &world
                .child(ChildKind::VMAgent, agent)
                .expect("agent")
                .object["spec"];
            assert!(
                !spec.to_string().contains(url),
                "{agent} still writes to the removed zone"
            );
        }
        let auth = world.vmauth().expect("vmauth").object["spec"].to_string();
        assert!(!auth.contains("demo-z2"));
        let leftover = world.child(ChildKind::VMCluster, "demo-z2");
        match policy {
            "Delete" => assert!(leftover.is_none(), "created child deleted"),
            _ => {
                let child = leftover.expect("retained");
                let meta = &child.object["metadata"];
                assert!(
                    meta["labels"]
                        .get("operator.victoriametrics.com/vmdistributed")
                        .is_none()
                );
                assert!(
                    meta["annotations"]
                        .get("operator.victoriametrics.com/spec-hash")
                        .is_none()
                );
                assert!(
                    meta["annotations"]
                        .get("operator.victoriametrics.com/created-by")
                        .is_none()
                );
                assert_eq!(meta["ownerReferences"].as_array().map(Vec::len), Some(0));
            }
        }
    }
}

#[test]
fn a_child_claimed_by_another_cr_is_never_written() {
    let mut world = World::new(zones_cr(2, "v1"));
    // zone z1's cluster already exists, labelled for CR "other".
    world.children.insert(
        ("VMCluster".into(), "demo-z1".into()),
        crate::world::SimChild {
            kind: ChildKind::VMCluster,
            object: json!({"kind": "VMCluster", "metadata": {"name": "demo-z1", "namespace": "ns",
                "uid": "foreign", "generation": 1,
                "labels": {"operator.victoriametrics.com/vmdistributed": "other"}},
                "spec": {"clusterVersion": "theirs"},
                "status": {"updateStatus": "operational", "observedGeneration": 1}}),
            pending: 0,
        },
    );
    world.run_steps(100);
    let foreign = world
        .child(ChildKind::VMCluster, "demo-z1")
        .expect("still there");
    assert_eq!(foreign.object["spec"]["clusterVersion"], "theirs");
    assert!(
        !world.writes.iter().any(|w| w.1 == "demo-z1"),
        "never written"
    );
    assert_eq!(
        condition(&world, "Degraded"),
        ("True".into(), "OwnershipConflict".into())
    );
    assert_eq!(world.events_with(EventReason::OwnershipConflict).len(), 1);
    let zone = world
        .status()
        .zones
        .into_iter()
        .find(|z| z.name == "z1")
        .expect("zone");
    assert!(
        zone.message
            .unwrap_or_default()
            .contains("VMDistributed other")
    );
    // The other zone was created and serves.
    assert!(world.child(ChildKind::VMCluster, "demo-z0").is_some());
}

#[test]
fn deletion_deletes_created_children_and_releases_adopted_ones() {
    for retain in [false, true] {
        let mut world = World::new(zones_cr(2, "v1"));
        // An adopted agent for z0: exists before, no created-by.
        world.children.insert(
            ("VMAgent".into(), "demo-z0".into()),
            crate::world::SimChild {
                kind: ChildKind::VMAgent,
                object: json!({"kind": "VMAgent", "metadata": {"name": "demo-z0", "namespace": "ns",
                    "uid": "adopted", "generation": 1}, "spec": {},
                    "status": {"updateStatus": "operational", "observedGeneration": 1}}),
                pending: 0,
            },
        );
        world.edit(|cr| cr.spec.retain = Some(retain));
        assert!(world.run_until_settled(3000), "retain {retain}");
        let adopted = world.child(ChildKind::VMAgent, "demo-z0").expect("adopted");
        assert!(
            adopted.object["metadata"]["annotations"]
                .get("operator.victoriametrics.com/created-by")
                .is_none()
        );
        assert!(adopted.object["metadata"].get("ownerReferences").is_none());
        world.mark_deleted();
        for _ in 0..20 {
            world.reconcile(None);
            world.operator_tick();
        }
        assert!(world.finalizer_removed(), "finalizer removed");
        assert!(
            world.child(ChildKind::VMAgent, "demo-z0").is_some(),
            "adopted never deleted"
        );
        assert_eq!(world.claimed(), 0, "nothing labelled for the CR remains");
        let created_left = world.child(ChildKind::VMCluster, "demo-z0").is_some();
        assert_eq!(created_left, retain, "retain {retain}");
        if retain {
            assert!(
                world.writes.iter().all(|w| w.4 != "delete"),
                "nothing deleted with retain"
            );
        }
    }
}

#[test]
fn retain_turning_true_removes_owner_references_without_a_rollout() {
    let mut world = settled_world(2);
    assert!(
        world
            .child(ChildKind::VMCluster, "demo-z0")
            .expect("c")
            .object["metadata"]["ownerReferences"][0]["uid"]
            == "cr-uid"
    );
    let from = world.events.len();
    world.edit(|cr| cr.spec.retain = Some(true));
    assert!(world.run_until_settled(200));
    for child in world.children.values() {
        let refs = child.object["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(refs.is_empty(), "{:?}", child.object["metadata"]);
    }
    assert!(
        world.started_order(from).is_empty(),
        "no rollout for a metadata change"
    );
}

#[test]
fn adopted_child_that_contains_the_intent_is_stamped_without_a_rollout() {
    let cr = zones_cr(2, "v1");
    let mut world = World::new(cr.clone());
    // Pre-existing children identical to what would be rendered, without annotations.
    let intents = shared::rollout::render_intents(&cr, &world.observed());
    for zone in &intents.zones {
        for intent in [&zone.backend, &zone.agent] {
            let mut object = intent.to_object();
            object["metadata"] = json!({"name": intent.name, "namespace": "ns", "uid": format!("pre-{}", intent.name), "generation": 1});
            object["status"] = json!({"updateStatus": "operational", "observedGeneration": 1});
            world.children.insert(
                (intent.kind.kind().into(), intent.name.clone()),
                crate::world::SimChild {
                    kind: intent.kind,
                    object,
                    pending: 0,
                },
            );
        }
    }
    assert!(world.run_until_settled(500));
    assert!(
        world.events_with(EventReason::RolloutStarted).is_empty(),
        "stamped, not rolled: {:?} {:?}",
        world.events,
        world.writes
    );
    let child = world.child(ChildKind::VMCluster, "demo-z0").expect("child");
    assert!(
        child.object["metadata"]["annotations"]
            .get("operator.victoriametrics.com/spec-hash")
            .is_some()
    );
    assert!(
        child.object["metadata"]["annotations"]
            .get("operator.victoriametrics.com/created-by")
            .is_none()
    );
}

#[test]
fn invalid_spec_writes_nothing() {
    let mut world = settled_world(2);
    let writes = world.writes.len();
    world.edit(|cr| cr.spec.zones[1].name = "Not_Valid".into());
    let decision = world.reconcile(None);
    assert!(decision.actions.is_empty());
    assert_eq!(world.writes.len(), writes);
    assert_eq!(
        condition(&world, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    assert_eq!(world.status().update_status, Some(UpdateStatus::Failed));
    assert_eq!(world.events_with(EventReason::InvalidSpec).len(), 1);
    world.reconcile(None);
    assert_eq!(
        world.events_with(EventReason::InvalidSpec).len(),
        1,
        "no event per retry"
    );
}

#[test]
fn a_new_zone_is_created_and_existing_agents_are_rolled_to_write_to_it() {
    let mut world = settled_world(2);
    world.edit(|cr| {
        cr.spec
            .zones
            .push(serde_json::from_value(json!({"name": "z2"})).expect("zone"))
    });
    assert!(world.run_until_settled(3000));
    let url = "http://vminsert-demo-z2.ns.svc:8480/insert/multitenant/prometheus/api/v1/write";
    for agent in ["demo-z0", "demo-z1", "demo-z2"] {
        let list = world
            .child(ChildKind::VMAgent, agent)
            .expect("agent")
            .object["spec"]["remoteWrite"]
            .clone();
        assert_eq!(list.as_array().map(Vec::len), Some(3), "{agent}");
        assert_eq!(list[2]["url"], url, "new target appended last on {agent}");
    }
    let status = world.status();
    assert!(status.zones.iter().all(|z| z.in_read && z.in_write));
}

#[test]
fn exclusion_waits_while_another_member_is_unready() {
    let mut world = settled_world(3);
    // A change of z0 only: z1 is current, so its unreadiness is not fixed by its own rollout
    // (an unready zone that needs one is rolled first instead, see serving.rs).
    world.edit(|cr| {
        cr.spec.zones[0].vmcluster =
            Some(serde_json::from_value(json!({"spec": {"clusterVersion": "v2"}})).expect("child"));
    });
    // Preflight of the new generation, then the transition.
    for _ in 0..4 {
        if world.phase().1.is_some() {
            break;
        }
        world.reconcile(None);
    }
    assert_eq!(
        world.phase(),
        (Some("z0".into()), Some(ZonePhase::Excluding))
    );
    // z1's agent turns unready (its pods restart) while z0 is about to leave.
    let agent = world
        .children
        .get_mut(&("VMAgent".into(), "demo-z1".into()))
        .expect("agent");
    agent.object["status"]["updateStatus"] = json!("expanding");
    let auth_before = world.vmauth().expect("vmauth").object.clone();
    let decision = world.reconcile(None);
    let progressing = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("cond");
    assert_eq!(progressing.reason, "WaitingForHealthyZones");
    assert!(
        progressing.message.contains("z1"),
        "{}",
        progressing.message
    );
    assert!(
        decision
            .actions
            .iter()
            .all(|a| a.target().is_none_or(|(k, _)| k != ChildKind::VMAuth))
    );
    assert_eq!(
        world.vmauth().expect("vmauth").object,
        auth_before,
        "z0 not excluded yet"
    );
    // z1 recovers: the rollout goes on.
    let agent = world
        .children
        .get_mut(&("VMAgent".into(), "demo-z1".into()))
        .expect("agent");
    agent.object["status"]["updateStatus"] = json!("operational");
    assert!(world.run_until_settled(2000));
}

#[test]
fn vmsingle_backends_roll_the_same_way() {
    let cr = crate::world::cr_from(json!({
        "backendType": "VMSingle",
        "zoneCommon": {"readyTimeout": "30s", "updatePause": "2s",
            "vmsingle": {"spec": {"retentionPeriod": "1"}}},
        "zones": [{"name": "z0"}, {"name": "z1"}]
    }));
    let mut world = World::new(cr);
    assert!(world.run_until_settled(500));
    let auth = &world.vmauth().expect("vmauth").object["spec"]["defaultTargetRefs"][1];
    assert_eq!(auth["crd"]["kind"], "VMSingle");
    let from = world.events.len();
    world.edit_common_single(|spec| spec["retentionPeriod"] = json!("2"));
    assert!(world.run_until_settled(2000));
    assert_eq!(world.started_order(from), ["z0", "z1"]);
    assert_eq!(
        world
            .child(ChildKind::VMSingle, "demo-z1")
            .expect("single")
            .object["spec"]["retentionPeriod"],
        "2"
    );
}

#[test]
fn disabling_the_vmauth_restores_every_zone_then_releases_it() {
    let mut world = settled_world(2);
    world.edit(|cr| {
        cr.spec.vmauth.get_or_insert_with(Default::default).enabled = Some(false);
    });
    assert!(world.run_until_settled(500));
    let auth = world.vmauth().expect("the VMAuth is kept");
    let refs = &auth.object["spec"]["defaultTargetRefs"];
    assert_eq!(
        refs[0]["crd"]["objects"].as_array().map(Vec::len),
        Some(2),
        "every zone routed"
    );
    assert!(
        auth.object["metadata"]["labels"]
            .get("operator.victoriametrics.com/vmdistributed")
            .is_none(),
        "released"
    );
    // Later rollouts never touch it again.
    let before = world.vmauth().expect("vmauth").object.clone();
    world.set_version("v2");
    assert!(world.run_until_settled(2000));
    assert_eq!(world.vmauth().expect("vmauth").object, before);
}

#[test]
fn renaming_the_vmauth_moves_to_a_new_one_and_releases_the_old() {
    let mut world = settled_world(2);
    world.edit(|cr| {
        cr.spec.vmauth.get_or_insert_with(Default::default).name = Some("global".into());
    });
    let mut settled = false;
    for _ in 0..500 {
        let decision = world.reconcile(None);
        world.check_invariants();
        if decision.actions.is_empty()
            && !decision.status_changed
            && world.status().update_status == Some(UpdateStatus::Operational)
        {
            settled = true;
            break;
        }
        world.operator_tick();
    }
    assert!(settled, "{:?}", world.status());
    let new = world
        .child(ChildKind::VMAuth, "global")
        .expect("new VMAuth");
    assert_eq!(
        new.object["spec"]["defaultTargetRefs"][0]["crd"]["objects"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let old = world
        .child(ChildKind::VMAuth, "demo")
        .expect("old VMAuth kept (Retain)");
    assert!(
        old.object["metadata"]["labels"]
            .get("operator.victoriametrics.com/vmdistributed")
            .is_none()
    );
}

#[test]
fn condition_transition_times_change_only_with_their_status() {
    let mut world = settled_world(2);
    let ready_since = |w: &World| {
        w.status()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready")
            .last_transition_time
            .clone()
    };
    let first = ready_since(&world);
    world.run_steps(20);
    assert_eq!(
        ready_since(&world),
        first,
        "unchanged while Ready stays True"
    );
    world.set_version("v2");
    world.run_steps(3);
    assert_ne!(
        ready_since(&world),
        first,
        "changed when Ready turned False"
    );
}

/// The intents the first Preflight action after a spec change dry-runs, as (kind, name).
fn first_preflight(world: &mut World) -> Option<Vec<(ChildKind, String)>> {
    for _ in 0..6 {
        let decision = world.reconcile(None);
        for action in &decision.actions {
            if let shared::rollout::Action::Preflight { intents, .. } = action {
                let mut names: Vec<_> = intents.iter().map(|i| (i.kind, i.name.clone())).collect();
                names.sort();
                return Some(names);
            }
        }
        if world.phase().1.is_some() {
            return None;
        }
    }
    None
}

#[test]
fn preflight_dry_runs_only_the_children_a_new_generation_changes() {
    // Creation: nothing exists, every child is tried.
    let mut world = World::new(zones_cr(2, "v1"));
    let all = first_preflight(&mut world).expect("a preflight before creation");
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(world.run_until_settled(400));
    // A clusterVersion change rewrites the backends only: the agents and the VMAuth already
    // carry their intents, so there is nothing of theirs to try out.
    world.set_version("v2");
    let changed = first_preflight(&mut world).expect("a preflight of the new generation");
    assert_eq!(
        changed,
        [
            (ChildKind::VMCluster, "demo-z0".to_owned()),
            (ChildKind::VMCluster, "demo-z1".to_owned())
        ]
    );
    assert!(world.run_until_settled(400));
    // A change no child sees (the pause between zones) needs no dry-run at all, and the
    // generation still counts as preflighted.
    world.edit(|cr| {
        cr.spec
            .zone_common
            .as_mut()
            .expect("zoneCommon")
            .update_pause = Some("3s".into());
    });
    assert_eq!(first_preflight(&mut world), None);
    assert!(world.run_until_settled(400));
    let status = world.status();
    assert_eq!(status.preflight_generation, world.cr.metadata.generation);
}
