//! Random multi-step scenarios walked in the simulated cluster (see `world`): 2–5 zones
//! in every `trafficMode`, version and remote-write URL changes, traffic-mode changes, a zone
//! that fails on its own or never becomes ready, a missing `ref`, the VMAuth deleted or renamed
//! mid-phase, controller crashes (restarts from the stored state, with half-executed steps) and
//! the CR deleted mid-rollout. The shared invariant checker judges every state; once the
//! failures are healed, the rollout must finish.

use crate::world::{SimChild, World, zones_cr};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use shared::api::{TrafficMode, UpdateStatus};
use shared::names::ChildKind;

const MODES: [&str; 4] = ["read-write", "read-only", "write-only", "maintenance"];

#[derive(Clone, Debug)]
enum Event {
    /// A new `clusterVersion` for every zone.
    Version,
    /// Every zone's vminsert port moves (a remote-write URL change).
    Port,
    /// A zone's `trafficMode`.
    Mode(usize, usize),
    /// Two zones' `trafficMode`s in one edit (traffic moved from one zone to another).
    Modes((usize, usize), (usize, usize)),
    /// A change of one zone's agent only.
    ZoneChange(usize),
    /// A zone's backend fails on its own until healed (at most one zone is broken at a time).
    Break(usize),
    /// Every failure heals.
    Heal,
    /// Someone deletes the VMAuth.
    DeleteVMAuth,
    /// `vmauth.name` changes.
    RenameVMAuth,
    /// An agent's queue for a zone's backend fills (the drain waits for it until healed).
    Backlog(usize, usize),
    /// An agent loses its ready pods (the drain waits for one until healed).
    NoPods(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => Just(Event::Version),
        3 => Just(Event::Port),
        2 => (0usize..5, 0usize..4).prop_map(|(z, m)| Event::Mode(z, m)),
        2 => ((0usize..5, 0usize..4), (0usize..5, 0usize..4))
            .prop_map(|(a, b)| Event::Modes(a, b)),
        2 => (0usize..5).prop_map(Event::ZoneChange),
        2 => (0usize..5).prop_map(Event::Break),
        1 => Just(Event::Heal),
        1 => Just(Event::DeleteVMAuth),
        1 => Just(Event::RenameVMAuth),
        2 => (0usize..5, 0usize..5).prop_map(|(a, z)| Event::Backlog(a, z)),
        1 => (0usize..5).prop_map(Event::NoPods),
    ]
}

#[derive(Clone, Debug)]
struct Scenario {
    modes: Vec<usize>,
    /// A zone whose backend never becomes ready from the start.
    never_ready: Option<usize>,
    /// A zone whose backend is a `ref` that does not exist yet.
    missing_ref: Option<usize>,
    retain: bool,
    /// (event, reconcile steps after it, steps before it at which the controller crashes).
    events: Vec<(Event, usize, Vec<usize>)>,
    delete_at_end: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(
                prop_oneof![5 => Just(0usize), 1 => Just(1), 1 => Just(2), 1 => Just(3)],
                n,
            ),
            prop::option::weighted(0.2, 0..n),
            prop::option::weighted(0.15, 0..n),
            any::<bool>(),
            prop::collection::vec(
                (event(), 0usize..60, prop::collection::vec(0usize..60, 0..3)),
                1..6,
            ),
            prop::bool::weighted(0.3),
        )
            .prop_map(
                |(modes, never_ready, missing_ref, retain, events, delete_at_end)| {
                    let missing_ref = missing_ref.filter(|z| Some(*z) != never_ready);
                    Scenario {
                        modes,
                        never_ready,
                        missing_ref,
                        retain,
                        events,
                        delete_at_end,
                    }
                },
            )
    })
}

struct Walk {
    world: World,
    n: usize,
    version: u32,
    port: u32,
    renames: u32,
    /// The zone that failed on its own (`Event::Break`), until healed.
    broken: Option<usize>,
}

