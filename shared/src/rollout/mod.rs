//! The rollout decision (docs/rollout.md "State machine"): a pure function from (CR, observed
//! children, now) to the desired status and the writes that move the cluster one step closer to
//! it. The data it reads and returns is in [`crate::model`].
//!
//! - [`decide()`]: one step of the state machine (deletion included);
//! - [`membership`]: which zones the VMAuth routes to, derived from the cluster;
//! - [`render_intents`]: every intent, rendered for that membership;
//! - `conditions`, [`patch`], `deletion`: status conditions, metadata patches, finalizer cleanup;
//! - [`invariants`]: the checker of the rollout invariants over observed states, for the tests.

pub(crate) mod conditions;
pub(crate) mod decide;
pub(crate) mod deletion;
mod intents;
pub mod invariants;
pub mod membership;
pub mod patch;

pub use crate::model::{Action, Decision, Event, EventReason, EventType, Observed};
pub use decide::decide;
pub use intents::render_intents;
