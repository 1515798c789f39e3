//! The request paths of the VMAuth's two target refs (docs/rollout.md "Routing").
//!
//! vmauth sends a request to the **first** `url_map` entry whose `src_paths` match its whole path
//! (each regex is anchored as `^(?:...)$`), and the VictoriaMetrics operator emits the entries in
//! the order of the `targetRefs` that name the refs: the user's choice. So the `read` paths must
//! not match any write: a write routed through `read` lands in one zone's backend and is never
//! replicated. vmauth's regexes are RE2 (no lookahead), so the read endpoints are listed rather
//! than carved out of a catch-all.

/// `write` (the zones' agents): the agents' multitenant ingestion paths and the Prometheus
/// remote-write path, as the upstream operator routes them.
pub(crate) const WRITE_PATHS: &[&str] = &["/insert/.+", "/api/v1/write"];

/// `read` for `VMCluster` backends (`vmselect`): everything under `/select/`, the tenant list,
/// and vmselect's `/flags` and `/metrics`, as the upstream operator routes them.
pub(crate) const VMCLUSTER_READ_PATHS: &[&str] =
    &["/select/.+", "/admin/tenants", "/flags", "/metrics"];

/// `read` for `VMSingle` backends: the read endpoints of single-node VictoriaMetrics (the handlers
/// of its vmselect part, each also under the `/prometheus` prefix it accepts), its UI, and
/// `/flags` and `/metrics` as the upstream operator adds them.
///
/// Left out on purpose: every ingestion path (`/api/v1/write`, `/api/v1/push`,
/// `/api/v1/import...`, `/influx/...`, `/opentelemetry/...`, `/datadog/...`, ...), which would
/// reach one zone only, and the deleting admin endpoints (`/api/v1/admin/...`), which would
/// change one zone only.
pub const VMSINGLE_READ_PATHS: &[&str] = &[
    "(/prometheus)?/api/v1/(query|query_range|query_exemplars|series|series/count|labels|label/[^/]+/values|metadata)",
    "(/prometheus)?/api/v1/export(/csv|/native)?",
    "(/prometheus)?/api/v1/status/(tsdb|active_queries|top_queries|metric_names_stats|buildinfo)",
    "(/prometheus)?/api/v1/(rules|alerts|notifiers)",
    "(/prometheus)?/federate",
    "/vmui(/.*)?",
    "/flags",
    "/metrics",
];
