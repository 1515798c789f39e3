//! `VMDistributed` manifests shared by tests and benchmarks.

/// A 3-zone `VMDistributed` (`zone-a`, `zone-b`, `zone-c`) whose clusters are created from
/// `zoneCommon` with `cluster_version`, so a rollout is one `clusterVersion` change away.
#[must_use]
pub fn three_zones(
    name: &str,
    cluster_version: &str,
    ready_timeout: &str,
    update_pause: &str,
) -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: {name}
spec:
  zoneCommon:
    readyTimeout: {ready_timeout}
    updatePause: {update_pause}
    vmcluster:
      spec:
        clusterVersion: {cluster_version}
        vminsert: {{replicaCount: 1}}
        vmselect: {{replicaCount: 1}}
        vmstorage: {{replicaCount: 1}}
  zones:
    - name: zone-a
    - name: zone-b
    - name: zone-c
"#
    )
}
