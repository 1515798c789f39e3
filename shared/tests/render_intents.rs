//! Rendering of the children, one test per rendering rule (docs/rollout.md, docs/api.md).

use serde_json::{Value, json};
use shared::VMDistributed;
use shared::children::ChildObject;
use shared::model::{Membership, Observed};
use shared::names::ChildKind;
use shared::render::{
    self, EMPTY_TARGET_URL, remote_write_url, render_agent_spec, render_vmauth, spec_hash,
};
use shared::rollout::membership::LiveRefs;
use shared::rollout::render_intents;

fn cr(value: Value) -> VMDistributed {
    let mut object = json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "cr-uid"},
    });
    object["spec"] = value;
    serde_json::from_value(object).expect("valid CR")
}

fn seed() -> VMDistributed {
    cr(json!({
        "vmauth": {"spec": {"replicaCount": 1}},
        "zoneCommon": {
            "vmagent": {"spec": {"replicaCount": 1}},
            "vmcluster": {"spec": {"vminsert": {"replicaCount": 1}, "vmselect": {"replicaCount": 1},
                                    "vmstorage": {"replicaCount": 1}}}
        },
        "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
    }))
}

fn child(kind: &str, name: &str, metadata: Value, spec: Value) -> ChildObject {
    let mut meta =
        json!({"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1});
    if let (Value::Object(m), Value::Object(extra)) = (&mut meta, metadata) {
        m.extend(extra);
    }
    ChildObject::from_value(
        &json!({"kind": kind, "metadata": meta, "spec": spec,
                "status": {"updateStatus": "operational", "observedGeneration": 1}}),
        None,
    )
}

#[test]
fn labels_annotations_and_owner_references_on_created_children() {
    let intents = render_intents(&seed(), &Observed::default());
    let zone = &intents.zones[0];
    assert_eq!(zone.backend.name, "demo-zone-a");
    assert_eq!(zone.backend.kind, ChildKind::VMCluster);
    for intent in [&zone.backend, &zone.agent] {
        assert_eq!(
            intent.labels["app.kubernetes.io/managed-by"],
            "vmdistributed"
        );
        assert_eq!(
            intent.labels["operator.victoriametrics.com/vmdistributed"],
            "demo"
        );
        assert_eq!(intent.labels["operator.victoriametrics.com/zone"], "zone-a");
        assert_eq!(
            intent.annotations["operator.victoriametrics.com/created-by"],
            "cr-uid"
        );
        assert_eq!(
            intent.annotations["operator.victoriametrics.com/spec-hash"],
            spec_hash(&intent.spec)
        );
        let owner = &intent.owner_references[0];
        assert_eq!(owner.uid, "cr-uid");
        assert_eq!(owner.kind, "VMDistributed");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    let auth = intents.vmauth.expect("vmauth enabled by default");
    assert_eq!(auth.name, "demo");
    assert!(
        !auth
            .labels
            .contains_key("operator.victoriametrics.com/zone")
    );
    assert_eq!(
        auth.labels["operator.victoriametrics.com/vmdistributed"],
        "demo"
    );
    let object = zone.backend.to_object();
    assert_eq!(object["apiVersion"], "operator.victoriametrics.com/v1beta1");
    assert_eq!(object["kind"], "VMCluster");
    assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "cr-uid");
}

#[test]
fn retain_true_means_no_owner_reference() {
    let mut cr = seed();
    cr.spec.retain = Some(true);
    let intents = render_intents(&cr, &Observed::default());
    assert!(intents.zones[0].backend.owner_references.is_empty());
    assert_eq!(
        intents.zones[0].backend.annotations["operator.victoriametrics.com/created-by"],
        "cr-uid"
    );
}

#[test]
fn adopted_and_ref_children_get_no_created_by_or_owner() {
    let cr = cr(json!({
        "zones": [
            {"name": "a", "vmcluster": {"ref": {"name": "legacy"}}},
            {"name": "b", "vmcluster": {"name": "existing", "spec": {"vminsert": {}, "vmselect": {}}}}
        ]
    }));
    let observed = Observed {
        children: vec![
            child("VMCluster", "legacy", json!({}), json!({})),
            child("VMCluster", "existing", json!({}), json!({})),
        ],
        ..Observed::default()
    };
    let intents = render_intents(&cr, &observed);
    for zone in &intents.zones {
        assert!(
            !zone
                .backend
                .annotations
                .contains_key("operator.victoriametrics.com/created-by")
        );
        assert!(zone.backend.owner_references.is_empty());
    }
    // A missing ref is never going to be created: no created-by either.
    let intents = render_intents(&cr, &Observed::default());
    assert!(intents.zones[0].backend.owner_references.is_empty());
    // A child with a controller owner reference to this CR (upstream-created) counts as created.
    let upstream = child(
        "VMCluster",
        "existing",
        json!({"ownerReferences": [{"apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed", "name": "demo", "uid": "cr-uid", "controller": true}]}),
        json!({}),
    );
    let observed = Observed {
        children: vec![upstream],
        ..Observed::default()
    };
    let intents = render_intents(&cr, &observed);
    assert_eq!(
        intents.zones[1].backend.annotations["operator.victoriametrics.com/created-by"],
        "cr-uid"
    );
}

#[test]
fn license_only_where_the_child_has_none() {
    let cr = cr(json!({
        "license": {"key": "LK"},
        "zoneCommon": {"vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}}},
        "zones": [
            {"name": "a"},
            {"name": "b", "vmcluster": {"spec": {"license": {"keyRef": {"name": "s", "key": "k"}}}}}
        ]
    }));
    let intents = render_intents(&cr, &Observed::default());
    assert_eq!(
        intents.zones[0].backend.spec["license"],
        json!({"key": "LK"})
    );
    assert_eq!(intents.zones[0].agent.spec["license"], json!({"key": "LK"}));
    assert_eq!(
        intents.zones[1].backend.spec["license"],
        json!({"keyRef": {"name": "s", "key": "k"}})
    );
    assert_eq!(
        intents.vmauth.expect("vmauth").spec["license"],
        json!({"key": "LK"})
    );
    let no_license = render_intents(&seed(), &Observed::default());
    assert!(no_license.zones[0].backend.spec.get("license").is_none());
}

#[test]
fn remote_write_url_rules() {
    let cases = [
        (
            json!({}),
            "http://vminsert-c.ns.svc:8480/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"port": "9000"}}),
            "http://vminsert-c.ns.svc:9000/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"port": 9001}}),
            "http://vminsert-c.ns.svc:9001/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"extraArgs": {"tls": "true"}}}),
            "https://vminsert-c.ns.svc:8480/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"extraArgs": {"tls": "false"}}}),
            "http://vminsert-c.ns.svc:8480/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"extraArgs": {"http.pathPrefix": "/vm/"}}}),
            "http://vminsert-c.ns.svc:8480/vm/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"useLegacyNaming": true}),
            "http://c-vminsert.ns.svc:8480/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"port": "9000", "serviceSpec": {"useAsDefault": true, "spec": {"ports": [{"name": "metrics", "port": 1}, {"name": "http", "port": 8080}]}}}}),
            "http://vminsert-c.ns.svc:8080/insert/multitenant/prometheus/api/v1/write",
        ),
        (
            json!({"vminsert": {"port": "9000", "serviceSpec": {"useAsDefault": false, "spec": {"ports": [{"name": "http", "port": 8080}]}}}}),
            "http://vminsert-c.ns.svc:9000/insert/multitenant/prometheus/api/v1/write",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(
            remote_write_url(ChildKind::VMCluster, "c", "ns", &spec),
            want,
            "{spec}"
        );
    }
    assert_eq!(
        remote_write_url(ChildKind::VMSingle, "s", "ns", &json!({})),
        "http://vmsingle-s.ns.svc:8428/api/v1/write"
    );
    assert_eq!(
        remote_write_url(
            ChildKind::VMSingle,
            "s",
            "ns",
            &json!({"port": 9428, "extraArgs": {"tls": "true", "http.pathPrefix": "/p"}})
        ),
        "https://vmsingle-s.ns.svc:9428/p/api/v1/write"
    );
}

#[test]
fn agent_spec_has_fixed_fields_and_one_entry_per_zone() {
    let cr = cr(json!({
        "zoneCommon": {
            "vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}},
            "vmagent": {"spec": {"remoteWriteSettings": {"maxDiskUsagePerURL": "1GB"}}},
            "remoteWrite": {"sendTimeout": "%ZONE%-30s"}
        },
        "zones": [{"name": "a"}, {"name": "b", "remoteWrite": {"maxDiskUsage": "5GB"}}, {"name": "c"}]
    }));
    let spec = render_agent_spec(&cr, &cr.spec.zones[0], &Observed::default());
    assert_eq!(spec["ingestOnlyMode"], json!(true));
    assert_eq!(
        spec["remoteWriteSettings"],
        json!({"maxDiskUsagePerURL": "1GB", "useMultiTenantMode": true})
    );
    let list = spec["remoteWrite"].as_array().expect("list");
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0]["url"],
        "http://vminsert-demo-a.ns.svc:8480/insert/multitenant/prometheus/api/v1/write"
    );
    assert_eq!(list[0]["sendTimeout"], "a-30s");
    assert_eq!(list[1]["maxDiskUsage"], "5GB");
    assert_eq!(list[1]["sendTimeout"], "b-30s");
    assert_eq!(
        list[2]["url"],
        "http://vminsert-demo-c.ns.svc:8480/insert/multitenant/prometheus/api/v1/write"
    );
}

#[test]
fn remote_write_order_follows_the_live_agent_and_appends_new_targets() {
    let cr = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}}},
        "zones": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    }));
    let url = |z: &str| {
        format!("http://vminsert-demo-{z}.ns.svc:8480/insert/multitenant/prometheus/api/v1/write")
    };
    let live_agent = child(
        "VMAgent",
        "demo-a",
        json!({}),
        json!({"remoteWrite": [{"url": url("c")}, {"url": "http://gone"}, {"url": url("a")}]}),
    );
    let observed = Observed {
        children: vec![live_agent],
        ..Observed::default()
    };
    let spec = render_agent_spec(&cr, &cr.spec.zones[0], &observed);
    let urls: Vec<&str> = spec["remoteWrite"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["url"].as_str().expect("url"))
        .collect();
    assert_eq!(urls, [url("c"), url("a"), url("b")]);
}

