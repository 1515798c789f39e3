//! Validation never panics: on arbitrary JSON, and on the examples with random parts replaced,
//! removed or duplicated, as CREATE and as UPDATE.

use std::path::PathBuf;
use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shared::VMDistributed;
use shared::defaults::apply_defaults;
use shared::parse::strict;
use shared::validation::validate_value;

static EXAMPLES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    [
        "seed.yaml",
        "distributed-chart.yaml",
        "zone-template.yaml",
        "license.yaml",
        "ref.yaml",
    ]
    .iter()
    .map(|name| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name);
        let text = std::fs::read_to_string(path).expect("example");
        serde_saphyr::from_str(&text).expect("YAML")
    })
    .collect()
});

/// Strings that exercise the rules: placeholders, durations, names of every length, directives.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("%ZONE%".to_owned()),
        Just("vm-%ZONE%".to_owned()),
        Just("5 minutes".to_owned()),
        Just("-1s".to_owned()),
        Just("0".to_owned()),
        Just("1h30m".to_owned()),
        Just("delete".to_owned()),
        Just("replace".to_owned()),
        Just("VMSingle".to_owned()),
        Just("read-only".to_owned()),
        Just("".to_owned()),
        "[a-z][a-z0-9-]{0,70}",
        "\\PC{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$patch".to_owned()),
        Just("name".to_owned()),
        Just("ref".to_owned()),
        Just("spec".to_owned()),
        Just("vminsert".to_owned()),
        Just("vmselect".to_owned()),
        Just("namespace".to_owned()),
        "[a-zA-Z%]{1,8}",
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer inside `value` (not the root).
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    InsertKey(usize, String, Value),
    DuplicateZone(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), arbitrary_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), key(), arbitrary_json())
            .prop_map(|(i, k, v)| Mutation::InsertKey(i, k, v)),
        any::<usize>().prop_map(Mutation::DuplicateZone),
    ]
}

fn mutate(mut value: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        let mut all = Vec::new();
        pointers(&value, "", &mut all);
        if all.is_empty() {
            break;
        }
        match m {
            Mutation::Replace(i, new) => {
                if let Some(slot) = value.pointer_mut(&all[i % all.len()]) {
                    *slot = new.clone();
                }
            }
            Mutation::Remove(i) => {
                let target = &all[i % all.len()];
                let (parent, last) = target.rsplit_once('/').unwrap_or(("", target));
                match value.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(index) = last.parse::<usize>()
                            && index < items.len()
                        {
                            items.remove(index);
                        }
                    }
                    _ => {}
                }
            }
            Mutation::InsertKey(i, k, v) => {
                if let Some(Value::Object(map)) = value.pointer_mut(&all[i % all.len()]) {
                    map.insert(k.clone(), v.clone());
                }
            }
            Mutation::DuplicateZone(i) => {
                if let Some(Value::Array(zones)) = value.pointer_mut("/spec/zones")
                    && !zones.is_empty()
                {
                    let zone = zones[i % zones.len()].clone();
                    zones.push(zone);
                }
            }
        }
    }
    value
}

fn exercise(object: &Value, old: Option<&Value>) {
    let report = validate_value(object, old);
    for error in &report.errors {
        assert!(!error.path.is_empty(), "every error has a path: {error}");
        assert!(
            !error.message.is_empty(),
            "every error has a message: {error}"
        );
    }
    // Whatever decodes can be defaulted, and defaulting does not make a valid new object
    // invalid. (On UPDATE an unchanged spec is accepted unvalidated, so only CREATE counts.)
    if let Ok(cr) = strict::<VMDistributed>(object) {
        let defaulted = apply_defaults(&cr);
        let value = serde_json::to_value(&defaulted).expect("encode");
        if report.is_valid() && old.is_none() {
            let again = validate_value(&value, None);
            assert!(
                again.is_valid(),
                "defaulting made a valid object invalid: {again:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_json(object in arbitrary_json(), old in arbitrary_json()) {
        exercise(&object, None);
        exercise(&object, Some(&old));
    }

    #[test]
    fn never_panics_on_mutated_examples(
        which in 0usize..5,
        mutations in prop::collection::vec(mutation(), 1..6),
        old_mutations in prop::collection::vec(mutation(), 0..3),
    ) {
        let example = EXAMPLES[which].clone();
        let object = mutate(example.clone(), &mutations);
        exercise(&object, None);
        exercise(&object, Some(&example));
        let old = mutate(example, &old_mutations);
        exercise(&object, Some(&old));
    }
}
