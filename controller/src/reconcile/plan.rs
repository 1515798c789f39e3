//! The pure part of one reconcile step (docs/development.md "observe, decide, act"): given the
//! decision and what this process remembers, which of the status-first protocol's writes to make
//! and when to look again. `step` in the parent module performs what this says; the tables below
//! pin each rule.

use std::time::Duration;

use shared::VMDistributedStatus;
use shared::model::{Action, Decision};

/// How long a change of only the per-zone details of the status (`zones[]`, `readyZones`) may
/// wait after our last status write, to be written with the next change. During a rollout the
/// zone flags change right after each phase's write (the VMAuth drops the zone, the VMAuth
/// routes it again; the applied zone is counted unready by the status that authorizes its
/// apply already); when the phase takes less than this, the next transition carries them, one
/// status write instead of two. Three seconds covers phases of children that become ready
/// within a second or two even on a loaded API server, and `kubectl get` is never more than
/// that behind.
pub const ZONE_DETAILS_DELAY: Duration = Duration::from_secs(3);

/// What to do with the decided status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Nothing changed.
    Unchanged,
    /// Only zone details changed, soon after our last write: wait this long for the next change
    /// to carry them.
    Defer(Duration),
    /// The decision runs a preflight first; the step after it writes the status with the
    /// preflight's outcome (one status write less per generation).
    AfterPreflight,
    /// Write it (with the resourceVersion the decision was made on), then publish the events.
    Write,
}

/// The status write of `decision`, on a CR whose stored status is `stored`, `since_written`
/// after this process last wrote it (if it did).
#[must_use]
pub fn status_write(
    decision: &Decision,
    stored: &VMDistributedStatus,
    since_written: Option<Duration>,
) -> StatusWrite {
    if decision.status_changed && decision.changes_only_zone_details(stored) {
        let wait = since_written
            .and_then(|elapsed| ZONE_DETAILS_DELAY.checked_sub(elapsed))
            .filter(|wait| !wait.is_zero());
        if let Some(wait) = wait {
            return StatusWrite::Defer(wait);
        }
    }
    if decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::Preflight { .. }))
    {
        StatusWrite::AfterPreflight
    } else if decision.status_changed {
        StatusWrite::Write
    } else {
        StatusWrite::Unchanged
    }
}

/// Whether the step stops after its status write and decides again on the stored object: a
/// written transition of `status.rollout` authorizes writes only once stored.
#[must_use]
pub fn decide_again_after_status(write: StatusWrite, rollout_changed: bool) -> bool {
    write == StatusWrite::Write && rollout_changed
}

/// When to reconcile again after a step that executed its actions: `None` waits for a watch
/// event. A step that wrote children looks again within 2 s (the write's own watch event
/// normally comes first); otherwise at the earliest of the decision's requeue, a deferred
/// status write and a held preflight's recheck.
#[must_use]
pub fn requeue_after(wrote_children: bool, waits: &[Option<Duration>]) -> Option<Duration> {
    let after = waits.iter().flatten().min().copied();
    if wrote_children {
        Some(Duration::from_secs(2).min(after.unwrap_or(Duration::MAX)))
    } else {
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::{RolloutStatus, ZoneStatus};

    fn decision(status: VMDistributedStatus, changed: bool, actions: Vec<Action>) -> Decision {
        Decision {
            status,
            status_changed: changed,
            actions,
            requeue_after: None,
            events: Vec::new(),
        }
    }

    fn zone(ready: bool) -> VMDistributedStatus {
        VMDistributedStatus {
            zones: vec![ZoneStatus {
                name: "a".into(),
                ready,
                ..ZoneStatus::default()
            }],
            ..VMDistributedStatus::default()
        }
    }

    #[test]
    fn the_status_write_of_each_kind_of_decision() {
        let stored = zone(true);
        let rollout = VMDistributedStatus {
            rollout: Some(RolloutStatus {
                zone: Some("a".into()),
                ..RolloutStatus::default()
            }),
            ..zone(true)
        };
        let preflight = Action::Preflight {
            generation: 2,
            intents: Vec::new(),
        };
        let s = Duration::from_secs;
        // (decision, since our last status write, expected)
        let table = [
            (
                decision(stored.clone(), false, vec![]),
                None,
                StatusWrite::Unchanged,
            ),
            (
                decision(zone(false), true, vec![]),
                Some(s(1)),
                StatusWrite::Defer(s(2)),
            ),
            (
                decision(zone(false), true, vec![]),
                Some(s(3)),
                StatusWrite::Write,
            ),
            (
                decision(zone(false), true, vec![]),
                None,
                StatusWrite::Write,
            ),
            (
                decision(rollout.clone(), true, vec![]),
                Some(s(1)),
                StatusWrite::Write,
            ),
            (
                decision(rollout.clone(), true, vec![preflight.clone()]),
                None,
                StatusWrite::AfterPreflight,
            ),
            (
                decision(stored.clone(), false, vec![preflight]),
                None,
                StatusWrite::AfterPreflight,
            ),
        ];
        for (i, (decision, since, expected)) in table.into_iter().enumerate() {
            assert_eq!(status_write(&decision, &stored, since), expected, "row {i}");
        }
    }

    #[test]
    fn only_a_written_transition_is_decided_again_before_acting() {
        for (write, rollout_changed, expected) in [
            (StatusWrite::Write, true, true),
            (StatusWrite::Write, false, false),
            (StatusWrite::AfterPreflight, true, false),
            (StatusWrite::Defer(Duration::from_secs(1)), true, false),
            (StatusWrite::Unchanged, true, false),
        ] {
            assert_eq!(
                decide_again_after_status(write, rollout_changed),
                expected,
                "{write:?}, rollout changed: {rollout_changed}"
            );
        }
    }

    #[test]
    fn the_next_look_comes_at_the_earliest_wait() {
        let s = Duration::from_secs;
        for (wrote, waits, expected) in [
            (false, vec![None, None], None),
            (false, vec![Some(s(30)), Some(s(3)), None], Some(s(3))),
            (true, vec![None], Some(s(2))),
            (true, vec![Some(s(1)), Some(s(60))], Some(s(1))),
            (true, vec![Some(s(60))], Some(s(2))),
        ] {
            assert_eq!(requeue_after(wrote, &waits), expected, "{wrote} {waits:?}");
        }
    }
}
