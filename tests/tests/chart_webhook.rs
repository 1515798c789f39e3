//! The chart's webhook TLS material and admission rules, end to end: the chart is installed into
//! the real API server (taking over a CRD that is already served, as when migrating), the webhook
//! binary runs with the certificate from the installed Secret and the arguments of the installed
//! Deployment, and the installed webhook configurations, with only their Service reference
//! replaced by a `url` (no pods run here), make `kubectl apply` fill in defaults and refuse an
//! invalid object with the webhook's message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use harness::chart::{Rendered, chart_dir, readyz, run_ok, secret_data, set_args};
use harness::{ControlPlane, ProcessSpec, free_port};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

const RELEASE: &str = "vmd";
const VALIDATING_HOOK: &str = "validate.vmdistributed.operator.victoriametrics.com";

/// Polls `/readyz` until it answers 200.
async fn wait_ready(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match readyz(port) {
            Ok(response) if response.starts_with("HTTP/1.1 200") => return Ok(()),
            Ok(response) => last = response.lines().next().unwrap_or_default().to_owned(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("webhook /readyz on port {port} not ready within {timeout:?} (last: {last})")
}

/// The installed Deployment's container arguments with the listen addresses moved to loopback
/// ports and the certificate paths moved from the Secret mount to `tls_dir`. Everything else (the
/// subcommand, preflight and logging flags) is passed exactly as the chart renders it.
fn local_args(
    deployment: &Value,
    tls_dir: &std::path::Path,
    tls_port: u16,
    http_port: u16,
) -> Result<Vec<String>> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .context("TLS mountPath")?;
    let args = container["args"].as_array().context("args")?;
    let mut out = Vec::new();
    for arg in args {
        let arg = arg.as_str().context("string arg")?;
        let arg = if arg.starts_with("--tls-addr=") {
            format!("--tls-addr=127.0.0.1:{tls_port}")
        } else if arg.starts_with("--http-addr=") {
            format!("--http-addr=127.0.0.1:{http_port}")
        } else if let Some(file) = arg
            .strip_prefix("--tls-cert-file=")
            .or_else(|| arg.strip_prefix("--tls-key-file="))
        {
            let flag = arg.split('=').next().unwrap_or_default();
            let relative = file
                .strip_prefix(mount)
                .ok_or_else(|| anyhow!("{arg} is not under the Secret mount {mount}"))?
                .trim_start_matches('/');
            format!("{flag}={}", tls_dir.join(relative).display())
        } else {
            arg.to_owned()
        };
        out.push(arg);
    }
    Ok(out)
}

/// Replaces `clientConfig.service` with `url` in every webhook of the configuration, keeping the
/// chart's caBundle.
fn point_at(config: &mut Value, base: &str) -> Result<()> {
    for hook in config["webhooks"].as_array_mut().context("webhooks")? {
        let path = hook["clientConfig"]["service"]["path"]
            .as_str()
            .context("service.path")?
            .to_owned();
        let client_config = hook["clientConfig"]
            .as_object_mut()
            .context("clientConfig")?;
        client_config.remove("service");
        client_config.insert("url".into(), json!(format!("{base}{path}")));
    }
    Ok(())
}

async fn redirect_configurations(client: &kube::Client, name: &str, base: &str) -> Result<()> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut live = serde_json::to_value(mutating.get(name).await?)?;
    point_at(&mut live, base)?;
    mutating
        .replace(name, &PostParams::default(), &serde_json::from_value(live)?)
        .await?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut live = serde_json::to_value(validating.get(name).await?)?;
    point_at(&mut live, base)?;
    validating
        .replace(name, &PostParams::default(), &serde_json::from_value(live)?)
        .await?;
    Ok(())
}

