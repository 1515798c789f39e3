//! Ownership rules (docs/rollout.md "Ownership") that the pure decision enforces: a `ref` is never
//! deleted or given an owner reference even when this CR created it, metadata patches test what
//! they remove, deletes are guarded by what was observed, and the UPDATE protections hold in the
//! controller against the stored state.

use crate::world::{World, cr_from, settled_world};
use serde_json::{Value, json};
use shared::children::{ANNOTATION_CREATED_BY, ChildObject, LABEL_CLAIM};
use shared::model::{Action, MetadataPatchReason, Observed};
use shared::names::ChildKind;
use shared::rollout::decide;
use shared::rollout::patch;
use shared::validation::{ALLOW_RENAME_ANNOTATION, validate, validate_stored};

fn created_by(object: &Value) -> Option<&Value> {
    object["metadata"]["annotations"].get(ANNOTATION_CREATED_BY)
}

fn owner_references(object: &Value) -> usize {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map_or(0, Vec::len)
}

fn delete_cr(world: &mut World) {
    world.mark_deleted();
    for _ in 0..20 {
        world.reconcile(None);
        world.check_invariants();
        world.operator_tick();
    }
    assert!(world.finalizer_removed(), "finalizer removed");
}

#[test]
fn a_created_zone_and_vmauth_switched_to_ref_lose_their_marks_and_survive_deletion() {
    let mut world = settled_world(2);
    for (kind, name) in [
        (ChildKind::VMCluster, "demo-z0"),
        (ChildKind::VMAuth, "demo"),
    ] {
        let child = &world.child(kind, name).expect("created").object;
        assert_eq!(created_by(child), Some(&json!("cr-uid")));
        assert_eq!(owner_references(child), 1);
    }
    let from = world.events.len();
    world.edit(|cr| {
        cr.spec.zones[0].vmcluster =
            Some(serde_json::from_value(json!({"ref": {"name": "demo-z0"}})).expect("ref"));
        cr.spec.vmauth =
            Some(serde_json::from_value(json!({"ref": {"name": "demo"}})).expect("ref"));
    });
    assert!(world.run_until_settled(400), "{:?}", world.status());
    assert!(
        world.started_order(from).is_empty(),
        "no rollout for a change of ownership only"
    );
    for (kind, name) in [
        (ChildKind::VMCluster, "demo-z0"),
        (ChildKind::VMAuth, "demo"),
    ] {
        let child = &world.child(kind, name).expect("kept").object;
        assert_eq!(created_by(child), None, "{kind} {name}");
        assert_eq!(owner_references(child), 0, "{kind} {name}");
        // Still claimed and written: a ref is managed, just never created or deleted.
        assert_eq!(child["metadata"]["labels"][LABEL_CLAIM], "demo");
    }
    // The agent of that zone is still a created child.
    let agent = &world
        .child(ChildKind::VMAgent, "demo-z0")
        .expect("agent")
        .object;
    assert_eq!(created_by(agent), Some(&json!("cr-uid")));
    assert_eq!(owner_references(agent), 1);

    delete_cr(&mut world);
    for (kind, name) in [
        (ChildKind::VMCluster, "demo-z0"),
        (ChildKind::VMAuth, "demo"),
    ] {
        let child = &world.child(kind, name).expect("a ref survives").object;
        assert!(child["metadata"]["labels"].get(LABEL_CLAIM).is_none());
    }
    assert!(world.child(ChildKind::VMAgent, "demo-z0").is_none());
    assert!(world.child(ChildKind::VMCluster, "demo-z1").is_none());
}

