//! The rollout invariants (docs/rollout.md "Invariants"), checked over a sequence of observed
//! states: the one checker behind the simulated world of the unit tests and the watch replays of
//! the end-to-end tests.
//!
//! The input is every stored change of the CR and its children, in the order the API server
//! stored them (a watch event, or a step of a simulation). After each change the checker judges
//! the whole state it has accumulated. It reads objects strictly: a change it cannot decode (no
//! revision to order it by, an unknown kind, a CR that does not parse, VMAuth target refs of an
//! unknown shape) is a violation, never skipped, because a checker that skips what it does not
//! understand passes exactly the states it should have caught.
//!
//! A zone **serves** a target (`write` or `read`) when it is in that target's live VMAuth refs,
//! its `trafficMode` allows the target, and its backend (and for `write`, its agent) is ready.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

use crate::api::{TrafficMode, UpdateStatus, VMDistributed, ZonePhase};
use crate::children::{ChildObject, kind_from_str};
use crate::defaults::vmauth_enabled;
use crate::model::FIELD_MANAGER;
pub use crate::model::Target;
use crate::names::{ChildKind, child_name, vmauth_name, zone_kinds};
use crate::rollout::membership::{READ_KINDS, WRITE_KIND};

/// `kind` of the CR in a [`Change`].
pub const CR_KIND: &str = "VMDistributed";

/// One stored change of the CR or of a child.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Position in the sequence (an etcd revision, a simulation step); `None` when the change
    /// carries none (it cannot be ordered, which is a violation).
    pub at: Option<u64>,
    /// `VMDistributed` or a child kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Whether this change is the object's deletion.
    pub deleted: bool,
    /// The object as stored (for a deletion, its last state).
    pub object: Value,
}

/// Which invariant a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// A change the checker could not read.
    Undecodable,
    /// A target that had a serving zone lost its last one because a zone was taken out of it.
    TargetLeftUnserved,
    /// More than one zone out of the load balancer or not ready at once.
    MoreThanOneZoneOut,
    /// A zone child's spec changed outside that zone's `Applying` phase.
    WriteOutsideApplying,
    /// The CR reports `operational` while a zone is missing from a target its mode allows.
    IncompleteAtRest,
    /// The CR is gone and a VMAuth that survives it does not route a zone that survives it.
    NotRestoredOnDeletion,
}

/// One broken invariant at one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The position of the change after which it was seen.
    pub at: Option<u64>,
    /// What was seen.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.map_or_else(|| "?".to_owned(), |at| at.to_string());
        write!(f, "{:?} at {at}: {}", self.invariant, self.message)
    }
}

/// What a run of the checker saw.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Number of states checked.
    pub states: usize,
    /// Every broken invariant, in order.
    pub violations: Vec<Violation>,
    /// Controller writes of a zone child's spec: (zone, kind, name, position), in order.
    pub child_spec_writes: Vec<(String, ChildKind, String, u64)>,
    /// The (zone, phase) rollout states the CR went through, consecutive duplicates removed.
    pub phases: Vec<(String, String)>,
    /// Zones that were out of the VMAuth after having been routed, in order of exclusion
    /// (consecutive duplicates removed).
    pub exclusions: Vec<String>,
    /// The VMAuth `write` members over time (sorted agent names, consecutive duplicates removed).
    pub write_refs: Vec<Vec<String>>,
    /// The VMAuth `read` members over time (sorted backend names, consecutive duplicates removed).
    pub read_refs: Vec<Vec<String>>,
}

impl Replay {
    /// Violations of one invariant.
    #[must_use]
    pub fn of(&self, invariant: Invariant) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.invariant == invariant)
            .collect()
    }
}

/// The object names a VMAuth routes to, per target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    /// Agent names in `write`.
    pub write: BTreeSet<String>,
    /// Backend names in `read`.
    pub read: BTreeSet<String>,
}

impl Routes {
    /// The members of one target.
    #[must_use]
    pub fn of(&self, target: Target) -> &BTreeSet<String> {
        match target {
            Target::Write => &self.write,
            Target::Read => &self.read,
        }
    }

