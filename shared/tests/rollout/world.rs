//! A simulated cluster for walking rollouts step by step: it executes the decision's actions the
//! way the controller must (status write first, child writes only when the stored status still
//! shows the decision's rollout), plays the VictoriaMetrics operator (children become ready some
//! ticks after each spec change, unless broken), and feeds every state it passes through to the
//! shared invariant checker (`shared::rollout::invariants`, the one the end-to-end tests use).
//! All state that matters lives here, in the "cluster"; the controller's process memory
//! (preflight outcome, last VMAuth apply generation) can be dropped at any time to simulate a
//! crash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use shared::VMDistributed;
use shared::api::{UpdateStatus, ZonePhase};
use shared::children::{ChildObject, LABEL_CLAIM};
use shared::model::{
    Action, ChildFailure, ChildIntent, Decision, Event, FINALIZER, Observed, PreflightOutcome,
};
use shared::names::{ChildKind, backend_kind, child_name, vmauth_name};
use shared::queues::{PodPage, QueueProbe, QueueReport, record};
use shared::rollout::invariants::{CR_KIND, Change, InvariantChecker};
use shared::rollout::{EventReason, decide};
use shared::versions::PinnedVersions;

/// A child write and the rollout status that authorized it: (kind, name, rollout zone, phase, verb).
pub type Write = (
    ChildKind,
    String,
    Option<String>,
    Option<ZonePhase>,
    &'static str,
);

/// One simulated child.
#[derive(Clone, Debug)]
pub struct SimChild {
    pub kind: ChildKind,
    pub object: Value,
    /// Ticks until the simulated operator reports the current generation.
    pub pending: u32,
}

pub struct World {
    pub cr: VMDistributed,
    pub children: BTreeMap<(String, String), SimChild>,
    pub now: Timestamp,
    pub tick: Duration,
    /// Ticks the simulated operator needs after a spec change.
    pub ready_delay: u32,
    /// Child names whose operator never reports them operational.
    pub broken: BTreeSet<String>,
    /// Child names the operator reports `failed` for their current generation, with this
    /// reason (until removed, then `operational`).
    pub failing: BTreeMap<String, String>,
    /// Child names the operator never reconciles (its controller for them is not running).
    pub frozen: BTreeSet<String>,
    /// Bytes each agent's queue for a URL holds (absent: empty).
    pub queued: BTreeMap<(String, String), u64>,
    /// Agents with no ready pod.
    pub agents_without_pods: BTreeSet<String>,
    /// The controller's last poll of each agent queue (process memory: lost in a crash).
    pub memory_queues: Vec<QueueReport>,
    /// How many times the decision asked for a poll.
    pub probes: usize,
    /// Children reported `failed` because of `failing`, to recover once out of it.
    failed: BTreeSet<(String, String)>,
    /// Children whose create or apply the API server refuses, with its message.
    pub refused: BTreeMap<(ChildKind, String), String>,
    /// The versions the controller pins.
    pub pins: PinnedVersions,
    pub events: Vec<(Timestamp, Event)>,
    /// Controller process memory, lost on a crash.
    pub memory_preflight: Option<PreflightOutcome>,
    pub memory_vmauth_generation: Option<i64>,
    pub memory_vmauth_uid: Option<String>,
    pub memory_child_failures: Vec<ChildFailure>,
    /// Judges every state the world passes through.
    pub checker: InvariantChecker,
    /// The objects as the checker last saw them.
    checked: BTreeMap<(String, String), Value>,
    uid_counter: u64,
    /// Changes fed to the checker so far.
    steps_seen: u64,
    pub steps: usize,
    /// Every child write with the status that authorized it: (kind, name, rollout zone, phase).
    pub writes: Vec<Write>,
}

pub fn cr_from(spec: Value) -> VMDistributed {
    let mut cr: VMDistributed = serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid", "generation": 1},
        "spec": spec,
    }))
    .expect("valid CR");
    cr.status = None;
    cr
}

