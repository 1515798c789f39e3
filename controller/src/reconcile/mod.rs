//! One reconcile step: read the cluster into an [`Observed`], let the pure decision say what to
//! do, then write the status (with a resourceVersion precondition), emit events and execute the
//! child writes, in that order (docs/rollout.md "Crash safety"; the rules are in
//! `shared::model`). Nothing here waits for readiness: every wait is a requeue or a
//! watch event.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder};
use kube::{Resource, ResourceExt};
use shared::VMDistributed;
use shared::children::ANNOTATION_CREATED_BY;
use shared::model::{
    Action, ChildFailure, ChildIntent, Decision, Event, EventReason, EventType, PreflightOutcome,
};
use shared::names::ChildKind;
use shared::preflight::Finding;
use shared::queues::{QueueProbe, QueueReport};
use shared::rollout::{Observed, decide};
use shared::versions::PinnedVersions;
use tracing::Instrument;

use crate::cache::watches::ChildStores;
use crate::error::Error;
use crate::managed_fields::Takeover;
mod plan;

use plan::StatusWrite;

use crate::metrics::{Metrics, ZoneState};
use crate::queue_probe::QueueProber;
use crate::writer::{Created, Writer};

/// Budget of one preflight (all dry-runs in parallel), as the webhook's preflight.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(3);
/// Decision steps taken in one reconcile while each only writes status or runs preflight.
const MAX_STEPS: usize = 6;
/// Fallback re-check of a CR skipped because the cache had not seen our write yet (its watch
/// event normally triggers the next reconcile first).
const STALE_RECHECK: Duration = Duration::from_secs(1);
/// Maximum size of an event note.
const NOTE_LIMIT: usize = 1024;
/// How long a child write of ours may stay unseen by the cache before decisions go ahead
/// without it (a watch that is reconnecting; the live re-read still guards every write).
const UNSEEN_WRITE_TTL: Duration = Duration::from_secs(10);

/// What this process remembers about one CR between reconciles. Losing it (restart, another
/// replica) is safe: the decision treats "unknown" conservatively.
#[derive(Clone, Debug, Default)]
struct Memory {
    preflight: Option<PreflightOutcome>,
    /// When the preflight in `preflight` was rejected, and how many times in a row the same
    /// generation was: the rejection is held for [`shared::preflight::recheck_after`] and then
    /// dry-run again, since its cause may be fixed outside anything this controller watches.
    preflight_rejected: Option<(Instant, u32)>,
    /// Child writes the API server failed, until a write of that child succeeds.
    child_failures: Vec<ChildFailure>,
    vmauth_applied_generation: Option<i64>,
    vmauth_applied_uid: Option<String>,
    /// The resourceVersions our last writes of the CR (status or finalizer) replaced, newest
    /// last. A reconcile handed a cached CR with one of these versions runs before the cache saw
    /// our write: deciding on it would only repeat the write and get a 409. The write's own
    /// watch event follows.
    superseded: Vec<String>,
    /// Child writes of ours that the child caches have not shown yet.
    unseen_writes: Vec<UnseenWrite>,
    /// When this process last wrote the CR's status.
    last_status_write: Option<Instant>,
    /// The last poll of each agent queue a drain asked for.
    queues: Vec<QueueReport>,
}

