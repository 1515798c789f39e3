//! Deletion of the CR (docs/rollout.md "Deletion"): `decide` hands a CR with a `deletionTimestamp` to
//! [`decide_deletion`].
//!
//! With `retain: false` the children this CR created are deleted and the finalizer waits until
//! they are gone; adopted and referenced children are released (a `ref` also when this CR once
//! created it). With `retain: true` everything is
//! released. A VMAuth that survives first routes to every zone that survives (a rollout may have
//! excluded one). Then the finalizer goes. Garbage collection is not relied upon, and a child
//! claimed by another CR is never touched.

use std::time::Duration;

use crate::api::VMDistributed;
use crate::children::ChildObject;
use crate::defaults::apply_defaults;
use crate::model::{
    Action, ChildIntent, Decision, FINALIZER, Membership, MetadataPatchReason, Observed, Target,
    contains,
};
use crate::names::{ChildKind, is_referenced};
use crate::render::render_vmauth_named;
use crate::rollout::membership::{LiveRefs, member_kind, member_name};
use crate::rollout::patch;

/// How often to look again while deleted children are still terminating (the VictoriaMetrics
/// operator runs its own finalizers on them; their disappearance also wakes the CR).
pub(crate) const DELETION_POLL: Duration = Duration::from_secs(2);

/// Whether the CR carries [`FINALIZER`].
#[must_use]
pub(crate) fn has_finalizer(cr: &VMDistributed) -> bool {
    cr.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Whether `child` carries anything of this CR: the claim label for it, the created-by
/// annotation with its uid, or an owner reference to it.
fn carries_our_marks(child: &ChildObject, cr_name: &str, cr_uid: &str) -> bool {
    child.claimed_by() == Some(cr_name)
        || child.created_by(cr_uid)
        || child.owner_references.iter().any(|r| r.uid == cr_uid)
}

/// The cleanup step for a CR that is being deleted. The status is left as it is (the object is
/// going away; a status write would only race with the finalizer removal).
#[must_use]
pub(crate) fn decide_deletion(cr: &VMDistributed, observed: &Observed) -> Decision {
    let status = cr.status.clone().unwrap_or_default();
    let mut decision = Decision {
        status,
        status_changed: false,
        actions: Vec::new(),
        requeue_after: None,
        events: Vec::new(),
    };
    if !has_finalizer(cr) {
        return decision;
    }
    let name = cr.metadata.name.as_deref().unwrap_or_default();
    let uid = cr.metadata.uid.as_deref().unwrap_or_default();
    let retain = cr.spec.retain.unwrap_or(false);
    let mut waiting = false;
    for child in &observed.children {
        let Some(kind) = child.kind else { continue };
        if child.claimed_by().is_some_and(|owner| owner != name) {
            continue;
        }
        if !carries_our_marks(child, name, uid) {
            continue;
        }
        // A `ref` survives even when this CR created it before it became one.
        let survives = retain || !child.created_by(uid) || is_referenced(cr, kind, &child.name);
        if kind == ChildKind::VMAuth
            && survives
            && !child.is_deleting()
            && let Some(intent) = restore_every_zone(cr, observed, child)
        {
            // It may still exclude the zone that was under update: put it back before letting
            // go, or nothing ever will.
            decision.actions.push(Action::Apply { intent });
            waiting = true;
            continue;
        }
        if !survives {
            if child.is_deleting() {
                waiting = true;
            } else {
                decision.actions.push(Action::delete(kind, child));
            }
        } else if let Some(patch) = patch::release(child, uid) {
            decision.actions.push(Action::PatchMetadata {
                kind,
                name: child.name.clone(),
                reason: MetadataPatchReason::Release,
                patch,
            });
        }
    }
    if waiting {
        decision.requeue_after = Some(DELETION_POLL);
    } else if decision.actions.is_empty() {
        decision.actions.push(Action::RemoveFinalizer);
    }
    decision
}

/// The intent that puts every zone that survives the deletion back into `auth` (a VMAuth that
/// survives it), keeping what it routes to now; `None` when it already does.
fn restore_every_zone(
    cr: &VMDistributed,
    observed: &Observed,
    auth: &ChildObject,
) -> Option<ChildIntent> {
    let cr = apply_defaults(cr);
    let uid = cr.metadata.uid.as_deref().unwrap_or_default();
    let retain = cr.spec.retain.unwrap_or(false);
    let live = LiveRefs::from_vmauth_spec(&auth.spec);
    let mut membership = Membership::default();
    for zone in &cr.spec.zones {
        for target in Target::ALL {
            let name = member_name(&cr, zone, target);
            let routed = live.target(target).contains(&name);
            let kind = member_kind(&cr, target);
            let survives = observed.find(kind, &name).is_some_and(|c| {
                !c.is_deleting()
                    && (retain || !c.created_by(uid) || is_referenced(&cr, kind, &name))
            });
            let allowed = target.allowed_by(zone.traffic_mode.unwrap_or_default());
            if routed || (survives && allowed) {
                membership.of_mut(target).insert(zone.name.clone());
            }
        }
    }
    let intent = render_vmauth_named(&cr, observed, &membership, &auth.name);
    (!contains(&auth.spec, &intent.spec)).then_some(intent)
}
