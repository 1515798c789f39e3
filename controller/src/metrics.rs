//! Prometheus metrics of the controller, served on `/metrics`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// How zones are counted in `vmdistributed_zones`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZoneState {
    /// Current and ready.
    Ready,
    /// The zone under update (`status.rollout.zone`).
    Updating,
    /// Ready but not carrying the desired spec yet.
    Outdated,
    /// Not ready.
    NotReady,
}

impl ZoneState {
    const ALL: [Self; 4] = [Self::Ready, Self::Updating, Self::Outdated, Self::NotReady];

    fn label(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Updating => "updating",
            Self::Outdated => "outdated",
            Self::NotReady => "not_ready",
        }
    }
}

/// The controller's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    reconcile_duration: Histogram,
    zones: Family<Labels, Gauge>,
    rollout_duration: Histogram,
    since_success: Gauge<f64, AtomicU64>,
    leader: Gauge,
    child_writes: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    backoff: Histogram,
    backing_off: Gauge,
    last_success_unix_ms: AtomicI64,
    zone_counts: Mutex<HashMap<String, HashMap<ZoneState, i64>>>,
    rollout_started: Mutex<HashMap<String, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vmdistributed");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of VMDistributed objects",
            reconciles.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile step",
            reconcile_duration.clone(),
        );
        let zones = Family::<Labels, Gauge>::default();
        registry.register(
            "zones",
            "Zones of all VMDistributed objects by state",
            zones.clone(),
        );
        let rollout_duration = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "rollout_duration_seconds",
            "Time from RolloutStarted to RolloutFinished, as seen by this replica",
            rollout_duration.clone(),
        );
        let since_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "seconds_since_last_successful_reconcile",
            "Seconds since a reconcile last finished without error (-1: none yet)",
            since_success.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease and acts",
            leader.clone(),
        );
        let child_writes = Family::<Labels, Counter>::default();
        registry.register(
            "child_writes",
            "Writes to children and to VMDistributed objects by verb",
            child_writes.clone(),
        );
        let retries = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_retries",
            "Failed reconciles retried after a backoff delay, by reason",
            retries.clone(),
        );
        // 50 ms .. ~27 min: from a conflict's first retry to past the 5 minute cap.
        let backoff = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "reconcile_backoff_seconds",
            "Delay before the next attempt of a failed reconcile",
            backoff.clone(),
        );
        let backing_off = Gauge::default();
        registry.register(
            "reconcile_backoff_objects",
            "VMDistributed objects whose last reconcile failed and that wait before retrying",
            backing_off.clone(),
        );
        for state in ZoneState::ALL {
            zones.get_or_create(&state_labels(state)).set(0);
        }
        Self {
            registry,
            reconciles,
            errors,
            reconcile_duration,
            zones,
            rollout_duration,
            since_success,
            leader,
            child_writes,
            retries,
            backoff,
            backing_off,
            last_success_unix_ms: AtomicI64::new(0),
            zone_counts: Mutex::new(HashMap::new()),
            rollout_started: Mutex::new(HashMap::new()),
        }
    }

    /// Record a reconcile that took `elapsed`; `error` is the reason label of a failure.
    pub fn reconciled(&self, elapsed: Duration, error: Option<&str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        match error {
            Some(reason) => {
                self.errors
                    .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
                    .inc();
            }
            None => self
                .last_success_unix_ms
                .store(jiff::Timestamp::now().as_millisecond(), Ordering::Relaxed),
        }
    }

    /// Count one write (`verb` = apply, create, delete, patch, status).
    pub fn wrote(&self, verb: &str) {
        self.child_writes
            .get_or_create(&vec![("verb".to_owned(), verb.to_owned())])
            .inc();
    }

    /// A failed reconcile (`reason` as in `reconcile_errors`) will be retried after `delay`.
    pub fn backoff(&self, reason: &str, delay: Duration) {
        self.retries
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
        self.backoff.observe(delay.as_secs_f64());
    }

    /// How many objects are waiting to retry a failed reconcile.
    pub fn set_backing_off(&self, objects: usize) {
        self.backing_off
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Whether this replica acts as the leader.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Replace the zone counts of one object (`key` = namespace/name); `None` forgets it.
    pub fn set_zones(&self, key: &str, states: Option<Vec<ZoneState>>) {
        let Ok(mut all) = self.zone_counts.lock() else {
            return;
        };
        match states {
            Some(states) => {
                let mut counts = HashMap::new();
                for state in states {
                    *counts.entry(state).or_insert(0) += 1;
                }
                all.insert(key.to_owned(), counts);
            }
            None => {
                all.remove(key);
            }
        }
        for state in ZoneState::ALL {
            let total: i64 = all.values().filter_map(|c| c.get(&state)).sum();
            self.zones.get_or_create(&state_labels(state)).set(total);
        }
    }

    /// A rollout of `key` started (first call wins until it finishes).
    pub fn rollout_started(&self, key: &str) {
        if let Ok(mut started) = self.rollout_started.lock() {
            started.entry(key.to_owned()).or_insert_with(Instant::now);
        }
    }

    /// A rollout of `key` finished; observes its duration if this replica saw it start.
    pub fn rollout_finished(&self, key: &str) {
        let start = self
            .rollout_started
            .lock()
            .ok()
            .and_then(|mut started| started.remove(key));
        if let Some(start) = start {
            self.rollout_duration.observe(start.elapsed().as_secs_f64());
        }
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let last = self.last_success_unix_ms.load(Ordering::Relaxed);
        let since = if last == 0 {
            -1.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let ms = (jiff::Timestamp::now().as_millisecond() - last).max(0) as f64;
            ms / 1000.0
        };
        self.since_success.set(since);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn state_labels(state: ZoneState) -> Labels {
    vec![("state".to_owned(), state.label().to_owned())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let metrics = Metrics::new();
        metrics.reconciled(Duration::from_millis(3), None);
        metrics.reconciled(Duration::from_millis(3), Some("conflict"));
        metrics.set_zones("ns/a", Some(vec![ZoneState::Ready, ZoneState::Updating]));
        metrics.set_zones("ns/b", Some(vec![ZoneState::Ready]));
        let text = metrics.encode();
        for needle in [
            "vmdistributed_reconciles_total 2",
            "vmdistributed_reconcile_errors_total{reason=\"conflict\"} 1",
            "vmdistributed_reconcile_duration_seconds_count 2",
            "vmdistributed_zones{state=\"ready\"} 2",
            "vmdistributed_zones{state=\"updating\"} 1",
            "vmdistributed_rollout_duration_seconds_count 0",
            "vmdistributed_seconds_since_last_successful_reconcile",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        metrics.set_zones("ns/a", None);
        assert!(
            metrics
                .encode()
                .contains("vmdistributed_zones{state=\"updating\"} 0")
        );
    }
}
