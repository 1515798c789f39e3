//! The chart tests' helpers (`tests/tests/chart_*.rs`): running helm on the chart and reading
//! its output.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// `charts/vmdistributed` in this checkout.
pub fn chart_dir() -> PathBuf {
    crate::workspace_root().join("charts/vmdistributed")
}

/// The cached helm binary (built by the harness), with its home directories in a throwaway place
/// so nothing is written to the user's home. Chart tests that need no API server use this.
pub fn helm() -> Result<Command> {
    let mut cmd = Command::new(crate::tool_path("helm")?);
    let home = std::env::temp_dir().join(format!("vmd-chart-helm-{}", std::process::id()));
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        // No cluster: `helm template` must not try to reach one.
        .env("KUBECONFIG", home.join("no-kubeconfig"));
    Ok(cmd)
}

/// `--set`-style arguments, e.g. `&["webhook.tls.mode=secret"]`.
pub fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| ["--set".to_owned(), (*s).to_owned()])
        .collect()
}

/// Runs a command and returns its output, failing with both streams when it exits non-zero.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Release name and namespace used by the offline renders.
pub const RELEASE: &str = "vmd";
pub const NAMESPACE: &str = "vmd-system";

/// `helm template` of the chart with `--set` values, parsed into objects.
pub fn template(sets: &[&str]) -> Result<Rendered> {
    let output = run_ok(
        helm()?
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE])
            .args(set_args(sets)),
    )?;
    Rendered::parse(&String::from_utf8(output.stdout)?)
}

/// `helm template` expected to fail; returns its stderr.
pub fn template_error(args: &[&str]) -> Result<String> {
    let output = helm()?
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()?;
    if output.status.success() {
        bail!("helm template {args:?} succeeded but should have been rejected");
    }
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Objects of one render.
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn parse(yaml: &str) -> Result<Self> {
        Ok(Self {
            objects: crate::parse_yaml_documents(yaml)?,
        })
    }

    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
        let kind = kind.to_owned();
        self.objects
            .iter()
            .filter(move |o| o["kind"] == kind.as_str())
    }

    /// The single object of `kind`, or an error naming how many there were.
    pub fn one(&self, kind: &str) -> Result<&Value> {
        let found: Vec<&Value> = self.of_kind(kind).collect();
        match found.as_slice() {
            [one] => Ok(one),
            _ => Err(anyhow!(
                "expected exactly one {kind}, found {}",
                found.len()
            )),
        }
    }

    pub fn named(&self, kind: &str, name: &str) -> Result<&Value> {
        self.of_kind(kind)
            .find(|o| o["metadata"]["name"] == name)
            .ok_or_else(|| anyhow!("no {kind} named {name} in the render"))
    }

    /// The Deployment whose pods carry `app.kubernetes.io/component: <component>`.
    pub fn deployment(&self, component: &str) -> Result<&Value> {
        self.of_kind("Deployment")
            .find(|d| {
                d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                    == component
            })
            .ok_or_else(|| anyhow!("no {component} Deployment"))
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .objects
            .iter()
            .filter_map(|o| o["kind"].as_str().map(str::to_owned))
            .collect();
        kinds.sort();
        kinds
    }
}

/// Decoded `data` of a rendered Secret (k8s-openapi decodes the base64).
pub fn secret_data(secret: &Value) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone())?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Decoded `caBundle` of every webhook of a Mutating or ValidatingWebhookConfiguration.
pub fn decoded_ca_bundles(config: &Value) -> Result<Vec<Vec<u8>>> {
    #[derive(serde::Deserialize)]
    struct Config {
        webhooks: Vec<Hook>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Hook {
        client_config: k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
    }
    let config: Config = serde_json::from_value(config.clone())?;
    Ok(config
        .webhooks
        .into_iter()
        .map(|h| h.client_config.ca_bundle.map(|b| b.0).unwrap_or_default())
        .collect())
}

/// The `caBundle` of every webhook in a Mutating/ValidatingWebhookConfiguration.
pub fn ca_bundles(config: &Value) -> Vec<String> {
    config["webhooks"]
        .as_array()
        .map(|hooks| {
            hooks
                .iter()
                .map(|h| {
                    h["clientConfig"]["caBundle"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks with rustls' own WebPKI verifier that `cert_pem` chains to the CA in `ca_pem` and is a
/// valid TLS server certificate for every name in `names` (DNS names or IP addresses), and that
/// `key_pem` is the certificate's private key.
pub fn verify_serving_certificate(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    names: &[&str],
) -> Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(ca.context("CA PEM")?)
            .context("adding the CA as a trust anchor")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("building the verifier")?;
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| anyhow!("no certificate in the PEM"))?;
    for name in names {
        let server_name = ServerName::try_from((*name).to_owned())
            .with_context(|| format!("server name {name}"))?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
            .map_err(|e| anyhow!("certificate not valid for {name}: {e}"))?;
    }
    certs::pem::parse_key_pair(cert_pem, key_pem).map_err(|e| anyhow!("key pair: {e}"))?;
    Ok(())
}

/// One `GET /readyz` on a binary's plain-HTTP port; the whole answer (status line first).
pub fn readyz(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}
