//! A warning for each child kind whose version the spec leaves to the VictoriaMetrics
//! operator's default: the controller then pins one (docs/rollout.md "Pinned versions"), which
//! keeps an operator upgrade from restarting every zone at once but is not a version the user
//! chose. Children the controller does not pin (`ref`s, backends adopted by name) are left out.

use super::Report;
use crate::api::VMDistributed;
use crate::names::{ChildKind, backend_kind};
use crate::versions::{PinnedVersions, pinned_field, zones_pinned};

pub(super) fn check(cr: &VMDistributed, report: &mut Report) {
    let defaults = PinnedVersions::operator_defaults();
    for kind in [backend_kind(cr), ChildKind::VMAgent] {
        let zones: Vec<&str> = zones_pinned(cr, kind)
            .into_iter()
            .map(|zone| zone.name.as_str())
            .collect();
        if zones.is_empty() {
            continue;
        }
        let lower = kind.kind().to_ascii_lowercase();
        report.warn(format!(
            "spec.zoneCommon.{lower}.spec.{field}: not set for zones {zones}: the controller pins \
             the version it is configured with (--pinned-{lower}-version, chart value \
             controller.pinnedVersions.{lower}; by default {default}, the default of \
             VictoriaMetrics operator {release}), so that an operator upgrade does not restart \
             every zone at once; set {field} to choose the version",
            field = pinned_field(kind),
            zones = zones.join(", "),
            default = defaults.of(kind).unwrap_or_default(),
            release = crate::versions::OPERATOR_RELEASE,
        ));
    }
}
