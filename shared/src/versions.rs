//! Version pinning (docs/rollout.md "Pinned versions").
//!
//! The VictoriaMetrics operator runs a child whose spec names no version at the default version
//! compiled into the operator. Upgrading the operator to one with a newer default would then
//! restart every zone at once, as soon as the operator restarts: the outage this project exists
//! to prevent. So where the spec leaves the version unset, the intent carries the version the
//! controller is configured to pin (by default the operator's own defaults, below). Changing
//! that setting changes the intents, which is an ordinary rollout, one zone at a time.
//!
//! What is pinned, only where the user set nothing that decides the version:
//! - `VMCluster`: `clusterVersion`, when it is unset and a component the spec configures
//!   (`vmstorage`, `vminsert`, `vmselect`) has neither `image.tag` nor `componentVersion` (a
//!   component's own tag wins over `clusterVersion`, so a fully tagged cluster needs nothing);
//! - `VMAgent` and `VMSingle`: `image.tag`, when it and `componentVersion` are unset.
//!
//! The operator appends `-enterprise` to a version it derives (not to an explicit `image.tag`)
//! when the child has a license: a pinned `clusterVersion` is left for the operator to suffix,
//! a pinned `image.tag` gets the suffix here, by the operator's rule (`enterprise_tag`).

use serde_json::{Map, Value};

use crate::api::{VMDistributed, Zone};
use crate::names::{ChildKind, backend_kind, is_ref};
use crate::spec::{VMCLUSTER_COMPONENTS, adopts_by_name, zone_child_spec};

/// The VictoriaMetrics operator release whose defaults [`PinnedVersions::operator_defaults`]
/// carries (its `internal/config/config.go`, `VM_METRICS_VERSION`).
pub(crate) const OPERATOR_RELEASE: &str = "v0.74.1";
/// That release's default VictoriaMetrics version (`VM_METRICS_VERSION`), the version of its
/// `VMAgent`s and `VMSingle`s.
pub const OPERATOR_DEFAULT_VERSION: &str = "v1.148.0";
/// That release's default version of the `VMCluster` components (`VM_METRICS_VERSION` with
/// `-cluster`).
pub const OPERATOR_DEFAULT_CLUSTER_VERSION: &str = "v1.148.0-cluster";

pub use crate::api::PinnedVersions;

impl PinnedVersions {
    /// The versions set by the controller's and the webhook's `--pinned-*-version` flags (chart
    /// `controller.pinnedVersions`): an empty value pins nothing for that kind.
    #[must_use]
    pub fn from_flags(vmcluster: &str, vmagent: &str, vmsingle: &str) -> Self {
        let pin = |version: &str| Some(version.trim().to_owned()).filter(|v| !v.is_empty());
        Self {
            vmcluster: pin(vmcluster),
            vmagent: pin(vmagent),
            vmsingle: pin(vmsingle),
        }
    }

    /// The defaults of VictoriaMetrics operator `OPERATOR_RELEASE`: `VM_METRICS_VERSION` for
    /// `VMAgent` and `VMSingle`, with `-cluster` for the `VMCluster` components.
    #[must_use]
    pub fn operator_defaults() -> Self {
        Self {
            vmcluster: Some(OPERATOR_DEFAULT_CLUSTER_VERSION.to_owned()),
            vmagent: Some(OPERATOR_DEFAULT_VERSION.to_owned()),
            vmsingle: Some(OPERATOR_DEFAULT_VERSION.to_owned()),
        }
    }

    /// The version pinned for `kind`, if any (never an empty string).
    #[must_use]
    pub fn of(&self, kind: ChildKind) -> Option<&str> {
        let version = match kind {
            ChildKind::VMCluster => self.vmcluster.as_deref(),
            ChildKind::VMAgent => self.vmagent.as_deref(),
            ChildKind::VMSingle => self.vmsingle.as_deref(),
            ChildKind::VMAuth => None,
        };
        version.filter(|v| !v.is_empty())
    }
}

/// The field a pin writes for `kind`, as the user would write it in a child spec.
#[must_use]
pub(crate) fn pinned_field(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::VMCluster => "clusterVersion",
        _ => "image.tag",
    }
}

/// Whether the merged child spec of `kind` leaves its version to the operator's default (see the
/// module docs for what counts as setting it).
#[must_use]
pub(crate) fn version_unset(kind: ChildKind, spec: &Value) -> bool {
    let Some(spec) = spec.as_object() else {
        return false;
    };
    match kind {
        ChildKind::VMCluster => {
            !has_text(spec, "clusterVersion")
                && VMCLUSTER_COMPONENTS.iter().any(|component| {
                    spec.get(*component)
                        .and_then(Value::as_object)
                        .is_some_and(|c| !has_own_version(c))
                })
        }
        ChildKind::VMAgent | ChildKind::VMSingle => !has_own_version(spec),
        ChildKind::VMAuth => false,
    }
}

/// Whether the controller may pin the version of `zone`'s child of `kind` whose merged spec is
/// `spec`: not a `ref` (its owner decides its version; it is written only with what the user
/// wrote), and not a backend adopted by name (its spec configures no component of ours).
#[must_use]
pub(crate) fn pins_child(cr: &VMDistributed, zone: &Zone, kind: ChildKind, spec: &Value) -> bool {
    !is_ref(cr, zone, kind) && (kind == ChildKind::VMAgent || !adopts_by_name(kind, spec))
}

