//! The chart rendered offline (`helm lint --strict`, `helm template`) for every certificate mode
//! and CRD setting, parsed and checked object by object.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, ensure};
use harness::chart::{
    NAMESPACE, RELEASE, chart_dir, decoded_ca_bundles, helm, run_ok, secret_data, set_args,
    template, template_error, verify_serving_certificate,
};
use serde_json::{Value, json};

const WEBHOOK_SERVICE: &str = "vmd-vmdistributed-webhook";

/// Value sets covering each TLS mode, CRDs on and off, and the optional objects.
const VARIANTS: &[&[&str]] = &[
    &[],
    &["webhook.tls.mode=certManager"],
    &[
        "webhook.tls.mode=certManager",
        "webhook.tls.certManager.issuerRef.name=corp-ca",
        "webhook.tls.certManager.issuerRef.kind=ClusterIssuer",
    ],
    &[
        "webhook.tls.mode=secret",
        "webhook.tls.secret.name=my-tls",
        "webhook.tls.secret.caBundle=Zm9v",
    ],
    &["crds.install=false"],
    &[
        "crds.keep=false",
        "webhook.preflight.enabled=false",
        "controller.leaderElection.enabled=false",
        "controller.replicas=1",
    ],
    &[
        "metrics.serviceMonitor.enabled=true",
        "metrics.vmServiceScrape.enabled=true",
    ],
];

#[test]
fn lint_strict_passes_for_every_variant() -> Result<()> {
    for sets in VARIANTS {
        let output = run_ok(
            helm()?
                .args(["lint", "--strict"])
                .arg(chart_dir())
                .args(set_args(sets)),
        )
        .with_context(|| format!("helm lint --strict with {sets:?}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            stdout.contains("0 chart(s) failed"),
            "lint with {sets:?}: {stdout}"
        );
        ensure!(
            !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
            "lint with {sets:?}: {stdout}"
        );
    }
    Ok(())
}

#[test]
fn generated_mode_ca_bundle_signs_the_serving_certificate() -> Result<()> {
    let rendered = template(&["webhook.tls.extraDNSNames={webhook.example.internal}"])?;
    let secret = rendered.named("Secret", &format!("{WEBHOOK_SERVICE}-tls"))?;
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let data = secret_data(secret)?;
    let (ca, crt, key) = (
        data.get("ca.crt").context("ca.crt")?,
        data.get("tls.crt").context("tls.crt")?,
        data.get("tls.key").context("tls.key")?,
    );

    // Both configurations carry exactly the CA of the Secret.
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let bundles = decoded_ca_bundles(rendered.one(kind)?)?;
        assert_eq!(bundles.len(), 1, "{kind} has one webhook");
        assert_eq!(&bundles[0], ca, "{kind} caBundle is the Secret's ca.crt");
    }

    // The serving certificate chains to that CA for every name the API server may use.
    let svc = WEBHOOK_SERVICE;
    let names = [
        svc.to_owned(),
        format!("{svc}.{NAMESPACE}"),
        format!("{svc}.{NAMESPACE}.svc"),
        format!("{svc}.{NAMESPACE}.svc.cluster.local"),
        "webhook.example.internal".to_owned(),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    verify_serving_certificate(ca, crt, key, &names)?;

    // The verification is real: other names and other CAs are refused.
    assert!(verify_serving_certificate(ca, crt, key, &["other.vmd-system.svc"]).is_err());
    let unrelated = certs::ca::TestCa::new("unrelated").map_err(|e| anyhow!("{e}"))?;
    assert!(verify_serving_certificate(unrelated.cert_pem().as_bytes(), crt, key, &names).is_err());

    // The webhook mounts that Secret as a directory and is pointed at the files in it.
    let deployment = rendered.deployment("webhook")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|v| v["secret"]["secretName"] == secret["metadata"]["name"])
        })
        .context("a volume of the TLS Secret")?;
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == volume["name"]))
        .context("the TLS volume is mounted")?;
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees Secret updates"
    );
    let dir = mount["mountPath"].as_str().context("mountPath")?;
    let args = container_args(deployment)?;
    assert!(
        args.contains(&format!("--tls-cert-file={dir}/tls.crt")),
        "{args:?}"
    );
    assert!(
        args.contains(&format!("--tls-key-file={dir}/tls.key")),
        "{args:?}"
    );
    Ok(())
}

