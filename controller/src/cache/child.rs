//! The forms in which the controller holds a `VMCluster`, `VMSingle`, `VMAgent` or `VMAuth`:
//! [`WatchedChild`] as the watch decodes it, [`CachedChild`] as the child caches keep it.
//!
//! A `DynamicObject` keeps the object as a tree of `serde_json::Value` maps, and every small map
//! (labels, `vminsert`, `status`, each remote-write entry) costs a whole B-tree node of about
//! 600 bytes: with 1,000 CRs (7,000 children) the caches took about 80 MB. Here the object is
//! trimmed to what the decision reads, kept as compressed JSON text ([`CompactJson`]), and
//! parsed when a reconcile of its CR needs it. Only what the cache and the event mapping use
//! stays typed: the name, namespace and resourceVersion, the claim label, and whether
//! `managedFields` holds entries the ownership upgrade acts on (normally not).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::Resource;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use shared::children::{
    ANNOTATION_CREATED_BY, ANNOTATION_SPEC_HASH, ChildObject, LABEL_CLAIM, LABEL_MANAGED_BY,
    LABEL_ZONE,
};
use shared::names::ChildKind;

use crate::cache::compact_json::CompactJson;
use crate::managed_fields;

/// The labels and annotations the decision reads; others' are dropped from the cache.
const KEPT_LABELS: [&str; 3] = [LABEL_CLAIM, LABEL_MANAGED_BY, LABEL_ZONE];
const KEPT_ANNOTATIONS: [&str; 2] = [ANNOTATION_SPEC_HASH, ANNOTATION_CREATED_BY];
/// The status fields the decision reads (readiness).
const KEPT_STATUS: [&str; 3] = ["updateStatus", "observedGeneration", "reason"];

/// A child as the watch decodes it: identity for the cache, the claim for event mapping, the rest
/// as JSON text. It implements [`Resource`] for the watcher; the cache keeps the smaller
/// [`CachedChild`] made from it.
#[derive(Clone, Debug, Default)]
pub struct WatchedChild {
    /// Name, namespace, resourceVersion and the `managedFields` entries that may need the
    /// ownership upgrade.
    pub metadata: ObjectMeta,
    /// The claim label: the `VMDistributed` this child belongs to.
    pub claim: Option<String>,
    /// The object (metadata, spec, status), trimmed, compressed.
    json: CompactJson,
}

impl WatchedChild {
    /// Trim `object` and keep it in cached form.
    #[must_use]
    pub fn from_value(mut object: Value) -> Self {
        let mut metadata = ObjectMeta::default();
        let mut claim = None;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
            metadata.name = text("name");
            metadata.namespace = text("namespace");
            metadata.resource_version = text("resourceVersion");
            let upgradable: Vec<ManagedFieldsEntry> = meta
                .remove("managedFields")
                .and_then(|fields| serde_json::from_value::<Vec<ManagedFieldsEntry>>(fields).ok())
                .unwrap_or_default()
                .into_iter()
                .filter(managed_fields::may_need_upgrade)
                .collect();
            metadata.managed_fields = (!upgradable.is_empty()).then_some(upgradable);
            meta.remove("creationTimestamp");
            retain_keys(meta.get_mut("labels"), &KEPT_LABELS);
            retain_keys(meta.get_mut("annotations"), &KEPT_ANNOTATIONS);
            claim = meta
                .get("labels")
                .and_then(|labels| labels.get(LABEL_CLAIM))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if let Some(object) = object.as_object_mut() {
            retain_keys(object.get_mut("status"), &KEPT_STATUS);
        }
        Self {
            metadata,
            claim,
            json: CompactJson::new(&object),
        }
    }

    /// Split into the cache key (namespace, name) and the cached form, leaving only the
    /// identity and the claim here (what the event mapping reads).
    #[must_use]
    pub fn take_cached(&mut self) -> (String, String, CachedChild) {
        let cached = CachedChild {
            resource_version: self.metadata.resource_version.as_deref().map(Box::from),
            claim: self.claim.as_deref().map(Box::from),
            needs_ownership_upgrade: self.metadata.managed_fields.is_some(),
            json: std::mem::take(&mut self.json),
        };
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
            cached,
        )
    }
}

/// A child as the caches keep it: about a third of a [`WatchedChild`] (no `ObjectMeta`, whose
/// empty fields alone take some 300 bytes), the name and namespace being the cache's keys.
#[derive(Clone, Debug, Default)]
pub struct CachedChild {
    resource_version: Option<Box<str>>,
    /// The claim label: the `VMDistributed` this child belongs to.
    claim: Option<Box<str>>,
    /// Whether `managedFields` has entries the ownership upgrade would act on (normally not).
    needs_ownership_upgrade: bool,
    json: CompactJson,
}

impl CachedChild {
    /// `metadata.resourceVersion`.
    #[must_use]
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// The claim label: the `VMDistributed` this child belongs to.
    #[must_use]
    pub fn claim(&self) -> Option<&str> {
        self.claim.as_deref()
    }

    /// Whether an Update (another manager's, or our own creation's) owns fields that an apply
    /// of ours must take over first
    /// (see [`managed_fields::may_need_upgrade`]).
    #[must_use]
    pub fn needs_ownership_upgrade(&self) -> bool {
        self.needs_ownership_upgrade
    }

