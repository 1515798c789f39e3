//! Lenient decoding of observed children: unknown or malformed fields never fail.

use proptest::prelude::*;
use serde_json::{Value, json};
use shared::children::{ChildObject, LABEL_CLAIM};
use shared::names::ChildKind;

#[test]
fn reads_every_field_the_rollout_needs() {
    let value = json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMCluster",
        "metadata": {
            "name": "demo-zone-a", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
            "generation": 3,
            "labels": {LABEL_CLAIM: "demo", "odd": 5},
            "annotations": {"operator.victoriametrics.com/spec-hash": "abc"},
            "ownerReferences": [
                {"apiVersion": "operator.victoriametrics.com/v1alpha1", "kind": "VMDistributed",
                 "name": "demo", "uid": "cr-uid", "controller": true, "blockOwnerDeletion": true},
                "garbage"
            ],
            "managedFields": [{"manager": "x"}]
        },
        "spec": {"vminsert": {"port": 8480}},
        "status": {"updateStatus": "operational", "observedGeneration": 3}
    });
    let child = ChildObject::from_value(&value, None);
    assert_eq!(child.kind, Some(ChildKind::VMCluster));
    assert_eq!(child.name, "demo-zone-a");
    assert_eq!(child.namespace, "ns");
    assert_eq!(child.uid, "u-1");
    assert_eq!(child.resource_version.as_deref(), Some("42"));
    assert_eq!(child.generation, Some(3));
    assert_eq!(child.claimed_by(), Some("demo"));
    assert!(
        !child.labels.contains_key("odd"),
        "non-string label dropped"
    );
    assert_eq!(child.spec_hash(), Some("abc"));
    assert_eq!(
        child.owner_references.len(),
        1,
        "malformed owner reference dropped"
    );
    assert!(child.created_by("cr-uid"));
    assert!(!child.created_by("other"));
    assert!(child.is_ready());
    assert_eq!(child.spec, json!({"vminsert": {"port": 8480}}));
}

#[test]
fn readiness_needs_operational_and_observed_generation() {
    let base = |status: Value| {
        ChildObject::from_value(
            &json!({"kind": "VMAgent", "metadata": {"name": "a", "generation": 2}, "status": status}),
            None,
        )
    };
    assert!(!base(json!({"updateStatus": "operational", "observedGeneration": 1})).is_ready());
    assert!(!base(json!({"updateStatus": "expanding", "observedGeneration": 2})).is_ready());
    assert!(!base(json!({"updateStatus": "operational"})).is_ready());
    assert!(base(json!({"updateStatus": "operational", "observedGeneration": 2})).is_ready());
}

#[test]
fn created_by_annotation_counts() {
    let child = ChildObject::from_value(
        &json!({"kind": "VMAgent", "metadata": {"name": "a",
            "annotations": {"operator.victoriametrics.com/created-by": "cr-uid"}}}),
        None,
    );
    assert!(child.created_by("cr-uid"));
    assert!(!child.created_by(""));
}

#[test]
fn fallback_kind_and_wrong_types() {
    let child = ChildObject::from_value(
        &json!({"kind": 7, "metadata": {"name": ["x"], "generation": "2", "labels": "nope"},
                "status": {"observedGeneration": 2.0, "updateStatus": 1}}),
        Some(ChildKind::VMAuth),
    );
    assert_eq!(child.kind, Some(ChildKind::VMAuth));
    assert_eq!(child.name, "");
    assert_eq!(child.generation, None);
    assert!(child.labels.is_empty());
    assert_eq!(child.observed_generation, Some(2));
    assert_eq!(child.update_status, None);
    let decoded: ChildObject = serde_json::from_value(json!("just a string")).expect("lenient");
    assert_eq!(decoded.kind, None);
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z/.:-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_owned()),
                    Just("status".to_owned()),
                    Just("kind".to_owned()),
                    Just("labels".to_owned()),
                    Just("generation".to_owned()),
                    Just("ownerReferences".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn never_fails_on_arbitrary_json(value in arbitrary_json()) {
        let child = ChildObject::from_value(&value, Some(ChildKind::VMAgent));
        let _ = child.is_ready();
        let decoded: Result<ChildObject, _> = serde_json::from_value(value);
        prop_assert!(decoded.is_ok());
    }
}
