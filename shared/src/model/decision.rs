//! The result of one rollout decision: the status to write, the [`Action`]s to execute and the
//! [`Event`]s to emit. How the controller must execute them is in the module docs of
//! [`crate::model`] ("Executing a decision").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ChildIntent;
use crate::api::VMDistributedStatus;
use crate::children::ChildObject;
use crate::names::ChildKind;
use crate::queues::QueueProbe;

/// Field manager of every server-side apply and dry-run.
pub const FIELD_MANAGER: &str = "vmdistributed-controller";
/// Finalizer on the `VMDistributed` (the upstream name, so existing objects migrate).
pub const FINALIZER: &str = "apps.victoriametrics.com/finalizer";

/// Why a metadata patch is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataPatchReason {
    /// Remove this project's labels, annotations and owner reference from a child that is no
    /// longer managed (zone removed, rename leftover, CR deleted, `vmauth.enabled: false`).
    Release,
    /// `retain` turned true: remove the owner reference to the CR.
    RemoveOwnerReference,
    /// `retain` is false and a created child lacks its owner reference: add it.
    AddOwnerReference,
    /// A child this CR created is now a `ref`: remove created-by and the owner reference, so it
    /// is never deleted with the CR.
    ForgetCreation,
}

/// One write the controller performs. Every child write uses the CR's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// POST `intent.to_object()` (the intent carries the created-by annotation and, with
    /// `retain: false`, the owner reference). On 409 AlreadyExists do nothing else: the next
    /// decision sees the existing object and adopts it (an existing object never gets
    /// created-by). Other errors: requeue. For the VMAuth, remember the `metadata.generation`
    /// and `metadata.uid` of the response and pass them as
    /// [`Observed::vmauth_applied_generation`](crate::model::Observed::vmauth_applied_generation) and [`Observed::vmauth_applied_uid`](crate::model::Observed::vmauth_applied_uid) (as for
    /// [`Action::Apply`]): after a `vmauth.name` change the new object starts at generation 1.
    Create {
        /// What to create.
        intent: ChildIntent,
    },
    /// Server-side apply `intent.to_object()` with field manager [`FIELD_MANAGER`] and
    /// `force: true`. Before the first apply to an object whose `managedFields` show another
    /// manager with operation `Update` owning fields under `spec`, move that ownership to
    /// [`FIELD_MANAGER`] (the client-side-apply to server-side-apply upgrade) so later removals
    /// from the intent take effect. For the VMAuth, remember the `metadata.generation` and
    /// `metadata.uid` of the response and pass them as [`Observed::vmauth_applied_generation`](crate::model::Observed::vmauth_applied_generation)
    /// and [`Observed::vmauth_applied_uid`](crate::model::Observed::vmauth_applied_uid) to later decisions.
    Apply {
        /// What to apply.
        intent: ChildIntent,
    },
    /// DELETE the child with preconditions `uid` (never delete another object of the same
    /// name) and `resource_version` when known (never delete it after it changed since the
    /// observation that made it ours to delete: released, claimed by another CR, made a `ref`).
    /// 404 counts as done; 409 means decide again.
    Delete {
        /// Kind of the child.
        #[serde(with = "crate::children::kind_serde")]
        kind: ChildKind,
        /// Name of the child.
        name: String,
        /// UID the object must still have.
        uid: String,
        /// The resourceVersion the decision saw.
        #[serde(default)]
        resource_version: Option<String>,
    },
    /// PATCH the child with `application/json-patch+json` (RFC 6902). The patch starts with a
    /// `test` of `/metadata/uid` (and of the owner reference it removes), so a stale decision
    /// fails with 422 instead of editing the wrong object; on 422/409 requeue and decide again.
    PatchMetadata {
        /// Kind of the child.
        #[serde(with = "crate::children::kind_serde")]
        kind: ChildKind,
        /// Name of the child.
        name: String,
        /// Why.
        reason: MetadataPatchReason,
        /// The JSON Patch document.
        patch: json_patch::Patch,
    },
    /// Server-side dry-run apply (`dryRun=All`, field manager [`FIELD_MANAGER`], `force`,
    /// `fieldValidation=Strict`), in parallel within 3 s, of every shape in which these
    /// intents are written ([`crate::preflight::shapes_for`]: the VMAuth with every zone, with
    /// each zone taken out, with none), with `vmdistributed_runtime::dry_run::apply_all`, which
    /// judges each answer (no answer: [`crate::preflight::no_answer`]); word the findings with
    /// [`crate::preflight::verdict`], as the webhook does, then decide again with
    /// [`Observed::preflight`](crate::model::Observed::preflight) set to the outcome for `generation`. Writes nothing.
    Preflight {
        /// The CR generation these intents were rendered from.
        generation: i64,
        /// The intents this generation writes (already without owner references).
        intents: Vec<ChildIntent>,
    },
    /// Poll the `/metrics` of every ready pod of each probe's agent once (concurrently, each
    /// within [`crate::queues::POD_TIMEOUT`]), fold the pages into the reports with
    /// [`crate::queues::record`] and pass them as [`Observed::queues`](crate::model::Observed::queues) to later decisions
    /// (docs/rollout.md "Persistent-queue drain"), then decide again at once: the poll may have
    /// completed the drain, and a decision made within [`crate::queues::POLL_INTERVAL`] of the
    /// last poll asks for no other. Writes nothing.
    ProbeQueues {
        /// The agents and targets to poll.
        probes: Vec<QueueProbe>,
    },
    /// Add [`FINALIZER`] to the CR (a JSON Patch on `metadata.finalizers` with a
    /// resourceVersion test, or an update). Returned alone, before the first child write.
    AddFinalizer,
    /// Remove [`FINALIZER`] from the CR. Returned alone, once deletion cleanup is complete.
    RemoveFinalizer,
}

