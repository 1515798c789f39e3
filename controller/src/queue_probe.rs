//! Polls vmagent pods for what their persistent queues hold ([`shared::model::Action::ProbeQueues`],
//! docs/rollout.md "Persistent-queue drain"): the pods come from the agent Service's
//! EndpointSlices (port `http`, endpoints not marked unready), each answers `GET /metrics`
//! within [`POD_TIMEOUT`], all at once. Reads only; never behind the leader gate's writes.
//!
//! Plain HTTP goes through `HTTP_PROXY` (or `http_proxy`) unless `NO_PROXY` (or `no_proxy`)
//! lists the pod's address, `*`, or a CIDR that holds it, as Go programs such as the VM operator
//! do. Agents that serve HTTPS (`extraArgs.tls`) are reported unreadable.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use shared::queues::{POD_TIMEOUT, PodPage, QueueProbe};

/// A `/metrics` page larger than this is refused rather than read (vmagent's is tens of KiB).
const PAGE_LIMIT: usize = 16 << 20;

/// Finds an agent's pods and reads their queues.
#[derive(Clone)]
pub struct QueueProber {
    client: Client,
    proxy: Option<Proxy>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Proxy {
    /// `host:port` of the proxy.
    address: String,
    /// `NO_PROXY` entries.
    bypass: Vec<String>,
}

impl QueueProber {
    /// A prober with the proxy settings of this process's environment.
    #[must_use]
    pub fn from_env(client: Client) -> Self {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            client,
            proxy: proxy_from(
                var(["HTTP_PROXY", "http_proxy"]).as_deref(),
                var(["NO_PROXY", "no_proxy"]).as_deref(),
            ),
        }
    }

    /// One poll of every ready pod of `probe`'s agent in `namespace`.
    pub async fn poll(&self, namespace: &str, probe: &QueueProbe) -> Vec<PodPage> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!("kubernetes.io/service-name={}", probe.service);
        let listed = match slices.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(err) => {
                return vec![PodPage {
                    pod: format!("(EndpointSlices of Service {})", probe.service),
                    page: Err(format!("cannot list them: {err}")),
                }];
            }
        };
        let pods = ready_pods(&listed);
        join_all(pods.into_iter().map(|(address, (pod, port))| async move {
            let page = if probe.scheme == "http" {
                self.get(&address, port, &probe.path).await
            } else {
                Err(format!(
                    "the agent serves {}; the drain reads plain HTTP only",
                    probe.scheme
                ))
            };
            PodPage { pod, page }
        }))
        .await
    }

    async fn get(&self, address: &str, port: i32, path: &str) -> Result<String, String> {
        let host = host_port(address, port);
        let via = self
            .proxy
            .as_ref()
            .filter(|proxy| !bypassed(&proxy.bypass, address));
        let (connect, uri) = match via {
            Some(proxy) => (proxy.address.clone(), format!("http://{host}{path}")),
            None => (host.clone(), path.to_owned()),
        };
        let request = async {
            let stream = tokio::net::TcpStream::connect(&connect)
                .await
                .map_err(|e| format!("connecting to {connect}: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = hyper::Request::get(uri)
                .header(hyper::header::HOST, &host)
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), PAGE_LIMIT)
                .collect()
                .await
                .map_err(|e| format!("reading the page: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("GET {path} answered {status}"));
            }
            String::from_utf8(body.to_vec()).map_err(|_| "the page is not UTF-8".to_owned())
        };
        tokio::time::timeout(POD_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {POD_TIMEOUT:?}")))
    }
}

/// Address → (pod, port) of every endpoint of `slices` that is not marked unready and has a
/// port named `http`.
fn ready_pods(slices: &[EndpointSlice]) -> BTreeMap<String, (String, i32)> {
    let mut pods = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("http"))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let unready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .is_some_and(|ready| !ready);
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            if unready {
                continue;
            }
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| address.clone());
            pods.entry(address.clone()).or_insert((pod, port));
        }
    }
    pods
}

/// `10.0.0.1:8429`, `[fd00::1]:8429`.
fn host_port(address: &str, port: i32) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

fn proxy_from(http_proxy: Option<&str>, no_proxy: Option<&str>) -> Option<Proxy> {
    let proxy = http_proxy?.trim();
    let rest = proxy.strip_prefix("http://").unwrap_or(proxy);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if authority.is_empty() {
        return None;
    }
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some(Proxy {
        address,
        bypass: no_proxy
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Whether a `NO_PROXY` entry covers the IP `address`: `*`, the address itself, or a CIDR
/// holding it (names never match an address).
fn bypassed(entries: &[String], address: &str) -> bool {
    let Ok(ip) = address.parse::<IpAddr>() else {
        return entries.iter().any(|e| e == "*" || e == address);
    };
    entries.iter().any(|entry| {
        if entry == "*" {
            return true;
        }
        let (net, bits) = entry.split_once('/').unwrap_or((entry, ""));
        let Ok(net) = net.trim_matches(['[', ']']).parse::<IpAddr>() else {
            return false;
        };
        match (ip, net) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => {
                let bits = bits.parse::<u32>().unwrap_or(32).min(32);
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(ip), IpAddr::V6(net)) => {
                let bits = bits.parse::<u32>().unwrap_or(128).min(128);
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_addresses_and_ranges() {
        let entries: Vec<String> = ["127.0.0.0/8", "10.1.2.3", "fd00::/64", "example.com"]
            .map(str::to_owned)
            .to_vec();
        assert!(bypassed(&entries, "127.1.2.3"));
        assert!(bypassed(&entries, "10.1.2.3"));
        assert!(!bypassed(&entries, "10.1.2.4"));
        assert!(bypassed(&entries, "fd00::7"));
        assert!(!bypassed(&entries, "fd01::7"));
        assert!(!bypassed(&entries, "198.18.0.1"));
        assert!(bypassed(&["*".to_owned()], "198.18.0.1"));
    }

    #[test]
    fn the_proxy_address_is_read_like_go_reads_it() {
        let proxy = proxy_from(
            Some("http://127.0.0.1:3128"),
            Some("127.0.0.0/8, localhost"),
        )
        .expect("proxy");
        assert_eq!(proxy.address, "127.0.0.1:3128");
        assert_eq!(proxy.bypass, ["127.0.0.0/8", "localhost"]);
        assert_eq!(
            proxy_from(Some("user:pw@proxy.local/"), None).map(|p| p.address),
            Some("proxy.local:80".to_owned())
        );
        assert_eq!(proxy_from(Some(""), None), None);
        assert_eq!(proxy_from(None, Some("*")), None);
    }

    #[test]
    fn only_ready_endpoints_on_the_http_port_are_polled() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "vmagent-a-x"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8429}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "vmagent-a-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]},
            ],
        }))
        .expect("slice");
        let other_port: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "vmagent-a-y"},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9000}],
            "endpoints": [{"addresses": ["10.0.0.9"]}],
        }))
        .expect("slice");
        let pods = ready_pods(&[slice, other_port]);
        assert_eq!(
            pods.into_iter().collect::<Vec<_>>(),
            [
                ("10.0.0.1".to_owned(), ("vmagent-a-0".to_owned(), 8429)),
                ("10.0.0.3".to_owned(), ("10.0.0.3".to_owned(), 8429)),
            ]
        );
        assert_eq!(host_port("fd00::1", 8429), "[fd00::1]:8429");
    }
}
