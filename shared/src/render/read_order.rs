//! The order of the VMAuth's `read` members (docs/rollout.md "Read order").
//!
//! `read` uses `first_available`: every read goes to the first member in list order that
//! answers. In spec order, the first zone is both the first one a rollout updates and, right
//! after it is restored, the one serving every read: a new version's regression, or data the
//! zone has not received yet (other agents still hold what was written while it was out), would
//! reach every reader. So while a rollout is in progress, zones it has already updated are listed
//! after those it has not. Only the order changes, never who is a member.

use std::collections::BTreeSet;

use crate::api::Zone;
use crate::children::ChildObject;
use crate::model::{ChildIntent, Observed, ZoneIntents, contains};

/// The zones of `zones` in read order: those not in `last` in spec order, then those in `last`
/// in spec order.
#[must_use]
pub(crate) fn in_read_order<'a>(zones: &'a [Zone], last: &BTreeSet<String>) -> Vec<&'a Zone> {
    let (later, first): (Vec<&Zone>, Vec<&Zone>) =
        zones.iter().partition(|zone| last.contains(&zone.name));
    first.into_iter().chain(later).collect()
}

/// The zones a rollout in progress has already updated: while some existing zone still needs
/// the change, every zone whose children carry their intents. Empty when no rollout is in
/// progress (every existing zone carries its intents), so the order is spec order at rest and
/// returns to it as soon as the last zone is updated.
#[must_use]
pub(crate) fn updated_in_rollout(observed: &Observed, intents: &[ZoneIntents]) -> BTreeSet<String> {
    let mut updated = BTreeSet::new();
    let mut awaiting = false;
    for zone in intents {
        let backend = observed.find(zone.backend.kind, &zone.backend.name);
        let agent = observed.find(zone.agent.kind, &zone.agent.name);
        let (Some(backend), Some(agent)) = (backend, agent) else {
            // A zone that does not exist yet (created, or a missing `ref`) is not being rolled.
            continue;
        };
        if carries(backend, &zone.backend) && carries(agent, &zone.agent) {
            updated.insert(zone.zone.clone());
        } else if !(stampable(backend, &zone.backend) && stampable(agent, &zone.agent)) {
            awaiting = true;
        }
    }
    if awaiting { updated } else { BTreeSet::new() }
}

/// The child carries `intent`: its spec-hash and a live spec containing the intent's fields
/// (docs/rollout.md "Definitions", current).
fn carries(child: &ChildObject, intent: &ChildIntent) -> bool {
    child.spec_hash() == Some(intent.spec_hash.as_str()) && contains(&child.spec, &intent.spec)
}

/// An adopted child without a spec-hash that already contains its intent: it is stamped in
/// place, never rolled.
fn stampable(child: &ChildObject, intent: &ChildIntent) -> bool {
    carries(child, intent) || (child.spec_hash().is_none() && contains(&child.spec, &intent.spec))
}
