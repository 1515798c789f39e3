//! The chart installed into a real kube-apiserver: every object is accepted, upgrades keep the
//! generated CA, uninstall keeps the CRD, and the pod templates pass Pod Security "restricted" as
//! enforced by the API server itself. There is no kubelet, so nothing waits for pods.

use anyhow::{Context, Result, anyhow, ensure};
use harness::ControlPlane;
use harness::chart::{
    Rendered, chart_dir, decoded_ca_bundles, run_ok, secret_data, set_args,
    verify_serving_certificate,
};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

const CRD: &str = "vmdistributed.operator.victoriametrics.com";

fn helm_in(cp: &ControlPlane, args: &[&str], sets: &[&str]) -> Result<String> {
    let output = run_ok(cp.helm()?.args(args).args(set_args(sets)))?;
    Ok(String::from_utf8(output.stdout)?)
}

/// The live object for a rendered one (GET by kind and name), as JSON.
async fn live(client: &kube::Client, namespace: &str, object: &Value) -> Result<Value> {
    let (api, name) = harness::resources::dynamic_api_for(client, Some(namespace), object).await?;
    let found: DynamicObject = api
        .get(&name)
        .await
        .with_context(|| format!("GET {} {name}", object["kind"]))?;
    Ok(serde_json::to_value(found)?)
}

async fn live_ca_bundles(
    client: &kube::Client,
    namespace: &str,
    rendered: &Rendered,
) -> Result<Vec<Vec<u8>>> {
    let mut bundles = Vec::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        bundles.extend(decoded_ca_bundles(
            &live(client, namespace, rendered.one(kind)?).await?,
        )?);
    }
    Ok(bundles)
}

/// The manifest Helm recorded for the release.
fn manifest(cp: &ControlPlane, release: &str, namespace: &str) -> Result<Rendered> {
    Rendered::parse(&helm_in(
        cp,
        &["get", "manifest", release, "-n", namespace],
        &[],
    )?)
}

#[tokio::test]
async fn install_accepts_every_object_upgrade_keeps_the_ca_uninstall_keeps_the_crd() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "chart-install").await?;
    let release = "vmd";
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;

    helm_in(cp, &["install", release, chart, "-n", &ns], &[])?;
    let installed = manifest(cp, release, &ns)?;
    let kinds = installed.kinds();
    for kind in [
        "CustomResourceDefinition",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "Secret",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
    ] {
        ensure!(
            kinds.iter().any(|k| k == kind),
            "no {kind} installed: {kinds:?}"
        );
    }
    // Every object of the release exists in the API server as rendered (kind, name, namespace).
    for object in &installed.objects {
        let stored = live(&client, &ns, object).await?;
        assert_eq!(stored["metadata"]["name"], object["metadata"]["name"]);
        assert_eq!(
            stored["metadata"]["labels"]["app.kubernetes.io/instance"], release,
            "{}",
            object["kind"]
        );
    }
    let crd = live(&client, &ns, installed.one("CustomResourceDefinition")?).await?;
    assert_eq!(crd["metadata"]["name"], CRD);

    // The installed TLS material is consistent: the caBundle verifies the serving certificate for
    // the Service's in-cluster name.
    let secret = live(&client, &ns, installed.one("Secret")?).await?;
    let data = secret_data(&secret)?;
    let bundles = live_ca_bundles(&client, &ns, &installed).await?;
    assert_eq!(bundles.len(), 2);
    ensure!(
        bundles.iter().all(|b| b == &data["ca.crt"]),
        "caBundles differ from the Secret's ca.crt"
    );
    let service = format!("{release}-vmdistributed-webhook.{ns}.svc");
    verify_serving_certificate(
        &data["ca.crt"],
        &data["tls.crt"],
        &data["tls.key"],
        &[&service],
    )?;

    // An upgrade that changes something else keeps the CA and the serving pair (lookup).
    helm_in(
        cp,
        &["upgrade", release, chart, "-n", &ns],
        &["webhook.timeoutSeconds=7"],
    )?;
    let upgraded = manifest(cp, release, &ns)?;
    let hook = live(
        &client,
        &ns,
        upgraded.one("ValidatingWebhookConfiguration")?,
    )
    .await?;
    assert_eq!(
        hook["webhooks"][0]["timeoutSeconds"], 7,
        "the upgrade was applied"
    );
    assert_eq!(
        live_ca_bundles(&client, &ns, &upgraded).await?,
        bundles,
        "upgrade kept the caBundle"
    );
    assert_eq!(
        secret_data(&live(&client, &ns, upgraded.one("Secret")?).await?)?,
        data,
        "upgrade kept the Secret"
    );

    // A new certificate name regenerates the pair, and the caBundle follows the new CA.
    helm_in(
        cp,
        &["upgrade", release, chart, "-n", &ns],
        &["webhook.tls.extraDNSNames={webhook.example.internal}"],
    )?;
    let renamed = manifest(cp, release, &ns)?;
    let new_data = secret_data(&live(&client, &ns, renamed.one("Secret")?).await?)?;
    ensure!(
        new_data["ca.crt"] != data["ca.crt"],
        "a changed name must regenerate the certificate"
    );
    let new_bundles = live_ca_bundles(&client, &ns, &renamed).await?;
    ensure!(
        new_bundles.iter().all(|b| b == &new_data["ca.crt"]),
        "caBundles follow the new CA"
    );
    verify_serving_certificate(
        &new_data["ca.crt"],
        &new_data["tls.crt"],
        &new_data["tls.key"],
        &[&service, "webhook.example.internal"],
    )?;

    // Uninstall removes the release's objects but keeps the CRD (and so every VMDistributed).
    helm_in(cp, &["uninstall", release, "-n", &ns], &[])?;
    for object in renamed
        .objects
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let gone = live(&client, &ns, object).await;
        ensure!(
            gone.is_err(),
            "{} {} survived the uninstall",
            object["kind"],
            object["metadata"]["name"]
        );
    }
    let crd = live(&client, &ns, renamed.one("CustomResourceDefinition")?).await?;
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    Ok(())
}

