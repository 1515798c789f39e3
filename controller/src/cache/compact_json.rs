//! Cached children as LZ4-compressed JSON, with a dictionary of the text every child shares.
//!
//! A trimmed child is about 1 KB of JSON, and most of it is text every child repeats: the API
//! versions, the label and annotation keys of docs/rollout.md "Ownership", the owner reference to a
//! `VMDistributed`, the remote-write URL pattern, the VMAuth target refs. Compressed alone, 1 KB of
//! JSON barely shrinks; against a dictionary holding that shared text it shrinks to about a quarter
//! (measured on the benchmark's 7,000 children: 8.1 MB of JSON → 2.1 MB). Decompressing one child
//! takes about a microsecond, and a reconcile reads only its own CR's few children.
//!
//! The dictionary only affects the ratio, never the content: any JSON round-trips.

use std::sync::LazyLock;

use serde_json::{Value, json};
use shared::children::{
    ANNOTATION_CREATED_BY, ANNOTATION_SPEC_HASH, LABEL_CLAIM, LABEL_MANAGED_BY, LABEL_ZONE,
    MANAGED_BY_VALUE, OPERATIONAL,
};
use shared::names::ChildKind;

/// JSON text compressed against `DICTIONARY`, with its length prepended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactJson(Box<[u8]>);

impl CompactJson {
    /// Compress `value`'s compact JSON text.
    #[must_use]
    pub fn new(value: &Value) -> Self {
        let text = value.to_string();
        Self(lz4_flex::block::compress_prepend_size_with_dict(text.as_bytes(), &DICTIONARY).into())
    }

    /// The value back, or `None` if the bytes do not decompress to JSON (they were made by
    /// [`CompactJson::new`], so they always do).
    #[must_use]
    pub fn to_value(&self) -> Option<Value> {
        if self.0.is_empty() {
            return None;
        }
        let text =
            lz4_flex::block::decompress_size_prepended_with_dict(&self.0, &DICTIONARY).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Text shared by the children this controller writes: one skeleton of each kind as rendered by
/// docs/rollout.md "Ownership", with empty names, uids and hashes.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let owner = json!([{
        "apiVersion": format!("{}/{}", shared::api::GROUP, shared::api::VERSION),
        "blockOwnerDeletion": true, "controller": true, "kind": shared::api::KIND,
        "name": "", "uid": ""
    }]);
    let metadata = json!({
        "annotations": {ANNOTATION_CREATED_BY: "", ANNOTATION_SPEC_HASH: ""},
        "generation": 1,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_CLAIM: "", LABEL_ZONE: "zone-"},
        "name": "", "namespace": "", "ownerReferences": owner, "resourceVersion": "", "uid": ""
    });
    let status = json!({"observedGeneration": 1, "reason": "", "updateStatus": OPERATIONAL});
    let object = |kind: ChildKind, spec: Value| {
        json!({"apiVersion": ChildKind::API_VERSION, "kind": kind.kind(), "metadata": metadata,
            "spec": spec, "status": status})
    };
    let targets = json!([
        {"crd": {"kind": "VMAgent", "objects": [{"name": "", "namespace": ""}]},
         "load_balancing_policy": "least_loaded", "name": "write",
         "paths": ["/insert/.+", "/api/v1/write"], "retry_status_codes": [500, 502, 503]},
        {"crd": {"kind": "VMCluster/vmselect", "objects": [{"name": "", "namespace": ""}]},
         "load_balancing_policy": "first_available", "name": "read",
         "paths": ["/select/.+", "/admin/tenants", "/flags", "/metrics"],
         "retry_status_codes": [500, 502, 503]}
    ]);
    let skeletons = [
        object(
            ChildKind::VMCluster,
            json!({"clusterVersion": "v1.", "vminsert": {"replicaCount": 1},
                "vmselect": {"replicaCount": 1}, "vmstorage": {"replicaCount": 1}}),
        ),
        object(
            ChildKind::VMAgent,
            json!({"ingestOnlyMode": true, "remoteWrite": [
                {"url": "http://vminsert-.svc:8480/insert/multitenant/prometheus/api/v1/write"},
                {"url": "http://vmsingle-.svc:8428/api/v1/write"}],
                "remoteWriteSettings": {"useMultiTenantMode": true}}),
        ),
        object(
            ChildKind::VMAuth,
            json!({"defaultTargetRefs": targets, "waitForConfigReload": true}),
        ),
    ];
    skeletons
        .iter()
        .map(Value::to_string)
        .collect::<String>()
        .into_bytes()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> Value {
        json!({
            "apiVersion": ChildKind::API_VERSION, "kind": "VMAgent",
            "metadata": {
                "annotations": {ANNOTATION_CREATED_BY: "ed396f77-5d67-4129-be3c-d304ff79272e",
                    ANNOTATION_SPEC_HASH: "acc14a11cbf977f4da3b884ac9b9dd8a50215e2ade9e7337ce477b9ef9cfd7d6"},
                "generation": 2,
                "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_CLAIM: "cr-7", LABEL_ZONE: "zone-a"},
                "name": name, "namespace": "monitoring",
                "ownerReferences": [{"apiVersion": "operator.victoriametrics.com/v1alpha1",
                    "blockOwnerDeletion": true, "controller": true, "kind": "VMDistributed",
                    "name": "cr-7", "uid": "ed396f77-5d67-4129-be3c-d304ff79272e"}],
                "resourceVersion": "37136", "uid": "ecd9a8d5-c0be-4360-9b66-d1058f721ecb"
            },
            "spec": {"ingestOnlyMode": true, "remoteWrite": [
                {"url": "http://vminsert-cr-7-zone-a.monitoring.svc:8480/insert/multitenant/prometheus/api/v1/write"},
                {"url": "http://vminsert-cr-7-zone-b.monitoring.svc:8480/insert/multitenant/prometheus/api/v1/write"}],
                "remoteWriteSettings": {"useMultiTenantMode": true}},
            "status": {"observedGeneration": 2, "reason": "", "updateStatus": "operational"}
        })
    }

    #[test]
    fn values_round_trip_and_shared_text_costs_little() {
        let value = agent("cr-7-zone-a");
        let compact = CompactJson::new(&value);
        assert_eq!(compact.to_value(), Some(value.clone()));
        // The uids, hash and names are what is left; the shared text nearly vanishes.
        let text = value.to_string().len();
        assert!(
            compact.0.len() * 2 < text,
            "{} bytes of {text}",
            compact.0.len()
        );
    }

    #[test]
    fn anything_round_trips_even_text_the_dictionary_never_saw() {
        for value in [
            json!({}),
            json!({"spec": 5}),
            json!({"ünïcode": "✓", "nested": {"a": [1, 2.5, null, true, "x"]}}),
            json!({"big": "z".repeat(100_000)}),
        ] {
            assert_eq!(CompactJson::new(&value).to_value(), Some(value));
        }
        assert_eq!(CompactJson::default().to_value(), None);
        assert_eq!(CompactJson(vec![9, 0, 0, 0, 1].into()).to_value(), None);
    }
}
