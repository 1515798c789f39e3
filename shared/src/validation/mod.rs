//! Validation of a `VMDistributed` (docs/api.md "Validation summary"): every rule, all errors at
//! once, each with the field path it is about and a message a user can act on; warnings separately.
//!
//! The same code runs in the validating webhook, in `vmdistributed-webhook check`, and in the
//! controller (an object that bypassed the webhook gets `Ready=False, InvalidSpec`).
//!
//! Rules (errors unless noted):
//! - `metadata.name` is set and at most 63 characters (it is a label value on every child);
//! - `spec.zones` has at least one zone and at most [`MAX_ZONES`]; over the limit nothing
//!   else is checked (the other rules' work grows with the zones);
//! - each zone name is a DNS-1123 label, unique;
//! - every resolved child name ([`crate::names`]) is a DNS-1123 label within the length limit of
//!   its kind (`dns::name_limit`: VMCluster 42, VMAgent 42, VMSingle 54, VMAuth 56);
//! - no two zones resolve to the same child of one kind; a `zoneCommon.<kind>.name` without
//!   `%ZONE%` shared by several zones is reported once, asking for `%ZONE%`;
//! - `name` and `ref` are not both set; `ref.name` is not empty; `ref.namespace`, when given,
//!   equals the object's namespace (`cross-namespace reference: ...`);
//! - `%ZONE%` appears only in `zoneCommon.{vmcluster,vmsingle,vmagent}.{name,spec}` and
//!   `zoneCommon.remoteWrite`, where it is replaced; anywhere else it is an error;
//! - free-form objects (`spec`, `remoteWrite`) are objects, and their `$patch` directives are
//!   `delete`, `replace` or `merge`;
//! - `zoneCommon.readyTimeout` parses and is at least 1s; `zoneCommon.updatePause` parses and is
//!   not negative; `license.reloadInterval` parses;
//! - VMSingle settings with `backendType: VMCluster` and VMCluster settings with
//!   `backendType: VMSingle` are errors;
//! - a VMCluster this object would create (no `ref`) has `vminsert` and `vmselect` in its merged
//!   spec; a merged spec with none of `vminsert`, `vmselect`, `vmstorage` (or an empty VMSingle
//!   spec) is adoption by name: a **warning** that the object must already exist;
//! - a single-zone object gets a **warning**;
//! - a ref listed before `write` in `vmauth.spec.unauthorizedUserAccessSpec.targetRefs` that is
//!   `read` or whose paths take writes gets a **warning** (vmauth routes to the first match);
//! - a child kind whose version some zone leaves to the VictoriaMetrics operator's default gets
//!   a **warning** naming those zones and the version the controller pins instead;
//! - on UPDATE ([`validate`] with `old`): `backendType` cannot change; a zone in both objects
//!   keeps its resolved child names unless the annotation [`ALLOW_RENAME_ANNOTATION`] is `"true"`;
//!   a removed zone gets a **warning** naming the children released or deleted; the controller
//!   ([`validate_stored`]) judges `backendType` and renames against the children this object
//!   claims and `status.zones[]` instead;
//! - on UPDATE, an object whose `spec` equals the old `spec`, or that has a
//!   `metadata.deletionTimestamp`, is not validated at all (metadata and finalizer changes must
//!   never be blocked).

mod dns;
mod pinning;
mod routing;
mod rules;
mod update;

use serde_json::Value;

use crate::api::{GROUP, KIND, MAX_ZONES, VERSION, VMDistributed};
use crate::children::ChildObject;
use crate::parse::{strict, strict_cr};

/// Annotation on a `VMDistributed` that lifts the rename check on UPDATE when set to `"true"`.
pub const ALLOW_RENAME_ANNOTATION: &str = "operator.victoriametrics.com/allow-rename";

/// Annotation on a `VMDistributed` that skips the persistent-queue drain when set to `"true"`
/// (docs/rollout.md "Persistent-queue drain"): what the queues hold may then be lost.
pub(crate) const SKIP_DRAIN_ANNOTATION: &str = "operator.victoriametrics.com/skip-drain";

