//! What this process remembers about each CR between reconciles ([`Memory`]) and the functions
//! that record it: what the API server told us that the caches and the CR may not show yet (our
//! unseen child writes, the CR versions our writes superseded, failed child writes, the VMAuth
//! we last wrote), read back by `Context::observed` and `step`. Losing it is safe. Also the
//! status write that reports failed child writes before the reconcile backs off.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use shared::VMDistributed;
use shared::model::{Action, ChildFailure, PreflightOutcome};
use shared::names::ChildKind;
use shared::preflight::Finding;
use shared::queues::QueueReport;
use shared::rollout::decide;

use super::context::Context;
use super::events::publish_events;
use crate::error::Error;

/// What this process remembers about one CR between reconciles. Losing it (restart, another
/// replica) is safe: the decision treats "unknown" conservatively.
#[derive(Clone, Debug, Default)]
pub(super) struct Memory {
    pub(super) preflight: Option<PreflightOutcome>,
    /// When the preflight in `preflight` was rejected, and how many times in a row the same
    /// generation was: the rejection is held for [`shared::preflight::recheck_after`] and then
    /// dry-run again, since its cause may be fixed outside anything this controller watches.
    pub(super) preflight_rejected: Option<(Instant, u32)>,
    /// Child writes the API server failed, until a write of that child succeeds.
    pub(super) child_failures: Vec<ChildFailure>,
    pub(super) vmauth_applied_generation: Option<i64>,
    pub(super) vmauth_applied_uid: Option<String>,
    /// The resourceVersions our last writes of the CR (status or finalizer) replaced, newest
    /// last. A reconcile handed a cached CR with one of these versions runs before the cache saw
    /// our write: deciding on it would only repeat the write and get a 409. The write's own
    /// watch event follows.
    pub(super) superseded: Vec<String>,
    /// Child writes of ours that the child caches have not shown yet.
    unseen_writes: Vec<UnseenWrite>,
    /// When this process last wrote the CR's status.
    pub(super) last_status_write: Option<Instant>,
    /// The last poll of each agent queue a drain asked for.
    pub(super) queues: Vec<QueueReport>,
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

/// How long a child write of ours may stay unseen by the cache before decisions go ahead
/// without it (a watch that is reconnecting; the live re-read still guards every write).
const UNSEEN_WRITE_TTL: Duration = Duration::from_secs(10);

/// Record that the API server failed `action` with `err`, replacing an older failure of the
/// same child. Conflicts, a lost lease and transport errors are not the child's: they are only
/// retried.
pub(super) fn remember_child_failure(ctx: &Context, uid: &str, action: &Action, err: &Error) {
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
pub(super) fn forget_child_failure(ctx: &Context, uid: &str, action: &Action) {
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
pub(super) async fn report_child_failures(ctx: &Context, cr: &VMDistributed) {
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
pub(super) fn remember_vmauth_write(ctx: &Context, cr: &VMDistributed, written: &ObjectMeta) {
    let generation = written.generation;
    let uid = written.uid.clone();
    ctx.remember(&cr.uid().unwrap_or_default(), |m| {
        m.vmauth_applied_generation = generation;
        m.vmauth_applied_uid = uid;
    });
}

/// Record that `replaced` (the CR as it was before our successful write) is out of date.
pub(super) fn remember_superseded(ctx: &Context, uid: &str, replaced: &VMDistributed) {
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
pub(super) fn children_cache_lags(ctx: &Context, uid: &str, namespace: &str) -> bool {
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
pub(super) fn remember_child_write(
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

/// Whether `cr` (from the cache) or the child cache predates a write of ours that their watch
/// events have not brought yet: deciding on them would repeat that write (an apply for every
/// event that arrives first, each waking the operator again). The write's event wakes the CR.
pub(super) fn caches_lag(ctx: &Context, cr: &VMDistributed, uid: &str, memory: &Memory) -> bool {
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
