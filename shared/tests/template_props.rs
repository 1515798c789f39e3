//! Properties of `%ZONE%` templating (docs/api.md "`%ZONE%` templating"): structural, idempotent
//! once replaced.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shared::template::{contains_placeholder, replace_zone};

fn json_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "(%ZONE%|[a-z\\-\\.\"{}]){0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("(%ZONE%|[a-z]){1,3}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn replacing_leaves_no_placeholder(value in json_tree(), zone in "[a-z0-9\\-]{1,10}") {
        let out = replace_zone(&value, &zone);
        prop_assert!(!contains_placeholder(&out));
        // Idempotent once the placeholder is gone (the zone name holds no placeholder).
        prop_assert_eq!(replace_zone(&out, &zone), out);
    }

    #[test]
    fn values_without_placeholder_are_unchanged(value in json_tree(), zone in "[a-z\"{}]{0,6}") {
        if !contains_placeholder(&value) {
            prop_assert_eq!(replace_zone(&value, &zone), value);
        }
    }

    #[test]
    fn structure_is_preserved(value in json_tree(), zone in "[\"{}\\[\\],:]{1,6}") {
        fn shape(v: &Value) -> String {
            match v {
                Value::Array(items) => format!("[{}]", items.iter().map(shape).collect::<Vec<_>>().join(",")),
                Value::Object(map) => format!("{{{}}}", map.len()),
                Value::String(_) => "s".into(),
                other => other.to_string(),
            }
        }
        // Keys may collide after replacement, so compare objects by at most their size.
        let out = replace_zone(&value, &zone);
        if let (Value::Object(a), Value::Object(b)) = (&value, &out) {
            prop_assert!(b.len() <= a.len());
        } else {
            prop_assert_eq!(shape(&value), shape(&out));
        }
    }
}