/// A CR whose zone `z0` refers to `demo-z0` and whose VMAuth is a `ref`, with that cluster and
/// VMAuth still carrying the created-by and owner reference from before they became refs.
fn refs_still_marked() -> (shared::VMDistributed, Observed) {
    let mut cr = cr_from(json!({
        "vmauth": {"ref": {"name": "demo"}},
        "zoneCommon": {"vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}}},
        "zones": [{"name": "z0", "vmcluster": {"ref": {"name": "demo-z0"}}}, {"name": "z1"}]
    }));
    cr.metadata.finalizers = Some(vec![shared::model::FINALIZER.to_owned()]);
    let marked = |kind: &str, name: &str, zone: Option<&str>| {
        let mut labels = json!({LABEL_CLAIM: "demo"});
        if let Some(zone) = zone {
            labels["operator.victoriametrics.com/zone"] = json!(zone);
        }
        ChildObject::from_value(
            &json!({"kind": kind, "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{kind}-{name}"),
                "resourceVersion": "7", "labels": labels,
                "annotations": {ANNOTATION_CREATED_BY: "cr-uid"},
                "ownerReferences": [{"apiVersion": "operator.victoriametrics.com/v1alpha1",
                    "kind": "VMDistributed", "name": "demo", "uid": "cr-uid",
                    "controller": true, "blockOwnerDeletion": true}]},
                "spec": {}, "status": {"updateStatus": "operational", "observedGeneration": 1}}),
            None,
        )
    };
    let observed = Observed {
        children: vec![
            marked("VMCluster", "demo-z0", Some("z0")),
            marked("VMCluster", "demo-z1", Some("z1")),
            marked("VMAgent", "demo-z0", Some("z0")),
            marked("VMAuth", "demo", None),
        ],
        ..Observed::default()
    };
    (cr, observed)
}

#[test]
fn a_ref_still_marked_as_created_is_released_not_deleted_with_its_cr() {
    let (mut cr, observed) = refs_still_marked();
    cr.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::UNIX_EPOCH,
    ));
    let decision = decide(&cr, &observed, jiff::Timestamp::UNIX_EPOCH);
    let deleted: Vec<(ChildKind, &str)> = decision
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .filter_map(Action::target)
        .collect();
    assert_eq!(
        deleted,
        [
            (ChildKind::VMCluster, "demo-z1"),
            (ChildKind::VMAgent, "demo-z0")
        ],
        "{:?}",
        decision.actions
    );
    // Guarded by the observed version too: a changed child is decided again.
    assert!(decision.actions.iter().any(|a| matches!(a,
        Action::Delete { resource_version: Some(rv), .. } if rv == "7")));
    assert!(
        decision.actions.iter().any(|a| matches!(a,
            Action::PatchMetadata { name, reason: MetadataPatchReason::Release, .. } if name == "demo-z0")),
        "the ref cluster is released: {:?}",
        decision.actions
    );
    // The ref VMAuth survives: it first routes to every surviving zone, then is released.
    assert!(
        decision.actions.iter().any(|a| matches!(a,
            Action::Apply { intent } if intent.kind == ChildKind::VMAuth && intent.name == "demo")),
        "{:?}",
        decision.actions
    );
}

