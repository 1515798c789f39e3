//! Children this CR no longer manages (docs/rollout.md "Zone removal"): a VMAuth left behind by
//! a `vmauth.name` change or `vmauth.enabled: false` is handed back with every zone before any
//! zone is touched again; removed zones' children are released, or deleted under
//! `zoneRemovalPolicy: Delete`, once the VMAuth no longer routes to them.

use std::collections::BTreeSet;

use super::Step;
use crate::api::ZoneRemovalPolicy;
use crate::model::{Action, MetadataPatchReason, contains};
use crate::names::{ChildKind, backend_kind, child_name, is_referenced, vmauth_name};
use crate::render::{self, vmauth_enabled};
use crate::rollout::membership;
use crate::rollout::patch;

impl Step<'_> {
    /// VMAuths labelled for this CR that it no longer manages (`vmauth.name` changed,
    /// `vmauth.enabled: false`): each first routes to every zone again ([`membership::handback`];
    /// it may still exclude the zone under update), so it keeps working as a plain VMAuth, then
    /// it is released; one this CR created is deleted instead under `zoneRemovalPolicy: Delete`.
    pub(super) fn vmauth_handback(&self) -> Removal {
        let mut handback = Removal::default();
        let name = self.cr_name();
        let uid = self.cr_uid();
        let current = vmauth_enabled(self.cr).then(|| vmauth_name(self.cr));
        let delete = self.cr.spec.zone_removal_policy == Some(ZoneRemovalPolicy::Delete)
            && !self.cr.spec.retain.unwrap_or(false);
        let mut names = Vec::new();
        for child in &self.observed.children {
            if child.kind != Some(ChildKind::VMAuth)
                || child.claimed_by() != Some(name)
                || current.as_deref() == Some(child.name.as_str())
            {
                continue;
            }
            handback.pending = true;
            names.push(format!("VMAuth {}", child.name));
            if child.is_deleting() {
                handback.waiting = true;
                continue;
            }
            if delete
                && child.created_by(uid)
                && !is_referenced(self.cr, ChildKind::VMAuth, &child.name)
            {
                handback
                    .actions
                    .push(Action::delete(ChildKind::VMAuth, child));
                continue;
            }
            let members = membership::handback(self.cr, self.observed, child);
            let intent = render::render_vmauth_named(self.cr, self.observed, &members, &child.name);
            if !contains(&child.spec, &intent.spec) {
                handback.actions.push(Action::Apply { intent });
                continue;
            }
            if !child.is_ready() {
                handback.waiting = true;
                continue;
            }
            if let Some(patch) = patch::release(child, uid) {
                handback.actions.push(Action::PatchMetadata {
                    kind: ChildKind::VMAuth,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::Release,
                    patch,
                });
            }
        }
        handback.message = format!("handing back {}", names.join(", "));
        handback
    }

    /// Children labelled for this CR that no current zone (or the VMAuth) resolves.
    pub(super) fn removal(&self) -> Removal {
        let mut removal = Removal::default();
        let name = self.cr_name();
        let uid = self.cr_uid();
        let backend = backend_kind(self.cr);
        let mut resolved: BTreeSet<(ChildKind, String)> = BTreeSet::new();
        for zone in &self.cr.spec.zones {
            resolved.insert((backend, child_name(self.cr, zone, backend)));
            resolved.insert((
                ChildKind::VMAgent,
                child_name(self.cr, zone, ChildKind::VMAgent),
            ));
        }
        if vmauth_enabled(self.cr) {
            resolved.insert((ChildKind::VMAuth, vmauth_name(self.cr)));
        }
        let delete = self.cr.spec.zone_removal_policy == Some(ZoneRemovalPolicy::Delete)
            && !self.cr.spec.retain.unwrap_or(false);
        let mut names = Vec::new();
        for child in &self.observed.children {
            let Some(kind) = child.kind else { continue };
            if child.claimed_by() != Some(name) || resolved.contains(&(kind, child.name.clone())) {
                continue;
            }
            if kind == ChildKind::VMAuth {
                // Handed back before anything else (`vmauth_handback`).
                continue;
            }
            removal.pending = true;
            names.push(format!("{kind} {}", child.name));
            if child.is_deleting() {
                removal.waiting = true;
                continue;
            }
            if delete && child.created_by(uid) && !is_referenced(self.cr, kind, &child.name) {
                removal.actions.push(Action::delete(kind, child));
                continue;
            }
            if let Some(patch) = patch::release(child, uid) {
                removal.actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::Release,
                    patch,
                });
            }
        }
        // Zone children go only once the VMAuth no longer routes to them.
        if removal.pending && !self.vmauth_settled() {
            removal.actions.clear();
            removal.waiting = true;
        }
        removal.message = format!("releasing or deleting {}", names.join(", "));
        removal
    }
}

/// What is left to hand back or remove, and the writes that do it.
#[derive(Default)]
pub(super) struct Removal {
    pub(super) pending: bool,
    pub(super) waiting: bool,
    pub(super) actions: Vec<Action>,
    pub(super) message: String,
}
