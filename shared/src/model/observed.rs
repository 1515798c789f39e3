//! What the controller observed of the cluster: the decision's only input besides the CR and the
//! clock. [`Observed`] carries the children and what this process remembers of its own writes
//! (their failures, the VMAuth generation it applied, the last preflight outcome).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Action;
use crate::children::ChildObject;
use crate::names::ChildKind;
use crate::queues::QueueReport;
use crate::versions::PinnedVersions;

/// What the controller observed, as input to the decision.
///
/// `children` holds every `VMCluster`, `VMSingle`, `VMAgent` and `VMAuth` in the CR's namespace
/// that either carries the claim label [`crate::children::LABEL_CLAIM`] (any value: children
/// labelled for another CR are needed to detect ownership conflicts) or whose name the CR
/// resolves for that kind (refs, adoption targets, the VMAuth). Extra objects are harmless; a
/// missing one is read as "does not exist". The reflector cache is fine for deciding; the live
/// re-read of step 4 of [`crate::model`] ("Executing a decision") protects the writes.
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
    /// The last poll of each agent queue an [`Action::ProbeQueues`] of this process asked for.
    /// Lost on a restart: the drain then polls again.
    #[serde(default)]
    pub queues: Vec<QueueReport>,
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

/// Outcome of a server-side dry-run of every intent (docs/operations.md "Preflight").
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