#[test]
fn a_ref_loses_created_by_and_owner_reference_and_its_intent_carries_neither() {
    let (cr, observed) = refs_still_marked();
    let intents =
        shared::rollout::render_intents(&shared::defaults::apply_defaults(&cr), &observed);
    for intent in [
        &intents.zones[0].backend,
        intents.vmauth.as_ref().expect("vmauth"),
    ] {
        assert!(
            !intent.annotations.contains_key(ANNOTATION_CREATED_BY),
            "{}",
            intent.name
        );
        assert!(intent.owner_references.is_empty(), "{}", intent.name);
    }
    // The agent of the ref zone is not a ref: still created here.
    assert!(
        intents.zones[0]
            .agent
            .annotations
            .contains_key(ANNOTATION_CREATED_BY)
    );

    let cluster = observed
        .find(ChildKind::VMCluster, "demo-z0")
        .expect("cluster");
    let forget = serde_json::to_value(patch::forget_creation(cluster, "cr-uid").expect("patch"))
        .expect("json");
    assert_eq!(
        forget,
        json!([
            {"op": "test", "path": "/metadata/uid", "value": "uid-VMCluster-demo-z0"},
            {"op": "test", "path": "/metadata/annotations/operator.victoriametrics.com~1created-by", "value": "cr-uid"},
            {"op": "remove", "path": "/metadata/annotations/operator.victoriametrics.com~1created-by"},
            {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": "cr-uid"},
            {"op": "remove", "path": "/metadata/ownerReferences/0"},
        ])
    );
    // Nothing to forget on an unmarked child.
    let mut plain = cluster.clone();
    plain.annotations.clear();
    plain.owner_references.clear();
    assert!(patch::forget_creation(&plain, "cr-uid").is_none());
}

#[test]
fn releasing_tests_the_claim_it_removes() {
    let (_, observed) = refs_still_marked();
    let cluster = observed
        .find(ChildKind::VMCluster, "demo-z1")
        .expect("cluster");
    let release =
        serde_json::to_value(patch::release(cluster, "cr-uid").expect("patch")).expect("json");
    let ops = release.as_array().expect("ops");
    let claim = "/metadata/labels/operator.victoriametrics.com~1vmdistributed";
    let test = ops
        .iter()
        .position(|op| op["op"] == "test" && op["path"] == claim)
        .expect("a test of the claim");
    let remove = ops
        .iter()
        .position(|op| op["op"] == "remove" && op["path"] == claim)
        .expect("the claim removed");
    assert!(test < remove);
    assert_eq!(ops[test]["value"], "demo");
    // The patch no longer applies once another CR claims the child.
    let mut object = json!({"metadata": {"uid": "uid-VMCluster-demo-z1",
        "labels": {LABEL_CLAIM: "other", "operator.victoriametrics.com/zone": "z1"},
        "annotations": {ANNOTATION_CREATED_BY: "cr-uid"},
        "ownerReferences": [{"uid": "cr-uid"}]}});
    let patch: json_patch::Patch = serde_json::from_value(release).expect("patch");
    assert!(json_patch::patch(&mut object, &patch).is_err());
}

/// The CR of the rename cases: two zones, their children as the controller created them, and
/// the names recorded in `status.zones[]`.
fn stored(spec_zones: Value, annotations: Value) -> (shared::VMDistributed, Vec<ChildObject>) {
    let mut cr = cr_from(json!({
        "zoneRemovalPolicy": "Delete",
        "zoneCommon": {"vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}}},
        "zones": spec_zones
    }));
    cr.metadata.annotations = serde_json::from_value(annotations).expect("annotations");
    cr.status = Some(
        serde_json::from_value(json!({"zones": [
            {"name": "z0", "vmcluster": "demo-z0", "vmagent": "demo-z0"},
            {"name": "z1", "vmcluster": "demo-z1", "vmagent": "demo-z1"}
        ]}))
        .expect("status"),
    );
    let child = |kind: &str, name: &str, zone: &str| {
        ChildObject::from_value(
            &json!({"kind": kind, "metadata": {"name": name, "uid": name,
                "labels": {LABEL_CLAIM: "demo", "operator.victoriametrics.com/zone": zone}}}),
            None,
        )
    };
    let children = vec![
        child("VMCluster", "demo-z0", "z0"),
        child("VMAgent", "demo-z0", "z0"),
        child("VMCluster", "demo-z1", "z1"),
        child("VMAgent", "demo-z1", "z1"),
    ];
    (cr, children)
}

#[test]
fn the_controller_refuses_a_rename_the_webhook_would_refuse_with_the_same_message() {
    let renamed = json!([{"name": "z0", "vmcluster": {"name": "fresh"}}, {"name": "z1"}]);
    let (cr, children) = stored(renamed.clone(), json!(null));
    let report = validate_stored(&cr, &children);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].path, "spec.zones[0].vmcluster.name");
    // The webhook's judgement of the same change, with the old object.
    let (old, _) = stored(json!([{"name": "z0"}, {"name": "z1"}]), json!(null));
    let webhook = validate(&cr, Some(&old));
    assert_eq!(webhook.errors, report.errors);

    // The documented annotation lets it through.
    let (allowed, children) = stored(renamed, json!({ALLOW_RENAME_ANNOTATION: "true"}));
    assert!(validate_stored(&allowed, &children).is_valid());

    // The decision refuses it as InvalidSpec and writes nothing.
    let mut cr = cr;
    cr.metadata.finalizers = Some(vec![shared::model::FINALIZER.to_owned()]);
    let observed = Observed {
        children,
        ..Observed::default()
    };
    let decision = decide(&cr, &observed, jiff::Timestamp::UNIX_EPOCH);
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    let ready = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("\"demo-z0\""), "{}", ready.message);
}

