//! What every reconcile shares: the [`Context`] handed to the kube-runtime `Controller` (the
//! writer, the child caches, the event sink, this process's memory of each CR) and the
//! [`EventSink`] events are published through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use shared::VMDistributed;
use shared::rollout::Observed;
use shared::versions::PinnedVersions;

use super::key;
use super::memory::Memory;
use crate::cache::watches::ChildStores;
use crate::metrics::Metrics;
use crate::queue_probe::QueueProber;
use crate::writer::Writer;

/// Shared state of every reconcile.
pub struct Context {
    /// Sends every write.
    pub writer: Writer,
    /// Child caches.
    pub stores: ChildStores,
    /// Client and reporter for events.
    pub events: EventSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Versions pinned into children whose spec leaves them unset (`--pinned-*-version`).
    pinned_versions: PinnedVersions,
    /// How long a first preflight rejection is held before the same generation is dry-run
    /// again (doubling with each consecutive rejection).
    preflight_recheck_base: Duration,
    /// True once every child cache holds its first full list.
    pub(super) caches_filled: tokio::sync::watch::Receiver<bool>,
    pub(super) memory: Mutex<HashMap<String, Memory>>,
    /// Reads the agents' queues for the drain; without one, a drain finds no pod.
    pub(super) queue_prober: Option<QueueProber>,
}

impl Context {
    /// A context over these parts.
    #[must_use]
    pub fn new(
        writer: Writer,
        stores: ChildStores,
        events: EventSink,
        metrics: Arc<Metrics>,
    ) -> Self {
        // One task waits for the caches and publishes the result on a channel every reconcile
        // can wait on: a reflector store's own readiness wakes only the last of many concurrent
        // waiters, which left the first reconciles after a start waiting forever.
        let (filled, caches_filled) = tokio::sync::watch::channel(false);
        let waiting = stores.clone();
        tokio::spawn(async move {
            waiting.ready().await;
            let _ = filled.send(true);
        });
        Self {
            pinned_versions: PinnedVersions::default(),
            queue_prober: None,
            preflight_recheck_base: shared::preflight::RECHECK_BASE,
            caches_filled,
            writer,
            stores,
            events,
            metrics,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// Read the agents' queues with this prober.
    #[must_use]
    pub fn with_queue_prober(mut self, prober: QueueProber) -> Self {
        self.queue_prober = Some(prober);
        self
    }

    /// Pin these versions into children whose spec leaves them unset (none by default).
    #[must_use]
    pub fn with_pinned_versions(mut self, pinned_versions: PinnedVersions) -> Self {
        self.pinned_versions = pinned_versions;
        self
    }

    /// Hold a first preflight rejection this long before dry-running again (default
    /// [`shared::preflight::RECHECK_BASE`]).
    #[must_use]
    pub fn with_preflight_recheck_base(mut self, base: Duration) -> Self {
        self.preflight_recheck_base = base;
        self
    }

    /// When the preflight rejection of `cr`'s generation in `memory` is to be dry-run again,
    /// if it holds one.
    pub(super) fn preflight_recheck_at(
        &self,
        cr: &VMDistributed,
        memory: &Memory,
    ) -> Option<Instant> {
        let (at, rejections) = memory.preflight_rejected?;
        let preflight = memory.preflight.as_ref()?;
        preflight.rejection.as_ref()?;
        (Some(preflight.generation) == cr.metadata.generation)
            .then(|| at + shared::preflight::recheck_after(self.preflight_recheck_base, rejections))
    }

    /// What the decision is made on: the cached children and this process's memory of `cr`.
    pub(super) fn observed(&self, cr: &VMDistributed, memory: &Memory) -> Observed {
        // A rejection held past its time is forgotten: the decision then dry-runs again.
        let preflight = memory.preflight.clone().filter(|_| {
            self.preflight_recheck_at(cr, memory)
                .is_none_or(|at| Instant::now() < at)
        });
        Observed {
            children: self.stores.observed_children(cr),
            preflight,
            vmauth_applied_generation: memory.vmauth_applied_generation,
            vmauth_applied_uid: memory.vmauth_applied_uid.clone(),
            pinned_versions: self.pinned_versions.clone(),
            child_failures: memory.child_failures.clone(),
            queues: memory.queues.clone(),
        }
    }

    pub(super) fn memory(&self, uid: &str) -> Memory {
        self.memory
            .lock()
            .ok()
            .and_then(|m| m.get(uid).cloned())
            .unwrap_or_default()
    }

    pub(super) fn remember(&self, uid: &str, update: impl FnOnce(&mut Memory)) {
        if let Ok(mut memory) = self.memory.lock() {
            update(memory.entry(uid.to_owned()).or_default());
        }
    }

    pub(super) fn forget(&self, uid: &str) {
        if let Ok(mut memory) = self.memory.lock() {
            memory.remove(uid);
        }
    }

    /// Drop what is kept for objects that no longer exist (`live` is every object there is):
    /// their memory and their metric series. A deletion that ran no cleanup step here (an
    /// object without the finalizer, or deleted while another replica acted) leaves both.
    pub fn retain_objects(&self, live: &[Arc<VMDistributed>]) {
        let uids: HashSet<String> = live.iter().filter_map(|cr| cr.uid()).collect();
        if let Ok(mut memory) = self.memory.lock() {
            memory.retain(|uid, _| uids.contains(uid));
        }
        let keys: HashSet<String> = live.iter().map(|cr| key(cr)).collect();
        self.metrics.retain_objects(&keys);
    }
}

/// Where events go.
#[derive(Clone)]
pub struct EventSink {
    /// Client used to create events.
    pub client: kube::Client,
    /// Reporting controller and instance.
    pub reporter: kube::runtime::events::Reporter,
    /// Events are published in the background after the reconcile that decided them; a
    /// replica that stopped acting meanwhile must not publish them (the new leader decides
    /// and reports the same transition).
    pub gate: Arc<crate::leader::LeaderGate>,
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use crate::leader::LeaderGate;
    use shared::api::UpdateStatus;

    #[tokio::test]
    async fn objects_that_are_gone_lose_their_memory_and_metric_series() {
        let (ctx, _) = testing::context(LeaderGate::always());
        let kept = testing::cr("kept", "uid-kept");
        let gone = testing::cr("gone", "uid-gone");
        for (cr, generation) in [(&kept, 1), (&gone, 2)] {
            let uid = cr.uid().expect("uid");
            ctx.remember(&uid, |m| m.vmauth_applied_generation = Some(generation));
            ctx.metrics
                .set_object_status("ns", &cr.name_any(), Some(UpdateStatus::Operational));
        }
        assert!(ctx.metrics.encode().contains("name=\"gone\""));

        ctx.retain_objects(&[Arc::new(kept)]);

        assert_eq!(ctx.memory("uid-kept").vmauth_applied_generation, Some(1));
        assert_eq!(ctx.memory("uid-gone").vmauth_applied_generation, None);
        let exported = ctx.metrics.encode();
        assert!(exported.contains("name=\"kept\""), "{exported}");
        assert!(!exported.contains("name=\"gone\""), "{exported}");
    }
}
