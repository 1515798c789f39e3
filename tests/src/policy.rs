//! ValidatingAdmissionPolicies that make the API server refuse writes on demand, as a cluster's
//! own policy (or another admission webhook) would: the real refusals the tests need for status
//! writes, child writes and preflight dry-runs.

use anyhow::Result;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

/// A ValidatingAdmissionPolicy and its binding (both named `name`) that deny `operations` on
/// `resource` (group `operator.victoriametrics.com`) in namespace `namespace` unless
/// `validation` (CEL) holds, with `message`.
#[derive(Clone, Copy, Debug)]
pub struct RefusalPolicy<'a> {
    /// Name of the policy and of its binding (cluster-scoped: make it unique per test).
    pub name: &'a str,
    /// The namespace whose requests it judges.
    pub namespace: &'a str,
    /// API version of the resource, e.g. `v1beta1`.
    pub api_version: &'a str,
    /// Operations it judges, e.g. `["CREATE", "UPDATE"]`.
    pub operations: &'a [&'a str],
    /// The resource (plural, or `plural/subresource`), e.g. `vmclusters`.
    pub resource: &'a str,
    /// CEL that must hold for a request to be allowed.
    pub validation: &'a str,
    /// The message of a denial.
    pub message: &'a str,
}

impl RefusalPolicy<'_> {
    /// Create or update the policy and its binding. The API server enforces it shortly after,
    /// not at once: wait for a refusal before relying on it.
    pub async fn apply(&self, client: &Client) -> Result<()> {
        let Self {
            name,
            namespace,
            api_version,
            operations,
            resource,
            ..
        } = *self;
        let operations = operations.join(", ");
        let validation = serde_json::to_string(self.validation)?;
        let message = serde_json::to_string(self.message)?;
        crate::apply_yaml(
            client,
            None,
            &format!(
                r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [operator.victoriametrics.com]
      apiVersions: [{api_version}]
      operations: [{operations}]
      resources: [{resource}]
  validations:
  - expression: {validation}
    message: {message}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
"#
            ),
        )
        .await?;
        Ok(())
    }
}

/// Delete the policy and the binding named `name`.
pub async fn delete_refusal_policy(client: &Client, name: &str) -> Result<()> {
    for (kind, plural) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    ] {
        let api: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
                plural,
            ),
        );
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}
