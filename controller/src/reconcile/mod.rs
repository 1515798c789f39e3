//! One reconcile step: read the cluster into an [`Observed`](shared::rollout::Observed), let the
//! pure decision say what to do, then write the status (with a resourceVersion precondition),
//! emit events and execute the child writes, in that order (docs/rollout.md "Crash safety"; the
//! rules are in `shared::model`). Nothing here waits for readiness: every wait is a requeue or a
//! watch event.
//!
//! - this file: the entry point ([`reconcile`], [`error_policy`]) and `step`, which performs
//!   that protocol once per decision;
//! - `plan`: its pure rules (which status write, whether to decide again, when to look again);
//! - `execute`: the decision's actions, and which of them run at once;
//! - `memory`: what this process remembers about each CR between reconciles;
//! - `events`: the decision's events as Kubernetes Events;
//! - `context`: the [`Context`] every reconcile shares, and the [`EventSink`].

mod context;
mod events;
mod execute;
mod memory;
mod plan;
#[cfg(test)]
mod testing;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use shared::VMDistributed;
use shared::model::{Action, Decision};
use shared::rollout::decide;
use tracing::Instrument;

pub use context::{Context, EventSink};
use events::publish_events;
pub use events::truncate_note;
use execute::execute_actions;
use memory::{caches_lag, remember_superseded};
use plan::StatusWrite;

use crate::error::Error;
use crate::metrics::ZoneState;

/// Decision steps taken in one reconcile while each only writes status or runs preflight.
const MAX_STEPS: usize = 6;
/// Fallback re-check of a CR skipped because the cache had not seen our write yet (its watch
/// event normally triggers the next reconcile first).
const STALE_RECHECK: Duration = Duration::from_secs(1);

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
pub(super) enum Source {
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
pub(super) struct Latest {
    pub(super) cr: VMDistributed,
    pub(super) source: Source,
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