#[test]
fn extra_ip_addresses_are_in_the_generated_certificate() -> Result<()> {
    let rendered = template(&["webhook.tls.extraIPAddresses={127.0.0.1}"])?;
    let data = secret_data(rendered.named("Secret", &format!("{WEBHOOK_SERVICE}-tls"))?)?;
    verify_serving_certificate(
        &data["ca.crt"],
        &data["tls.crt"],
        &data["tls.key"],
        &["127.0.0.1"],
    )?;
    // Without the value, the address is not in the certificate.
    let rendered = template(&[])?;
    let data = secret_data(rendered.named("Secret", &format!("{WEBHOOK_SERVICE}-tls"))?)?;
    assert!(
        verify_serving_certificate(
            &data["ca.crt"],
            &data["tls.crt"],
            &data["tls.key"],
            &["127.0.0.1"]
        )
        .is_err()
    );
    Ok(())
}

#[test]
fn cert_manager_mode_injects_the_ca_of_its_certificate() -> Result<()> {
    let rendered = template(&["webhook.tls.mode=certManager"])?;
    assert_eq!(
        rendered.of_kind("Secret").count(),
        0,
        "cert-manager writes the Secret"
    );
    let certificate = rendered.named("Certificate", WEBHOOK_SERVICE)?;
    let secret_name = certificate["spec"]["secretName"]
        .as_str()
        .context("secretName")?;
    let dns: Vec<&str> = certificate["spec"]["dnsNames"]
        .as_array()
        .context("dnsNames")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        dns.contains(&format!("{WEBHOOK_SERVICE}.{NAMESPACE}.svc").as_str()),
        "{dns:?}"
    );
    assert!(
        certificate["spec"]["usages"]
            .as_array()
            .is_some_and(|u| u.contains(&json!("server auth"))),
        "{certificate}"
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = rendered.one(kind)?;
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{NAMESPACE}/{WEBHOOK_SERVICE}"),
            "{kind} names the Certificate whose CA cert-manager injects"
        );
        assert_eq!(
            config["webhooks"][0]["clientConfig"].get("caBundle"),
            None,
            "{kind}: injected, not rendered"
        );
    }
    assert_eq!(mounted_secret(&rendered)?, secret_name);

    // Without an issuerRef the chart brings a self-signed root, a CA certificate and a CA issuer,
    // and the serving certificate is issued by that CA issuer.
    let ca_issuer = certificate["spec"]["issuerRef"]["name"]
        .as_str()
        .context("issuerRef.name")?;
    let issuer = rendered.named("Issuer", ca_issuer)?;
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .context("CA issuer secretName")?;
    let ca_cert = rendered
        .of_kind("Certificate")
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .context("a Certificate for the CA Secret")?;
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root = rendered.named(
        "Issuer",
        ca_cert["spec"]["issuerRef"]["name"]
            .as_str()
            .context("root")?,
    )?;
    assert!(root["spec"]["selfSigned"].is_object());

    // With an issuerRef, that issuer signs and the chart creates no issuers of its own.
    let rendered = template(&[
        "webhook.tls.mode=certManager",
        "webhook.tls.certManager.issuerRef.name=corp-ca",
        "webhook.tls.certManager.issuerRef.kind=ClusterIssuer",
    ])?;
    assert_eq!(rendered.of_kind("Issuer").count(), 0);
    assert_eq!(rendered.of_kind("Certificate").count(), 1);
    let certificate = rendered.one("Certificate")?;
    assert_eq!(
        certificate["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer"})
    );
    Ok(())
}

#[test]
fn secret_mode_uses_the_users_secret_and_ca_bundle() -> Result<()> {
    let bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let ca_set = format!("webhook.tls.secret.caBundle={bundle}");
    let rendered = template(&[
        "webhook.tls.mode=secret",
        "webhook.tls.secret.name=my-tls",
        &ca_set,
    ])?;
    assert_eq!(
        rendered.of_kind("Secret").count(),
        0,
        "the user's Secret is not rendered"
    );
    assert_eq!(rendered.of_kind("Certificate").count(), 0);
    assert_eq!(mounted_secret(&rendered)?, "my-tls");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert_eq!(
            rendered.one(kind)?["webhooks"][0]["clientConfig"]["caBundle"],
            bundle,
            "{kind}"
        );
    }
    let error = template_error(&["--set", "webhook.tls.mode=secret", "--set", &ca_set])?;
    assert!(
        error.contains("webhook.tls.secret.name is required when webhook.tls.mode is secret"),
        "{error}"
    );
    let error = template_error(&[
        "--set",
        "webhook.tls.mode=secret",
        "--set",
        "webhook.tls.secret.name=my-tls",
    ])?;
    assert!(error.contains("webhook.tls.secret.caBundle"), "{error}");
    Ok(())
}

