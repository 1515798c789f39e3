//! Swapping the serving certificate at run time.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory and atomically
//! re-pointing the `..data` symlink; `tls.crt` and `tls.key` are symlinks through `..data`. File
//! watchers (inotify) on `tls.crt` miss that swap because the file they watch is never written, so
//! the files are polled by path instead: each poll reads both (a few KiB) and compares them with
//! what is being served. A change that does not parse, or whose key does not match the
//! certificate (a half-written pair), is reported once and the previous pair stays in use.
//! Established TLS sessions are never touched: only new handshakes ask the resolver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pem::{CertError, parse_key_pair, read_pair};

/// Hands every new TLS handshake the current certificate.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// A resolver serving `key`.
    #[must_use]
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    /// The key pair new handshakes get.
    #[must_use]
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serve `key` from the next handshake on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What a poll found.
#[derive(Debug)]
pub enum ReloadEvent {
    /// New material is being served.
    Reloaded,
    /// The files changed but could not be used; the previous certificate is still served.
    Failed(CertError),
}

/// Polls a certificate and key file and swaps changed material into a [`CertResolver`].
#[derive(Debug)]
pub struct ReloadWatcher {
    resolver: Arc<CertResolver>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The bytes being served, to detect a change without parsing.
    served: (Vec<u8>, Vec<u8>),
    /// The last bytes that failed, so a broken pair is reported once, not on every poll.
    failed: Option<(Vec<u8>, Vec<u8>)>,
}

impl ReloadWatcher {
    /// Load the files once and return the resolver serving them plus the watcher that keeps it
    /// current.
    ///
    /// # Errors
    /// [`CertError`] when the files cannot be read or used (the server must not start then).
    pub fn start(
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(Arc<CertResolver>, Self), CertError> {
        let served = read_pair(cert_path, key_path)?;
        let key = parse_key_pair(&served.0, &served.1)?;
        let resolver = Arc::new(CertResolver::new(key));
        let watcher = Self {
            resolver: Arc::clone(&resolver),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            served,
            failed: None,
        };
        Ok((resolver, watcher))
    }

    /// Read the files once (blocking I/O) and swap in changed material. `None` when nothing
    /// changed or the same broken content was already reported.
    pub fn poll_once(&mut self) -> Option<ReloadEvent> {
        let pair = match read_pair(&self.cert_path, &self.key_path) {
            Ok(pair) => pair,
            // A missing file during a remount is transient; report it once.
            Err(err) => return self.report_failure((Vec::new(), Vec::new()), err),
        };
        if pair == self.served {
            self.failed = None;
            return None;
        }
        match parse_key_pair(&pair.0, &pair.1) {
            Ok(key) => {
                self.resolver.replace(key);
                self.served = pair;
                self.failed = None;
                Some(ReloadEvent::Reloaded)
            }
            Err(err) => self.report_failure(pair, err),
        }
    }

    fn report_failure(&mut self, pair: (Vec<u8>, Vec<u8>), err: CertError) -> Option<ReloadEvent> {
        if self.failed.as_ref() == Some(&pair) {
            return None;
        }
        self.failed = Some(pair);
        Some(ReloadEvent::Failed(err))
    }

    /// Poll every `interval` forever, calling `on_event` for each reload or failure. File reads
    /// run on the blocking pool so a slow volume never stalls request handling.
    pub async fn run(mut self, interval: Duration, mut on_event: impl FnMut(ReloadEvent) + Send) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let polled = tokio::task::spawn_blocking(move || {
                let event = self.poll_once();
                (self, event)
            })
            .await;
            match polled {
                Ok((watcher, event)) => {
                    self = watcher;
                    if let Some(event) = event {
                        on_event(event);
                    }
                }
                // The blocking pool is shutting down with the runtime.
                Err(_) => return,
            }
        }
    }
}
