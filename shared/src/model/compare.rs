//! "Current" (docs/rollout.md "Definitions"): the live spec contains every field of the intent with
//! the same value.
//!
//! Other controllers (the VictoriaMetrics operator's defaulting webhook, admission plugins) add
//! fields to the objects this project writes; those are not drift. Numbers compare numerically
//! because a number can come back as `1.0` or `1`, and lists compare element by element (same
//! length, each element contains the intent's element) because list order is meaningful in
//! these specs (vmagent queues are named by position).

use serde_json::Value;

/// Whether `live` contains `intent`: every key of an intent object is present in the live
/// object with a containing value, lists have the same length and contain element-wise,
/// numbers are numerically equal, and everything else is equal.
#[must_use]
pub fn contains(live: &Value, intent: &Value) -> bool {
    match (live, intent) {
        (Value::Object(live), Value::Object(intent)) => intent
            .iter()
            .all(|(key, want)| live.get(key).is_some_and(|have| contains(have, want))),
        (Value::Array(live), Value::Array(intent)) => {
            live.len() == intent.len() && live.iter().zip(intent).all(|(l, i)| contains(l, i))
        }
        (Value::Number(live), Value::Number(intent)) => numbers_equal(live, intent),
        (live, intent) => live == intent,
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a == b;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