/// A child we created or changed, and what its cache entry looked like before.
#[derive(Clone, Debug)]
struct UnseenWrite {
    kind: ChildKind,
    name: String,
    /// The resourceVersion our write replaced; `None` for a create.
    replaced: Option<String>,
    at: Instant,
}

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
    caches_filled: tokio::sync::watch::Receiver<bool>,
    memory: Mutex<HashMap<String, Memory>>,
    /// Reads the agents' queues for the drain; without one, a drain finds no pod.
    queue_prober: Option<QueueProber>,
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
    fn preflight_recheck_at(&self, cr: &VMDistributed, memory: &Memory) -> Option<Instant> {
        let (at, rejections) = memory.preflight_rejected?;
        let preflight = memory.preflight.as_ref()?;
        preflight.rejection.as_ref()?;
        (Some(preflight.generation) == cr.metadata.generation)
            .then(|| at + shared::preflight::recheck_after(self.preflight_recheck_base, rejections))
    }

    /// What the decision is made on: the cached children and this process's memory of `cr`.
    fn observed(&self, cr: &VMDistributed, memory: &Memory) -> Observed {
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

    fn memory(&self, uid: &str) -> Memory {
        self.memory
            .lock()
            .ok()
            .and_then(|m| m.get(uid).cloned())
            .unwrap_or_default()
    }

    fn remember(&self, uid: &str, update: impl FnOnce(&mut Memory)) {
        if let Ok(mut memory) = self.memory.lock() {
            update(memory.entry(uid.to_owned()).or_default());
        }
    }

    fn forget(&self, uid: &str) {
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

/// `namespace/name` of a CR, as logged and used for metrics.
fn key(cr: &VMDistributed) -> String {
    format!("{}/{}", cr.namespace().unwrap_or_default(), cr.name_any())
}

/// The reconcile entry point given to the kube-runtime `Controller`.
///
/// # Errors
/// Whatever stopped the step; the error policy requeues.
pub async fn reconcile(cr: Arc<VMDistributed>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // Decide only once the child caches are filled, or a first decision could see nothing.
    tracing::debug!(cr = %key(&cr), "reconcile requested");
    let mut filled = ctx.caches_filled.clone();
    if filled.wait_for(|f| *f).await.is_err() {
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    // A kind whose CRD is not served cannot be written; the object waits until the CRD is back
    // (which restarts the controller, reconciling everything). Its deletion goes ahead: there
    // is nothing of that kind to delete or release.
    let missing = ctx.stores.missing_kinds(&cr);
    if !missing.is_empty() && cr.meta().deletion_timestamp.is_none() {
        tracing::info!(cr = %key(&cr), ?missing, "waiting for the CustomResourceDefinitions of kinds this object needs");
        return Ok(Requeue::await_change());
    }
    let span = tracing::info_span!("reconcile", cr = %key(&cr));
    let started = Instant::now();
    let result = step_loop(cr, &ctx).instrument(span).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

/// What to do after one executed decision.
enum Next {
    /// Decide again right away with this (fresher) CR.
    Again(Box<VMDistributed>, Source),
    /// Done for now.
    Done(Requeue),
}

/// Where the CR a step decides on comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The reflector cache, which can lag.
    Cache,
    /// The API server's answer to a request of this reconcile: as good as a live read.
    Live,
}

async fn step_loop(cr: Arc<VMDistributed>, ctx: &Context) -> Result<Requeue, Error> {
    let mut cr: VMDistributed = (*cr).clone();
    let mut source = Source::Cache;
    for _ in 0..MAX_STEPS {
        match step(cr, source, ctx).await? {
            Next::Again(fresher, from) => {
                cr = *fresher;
                source = from;
            }
            Next::Done(requeue) => return Ok(requeue),
        }
    }
    Ok(Requeue::requeue(Duration::from_millis(100)))
}

/// The freshest copy of the CR this reconcile holds, and where it came from.
struct Latest {
    cr: VMDistributed,
    source: Source,
}

/// One step of the status-first protocol (docs/rollout.md "Crash safety"): decide, store the
/// status, publish the events, confirm on a live copy that the stored status still authorizes
/// the child writes, then make them. Each stage may end the step with a [`Next`].
async fn step(cr: VMDistributed, source: Source, ctx: &Context) -> Result<Next, Error> {
    let uid = cr.uid().unwrap_or_default();
    let memory = ctx.memory(&uid);
    if caches_lag(ctx, &cr, &uid, &memory) {
        return Ok(Next::Done(Requeue::requeue(STALE_RECHECK)));
    }
    let observed = ctx.observed(&cr, &memory);
    let decision = decide(&cr, &observed, jiff::Timestamp::now());
    record_zone_metrics(ctx, &cr, &decision);

    // 1. Status first, with the resourceVersion the decision was made on.
    let write = plan::status_write(
        &decision,
        &cr.status.clone().unwrap_or_default(),
        memory.last_status_write.map(|at| at.elapsed()),
    );
    let latest = match store_status(ctx, &cr, source, &decision, write).await? {
        ControlFlow::Continue(latest) => latest,
        ControlFlow::Break(next) => return Ok(next),
    };
    // 2. Events, only after the status that records the transition is stored.
    if write != StatusWrite::AfterPreflight {
        publish_events(ctx, &latest.cr, &decision.events);
    }
    // A transition authorizes writes only once stored: decide again on the written object.
    let rollout_changed =
        cr.status.as_ref().and_then(|s| s.rollout.as_ref()) != decision.status.rollout.as_ref();
    if plan::decide_again_after_status(write, rollout_changed) {
        return Ok(Next::Again(Box::new(latest.cr), latest.source));
    }
    // 3. Child writes only after a live read still shows the authorizing transition.
    let latest = match confirm_on_live(ctx, &cr, &decision, latest).await? {
        ControlFlow::Continue(latest) => latest,
        ControlFlow::Break(next) => return Ok(next),
    };
    // 4. The actions, in order.
    let done = execute_actions(ctx, &uid, &observed, &decision.actions, latest).await?;
    if cr.meta().deletion_timestamp.is_some()
        && decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::RemoveFinalizer))
    {
        ctx.forget(&uid);
        ctx.metrics.set_zones(&key(&cr), None);
        return Ok(Next::Done(Requeue::await_change()));
    }
    if done.again && !done.wrote_children {
        return Ok(Next::Again(Box::new(done.latest.cr), done.latest.source));
    }
    // A held preflight rejection is dry-run again when its time is up, whatever else happens
    // (once up, the decision that follows dry-runs again, so no wake-up is due after that).
    let now = Instant::now();
    let recheck = ctx
        .preflight_recheck_at(&cr, &ctx.memory(&uid))
        .filter(|at| *at > now)
        .map(|at| at - now);
    let deferred = match write {
        StatusWrite::Defer(wait) => Some(wait),
        _ => None,
    };
    let Some(requeue) = plan::requeue_after(
        done.wrote_children,
        &[decision.requeue_after, deferred, recheck],
    ) else {
        return Ok(Next::Done(Requeue::await_change()));
    };
    Ok(Next::Done(Requeue::requeue(requeue)))
}

/// Whether `cr` (from the cache) or the child cache predates a write of ours that their watch
/// events have not brought yet: deciding on them would repeat that write (an apply for every
/// event that arrives first, each waking the operator again). The write's event wakes the CR.
fn caches_lag(ctx: &Context, cr: &VMDistributed, uid: &str, memory: &Memory) -> bool {
    if cr
        .metadata
        .resource_version
        .as_ref()
        .is_some_and(|version| memory.superseded.contains(version))
    {
        tracing::debug!("the cache has not seen our last write yet; waiting for its event");
        return true;
    }
    if children_cache_lags(ctx, uid, &cr.namespace().unwrap_or_default()) {
        tracing::debug!(
            "the child cache has not seen our last child write yet; waiting for its event"
        );
        return true;
    }
    false
}

/// Stage 1: make the status `write` the plan chose. A 409 decides again on the live object
/// rather than retrying on a cache that may still lag (each retry would be another 409).
async fn store_status(
    ctx: &Context,
    cr: &VMDistributed,
    source: Source,
    decision: &Decision,
    write: StatusWrite,
) -> Result<ControlFlow<Next, Latest>, Error> {
    let unchanged = Latest {
        cr: cr.clone(),
        source,
    };
    match write {
        StatusWrite::Unchanged => {}
        StatusWrite::Defer(wait) => tracing::debug!(
            ?wait,
            "only zone details changed; writing them with the next change"
        ),
        StatusWrite::AfterPreflight => tracing::debug!("status waits for the preflight's outcome"),
        StatusWrite::Write => match ctx.writer.write_status(cr, &decision.status).await {
            Ok(written) => {
                tracing::debug!(rollout = ?decision.status.rollout, "status written");
                let uid = cr.uid().unwrap_or_default();
                remember_superseded(ctx, &uid, cr);
                ctx.remember(&uid, |m| m.last_status_write = Some(Instant::now()));
                return Ok(ControlFlow::Continue(Latest {
                    cr: written,
                    source: Source::Live,
                }));
            }
            Err(Error::Conflict(message)) => {
                tracing::debug!(%message, "status conflict; deciding again on the live object");
                return Ok(ControlFlow::Break(match read_live(ctx, cr).await? {
                    Some(live) => Next::Again(Box::new(live), Source::Live),
                    None => Next::Done(Requeue::await_change()),
                }));
            }
            Err(err) => return Err(err),
        },
    }
    Ok(ControlFlow::Continue(unchanged))
}

/// The CR as the API server has it now, `None` once it is gone.
async fn read_live(ctx: &Context, cr: &VMDistributed) -> Result<Option<VMDistributed>, Error> {
    ctx.writer
        .get_cr(&cr.namespace().unwrap_or_default(), &cr.name_any())
        .await
}

/// Stage 3: before a child write, a live copy of the CR must still show the transition that
/// authorizes it (same object, generation and `status.rollout`). The answer to a write or GET
/// of this reconcile is such a copy (a GET would only repeat it milliseconds later); a cached
/// CR is not.
async fn confirm_on_live(
    ctx: &Context,
    cr: &VMDistributed,
    decision: &Decision,
    latest: Latest,
) -> Result<ControlFlow<Next, Latest>, Error> {
    if !decision.actions.iter().any(Action::is_child_write) {
        return Ok(ControlFlow::Continue(latest));
    }
    let current = if latest.source == Source::Cache {
        let Some(live) = read_live(ctx, cr).await? else {
            return Ok(ControlFlow::Break(Next::Done(Requeue::await_change())));
        };
        live
    } else {
        latest.cr
    };
    let live_rollout = current.status.as_ref().and_then(|s| s.rollout.as_ref());
    if current.uid() != cr.uid()
        || current.metadata.generation != cr.metadata.generation
        || live_rollout != decision.status.rollout.as_ref()
    {
        tracing::debug!("the live object no longer shows the decided transition; deciding again");
        return Ok(ControlFlow::Break(Next::Again(
            Box::new(current),
            Source::Live,
        )));
    }
    Ok(ControlFlow::Continue(Latest {
        cr: current,
        source: Source::Live,
    }))
}

/// What executing a decision's actions left.
struct ActionsDone {
    latest: Latest,
    /// A child was written: its watch events will wake the CR.
    wrote_children: bool,
    /// Something this step did (a CR write, a preflight, a queue poll) calls for deciding
    /// again at once.
    again: bool,
}

/// Stage 4: the actions, batch by batch (consecutive creates and applies together). A failed
/// child write is remembered for the status and ends the step with its error, after the batch.
async fn execute_actions(
    ctx: &Context,
    uid: &str,
    observed: &Observed,
    actions: &[Action],
    mut latest: Latest,
) -> Result<ActionsDone, Error> {
    let mut wrote_children = false;
    let mut again = false;
    for batch in concurrent_batches(actions) {
        let results = join_all(
            batch
                .iter()
                .map(|action| execute(ctx, &latest.cr, observed, action)),
        )
        .await;
        let mut failed = None;
        for (action, result) in batch.iter().zip(results) {
            let executed = match result {
                Ok(executed) => {
                    forget_child_failure(ctx, uid, action);
                    executed
                }
                Err(err) => {
                    remember_child_failure(ctx, uid, action, &err);
                    failed.get_or_insert(err);
                    continue;
                }
            };
            match executed {
                Executed::Child => wrote_children = true,
                Executed::Cr(updated) => {
                    remember_superseded(ctx, uid, &latest.cr);
                    latest = Latest {
                        cr: *updated,
                        source: Source::Live,
                    };
                    again = true;
                }
                Executed::Preflight => again = true,
                // The poll may complete the drain: decide again on it now rather than at the
                // next requeue (a decision right after a poll asks for no other).
                Executed::Polled => again = true,
            }
        }
        if let Some(err) = failed {
            report_child_failures(ctx, &latest.cr).await;
            return Err(err);
        }
    }
    Ok(ActionsDone {
        latest,
        wrote_children,
        again,
    })
}

/// Record that the API server failed `action` with `err`, replacing an older failure of the
/// same child. Conflicts, a lost lease and transport errors are not the child's: they are only
/// retried.
fn remember_child_failure(ctx: &Context, uid: &str, action: &Action, err: &Error) {
    let Error::Api {
        source: source @ kube::Error::Api(status),
        ..
    } = err
    else {
        return;
    };
    let Some((kind, name)) = action.target() else {
        return;
    };
    let (verb, intent) = match action {
        Action::Create { intent } => ("create", Some(intent)),
        Action::Apply { intent } => ("apply", Some(intent)),
        Action::Delete { .. } => ("delete", None),
        Action::PatchMetadata { .. } => ("patch", None),
        Action::Preflight { .. }
        | Action::ProbeQueues { .. }
        | Action::AddFinalizer
        | Action::RemoveFinalizer => return,
    };
    let failure = ChildFailure {
        kind,
        name: name.to_owned(),
        zone: intent.and_then(|i| i.zone.clone()),
        spec_hash: intent.map(|i| i.spec_hash.clone()),
        rejected: matches!(
            vmdistributed_runtime::dry_run::finding(Err(source)),
            Finding::Rejected { .. }
        ),
        verb: verb.to_owned(),
        message: status.message.clone(),
    };
    ctx.remember(uid, |m| {
        m.child_failures
            .retain(|f| (f.kind, f.name.as_str()) != (kind, name));
        m.child_failures.push(failure);
    });
}

/// A write of this child went through: its failure, if any, is over.
fn forget_child_failure(ctx: &Context, uid: &str, action: &Action) {
    let Some((kind, name)) = action.target() else {
        return;
    };
    ctx.remember(uid, |m| {
        m.child_failures
            .retain(|f| (f.kind, f.name.as_str()) != (kind, name));
    });
}

/// Write the status that reports the child failures just recorded, with their events, before
/// the failing reconcile backs off: the user sees the cause within the reconcile that met it,
/// not in the controller's log only. Nothing else is executed; the next attempt retries the
/// writes.
async fn report_child_failures(ctx: &Context, cr: &VMDistributed) {
    let uid = cr.uid().unwrap_or_default();
    let observed = ctx.observed(cr, &ctx.memory(&uid));
    let decision = decide(cr, &observed, jiff::Timestamp::now());
    if !decision.status_changed {
        return;
    }
    match ctx.writer.write_status(cr, &decision.status).await {
        Ok(written) => {
            remember_superseded(ctx, &uid, cr);
            ctx.remember(&uid, |m| m.last_status_write = Some(Instant::now()));
            publish_events(ctx, &written, &decision.events);
        }
        // The next attempt reports it; the write's own error is what the reconcile returns.
        Err(err) => {
            tracing::debug!(error = %err, "cannot write the status reporting a failed child write")
        }
    }
}

/// Remember the generation and uid the API server returned for our write of the VMAuth.
fn remember_vmauth_write(ctx: &Context, cr: &VMDistributed, written: &ObjectMeta) {
    let generation = written.generation;
    let uid = written.uid.clone();
    ctx.remember(&cr.uid().unwrap_or_default(), |m| {
        m.vmauth_applied_generation = generation;
        m.vmauth_applied_uid = uid;
    });
}

/// Record that `replaced` (the CR as it was before our successful write) is out of date.
fn remember_superseded(ctx: &Context, uid: &str, replaced: &VMDistributed) {
    /// A reconcile writes the CR a few times at most; older versions are long out of the cache.
    const KEEP: usize = 4;
    let Some(version) = replaced.metadata.resource_version.clone() else {
        return;
    };
    ctx.remember(uid, |m| {
        if m.superseded.len() == KEEP {
            m.superseded.remove(0);
        }
        m.superseded.push(version);
    });
}

/// Whether a child write of ours is still missing from the child caches. Writes the cache has
/// shown (or that are older than [`UNSEEN_WRITE_TTL`]) are forgotten here.
fn children_cache_lags(ctx: &Context, uid: &str, namespace: &str) -> bool {
    let Ok(mut memory) = ctx.memory.lock() else {
        return false;
    };
    let Some(memory) = memory.get_mut(uid) else {
        return false;
    };
    memory.unseen_writes.retain(|write| {
        let cached = ctx.stores.cached(write.kind, namespace, &write.name);
        let cached_version = cached.as_ref().map(|c| c.resource_version());
        let unseen = match (&write.replaced, cached_version) {
            (None, None) => true,
            (Some(replaced), Some(version)) => version == Some(replaced.as_str()),
            _ => false,
        };
        unseen && write.at.elapsed() < UNSEEN_WRITE_TTL
    });
    !memory.unseen_writes.is_empty()
}

/// Record a child write whose result the cache has yet to show.
fn remember_child_write(
    ctx: &Context,
    cr: &VMDistributed,
    kind: ChildKind,
    name: &str,
    replaced: Option<String>,
) {
    ctx.remember(&cr.uid().unwrap_or_default(), |m| {
        m.unseen_writes.push(UnseenWrite {
            kind,
            name: name.to_owned(),
            replaced,
            at: Instant::now(),
        });
    });
}

/// The actions in order, in batches that may run at once: consecutive creates and applies (a
/// zone's backend and agent, new zones, in-place stamps) touch different objects and are all
/// authorized by the same decision, so they run concurrently, saving a round trip per extra
/// child. Everything else (finalizer, preflight, deletes, releases) runs alone, in order.
fn concurrent_batches(actions: &[Action]) -> Vec<&[Action]> {
    let concurrent = |a: &Action| matches!(a, Action::Create { .. } | Action::Apply { .. });
    let mut batches = Vec::new();
    let mut rest = actions;
    while let Some(first) = rest.first() {
        let len = if concurrent(first) {
            rest.iter().take_while(|a| concurrent(a)).count()
        } else {
            1
        };
        let (batch, tail) = rest.split_at(len);
        batches.push(batch);
        rest = tail;
    }
    batches
}

enum Executed {
    Child,
    Cr(Box<VMDistributed>),
    Preflight,
    /// Agent queues were polled.
    Polled,
}

async fn execute(
    ctx: &Context,
    cr: &VMDistributed,
    observed: &Observed,
    action: &Action,
) -> Result<Executed, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let zone = match action {
        Action::Create { intent } | Action::Apply { intent } => intent.zone.clone(),
        _ => None,
    };
    let span = tracing::info_span!("zone", zone = zone.as_deref().unwrap_or("-"));
    async {
        match action {
            Action::Create { intent } => {
                match ctx
                    .writer
                    .create_child(intent.kind, &namespace, &intent.to_object())
                    .await?
                {
                    Created::New(created) => {
                        tracing::info!(kind = %intent.kind, child = %intent.name, "created");
                        if intent.kind == ChildKind::VMAuth {
                            // A new object starts at generation 1: the bar of the VMAuth's
                            // phases is this object's, not the one it replaces.
                            remember_vmauth_write(ctx, cr, &created.metadata);
                        }
                    }
                    Created::AlreadyExists => tracing::info!(
                        kind = %intent.kind, child = %intent.name,
                        "already exists: adopting it instead of creating"
                    ),
                }
                remember_child_write(ctx, cr, intent.kind, &intent.name, None);
                Ok(Executed::Child)
            }
            Action::Apply { intent } => {
                // The managedFields upgrade needs a live read, but only when the cache (which
                // keeps just the entries the upgrade acts on) shows one, or does not have the
                // child yet. Skipping it otherwise saves one GET per apply.
                let cached = ctx.stores.cached(intent.kind, &namespace, &intent.name);
                let live = match &cached {
                    Some(child) if !child.needs_ownership_upgrade() => None,
                    _ => {
                        ctx.writer
                            .get_child(intent.kind, &namespace, &intent.name)
                            .await?
                    }
                };
                // Our own creation's fields move to the apply only on a child this CR created:
                // see `managed_fields`.
                let uid = cr.uid().unwrap_or_default();
                let created_here = !uid.is_empty()
                    && live.as_ref().is_some_and(|live| {
                        live.annotations().get(ANNOTATION_CREATED_BY) == Some(&uid)
                    });
                let takeover = if created_here {
                    Takeover::OthersAndOurCreation
                } else {
                    Takeover::Others
                };
                let applied = ctx
                    .writer
                    .apply_child(
                        intent.kind,
                        &namespace,
                        &intent.to_object(),
                        live.as_ref(),
                        takeover,
                    )
                    .await?;
                tracing::info!(kind = %intent.kind, child = %intent.name, hash = %intent.spec_hash, "applied");
                let replaced = cached.and_then(|c| c.resource_version().map(str::to_owned));
                if replaced != applied.metadata.resource_version {
                    remember_child_write(ctx, cr, intent.kind, &intent.name, replaced);
                }
                if intent.kind == ChildKind::VMAuth {
                    remember_vmauth_write(ctx, cr, &applied.metadata);
                }
                Ok(Executed::Child)
            }
            Action::Delete {
                kind,
                name,
                uid,
                resource_version,
            } => {
                ctx.writer
                    .delete_child(*kind, &namespace, name, uid, resource_version.as_deref())
                    .await?;
                tracing::info!(%kind, child = %name, "deleted");
                Ok(Executed::Child)
            }
            Action::PatchMetadata {
                kind,
                name,
                reason,
                patch,
            } => {
                let operations = serde_json::to_value(patch)
                    .map_err(|err| Error::Encode(format!("JSON patch: {err}")))?;
                ctx.writer
                    .patch_child(*kind, &namespace, name, operations)
                    .await?;
                tracing::info!(%kind, child = %name, ?reason, "patched metadata");
                Ok(Executed::Child)
            }
            Action::Preflight {
                generation,
                intents,
            } => {
                let outcome = preflight(ctx, cr, observed, *generation, intents).await;
                ctx.remember(&cr.uid().unwrap_or_default(), |m| {
                    // The n-th rejection in a row of one generation is held longer each time.
                    let again = m
                        .preflight
                        .as_ref()
                        .is_some_and(|p| p.generation == *generation && p.rejection.is_some());
                    m.preflight_rejected = outcome.rejection.as_ref().map(|_| {
                        let count = match m.preflight_rejected {
                            Some((_, count)) if again => count.saturating_add(1),
                            _ => 1,
                        };
                        (Instant::now(), count)
                    });
                    m.preflight = Some(outcome);
                });
                Ok(Executed::Preflight)
            }
            Action::ProbeQueues { probes } => {
                poll_queues(ctx, cr, probes).await;
                Ok(Executed::Polled)
            }
            Action::AddFinalizer => {
                let updated = ctx.writer.set_finalizer(cr, true).await?;
                tracing::info!("finalizer added");
                Ok(Executed::Cr(Box::new(updated)))
            }
            Action::RemoveFinalizer => {
                let updated = ctx.writer.set_finalizer(cr, false).await?;
                tracing::info!("cleanup complete: finalizer removed");
                Ok(Executed::Cr(Box::new(updated)))
            }
        }
    }
    .instrument(span)
    .await
}

