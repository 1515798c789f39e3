//! The plain-HTTP endpoints both binaries serve for the kubelet and for Prometheus: `/healthz`
//! (the process answers), `/readyz` (200, or 503 with the reason) and `/metrics` (OpenMetrics
//! text). Each binary says what ready means and what its metrics are through [`Health`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The content type of an OpenMetrics page.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints report.
pub trait Health: Send + Sync + 'static {
    /// `None` when ready; otherwise why not, for `/readyz`.
    fn not_ready(&self) -> Option<String>;
    /// The `/metrics` page.
    fn metrics(&self) -> String;
}

/// The router serving `/healthz`, `/readyz` and `/metrics` from `health`.
pub fn router<H: Health>(health: Arc<H>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<H>))
        .route("/metrics", get(metrics::<H>))
        .with_state(health)
}

async fn readyz<H: Health>(State(health): State<Arc<H>>) -> Response {
    match health.not_ready() {
        None => "ok".into_response(),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {problem}\n"),
        )
            .into_response(),
    }
}

async fn metrics<H: Health>(State(health): State<Arc<H>>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], health.metrics()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt;

    struct Fake(AtomicBool);

    impl Health for Fake {
        fn not_ready(&self) -> Option<String> {
            (!self.0.load(Ordering::Relaxed)).then(|| "caches filling".to_owned())
        }
        fn metrics(&self) -> String {
            "# EOF\n".to_owned()
        }
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            String::from_utf8_lossy(&body).into_owned(),
            content_type,
        )
    }

    #[tokio::test]
    async fn readiness_says_why_and_metrics_are_openmetrics() {
        let health = Arc::new(Fake(AtomicBool::new(false)));
        let router = router(health.clone());
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        let (status, body, _) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: caches filling\n");
        health.0.store(true, Ordering::Relaxed);
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        let (status, body, content_type) = get(&router, "/metrics").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "# EOF\n"));
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS));
    }
}
