//! Checks of the cluster: the served VMDistributed CRD is this project's, which VictoriaMetrics
//! CRDs exist, and RBAC allows every verb the controller uses. Each failure message says what
//! to change.

use futures::future::join_all;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use shared::names::ChildKind;

/// Name of the VMDistributed CRD.
pub const CRD_NAME: &str = "vmdistributed.operator.victoriametrics.com";

/// What is wrong with the cluster for this controller.
#[derive(Debug, thiserror::Error)]
pub enum StartupProblem {
    /// The CRD is not installed.
    #[error(
        "CustomResourceDefinition {CRD_NAME} is not installed: install the vmdistributed Helm chart (it installs the CRD unless crds.install=false) or apply charts/vmdistributed/files/crds/vmdistributed.yaml"
    )]
    CrdMissing,
    /// Another project's CRD is served (the upstream operator's typed status would prune ours).
    #[error(
        "CustomResourceDefinition {CRD_NAME} is not this project's: {0}. The VictoriaMetrics operator's own VMDistributed CRD is served; its typed status would drop this controller's rollout state. Install this project's CRD (kubectl apply --server-side --force-conflicts -f charts/vmdistributed/files/crds/vmdistributed.yaml, or the vmdistributed chart with crds.install=true) and disable the operator chart's VMDistributed CRD and controller (see docs/install.md)"
    )]
    ForeignCrd(String),
    /// VictoriaMetrics CRDs are missing. Not fatal: objects that need them wait, the others
    /// are reconciled, and deletions finish (there is nothing of a missing kind to delete).
    #[error(
        "the VictoriaMetrics operator CRDs are missing for {0} (operator.victoriametrics.com/v1beta1): VMDistributed objects that need them wait (deleting them works); install the VictoriaMetrics operator (v0.74.0 or newer) or its CRDs"
    )]
    VmCrdsMissing(String),
    /// RBAC forbids verbs the controller needs.
    #[error(
        "RBAC forbids verbs this controller needs: {0}. Grant them to the controller's ServiceAccount (the chart's ClusterRole has them)"
    )]
    Forbidden(String),
    /// The API server could not be asked.
    #[error("cannot check the cluster: {0}")]
    Api(String),
}

impl StartupProblem {
    /// Problems that may go away without a restart (the CRD gets replaced), so the process stays
    /// up and not ready instead of exiting.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ForeignCrd(_) | Self::Api(_))
    }
}

/// Verify the served VMDistributed CRD: installed, `v1alpha1` served, status schema with
/// `rollout` and `zones`.
///
/// # Errors
/// [`StartupProblem::CrdMissing`], [`StartupProblem::ForeignCrd`] or an API failure.
pub async fn check_crd(client: &Client) -> Result<(), StartupProblem> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = match crds.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => crd,
        Ok(None) => return Err(StartupProblem::CrdMissing),
        Err(err) => return Err(StartupProblem::Api(format!("GET CRD {CRD_NAME}: {err}"))),
    };
    let value = serde_json::to_value(&crd).map_err(|err| StartupProblem::Api(err.to_string()))?;
    crd_problem(&value).map_or(Ok(()), |problem| Err(StartupProblem::ForeignCrd(problem)))
}

/// What makes a CRD (as JSON) not this project's, if anything.
#[must_use]
pub fn crd_problem(crd: &serde_json::Value) -> Option<String> {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(serde_json::Value::as_array)?;
    let Some(version) = versions.iter().find(|v| {
        v.get("name").and_then(serde_json::Value::as_str) == Some(shared::api::VERSION)
            && v.get("served").and_then(serde_json::Value::as_bool) == Some(true)
    }) else {
        return Some(format!("version {} is not served", shared::api::VERSION));
    };
    let status = version.pointer("/schema/openAPIV3Schema/properties/status/properties");
    let missing: Vec<&str> = ["rollout", "zones"]
        .into_iter()
        .filter(|field| status.and_then(|s| s.get(field)).is_none())
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "its status schema lacks {}",
            missing
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        ))
    }
}

/// The VictoriaMetrics kinds whose CRDs the API server serves at `v1beta1`, in
/// [`ChildKind::ALL`] order.
///
/// # Errors
/// [`StartupProblem::Api`] when discovery fails for another reason than the group being absent.
pub async fn served_child_kinds(client: &Client) -> Result<Vec<ChildKind>, StartupProblem> {
    let served: Vec<String> = match client
        .list_api_group_resources(ChildKind::API_VERSION)
        .await
    {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(err) => {
            return Err(StartupProblem::Api(format!(
                "discovery of {}: {err}",
                ChildKind::API_VERSION
            )));
        }
    };
    Ok(ChildKind::ALL
        .into_iter()
        .filter(|kind| served.iter().any(|name| name == kind.plural()))
        .collect())
}

/// [`StartupProblem::VmCrdsMissing`] naming the kinds not in `served`, if any.
#[must_use]
pub fn missing_vm_crds(served: &[ChildKind]) -> Option<StartupProblem> {
    let missing: Vec<&str> = ChildKind::ALL
        .iter()
        .filter(|kind| !served.contains(kind))
        .map(|kind| kind.kind())
        .collect();
    (!missing.is_empty()).then(|| StartupProblem::VmCrdsMissing(missing.join(", ")))
}