/// One poll of every probe's agent, at once, folded into this CR's queue reports.
async fn poll_queues(ctx: &Context, cr: &VMDistributed, probes: &[QueueProbe]) {
    let namespace = cr.namespace().unwrap_or_default();
    let polls = match &ctx.queue_prober {
        Some(prober) => prober.poll(&namespace, probes).await,
        None => probes.iter().map(|_| Vec::new()).collect(),
    };
    let now = jiff::Timestamp::now();
    ctx.remember(&cr.uid().unwrap_or_default(), |m| {
        for (probe, pages) in probes.iter().zip(&polls) {
            m.queues = shared::queues::record(&m.queues, probe, pages, now);
        }
    });
    for (probe, pages) in probes.iter().zip(&polls) {
        tracing::debug!(agent = %probe.agent, pods = pages.len(), "polled agent queues");
    }
}

/// Dry-run every shape in which `intents` are written, in parallel, each within
/// [`PREFLIGHT_BUDGET`], and word the answers as the webhook's preflight does
/// (`shared::preflight`): the same verdict and the same user field paths at `kubectl apply`
/// time and here.
async fn preflight(
    ctx: &Context,
    cr: &VMDistributed,
    observed: &Observed,
    generation: i64,
    intents: &[ChildIntent],
) -> PreflightOutcome {
    let namespace = cr.namespace().unwrap_or_default();
    // The decision renders from the defaulted object; so must the shapes.
    let defaulted = shared::defaults::apply_defaults(cr);
    let shapes = shared::preflight::shapes_for(&defaulted, observed, intents);
    let findings = vmdistributed_runtime::dry_run::apply_all(
        ctx.writer.client(),
        &namespace,
        &shapes,
        PREFLIGHT_BUDGET,
    )
    .await;
    let verdict = shared::preflight::verdict(&defaulted, &shapes, &findings);
    for warning in &verdict.warnings {
        tracing::warn!(generation, %warning, "preflight could not judge a child; proceeding");
    }
    let rejection = verdict.rejection();
    if let Some(rejection) = &rejection {
        tracing::warn!(generation, %rejection, "preflight rejected the spec");
    }
    PreflightOutcome {
        generation,
        zone_messages: if rejection.is_some() {
            verdict.zones
        } else {
            Default::default()
        },
        rejection,
    }
}

