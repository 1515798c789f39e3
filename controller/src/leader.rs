//! Leader election on a `coordination.k8s.io` Lease.
//!
//! `kube-lease-manager` acquires and renews the Lease. On top of it, [`LeaderGate`] decides whether
//! this replica may write at this instant: only while the Lease names this replica and its last
//! renewal is recent enough that it cannot have expired yet. A replica that cannot renew (API
//! server unreachable, process stalled) therefore stops acting *before* another replica may take
//! the Lease over, and every write checks the gate just before it is sent.
//!
//! "Recent enough" is measured on the monotonic clock, as client-go does: the instant a renewal
//! was seen, not the Lease's `renewTime`. `renewTime` is wall-clock time, which a step of the
//! system clock (NTP, a VM resumed from suspend) or a replica with a skewed clock makes
//! meaningless here: compared with the local wall clock it could let a replica act long after
//! its Lease expired, or never.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// Whether this replica may act right now.
pub struct LeaderGate {
    /// The origin of `acting_until_ns`.
    origin: Instant,
    /// Nanoseconds after `origin` until which this replica may act; 0 = not the leader,
    /// `u64::MAX` = always.
    acting_until_ns: AtomicU64,
}

impl LeaderGate {
    /// A gate that always allows acting (`--leader-elect=false`).
    #[must_use]
    pub fn always() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            acting_until_ns: AtomicU64::new(u64::MAX),
        })
    }

    pub(crate) fn closed() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            acting_until_ns: AtomicU64::new(0),
        })
    }

    /// True while this replica holds a Lease that cannot have expired.
    #[must_use]
    pub fn may_act(&self) -> bool {
        self.nanos(Instant::now()) < self.acting_until_ns.load(Ordering::Acquire)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Allow acting until `until` (`None`: stop now).
    fn set_until(&self, until: Option<Instant>) {
        // 0 is "closed"; an instant at the origin itself is already over.
        let ns = until.map_or(0, |at| self.nanos(at).max(1));
        self.acting_until_ns.store(ns, Ordering::Release);
    }
}

/// The renewals of the Lease this replica has seen, on the monotonic clock.
#[derive(Debug, Default)]
struct Renewals {
    /// The Lease's `renewTime` last seen while this replica held it; only compared for
    /// change, never with a clock.
    renew_time: Option<MicroTime>,
    /// A monotonic instant no later than the last renewal seen.
    renewed_at: Option<Instant>,
    /// When the last read of the Lease that this replica held was sent.
    last_read: Option<Instant>,
}

impl Renewals {
    /// Take in a read of the Lease sent at `read_at`; the instant until which this replica may
    /// act, `None` when the Lease does not name it.
    ///
    /// A `renewTime` that differs from the one last seen is a renewal made after the previous
    /// read was sent, so that read's send instant is a lower bound of the renewal (safe: acting
    /// stops early rather than late). The first renewal seen has no previous read; it was made
    /// before this replica learned that it holds the Lease, at `acquired_at`, which the lease
    /// manager reports right after its successful write.
    fn observe(
        &mut self,
        lease: &Lease,
        identity: &str,
        read_at: Instant,
        acquired_at: Instant,
        safety: Duration,
    ) -> Option<Instant> {
        let spec = lease.spec.as_ref();
        let held = spec.and_then(|s| s.holder_identity.as_deref()) == Some(identity);
        let duration = spec.and_then(|s| s.lease_duration_seconds);
        let (true, Some(duration)) = (held, duration) else {
            *self = Self::default();
            return None;
        };
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        if self.renewed_at.is_none() {
            self.renewed_at = Some(acquired_at);
        } else if renew_time != self.renew_time {
            self.renewed_at = self.last_read.or(Some(acquired_at));
        }
        self.renew_time = renew_time;
        self.last_read = Some(read_at);
        let valid = Duration::from_secs(u64::try_from(duration).unwrap_or(0));
        self.renewed_at.map(|at| at + valid.saturating_sub(safety))
    }
}

/// A running election: the gate, a channel that follows it, and the task to stop on shutdown.
pub struct Election {
    /// Checked before every write.
    pub gate: Arc<LeaderGate>,
    /// `true` while [`LeaderGate::may_act`] holds (updated at least twice a second).
    pub acting: watch::Receiver<bool>,
    stop: Option<watch::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Keeps `acting` open when there is no election task to own the sender.
    _always: Option<watch::Sender<bool>>,
}

/// Parameters of the election.
pub struct ElectionConfig {
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease duration.
    pub duration_seconds: u64,
}

impl Election {
    /// No election: this replica always acts.
    #[must_use]
    pub fn disabled() -> Self {
        let (always, acting) = watch::channel(true);
        Self {
            gate: LeaderGate::always(),
            acting,
            stop: None,
            task: None,
            _always: Some(always),
        }
    }

