//! The decision's events as Kubernetes Events: published in the background once the status
//! that records their transition is stored, with notes cut to the API's size limit.

use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder};
use shared::VMDistributed;
use shared::model::{Event, EventReason, EventType};
use tracing::Instrument;

use super::context::Context;
use super::key;

/// Maximum size of an event note.
const NOTE_LIMIT: usize = 1024;

/// Record the events' metrics and publish them, in order, in the background: the status write
/// that records their transition is already stored, and a rollout step should not wait for
/// event POSTs (they are not part of the state machine).
pub(super) fn publish_events(ctx: &Context, cr: &VMDistributed, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let reference = cr.object_ref(&());
    let cr_key = key(cr);
    let mut kube_events = Vec::with_capacity(events.len());
    for event in events {
        match event.reason {
            EventReason::RolloutStarted => ctx.metrics.rollout_started(&cr_key),
            EventReason::RolloutFinished => ctx.metrics.rollout_finished(&cr_key),
            _ => {}
        }
        tracing::info!(reason = event.reason.as_str(), note = %event.note, "event");
        kube_events.push(KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.as_str().to_owned(),
            note: Some(truncate_note(&event.note)),
            action: "Reconcile".to_owned(),
            secondary: None,
        });
    }
    let sink = ctx.events.clone();
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            for kube_event in kube_events {
                if !sink.gate.may_act() {
                    tracing::debug!(reason = %kube_event.reason, "not acting: event not published");
                    continue;
                }
                // A fresh recorder per event: kube's recorder folds events with the same reason
                // into one series and keeps the first note, but every event here is a distinct
                // transition (ZoneUpdated for each zone) and must show its own note.
                let recorder = Recorder::new(sink.client.clone(), sink.reporter.clone());
                if let Err(err) = recorder.publish(&kube_event, &reference).await {
                    tracing::warn!(error = %err, reason = %kube_event.reason, "cannot publish event");
                }
            }
        }
        .instrument(span),
    );
}

/// `note` cut to at most 1 KiB on a character boundary.
#[must_use]
pub fn truncate_note(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_owned();
    }
    const ELLIPSIS: &str = "…";
    let mut end = NOTE_LIMIT - ELLIPSIS.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &note[..end])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing;
    use super::*;
    use crate::leader::LeaderGate;

    fn transitions() -> Vec<Event> {
        ["a", "b"]
            .map(|zone| Event {
                type_: EventType::Normal,
                reason: EventReason::ZoneUpdated,
                note: format!("zone {zone} is updated and back in the load balancer"),
            })
            .to_vec()
    }

    /// The requests seen once `count` have arrived, or after 2 s.
    async fn requests_after(seen: &testing::Requests, count: usize) -> Vec<String> {
        for _ in 0..200 {
            if seen.lock().expect("requests").len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.lock().expect("requests").clone()
    }

    #[tokio::test]
    async fn a_replica_that_may_act_publishes_each_event() {
        let (ctx, seen) = testing::context(LeaderGate::always());
        publish_events(&ctx, &testing::cr("rollout", "uid-1"), &transitions());
        let requests = requests_after(&seen, 2).await;
        assert_eq!(
            requests, ["POST /apis/events.k8s.io/v1/namespaces/ns/events"; 2],
            "one POST per event, none folded into a series"
        );
    }

    #[tokio::test]
    async fn a_replica_that_may_not_act_publishes_no_event() {
        // The events of a decision made while leading are published after it, in the
        // background; a replica that lost the lease meanwhile must not publish them (the new
        // leader reports the same transition).
        let (ctx, seen) = testing::context(LeaderGate::closed());
        publish_events(&ctx, &testing::cr("rollout", "uid-1"), &transitions());
        // As long as the publishing replica above takes to post both.
        let requests = requests_after(&seen, 2).await;
        assert!(requests.is_empty(), "{requests:?}");
    }

    #[test]
    fn notes_are_cut_to_one_kibibyte_on_a_character_boundary() {
        assert_eq!(truncate_note("short"), "short");
        let long = "é".repeat(1000);
        let cut = truncate_note(&long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with('…'));
    }
}
