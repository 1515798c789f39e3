//! Moving field ownership to our server-side apply before we apply to an object whose fields are
//! owned by an `Update` (the client-side-apply to server-side-apply upgrade technique).
//!
//! Two kinds of `Update` entries are taken over:
//! - another manager's (the VictoriaMetrics operator, Helm, kubectl): without the move, fields it
//!   set stay co-owned by it after our apply, and removing such a field from the intent later
//!   would leave it in place. Only the fields the intent's `spec` sets move; everything else it
//!   wrote stays its own, so we never delete a field we do not set.
//! - our own, recorded by the API server for the POST that created the child: it owns every
//!   field of the object as created, and nothing would ever remove one of them when the intent
//!   stops sending it. All of its `spec` fields move, but only on a child this CR created (it
//!   carries our `created-by`): a child released by one CR and adopted by another keeps what
//!   the first one created, as the adoption of any other object does (docs/rollout.md
//!   "Ownership").

use serde_json::{Map, Value};

/// Whether `entry` is one [`upgrade`] could take fields from: an `Update` of the main resource
/// (another manager's, or our own creation's) that owns something under `spec`. The child
/// caches keep only these entries, so an apply reads the object live (for its full
/// `managedFields` and resourceVersion) only when such an entry exists, instead of before every
/// apply. Our own entry is gone after the first apply that follows the creation.
#[must_use]
pub fn may_need_upgrade(
    entry: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
) -> bool {
    entry.operation.as_deref() == Some("Update")
        && entry.subresource.as_deref().is_none_or(str::is_empty)
        && entry
            .fields_v1
            .as_ref()
            .and_then(|fields| fields.0.get("f:spec"))
            .is_some()
}

/// Whose `Update` entries [`upgrade`] takes fields from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Other managers' only: the child was not created by the CR that applies it (adopted, a
    /// `ref`, or released by another CR).
    Others,
    /// Also our own: the child was created by the CR that applies it (it carries its
    /// `created-by`), so our `Update` entry is the record of that creation.
    OthersAndOurCreation,
}

