//! The UPDATE rules: in the webhook they compare the new object with the stored one; in the
//! controller, which sees only the new object, with the stored state ([`check_stored`]).

use std::collections::BTreeSet;

use super::rules::zone_named;
use super::{ALLOW_RENAME_ANNOTATION, Report};
use crate::api::{BackendType, VMDistributed, Zone, ZoneRemovalPolicy};
use crate::children::{ChildObject, LABEL_ZONE};
use crate::names::{ChildKind, NameSource, backend_kind, is_ref, resolve_child_name, zone_kinds};

pub(super) fn check(cr: &VMDistributed, old: &VMDistributed, report: &mut Report) {
    let new_backend = cr.spec.backend_type.unwrap_or_default();
    let old_backend = old.spec.backend_type.unwrap_or_default();
    let backend_changed = new_backend != old_backend;
    if backend_changed {
        backend_change(old_backend, new_backend, "", report);
    }
    let allow_rename = allows_rename(cr);
    let policy = cr.spec.zone_removal_policy.unwrap_or_default();

    for (i, zone) in cr.spec.zones.iter().enumerate() {
        let Some(old_zone) = zone_named(old, &zone.name) else {
            continue;
        };
        for kind in zone_kinds(cr) {
            if backend_changed && kind != ChildKind::VMAgent {
                continue;
            }
            let (old_name, _) = resolve_child_name(old, old_zone, kind);
            let (new_name, source) = resolve_child_name(cr, zone, kind);
            if old_name == new_name {
                continue;
            }
            if allow_rename {
                report.warn(format!(
                    "spec.zones[{i}]: zone {:?} switches from {kind} {old_name:?} to \
                     {new_name:?} ({ALLOW_RENAME_ANNOTATION}: \"true\"); {old_name:?} will be {}",
                    zone.name,
                    fate(policy, is_ref(old, old_zone, kind))
                ));
                continue;
            }
            rename(i, zone, kind, &old_name, &new_name, source, report);
        }
    }

    for old_zone in &old.spec.zones {
        if zone_named(cr, &old_zone.name).is_some() {
            continue;
        }
        let children: Vec<String> = zone_kinds(old)
            .into_iter()
            .map(|kind| {
                let (name, _) = resolve_child_name(old, old_zone, kind);
                format!(
                    "{kind} {name:?} will be {}",
                    fate(policy, is_ref(old, old_zone, kind))
                )
            })
            .collect();
        report.warn(format!(
            "spec.zones: zone {:?} is removed: {}",
            old_zone.name,
            children.join(", ")
        ));
    }
}