#[test]
fn adopted_backend_url_comes_from_the_live_object() {
    let cr = cr(json!({"zones": [{"name": "a", "vmcluster": {"name": "adopted"}}]}));
    let live = child(
        "VMCluster",
        "adopted",
        json!({}),
        json!({"vminsert": {"port": "7777"}}),
    );
    let observed = Observed {
        children: vec![live],
        ..Observed::default()
    };
    assert_eq!(
        render::backend_url(&cr, &cr.spec.zones[0], &observed),
        "http://vminsert-adopted.ns.svc:7777/insert/multitenant/prometheus/api/v1/write"
    );
    // A child this CR created uses the merged spec.
    let created = child(
        "VMCluster",
        "adopted",
        json!({"annotations": {"operator.victoriametrics.com/created-by": "cr-uid"}}),
        json!({"vminsert": {"port": "7777"}}),
    );
    let observed = Observed {
        children: vec![created],
        ..Observed::default()
    };
    assert!(render::backend_url(&cr, &cr.spec.zones[0], &observed).contains(":8480/"));
}

#[test]
fn vmauth_target_refs_for_a_membership() {
    let cr = cr(json!({
        "vmauth": {"spec": {"replicaCount": 2, "waitForConfigReload": false}},
        "zones": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    }));
    let membership = Membership {
        write: ["c", "a"].map(String::from).into(),
        read: ["b"].map(String::from).into(),
    };
    let auth = render_vmauth(&cr, &Observed::default(), &membership).expect("enabled");
    assert_eq!(auth.spec["replicaCount"], 2);
    assert_eq!(auth.spec["waitForConfigReload"], json!(true));
    assert_eq!(
        auth.spec["defaultTargetRefs"],
        json!([
            {"name": "write", "crd": {"kind": "VMAgent", "name": "", "namespace": "", "objects": [
                {"name": "demo-a", "namespace": "ns"}, {"name": "demo-c", "namespace": "ns"}]},
             "paths": ["/insert/.+", "/api/v1/write"],
             "load_balancing_policy": "least_loaded", "retry_status_codes": [500, 502, 503]},
            {"name": "read", "crd": {"kind": "VMCluster/vmselect", "name": "", "namespace": "", "objects": [
                {"name": "demo-b", "namespace": "ns"}]},
             "paths": ["/select/.+", "/admin/tenants", "/flags", "/metrics"],
             "load_balancing_policy": "first_available", "retry_status_codes": [500, 502, 503]}
        ])
    );
    let empty = render_vmauth(&cr, &Observed::default(), &Membership::default()).expect("enabled");
    let empty_refs = empty.spec["defaultTargetRefs"].as_array().expect("list");
    // The VictoriaMetrics operator rejects a default target ref without a name, empty or not.
    assert_eq!(
        empty_refs.iter().map(|t| &t["name"]).collect::<Vec<_>>(),
        [&json!("write"), &json!("read")]
    );
    for target in empty_refs {
        assert_eq!(target["static"]["url"], EMPTY_TARGET_URL);
        assert!(target.get("crd").is_none());
    }
    let mut single = cr.clone();
    single.spec.backend_type = Some(shared::api::BackendType::VMSingle);
    let auth = render_vmauth(&single, &Observed::default(), &membership).expect("enabled");
    assert_eq!(auth.spec["defaultTargetRefs"][1]["crd"]["kind"], "VMSingle");
    assert_eq!(
        auth.spec["defaultTargetRefs"][1]["paths"],
        json!(render::routes::VMSINGLE_READ_PATHS)
    );
    let mut disabled = cr;
    disabled.spec.vmauth.as_mut().expect("vmauth").enabled = Some(false);
    assert!(render_vmauth(&disabled, &Observed::default(), &membership).is_none());
}

