//! Strict decoding of a `VMDistributed`: [`strict`] stops at the first problem, [`strict_cr`]
//! reports every problem of the `spec`, each with its field path.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::VMDistributed;

/// A value that does not decode into the typed API, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    /// Field path in `spec.zones[1].name` form (`.` for the document root).
    pub path: String,
    /// What is wrong, as serde reports it.
    pub message: String,
}

/// Decode `value` into `T`, refusing unknown fields and reporting where decoding failed.
///
/// # Errors
/// [`DecodeError`] naming the field path when the value does not match the typed API.
pub fn strict<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        DecodeError {
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path
            },
            message: err.into_inner().to_string(),
        }
    })
}

/// Decode a `VMDistributed` like [`strict`], but report every type, enum, unknown-field and
/// missing-field problem of its `spec`, not only the first one serde stops at.
///
/// serde decides whether the object decodes; when it does not, the `spec` is walked against
/// the CRD schema generated from the same types (what the API server checks), and the problem
/// serde found is added if the walk did not report one at its path (a problem outside `spec`,
/// in `metadata` for example).
///
/// # Errors
/// Every problem found, each with its field path, in document order.
pub fn strict_cr(value: &Value) -> Result<VMDistributed, Vec<DecodeError>> {
    let first = match strict::<VMDistributed>(value) {
        Ok(cr) => return Ok(cr),
        Err(err) => err,
    };
    let mut errors = Vec::new();
    if let (Some(spec), Some(schema)) = (value.get("spec"), spec_schema()) {
        walk("spec", spec, schema, &mut errors);
    }
    if !errors.iter().any(|e| e.path == first.path) {
        errors.insert(0, first);
    }
    Err(errors)
}

/// The `spec` schema of the generated CRD, built once.
fn spec_schema() -> Option<&'static Value> {
    static SCHEMA: std::sync::OnceLock<Option<Value>> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let crd =
                serde_json::to_value(<VMDistributed as kube::CustomResourceExt>::crd()).ok()?;
            crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
                .cloned()
        })
        .as_ref()
}

/// Check `value` at `path` against a structural `schema` as serde would decode it into the typed
/// API: free-form objects (`x-kubernetes-preserve-unknown-fields`) take anything, and the rules
/// that do not stop decoding (`minItems`) are left to validation.
fn walk(path: &str, value: &Value, schema: &Value, errors: &mut Vec<DecodeError>) {
    let free_form = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if free_form && schema.get("properties").is_none() {
        return;
    }
    if value.is_null() {
        if !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            errors.push(invalid_type(path, value, schema));
        }
        return;
    }
    let type_matches = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        _ => true,
    };
    if !type_matches {
        errors.push(invalid_type(path, value, schema));
        return;
    }
    if let (Some(allowed), Some(text)) =
        (schema.get("enum").and_then(Value::as_array), value.as_str())
        && !allowed.iter().any(|a| a.as_str() == Some(text))
    {
        errors.push(DecodeError {
            path: path.to_owned(),
            message: format!(
                "unknown variant `{text}`, expected one of {}",
                backticked(allowed.iter().filter_map(Value::as_str))
            ),
        });
        return;
    }
    match value {
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), item, item_schema, errors);
                }
            }
        }
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for field in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(field) {
                        errors.push(DecodeError {
                            path: path.to_owned(),
                            message: format!("missing field `{field}`"),
                        });
                    }
                }
            }
            for (key, child) in map {
                let here = crate::path::child(path, key);
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => walk(&here, child, child_schema, errors),
                    None if free_form => {}
                    None => errors.push(DecodeError {
                        path: here,
                        message: format!(
                            "unknown field `{key}`, expected one of {}",
                            backticked(
                                properties
                                    .into_iter()
                                    .flat_map(|p| p.keys())
                                    .map(String::as_str)
                            )
                        ),
                    }),
                }
            }
        }
        _ => {}
    }
}

/// serde's wording: `invalid type: integer `5`, expected a string`.
fn invalid_type(path: &str, value: &Value, schema: &Value) -> DecodeError {
    let found = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    };
    let expected = match schema.get("type").and_then(Value::as_str) {
        Some("object") => "a map",
        Some("array") => "a sequence",
        Some("string") => "a string",
        Some("boolean") => "a boolean",
        Some("integer") => "an integer",
        Some("number") => "a number",
        _ => "a value",
    };
    DecodeError {
        path: path.to_owned(),
        message: format!("invalid type: {found}, expected {expected}"),
    }
}

fn backticked<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
