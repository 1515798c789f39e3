//! Serving safety (docs/rollout.md "Serving guard"): rollouts walked in the simulated cluster
//! where the simple rules are not enough: a change that moves every zone's remote-write URL,
//! zones that take no traffic or never become ready beside the one being updated, heals that
//! need a spec change, a VMAuth that disappears or changes name, and the CR deleted mid-rollout.
//! The world checks the invariants on every state it passes through.

use crate::world::{SimChild, World, cr_from, remote_write_urls, run_until, zones_cr};
use serde_json::{Value, json};
use shared::api::{UpdateStatus, ZonePhase};
use shared::names::ChildKind;
use shared::rollout::EventReason;
use shared::rollout::invariants::Invariant;

fn settled(world: &mut World) {
    assert!(
        world.run_until_settled(600),
        "did not settle: {:?}",
        world.status()
    );
}

fn zones_with_modes(modes: &[&str]) -> World {
    let zones: Vec<Value> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": format!("z{i}"), "trafficMode": m}))
        .collect();
    let mut cr = zones_cr(modes.len(), "v1");
    cr.spec.zones = serde_json::from_value(json!(zones)).expect("zones");
    World::new(cr)
}

#[test]
fn a_remote_write_url_change_never_takes_two_zones_out_of_read() {
    // Every change that moves every zone's remote-write URL.
    type Change = (&'static str, fn(&mut Value));
    let changes: [Change; 4] = [
        ("vminsert.port", |spec| {
            spec["vminsert"]["port"] = json!("8481")
        }),
        ("tls", |spec| {
            spec["vminsert"]["extraArgs"] = json!({"tls": "true"});
        }),
        ("http.pathPrefix", |spec| {
            spec["vminsert"]["extraArgs"] = json!({"http.pathPrefix": "/vm"});
        }),
        ("useLegacyNaming", |spec| {
            spec["useLegacyNaming"] = json!(true)
        }),
    ];
    for n in [2, 3, 5] {
        for (what, change) in changes {
            let mut world = World::new(zones_cr(n, "v1"));
            settled(&mut world);
            let before = remote_write_urls(&world, "demo-z0");
            world.edit_common_cluster(change);
            assert!(
                world.run_until_settled(4000),
                "{n} zones, {what}: did not settle: {:?}",
                world.status()
            );
            let after = remote_write_urls(&world, "demo-z0");
            assert_eq!(after.len(), n);
            assert!(
                after.iter().all(|url| !before.contains(url)),
                "{what}: every URL moved: {before:?} -> {after:?}"
            );
            for i in 0..n {
                assert_eq!(remote_write_urls(&world, &format!("demo-z{i}")), after);
            }
            // One zone at a time left the load balancer, each once.
            let expected: Vec<String> = (0..n).map(|i| format!("z{i}")).collect();
            assert_eq!(
                world.checker.replay().exclusions,
                expected,
                "{n} zones, {what}"
            );
        }
    }
}

#[test]
fn a_vmsingle_port_change_never_empties_read() {
    let cr = cr_from(json!({
        "backendType": "VMSingle",
        "zoneCommon": {"readyTimeout": "30s", "updatePause": "2s",
            "vmsingle": {"spec": {"retentionPeriod": "1"}}},
        "zones": [{"name": "z0"}, {"name": "z1"}, {"name": "z2"}]
    }));
    let mut world = World::new(cr);
    settled(&mut world);
    world.edit_common_single(|spec| spec["port"] = json!("8429"));
    assert!(world.run_until_settled(4000), "{:?}", world.status());
    assert!(remote_write_urls(&world, "demo-z2")[0].contains(":8429/"));
}

/// Two zones where the second takes no `write`, no `read` or neither: the first is the only
/// zone serving that target, so it is updated in place there (it stays routed), with a status
/// reason and one Warning event, and no target is ever emptied.
#[test]
fn the_only_serving_zone_is_updated_in_place() {
    for (mode, kept) in [
        ("maintenance", "write and read"),
        ("read-only", "write"),
        ("write-only", "read"),
    ] {
        let mut world = zones_with_modes(&["read-write", mode]);
        settled(&mut world);
        let from = world.events.len();
        world.edit(|cr| {
            cr.spec.zones[0].vmcluster = Some(
                serde_json::from_value(json!({"spec": {"clusterVersion": "v2"}})).expect("child"),
            );
        });
        run_until(&mut world, 200, "z0 Applying", |w| {
            w.phase() == (Some("z0".into()), Some(ZonePhase::Applying))
        });
        let (_, reason, message) = world.condition("Progressing");
        assert_eq!(reason, "UpdatingInPlace", "{mode}: {message}");
        assert!(message.contains(kept), "{mode}: {message}");
        assert!(
            world.run_until_settled(2000),
            "{mode}: {:?}",
            world.status()
        );
        assert_eq!(world.backend_spec("z0")["clusterVersion"], "v2", "{mode}");
        let warnings: Vec<_> = world.events[from..]
            .iter()
            .filter(|(_, e)| e.reason == EventReason::UpdatingInPlace)
            .collect();
        assert_eq!(warnings.len(), 1, "{mode}: {warnings:?}");
        assert!(warnings[0].1.note.contains("z0"), "{warnings:?}");
        // Back in every target its mode allows.
        let status = world.status();
        assert!(
            status.zones[0].in_read && status.zones[0].in_write,
            "{status:?}"
        );
    }
}

/// Traffic moved from one zone to another in one edit while the zone that gains it is being
/// updated: the zone that loses it stays in the target until the other one can take it, so the
/// target never passes through empty.
#[test]
fn traffic_moved_to_a_zone_under_update_waits_for_it_before_leaving() {
    for (gains, loses, target) in [
        ("write-only", "read-only", "write"),
        ("read-only", "write-only", "read"),
    ] {
        let (before, _) = if target == "write" {
            ("read-only", "")
        } else {
            ("write-only", "")
        };
        let mut world = zones_with_modes(&[before, "read-write"]);
        settled(&mut world);
        world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
        run_until(&mut world, 200, "z0 Applying", |w| {
            w.phase() == (Some("z0".into()), Some(ZonePhase::Applying))
        });
        world.edit(|cr| {
            cr.spec.zones[0].traffic_mode =
                Some(serde_json::from_value(json!(gains)).expect("mode"));
            cr.spec.zones[1].traffic_mode =
                Some(serde_json::from_value(json!(loses)).expect("mode"));
        });
        world.check_invariants();
        assert!(
            world.run_until_settled(2000),
            "{target}: {:?}",
            world.status()
        );
        let status = world.status();
        let (z0, z1) = (&status.zones[0], &status.zones[1]);
        if target == "write" {
            assert!(z0.in_write && !z1.in_write, "{status:?}");
        } else {
            assert!(z0.in_read && !z1.in_read, "{status:?}");
        }
    }
}

#[test]
fn a_zone_beside_one_that_never_became_ready_is_updated_in_place() {
    let mut world = World::new(zones_cr(2, "v1"));
    world.broken.insert("demo-z1".into());
    world.run_steps(30);
    let status = world.status();
    assert!(
        status.zones[0].in_read && !status.zones[1].in_read,
        "{status:?}"
    );
    world.edit(|cr| {
        cr.spec.zones[0].vmcluster =
            Some(serde_json::from_value(json!({"spec": {"clusterVersion": "v2"}})).expect("child"));
    });
    run_until(&mut world, 200, "z0 updated", |w| {
        w.backend_spec("z0")["clusterVersion"] == "v2"
            && w.status().rollout.and_then(|r| r.zone).is_none()
    });
    // The broken zone heals: everything settles.
    world.broken.clear();
    world.edit(|cr| {
        cr.spec.zones[1].vmcluster =
            Some(serde_json::from_value(json!({"spec": {"clusterVersion": "v2"}})).expect("child"));
    });
    assert!(world.run_until_settled(2000), "{:?}", world.status());
}

#[test]
fn a_zone_beside_a_missing_ref_is_updated_in_place() {
    let mut cr = zones_cr(2, "v1");
    cr.spec.zones[1].vmcluster =
        Some(serde_json::from_value(json!({"ref": {"name": "not-yet"}})).expect("child"));
    let mut world = World::new(cr);
    world.run_steps(30);
    assert!(world.status().zones[0].in_read);
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
    run_until(&mut world, 200, "z0 updated", |w| {
        w.backend_spec("z0")["clusterVersion"] == "v2"
            && w.status().rollout.and_then(|r| r.zone).is_none()
    });
}

/// A zone that turns unready in `Restoring` and whose fix is a spec change (here: a revert)
/// goes back to `Applying` and gets the new spec; it never waits for a restart.
#[test]
fn a_spec_change_heals_a_zone_stuck_in_restoring() {
    let mut world = World::new(zones_cr(3, "v1"));
    settled(&mut world);
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
    run_until(&mut world, 300, "z0 Restoring", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Restoring))
    });
    // The zone fails right after its apply was judged ready.
    let cluster = world
        .children
        .get_mut(&("VMCluster".into(), "demo-z0".into()))
        .expect("cluster");
    cluster.object["status"]["updateStatus"] = json!("failed");
    world.broken.insert("demo-z0".into());
    world.run_steps(60);
    assert_ne!(
        world.status().update_status,
        Some(UpdateStatus::Operational)
    );
    // The user reverts; the reverted generation is what the operator can run.
    world.broken.clear();
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v1"));
    assert!(world.run_until_settled(3000), "{:?}", world.status());
    for i in 0..3 {
        assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v1");
    }
}

