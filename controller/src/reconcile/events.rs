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
    use super::*;

    #[test]
    fn notes_are_cut_to_one_kibibyte_on_a_character_boundary() {
        assert_eq!(truncate_note("short"), "short");
        let long = "é".repeat(1000);
        let cut = truncate_note(&long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with('…'));
    }
}
