//! The admission and health routers driven in process with real AdmissionReview JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{object, review, seed_spec};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use vmdistributed_webhook::admission::MAX_BODY_BYTES;
use vmdistributed_webhook::metrics::Metrics;
use vmdistributed_webhook::routes::{AppState, admission_router, health_router};

struct App {
    admission: Router,
    health: Router,
}

fn app() -> App {
    let state = Arc::new(AppState::new(Arc::new(Metrics::new())));
    App {
        admission: admission_router(Arc::clone(&state)),
        health: health_router(state),
    }
}

async fn post(router: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, Bytes) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body)
}

/// POST a review and return the `response` object of the answer (HTTP 200 asserted).
async fn answer(router: &Router, path: &str, review: &Value) -> Value {
    let (status, body) = post(router, path, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "7f0b2c1e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
    );
    answer["response"].clone()
}

/// The JSON Patch of a response: kube-core encodes the `[]byte` field as a JSON array of bytes,
/// which the API server's decoder accepts like base64.
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes: Vec<u8> = match &response["patch"] {
        Value::Null => return None,
        Value::Array(items) => items
            .iter()
            .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
            .collect(),
        other => panic!("unexpected patch encoding {other}"),
    };
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn patched(object: &Value, response: &Value) -> Value {
    let mut out = object.clone();
    if let Some(patch) = patch_of(response) {
        assert_eq!(response["patchType"], "JSONPatch");
        json_patch::patch(&mut out, &patch).unwrap();
    } else {
        assert!(
            response.get("patchType").is_none(),
            "patchType without a patch: {response}"
        );
    }
    out
}

fn defaulted_seed() -> Value {
    let mut spec = seed_spec();
    spec["backendType"] = json!("VMCluster");
    spec["retain"] = json!(false);
    spec["paused"] = json!(false);
    spec["zoneRemovalPolicy"] = json!("Retain");
    spec["vmauth"]["enabled"] = json!(true);
    spec["zoneCommon"]["readyTimeout"] = json!("5m");
    spec["zoneCommon"]["updatePause"] = json!("1m");
    spec["zones"][0]["trafficMode"] = json!("read-write");
    spec["zones"][1]["trafficMode"] = json!("read-write");
    object("demo", spec)
}

#[tokio::test]
async fn mutate_returns_a_patch_that_yields_the_defaulted_object() {
    let _process = crate::common::share_process().await;
    let app = app();
    let obj = object("demo", seed_spec());
    let response = answer(
        &app.admission,
        "/mutate",
        &review("CREATE", Some(obj.clone()), None),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(patched(&obj, &response), defaulted_seed());
    let ops = patch_of(&response).unwrap();
    assert!(
        ops.0
            .iter()
            .all(|op| matches!(op, json_patch::PatchOperation::Add(_))),
        "defaulting only adds: {ops:?}"
    );
}

#[tokio::test]
async fn mutate_of_a_fully_defaulted_object_has_no_patch_and_no_patch_type() {
    let _process = crate::common::share_process().await;
    let app = app();
    let obj = defaulted_seed();
    let response = answer(
        &app.admission,
        "/mutate",
        &review("CREATE", Some(obj), None),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
}

#[tokio::test]
async fn mutate_never_rewrites_user_values() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut spec = seed_spec();
    spec["zoneCommon"]["readyTimeout"] = json!("90s");
    spec["zones"][1]["trafficMode"] = json!("read-only");
    spec["vmauth"]["enabled"] = json!(false);
    let obj = object("demo", spec);
    let response = answer(
        &app.admission,
        "/mutate",
        &review("CREATE", Some(obj.clone()), None),
    )
    .await;
    let out = patched(&obj, &response);
    assert_eq!(out["spec"]["zoneCommon"]["readyTimeout"], "90s");
    assert_eq!(out["spec"]["zones"][1]["trafficMode"], "read-only");
    assert_eq!(out["spec"]["zones"][0]["trafficMode"], "read-write");
    assert_eq!(out["spec"]["vmauth"]["enabled"], false);
    assert_eq!(out["spec"]["zoneCommon"]["updatePause"], "1m");
}

#[tokio::test]
async fn mutate_denies_an_object_that_does_not_decode_with_the_field_path() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut spec = seed_spec();
    spec["zones"][1]["trafficMode"] = json!("sideways");
    let response = answer(
        &app.admission,
        "/mutate",
        &review("CREATE", Some(object("demo", spec)), None),
    )
    .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.zones[1].trafficMode"), "{message}");
}

