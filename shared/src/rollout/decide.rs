//! The rollout state machine (SPEC §5), one step per call.
//!
//! `decide` reads only its inputs: the CR (spec, metadata, `status.rollout`), the observed
//! children and the clock. All rollout state lives in the cluster, so any replica can resume any
//! rollout after a crash at any instant by calling it again.
//!
//! A CR with a `deletionTimestamp` is handed to [`crate::rollout::deletion::decide_deletion`], so
//! the controller calls `decide` in every case.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use crate::api::{
    RolloutStatus, TrafficMode, UpdateStatus, VMDistributed, VMDistributedStatus, Zone, ZonePhase,
    ZoneRemovalPolicy, ZoneStatus,
};
use crate::children::ChildObject;
use crate::defaults::{apply_defaults, ready_timeout, update_pause};
use crate::model::{
    Action, ChildFailure, ChildIntent, Decision, Event, EventReason, EventType, Intents,
    Membership, MetadataPatchReason, Observed, Target, ZoneIntents, contains,
};
use crate::names::{ChildKind, backend_kind, child_name, is_referenced, vmauth_name};
use crate::render::{self, may_create, owner_reference, vmauth_enabled};
use crate::rollout::conditions::{self, DEGRADED, Desired, PROGRESSING, READY};
use crate::rollout::deletion::{self, DELETION_POLL, has_finalizer};
use crate::rollout::membership::{self, LiveRefs};
use crate::rollout::patch;
use crate::rollout::render_intents;
use crate::validation::validate_stored;
use crate::versions::{self, PinnedVersions};

/// Condition reason while children are being created, rolled out or removed.
pub const REASON_ROLLING_OUT: &str = "RollingOut";
/// Progressing reason: an exclusion waits for the other members of a target to be ready.
pub const REASON_WAITING_FOR_HEALTHY_ZONES: &str = "WaitingForHealthyZones";
/// Progressing reason: the zone under update is the only zone serving a target and stays in it
/// (docs/rollout.md "Serving guard").
pub const REASON_UPDATING_IN_PLACE: &str = "UpdatingInPlace";
/// Progressing reason: waiting `updatePause` before the next zone.
pub const REASON_UPDATE_PAUSE: &str = "UpdatePause";
/// Progressing reason: removed zones' children are being released or deleted.
pub const REASON_REMOVING: &str = "RemovingChildren";
/// Ready=False reason when nothing can be written but some zone is not ready or missing.
pub const REASON_ZONES_NOT_READY: &str = "ZonesNotReady";
/// Ready=True reason.
pub const REASON_OPERATIONAL: &str = "Operational";

/// One zone as the decision sees it.
struct ZoneView<'a> {
    zone: &'a Zone,
    intents: &'a ZoneIntents,
    backend: Option<&'a ChildObject>,
    agent: Option<&'a ChildObject>,
    /// The zone cannot be written: a child is claimed by another CR.
    conflict: Option<String>,
    /// The backend does not exist and this CR may not create it.
    missing: Option<String>,
    ready: bool,
    current: bool,
    /// Every child that is not current is an adopted child that already contains its intent:
    /// stamping makes the zone current without a rollout.
    stampable: bool,
}

impl ZoneView<'_> {
    fn exists(&self) -> bool {
        self.backend.is_some() && self.agent.is_some()
    }
    fn writable(&self) -> bool {
        self.conflict.is_none()
    }
    /// The zone exists, may be written and needs a rollout to become current.
    fn needs_rollout(&self) -> bool {
        self.writable()
            && self.exists()
            && !self.current
            && !self.stampable
            && !self.backend.is_some_and(ChildObject::is_deleting)
    }
}

/// Whether an observed child carries `intent` (spec-hash and subset of the live spec).
fn child_current(child: Option<&ChildObject>, intent: &ChildIntent) -> bool {
    child.is_some_and(|c| {
        c.spec_hash() == Some(intent.spec_hash.as_str()) && contains(&c.spec, &intent.spec)
    })
}

/// Whether a child is current or will be after stamping (no spec-hash yet, live spec contains
/// the intent).
fn stampable(child: Option<&ChildObject>, intent: &ChildIntent) -> bool {
    child_current(child, intent)
        || child.is_some_and(|c| c.spec_hash().is_none() && contains(&c.spec, &intent.spec))
}

/// What one step concluded, before it becomes a status.
#[derive(Default)]
struct Outcome {
    rollout: RolloutStatus,
    actions: Vec<Action>,
    requeue: Option<Duration>,
    /// Progressing=True reason and message.
    progress: Option<(String, String)>,
    /// Degraded=True reason and message.
    degraded: Option<(EventReason, String)>,
    /// What an exclusion waits for, for the message of its timeout.
    waiting_for: Option<String>,
    invalid: Option<String>,
    /// Per zone, what preflight refused of it.
    preflight_zones: BTreeMap<String, String>,
    paused: bool,
    ready: bool,
    preflight_generation: Option<i64>,
}

impl Outcome {
    fn requeue_at_most(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The end of a pause of `pause` from `now`, rounded up to a whole microsecond: the stored
/// timestamp keeps microseconds, and a truncated end would shorten the pause. No pause stays no
/// pause.
fn pause_end(now: Timestamp, pause: Duration) -> Timestamp {
    if pause.is_zero() {
        return now;
    }
    let end = add(now, pause);
    end.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Microsecond)
            .mode(jiff::RoundMode::Ceil),
    )
    .unwrap_or(end)
}

fn until(now: Timestamp, then: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_until(then))
        .ok()
        .filter(|d| !d.is_zero())
}

/// One step of the SPEC §5 state machine for `cr` (as stored; defaults are applied here, never
/// changing a user value) given the `observed` children at time `now`.
///
/// See [`crate::model`] for how the controller executes the result.
#[must_use]
pub fn decide(cr: &VMDistributed, observed: &Observed, now: Timestamp) -> Decision {
    if cr.metadata.deletion_timestamp.is_some() {
        return deletion::decide_deletion(cr, observed);
    }
    let decision = decide_once(cr, observed, now);
    describe_transition(cr, observed, now, decision)
}

fn decide_once(cr: &VMDistributed, observed: &Observed, now: Timestamp) -> Decision {
    let previous = cr.status.clone().unwrap_or_default();
    let defaulted = apply_defaults(cr);
    let mut step = Step::new(&defaulted, observed, now, &previous);
    let outcome = step.run(cr);
    step.assemble(outcome)
}

