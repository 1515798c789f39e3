//! Child kinds and the names of a `VMDistributed`'s children (docs/api.md "Name resolution").
//!
//! Per zone and kind, the first match wins:
//! 1. `zones[i].<kind>.ref.name` or `zones[i].<kind>.name`, verbatim;
//! 2. `zoneCommon.<kind>.name` with `%ZONE%` replaced by the zone name;
//! 3. `<metadata.name>-<zone name>`.
//!
//! The VMAuth is `vmauth.ref.name`, else `vmauth.name`, else `metadata.name`. All children live in
//! the CR's namespace.

use crate::api::{BackendType, CommonChild, VMDistributed, Zone, ZoneChild};
use crate::template::replace_zone_str;

/// The kinds of children a `VMDistributed` manages (`operator.victoriametrics.com/v1beta1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    /// A zone's VictoriaMetrics cluster (backendType VMCluster).
    VMCluster,
    /// A zone's single-node VictoriaMetrics (backendType VMSingle).
    VMSingle,
    /// A zone's agent that replicates writes to every zone.
    VMAgent,
    /// The shared read/write entry point.
    VMAuth,
}

impl ChildKind {
    /// `apiVersion` of every child kind.
    pub const API_VERSION: &str = "operator.victoriametrics.com/v1beta1";

    /// Every kind, in a fixed order.
    pub const ALL: [ChildKind; 4] = [
        ChildKind::VMCluster,
        ChildKind::VMSingle,
        ChildKind::VMAgent,
        ChildKind::VMAuth,
    ];

