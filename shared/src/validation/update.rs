//! The UPDATE rules that compare the new object with the stored one.

use super::rules::zone_named;
use super::{ALLOW_RENAME_ANNOTATION, Report};
use crate::api::{VMDistributed, ZoneRemovalPolicy};
use crate::names::{ChildKind, NameSource, is_ref, resolve_child_name, zone_kinds};

pub(super) fn check(cr: &VMDistributed, old: &VMDistributed, report: &mut Report) {
    let new_backend = cr.spec.backend_type.unwrap_or_default();
    let old_backend = old.spec.backend_type.unwrap_or_default();
    let backend_changed = new_backend != old_backend;
    if backend_changed {
        report.error(
            "spec.backendType",
            format!(
                "cannot change from {old_backend:?} to {new_backend:?}: backendType is \
                 immutable because the existing {old_backend:?} children hold the data; create a \
                 new VMDistributed with backendType {new_backend:?} instead"
            ),
        );
    }
    let allow_rename = cr
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOW_RENAME_ANNOTATION))
        .is_some_and(|v| v == "true");
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
                    "zone {:?} would switch from {kind} {old_name:?} to {new_name:?}, which \
                     starts a new, empty {kind} and orphans the data of {old_name:?}. To rename \
                     deliberately, remove the zone, apply, then add it back with the new name \
                     (with zoneRemovalPolicy: Retain the old {kind} is kept), or set the \
                     annotation {ALLOW_RENAME_ANNOTATION}: \"true\" on this VMDistributed",
                    zone.name
                ),
            );
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
