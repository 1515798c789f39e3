//! Lenient, read-only views of the observed children (`VMCluster`, `VMSingle`, `VMAgent`,
//! `VMAuth`) as the rollout needs them (docs/rollout.md).
//!
//! The controller lists and watches objects that other programs write (the VictoriaMetrics
//! operator, Helm, users). A field this project does not know, or a field of an unexpected type,
//! must never make a list or watch fail, or one odd object would stop every rollout in the
//! namespace. [`ChildObject::from_value`] therefore never fails: whatever cannot be read is
//! treated as absent. Strict decoding is for admission and `check` only.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::names::ChildKind;

/// Label on every child naming the `VMDistributed` that claims it (docs/rollout.md "Ownership").
pub const LABEL_CLAIM: &str = "operator.victoriametrics.com/vmdistributed";
/// Label on every child: `app.kubernetes.io/managed-by: vmdistributed`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "vmdistributed";
/// Label on zone children (not on the VMAuth) naming their zone.
pub const LABEL_ZONE: &str = "operator.victoriametrics.com/zone";
/// Annotation holding the hash of the intent last applied.
pub const ANNOTATION_SPEC_HASH: &str = "operator.victoriametrics.com/spec-hash";
/// Annotation holding the UID of the `VMDistributed` that created the child with a POST.
pub const ANNOTATION_CREATED_BY: &str = "operator.victoriametrics.com/created-by";
/// The `status.updateStatus` value of a child that is up and serving.
pub const OPERATIONAL: &str = "operational";
/// `status.updateStatus` of a child the VictoriaMetrics operator could not reconcile.
pub const FAILED: &str = "failed";

/// An owner reference as found on a child; unknown fields ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerRef {
    /// `apiVersion` of the owner.
    #[serde(default)]
    pub api_version: String,
    /// `kind` of the owner.
    #[serde(default)]
    pub kind: String,
    /// `name` of the owner.
    #[serde(default)]
    pub name: String,
    /// `uid` of the owner.
    #[serde(default)]
    pub uid: String,
    /// Whether this is the managing controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether the garbage collector blocks the owner's foreground deletion on this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// One observed child: the metadata the rollout reads, the spec as JSON, and the two status
/// fields that say whether the VictoriaMetrics operator has caught up with it.
///
/// `metadata.managedFields` is deliberately not kept: it is large, and nothing in the pure
/// decision depends on it (the controller handles the field-manager upgrade on its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildObject {
    /// Which kind of child this is. Taken from the object's `kind` when it names one of the
    /// four, otherwise from the caller (a list of `VMCluster`s holds `VMCluster`s).
    #[serde(serialize_with = "kind_serde::serialize_option")]
    pub kind: Option<ChildKind>,
    /// `metadata.name` (empty when missing).
    pub name: String,
    /// `metadata.namespace` (empty when missing).
    pub namespace: String,
    /// `metadata.uid` (empty when missing).
    pub uid: String,
    /// `metadata.resourceVersion`, when present.
    pub resource_version: Option<String>,
    /// `metadata.generation`, when present and an integer.
    pub generation: Option<i64>,
    /// `metadata.deletionTimestamp` as written, when the object is being deleted.
    pub deletion_timestamp: Option<String>,
    /// String-valued labels (non-string values are dropped).
    pub labels: BTreeMap<String, String>,
    /// String-valued annotations (non-string values are dropped).
    pub annotations: BTreeMap<String, String>,
    /// Owner references that decode; malformed entries are dropped.
    pub owner_references: Vec<OwnerRef>,
    /// `spec` as written; `Value::Null` when missing.
    pub spec: Value,
    /// `status.updateStatus`, when a string.
    pub update_status: Option<String>,
    /// `status.observedGeneration`, when an integer.
    pub observed_generation: Option<i64>,
    /// `status.reason`, when a string: why the VictoriaMetrics operator reports `failed`.
    pub reason: Option<String>,
}

