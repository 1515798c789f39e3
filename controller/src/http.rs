//! Plain-HTTP health and metrics endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

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

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

/// The router serving `/healthz`, `/readyz` and `/metrics`.
pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { readiness, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.problem() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {problem}\n"),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
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
