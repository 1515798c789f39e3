//! The data exchanged between the pure rollout decision and the controller that executes it.
//!
//! Data flows one way: the controller reads the cluster into an [`Observed`], calls
//! [`crate::rollout::decide`], and executes the returned [`Decision`]. Nothing here performs I/O;
//! the rustdoc of every [`Action`] variant says exactly how the controller must carry it out, because
//! the safety of the rollout (SPEC §5 invariants) depends on executing them that way.
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
//!    (SPEC §5 "Consistency"). Execute the actions in order (consecutive creates and applies touch
//!    different children and may be sent at once); stop at the first failure and requeue.
//! 5. Requeue after [`Decision::requeue_after`] when set, otherwise wait for a watch event. After
//!    executing any action, decide again soon (a watch event will arrive; a short requeue is fine).
//!
//! A rollout transition (a change of `status.rollout`) is never returned together with child
//! writes: the transition is written first, and the writes it authorizes come from a later
//! decision that already sees it in the CR's status. The transition's status already describes
//! the phase it enters, so that later decision normally has no status of its own to write.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::VMDistributedStatus;
use crate::children::{ChildObject, OwnerRef};
use crate::names::ChildKind;
use crate::versions::PinnedVersions;

/// Field manager of every server-side apply and dry-run.
pub const FIELD_MANAGER: &str = "vmdistributed-controller";
/// Finalizer on the `VMDistributed` (the upstream name, so existing objects migrate).
pub const FINALIZER: &str = "apps.victoriametrics.com/finalizer";

/// What the controller observed, as input to the decision.
///
/// `children` holds every `VMCluster`, `VMSingle`, `VMAgent` and `VMAuth` in the CR's namespace
/// that either carries the claim label [`crate::children::LABEL_CLAIM`] (any value: children
/// labelled for another CR are needed to detect ownership conflicts) or whose name the CR
/// resolves for that kind (refs, adoption targets, the VMAuth). Extra objects are harmless; a
/// missing one is read as "does not exist". The reflector cache is fine for deciding; the live
/// re-read of step 4 above protects the writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// The children, decoded leniently.
    #[serde(default)]
    pub children: Vec<ChildObject>,
    /// The result of the last [`Action::Preflight`] this process executed for this CR, if any.
    /// Pass it for as long as it is for the CR's current generation; the decision records a
    /// pass as `status.preflightGeneration` and a rejection as `Ready=False, InvalidSpec`.
    #[serde(default)]
    pub preflight: Option<PreflightOutcome>,
    /// The `metadata.generation` the API server returned for our last create or apply of the
    /// VMAuth, if this process wrote it. A VMAuth phase completes only when the VMAuth reports
    /// `observedGeneration` at least this high, so a lagging cache cannot complete a phase with
    /// a VMAuth state from before our write. `None` after a restart is safe: the live object's
    /// own generation is then the bar.
    #[serde(default)]
    pub vmauth_applied_generation: Option<i64>,
    /// The `metadata.uid` of the VMAuth that [`Observed::vmauth_applied_generation`] belongs
    /// to. The generation is a bar for that object only: one created since (after a rename, or
    /// re-created by someone after a deletion) starts again at generation 1. `None`: the bar
    /// applies to the live VMAuth, whichever it is.
    #[serde(default)]
    pub vmauth_applied_uid: Option<String>,
    /// The versions the controller pins into children whose spec leaves the version to the
    /// VictoriaMetrics operator's default (its `--pinned-*-version` flags; docs/rollout.md
    /// "Pinned versions"). The default pins nothing.
    #[serde(default)]
    pub pinned_versions: PinnedVersions,
    /// Child writes of this process that the API server failed, newest for each child, until
    /// a write of that child succeeds. A failure is reported (`Degraded`, the zone's message,
    /// one event per distinct cause) only while the decision still wants that same write, so
    /// a spec change that no longer needs it clears it at once (docs/rollout.md "Failed child
    /// writes").
    #[serde(default)]
    pub child_failures: Vec<ChildFailure>,
}

impl Observed {
    /// The observed child of this kind and name, if any.
    #[must_use]
    pub fn find(&self, kind: ChildKind, name: &str) -> Option<&ChildObject> {
        self.children
            .iter()
            .find(|c| c.kind == Some(kind) && c.name == name)
    }
}

/// A child write the API server did not accept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildFailure {
    /// Kind of the child.
    #[serde(with = "crate::children::kind_serde")]
    pub kind: ChildKind,
    /// Name of the child.
    pub name: String,
    /// The zone of the child; `None` for the VMAuth.
    #[serde(default)]
    pub zone: Option<String>,
    /// The spec-hash of the intent whose create or apply failed; `None` for other writes.
    #[serde(default)]
    pub spec_hash: Option<String>,
    /// The API server judged the object itself and refused it (schema, admission; as
    /// preflight classifies it): retrying the same write cannot succeed. Otherwise the write
    /// failed for another reason (RBAC, a missing CRD, a server error).
    pub rejected: bool,
    /// What was sent: `create`, `apply`, `delete` or `patch`.
    pub verb: String,
    /// The API server's message.
    pub message: String,
}

