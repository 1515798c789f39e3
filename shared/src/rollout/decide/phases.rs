//! The zone under update, one phase step per decision (docs/rollout.md "State machine",
//! "Serving guard", "Timeouts and halts"): `Excluding` takes it out of the targets another zone
//! serves, `Applying` writes its backend and agent, `Restoring` puts it back; a phase that waits
//! past `readyTimeout`, or for a child reported `failed`, halts the rollout.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::drain::Drain;
use super::{
    Outcome, Progress, REASON_ROLLING_OUT, REASON_UPDATING_IN_PLACE,
    REASON_WAITING_FOR_HEALTHY_ZONES, Step, ZoneView, add, child_current, pause_end, until,
};
use crate::api::{RolloutStatus, TrafficMode, ZonePhase};
use crate::children::ChildObject;
use crate::model::{Action, EventReason, Membership, Target};
use crate::names::{ChildKind, backend_kind, vmauth_name};
use crate::render::may_create;
use crate::rollout::membership::{self, LiveRefs};

impl Step<'_> {
    /// One phase step for the zone under update.
    pub(super) fn advance(&self, zone_name: &str, views: &[ZoneView<'_>], outcome: &mut Outcome) {
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
        let deadline = add(since, self.settings.ready_timeout);
        let expired = self.now >= deadline;
        let halt_reason = match phase {
            ZonePhase::Applying => EventReason::ZoneNotReady,
            ZonePhase::Excluding | ZonePhase::Restoring => EventReason::VMAuthNotReady,
        };
        outcome.progressing(REASON_ROLLING_OUT, format!("zone {zone_name}: {phase:?}"));
        let waiting = match phase {
            ZonePhase::Excluding => self.excluding(view, views, outcome),
            ZonePhase::Applying => self.applying(view, outcome),
            ZonePhase::Restoring => self.restoring(view, outcome),
        };
        if !waiting || outcome.draining {
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
                        crate::duration::format_go_duration(self.settings.ready_timeout)
                    );
                    outcome.degraded = Some((EventReason::ZoneNotReady, message));
                    return;
                }
                (ZonePhase::Applying, _) => format!(
                    "zone {zone_name} did not become ready within readyTimeout ({}){}; the rollout is halted until it is ready or the spec changes",
                    crate::duration::format_go_duration(self.settings.ready_timeout),
                    not_ready_details([view.backend, view.agent])
                ),
                _ => format!(
                    "VMAuth {} did not reach the targets of phase {phase:?} for zone {zone_name} within readyTimeout ({}){}; the rollout is halted",
                    vmauth_name(self.cr),
                    crate::duration::format_go_duration(self.settings.ready_timeout),
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
        outcome.progress = Some(Progress {
            reason: REASON_UPDATING_IN_PLACE,
            event: Some(EventReason::UpdatingInPlace),
            message: format!(
                "zone {}: {phase:?}; updated in place for {targets}: no other zone serves {pronoun}, so it stays in the load balancer while it is updated",
                view.zone.name
            ),
        });
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
            outcome.progressing(
                REASON_WAITING_FOR_HEALTHY_ZONES,
                format!(
                    "zone {} waits before leaving the load balancer: {} not ready",
                    view.zone.name,
                    unhealthy.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
            outcome.waiting_for = Some(format!(
                "zone {} has not left the load balancer: it waits for {names} to become ready, which did not happen",
                view.zone.name
            ));
            return true;
        }
        self.note_in_place(view, ZonePhase::Excluding, outcome);
        match self.drain(view, ZonePhase::Excluding, outcome) {
            Drain::Clear => {}
            Drain::Transitioned => return false,
            Drain::Waiting => return true,
        }
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
            // The backend is written at once; the agent once the queues its new list drops
            // or moves are empty.
            let agent_held = match self.drain(view, ZonePhase::Applying, outcome) {
                Drain::Clear => false,
                Drain::Transitioned => return false,
                Drain::Waiting => true,
            };
            let backend = backend_kind(self.cr);
            for (kind, child, intent) in [
                (backend, view.backend, &view.intents.backend),
                (ChildKind::VMAgent, view.agent, &view.intents.agent),
            ] {
                if child_current(child, intent) || (agent_held && kind == ChildKind::VMAgent) {
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
            pause_until: Some(MicroTime(pause_end(self.now, self.settings.update_pause))),
            drain: None,
        };
        if self.intents.vmauth.is_none() {
            self.transition(done, outcome);
            return false;
        }
        match self.drain(view, ZonePhase::Restoring, outcome) {
            Drain::Clear => {}
            Drain::Transitioned => return false,
            Drain::Waiting => return true,
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
