//! Helpers shared by the service tests.

use serde_json::{Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The tests of this binary run in parallel threads of one process, but the fuzz test bounds the
/// memory of the whole process (its RSS). It holds this lock exclusively while it runs; every
/// other test holds it shared, so none of them runs beside it.
static PROCESS: RwLock<()> = RwLock::const_new(());

/// Held by every test but the fuzz test, for its whole run.
pub async fn share_process() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().await
}

/// Held by the fuzz test for its whole run: no other test of the binary runs meanwhile.
pub async fn own_process() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().await
}

/// The seed example's spec (two zones), as the user writes it.
pub fn seed_spec() -> Value {
    json!({
        "vmauth": {"spec": {"replicaCount": 1}},
        "zoneCommon": {
            "vmagent": {"spec": {"replicaCount": 1}},
            "vmcluster": {"spec": {
                "retentionPeriod": "14",
                "vmstorage": {"replicaCount": 1},
                "vmselect": {"replicaCount": 1},
                "vminsert": {"replicaCount": 1}
            }}
        },
        "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
    })
}

/// A VMDistributed object with `spec`.
pub fn object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": name, "namespace": "monitoring", "uid": "0b6c7a52-1d9e-4c3b-9f8e-2a4d5c6b7e8f"},
        "spec": spec
    })
}

/// An `admission.k8s.io/v1` review of `object` (and `old` for UPDATE).
pub fn review(operation: &str, object: Option<Value>, old: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7f0b2c1e-3a4d-4e5f-8a9b-0c1d2e3f4a5b",
            "kind": {"group": "operator.victoriametrics.com", "version": "v1alpha1", "kind": "VMDistributed"},
            "resource": {"group": "operator.victoriametrics.com", "version": "v1alpha1", "resource": "vmdistributed"},
            "name": "demo",
            "namespace": "monitoring",
            "operation": operation,
            "userInfo": {"username": "tester"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

/// TLS client side of the tests: a rustls client trusting one CA, HTTP/1.1 or HTTP/2 over it.
pub mod client {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::body::{Body, Bytes};
    use hyper::Request;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    /// A client config trusting `ca` with the given ALPN protocols.
    pub fn config(ca: CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Connect and handshake (verifying the certificate for 127.0.0.1).
    pub async fn connect(
        config: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
    }

    /// The leaf certificate the server presented.
    pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
        stream.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    }

    /// A keep-alive connection speaking whatever ALPN chose.
    pub enum Conn {
        /// HTTP/1.1.
        H1(hyper::client::conn::http1::SendRequest<Body>),
        /// HTTP/2.
        H2(hyper::client::conn::http2::SendRequest<Body>),
    }

    impl Conn {
        /// Handshake HTTP over an established TLS stream (h2 if ALPN chose it).
        pub async fn new(stream: TlsStream<TcpStream>) -> hyper::Result<Self> {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            if h2 {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Ok(Self::H2(send))
            } else {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                Ok(Self::H1(send))
            }
        }

        /// POST `body` to `path`; the status and response body.
        pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
            let request = Request::post(path)
                .header("content-type", "application/json")
                .header("host", "127.0.0.1")
                .body(Body::from(body))
                .map_err(|e| e.to_string())?;
            let response = match self {
                Self::H1(send) => {
                    send.ready().await.map_err(|e| e.to_string())?;
                    send.send_request(request).await
                }
                Self::H2(send) => {
                    send.ready().await.map_err(|e| e.to_string())?;
                    send.send_request(request).await
                }
            }
            .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, body))
        }
    }
}