    /// Read a VMAuth's `defaultTargetRefs` strictly: every entry must be a `crd` ref of a kind
    /// the rollout writes (with named `objects`) or a `static` placeholder.
    ///
    /// # Errors
    /// A description of the first entry that has another shape.
    pub fn strict(spec: &Value) -> Result<Self, String> {
        let mut routes = Self::default();
        let Some(list) = spec.get("defaultTargetRefs") else {
            return Ok(routes);
        };
        let list = list
            .as_array()
            .ok_or_else(|| format!("defaultTargetRefs is not a list: {list}"))?;
        for (i, entry) in list.iter().enumerate() {
            if let Some(crd) = entry.get("crd") {
                let kind = crd
                    .get("kind")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("defaultTargetRefs[{i}].crd has no kind"))?;
                let objects = crd
                    .get("objects")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("defaultTargetRefs[{i}].crd has no objects list"))?;
                let mut names = BTreeSet::new();
                for object in objects {
                    let name = object.get("name").and_then(Value::as_str).ok_or_else(|| {
                        format!("defaultTargetRefs[{i}].crd.objects has an unnamed entry")
                    })?;
                    names.insert(name.to_owned());
                }
                if kind == WRITE_KIND {
                    routes.write.extend(names);
                } else if READ_KINDS.contains(&kind) {
                    routes.read.extend(names);
                } else {
                    return Err(format!(
                        "defaultTargetRefs[{i}].crd.kind {kind:?} is unknown"
                    ));
                }
            } else if entry.pointer("/static/url").is_none() {
                return Err(format!(
                    "defaultTargetRefs[{i}] is neither a crd ref nor a static url: {entry}"
                ));
            }
        }
        Ok(routes)
    }
}

/// The checker: feed it every change with [`InvariantChecker::observe`], then read
/// [`InvariantChecker::replay`] (or [`InvariantChecker::finish`]).
#[derive(Clone, Debug)]
pub struct InvariantChecker {
    cr_name: String,
    objects: BTreeMap<(String, String), Value>,
    /// Last seen `metadata.generation` of each zone child, by uid.
    generations: HashMap<String, i64>,
    /// (member name, target) pairs that were served (routed and ready) at least once: only a
    /// target a zone's member was in can be one it is out of.
    ever_routed: BTreeSet<(String, Target)>,
    /// The zones that last served each target of each VMAuth (by uid), while any did.
    last_serving: HashMap<(String, Target), BTreeSet<String>>,
    /// The zones in each target of each VMAuth (by uid) at the previous state.
    members: HashMap<(String, Target), BTreeSet<String>>,
    /// The VMAuths (name, uid) judged at the last state the CR existed.
    judged: Vec<(String, String)>,
    last_cr: Option<VMDistributed>,
    replay: Replay,
}

/// One zone as a state shows it.
struct ZoneState {
    name: String,
    mode: TrafficMode,
    backend: String,
    agent: String,
    backend_ready: bool,
    agent_ready: bool,
    exists: bool,
}

impl ZoneState {
    fn member_name(&self, target: Target) -> &str {
        match target {
            Target::Write => &self.agent,
            Target::Read => &self.backend,
        }
    }

    fn ready_for(&self, target: Target) -> bool {
        match target {
            Target::Write => self.backend_ready && self.agent_ready,
            Target::Read => self.backend_ready,
        }
    }

    fn serves(&self, routes: &Routes, target: Target) -> bool {
        target.allowed_by(self.mode)
            && routes.of(target).contains(self.member_name(target))
            && self.ready_for(target)
    }
}

impl InvariantChecker {
    /// A checker for the CR named `cr_name` (the changes of other CRs are ignored).
    #[must_use]
    pub fn new(cr_name: &str) -> Self {
        Self {
            cr_name: cr_name.to_owned(),
            objects: BTreeMap::new(),
            generations: HashMap::new(),
            ever_routed: BTreeSet::new(),
            last_serving: HashMap::new(),
            members: HashMap::new(),
            judged: Vec::new(),
            last_cr: None,
            replay: Replay::default(),
        }
    }

