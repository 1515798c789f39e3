//! Reloading through a Kubernetes-style Secret volume (`..data` symlink swaps).

use std::sync::Arc;

use certs::secret_volume::publish;
use certs::{CertError, ReloadEvent, ReloadWatcher, TestCa, load_key_pair, parse_key_pair};

fn publish_pair(dir: &std::path::Path, cert: &str, key: &str) {
    publish(
        dir,
        &[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())],
    )
    .unwrap();
}

fn leaf(key: &rustls::sign::CertifiedKey) -> Vec<u8> {
    key.cert[0].as_ref().to_vec()
}

#[test]
fn swaps_in_new_material_after_a_data_link_swap_and_keeps_old_on_broken_input() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test-ca").unwrap();
    let first = ca.issue_serving("webhook", &["127.0.0.1"]).unwrap();
    let second = ca
        .issue_serving("webhook", &["127.0.0.1", "localhost"])
        .unwrap();
    let other = ca.issue_serving("other", &["127.0.0.1"]).unwrap();
    publish_pair(dir.path(), &first.cert_pem, &first.key_pem);

    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    assert!(
        std::fs::symlink_metadata(&cert_path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let (resolver, mut watcher) = ReloadWatcher::start(&cert_path, &key_path).unwrap();
    let first_der = leaf(&resolver.current());
    assert!(
        watcher.poll_once().is_none(),
        "unchanged files are not a reload"
    );

    publish_pair(dir.path(), &second.cert_pem, &second.key_pem);
    assert!(matches!(watcher.poll_once(), Some(ReloadEvent::Reloaded)));
    let second_der = leaf(&resolver.current());
    assert_ne!(first_der, second_der);
    assert_eq!(
        second_der,
        leaf(&parse_key_pair(second.cert_pem.as_bytes(), second.key_pem.as_bytes()).unwrap())
    );
    assert!(watcher.poll_once().is_none());

    // A certificate with someone else's key: reported once, the served pair stays.
    publish_pair(dir.path(), &second.cert_pem, &other.key_pem);
    match watcher.poll_once() {
        Some(ReloadEvent::Failed(CertError::Mismatch(_))) => {}
        other => panic!("expected a mismatch failure, got {other:?}"),
    }
    assert!(
        watcher.poll_once().is_none(),
        "the same broken pair is reported once"
    );
    assert_eq!(leaf(&resolver.current()), second_der);

    // Garbage PEM.
    publish_pair(dir.path(), "not a certificate", &other.key_pem);
    assert!(matches!(
        watcher.poll_once(),
        Some(ReloadEvent::Failed(CertError::Certificate(_)))
    ));
    assert_eq!(leaf(&resolver.current()), second_der);

    // Fixed again.
    publish_pair(dir.path(), &other.cert_pem, &other.key_pem);
    assert!(matches!(watcher.poll_once(), Some(ReloadEvent::Reloaded)));
    assert_eq!(
        leaf(&resolver.current()),
        leaf(&load_key_pair(&cert_path, &key_path).unwrap())
    );

    // Only the current version directory is kept.
    let versions = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("..") && name != "..data"
        })
        .count();
    assert_eq!(versions, 1);
}

#[test]
fn missing_files_fail_start_and_are_a_transient_failure_later() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        ReloadWatcher::start(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");

    let ca = TestCa::new("test-ca").unwrap();
    let pair = ca.issue_serving("webhook", &["127.0.0.1"]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pair.key_pem).unwrap();
    let (resolver, mut watcher) =
        ReloadWatcher::start(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let served = leaf(&resolver.current());
    std::fs::remove_file(dir.path().join("tls.key")).unwrap();
    assert!(matches!(
        watcher.poll_once(),
        Some(ReloadEvent::Failed(CertError::Read { .. }))
    ));
    assert!(watcher.poll_once().is_none());
    assert_eq!(leaf(&resolver.current()), served);
}

#[test]
fn key_pair_errors_say_which_part_is_wrong() {
    let ca = TestCa::new("test-ca").unwrap();
    let pair = ca.issue_serving("webhook", &["127.0.0.1"]).unwrap();
    assert!(matches!(
        parse_key_pair(b"", pair.key_pem.as_bytes()),
        Err(CertError::Certificate(_))
    ));
    assert!(matches!(
        parse_key_pair(pair.cert_pem.as_bytes(), b"junk"),
        Err(CertError::Key(_))
    ));
    assert!(parse_key_pair(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes()).is_ok());
    // The CA certificate with the serving key: mismatch.
    assert!(matches!(
        parse_key_pair(ca.cert_pem().as_bytes(), pair.key_pem.as_bytes()),
        Err(CertError::Mismatch(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_after_a_reload_see_the_new_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test-ca").unwrap();
    let first = ca.issue_serving("first", &["127.0.0.1"]).unwrap();
    let second = ca.issue_serving("second", &["127.0.0.1"]).unwrap();
    publish_pair(dir.path(), &first.cert_pem, &first.key_pem);
    let (resolver, watcher) =
        ReloadWatcher::start(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let config = Arc::new(certs::server_config(Arc::clone(&resolver)).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1];
                    while let Ok(1) = tls.read(&mut buf).await {
                        let _ = tls.write_all(&buf).await;
                    }
                }
            });
        }
    });
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watcher.run(std::time::Duration::from_millis(50), move |e| {
        let _ = events_tx.send(format!("{e:?}"));
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(client);
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let peer = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let mut old_conn = connect().await;
    let first_der = peer(&old_conn);

    publish_pair(dir.path(), &second.cert_pem, &second.key_pem);
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, "Reloaded");
    let new_conn = connect().await;
    assert_ne!(peer(&new_conn), first_der);

    // The connection made before the reload still works.
    old_conn.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 1];
    old_conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"x");
}
