//! The JSON deep merge of a zone's settings over the `zoneCommon` template (docs/api.md "Merge
//! rules").
//!
//! Objects merge key by key; lists and scalars from the overlay (zone) side replace the base
//! (common) value. A zone can delete a common key three ways:
//! - `key: null` (an explicit null; client-side `kubectl apply` strips nulls before storing, so
//!   the documented form is the next one),
//! - `key: {$patch: delete}` (the strategic-merge-patch directive known from kustomize),
//!
//! and `key: {$patch: replace, ...}` replaces the common object with the rest of the zone's object
//! instead of merging into it. `{$patch: merge}` is the explicit form of the default.
//!
//! Directives never reach the result: every `$patch` key is stripped from both sides, also where
//! the other side has nothing to merge with, and also inside lists (an element that is
//! `{$patch: delete}` is dropped from the list). Object keys whose value is null are dropped from
//! both sides too, so the result is exactly what a rendered child should contain.

use serde_json::{Map, Value};

/// The strategic-merge-patch directive key.
pub(crate) const PATCH_KEY: &str = "$patch";

/// What a `$patch` directive on an object asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    /// No directive, or `$patch: merge`: merge key by key.
    Merge,
    /// `$patch: delete`: remove the key that holds this object.
    Delete,
    /// `$patch: replace`: use this object (without `$patch`) instead of merging.
    Replace,
}

/// The directive of `object`. Unknown `$patch` values count as [`Directive::Merge`]; validation
/// rejects them (see [`directive_value_is_known`]).
#[must_use]
pub(crate) fn directive(object: &Map<String, Value>) -> Directive {
    match object.get(PATCH_KEY).and_then(Value::as_str) {
        Some("delete") => Directive::Delete,
        Some("replace") => Directive::Replace,
        _ => Directive::Merge,
    }
}

/// Whether a `$patch` value is one this merge understands (`delete`, `replace`, `merge`).
#[must_use]
pub(crate) fn directive_value_is_known(value: &Value) -> bool {
    matches!(value.as_str(), Some("delete" | "replace" | "merge"))
}

/// Merge `overlay` over `base` (docs/api.md "Merge rules").
///
/// Returns [`Value::Null`] when the overlay deletes the whole value (`null` or
/// `{$patch: delete}` at the top); callers treat that as "nothing". Neither input is modified.
#[must_use]
pub fn deep_merge(base: &Value, overlay: &Value) -> Value {
    merge_value(Some(base), overlay).unwrap_or(Value::Null)
}

/// `value` with every directive applied against an empty base: `$patch` keys stripped,
/// `{$patch: delete}` objects and null object members removed. Returns `None` when `value`
/// itself is deleted.
#[must_use]
pub(crate) fn normalize(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => match directive(map) {
            Directive::Delete => None,
            Directive::Merge | Directive::Replace => Some(Value::Object(normalize_members(map))),
        },
        Value::Array(items) => Some(normalize_list(items)),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(value.clone()),
    }
}

/// The merged value, or `None` when the overlay deletes it.
fn merge_value(base: Option<&Value>, overlay: &Value) -> Option<Value> {
    let Value::Object(over) = overlay else {
        // Lists and scalars replace; null deletes.
        return normalize(overlay);
    };
    match (directive(over), base) {
        (Directive::Delete, _) => None,
        (Directive::Merge, Some(Value::Object(base))) => {
            let mut out = Map::with_capacity(base.len().max(over.len()));
            for (key, base_item) in base {
                if key == PATCH_KEY || over.contains_key(key) {
                    continue;
                }
                if let Some(item) = normalize(base_item) {
                    out.insert(key.clone(), item);
                }
            }
            for (key, over_item) in over {
                if key == PATCH_KEY {
                    continue;
                }
                if let Some(item) = merge_value(base.get(key), over_item) {
                    out.insert(key.clone(), item);
                }
            }
            Some(Value::Object(out))
        }
        // Replace, or nothing object-shaped to merge into: the overlay stands alone.
        _ => Some(Value::Object(normalize_members(over))),
    }
}

fn normalize_members(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(key, _)| *key != PATCH_KEY)
        .filter_map(|(key, item)| normalize(item).map(|item| (key.clone(), item)))
        .collect()
}

fn normalize_list(items: &[Value]) -> Value {
    Value::Array(
        items
            .iter()
            .filter_map(|item| match item {
                // A null list element is data, not a deletion.
                Value::Null => Some(Value::Null),
                _ => normalize(item),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_merge_lists_and_scalars_replace() {
        let base = json!({"a": {"x": 1, "y": 2}, "l": [1, 2], "s": "base"});
        let over = json!({"a": {"y": 3, "z": 4}, "l": [3], "s": "zone"});
        assert_eq!(
            deep_merge(&base, &over),
            json!({"a": {"x": 1, "y": 3, "z": 4}, "l": [3], "s": "zone"})
        );
    }

    #[test]
    fn null_and_delete_directive_remove_keys() {
        let base = json!({"vminsert": {"nodeSelector": {"zone": "a"}, "replicaCount": 2}, "x": 1});
        let over = json!({"vminsert": {"nodeSelector": {"$patch": "delete"}}, "x": null});
        assert_eq!(
            deep_merge(&base, &over),
            json!({"vminsert": {"replicaCount": 2}})
        );
    }

    #[test]
    fn replace_directive_replaces_the_object() {
        let base = json!({"resources": {"limits": {"cpu": 1}, "requests": {"cpu": 1}}});
        let over = json!({"resources": {"$patch": "replace", "limits": {"cpu": 2}}});
        assert_eq!(
            deep_merge(&base, &over),
            json!({"resources": {"limits": {"cpu": 2}}})
        );
    }

    #[test]
    fn directives_are_stripped_where_the_base_has_nothing() {
        let over = json!({
            "gone": {"$patch": "delete"},
            "new": {"$patch": "replace", "a": {"$patch": "merge", "b": null, "c": 1}},
            "list": [{"$patch": "delete"}, {"$patch": "replace", "k": 1}, null]
        });
        assert_eq!(
            deep_merge(&json!({}), &over),
            json!({"new": {"a": {"c": 1}}, "list": [{"k": 1}, null]})
        );
        assert_eq!(
            deep_merge(&over, &json!({})),
            json!({"new": {"a": {"c": 1}}, "list": [{"k": 1}, null]})
        );
    }

    #[test]
    fn scalar_over_object_and_object_over_scalar_replace() {
        assert_eq!(
            deep_merge(&json!({"a": {"b": 1}}), &json!({"a": 5})),
            json!({"a": 5})
        );
        assert_eq!(
            deep_merge(&json!({"a": 5}), &json!({"a": {"b": 1}})),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn deleting_the_whole_value_gives_null() {
        assert_eq!(
            deep_merge(&json!({"a": 1}), &json!({"$patch": "delete"})),
            Value::Null
        );
        assert_eq!(deep_merge(&json!({"a": 1}), &Value::Null), Value::Null);
    }
}
