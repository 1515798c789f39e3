//! `metav1.Condition` bookkeeping: `lastTransitionTime` changes only when a condition's status
//! changes, so status writes stay idempotent and kstatus-based tools see stable conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type `Ready`.
pub const READY: &str = "Ready";
/// Condition type `Progressing`.
pub(crate) const PROGRESSING: &str = "Progressing";
/// Condition type `Degraded`.
pub(crate) const DEGRADED: &str = "Degraded";

/// A desired condition, before its transition time is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason (metav1 requires one).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    /// A condition of `type_`.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Whether `stored` is this condition with the same status and reason (its message and
    /// times aside).
    #[must_use]
    pub(crate) fn is_stored_as(&self, stored: &Condition) -> bool {
        stored.type_ == self.type_
            && stored.status == status_text(self.status)
            && stored.reason == self.reason
    }
}

fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The conditions to store: `desired` in order, each keeping the previous
/// `lastTransitionTime` when its status did not change, `now` otherwise.
#[must_use]
pub(crate) fn settle(
    previous: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let status = status_text(want.status);
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}