    /// The Kubernetes `kind`, for example `VMCluster`.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::VMCluster => "VMCluster",
            Self::VMSingle => "VMSingle",
            Self::VMAgent => "VMAgent",
            Self::VMAuth => "VMAuth",
        }
    }

    /// The resource plural used in API paths, for example `vmclusters`.
    #[must_use]
    pub fn plural(self) -> &'static str {
        match self {
            Self::VMCluster => "vmclusters",
            Self::VMSingle => "vmsingles",
            Self::VMAgent => "vmagents",
            Self::VMAuth => "vmauths",
        }
    }

    /// The lower-case field name of this kind in the `VMDistributed` spec (`vmcluster`,
    /// `vmsingle`, `vmagent`, `vmauth`).
    #[must_use]
    pub fn field(self) -> &'static str {
        match self {
            Self::VMCluster => "vmcluster",
            Self::VMSingle => "vmsingle",
            Self::VMAgent => "vmagent",
            Self::VMAuth => "vmauth",
        }
    }

    /// The backend kind for a `backendType`.
    #[must_use]
    pub fn backend(backend_type: BackendType) -> Self {
        match backend_type {
            BackendType::VMCluster => Self::VMCluster,
            BackendType::VMSingle => Self::VMSingle,
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// The backend kind of `cr` (`spec.backendType`, default VMCluster).
#[must_use]
pub fn backend_kind(cr: &VMDistributed) -> ChildKind {
    ChildKind::backend(cr.spec.backend_type.unwrap_or_default())
}

/// The kinds a zone of `cr` has: its backend, then its VMAgent.
#[must_use]
pub fn zone_kinds(cr: &VMDistributed) -> [ChildKind; 2] {
    [backend_kind(cr), ChildKind::VMAgent]
}

/// Every (kind, name) `cr` resolves: each zone's backend and agent, and the VMAuth.
#[must_use]
pub fn resolved_names(cr: &VMDistributed) -> std::collections::BTreeSet<(ChildKind, String)> {
    let mut names = std::collections::BTreeSet::new();
    for zone in &cr.spec.zones {
        for kind in zone_kinds(cr) {
            names.insert((kind, child_name(cr, zone, kind)));
        }
    }
    names.insert((ChildKind::VMAuth, vmauth_name(cr)));
    names
}

/// `zones[i].<kind>`, if written. Always `None` for [`ChildKind::VMAuth`].
#[must_use]
pub(crate) fn zone_child(zone: &Zone, kind: ChildKind) -> Option<&ZoneChild> {
    match kind {
        ChildKind::VMCluster => zone.vmcluster.as_ref(),
        ChildKind::VMSingle => zone.vmsingle.as_ref(),
        ChildKind::VMAgent => zone.vmagent.as_ref(),
        ChildKind::VMAuth => None,
    }
}

/// `zoneCommon.<kind>`, if written. Always `None` for [`ChildKind::VMAuth`].
#[must_use]
pub(crate) fn common_child(cr: &VMDistributed, kind: ChildKind) -> Option<&CommonChild> {
    let common = cr.spec.zone_common.as_ref()?;
    match kind {
        ChildKind::VMCluster => common.vmcluster.as_ref(),
        ChildKind::VMSingle => common.vmsingle.as_ref(),
        ChildKind::VMAgent => common.vmagent.as_ref(),
        ChildKind::VMAuth => None,
    }
}

/// Where a resolved child name came from (rule 1, 2 or 3 of docs/api.md "Name resolution").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// `zones[i].<kind>.ref.name`: an existing object, never created.
    Ref,
    /// `zones[i].<kind>.name`, verbatim.
    ZoneName,
    /// `zoneCommon.<kind>.name` with `%ZONE%` replaced.
    CommonTemplate,
    /// `<metadata.name>-<zone name>`.
    Derived,
}

/// The name of a zone's child of `kind` and where it came from. For [`ChildKind::VMAuth`] this
/// is [`vmauth_name`] with [`NameSource::ZoneName`] (or [`NameSource::Ref`]).
#[must_use]
pub fn resolve_child_name(
    cr: &VMDistributed,
    zone: &Zone,
    kind: ChildKind,
) -> (String, NameSource) {
    if kind == ChildKind::VMAuth {
        let is_ref = cr
            .spec
            .vmauth
            .as_ref()
            .is_some_and(|a| a.reference.is_some());
        let source = if is_ref {
            NameSource::Ref
        } else {
            NameSource::ZoneName
        };
        return (vmauth_name(cr), source);
    }
    if let Some(child) = zone_child(zone, kind) {
        if let Some(reference) = &child.reference {
            return (reference.name.clone(), NameSource::Ref);
        }
        if let Some(name) = &child.name {
            return (name.clone(), NameSource::ZoneName);
        }
    }
    if let Some(name) = common_child(cr, kind).and_then(|c| c.name.as_deref()) {
        return (
            replace_zone_str(name, &zone.name),
            NameSource::CommonTemplate,
        );
    }
    (
        format!(
            "{}-{}",
            cr.metadata.name.as_deref().unwrap_or_default(),
            zone.name
        ),
        NameSource::Derived,
    )
}

/// The name of `zone`'s child of `kind` (docs/api.md "Name resolution"). For [`ChildKind::VMAuth`]
/// this is [`vmauth_name`].
#[must_use]
pub fn child_name(cr: &VMDistributed, zone: &Zone, kind: ChildKind) -> String {
    resolve_child_name(cr, zone, kind).0
}

/// Whether `zone`'s child of `kind` is a `ref` (an existing object never created or deleted).
#[must_use]
pub(crate) fn is_ref(cr: &VMDistributed, zone: &Zone, kind: ChildKind) -> bool {
    match kind {
        ChildKind::VMAuth => cr
            .spec
            .vmauth
            .as_ref()
            .is_some_and(|a| a.reference.is_some()),
        _ => zone_child(zone, kind).is_some_and(|c| c.reference.is_some()),
    }
}

/// Whether the child of `kind` named `name` is a `ref` of `cr` (some zone's `<kind>.ref`, or
/// `vmauth.ref`): an object that is never created, deleted or given an owner reference, even
/// if this CR once created it (docs/api.md "Name resolution").
#[must_use]
pub(crate) fn is_referenced(cr: &VMDistributed, kind: ChildKind, name: &str) -> bool {
    match kind {
        ChildKind::VMAuth => cr
            .spec
            .vmauth
            .as_ref()
            .and_then(|a| a.reference.as_ref())
            .is_some_and(|r| r.name == name),
        _ => cr.spec.zones.iter().any(|zone| {
            zone_child(zone, kind)
                .and_then(|c| c.reference.as_ref())
                .is_some_and(|r| r.name == name)
        }),
    }
}

/// The name of the shared VMAuth: `vmauth.ref.name`, else `vmauth.name`, else `metadata.name`.
#[must_use]
pub fn vmauth_name(cr: &VMDistributed) -> String {
    let auth = cr.spec.vmauth.as_ref();
    auth.and_then(|a| a.reference.as_ref().map(|r| r.name.clone()))
        .or_else(|| auth.and_then(|a| a.name.clone()))
        .unwrap_or_else(|| cr.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChildRef, VMAuthSettings, VMDistributedSpec, ZoneCommon};

    fn cr(zones: &[&str]) -> VMDistributed {
        let mut cr = VMDistributed::new(
            "vmd",
            VMDistributedSpec {
                zones: zones
                    .iter()
                    .map(|z| Zone {
                        name: (*z).to_owned(),
                        ..Zone::default()
                    })
                    .collect(),
                ..VMDistributedSpec::default()
            },
        );
        cr.metadata.namespace = Some("ns".into());
        cr
    }

    #[test]
    fn kinds_and_plurals() {
        assert_eq!(ChildKind::VMCluster.kind(), "VMCluster");
        assert_eq!(ChildKind::VMSingle.plural(), "vmsingles");
        assert_eq!(ChildKind::VMAgent.plural(), "vmagents");
        assert_eq!(ChildKind::VMAuth.plural(), "vmauths");
        assert_eq!(
            ChildKind::API_VERSION,
            "operator.victoriametrics.com/v1beta1"
        );
    }

    #[test]
    fn name_precedence() {
        let mut cr = cr(&["a", "b", "c"]);
        cr.spec.zone_common = Some(ZoneCommon {
            vmcluster: Some(CommonChild {
                name: Some("vm-%ZONE%".into()),
                spec: None,
            }),
            ..ZoneCommon::default()
        });
        cr.spec.zones[0].vmcluster = Some(ZoneChild {
            name: Some("explicit".into()),
            ..ZoneChild::default()
        });
        cr.spec.zones[1].vmcluster = Some(ZoneChild {
            reference: Some(ChildRef {
                name: "existing".into(),
                namespace: None,
            }),
            ..ZoneChild::default()
        });
        let zones = cr.spec.zones.clone();
        assert_eq!(child_name(&cr, &zones[0], ChildKind::VMCluster), "explicit");
        assert_eq!(child_name(&cr, &zones[1], ChildKind::VMCluster), "existing");
        assert!(is_ref(&cr, &zones[1], ChildKind::VMCluster));
        assert_eq!(child_name(&cr, &zones[2], ChildKind::VMCluster), "vm-c");
        assert_eq!(
            resolve_child_name(&cr, &zones[2], ChildKind::VMCluster).1,
            NameSource::CommonTemplate
        );
        assert_eq!(child_name(&cr, &zones[2], ChildKind::VMAgent), "vmd-c");
    }

    #[test]
    fn vmauth_precedence() {
        let mut cr = cr(&["a"]);
        assert_eq!(vmauth_name(&cr), "vmd");
        cr.spec.vmauth = Some(VMAuthSettings {
            name: Some("global".into()),
            ..VMAuthSettings::default()
        });
        assert_eq!(vmauth_name(&cr), "global");
        cr.spec.vmauth = Some(VMAuthSettings {
            name: Some("global".into()),
            reference: Some(ChildRef {
                name: "existing".into(),
                namespace: None,
            }),
            ..VMAuthSettings::default()
        });
        assert_eq!(vmauth_name(&cr), "existing");
        let zone = cr.spec.zones[0].clone();
        assert_eq!(child_name(&cr, &zone, ChildKind::VMAuth), "existing");
    }
}
