//! Polls vmagent pods for what their persistent queues hold ([`shared::model::Action::ProbeQueues`],
//! docs/rollout.md "Persistent-queue drain"): the pods come from the agent Service's
//! EndpointSlices (port `http`, endpoints not marked unready), each answers `GET /metrics`
//! within [`POD_TIMEOUT`], all at once. Reads only; never behind the leader gate's writes.
//!
//! Plain HTTP goes through `HTTP_PROXY` (or `http_proxy`) unless `NO_PROXY` (or `no_proxy`)
//! lists the pod's address, `*`, or a CIDR that holds it, as Go programs such as the VM operator
//! do. Agents that serve HTTPS (`extraArgs.tls`) are read directly, without checking their
//! certificate: it is issued for the Service's name, not the pod's address, and nothing but a
//! request for a page of gauges is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use futures::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use shared::queues::{POD_TIMEOUT, PodPage, QueueProbe};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
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

    /// One poll of every ready pod of each probe's agent in `namespace`, in the probes' order.
    /// One list finds the pods of every agent (a set-based selector on the Service names): a
    /// drain costs the API server one request per poll, whatever the number of agents.
    pub async fn poll(&self, namespace: &str, probes: &[QueueProbe]) -> Vec<Vec<PodPage>> {
        let services: BTreeSet<&str> = probes.iter().map(|p| p.service.as_str()).collect();
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!(
            "{SERVICE_NAME_LABEL} in ({})",
            services.iter().copied().collect::<Vec<_>>().join(",")
        );
        let listed = match slices.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(err) => {
                let failed = |probe: &QueueProbe| PodPage {
                    pod: format!("(EndpointSlices of Service {})", probe.service),
                    page: Err(format!("cannot list them: {err}")),
                };
                return probes.iter().map(|p| vec![failed(p)]).collect();
            }
        };
        join_all(probes.iter().map(|probe| {
            let own: Vec<EndpointSlice> = listed
                .iter()
                .filter(|s| {
                    s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        == Some(&probe.service)
                })
                .cloned()
                .collect();
            let tls = probe.scheme == "https";
            join_all(
                ready_pods(&own)
                    .into_iter()
                    .map(move |(address, (pod, port))| async move {
                        let page = self.get(&address, port, &probe.path, tls).await;
                        PodPage { pod, page }
                    }),
            )
        }))
        .await
    }

    async fn get(&self, address: &str, port: i32, path: &str, tls: bool) -> Result<String, String> {
        let host = host_port(address, port);
        let via = self
            .proxy
            .as_ref()
            .filter(|proxy| !tls && !bypassed(&proxy.bypass, address));
        let (connect, uri) = match via {
            Some(proxy) => (proxy.address.clone(), format!("http://{host}{path}")),
            None => (host.clone(), path.to_owned()),
        };
        let request = async {
            let stream = tokio::net::TcpStream::connect(&connect)
                .await
                .map_err(|e| format!("connecting to {connect}: {e}"))?;
            let mut sender = if tls {
                let server = rustls_pki_types::ServerName::try_from(address.to_owned())
                    .map_err(|e| format!("{address}: {e}"))?;
                let stream = tokio_rustls::TlsConnector::from(tls_config())
                    .connect(server, stream)
                    .await
                    .map_err(|e| format!("TLS with {host}: {e}"))?;
                handshake(stream).await?
            } else {
                handshake(stream).await?
            };
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

/// An HTTP/1.1 connection over `stream`, driven by a task of its own.
async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// TLS for reading an agent's page: any certificate is accepted (see the module docs);
/// signatures are still checked, with the ring provider.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                        .with_no_client_auth()
                });
            Arc::new(config.unwrap_or_else(|_| {
                // The ring provider supports the default versions; kept total all the same.
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }))
        })
        .clone()
}

/// Accepts the agent's certificate whoever issued it, for whatever name.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const PAGE: &str = "vmagent_remotewrite_pending_data_bytes{url=\"1:secret-url\"} 0\n";

    /// A prober whose client is never used (no EndpointSlice is listed here).
    fn prober(proxy: Option<Proxy>) -> QueueProber {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        QueueProber {
            client: Client::try_from(config).expect("client"),
            proxy,
        }
    }

    /// Serves one connection on 127.0.0.1: answers `response` to whatever comes, and sends the
    /// request's first line back through the handle.
    async fn one_answer(response: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 4096];
            let n = stream.read(&mut request).await.expect("read");
            stream.write_all(response.as_bytes()).await.expect("write");
            stream.shutdown().await.ok();
            String::from_utf8_lossy(&request[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        (port, task)
    }

    fn ok(body: &str) -> &'static str {
        Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        )
    }

    #[tokio::test]
    async fn a_page_is_read_directly_or_through_the_proxy() {
        let (port, request) = one_answer(ok(PAGE)).await;
        let page = prober(None)
            .get("127.0.0.1", i32::from(port), "/metrics", false)
            .await;
        assert_eq!(page.as_deref(), Ok(PAGE));
        assert_eq!(request.await.expect("request"), "GET /metrics HTTP/1.1");

        let (proxy_port, request) = one_answer(ok(PAGE)).await;
        let proxy = proxy_from(
            Some(&format!("http://127.0.0.1:{proxy_port}")),
            Some("10.0.0.0/8"),
        );
        let page = prober(proxy)
            .get("198.18.0.7", 8429, "/vmagent/metrics", false)
            .await;
        assert_eq!(page.as_deref(), Ok(PAGE));
        assert_eq!(
            request.await.expect("request"),
            "GET http://198.18.0.7:8429/vmagent/metrics HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn errors_and_silence_are_reported_not_waited_for() {
        let (port, _) =
            one_answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
        let page = prober(None)
            .get("127.0.0.1", i32::from(port), "/metrics", false)
            .await;
        assert!(page.as_ref().is_err_and(|e| e.contains("503")), "{page:?}");

        // Accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let started = std::time::Instant::now();
        let page = prober(None)
            .get("127.0.0.1", i32::from(port), "/metrics", false)
            .await;
        assert!(
            page.as_ref().is_err_and(|e| e.contains("no answer")),
            "{page:?}"
        );
        assert!(started.elapsed() < POD_TIMEOUT + std::time::Duration::from_secs(1));
        drop(silent);
    }

    #[tokio::test]
    async fn an_agent_serving_https_is_read_whatever_its_certificate() {
        let ca = certs::TestCa::new("agent-ca").expect("ca");
        // Issued for the Service's name, not the address the pod is reached at.
        let issued = ca
            .issue_serving("vmagent-a", &["vmagent-a.default.svc"])
            .expect("cert");
        let key = certs::parse_key_pair(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
            .expect("key");
        let config = certs::server_config(Arc::new(certs::CertResolver::new(key))).expect("config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut stream = acceptor.accept(stream).await.expect("tls");
            let mut request = vec![0; 4096];
            let _ = stream.read(&mut request).await;
            stream.write_all(ok(PAGE).as_bytes()).await.expect("write");
            stream.shutdown().await.ok();
        });
        let page = prober(None)
            .get("127.0.0.1", i32::from(port), "/metrics", true)
            .await;
        assert_eq!(page.as_deref(), Ok(PAGE));
    }

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