#[tokio::test]
async fn secret_mode_without_crds_installs() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "chart-secret-mode").await?;
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;
    let ca = certs::ca::TestCa::new("user-ca").map_err(|e| anyhow!("{e}"))?;
    let bundle = k8s_openapi::ByteString(ca.cert_pem().into_bytes());
    let bundle = serde_json::to_value(&bundle)?;
    let bundle = bundle.as_str().context("base64 caBundle")?;
    let sets = [
        "webhook.tls.mode=secret",
        "webhook.tls.secret.name=user-tls",
        &format!("webhook.tls.secret.caBundle={bundle}"),
        "crds.install=false",
        "webhook.preflight.enabled=false",
        "fullnameOverride=user-tls-vmd",
    ];
    helm_in(cp, &["install", "user-tls", chart, "-n", &ns], &sets)?;
    let installed = manifest(cp, "user-tls", &ns)?;
    ensure!(
        installed.of_kind("CustomResourceDefinition").count() == 0,
        "crds.install=false installed a CRD"
    );
    for object in &installed.objects {
        live(&client, &ns, object).await?;
    }
    let bundles = live_ca_bundles(&client, &ns, &installed).await?;
    ensure!(
        bundles.iter().all(|b| b == ca.cert_pem().as_bytes()),
        "the user's CA bundle is registered"
    );
    helm_in(cp, &["uninstall", "user-tls", "-n", &ns], &[])?;
    Ok(())
}

#[tokio::test]
async fn pod_templates_pass_pod_security_restricted() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "chart-restricted").await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"
            }}})),
        )
        .await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);

    // The API server enforces the profile: a plain pod is refused.
    let plain = serde_json::from_value(json!({
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/c"}]}
    }))?;
    let refused = pods.create(&PostParams::default(), &plain).await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.message.contains("violates PodSecurity")),
        "a pod without a security context must be refused: {refused:?}"
    );

    // Each Deployment's pod template, as a Pod, is admitted.
    for sets in [
        &[][..],
        &[
            "webhook.tls.mode=certManager",
            "webhook.preflight.enabled=false",
        ][..],
    ] {
        let rendered = harness::chart::template(sets)?;
        for deployment in rendered.of_kind("Deployment") {
            let template = &deployment["spec"]["template"];
            let name = format!(
                "{}-{}",
                deployment["metadata"]["name"].as_str().unwrap_or("pod"),
                sets.len()
            );
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": template["metadata"]["labels"]},
                "spec": template["spec"]
            }))?;
            pods.create(&PostParams::default(), &pod)
                .await
                .with_context(|| format!("Pod Security restricted refused the pod of {name}"))?;
        }
    }
    Ok(())
}