/// A zone waiting in `Excluding` for another member to become ready yields to that member when
/// its fix is a spec change, instead of pinning the rollout on itself; while it waits, a timeout
/// says which zone it waits for, not that it left the load balancer.
#[test]
fn an_exclusion_that_has_not_started_yields_to_the_unready_zone_that_needs_the_fix() {
    let mut world = World::new(zones_cr(3, "v1"));
    settled(&mut world);
    let auth_before = world.vmauth().expect("vmauth").object["spec"].clone();
    world.edit(|cr| {
        cr.spec.zones[0].vmcluster =
            Some(serde_json::from_value(json!({"spec": {"clusterVersion": "v2"}})).expect("child"));
    });
    // z1's agent fails on its own before z0 leaves.
    let agent = world
        .children
        .get_mut(&("VMAgent".into(), "demo-z1".into()))
        .expect("agent");
    agent.object["status"]["updateStatus"] = json!("failed");
    world.broken.insert("demo-z1".into());
    world.run_steps(60);
    assert_eq!(
        world.phase(),
        (Some("z0".into()), Some(ZonePhase::Excluding))
    );
    assert_eq!(
        world.vmauth().expect("vmauth").object["spec"],
        auth_before,
        "z0 never left"
    );
    let (status, _, message) = world.condition("Degraded");
    assert_eq!(status, "True");
    assert!(message.contains("z1"), "{message}");
    assert!(!message.contains("did not reach"), "{message}");
    // The fix for z1 is a spec change: z1 is rolled first, then z0.
    world.broken.clear();
    let from = world.events.len();
    world.edit(|cr| {
        cr.spec.zones[1].vmagent =
            Some(serde_json::from_value(json!({"spec": {"replicaCount": 2}})).expect("child"));
    });
    assert!(world.run_until_settled(3000), "{:?}", world.status());
    assert_eq!(world.started_order(from), ["z1", "z0"]);
    assert_eq!(world.backend_spec("z0")["clusterVersion"], "v2");
}

