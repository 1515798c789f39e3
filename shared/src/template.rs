//! Structural `%ZONE%` templating (docs/api.md "`%ZONE%` templating").
//!
//! The placeholder is replaced inside string values and object keys of a JSON tree, never by
//! editing serialized JSON text: a zone name can therefore never break the document's structure,
//! and numbers, booleans and nulls are never touched.

use serde_json::{Map, Value};

use crate::api::ZONE_PLACEHOLDER;

/// Replace every `%ZONE%` in `text` with `zone`.
///
/// Returns `text` unchanged (as a new `String`) when it holds no placeholder.
#[must_use]
pub(crate) fn replace_zone_str(text: &str, zone: &str) -> String {
    if text.contains(ZONE_PLACEHOLDER) {
        text.replace(ZONE_PLACEHOLDER, zone)
    } else {
        text.to_owned()
    }
}

/// A copy of `value` with every `%ZONE%` in string values and object keys replaced by `zone`.
///
/// Lists are walked element by element; numbers, booleans and nulls are copied as they are.
/// When two keys of one object become equal after replacement (for example `"a-%ZONE%"` and
/// `"a-x"` with zone `x`), the key that came from the template wins, because the template is
/// what the user wrote for this zone.
#[must_use]
pub fn replace_zone(value: &Value, zone: &str) -> Value {
    match value {
        Value::String(text) => Value::String(replace_zone_str(text, zone)),
        Value::Array(items) => Value::Array(items.iter().map(|v| replace_zone(v, zone)).collect()),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            // Plain keys first, templated keys second, so a templated key wins a collision.
            for (key, item) in map.iter().filter(|(k, _)| !k.contains(ZONE_PLACEHOLDER)) {
                out.insert(key.clone(), replace_zone(item, zone));
            }
            for (key, item) in map.iter().filter(|(k, _)| k.contains(ZONE_PLACEHOLDER)) {
                out.insert(
                    key.replace(ZONE_PLACEHOLDER, zone),
                    replace_zone(item, zone),
                );
            }
            Value::Object(out)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    }
}

/// Whether `%ZONE%` occurs in any string value or object key of `value`.
#[must_use]
pub fn contains_placeholder(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains(ZONE_PLACEHOLDER),
        Value::Array(items) => items.iter().any(contains_placeholder),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains(ZONE_PLACEHOLDER) || contains_placeholder(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Every place where `%ZONE%` occurs in `value`, as field paths relative to `base`
/// (for example
/// `spec.zones[0].vmcluster.spec.vminsert.nodeSelector["topology.kubernetes.io/zone"]`).
///
/// A key that contains the placeholder is reported at the path of that key. Used by validation to
/// reject `%ZONE%` where it would never be replaced.
#[must_use]
pub(crate) fn placeholder_paths(value: &Value, base: &str) -> Vec<String> {
    let mut found = Vec::new();
    collect_placeholder_paths(value, base, &mut found);
    found
}

fn collect_placeholder_paths(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::String(text) if text.contains(ZONE_PLACEHOLDER) => found.push(path.to_owned()),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_placeholder_paths(item, &format!("{path}[{index}]"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = crate::path::child(path, key);
                if key.contains(ZONE_PLACEHOLDER) {
                    found.push(child);
                } else {
                    collect_placeholder_paths(item, &child, found);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_in_strings_and_keys_only() {
        let template = json!({
            "nodeSelector": {"topology.kubernetes.io/zone": "%ZONE%"},
            "labels-%ZONE%": ["a-%ZONE%-b", 1, true, null],
            "count": 3
        });
        assert_eq!(
            replace_zone(&template, "us-east-1a"),
            json!({
                "nodeSelector": {"topology.kubernetes.io/zone": "us-east-1a"},
                "labels-us-east-1a": ["a-us-east-1a-b", 1, true, null],
                "count": 3
            })
        );
    }

    #[test]
    fn zone_names_with_json_metacharacters_stay_structural() {
        let out = replace_zone(&json!({"a": "%ZONE%"}), "\"},{\"x\":1");
        assert_eq!(out, json!({"a": "\"},{\"x\":1"}));
    }

    #[test]
    fn templated_key_wins_a_collision() {
        let out = replace_zone(&json!({"a-%ZONE%": 1, "a-x": 2}), "x");
        assert_eq!(out, json!({"a-x": 1}));
    }

    #[test]
    fn detects_placeholders_anywhere() {
        assert!(!contains_placeholder(&json!({"a": [1, "b"], "c": null})));
        assert!(contains_placeholder(&json!({"a": [1, "%ZONE%"]})));
        assert!(contains_placeholder(&json!({"a": {"%ZONE%": 1}})));
        assert!(contains_placeholder(&json!("x%ZONE%")));
        assert!(!contains_placeholder(&json!("%zone%")));
    }

    #[test]
    fn reports_placeholder_paths() {
        let value = json!({
            "vminsert": {"nodeSelector": {"topology.kubernetes.io/zone": "%ZONE%"}},
            "args": ["ok", "x-%ZONE%"],
            "k-%ZONE%": {"deep": "%ZONE%"}
        });
        let mut paths = placeholder_paths(&value, "spec.zones[0].vmcluster.spec");
        paths.sort();
        assert_eq!(
            paths,
            [
                "spec.zones[0].vmcluster.spec.args[1]",
                "spec.zones[0].vmcluster.spec.k-%ZONE%",
                "spec.zones[0].vmcluster.spec.vminsert.nodeSelector[\"topology.kubernetes.io/zone\"]",
            ]
        );
    }
}