#[test]
fn crd_is_the_generated_one_and_can_be_left_out() -> Result<()> {
    let generated: Value =
        serde_saphyr::from_str(&shared::crd::crd_yaml()).map_err(|e| anyhow!("{e}"))?;
    let rendered = template(&[])?;
    let mut crd = rendered.one("CustomResourceDefinition")?.clone();
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        crd["metadata"]["labels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    // Apart from the release's labels and the keep annotation it is exactly the generated CRD.
    let meta = crd["metadata"].as_object_mut().context("metadata")?;
    meta.remove("labels");
    meta.remove("annotations");
    assert_eq!(
        crd, generated,
        "the chart renders files/crds/vmdistributed.yaml unchanged"
    );

    let rendered = template(&["crds.keep=false"])?;
    let crd = rendered.one("CustomResourceDefinition")?;
    assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());

    let rendered = template(&["crds.install=false"])?;
    assert_eq!(rendered.of_kind("CustomResourceDefinition").count(), 0);
    // Everything else is still there.
    assert_eq!(rendered.of_kind("Deployment").count(), 2);
    assert_eq!(rendered.of_kind("MutatingWebhookConfiguration").count(), 1);
    Ok(())
}

/// (apiGroup, resource, resourceName or "") → verbs.
type Grants = BTreeMap<(String, String, String), BTreeSet<String>>;

/// (apiGroup, resource, resourceNames) → verbs. Every rule of every Role and ClusterRole must be
/// covered, and with the defaults every entry must be present.
fn allowed_rules(lease: &str) -> Grants {
    let entry = |group: &str, resource: &str, names: &str, verbs: &[&str]| {
        (
            (group.to_owned(), resource.to_owned(), names.to_owned()),
            verbs
                .iter()
                .map(|v| (*v).to_owned())
                .collect::<BTreeSet<_>>(),
        )
    };
    let vm = "operator.victoriametrics.com";
    let mut rules: BTreeMap<_, _> = [
        entry(vm, "vmdistributed", "", &["get", "list", "watch", "patch"]),
        entry(vm, "vmdistributed/status", "", &["update"]),
        entry(vm, "vmdistributed/finalizers", "", &["update"]),
        entry("events.k8s.io", "events", "", &["create", "patch"]),
        entry(
            "discovery.k8s.io",
            "endpointslices",
            "",
            &["get", "list", "watch"],
        ),
        entry(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            &["create"],
        ),
        entry("coordination.k8s.io", "leases", "", &["create"]),
        entry("coordination.k8s.io", "leases", lease, &["get", "patch"]),
    ]
    .into_iter()
    .collect();
    // The CRDs, by name: checked at start and watched while running.
    for crd in [
        "vmdistributed",
        "vmclusters",
        "vmsingles",
        "vmagents",
        "vmauths",
    ] {
        let (key, verbs) = entry(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            &format!("{crd}.operator.victoriametrics.com"),
            &["get", "list", "watch"],
        );
        rules.insert(key, verbs);
    }
    for child in ["vmclusters", "vmsingles", "vmagents", "vmauths"] {
        // Controller: observe, create, apply, delete. Webhook preflight: dry-run create/apply.
        let (key, verbs) = entry(
            vm,
            child,
            "",
            &["get", "list", "watch", "create", "patch", "delete"],
        );
        rules.insert(key, verbs);
    }
    rules
}