impl ChildFailure {
    /// Whether `action` is the write that failed: same child and, for a create or apply, the
    /// same intent.
    #[must_use]
    pub fn concerns(&self, action: &Action) -> bool {
        if action.target() != Some((self.kind, self.name.as_str())) {
            return false;
        }
        match action {
            Action::Create { intent } | Action::Apply { intent } => {
                self.spec_hash.as_deref() == Some(intent.spec_hash.as_str())
            }
            _ => self.spec_hash.is_none(),
        }
    }

    /// `the API server refused the apply of VMAgent demo-b in zone b: <its message>`.
    #[must_use]
    pub fn summary(&self) -> String {
        let child = match &self.zone {
            Some(zone) => format!("{} {} in zone {zone}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        };
        let verb = &self.verb;
        let message = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if self.rejected {
            format!("the API server refused the {verb} of {child}: {message}")
        } else {
            format!("the {verb} of {child} failed: {message}")
        }
    }
}

/// Outcome of a server-side dry-run of every intent (SPEC §3 "Preflight").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreflightOutcome {
    /// The CR generation whose intents were dry-run.
    pub generation: i64,
    /// `None`: every dry-run passed (or failed in a way preflight allows: timeout, 5xx, 403,
    /// 404). `Some(message)`: the API server rejected a child (400, 422, denied by a webhook);
    /// the message names the zone, the child and the API server's message.
    #[serde(default)]
    pub rejection: Option<String>,
    /// With a rejection: for each zone whose backend or agent was refused, what of it was (its
    /// `status.zones[].message`).
    #[serde(default)]
    pub zone_messages: BTreeMap<String, String>,
}

/// The complete desired state of one child, as rendered (SPEC §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildIntent {
    /// Kind of the child.
    #[serde(with = "crate::children::kind_serde")]
    pub kind: ChildKind,
    /// Name of the child.
    pub name: String,
    /// Namespace of the child (the CR's namespace).
    pub namespace: String,
    /// The zone the child belongs to; `None` for the VMAuth.
    #[serde(default)]
    pub zone: Option<String>,
    /// Labels this project sets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations this project sets (spec-hash, created-by where it applies).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The owner reference to the CR, only on created children while `retain` is false.
    #[serde(default)]
    pub owner_references: Vec<OwnerRef>,
    /// The desired spec.
    pub spec: Value,
    /// Stable hash of `spec` (also in `annotations`).
    pub spec_hash: String,
}

impl ChildIntent {
    /// The full object to POST or server-side apply: `apiVersion`, `kind`, `metadata` (name,
    /// namespace, labels, annotations, ownerReferences when any) and `spec`.
    #[must_use]
    pub fn to_object(&self) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), Value::String(self.name.clone()));
        metadata.insert("namespace".into(), Value::String(self.namespace.clone()));
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), json!(self.annotations));
        }
        if !self.owner_references.is_empty() {
            metadata.insert("ownerReferences".into(), json!(self.owner_references));
        }
        json!({
            "apiVersion": ChildKind::API_VERSION,
            "kind": self.kind.kind(),
            "metadata": Value::Object(metadata),
            "spec": self.spec,
        })
    }

    /// The same intent without owner references, as preflight dry-runs it (SPEC §3).
    #[must_use]
    pub fn without_owner_references(&self) -> Self {
        Self {
            owner_references: Vec::new(),
            ..self.clone()
        }
    }
}

/// The intents of one zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneIntents {
    /// Zone name.
    pub zone: String,
    /// The zone's backend (`VMCluster` or `VMSingle`).
    pub backend: ChildIntent,
    /// The zone's `VMAgent`.
    pub agent: ChildIntent,
}

/// Every intent of a CR, zones in spec order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intents {
    /// Per-zone intents, in spec order.
    pub zones: Vec<ZoneIntents>,
    /// The VMAuth intent; `None` with `vmauth.enabled: false`.
    pub vmauth: Option<ChildIntent>,
}

impl Intents {
    /// Every intent, zones first (backend, agent), then the VMAuth.
    #[must_use]
    pub fn all(&self) -> Vec<&ChildIntent> {
        let mut all: Vec<&ChildIntent> = self
            .zones
            .iter()
            .flat_map(|z| [&z.backend, &z.agent])
            .collect();
        all.extend(self.vmauth.iter());
        all
    }
}

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
    /// [`Observed::vmauth_applied_generation`] and [`Observed::vmauth_applied_uid`] (as for
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
    /// `metadata.uid` of the response and pass them as [`Observed::vmauth_applied_generation`]
    /// and [`Observed::vmauth_applied_uid`] to later decisions.
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
    /// each zone taken out, with none). Judge each answer with
    /// [`crate::preflight::classify_error`] (no answer: [`crate::preflight::no_answer`]) and word
    /// them with [`crate::preflight::verdict`], as the webhook does, then decide again with
    /// [`Observed::preflight`] set to the outcome for `generation`. Writes nothing.
    Preflight {
        /// The CR generation these intents were rendered from.
        generation: i64,
        /// The intents this generation writes (already without owner references).
        intents: Vec<ChildIntent>,
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
            Self::Preflight { .. } | Self::AddFinalizer | Self::RemoveFinalizer => None,
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

/// The events the controller emits, on transitions only (SPEC §5).
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
