//! Leader election on a `coordination.k8s.io` Lease.
//!
//! `kube-lease-manager` acquires and renews the Lease. On top of it, [`LeaderGate`] decides whether
//! this replica may write at this instant: only while the Lease names this replica and its last
//! renewal is recent enough that it cannot have expired yet. A replica that cannot renew (API
//! server unreachable, process stalled) therefore stops acting *before* another replica may take
//! the Lease over, and every write checks the gate just before it is sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// Whether this replica may act right now.
pub struct LeaderGate {
    /// Unix milliseconds until which this replica may act; 0 = not the leader.
    acting_until_ms: AtomicI64,
}

impl LeaderGate {
    /// A gate that always allows acting (`--leader-elect=false`).
    #[must_use]
    pub fn always() -> Arc<Self> {
        Arc::new(Self {
            acting_until_ms: AtomicI64::new(i64::MAX),
        })
    }

    fn closed() -> Arc<Self> {
        Arc::new(Self {
            acting_until_ms: AtomicI64::new(0),
        })
    }

    /// True while this replica holds a Lease that cannot have expired.
    #[must_use]
    pub fn may_act(&self) -> bool {
        jiff::Timestamp::now().as_millisecond() < self.acting_until_ms.load(Ordering::Acquire)
    }

    fn set_until(&self, until_ms: i64) {
        self.acting_until_ms.store(until_ms, Ordering::Release);
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
        let safety_ms = i64::try_from(grace * 500).unwrap_or(i64::MAX);
        let task_gate = gate.clone();
        let task = tokio::spawn(async move {
            let mut lease_state = lease_state;
            loop {
                let holder = *lease_state.borrow_and_update();
                if holder {
                    match leases.get_opt(&config.lease_name).await {
                        Ok(Some(lease)) => {
                            task_gate.set_until(acting_deadline(
                                &lease,
                                &config.identity,
                                safety_ms,
                            ));
                        }
                        Ok(None) => task_gate.set_until(0),
                        // Keep the last deadline: it runs out on its own if the API stays away.
                        Err(err) => tracing::warn!(error = %err, "cannot read the Lease"),
                    }
                } else {
                    task_gate.set_until(0);
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
                        if changed.is_err() {
                            task_gate.set_until(0);
                            let _ = acting_tx.send(false);
                            break;
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            task_gate.set_until(0);
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
        self.gate.set_until(0);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Unix milliseconds until which the holder named in `lease` may act, 0 if it is not `identity`.
fn acting_deadline(lease: &Lease, identity: &str, safety_ms: i64) -> i64 {
    let Some(spec) = &lease.spec else { return 0 };
    if spec.holder_identity.as_deref() != Some(identity) {
        return 0;
    }
    let (Some(renew), Some(duration)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return 0;
    };
    renew.0.as_millisecond() + i64::from(duration) * 1000 - safety_ms
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn lease(holder: &str, renew_ms: i64, duration: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::from_millisecond(renew_ms)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                )),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_holder_stops_acting_before_its_lease_expires() {
        let renew = 1_000_000;
        assert_eq!(
            acting_deadline(&lease("me", renew, 15), "me", 2500),
            renew + 12_500
        );
        assert_eq!(acting_deadline(&lease("other", renew, 15), "me", 2500), 0);
        assert_eq!(acting_deadline(&Lease::default(), "me", 2500), 0);
    }

    #[test]
    fn gates() {
        assert!(LeaderGate::always().may_act());
        let gate = LeaderGate::closed();
        assert!(!gate.may_act());
        gate.set_until(jiff::Timestamp::now().as_millisecond() + 60_000);
        assert!(gate.may_act());
        gate.set_until(jiff::Timestamp::now().as_millisecond() - 1);
        assert!(!gate.may_act());
    }
}
