//! JSON Patches on children's metadata: releasing a child, forgetting that a `ref` was created
//! here, and adding or removing the owner reference. Every patch starts with a `test` of the
//! object's uid, every removal of an owner reference with a `test` of that reference's uid, and
//! every removal of the claim label or of created-by with a `test` of its value, so a patch
//! computed from a stale observation fails (422) instead of editing the wrong object, the wrong
//! list entry, or a child another CR claimed meanwhile.

use serde_json::{Value, json};

use crate::children::{
    ANNOTATION_CREATED_BY, ANNOTATION_SPEC_HASH, ChildObject, LABEL_CLAIM, LABEL_MANAGED_BY,
    LABEL_ZONE, MANAGED_BY_VALUE, OwnerRef,
};

/// Escape a key for use in a JSON Pointer (RFC 6901).
#[must_use]
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn uid_test(child: &ChildObject) -> Value {
    json!({"op": "test", "path": "/metadata/uid", "value": child.uid})
}

fn into_patch(ops: Vec<Value>) -> Option<json_patch::Patch> {
    serde_json::from_value(Value::Array(ops)).ok()
}

/// Remove-operations for every owner reference to `cr_uid`, highest index first so earlier
/// indices stay valid, each preceded by a test of the entry's uid.
fn owner_reference_removals(child: &ChildObject, cr_uid: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    for (index, reference) in child.owner_references.iter().enumerate().rev() {
        if reference.uid == cr_uid {
            let path = format!("/metadata/ownerReferences/{index}");
            ops.push(json!({"op": "test", "path": format!("{path}/uid"), "value": cr_uid}));
            ops.push(json!({"op": "remove", "path": path}));
        }
    }
    ops
}

/// The patch that releases `child`: this project's labels and annotations and any owner
/// reference to `cr_uid` removed. `None` when there is nothing to remove.
#[must_use]
pub fn release(child: &ChildObject, cr_uid: &str) -> Option<json_patch::Patch> {
    let mut ops = vec![uid_test(child)];
    for label in [LABEL_CLAIM, LABEL_ZONE] {
        if let Some(value) = child.labels.get(label) {
            let path = format!("/metadata/labels/{}", escape_pointer(label));
            if label == LABEL_CLAIM {
                // The claim may have passed to another CR since the observation (released, then
                // adopted): never take that CR's claim away.
                ops.push(json!({"op": "test", "path": path, "value": value}));
            }
            ops.push(json!({"op": "remove", "path": path}));
        }
    }
    // managed-by is a shared, well-known label: remove it only when it says it is ours.
    if child.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE) {
        ops.push(json!({"op": "remove", "path": format!("/metadata/labels/{}", escape_pointer(LABEL_MANAGED_BY))}));
    }
    for annotation in [ANNOTATION_SPEC_HASH, ANNOTATION_CREATED_BY] {
        if child.annotations.contains_key(annotation) {
            ops.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape_pointer(annotation))}));
        }
    }
    ops.extend(owner_reference_removals(child, cr_uid));
    if ops.len() == 1 {
        return None;
    }
    into_patch(ops)
}

/// The patch that makes a child this CR created (created-by with `cr_uid`, or an owner
/// reference to it) a plain `ref`: the created-by annotation and every owner reference to
/// `cr_uid` removed, so neither the CR's deletion nor the garbage collector deletes it. Labels
/// and spec-hash stay: a `ref` is still claimed and written. `None` when it carries neither.
#[must_use]
pub fn forget_creation(child: &ChildObject, cr_uid: &str) -> Option<json_patch::Patch> {
    let mut ops = vec![uid_test(child)];
    if child
        .annotations
        .get(ANNOTATION_CREATED_BY)
        .map(String::as_str)
        == Some(cr_uid)
    {
        let path = format!(
            "/metadata/annotations/{}",
            escape_pointer(ANNOTATION_CREATED_BY)
        );
        ops.push(json!({"op": "test", "path": path, "value": cr_uid}));
        ops.push(json!({"op": "remove", "path": path}));
    }
    ops.extend(owner_reference_removals(child, cr_uid));
    if ops.len() == 1 {
        return None;
    }
    into_patch(ops)
}

/// The patch that removes every owner reference to `cr_uid` (`retain` turned true). `None`
/// when there is none.
#[must_use]
pub(crate) fn remove_owner_reference(
    child: &ChildObject,
    cr_uid: &str,
) -> Option<json_patch::Patch> {
    let removals = owner_reference_removals(child, cr_uid);
    if removals.is_empty() {
        return None;
    }
    let mut ops = vec![uid_test(child)];
    ops.extend(removals);
    into_patch(ops)
}

/// The patch that adds `reference` to `child` (a created child lost its owner reference while
/// `retain` is false).
#[must_use]
pub(crate) fn add_owner_reference(
    child: &ChildObject,
    reference: &OwnerRef,
) -> Option<json_patch::Patch> {
    let reference = serde_json::to_value(reference).ok()?;
    let add = if child.owner_references.is_empty() {
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": [reference]})
    } else {
        json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": reference})
    };
    into_patch(vec![uid_test(child), add])
}
