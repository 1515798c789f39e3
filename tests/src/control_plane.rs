//! etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, one temporary directory each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use crate::net::free_port;
use crate::paths::{envtest_bin_dir, tests_binary};
use crate::pki::Pki;
use crate::supervisor::{ProcessSpec, SupervisedProcess, Supervisor};

/// What to start besides etcd and kube-apiserver.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Run kube-controller-manager (see [`ControlPlane::ensure_controller_manager`] for its
    /// controllers; needed for namespace deletion and ownerReference cascades). Can also be started
    /// later with [`ControlPlane::ensure_controller_manager`].
    pub controller_manager: bool,
}

/// A running control plane. Dropping it stops every process it started and removes its directory;
/// the same happens when the test process exits for any reason (see [`crate::supervisor`]).
pub struct ControlPlane {
    dir: PathBuf,
    pki: Pki,
    kubeconfig: PathBuf,
    server: String,
    supervisor: Arc<Supervisor>,
    etcd_pid: u32,
    apiserver_pid: u32,
    controller_manager: Mutex<Option<u32>>,
    pub(crate) crds: OnceCell<()>,
    pub(crate) sim: OnceCell<SimOperator>,
    pub(crate) operator_world: OnceCell<crate::operator_world::OperatorWorld>,
    started_in: Duration,
    audit_log: Option<PathBuf>,
}

/// A running `vm-operator-sim` ([`ControlPlane::start_sim_operator`]) and its agent metrics
/// proxy.
pub struct SimOperator {
    /// The process; stopped when dropped.
    pub process: SupervisedProcess,
    agent_metrics_proxy: String,
}

impl SimOperator {
    /// `http://127.0.0.1:PORT`: answers the `/metrics` of the VMAgents this simulator drives (see
    /// [`crate::vmagent_standin`]).
    pub fn agent_metrics_proxy(&self) -> &str {
        &self.agent_metrics_proxy
    }

