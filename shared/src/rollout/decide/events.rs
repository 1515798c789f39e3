//! The events of a status change, on transitions only, never one per retry (docs/rollout.md
//! "Status, conditions and events"): a zone's update started or finished, and the conditions
//! that turned (finished, invalid, updated in place, halted, conflict, failed writes).

use super::REASON_UPDATING_IN_PLACE;
use crate::api::{VMDistributedStatus, ZonePhase};
use crate::model::{Event, EventReason, EventType};
use crate::rollout::conditions::{self, DEGRADED, PROGRESSING, READY};

/// Events for the transitions between `previous` and `next`, never one per retry.
pub(super) fn events(previous: &VMDistributedStatus, next: &VMDistributedStatus) -> Vec<Event> {
    let mut events = rollout_events(previous, next);
    events.extend(condition_events(previous, next));
    events
}

/// Events of a change of `status.rollout`: a zone's update started or finished.
pub(super) fn rollout_events(
    previous: &VMDistributedStatus,
    next: &VMDistributedStatus,
) -> Vec<Event> {
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
pub(super) fn condition_events(
    previous: &VMDistributedStatus,
    next: &VMDistributedStatus,
) -> Vec<Event> {
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
        // The decision writes `Degraded` only with an event reason (`Outcome::degraded`), so
        // every halt and failure it reports gets its event.
        let reason = EventReason::from_reason(&degraded.reason);
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