/// Every (group, resource, names) → verbs granted by the render's Roles and ClusterRoles, per
/// subject ServiceAccount.
fn granted(rendered: &harness::chart::Rendered) -> Result<BTreeMap<String, Grants>> {
    let mut out: BTreeMap<String, Grants> = BTreeMap::new();
    for binding_kind in ["ClusterRoleBinding", "RoleBinding"] {
        for binding in rendered.of_kind(binding_kind) {
            let role_kind = binding["roleRef"]["kind"]
                .as_str()
                .context("roleRef.kind")?;
            let role = rendered.named(
                role_kind,
                binding["roleRef"]["name"]
                    .as_str()
                    .context("roleRef.name")?,
            )?;
            for subject in binding["subjects"].as_array().context("subjects")? {
                assert_eq!(subject["kind"], "ServiceAccount");
                assert_eq!(subject["namespace"], NAMESPACE);
                let account = subject["name"].as_str().context("subject name")?.to_owned();
                let grants = out.entry(account).or_default();
                for rule in role["rules"].as_array().context("rules")? {
                    let list = |field: &str| -> Vec<String> {
                        rule[field]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let (groups, resources, verbs, names) = (
                        list("apiGroups"),
                        list("resources"),
                        list("verbs"),
                        list("resourceNames"),
                    );
                    for field in [&groups, &resources, &verbs, &names] {
                        ensure!(
                            !field.iter().any(|v| v.contains('*')),
                            "wildcard in {role_kind} {}: {rule}",
                            role["metadata"]["name"]
                        );
                    }
                    ensure!(
                        rule.get("nonResourceURLs").is_none(),
                        "non-resource URLs granted: {rule}"
                    );
                    let names = if names.is_empty() {
                        vec![String::new()]
                    } else {
                        names
                    };
                    for group in &groups {
                        for resource in &resources {
                            for name in &names {
                                grants
                                    .entry((group.clone(), resource.clone(), name.clone()))
                                    .or_default()
                                    .extend(verbs.iter().cloned());
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[test]
fn rbac_is_least_privilege_without_wildcards() -> Result<()> {
    let lease = "vmd-vmdistributed-controller";
    let allowed = allowed_rules(lease);
    let rendered = template(&[])?;
    let grants = granted(&rendered)?;

    let controller = grants
        .get("vmd-vmdistributed-controller")
        .context("controller ServiceAccount is bound")?;
    for (key, verbs) in controller {
        let permitted = allowed
            .get(key)
            .with_context(|| format!("controller granted unexpected {key:?}"))?;
        ensure!(
            verbs.is_subset(permitted),
            "controller verbs {verbs:?} on {key:?} exceed {permitted:?}"
        );
    }
    // Nothing the rollout needs is missing.
    let expected_controller: Grants = allowed.clone();
    assert_eq!(
        controller, &expected_controller,
        "controller RBAC is exactly the listed rules"
    );

    // The webhook may only dry-run the four child kinds (create for new objects, patch for
    // apply), and read VMAuths (the claim warning).
    let webhook = grants
        .get("vmd-vmdistributed-webhook")
        .context("webhook ServiceAccount is bound (preflight on)")?;
    let verbs =
        |list: &[&str]| -> BTreeSet<String> { list.iter().map(|v| (*v).to_owned()).collect() };
    let kinds: BTreeSet<&str> = webhook.keys().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["vmagents", "vmauths", "vmclusters", "vmsingles"])
    );
    for ((group, resource, names), granted) in webhook {
        assert_eq!(group, "operator.victoriametrics.com");
        assert!(names.is_empty());
        let expected = if resource == "vmauths" {
            verbs(&["create", "patch", "get"])
        } else {
            verbs(&["create", "patch"])
        };
        assert_eq!(granted, &expected, "{resource}");
    }
    // Nobody else is bound to anything.
    assert_eq!(
        grants.len(),
        2,
        "bound accounts: {:?}",
        grants.keys().collect::<Vec<_>>()
    );

    // Preflight off: the webhook gets no RBAC and no token at all.
    let rendered = template(&["webhook.preflight.enabled=false"])?;
    let grants = granted(&rendered)?;
    assert!(
        !grants.contains_key("vmd-vmdistributed-webhook"),
        "{grants:?}"
    );
    let pod = &rendered.deployment("webhook")?["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        !container_args(rendered.deployment("webhook")?)?
            .iter()
            .any(|a| a.starts_with("--preflight"))
    );

    // Leader election off: no lease permissions.
    let rendered = template(&[
        "controller.leaderElection.enabled=false",
        "controller.replicas=1",
    ])?;
    let grants = granted(&rendered)?;
    assert!(
        !grants["vmd-vmdistributed-controller"]
            .keys()
            .any(|(g, _, _)| g == "coordination.k8s.io")
    );
    Ok(())
}

fn container_args(deployment: &Value) -> Result<Vec<String>> {
    Ok(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .context("container args")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
    )
}

fn mounted_secret(rendered: &harness::chart::Rendered) -> Result<String> {
    let pod = &rendered.deployment("webhook")?["spec"]["template"]["spec"];
    pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find_map(|v| v["secret"]["secretName"].as_str()))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("webhook mounts no Secret"))
}

#[test]
fn every_container_is_probed_limited_and_restricted() -> Result<()> {
    for sets in VARIANTS {
        let rendered = template(sets)?;
        ensure!(
            rendered.of_kind("Deployment").count() == 2,
            "{sets:?}: two Deployments"
        );
        for deployment in rendered.of_kind("Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{name}"
            );
            let containers = pod["containers"].as_array().context("containers")?;
            let init = pod["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ensure!(init.is_empty(), "{name}: unexpected init containers");
            for c in containers {
                let cname = format!("{name}/{}", c["name"].as_str().unwrap_or_default());
                let http_port = c["ports"]
                    .as_array()
                    .and_then(|p| p.iter().find(|p| p["name"] == "http"))
                    .with_context(|| format!("{cname}: port named http"))?;
                assert!(http_port["containerPort"].is_u64());
                for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
                {
                    assert_eq!(c[probe]["httpGet"]["path"], path, "{cname} {probe}");
                    assert_eq!(
                        c[probe]["httpGet"]["port"], "http",
                        "{cname} {probe} uses the plain HTTP port"
                    );
                }
                for field in ["cpu", "memory"] {
                    assert!(
                        c["resources"]["requests"][field].is_string(),
                        "{cname}: requests.{field}"
                    );
                }
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{cname}: limits.memory"
                );
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{cname}");
                assert_eq!(sc["runAsNonRoot"], true, "{cname}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{cname}");
                assert!(sc["capabilities"].get("add").is_none(), "{cname}");
                assert!(sc.get("privileged").is_none_or(|p| p == false), "{cname}");
                assert!(
                    sc["runAsUser"].as_u64().is_some_and(|u| u > 0),
                    "{cname}: non-root UID"
                );
            }
            ensure!(
                pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none(),
                "{name}: host namespaces"
            );
        }
    }
    Ok(())
}

#[test]
fn webhook_configurations_are_scoped_to_vmdistributed() -> Result<()> {
    let rendered = template(&[])?;
    let service = rendered.named("Service", WEBHOOK_SERVICE)?;
    let deployment = rendered.deployment("webhook")?;
    for (kind, path, name) in [
        (
            "MutatingWebhookConfiguration",
            "/mutate",
            "mutate.vmdistributed.operator.victoriametrics.com",
        ),
        (
            "ValidatingWebhookConfiguration",
            "/validate",
            "validate.vmdistributed.operator.victoriametrics.com",
        ),
    ] {
        let config = rendered.one(kind)?;
        let hooks = config["webhooks"].as_array().context("webhooks")?;
        assert_eq!(hooks.len(), 1, "{kind}");
        let hook = &hooks[0];
        assert_eq!(hook["name"], name);
        assert_eq!(
            hook["rules"],
            json!([{
                "apiGroups": ["operator.victoriametrics.com"],
                "apiVersions": ["v1alpha1"],
                "resources": ["vmdistributed"],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced"
            }]),
            "{kind}"
        );
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["timeoutSeconds"], 10);
        assert!(
            hook.get("namespaceSelector").is_none(),
            "all namespaces by default"
        );
        let target = &hook["clientConfig"]["service"];
        assert_eq!(target["name"], WEBHOOK_SERVICE);
        assert_eq!(target["namespace"], NAMESPACE);
        assert_eq!(target["path"], path);
        // The Service port the configuration calls leads to the container's TLS port.
        let port = service["spec"]["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["port"] == target["port"]))
            .with_context(|| format!("Service port {}", target["port"]))?;
        let container_port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == port["targetPort"]))
            .context("targetPort names a container port")?;
        let args = container_args(deployment)?;
        assert!(
            args.contains(&format!(
                "--tls-addr=0.0.0.0:{}",
                container_port["containerPort"]
            )),
            "{args:?}"
        );
    }
    // The Service selects the webhook pods.
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"]
        .as_object()
        .context("selector")?
    {
        assert_eq!(&pod_labels[k], v, "Service selector {k}");
    }

    let rendered = template(&[
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=5",
        "webhook.namespaceSelector.matchLabels.vmdistributed=enabled",
    ])?;
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let hook = &rendered.one(kind)?["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(
            hook["namespaceSelector"],
            json!({"matchLabels": {"vmdistributed": "enabled"}})
        );
    }
    Ok(())
}

#[test]
fn webhook_is_highly_available_and_runs_preflight() -> Result<()> {
    let rendered = template(&[])?;
    let deployment = rendered.deployment("webhook")?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pdb = rendered.named("PodDisruptionBudget", WEBHOOK_SERVICE)?;
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    for (k, v) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .context("PDB selector")?
    {
        assert_eq!(&pod_labels[k], v, "PDB selects the webhook pods by {k}");
    }
    // One replica: a minAvailable 1 budget would block every drain, so there is none.
    let single = template(&["webhook.replicas=1"])?;
    assert!(
        single
            .named("PodDisruptionBudget", WEBHOOK_SERVICE)
            .is_err()
    );
    let anti = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    for (k, v) in term["labelSelector"]["matchLabels"]
        .as_object()
        .context("anti-affinity selector")?
    {
        assert_eq!(&pod_labels[k], v);
    }
    let args = container_args(deployment)?;
    assert_eq!(args[0], "serve");
    assert!(args.contains(&"--preflight".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--preflight-timeout=3s".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--http-addr=0.0.0.0:8080".to_owned()),
        "{args:?}"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    Ok(())
}

#[test]
fn controller_runs_two_replicas_with_leader_election() -> Result<()> {
    let rendered = template(&[])?;
    let deployment = rendered.deployment("controller")?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = container_args(deployment)?;
    assert_eq!(args[0], "run");
    for expected in [
        "--leader-elect=true",
        "--lease-name=vmd-vmdistributed-controller",
        &format!("--lease-namespace={NAMESPACE}"),
        "--http-addr=0.0.0.0:8080",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "{expected} in {args:?}"
        );
    }
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .context("env")?;
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .with_context(|| format!("env {name}"))?;
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    let role = rendered.named("Role", "vmd-vmdistributed-controller-leader-election")?;
    assert_eq!(
        role["metadata"]["namespace"], NAMESPACE,
        "the Lease lives in the release namespace"
    );

    let rendered = template(&["controller.leaderElection.leaseName=custom-lease"])?;
    assert!(
        container_args(rendered.deployment("controller")?)?
            .contains(&"--lease-name=custom-lease".to_owned())
    );
    let role = rendered.named("Role", "vmd-vmdistributed-controller-leader-election")?;
    assert_eq!(role["rules"][1]["resourceNames"], json!(["custom-lease"]));
    Ok(())
}

#[test]
fn metrics_scrape_objects_select_the_metrics_ports() -> Result<()> {
    let rendered = template(&[
        "metrics.serviceMonitor.enabled=true",
        "metrics.vmServiceScrape.enabled=true",
    ])?;
    for kind in ["ServiceMonitor", "VMServiceScrape"] {
        let scrapes: Vec<&Value> = rendered.of_kind(kind).collect();
        assert_eq!(
            scrapes.len(),
            2,
            "{kind} for the webhook and the controller"
        );
        for scrape in scrapes {
            let selector = scrape["spec"]["selector"]["matchLabels"]
                .as_object()
                .context("selector")?;
            let port = scrape["spec"]["endpoints"][0]["port"]
                .as_str()
                .context("endpoint port")?;
            let services: Vec<&Value> = rendered
                .of_kind("Service")
                .filter(|s| {
                    selector
                        .iter()
                        .all(|(k, v)| &s["metadata"]["labels"][k] == v)
                })
                .collect();
            assert_eq!(
                services.len(),
                1,
                "{kind} {} selects one Service",
                scrape["metadata"]["name"]
            );
            let has_port = services[0]["spec"]["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == port));
            assert!(has_port, "{kind}: the Service has port {port}");
            assert_eq!(scrape["spec"]["endpoints"][0]["path"], "/metrics");
        }
    }
    let rendered = template(&[])?;
    assert_eq!(
        rendered.of_kind("ServiceMonitor").count() + rendered.of_kind("VMServiceScrape").count(),
        0
    );
    Ok(())
}

#[test]
fn invalid_values_are_rejected_with_the_offending_path() -> Result<()> {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "webhook.failurePolicy=Sometimes"],
            &["/webhook/failurePolicy", "'Fail', 'Ignore'"],
        ),
        (
            &["--set", "webhook.tls.mode=selfsigned"],
            &["/webhook/tls/mode", "'generated', 'certManager', 'secret'"],
        ),
        (
            &["--set", "webhook.timeoutSeconds=45"],
            &["/webhook/timeoutSeconds", "maximum"],
        ),
        (
            &["--set", "webhook.replicas=0"],
            &["/webhook/replicas", "minimum"],
        ),
        (
            &["--set", "webhook.preflight.timeout=3"],
            &["/webhook/preflight/timeout", "want string"],
        ),
        (
            &["--set", "webhook.preflight.timeout=soon"],
            &["/webhook/preflight/timeout"],
        ),
        (
            &["--set", "webhook.tlss.mode=secret"],
            &["/webhook", "'tlss' not allowed"],
        ),
        (
            &["--set", "crds.instal=false"],
            &["/crds", "'instal' not allowed"],
        ),
        (
            &["--set-json", "webhook.tls.extraIPAddresses=[\"localhost\"]"],
            &["/webhook/tls/extraIPAddresses/0"],
        ),
        (
            &["--set", "webhook.tls.certManager.issuerRef.kind=Issuer"],
            &["/webhook/tls/certManager/issuerRef", "name"],
        ),
        (
            &["--set", "controller.leaderElection.enabled=false"],
            &["/controller/replicas", "maximum"],
        ),
        (
            &["--set", "controller.logFormat=xml"],
            &["/controller/logFormat", "'text', 'json'"],
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            &["/image/pullPolicy"],
        ),
        (
            &["--set", "controller.resources.limits=null"],
            &["/controller/resources", "limits"],
        ),
    ];
    for (args, expected) in cases {
        let error = template_error(args)?;
        ensure!(
            error.contains("values don't meet the specifications of the schema"),
            "{args:?} was not rejected by values.schema.json: {error}"
        );
        for needle in *expected {
            ensure!(
                error.contains(needle),
                "{args:?}: error does not mention {needle:?}:\n{error}"
            );
        }
    }
    Ok(())
}

