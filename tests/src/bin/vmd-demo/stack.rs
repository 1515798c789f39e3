//! The processes of the demo: the control plane (harness, with the VictoriaMetrics operator world
//! or the simulated operator), the webhook as a real HTTPS process registered through
//! `url: https://127.0.0.1:PORT`, and the controller. Everything runs under the harness
//! supervisor and is stopped by PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use harness::{ControlPlane, Options, ProcessSpec, SupervisedProcess, free_port};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

/// Name of both webhook configurations the demo registers.
pub const WEBHOOK_CONFIG_NAME: &str = "vmdistributed-demo";

/// A started process, by name, for the shutdown report.
pub struct Named {
    pub name: &'static str,
    pub process: SupervisedProcess,
}

/// Everything the demo started. [`Stack::stop`] stops the processes in reverse order, by PID, and
/// then the control plane, whose supervisor removes the temporary directory.
#[derive(Default)]
pub struct Stack {
    pub control_plane: Option<ControlPlane>,
    pub processes: Vec<Named>,
}

/// What [`Stack::stop`] did.
pub struct Stopped {
    pub lines: Vec<String>,
    pub dir: Option<PathBuf>,
}

impl Stack {
    pub fn cp(&self) -> Result<&ControlPlane> {
        self.control_plane
            .as_ref()
            .ok_or_else(|| anyhow!("the control plane is not running"))
    }

    /// Starts etcd and kube-apiserver (harness), returning how long that took.
    pub async fn start_control_plane(&mut self) -> Result<Duration> {
        let cp = ControlPlane::start(Options::default()).await?;
        let took = cp.started_in();
        self.control_plane = Some(cp);
        Ok(took)
    }

    /// Fails with the log tail of any started process that has exited.
    pub fn check_alive(&self) -> Result<()> {
        for named in &self.processes {
            if let Some(how) = named.process.exit_status()? {
                bail!(
                    "{} (pid {}) exited ({how}); last lines of {}:\n{}",
                    named.name,
                    named.process.pid(),
                    named.process.log_path().display(),
                    tail(&named.process.log(), 30)
                );
            }
        }
        Ok(())
    }

    pub fn spawn(&mut self, name: &'static str, spec: ProcessSpec) -> Result<u32> {
        let process = self.cp()?.spawn(spec)?;
        let pid = process.pid();
        self.processes.push(Named { name, process });
        Ok(pid)
    }