/// Record the events' metrics and publish them, in order, in the background: the status write
/// that records their transition is already stored, and a rollout step should not wait for
/// event POSTs (they are not part of the state machine).
fn publish_events(ctx: &Context, cr: &VMDistributed, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let reference = cr.object_ref(&());
    let cr_key = key(cr);
    let mut kube_events = Vec::with_capacity(events.len());
    for event in events {
        match event.reason {
            EventReason::RolloutStarted => ctx.metrics.rollout_started(&cr_key),
            EventReason::RolloutFinished => ctx.metrics.rollout_finished(&cr_key),
            _ => {}
        }
        tracing::info!(reason = event.reason.as_str(), note = %event.note, "event");
        kube_events.push(KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.as_str().to_owned(),
            note: Some(truncate_note(&event.note)),
            action: "Reconcile".to_owned(),
            secondary: None,
        });
    }
    let sink = ctx.events.clone();
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            for kube_event in kube_events {
                if !sink.gate.may_act() {
                    tracing::debug!(reason = %kube_event.reason, "not acting: event not published");
                    continue;
                }
                // A fresh recorder per event: kube's recorder folds events with the same reason
                // into one series and keeps the first note, but every event here is a distinct
                // transition (ZoneUpdated for each zone) and must show its own note.
                let recorder = Recorder::new(sink.client.clone(), sink.reporter.clone());
                if let Err(err) = recorder.publish(&kube_event, &reference).await {
                    tracing::warn!(error = %err, reason = %kube_event.reason, "cannot publish event");
                }
            }
        }
        .instrument(span),
    );
}

