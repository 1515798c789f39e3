//! Warnings about the order in which the user routes requests to the VMAuth's target refs
//! (docs/rollout.md "Routing"). vmauth sends a request to the **first** `url_map` entry whose
//! `src_paths` match its whole path, in the order of the `targetRefs` that name the entries; a
//! write that reaches anything but the `write` ref lands in one place and is not replicated to
//! every zone. The order is the user's where they write it: `unauthorizedUserAccessSpec` in
//! `spec.vmauth.spec` (a `VMUser` is another object, outside this check).

use regex::Regex;
use serde_json::Value;

use super::Report;
use crate::api::{VMDistributed, Zone};
use crate::names::ChildKind;
use crate::spec::zone_child_spec;

/// Requests that must reach the `write` ref: what the agents take and replicate.
const WRITE_REQUESTS: &[&str] = &[
    "/api/v1/write",
    "/insert/0/prometheus/api/v1/write",
    "/insert/multitenant/prometheus/api/v1/write",
];

pub(super) fn check(cr: &VMDistributed, report: &mut Report) {
    if cr
        .spec
        .vmauth
        .as_ref()
        .and_then(|a| a.spec.as_ref())
        .is_none()
    {
        return;
    }
    let spec = zone_child_spec(cr, &Zone::default(), ChildKind::VMAuth);
    let Some(refs) = spec
        .pointer("/unauthorizedUserAccessSpec/targetRefs")
        .and_then(Value::as_array)
    else {
        return;
    };
    let name = |entry: &Value| entry.get("name").and_then(Value::as_str).map(str::to_owned);
    let Some(write_at) = refs
        .iter()
        .position(|entry| name(entry).as_deref() == Some("write"))
    else {
        return;
    };
    for (i, entry) in refs[..write_at].iter().enumerate() {
        let field = format!("spec.vmauth.spec.unauthorizedUserAccessSpec.targetRefs[{i}]");
        if name(entry).as_deref() == Some("read") {
            report.warn(format!(
                "{field}: `read` is listed before `write`; vmauth sends a request to the first \
                 listed ref whose paths match it, so list `write` first: the read paths this \
                 controller writes match no write, but with those of earlier versions and of the \
                 upstream operator (VMSingle `/api/v1/.+`) this order sends every write to a \
                 single zone"
            ));
        } else if let Some(request) = first_write_taken(entry) {
            report.warn(format!(
                "{field}: listed before `write`, and its paths match write requests such as \
                 {request}: vmauth sends them here instead of to the zones' agents, so they are \
                 not replicated to every zone; list `write` first or narrow these paths"
            ));
        }
    }
}

/// The first of [`WRITE_REQUESTS`] that `entry` (a target ref that is not a reference to a
/// default ref by name) would take, with the paths the VictoriaMetrics operator gives it.
fn first_write_taken(entry: &Value) -> Option<&'static str> {
    if entry.get("name").is_some() || (entry.get("static").is_none() && entry.get("crd").is_none())
    {
        return None;
    }
    let written: Vec<&str> = entry
        .get("paths")
        .and_then(Value::as_array)
        .map(|paths| paths.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let paths: Vec<&str> = match written.as_slice() {
        // The operator's defaults for a ref without paths, and its reading of `/` and `/*`.
        [] => match entry.pointer("/crd/kind").and_then(Value::as_str) {
            Some("VMCluster/vminsert") => vec!["/insert/.*"],
            Some("VMCluster/vmselect") => vec!["/select/.*", "/admin/.*"],
            _ => vec!["/.*"],
        },
        ["/" | "/*"] => vec!["/.*"],
        _ => written,
    };
    let patterns: Vec<Regex> = paths
        .iter()
        // vmauth anchors every path regex; one that does not compile fails in vmauth itself.
        .filter_map(|p| Regex::new(&format!("^(?:{p})$")).ok())
        .collect();
    WRITE_REQUESTS
        .iter()
        .copied()
        .find(|request| patterns.iter().any(|re| re.is_match(request)))
}