#[test]
fn live_target_refs_are_read_by_kind_with_or_without_names() {
    let cr = cr(json!({"zones": [{"name": "a"}, {"name": "b"}]}));
    let membership = Membership {
        write: ["a"].map(String::from).into(),
        read: ["a", "b"].map(String::from).into(),
    };
    let named = render_vmauth(&cr, &Observed::default(), &membership).expect("enabled");
    let expected = LiveRefs {
        write: ["demo-a"].map(String::from).into(),
        read: ["demo-a", "demo-b"].map(String::from).into(),
    };
    assert_eq!(LiveRefs::from_vmauth_spec(&named.spec), expected);
    // A VMAuth written before the refs had names, in the opposite order, reads the same.
    let unnamed = json!({"defaultTargetRefs": [
        {"crd": {"kind": "VMCluster/vmselect", "objects": [
            {"name": "demo-a", "namespace": "ns"}, {"name": "demo-b", "namespace": "ns"}]}},
        {"crd": {"kind": "VMAgent", "objects": [{"name": "demo-a", "namespace": "ns"}]}}
    ]});
    assert_eq!(LiveRefs::from_vmauth_spec(&unnamed), expected);
}

#[test]
fn vmsingle_backend_is_rendered_for_backend_type_vmsingle() {
    let cr = cr(json!({
        "backendType": "VMSingle",
        "zoneCommon": {"vmsingle": {"spec": {"retentionPeriod": "1"}}},
        "zones": [{"name": "a"}]
    }));
    let intents = render_intents(&cr, &Observed::default());
    assert_eq!(intents.zones[0].backend.kind, ChildKind::VMSingle);
    assert_eq!(
        intents.zones[0].agent.spec["remoteWrite"][0]["url"],
        "http://vmsingle-demo-a.ns.svc:8428/api/v1/write"
    );
}

