//! Exponential backoff with jitter for failing reconciles (docs/operations.md, "Metrics").
//!
//! A reconcile that fails is retried after a delay that doubles with every consecutive failure
//! of that object, from [`Policy::base`] (100 ms for a conflict, a stale read decided again; 2 s
//! for anything else) up to [`Policy::cap`], each delay drawn between half and all of its
//! nominal value so that objects failing together do not retry in lockstep. Until the delay is
//! over, a reconcile of that object (a watch event of its children, our own requeue) does
//! nothing and asks to be woken when it is; a change of the object's spec (a new generation) or
//! its deletion ends the wait at once, since that is what a user does to fix it. One success
//! forgets the object's failures.
//!
//! This wraps the reconcile instead of living in the error policy: the wait must also hold back
//! the watch events of a failing object's children, which the error policy never sees.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use shared::VMDistributed;

use crate::error::Error;
use crate::metrics::Metrics;

/// Delays of the backoff.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// First delay after a conflict.
    pub conflict_base: Duration,
    /// First delay after any other failure.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            conflict_base: Duration::from_millis(100),
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// The nominal delay after `failures` consecutive failures (the first is 1) whose last was
    /// `error`.
    #[must_use]
    pub fn nominal(&self, error: &Error, failures: u32) -> Duration {
        let base = match error {
            Error::Conflict(_) => self.conflict_base,
            _ => self.base,
        };
        let doublings = failures.saturating_sub(1).min(31);
        base.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// A nominal delay drawn between half and all of it; `unit` in [0, 1) is the random draw.
#[must_use]
pub fn jittered(nominal: Duration, unit: f64) -> Duration {
    nominal.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// A uniform draw in [0, 1) from the standard library's randomly keyed hasher (no random
/// number crate for one number per failure).
fn unit_draw() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // 53 random bits are exactly representable in an f64 mantissa.
    #[allow(clippy::cast_precision_loss)]
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

/// What is known about one failing object.
#[derive(Clone, Debug)]
struct Failing {
    failures: u32,
    until: Instant,
    generation: Option<i64>,
    deleting: bool,
}

/// The failing objects of one controller run, by uid.
pub struct Backoff {
    policy: Policy,
    metrics: Arc<Metrics>,
    failing: Mutex<HashMap<String, Failing>>,
}

impl Backoff {
    /// No object failing yet.
    #[must_use]
    pub fn new(policy: Policy, metrics: Arc<Metrics>) -> Self {
        metrics.set_backing_off(0);
        Self {
            policy,
            metrics,
            failing: Mutex::new(HashMap::new()),
        }
    }

    /// How long `cr` must still wait before its next reconcile, if it is backing off.
    #[must_use]
    pub fn remaining(&self, cr: &VMDistributed, now: Instant) -> Option<Duration> {
        let failing = self.failing.lock().ok()?;
        let entry = failing.get(&cr.uid().unwrap_or_default())?;
        let same_object = entry.generation == cr.metadata.generation
            && entry.deleting == cr.metadata.deletion_timestamp.is_some();
        (same_object && entry.until > now).then(|| entry.until - now)
    }

    /// Record a failure of `cr`; returns the delay before its next reconcile.
    pub fn failed(&self, cr: &VMDistributed, error: &Error, now: Instant) -> Duration {
        let Ok(mut failing) = self.failing.lock() else {
            return self.policy.base;
        };
        // Objects that stopped failing without a success (deleted) are forgotten.
        let stale = self.policy.cap.saturating_mul(2);
        failing.retain(|_, entry| now.saturating_duration_since(entry.until) < stale);
        let generation = cr.metadata.generation;
        let deleting = cr.metadata.deletion_timestamp.is_some();
        let entry = failing
            .entry(cr.uid().unwrap_or_default())
            .or_insert(Failing {
                failures: 0,
                until: now,
                generation,
                deleting,
            });
        if entry.generation != generation || entry.deleting != deleting {
            // A new spec (or the deletion) starts counting again.
            entry.failures = 0;
            entry.generation = generation;
            entry.deleting = deleting;
        }
        entry.failures = entry.failures.saturating_add(1);
        let delay = jittered(self.policy.nominal(error, entry.failures), unit_draw());
        entry.until = now + delay;
        self.metrics.backoff(error.metric_label(), delay);
        self.metrics.set_backing_off(failing.len());
        delay
    }

    /// Forget the failures of `cr` after a success.
    pub fn succeeded(&self, cr: &VMDistributed) {
        if let Ok(mut failing) = self.failing.lock()
            && failing.remove(&cr.uid().unwrap_or_default()).is_some()
        {
            self.metrics.set_backing_off(failing.len());
        }
    }

    /// Forget the failures of objects that no longer exist (`live` is every object there is).
    pub fn retain_objects(&self, live: &[Arc<VMDistributed>]) {
        let uids: std::collections::HashSet<String> =
            live.iter().filter_map(|cr| cr.uid()).collect();
        if let Ok(mut failing) = self.failing.lock() {
            let before = failing.len();
            failing.retain(|uid, _| uids.contains(uid));
            if failing.len() != before {
                self.metrics.set_backing_off(failing.len());
            }
        }
    }

    /// Run `reconcile` for `cr` unless it is backing off; record the outcome.
    ///
    /// # Errors
    /// The reconcile's own error (the error policy requeues; the wait is enforced here).
    pub async fn reconcile<F>(&self, cr: &VMDistributed, reconcile: F) -> Result<Requeue, Error>
    where
        F: Future<Output = Result<Requeue, Error>>,
    {
        if let Some(wait) = self.remaining(cr, Instant::now()) {
            tracing::debug!(cr = %cr.name_any(), ?wait, "backing off after failures");
            return Ok(Requeue::requeue(wait));
        }
        match reconcile.await {
            Ok(requeue) => {
                self.succeeded(cr);
                Ok(requeue)
            }
            Err(Error::NotLeader) => Err(Error::NotLeader),
            Err(error) => {
                let delay = self.failed(cr, &error, Instant::now());
                tracing::debug!(cr = %cr.name_any(), ?delay, "next attempt after a failure");
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn cr(generation: i64) -> VMDistributed {
        let mut cr = VMDistributed::new("demo", shared::VMDistributedSpec::default());
        cr.metadata.uid = Some("u1".to_owned());
        cr.metadata.generation = Some(generation);
        cr
    }

    fn api_error() -> Error {
        Error::Encode("refused".to_owned())
    }

    #[test]
    fn delays_double_from_their_base_up_to_the_cap() {
        let policy = Policy::default();
        let error = api_error();
        let delays: Vec<u64> = (1..=10)
            .map(|n| policy.nominal(&error, n).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let conflict = Error::Conflict("409".to_owned());
        assert_eq!(policy.nominal(&conflict, 1), Duration::from_millis(100));
        assert_eq!(policy.nominal(&conflict, 4), Duration::from_millis(800));
        assert_eq!(policy.nominal(&error, u32::MAX), policy.cap);
        assert_eq!(
            jittered(Duration::from_secs(4), 0.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            jittered(Duration::from_secs(4), 0.5),
            Duration::from_secs(3)
        );
        for _ in 0..100 {
            let unit = unit_draw();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn a_failing_object_waits_until_a_success_or_a_new_spec() {
        let backoff = Backoff::new(Policy::default(), Arc::new(Metrics::new()));
        let now = Instant::now();
        let demo = cr(1);
        assert_eq!(backoff.remaining(&demo, now), None);
        let first = backoff.failed(&demo, &api_error(), now);
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&first),
            "{first:?}"
        );
        assert_eq!(backoff.remaining(&demo, now), Some(first));
        let second = backoff.failed(&demo, &api_error(), now);
        assert!(
            (Duration::from_secs(2)..=Duration::from_secs(4)).contains(&second),
            "{second:?}"
        );
        assert_eq!(backoff.remaining(&demo, now + second), None);
        // A new generation does not wait, and starts counting again.
        assert_eq!(backoff.remaining(&cr(2), now), None);
        let fresh = backoff.failed(&cr(2), &api_error(), now);
        assert!(fresh <= Duration::from_secs(2), "{fresh:?}");
        // Neither does the deletion.
        let mut deleting = cr(2);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert_eq!(backoff.remaining(&deleting, now), None);
        backoff.succeeded(&cr(2));
        assert_eq!(backoff.remaining(&cr(2), now), None);
        let text = backoff.metrics.encode();
        assert!(
            text.contains("vmdistributed_reconcile_retries_total{reason=\"encode\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("vmdistributed_reconcile_backoff_objects 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_reconcile_in_backoff_is_not_run() {
        let backoff = Backoff::new(Policy::default(), Arc::new(Metrics::new()));
        let demo = cr(1);
        let failed = backoff.reconcile(&demo, async { Err(api_error()) }).await;
        assert!(failed.is_err());
        let mut ran = false;
        let skipped = backoff
            .reconcile(&demo, async {
                ran = true;
                Ok(Requeue::await_change())
            })
            .await;
        assert!(!ran);
        assert!(matches!(skipped, Ok(requeue) if requeue != Requeue::await_change()));
        // Not being the leader is no failure of the object.
        let other = cr(2);
        let _ = backoff
            .reconcile(&other, async { Err(Error::NotLeader) })
            .await;
        assert_eq!(backoff.remaining(&other, Instant::now()), None);
    }
}
