//! The invariant checker itself: hand-built state sequences that break each invariant must be
//! reported, correct ones must not, and a state the checker cannot read is a violation.

use serde_json::{Value, json};
use shared::rollout::invariants::{Change, Invariant, InvariantChecker, Replay};

/// Builds a sequence of changes with increasing positions.
#[derive(Clone)]
struct Seq {
    changes: Vec<Change>,
}

impl Seq {
    fn new() -> Self {
        Self {
            changes: Vec::new(),
        }
    }

    fn push(&mut self, kind: &str, object: Value, deleted: bool) -> &mut Self {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let at = Some(self.changes.len() as u64 + 1);
        self.changes.push(Change {
            at,
            kind: kind.to_owned(),
            name,
            deleted,
            object,
        });
        self
    }

    fn cr(&mut self, object: Value) -> &mut Self {
        self.push("VMDistributed", object, false)
    }

    fn child(&mut self, kind: &str, object: Value) -> &mut Self {
        self.push(kind, object, false)
    }

    fn run(&self) -> Replay {
        InvariantChecker::run("demo", &self.changes)
    }
}

/// The CR with zones `(name, trafficMode)`, a rollout `(zone, phase)` and `operational` or not.
fn cr(zones: &[(&str, &str)], rollout: Option<(&str, &str)>, operational: bool) -> Value {
    let zones: Vec<Value> = zones
        .iter()
        .map(|(z, mode)| json!({"name": z, "trafficMode": mode}))
        .collect();
    let mut status =
        json!({"observedGeneration": 1, "updateStatus": "expanding", "conditions": []});
    if let Some((zone, phase)) = rollout {
        status["rollout"] = json!({"zone": zone, "phase": phase});
    }
    if operational {
        status["updateStatus"] = json!("operational");
        status["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "Operational",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    }
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1", "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid", "generation": 1},
        "spec": {"zones": zones},
        "status": status
    })
}

fn child(kind: &str, zone: &str, generation: i64, ready: bool) -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1", "kind": kind,
        "metadata": {"name": format!("demo-{zone}"), "namespace": "ns", "uid": format!("{kind}-{zone}"),
            "generation": generation,
            "labels": {"operator.victoriametrics.com/vmdistributed": "demo"}},
        "spec": {"v": generation},
        "status": {"updateStatus": if ready { "operational" } else { "expanding" },
            "observedGeneration": generation}
    })
}

fn vmauth(write: &[&str], read: &[&str]) -> Value {
    let refs = |kind: &str, zones: &[&str]| -> Value {
        if zones.is_empty() {
            return json!({"static": {"url": "http://127.0.0.1:9999"}});
        }
        let objects: Vec<Value> = zones
            .iter()
            .map(|z| json!({"name": format!("demo-{z}"), "namespace": "ns"}))
            .collect();
        json!({"crd": {"kind": kind, "name": "", "namespace": "", "objects": objects}})
    };
    let mut write_ref = refs("VMAgent", write);
    write_ref["name"] = json!("write");
    let mut read_ref = refs("VMCluster/vmselect", read);
    read_ref["name"] = json!("read");
    json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1", "kind": "VMAuth",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "auth-uid", "generation": 1,
            "labels": {"operator.victoriametrics.com/vmdistributed": "demo"}},
        "spec": {"defaultTargetRefs": [write_ref, read_ref]},
        "status": {"updateStatus": "operational", "observedGeneration": 1}
    })
}

/// Every zone created, ready and routed as its mode allows.
fn settled(zones: &[(&str, &str)]) -> Seq {
    let mut seq = Seq::new();
    seq.cr(cr(zones, None, false));
    for (zone, _) in zones {
        seq.child("VMCluster", child("VMCluster", zone, 1, true));
        seq.child("VMAgent", child("VMAgent", zone, 1, true));
    }
    let write: Vec<&str> = zones
        .iter()
        .filter(|(_, m)| *m == "read-write" || *m == "write-only")
        .map(|(z, _)| *z)
        .collect();
    let read: Vec<&str> = zones
        .iter()
        .filter(|(_, m)| *m == "read-write" || *m == "read-only")
        .map(|(z, _)| *z)
        .collect();
    seq.child("VMAuth", vmauth(&write, &read));
    seq
}

fn only(replay: &Replay, invariant: Invariant) {
    assert!(
        !replay.of(invariant).is_empty(),
        "{invariant:?} not reported: {:?}",
        replay.violations
    );
    assert!(
        replay.violations.iter().all(|v| v.invariant == invariant),
        "other violations than {invariant:?}: {:?}",
        replay.violations
    );
}

const THREE: [(&str, &str); 3] = [
    ("a", "read-write"),
    ("b", "read-write"),
    ("c", "read-write"),
];