#[test]
fn spec_hash_is_stable_and_key_order_independent() {
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).expect("json");
    let b: Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).expect("json");
    assert_eq!(spec_hash(&a), spec_hash(&b));
    assert_eq!(spec_hash(&a).len(), 64);
    assert_ne!(
        spec_hash(&a),
        spec_hash(&json!({"b": 2, "a": {"x": "s", "y": [1, 2]}}))
    );
    assert_ne!(
        spec_hash(&json!({"l": [1, 2]})),
        spec_hash(&json!({"l": [2, 1]}))
    );
    let first = render_intents(&seed(), &Observed::default());
    let second = render_intents(&seed(), &Observed::default());
    assert_eq!(first, second);
}

#[test]
fn zones_that_take_no_writes_run_no_vminsert() {
    let mut spec = serde_json::to_value(&seed().spec).expect("spec serializes");
    spec["zoneCommon"]["vmcluster"]["spec"]["vminsert"]["replicaCount"] = json!(3);
    spec["zones"] = json!([
        {"name": "zone-a", "trafficMode": "read-write"},
        {"name": "zone-b", "trafficMode": "read-only"},
        {"name": "zone-c", "trafficMode": "write-only"},
        {"name": "zone-d", "trafficMode": "maintenance"},
        {"name": "zone-e"}
    ]);
    let intents = render_intents(&cr(spec), &Observed::default());
    let vminsert_replicas: Vec<Value> = intents
        .zones
        .iter()
        .map(|zone| zone.backend.spec["vminsert"]["replicaCount"].clone())
        .collect();
    assert_eq!(
        vminsert_replicas,
        [json!(3), json!(0), json!(3), json!(0), json!(3)]
    );
    // Only the replica count changes; the rest of vminsert and the other components stay.
    let read_only = &intents.zones[1].backend.spec;
    assert_eq!(read_only["vmselect"]["replicaCount"], json!(1));
    assert_eq!(read_only["vmstorage"]["replicaCount"], json!(1));
    // The agents keep writing to it (vmagent buffers until the zone takes writes again).
    let backend = &intents.zones[1].backend;
    let url = remote_write_url(backend.kind, &backend.name, "ns", &backend.spec);
    for zone in &intents.zones {
        let targets = zone.agent.spec["remoteWrite"].as_array().expect("a list");
        assert!(
            targets.iter().any(|t| t["url"] == json!(url)),
            "{targets:?}"
        );
    }
}