/// A VMAuth re-created by someone else starts at generation 1: a remembered generation of the
/// object it replaces must not hold the phase back.
#[test]
fn a_recreated_vmauth_is_judged_by_its_own_generation() {
    let mut world = World::new(zones_cr(2, "v1"));
    settled(&mut world);
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
    // z0 is out of the live VMAuth, which has not reported the new generation yet.
    run_until(&mut world, 300, "z0 excluded", |w| {
        w.phase() == (Some("z0".into()), Some(ZonePhase::Excluding))
            && !w.vmauth().expect("vmauth").object["spec"]
                .to_string()
                .contains("demo-z0")
    });
    assert!(world.memory_vmauth_generation.unwrap_or(0) > 1);
    // Someone deletes the VMAuth and creates it again with the same content.
    let key = ("VMAuth".to_owned(), "demo".to_owned());
    let old = world.children.remove(&key).expect("vmauth");
    world.check_invariants();
    let mut object = old.object.clone();
    object["metadata"]["uid"] = json!("recreated");
    object["metadata"]["generation"] = json!(1);
    object["status"] = json!({"updateStatus": "operational", "observedGeneration": 1});
    world.children.insert(
        key,
        SimChild {
            kind: ChildKind::VMAuth,
            object,
            pending: 0,
        },
    );
    assert!(world.run_until_settled(2000), "{:?}", world.status());
}

#[test]
fn deleting_the_cr_mid_rollout_restores_the_zone_to_a_vmauth_that_survives() {
    for variant in ["retain", "ref"] {
        let mut cr = zones_cr(3, "v1");
        // The zones survive (retained); the VMAuth is created, or a ref.
        cr.spec.retain = Some(true);
        if variant == "ref" {
            cr.spec.vmauth =
                Some(serde_json::from_value(json!({"ref": {"name": "shared"}})).expect("vmauth"));
        }
        let mut world = World::new(cr);
        if variant == "ref" {
            world.children.insert(
                ("VMAuth".into(), "shared".into()),
                SimChild {
                    kind: ChildKind::VMAuth,
                    object: json!({"kind": "VMAuth", "metadata": {"name": "shared",
                        "namespace": "ns", "uid": "shared-uid", "generation": 1}, "spec": {},
                        "status": {"updateStatus": "operational", "observedGeneration": 1}}),
                    pending: 0,
                },
            );
        }
        settled(&mut world);
        world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
        run_until(&mut world, 300, "z1 Applying", |w| {
            w.phase() == (Some("z1".into()), Some(ZonePhase::Applying))
        });
        world.mark_deleted();
        for _ in 0..40 {
            world.reconcile(None);
            world.observe();
            world.operator_tick();
        }
        assert!(world.finalizer_removed(), "{variant}: finalizer removed");
        let replay = world.checker.replay();
        assert!(
            replay.of(Invariant::NotRestoredOnDeletion).is_empty(),
            "{variant}: {:?}",
            replay.violations
        );
        world.check_invariants();
        let name = if variant == "ref" { "shared" } else { "demo" };
        let auth = world.child(ChildKind::VMAuth, name).expect("survives");
        assert!(
            auth.object["spec"].to_string().contains("demo-z1"),
            "{variant}: {}",
            auth.object["spec"]
        );
        assert_eq!(world.claimed(), 0, "{variant}: released");
    }
}