impl Action {
    /// The [`Action::Delete`] of an observed `child` of `kind`, guarded by what was observed.
    #[must_use]
    pub fn delete(kind: ChildKind, child: &ChildObject) -> Self {
        Self::Delete {
            kind,
            name: child.name.clone(),
            uid: child.uid.clone(),
            resource_version: child.resource_version.clone(),
        }
    }

    /// Whether the action writes a child (and so needs the live re-read of the CR first).
    #[must_use]
    pub fn is_child_write(&self) -> bool {
        matches!(
            self,
            Self::Create { .. }
                | Self::Apply { .. }
                | Self::Delete { .. }
                | Self::PatchMetadata { .. }
        )
    }

    /// Kind and name of the child this action touches, if it touches one.
    #[must_use]
    pub fn target(&self) -> Option<(ChildKind, &str)> {
        match self {
            Self::Create { intent } | Self::Apply { intent } => {
                Some((intent.kind, intent.name.as_str()))
            }
            Self::Delete { kind, name, .. } | Self::PatchMetadata { kind, name, .. } => {
                Some((*kind, name.as_str()))
            }
            Self::Preflight { .. }
            | Self::ProbeQueues { .. }
            | Self::AddFinalizer
            | Self::RemoveFinalizer => None,
        }
    }
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// The events the controller emits, on transitions only (docs/rollout.md "Status, conditions and events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventReason {
    /// A rollout of one or more zones started.
    RolloutStarted,
    /// A zone finished updating and is back in the load balancer.
    ZoneUpdated,
    /// Every zone is current and ready.
    RolloutFinished,
    /// A zone did not become ready within `readyTimeout`.
    ZoneNotReady,
    /// The VMAuth did not reach the phase's target refs within `readyTimeout`.
    VMAuthNotReady,
    /// The spec is invalid (validation or preflight).
    InvalidSpec,
    /// A child is claimed by another `VMDistributed`.
    OwnershipConflict,
    /// The zone under update is the only zone serving a target, so it stays in it while it is
    /// updated (docs/rollout.md "Serving guard").
    UpdatingInPlace,
    /// The API server refused a child write (schema, admission policy or webhook).
    ChildRejected,
    /// A child write failed for another reason (RBAC, a missing CRD, a server error).
    ChildWriteFailed,
    /// The vmagents' persistent queues did not drain within `drainTimeout`.
    QueueNotDrained,
}

