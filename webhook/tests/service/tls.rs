//! The real HTTPS listener: ALPN, certificate rotation under load, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::client::{Conn, config, connect, peer_leaf};
use axum::body::Bytes;
use certs::TestCa;
use certs::secret_volume::publish;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmdistributed_webhook::metrics::Metrics;
use vmdistributed_webhook::routes::AppState;
use vmdistributed_webhook::server::{RunningServer, ServerOptions, start};

const REVIEW: &str = include_str!("../../bench/review-3zones.json");

struct Fixture {
    ca: TestCa,
    dir: tempfile::TempDir,
    server: RunningServer,
    metrics: Arc<Metrics>,
}

fn publish_cert(ca: &TestCa, dir: &std::path::Path) -> Vec<u8> {
    let pair = ca
        .issue_serving("vmdistributed-webhook", &["127.0.0.1", "localhost"])
        .unwrap();
    publish(
        dir,
        &[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ],
    )
    .unwrap();
    certs::parse_key_pair(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())
        .unwrap()
        .cert[0]
        .as_ref()
        .to_vec()
}

async fn fixture() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new("webhook-test-ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    publish_cert(&ca, dir.path());
    let metrics = Arc::new(Metrics::new());
    let options = ServerOptions {
        tls_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        cert_file: dir.path().join("tls.crt"),
        key_file: dir.path().join("tls.key"),
        reload_interval: Duration::from_millis(50),
    };
    let server = start(&options, Arc::new(AppState::new(Arc::clone(&metrics))))
        .await
        .unwrap();
    Fixture {
        ca,
        dir,
        server,
        metrics,
    }
}

fn allowed(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["response"]["allowed"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_http1_and_http2_by_alpn_over_tls() {
    let _process = crate::common::share_process().await;
    let f = fixture().await;
    let addr = f.server.tls_addr();
    for (alpn, expect_h2) in [
        (&[&b"h2"[..]][..], true),
        (&[&b"http/1.1"[..]][..], false),
        (&[][..], false),
    ] {
        let stream = connect(&config(f.ca.cert_der(), alpn), addr).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol() == Some(b"h2"), expect_h2);
        let mut conn = Conn::new(stream).await.unwrap();
        // Keep-alive: several requests on one connection.
        for _ in 0..3 {
            let (status, body) = conn
                .post("/validate", Bytes::from_static(REVIEW.as_bytes()))
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert!(allowed(&body), "{}", String::from_utf8_lossy(&body));
        }
    }
    // TLS 1.2 only clients are served too.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(f.ca.cert_der()).unwrap();
    let tls12 = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let stream = connect(&tls12, addr).await.unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    f.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Send the head and part of a body now; the rest later.
async fn start_slow_request(
    config: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    let mut stream = connect(config, addr).await.unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        REVIEW.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = REVIEW.as_bytes().split_at(REVIEW.len() / 2);
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    (stream, rest.to_vec())
}

async fn finish_slow_request(
    mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    rest: &[u8],
) -> String {
    stream.write_all(rest).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until the whole body (Content-Length) arrived.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_certificate_under_load_fails_no_request() {
    let _process = crate::common::share_process().await;
    let f = fixture().await;
    let addr = f.server.tls_addr();
    let client = config(f.ca.cert_der(), &[b"h2", b"http/1.1"]);
    let h1_client = config(f.ca.cert_der(), &[b"http/1.1"]);
    let first_leaf = peer_leaf(&connect(&client, addr).await.unwrap());

    // A request in flight across every rotation: head and half the body now, the rest at the end.
    let (slow, slow_rest) = start_slow_request(&h1_client, addr).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (stop, ok, failures) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
        let client = if worker % 2 == 0 {
            Arc::clone(&client)
        } else {
            Arc::clone(&h1_client)
        };
        workers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Alternate long keep-alive connections (workers 0, 1) with a new handshake every
                // few requests (workers 2, 3).
                let per_conn = if worker < 2 { 1_000_000 } else { 5 };
                let conn = match connect(&client, addr).await {
                    Ok(stream) => Conn::new(stream).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let mut conn = match conn {
                    Ok(conn) => conn,
                    Err(e) => {
                        failures.lock().unwrap().push(format!("connect: {e}"));
                        continue;
                    }
                };
                for _ in 0..per_conn {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn
                        .post("/validate", Bytes::from_static(REVIEW.as_bytes()))
                        .await
                    {
                        Ok((200, body)) if allowed(&body) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{status}: {}", String::from_utf8_lossy(&body))),
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    n += 1;
                }
            }
            n
        }));
    }

    let mut leaves = vec![first_leaf];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let leaf = publish_cert(&f.ca, f.dir.path());
        // New handshakes get the new certificate once the poll saw it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = peer_leaf(&connect(&client, addr).await.unwrap());
            if seen == leaf {
                break;
            }
            assert!(leaves.contains(&seen), "an unknown certificate was served");
            assert!(
                Instant::now() < deadline,
                "the new certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        leaves.push(leaf);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let slow_response = finish_slow_request(slow, &slow_rest).await;
    assert!(slow_response.starts_with("HTTP/1.1 200"), "{slow_response}");
    assert!(
        slow_response.contains("\"allowed\":true"),
        "{slow_response}"
    );

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "only {} requests ran",
        ok.load(Ordering::Relaxed)
    );
    let metrics = f.metrics.encode();
    assert!(
        metrics.contains("vmdistributed_webhook_tls_reloads_total{result=\"success\"} 3"),
        "{metrics}"
    );
    f.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let _process = crate::common::share_process().await;
    let f = fixture().await;
    let addr = f.server.tls_addr();
    let http_addr = f.server.http_addr();
    let client = config(f.ca.cert_der(), &[b"http/1.1"]);
    let (slow, rest) = start_slow_request(&client, addr).await;
    // Let the server read the head and start the request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(f.server.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    assert!(
        connect(&client, addr).await.is_err(),
        "no new connections after shutdown started"
    );
    let response = finish_slow_request(slow, &rest).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(http_addr).await.is_err());
    drop(f.dir);
}