#[test]
fn a_cluster_whose_intent_has_no_vminsert_is_not_scaled() {
    // An adopted cluster (empty spec) is left as its owner set it.
    let intents = render_intents(
        &cr(json!({"zones": [{"name": "zone-a", "trafficMode": "maintenance"}]})),
        &Observed::default(),
    );
    assert_eq!(intents.zones[0].backend.spec.get("vminsert"), None);
}

#[test]
fn a_vmsingle_backend_is_not_scaled() {
    let intents = render_intents(
        &cr(json!({
            "backendType": "VMSingle",
            "zoneCommon": {"vmsingle": {"spec": {"retentionPeriod": "1"}}},
            "zones": [{"name": "zone-a", "trafficMode": "read-only"}]
        })),
        &Observed::default(),
    );
    assert_eq!(
        intents.zones[0].backend.spec,
        json!({"retentionPeriod": "1"})
    );
}

/// A two-zone CR whose vminsert scales with an HPA; zone-b in `mode`.
fn with_vminsert_hpa(mode: &str) -> VMDistributed {
    let mut spec = serde_json::to_value(&seed().spec).expect("spec serializes");
    spec["zoneCommon"]["vmcluster"]["spec"]["vminsert"] =
        json!({"hpa": {"minReplicas": 2, "maxReplicas": 6}});
    spec["zones"] = json!([{"name": "zone-a"}, {"name": "zone-b", "trafficMode": mode}]);
    cr(spec)
}

#[test]
fn a_zone_that_takes_no_writes_drops_the_vminsert_hpa() {
    // The VictoriaMetrics operator ignores `replicaCount` while `hpa` is set, so the HPA would
    // keep vminsert running (and taking writes) in a zone whose mode takes none.
    for (mode, takes_writes) in [
        ("read-write", true),
        ("write-only", true),
        ("read-only", false),
        ("maintenance", false),
    ] {
        let intents = render_intents(&with_vminsert_hpa(mode), &Observed::default());
        let vminsert = &intents.zones[1].backend.spec["vminsert"];
        if takes_writes {
            assert_eq!(vminsert["hpa"]["maxReplicas"], 6, "{mode}: {vminsert}");
            assert_eq!(vminsert.get("replicaCount"), None, "{mode}: {vminsert}");
        } else {
            assert_eq!(vminsert.get("hpa"), None, "{mode}: {vminsert}");
            assert_eq!(vminsert["replicaCount"], 0, "{mode}: {vminsert}");
        }
        // The other zone keeps its HPA whatever zone-b does.
        assert_eq!(
            intents.zones[0].backend.spec["vminsert"]["hpa"]["minReplicas"],
            2
        );
    }
}