#[tokio::test]
async fn validate_allows_the_seed_and_the_benchmark_payload() {
    let _process = crate::common::share_process().await;
    let app = app();
    let response = answer(
        &app.admission,
        "/validate",
        &review("CREATE", Some(defaulted_seed()), None),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    let bench: Value =
        serde_json::from_str(include_str!("../../bench/review-3zones.json")).unwrap();
    let (status, body) = post(
        &app.admission,
        "/validate",
        serde_json::to_vec(&bench).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[tokio::test]
async fn validate_denies_the_duplicate_zone_payload_with_a_field_path() {
    let _process = crate::common::share_process().await;
    let app = app();
    let bench: Value =
        serde_json::from_str(include_str!("../../bench/review-3zones-dupzone.json")).unwrap();
    let (status, body) = post(
        &app.admission,
        "/validate",
        serde_json::to_vec(&bench).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.zones[2].name"), "{message}");
}

#[tokio::test]
async fn validate_returns_warnings_when_allowed() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut obj = defaulted_seed();
    obj["spec"]["zones"] = json!([{"name": "zone-a", "trafficMode": "read-write"}]);
    let response = answer(
        &app.admission,
        "/validate",
        &review("CREATE", Some(obj), None),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty());
}

#[tokio::test]
async fn dry_run_requests_are_answered_identically() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut bad = defaulted_seed();
    bad["spec"]["zones"][1]["name"] = json!("zone-a");
    for (path, obj) in [("/mutate", object("demo", seed_spec())), ("/validate", bad)] {
        let plain = review("CREATE", Some(obj.clone()), None);
        let mut dry = plain.clone();
        dry["request"]["dryRun"] = json!(true);
        assert_eq!(
            answer(&app.admission, path, &plain).await,
            answer(&app.admission, path, &dry).await
        );
    }
}

#[tokio::test]
async fn updates_with_an_unchanged_spec_are_allowed_without_mutation_or_validation() {
    let _process = crate::common::share_process().await;
    let app = app();
    // An invalid stored object whose metadata changes (a finalizer removed): never blocked.
    let mut old = object(
        "demo",
        json!({"zones": [{"name": "Bad_Name"}, {"name": "Bad_Name"}]}),
    );
    old["metadata"]["finalizers"] = json!(["apps.victoriametrics.com/finalizer"]);
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    for path in ["/mutate", "/validate"] {
        let response = answer(
            &app.admission,
            path,
            &review("UPDATE", Some(new.clone()), Some(old.clone())),
        )
        .await;
        assert_eq!(response["allowed"], true, "{path}: {response}");
        assert!(response.get("patch").is_none());
        assert!(response.get("warnings").is_none());
    }
}

#[tokio::test]
async fn objects_being_deleted_are_allowed_without_mutation_or_validation() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut obj = object("demo", json!({"zones": [{"name": "Bad_Name"}]}));
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut old = obj.clone();
    old["spec"]["zones"] = json!([{"name": "other"}]);
    for path in ["/mutate", "/validate"] {
        let response = answer(
            &app.admission,
            path,
            &review("UPDATE", Some(obj.clone()), Some(old.clone())),
        )
        .await;
        assert_eq!(response["allowed"], true, "{path}: {response}");
        assert!(response.get("patch").is_none());
    }
}

#[tokio::test]
async fn delete_and_connect_operations_are_allowed() {
    let _process = crate::common::share_process().await;
    let app = app();
    let old = object("demo", json!({"zones": []}));
    for path in ["/mutate", "/validate"] {
        let response = answer(
            &app.admission,
            path,
            &review("DELETE", None, Some(old.clone())),
        )
        .await;
        assert_eq!(response["allowed"], true);
    }
}

#[tokio::test]
async fn changed_updates_are_validated_against_the_new_object() {
    let _process = crate::common::share_process().await;
    let app = app();
    let old = defaulted_seed();
    let mut new = old.clone();
    new["spec"]["zones"][1]["name"] = json!("zone-a");
    let response = answer(
        &app.admission,
        "/validate",
        &review("UPDATE", Some(new), Some(old)),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
}

async fn bad_request(router: &Router, path: &str, body: impl Into<Body>) -> String {
    let (status, body) = post(router, path, body).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let reason = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        reason.trim_end().lines().count(),
        1,
        "one-line reason: {reason:?}"
    );
    reason
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_one_line_reason() {
    let _process = crate::common::share_process().await;
    let app = app();
    for path in ["/mutate", "/validate"] {
        for body in [
            "".to_owned(),
            "{".to_owned(),
            "[1,2,3]".to_owned(),
            "{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}".to_owned(),
            "{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\", \"request\": {\"uid\": 5}}"
                .to_owned(),
        ] {
            let reason = bad_request(&app.admission, path, body.clone()).await;
            assert!(!reason.trim().is_empty(), "{body}");
        }
        let mut v1beta1 = review("CREATE", Some(defaulted_seed()), None);
        v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
        let reason = bad_request(&app.admission, path, serde_json::to_vec(&v1beta1).unwrap()).await;
        assert!(reason.contains("admission.k8s.io/v1beta1"), "{reason}");
        let no_object = review("CREATE", None, None);
        let reason = bad_request(
            &app.admission,
            path,
            serde_json::to_vec(&no_object).unwrap(),
        )
        .await;
        assert!(reason.contains("request.object"), "{reason}");
        let scalar_object = review("CREATE", Some(json!("not an object")), None);
        let reason = bad_request(
            &app.admission,
            path,
            serde_json::to_vec(&scalar_object).unwrap(),
        )
        .await;
        assert!(reason.contains("request.object"), "{reason}");
        let no_old = review("UPDATE", Some(defaulted_seed()), None);
        let reason = bad_request(&app.admission, path, serde_json::to_vec(&no_old).unwrap()).await;
        assert!(reason.contains("oldObject"), "{reason}");
    }
}

#[tokio::test]
async fn other_kinds_get_400() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut pod = review(
        "CREATE",
        Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
        None,
    );
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    let reason = bad_request(
        &app.admission,
        "/validate",
        serde_json::to_vec(&pod).unwrap(),
    )
    .await;
    assert!(reason.contains("Kind=Pod"), "{reason}");
    let mut cluster = review("CREATE", Some(json!({"metadata": {"name": "c"}})), None);
    cluster["request"]["kind"] =
        json!({"group": "operator.victoriametrics.com", "version": "v1beta1", "kind": "VMCluster"});
    let reason = bad_request(
        &app.admission,
        "/mutate",
        serde_json::to_vec(&cluster).unwrap(),
    )
    .await;
    assert!(reason.contains("VMCluster"), "{reason}");
}

#[tokio::test]
async fn bodies_over_the_limit_declared_in_content_length_are_refused_without_reading() {
    let _process = crate::common::share_process().await;
    use futures::StreamExt as _;
    let app = app();
    let polled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&polled);
    let stream = futures::stream::repeat_with(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok::<_, std::io::Error>(Bytes::from_static(&[b' '; 1024]))
    })
    .take(16 * 1024);
    let request = Request::post("/validate")
        .header(header::CONTENT_LENGTH, (16 * 1024 * 1024).to_string())
        .body(Body::from_stream(stream))
        .unwrap();
    let response = app.admission.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        polled.load(Ordering::Relaxed),
        0,
        "the body was not read at all"
    );
}

