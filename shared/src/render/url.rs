//! Remote-write URLs of a zone's backend, with the VictoriaMetrics operator's semantics
//! (docs/rollout.md "Routing"): the Service name, port, scheme and path prefix the operator gives
//! the backend.

use serde_json::Value;

use crate::names::ChildKind;

/// vminsert's default HTTP port.
pub(crate) const VMINSERT_DEFAULT_PORT: &str = "8480";
/// VMSingle's default HTTP port.
pub(crate) const VMSINGLE_DEFAULT_PORT: &str = "8428";

/// The URL every agent writes to for a backend of `kind` named `name` in `namespace`, whose
/// (live or intended) spec is `spec`:
/// - `VMCluster`: `http(s)://<svc>.<ns>.svc:<port>[<prefix>]/insert/multitenant/prometheus/api/v1/write`
///   where `<svc>` is `vminsert-<name>` (`<name>-vminsert` with `useLegacyNaming: true`), the
///   port is `vminsert.port` (string or number) or 8480, the scheme is https when
///   `vminsert.extraArgs.tls` is `"true"`, and the prefix is `vminsert.extraArgs["http.pathPrefix"]`;
/// - `VMSingle`: `http(s)://vmsingle-<name>.<ns>.svc:<port or 8428>[<prefix>]/api/v1/write`
///   from the top-level `port` and `extraArgs`.
///
/// With `serviceSpec.useAsDefault: true` the operator applies the service spec to the main
/// Service, so its port named `http`, when present, is the port to use.
#[must_use]
pub fn remote_write_url(kind: ChildKind, name: &str, namespace: &str, spec: &Value) -> String {
    match kind {
        ChildKind::VMSingle => {
            let base = base_url(
                &format!("vmsingle-{name}"),
                namespace,
                spec,
                VMSINGLE_DEFAULT_PORT,
            );
            format!("{base}/api/v1/write")
        }
        _ => {
            let legacy = spec
                .get("useLegacyNaming")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let service = if legacy {
                format!("{name}-vminsert")
            } else {
                format!("vminsert-{name}")
            };
            let vminsert = spec.get("vminsert").unwrap_or(&Value::Null);
            let base = base_url(&service, namespace, vminsert, VMINSERT_DEFAULT_PORT);
            format!("{base}/insert/multitenant/prometheus/api/v1/write")
        }
    }
}

/// Whether `url` addresses the backend of `kind` named `name` in `namespace`, at any port,
/// scheme or path: its host is one of the Service names the VictoriaMetrics operator gives that
/// backend (`vminsert-<name>` or, with `useLegacyNaming`, `<name>-vminsert`; `vmsingle-<name>`).
/// An agent entry that does is a URL of that backend, current or from before a change that
/// moved it.
#[must_use]
pub(crate) fn addresses_backend(url: &str, kind: ChildKind, name: &str, namespace: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', ':', '?']).next().unwrap_or_default();
    let services = match kind {
        ChildKind::VMSingle => vec![format!("vmsingle-{name}")],
        _ => vec![format!("vminsert-{name}"), format!("{name}-vminsert")],
    };
    services
        .iter()
        .any(|service| host == format!("{service}.{namespace}.svc"))
}

/// `scheme://service.ns.svc:port[prefix]` for a component spec holding `port`, `extraArgs` and
/// `serviceSpec`.
fn base_url(service: &str, namespace: &str, component: &Value, default_port: &str) -> String {
    let extra_args = component.get("extraArgs");
    let arg = |key: &str| extra_args.and_then(|a| a.get(key)).and_then(scalar_text);
    let scheme = if arg("tls").as_deref() == Some("true") {
        "https"
    } else {
        "http"
    };
    let mut port = component
        .get("port")
        .and_then(scalar_text)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default_port.to_owned());
    if let Some(service_spec) = component.get("serviceSpec")
        && service_spec.get("useAsDefault").and_then(Value::as_bool) == Some(true)
        && let Some(http_port) = service_spec
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some("http"))
            })
            .and_then(|p| p.get("port"))
            .and_then(scalar_text)
    {
        port = http_port;
    }
    let prefix = arg("http.pathPrefix")
        .map(|p| normalize_prefix(&p))
        .unwrap_or_default();
    format!("{scheme}://{service}.{namespace}.svc:{port}{prefix}")
}

/// `/prefix` without a trailing slash (`""` for `/` or empty), as Go's `path.Join` would leave
/// it in front of the API path.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// A string, or a number written without quotes (users write `port: 8480`).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