    /// Check every change of `changes` in order and return what was seen.
    #[must_use]
    pub fn run(cr_name: &str, changes: &[Change]) -> Replay {
        let mut checker = Self::new(cr_name);
        for change in changes {
            checker.observe(change);
        }
        checker.finish()
    }

    /// What was seen so far.
    #[must_use]
    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    /// What was seen.
    #[must_use]
    pub fn finish(self) -> Replay {
        self.replay
    }

    fn violation(&mut self, invariant: Invariant, at: Option<u64>, message: String) {
        self.replay.violations.push(Violation {
            invariant,
            at,
            message,
        });
    }

    /// Take one change into the state and judge the state it leads to.
    pub fn observe(&mut self, change: &Change) {
        let at = change.at;
        if at.is_none() {
            self.violation(
                Invariant::Undecodable,
                at,
                format!(
                    "{} {} has no revision to order it by",
                    change.kind, change.name
                ),
            );
            return;
        }
        let child_kind = kind_from_str(&change.kind);
        if change.kind != CR_KIND && child_kind.is_none() {
            self.violation(
                Invariant::Undecodable,
                at,
                format!("unknown kind {:?} ({})", change.kind, change.name),
            );
            return;
        }
        if change.name.is_empty() {
            self.violation(
                Invariant::Undecodable,
                at,
                format!("a {} without a name", change.kind),
            );
            return;
        }
        if change.kind == CR_KIND && change.name != self.cr_name {
            return;
        }
        if !change.deleted
            && let Err(problem) = decode(child_kind, &change.object)
        {
            self.violation(
                Invariant::Undecodable,
                at,
                format!("{} {}: {problem}", change.kind, change.name),
            );
            return;
        }
        if let Some(kind) = child_kind {
            self.check_spec_write(kind, change);
        }
        let key = (change.kind.clone(), change.name.clone());
        if change.deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, change.object.clone());
        }
        self.replay.states += 1;
        if change.kind == CR_KIND && change.deleted {
            self.check_deletion(at);
            return;
        }
        let Some(cr) = self.cr() else {
            return;
        };
        self.judge(&cr, at);
        self.last_cr = Some(cr);
    }

    /// The CR in the current state; decoding was checked when it was stored.
    fn cr(&self) -> Option<VMDistributed> {
        self.objects
            .get(&(CR_KIND.to_owned(), self.cr_name.clone()))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    fn child(&self, kind: ChildKind, name: &str) -> Option<ChildObject> {
        self.objects
            .get(&(kind.kind().to_owned(), name.to_owned()))
            .map(|v| ChildObject::from_value(v, Some(kind)))
    }

    fn zones(&self, cr: &VMDistributed) -> Vec<ZoneState> {
        let [backend_kind, agent_kind] = zone_kinds(cr);
        cr.spec
            .zones
            .iter()
            .map(|zone| {
                let backend = child_name(cr, zone, backend_kind);
                let agent = child_name(cr, zone, agent_kind);
                let b = self.child(backend_kind, &backend);
                let a = self.child(agent_kind, &agent);
                ZoneState {
                    name: zone.name.clone(),
                    mode: zone.traffic_mode.unwrap_or_default(),
                    backend_ready: b.as_ref().is_some_and(ChildObject::is_ready),
                    agent_ready: a.as_ref().is_some_and(ChildObject::is_ready),
                    exists: b.is_some() && a.is_some(),
                    backend,
                    agent,
                }
            })
            .collect()
    }

    /// The VMAuths the CR answers for: the one it names while it manages one, and every other
    /// that still carries its claim (a renamed or disabled VMAuth being handed back).
    fn judged_vmauths(&self, cr: &VMDistributed) -> Vec<(String, ChildObject)> {
        let primary = vmauth_enabled(cr).then(|| vmauth_name(cr));
        let mut judged = Vec::new();
        if let Some(name) = &primary
            && let Some(auth) = self.child(ChildKind::VMAuth, name)
        {
            judged.push((name.clone(), auth));
        }
        for ((kind, name), value) in &self.objects {
            if kind != ChildKind::VMAuth.kind() || Some(name) == primary.as_ref() {
                continue;
            }
            let auth = ChildObject::from_value(value, Some(ChildKind::VMAuth));
            if auth.claimed_by() == Some(self.cr_name.as_str()) {
                judged.push((name.clone(), auth));
            }
        }
        judged
    }

    /// A zone child's spec may change (by the controller) only in that zone's `Applying`.
    fn check_spec_write(&mut self, kind: ChildKind, change: &Change) {
        if kind == ChildKind::VMAuth || change.deleted {
            return;
        }
        let child = ChildObject::from_value(&change.object, Some(kind));
        let generation = child.generation.unwrap_or(0);
        let previous = self.generations.insert(child.uid.clone(), generation);
        let Some(previous) = previous else { return };
        if generation <= previous || !last_manager_is_controller(&change.object) {
            return;
        }
        let Some(cr) = self.cr() else { return };
        let [backend_kind, agent_kind] = zone_kinds(&cr);
        let Some(zone) = cr
            .spec
            .zones
            .iter()
            .find(|z| {
                (kind == backend_kind || kind == agent_kind)
                    && child_name(&cr, z, kind) == change.name
            })
            .map(|z| z.name.clone())
        else {
            return;
        };
        let rollout = cr.status.as_ref().and_then(|s| s.rollout.as_ref());
        let authorized = rollout.is_some_and(|r| {
            r.zone.as_deref() == Some(zone.as_str()) && r.phase == Some(ZonePhase::Applying)
        });
        let at = change.at.unwrap_or_default();
        if authorized {
            self.replay
                .child_spec_writes
                .push((zone, kind, change.name.clone(), at));
        } else {
            self.violation(
                Invariant::WriteOutsideApplying,
                change.at,
                format!(
                    "{kind} {} of zone {zone} changed (generation {previous} -> {generation}) while status.rollout = {rollout:?}",
                    change.name
                ),
            );
        }
    }

    fn judge(&mut self, cr: &VMDistributed, at: Option<u64>) {
        if let Some(rollout) = cr.status.as_ref().and_then(|s| s.rollout.as_ref())
            && let (Some(zone), Some(phase)) = (&rollout.zone, rollout.phase)
        {
            let entry = (zone.clone(), format!("{phase:?}"));
            if self.replay.phases.last() != Some(&entry) {
                self.replay.phases.push(entry);
            }
        }
        let zones = self.zones(cr);
        let judged = self.judged_vmauths(cr);
        self.judged = judged
            .iter()
            .map(|(name, auth)| (name.clone(), auth.uid.clone()))
            .collect();
        let primary = vmauth_enabled(cr).then(|| vmauth_name(cr));
        let mut primary_routes = None;
        let mut all_routes = Vec::new();
        for (name, auth) in &judged {
            let routes = match Routes::strict(&auth.spec) {
                Ok(routes) => routes,
                Err(problem) => {
                    self.violation(
                        Invariant::Undecodable,
                        at,
                        format!("VMAuth {name}: {problem}"),
                    );
                    continue;
                }
            };
            self.check_serving(name, &auth.uid, &routes, &zones, at);
            if Some(name) == primary.as_ref() {
                primary_routes = Some(routes.clone());
            }
            all_routes.push(routes);
        }
        if cr.metadata.deletion_timestamp.is_some() {
            // Deletion takes the zones down on purpose; only serving (above) still applies.
            return;
        }
        if let Some(routes) = &primary_routes {
            push_changed(
                &mut self.replay.write_refs,
                routes.write.iter().cloned().collect(),
            );
            push_changed(
                &mut self.replay.read_refs,
                routes.read.iter().cloned().collect(),
            );
            if is_operational(cr) {
                self.check_at_rest(routes, &zones, at);
            }
        }
        self.check_one_out(&all_routes, &zones, at);
    }

    /// A target that had a serving zone keeps one, unless its last ones stay routed (updated in
    /// place, or unready on their own): what must never happen is a change that takes a zone
    /// out of the target (while its mode still allows the target, or another existing zone's
    /// mode allows it) and leaves the target with no serving zone, when that
    /// zone was among the last ones that served it.
    fn check_serving(
        &mut self,
        name: &str,
        uid: &str,
        routes: &Routes,
        zones: &[ZoneState],
        at: Option<u64>,
    ) {
        for target in Target::ALL {
            let key = (uid.to_owned(), target);
            let members: BTreeSet<String> = zones
                .iter()
                .filter(|z| routes.of(target).contains(z.member_name(target)))
                .map(|z| z.name.clone())
                .collect();
            let before = self.members.insert(key.clone(), members.clone());
            let serving: BTreeSet<String> = zones
                .iter()
                .filter(|z| z.serves(routes, target))
                .map(|z| z.name.clone())
                .collect();
            if !serving.is_empty() {
                self.last_serving.insert(key, serving);
                continue;
            }
            let (Some(before), Some(last)) = (before, self.last_serving.get(&key)) else {
                continue;
            };
            // A zone whose mode no longer allows the target may leave it only once another
            // zone serves it, when another zone is meant to: traffic moved from one zone to
            // another in one edit must not pass through an empty target.
            let taken_out: Vec<String> = zones
                .iter()
                .filter(|z| before.contains(&z.name) && !members.contains(&z.name))
                .filter(|z| {
                    last.contains(&z.name)
                        && (target.allowed_by(z.mode)
                            || zones.iter().any(|other| {
                                other.name != z.name
                                    && target.allowed_by(other.mode)
                                    && other.exists
                            }))
                })
                .map(|z| z.name.clone())
                .collect();
            if !taken_out.is_empty() {
                let message = format!(
                    "VMAuth {name}: target {} has no serving zone: {} served it and was taken out",
                    target.name(),
                    taken_out.join(", ")
                );
                self.violation(Invariant::TargetLeftUnserved, at, message);
            }
        }
    }

    /// At most one zone fails to serve a target its mode allows and that it served before: it is
    /// missing from it (in any VMAuth the CR answers for) or not ready for it. (A target a zone
    /// was never in since its mode last allowed it, such as `write` right after a switch from
    /// `read-only`, is not one it left.)
    fn check_one_out(&mut self, routes: &[Routes], zones: &[ZoneState], at: Option<u64>) {
        let mut out = Vec::new();
        for zone in zones {
            let mut missing = Vec::new();
            let mut unready = Vec::new();
            for target in Target::ALL {
                // Keyed by the member's name, not the zone's: a renamed cluster is a new
                // member, which joins as a new zone does, not one the zone left.
                let key = (zone.member_name(target).to_owned(), target);
                if !target.allowed_by(zone.mode) {
                    // A mode that takes the target away ends the zone's time in it: given back
                    // later, the target is one the zone joins anew, not one it left.
                    self.ever_routed.remove(&key);
                    continue;
                }
                let inside = !routes.is_empty()
                    && routes
                        .iter()
                        .all(|r| r.of(target).contains(zone.member_name(target)));
                if self.ever_routed.contains(&key) {
                    // Without a VMAuth (deleted by someone) there is no routing to judge.
                    if !inside && !routes.is_empty() {
                        missing.push(target);
                    } else if !zone.ready_for(target) {
                        unready.push(target);
                    }
                }
                // A zone counts as in the target once it served it: routed and ready. The docs
                // let a new zone join `write` as soon as its agent is ready, before its backend
                // first is; until then it has served nothing it could be out of.
                if inside && zone.ready_for(target) {
                    self.ever_routed.insert(key);
                }
            }
            if missing.is_empty() && unready.is_empty() {
                continue;
            }
            let what = match (missing.is_empty(), unready.is_empty()) {
                (false, false) => format!(
                    "out of {}, not ready for {}",
                    names(&missing),
                    names(&unready)
                ),
                (false, true) => format!("out of {}", names(&missing)),
                _ => format!("not ready for {}", names(&unready)),
            };
            out.push(format!("{} ({what})", zone.name));
            if !missing.is_empty() && self.replay.exclusions.last() != Some(&zone.name) {
                self.replay.exclusions.push(zone.name.clone());
            }
        }
        if out.len() > 1 {
            self.violation(
                Invariant::MoreThanOneZoneOut,
                at,
                format!("{} zones out of service: {}", out.len(), out.join(", ")),
            );
        }
    }

    /// At rest every zone is in every target its mode allows.
    fn check_at_rest(&mut self, routes: &Routes, zones: &[ZoneState], at: Option<u64>) {
        let missing = missing_members(routes, zones);
        if !missing.is_empty() {
            self.violation(
                Invariant::IncompleteAtRest,
                at,
                format!("operational, but {}", missing.join(", ")),
            );
        }
    }

    /// The CR is gone: every VMAuth it answered for that survives routes every zone that
    /// survives, as its mode allows.
    fn check_deletion(&mut self, at: Option<u64>) {
        let Some(cr) = self.last_cr.take() else {
            return;
        };
        let zones = self.zones(&cr);
        for (name, uid) in std::mem::take(&mut self.judged) {
            let Some(auth) = self
                .child(ChildKind::VMAuth, &name)
                .filter(|a| a.uid == uid)
            else {
                continue;
            };
            let Ok(routes) = Routes::strict(&auth.spec) else {
                self.violation(
                    Invariant::Undecodable,
                    at,
                    format!("VMAuth {name}: target refs of an unknown shape"),
                );
                continue;
            };
            let missing = missing_members(&routes, &zones);
            if !missing.is_empty() {
                self.violation(
                    Invariant::NotRestoredOnDeletion,
                    at,
                    format!(
                        "VMAuth {name} survives the CR without every zone: {}",
                        missing.join(", ")
                    ),
                );
            }
        }
    }
}

