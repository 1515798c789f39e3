//! Property tests of the decision and of rendering: for random CR specs and random child
//! states, no decision takes a second existing zone out of the load balancer or under update,
//! nor a zone out of a target no other zone serves; rendering is deterministic, and nothing
//! panics on arbitrary child JSON.

use std::collections::BTreeSet;

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};
use shared::VMDistributed;
use shared::api::ZonePhase;
use shared::children::ChildObject;
use shared::model::{Action, Observed, Target, contains};
use shared::names::{ChildKind, child_name};
use shared::rollout::membership::LiveRefs;
use shared::rollout::{Decision, decide, render_intents};

#[derive(Clone, Debug)]
struct ChildState {
    exists: bool,
    /// 0: no hash, 1: current hash, 2: stale hash.
    hash: u8,
    spec_matches: bool,
    ready: bool,
    /// 0: ours, 1: unlabelled, 2: another CR.
    claim: u8,
    created: bool,
}

fn child_state() -> impl Strategy<Value = ChildState> {
    (
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        any::<bool>(),
    )
        .prop_map(
            |(exists, hash, spec_matches, ready, claim, created)| ChildState {
                exists: exists || hash == 1,
                hash,
                spec_matches,
                ready,
                claim,
                created,
            },
        )
}

#[derive(Clone, Debug)]
struct Scenario {
    modes: Vec<&'static str>,
    version: u8,
    retain: bool,
    generation: i64,
    rollout_zone: Option<usize>,
    phase: u8,
    phase_age: u64,
    observed_generation_lags: bool,
    zones: Vec<(ChildState, ChildState)>,
    vmauth: Option<(Vec<bool>, Vec<bool>, bool)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..=4).prop_flat_map(|n| {
        (
            prop::collection::vec(prop_oneof![6 => Just("read-write"), 1 => Just("read-only"), 1 => Just("write-only"), 1 => Just("maintenance")], n),
            0u8..3,
            any::<bool>(),
            1i64..4,
            prop::option::of(0..n),
            0u8..3,
            0u64..600,
            any::<bool>(),
            prop::collection::vec((child_state(), child_state()), n),
            prop::option::of((prop::collection::vec(any::<bool>(), n), prop::collection::vec(any::<bool>(), n), any::<bool>())),
        )
            .prop_map(|(modes, version, retain, generation, rollout_zone, phase, phase_age, lags, zones, vmauth)| Scenario {
                modes, version, retain, generation, rollout_zone, phase, phase_age,
                observed_generation_lags: lags, zones, vmauth,
            })
    })
}

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().expect("timestamp")
}

fn build(s: &Scenario) -> (VMDistributed, Observed) {
    let zones: Vec<Value> = s
        .modes
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": format!("z{i}"), "trafficMode": m}))
        .collect();
    let phase = ["Excluding", "Applying", "Restoring"][s.phase as usize];
    let since = now()
        .checked_sub(jiff::SignedDuration::from_secs(s.phase_age as i64))
        .expect("time");
    let rollout = match s.rollout_zone {
        Some(z) => {
            json!({"zone": format!("z{z}"), "phase": phase, "phaseSince": since.to_string()})
        }
        None => json!(null),
    };
    let observed_generation = if s.observed_generation_lags {
        s.generation - 1
    } else {
        s.generation
    };
    let cr: VMDistributed = serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1", "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid", "generation": s.generation,
                     "finalizers": ["apps.victoriametrics.com/finalizer"]},
        "spec": {
            "retain": s.retain,
            "zoneCommon": {"readyTimeout": "5m", "updatePause": "1m",
                "vmcluster": {"spec": {"clusterVersion": format!("v{}", s.version),
                    "vminsert": {}, "vmselect": {}}}},
            "zones": zones
        },
        "status": {"preflightGeneration": s.generation, "observedGeneration": observed_generation,
                   "updateStatus": "expanding", "rollout": rollout}
    }))
    .expect("valid CR");
    let intents = render_intents(&cr, &Observed::default());
    let mut children = Vec::new();
    for (i, (backend, agent)) in s.zones.iter().enumerate() {
        for (state, intent) in [
            (backend, &intents.zones[i].backend),
            (agent, &intents.zones[i].agent),
        ] {
            if !state.exists {
                continue;
            }
            let mut spec = intent.spec.clone();
            if !state.spec_matches {
                spec["clusterVersion"] = json!("old");
            }
            let mut annotations = serde_json::Map::new();
            match state.hash {
                1 => {
                    annotations.insert(
                        "operator.victoriametrics.com/spec-hash".into(),
                        json!(intent.spec_hash),
                    );
                }
                2 => {
                    annotations.insert(
                        "operator.victoriametrics.com/spec-hash".into(),
                        json!("stale"),
                    );
                }
                _ => {}
            }
            if state.created {
                annotations.insert(
                    "operator.victoriametrics.com/created-by".into(),
                    json!("cr-uid"),
                );
            }
            let labels = match state.claim {
                0 => json!({"operator.victoriametrics.com/vmdistributed": "demo"}),
                1 => json!({}),
                _ => json!({"operator.victoriametrics.com/vmdistributed": "other"}),
            };
            let status = if state.ready {
                json!({"updateStatus": "operational", "observedGeneration": 2})
            } else {
                json!({"updateStatus": "expanding", "observedGeneration": 1})
            };
            children.push(ChildObject::from_value(&json!({
                "kind": intent.kind.kind(),
                "metadata": {"name": intent.name, "namespace": "ns", "uid": format!("u-{}", intent.name),
                             "generation": 2, "labels": labels, "annotations": annotations},
                "spec": spec, "status": status
            }), None));
        }
    }
    if let Some((write, read, ready)) = &s.vmauth {
        let objects = |sel: &Vec<bool>, kind: ChildKind| -> Vec<Value> {
            cr.spec
                .zones
                .iter()
                .zip(sel)
                .filter(|(_, on)| **on)
                .map(|(z, _)| json!({"name": child_name(&cr, z, kind), "namespace": "ns"}))
                .collect()
        };
        let status = if *ready {
            json!({"updateStatus": "operational", "observedGeneration": 5})
        } else {
            json!({"updateStatus": "expanding", "observedGeneration": 4})
        };
        children.push(ChildObject::from_value(&json!({
            "kind": "VMAuth",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u-auth", "generation": 5,
                         "labels": {"operator.victoriametrics.com/vmdistributed": "demo"}},
            "spec": {"defaultTargetRefs": [
                {"crd": {"kind": "VMAgent", "objects": objects(write, ChildKind::VMAgent)}},
                {"crd": {"kind": "VMCluster/vmselect", "objects": objects(read, ChildKind::VMCluster)}}
            ]},
            "status": status
        }), None));
    }
    (
        cr,
        Observed {
            children,
            preflight: None,
            vmauth_applied_generation: None,
            vmauth_applied_uid: None,
            pinned_versions: Default::default(),
            child_failures: Vec::new(),
            queues: Vec::new(),
        },
    )
}

