//! The data the layers of this crate exchange, and nothing that computes a decision: the lowest
//! layer, which `render` and `rollout` (and the webhook and the controller) import, and which
//! imports neither (docs/development.md "Layers of `shared`").
//!
//! - [`Observed`]: what the controller read of the cluster;
//! - [`ChildIntent`], [`ZoneIntents`], [`Intents`]: the desired state `render` produces;
//! - [`Membership`], [`Target`]: which zones the VMAuth routes to, as `render` writes it and
//!   `rollout` derives it;
//! - [`contains`]: what "current" means (a live spec contains its intent);
//! - [`Decision`], [`Action`], [`Event`]: what `rollout::decide` returns.
//!
//! Data flows one way: the controller reads the cluster into an [`Observed`], calls
//! [`crate::rollout::decide()`], and executes the returned [`Decision`]. Nothing here performs I/O;
//! the rustdoc of every [`Action`] variant says exactly how the controller must carry it out, because
//! the safety of the rollout (docs/rollout.md "Invariants") depends on executing them that way.
//!
//! # Executing a decision (the controller's loop)
//! 1. Build [`Observed`] from the children (see its docs), then call `decide(cr, observed, now)`.
//! 2. If [`Decision::status_changed`], write [`Decision::status`] to the status subresource with
//!    the CR's `resourceVersion` as a precondition (a replace, or a merge patch that carries
//!    `metadata.resourceVersion`). On 409 Conflict: requeue immediately and decide again; do not
//!    execute the actions and do not emit the events.
//! 3. Emit [`Decision::events`] (only after the status write succeeded, or when there was none to
//!    write), notes truncated to 1 KiB.
//! 4. If [`Decision::actions`] is not empty and contains a child write ([`Action::is_child_write`]),
//!    read the CR live (not from the cache) and execute the actions only if its
//!    `status.rollout` equals `decision.status.rollout` (an empty `rollout: {}` counts as
//!    absent) and it still has the same `uid`. The API server's answer to a write or GET made
//!    by the same reconcile (the status write that stored the transition) is such a read; a
//!    cached CR needs a GET;
//!    otherwise requeue. This is how a deposed leader or a lagging cache is kept from writing
//!    (docs/rollout.md "Crash safety"). Execute the actions in order (consecutive creates and applies touch
//!    different children and may be sent at once); stop at the first failure and requeue.
//! 5. Requeue after [`Decision::requeue_after`] when set, otherwise wait for a watch event. After
//!    executing any action, decide again soon (a watch event will arrive; a short requeue is fine).
//!
//! A rollout transition (a change of `status.rollout`) is never returned together with child
//! writes: the transition is written first, and the writes it authorizes come from a later
//! decision that already sees it in the CR's status. The transition's status already describes
//! the phase it enters, so that later decision normally has no status of its own to write.

mod compare;
mod decision;
mod intent;
mod membership;
mod observed;

pub use compare::contains;
pub use decision::{
    Action, Decision, Event, EventReason, EventType, FIELD_MANAGER, FINALIZER, MetadataPatchReason,
};
pub use intent::{ChildIntent, Intents, ZoneIntents};
pub use membership::{Membership, Target};
pub use observed::{ChildFailure, Observed, PreflightOutcome};