#[test]
fn a_correct_rollout_breaks_nothing() {
    let mut seq = settled(&THREE);
    for (i, zone) in ["a", "b", "c"].into_iter().enumerate() {
        let others: Vec<&str> = ["a", "b", "c"].into_iter().filter(|z| *z != zone).collect();
        seq.cr(cr(&THREE, Some((zone, "Excluding")), false));
        seq.child("VMAuth", vmauth(&others, &others));
        seq.cr(cr(&THREE, Some((zone, "Applying")), false));
        seq.child("VMCluster", child("VMCluster", zone, 2, false));
        seq.child("VMCluster", child("VMCluster", zone, 2, true));
        seq.cr(cr(&THREE, Some((zone, "Restoring")), false));
        seq.child("VMAuth", vmauth(&["a", "b", "c"], &["a", "b", "c"]));
        seq.cr(cr(&THREE, None, i == 2));
    }
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
    assert_eq!(replay.exclusions, ["a", "b", "c"]);
    assert_eq!(replay.child_spec_writes.len(), 3);
    assert_eq!(replay.phases.len(), 9);
}

#[test]
fn a_single_serving_zone_updated_in_place_breaks_nothing() {
    // zone b is in maintenance: zone a stays routed while it is updated (unready in place).
    let zones = [("a", "read-write"), ("b", "maintenance")];
    let mut seq = settled(&zones);
    seq.cr(cr(&zones, Some(("a", "Excluding")), false));
    seq.cr(cr(&zones, Some(("a", "Applying")), false));
    seq.child("VMCluster", child("VMCluster", "a", 2, false));
    seq.child("VMCluster", child("VMCluster", "a", 2, true));
    seq.cr(cr(&zones, Some(("a", "Restoring")), false));
    seq.cr(cr(&zones, None, true));
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
}

#[test]
fn taking_out_the_only_serving_zone_is_reported() {
    let zones = [("a", "read-write"), ("b", "maintenance")];
    let mut seq = settled(&zones);
    seq.cr(cr(&zones, Some(("a", "Excluding")), false));
    seq.child("VMAuth", vmauth(&[], &[]));
    let replay = seq.run();
    only(&replay, Invariant::TargetLeftUnserved);
    let messages: Vec<&str> = replay
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("target write")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("target read")),
        "{messages:?}"
    );
}

#[test]
fn traffic_moved_in_one_edit_must_not_pass_through_an_empty_target() {
    // a takes the writes; one edit makes it read-only and b write-only.
    let before = [("a", "read-write"), ("b", "read-only")];
    let after = [("a", "read-only"), ("b", "write-only")];
    let mut seq = settled(&before);
    seq.cr(cr(&after, None, false));
    let mut moved = seq.clone();
    // Right: b joins write as a leaves it.
    moved.child("VMAuth", vmauth(&["b"], &["a"]));
    moved.cr(cr(&after, None, true));
    let replay = moved.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
    // Wrong: a leaves write before b, which could take it, joined.
    seq.child("VMAuth", vmauth(&[], &["a"]));
    only(&seq.run(), Invariant::TargetLeftUnserved);
}

#[test]
fn emptying_read_after_a_url_change_is_reported() {
    // The URL-change failure: a and b came back for writes only, then c left read.
    let mut seq = settled(&THREE);
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &["c"]));
    seq.child("VMAuth", vmauth(&["a", "b"], &[]));
    let replay = seq.run();
    assert!(
        !replay.of(Invariant::TargetLeftUnserved).is_empty(),
        "{:?}",
        replay.violations
    );
    assert!(!replay.of(Invariant::MoreThanOneZoneOut).is_empty());
}

#[test]
fn two_zones_out_at_once_is_reported() {
    let mut seq = settled(&THREE);
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &["c"]));
    let replay = seq.run();
    only(&replay, Invariant::MoreThanOneZoneOut);
    assert!(replay.violations[0].message.contains("2 zones"));
}

#[test]
fn a_zone_out_while_another_is_unready_is_reported() {
    let mut seq = settled(&THREE);
    seq.child("VMAgent", child("VMAgent", "b", 1, false));
    seq.child("VMAuth", vmauth(&["b", "c"], &["b", "c"]));
    only(&seq.run(), Invariant::MoreThanOneZoneOut);
}

#[test]
fn zones_routed_for_writes_before_their_backends_were_first_ready_are_not_out() {
    // A new CR: the agents became ready before the clusters (the docs let a zone join `write`
    // once its agent is ready), so every zone is routed but none has served yet.
    let mut seq = Seq::new();
    seq.cr(cr(&THREE, None, false));
    for zone in ["a", "b", "c"] {
        seq.child("VMCluster", child("VMCluster", zone, 1, false));
        seq.child("VMAgent", child("VMAgent", zone, 1, true));
    }
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &[]));
    seq.child("VMAgent", child("VMAgent", "a", 1, true));
    for zone in ["a", "b", "c"] {
        seq.child("VMCluster", child("VMCluster", zone, 1, true));
    }
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &["a", "b", "c"]));
    seq.cr(cr(&THREE, None, true));
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);

    // Once they served, two of them going unready is two zones out.
    seq.child("VMCluster", child("VMCluster", "a", 1, false));
    seq.child("VMCluster", child("VMCluster", "b", 1, false));
    only(&seq.run(), Invariant::MoreThanOneZoneOut);
}

