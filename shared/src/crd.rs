//! The CustomResourceDefinition generated from the Rust types, as committed in the chart.

use kube::CustomResourceExt;

use crate::api::VMDistributed;

/// Path of the committed CRD, relative to the repository root.
pub const CRD_PATH: &str = "charts/vmdistributed/files/crds/vmdistributed.yaml";

/// The command that rewrites [`CRD_PATH`] from the types.
pub const REGENERATE_COMMAND: &str =
    "VMD_REGENERATE_CRD=1 cargo test -p vmdistributed-shared --test crd_drift";

/// The CRD as YAML, with a header saying it is generated.
///
/// # Panics
/// Never in practice: the CRD is a plain serializable value.
#[must_use]
pub fn crd_yaml() -> String {
    let crd = VMDistributed::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes to YAML");
    format!(
        "# Generated from shared/src/api.rs; do not edit. Regenerate: {REGENERATE_COMMAND}\n{body}"
    )
}