/// The controller pins, where a spec sets no version, the versions the chart gives it; by
/// default the VictoriaMetrics operator's own defaults, which the controller's flags also
/// default to. A value of its own, or an empty one (pin nothing), reaches the flag as written.
/// The webhook's preflight gets the same flags, so it dry-runs what the controller writes.
#[test]
fn the_controller_pins_the_charts_versions() -> Result<()> {
    let defaults = shared::versions::PinnedVersions::operator_defaults();
    let flags_of = |component: &str, sets: &[&str]| -> Result<Vec<String>> {
        let args = container_args(template(sets)?.deployment(component)?)?;
        Ok(args
            .into_iter()
            .filter(|a| a.starts_with("--pinned-"))
            .collect())
    };
    let flags = |sets: &[&str]| -> Result<Vec<String>> {
        let controller = flags_of("controller", sets)?;
        let webhook = flags_of("webhook", sets)?;
        ensure!(
            controller == webhook,
            "the webhook pins {webhook:?}, the controller {controller:?}"
        );
        Ok(controller)
    };
    assert_eq!(
        flags(&[])?,
        [
            format!(
                "--pinned-vmcluster-version={}",
                defaults.vmcluster.as_deref().unwrap_or_default()
            ),
            format!(
                "--pinned-vmagent-version={}",
                defaults.vmagent.as_deref().unwrap_or_default()
            ),
            format!(
                "--pinned-vmsingle-version={}",
                defaults.vmsingle.as_deref().unwrap_or_default()
            ),
        ]
    );
    let set = flags(&[
        "controller.pinnedVersions.vmcluster=v1.111.0-cluster",
        "controller.pinnedVersions.vmagent=",
    ])?;
    assert!(
        set.contains(&"--pinned-vmcluster-version=v1.111.0-cluster".to_owned()),
        "{set:?}"
    );
    assert!(
        set.contains(&"--pinned-vmagent-version=".to_owned()),
        "{set:?}"
    );
    Ok(())
}