/// A CR with `n` zones built from one template, short durations.
pub fn zones_cr(n: usize, version: &str) -> VMDistributed {
    let zones: Vec<Value> = (0..n).map(|i| json!({"name": format!("z{i}")})).collect();
    cr_from(json!({
        "zoneCommon": {
            "readyTimeout": "30s",
            "updatePause": "5s",
            "vmagent": {"spec": {"replicaCount": 1}},
            "vmcluster": {"spec": {"clusterVersion": version,
                "vminsert": {"replicaCount": 1}, "vmselect": {"replicaCount": 1},
                "vmstorage": {"replicaCount": 1}}}
        },
        "zones": zones
    }))
}

/// Reconcile and tick (checking every state) until `pred` holds; panics after `max` steps.
pub fn run_until(world: &mut World, max: usize, what: &str, pred: impl Fn(&World) -> bool) {
    for _ in 0..max {
        if pred(world) {
            return;
        }
        world.reconcile(None);
        world.check_invariants();
        if pred(world) {
            return;
        }
        world.operator_tick();
        world.check_invariants();
    }
    panic!("never reached {what}: {:?}", world.status());
}

pub fn remote_write_urls(world: &World, agent: &str) -> Vec<String> {
    world
        .child(ChildKind::VMAgent, agent)
        .expect("agent")
        .object["spec"]["remoteWrite"]
        .as_array()
        .expect("remoteWrite")
        .iter()
        .map(|e| e["url"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A world of [`zones_cr`]`(n, "v1")` that has settled: every zone created and operational.
pub fn settled_world(n: usize) -> World {
    let mut world = World::new(zones_cr(n, "v1"));
    assert!(
        world.run_until_settled(400),
        "initial creation did not settle: {:?}",
        world.status()
    );
    world
}

impl World {
    pub fn new(cr: VMDistributed) -> Self {
        Self {
            cr,
            children: BTreeMap::new(),
            now: "2026-01-01T00:00:00Z".parse().expect("timestamp"),
            tick: Duration::from_secs(1),
            ready_delay: 2,
            broken: BTreeSet::new(),
            failing: BTreeMap::new(),
            frozen: BTreeSet::new(),
            failed: BTreeSet::new(),
            refused: BTreeMap::new(),
            pins: PinnedVersions::default(),
            events: Vec::new(),
            memory_preflight: None,
            memory_vmauth_generation: None,
            memory_vmauth_uid: None,
            memory_child_failures: Vec::new(),
            memory_queues: Vec::new(),
            queued: BTreeMap::new(),
            agents_without_pods: BTreeSet::new(),
            probes: 0,
            checker: InvariantChecker::new("demo"),
            checked: BTreeMap::new(),
            uid_counter: 0,
            steps_seen: 0,
            steps: 0,
            writes: Vec::new(),
        }
    }

    pub fn observed(&self) -> Observed {
        Observed {
            children: self
                .children
                .values()
                .map(|c| ChildObject::from_value(&c.object, Some(c.kind)))
                .collect(),
            preflight: self.memory_preflight.clone(),
            vmauth_applied_generation: self.memory_vmauth_generation,
            vmauth_applied_uid: self.memory_vmauth_uid.clone(),
            pinned_versions: self.pins.clone(),
            child_failures: self.memory_child_failures.clone(),
            queues: self.memory_queues.clone(),
        }
    }

    pub fn crash(&mut self) {
        self.memory_preflight = None;
        self.memory_vmauth_generation = None;
        self.memory_vmauth_uid = None;
        self.memory_child_failures.clear();
        self.memory_queues.clear();
    }

    /// The `/metrics` page of `agent`'s one pod: a queue per entry of its live `remoteWrite`,
    /// holding what [`World::queued`] says (vmagent's shape, URLs hidden).
    pub fn agent_page(&self, agent: &str) -> String {
        let urls: Vec<String> = self
            .child(ChildKind::VMAgent, agent)
            .and_then(|a| a.object["spec"]["remoteWrite"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["url"].as_str().map(str::to_owned))
            .collect();
        let mut page = String::from("# TYPE vmagent_remotewrite_pending_data_bytes gauge\n");
        for (i, url) in urls.iter().enumerate() {
            let index = i + 1;
            let bytes = self
                .queued
                .get(&(agent.to_owned(), url.clone()))
                .copied()
                .unwrap_or(0);
            page.push_str(&format!(
                "vmagent_remotewrite_pending_data_bytes{{path=\"/tmp/vmagent-remotewrite-data/persistent-queue/{index}_{:016X}\", url=\"{index}:secret-url\"}} {bytes}\n",
                shared::queues::exposition::url_hash(url)
            ));
        }
        page
    }

    fn probe_queues(&mut self, probes: &[QueueProbe]) {
        self.probes += 1;
        for probe in probes {
            let pages = if self.agents_without_pods.contains(&probe.agent) {
                Vec::new()
            } else {
                vec![PodPage {
                    pod: format!("{}-0", probe.agent),
                    page: Ok(self.agent_page(&probe.agent)),
                }]
            };
            self.memory_queues = record(&self.memory_queues, probe, &pages, self.now);
        }
    }

    pub fn child(&self, kind: ChildKind, name: &str) -> Option<&SimChild> {
        self.children
            .get(&(kind.kind().to_owned(), name.to_owned()))
    }

    pub fn status(&self) -> shared::VMDistributedStatus {
        self.cr.status.clone().unwrap_or_default()
    }

    /// Change the spec as a user would: the generation goes up.
    pub fn edit(&mut self, change: impl FnOnce(&mut VMDistributed)) {
        change(&mut self.cr);
        let generation = self.cr.metadata.generation.unwrap_or(0) + 1;
        self.cr.metadata.generation = Some(generation);
    }

    /// One reconcile: decide, write status, execute the actions (all of them, or the first
    /// `limit` to simulate a crash in the middle). Returns the decision.
    pub fn reconcile(&mut self, limit: Option<usize>) -> Decision {
        let decision = decide(&self.cr, &self.observed(), self.now);
        self.steps += 1;
        if decision.status_changed {
            self.cr.status = Some(decision.status.clone());
        }
        self.observe();
        // Events announce transitions, which the status records: a decision that changes
        // nothing in the status has nothing to announce (never an event per retry).
        assert!(
            decision.status_changed || decision.events.is_empty(),
            "events without a status change: {:?}",
            decision.events
        );
        for event in &decision.events {
            self.events.push((self.now, event.clone()));
        }
        // The live re-read of the CR: child writes only when the stored rollout is the
        // decision's rollout.
        let stored_rollout = self.status().rollout;
        let authorized = stored_rollout == decision.status.rollout;
        for (i, action) in decision.actions.iter().enumerate() {
            if limit.is_some_and(|l| i >= l) {
                break;
            }
            if action.is_child_write() {
                assert!(
                    authorized,
                    "child write without the authorizing status: {action:?}"
                );
            }
            if let Some(failure) = self.refusal(action) {
                // As the controller: remember it, write the status that reports it (with its
                // events), stop until the next attempt.
                self.memory_child_failures
                    .retain(|f| (f.kind, &f.name) != (failure.kind, &failure.name));
                self.memory_child_failures.push(failure);
                let report = decide(&self.cr, &self.observed(), self.now);
                if report.status_changed {
                    self.cr.status = Some(report.status.clone());
                    for event in &report.events {
                        self.events.push((self.now, event.clone()));
                    }
                }
                self.observe();
                break;
            }
            if let Some((kind, name)) = action.target() {
                self.memory_child_failures
                    .retain(|f| (f.kind, f.name.as_str()) != (kind, name));
            }
            self.execute(action);
            self.observe();
        }
        decision
    }

    /// The failure of `action` when the API server refuses it.
    fn refusal(&self, action: &Action) -> Option<ChildFailure> {
        let (verb, intent) = match action {
            Action::Create { intent } => ("create", intent),
            Action::Apply { intent } => ("apply", intent),
            _ => return None,
        };
        let message = self.refused.get(&(intent.kind, intent.name.clone()))?;
        Some(ChildFailure {
            kind: intent.kind,
            name: intent.name.clone(),
            zone: intent.zone.clone(),
            spec_hash: Some(intent.spec_hash.clone()),
            rejected: true,
            verb: verb.to_owned(),
            message: message.clone(),
        })
    }

    fn execute(&mut self, action: &Action) {
        let rollout = self.status().rollout.unwrap_or_default();
        match action {
            Action::Create { intent } => {
                let key = (intent.kind.kind().to_owned(), intent.name.clone());
                if self.children.contains_key(&key) {
                    return; // AlreadyExists: adoption happens in the next decision
                }
                self.writes.push((
                    intent.kind,
                    intent.name.clone(),
                    rollout.zone.clone(),
                    rollout.phase,
                    "create",
                ));
                self.uid_counter += 1;
                let mut object = intent.to_object();
                object["metadata"]["uid"] = json!(format!("child-{}", self.uid_counter));
                object["metadata"]["generation"] = json!(1);
                // The VM operator's defaulting adds fields; they must not count as drift.
                if let Some(spec) = object["spec"].as_object_mut() {
                    spec.insert("operatorDefault".into(), json!("added"));
                }
                if intent.kind == ChildKind::VMAuth {
                    self.memory_vmauth_generation = Some(1);
                    self.memory_vmauth_uid = Some(format!("child-{}", self.uid_counter));
                }
                self.children.insert(
                    key,
                    SimChild {
                        kind: intent.kind,
                        object,
                        pending: self.ready_delay,
                    },
                );
            }
            Action::Apply { intent } => self.apply(intent, &rollout),
            Action::ProbeQueues { probes } => self.probe_queues(probes),
            Action::Delete {
                kind, name, uid, ..
            } => {
                let key = (kind.kind().to_owned(), name.clone());
                if let Some(child) = self.children.get_mut(&key)
                    && child.object["metadata"]["uid"] == json!(uid)
                {
                    child.object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    self.writes.push((
                        *kind,
                        name.clone(),
                        rollout.zone.clone(),
                        rollout.phase,
                        "delete",
                    ));
                }
            }
            Action::PatchMetadata {
                kind, name, patch, ..
            } => {
                let key = (kind.kind().to_owned(), name.clone());
                if let Some(child) = self.children.get_mut(&key) {
                    let mut object = child.object.clone();
                    if json_patch::patch(&mut object, patch).is_ok() {
                        child.object = object;
                        self.writes.push((
                            *kind,
                            name.clone(),
                            rollout.zone.clone(),
                            rollout.phase,
                            "patch",
                        ));
                    }
                }
            }
            Action::Preflight { generation, .. } => {
                self.memory_preflight = Some(PreflightOutcome {
                    generation: *generation,
                    ..PreflightOutcome::default()
                });
            }
            Action::AddFinalizer => {
                self.cr
                    .metadata
                    .finalizers
                    .get_or_insert_with(Vec::new)
                    .push(FINALIZER.to_owned());
            }
            Action::RemoveFinalizer => {
                if let Some(f) = self.cr.metadata.finalizers.as_mut() {
                    f.retain(|x| x != FINALIZER);
                }
            }
        }
    }

    /// Server-side apply, simplified: labels and annotations merged, owner references taken
    /// from the intent when it has any, spec = fields others added + the intent.
    fn apply(&mut self, intent: &ChildIntent, rollout: &shared::api::RolloutStatus) {
        let key = (intent.kind.kind().to_owned(), intent.name.clone());
        let Some(child) = self.children.get_mut(&key) else {
            panic!("apply to a missing child {key:?}");
        };
        let old_spec = child.object["spec"].clone();
        let mut spec = Map::new();
        if let Some(old) = old_spec.as_object()
            && let Some(default) = old.get("operatorDefault")
        {
            spec.insert("operatorDefault".into(), default.clone());
        }
        if let Some(new) = intent.spec.as_object() {
            spec.extend(new.clone());
        }
        let spec = Value::Object(spec);
        let metadata = child.object["metadata"].as_object_mut().expect("metadata");
        for (field, values) in [
            ("labels", &intent.labels),
            ("annotations", &intent.annotations),
        ] {
            let target = metadata.entry(field).or_insert_with(|| json!({}));
            for (k, v) in values {
                target[k] = json!(v);
            }
        }
        if !intent.owner_references.is_empty() {
            metadata.insert("ownerReferences".into(), json!(intent.owner_references));
        }
        if spec != old_spec {
            let kind = intent.kind;
            if kind != ChildKind::VMAuth {
                let zone = intent.zone.clone();
                assert!(
                    rollout.zone == zone && rollout.phase == Some(ZonePhase::Applying),
                    "zone child {} changed outside its Applying phase (rollout {rollout:?})",
                    intent.name
                );
            }
            let generation = child.object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            child.object["metadata"]["generation"] = json!(generation);
            child.object["spec"] = spec;
            child.pending = self.ready_delay;
            if kind == ChildKind::VMAuth {
                self.memory_vmauth_generation = Some(generation);
                self.memory_vmauth_uid =
                    child.object["metadata"]["uid"].as_str().map(str::to_owned);
            }
        }
        self.writes.push((
            intent.kind,
            intent.name.clone(),
            rollout.zone.clone(),
            rollout.phase,
            "apply",
        ));
    }

    /// The simulated operator: children catch up with their generation after `ready_delay`
    /// ticks (never, when broken); deleted children disappear.
    pub fn operator_tick(&mut self) {
        self.now = self.now.checked_add(self.tick).expect("time");
        self.children
            .retain(|_, c| c.object["metadata"].get("deletionTimestamp").is_none());
        for (key, child) in &mut self.children {
            let name = child.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let generation = child.object["metadata"]["generation"].as_i64().unwrap_or(1);
            let observed = child.object["status"]["observedGeneration"]
                .as_i64()
                .unwrap_or(0);
            if self.frozen.contains(&name) {
                continue;
            }
            if let Some(reason) = self.failing.get(&name) {
                child.object["status"] = json!({"updateStatus": "failed", "reason": reason, "observedGeneration": generation});
                self.failed.insert(key.clone());
                continue;
            }
            if self.failed.remove(key) {
                // No longer failing: the operator's next reconcile succeeds.
                child.object["status"] =
                    json!({"updateStatus": "operational", "observedGeneration": generation});
                continue;
            }
            if observed >= generation {
                continue;
            }
            if child.pending > 0 {
                child.pending -= 1;
                child.object["status"] =
                    json!({"updateStatus": "expanding", "observedGeneration": observed});
                continue;
            }
            if self.broken.contains(&name) {
                child.object["status"] =
                    json!({"updateStatus": "failed", "observedGeneration": observed});
                continue;
            }
            child.object["status"] =
                json!({"updateStatus": "operational", "observedGeneration": generation});
        }
        self.observe();
    }

    /// Feed the checker every object that changed since it last looked: the CR first, then
    /// the children; a CR whose finalizer is gone after its deletion counts as deleted.
    pub fn observe(&mut self) {
        let mut current: BTreeMap<(String, String), Value> = BTreeMap::new();
        let gone = self.cr.metadata.deletion_timestamp.is_some()
            && self
                .cr
                .metadata
                .finalizers
                .as_ref()
                .is_none_or(|f| f.is_empty());
        if !gone {
            current.insert(
                (CR_KIND.to_owned(), "demo".to_owned()),
                serde_json::to_value(&self.cr).expect("the CR serializes"),
            );
        }
        for (key, child) in &self.children {
            current.insert(key.clone(), child.object.clone());
        }
        let mut changes = Vec::new();
        for (key, object) in &current {
            if self.checked.get(key) != Some(object) {
                changes.push((key.clone(), object.clone(), false));
            }
        }
        for (key, object) in &self.checked {
            if !current.contains_key(key) {
                changes.push((key.clone(), object.clone(), true));
            }
        }
        // The CR's own change first: a status write precedes the writes it authorizes.
        changes.sort_by_key(|((kind, _), _, _)| kind != CR_KIND);
        for ((kind, name), object, deleted) in changes {
            self.steps_seen += 1;
            self.checker.observe(&Change {
                at: Some(self.steps_seen),
                kind,
                name,
                deleted,
                object,
            });
        }
        self.checked = current;
    }

    /// The invariants held in every state so far (see `shared::rollout::invariants`).
    pub fn check_invariants(&mut self) {
        self.observe();
        let violations = &self.checker.replay().violations;
        assert!(
            violations.is_empty(),
            "invariant broken at {}: {}\n(status.rollout {:?})",
            self.now,
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            self.cr.status.as_ref().and_then(|s| s.rollout.clone())
        );
    }

    /// Reconcile and tick until the CR is operational and a reconcile is a no-op, or `max`
    /// steps pass. Returns whether it settled.
    pub fn run_until_settled(&mut self, max: usize) -> bool {
        for _ in 0..max {
            let decision = self.reconcile(None);
            self.check_invariants();
            if decision.actions.is_empty()
                && !decision.status_changed
                && self.status().update_status == Some(UpdateStatus::Operational)
            {
                return true;
            }
            self.operator_tick();
            self.check_invariants();
        }
        false
    }

    /// The user edits the VMCluster spec of `zoneCommon`.
    pub fn edit_common_cluster(&mut self, change: impl FnOnce(&mut Value)) {
        self.edit(|cr| {
            let common = cr.spec.zone_common.as_mut().expect("zoneCommon");
            let cluster = common.vmcluster.as_mut().expect("vmcluster");
            change(cluster.spec.as_mut().expect("spec"));
        });
    }

    /// The user edits the VMSingle spec of `zoneCommon`.
    pub fn edit_common_single(&mut self, change: impl FnOnce(&mut Value)) {
        self.edit(|cr| {
            let common = cr.spec.zone_common.as_mut().expect("zoneCommon");
            let single = common.vmsingle.as_mut().expect("vmsingle");
            change(single.spec.as_mut().expect("spec"));
        });
    }

    /// The user sets `zoneCommon.vmcluster.spec.clusterVersion`.
    pub fn set_version(&mut self, version: &str) {
        self.edit_common_cluster(|spec| spec["clusterVersion"] = json!(version));
    }

    /// The zone and phase of the rollout in the status.
    pub fn phase(&self) -> (Option<String>, Option<ZonePhase>) {
        let rollout = self.status().rollout.unwrap_or_default();
        (rollout.zone, rollout.phase)
    }

    /// (status, reason, message) of a condition; panics when the status has none of `type_`.
    pub fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.status();
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    /// The CR gets its deletion timestamp (now), as a delete by the user gives it.
    pub fn mark_deleted(&mut self) {
        self.cr.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(self.now),
        );
    }

    /// Whether the CR holds no finalizer (the controller let its deletion finish).
    pub fn finalizer_removed(&self) -> bool {
        self.cr
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty())
    }

    /// Run `n` reconcile+tick steps regardless of the outcome.
    pub fn run_steps(&mut self, n: usize) {
        for _ in 0..n {
            self.reconcile(None);
            self.check_invariants();
            self.operator_tick();
            self.check_invariants();
        }
    }

    pub fn events_with(&self, reason: EventReason) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(_, e)| e.reason == reason)
            .map(|(_, e)| e)
            .collect()
    }

    /// Zones in the order their rollouts started (RolloutStarted events), from event index `from`.
    pub fn started_order(&self, from: usize) -> Vec<String> {
        self.events[from..]
            .iter()
            .filter(|(_, e)| e.reason == EventReason::RolloutStarted)
            .map(|(_, e)| {
                e.note
                    .trim_start_matches("zone ")
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    pub fn backend_spec(&self, zone: &str) -> Value {
        let cr = &self.cr;
        let z = cr.spec.zones.iter().find(|z| z.name == zone).expect("zone");
        self.child(backend_kind(cr), &child_name(cr, z, backend_kind(cr)))
            .map(|c| c.object["spec"].clone())
            .unwrap_or(Value::Null)
    }

    pub fn vmauth(&self) -> Option<&SimChild> {
        self.child(ChildKind::VMAuth, &vmauth_name(&self.cr))
    }

    pub fn claimed(&self) -> usize {
        self.children
            .values()
            .filter(|c| c.object["metadata"]["labels"][LABEL_CLAIM] == json!("demo"))
            .count()
    }
}
