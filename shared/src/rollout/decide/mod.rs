//! The rollout state machine (docs/rollout.md "State machine"), one step per call.
//!
//! `decide` reads only its inputs: the CR (spec, metadata, `status.rollout`), the observed
//! children and the clock. All rollout state lives in the cluster, so any replica can resume any
//! rollout after a crash at any instant by calling it again.
//!
//! A CR with a `deletionTimestamp` is handed to [`crate::rollout::deletion::decide_deletion`], so
//! the controller calls `decide` in every case.
//!
//! This module holds the entry point, the `Step` of one decision and its order of concerns
//! (`run`); each concern is a file of its own, so the order reads in one place:
//! - `housekeeping`: writes allowed in any phase (creation, stamping, owner references);
//! - `phases`: the zone under update moving through `Excluding`, `Applying`, `Restoring`;
//! - `drain`: the wait for the agents' persistent queues within a phase;
//! - `removal`: VMAuths handed back and removed zones' children released or deleted;
//! - `status`: the outcome of a step turned into the status and its conditions;
//! - `events`: the events of a status change.

mod drain;
mod events;
mod housekeeping;
mod phases;
mod removal;
mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use crate::api::{
    RolloutStatus, UpdateStatus, VMDistributed, VMDistributedStatus, Zone, ZonePhase,
};
use crate::children::ChildObject;
use crate::defaults::{Settings, apply_defaults};
use crate::model::{
    Action, ChildIntent, Decision, EventReason, Intents, Observed, ZoneIntents, contains,
};
use crate::names::{ChildKind, backend_kind, vmauth_name};
use crate::render::{may_create, vmauth_enabled};
use crate::rollout::deletion::{self, DELETION_POLL, has_finalizer};
use crate::rollout::render_intents;
use crate::validation::validate_stored;

use events::{condition_events, rollout_events};
use removal::Removal;
use status::Assembled;

/// Condition reason while children are being created, rolled out or removed.
pub(crate) const REASON_ROLLING_OUT: &str = "RollingOut";
/// Progressing reason: an exclusion waits for the other members of a target to be ready.
pub(crate) const REASON_WAITING_FOR_HEALTHY_ZONES: &str = "WaitingForHealthyZones";
/// Progressing reason: the zone under update is the only zone serving a target and stays in it
/// (docs/rollout.md "Serving guard").
pub(crate) const REASON_UPDATING_IN_PLACE: &str = "UpdatingInPlace";
/// Progressing reason: waiting `updatePause` before the next zone.
pub(crate) const REASON_UPDATE_PAUSE: &str = "UpdatePause";
/// Progressing reason: removed zones' children are being released or deleted.
pub(crate) const REASON_REMOVING: &str = "RemovingChildren";
/// Ready=False reason when nothing can be written but some zone is not ready or missing.
pub(crate) const REASON_ZONES_NOT_READY: &str = "ZonesNotReady";
/// Ready=True reason.
pub(crate) const REASON_OPERATIONAL: &str = "Operational";

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
    /// Progressing=True: what the step is doing.
    progress: Option<Progress>,
    /// Degraded=True reason and message.
    degraded: Option<(EventReason, String)>,
    /// What an exclusion waits for, for the message of its timeout.
    waiting_for: Option<String>,
    invalid: Option<String>,
    /// Per zone, a message for its status (what preflight refused of it, an agent the drain
    /// finds no pod of).
    zone_messages: BTreeMap<String, String>,
    /// The phase waits for the agents' queues; the drain handles its own timeout.
    draining: bool,
    paused: bool,
    ready: bool,
    preflight_generation: Option<i64>,
}

/// What a step is doing, as `Progressing=True` says it.
struct Progress {
    reason: &'static str,
    message: String,
    /// The event that announces it when the condition turns to this reason.
    event: Option<EventReason>,
}

impl Outcome {
    /// The step is doing `message`, under `reason`, with no event of its own.
    fn progressing(&mut self, reason: &'static str, message: impl Into<String>) {
        self.progress = Some(Progress {
            reason,
            message: message.into(),
            event: None,
        });
    }