/// A transition's status describes the phase it enters, as the next decision will see it.
///
/// A transition is written alone and the next decision, made on the stored transition, yields
/// the writes it authorizes. Were the transition written with a placeholder description, that
/// next decision would first have to rewrite the status (progress message, conditions) before
/// acting: a second status write, a second watch event and a second round trip for every phase
/// of every zone. So the entered phase is decided here, on the CR as the API server will store
/// it, and its status is written with the transition. When the entered phase completes at once
/// without a write of its own (the last zone restored and nothing left to do), the next
/// transition is folded in the same way. The actions stay those of the first transition: none
/// that a transition authorizes.
fn describe_transition(
    cr: &VMDistributed,
    observed: &Observed,
    now: Timestamp,
    transition: Decision,
) -> Decision {
    /// Transitions folded into one write at most; the state machine never needs more.
    const MAX_FOLDED: usize = 3;
    let previous = cr.status.clone().unwrap_or_default();
    if transition.status.rollout == previous.rollout || cr.metadata.deletion_timestamp.is_some() {
        return transition;
    }
    let mut status = transition.status.clone();
    let mut folded_events = rollout_events(&previous, &status);
    for _ in 0..MAX_FOLDED {
        let stored_status = as_stored(&status);
        let mut stored = cr.clone();
        stored.status = Some(stored_status.clone());
        let entered = decide_once(&stored, observed, now);
        if entered.status.rollout == stored_status.rollout {
            status = entered.status;
            break;
        }
        if !entered.actions.is_empty() {
            break;
        }
        folded_events.extend(rollout_events(&stored_status, &entered.status));
        status = entered.status;
    }
    let mut events = folded_events;
    events.extend(condition_events(&previous, &status));
    Decision {
        status_changed: status != previous,
        events,
        status,
        ..transition
    }
}

/// `status` as the API server stores it: timestamps keep whole seconds only.
fn as_stored(status: &VMDistributedStatus) -> VMDistributedStatus {
    serde_json::to_value(status)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|_| status.clone())
}

struct Step<'a> {
    cr: &'a VMDistributed,
    observed: &'a Observed,
    now: Timestamp,
    previous: &'a VMDistributedStatus,
    generation: i64,
    intents: Intents,
}

impl<'a> Step<'a> {
    fn new(
        cr: &'a VMDistributed,
        observed: &'a Observed,
        now: Timestamp,
        previous: &'a VMDistributedStatus,
    ) -> Self {
        Self {
            cr,
            observed,
            now,
            previous,
            generation: cr.metadata.generation.unwrap_or(0),
            // Rendering grows with the square of the zones; an object over the limit (stored
            // under an older CRD) is refused by validation before any intent is used.
            intents: if cr.spec.zones.len() > crate::api::MAX_ZONES {
                Intents {
                    zones: Vec::new(),
                    vmauth: None,
                }
            } else {
                render_intents(cr, observed)
            },
        }
    }

    fn cr_name(&self) -> &str {
        self.cr.metadata.name.as_deref().unwrap_or_default()
    }

    fn cr_uid(&self) -> &str {
        self.cr.metadata.uid.as_deref().unwrap_or_default()
    }

    fn conflict_of(&self, child: Option<&ChildObject>) -> Option<String> {
        let child = child?;
        let owner = child.claimed_by()?;
        (owner != self.cr_name()).then(|| {
            format!(
                "{} {} is claimed by VMDistributed {owner}",
                child.kind.map_or("child", ChildKind::kind),
                child.name
            )
        })
    }

    fn zone_views(&self) -> Vec<ZoneView<'_>> {
        let backend = backend_kind(self.cr);
        self.cr
            .spec
            .zones
            .iter()
            .zip(&self.intents.zones)
            .map(|(zone, intents)| {
                let b = self.observed.find(backend, &intents.backend.name);
                let a = self.observed.find(ChildKind::VMAgent, &intents.agent.name);
                let conflict = [self.conflict_of(b), self.conflict_of(a)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>();
                let missing =
                    (b.is_none() && !may_create(self.cr, Some(zone), backend)).then(|| {
                        format!(
                            "{backend} {} does not exist; waiting for it to appear",
                            intents.backend.name
                        )
                    });
                ZoneView {
                    zone,
                    intents,
                    backend: b,
                    agent: a,
                    conflict: (!conflict.is_empty()).then(|| conflict.join("; ")),
                    missing,
                    ready: b.is_some_and(ChildObject::is_ready)
                        && a.is_some_and(ChildObject::is_ready),
                    current: child_current(b, &intents.backend) && child_current(a, &intents.agent),
                    stampable: stampable(b, &intents.backend) && stampable(a, &intents.agent),
                }
            })
            .collect()
    }

    fn vmauth_child(&self) -> Option<&ChildObject> {
        self.observed.find(ChildKind::VMAuth, &vmauth_name(self.cr))
    }

    fn vmauth_conflict(&self) -> Option<String> {
        if !vmauth_enabled(self.cr) {
            return None;
        }
        self.conflict_of(self.vmauth_child())
    }

    /// The write that brings the VMAuth to its intent, if it differs.
    fn vmauth_write(&self) -> Option<Action> {
        let intent = self.intents.vmauth.as_ref()?;
        if self.vmauth_conflict().is_some() {
            return None;
        }
        match self.vmauth_child() {
            None => may_create(self.cr, None, ChildKind::VMAuth).then(|| Action::Create {
                intent: intent.clone(),
            }),
            Some(live) if live.is_deleting() => None,
            Some(live) => (!child_current(Some(live), intent)).then(|| Action::Apply {
                intent: intent.clone(),
            }),
        }
    }

    /// The live VMAuth carries its intent and is ready at (at least) the generation our last
    /// apply returned. Always true with `vmauth.enabled: false`.
    fn vmauth_settled(&self) -> bool {
        let Some(intent) = self.intents.vmauth.as_ref() else {
            return true;
        };
        self.vmauth_child().is_some_and(|live| {
            // The generation our write returned is a bar for that object only: a VMAuth
            // created anew (by us after a rename, or by someone after a deletion) starts at 1.
            let same_object = self
                .observed
                .vmauth_applied_uid
                .as_deref()
                .is_none_or(|uid| uid == live.uid);
            let bar = if same_object {
                self.observed.vmauth_applied_generation.unwrap_or(0)
            } else {
                0
            };
            child_current(Some(live), intent)
                && live.is_ready()
                && live.observed_generation.unwrap_or(0) >= bar
        })
    }

