//! The rollout decision (SPEC §5): a pure function from (CR, observed children, now) to the
//! desired status and the writes that move the cluster one step closer to it.
//!
//! - [`model`]: the types exchanged with the controller, and how it must execute them;
//! - [`decide()`]: one step of the state machine (deletion included);
//! - [`membership`]: which zones the VMAuth routes to, derived from the cluster;
//! - [`compare`]: the subset comparison behind "current";
//! - [`conditions`], [`patch`], [`deletion`]: status conditions, metadata patches, finalizer cleanup;
//! - [`invariants`]: the checker of the rollout invariants over observed states, for the tests.

pub mod compare;
pub mod conditions;
pub mod decide;
pub mod deletion;
pub mod invariants;
pub mod membership;
pub mod model;
pub mod patch;

pub use decide::decide;
pub use model::{Action, Decision, Event, EventReason, EventType, Observed};
