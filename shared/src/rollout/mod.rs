//! The rollout decision (SPEC §5): a pure function from (CR, observed children, now) to the
//! desired status and the writes that move the cluster one step closer to it.

pub mod compare;
pub mod membership;
pub mod model;

pub use model::{Action, Decision, Event, EventReason, EventType, Observed};
