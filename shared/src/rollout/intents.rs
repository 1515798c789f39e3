//! Every intent of a CR as the rollout writes it: `render`'s output for the VMAuth membership
//! derived here. The derivation ([`membership::derive`]) needs the URLs `render` computes, so it
//! sits above `render`, and this is where the two meet.

use crate::api::VMDistributed;
use crate::model::{Intents, Observed};
use crate::render::render_all;
use crate::rollout::membership;

/// Every intent of `cr` given the observed children: zones in spec order, then the VMAuth with
/// the membership docs/rollout.md "Definitions" derives from the live VMAuth, readiness and
/// `status.rollout`, and the zones a rollout in progress has updated listed last in `read`
/// (`crate::render::read_order`).
#[must_use]
pub fn render_intents(cr: &VMDistributed, observed: &Observed) -> Intents {
    let membership = membership::derive(cr, observed, membership::zone_under_update(cr));
    render_all(cr, observed, &membership)
}
