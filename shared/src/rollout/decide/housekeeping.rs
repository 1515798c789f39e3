//! Writes that never change what an existing zone serves, so they are allowed in any phase:
//! creation of missing children, stamping of adopted children that already contain their
//! intent, and owner references that follow `retain` and `ref` (docs/rollout.md "Ownership").

use super::{Step, ZoneView};
use crate::children::ChildObject;
use crate::model::{Action, MetadataPatchReason, contains};
use crate::names::{ChildKind, backend_kind, is_referenced};
use crate::render::{may_create, owner_reference, vmauth_enabled};
use crate::rollout::patch;

impl Step<'_> {
    /// Creation of missing children, stamping, owner references: writes that never change what
    /// an existing zone serves, so they are allowed in any phase.
    pub(super) fn housekeeping(&self, views: &[ZoneView<'_>], actions: &mut Vec<Action>) {
        let backend = backend_kind(self.cr);
        let uid = self.cr_uid();
        let retain = self.cr.spec.retain.unwrap_or(false);
        for view in views.iter().filter(|v| v.writable() && v.missing.is_none()) {
            for (kind, child, intent) in [
                (backend, view.backend, &view.intents.backend),
                (ChildKind::VMAgent, view.agent, &view.intents.agent),
            ] {
                match child {
                    None => {
                        if may_create(self.cr, Some(view.zone), kind) {
                            actions.push(Action::Create {
                                intent: intent.clone(),
                            });
                        }
                    }
                    Some(child) if child.is_deleting() => {}
                    Some(child) => {
                        // A migrated or adopted child that already contains the intent is
                        // stamped in place: the unchanged intent adds the annotation only.
                        if child.spec_hash().is_none() && contains(&child.spec, &intent.spec) {
                            actions.push(Action::Apply {
                                intent: intent.clone(),
                            });
                        }
                        self.owner_reference_fix(kind, child, uid, retain, actions);
                    }
                }
            }
        }
        if let Some(live) = self.vmauth_child()
            && vmauth_enabled(self.cr)
            && self.vmauth_conflict().is_none()
            && !live.is_deleting()
        {
            self.owner_reference_fix(ChildKind::VMAuth, live, uid, retain, actions);
        }
    }

    /// The owner reference of a child this CR created follows `retain`; a `ref` of any kind
    /// carries neither an owner reference nor created-by, also when this CR created it before
    /// it became a `ref` (otherwise the CR's deletion, or the garbage collector after a
    /// foreground deletion, would delete it).
    fn owner_reference_fix(
        &self,
        kind: ChildKind,
        child: &ChildObject,
        uid: &str,
        retain: bool,
        actions: &mut Vec<Action>,
    ) {
        if uid.is_empty() {
            return;
        }
        if is_referenced(self.cr, kind, &child.name) {
            if let Some(patch) = patch::forget_creation(child, uid) {
                actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::ForgetCreation,
                    patch,
                });
            }
            return;
        }
        if !child.created_by(uid) {
            return;
        }
        if retain {
            if let Some(patch) = patch::remove_owner_reference(child, uid) {
                actions.push(Action::PatchMetadata {
                    kind,
                    name: child.name.clone(),
                    reason: MetadataPatchReason::RemoveOwnerReference,
                    patch,
                });
            }
        } else if !child.controller_owner_is(uid)
            && let Some(patch) = patch::add_owner_reference(child, &owner_reference(self.cr))
        {
            actions.push(Action::PatchMetadata {
                kind,
                name: child.name.clone(),
                reason: MetadataPatchReason::AddOwnerReference,
                patch,
            });
        }
    }
}
