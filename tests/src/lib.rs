//! Test support: a real kube-apiserver + etcd control plane for integration tests, the simulated
//! VictoriaMetrics operator, and paths of the workspace binaries.
//!
//! # Using it
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let cp = harness::ControlPlane::shared().await?;      // one per test binary, started lazily
//! cp.install_crds().await?;                               // project CRD + upstream VMCluster/VMAgent/VMAuth/VMSingle
//! let client = cp.client().await?;                        // a new kube::Client per test
//! let ns = harness::create_namespace(&client, "my-test").await?;
//! harness::apply_yaml(&client, Some(&ns), &std::fs::read_to_string("examples/seed.yaml")?).await?;
//! let out = cp.kubectl().args(["get", "vmd", "-n", &ns]).output()?; // KUBECONFIG set
//! cp.ensure_sim_operator().await?;                       // simulated VM operator, all namespaces
//! # Ok(()) }
//! ```
//!
//! - [`ControlPlane::shared`]: one control plane per test binary, started on first use; each test
//!   makes its own namespace with [`create_namespace`]. [`ControlPlane::start`] gives an owned one
//!   that stops on drop (use it when a test needs its own, e.g. with
//!   [`Options::controller_manager`]).
//! - [`ControlPlane::ensure_controller_manager`]: kube-controller-manager (namespace deletion,
//!   ownerReference cascades, and the workload controllers of the operator world).
//! - [`ControlPlane::kubeconfig_path`], [`ControlPlane::server_url`], [`ControlPlane::pki`]
//!   (CA and admin client certificate), [`ControlPlane::client`], [`ControlPlane::kubectl`]
//!   (kubectl from PATH), [`ControlPlane::helm`] (cached helm; its home dirs are in the
//!   control plane directory).
//! - [`ControlPlane::spawn`]: run any process (webhook, controller, ...) under the control plane's
//!   supervisor with `KUBECONFIG` set; it is stopped when the handle drops and killed if the test
//!   process dies. [`ControlPlane::log_path`] gives a log file for it.
//! - [`ControlPlane::install_crds`] / [`install_crds`]: the project CRD
//!   (`charts/vmdistributed/files/crds/vmdistributed.yaml`) and the VictoriaMetrics operator's own
//!   CRDs for VMCluster, VMAgent, VMAuth and VMSingle (full upstream schemas, from the operator's
//!   Go module at the version `tests/envtest/build.sh` pins), waiting until Established.
//!   [`install_vm_operator_crds`]: any or all upstream CRDs.
//! - [`ControlPlane::ensure_sim_operator`]: one `vm-operator-sim` for the control plane (all
//!   namespaces, ready delay 1 s); [`ControlPlane::start_sim_operator`]: an extra one with your own
//!   flags (use `--namespace` so the two do not both write). Behavior and annotations: [`sim`].
//! - vmagent `/metrics` (remote-write queue sizes) in every world: EndpointSlices for each VMAgent
//!   at 198.18.0.0/15 addresses and a proxy on 127.0.0.1 answering them, per simulator
//!   ([`SimOperator::agent_metrics_proxy`], [`ControlPlane::sim_agent_metrics_proxy`]) and per
//!   operator world ([`OperatorWorld::agent_metrics_proxy`]); a controller gets it with
//!   [`ProcessSpec::agent_metrics_proxy`]. Annotations that set what an agent reports:
//!   [`vmagent_standin`].
//! - [`ControlPlane::ensure_operator_world`]: the real VictoriaMetrics operator (`vm-operator`,
//!   VMDistributed reconcile off) with kube-scheduler, kube-controller-manager and kwok: three
//!   fake Nodes [`KWOK_NODES`] labelled [`ZONE_LABEL`] `zone-a|b|c`, a default StorageClass whose
//!   PVCs bind, pods Ready at once on loopback IPs from a 127.X.0.0/16 range of their own
//!   ([`OperatorWorld::pod_cidr`]), and `vm-pod-standin` answering on those IPs what the operator
//!   asks its pods (the VMAuth config-reloader's `/metrics`). All upstream operator CRDs but
//!   VMDistributed are installed, plus the project's. VMCluster, VMAgent, VMAuth and VMSingle then
//!   reach `operational` as in a real cluster. Details: [`operator_world`].
//! - [`apply_yaml`], [`apply_yaml_with`] (e.g. strict field validation), [`apply_value`]:
//!   server-side apply of arbitrary objects via discovery.
//! - [`controller_env::Env`]: the world of a controller end-to-end test (a namespace with the
//!   simulated operator or on the real-operator tier, the controller as a real process, waits on
//!   the CR, its children and its events); [`state_recorder`]: every state seen through watches,
//!   checked against the rollout invariants.
//! - [`policy::RefusalPolicy`]: a ValidatingAdmissionPolicy that makes the API server refuse
//!   writes on demand. [`wait_until`]: polling. [`free_port`], [`http_get`]: loopback ports of
//!   the processes a test starts.
//! - [`chart`]: the Helm chart tests' helpers (`helm template` / `helm lint` offline with the
//!   cached helm, parsed renders, decoded Secrets and `caBundle`s, serving-certificate checks).
//! - [`webhook_binary`], [`controller_binary`]: `cargo build`s `vmdistributed-webhook` /
//!   `vmdistributed-controller` once per test binary (serialized by a file lock) and return
//!   `target/<profile>/<name>`. [`sim_operator_binary`]: `vm-operator-sim`. [`tool_path`]: cached
//!   `helm`, `kube-apiserver`, `etcd`, `kube-controller-manager`, `kube-scheduler`, `kwok`,
//!   `vm-operator`.
//!
//! # Cleanup
//!
//! etcd, kube-apiserver and everything started with [`ControlPlane::spawn`] are children of a small
//! supervisor process (`envtest-supervisor`, see [`supervisor`]), not of the test process. It kills
//! them and removes the control plane's temporary directory when its stdin reaches EOF: on drop
//! of an owned control plane, and — because the kernel closes the pipe — whenever the test process
//! exits, even after a panic or SIGKILL. The shared control plane lives in a `static` (never
//! dropped) and relies on exactly that.
//!
//! # Environment
//!
//! - `VMD_CACHE_DIR`: cache root for the envtest binaries (default `~/.cache/vmdistributed`).
//! - `VMD_ENVTEST_BIN`: use this directory of binaries and skip `tests/envtest/build.sh`.
//!
//! If the cached binaries are missing, the harness runs `tests/envtest/build.sh` itself (Go
//! required; the first build takes minutes).