impl EventReason {
    /// The reason string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolloutStarted => "RolloutStarted",
            Self::ZoneUpdated => "ZoneUpdated",
            Self::RolloutFinished => "RolloutFinished",
            Self::ZoneNotReady => "ZoneNotReady",
            Self::VMAuthNotReady => "VMAuthNotReady",
            Self::InvalidSpec => "InvalidSpec",
            Self::OwnershipConflict => "OwnershipConflict",
            Self::UpdatingInPlace => "UpdatingInPlace",
            Self::ChildRejected => "ChildRejected",
            Self::ChildWriteFailed => "ChildWriteFailed",
            Self::QueueNotDrained => "QueueNotDrained",
        }
    }
}

/// An event to emit on the CR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// Reason.
    pub reason: EventReason,
    /// Human-readable note (the controller truncates it to 1 KiB).
    pub note: String,
}

/// The result of one decision step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The desired status of the CR.
    pub status: VMDistributedStatus,
    /// Whether `status` differs from the CR's current status (write it only then).
    pub status_changed: bool,
    /// Writes to perform, in order, after the status write (see the module docs).
    pub actions: Vec<Action>,
    /// When to decide again without a watch event (timeouts, pauses, waiting for deletion).
    pub requeue_after: Option<Duration>,
    /// Events to emit after the status write.
    pub events: Vec<Event>,
}

impl Decision {
    /// Whether the new status differs from `previous` only in the per-zone details
    /// (`zones[]`, `readyZones`): no transition, no condition, no event. Such a change may wait
    /// a moment to be written together with the next one; it authorizes nothing.
    #[must_use]
    pub fn changes_only_zone_details(&self, previous: &VMDistributedStatus) -> bool {
        let mut next = self.status.clone();
        next.zones.clone_from(&previous.zones);
        next.ready_zones.clone_from(&previous.ready_zones);
        self.events.is_empty() && next == *previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::{RolloutStatus, UpdateStatus, ZoneStatus};

    fn decision(status: VMDistributedStatus) -> Decision {
        Decision {
            status,
            status_changed: true,
            actions: Vec::new(),
            requeue_after: None,
            events: Vec::new(),
        }
    }

    fn status() -> VMDistributedStatus {
        VMDistributedStatus {
            update_status: Some(UpdateStatus::Expanding),
            ready_zones: Some("2/2".into()),
            zones: vec![ZoneStatus {
                name: "a".into(),
                ready: true,
                in_read: true,
                ..ZoneStatus::default()
            }],
            ..VMDistributedStatus::default()
        }
    }

    #[test]
    fn zone_flags_and_ready_count_are_details_everything_else_is_not() {
        let previous = status();
        let mut next = status();
        next.zones[0].in_read = false;
        next.zones[0].ready = false;
        next.ready_zones = Some("1/2".into());
        assert!(decision(next.clone()).changes_only_zone_details(&previous));

        let mut transition = next.clone();
        transition.rollout = Some(RolloutStatus {
            zone: Some("a".into()),
            ..RolloutStatus::default()
        });
        assert!(!decision(transition).changes_only_zone_details(&previous));

        let mut state = next.clone();
        state.update_status = Some(UpdateStatus::Operational);
        assert!(!decision(state).changes_only_zone_details(&previous));

        let mut with_event = decision(next);
        with_event.events.push(Event {
            type_: EventType::Normal,
            reason: EventReason::ZoneUpdated,
            note: String::new(),
        });
        assert!(!with_event.changes_only_zone_details(&previous));
    }
}