/// One permission the controller needs.
#[derive(Clone, Debug)]
pub struct Permission {
    group: &'static str,
    resource: String,
    subresource: Option<&'static str>,
    verb: &'static str,
    namespace: Option<String>,
    name: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(sub) = self.subresource {
            write!(f, "/{sub}")?;
        }
        write!(f, " ({group})")?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        Ok(())
    }
}

fn perm(group: &'static str, resource: &str, verb: &'static str) -> Permission {
    Permission {
        group,
        resource: resource.to_owned(),
        subresource: None,
        verb,
        namespace: None,
        name: None,
    }
}

/// Every permission the controller uses (`lease` = (namespace, name) when leader election is on).
#[must_use]
pub fn required_permissions(
    lease: Option<(&str, &str)>,
    watch_namespace: Option<&str>,
) -> Vec<Permission> {
    let group = shared::api::GROUP;
    let mut out = Vec::new();
    for verb in ["get", "list", "watch", "patch"] {
        out.push(perm(group, "vmdistributed", verb));
    }
    for sub in ["status", "finalizers"] {
        out.push(Permission {
            subresource: Some(sub),
            ..perm(group, "vmdistributed", "update")
        });
    }
    for kind in [
        ChildKind::VMCluster,
        ChildKind::VMSingle,
        ChildKind::VMAgent,
        ChildKind::VMAuth,
    ] {
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            out.push(perm(group, kind.plural(), verb));
        }
    }
    for verb in ["create", "patch"] {
        out.push(perm("events.k8s.io", "events", verb));
    }
    // The drain finds each agent's pods through its Service's EndpointSlices.
    for verb in ["get", "list", "watch"] {
        out.push(perm("discovery.k8s.io", "endpointslices", verb));
    }
    for p in &mut out {
        p.namespace = watch_namespace.map(str::to_owned);
    }
    // The CRDs are read at start and watched while running (crate::crd_watch), each by name.
    for name in crate::crd_watch::watched_names() {
        for verb in ["get", "list", "watch"] {
            out.push(Permission {
                name: Some(name.clone()),
                ..perm("apiextensions.k8s.io", "customresourcedefinitions", verb)
            });
        }
    }
    if let Some((ns, name)) = lease {
        out.push(Permission {
            namespace: Some(ns.to_owned()),
            ..perm("coordination.k8s.io", "leases", "create")
        });
        // The chart limits reads and renewals to the one Lease, so ask for that name.
        for verb in ["get", "patch"] {
            out.push(Permission {
                namespace: Some(ns.to_owned()),
                name: Some(name.to_owned()),
                ..perm("coordination.k8s.io", "leases", verb)
            });
        }
    }
    out
}

/// Ask the API server (SelfSubjectAccessReview) whether every permission is granted.
///
/// # Errors
/// [`StartupProblem::Forbidden`] listing every denied permission.
pub async fn check_rbac(client: &Client, needed: &[Permission]) -> Result<(), StartupProblem> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let results = join_all(needed.iter().map(|p| {
        let reviews = reviews.clone();
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(p.group.to_owned()),
                    resource: Some(p.resource.clone()),
                    subresource: p.subresource.map(str::to_owned),
                    verb: Some(p.verb.to_owned()),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        async move { reviews.create(&PostParams::default(), &review).await }
    }))
    .await;
    let mut denied = Vec::new();
    for (p, result) in needed.iter().zip(results) {
        match result {
            Ok(review) if review.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => denied.push(p.to_string()),
            Err(err) => {
                return Err(StartupProblem::Api(format!(
                    "SelfSubjectAccessReview for {p}: {err}"
                )));
            }
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(StartupProblem::Forbidden(denied.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn our_crd_passes_and_upstream_status_schema_is_named() {
        let ours = serde_json::to_value(<shared::VMDistributed as kube::CustomResourceExt>::crd())
            .unwrap_or_default();
        assert_eq!(crd_problem(&ours), None);
        let upstream = json!({"spec": {"versions": [{"name": "v1alpha1", "served": true,
            "schema": {"openAPIV3Schema": {"properties": {"status": {"properties": {
                "updateStatus": {"type": "string"}}}}}}}]}});
        assert_eq!(
            crd_problem(&upstream).as_deref(),
            Some("its status schema lacks `rollout` and `zones`")
        );
        let unserved = json!({"spec": {"versions": [{"name": "v1alpha1", "served": false}]}});
        assert_eq!(
            crd_problem(&unserved).as_deref(),
            Some("version v1alpha1 is not served")
        );
    }

    #[test]
    fn permissions_include_status_finalizers_and_lease() {
        let text: Vec<String> = required_permissions(Some(("ops", "lease")), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        for needle in [
            "update vmdistributed/status (operator.victoriametrics.com)",
            "update vmdistributed/finalizers (operator.victoriametrics.com)",
            "delete vmclusters (operator.victoriametrics.com)",
            "patch leases (coordination.k8s.io) in namespace ops named lease",
            "watch customresourcedefinitions (apiextensions.k8s.io) named vmdistributed.operator.victoriametrics.com",
            "list customresourcedefinitions (apiextensions.k8s.io) named vmauths.operator.victoriametrics.com",
        ] {
            assert!(
                text.iter().any(|t| t == needle),
                "{needle} missing: {text:?}"
            );
        }
    }
}
