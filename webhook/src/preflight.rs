//! Preflight (SPEC §3, `--preflight`): every child the controller would write is sent to the API
//! server as a server-side dry-run apply, all in parallel within a budget, so what the installed
//! CRD schemas and other admission webhooks (the VictoriaMetrics operator's) reject is refused at
//! `kubectl apply` time instead of mid-rollout.
//!
//! Deny on 400, 422 or a denial by another webhook, naming the zone, the child and the API
//! server's message. Allow with a warning when the answer says nothing about the object: a
//! timeout, 5xx, 403 from RBAC, 404 (CRDs missing) or a transport error.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::join_all;
use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::admission::AdmissionResponse;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use shared::VMDistributed;
use shared::rollout::model::Observed;
use tracing::debug;

use crate::admission::Review;

/// Field manager of the controller's writes; the dry-run uses the same so conflicts match.
pub const FIELD_MANAGER: &str = "vmdistributed-controller";

/// One child to dry-run.
#[derive(Debug, Clone)]
pub struct DryRunChild {
    /// The zone it belongs to (`None` for the shared VMAuth).
    pub zone: Option<String>,
    /// `kind` of the object, e.g. `VMCluster`.
    pub kind: String,
    /// Resource plural, e.g. `vmclusters`.
    pub plural: String,
    /// `metadata.name`.
    pub name: String,
    /// The complete manifest (apiVersion, kind, metadata, spec), without owner references.
    pub manifest: Value,
}

impl DryRunChild {
    fn describe(&self) -> String {
        match &self.zone {
            Some(zone) => format!("zone {zone}, {} {}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What the API server said about one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The object would be accepted.
    Accepted,
    /// The object is invalid: deny with this message.
    Rejected(String),
    /// The answer says nothing about the object: allow with this warning.
    Inconclusive(String),
}

/// Classify an API error (SPEC §3): 400, 422 and another webhook's denial are the object's
/// fault; everything else (403 from RBAC, 404, 409, 5xx, transport) is not.
///
/// One 500 is the object's fault too: a server-side apply whose object has a field the CRD's
/// structural schema does not declare fails with 500 "failed to create typed patch object ...
/// field not declared in schema" (the apply is converted to a typed object before strict field
/// validation can answer 400). The controller's real apply would fail the same way.
#[must_use]
pub fn classify(err: &kube::Error) -> Finding {
    match err {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            let webhook_denial =
                message.contains("admission webhook") && message.contains("denied the request");
            let schema_mismatch = message.contains("failed to create typed patch object");
            match status.code {
                400 | 422 => Finding::Rejected(message),
                _ if webhook_denial || schema_mismatch => Finding::Rejected(message),
                403 => Finding::Inconclusive(format!("forbidden (RBAC): {message}")),
                404 => {
                    Finding::Inconclusive(format!("not found (is the CRD installed?): {message}"))
                }
                code => Finding::Inconclusive(format!("API server answered {code}: {message}")),
            }
        }
        other => Finding::Inconclusive(format!("API server unreachable: {other}")),
    }
}

/// Dry-runs children against the API server.
#[derive(Clone)]
pub struct Preflight {
    client: kube::Client,
    budget: Duration,
}

impl std::fmt::Debug for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preflight")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Preflight {
    /// A preflight using `client`, answering within `budget`.
    #[must_use]
    pub fn new(client: kube::Client, budget: Duration) -> Self {
        Self { client, budget }
    }

    /// Build a client from `kubeconfig`, or in-cluster/`KUBECONFIG`/`~/.kube/config` otherwise.
    ///
    /// # Errors
    /// No usable configuration.
    pub async fn connect(kubeconfig: Option<&Path>, budget: Duration) -> anyhow::Result<Self> {
        let mut config = match kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .context("kubeconfig")?
            }
            None => kube::Config::infer()
                .await
                .context("Kubernetes client configuration")?,
        };
        // A request that cannot finish within the budget is useless; do not queue behind it.
        config.read_timeout = Some(budget);
        config.connect_timeout = Some(budget);
        let client = kube::Client::try_from(config).context("Kubernetes client")?;
        Ok(Self::new(client, budget))
    }

    /// Dry-run every child in parallel, each bounded by the budget.
    pub async fn dry_run(&self, namespace: &str, children: &[DryRunChild]) -> Vec<Finding> {
        let params = PatchParams {
            dry_run: true,
            force: true,
            field_manager: Some(FIELD_MANAGER.to_owned()),
            field_validation: Some(ValidationDirective::Strict),
        };
        let runs = children.iter().map(|child| {
            let params = &params;
            async move {
                let gvk = GroupVersionKind::gvk(shared::api::GROUP, "v1beta1", &child.kind);
                let resource = ApiResource::from_gvk_with_plural(&gvk, &child.plural);
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), namespace, &resource);
                match tokio::time::timeout(
                    self.budget,
                    api.patch(&child.name, params, &Patch::Apply(&child.manifest)),
                )
                .await
                {
                    Ok(Ok(_)) => Finding::Accepted,
                    Ok(Err(err)) => classify(&err),
                    Err(_) => Finding::Inconclusive(format!("no answer within {:?}", self.budget)),
                }
            }
        });
        join_all(runs).await
    }

    /// Add the preflight verdict to an allowed validation response.
    pub async fn check(&self, review: &Review, response: AdmissionResponse) -> AdmissionResponse {
        let uid = review.uid.as_str();
        let Ok(cr) = shared::parse::strict::<VMDistributed>(&review.object) else {
            // Validation decoded it already; nothing to add if it does not decode now.
            return response;
        };
        let mut cr = shared::defaults::apply_defaults(&cr);
        if cr.metadata.namespace.is_none() {
            cr.metadata.namespace.clone_from(&review.namespace);
        }
        let namespace = cr.metadata.namespace.clone().unwrap_or_default();
        let children = children(&cr);
        let findings = self.dry_run(&namespace, &children).await;
        let verdict = verdict(&children, &findings);
        debug!(
            uid,
            children = children.len(),
            rejected = verdict.rejections.len(),
            "preflight"
        );
        apply_verdict(response, verdict)
    }
}

