//! Preflight (`--preflight`, docs/operations.md): every child the controller would write, in
//! every shape it writes it ([`shared::preflight::shapes`]), is sent to the API server as a
//! server-side dry-run apply, all in parallel within a budget, so what the installed CRD schemas
//! and other admission webhooks (the VictoriaMetrics operator's) reject is refused at
//! `kubectl apply` time instead of mid-rollout.
//!
//! The answers are judged and worded by `shared::preflight`, which the controller uses too. One
//! extra GET of the VMAuth warns when another `VMDistributed` already claims it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, DynamicObject};
use kube::core::admission::AdmissionResponse;
use shared::VMDistributed;
use shared::children::ChildObject;
use shared::model::Observed;
use shared::names::ChildKind;
use shared::preflight::{Shape, Verdict};
use shared::versions::PinnedVersions;
use tracing::debug;
use vmdistributed_runtime::dry_run;
use vmdistributed_runtime::resources;

use crate::admission::Review;

/// Dry-runs children against the API server.
#[derive(Clone)]
pub struct Preflight {
    client: kube::Client,
    budget: Duration,
    /// The versions the controller pins (its `--pinned-*-version` flags), so the shapes tried
    /// are the ones it writes.
    pinned_versions: PinnedVersions,
}

impl std::fmt::Debug for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preflight")
            .field("budget", &self.budget)
            .field("pinned_versions", &self.pinned_versions)
            .finish_non_exhaustive()
    }
}

impl Preflight {
    /// A preflight using `client`, answering within `budget`.
    #[must_use]
    pub fn new(client: kube::Client, budget: Duration) -> Self {
        Self {
            client,
            budget,
            pinned_versions: PinnedVersions::default(),
        }
    }

    /// Render with these pinned versions, as the controller does (none by default).
    #[must_use]
    pub fn with_pinned_versions(mut self, pinned_versions: PinnedVersions) -> Self {
        self.pinned_versions = pinned_versions;
        self
    }

    /// The versions the controller pins, which the rendered children carry.
    #[must_use]
    pub fn pinned_versions(&self) -> &PinnedVersions {
        &self.pinned_versions
    }

    /// Build a client from `kubeconfig`, or in-cluster/`KUBECONFIG`/`~/.kube/config` otherwise.
    ///
    /// # Errors
    /// No usable configuration.
    pub async fn connect(kubeconfig: Option<&Path>, budget: Duration) -> anyhow::Result<Self> {
        let mut config = vmdistributed_runtime::kube_config::load(kubeconfig).await?;
        // A request that cannot finish within the budget is useless; do not queue behind it.
        config.read_timeout = Some(budget);
        config.connect_timeout = Some(budget);
        let client = kube::Client::try_from(config).context("Kubernetes client")?;
        Ok(Self::new(client, budget))
    }

    /// The warning for a VMAuth that another `VMDistributed` claims: one GET, best effort (no
    /// warning when it cannot be read).
    async fn vmauth_claim(&self, cr: &VMDistributed, namespace: &str) -> Option<String> {
        if !shared::defaults::vmauth_enabled(cr) {
            return None;
        }
        let name = shared::names::vmauth_name(cr);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resources::child(ChildKind::VMAuth),
        );
        let live = match tokio::time::timeout(self.budget, api.get_opt(&name)).await {
            Ok(Ok(live)) => live?,
            Ok(Err(err)) => {
                debug!(error = %err, vmauth = %name, "cannot read the VMAuth to check its claim");
                return None;
            }
            Err(_) => return None,
        };
        let live =
            ChildObject::from_value(&serde_json::to_value(live).ok()?, Some(ChildKind::VMAuth));
        shared::preflight::vmauth_claim_warning(cr, &live)
    }

    /// Add the preflight verdict to an allowed validation response.
    pub async fn check(
        &self,
        uid: &str,
        plan: Plan,
        response: AdmissionResponse,
    ) -> AdmissionResponse {
        let Plan {
            cr,
            namespace,
            shapes,
        } = plan;
        let (findings, claim) = futures::join!(
            dry_run::apply_all(&self.client, &namespace, &shapes, self.budget),
            self.vmauth_claim(&cr, &namespace)
        );
        let mut verdict = shared::preflight::verdict(&cr, &shapes, &findings);
        verdict.warnings.extend(claim);
        debug!(
            uid,
            shapes = shapes.len(),
            rejected = verdict.rejections.len(),
            "preflight"
        );
        apply_verdict(response, verdict)
    }
}