#[test]
fn disabling_the_vmauth_mid_rollout_hands_it_back_with_every_zone_first() {
    let mut world = World::new(zones_cr(3, "v1"));
    settled(&mut world);
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
    run_until(&mut world, 300, "z1 Applying", |w| {
        w.phase() == (Some("z1".into()), Some(ZonePhase::Applying))
    });
    world.edit(|cr| {
        cr.spec.vmauth.get_or_insert_with(Default::default).enabled = Some(false);
    });
    assert!(world.run_until_settled(3000), "{:?}", world.status());
    let auth = &world.vmauth().expect("kept").object;
    for zone in ["demo-z0", "demo-z1", "demo-z2"] {
        assert!(auth["spec"].to_string().contains(zone), "{}", auth["spec"]);
    }
    assert!(
        auth["metadata"]["labels"]
            .get("operator.victoriametrics.com/vmdistributed")
            .is_none()
    );
    for i in 0..3 {
        assert_eq!(world.backend_spec(&format!("z{i}"))["clusterVersion"], "v2");
    }
}

#[test]
fn renaming_the_vmauth_mid_rollout_hands_the_old_one_back_with_every_zone() {
    let mut world = World::new(zones_cr(3, "v1"));
    settled(&mut world);
    world.edit_common_cluster(|spec| spec["clusterVersion"] = json!("v2"));
    run_until(&mut world, 300, "z1 Applying", |w| {
        w.phase() == (Some("z1".into()), Some(ZonePhase::Applying))
    });
    world.edit(|cr| {
        cr.spec.vmauth.get_or_insert_with(Default::default).name = Some("global".into());
    });
    assert!(world.run_until_settled(3000), "{:?}", world.status());
    for name in ["demo", "global"] {
        let auth = &world.child(ChildKind::VMAuth, name).expect("exists").object;
        for zone in ["demo-z0", "demo-z1", "demo-z2"] {
            assert!(
                auth["spec"].to_string().contains(zone),
                "{name}: {}",
                auth["spec"]
            );
        }
    }
}

/// A rename the annotation allows: the zone's new cluster is created and joins `read` once every
/// agent writes to it, the other zones stay in `read` while only their agents change, and every
/// state keeps the invariants.
#[test]
fn an_allowed_rename_keeps_the_other_zones_in_read() {
    let mut world = zones_with_modes(&["read-write", "read-write", "read-write"]);
    settled(&mut world);
    world.edit(|cr| {
        cr.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "operator.victoriametrics.com/allow-rename".into(),
                "true".into(),
            );
        cr.spec.zones[0].vmcluster =
            Some(serde_json::from_value(json!({"name": "demo-z0-new"})).expect("cluster"));
    });
    world.check_invariants();
    for zone in ["z1", "z2"] {
        run_until(&mut world, 400, "an agent-only update", |w| {
            w.phase() == (Some(zone.into()), Some(ZonePhase::Applying))
        });
        let status = world.status();
        let view = status.zones.iter().find(|z| z.name == zone).expect("zone");
        assert!(view.in_read && !view.in_write, "{zone}: {status:?}");
    }
    settled(&mut world);
    let status = world.status();
    assert_eq!(status.zones[0].vmcluster.as_deref(), Some("demo-z0-new"));
    assert!(
        status.zones.iter().all(|z| z.in_read && z.in_write),
        "{status:?}"
    );
}

/// A change of one zone's agent only leaves that zone in `read`: its backend is untouched.
#[test]
fn an_agent_only_change_keeps_the_zone_in_read() {
    let mut world = zones_with_modes(&["read-write", "read-write"]);
    settled(&mut world);
    world.edit(|cr| {
        cr.spec.zones[1].vmagent =
            Some(serde_json::from_value(json!({"spec": {"replicaCount": 3}})).expect("agent"));
    });
    run_until(&mut world, 200, "z1 Applying", |w| {
        w.phase() == (Some("z1".into()), Some(ZonePhase::Applying))
    });
    let status = world.status();
    assert!(
        status.zones[1].in_read && !status.zones[1].in_write,
        "{status:?}"
    );
    settled(&mut world);
}
