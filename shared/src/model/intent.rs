//! The rendered desired state of the children: what `render` produces and the rollout writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::children::OwnerRef;
use crate::names::ChildKind;

/// The complete desired state of one child, as rendered (docs/api.md "Merge rules", "Name resolution").
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

    /// The same intent without owner references, as preflight dry-runs it (docs/operations.md "Preflight").
    #[must_use]
    pub(crate) fn without_owner_references(&self) -> Self {
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