/// The zones whose child of `kind` gets a pinned version: [`pins_child`] and a merged spec
/// that leaves the version unset.
#[must_use]
pub(crate) fn zones_pinned(cr: &VMDistributed, kind: ChildKind) -> Vec<&Zone> {
    cr.spec
        .zones
        .iter()
        .filter(|zone| {
            let spec = zone_child_spec(cr, zone, kind);
            pins_child(cr, zone, kind, &spec) && version_unset(kind, &spec)
        })
        .collect()
}

/// What the controller pins into `cr`'s children with `pins`: for each kind, the pinned version
/// when at least one zone's child of that kind gets it. (The value a status field recording the
/// pinned versions would show.)
#[must_use]
pub fn pinned_for(cr: &VMDistributed, pins: &PinnedVersions) -> PinnedVersions {
    let of = |kind: ChildKind| {
        pins.of(kind)
            .filter(|_| !zones_pinned(cr, kind).is_empty())
            .map(str::to_owned)
    };
    let backend = backend_kind(cr);
    PinnedVersions {
        vmcluster: (backend == ChildKind::VMCluster)
            .then(|| of(ChildKind::VMCluster))
            .flatten(),
        vmagent: of(ChildKind::VMAgent),
        vmsingle: (backend == ChildKind::VMSingle)
            .then(|| of(ChildKind::VMSingle))
            .flatten(),
    }
}

/// Pin the version of the child spec of `kind` from `pins` where the spec leaves it unset.
pub fn pin(kind: ChildKind, spec: &mut Value, pins: &PinnedVersions) {
    let Some(version) = pins.of(kind) else {
        return;
    };
    if !version_unset(kind, spec) {
        return;
    }
    let licensed = has_license(spec);
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    match kind {
        ChildKind::VMCluster => {
            map.insert(
                "clusterVersion".to_owned(),
                Value::String(version.to_owned()),
            );
        }
        _ => {
            let tag = if licensed {
                enterprise_tag(version)
            } else {
                version.to_owned()
            };
            let image = map
                .entry("image")
                .or_insert_with(|| Value::Object(Map::new()));
            if !image.is_object() {
                *image = Value::Object(Map::new());
            }
            if let Value::Object(image) = image {
                image.insert("tag".to_owned(), Value::String(tag));
            }
        }
    }
}

/// `tag` as the VictoriaMetrics operator runs it for a licensed child (its
/// `addEntSuffixToTag`): `vX.Y.Z` gets `-enterprise`, `vX.Y.Z-cluster` becomes
/// `vX.Y.Z-enterprise-cluster`; enterprise tags, digests (`@`) and anything not shaped
/// `vX.Y.Z[-suffix]` stay as they are.
#[must_use]
pub(crate) fn enterprise_tag(tag: &str) -> String {
    if !tag.starts_with('v') || tag.matches('.').count() != 2 || tag.contains('@') {
        return tag.to_owned();
    }
    match tag.find('-').filter(|i| *i > 0) {
        Some(i) => match &tag[i..] {
            "-cluster" => format!("{}-enterprise-cluster", &tag[..i]),
            _ => tag.to_owned(),
        },
        None => format!("{tag}-enterprise"),
    }
}

/// A component (or a `VMAgent`/`VMSingle` spec) that decides its own version.
fn has_own_version(component: &Map<String, Value>) -> bool {
    has_text(component, "componentVersion")
        || component
            .get("image")
            .and_then(Value::as_object)
            .is_some_and(|image| has_text(image, "tag"))
}

fn has_text(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// The child has a license the operator counts as provided (`key` or `keyRef` present).
fn has_license(spec: &Value) -> bool {
    spec.get("license").is_some_and(|license| {
        ["key", "keyRef"]
            .iter()
            .any(|field| license.get(*field).is_some_and(|v| !v.is_null()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enterprise_suffix_follows_the_operator() {
        for (tag, expected) in [
            ("v1.148.0", "v1.148.0-enterprise"),
            ("v1.148.0-cluster", "v1.148.0-enterprise-cluster"),
            ("v1.148.0-enterprise", "v1.148.0-enterprise"),
            ("v1.148.0-enterprise-cluster", "v1.148.0-enterprise-cluster"),
            ("v1.148.0-scratch", "v1.148.0-scratch"),
            ("latest", "latest"),
            ("v1.148", "v1.148"),
            ("v1.148.0@sha256:abc", "v1.148.0@sha256:abc"),
        ] {
            assert_eq!(enterprise_tag(tag), expected, "{tag}");
        }
    }

    #[test]
    fn operator_defaults_are_those_of_the_pinned_release() {
        assert_eq!(
            OPERATOR_DEFAULT_CLUSTER_VERSION,
            format!("{OPERATOR_DEFAULT_VERSION}-cluster")
        );
        let defaults = PinnedVersions::operator_defaults();
        assert_eq!(defaults.of(ChildKind::VMCluster), Some("v1.148.0-cluster"));
        assert_eq!(defaults.of(ChildKind::VMAgent), Some("v1.148.0"));
        assert_eq!(defaults.of(ChildKind::VMSingle), Some("v1.148.0"));
        assert_eq!(defaults.of(ChildKind::VMAuth), None);
        let empty = PinnedVersions {
            vmagent: Some(String::new()),
            ..PinnedVersions::default()
        };
        assert_eq!(empty.of(ChildKind::VMAgent), None);
    }
}
