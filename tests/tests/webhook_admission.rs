//! The webhook as a separate HTTPS process registered with a real kube-apiserver through
//! Mutating- and ValidatingWebhookConfigurations (`url: https://127.0.0.1:PORT/...`), exercised
//! with `kubectl apply`: defaults stored, every rule rejected with its field path, warnings
//! printed, updates checked against the stored object, preflight against the fixture CRDs.
//!
//! One webhook process (with `--preflight`) serves every test of this binary; each test has its
//! own namespace and its own pair of webhook configurations selecting only that namespace, so
//! tests run in parallel without seeing each other.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use harness::policy::{RefusalPolicy, delete_refusal_policy};
use harness::{ControlPlane, ProcessSpec, SupervisedProcess, create_namespace};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::OnceCell;

/// The running webhook: its HTTPS port and the CA that signed its certificate.
struct Webhook {
    tls_port: u16,
    ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    _process: SupervisedProcess,
    _certs: tempfile::TempDir,
}

static WEBHOOK: OnceCell<Webhook> = OnceCell::const_new();
static PREFLIGHT_WEBHOOK: OnceCell<Webhook> = OnceCell::const_new();

/// The webhook without preflight (admission rules only) or with `--preflight`.
async fn webhook(cp: &ControlPlane, preflight: bool) -> Result<&'static Webhook> {
    let cell = if preflight {
        &PREFLIGHT_WEBHOOK
    } else {
        &WEBHOOK
    };
    cell.get_or_try_init(|| start_webhook(cp, preflight)).await
}

async fn start_webhook(cp: &ControlPlane, preflight: bool) -> Result<Webhook> {
    let ca = certs::TestCa::new("vmdistributed-webhook-test-ca")?;
    let pair = ca.issue_serving("vmdistributed-webhook", &["127.0.0.1", "localhost"])?;
    let dir = tempfile::tempdir()?;
    certs::secret_volume::publish(
        dir.path(),
        &[
            ("tls.crt", pair.cert_pem.as_bytes()),
            ("tls.key", pair.key_pem.as_bytes()),
        ],
    )?;
    let log = cp.log_path("webhook");
    let spec = ProcessSpec::new(harness::webhook_binary()?, &log).args([
        "serve".to_owned(),
        format!("--preflight={preflight}"),
        "--tls-addr=127.0.0.1:0".to_owned(),
        "--http-addr=127.0.0.1:0".to_owned(),
        format!("--tls-cert-file={}", dir.path().join("tls.crt").display()),
        format!("--tls-key-file={}", dir.path().join("tls.key").display()),
        format!("--kubeconfig={}", cp.kubeconfig_path().display()),
        "--log-format=json".to_owned(),
        "--log-level=info".to_owned(),
    ]);
    let process = cp.spawn(spec)?;
    let (tls_port, http_port) = wait_for_listen_line(&log).await?;
    wait_ready(http_port).await?;
    Ok(Webhook {
        tls_port,
        ca_pem: ca.cert_pem(),
        ca_der: ca.cert_der(),
        _process: process,
        _certs: dir,
    })
}

/// The JSON log line announcing the listeners.
async fn wait_for_listen_line(log: &PathBuf) -> Result<(u16, u16)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let port = |field: &str| {
                entry[field]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            };
            if let (Some(tls), Some(http)) = (port("tls_addr"), port("http_addr")) {
                return Ok((tls, http));
            }
        }
        if Instant::now() > deadline {
            bail!("webhook did not start listening; log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(http_port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", http_port))?;
            stream.write_all(
                b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
            )?;
            let mut out = String::new();
            stream.read_to_string(&mut out)?;
            Ok(out)
        })
        .await?;
        if answer
            .as_deref()
            .is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("webhook /readyz never answered 200: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A namespace whose VMDistributed objects go through the webhook; the configurations are
/// deleted on drop.
struct Scope {
    ns: String,
    config_name: String,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let name = self.config_name.clone();
        // Best effort from a synchronous drop, on a runtime of its own with a client of its own
        // (the test's client is bound to the test's runtime, which this drop blocks). The
        // configurations only select this test's namespace anyway.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(cp) = ControlPlane::shared().await else {
                    return;
                };
                let Ok(client) = cp.client().await else {
                    return;
                };
                let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .delete(&name, &DeleteParams::default())
                    .await;
                let _ = Api::<ValidatingWebhookConfiguration>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}

