//! The control plane itself: the project CRD against a real kube-apiserver.

use anyhow::{Context, Result};
use harness::{ControlPlane, apply_yaml, apply_yaml_with, create_namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, PatchParams};
use serde_json::json;

fn seed_yaml() -> Result<String> {
    let path = harness::workspace_root().join("examples/seed.yaml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

async fn vmd_api(client: &kube::Client, ns: &str) -> Result<Api<DynamicObject>> {
    let gvk = GroupVersionKind::gvk("operator.victoriametrics.com", "v1alpha1", "VMDistributed");
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    Ok(Api::namespaced_with(client.clone(), ns, &resource))
}

#[tokio::test]
async fn project_crd_and_upstream_vm_crds_are_established() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for name in [
        "vmdistributed.operator.victoriametrics.com",
        "vmclusters.operator.victoriametrics.com",
        "vmagents.operator.victoriametrics.com",
        "vmauths.operator.victoriametrics.com",
        "vmsingles.operator.victoriametrics.com",
    ] {
        let crd = crds
            .get(name)
            .await
            .with_context(|| format!("getting CRD {name}"))?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name} not Established: {conditions:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn seed_example_is_created_and_read_back() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, "seed").await?;
    let applied = apply_yaml(&client, Some(&ns), &seed_yaml()?).await?;
    assert_eq!(applied.len(), 1);

    let api = vmd_api(&client, &ns).await?;
    let stored = api.get("demo").await?;
    let expected: serde_json::Value = harness::parse_yaml_documents(&seed_yaml()?)?.remove(0);
    // Everything the user wrote is stored as written: nothing pruned by the schema.
    assert_eq!(
        stored.data["spec"], expected["spec"],
        "stored spec differs from examples/seed.yaml"
    );
    assert_eq!(stored.data["spec"]["zones"][1]["name"], json!("zone-b"));
    Ok(())
}

#[tokio::test]
async fn unknown_field_is_rejected_under_strict_field_validation() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, "strict").await?;
    let typo = seed_yaml()?.replace("  zones:\n", "  zonez: []\n  zones:\n");
    assert!(typo.contains("zonez"), "test input must contain the typo");

    let strict = PatchParams::apply(harness::FIELD_MANAGER)
        .force()
        .validation_strict();
    let err = apply_yaml_with(&client, Some(&ns), &typo, &strict)
        .await
        .expect_err("an unknown field must be rejected under fieldValidation=Strict");
    let message = format!("{err:#}");
    assert!(
        message.contains("zonez"),
        "error should name the field: {message}"
    );

    // The same object without the typo is accepted with the same parameters.
    apply_yaml_with(&client, Some(&ns), &seed_yaml()?, &strict).await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_get_vmd_shows_the_printer_columns() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, "columns").await?;
    apply_yaml(&client, Some(&ns), &seed_yaml()?).await?;

    let output = cp.kubectl().args(["get", "vmd", "-n", &ns]).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let header: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let header = header.join(" ");
    for column in ["NAME", "STATUS", "READY ZONES", "ROLLOUT ZONE", "AGE"] {
        assert!(
            header.contains(column),
            "column {column} missing in {header:?}"
        );
    }
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("demo ")),
        "row for demo missing:\n{stdout}"
    );
    Ok(())
}