#[test]
fn a_rename_is_found_by_the_zone_label_and_by_the_recorded_name() {
    // A template rename moves both kinds of every zone.
    let (mut cr, children) = stored(json!([{"name": "z0"}, {"name": "z1"}]), json!(null));
    cr.spec.zone_common.as_mut().expect("zoneCommon").vmagent =
        Some(serde_json::from_value(json!({"name": "agent-%ZONE%"})).expect("common"));
    let report = validate_stored(&cr, &children);
    let paths: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.zoneCommon.vmagent.name",
            "spec.zoneCommon.vmagent.name"
        ]
    );

    // Without the zone label, the name recorded in the status still finds the old child.
    let (cr, mut children) = stored(
        json!([{"name": "z0", "vmcluster": {"name": "fresh"}}, {"name": "z1"}]),
        json!(null),
    );
    for child in &mut children {
        child.labels.remove("operator.victoriametrics.com/zone");
    }
    assert_eq!(validate_stored(&cr, &children).errors.len(), 1);

    // A recorded name with no claimed child behind it orphans nothing.
    let (cr, mut children) = stored(
        json!([{"name": "z0", "vmcluster": {"name": "fresh"}}, {"name": "z1"}]),
        json!(null),
    );
    children.retain(|c| !(c.kind == Some(ChildKind::VMCluster) && c.name == "demo-z0"));
    assert!(validate_stored(&cr, &children).is_valid());
    // Neither does a child claimed by another CR, or one already being deleted.
    let (cr, mut children) = stored(
        json!([{"name": "z0", "vmcluster": {"name": "fresh"}}, {"name": "z1"}]),
        json!(null),
    );
    children[0]
        .labels
        .insert(LABEL_CLAIM.to_owned(), "other".to_owned());
    assert!(validate_stored(&cr, &children).is_valid());
    children[0]
        .labels
        .insert(LABEL_CLAIM.to_owned(), "demo".to_owned());
    children[0].deletion_timestamp = Some("2026-01-01T00:00:00Z".to_owned());
    assert!(validate_stored(&cr, &children).is_valid());
    // An unchanged spec is valid.
    let (cr, children) = stored(json!([{"name": "z0"}, {"name": "z1"}]), json!(null));
    assert!(validate_stored(&cr, &children).is_valid());
}

#[test]
fn the_controller_refuses_a_backend_type_change() {
    let (mut cr, children) = stored(json!([{"name": "z0"}, {"name": "z1"}]), json!(null));
    cr.spec.backend_type = Some(shared::api::BackendType::VMSingle);
    cr.spec.zone_common = None;
    let report = validate_stored(&cr, &children);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].path, "spec.backendType");
    let message = &report.errors[0].message;
    assert!(
        message.contains("cannot change from VMCluster to VMSingle")
            && message.contains("VMCluster demo-z0, VMCluster demo-z1"),
        "{message}"
    );
    // Allowing renames does not allow it.
    cr.metadata.annotations =
        Some([(ALLOW_RENAME_ANNOTATION.to_owned(), "true".to_owned())].into());
    assert!(!validate_stored(&cr, &children).is_valid());
}