#[test]
fn the_vminsert_hpa_returns_once_vminsert_runs_again() {
    let cr = with_vminsert_hpa("read-write");
    let live = |vminsert: Value, observed_generation: i64| Observed {
        children: vec![ChildObject::from_value(
            &json!({"kind": "VMCluster",
                    "metadata": {"name": "demo-zone-b", "namespace": "ns", "uid": "u",
                                 "generation": 2,
                                 "annotations": {"operator.victoriametrics.com/created-by": "cr-uid"}},
                    "spec": {"vminsert": vminsert, "vmselect": {}, "vmstorage": {}},
                    "status": {"updateStatus": "operational",
                               "observedGeneration": observed_generation}}),
            None,
        )],
        ..Observed::default()
    };
    let vminsert_of = |observed: &Observed| {
        render_intents(&cr, observed).zones[1].backend.spec["vminsert"].clone()
    };
    // Back from read-only or maintenance: vminsert runs 0 replicas. An HPA does not scale a
    // workload at 0 replicas, and with `hpa` set the operator keeps the Deployment's count, so
    // vminsert is first scaled to the HPA's minimum without it...
    let warm_up = json!({"replicaCount": 2});
    assert_eq!(vminsert_of(&live(json!({"replicaCount": 0}), 2)), warm_up);
    // ... until the operator reports that count rolled out...
    assert_eq!(vminsert_of(&live(json!({"replicaCount": 2}), 1)), warm_up);
    // ... and then the HPA takes over from the running replicas.
    let with_hpa = json!({"hpa": {"minReplicas": 2, "maxReplicas": 6}});
    assert_eq!(vminsert_of(&live(json!({"replicaCount": 2}), 2)), with_hpa);
    // A cluster that already runs its HPA, or does not exist yet, gets it as written.
    assert_eq!(vminsert_of(&live(with_hpa.clone(), 2)), with_hpa);
    assert_eq!(vminsert_of(&Observed::default()), with_hpa);
}

/// The live children of `zones`, ready and each carrying the intent `render_intents` gives it
/// (an outdated zone carries an older spec instead), and a live VMAuth routing every zone.
fn live_world(cr: &VMDistributed, outdated: &[&str]) -> Observed {
    let intents = render_intents(cr, &Observed::default());
    let mut children = Vec::new();
    for zone in &intents.zones {
        for intent in [&zone.backend, &zone.agent] {
            let mut object = intent.to_object();
            if outdated.contains(&zone.zone.as_str()) {
                object["metadata"]["annotations"]["operator.victoriametrics.com/spec-hash"] =
                    json!("an-older-spec");
                object["spec"]["clusterVersion"] = json!("v1.0.0-cluster");
            }
            object["metadata"]["uid"] = json!(format!("uid-{}", intent.name));
            object["metadata"]["generation"] = json!(1);
            object["status"] = json!({"updateStatus": "operational", "observedGeneration": 1});
            children.push(ChildObject::from_value(&object, None));
        }
    }
    let mut auth = intents.vmauth.expect("enabled").to_object();
    auth["metadata"]["generation"] = json!(1);
    auth["status"] = json!({"updateStatus": "operational", "observedGeneration": 1});
    children.push(ChildObject::from_value(&auth, None));
    Observed {
        children,
        ..Observed::default()
    }
}

/// Object names of the rendered VMAuth's `write` and `read` targets, in order.
fn target_order(cr: &VMDistributed, observed: &Observed) -> (Vec<String>, Vec<String>) {
    let auth = render_intents(cr, observed).vmauth.expect("enabled");
    let names = |i: usize| -> Vec<String> {
        auth.spec["defaultTargetRefs"][i]["crd"]["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| o["name"].as_str().expect("name").to_owned())
            .collect()
    };
    (names(0), names(1))
}

#[test]
fn zones_updated_in_the_rollout_are_read_last_until_it_completes() {
    let cr = cr(json!({
        "zoneCommon": {"vmcluster": {"spec": {"vminsert": {}, "vmselect": {}}}},
        "zones": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    }));
    let spec_order = ["demo-a", "demo-b", "demo-c"].map(String::from).to_vec();
    // At rest, and when every zone awaits the change: spec order.
    for outdated in [&[][..], &["a", "b", "c"]] {
        let (write, read) = target_order(&cr, &live_world(&cr, outdated));
        assert_eq!(read, spec_order, "outdated {outdated:?}");
        assert_eq!(write, spec_order, "outdated {outdated:?}");
    }
    // Zone a is updated, b and c are not: the first zone available for reads is one that still
    // runs what every zone ran before the change.
    let (write, read) = target_order(&cr, &live_world(&cr, &["b", "c"]));
    assert_eq!(read, ["demo-b", "demo-c", "demo-a"]);
    // Writes go to every agent anyway (least_loaded): their order is not touched.
    assert_eq!(write, spec_order);
    let (_, read) = target_order(&cr, &live_world(&cr, &["c"]));
    assert_eq!(read, ["demo-c", "demo-a", "demo-b"]);
}
