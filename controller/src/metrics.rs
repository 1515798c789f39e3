//! Prometheus metrics of the controller, served on `/metrics`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shared::api::UpdateStatus;

type Labels = Vec<(String, String)>;

/// `controller` label of `operator_object_status`, as the VictoriaMetrics operator names its
/// own VMDistributed controller.
const OBJECT_STATUS_CONTROLLER: &str = "vmdistributed";

/// Every `status` label value of `operator_object_status`, as the VictoriaMetrics operator
/// exposes them (`ignored` is one of its statuses this controller never reports; it is kept at 0
/// so both expose the same series).
const OBJECT_STATUSES: [&str; 5] = ["operational", "failed", "expanding", "paused", "ignored"];

/// The `status` label of an `updateStatus` (its serialized, upstream spelling).
fn status_label(status: UpdateStatus) -> &'static str {
    match status {
        UpdateStatus::Operational => "operational",
        UpdateStatus::Failed => "failed",
        UpdateStatus::Expanding => "expanding",
        UpdateStatus::Paused => "paused",
    }
}

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
    /// Metrics under the VictoriaMetrics operator's own names, without the prefix.
    unprefixed: Registry,
    object_status: Family<Labels, Gauge>,
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
    /// The objects (`namespace/name` → (namespace, name)) with `operator_object_status`
    /// series: a metric family cannot list its series, and they must go with their object.
    status_objects: Mutex<HashMap<String, (String, String)>>,
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
        // Users alert on the VictoriaMetrics operator's `operator_object_status` (one series per
        // object and status, 1 for the current one); the same name, labels and help here keep
        // those alerts and dashboards working for objects this controller manages.
        let mut unprefixed = Registry::default();
        let object_status = Family::<Labels, Gauge>::default();
        unprefixed.register(
            "operator_object_status",
            "Current update status of operator-managed objects (1=active for that status, 0=inactive)",
            object_status.clone(),
        );
        Self {
            registry,
            unprefixed,
            object_status,
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
            status_objects: Mutex::new(HashMap::new()),
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

    /// Set the `operator_object_status` series of the `VMDistributed` `namespace/name`: 1 for
    /// `status`, 0 for the others. `None` (the object is being deleted) removes its series.
    pub fn set_object_status(&self, namespace: &str, name: &str, status: Option<UpdateStatus>) {
        if let Ok(mut objects) = self.status_objects.lock() {
            let key = format!("{namespace}/{name}");
            if status.is_some() {
                objects.insert(key, (namespace.to_owned(), name.to_owned()));
            } else {
                objects.remove(&key);
            }
        }
        self.write_object_status(namespace, name, status);
    }

    fn write_object_status(&self, namespace: &str, name: &str, status: Option<UpdateStatus>) {
        let current = status.map(status_label);
        for label in OBJECT_STATUSES {
            let labels = vec![
                ("controller".to_owned(), OBJECT_STATUS_CONTROLLER.to_owned()),
                ("namespace".to_owned(), namespace.to_owned()),
                ("name".to_owned(), name.to_owned()),
                ("status".to_owned(), label.to_owned()),
            ];
            match current {
                Some(current) => {
                    self.object_status
                        .get_or_create(&labels)
                        .set(i64::from(current == label));
                }
                None => {
                    self.object_status.remove(&labels);
                }
            }
        }
    }

    /// Drop the per-object series and state of every object whose `namespace/name` is not in
    /// `live`.
    pub fn retain_objects(&self, live: &HashSet<String>) {
        self.forget_objects_where(|key| !live.contains(key));
    }

    /// Drop every per-object series and state: a replica that does not act exports none
    /// (its values would only grow stale).
    pub fn forget_objects(&self) {
        self.forget_objects_where(|_| true);
    }

    fn forget_objects_where(&self, gone: impl Fn(&str) -> bool) {
        let removed: Vec<(String, String)> = match self.status_objects.lock() {
            Ok(mut objects) => {
                let keys: Vec<String> = objects.keys().filter(|k| gone(k)).cloned().collect();
                keys.iter().filter_map(|k| objects.remove(k)).collect()
            }
            Err(_) => Vec::new(),
        };
        for (namespace, name) in removed {
            self.write_object_status(&namespace, &name, None);
        }
        let zone_keys: Vec<String> = self
            .zone_counts
            .lock()
            .map(|all| all.keys().filter(|k| gone(k)).cloned().collect())
            .unwrap_or_default();
        for key in zone_keys {
            self.set_zones(&key, None);
        }
        if let Ok(mut started) = self.rollout_started.lock() {
            started.retain(|key, _| !gone(key));
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
        let encoded = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &self.unprefixed))
            .and_then(|()| text::encode_eof(&mut out));
        if encoded.is_err() {
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

    /// The series of one object in `text`, as `status value` lines.
    fn object_status(text: &str, namespace: &str, name: &str) -> Vec<String> {
        let labels = format!(
            "operator_object_status{{controller=\"vmdistributed\",namespace=\"{namespace}\",name=\"{name}\",status=\""
        );
        let mut series: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix(&labels))
            .map(|rest| rest.replace("\"} ", " "))
            .collect();
        series.sort();
        series
    }

    #[test]
    fn object_status_is_one_for_the_current_status_and_gone_after_deletion() {
        let metrics = Metrics::new();
        metrics.set_object_status("ns", "a", Some(UpdateStatus::Expanding));
        metrics.set_object_status("ns", "b", Some(UpdateStatus::Operational));
        metrics.set_object_status("ns", "a", Some(UpdateStatus::Failed));
        let text = metrics.encode();
        // The VictoriaMetrics operator's name, labels and help, unprefixed, so alerts written
        // for it (`operator_object_status{status="failed"} == 1`) cover this controller too.
        assert!(
            text.contains("# TYPE operator_object_status gauge"),
            "{text}"
        );
        assert!(text.contains("# HELP operator_object_status Current update status of operator-managed objects (1=active for that status, 0=inactive)"), "{text}");
        assert_eq!(
            object_status(&text, "ns", "a"),
            [
                "expanding 0",
                "failed 1",
                "ignored 0",
                "operational 0",
                "paused 0"
            ]
        );
        assert_eq!(
            object_status(&text, "ns", "b"),
            [
                "expanding 0",
                "failed 0",
                "ignored 0",
                "operational 1",
                "paused 0"
            ]
        );
        // The prefixed families are still there, and the exposition ends once.
        assert!(text.contains("vmdistributed_reconciles_total"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        metrics.set_object_status("ns", "a", None);
        let text = metrics.encode();
        assert!(object_status(&text, "ns", "a").is_empty(), "{text}");
        assert_eq!(object_status(&text, "ns", "b").len(), 5, "{text}");
    }
}