impl Walk {
    fn new(s: &Scenario) -> Self {
        let n = s.modes.len();
        let mut cr = zones_cr(n, "v0");
        for (i, mode) in s.modes.iter().enumerate() {
            cr.spec.zones[i].traffic_mode =
                Some(serde_json::from_value(json!(MODES[*mode])).expect("mode"));
        }
        if let Some(z) = s.missing_ref {
            cr.spec.zones[z].vmcluster = Some(
                serde_json::from_value(json!({"ref": {"name": format!("ext-z{z}")}})).expect("ref"),
            );
        }
        cr.spec.retain = Some(s.retain);
        let mut world = World::new(cr);
        if let Some(z) = s.never_ready {
            world.broken.insert(format!("demo-z{z}"));
        }
        Self {
            world,
            n,
            version: 0,
            port: 8480,
            renames: 0,
            broken: None,
        }
    }

    fn step(&mut self, crash: bool) {
        let limit = crash.then_some(self.world.steps % 2);
        if crash {
            self.world.crash();
        }
        self.world.reconcile(limit);
        self.world.check_invariants();
        self.world.operator_tick();
        self.world.check_invariants();
    }

    fn common_cluster(&mut self, change: impl FnOnce(&mut Value)) {
        self.world.edit(|cr| {
            let common = cr.spec.zone_common.as_mut().expect("zoneCommon");
            change(
                common
                    .vmcluster
                    .as_mut()
                    .and_then(|c| c.spec.as_mut())
                    .expect("spec"),
            );
        });
    }

    /// Set `(zone, mode)` pairs in one edit.
    fn set_modes(&mut self, changes: &[(usize, usize)]) {
        let n = self.n;
        self.world.edit(|cr| {
            for (zone, mode) in changes {
                let mode: TrafficMode = serde_json::from_value(json!(MODES[*mode])).expect("mode");
                cr.spec.zones[zone % n].traffic_mode = Some(mode);
            }
        });
    }

    fn heal(&mut self) {
        self.world.broken.clear();
        self.broken = None;
        self.world.queued.clear();
        self.world.agents_without_pods.clear();
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Version => {
                self.version += 1;
                let version = format!("v{}", self.version);
                self.common_cluster(|spec| spec["clusterVersion"] = json!(version));
            }
            Event::Port => {
                self.port = if self.port == 8480 { 8481 } else { 8480 };
                let port = self.port.to_string();
                self.common_cluster(|spec| spec["vminsert"]["port"] = json!(port));
            }
            Event::Mode(zone, mode) => {
                // Taking traffic away from a zone while another has failed is the user's doing
                // (and so is giving it back before it is routed again).
                if self.broken.is_some() {
                    return;
                }
                self.set_modes(&[(*zone, *mode)]);
            }
            Event::Modes(a, b) => {
                if self.broken.is_some() {
                    return;
                }
                self.set_modes(&[*a, *b]);
            }
            Event::ZoneChange(zone) => {
                let zone = zone % self.n;
                self.version += 1;
                let replicas = self.version;
                self.world.edit(|cr| {
                    cr.spec.zones[zone].vmagent = Some(
                        serde_json::from_value(json!({"spec": {"replicaCount": replicas}}))
                            .expect("agent"),
                    );
                });
            }
            Event::Break(zone) => {
                let zone = zone % self.n;
                // One failure at a time, and only while every zone serves: a second zone out
                // of service next to a failure is not the rollout's doing.
                let status = self.world.status();
                let at_rest = status.update_status == Some(UpdateStatus::Operational)
                    && status.observed_generation == self.world.cr.metadata.generation;
                if self.broken.is_some_and(|b| b != zone) || !at_rest {
                    return;
                }
                let name = format!("demo-z{zone}");
                let key = ("VMCluster".to_owned(), name.clone());
                if let Some(child) = self.world.children.get_mut(&key) {
                    let generation = child.object["metadata"]["generation"].as_i64().unwrap_or(1);
                    // The operator is working on it again and reports failure meanwhile.
                    child.object["status"] =
                        json!({"updateStatus": "failed", "observedGeneration": generation - 1});
                    self.world.broken.insert(name);
                    self.broken = Some(zone);
                }
            }
            Event::Heal => self.heal(),
            Event::Backlog(agent, zone) => {
                let agent = format!("demo-z{}", agent % self.n);
                let url = self
                    .world
                    .child(ChildKind::VMAgent, &agent)
                    .and_then(|a| a.object["spec"]["remoteWrite"][zone % self.n]["url"].as_str())
                    .map(str::to_owned);
                if let Some(url) = url {
                    self.world.queued.insert((agent, url), 4096);
                }
            }
            Event::NoPods(zone) => {
                self.world
                    .agents_without_pods
                    .insert(format!("demo-z{}", zone % self.n));
            }
            Event::DeleteVMAuth => {
                let name = shared::names::vmauth_name(&self.world.cr);
                self.world.children.remove(&("VMAuth".to_owned(), name));
            }
            Event::RenameVMAuth => {
                self.renames += 1;
                let name = format!("auth-{}", self.renames);
                self.world.edit(|cr| {
                    cr.spec.vmauth.get_or_insert_with(Default::default).name = Some(name);
                });
            }
        }
    }

    /// The missing `ref` appears, as its owner creates it.
    fn create_ref(&mut self, zone: usize) {
        let name = format!("ext-z{zone}");
        self.world.children.insert(
            ("VMCluster".to_owned(), name.clone()),
            SimChild {
                kind: ChildKind::VMCluster,
                object: json!({"kind": "VMCluster", "metadata": {"name": name, "namespace": "ns",
                    "uid": format!("ext-{zone}"), "generation": 1},
                    "spec": {"vminsert": {}, "vmselect": {}},
                    "status": {"updateStatus": "operational", "observedGeneration": 1}}),
                pending: 0,
            },
        );
    }
}

