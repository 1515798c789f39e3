//! The spec-hash annotation: a stable hash of an intent's spec.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the canonical JSON of `spec` (object keys sorted at every level, no
/// whitespace). Canonical so that the hash never depends on map iteration order or on serde
/// features elsewhere in the dependency graph: a changed hash must mean a changed intent, or
/// every zone would roll for nothing.
///
/// Only the spec is hashed, not labels or owner references: toggling `retain` must not roll
/// every zone.
#[must_use]
pub fn spec_hash(spec: &Value) -> String {
    let mut text = String::new();
    write_canonical(spec, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