/// The zone excluded by the input status (under update), if any.
fn excluded(cr: &VMDistributed) -> Option<String> {
    let rollout = cr.status.as_ref()?.rollout.as_ref()?;
    match rollout.phase? {
        ZonePhase::Excluding | ZonePhase::Applying => rollout.zone.clone(),
        ZonePhase::Restoring => None,
    }
}

/// Whether a zone other than `zone` serves `target` in the observed state: in the live refs,
/// allowed by its trafficMode, its backend (for write also its agent) ready. Written out here
/// rather than taken from the crate, so the property does not trust the code it checks.
fn serves_elsewhere(
    cr: &VMDistributed,
    observed: &Observed,
    live: &LiveRefs,
    zone: &str,
    target: Target,
) -> bool {
    let ready =
        |kind: ChildKind, name: &str| observed.find(kind, name).is_some_and(ChildObject::is_ready);
    cr.spec
        .zones
        .iter()
        .filter(|z| z.name != zone)
        .any(|other| {
            let agent = child_name(cr, other, ChildKind::VMAgent);
            let backend = child_name(cr, other, ChildKind::VMCluster);
            let mode = other.traffic_mode.unwrap_or_default();
            match target {
                Target::Write => {
                    mode.writes()
                        && live.write.contains(&agent)
                        && ready(ChildKind::VMAgent, &agent)
                        && ready(ChildKind::VMCluster, &backend)
                }
                Target::Read => {
                    mode.reads()
                        && live.read.contains(&backend)
                        && ready(ChildKind::VMCluster, &backend)
                }
            }
        })
}