    /// The step hands back or removes children (`removal`): their writes, and a poll while
    /// it waits for them to go.
    fn removing(&mut self, removal: Removal) {
        self.actions.extend(removal.actions);
        if removal.waiting {
            self.requeue_at_most(DELETION_POLL);
        }
        self.progressing(REASON_REMOVING, removal.message);
    }

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

/// One step of the state machine (docs/rollout.md "State machine") for `cr` (as stored; defaults are applied here, never
/// changing a user value) given the `observed` children at time `now`.
///
/// See [`crate::model`] for how the controller executes the result.
#[must_use]
pub fn decide(cr: &VMDistributed, observed: &Observed, now: Timestamp) -> Decision {
    if cr.metadata.deletion_timestamp.is_some() {
        return deletion::decide_deletion(cr, observed);
    }
    let step = decide_once(cr, observed, now);
    describe_transition(cr, observed, now, step)
}

fn decide_once(cr: &VMDistributed, observed: &Observed, now: Timestamp) -> Assembled {
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
///
/// The events are those of the status finally written, compared with the stored one: each
/// folded transition's rollout events, and the conditions the last step announces that the
/// stored status did not show.
fn describe_transition(
    cr: &VMDistributed,
    observed: &Observed,
    now: Timestamp,
    step: Assembled,
) -> Decision {
    /// Transitions folded into one write at most; the state machine never needs more.
    const MAX_FOLDED: usize = 3;
    let previous = cr.status.clone().unwrap_or_default();
    let Assembled {
        decision,
        mut announcements,
    } = step;
    let mut status = decision.status.clone();
    let mut events = rollout_events(&previous, &status);
    if status.rollout != previous.rollout {
        for _ in 0..MAX_FOLDED {
            let stored_status = as_stored(&status);
            let mut stored = cr.clone();
            stored.status = Some(stored_status.clone());
            let entered = decide_once(&stored, observed, now);
            let settled = entered.decision.status.rollout == stored_status.rollout;
            if !settled && !entered.decision.actions.is_empty() {
                break;
            }
            if !settled {
                events.extend(rollout_events(&stored_status, &entered.decision.status));
            }
            status = entered.decision.status;
            announcements = entered.announcements;
            if settled {
                break;
            }
        }
    }
    events.extend(condition_events(&previous.conditions, &announcements));
    Decision {
        status_changed: status != previous,
        events,
        status,
        ..decision
    }
}

/// `status` as the API server stores it: timestamps keep whole seconds only.
fn as_stored(status: &VMDistributedStatus) -> VMDistributedStatus {
    serde_json::to_value(status)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|_| status.clone())
}

/// One decision: its inputs and the intents rendered from them, shared by every concern.
struct Step<'a> {
    cr: &'a VMDistributed,
    observed: &'a Observed,
    now: Timestamp,
    previous: &'a VMDistributedStatus,
    generation: i64,
    intents: Intents,
    settings: Settings,
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
            settings: Settings::of(cr),
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
        outcome.progressing(REASON_ROLLING_OUT, "rollout state changed");
    }

    fn enter(&self, zone: &str, phase: ZonePhase) -> RolloutStatus {
        RolloutStatus {
            zone: Some(zone.to_owned()),
            phase: Some(phase),
            phase_since: Some(MicroTime(self.now)),
            pause_until: None,
            drain: None,
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
            outcome.progressing(REASON_ROLLING_OUT, "adding finalizer");
            return outcome;
        }
        // 2. Preflight once per generation, before any child write.
        if outcome.preflight_generation != Some(self.generation) {
            match &self.observed.preflight {
                Some(result) if result.generation == self.generation => {
                    if let Some(rejection) = &result.rejection {
                        // Worded by `preflight::verdict`, each line already says `preflight:`.
                        outcome.invalid = Some(rejection.clone());
                        outcome.zone_messages = result.zone_messages.clone();
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
                        outcome.progressing(REASON_ROLLING_OUT, "preflight dry-run");
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
            outcome.removing(handback);
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
            outcome.progressing(
                REASON_UPDATE_PAUSE,
                format!("next zone starts at {pause_until}"),
            );
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
            outcome.removing(removal);
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
            outcome.progressing(REASON_ROLLING_OUT, "creating or updating children");
        }
        outcome
    }
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