impl ChildObject {
    /// Read a child from its JSON form (as returned by the API server). Never fails: fields that
    /// are missing or of an unexpected type are left empty. `fallback_kind` is used when the
    /// object's own `kind` is missing or not one of the four child kinds.
    #[must_use]
    pub fn from_value(value: &Value, fallback_kind: Option<ChildKind>) -> Self {
        let metadata = value.get("metadata");
        let meta_str = |key: &str| {
            metadata
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let status = value.get("status");
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .and_then(kind_from_str)
            .or(fallback_kind);
        Self {
            kind,
            name: meta_str("name").unwrap_or_default(),
            namespace: meta_str("namespace").unwrap_or_default(),
            uid: meta_str("uid").unwrap_or_default(),
            resource_version: meta_str("resourceVersion"),
            generation: metadata.and_then(|m| m.get("generation")).and_then(as_i64),
            deletion_timestamp: meta_str("deletionTimestamp"),
            labels: string_map(metadata.and_then(|m| m.get("labels"))),
            annotations: string_map(metadata.and_then(|m| m.get("annotations"))),
            owner_references: metadata
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter_map(|r| serde_json::from_value::<OwnerRef>(r.clone()).ok())
                        .collect()
                })
                .unwrap_or_default(),
            spec: value.get("spec").cloned().unwrap_or(Value::Null),
            update_status: status
                .and_then(|s| s.get("updateStatus"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            observed_generation: status
                .and_then(|s| s.get("observedGeneration"))
                .and_then(as_i64),
            reason: status
                .and_then(|s| s.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    /// The value of the claim label ([`LABEL_CLAIM`]): the name of the `VMDistributed` that
    /// claims this child, if any.
    #[must_use]
    pub fn claimed_by(&self) -> Option<&str> {
        self.labels.get(LABEL_CLAIM).map(String::as_str)
    }

    /// The spec-hash annotation, if any.
    #[must_use]
    pub fn spec_hash(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_SPEC_HASH)
            .map(String::as_str)
    }

    /// Operational at its current generation: `status.updateStatus == "operational"` and
    /// `status.observedGeneration >= metadata.generation` (docs/rollout.md "Definitions"). An
    /// object without a generation counts as generation 0, so an operator that reports any
    /// observedGeneration satisfies it; one that reports none does not.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.update_status.as_deref() == Some(OPERATIONAL)
            && self
                .observed_generation
                .is_some_and(|observed| observed >= self.generation.unwrap_or(0))
    }

    /// The VictoriaMetrics operator reports `failed` for the object's current generation (an
    /// older generation's failure says nothing about the spec now applied): its reason, or a
    /// placeholder when it gives none.
    #[must_use]
    pub fn failure(&self) -> Option<&str> {
        let at_current = self
            .observed_generation
            .is_some_and(|observed| observed >= self.generation.unwrap_or(0));
        (self.update_status.as_deref() == Some(FAILED) && at_current).then(|| {
            self.reason
                .as_deref()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or("no reason given")
        })
    }

    /// Why the object is not ready, for a status message: it failed (with the operator's
    /// reason), the operator has not reconciled its current generation, or its status.
    #[must_use]
    pub(crate) fn not_ready_detail(&self) -> String {
        let kind = self.kind.map_or("child", ChildKind::kind);
        let name = &self.name;
        if let Some(reason) = self.failure() {
            return format!("{kind} {name} reports failed: {reason}");
        }
        let generation = self.generation.unwrap_or(0);
        match self.observed_generation {
            Some(observed) if observed >= generation => format!(
                "{kind} {name} is {}",
                self.update_status
                    .as_deref()
                    .unwrap_or("without updateStatus")
            ),
            observed => format!(
                "the VictoriaMetrics operator has not reconciled {kind} {name} (observedGeneration {}, generation {generation}); is its {kind} controller running?",
                observed.map_or_else(|| "unset".to_owned(), |o| o.to_string())
            ),
        }
    }

    /// Whether the child was created by the `VMDistributed` with this UID: it carries the
    /// created-by annotation with that UID, or a controller owner reference to it (children the
    /// upstream operator created before migration, docs/migration.md).
    #[must_use]
    pub fn created_by(&self, cr_uid: &str) -> bool {
        if cr_uid.is_empty() {
            return false;
        }
        self.annotations
            .get(ANNOTATION_CREATED_BY)
            .is_some_and(|uid| uid == cr_uid)
            || self.controller_owner_is(cr_uid)
    }

    /// Whether a controller owner reference points at this UID.
    #[must_use]
    pub(crate) fn controller_owner_is(&self, cr_uid: &str) -> bool {
        self.owner_references
            .iter()
            .any(|r| r.uid == cr_uid && r.controller == Some(true))
    }

    /// Whether the object is being deleted.
    #[must_use]
    pub(crate) fn is_deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

impl<'de> Deserialize<'de> for ChildObject {
    /// Lenient: any JSON value decodes (see [`ChildObject::from_value`]).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Self::from_value(&value, None))
    }
}

/// The child kind named by a `kind` string.
#[must_use]
pub(crate) fn kind_from_str(kind: &str) -> Option<ChildKind> {
    match kind {
        "VMCluster" => Some(ChildKind::VMCluster),
        "VMSingle" => Some(ChildKind::VMSingle),
        "VMAgent" => Some(ChildKind::VMAgent),
        "VMAuth" => Some(ChildKind::VMAuth),
        _ => None,
    }
}

/// An integer field, also when the API server or a user wrote it as a float with no fraction.
fn as_i64(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            // The filter above guarantees the value is integral and in range.
            .map(|f| f as i64)
    })
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Serde for [`ChildKind`] as its `kind` string, so the model types serialize readably without
/// requiring serde derives on `ChildKind` itself.
pub(crate) mod kind_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{ChildKind, kind_from_str};

    /// Serialize as the kind string.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub(crate) fn serialize<S: Serializer>(
        kind: &ChildKind,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.kind())
    }

    /// Serialize an optional kind as the kind string or null.
    ///
    /// # Errors
    /// Only the serializer's own errors.
    pub(crate) fn serialize_option<S: Serializer>(
        kind: &Option<ChildKind>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match kind {
            Some(kind) => serializer.serialize_str(kind.kind()),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialize from the kind string.
    ///
    /// # Errors
    /// When the string is not one of the four child kinds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ChildKind, D::Error> {
        let text = String::deserialize(deserializer)?;
        kind_from_str(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown child kind {text:?}")))
    }
}