    /// The child as the decision reads it, or `None` if its text does not parse (it was
    /// written from a `Value`, so it always does).
    #[must_use]
    pub fn to_child_object(&self, kind: ChildKind) -> Option<ChildObject> {
        let value = self.json.to_value()?;
        Some(ChildObject::from_value(&value, Some(kind)))
    }
}

/// Keep only `keys` in an object value; anything else is left alone.
fn retain_keys(value: Option<&mut Value>, keys: &[&str]) {
    if let Some(map) = value.and_then(Value::as_object_mut) {
        map.retain(|key, _| keys.contains(&key.as_str()));
    }
}

impl<'de> Deserialize<'de> for WatchedChild {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Lenient like every controller-side child type: any JSON object is accepted.
        let object = Map::deserialize(deserializer)?;
        Ok(Self::from_value(Value::Object(object)))
    }
}

impl Resource for WatchedChild {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    fn cluster() -> Value {
        json!({
            "apiVersion": "operator.victoriametrics.com/v1beta1",
            "kind": "VMCluster",
            "metadata": {
                "name": "demo-zone-a",
                "namespace": "monitoring",
                "uid": "u-1",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {
                    "operator.victoriametrics.com/vmdistributed": "demo",
                    "operator.victoriametrics.com/zone": "zone-a",
                    "app.kubernetes.io/managed-by": "vmdistributed",
                    "team": "observability"
                },
                "annotations": {
                    "operator.victoriametrics.com/spec-hash": "abc",
                    "operator.victoriametrics.com/last-applied-spec": "{\"huge\": true}"
                },
                "ownerReferences": [{"apiVersion": "operator.victoriametrics.com/v1alpha1",
                    "kind": "VMDistributed", "name": "demo", "uid": "cr-1", "controller": true}],
                "managedFields": [
                    {"manager": "vmdistributed-controller", "operation": "Apply",
                     "fieldsV1": {"f:spec": {"f:clusterVersion": {}}}},
                    {"manager": "vm-operator", "operation": "Update", "subresource": "status",
                     "fieldsV1": {"f:status": {}}}
                ]
            },
            "spec": {"clusterVersion": "v1.1.0", "vminsert": {"replicaCount": 2, "port": "8480"}},
            "status": {"updateStatus": "operational", "observedGeneration": 3, "reason": "",
                "conditions": [{"type": "Ready"}], "lastSync": "now"}
        })
    }

    #[test]
    fn the_decision_sees_the_same_child_as_from_the_full_object() {
        let full = ChildObject::from_value(&cluster(), Some(ChildKind::VMCluster));
        let watched: WatchedChild = serde_json::from_value(cluster()).unwrap();
        let (namespace, name, cached) = watched.clone().take_cached();
        assert_eq!(
            (namespace.as_str(), name.as_str()),
            ("monitoring", "demo-zone-a")
        );
        let seen = cached.to_child_object(ChildKind::VMCluster).unwrap();
        assert_eq!(seen.name, full.name);
        assert_eq!(seen.uid, full.uid);
        assert_eq!(seen.generation, Some(3));
        assert_eq!(seen.spec, full.spec);
        assert_eq!(seen.spec_hash(), Some("abc"));
        assert_eq!(seen.claimed_by(), Some("demo"));
        assert_eq!(seen.owner_references, full.owner_references);
        assert!(seen.is_ready() && full.is_ready());
        // Others' labels, annotations and status fields are not kept.
        assert!(!seen.labels.contains_key("team"));
        assert_eq!(seen.annotations.len(), 1);
        let kept = cached.json.to_value().unwrap().to_string();
        assert!(!kept.contains("conditions") && !kept.contains("huge"));
    }

    #[test]
    fn identity_claim_and_upgradable_managed_fields_stay_typed() {
        let mut object = cluster();
        let mut watched = WatchedChild::from_value(object.clone());
        assert_eq!(watched.name_any(), "demo-zone-a");
        assert_eq!(watched.namespace().as_deref(), Some("monitoring"));
        assert_eq!(watched.resource_version().as_deref(), Some("42"));
        assert_eq!(watched.claim.as_deref(), Some("demo"));
        // Our own Apply and a status Update need no upgrade.
        assert!(watched.managed_fields().is_empty());
        let (_, _, cached) = watched.take_cached();
        assert_eq!(cached.resource_version(), Some("42"));
        assert!(!cached.needs_ownership_upgrade());
        // What the event mapping reads stays on the watched child; the JSON moved.
        assert_eq!(watched.claim.as_deref(), Some("demo"));
        assert_eq!(watched.name_any(), "demo-zone-a");
        assert_eq!(watched.json, CompactJson::default());
        object["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"manager": "helm", "operation": "Update",
                "fieldsV1": {"f:spec": {"f:retentionPeriod": {}}}}));
        let watched = WatchedChild::from_value(object);
        assert_eq!(watched.managed_fields().len(), 1);
        assert!(
            !watched
                .json
                .to_value()
                .unwrap()
                .to_string()
                .contains("managedFields")
        );
        let (_, _, cached) = watched.clone().take_cached();
        assert!(cached.needs_ownership_upgrade());
    }

    #[test]
    fn anything_that_is_an_object_is_accepted() {
        let watched: WatchedChild = serde_json::from_value(json!({"spec": 5})).unwrap();
        assert_eq!(watched.metadata.name, None);
        let (_, _, cached) = watched.clone().take_cached();
        assert!(cached.to_child_object(ChildKind::VMAgent).is_some());
        assert!(serde_json::from_value::<WatchedChild>(json!([1])).is_err());
    }
}