fn rules() -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        api_groups: Some(vec!["operator.victoriametrics.com".to_owned()]),
        api_versions: Some(vec!["v1alpha1".to_owned()]),
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        resources: Some(vec!["vmdistributed".to_owned()]),
        scope: Some("Namespaced".to_owned()),
    }]
}

fn client_config(hook: &Webhook, path: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        url: Some(format!("https://127.0.0.1:{}{path}", hook.tls_port)),
        ca_bundle: Some(ByteString(hook.ca_pem.as_bytes().to_vec())),
        service: None,
    }
}

fn only_namespace(ns: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())].into()),
        ..LabelSelector::default()
    }
}

/// A fresh namespace with both webhook configurations registered for it, once the API server
/// demonstrably calls them.
async fn scope(prefix: &str, preflight: bool) -> Result<(Scope, &'static ControlPlane)> {
    harness::install_crypto_provider();
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let hook = webhook(cp, preflight).await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, prefix).await?;
    let config_name = format!("vmdistributed-test-{ns}");
    let meta = ObjectMeta {
        name: Some(config_name.clone()),
        ..ObjectMeta::default()
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: "mutate.vmdistributed.operator.victoriametrics.com".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: client_config(hook, "/mutate"),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            namespace_selector: Some(only_namespace(&ns)),
            rules: Some(rules()),
            timeout_seconds: Some(10),
            ..MutatingWebhook::default()
        }]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.vmdistributed.operator.victoriametrics.com".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: client_config(hook, "/validate"),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            namespace_selector: Some(only_namespace(&ns)),
            rules: Some(rules()),
            timeout_seconds: Some(10),
            ..ValidatingWebhook::default()
        }]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .context("creating the MutatingWebhookConfiguration")?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .context("creating the ValidatingWebhookConfiguration")?;
    let scope = Scope { ns, config_name };
    // The API server picks up new configurations asynchronously: wait until both act.
    let probe = manifest("probe", "  zones: [{name: Not_A_Label}]");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl_apply(cp, &scope.ns, &probe, &["--dry-run=server"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr
            .contains("validate.vmdistributed.operator.victoriametrics.com\" denied the request")
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the webhook configurations never took effect: {stderr}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((scope, cp))
}

/// A VMDistributed manifest with the given spec lines (indented by two spaces).
fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: operator.victoriametrics.com/v1alpha1\nkind: VMDistributed\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

/// A valid two-zone spec with `extra` spec lines added (`zoneCommon` included).
fn valid_spec(extra: &str) -> String {
    format!(
        "{extra}  zoneCommon:\n    vmcluster:\n      spec:\n        vmstorage: {{replicaCount: 1}}\n        vmselect: {{replicaCount: 1}}\n        vminsert: {{replicaCount: 1}}\n  zones: [{{name: zone-a}}, {{name: zone-b}}]"
    )
}

fn kubectl_apply(cp: &ControlPlane, ns: &str, yaml: &str, extra: &[&str]) -> Result<Output> {
    let mut child = cp
        .kubectl()
        .args(["apply", "-n", ns, "-f", "-"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("kubectl stdin"))?
        .write_all(yaml.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// Apply and expect success; returns stderr (where kubectl prints warnings).
fn apply_ok(cp: &ControlPlane, ns: &str, yaml: &str) -> Result<String> {
    let out = kubectl_apply(cp, ns, yaml, &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("kubectl apply failed: {stderr}\n{yaml}");
    }
    Ok(stderr)
}

/// Apply and expect a denial; returns stderr.
fn apply_denied(cp: &ControlPlane, ns: &str, yaml: &str) -> Result<String> {
    let out = kubectl_apply(cp, ns, yaml, &[])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        bail!("kubectl apply succeeded but should have been denied:\n{yaml}\n{stderr}");
    }
    Ok(stderr)
}

fn get_yaml(cp: &ControlPlane, ns: &str, name: &str) -> Result<Value> {
    let out = cp
        .kubectl()
        .args(["get", "vmd", name, "-n", ns, "-o", "yaml"])
        .output()?;
    if !out.status.success() {
        bail!("kubectl get: {}", String::from_utf8_lossy(&out.stderr));
    }
    let docs = harness::parse_yaml_documents(&String::from_utf8_lossy(&out.stdout))?;
    docs.into_iter()
        .next()
        .ok_or_else(|| anyhow!("kubectl get printed nothing"))
}

#[tokio::test]
async fn apply_of_the_seed_example_stores_the_defaults() -> Result<()> {
    let (scope, cp) = scope("webhook-seed", false).await?;
    let seed = std::fs::read_to_string(harness::workspace_root().join("examples/seed.yaml"))?;
    apply_ok(cp, &scope.ns, &seed)?;
    let stored = get_yaml(cp, &scope.ns, "demo")?;
    let spec = &stored["spec"];
    assert_eq!(spec["zoneCommon"]["readyTimeout"], "5m", "{spec}");
    assert_eq!(spec["zoneCommon"]["updatePause"], "1m");
    assert_eq!(spec["vmauth"]["enabled"], true);
    assert_eq!(
        spec["vmauth"]["spec"]["replicaCount"], 1,
        "user values kept"
    );
    assert_eq!(spec["backendType"], "VMCluster");
    assert_eq!(spec["zoneRemovalPolicy"], "Retain");
    for zone in spec["zones"].as_array().unwrap() {
        assert_eq!(zone["trafficMode"], "read-write", "{zone}");
    }
    assert_eq!(
        spec["zoneCommon"]["vmcluster"]["spec"]["retentionPeriod"],
        "14"
    );
    // Applying the same manifest again changes nothing and is allowed.
    let again = apply_ok(cp, &scope.ns, &seed)?;
    assert!(!again.contains("denied"), "{again}");
    Ok(())
}

#[tokio::test]
async fn every_validation_rule_is_rejected_with_its_field_path() -> Result<()> {
    let (scope, cp) = scope("webhook-rules", false).await?;
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("no zones", manifest("r1", "  zones: []"), &["spec.zones"]),
        (
            "zone name not a DNS label",
            manifest("r2", &valid_spec("").replace("zone-a", "Zone_A")),
            &["spec.zones[0].name", "DNS-1123"],
        ),
        (
            "duplicate zone name",
            manifest("r3", &valid_spec("").replace("zone-b", "zone-a")),
            &["spec.zones[1].name"],
        ),
        (
            "child name too long",
            manifest(
                "r4",
                &valid_spec("").replace(
                    "{name: zone-a}",
                    &format!("{{name: zone-a, vmcluster: {{name: {}}}}}", "c".repeat(43)),
                ),
            ),
            &["spec.zones[0].vmcluster.name", "at most 42"],
        ),
        (
            "common name without %ZONE%",
            manifest(
                "r5",
                &valid_spec("").replace("    vmcluster:\n", "    vmcluster:\n      name: shared\n"),
            ),
            &["spec.zoneCommon.vmcluster.name", "%ZONE%"],
        ),
        (
            "name and ref",
            manifest(
                "r6",
                &valid_spec("").replace(
                    "{name: zone-a}",
                    "{name: zone-a, vmcluster: {name: one, ref: {name: two}}}",
                ),
            ),
            &["spec.zones[0].vmcluster"],
        ),
        (
            "%ZONE% in a zone-level field",
            manifest(
                "r7",
                &valid_spec("").replace(
                    "{name: zone-a}",
                    "{name: zone-a, vmagent: {name: agent-%ZONE%}}",
                ),
            ),
            &["spec.zones[0].vmagent.name", "%ZONE%"],
        ),
        (
            "readyTimeout too short and updatePause unparsable",
            manifest(
                "r8",
                &valid_spec("").replace(
                    "  zoneCommon:\n",
                    "  zoneCommon:\n    readyTimeout: 500ms\n    updatePause: soon\n",
                ),
            ),
            &[
                "spec.zoneCommon.readyTimeout",
                "spec.zoneCommon.updatePause",
            ],
        ),
        (
            "unknown trafficMode",
            manifest(
                "r9",
                &valid_spec("").replace("{name: zone-b}", "{name: zone-b, trafficMode: sideways}"),
            ),
            &["spec.zones[1].trafficMode"],
        ),
        (
            "VMSingle settings with backendType VMCluster",
            manifest(
                "r10",
                &valid_spec("").replace(
                    "  zoneCommon:\n",
                    "  zoneCommon:\n    vmsingle:\n      spec: {retentionPeriod: \"1\"}\n",
                ),
            ),
            &["spec.zoneCommon.vmsingle", "backendType"],
        ),
        (
            "created VMCluster without vminsert and vmselect",
            manifest(
                "r11",
                "  zoneCommon:\n    vmcluster:\n      spec: {vmstorage: {replicaCount: 1}}\n  zones: [{name: zone-a}, {name: zone-b}]",
            ),
            &["spec.zones[0].vmcluster.spec", "vminsert and vmselect"],
        ),
    ];
    for (what, yaml, needles) in cases {
        let stderr = apply_denied(cp, &scope.ns, &yaml).with_context(|| what.to_owned())?;
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} missing in:\n{stderr}"
            );
        }
    }
    // The webhook itself denied these (not only the schema): its name is in the message.
    let stderr = apply_denied(
        cp,
        &scope.ns,
        &manifest("r12", &valid_spec("").replace("zone-b", "zone-a")),
    )?;
    assert!(
        stderr.contains("admission webhook \"validate.vmdistributed.operator.victoriametrics.com\" denied the request"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn cross_namespace_ref_is_rejected_with_the_spec_message() -> Result<()> {
    let (scope, cp) = scope("webhook-xns", false).await?;
    let yaml = manifest(
        "xns",
        &valid_spec("").replace(
            "{name: zone-b}",
            "{name: zone-b, vmcluster: {ref: {name: shared, namespace: elsewhere}}}",
        ),
    );
    let stderr = apply_denied(cp, &scope.ns, &yaml)?;
    let expected = format!(
        "spec.zones[1].vmcluster.ref.namespace: cross-namespace reference: VMDistributed {}/xns cannot reference VMCluster elsewhere/shared",
        scope.ns
    );
    assert!(
        stderr.contains(&expected),
        "{expected:?} missing in:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_prints_the_warnings() -> Result<()> {
    let (scope, cp) = scope("webhook-warn", false).await?;
    let single = manifest(
        "single",
        "  zoneCommon:\n    vmcluster:\n      spec: {vminsert: {}, vmselect: {}, vmstorage: {}}\n  zones: [{name: zone-a}]",
    );
    let stderr = apply_ok(cp, &scope.ns, &single)?;
    assert!(
        stderr.contains("Warning: spec.zones: a single zone"),
        "{stderr}"
    );
    let adopt = manifest("adopt", "  zones: [{name: zone-a}, {name: zone-b}]");
    let stderr = apply_ok(cp, &scope.ns, &adopt)?;
    assert!(
        stderr.contains("Warning: spec.zones[0].vmcluster")
            && stderr.contains("must already exist"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn updates_are_checked_against_the_stored_object() -> Result<()> {
    let (scope, cp) = scope("webhook-update", false).await?;
    let three = manifest(
        "upd",
        &valid_spec("").replace("{name: zone-b}]", "{name: zone-b}, {name: zone-c}]"),
    );
    apply_ok(cp, &scope.ns, &three)?;

    // Renaming zone-b's cluster is denied, naming old and new and how to do it deliberately.
    let rename = three.replace(
        "{name: zone-b}",
        "{name: zone-b, vmcluster: {name: upd-b-new}}",
    );
    let stderr = apply_denied(cp, &scope.ns, &rename)?;
    for needle in [
        "spec.zones[1].vmcluster.name",
        "\"upd-zone-b\"",
        "\"upd-b-new\"",
        "remove the zone",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing in:\n{stderr}");
    }
    assert_eq!(
        get_yaml(cp, &scope.ns, "upd")?["spec"]["zones"][1].get("vmcluster"),
        None
    );

    // Removing zone-c is allowed with a warning naming the released children.
    let two = manifest("upd", &valid_spec(""));
    let stderr = apply_ok(cp, &scope.ns, &two)?;
    assert!(
        stderr.contains("Warning: spec.zones: zone \"zone-c\" is removed")
            && stderr.contains("upd-zone-c"),
        "{stderr}"
    );
    assert_eq!(
        get_yaml(cp, &scope.ns, "upd")?["spec"]["zones"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Metadata-only changes are never blocked.
    let out = cp
        .kubectl()
        .args(["label", "vmd", "upd", "-n", &scope.ns, "team=metrics"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn preflight_catches_a_typo_inside_zone_common_vmcluster_spec() -> Result<()> {
    let (scope, cp) = scope("webhook-preflight", true).await?;
    // The shared VMAuth is left out: this test is about the zones' VMClusters.
    let no_vmauth = "  vmauth: {enabled: false}\n";
    let typo = manifest(
        "pf",
        &valid_spec(no_vmauth).replace(
            "vmstorage: {replicaCount: 1}",
            "vmstorage: {replicaCont: 1}",
        ),
    );
    let stderr = apply_denied(cp, &scope.ns, &typo)?;
    // Named by the field the user wrote, once for both zones that inherit it.
    for needle in [
        "preflight: spec.zoneCommon.vmcluster.spec.vmstorage.replicaCont: field not declared in schema",
        "refused for VMCluster pf-zone-a in zone zone-a, VMCluster pf-zone-b in zone zone-b",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing in:\n{stderr}");
    }
    assert_eq!(stderr.matches("replicaCont").count(), 1, "{stderr}");
    // The same object without the typo passes preflight (and nothing was created by the dry-run).
    let stderr = apply_ok(cp, &scope.ns, &manifest("pf", &valid_spec(no_vmauth)))?;
    assert!(!stderr.contains("preflight"), "{stderr}");
    let out = cp
        .kubectl()
        .args(["get", "vmclusters", "-n", &scope.ns, "-o", "name"])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "dry-runs create nothing"
    );
    Ok(())
}

/// The VMAuth is dry-run as the controller writes it once zones are ready (every zone routed,
/// and each zone taken out), not only as it is first created (routing nothing). The real
/// VictoriaMetrics CRDs accept every such shape, so a cluster policy stands in for what refuses
/// one: a ValidatingAdmissionPolicy (in the API server, like another admission webhook) that
/// forbids VMAuths routing to clusters named `legacy-*`.
#[tokio::test]
async fn preflight_denies_a_spec_whose_vmauth_with_members_is_refused() -> Result<()> {
    let (scope, cp) = scope("webhook-pf-auth", true).await?;
    let client = cp.client().await?;
    let policy = format!("no-legacy-routes-{}", scope.ns);
    RefusalPolicy {
        name: &policy,
        namespace: &scope.ns,
        api_version: "v1beta1",
        operations: &["CREATE", "UPDATE"],
        resource: "vmauths",
        validation: "!has(object.spec.defaultTargetRefs) || object.spec.defaultTargetRefs.all(t, !has(t.crd) || !has(t.crd.objects) || t.crd.objects.all(o, !o.name.startsWith('legacy-')))",
        message: "VMAuths may not route to legacy clusters",
    }
    .apply(&client)
    .await?;
    let legacy = manifest(
        "pfa",
        &valid_spec("").replace(
            "{name: zone-b}",
            "{name: zone-b, vmcluster: {name: legacy-b}}",
        ),
    );
    // The policy takes effect asynchronously: wait until the API server applies it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stderr = loop {
        let out = kubectl_apply(cp, &scope.ns, &legacy, &["--dry-run=server"])?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            break stderr;
        }
        if Instant::now() > deadline {
            bail!("the VMAuth routing legacy-b was never refused:\n{stderr}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for needle in [
        "preflight: VMAuth pfa, VMAuth pfa without zone zone-a rejected by the API server",
        "ValidatingAdmissionPolicy",
        "VMAuths may not route to legacy clusters",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing in:\n{stderr}");
    }
    // The shapes that do not route legacy-b pass: the first VMAuth (no zone) and the one
    // without zone-b.
    assert!(!stderr.contains("routing no zone"), "{stderr}");
    assert!(!stderr.contains("without zone zone-b"), "{stderr}");
    // Without a VMAuth the same zones are accepted: the refusal was the VMAuth's.
    apply_ok(
        cp,
        &scope.ns,
        &manifest(
            "pfa",
            &valid_spec("  vmauth: {enabled: false}\n").replace(
                "{name: zone-b}",
                "{name: zone-b, vmcluster: {name: legacy-b}}",
            ),
        ),
    )?;
    // Best effort: the binding selects only this test's namespace.
    let _ = delete_refusal_policy(&client, &policy).await;
    Ok(())
}

/// A VMAuth another VMDistributed claims (its `operator.victoriametrics.com/vmdistributed` label)
/// would never be written by this one: admission says so with a warning.
#[tokio::test]
async fn a_vmauth_claimed_by_another_object_gets_a_warning() -> Result<()> {
    let (scope, cp) = scope("webhook-claim", true).await?;
    let client = cp.client().await?;
    harness::apply_yaml(
        &client,
        Some(&scope.ns),
        "apiVersion: operator.victoriametrics.com/v1beta1\nkind: VMAuth\nmetadata:\n  name: shared-auth\n  labels: {operator.victoriametrics.com/vmdistributed: first}\nspec: {}\n",
    )
    .await?;
    let second = manifest("second", &valid_spec("  vmauth: {name: shared-auth}\n"));
    let stderr = apply_ok(cp, &scope.ns, &second)?;
    let expected = format!(
        "Warning: spec.vmauth.name: VMAuth {}/shared-auth is already claimed by VMDistributed first",
        scope.ns
    );
    assert!(
        stderr.contains(&expected),
        "{expected:?} missing in:\n{stderr}"
    );
    // The owner itself gets no such warning.
    let first = manifest("first", &valid_spec("  vmauth: {name: shared-auth}\n"));
    let stderr = apply_ok(cp, &scope.ns, &first)?;
    assert!(!stderr.contains("already claimed"), "{stderr}");
    Ok(())
}

/// A TLS connection to the webhook's HTTPS port, trusting its test CA.
async fn connect(hook: &Webhook) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(hook.ca_der.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", hook.tls_port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    Ok(
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await?,
    )
}

/// Read an HTTP/1.1 answer until the server closes the connection (or `limit` passes);
/// (status code, body).
async fn read_answer(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> Result<(u16, String)> {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            // The answer is complete once its declared body is there.
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|len| body.len() >= len) {
                    break;
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    if read.is_err() && !text.contains("\r\n\r\n") {
        bail!("no answer within {limit:?} (got {text:?})");
    }
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The bench review of a 3-zone object, with `zones` zones instead.
fn review_with_zones(zones: usize) -> Result<Vec<u8>> {
    let mut review: Value = serde_json::from_str(&std::fs::read_to_string(
        harness::workspace_root().join("webhook/bench/review-3zones.json"),
    )?)?;
    review["request"]["object"]["spec"]["zones"] = (0..zones)
        .map(|i| serde_json::json!({"name": format!("zone-{i}")}))
        .collect::<Vec<_>>()
        .into();
    Ok(serde_json::to_vec(&review)?)
}

/// More than 16 zones: the CRD refuses the object (`maxItems`) before the validating webhook
/// sees it, and the webhook itself denies it too (for a CRD installed without the limit, and
/// `check`), with the field path and the limit.
#[tokio::test]
async fn more_than_sixteen_zones_are_refused_by_the_crd_and_the_webhook() -> Result<()> {
    let (scope, cp) = scope("zonelimit", false).await?;
    let zones: Vec<String> = (0..17).map(|i| format!("{{name: zone-{i}}}")).collect();
    let spec = format!(
        "  zoneCommon:\n    vmcluster:\n      spec: {{vminsert: {{}}, vmselect: {{}}, vmstorage: {{}}}}\n  zones: [{}]",
        zones.join(", ")
    );
    let stderr = apply_denied(cp, &scope.ns, &manifest("seventeen", &spec))?;
    assert!(
        stderr.contains("spec.zones") && stderr.contains("must have at most 16 items"),
        "{stderr}"
    );
    // Sixteen are fine.
    let sixteen: Vec<String> = (0..16).map(|i| format!("{{name: zone-{i}}}")).collect();
    let spec = format!(
        "  zoneCommon:\n    vmcluster:\n      spec: {{vminsert: {{}}, vmselect: {{}}, vmstorage: {{}}}}\n  zones: [{}]",
        sixteen.join(", ")
    );
    apply_ok(cp, &scope.ns, &manifest("sixteen", &spec))?;

    let hook = webhook(cp, false).await?;
    let body = review_with_zones(17)?;
    let mut stream = connect(hook).await?;
    stream
        .write_all(
            format!(
                "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    stream.write_all(&body).await?;
    let (code, answer) = read_answer(&mut stream, Duration::from_secs(10)).await?;
    assert_eq!(code, 200, "{answer}");
    let review: Value = serde_json::from_str(&answer)?;
    assert_eq!(review["response"]["allowed"], false, "{answer}");
    let message = review["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("spec.zones: at most 16 zones are supported, got 17"),
        "{message}"
    );
    Ok(())
}

/// A request that declares a body over the limit is answered 413 at once, before any of the
/// body is sent, and many such requests (each sending part of a huge body) leave the webhook's
/// memory where it was.
#[tokio::test]
async fn request_bodies_over_the_limit_are_refused_before_they_are_read() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let hook = webhook(cp, false).await?;
    let pid = hook._process.pid();
    let head = |length: u64| {
        format!(
            "POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    // Just over 8 MiB: refused without waiting for it.
    let mut stream = connect(hook).await?;
    stream
        .write_all(head(8 * 1024 * 1024 + 1).as_bytes())
        .await?;
    let (code, body) = read_answer(&mut stream, Duration::from_secs(3)).await?;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("8 MiB"), "{body}");

    let before = harness::operator_world::rss_bytes(pid)?;
    let chunk = vec![b' '; 64 * 1024];
    let requests = (0..32).map(|_| {
        let chunk = &chunk;
        let head = head(1 << 30);
        async move {
            let mut stream = connect(hook).await?;
            stream.write_all(head.as_bytes()).await?;
            // The answer comes before any of the gigabyte is sent.
            let answer = read_answer(&mut stream, Duration::from_secs(10)).await?;
            // Whatever is sent after it is not taken in: the server closes the connection or
            // stops reading (then the writes block, hence the time limit).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                for _ in 0..16 {
                    if stream.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            })
            .await;
            Ok::<_, anyhow::Error>(answer)
        }
    });
    for answer in futures::future::join_all(requests).await {
        let (code, body) = answer?;
        assert_eq!(code, 413, "{body}");
    }
    let after = harness::operator_world::rss_bytes(pid)?;
    assert!(
        after < before + 16 * 1024 * 1024,
        "the webhook grew from {before} to {after} bytes"
    );
    Ok(())
}