    /// Start competing for the Lease.
    ///
    /// # Errors
    /// When the Lease cannot be read or created.
    pub async fn start(client: Client, config: ElectionConfig) -> anyhow::Result<Self> {
        // Renew a third of the duration early; stop acting halfway through that margin.
        let grace = (config.duration_seconds / 3).max(1);
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.namespace)
            .with_parameters(LeaseParams::new(
                &config.identity,
                config.duration_seconds,
                grace,
            ))
            .build()
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "cannot use Lease {}/{}: {err}",
                    config.namespace,
                    config.lease_name
                )
            })?;
        let (lease_state, manager_task) = manager.watch().await;
        let gate = LeaderGate::closed();
        let (acting_tx, acting) = watch::channel(false);
        let (stop, mut stopped) = watch::channel(());
        let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
        let safety = Duration::from_millis(grace * 500);
        let task_gate = gate.clone();
        let task = tokio::spawn(async move {
            let mut lease_state = lease_state;
            let mut renewals = Renewals::default();
            // When the lease manager last reported that this replica holds the Lease.
            let mut acquired_at = Instant::now();
            loop {
                let holder = *lease_state.borrow_and_update();
                if holder {
                    let read_at = Instant::now();
                    match leases.get_opt(&config.lease_name).await {
                        Ok(Some(lease)) => task_gate.set_until(renewals.observe(
                            &lease,
                            &config.identity,
                            read_at,
                            acquired_at,
                            safety,
                        )),
                        Ok(None) => {
                            renewals = Renewals::default();
                            task_gate.set_until(None);
                        }
                        // Keep the last deadline: it runs out on its own if the API stays away.
                        Err(err) => tracing::warn!(error = %err, "cannot read the Lease"),
                    }
                } else {
                    renewals = Renewals::default();
                    task_gate.set_until(None);
                }
                let acting_now = task_gate.may_act();
                acting_tx.send_if_modified(|acting| {
                    let changed = *acting != acting_now;
                    *acting = acting_now;
                    changed
                });
                tokio::select! {
                    _ = stopped.changed() => break,
                    changed = lease_state.changed() => {
                        acquired_at = Instant::now();
                        if changed.is_err() {
                            task_gate.set_until(None);
                            let _ = acting_tx.send(false);
                            break;
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            task_gate.set_until(None);
            let _ = acting_tx.send(false);
            // Dropping the receiver makes the manager release the Lease and return.
            drop(lease_state);
            match tokio::time::timeout(Duration::from_secs(5), manager_task).await {
                Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
                Ok(Ok(Err(err))) => tracing::warn!(error = %err, "releasing the Lease failed"),
                Ok(Err(err)) => tracing::warn!(error = %err, "Lease task failed"),
                Err(_) => tracing::warn!("timed out releasing the Lease"),
            }
        });
        Ok(Self {
            gate,
            acting,
            stop: Some(stop),
            task: Some(task),
            _always: None,
        })
    }

    /// Stop acting and release the Lease (if held).
    pub async fn shutdown(mut self) {
        self.gate.set_until(None);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn lease(holder: &str, renew: jiff::Timestamp, duration: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                renew_time: Some(MicroTime(renew)),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    const SAFETY: Duration = Duration::from_millis(2500);

    #[test]
    fn acting_is_timed_from_the_renewal_seen_not_from_renew_time() {
        let now = jiff::Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let acquired = Instant::now();
        let valid = Duration::from_millis(12_500);
        // renewTime an hour behind or ahead of the local wall clock (a skewed or stepped
        // clock): the deadline is the same, counted from when the renewal was seen.
        for renew in [now - hour, now, now + hour] {
            let mut renewals = Renewals::default();
            let until = renewals.observe(&lease("me", renew, 15), "me", acquired, acquired, SAFETY);
            assert_eq!(until, Some(acquired + valid), "renewTime {renew}");
        }
    }

    #[test]
    fn a_renewal_counts_from_the_read_before_it_and_no_renewal_runs_out() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let first = jiff::Timestamp::UNIX_EPOCH;
        let second = first + jiff::SignedDuration::from_secs(5);
        let valid = Duration::from_millis(12_500);
        let mut renewals = Renewals::default();
        assert_eq!(
            renewals.observe(&lease("me", first, 15), "me", at(100), at(0), SAFETY),
            Some(at(0) + valid)
        );
        // The same renewTime read again: no renewal, the deadline stays.
        assert_eq!(
            renewals.observe(&lease("me", first, 15), "me", at(5_000), at(0), SAFETY),
            Some(at(0) + valid)
        );
        // A new renewTime: renewed after the read at 5 s was sent.
        assert_eq!(
            renewals.observe(&lease("me", second, 15), "me", at(5_500), at(0), SAFETY),
            Some(at(5_000) + valid)
        );
        // Another holder, or no Lease spec: not acting, and the next renewal of ours starts
        // from its own acquisition.
        assert_eq!(
            renewals.observe(&lease("other", second, 15), "me", at(6_000), at(0), SAFETY),
            None
        );
        assert_eq!(
            renewals.observe(&Lease::default(), "me", at(6_000), at(0), SAFETY),
            None
        );
        assert_eq!(
            renewals.observe(&lease("me", second, 15), "me", at(9_000), at(8_000), SAFETY),
            Some(at(8_000) + valid)
        );
    }

    #[test]
    fn gates() {
        assert!(LeaderGate::always().may_act());
        let gate = LeaderGate::closed();
        assert!(!gate.may_act());
        gate.set_until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(gate.may_act());
        gate.set_until(Some(Instant::now()));
        assert!(!gate.may_act());
        gate.set_until(None);
        assert!(!gate.may_act());
    }
}