pub mod chart;
pub mod control_plane;
pub mod controller_env;
pub mod manifests;
pub mod net;
pub mod operator_world;
pub mod paths;
pub mod pki;
pub mod policy;
pub mod proc_stats;
pub mod resources;
pub mod sim;
pub mod state_recorder;
pub mod supervisor;
pub mod vmagent_standin;
pub mod wait;

pub use control_plane::{CONTROLLER_MANAGER_CONTROLLERS, ControlPlane, Options, SimOperator};
pub use net::{free_port, http_get};
pub use operator_world::{KWOK_NODES, OperatorWorld, STORAGE_CLASS, ZONE_LABEL};
pub use paths::{
    controller_binary, envtest_bin_dir, project_crd_path, sim_operator_binary, tool_path,
    webhook_binary, workspace_binary, workspace_root,
};
pub use resources::{
    FIELD_MANAGER, MANAGED_KINDS, apply_crd_file, apply_value, apply_yaml, apply_yaml_with,
    create_namespace, install_crds, install_vm_operator_crds, parse_yaml_documents,
    vm_operator_crd_path, vm_operator_crds, wait_crd_established,
};
pub use supervisor::{ProcessSpec, SupervisedProcess};
pub use wait::wait_until;

/// Installs rustls' ring provider for this process (idempotent). The harness calls it before
/// building clients; call it yourself before other TLS work in a test.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `main` of a stand-in process (`vm-operator-sim`, `vm-pod-standin`): logs on standard
/// error at `log_level`, rustls' provider, then `run`; a failure is printed after `name` and
/// exits with status 1.
pub async fn stand_in_main<F>(name: &str, log_level: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    use vmdistributed_runtime::logging::{self, LogFormat, ModulePath};
    if let Err(err) = logging::init(LogFormat::Text, log_level, ModulePath::Hidden) {
        eprintln!("{name}: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    install_crypto_provider();
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