fn check(
    cr: &VMDistributed,
    observed: &Observed,
    decision: &Decision,
) -> Result<(), TestCaseError> {
    // An empty `rollout: {}` and an absent one mean the same.
    let input_rollout = cr
        .status
        .as_ref()
        .and_then(|s| s.rollout.clone())
        .filter(|r| *r != Default::default());
    let child_writes: Vec<&Action> = decision
        .actions
        .iter()
        .filter(|a| a.is_child_write())
        .collect();
    if decision.status.rollout != input_rollout {
        prop_assert!(
            child_writes.is_empty(),
            "transition with child writes: {:?}",
            child_writes
        );
    }
    let rollout = input_rollout.unwrap_or_default();
    let uid = "cr-uid";
    let live_refs = LiveRefs::of(cr, observed);
    for action in &decision.actions {
        match action {
            Action::Apply { intent } | Action::Create { intent }
                if intent.kind != ChildKind::VMAuth =>
            {
                let live = observed.find(intent.kind, &intent.name);
                if let Some(live) = live {
                    prop_assert!(
                        matches!(action, Action::Apply { .. }),
                        "create of an existing child"
                    );
                    prop_assert!(
                        live.claimed_by().is_none_or(|o| o == "demo"),
                        "wrote a child of another CR"
                    );
                    if !contains(&live.spec, &intent.spec) {
                        // A spec-changing write: only the zone under update, in Applying.
                        prop_assert_eq!(&intent.zone, &rollout.zone);
                        prop_assert_eq!(rollout.phase, Some(ZonePhase::Applying));
                    }
                }
            }
            Action::Apply { intent } | Action::Create { intent } => {
                let next = LiveRefs::from_vmauth_spec(&intent.spec);
                let mut removed: BTreeSet<String> = BTreeSet::new();
                for zone in &cr.spec.zones {
                    let agent = child_name(cr, zone, ChildKind::VMAgent);
                    let backend = child_name(cr, zone, ChildKind::VMCluster);
                    // Only existing zones count (routing to an object that does not exist serves
                    // nothing), and only targets the zone's trafficMode allows (a user's
                    // trafficMode change is not the rollout taking a zone out).
                    let mode = zone.traffic_mode.unwrap_or_default();
                    if mode.writes()
                        && live_refs.write.contains(&agent)
                        && !next.write.contains(&agent)
                        && observed.find(ChildKind::VMAgent, &agent).is_some()
                    {
                        removed.insert(zone.name.clone());
                        prop_assert!(
                            serves_elsewhere(cr, observed, &live_refs, &zone.name, Target::Write),
                            "zone {} left write, which no other zone serves",
                            zone.name
                        );
                        // Nobody else in write may be unready when a zone leaves it.
                        for other in &cr.spec.zones {
                            let name = child_name(cr, other, ChildKind::VMAgent);
                            if other.name != zone.name && next.write.contains(&name) {
                                prop_assert!(
                                    observed
                                        .find(ChildKind::VMAgent, &name)
                                        .is_some_and(ChildObject::is_ready),
                                    "zone {} left write while {} is unready",
                                    zone.name,
                                    other.name
                                );
                            }
                        }
                    }
                    if mode.reads()
                        && live_refs.read.contains(&backend)
                        && !next.read.contains(&backend)
                        && observed.find(ChildKind::VMCluster, &backend).is_some()
                    {
                        removed.insert(zone.name.clone());
                        prop_assert!(
                            serves_elsewhere(cr, observed, &live_refs, &zone.name, Target::Read),
                            "zone {} left read, which no other zone serves",
                            zone.name
                        );
                        for other in &cr.spec.zones {
                            let name = child_name(cr, other, ChildKind::VMCluster);
                            if other.name != zone.name && next.read.contains(&name) {
                                prop_assert!(
                                    observed
                                        .find(ChildKind::VMCluster, &name)
                                        .is_some_and(ChildObject::is_ready),
                                    "zone {} left read while {} is unready",
                                    zone.name,
                                    other.name
                                );
                            }
                        }
                    }
                }
                let allowed: BTreeSet<String> = excluded(cr).into_iter().collect();
                prop_assert!(
                    removed.is_subset(&allowed),
                    "VMAuth drops {:?}, only {:?} may leave",
                    removed,
                    allowed
                );
            }
            Action::Delete { kind, name, .. } => {
                let live = observed.find(*kind, name).expect("deleted child observed");
                prop_assert!(
                    live.created_by(uid),
                    "deleted a child the CR did not create"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn no_decision_takes_a_second_zone_out(s in scenario()) {
        let (cr, observed) = build(&s);
        let decision = decide(&cr, &observed, now());
        check(&cr, &observed, &decision)?;
        // Deterministic.
        prop_assert_eq!(decide(&cr, &observed, now()), decision);
    }

    #[test]
    fn rendering_is_deterministic(s in scenario()) {
        let (cr, observed) = build(&s);
        prop_assert_eq!(render_intents(&cr, &observed), render_intents(&cr, &observed));
    }

    #[test]
    fn never_panics_on_arbitrary_child_json(
        s in scenario(),
        specs in prop::collection::vec(arbitrary_json(), 0..6),
        statuses in prop::collection::vec(arbitrary_json(), 0..6),
    ) {
        let (cr, mut observed) = build(&s);
        for (i, (spec, status)) in specs.into_iter().zip(statuses).enumerate() {
            let kind = ["VMCluster", "VMAgent", "VMAuth"][i % 3];
            let name = if kind == "VMAuth" { "demo".to_owned() } else { format!("demo-z{}", i % 4) };
            observed.children.push(ChildObject::from_value(&json!({
                "kind": kind, "metadata": {"name": name, "labels": {"operator.victoriametrics.com/vmdistributed": "demo"}},
                "spec": spec, "status": status}), None));
        }
        let decision = decide(&cr, &observed, now());
        let _ = render_intents(&cr, &observed);
        let _ = decision;
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z:/.0-9-]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("vminsert".to_owned()),
                    Just("port".to_owned()),
                    Just("remoteWrite".to_owned()),
                    Just("url".to_owned()),
                    Just("defaultTargetRefs".to_owned()),
                    Just("crd".to_owned()),
                    Just("objects".to_owned()),
                    Just("name".to_owned()),
                    Just("extraArgs".to_owned()),
                    Just("updateStatus".to_owned()),
                    Just("observedGeneration".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