fn names(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn push_changed(list: &mut Vec<Vec<String>>, next: Vec<String>) {
    if list.last() != Some(&next) {
        list.push(next);
    }
}

/// `operational` with `Ready=True` for the CR's current generation.
fn is_operational(cr: &VMDistributed) -> bool {
    cr.status.as_ref().is_some_and(|status| {
        status.update_status == Some(UpdateStatus::Operational)
            && status.observed_generation == cr.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Strict reading of one stored object: the CR must parse; a child needs a name and, where
/// present, a status the rollout can read and (VMAuth) target refs of a known shape.
fn decode(kind: Option<ChildKind>, object: &Value) -> Result<(), String> {
    let Some(kind) = kind else {
        return serde_json::from_value::<VMDistributed>(object.clone())
            .map(|_| ())
            .map_err(|err| format!("does not parse: {err}"));
    };
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err("no metadata.name".to_owned());
    }
    if let Some(status) = object.get("status") {
        if status
            .get("updateStatus")
            .is_some_and(|s| !s.is_string() && !s.is_null())
        {
            return Err(format!("status.updateStatus is not a string: {status}"));
        }
        if status
            .get("observedGeneration")
            .is_some_and(|g| !g.is_i64() && !g.is_null())
        {
            return Err(format!(
                "status.observedGeneration is not an integer: {status}"
            ));
        }
    }
    if kind == ChildKind::VMAuth {
        Routes::strict(object.get("spec").unwrap_or(&Value::Null))?;
    }
    Ok(())
}

/// Whether the latest write of the object's main resource came from the controller (objects
/// without `managedFields`, as a simulation stores them, count as the controller's).
fn last_manager_is_controller(object: &Value) -> bool {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return true;
    };
    let main: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e.get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .collect();
    let latest = main
        .iter()
        .filter_map(|e| e.get("time").and_then(Value::as_str))
        .max()
        .unwrap_or_default();
    main.iter().any(|e| {
        e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
            && e.get("time").and_then(Value::as_str) == Some(latest)
    })
}

/// "zone not in target" for every existing zone missing from a target its mode allows.
fn missing_members(routes: &Routes, zones: &[ZoneState]) -> Vec<String> {
    zones
        .iter()
        .filter(|z| z.exists)
        .flat_map(|z| {
            Target::ALL
                .into_iter()
                .filter(|t| t.allowed_by(z.mode))
                .filter(|t| !routes.of(*t).contains(z.member_name(*t)))
                .map(|t| format!("{} not in {}", z.name, t.name()))
        })
        .collect()
}
