//! HTTP routing: the admission endpoints (HTTPS port) and health and metrics (plain-HTTP port).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use kube::core::admission::AdmissionResponse;
use shared::versions::PinnedVersions;
use tracing::{debug, info, warn};
use vmdistributed_runtime::health::{self, Health};

use crate::admission::{self, BadRequest, MAX_BODY_BYTES, Prepared};
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
    health::router(state)
}

impl Health for AppState {
    fn not_ready(&self) -> Option<String> {
        (!self.ready.load(Ordering::Relaxed))
            .then(|| "the HTTPS listener does not accept connections".to_owned())
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
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

/// Reviews up to this size are judged on the async worker that read them; larger ones on the
/// blocking pool.
///
/// With at most 16 zones (validation refuses more before any per-zone work), judging a review
/// is bounded, but it still grows with the size of the free-form specs: defaulting, merging
/// `zoneCommon` into every zone and rendering every shape of every child for preflight copy
/// them once per zone and shape. A 3.5 MiB review of 16 zones took about a second; on an
/// async worker (one per core) that stalled every other request: small reviews sent meanwhile
/// had a p99 of ~1 s instead of ~0.2 s (one worker thread, large reviews sent back to back
/// while `wrk` sent small ones). Realistic reviews are a few kilobytes (the benchmark's 3-zone review is 2 KB) and
/// take microseconds, less than a hop to the blocking pool costs, so they stay inline.
const INLINE_REVIEW_BYTES: usize = 64 * 1024;

/// The CPU-bound part of an admission request, decided.
enum Judged {
    /// Allowed without looking at the spec; the reason is for the log.
    Bypass(Box<AdmissionResponse>, &'static str),
    /// Defaulted or validated.
    Decided(Box<Decided>),
}

/// A review's decision, before preflight.
struct Decided {
    uid: String,
    response: AdmissionResponse,
    /// For an allowed validation with preflight on: what to dry-run.
    preflight: Option<crate::preflight::Plan>,
}

/// Parse, default or validate, and render the preflight's children (with the pinned versions
/// of the preflight, when it is on): everything but I/O.
fn judge(
    endpoint: Endpoint,
    body: &[u8],
    preflight: Option<&PinnedVersions>,
) -> Result<Judged, BadRequest> {
    let review = match admission::prepare(body)? {
        Prepared::Review(review) => review,
        Prepared::Bypass { response, why } => return Ok(Judged::Bypass(response, why)),
    };
    let (response, plan) = match endpoint {
        Endpoint::Mutate => (admission::mutate(&review), None),
        Endpoint::Validate => {
            let response = admission::validate(&review);
            let plan = preflight
                .filter(|_| response.allowed)
                .and_then(|pinned| crate::preflight::plan(&review, pinned));
            (response, plan)
        }
    };
    Ok(Judged::Decided(Box::new(Decided {
        uid: review.uid,
        response,
        preflight: plan,
    })))
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
                plain(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
            );
        }
        Err(BodyError::Read(reason)) => {
            return (Outcome::Error, plain(StatusCode::BAD_REQUEST, &reason));
        }
    };
    let judged = if body.len() <= INLINE_REVIEW_BYTES {
        judge(
            endpoint,
            &body,
            state.preflight.as_ref().map(Preflight::pinned_versions),
        )
    } else {
        let pinned = state
            .preflight
            .as_ref()
            .map(|p| p.pinned_versions().clone());
        match tokio::task::spawn_blocking(move || judge(endpoint, &body, pinned.as_ref())).await {
            Ok(judged) => judged,
            Err(err) => {
                warn!(endpoint = endpoint.as_str(), error = %err, "judging the review failed");
                return (
                    Outcome::Error,
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "judging the review failed",
                    ),
                );
            }
        }
    };
    let Decided {
        uid,
        response,
        preflight: plan,
    } = match judged {
        Ok(Judged::Decided(decided)) => *decided,
        Ok(Judged::Bypass(response, why)) => {
            debug!(uid = %response.uid, endpoint = endpoint.as_str(), why, "allowed without review");
            return (Outcome::Allowed, review_response(*response));
        }
        Err(bad) => {
            info!(endpoint = endpoint.as_str(), reason = %bad, "bad request");
            return (Outcome::Error, plain(StatusCode::BAD_REQUEST, &bad.0));
        }
    };
    let uid = uid.as_str();
    let response = match (&state.preflight, plan) {
        (Some(preflight), Some(plan)) => preflight.check(uid, plan, response).await,
        _ => response,
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

/// The answer to a body over [`MAX_BODY_BYTES`].
const TOO_LARGE: &str = "request body exceeds 8 MiB: an AdmissionReview of any object \
     Kubernetes can store (1.5 MiB in etcd, twice that for an update's object and oldObject) \
     is smaller";

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
