//! Preflight's dry-runs, for the webhook's preflight and the controller's alike
//! (docs/operations.md "Preflight"): every shape is sent as a server-side dry-run apply, all at
//! once within a budget, and each answer is judged by `shared::preflight`; a request that got
//! none is inconclusive.

use std::time::Duration;

use futures::future::join_all;
use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use shared::model::FIELD_MANAGER;
use shared::preflight::{Finding, Shape, classify_status, no_answer};

use crate::resources;

/// Dry-run every shape in `namespace` through `client`, all in parallel, each bounded by
/// `budget`: one finding per shape, in the order of `shapes`.
///
/// Each is a forced server-side apply with the controller's field manager, so it meets the same
/// field ownership conflicts the real apply would, and strict field validation, so a field the
/// schema does not know is refused rather than dropped.
pub async fn apply_all(
    client: &kube::Client,
    namespace: &str,
    shapes: &[Shape],
    budget: Duration,
) -> Vec<Finding> {
    let params = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some(FIELD_MANAGER.to_owned()),
        field_validation: Some(ValidationDirective::Strict),
    };
    let runs = shapes.iter().map(|shape| {
        let params = &params;
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                namespace,
                &resources::child(shape.intent.kind),
            );
            let object = shape.intent.to_object();
            let patch = Patch::Apply(&object);
            let answer =
                tokio::time::timeout(budget, api.patch(&shape.intent.name, params, &patch));
            match answer.await {
                Ok(answer) => finding(answer.as_ref().map(|_| ())),
                Err(_) => no_answer(budget),
            }
        }
    });
    join_all(runs).await
}

/// The finding of a dry-run that returned `answer`.
#[must_use]
pub fn finding(answer: Result<(), &kube::Error>) -> Finding {
    match answer {
        Ok(()) => Finding::Accepted,
        Err(kube::Error::Api(status)) => classify_status(status),
        Err(other) => Finding::Inconclusive(format!("the API server is unreachable: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use shared::model::ChildIntent;
    use shared::names::ChildKind;
    use shared::preflight::Variant;

    use super::*;

    /// The table of API server answers `shared::preflight` is tested against.
    const OUTCOMES: &str = include_str!("../../shared/tests/fixtures/preflight_outcomes.json");

    #[test]
    fn the_shared_table_of_answers_gets_the_documented_verdict() {
        let table: Vec<serde_json::Value> = serde_json::from_str(OUTCOMES).expect("table");
        assert!(table.len() >= 10);
        for row in table {
            let message = row["message"].as_str().expect("message");
            let mut status = kube::core::Status::failure(message, "");
            status.code = u16::try_from(row["code"].as_u64().expect("code")).expect("code");
            let err = kube::Error::Api(Box::new(status));
            let verdict = match finding(Err(&err)) {
                Finding::Accepted => "accepted",
                Finding::Rejected { .. } => "rejected",
                Finding::Inconclusive(_) => "inconclusive",
            };
            assert_eq!(verdict, row["verdict"], "{}", row["what"]);
        }
        assert_eq!(finding(Ok(())), Finding::Accepted);
        assert!(matches!(
            finding(Err(&kube::Error::LinesCodecMaxLineLengthExceeded)),
            Finding::Inconclusive(m) if m.contains("unreachable")
        ));
    }

    /// The requests [`apply_all`] sends and how it reads the answers, against a stand-in API
    /// server that answers by object name: `accepted` is stored, `refused` has an unknown
    /// field, `silent` never answers.
    #[tokio::test(start_paused = true)]
    async fn every_shape_is_dry_run_at_once_and_judged_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::clone(&seen);
        let api_server = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            // The query's parameters, without the empty one kube's URL builder starts with.
            let query = request.uri().query().unwrap_or_default().split('&');
            let query: Vec<&str> = query.filter(|p| !p.is_empty()).collect();
            requests.lock().expect("requests").push(format!(
                "{} {}?{}",
                request.method(),
                request.uri().path(),
                query.join("&")
            ));
            let name = request.uri().path().rsplit('/').next().map(str::to_owned);
            async move {
                let (code, body) = match name.as_deref() {
                    Some("accepted") => (
                        200,
                        serde_json::json!({
                            "apiVersion": "operator.victoriametrics.com/v1beta1",
                            "kind": "VMCluster",
                            "metadata": {"name": "accepted", "namespace": "ns"},
                        }),
                    ),
                    Some("refused") => (
                        400,
                        serde_json::json!({
                            "apiVersion": "v1", "kind": "Status", "status": "Failure",
                            "message": "strict decoding error: unknown field \"spec.replicaCont\"",
                            "reason": "BadRequest", "code": 400,
                        }),
                    ),
                    _ => std::future::pending().await,
                };
                let response = http::Response::builder()
                    .status(code)
                    .body(kube::client::Body::from(body.to_string().into_bytes()))
                    .expect("response");
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let client = kube::Client::new(api_server, "default");
        let shape = |kind, name: &str| Shape {
            intent: ChildIntent {
                kind,
                name: name.to_owned(),
                namespace: "ns".to_owned(),
                zone: None,
                labels: Default::default(),
                annotations: Default::default(),
                owner_references: Vec::new(),
                spec: serde_json::json!({}),
                spec_hash: String::new(),
            },
            variant: Variant::Zone,
            remote_write_zones: Vec::new(),
        };
        let shapes = [
            shape(ChildKind::VMAgent, "silent"),
            shape(ChildKind::VMCluster, "accepted"),
            shape(ChildKind::VMCluster, "refused"),
        ];
        let budget = Duration::from_secs(3);

        let findings = apply_all(&client, "ns", &shapes, budget).await;

        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0], no_answer(budget));
        assert_eq!(findings[1], Finding::Accepted);
        assert!(
            matches!(&findings[2], Finding::Rejected { message, .. } if message.contains("replicaCont")),
            "{:?}",
            findings[2]
        );
        let mut seen = seen.lock().expect("requests").clone();
        seen.sort();
        let query =
            "dryRun=All&force=true&fieldManager=vmdistributed-controller&fieldValidation=Strict";
        assert_eq!(
            seen,
            [
                format!(
                    "PATCH /apis/operator.victoriametrics.com/v1beta1/namespaces/ns/vmagents/silent?{query}"
                ),
                format!(
                    "PATCH /apis/operator.victoriametrics.com/v1beta1/namespaces/ns/vmclusters/accepted?{query}"
                ),
                format!(
                    "PATCH /apis/operator.victoriametrics.com/v1beta1/namespaces/ns/vmclusters/refused?{query}"
                ),
            ]
        );
    }
}