    /// Returns once the proxy answers (the simulator is up); fails if the process exited.
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if crate::vmagent_standin::wait_proxy(&self.agent_metrics_proxy, Duration::ZERO)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(how) = self.process.exit_status()? {
                bail!(
                    "vm-operator-sim exited ({how}); log tail:\n{}",
                    tail(self.process.log_path())
                );
            }
            if Instant::now() > deadline {
                bail!("vm-operator-sim's agent metrics proxy does not answer after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// The kube-controller-manager controllers the harness runs: namespace deletion and
/// ownerReference cascades for every test, and for the operator world's workloads Deployments,
/// ReplicaSets, StatefulSets (with their PVCs), EndpointSlices and the PVC/PV protection
/// finalizers (without those, a namespace holding a PVC never finishes deleting). Until the
/// operator world runs there is no scheduler and no node, so pods they create stay Pending.
pub const CONTROLLER_MANAGER_CONTROLLERS: [&str; 8] = [
    "namespace",
    "garbagecollector",
    "deployment",
    "replicaset",
    "statefulset",
    "endpointslice",
    "pvc-protection",
    "pv-protection",
];

impl ControlPlane {
    /// The control plane shared by all tests of this test binary, started on first use. Every test
    /// should work in its own namespace ([`crate::create_namespace`]).
    pub async fn shared() -> Result<&'static ControlPlane> {
        SHARED
            .get_or_try_init(|| ControlPlane::start(Options::default()))
            .await
    }

    /// A control plane owned by the caller, stopped when dropped.
    pub async fn start(options: Options) -> Result<ControlPlane> {
        Self::start_inner(options, false).await
    }

    /// [`Self::start`] with kube-apiserver writing an audit log of every request at `Metadata`
    /// level (who, user agent, verb, resource, time; no bodies), for benchmarks that count the
    /// requests of one client ([`Self::audit_log_path`]). A separate entry point rather than an
    /// [`Options`] field, so that the `Options { .. }` literals elsewhere stay valid.
    pub async fn start_with_audit_log(options: Options) -> Result<ControlPlane> {
        Self::start_inner(options, true).await
    }

    async fn start_inner(options: Options, audit_log: bool) -> Result<ControlPlane> {
        crate::install_crypto_provider();
        let bin = tokio::task::spawn_blocking(envtest_bin_dir)
            .await
            .context("envtest build task")??;
        let supervisor_exe = tokio::task::spawn_blocking(|| tests_binary("envtest-supervisor"))
            .await
            .context("supervisor build task")??;
        // Free ports are picked by binding port 0 and releasing it; another process can grab one in
        // between, so a failed start is retried with new ports.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once(&bin, &supervisor_exe, audit_log).await {
                Ok(cp) => {
                    if options.controller_manager {
                        cp.ensure_controller_manager().await?;
                    }
                    return Ok(cp);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("control plane did not start")))
    }

    async fn start_once(bin: &Path, supervisor_exe: &Path, audit: bool) -> Result<ControlPlane> {
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("vmd-envtest-")
            .tempdir()
            .context("creating the control plane directory")?
            .keep();
        // From here on the supervisor owns the directory: it removes it when it finishes.
        let supervisor = match Supervisor::start(supervisor_exe, Some(&dir)) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let pki = Pki::generate(&dir)?;
        let (etcd_client, etcd_peer, api_port) = (free_port()?, free_port()?, free_port()?);
        let audit_log = if audit {
            // One event per request: `RequestReceived` is left out, so a request is logged when
            // it completes (a watch also when its response starts).
            let policy = dir.join("audit-policy.yaml");
            std::fs::write(
                &policy,
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )
            .context("writing the audit policy")?;
            Some((policy, dir.join("audit.log")))
        } else {
            None
        };

        let etcd = ProcessSpec::new(bin.join("etcd"), dir.join("etcd.log")).args([
            "--name=envtest".to_string(),
            format!("--data-dir={}", dir.join("etcd-data").display()),
            "--log-level=warn".into(),
            "--unsafe-no-fsync".into(),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=envtest=http://127.0.0.1:{etcd_peer}"),
        ]);
        let etcd_pid = supervisor.spawn(&etcd)?;
        wait_until(Duration::from_secs(30), "etcd /health", || {
            process_alive(&supervisor, etcd_pid, &dir.join("etcd.log"))?;
            Ok(etcd_healthy(etcd_client))
        })
        .await?;

        let apiserver =
            ProcessSpec::new(bin.join("kube-apiserver"), dir.join("kube-apiserver.log")).args([
                format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", pki.apiserver_cert.display()),
                format!("--tls-private-key-file={}", pki.apiserver_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!("--service-account-key-file={}", pki.sa_pub.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.sa_key.display()
                ),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // No token controller runs, so the ServiceAccount admission plugin would block pods.
                "--disable-admission-plugins=ServiceAccount".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ]);
        let apiserver = apiserver.args(audit_log.iter().flat_map(|(policy, log)| {
            [
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", log.display()),
                "--audit-log-format=json".into(),
            ]
        }));
        let apiserver_pid = supervisor.spawn(&apiserver)?;

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&server, &pki))
            .context("writing kubeconfig")?;
        let client = client_from(&kubeconfig).await?;
        let apiserver_log = dir.join("kube-apiserver.log");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            process_alive(&supervisor, apiserver_pid, &apiserver_log)?;
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if let Ok(body) = client.request_text(request).await
                && body.trim() == "ok"
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver not ready after 90 s; log tail:\n{}",
                    tail(&apiserver_log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        Ok(ControlPlane {
            dir,
            pki,
            kubeconfig,
            server,
            supervisor,
            etcd_pid,
            apiserver_pid,
            controller_manager: Mutex::new(None),
            crds: OnceCell::new(),
            sim: OnceCell::new(),
            operator_world: OnceCell::new(),
            started_in: began.elapsed(),
            audit_log: audit_log.map(|(_, log)| log),
        })
    }

    /// Starts kube-controller-manager unless running, with [`CONTROLLER_MANAGER_CONTROLLERS`]: one
    /// set for every caller, so whoever starts it first (a namespace-deletion test or
    /// [`ControlPlane::ensure_operator_world`]) starts what everyone needs.
    pub async fn ensure_controller_manager(&self) -> Result<()> {
        let log = self.dir.join("kube-controller-manager.log");
        let pid = {
            let mut kcm = self
                .controller_manager
                .lock()
                .map_err(|_| anyhow!("poisoned"))?;
            if let Some(pid) = *kcm {
                return process_alive(&self.supervisor, pid, &log);
            }
            let spec = ProcessSpec::new(crate::paths::tool_path("kube-controller-manager")?, &log)
                .args([
                    format!("--kubeconfig={}", self.kubeconfig.display()),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    format!("--controllers={}", CONTROLLER_MANAGER_CONTROLLERS.join(",")),
                    "--use-service-account-credentials=false".into(),
                    "--profiling=false".into(),
                ]);
            let pid = self.supervisor.spawn(&spec)?;
            *kcm = Some(pid);
            pid
        };
        // Fail fast on a bad flag or kubeconfig instead of letting a test time out later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        process_alive(&self.supervisor, pid, &log)
    }

    /// Starts the shared simulated VictoriaMetrics operator (all namespaces, `--ready-delay 1s`)
    /// unless it runs already; returns once its agent metrics proxy answers. Objects with the
    /// `sim.vmdistributed.io/*` annotations behave as documented in [`crate::sim`] and
    /// [`crate::vmagent_standin`].
    pub async fn ensure_sim_operator(&self) -> Result<()> {
        let sim = self
            .sim
            .get_or_try_init(|| async {
                let sim = self.start_sim_operator(["--ready-delay", "1s"])?;
                sim.wait_ready().await?;
                Ok::<_, anyhow::Error>(sim)
            })
            .await?;
        match sim.process.exit_status()? {
            None => Ok(()),
            Some(how) => Err(anyhow!(
                "vm-operator-sim exited ({how}); log tail:\n{}",
                tail(sim.process.log_path())
            )),
        }
    }

    /// The agent metrics proxy (`http://127.0.0.1:PORT`) of the shared simulated operator, if
    /// [`Self::ensure_sim_operator`] started it: the `HTTP_PROXY` for a controller acting on
    /// objects that simulator drives ([`ProcessSpec::agent_metrics_proxy`]).
    pub fn sim_agent_metrics_proxy(&self) -> Option<&str> {
        self.sim.get().map(SimOperator::agent_metrics_proxy)
    }

    /// Starts another `vm-operator-sim` with the given flags (e.g. `["--namespace", ns,
    /// "--ready-delay", "3s"]`), stopped when the handle drops.
    pub fn start_sim_operator<I, S>(&self, args: I) -> Result<SimOperator>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let (spec, agent_metrics_proxy) =
            crate::sim::sim_operator_spec(self.log_path("vm-operator-sim"))?;
        let spec = spec
            .args(args)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        self.spawn_sim_operator(spec, agent_metrics_proxy)
    }

