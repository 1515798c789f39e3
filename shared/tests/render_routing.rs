//! The VMAuth routing the rendered target refs produce, judged with vmauth's own rules: a
//! request goes to the first `url_map` entry whose `src_paths` match its path **fully**
//! (vmauth anchors each regex as `^(?:...)$`), and the VictoriaMetrics operator emits the
//! entries in the order of the `targetRefs` that name them (a `VMUser`'s, or
//! `unauthorizedUserAccessSpec.targetRefs`). The user chooses that order, so both must route
//! every write to the agents (which replicate it to every zone) and never to one backend.

use regex::Regex;
use serde_json::{Value, json};
use shared::VMDistributed;
use shared::model::Membership;
use shared::model::Observed;
use shared::render::render_vmauth;

fn cr(backend: &str) -> VMDistributed {
    serde_json::from_value(json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid"},
        "spec": {"backendType": backend, "zones": [{"name": "a"}, {"name": "b"}]}
    }))
    .expect("valid CR")
}

/// The rendered `write` and `read` target refs, every zone a member.
fn target_refs(backend: &str) -> Vec<Value> {
    let every: std::collections::BTreeSet<String> = ["a", "b"].map(String::from).into();
    let membership = Membership {
        write: every.clone(),
        read: every,
    };
    let auth = render_vmauth(&cr(backend), &Observed::default(), &membership).expect("enabled");
    auth.spec["defaultTargetRefs"]
        .as_array()
        .expect("a list")
        .clone()
}

/// The refs named in `order`, as a `targetRefs: [{name: ...}]` list would reference them.
fn in_order<'a>(refs: &'a [Value], order: &[&str]) -> Vec<&'a Value> {
    order
        .iter()
        .map(|name| {
            refs.iter()
                .find(|r| r["name"] == json!(name))
                .unwrap_or_else(|| panic!("no target ref named {name}"))
        })
        .collect()
}

/// vmauth's choice for `path`: the name of the first entry with a fully matching `src_paths`.
fn route<'a>(entries: &[&'a Value], path: &str) -> Option<&'a str> {
    entries.iter().find_map(|entry| {
        let paths = entry["paths"].as_array().expect("paths");
        paths
            .iter()
            .map(|p| {
                let p = p.as_str().expect("a string");
                Regex::new(&format!("^(?:{p})$")).unwrap_or_else(|e| panic!("{p}: {e}"))
            })
            .any(|re| re.is_match(path))
            .then(|| entry["name"].as_str().expect("a name"))
    })
}

/// Write and ingestion endpoints of single-node VictoriaMetrics (its vminsert handlers), plus
/// the agents' multitenant write path and the destructive admin endpoints: none of them may
/// reach a single backend through `read`.
const NOT_READS: &[&str] = &[
    "/api/v1/write",
    "/prometheus/api/v1/write",
    "/api/v1/push",
    "/prometheus/api/v1/push",
    "/api/v1/import",
    "/prometheus/api/v1/import",
    "/api/v1/import/csv",
    "/api/v1/import/native",
    "/api/v1/import/prometheus",
    "/prometheus/api/v1/import/prometheus",
    "/api/v1/import/prometheus/metrics/job/j/instance/i",
    "/influx/write",
    "/influx/api/v2/write",
    "/write",
    "/api/v2/write",
    "/opentelemetry/v1/metrics",
    "/opentelemetry/api/v1/push",
    "/datadog/api/v2/series",
    "/newrelic/infra/v2/metrics/events/bulk",
    "/insert/0/prometheus/api/v1/write",
    "/insert/multitenant/prometheus/api/v1/import",
    "/api/v1/admin/tsdb/delete_series",
    "/api/v1/admin/status/metric_names_stats/reset",
    "/tags/tagSeries",
    "/tags/delSeries",
];

/// Read endpoints of single-node VictoriaMetrics (its vmselect handlers, with and without the
/// `/prometheus` prefix), plus `/flags` and `/metrics` as the upstream operator routes them.
const VMSINGLE_READS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/prometheus/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/series/count",
    "/api/v1/labels",
    "/api/v1/label/job/values",
    "/prometheus/api/v1/label/__name__/values",
    "/api/v1/metadata",
    "/api/v1/export",
    "/api/v1/export/csv",
    "/api/v1/export/native",
    "/api/v1/status/tsdb",
    "/api/v1/status/buildinfo",
    "/api/v1/status/active_queries",
    "/api/v1/status/top_queries",
    "/api/v1/status/metric_names_stats",
    "/api/v1/rules",
    "/api/v1/alerts",
    "/federate",
    "/prometheus/federate",
    "/vmui/",
    "/flags",
    "/metrics",
];

const ORDERS: [[&str; 2]; 2] = [["write", "read"], ["read", "write"]];

#[test]
fn vmsingle_writes_never_reach_one_backend_in_either_order() {
    let refs = target_refs("VMSingle");
    for order in ORDERS {
        let entries = in_order(&refs, &order);
        for path in NOT_READS {
            assert_ne!(
                route(&entries, path),
                Some("read"),
                "{path} goes to one VMSingle with targetRefs {order:?}"
            );
        }
        for path in [
            "/api/v1/write",
            "/insert/0/prometheus/api/v1/write",
            "/insert/multitenant/prometheus/api/v1/import",
        ] {
            assert_eq!(
                route(&entries, path),
                Some("write"),
                "{path} with targetRefs {order:?}"
            );
        }
    }
}

#[test]
fn vmsingle_reads_reach_the_backends_in_either_order() {
    let refs = target_refs("VMSingle");
    for order in ORDERS {
        let entries = in_order(&refs, &order);
        for path in VMSINGLE_READS {
            assert_eq!(
                route(&entries, path),
                Some("read"),
                "{path} with targetRefs {order:?}"
            );
        }
    }
}

#[test]
fn vmcluster_routes_writes_to_agents_and_reads_to_vmselect_in_either_order() {
    let refs = target_refs("VMCluster");
    for order in ORDERS {
        let entries = in_order(&refs, &order);
        for path in NOT_READS {
            assert_ne!(
                route(&entries, path),
                Some("read"),
                "{path} with targetRefs {order:?}"
            );
        }
        for (path, target) in [
            ("/api/v1/write", "write"),
            ("/insert/0/prometheus/api/v1/write", "write"),
            ("/select/0/prometheus/api/v1/query", "read"),
            ("/select/multitenant/prometheus/api/v1/query_range", "read"),
            ("/admin/tenants", "read"),
            ("/flags", "read"),
            ("/metrics", "read"),
        ] {
            assert_eq!(
                route(&entries, path),
                Some(target),
                "{path} with targetRefs {order:?}"
            );
        }
    }
}
