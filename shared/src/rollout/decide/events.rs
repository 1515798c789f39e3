//! The events of a step, on transitions only, never one per retry (docs/rollout.md "Status,
//! conditions and events"): a zone's update started or finished, and the conditions the step
//! announces when they appear (finished, invalid, updated in place, halted, conflict, failed
//! writes).
//!
//! The step names each announced condition's event itself ([`Announcement`]); the previous
//! status only tells whether users have heard of it already.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{VMDistributedStatus, ZonePhase};
use crate::model::{Event, EventReason, EventType};
use crate::rollout::conditions::Desired;

/// A condition a step writes, with the event its appearance gets.
#[derive(Clone, Debug)]
pub(super) struct Announcement {
    pub(super) type_: EventType,
    pub(super) reason: EventReason,
    pub(super) condition: Desired,
}

impl Announcement {
    pub(super) fn new(type_: EventType, reason: EventReason, condition: &Desired) -> Self {
        Self {
            type_,
            reason,
            condition: condition.clone(),
        }
    }

    /// Whether `previous` already showed this: the same condition with the same status and
    /// reason and, when a new message is a new cause, the same message.
    fn already_shown(&self, previous: &[Condition]) -> bool {
        previous.iter().any(|shown| {
            self.condition.is_stored_as(shown)
                && (!new_message_is_new_cause(self.reason)
                    || shown.message == self.condition.message)
        })
    }
}

/// For these a new message is a new cause (another child, another refusal, another error in
/// the spec) and gets an event of its own; a halt's message changes with its details (elapsed
/// time, bytes left), not its cause.
fn new_message_is_new_cause(reason: EventReason) -> bool {
    matches!(
        reason,
        EventReason::InvalidSpec
            | EventReason::OwnershipConflict
            | EventReason::ChildRejected
            | EventReason::ChildWriteFailed
    )
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

/// The events of the `announcements` that `previous` (the stored conditions) did not show yet.
pub(super) fn condition_events(
    previous: &[Condition],
    announcements: &[Announcement],
) -> Vec<Event> {
    announcements
        .iter()
        .filter(|announcement| !announcement.already_shown(previous))
        .map(|announcement| Event {
            type_: announcement.type_,
            reason: announcement.reason,
            note: announcement.condition.message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::rollout::conditions::{self, DEGRADED, READY};

    fn stored(desired: &Desired) -> Vec<Condition> {
        conditions::settle(
            &[],
            std::slice::from_ref(desired),
            Some(1),
            Timestamp::UNIX_EPOCH,
        )
    }

    fn announced(reason: EventReason, condition: &Desired) -> Vec<Announcement> {
        vec![Announcement::new(EventType::Warning, reason, condition)]
    }

    #[test]
    fn an_announced_condition_gets_its_event_once() {
        let halt = Desired::new(DEGRADED, true, "ZoneNotReady", "zone a: 5m0s");
        let events = condition_events(&[], &announced(EventReason::ZoneNotReady, &halt));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, EventReason::ZoneNotReady);
        assert_eq!(events[0].note, "zone a: 5m0s");
        // Shown already: the halt's details change, its cause does not.
        let later = Desired::new(DEGRADED, true, "ZoneNotReady", "zone a: 6m0s");
        let shown = stored(&halt);
        assert!(condition_events(&shown, &announced(EventReason::ZoneNotReady, &later)).is_empty());
        // Another reason, or the same reason after the condition turned False, is news.
        let queue = Desired::new(DEGRADED, true, "QueueNotDrained", "1.0 MiB");
        assert_eq!(
            condition_events(&shown, &announced(EventReason::QueueNotDrained, &queue)).len(),
            1
        );
        let cleared = stored(&Desired::new(DEGRADED, false, "ZoneNotReady", ""));
        assert_eq!(
            condition_events(&cleared, &announced(EventReason::ZoneNotReady, &halt)).len(),
            1
        );
    }

    #[test]
    fn a_new_message_is_a_new_event_only_where_it_names_a_new_cause() {
        let first = Desired::new(READY, false, "InvalidSpec", "spec.zones[0].name: required");
        let second = Desired::new(READY, false, "InvalidSpec", "spec.zones[1].name: required");
        let shown = stored(&first);
        assert!(condition_events(&shown, &announced(EventReason::InvalidSpec, &first)).is_empty());
        assert_eq!(
            condition_events(&shown, &announced(EventReason::InvalidSpec, &second)).len(),
            1
        );
        let conflict = |m: &str| Desired::new(DEGRADED, true, "OwnershipConflict", m);
        let shown = stored(&conflict("VMAgent a is claimed by VMDistributed x"));
        assert_eq!(
            condition_events(
                &shown,
                &announced(
                    EventReason::OwnershipConflict,
                    &conflict("VMAgent b is claimed by VMDistributed x")
                )
            )
            .len(),
            1
        );
    }
}
