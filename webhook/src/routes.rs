//! HTTP routing: the admission endpoints (HTTPS port) and health and metrics (plain-HTTP port).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use kube::core::admission::AdmissionResponse;
use tracing::{debug, info, warn};

use crate::admission::{self, MAX_BODY_BYTES, Prepared};
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::preflight::Preflight;

/// Default per-request budget, well under the API server's 10 s webhook timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// Metrics of both ports.
    pub metrics: Arc<Metrics>,
    /// Server-side dry-run of rendered children on `/validate`, when enabled.
    pub preflight: Option<Preflight>,
    /// Budget of one admission request, body included.
    pub request_timeout: Duration,
    /// `/readyz`: true while the HTTPS listener accepts connections.
    pub ready: AtomicBool,
}

impl AppState {
    /// State with no preflight and the default timeout, ready.
    #[must_use]
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            preflight: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ready: AtomicBool::new(true),
        }
    }
}

/// `POST /mutate` and `POST /validate`.
pub fn admission_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .with_state(state)
}

/// `GET /healthz`, `/readyz`, `/metrics`.
pub fn health_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    serve(state, Endpoint::Mutate, request).await
}

async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    serve(state, Endpoint::Validate, request).await
}

/// One admission request within the timeout, recorded in the metrics.
async fn serve(state: Arc<AppState>, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    let (outcome, response) = match tokio::time::timeout(
        state.request_timeout,
        answer(&state, endpoint, request),
    )
    .await
    {
        Ok(answered) => answered,
        Err(_) => {
            warn!(endpoint = endpoint.as_str(), "request timed out");
            (
                Outcome::Error,
                plain(StatusCode::GATEWAY_TIMEOUT, "request timed out"),
            )
        }
    };
    state
        .metrics
        .record(endpoint, outcome, started.elapsed().as_secs_f64());
    response
}

async fn answer(state: &AppState, endpoint: Endpoint, request: Request) -> (Outcome, Response) {
    let declared = request_length(&request);
    let body = match read_body(request.into_body(), declared).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            state.metrics.body_too_large();
            info!(
                endpoint = endpoint.as_str(),
                "request body over {MAX_BODY_BYTES} bytes refused"
            );
            return (
                Outcome::Error,
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds 8 MiB"),
            );
        }
        Err(BodyError::Read(reason)) => {
            return (Outcome::Error, plain(StatusCode::BAD_REQUEST, &reason));
        }
    };
    let review = match admission::prepare(&body) {
        Ok(Prepared::Review(review)) => review,
        Ok(Prepared::Bypass { response, why }) => {
            debug!(uid = %response.uid, endpoint = endpoint.as_str(), why, "allowed without review");
            return (Outcome::Allowed, review_response(*response));
        }
        Err(bad) => {
            info!(endpoint = endpoint.as_str(), reason = %bad, "bad request");
            return (Outcome::Error, plain(StatusCode::BAD_REQUEST, &bad.0));
        }
    };
    let uid = review.uid.as_str();
    let response = match endpoint {
        Endpoint::Mutate => admission::mutate(&review),
        Endpoint::Validate => {
            let response = admission::validate(&review);
            match (&state.preflight, response.allowed) {
                (Some(preflight), true) => preflight.check(&review, response).await,
                _ => response,
            }
        }
    };
    let outcome = if response.allowed {
        debug!(
            uid,
            endpoint = endpoint.as_str(),
            patched = response.patch.is_some(),
            "allowed"
        );
        Outcome::Allowed
    } else {
        debug!(uid, endpoint = endpoint.as_str(), reason = %response.result.message, "denied");
        Outcome::Denied
    };
    (outcome, review_response(response))
}

/// A 200 response carrying the review, or a 500 if it cannot be encoded.
fn review_response(response: AdmissionResponse) -> Response {
    match admission::encode(response) {
        Ok(json) => {
            let mut response = Response::new(Body::from(json));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("response cannot be encoded: {err}"),
        ),
    }
}

fn plain(status: StatusCode, reason: &str) -> Response {
    (status, format!("{reason}\n")).into_response()
}

fn request_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

enum BodyError {
    TooLarge,
    Read(String),
}

/// Read the body, refusing more than [`MAX_BODY_BYTES`]: a declared length over the limit is
/// refused before reading anything, and a streamed body is cut off at the limit.
async fn read_body(body: Body, declared: Option<u64>) -> Result<Vec<u8>, BodyError> {
    let limit = MAX_BODY_BYTES;
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = declared.map_or(16 * 1024, |len| {
        usize::try_from(len).unwrap_or(limit).min(limit)
    });
    let mut buf = Vec::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|err| BodyError::Read(format!("reading the request body: {err}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