    /// Spawns a `vm-operator-sim` made by [`crate::sim::sim_operator_spec`] (with your flags
    /// added; `KUBECONFIG` is set) whose proxy is `agent_metrics_proxy`. It may still be starting:
    /// [`SimOperator::wait_ready`].
    pub fn spawn_sim_operator(
        &self,
        spec: ProcessSpec,
        agent_metrics_proxy: String,
    ) -> Result<SimOperator> {
        Ok(SimOperator {
            process: self.spawn(spec)?,
            agent_metrics_proxy,
        })
    }

    /// A new client (admin, `system:masters`). Create one per test: a client is tied to the tokio
    /// runtime it was made in, and every `#[tokio::test]` has its own runtime.
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// Admin kubeconfig (client certificate, files under [`Self::dir`]).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// Certificates and keys (CA, apiserver serving pair, admin client pair).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The temporary directory holding PKI, etcd data, logs and the kubeconfig; removed on stop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the start took (PKI, etcd, apiserver until /readyz).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The kube-apiserver audit log (JSON lines), when started with [`Self::start_with_audit_log`].
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// PIDs of every process this control plane runs: the supervisor, etcd, kube-apiserver and, if
    /// started, kube-controller-manager, the simulated operator and the operator world.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.supervisor.pid(), self.etcd_pid, self.apiserver_pid];
        if let Ok(kcm) = self.controller_manager.lock()
            && let Some(pid) = *kcm
        {
            pids.push(pid);
        }
        if let Some(sim) = self.sim.get() {
            pids.push(sim.process.pid());
        }
        if let Some(world) = self.operator_world.get() {
            pids.extend(world.processes().iter().map(|(_, pid)| *pid));
        }
        pids
    }

    /// Runs a process under this control plane's supervisor: it is stopped when the returned handle
    /// is dropped, and killed when the test process exits for any reason. `KUBECONFIG` is set.
    pub fn spawn(&self, spec: ProcessSpec) -> Result<SupervisedProcess> {
        let spec = spec.env("KUBECONFIG", self.kubeconfig.display().to_string());
        SupervisedProcess::start(self.supervisor.clone(), &spec)
    }

    /// A log file path inside the control plane directory, unique per call (for [`Self::spawn`]).
    pub fn log_path(&self, name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        self.dir
            .join(format!("{name}-{}.log", N.fetch_add(1, Ordering::Relaxed)))
    }

    /// `kubectl` (from PATH) with `KUBECONFIG` set to the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// The cached `helm` with `KUBECONFIG` set and its config/cache/data dirs inside [`Self::dir`]
    /// (nothing is written to the user's home).
    pub fn helm(&self) -> Result<Command> {
        let mut cmd = Command::new(crate::paths::tool_path("helm")?);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        Ok(cmd)
    }

    /// A kubeconfig in `dir` that authenticates as ServiceAccount `namespace/service_account`
    /// with a bound token (`kubectl create token`, valid one hour), so a process runs with
    /// exactly the RBAC granted to that account.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        service_account: &str,
        dir: &Path,
    ) -> Result<PathBuf> {
        let output = self
            .kubectl()
            .args([
                "create",
                "token",
                service_account,
                "-n",
                namespace,
                "--duration=1h",
            ])
            .output()?;
        if !output.status.success() {
            bail!(
                "kubectl create token {service_account} -n {namespace}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let token = String::from_utf8(output.stdout)?.trim().to_owned();
        if token.is_empty() {
            bail!("kubectl create token printed no token");
        }
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.server_url(),
                "certificate-authority": self.pki().ca_cert.display().to_string(),
            }}],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "envtest", "user": service_account, "namespace": namespace}}],
            "current-context": "sa",
        });
        let path = dir.join(format!("{service_account}.kubeconfig"));
        std::fs::write(&path, serde_json::to_vec_pretty(&kubeconfig)?)?;
        Ok(path)
    }

    /// PID of kube-controller-manager, if started.
    pub fn controller_manager_pid(&self) -> Option<u32> {
        self.controller_manager.lock().ok().and_then(|kcm| *kcm)
    }

    /// Stops everything now and waits until the processes are gone and the directory is removed.
    pub fn stop(self) -> Result<()> {
        self.supervisor.shutdown()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.supervisor.shutdown();
    }
}

pub(crate) async fn client_from(kubeconfig: &Path) -> Result<Client> {
    crate::install_crypto_provider();
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn kubeconfig_yaml(server: &str, pki: &Pki) -> String {
    let q = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: envtest-admin\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: envtest-admin\n    namespace: default\n\
         current-context: envtest\n",
        ca = q(&pki.ca_cert),
        cert = q(&pki.admin_cert),
        key = q(&pki.admin_key),
    )
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

fn process_alive(supervisor: &Supervisor, pid: u32, log: &Path) -> Result<()> {
    match supervisor.exit_status(pid)? {
        None => Ok(()),
        Some(how) => Err(anyhow!(
            "{} exited ({how}); log tail:\n{}",
            log.display(),
            tail(log)
        )),
    }
}

/// Last 40 lines of a log, for error messages.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