    fn phase_since(&self, rollout: &RolloutStatus) -> Timestamp {
        rollout.phase_since.as_ref().map_or(self.now, |t| t.0)
    }

    fn transition(&self, rollout: RolloutStatus, outcome: &mut Outcome) {
        outcome.rollout = rollout;
        outcome.actions.clear();
        outcome.progress = Some((
            REASON_ROLLING_OUT.to_owned(),
            "rollout state changed".to_owned(),
        ));
    }

    fn enter(&self, zone: &str, phase: ZonePhase) -> RolloutStatus {
        RolloutStatus {
            zone: Some(zone.to_owned()),
            phase: Some(phase),
            phase_since: Some(MicroTime(self.now)),
            pause_until: None,
        }
    }

    /// Creation of missing children, stamping, owner references: writes that never change what
    /// an existing zone serves, so they are allowed in any phase.
    fn housekeeping(&self, views: &[ZoneView<'_>], actions: &mut Vec<Action>) {
        let backend = backend_kind(self.cr);
        let uid = self.cr_uid();
        let retain = self.cr.spec.retain.unwrap_or(false);
        for view in views.iter().filter(|v| v.writable() && v.missing.is_none()) {
            for (kind, child, intent) in [
                (backend, view.backend, &view.intents.backend),
                (ChildKind::VMAgent, view.agent, &view.intents.agent),
            ] {
                match child {
                    None => {
                        if may_create(self.cr, Some(view.zone), kind) {
                            actions.push(Action::Create {
                                intent: intent.clone(),
                            });
                        }
                    }
                    Some(child) if child.is_deleting() => {}
                    Some(child) => {
                        // A migrated or adopted child that already contains the intent is
                        // stamped in place: the unchanged intent adds the annotation only.
                        if child.spec_hash().is_none() && contains(&child.spec, &intent.spec) {
                            actions.push(Action::Apply {
                                intent: intent.clone(),
                            });
                        }
                        self.owner_reference_fix(kind, child, uid, retain, actions);
                    }
                }
            }
        }
        if let Some(live) = self.vmauth_child()
            && vmauth_enabled(self.cr)
            && self.vmauth_conflict().is_none()
            && !live.is_deleting()
        {
            self.owner_reference_fix(ChildKind::VMAuth, live, uid, retain, actions);
        }
    }

    /// The owner reference of a child this CR created follows `retain`; a `ref` of any kind
    /// carries neither an owner reference nor created-by, also when this CR created it before
    /// it became a `ref` (otherwise the CR's deletion, or the garbage collector after a
    /// foreground deletion, would delete it).
    fn owner_reference_fix(
        &self,
        kind: ChildKind,
        child: &ChildObject,
        uid: &str,
        retain: bool,
        actions: &mut Vec<Action>,
    ) {
        if uid.is_empty() {
            return;
        }
        if is_referenced(self.cr, kind, &child.name) {
            if let Some(patch) = patch::forget_creation(child, uid) {
                actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::ForgetCreation,
                    patch,
                });
            }
            return;
        }
        if !child.created_by(uid) {
            return;
        }
        if retain {
            if let Some(patch) = patch::remove_owner_reference(child, uid) {
                actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::RemoveOwnerReference,
                    patch,
                });
            }
        } else if !child.controller_owner_is(uid)
            && let Some(patch) = patch::add_owner_reference(child, &owner_reference(self.cr))
        {
            actions.push(Action::PatchMetadata {
                kind,
                name: child.name.clone(),
                reason: MetadataPatchReason::AddOwnerReference,
                patch,
            });
        }
    }

    fn run(&mut self, stored: &VMDistributed) -> Outcome {
        let mut outcome = Outcome {
            rollout: self.previous.rollout.clone().unwrap_or_default(),
            preflight_generation: self.previous.preflight_generation,
            ..Outcome::default()
        };
        // 1. Invalid spec: nothing is written.
        let report = validate_stored(stored, &self.observed.children);
        if !report.is_valid() {
            outcome.invalid = Some(report.error_summary());
            return outcome;
        }
        if self.cr.spec.paused.unwrap_or(false) {
            outcome.paused = true;
            return outcome;
        }
        // Unpausing restarts the current phase's clock (a transition of its own).
        if self.previous.update_status == Some(UpdateStatus::Paused)
            && outcome.rollout.zone.is_some()
        {
            let mut rollout = outcome.rollout.clone();
            rollout.phase_since = Some(MicroTime(self.now));
            self.transition(rollout, &mut outcome);
            return outcome;
        }
        if !has_finalizer(self.cr) {
            outcome.actions.push(Action::AddFinalizer);
            outcome.progress = Some((REASON_ROLLING_OUT.into(), "adding finalizer".into()));
            return outcome;
        }
        // 2. Preflight once per generation, before any child write.
        if outcome.preflight_generation != Some(self.generation) {
            match &self.observed.preflight {
                Some(result) if result.generation == self.generation => {
                    if let Some(rejection) = &result.rejection {
                        // Worded by `preflight::verdict`, each line already says `preflight:`.
                        outcome.invalid = Some(rejection.clone());
                        outcome.preflight_zones = result.zone_messages.clone();
                        return outcome;
                    }
                    outcome.preflight_generation = Some(self.generation);
                }
                _ => {
                    // Children that already carry their intent will not be written for this
                    // generation: there is nothing of theirs to try out (a clusterVersion change
                    // dry-runs the backends, not the agents and the VMAuth).
                    let intents: Vec<ChildIntent> = self
                        .intents
                        .all()
                        .into_iter()
                        .filter(|intent| {
                            !child_current(self.observed.find(intent.kind, &intent.name), intent)
                        })
                        .map(ChildIntent::without_owner_references)
                        .collect();
                    if intents.is_empty() {
                        outcome.preflight_generation = Some(self.generation);
                    } else {
                        outcome.actions.push(Action::Preflight {
                            generation: self.generation,
                            intents,
                        });
                        outcome.progress =
                            Some((REASON_ROLLING_OUT.into(), "preflight dry-run".into()));
                        return outcome;
                    }
                }
            }
        }
        let views = self.zone_views();
        let mut housekeeping = Vec::new();
        self.housekeeping(&views, &mut housekeeping);
        outcome.actions = housekeeping;
        let conflicts: Vec<String> = views
            .iter()
            .filter_map(|v| v.conflict.clone())
            .chain(self.vmauth_conflict())
            .collect();
        if !conflicts.is_empty() {
            outcome.degraded = Some((EventReason::OwnershipConflict, conflicts.join("; ")));
        }
        // A VMAuth this CR no longer manages is handed back, with every zone, before any zone
        // is touched again: a zone it still excludes would otherwise stay out of it for good,
        // while the next zones are updated behind it.
        let handback = self.vmauth_handback();
        if handback.pending {
            outcome.actions.extend(handback.actions);
            if handback.waiting {
                outcome.requeue_at_most(DELETION_POLL);
            }
            outcome.progress = Some((REASON_REMOVING.into(), handback.message));
            return outcome;
        }
        // 4. A rollout in progress advances one phase.
        if let Some(zone_name) = outcome.rollout.zone.clone() {
            self.advance(&zone_name, &views, &mut outcome);
            return outcome;
        }
        // 5. Pause between zones.
        if let Some(pause_until) = outcome.rollout.pause_until.as_ref().map(|t| t.0)
            && let Some(wait) = until(self.now, pause_until)
            && views.iter().any(|v| !v.current)
        {
            outcome.requeue_at_most(wait);
            outcome.progress = Some((
                REASON_UPDATE_PAUSE.into(),
                format!("next zone starts at {pause_until}"),
            ));
            outcome.actions.extend(self.vmauth_write());
            return outcome;
        }
        // 6. Next zone: not ready first, then spec order.
        if self.vmauth_conflict().is_none() {
            let next = views
                .iter()
                .filter(|v| v.needs_rollout())
                .min_by_key(|v| v.ready);
            if let Some(next) = next {
                let rollout = self.enter(&next.zone.name, ZonePhase::Excluding);
                self.transition(rollout, &mut outcome);
                return outcome;
            }
        }
        outcome.actions.extend(self.vmauth_write());
        // 7. Removed zones and other leftovers.
        let pending_zone = views
            .iter()
            .any(|v| v.writable() && v.missing.is_none() && (!v.exists() || !v.current));
        let removal = if pending_zone || !outcome.actions.is_empty() {
            Removal::default()
        } else {
            self.removal()
        };
        if removal.pending {
            outcome.actions.extend(removal.actions);
            if removal.waiting {
                outcome.requeue_at_most(DELETION_POLL);
            }
            outcome.progress = Some((REASON_REMOVING.into(), removal.message));
            return outcome;
        }
        // 8. Nothing left to do.
        let all_good = views.iter().all(|v| v.writable() && v.current && v.ready)
            && self.vmauth_settled()
            && self.vmauth_conflict().is_none();
        if outcome.actions.is_empty() && all_good {
            outcome.ready = true;
            outcome.rollout.pause_until = None;
        } else if !outcome.actions.is_empty() || pending_zone {
            outcome.progress = Some((
                REASON_ROLLING_OUT.into(),
                "creating or updating children".into(),
            ));
        }
        outcome
    }

    /// One phase step for the zone under update.
    fn advance(&self, zone_name: &str, views: &[ZoneView<'_>], outcome: &mut Outcome) {
        let Some(view) = views.iter().find(|v| v.zone.name == zone_name) else {
            // The zone was removed from the spec mid-rollout: forget it.
            self.transition(RolloutStatus::default(), outcome);
            return;
        };
        let phase = outcome.rollout.phase.unwrap_or(ZonePhase::Excluding);
        if let Some(rollout) = self.reentry(view, phase) {
            self.transition(rollout, outcome);
            return;
        }
        let since = self.phase_since(&outcome.rollout);
        let deadline = add(since, ready_timeout(self.cr));
        let expired = self.now >= deadline;
        let halt_reason = match phase {
            ZonePhase::Applying => EventReason::ZoneNotReady,
            ZonePhase::Excluding | ZonePhase::Restoring => EventReason::VMAuthNotReady,
        };
        outcome.progress = Some((
            REASON_ROLLING_OUT.into(),
            format!("zone {zone_name}: {phase:?}"),
        ));
        let waiting = match phase {
            ZonePhase::Excluding => self.excluding(view, views, outcome),
            ZonePhase::Applying => self.applying(view, outcome),
            ZonePhase::Restoring => self.restoring(view, outcome),
        };
        if !waiting {
            return;
        }
        // A child the VictoriaMetrics operator reports `failed` for the spec it now has will
        // not become ready by waiting out readyTimeout: halt at once, with its reason.
        if let Some(failed) = self.failed_in_phase(view, phase) {
            outcome.degraded = Some((
                halt_reason,
                format!(
                    "zone {zone_name}: {failed}; the rollout is halted until it is ready or the spec changes"
                ),
            ));
            return;
        }
        if expired {
            let message = match (phase, outcome.waiting_for.take()) {
                (ZonePhase::Excluding, Some(waiting)) => {
                    let message = format!(
                        "{waiting} within readyTimeout ({}); the rollout is halted until it is ready or the spec changes",
                        crate::duration::format_go_duration(ready_timeout(self.cr))
                    );
                    outcome.degraded = Some((EventReason::ZoneNotReady, message));
                    return;
                }
                (ZonePhase::Applying, _) => format!(
                    "zone {zone_name} did not become ready within readyTimeout ({}){}; the rollout is halted until it is ready or the spec changes",
                    crate::duration::format_go_duration(ready_timeout(self.cr)),
                    not_ready_details([view.backend, view.agent])
                ),
                _ => format!(
                    "VMAuth {} did not reach the targets of phase {phase:?} for zone {zone_name} within readyTimeout ({}){}; the rollout is halted",
                    vmauth_name(self.cr),
                    crate::duration::format_go_duration(ready_timeout(self.cr)),
                    not_ready_details([self.vmauth_child()])
                ),
            };
            outcome.degraded = Some((halt_reason, message));
        } else if let Some(wait) = until(self.now, deadline) {
            outcome.requeue_at_most(wait);
        }
    }

    /// What the VictoriaMetrics operator reports `failed` among the children the phase waits
    /// for: in `Applying` the zone's backend and agent once they carry their intent (a failure
    /// of the old spec is what the update may fix), otherwise the VMAuth.
    fn failed_in_phase(&self, view: &ZoneView<'_>, phase: ZonePhase) -> Option<String> {
        let waited_for = match phase {
            ZonePhase::Applying if view.current => vec![view.backend, view.agent],
            ZonePhase::Applying => Vec::new(),
            ZonePhase::Excluding | ZonePhase::Restoring => vec![self.vmauth_child()],
        };
        let failed: Vec<String> = waited_for
            .into_iter()
            .flatten()
            .filter(|child| child.failure().is_some())
            .map(ChildObject::not_ready_detail)
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }

    /// A phase other than `Applying` reacts to the zone and the spec as `Applying` does: a zone
    /// in `Restoring` that is no longer current or ready goes back to `Applying` (a revert is
    /// applied, an unready zone is waited for there); a zone in `Excluding` that needs no update
    /// any more goes to `Restoring` (which puts back whatever it left); a new generation
    /// restarts the phase clock.
    fn reentry(&self, view: &ZoneView<'_>, phase: ZonePhase) -> Option<RolloutStatus> {
        let name = &view.zone.name;
        let new_generation = self.previous.observed_generation != Some(self.generation);
        match phase {
            ZonePhase::Restoring if view.writable() && (!view.current || !view.ready) => {
                Some(self.enter(name, ZonePhase::Applying))
            }
            ZonePhase::Excluding if view.writable() && view.exists() && view.current => {
                Some(self.enter(name, ZonePhase::Restoring))
            }
            ZonePhase::Excluding | ZonePhase::Restoring if new_generation => {
                Some(self.enter(name, phase))
            }
            _ => None,
        }
    }

    /// The targets the zone under update stays in (no other zone serves them), said in the
    /// status; an event is emitted when this reason appears.
    fn note_in_place(&self, view: &ZoneView<'_>, phase: ZonePhase, outcome: &mut Outcome) {
        let kept = membership::kept_in_place(self.cr, self.observed, view.zone);
        if kept.is_empty() {
            return;
        }
        let targets = kept
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(" and ");
        let pronoun = if kept.len() == 1 { "it" } else { "them" };
        outcome.progress = Some((
            REASON_UPDATING_IN_PLACE.into(),
            format!(
                "zone {}: {phase:?}; updated in place for {targets}: no other zone serves {pronoun}, so it stays in the load balancer while it is updated",
                view.zone.name
            ),
        ));
    }

    /// Excluding: take the zone out of the targets another zone serves. Returns whether it is
    /// still waiting.
    fn excluding(
        &self,
        view: &ZoneView<'_>,
        views: &[ZoneView<'_>],
        outcome: &mut Outcome,
    ) -> bool {
        if self.intents.vmauth.is_none() {
            let rollout = self.enter(&view.zone.name, ZonePhase::Applying);
            self.transition(rollout, outcome);
            return false;
        }
        let live = LiveRefs::of(self.cr, self.observed);
        let membership = membership::derive(self.cr, self.observed, Some(&view.zone.name));
        let unhealthy = self.unhealthy_members(view, views, &live, &membership);
        if !unhealthy.is_empty() {
            // Nothing has left yet: rather than wait for a zone whose fix is a spec change
            // (which only its own rollout applies), roll that zone first.
            if self.exclusion_not_started(view, &live)
                && let Some(fix) = views
                    .iter()
                    .find(|v| unhealthy.contains(&v.zone.name) && v.needs_rollout())
            {
                let rollout = self.enter(&fix.zone.name, ZonePhase::Excluding);
                self.transition(rollout, outcome);
                return false;
            }
            let names = unhealthy
                .iter()
                .map(|z| format!("zone {z}"))
                .collect::<Vec<_>>()
                .join(", ");
            outcome.progress = Some((
                REASON_WAITING_FOR_HEALTHY_ZONES.into(),
                format!(
                    "zone {} waits before leaving the load balancer: {} not ready",
                    view.zone.name,
                    unhealthy.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
            outcome.waiting_for = Some(format!(
                "zone {} has not left the load balancer: it waits for {names} to become ready, which did not happen",
                view.zone.name
            ));
            return true;
        }
        self.note_in_place(view, ZonePhase::Excluding, outcome);
        if let Some(write) = self.vmauth_write() {
            outcome.actions.push(write);
            return true;
        }
        if self.vmauth_settled() {
            let rollout = self.enter(&view.zone.name, ZonePhase::Applying);
            self.transition(rollout, outcome);
            return false;
        }
        true
    }

    /// The zone is still in every target it would be in without its update: its exclusion has
    /// not begun.
    fn exclusion_not_started(&self, view: &ZoneView<'_>, live: &LiveRefs) -> bool {
        let without_update = membership::derive(self.cr, self.observed, None);
        Target::ALL.into_iter().all(|target| {
            !without_update.of(target).contains(&view.zone.name)
                || live
                    .target(target)
                    .contains(&membership::member_name(self.cr, view.zone, target))
        })
    }

    /// Other members of the targets `view` is routed in that are not ready.
    fn unhealthy_members(
        &self,
        view: &ZoneView<'_>,
        views: &[ZoneView<'_>],
        live: &LiveRefs,
        membership: &Membership,
    ) -> BTreeSet<String> {
        let mut unhealthy = BTreeSet::new();
        let in_write = live.write.contains(&view.intents.agent.name);
        let in_read = live.read.contains(&view.intents.backend.name);
        for other in views.iter().filter(|v| v.zone.name != view.zone.name) {
            // Serving writes takes the agent and the backend it writes to.
            if in_write
                && membership.write.contains(&other.zone.name)
                && !(other.agent.is_some_and(ChildObject::is_ready)
                    && other.backend.is_some_and(ChildObject::is_ready))
            {
                unhealthy.insert(other.zone.name.clone());
            }
            if in_read
                && membership.read.contains(&other.zone.name)
                && !other.backend.is_some_and(ChildObject::is_ready)
            {
                unhealthy.insert(other.zone.name.clone());
            }
        }
        unhealthy
    }

    /// Applying: write the zone's backend and agent. Returns whether it is still waiting.
    fn applying(&self, view: &ZoneView<'_>, outcome: &mut Outcome) -> bool {
        self.note_in_place(view, ZonePhase::Applying, outcome);
        // A VMAuth deleted mid-phase comes back at once, without the zone where it left.
        if self.vmauth_child().is_none()
            && let Some(create) = self.vmauth_write()
        {
            outcome.actions.push(create);
        }
        if !view.writable() {
            return true;
        }
        if !view.current {
            // A new generation restarts the phase clock before it is applied (a transition of
            // its own, so the write that follows is authorized by it).
            if self.previous.observed_generation != Some(self.generation) {
                let rollout = self.enter(&view.zone.name, ZonePhase::Applying);
                self.transition(rollout, outcome);
                return false;
            }
            let backend = backend_kind(self.cr);
            for (kind, child, intent) in [
                (backend, view.backend, &view.intents.backend),
                (ChildKind::VMAgent, view.agent, &view.intents.agent),
            ] {
                if child_current(child, intent) {
                    continue;
                }
                let action = match child {
                    None if may_create(self.cr, Some(view.zone), kind) => Action::Create {
                        intent: intent.clone(),
                    },
                    None => continue,
                    Some(c) if c.is_deleting() => continue,
                    Some(_) => Action::Apply {
                        intent: intent.clone(),
                    },
                };
                if !outcome.actions.contains(&action) {
                    outcome.actions.push(action);
                }
            }
            return true;
        }
        if view.ready {
            let rollout = self.enter(&view.zone.name, ZonePhase::Restoring);
            self.transition(rollout, outcome);
            return false;
        }
        true
    }

    /// Restoring: put the zone back into the VMAuth. Returns whether it is still waiting.
    fn restoring(&self, view: &ZoneView<'_>, outcome: &mut Outcome) -> bool {
        let done = RolloutStatus {
            zone: None,
            phase: None,
            phase_since: None,
            pause_until: Some(MicroTime(pause_end(self.now, update_pause(self.cr)))),
        };
        if self.intents.vmauth.is_none() {
            self.transition(done, outcome);
            return false;
        }
        if let Some(write) = self.vmauth_write() {
            outcome.actions.push(write);
            return true;
        }
        let membership = membership::derive(self.cr, self.observed, None);
        let mode = view.zone.traffic_mode.unwrap_or(TrafficMode::ReadWrite);
        let name = &view.zone.name;
        // A zone that some agent does not write to at all (a new zone) joins reads once the
        // other zones' rollouts bring it to every agent; a moved URL is no reason to wait.
        let back = (!mode.writes() || membership.write.contains(name))
            && (!mode.reads()
                || membership.read.contains(name)
                || !membership::all_agents_know(self.cr, self.observed, view.zone));
        if back && self.vmauth_settled() {
            self.transition(done, outcome);
            return false;
        }
        true
    }

    /// VMAuths labelled for this CR that it no longer manages (`vmauth.name` changed,
    /// `vmauth.enabled: false`): each first routes to every zone again ([`membership::handback`];
    /// it may still exclude the zone under update), so it keeps working as a plain VMAuth, then
    /// it is released; one this CR created is deleted instead under `zoneRemovalPolicy: Delete`.
    fn vmauth_handback(&self) -> Removal {
        let mut handback = Removal::default();
        let name = self.cr_name();
        let uid = self.cr_uid();
        let current = vmauth_enabled(self.cr).then(|| vmauth_name(self.cr));
        let delete = self.cr.spec.zone_removal_policy == Some(ZoneRemovalPolicy::Delete)
            && !self.cr.spec.retain.unwrap_or(false);
        let mut names = Vec::new();
        for child in &self.observed.children {
            if child.kind != Some(ChildKind::VMAuth)
                || child.claimed_by() != Some(name)
                || current.as_deref() == Some(child.name.as_str())
            {
                continue;
            }
            handback.pending = true;
            names.push(format!("VMAuth {}", child.name));
            if child.is_deleting() {
                handback.waiting = true;
                continue;
            }
            if delete
                && child.created_by(uid)
                && !is_referenced(self.cr, ChildKind::VMAuth, &child.name)
            {
                handback
                    .actions
                    .push(Action::delete(ChildKind::VMAuth, child));
                continue;
            }
            let members = membership::handback(self.cr, self.observed, child);
            let intent = render::render_vmauth_named(self.cr, self.observed, &members, &child.name);
            if !contains(&child.spec, &intent.spec) {
                handback.actions.push(Action::Apply { intent });
                continue;
            }
            if !child.is_ready() {
                handback.waiting = true;
                continue;
            }
            if let Some(patch) = patch::release(child, uid) {
                handback.actions.push(Action::PatchMetadata {
                    kind: ChildKind::VMAuth,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::Release,
                    patch,
                });
            }
        }
        handback.message = format!("handing back {}", names.join(", "));
        handback
    }

    /// Children labelled for this CR that no current zone (or the VMAuth) resolves.
    fn removal(&self) -> Removal {
        let mut removal = Removal::default();
        let name = self.cr_name();
        let uid = self.cr_uid();
        let backend = backend_kind(self.cr);
        let mut resolved: BTreeSet<(ChildKind, String)> = BTreeSet::new();
        for zone in &self.cr.spec.zones {
            resolved.insert((backend, child_name(self.cr, zone, backend)));
            resolved.insert((
                ChildKind::VMAgent,
                child_name(self.cr, zone, ChildKind::VMAgent),
            ));
        }
        if vmauth_enabled(self.cr) {
            resolved.insert((ChildKind::VMAuth, vmauth_name(self.cr)));
        }
        let delete = self.cr.spec.zone_removal_policy == Some(ZoneRemovalPolicy::Delete)
            && !self.cr.spec.retain.unwrap_or(false);
        let mut names = Vec::new();
        for child in &self.observed.children {
            let Some(kind) = child.kind else { continue };
            if child.claimed_by() != Some(name) || resolved.contains(&(kind, child.name.clone())) {
                continue;
            }
            if kind == ChildKind::VMAuth {
                // Handed back before anything else (`vmauth_handback`).
                continue;
            }
            removal.pending = true;
            names.push(format!("{kind} {}", child.name));
            if child.is_deleting() {
                removal.waiting = true;
                continue;
            }
            if delete && child.created_by(uid) && !is_referenced(self.cr, kind, &child.name) {
                removal.actions.push(Action::delete(kind, child));
                continue;
            }
            if let Some(patch) = patch::release(child, uid) {
                removal.actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::Release,
                    patch,
                });
            }
        }
        // Zone children go only once the VMAuth no longer routes to them.
        if removal.pending && !self.vmauth_settled() {
            removal.actions.clear();
            removal.waiting = true;
        }
        removal.message = format!("releasing or deleting {}", names.join(", "));
        removal
    }

    fn zone_statuses(&self, views: &[ZoneView<'_>]) -> Vec<ZoneStatus> {
        let live = LiveRefs::of(self.cr, self.observed);
        views
            .iter()
            .map(|v| ZoneStatus {
                name: v.zone.name.clone(),
                vmcluster: Some(v.intents.backend.name.clone()),
                vmagent: Some(v.intents.agent.name.clone()),
                ready: v.ready,
                current: v.current,
                in_read: live.read.contains(&v.intents.backend.name),
                in_write: live.write.contains(&v.intents.agent.name),
                message: v.conflict.clone().or_else(|| v.missing.clone()),
            })
            .collect()
    }

    /// The failed child writes the decision still wants to make: what the status reports.
    fn failures<'o>(&'o self, actions: &[Action]) -> Vec<&'o ChildFailure> {
        self.observed
            .child_failures
            .iter()
            .filter(|failure| actions.iter().any(|action| failure.concerns(action)))
            .collect()
    }

    fn assemble(&self, mut outcome: Outcome) -> Decision {
        let views = self.zone_views();
        let mut zones = self.zone_statuses(&views);
        for zone in &mut zones {
            if let Some(message) = outcome.preflight_zones.get(&zone.name) {
                zone.message = Some(message.clone());
            }
        }
        // The status authorizes the writes that follow it: a zone whose new spec this phase
        // applies is counted as the writes leave it (not ready until the operator reports the
        // new generation), not as it was before them, or `readyZones` would lag one step.
        if outcome.rollout.phase == Some(ZonePhase::Applying)
            && let Some(name) = outcome.rollout.zone.as_deref()
            && views
                .iter()
                .any(|v| v.zone.name == name && v.writable() && !v.current)
            && let Some(zone) = zones.iter_mut().find(|z| z.name == name)
        {
            zone.ready = false;
        }
        // A write the API server keeps failing is reported where users look: `Degraded`, the
        // zone's message and (through the condition) one event per distinct cause.
        let failures = self.failures(&outcome.actions);
        if !failures.is_empty() {
            let reason = if failures.iter().any(|f| f.rejected) {
                EventReason::ChildRejected
            } else {
                EventReason::ChildWriteFailed
            };
            let summaries: Vec<String> = failures.iter().map(|f| f.summary()).collect();
            outcome.degraded = Some((
                reason,
                format!(
                    "{}; retried with backoff until it succeeds or the spec changes",
                    summaries.join("; ")
                ),
            ));
            for zone in &mut zones {
                let own: Vec<String> = failures
                    .iter()
                    .filter(|f| f.zone.as_deref() == Some(zone.name.as_str()))
                    .map(|f| f.summary())
                    .collect();
                if !own.is_empty() {
                    zone.message = Some(own.join("; "));
                }
            }
        }
        let ready_count = zones.iter().filter(|z| z.ready).count();
        let halted = outcome
            .degraded
            .as_ref()
            .is_some_and(|(r, _)| *r != EventReason::OwnershipConflict);
        let (update_status, reason, ready, progressing) = if let Some(message) = &outcome.invalid {
            (
                UpdateStatus::Failed,
                message.clone(),
                Desired::new(READY, false, "InvalidSpec", message.clone()),
                Desired::new(PROGRESSING, false, "InvalidSpec", "nothing is written"),
            )
        } else if outcome.paused {
            (
                UpdateStatus::Paused,
                "spec.paused is true".to_owned(),
                Desired::new(READY, false, "Paused", "spec.paused is true"),
                Desired::new(PROGRESSING, false, "Paused", "spec.paused is true"),
            )
        } else if outcome.ready {
            let message = format!("all {} zones are current and ready", zones.len());
            (
                UpdateStatus::Operational,
                message.clone(),
                Desired::new(READY, true, REASON_OPERATIONAL, message),
                Desired::new(PROGRESSING, false, "Idle", "nothing to do"),
            )
        } else if let Some((degraded_reason, message)) = &outcome.degraded {
            let progressing = match (&outcome.progress, halted) {
                (Some((r, m)), false) => Desired::new(PROGRESSING, true, r.clone(), m.clone()),
                _ => Desired::new(PROGRESSING, false, "Halted", message.clone()),
            };
            (
                UpdateStatus::Failed,
                message.clone(),
                Desired::new(READY, false, degraded_reason.as_str(), message.clone()),
                progressing,
            )
        } else if let Some((r, m)) = &outcome.progress {
            (
                UpdateStatus::Expanding,
                m.clone(),
                Desired::new(READY, false, r.clone(), m.clone()),
                Desired::new(PROGRESSING, true, r.clone(), m.clone()),
            )
        } else {
            let message = views
                .iter()
                .filter(|v| !v.ready)
                .map(|v| {
                    v.missing
                        .clone()
                        .unwrap_or_else(|| format!("zone {} is not ready", v.zone.name))
                })
                .chain((!self.vmauth_settled()).then(|| "the VMAuth is not ready".to_owned()))
                .collect::<Vec<_>>()
                .join("; ");
            (
                UpdateStatus::Expanding,
                message.clone(),
                Desired::new(READY, false, REASON_ZONES_NOT_READY, message),
                Desired::new(
                    PROGRESSING,
                    false,
                    "Waiting",
                    "waiting for children to become ready",
                ),
            )
        };
        let degraded = match &outcome.degraded {
            Some((r, m)) if outcome.invalid.is_none() && !outcome.paused => {
                Desired::new(DEGRADED, true, r.as_str(), m.clone())
            }
            _ => Desired::new(DEGRADED, false, "AsExpected", ""),
        };
        let generation = Some(self.generation);
        let rollout = outcome.rollout;
        let status = VMDistributedStatus {
            update_status: Some(update_status),
            reason: Some(reason),
            observed_generation: generation,
            conditions: conditions::settle(
                &self.previous.conditions,
                &[ready, progressing, degraded],
                generation,
                self.now,
            ),
            ready_zones: Some(format!("{ready_count}/{}", zones.len())),
            preflight_generation: outcome.preflight_generation,
            zones,
            rollout: (rollout != RolloutStatus::default()).then_some(rollout),
            pinned_versions: Some(versions::pinned_for(
                self.cr,
                &self.observed.pinned_versions,
            ))
            .filter(|pinned| *pinned != PinnedVersions::default()),
        };
        let events = events(self.previous, &status);
        Decision {
            status_changed: status != *self.previous,
            status,
            actions: outcome.actions,
            requeue_after: outcome.requeue,
            events,
        }
    }
}

#[derive(Default)]
struct Removal {
    pending: bool,
    waiting: bool,
    actions: Vec<Action>,
    message: String,
}

/// `: VMCluster a is expanding; VMAgent a reports failed: …` for the children given, or nothing.
fn not_ready_details<'c>(children: impl IntoIterator<Item = Option<&'c ChildObject>>) -> String {
    let details: Vec<String> = children
        .into_iter()
        .flatten()
        .filter(|child| !child.is_ready())
        .map(ChildObject::not_ready_detail)
        .collect();
    if details.is_empty() {
        String::new()
    } else {
        format!(": {}", details.join("; "))
    }
}

/// Events for the transitions between `previous` and `next`, never one per retry.
fn events(previous: &VMDistributedStatus, next: &VMDistributedStatus) -> Vec<Event> {
    let mut events = rollout_events(previous, next);
    events.extend(condition_events(previous, next));
    events
}

/// Events of a change of `status.rollout`: a zone's update started or finished.
fn rollout_events(previous: &VMDistributedStatus, next: &VMDistributedStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let before = previous.rollout.clone().unwrap_or_default();
    let after = next.rollout.clone().unwrap_or_default();
    if let Some(zone) = &after.zone
        && after.phase == Some(ZonePhase::Excluding)
        && before.zone.as_ref() != Some(zone)
    {
        events.push(Event {
            type_: EventType::Normal,
            reason: EventReason::RolloutStarted,
            note: format!("zone {zone}: update started"),
        });
    }
    if let Some(zone) = &before.zone
        && before.phase == Some(ZonePhase::Restoring)
        && after.zone.is_none()
    {
        events.push(Event {
            type_: EventType::Normal,
            reason: EventReason::ZoneUpdated,
            note: format!("zone {zone} is updated and back in the load balancer"),
        });
    }
    events
}

/// Events of condition changes: finished, invalid, degraded.
fn condition_events(previous: &VMDistributedStatus, next: &VMDistributedStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let was = |type_: &str, reason: &str| {
        conditions::find(&previous.conditions, type_)
            .is_some_and(|c| c.status == "True" && c.reason == reason)
    };
    if let Some(ready) = conditions::find(&next.conditions, READY) {
        if ready.status == "True" && !conditions::is_true_with(&previous.conditions, READY, None) {
            events.push(Event {
                type_: EventType::Normal,
                reason: EventReason::RolloutFinished,
                note: ready.message.clone(),
            });
        }
        let previous_ready = conditions::find(&previous.conditions, READY);
        if ready.status == "False"
            && ready.reason == "InvalidSpec"
            && previous_ready
                .is_none_or(|p| p.reason != "InvalidSpec" || p.message != ready.message)
        {
            events.push(Event {
                type_: EventType::Warning,
                reason: EventReason::InvalidSpec,
                note: ready.message.clone(),
            });
        }
    }
    if let Some(progressing) = conditions::find(&next.conditions, PROGRESSING)
        && progressing.status == "True"
        && progressing.reason == REASON_UPDATING_IN_PLACE
        && !was(PROGRESSING, REASON_UPDATING_IN_PLACE)
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: EventReason::UpdatingInPlace,
            note: progressing.message.clone(),
        });
    }
    if let Some(degraded) = conditions::find(&next.conditions, DEGRADED)
        && degraded.status == "True"
    {
        let reason = match degraded.reason.as_str() {
            "ZoneNotReady" => Some(EventReason::ZoneNotReady),
            "VMAuthNotReady" => Some(EventReason::VMAuthNotReady),
            "OwnershipConflict" => Some(EventReason::OwnershipConflict),
            "ChildRejected" => Some(EventReason::ChildRejected),
            "ChildWriteFailed" => Some(EventReason::ChildWriteFailed),
            _ => None,
        };
        let same_message = conditions::find(&previous.conditions, DEGRADED)
            .is_some_and(|p| p.message == degraded.message);
        // For these a new message is a new cause (another child, another refusal) and gets an
        // event of its own; a halt's message changes with its details, not its cause.
        let message_is_cause = matches!(
            reason,
            Some(
                EventReason::OwnershipConflict
                    | EventReason::ChildRejected
                    | EventReason::ChildWriteFailed
            )
        );
        if let Some(reason) = reason
            && !(was(DEGRADED, &degraded.reason) && (!message_is_cause || same_message))
        {
            events.push(Event {
                type_: EventType::Warning,
                reason,
                note: degraded.message.clone(),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_lasts_exactly_its_length_once_stored_in_microseconds() {
        let now: Timestamp = "2026-01-01T00:00:33.900Z".parse().expect("timestamp");
        let end = pause_end(now, Duration::from_secs(1));
        // Not rounded up to a whole second: a 1 s pause lasts 1 s, not up to 2.
        assert_eq!(end.to_string(), "2026-01-01T00:00:34.9Z");
        // Below a microsecond, rounded up: storing must not shorten the pause.
        let fine: Timestamp = "2026-01-01T00:00:33.0000001Z".parse().expect("timestamp");
        let fine_end = pause_end(fine, Duration::from_secs(5));
        assert_eq!(fine_end.to_string(), "2026-01-01T00:00:38.000001Z");
        assert_eq!(pause_end(now, Duration::ZERO), now);
        for (start, end) in [(now, end), (fine, fine_end)] {
            let stored = as_stored(&VMDistributedStatus {
                rollout: Some(RolloutStatus {
                    pause_until: Some(MicroTime(end)),
                    ..RolloutStatus::default()
                }),
                ..VMDistributedStatus::default()
            });
            let stored_end = stored
                .rollout
                .and_then(|r| r.pause_until)
                .expect("pauseUntil")
                .0;
            assert_eq!(stored_end, end, "the stored end is the computed one");
            assert!(start.duration_until(stored_end) >= jiff::SignedDuration::from_secs(1));
        }
    }
}
