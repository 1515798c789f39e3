//! Strict decoding of a `VMDistributed` with the field path of the first problem.

use serde::de::DeserializeOwned;
use serde_json::Value;

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