    /// Stops every process it started, newest first (SIGTERM, then SIGKILL after a grace period),
    /// then etcd and kube-apiserver, and removes the control plane directory.
    pub fn stop(&mut self) -> Stopped {
        let mut lines = Vec::new();
        while let Some(named) = self.processes.pop() {
            let pid = named.process.pid();
            let how = named
                .process
                .stop(Duration::from_secs(5))
                .ok()
                .flatten()
                .unwrap_or_else(|| "stopped".into());
            lines.push(format!("{} (pid {pid}): {how}", named.name));
        }
        let mut dir = None;
        if let Some(cp) = self.control_plane.take() {
            let pids = cp.pids();
            let path = cp.dir().to_path_buf();
            match cp.stop() {
                Ok(()) => lines.push(format!(
                    "the control plane: supervisor, etcd, kube-apiserver and, when started, \
                     kube-controller-manager, kube-scheduler, kwok, vm-pod-standin and \
                     vm-operator (pids {}): stopped",
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(e) => lines.push(format!("control plane: {e:#}")),
            }
            dir = Some(path);
        }
        Stopped { lines, dir }
    }
}

/// The webhook's addresses and CA, once it serves.
pub struct Webhook {
    pub pid: u32,
    pub tls_port: u16,
    pub http_port: u16,
    pub ca_pem: String,
}

/// Issues a serving certificate for 127.0.0.1 from a fresh CA (certs crate), writes it into the
/// control plane directory and starts `vmdistributed-webhook serve` with preflight on.
pub async fn start_webhook(stack: &mut Stack, binary: &Path) -> Result<Webhook> {
    let cp = stack.cp()?;
    let ca = certs::TestCa::new("vmdistributed demo CA")
        .map_err(|e| anyhow!("creating the demo CA: {e}"))?;
    let issued = ca
        .issue_serving("vmdistributed-webhook", &["127.0.0.1", "localhost"])
        .map_err(|e| anyhow!("issuing the webhook certificate: {e}"))?;
    let tls_dir = cp.dir().join("webhook-tls");
    std::fs::create_dir_all(&tls_dir).context("creating the webhook TLS directory")?;
    let (cert, key) = (tls_dir.join("tls.crt"), tls_dir.join("tls.key"));
    std::fs::write(&cert, &issued.cert_pem).context("writing tls.crt")?;
    std::fs::write(&key, &issued.key_pem).context("writing tls.key")?;
    let (tls_port, http_port) = (free_port()?, free_port()?);
    let spec = ProcessSpec::new(binary, cp.log_path("webhook")).args([
        "serve".to_string(),
        format!("--tls-addr=127.0.0.1:{tls_port}"),
        format!("--http-addr=127.0.0.1:{http_port}"),
        format!("--tls-cert-file={}", cert.display()),
        format!("--tls-key-file={}", key.display()),
        "--preflight=true".into(),
        format!("--kubeconfig={}", cp.kubeconfig_path().display()),
    ]);
    let pid = stack.spawn("webhook", spec)?;
    wait_http_ok(
        stack,
        http_port,
        "/readyz",
        Duration::from_secs(60),
        "webhook",
    )
    .await?;
    Ok(Webhook {
        pid,
        tls_port,
        http_port,
        ca_pem: ca.cert_pem(),
    })
}

/// Registers the mutating and validating webhook configurations (`failurePolicy: Fail`) for
/// VMDistributed, pointing at the local webhook by URL.
pub async fn register_webhook(client: &Client, webhook: &Webhook) -> Result<()> {
    let rules = vec![RuleWithOperations {
        api_groups: Some(vec!["operator.victoriametrics.com".into()]),
        api_versions: Some(vec!["v1alpha1".into()]),
        resources: Some(vec!["vmdistributed".into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        scope: Some("Namespaced".into()),
    }];
    let client_config = |path: &str| WebhookClientConfig {
        url: Some(format!("https://127.0.0.1:{}{path}", webhook.tls_port)),
        ca_bundle: Some(ByteString(webhook.ca_pem.clone().into_bytes())),
        service: None,
    };
    let meta = ObjectMeta {
        name: Some(WEBHOOK_CONFIG_NAME.into()),
        ..ObjectMeta::default()
    };
    let mutating = MutatingWebhookConfiguration {
        metadata: meta.clone(),
        webhooks: Some(vec![MutatingWebhook {
            name: "mutate.vmdistributed.operator.victoriametrics.com".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(10),
            reinvocation_policy: Some("Never".into()),
            rules: Some(rules.clone()),
            client_config: client_config("/mutate"),
            ..MutatingWebhook::default()
        }]),
    };
    let validating = ValidatingWebhookConfiguration {
        metadata: meta,
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.vmdistributed.operator.victoriametrics.com".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(10),
            rules: Some(rules),
            client_config: client_config("/validate"),
            ..ValidatingWebhook::default()
        }]),
    };
    let params = PatchParams::apply(harness::FIELD_MANAGER).force();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .patch(WEBHOOK_CONFIG_NAME, &params, &Patch::Apply(&mutating))
        .await
        .context("registering the MutatingWebhookConfiguration")?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .patch(WEBHOOK_CONFIG_NAME, &params, &Patch::Apply(&validating))
        .await
        .context("registering the ValidatingWebhookConfiguration")?;
    Ok(())
}

/// Starts `vm-operator-sim` for the demo namespace: its pid and its agent metrics proxy (the
/// VMAgents' `/metrics`, see `harness::vmagent_standin`).
pub fn start_sim(stack: &mut Stack, namespace: &str, ready_delay: &str) -> Result<(u32, String)> {
    let cp = stack.cp()?;
    let (spec, agent_metrics_proxy) =
        harness::sim::sim_operator_spec(cp.log_path("vm-operator-sim"))?;
    let spec = spec.args([
        format!("--namespace={namespace}"),
        format!("--ready-delay={ready_delay}"),
        format!("--kubeconfig={}", cp.kubeconfig_path().display()),
    ]);
    Ok((stack.spawn("vm-operator-sim", spec)?, agent_metrics_proxy))
}

/// Starts `vmdistributed-controller run` (no leader election: one replica), with
/// `agent_metrics_proxy` as its `HTTP_PROXY` for the vmagent `/metrics` it polls, and waits for
/// /readyz.
pub async fn start_controller(
    stack: &mut Stack,
    binary: &Path,
    agent_metrics_proxy: &str,
) -> Result<(u32, u16)> {
    let cp = stack.cp()?;
    let http_port = free_port()?;
    let spec = ProcessSpec::new(binary, cp.log_path("controller"))
        .args([
            "run".to_string(),
            format!("--http-addr=127.0.0.1:{http_port}"),
            "--leader-elect=false".into(),
            format!("--kubeconfig={}", cp.kubeconfig_path().display()),
        ])
        .agent_metrics_proxy(agent_metrics_proxy);
    let pid = stack.spawn("controller", spec)?;
    wait_http_ok(
        stack,
        http_port,
        "/readyz",
        Duration::from_secs(120),
        "controller",
    )
    .await?;
    Ok((pid, http_port))
}

/// Polls `http://127.0.0.1:PORT{path}` until it answers 200, failing early if a process died.
async fn wait_http_ok(
    stack: &Stack,
    port: u16,
    path: &str,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        stack.check_alive()?;
        let path = path.to_string();
        let ok = tokio::task::spawn_blocking(move || http_get_status(port, &path) == Some(200))
            .await
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not report ready on http://127.0.0.1:{port}/readyz within {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
