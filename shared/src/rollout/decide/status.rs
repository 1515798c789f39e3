//! The outcome of one step as the status users read (docs/rollout.md "Status, conditions and
//! events"): per-zone statuses, `updateStatus`, the `Ready`, `Progressing` and `Degraded`
//! conditions, failed child writes, and the events of the change.

use super::events::Announcement;
use super::{Outcome, Progress, REASON_OPERATIONAL, REASON_ZONES_NOT_READY, Step, ZoneView};
use crate::api::{RolloutStatus, UpdateStatus, VMDistributedStatus, ZonePhase, ZoneStatus};
use crate::model::{Action, ChildFailure, Decision, EventReason, EventType};
use crate::rollout::conditions::{self, DEGRADED, Desired, PROGRESSING, READY};
use crate::rollout::membership::LiveRefs;
use crate::versions::{self, PinnedVersions};

impl Step<'_> {
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

    /// The decision of `outcome`, without events, and the conditions it announces: which of
    /// them are news depends on the status the decision is compared with (`decide` folds
    /// transitions).
    pub(super) fn assemble(&self, mut outcome: Outcome) -> Assembled {
        let views = self.zone_views();
        let mut zones = self.zone_statuses(&views);
        for zone in &mut zones {
            if let Some(message) = outcome.zone_messages.get(&zone.name) {
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
        let mut announcements = Vec::new();
        let mut announce = |type_, reason, condition: &Desired| {
            announcements.push(Announcement::new(type_, reason, condition));
        };
        let (update_status, reason, ready, progressing) = if let Some(message) = &outcome.invalid {
            let ready = Desired::new(READY, false, "InvalidSpec", message.clone());
            announce(EventType::Warning, EventReason::InvalidSpec, &ready);
            (
                UpdateStatus::Failed,
                message.clone(),
                ready,
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
            let ready = Desired::new(READY, true, REASON_OPERATIONAL, message.clone());
            announce(EventType::Normal, EventReason::RolloutFinished, &ready);
            (
                UpdateStatus::Operational,
                message,
                ready,
                Desired::new(PROGRESSING, false, "Idle", "nothing to do"),
            )
        } else if let Some((degraded_reason, message)) = &outcome.degraded {
            let progressing = match (&outcome.progress, halted) {
                (Some(progress), false) => progress_condition(progress, &mut announce),
                _ => Desired::new(PROGRESSING, false, "Halted", message.clone()),
            };
            (
                UpdateStatus::Failed,
                message.clone(),
                Desired::new(READY, false, degraded_reason.as_str(), message.clone()),
                progressing,
            )
        } else if let Some(progress) = &outcome.progress {
            (
                UpdateStatus::Expanding,
                progress.message.clone(),
                Desired::new(READY, false, progress.reason, progress.message.clone()),
                progress_condition(progress, &mut announce),
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
                let degraded = Desired::new(DEGRADED, true, r.as_str(), m.clone());
                announce(EventType::Warning, *r, &degraded);
                degraded
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
        Assembled {
            decision: Decision {
                status_changed: status != *self.previous,
                status,
                actions: outcome.actions,
                requeue_after: outcome.requeue,
                events: Vec::new(),
            },
            announcements,
        }
    }
}

/// A step's decision before its events, and the conditions it announces.
pub(super) struct Assembled {
    pub(super) decision: Decision,
    pub(super) announcements: Vec<Announcement>,
}

/// `Progressing=True` for `progress`, announced when the step names an event for it.
fn progress_condition(
    progress: &Progress,
    announce: &mut impl FnMut(EventType, EventReason, &Desired),
) -> Desired {
    let condition = Desired::new(PROGRESSING, true, progress.reason, progress.message.clone());
    if let Some(event) = progress.event {
        announce(EventType::Warning, event, &condition);
    }
    condition
}