/// One validation error: where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Field path in `spec.zones[1].name` form (`.` for the document root).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The outcome of validating one object: errors deny it, warnings are shown but allow it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every error found, in a stable order (object structure order).
    pub errors: Vec<FieldError>,
    /// Warnings for the user (admission `warnings`, `check` output); each is self-contained and
    /// names the field it is about.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether the object is acceptable (no errors; warnings do not count).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors on one line, `; `-separated (for a condition message or an admission denial).
    #[must_use]
    pub fn error_summary(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

/// Validate a decoded object; `old` is the stored object on UPDATE, `None` on CREATE (and in the
/// controller and `check`).
///
/// On UPDATE, an object whose `spec` equals `old.spec` or that has a `deletionTimestamp` is
/// accepted without validation. Defaults need not have been applied: absent fields count as
/// their defaults.
#[must_use]
pub fn validate(cr: &VMDistributed, old: Option<&VMDistributed>) -> Report {
    if let Some(old) = old
        && (cr.spec == old.spec || cr.metadata.deletion_timestamp.is_some())
    {
        return Report::default();
    }
    let mut report = Report::default();
    if cr.spec.zones.len() > MAX_ZONES {
        report.error(
            "spec.zones",
            format!(
                "at most {MAX_ZONES} zones are supported, got {} (every zone's agent writes to \
                 every zone, so the work of each change grows with the square of the zones)",
                cr.spec.zones.len()
            ),
        );
        return report;
    }
    rules::check(cr, &mut report);
    routing::check(cr, &mut report);
    pinning::check(cr, &mut report);
    if let Some(old) = old {
        update::check(cr, old, &mut report);
    }
    report
}

/// Validate `cr` as the controller does: [`validate`] without an old object, plus the UPDATE
/// rules (`backendType`, renames) judged against the stored state, the observed `children`
/// and `status.zones[]` (docs/api.md "Validation summary"), since a change that bypassed the
/// webhook reaches the controller unchecked.
#[must_use]
pub fn validate_stored(cr: &VMDistributed, children: &[ChildObject]) -> Report {
    let mut report = validate(cr, None);
    // Over the zone limit only the limit is reported (see `validate`).
    if cr.spec.zones.len() <= MAX_ZONES {
        update::check_stored(cr, children, &mut report);
    }
    report
}

/// Strictly decode `object` (and `old`, the stored object on UPDATE) as raw JSON, then
/// [`validate`].
///
/// Decoding problems (unknown fields, wrong types, unknown enum values, wrong `kind` or
/// `apiVersion`) become errors with their field path, every one of them ([`strict_cr`]);
/// validation rules then do not run, since they need the typed object. When `old` does not decode,
/// the object is validated as on CREATE and a warning says the UPDATE checks were skipped. The
/// UPDATE short-cut (same `spec`, or a `deletionTimestamp`) is taken before anything is decoded.
#[must_use]
pub fn validate_value(object: &Value, old: Option<&Value>) -> Report {
    if let Some(old) = old
        && (object.get("spec") == old.get("spec") || has_deletion_timestamp(object))
    {
        return Report::default();
    }
    let mut report = Report::default();
    let api_version = format!("{GROUP}/{VERSION}");
    match object.get("kind").and_then(Value::as_str) {
        Some(KIND) => {}
        other => {
            report.error(
                "kind",
                format!("must be {KIND}, got {}", describe(other.map(str::to_owned))),
            );
            return report;
        }
    }
    if object.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_str()) {
        let got = object
            .get("apiVersion")
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        report.error(
            "apiVersion",
            format!("must be {api_version}, got {}", describe(got)),
        );
        return report;
    }
    let cr = match strict_cr(object) {
        Ok(cr) => cr,
        Err(errors) => {
            for err in errors {
                report.error(err.path, err.message);
            }
            return report;
        }
    };
    let old = old.and_then(|old| match strict::<VMDistributed>(old) {
        Ok(old) => Some(old),
        Err(err) => {
            report.warn(format!(
                "the stored object does not decode ({err}); the update checks (rename \
                 protection, backendType immutability, zone removal) were skipped"
            ));
            None
        }
    });
    let inner = validate(&cr, old.as_ref());
    report.errors.extend(inner.errors);
    report.warnings.extend(inner.warnings);
    report
}

fn has_deletion_timestamp(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn describe(value: Option<String>) -> String {
    value.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
}