/// The UPDATE rules for the controller, which has no old object: judged against the stored
/// state instead (docs/api.md "Validation summary"), so that a change that bypassed the webhook
/// (`failurePolicy: Ignore`, a namespace selector, an outage) cannot make the children of a zone
/// removal candidates, to be deleted under `zoneRemovalPolicy: Delete`.
///
/// The stored state is what the children this CR claims (the claim label, not being deleted)
/// and `status.zones[]` name for each zone:
/// - a claimed backend of the other kind means `backendType` changed;
/// - a zone still in the spec whose claimed child of a kind (found by the zone label, or by
///   the name `status.zones[]` recorded) has another name than the zone now resolves is a
///   rename, refused unless the CR carries [`ALLOW_RENAME_ANNOTATION`]. A recorded name with no
///   claimed child behind it orphans nothing and is not refused.
///
/// Only errors: the webhook's warnings (removed zones, allowed renames) are for the user
/// applying the change.
pub(super) fn check_stored(cr: &VMDistributed, children: &[ChildObject], report: &mut Report) {
    let name = cr.metadata.name.as_deref().unwrap_or_default();
    let claimed: Vec<&ChildObject> = children
        .iter()
        .filter(|c| c.claimed_by() == Some(name) && !c.is_deleting())
        .collect();
    let backend = backend_kind(cr);
    let new_backend = cr.spec.backend_type.unwrap_or_default();
    let old_backends: BTreeSet<String> = claimed
        .iter()
        .filter(|c| {
            matches!(c.kind, Some(ChildKind::VMCluster | ChildKind::VMSingle))
                && c.kind != Some(backend)
        })
        .map(|c| format!("{} {}", c.kind.map_or("", ChildKind::kind), c.name))
        .collect();
    let backend_changed = !old_backends.is_empty();
    if backend_changed {
        let old_backend = match new_backend {
            BackendType::VMCluster => BackendType::VMSingle,
            BackendType::VMSingle => BackendType::VMCluster,
        };
        let which = old_backends.into_iter().collect::<Vec<_>>().join(", ");
        backend_change(
            old_backend,
            new_backend,
            &format!(" ({which}, claimed by this VMDistributed)"),
            report,
        );
    }
    if allows_rename(cr) {
        return;
    }
    let status = cr.status.as_ref();
    for (i, zone) in cr.spec.zones.iter().enumerate() {
        let recorded = status.and_then(|s| s.zones.iter().find(|z| z.name == zone.name));
        for kind in zone_kinds(cr) {
            if backend_changed && kind != ChildKind::VMAgent {
                continue;
            }
            let (new_name, source) = resolve_child_name(cr, zone, kind);
            let recorded_name = recorded.and_then(|z| match kind {
                ChildKind::VMAgent => z.vmagent.as_deref(),
                _ => z.vmcluster.as_deref(),
            });
            let old_names: BTreeSet<&str> = claimed
                .iter()
                .filter(|c| c.kind == Some(kind))
                .filter(|c| {
                    c.labels.get(LABEL_ZONE) == Some(&zone.name)
                        || recorded_name == Some(c.name.as_str())
                })
                .map(|c| c.name.as_str())
                .filter(|old| *old != new_name)
                .collect();
            for old_name in old_names {
                rename(i, zone, kind, old_name, &new_name, source, report);
            }
        }
    }
}

fn allows_rename(cr: &VMDistributed) -> bool {
    cr.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOW_RENAME_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The error for a `backendType` change; `evidence` follows the old kind in the message.
fn backend_change(
    old_backend: BackendType,
    new_backend: BackendType,
    evidence: &str,
    report: &mut Report,
) {
    report.error(
        "spec.backendType",
        format!(
            "cannot change from {old_backend:?} to {new_backend:?}: backendType is \
             immutable because the existing {old_backend:?} children{evidence} hold the data; \
             create a new VMDistributed with backendType {new_backend:?} instead"
        ),
    );
}

/// The error for zone `zone` (index `i`) switching its child of `kind` from `old_name` to
/// `new_name`, at the field the new name comes from.
fn rename(
    i: usize,
    zone: &Zone,
    kind: ChildKind,
    old_name: &str,
    new_name: &str,
    source: NameSource,
    report: &mut Report,
) {
    let field = kind.field();
    let path = match source {
        NameSource::Ref => format!("spec.zones[{i}].{field}.ref.name"),
        NameSource::ZoneName => format!("spec.zones[{i}].{field}.name"),
        NameSource::CommonTemplate => format!("spec.zoneCommon.{field}.name"),
        NameSource::Derived => format!("spec.zones[{i}].{field}"),
    };
    report.error(
        path,
        format!(
            "zone {:?} would switch from {kind} {old_name:?} to {new_name:?}, which starts a \
             new, empty {kind} and orphans the data of {old_name:?}. To rename deliberately, \
             remove the zone, apply, then add it back with the new name (with \
             zoneRemovalPolicy: Retain the old {kind} is kept), or set the annotation \
             {ALLOW_RENAME_ANNOTATION}: \"true\" on this VMDistributed",
            zone.name
        ),
    );
}

/// What happens to a child left behind by a removed or renamed zone.
fn fate(policy: ZoneRemovalPolicy, referenced: bool) -> &'static str {
    match (policy, referenced) {
        (_, true) => "released (a ref is never deleted)",
        (ZoneRemovalPolicy::Retain, false) => {
            "released: kept, with this VMDistributed's labels, annotations and owner reference \
             removed (zoneRemovalPolicy: Retain)"
        }
        (ZoneRemovalPolicy::Delete, false) => {
            "deleted if this VMDistributed created it, released otherwise (zoneRemovalPolicy: \
             Delete)"
        }
    }
}
