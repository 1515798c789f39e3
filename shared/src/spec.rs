//! A zone's merged child specs (docs/api.md "Merge rules"):
//! `replace_zone(zoneCommon.<kind>.spec, zone) ⊕ zones[i].<kind>.spec`.
//!
//! These are the user's settings only; rendering adds license, labels and the fields the
//! controller owns.

use serde_json::{Map, Value};

use crate::api::{VMDistributed, Zone};
use crate::merge::{deep_merge, normalize};
use crate::names::{ChildKind, backend_kind, common_child, is_ref, zone_child};
use crate::template::replace_zone;

/// The merged spec of `zone`'s child of `kind`; `{}` when nothing is written (or everything was
/// deleted).
///
/// For [`ChildKind::VMAuth`] this is `vmauth.spec` with merge directives applied (the VMAuth is
/// shared, so there is no zone template and no `%ZONE%` replacement).
#[must_use]
pub fn zone_child_spec(cr: &VMDistributed, zone: &Zone, kind: ChildKind) -> Value {
    if kind == ChildKind::VMAuth {
        let spec = cr.spec.vmauth.as_ref().and_then(|a| a.spec.as_ref());
        return object_or_empty(spec.and_then(normalize));
    }
    let common = common_child(cr, kind).and_then(|c| c.spec.as_ref());
    let own = zone_child(zone, kind).and_then(|c| c.spec.as_ref());
    merge_templated(common, own, &zone.name)
}

/// The merged remote-write settings every agent uses when writing into `target`:
/// `replace_zone(zoneCommon.remoteWrite, target) ⊕ target.remoteWrite`; `{}` when nothing is
/// written. The target's `url` is not part of it (rendering computes that).
#[must_use]
pub fn zone_remote_write(cr: &VMDistributed, target: &Zone) -> Value {
    let common = cr
        .spec
        .zone_common
        .as_ref()
        .and_then(|c| c.remote_write.as_ref());
    merge_templated(common, target.remote_write.as_ref(), &target.name)
}

/// The VMCluster components whose presence makes a merged spec describe a cluster to create.
pub(crate) const VMCLUSTER_COMPONENTS: [&str; 3] = ["vminsert", "vmselect", "vmstorage"];

/// Whether `zone`'s backend is adopted by name: it is not a `ref`, and its merged spec cannot
/// describe a new backend, so the object must already exist (docs/api.md "Adoption and `ref`").
/// Such a backend is updated with the merged spec but never created; admission answers with a
/// warning.
///
/// - VMCluster: the merged spec has none of `vminsert`, `vmselect`, `vmstorage` (for example it is
///   empty, or only sets `clusterVersion`, as in the VictoriaMetrics "distributed" chart case).
///   A spec with some components but without both `vminsert` and `vmselect` is an error instead.
/// - VMSingle: the merged spec is empty.
#[must_use]
pub fn adopts_backend_by_name(cr: &VMDistributed, zone: &Zone) -> bool {
    let kind = backend_kind(cr);
    if is_ref(cr, zone, kind) {
        return false;
    }
    adopts_by_name(kind, &zone_child_spec(cr, zone, kind))
}

/// [`adopts_backend_by_name`] for an already merged backend spec of `kind`.
#[must_use]
pub(crate) fn adopts_by_name(kind: ChildKind, merged: &Value) -> bool {
    let Some(map) = merged.as_object() else {
        return true;
    };
    match kind {
        ChildKind::VMCluster => VMCLUSTER_COMPONENTS.iter().all(|c| !map.contains_key(*c)),
        ChildKind::VMSingle => map.is_empty(),
        ChildKind::VMAgent | ChildKind::VMAuth => false,
    }
}

fn merge_templated(common: Option<&Value>, own: Option<&Value>, zone: &str) -> Value {
    let merged = match (common, own) {
        (None, None) => None,
        (Some(common), None) => normalize(&replace_zone(common, zone)),
        (None, Some(own)) => normalize(own),
        (Some(common), Some(own)) => Some(deep_merge(&replace_zone(common, zone), own)),
    };
    object_or_empty(merged)
}

/// Child specs are objects; anything else (a deleted spec, or a scalar that strict decoding of
/// the free-form field let through) counts as "nothing written".
fn object_or_empty(value: Option<Value>) -> Value {
    match value {
        Some(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CommonChild, VMDistributedSpec, ZoneChild, ZoneCommon};
    use serde_json::json;

    fn cr(common: Option<Value>, zone: Option<Value>) -> VMDistributed {
        VMDistributed::new(
            "vmd",
            VMDistributedSpec {
                zone_common: Some(ZoneCommon {
                    vmcluster: Some(CommonChild {
                        name: None,
                        spec: common.clone(),
                    }),
                    remote_write: common,
                    ..ZoneCommon::default()
                }),
                zones: vec![Zone {
                    name: "z1".into(),
                    vmcluster: Some(ZoneChild {
                        spec: zone.clone(),
                        ..ZoneChild::default()
                    }),
                    remote_write: zone,
                    ..Zone::default()
                }],
                ..VMDistributedSpec::default()
            },
        )
    }

    #[test]
    fn template_then_merge() {
        let cr = cr(
            Some(json!({"nodeSelector": {"zone": "%ZONE%"}, "replicaCount": 1})),
            Some(json!({"nodeSelector": {"$patch": "delete"}, "replicaCount": 2})),
        );
        let zone = &cr.spec.zones[0];
        assert_eq!(
            zone_child_spec(&cr, zone, ChildKind::VMCluster),
            json!({"replicaCount": 2})
        );
        assert_eq!(zone_remote_write(&cr, zone), json!({"replicaCount": 2}));
        assert_eq!(zone_child_spec(&cr, zone, ChildKind::VMAgent), json!({}));
    }

    #[test]
    fn common_only_is_templated_and_normalized() {
        let cr = cr(
            Some(json!({"a": "%ZONE%", "$patch": "merge", "b": null})),
            None,
        );
        let zone = &cr.spec.zones[0];
        assert_eq!(
            zone_child_spec(&cr, zone, ChildKind::VMCluster),
            json!({"a": "z1"})
        );
    }

    #[test]
    fn nothing_or_everything_deleted_is_empty() {
        let cr1 = cr(None, None);
        assert_eq!(
            zone_child_spec(&cr1, &cr1.spec.zones[0], ChildKind::VMCluster),
            json!({})
        );
        let cr2 = cr(Some(json!({"a": 1})), Some(json!({"$patch": "delete"})));
        assert_eq!(
            zone_child_spec(&cr2, &cr2.spec.zones[0], ChildKind::VMCluster),
            json!({})
        );
    }
}