#[tokio::test]
async fn streamed_bodies_over_the_limit_are_cut_off_at_it() {
    let _process = crate::common::share_process().await;
    use futures::StreamExt as _;
    let app = app();
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&produced);
    // 1 GiB if read whole; no Content-Length (chunked).
    let stream = futures::stream::repeat_with(move || {
        counter.fetch_add(64 * 1024, Ordering::Relaxed);
        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024]))
    })
    .take(16 * 1024);
    let request = Request::post("/mutate")
        .body(Body::from_stream(stream))
        .unwrap();
    let response = app.admission.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let read = produced.load(Ordering::Relaxed);
    assert!(read <= MAX_BODY_BYTES + 64 * 1024, "read {read} bytes");

    // Exactly at the limit is fine (and then malformed JSON, since it is all spaces).
    let request = Request::post("/mutate")
        .body(Body::from(vec![b' '; MAX_BODY_BYTES]))
        .unwrap();
    let response = app.admission.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_ready_and_metrics_report_requests_by_endpoint_and_result() {
    let _process = crate::common::share_process().await;
    let app = app();
    let _ = answer(
        &app.admission,
        "/mutate",
        &review("CREATE", Some(object("demo", seed_spec())), None),
    )
    .await;
    let bench = include_str!("../../bench/review-3zones-dupzone.json");
    let _ = post(&app.admission, "/validate", bench.to_owned()).await;
    let _ = post(&app.admission, "/validate", "{").await;
    let _ = post(
        &app.admission,
        "/validate",
        Body::from(vec![b' '; MAX_BODY_BYTES + 1]),
    )
    .await;

    for path in ["/healthz", "/readyz"] {
        let response = app
            .health
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let response = app
        .health
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "vmdistributed_webhook_admission_requests_total{endpoint=\"mutate\",result=\"allowed\"} 1",
        "vmdistributed_webhook_admission_requests_total{endpoint=\"validate\",result=\"denied\"} 1",
        "vmdistributed_webhook_admission_requests_total{endpoint=\"validate\",result=\"error\"} 2",
        "vmdistributed_webhook_body_too_large_total 1",
        "vmdistributed_webhook_admission_request_duration_seconds_count{endpoint=\"validate\"} 3",
        "vmdistributed_webhook_tls_reloads_total{result=\"success\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn wrong_methods_and_paths_are_not_served() {
    let _process = crate::common::share_process().await;
    let app = app();
    let response = app
        .admission
        .clone()
        .oneshot(Request::get("/validate").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = app
        .admission
        .clone()
        .oneshot(Request::post("/other").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn renaming_a_zones_cluster_on_update_is_denied_naming_old_and_new() {
    let _process = crate::common::share_process().await;
    let app = app();
    let old = defaulted_seed();
    let mut new = old.clone();
    new["spec"]["zones"][1]["vmcluster"] = json!({"name": "renamed"});
    let response = answer(
        &app.admission,
        "/validate",
        &review("UPDATE", Some(new.clone()), Some(old.clone())),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.zones[1].vmcluster.name"),
        "{message}"
    );
    assert!(
        message.contains("demo-zone-b") && message.contains("renamed"),
        "{message}"
    );
    assert!(message.contains("remove the zone"), "{message}");

    // The annotation lifts the check (with a warning).
    new["metadata"]["annotations"] = json!({"operator.victoriametrics.com/allow-rename": "true"});
    let response = answer(
        &app.admission,
        "/validate",
        &review("UPDATE", Some(new), Some(old)),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(
        response["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    );
}

#[tokio::test]
async fn removing_a_zone_on_update_is_allowed_with_a_warning_naming_the_children() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut old = defaulted_seed();
    old["spec"]["zones"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "zone-c", "trafficMode": "read-write"}));
    let new = defaulted_seed();
    let response = answer(
        &app.admission,
        "/validate",
        &review("UPDATE", Some(new), Some(old)),
    )
    .await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let removal = warnings
        .iter()
        .find(|w| w.contains("zone-c"))
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert!(
        removal.contains("demo-zone-c") && removal.contains("released"),
        "{removal}"
    );
}

#[tokio::test]
async fn changing_backend_type_on_update_is_denied() {
    let _process = crate::common::share_process().await;
    let app = app();
    let old = defaulted_seed();
    let mut new = old.clone();
    new["spec"]["backendType"] = json!("VMSingle");
    new["spec"]["zoneCommon"]["vmcluster"] = Value::Null;
    new["spec"]["zoneCommon"]
        .as_object_mut()
        .unwrap()
        .remove("vmcluster");
    let response = answer(
        &app.admission,
        "/validate",
        &review("UPDATE", Some(new), Some(old)),
    )
    .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.backendType"),
        "{response}"
    );
}

#[tokio::test]
async fn every_error_is_reported_in_one_message_with_its_path() {
    let _process = crate::common::share_process().await;
    let app = app();
    let mut obj = defaulted_seed();
    obj["spec"]["zones"] = json!([
        {"name": "Zone_A"},
        {"name": "zone-b", "vmcluster": {"ref": {"name": "c", "namespace": "elsewhere"}}},
        {"name": "zone-b"}
    ]);
    obj["spec"]["zoneCommon"]["readyTimeout"] = json!("0s");
    let response = answer(
        &app.admission,
        "/validate",
        &review("CREATE", Some(obj), None),
    )
    .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert_eq!(message.lines().count(), 1, "{message}");
    for path in [
        "spec.zones[0].name",
        "spec.zones[2].name",
        "spec.zoneCommon.readyTimeout",
        "spec.zones[1].vmcluster.ref.namespace",
    ] {
        assert!(message.contains(path), "missing {path}: {message}");
    }
    assert!(
        message.contains("cross-namespace reference: VMDistributed monitoring/demo cannot reference VMCluster elsewhere/c"),
        "{message}"
    );
}
