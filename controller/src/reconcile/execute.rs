//! How the actions of a decision are carried out: which of them run at once, and each action's
//! requests (child writes, the finalizer, preflight's dry-runs, agent queue polls), with what
//! their answers teach this process's memory.

use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::ResourceExt;
use shared::VMDistributed;
use shared::children::ANNOTATION_CREATED_BY;
use shared::model::{Action, ChildIntent, FIELD_MANAGER, MetadataPatchReason, PreflightOutcome};
use shared::names::ChildKind;
use shared::queues::QueueProbe;
use shared::rollout::Observed;
use tracing::Instrument;

use super::context::Context;
use super::memory::{
    forget_child_failure, remember_child_failure, remember_child_write, remember_superseded,
    remember_vmauth_write, report_child_failures,
};
use super::{Latest, Source};
use crate::error::Error;
use crate::managed_fields::{self, Takeover};
use crate::writer::Created;

/// Budget of one preflight (all dry-runs in parallel), as the webhook's preflight.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(3);

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
                let mut operations = serde_json::to_value(patch)
                    .map_err(|err| Error::Encode(format!("JSON patch: {err}")))?;
                if *reason == MetadataPatchReason::Release {
                    // The child caches keep no `managedFields` worth handing back: read them.
                    let Some(live) = ctx.writer.get_child(*kind, &namespace, name).await? else {
                        return Ok(Executed::Child);
                    };
                    let entries = serde_json::to_value(live.metadata.managed_fields)
                        .map_err(|err| Error::Encode(format!("managedFields: {err}")))?;
                    let handed_back = managed_fields::release_ops(
                        entries.as_array().map(Vec::as_slice).unwrap_or_default(),
                        FIELD_MANAGER,
                        live.metadata.resource_version.as_deref().unwrap_or_default(),
                    );
                    if let Some(list) = operations.as_array_mut() {
                        list.extend(handed_back);
                    }
                }
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

/// What executing a decision's actions left.
pub(super) struct ActionsDone {
    pub(super) latest: Latest,
    /// A child was written: its watch events will wake the CR.
    pub(super) wrote_children: bool,
    /// Something this step did (a CR write, a preflight, a queue poll) calls for deciding
    /// again at once.
    pub(super) again: bool,
}

/// Stage 4: the actions, batch by batch (consecutive creates and applies together). A failed
/// child write is remembered for the status and ends the step with its error, after the batch.
pub(super) async fn execute_actions(
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
}
