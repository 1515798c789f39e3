//! The `--pinned-*-version` flags (docs/rollout.md "Pinned versions"). The controller writes
//! these versions into children whose spec sets none; the webhook's preflight renders children
//! with them, so it dry-runs what the controller will write. The chart sets both binaries' flags
//! from `controller.pinnedVersions`.

use shared::versions::{
    OPERATOR_DEFAULT_CLUSTER_VERSION, OPERATOR_DEFAULT_VERSION, PinnedVersions,
};

/// Versions pinned into children whose spec leaves the version to the VictoriaMetrics operator.
/// The defaults are that operator release's own (`VM_METRICS_VERSION` and the per-kind
/// `VM_*DEFAULT_VERSION` settings). Changing one rolls it out zone by zone. An empty value pins
/// nothing for that kind.
#[derive(Debug, Clone, clap::Args)]
pub struct PinArgs {
    /// `clusterVersion` of VMClusters whose spec sets neither it nor every component's tag.
    #[arg(long, env = "VMD_PINNED_VMCLUSTER_VERSION", default_value = OPERATOR_DEFAULT_CLUSTER_VERSION)]
    pub pinned_vmcluster_version: String,
    /// `image.tag` of VMAgents whose spec sets neither it nor `componentVersion`.
    #[arg(long, env = "VMD_PINNED_VMAGENT_VERSION", default_value = OPERATOR_DEFAULT_VERSION)]
    pub pinned_vmagent_version: String,
    /// `image.tag` of VMSingles whose spec sets neither it nor `componentVersion`.
    #[arg(long, env = "VMD_PINNED_VMSINGLE_VERSION", default_value = OPERATOR_DEFAULT_VERSION)]
    pub pinned_vmsingle_version: String,
}

impl PinArgs {
    /// The versions as the rendering takes them (an empty flag pins nothing).
    #[must_use]
    pub fn pinned_versions(&self) -> PinnedVersions {
        PinnedVersions::from_flags(
            &self.pinned_vmcluster_version,
            &self.pinned_vmagent_version,
            &self.pinned_vmsingle_version,
        )
    }
}