/// `kubectl apply` of a manifest (stdin); returns (success, stdout + stderr).
fn kubectl_apply(cp: &ControlPlane, namespace: &str, manifest: &str) -> Result<(bool, String)> {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(["apply", "-n", namespace, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(manifest.as_bytes())?;
    let output = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// kubectl apply retried while the API server still reports a connection problem with the webhook
/// (its configuration cache picks up the replaced configurations asynchronously).
async fn apply_through_webhook(
    cp: &ControlPlane,
    namespace: &str,
    manifest: &str,
) -> Result<(bool, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = kubectl_apply(cp, namespace, manifest)?;
        let transient =
            text.contains("failed calling webhook") || text.contains("no endpoints available");
        if !transient || Instant::now() > deadline {
            return Ok((ok, text));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn chart_certificate_and_rules_admit_defaults_and_reject_invalid_objects() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::shared().await?;
    // The project CRD (applied outside Helm) and the VictoriaMetrics test CRDs preflight needs.
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "chart-webhook").await?;

    // Install the chart. It takes the already-served CRD over (the migration path in
    // docs/install.md) and adds 127.0.0.1 to the generated certificate, because the API server
    // reaches the webhook at a loopback url here.
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;
    run_ok(
        cp.helm()?
            .args(["install", RELEASE, chart, "-n", &ns, "--take-ownership"])
            .args(set_args(&["webhook.tls.extraIPAddresses={127.0.0.1}"])),
    )?;
    let manifest = Rendered::parse(&String::from_utf8(
        run_ok(cp.helm()?.args(["get", "manifest", RELEASE, "-n", &ns]))?.stdout,
    )?)?;
    let crd: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crd
        .get("vmdistributed.operator.victoriametrics.com")
        .await?;
    let owner = crd
        .metadata
        .annotations
        .unwrap_or_default()
        .get("meta.helm.sh/release-name")
        .cloned();
    assert_eq!(
        owner.as_deref(),
        Some(RELEASE),
        "the release owns the CRD after --take-ownership"
    );

    // The webhook runs with the certificate and key of the installed Secret ...
    let secret_name = manifest.one("Secret")?["metadata"]["name"]
        .as_str()
        .context("Secret name")?
        .to_owned();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let secret = serde_json::to_value(secrets.get(&secret_name).await?)?;
    let data = secret_data(&secret)?;
    let tls_dir = tempfile::tempdir()?;
    for key in ["tls.crt", "tls.key"] {
        std::fs::write(
            tls_dir.path().join(key),
            data.get(key).with_context(|| format!("Secret key {key}"))?,
        )?;
    }
    // ... and the arguments of the installed Deployment.
    let deployment = manifest.deployment("webhook")?;
    let (tls_port, http_port) = (free_port()?, free_port()?);
    let mut args = local_args(deployment, tls_dir.path(), tls_port, http_port)?;
    ensure!(
        args.iter().any(|a| a == "--preflight"),
        "the chart enables preflight: {args:?}"
    );
    // Preflight talks to the API server as the chart's webhook ServiceAccount, so the dry-runs
    // below run with exactly the RBAC the chart grants.
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .context("serviceAccountName")?;
    let kubeconfig = cp.service_account_kubeconfig(&ns, account, tls_dir.path())?;
    args.push(format!("--kubeconfig={}", kubeconfig.display()));
    let log = cp.log_path("chart-webhook");
    let _webhook =
        cp.spawn(ProcessSpec::new(harness::webhook_binary()?, &log).args(args.clone()))?;
    wait_ready(http_port, Duration::from_secs(30))
        .await
        .with_context(|| {
            format!(
                "webhook {args:?}; log {}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;

    // The installed configurations, with their Service reference replaced by the loopback url.
    // Rules, failurePolicy and the caBundle are the chart's.
    let config_name = manifest.one("ValidatingWebhookConfiguration")?["metadata"]["name"]
        .as_str()
        .context("configuration name")?
        .to_owned();
    redirect_configurations(
        &client,
        &config_name,
        &format!("https://127.0.0.1:{tls_port}"),
    )
    .await?;

    // A valid object gets the defaults the mutating webhook computes.
    let seed_path = harness::workspace_root().join("examples/seed.yaml");
    let seed_yaml = std::fs::read_to_string(&seed_path)?;
    let (ok, text) = apply_through_webhook(cp, &ns, &seed_yaml).await?;
    ensure!(
        ok,
        "kubectl apply of examples/seed.yaml failed:\n{text}\nwebhook log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let seed: shared::api::VMDistributed =
        serde_saphyr::from_str(&seed_yaml).map_err(|e| anyhow!("{e}"))?;
    let expected = serde_json::to_value(&shared::defaults::apply_defaults(&seed).spec)?;
    let vmds =
        harness::resources::dynamic_api_for(&client, Some(&ns), &serde_json::to_value(&seed)?)
            .await?
            .0;
    let stored = serde_json::to_value(vmds.get("demo").await?)?;
    assert_ne!(
        stored["spec"],
        serde_json::to_value(&seed.spec)?,
        "defaults were filled in"
    );
    assert_eq!(
        stored["spec"], expected,
        "the stored spec is the defaulted seed"
    );
    assert_eq!(stored["spec"]["zoneCommon"]["readyTimeout"], "5m");
    assert_eq!(stored["spec"]["zones"][1]["trafficMode"], "read-write");
    ensure!(
        !text.contains("preflight:"),
        "preflight did not accept the seed's children with the chart's RBAC:\n{text}"
    );

    // Preflight really dry-runs the children with the webhook's RBAC: for a typo inside a child's
    // spec the answer comes from the VMCluster schema, not from RBAC (a 403 would say forbidden).
    let mut typo: Value = serde_saphyr::from_str(&seed_yaml).map_err(|e| anyhow!("{e}"))?;
    typo["metadata"]["name"] = json!("demo-typo");
    typo["spec"]["zoneCommon"]["vmcluster"]["spec"]["vmstorage"]["replicaCountt"] = json!(1);
    let (_, text) = apply_through_webhook(cp, &ns, &serde_json::to_string(&typo)?).await?;
    ensure!(
        text.contains("preflight:")
            && text.contains("replicaCountt")
            && !text.contains("forbidden"),
        "the dry-run of the children must reach the VMCluster schema with the chart's RBAC: {text}"
    );
    if vmds.get_opt("demo-typo").await?.is_some() {
        vmds.delete("demo-typo", &Default::default()).await?;
    }

    // An invalid object (two zones with one name) is refused by the chart's validating webhook with
    // the field path.
    let mut invalid: Value = serde_saphyr::from_str(&seed_yaml).map_err(|e| anyhow!("{e}"))?;
    invalid["metadata"]["name"] = json!("demo-duplicate-zone");
    invalid["spec"]["zones"][1]["name"] = json!("zone-a");
    let (ok, text) = apply_through_webhook(cp, &ns, &serde_json::to_string(&invalid)?).await?;
    ensure!(!ok, "a duplicate zone name was admitted:\n{text}");
    ensure!(
        text.contains(&format!(
            "admission webhook \"{VALIDATING_HOOK}\" denied the request"
        )),
        "{text}"
    );
    ensure!(
        text.contains("spec.zones[1].name"),
        "the denial names the field: {text}"
    );
    let absent = vmds.get_opt("demo-duplicate-zone").await?;
    ensure!(absent.is_none(), "the refused object must not be stored");

    // The caBundle is what authenticates the webhook: with another CA in it the API server refuses
    // to talk to the same server (failurePolicy Fail).
    let other = certs::ca::TestCa::new("not-the-chart-ca").map_err(|e| anyhow!("{e}"))?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = validating.get(&config_name).await?;
    for hook in config.webhooks.iter_mut().flatten() {
        hook.client_config.ca_bundle = Some(k8s_openapi::ByteString(other.cert_pem().into_bytes()));
    }
    validating
        .replace(&config_name, &PostParams::default(), &config)
        .await?;
    let mut another: Value = serde_saphyr::from_str(&seed_yaml).map_err(|e| anyhow!("{e}"))?;
    another["metadata"]["name"] = json!("demo-wrong-ca");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = kubectl_apply(cp, &ns, &serde_json::to_string(&another)?)?;
        if !ok && text.contains("x509") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "a webhook behind an untrusted CA was still called: {text}"
        );
        if ok {
            // Admitted before the API server saw the new bundle: remove it and try again.
            vmds.delete("demo-wrong-ca", &Default::default()).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