/// `note` cut to at most 1 KiB on a character boundary.
#[must_use]
pub fn truncate_note(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_owned();
    }
    const ELLIPSIS: &str = "…";
    let mut end = NOTE_LIMIT - ELLIPSIS.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &note[..end])
}

fn record_zone_metrics(ctx: &Context, cr: &VMDistributed, decision: &Decision) {
    let updating = decision
        .status
        .rollout
        .as_ref()
        .and_then(|r| r.zone.as_deref());
    let states = decision
        .status
        .zones
        .iter()
        .map(|zone| {
            if Some(zone.name.as_str()) == updating {
                ZoneState::Updating
            } else if !zone.ready {
                ZoneState::NotReady
            } else if !zone.current {
                ZoneState::Outdated
            } else {
                ZoneState::Ready
            }
        })
        .collect();
    ctx.metrics.set_zones(&key(cr), Some(states));
    // As the VictoriaMetrics operator does, an object's series go when its deletion starts.
    let status = decision
        .status
        .update_status
        .filter(|_| cr.meta().deletion_timestamp.is_none());
    ctx.metrics
        .set_object_status(&cr.namespace().unwrap_or_default(), &cr.name_any(), status);
}

/// Requeue policy after an error.
#[must_use]
pub fn error_policy(cr: Arc<VMDistributed>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    match error {
        Error::Conflict(_) => Requeue::requeue(Duration::from_millis(100)),
        Error::NotLeader => Requeue::requeue(Duration::from_secs(1)),
        _ => {
            tracing::warn!(cr = %key(&cr), error = %error, "reconcile failed");
            Requeue::requeue(Duration::from_secs(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_creates_and_applies_run_together_and_everything_else_alone() {
        let intent = |kind, name: &str| ChildIntent {
            kind,
            name: name.to_owned(),
            namespace: "ns".to_owned(),
            zone: Some("a".to_owned()),
            labels: Default::default(),
            annotations: Default::default(),
            owner_references: Vec::new(),
            spec: serde_json::json!({}),
            spec_hash: "h".to_owned(),
        };
        let delete = Action::Delete {
            kind: ChildKind::VMCluster,
            name: "old".to_owned(),
            uid: "u".to_owned(),
            resource_version: Some("1".to_owned()),
        };
        let actions = vec![
            Action::AddFinalizer,
            Action::Create {
                intent: intent(ChildKind::VMCluster, "c"),
            },
            Action::Create {
                intent: intent(ChildKind::VMAgent, "g"),
            },
            delete.clone(),
            delete,
            Action::Apply {
                intent: intent(ChildKind::VMAuth, "auth"),
            },
        ];
        let sizes: Vec<usize> = concurrent_batches(&actions)
            .iter()
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [1, 2, 1, 1, 1]);
        assert!(concurrent_batches(&[]).is_empty());
    }

    #[test]
    fn notes_are_cut_to_one_kibibyte_on_a_character_boundary() {
        assert_eq!(truncate_note("short"), "short");
        let long = "é".repeat(1000);
        let cut = truncate_note(&long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with('…'));
    }
}
