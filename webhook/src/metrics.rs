//! Prometheus metrics of the webhook, served on the plain-HTTP port at `/metrics`.
//!
//! The per-request handles are resolved once at start, so the hot path only increments atomics
//! and observes a histogram, without label lookups.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which admission endpoint served a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate`.
    Mutate,
    /// `POST /validate`.
    Validate,
}

impl Endpoint {
    /// The path segment, for logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200, `allowed: true`.
    Allowed,
    /// HTTP 200, `allowed: false`.
    Denied,
    /// Not a review we could answer (HTTP 4xx/5xx).
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

impl ReloadResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value!(Endpoint, Outcome, ReloadResult);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    result: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ReloadResult {
    Success,
    Failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

/// Pre-resolved handles of one endpoint.
#[derive(Clone, Debug)]
struct EndpointMetrics {
    allowed: Counter,
    denied: Counter,
    error: Counter,
    latency: Histogram,
}

/// All metrics of the webhook and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    mutate: EndpointMetrics,
    validate: EndpointMetrics,
    reload_success: Counter,
    reload_failure: Counter,
    body_too_large: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric under the `vmdistributed_webhook_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vmdistributed_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by endpoint and result (allowed, denied, error)",
            requests.clone(),
        );
        // 100µs .. ~2.4s: validation takes microseconds, preflight up to its budget.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 12))
        });
        registry.register(
            "admission_request_duration_seconds",
            "Time from the request head to the response, by endpoint",
            latency.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads after the mounted files changed, by result",
            reloads.clone(),
        );
        let body_too_large = Counter::default();
        registry.register(
            "body_too_large",
            "Requests refused with 413 because the body exceeded the limit",
            body_too_large.clone(),
        );
        let endpoint = |endpoint: Endpoint| {
            let counter = |result| {
                requests
                    .get_or_create(&RequestLabels { endpoint, result })
                    .clone()
            };
            EndpointMetrics {
                allowed: counter(Outcome::Allowed),
                denied: counter(Outcome::Denied),
                error: counter(Outcome::Error),
                latency: latency.get_or_create(&EndpointLabels { endpoint }).clone(),
            }
        };
        let reload = |result| reloads.get_or_create(&ReloadLabels { result }).clone();
        Self {
            mutate: endpoint(Endpoint::Mutate),
            validate: endpoint(Endpoint::Validate),
            reload_success: reload(ReloadResult::Success),
            reload_failure: reload(ReloadResult::Failure),
            body_too_large,
            registry,
        }
    }

    fn endpoint(&self, endpoint: Endpoint) -> &EndpointMetrics {
        match endpoint {
            Endpoint::Mutate => &self.mutate,
            Endpoint::Validate => &self.validate,
        }
    }

    /// Count a finished request and observe its duration.
    pub fn record(&self, endpoint: Endpoint, outcome: Outcome, seconds: f64) {
        let m = self.endpoint(endpoint);
        match outcome {
            Outcome::Allowed => m.allowed.inc(),
            Outcome::Denied => m.denied.inc(),
            Outcome::Error => m.error.inc(),
        };
        m.latency.observe(seconds);
    }

    /// Count a 413.
    pub fn body_too_large(&self) {
        self.body_too_large.inc();
    }

    /// Count a certificate reload.
    pub fn tls_reload(&self, success: bool) {
        if success {
            self.reload_success.inc();
        } else {
            self.reload_failure.inc();
        }
    }

    /// The OpenMetrics text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
