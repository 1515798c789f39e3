//! The two listeners: HTTPS (admission) and plain HTTP (health, metrics), with certificate
//! reloading and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use certs::{ReloadEvent, ReloadWatcher};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::routes::{AppState, admission_router, health_router};

/// How long in-flight requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What [`start`] needs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// HTTPS listen address (`/mutate`, `/validate`); port 0 picks a free port.
    pub tls_addr: SocketAddr,
    /// Plain-HTTP listen address (`/healthz`, `/readyz`, `/metrics`).
    pub http_addr: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
}

/// A running webhook server.
#[derive(Debug)]
pub struct RunningServer {
    tls_addr: SocketAddr,
    http_addr: SocketAddr,
    state: Arc<AppState>,
    tls_handle: Handle<SocketAddr>,
    http_shutdown: tokio::sync::watch::Sender<bool>,
    tls_task: JoinHandle<std::io::Result<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
    reload_task: JoinHandle<()>,
}

/// Load the certificate, bind both listeners and start serving.
///
/// # Errors
/// The certificate files cannot be used or an address cannot be bound.
pub async fn start(options: &ServerOptions, state: Arc<AppState>) -> anyhow::Result<RunningServer> {
    let (resolver, watcher) = ReloadWatcher::start(&options.cert_file, &options.key_file)
        .context("loading the serving certificate")?;
    let tls_config = certs::server_config(resolver)?;

    let tls_listener = std::net::TcpListener::bind(options.tls_addr)
        .with_context(|| format!("binding {}", options.tls_addr))?;
    tls_listener.set_nonblocking(true)?;
    let tls_addr = tls_listener.local_addr()?;
    let http_listener = tokio::net::TcpListener::bind(options.http_addr)
        .await
        .with_context(|| format!("binding {}", options.http_addr))?;
    let http_addr = http_listener.local_addr()?;

    let metrics = Arc::clone(&state.metrics);
    let reload_task = tokio::spawn(watcher.run(options.reload_interval, move |event| match event {
        ReloadEvent::Reloaded => {
            metrics.tls_reload(true);
            info!("serving the reloaded certificate");
        }
        ReloadEvent::Failed(err) => {
            metrics.tls_reload(false);
            warn!(error = %err, "certificate files changed but cannot be used; still serving the previous certificate");
        }
    }));

    let tls_handle = Handle::new();
    let mut server = axum_server::from_tcp_rustls(
        tls_listener,
        RustlsConfig::from_config(Arc::new(tls_config)),
    )?
    .handle(tls_handle.clone());
    // Bound the time an idle or slow client can hold a connection before its first request.
    let server = {
        server
            .http_builder()
            .http1()
            .header_read_timeout(Duration::from_secs(10));
        server.first_request_timeout(Duration::from_secs(30))
    };
    let app = admission_router(Arc::clone(&state));
    let tls_task = tokio::spawn(server.serve(app.into_make_service()));

    let (http_shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let health = health_router(Arc::clone(&state));
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, health)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    state.ready.store(true, Ordering::Relaxed);
    info!(%tls_addr, %http_addr, "serving admission over HTTPS and health/metrics over HTTP");
    Ok(RunningServer {
        tls_addr,
        http_addr,
        state,
        tls_handle,
        http_shutdown,
        tls_task,
        http_task,
        reload_task,
    })
}

impl RunningServer {
    /// The bound HTTPS address.
    #[must_use]
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// The bound plain-HTTP address.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stop accepting connections, let in-flight requests finish (at most `grace`), then stop.
    ///
    /// # Errors
    /// A listener failed while serving.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.state.ready.store(false, Ordering::Relaxed);
        self.tls_handle.graceful_shutdown(Some(grace));
        let tls = self.tls_task.await;
        let _ = self.http_shutdown.send(true);
        let http = self.http_task.await;
        self.reload_task.abort();
        tls.context("HTTPS listener task")?
            .context("HTTPS listener")?;
        http.context("HTTP listener task")?
            .context("HTTP listener")?;
        info!("stopped");
        Ok(())
    }

    /// Serve until SIGTERM or SIGINT, then shut down gracefully.
    ///
    /// # Errors
    /// A listener failed or the signal handler could not be installed.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        tokio::select! {
            () = vmdistributed_runtime::signals::terminated() => info!("finishing in-flight requests"),
            // A listener that stops on its own is fatal: exit non-zero so the pod restarts.
            stopped = &mut self.tls_task => {
                anyhow::bail!("HTTPS listener stopped: {:?}", stopped.map(|r| r.map_err(|e| e.to_string())));
            }
            stopped = &mut self.http_task => {
                anyhow::bail!("HTTP listener stopped: {:?}", stopped.map(|r| r.map_err(|e| e.to_string())));
            }
        }
        let result = self.shutdown(SHUTDOWN_GRACE).await;
        if let Err(err) = &result {
            error!(error = %err, "shutdown");
        }
        result
    }
}
