//! Properties of the deep merge (docs/api.md "Merge rules"): an empty side is the identity, the
//! zone side wins, and `$patch` directives never reach the result.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shared::merge::deep_merge;

/// Arbitrary JSON without nulls in objects and without `$patch` keys: the inputs for which the
/// merge is a plain overlay.
fn plain_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z%]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Arbitrary JSON that may contain nulls and `$patch` directives anywhere.
fn json_with_directives() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![Just("delete"), Just("replace"), Just("merge"), Just("x")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("$patch".to_owned()), "[a-c]{1}"],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn has_patch_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("$patch") || map.values().any(has_patch_key),
        Value::Array(items) => items.iter().any(has_patch_key),
        _ => false,
    }
}

proptest! {
    #[test]
    fn empty_overlay_is_identity(base in plain_json()) {
        let base = json!({"spec": base});
        prop_assert_eq!(deep_merge(&base, &json!({})), base);
    }

    #[test]
    fn empty_base_is_identity(overlay in plain_json()) {
        let overlay = json!({"spec": overlay});
        prop_assert_eq!(deep_merge(&json!({}), &overlay), overlay);
    }

    #[test]
    fn merging_with_itself_is_identity(value in plain_json()) {
        prop_assert_eq!(deep_merge(&value, &value), value);
    }

    #[test]
    fn overlay_values_win(base in plain_json(), overlay in plain_json()) {
        let merged = deep_merge(&base, &overlay);
        match (&base, &overlay) {
            (Value::Object(_), Value::Object(over)) => {
                let merged = merged.as_object().expect("object over object is an object");
                for (key, value) in over {
                    if !value.is_object() {
                        prop_assert_eq!(merged.get(key), Some(value));
                    }
                }
            }
            _ => prop_assert_eq!(merged, overlay),
        }
    }

    #[test]
    fn directives_never_reach_the_result(base in json_with_directives(), overlay in json_with_directives()) {
        let merged = deep_merge(&base, &overlay);
        prop_assert!(!has_patch_key(&merged), "{merged}");
    }
}