#[test]
fn a_child_written_outside_its_applying_phase_is_reported() {
    let mut seq = settled(&THREE);
    seq.cr(cr(&THREE, Some(("a", "Excluding")), false));
    seq.child("VMCluster", child("VMCluster", "a", 2, true));
    only(&seq.run(), Invariant::WriteOutsideApplying);

    // Another zone's child during a's Applying.
    let mut seq = settled(&THREE);
    seq.cr(cr(&THREE, Some(("a", "Applying")), false));
    seq.child("VMAgent", child("VMAgent", "b", 2, true));
    only(&seq.run(), Invariant::WriteOutsideApplying);
}

#[test]
fn a_write_by_another_manager_is_not_the_controllers() {
    let mut seq = settled(&THREE);
    let mut cluster = child("VMCluster", "b", 2, true);
    cluster["metadata"]["managedFields"] = json!([
        {"manager": "vmdistributed-controller", "operation": "Apply", "time": "2026-01-01T00:00:00Z"},
        {"manager": "kubectl", "operation": "Update", "time": "2026-01-01T00:00:05Z"}
    ]);
    seq.child("VMCluster", cluster);
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
}

#[test]
fn operational_with_a_zone_missing_is_reported() {
    let mut seq = settled(&THREE);
    seq.cr(cr(&THREE, None, true));
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &["a", "b"]));
    only(&seq.run(), Invariant::IncompleteAtRest);
}

#[test]
fn a_vmauth_left_without_a_zone_after_deletion_is_reported() {
    let mut seq = settled(&THREE);
    seq.cr(cr(&THREE, Some(("b", "Applying")), false));
    seq.child("VMAuth", vmauth(&["a", "c"], &["a", "c"]));
    let mut deleting = cr(&THREE, Some(("b", "Applying")), false);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    seq.cr(deleting.clone());
    seq.push("VMDistributed", deleting.clone(), true);
    only(&seq.run(), Invariant::NotRestoredOnDeletion);

    // Restored before the CR went: nothing to report.
    let mut seq = settled(&THREE);
    seq.child("VMAuth", vmauth(&["a", "c"], &["a", "c"]));
    seq.cr(deleting.clone());
    seq.child("VMAuth", vmauth(&["a", "b", "c"], &["a", "b", "c"]));
    seq.push("VMDistributed", deleting, true);
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
}

#[test]
fn states_that_cannot_be_decoded_are_failures() {
    // No revision.
    let mut seq = settled(&THREE);
    let mut change = seq.changes.last().cloned().expect("a change");
    change.at = None;
    seq.changes.push(change);
    only(&seq.run(), Invariant::Undecodable);

    // A CR that does not parse.
    let mut seq = settled(&THREE);
    let mut broken = cr(&THREE, None, true);
    broken["spec"]["zones"] = json!("not a list");
    seq.cr(broken);
    only(&seq.run(), Invariant::Undecodable);

    // Target refs of an unknown shape.
    let mut seq = settled(&THREE);
    let mut auth = vmauth(&["a", "b", "c"], &["a", "b", "c"]);
    auth["spec"]["defaultTargetRefs"][1]["crd"]["kind"] = json!("VMSelect");
    seq.child("VMAuth", auth);
    only(&seq.run(), Invariant::Undecodable);
    let mut seq = settled(&THREE);
    let mut auth = vmauth(&["a", "b", "c"], &["a", "b", "c"]);
    auth["spec"]["defaultTargetRefs"][0] = json!({"name": "write", "paths": ["/"]});
    seq.child("VMAuth", auth);
    only(&seq.run(), Invariant::Undecodable);

    // A status the rollout cannot read.
    let mut seq = settled(&THREE);
    let mut cluster = child("VMCluster", "a", 1, true);
    cluster["status"]["observedGeneration"] = json!("1");
    seq.child("VMCluster", cluster);
    only(&seq.run(), Invariant::Undecodable);

    // An unknown kind, an object without a name.
    let mut seq = settled(&THREE);
    seq.child("VMAlert", child("VMAlert", "a", 1, true));
    only(&seq.run(), Invariant::Undecodable);
    let mut seq = settled(&THREE);
    let mut nameless = child("VMCluster", "a", 1, true);
    nameless["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("name");
    seq.child("VMCluster", nameless);
    only(&seq.run(), Invariant::Undecodable);
}

#[test]
fn other_crs_are_ignored() {
    let mut seq = settled(&THREE);
    let mut other = cr(&THREE, Some(("a", "Applying")), false);
    other["metadata"]["name"] = json!("other");
    seq.cr(other);
    let replay = seq.run();
    assert!(replay.violations.is_empty(), "{:?}", replay.violations);
}
