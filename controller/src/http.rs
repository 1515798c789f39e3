//! Plain-HTTP health and metrics endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use vmdistributed_runtime::health::{self, Health};

use crate::metrics::Metrics;

/// Why the controller is not ready, if it is not.
#[derive(Default)]
pub struct Readiness {
    problem: RwLock<Option<String>>,
}

impl Readiness {
    /// A readiness that starts not ready with `problem`.
    #[must_use]
    pub fn new(problem: &str) -> Self {
        Self {
            problem: RwLock::new(Some(problem.to_owned())),
        }
    }

    /// Mark ready.
    pub fn set_ready(&self) {
        if let Ok(mut problem) = self.problem.write() {
            *problem = None;
        }
    }

    /// Mark not ready with a reason shown by `/readyz`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        if let Ok(mut problem) = self.problem.write() {
            *problem = Some(reason.into());
        }
    }

    /// The reason for not being ready, `None` when ready.
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        self.problem
            .read()
            .map_or_else(|_| Some("lock poisoned".to_owned()), |p| p.clone())
    }
}

/// The controller's health: ready once it leads or follows with filled caches (see
/// `run`), and its metrics.
struct ControllerHealth {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

impl Health for ControllerHealth {
    fn not_ready(&self) -> Option<String> {
        self.readiness.problem()
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// The router serving `/healthz`, `/readyz` and `/metrics`.
pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    health::router(Arc::new(ControllerHealth { readiness, metrics }))
}

/// Bind `addr` and serve until `shutdown` resolves.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on --http-addr {addr}: {err}"))?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "HTTP server failed");
        }
    }))
}
