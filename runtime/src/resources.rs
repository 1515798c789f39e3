//! The API resources the binaries and the test harness address dynamically: the four
//! VictoriaMetrics child kinds and the `VMDistributed` kind itself, built from the names in
//! `shared` so that group, version and plural are written down once.

use kube::api::{ApiResource, GroupVersionKind};
use shared::api::{GROUP, KIND, VERSION};
use shared::names::ChildKind;

/// The API resource of a child kind (`operator.victoriametrics.com/v1beta1`).
#[must_use]
pub fn child(kind: ChildKind) -> ApiResource {
    let version = ChildKind::API_VERSION
        .rsplit_once('/')
        .map_or("v1beta1", |(_, version)| version);
    let gvk = GroupVersionKind::gvk(GROUP, version, kind.kind());
    ApiResource::from_gvk_with_plural(&gvk, kind.plural())
}

/// The API resource of the `VMDistributed` kind (plural `vmdistributed`).
#[must_use]
pub fn vmdistributed() -> ApiResource {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, KIND);
    ApiResource::from_gvk_with_plural(&gvk, "vmdistributed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resources_are_the_ones_the_crds_serve() {
        let agents = child(ChildKind::VMAgent);
        assert_eq!(agents.api_version, "operator.victoriametrics.com/v1beta1");
        assert_eq!(
            (agents.kind.as_str(), agents.plural.as_str()),
            ("VMAgent", "vmagents")
        );
        let crs = vmdistributed();
        assert_eq!(crs.api_version, "operator.victoriametrics.com/v1alpha1");
        assert_eq!(
            (crs.kind.as_str(), crs.plural.as_str()),
            ("VMDistributed", "vmdistributed")
        );
    }
}