/// The `managedFields` list after moving, from every other manager's `Update` entry (main
/// resource, not a subresource), the ownership of the fields `intent_spec` sets into our `Apply`
/// entry, and with [`Takeover::OthersAndOurCreation`] every `spec` field of our own `Update`
/// entry too. `None` when nothing needs to move.
#[must_use]
pub fn upgrade(
    managed_fields: &[Value],
    intent_spec: &Value,
    our_manager: &str,
    takeover: Takeover,
    api_version: &str,
    now: &str,
) -> Option<Vec<Value>> {
    let mut entries: Vec<Value> = managed_fields.to_vec();
    let mut moved = Map::new();
    for entry in &mut entries {
        let is_update = entry.get("operation").and_then(Value::as_str) == Some("Update")
            && entry
                .get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
        let ours = entry.get("manager").and_then(Value::as_str) == Some(our_manager);
        if !is_update || (ours && takeover == Takeover::Others) {
            continue;
        }
        let Some(spec_fields) = entry
            .pointer_mut("/fieldsV1/f:spec")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        // Our creation owns exactly what we sent then: all of it becomes our apply's, so
        // what the intent no longer sends is removed by that apply.
        let taken = if ours {
            std::mem::take(spec_fields)
        } else {
            take(spec_fields, intent_spec)
        };
        if !taken.is_empty() {
            merge_into(&mut moved, taken);
        }
    }
    if moved.is_empty() {
        return None;
    }
    // Drop what became empty: an `f:spec` with no fields left, then entries that own nothing.
    for entry in &mut entries {
        if let Some(fields) = entry.get_mut("fieldsV1").and_then(Value::as_object_mut)
            && fields
                .get("f:spec")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
        {
            fields.remove("f:spec");
        }
    }
    entries.retain(|entry| {
        entry
            .get("fieldsV1")
            .and_then(Value::as_object)
            .is_none_or(|fields| !fields.is_empty())
    });
    let ours = entries.iter_mut().find(|entry| {
        entry.get("manager").and_then(Value::as_str) == Some(our_manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry
                .get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
    });
    let mut spec_fields = Map::new();
    spec_fields.insert("f:spec".to_owned(), Value::Object(moved));
    match ours {
        Some(entry) => {
            let fields = entry.as_object_mut().map(|e| {
                e.entry("fieldsV1")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            if let Some(Value::Object(fields)) = fields {
                merge_into(fields, spec_fields);
            }
        }
        None => entries.push(serde_json::json!({
            "manager": our_manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": Value::Object(spec_fields),
        })),
    }
    Some(entries)
}

/// The JSON Patch operations that hand a released child's fields back: our entries (`Apply`,
/// and the `Update` of our creation) leave `managedFields`, guarded by the object's
/// `resourceVersion`, so a later server-side apply by whoever manages the object now meets no
/// conflict with a manager that is gone (docs/rollout.md "Zone removal"). The fields and their
/// values stay; they are only no longer ours. Empty when no entry is ours.
///
/// The API server keeps the stored list when a write sends an empty one, so a list of ours
/// only becomes `[{}]`, which it stores as no entries at all.
#[must_use]
pub fn release_ops(
    managed_fields: &[Value],
    our_manager: &str,
    resource_version: &str,
) -> Vec<Value> {
    let others: Vec<Value> = managed_fields
        .iter()
        .filter(|entry| entry.get("manager").and_then(Value::as_str) != Some(our_manager))
        .cloned()
        .collect();
    if others.len() == managed_fields.len() {
        return Vec::new();
    }
    let remaining = if others.is_empty() {
        vec![Value::Object(Map::new())]
    } else {
        others
    };
    vec![
        serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
        serde_json::json!({"op": "replace", "path": "/metadata/managedFields", "value": remaining}),
    ]
}

/// Remove from `fields` (a FieldsV1 object) the parts `intent` sets, returning them. Objects in
/// the intent recurse (their `.` marker moves with them); any other value (scalar, list) moves
/// the whole subtree, because our apply sets it entirely.
fn take(fields: &mut Map<String, Value>, intent: &Value) -> Map<String, Value> {
    let mut moved = Map::new();
    let Some(intent) = intent.as_object() else {
        return moved;
    };
    for (key, value) in intent {
        let field_key = format!("f:{key}");
        let nested = value.is_object() && fields.get(&field_key).is_some_and(Value::is_object);
        if nested {
            let Some(Value::Object(sub)) = fields.get_mut(&field_key) else {
                continue;
            };
            let mut taken = take(sub, value);
            if let Some(marker) = sub.remove(".") {
                taken.insert(".".to_owned(), marker);
            }
            let now_empty = sub.is_empty();
            if !taken.is_empty() {
                moved.insert(field_key.clone(), Value::Object(taken));
            }
            if now_empty {
                fields.remove(&field_key);
            }
        } else if let Some(subtree) = fields.remove(&field_key) {
            moved.insert(field_key, subtree);
        }
    }
    moved
}

fn merge_into(target: &mut Map<String, Value>, source: Map<String, Value>) {
    for (key, value) in source {
        match (target.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                merge_into(existing, incoming);
            }
            (_, value) => {
                target.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use serde_json::json;

    use super::*;

    const ME: &str = "vmdistributed-controller";

    #[test]
    fn a_release_hands_back_only_our_entries() {
        let ours_apply = json!({"manager": ME, "operation": "Apply", "fieldsV1": {"f:spec": {}}});
        let ours_update = json!({"manager": ME, "operation": "Update", "fieldsV1": {"f:spec": {}}});
        let operator =
            json!({"manager": "vm-operator", "operation": "Update", "subresource": "status"});
        let ops = release_ops(
            &[ours_update, operator.clone(), ours_apply.clone()],
            ME,
            "42",
        );
        assert_eq!(
            ops,
            [
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"}),
                json!({"op": "replace", "path": "/metadata/managedFields", "value": [operator]}),
            ]
        );
        // Only ours: `[{}]`, since an empty list would keep the stored one.
        let ops = release_ops(std::slice::from_ref(&ours_apply), ME, "7");
        assert_eq!(ops[1]["value"], json!([{}]));
        // None of ours: nothing to do.
        assert!(release_ops(&[helm_entry(json!({}))], ME, "7").is_empty());
    }

    fn helm_entry(fields: Value) -> Value {
        json!({"manager": "helm", "operation": "Update", "apiVersion": "operator.victoriametrics.com/v1beta1",
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    #[test]
    fn moves_only_the_intent_fields_and_keeps_the_rest_with_their_owner() {
        let live = vec![helm_entry(json!({
            "f:metadata": {"f:labels": {"f:team": {}}},
            "f:spec": {
                "f:clusterVersion": {},
                "f:vminsert": {".": {}, "f:replicaCount": {}, "f:image": {"f:tag": {}}},
                "f:retentionPeriod": {}
            }
        }))];
        let intent = json!({"clusterVersion": "v1", "vminsert": {"replicaCount": 2}});
        let out = upgrade(
            &live,
            &intent,
            ME,
            Takeover::Others,
            "v1beta1",
            "2026-01-01T00:00:00Z",
        )
        .unwrap_or_default();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:team": {}}},
                   "f:spec": {"f:vminsert": {"f:image": {"f:tag": {}}}, "f:retentionPeriod": {}}})
        );
        assert_eq!(out[1]["manager"], ME);
        assert_eq!(out[1]["operation"], "Apply");
        assert_eq!(
            out[1]["fieldsV1"],
            json!({"f:spec": {"f:clusterVersion": {}, "f:vminsert": {".": {}, "f:replicaCount": {}}}})
        );
    }

    #[test]
    fn merges_into_our_existing_apply_entry_and_drops_emptied_entries() {
        let live = vec![
            json!({"manager": ME, "operation": "Apply", "fieldsType": "FieldsV1",
                   "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:x": {}}}}),
            helm_entry(json!({"f:spec": {"f:y": {}}})),
        ];
        let out = upgrade(
            &live,
            &json!({"y": [1, 2]}),
            ME,
            Takeover::Others,
            "v1beta1",
            "t",
        )
        .unwrap_or_default();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:x": {}, "f:y": {}}})
        );
    }

    #[test]
    fn nothing_to_move_is_none() {
        let status_update = json!({"manager": "vm-operator", "operation": "Update", "subresource": "status",
                                   "fieldsV1": {"f:spec": {"f:x": {}}}});
        let our_apply =
            json!({"manager": ME, "operation": "Apply", "fieldsV1": {"f:spec": {"f:x": {}}}});
        let other_fields = helm_entry(json!({"f:spec": {"f:z": {}}}));
        assert_eq!(
            upgrade(
                &[status_update, our_apply, other_fields],
                &json!({"x": 1}),
                ME,
                Takeover::OthersAndOurCreation,
                "v",
                "t"
            ),
            None
        );
    }

    /// What a POST of ours records: every field of the object as created.
    fn our_creation() -> Value {
        json!({"manager": ME, "operation": "Update", "apiVersion": "operator.victoriametrics.com/v1beta1",
        "fieldsType": "FieldsV1", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:operator.victoriametrics.com/vmdistributed": {}}},
            "f:spec": {
                "f:extraArgs": {".": {}, "f:a": {}, "f:b": {}},
                "f:unauthorizedUserAccessSpec": {".": {}, "f:targetRefs": {}},
                "f:vminsert": {".": {}, "f:replicaCount": {}}
            }}})
    }

    #[test]
    fn every_spec_field_of_our_creation_moves_so_the_apply_can_remove_it() {
        let live = vec![our_creation(), helm_entry(json!({"f:spec": {"f:y": {}}}))];
        // The intent no longer sends `b`, the unauthorized access or vminsert's count.
        let intent = json!({"extraArgs": {"a": "1"}, "vminsert": {}});
        let out = upgrade(
            &live,
            &intent,
            ME,
            Takeover::OthersAndOurCreation,
            "v1beta1",
            "t",
        )
        .unwrap_or_default();
        assert_eq!(out.len(), 3, "{out:?}");
        // The creation keeps its metadata (labels are not part of the move) and loses `spec`.
        assert_eq!(out[0]["operation"], "Update");
        assert_eq!(
            out[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:operator.victoriametrics.com/vmdistributed": {}}}})
        );
        // Another manager's field the intent does not set stays its own.
        assert_eq!(out[1]["fieldsV1"], json!({"f:spec": {"f:y": {}}}));
        assert_eq!(out[2]["operation"], "Apply");
        assert_eq!(
            out[2]["fieldsV1"],
            our_creation()["fieldsV1"]["f:spec"]
                .as_object()
                .map(|spec| json!({"f:spec": spec}))
                .unwrap_or_default()
        );
    }

    #[test]
    fn our_creation_stays_with_a_child_this_cr_did_not_create() {
        let live = vec![our_creation()];
        assert_eq!(
            upgrade(
                &live,
                &json!({"extraArgs": {"a": "1"}}),
                ME,
                Takeover::Others,
                "v",
                "t"
            ),
            None
        );
    }

    #[test]
    fn the_cache_keeps_our_creation_and_others_updates_of_spec_only() {
        let entry = |value: Value| -> ManagedFieldsEntry {
            serde_json::from_value(value).unwrap_or_default()
        };
        assert!(may_need_upgrade(&entry(our_creation())));
        assert!(may_need_upgrade(&entry(helm_entry(
            json!({"f:spec": {"f:y": {}}})
        ))));
        assert!(!may_need_upgrade(&entry(helm_entry(
            json!({"f:metadata": {"f:labels": {}}})
        ))));
        assert!(!may_need_upgrade(&entry(
            json!({"manager": ME, "operation": "Apply",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}})
        )));
        assert!(!may_need_upgrade(&entry(
            json!({"manager": "vm-operator", "operation": "Update",
            "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}})
        )));
    }
}