/// Rejections and warnings of one preflight.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Deny with these (zone, child, API message).
    pub rejections: Vec<String>,
    /// Allow with these.
    pub warnings: Vec<String>,
}

/// Pair children with findings into messages.
#[must_use]
pub fn verdict(children: &[DryRunChild], findings: &[Finding]) -> Verdict {
    let mut verdict = Verdict::default();
    for (child, finding) in children.iter().zip(findings) {
        match finding {
            Finding::Accepted => {}
            Finding::Rejected(message) => verdict.rejections.push(format!(
                "preflight: {} rejected by the API server: {message}",
                child.describe()
            )),
            Finding::Inconclusive(reason) => verdict.warnings.push(format!(
                "preflight: {} not checked: {reason}",
                child.describe()
            )),
        }
    }
    verdict
}

fn apply_verdict(mut response: AdmissionResponse, verdict: Verdict) -> AdmissionResponse {
    if !verdict.warnings.is_empty() {
        response
            .warnings
            .get_or_insert_with(Vec::new)
            .extend(verdict.warnings);
    }
    if verdict.rejections.is_empty() {
        response
    } else {
        response.deny(verdict.rejections.join("; "))
    }
}

/// The children the controller would write for the defaulted `cr` (SPEC §4, rendered with no
/// live state, as on creation), as dry-run manifests without owner references.
#[must_use]
pub fn children(cr: &VMDistributed) -> Vec<DryRunChild> {
    let intents = shared::render::render_intents(cr, &Observed::default());
    intents
        .all()
        .into_iter()
        .map(|intent| DryRunChild {
            zone: intent.zone.clone(),
            kind: intent.kind.kind().to_owned(),
            plural: intent.kind.plural().to_owned(),
            name: intent.name.clone(),
            manifest: intent.without_owner_references().to_object(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let mut status = kube::core::Status::failure(message, "");
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn object_errors_deny_and_everything_else_warns() {
        for (code, message) in [
            (400, "strict decoding error: unknown field \"spec.x\""),
            (
                422,
                "VMCluster.operator.victoriametrics.com \"a\" is invalid: spec.replicaCount: Invalid value",
            ),
            (
                403,
                "admission webhook \"vmcluster.vm\" denied the request: bad",
            ),
            (
                500,
                "failed to create typed patch object (ns/a; Kind=VMCluster): .spec.x: field not declared in schema",
            ),
        ] {
            assert!(
                matches!(classify(&api(code, message)), Finding::Rejected(m) if m == message),
                "{code}"
            );
        }
        for code in [403, 404, 409, 500, 503] {
            assert!(
                matches!(classify(&api(code, "nope")), Finding::Inconclusive(_)),
                "{code}"
            );
        }
    }

    #[test]
    fn verdict_names_zone_and_child() {
        let child = |zone: Option<&str>, kind: &str, name: &str| DryRunChild {
            zone: zone.map(str::to_owned),
            kind: kind.to_owned(),
            plural: String::new(),
            name: name.to_owned(),
            manifest: Value::Null,
        };
        let children = [
            child(Some("a"), "VMCluster", "c-a"),
            child(Some("a"), "VMAgent", "g-a"),
            child(None, "VMAuth", "auth"),
        ];
        let findings = [
            Finding::Rejected("bad field".to_owned()),
            Finding::Accepted,
            Finding::Inconclusive("no answer within 3s".to_owned()),
        ];
        let verdict = verdict(&children, &findings);
        assert_eq!(
            verdict.rejections,
            ["preflight: zone a, VMCluster c-a rejected by the API server: bad field"]
        );
        assert_eq!(
            verdict.warnings,
            ["preflight: VMAuth auth not checked: no answer within 3s"]
        );
    }
}
