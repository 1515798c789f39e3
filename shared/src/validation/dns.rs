//! Kubernetes name rules and the name-length limits that the VictoriaMetrics operator's derived
//! workload names impose on each child kind.

use crate::names::ChildKind;

/// Longest DNS-1123 label.
pub(crate) const DNS_LABEL_MAX: usize = 63;

/// Why `name` is not a DNS-1123 label (RFC 1123: lower-case alphanumerics and `-`, starting and
/// ending with an alphanumeric, 1 to 63 characters), or `None` when it is one.
#[must_use]
pub(crate) fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let bytes = name.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !valid_chars || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Some(
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending \
             with a letter or digit (for example \"zone-a\")"
                .to_owned(),
        );
    }
    if name.len() > DNS_LABEL_MAX {
        return Some(format!(
            "is {} characters long; a DNS-1123 label has at most {DNS_LABEL_MAX}",
            name.len()
        ));
    }
    None
}

/// The longest name a child of `kind` may have, and why.
///
/// The VictoriaMetrics operator derives workload names from a child's name, and those must fit
/// Kubernetes' limits. A StatefulSet name may have at most 52 characters, because its pods get a
/// `controller-revision-hash` label whose value is the name plus an 11-character hash, and label
/// values are limited to 63. A Service name is a DNS-1035 label of at most 63 characters.
/// - VMCluster: StatefulSet `vmstorage-<name>` (10 + name ≤ 52) → 42 (`vmselect-<name>` and
///   the `vminsert-<name>` Service are shorter).
/// - VMAgent: in `statefulMode` a StatefulSet `vmagent-<name>`, `vmagent-<name>-<shard>` when
///   sharded (8 + name + 2 ≤ 52 for up to 10 shards) → 42.
/// - VMSingle: Deployment and Service `vmsingle-<name>` (9 + name ≤ 63) → 54.
/// - VMAuth: Deployment and Service `vmauth-<name>` (7 + name ≤ 63) → 56.
#[must_use]
pub(crate) fn name_limit(kind: ChildKind) -> (usize, &'static str) {
    match kind {
        ChildKind::VMCluster => (
            42,
            "the VictoriaMetrics operator names the cluster's StatefulSet vmstorage-<name>, and a \
             StatefulSet name has at most 52 characters (its pods' controller-revision-hash label \
             adds 11 to it)",
        ),
        ChildKind::VMAgent => (
            42,
            "the VictoriaMetrics operator names a stateful agent's StatefulSet \
             vmagent-<name>-<shard>, and a StatefulSet name has at most 52 characters (its pods' \
             controller-revision-hash label adds 11 to it)",
        ),
        ChildKind::VMSingle => (
            54,
            "the VictoriaMetrics operator names its Service vmsingle-<name>, and a Service name \
             has at most 63 characters",
        ),
        ChildKind::VMAuth => (
            56,
            "the VictoriaMetrics operator names its Service vmauth-<name>, and a Service name has \
             at most 63 characters",
        ),
    }
}

/// Why `name` cannot be the name of a child of `kind`, or `None` when it can.
#[must_use]
pub(crate) fn child_name_problem(kind: ChildKind, name: &str) -> Option<String> {
    if let Some(problem) = dns_label_problem(name) {
        return Some(problem);
    }
    let (limit, why) = name_limit(kind);
    (name.len() > limit).then(|| {
        format!(
            "is {} characters long; a {} name may have at most {limit} characters, because {why}",
            name.len(),
            kind.kind()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label_problem("zone-a"), None);
        assert_eq!(dns_label_problem("a"), None);
        assert_eq!(dns_label_problem("0a9"), None);
        assert_eq!(dns_label_problem(&"a".repeat(63)), None);
        for bad in ["", "Zone", "-a", "a-", "a_b", "a.b", "zone a", "é"] {
            assert!(dns_label_problem(bad).is_some(), "{bad}");
        }
        assert!(dns_label_problem(&"a".repeat(64)).is_some_and(|m| m.contains("64 characters")));
    }

    #[test]
    fn limits_per_kind() {
        assert_eq!(
            child_name_problem(ChildKind::VMCluster, &"a".repeat(42)),
            None
        );
        let msg = child_name_problem(ChildKind::VMCluster, &"a".repeat(43)).expect("too long");
        assert!(
            msg.contains("at most 42") && msg.contains("vmstorage-<name>"),
            "{msg}"
        );
        assert_eq!(
            child_name_problem(ChildKind::VMAgent, &"a".repeat(42)),
            None
        );
        assert!(child_name_problem(ChildKind::VMAgent, &"a".repeat(43)).is_some());
        assert_eq!(
            child_name_problem(ChildKind::VMSingle, &"a".repeat(54)),
            None
        );
        assert!(child_name_problem(ChildKind::VMSingle, &"a".repeat(55)).is_some());
        assert_eq!(child_name_problem(ChildKind::VMAuth, &"a".repeat(56)), None);
        assert!(child_name_problem(ChildKind::VMAuth, &"a".repeat(57)).is_some());
    }
}