fn run(s: &Scenario) -> Result<(), TestCaseError> {
    let mut walk = Walk::new(s);
    for _ in 0..40 {
        walk.step(false);
    }
    for (event, steps, crashes) in &s.events {
        walk.apply(event);
        walk.world.check_invariants();
        for i in 0..*steps {
            walk.step(crashes.contains(&i));
        }
    }
    if s.delete_at_end {
        walk.world.cr.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(walk.world.now),
        );
        for _ in 0..60 {
            walk.step(false);
        }
        prop_assert!(
            walk.world
                .cr
                .metadata
                .finalizers
                .as_ref()
                .is_none_or(|f| f.is_empty()),
            "deletion did not finish: {:?}",
            walk.world.status()
        );
        return Ok(());
    }
    walk.heal();
    if let Some(zone) = s.missing_ref {
        walk.create_ref(zone);
    }
    let settled = walk.world.run_until_settled(6000);
    prop_assert!(
        settled,
        "did not settle once healed: {:#?}",
        walk.world.status()
    );
    Ok(())
}

proptest! {
    // The regressions live beside this file (`random_walk.proptest-regressions`). Proptest's
    // default would read and write `shared/tests/proptest-regressions/random_walk.txt` instead,
    // because this directory has a `main.rs`.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::with_cases(96)
    })]

    #[test]
    fn random_scenarios_keep_every_target_served_and_finish(s in scenario()) {
        run(&s)?;
    }
}

/// A scenario the random walk found: every zone `read-write`, a version rollout, zone 3 made
/// `read-only` while it runs, another version, then zone 3 made `write-only`.
#[test]
fn a_zone_moved_from_read_only_to_write_only_during_rollouts_keeps_every_target_served() {
    let s = Scenario {
        modes: vec![0, 0, 0, 0, 0],
        never_ready: None,
        missing_ref: None,
        retain: false,
        events: vec![
            (Event::Version, 15, vec![]),
            (Event::Mode(3, 1), 42, vec![]),
            (Event::Version, 15, vec![]),
            (Event::Mode(3, 2), 0, vec![]),
        ],
        delete_at_end: false,
    };
    if let Err(e) = run(&s) {
        panic!("{e}");
    }
}

/// A scenario the random walk found: reads moved from zone 0 to zone 1 in one edit while a
/// remote-write URL change was on its way, so zone 1 could not join `read` yet.
#[test]
fn reads_moved_to_another_zone_during_a_url_change_never_empty_read() {
    let s = Scenario {
        modes: vec![0, 2],
        never_ready: None,
        missing_ref: None,
        retain: false,
        events: vec![
            (Event::Version, 2, vec![]),
            (Event::Port, 5, vec![]),
            (Event::Modes((1, 0), (2, 2)), 6, vec![]),
        ],
        delete_at_end: false,
    };
    if let Err(e) = run(&s) {
        panic!("{e}");
    }
}