/// What a preflight of one review dry-runs: the defaulted object and every shape of every
/// child. Rendering them is CPU work that grows with the size of the spec, so it is done with
/// the rest of the review's judgement, off the async workers when the review is large
/// (`crate::routes`); only the dry-runs are I/O.
#[derive(Debug)]
pub struct Plan {
    cr: VMDistributed,
    namespace: String,
    shapes: Vec<Shape>,
}

/// The preflight of an allowed review, rendered with the versions the controller pins
/// ([`Preflight::pinned_versions`]); `None` when the object does not decode (validation
/// decoded it already, so this does not happen).
#[must_use]
pub fn plan(review: &Review, pinned_versions: &PinnedVersions) -> Option<Plan> {
    let cr = shared::parse::strict::<VMDistributed>(&review.object).ok()?;
    let mut cr = shared::defaults::apply_defaults(&cr);
    if cr.metadata.namespace.is_none() {
        cr.metadata.namespace.clone_from(&review.namespace);
    }
    let namespace = cr.metadata.namespace.clone().unwrap_or_default();
    // As on creation: nothing observed, so every shape is rendered from the spec alone,
    // with the versions the controller pins.
    let observed = Observed {
        pinned_versions: pinned_versions.clone(),
        ..Observed::default()
    };
    let shapes = shared::preflight::shapes(&cr, &observed);
    Some(Plan {
        cr,
        namespace,
        shapes,
    })
}

fn apply_verdict(mut response: AdmissionResponse, verdict: Verdict) -> AdmissionResponse {
    if !verdict.warnings.is_empty() {
        response
            .warnings
            .get_or_insert_with(Vec::new)
            .extend(verdict.warnings.iter().cloned());
    }
    match verdict.rejection() {
        Some(rejection) => response.deny(rejection),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the webhook dry-runs is what the controller writes: children whose spec leaves the
    /// version unset carry the versions pinned by the `--pinned-*-version` flags.
    #[test]
    fn dry_run_objects_carry_the_pinned_versions() {
        let object = serde_json::json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1", "kind": "VMDistributed",
            "metadata": {"name": "pins", "namespace": "ns"},
            "spec": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}],
                "zoneCommon": {"vmcluster": {"spec": {"vmstorage": {"replicaCount": 1}}}}}
        });
        let review = Review {
            uid: "u".into(),
            namespace: Some("ns".into()),
            object,
            old_object: None,
        };
        let pins = PinnedVersions::from_flags("v1.2.3-cluster", "v1.2.3", "");
        let plan = plan(&review, &pins).expect("a plan");
        let version = |kind: &str, pointer: &str| -> Vec<Option<String>> {
            plan.shapes
                .iter()
                .filter(|s| s.intent.kind.kind() == kind)
                .map(|s| {
                    s.intent
                        .spec
                        .pointer(pointer)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
                .collect()
        };
        assert_eq!(
            version("VMCluster", "/clusterVersion"),
            vec![Some("v1.2.3-cluster".to_owned()); 2]
        );
        assert_eq!(
            version("VMAgent", "/image/tag"),
            vec![Some("v1.2.3".to_owned()); 2]
        );
        // Without pins, the versions are left to the operator.
        let plan = super::plan(&review, &PinnedVersions::default()).expect("a plan");
        assert!(
            plan.shapes
                .iter()
                .all(|s| s.intent.spec.pointer("/clusterVersion").is_none()
                    && s.intent.spec.pointer("/image/tag").is_none()),
            "{:?}",
            plan.shapes
        );
    }

    #[test]
    fn a_rejection_denies_and_warnings_are_kept() {
        let allowed = AdmissionResponse::invalid("");
        let mut allowed = allowed;
        allowed.allowed = true;
        let verdict = Verdict {
            rejections: vec!["preflight: a".into(), "preflight: b".into()],
            warnings: vec!["preflight: c not checked".into()],
            ..Verdict::default()
        };
        let response = apply_verdict(allowed.clone(), verdict);
        assert!(!response.allowed);
        assert_eq!(response.result.message, "preflight: a; preflight: b");
        assert_eq!(
            response.warnings.as_deref(),
            Some(&["preflight: c not checked".to_owned()][..])
        );
        let response = apply_verdict(allowed, Verdict::default());
        assert!(response.allowed);
        assert!(response.warnings.is_none());
    }
}
