//! `VMDistributed` manifests shared by tests and benchmarks.

/// A 3-zone `VMDistributed` (`zone-a`, `zone-b`, `zone-c`) of one-replica children whose
/// clusters are created from `zoneCommon` with `cluster_version`, so a rollout is one
/// `clusterVersion` change away.
#[must_use]
pub fn three_zones(
    name: &str,
    cluster_version: &str,
    ready_timeout: &str,
    update_pause: &str,
) -> String {
    manifest(
        name,
        &["zone-a", "zone-b", "zone-c"],
        (ready_timeout, update_pause),
        "",
        cluster_version,
        "",
    )
}

/// `spec` lines for [`one_replica`]: a VMAuth of one replica.
pub const VMAUTH_ONE_REPLICA: &str = "  vmauth:\n    spec:\n      replicaCount: 1\n";

/// A `VMDistributed` of one-replica children: its zones share from `zoneCommon` a VMAgent and a
/// VMCluster at `v1.110.0-cluster`. A zone is `name` or `name:trafficMode`; `spec_lines` are
/// further lines of `spec` before `zoneCommon` (two spaces in, e.g. [`VMAUTH_ONE_REPLICA`]),
/// `cluster_lines` further lines of the VMCluster's spec after `clusterVersion` (eight spaces
/// in).
#[must_use]
pub fn one_replica(
    name: &str,
    zones: &[&str],
    ready_timeout: &str,
    update_pause: &str,
    spec_lines: &str,
    cluster_lines: &str,
) -> String {
    manifest(
        name,
        zones,
        (ready_timeout, update_pause),
        spec_lines,
        "v1.110.0-cluster",
        cluster_lines,
    )
}

/// The one template behind [`three_zones`] and [`one_replica`].
fn manifest(
    name: &str,
    zones: &[&str],
    (ready_timeout, update_pause): (&str, &str),
    spec_lines: &str,
    cluster_version: &str,
    cluster_lines: &str,
) -> String {
    let zones: String = zones
        .iter()
        .map(|z| match z.split_once(':') {
            Some((zone, mode)) => format!("    - name: {zone}\n      trafficMode: {mode}\n"),
            None => format!("    - name: {z}\n"),
        })
        .collect();
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: {name}
spec:
{spec_lines}  zoneCommon:
    readyTimeout: {ready_timeout}
    updatePause: {update_pause}
    vmagent:
      spec:
        replicaCount: 1
    vmcluster:
      spec:
        clusterVersion: {cluster_version}
{cluster_lines}        vmstorage:
          replicaCount: 1
        vmselect:
          replicaCount: 1
        vminsert:
          replicaCount: 1
  zones:
{zones}"#
    )
}
