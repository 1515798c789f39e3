//! The real VictoriaMetrics operator on the test control plane, with fake nodes whose pods get
//! loopback IPs.
//!
//! [`ControlPlane::ensure_operator_world`] adds, once per control plane:
//! - kube-controller-manager ([`crate::control_plane::CONTROLLER_MANAGER_CONTROLLERS`]: the
//!   workload controllers the operator's Deployments and StatefulSets need) and kube-scheduler;
//! - kwok managing the Nodes [`KWOK_NODES`] (label [`ZONE_LABEL`], annotation
//!   `kwok.x-k8s.io/node: fake`, no taints) with kwok's released Stages: pods become Ready at
//!   once with an IP from their node's range in [`OperatorWorld::pod_cidr`] (127.X.0.0/16, X
//!   unique among the control planes on this machine), and PVCs of the default StorageClass
//!   [`STORAGE_CLASS`] are bound;
//! - every upstream operator CRD except VMDistributed, plus the project's VMDistributed CRD;
//! - `vm-pod-standin` (a binary of this crate), which answers on the pods' own IPs what the
//!   operator asks its pods (today: the VMAuth config-reloader's `:8435/metrics`), and stands in
//!   for vmagent `/metrics` ([`crate::vmagent_standin`]): for every namespace it mirrors each
//!   vmagent Service into an EndpointSlice of its own that lists the Ready pods at 198.18.Y.Z
//!   (kube-controller-manager's own slices of loopback pods stay empty: the API server refuses
//!   loopback addresses), and answers those addresses as a proxy on 127.0.0.1
//!   ([`OperatorWorld::agent_metrics_proxy`], the `HTTP_PROXY` to give a controller);
//! - the operator (`vm-operator` built by `tests/envtest/build.sh`) with its VMDistributed
//!   controller and webhooks off, no leader election, all namespaces, pod readiness polled every
//!   second instead of every five.
//!
//! Everything runs under the control plane's supervisor and listens on 127.0.0.0/8 only.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::control_plane::{ControlPlane, tail};
use crate::net::free_port;
use crate::paths::{tests_binary, tool_path};
use crate::resources::{
    FIELD_MANAGER, apply_crd_file, install_vm_operator_crds, wait_crd_established,
};
use crate::supervisor::{ProcessSpec, SupervisedProcess};

/// The fake nodes: name and zone.
pub const KWOK_NODES: [(&str, &str); 3] = [
    ("kwok-zone-a", "zone-a"),
    ("kwok-zone-b", "zone-b"),
    ("kwok-zone-c", "zone-c"),
];
/// The zone label on [`KWOK_NODES`].
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The default StorageClass; kwok's volume Stages bind PVCs of this class (and only this one).
pub const STORAGE_CLASS: &str = "kwok-volume";
/// Annotation kwok selects its nodes by.
const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Which VMDistributed CRD an operator world serves (both are named
/// `vmdistributed.operator.victoriametrics.com`, so only one can be installed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VMDistributedCrd {
    /// The project's ([`crate::project_crd_path`]).
    #[default]
    Project,
    /// The operator's own, from [`crate::vm_operator_crd_path`]: what its VMDistributed
    /// controller reads.
    Upstream,
}

/// The VMDistributed setup of an operator world. The default is the one every test uses: the
/// project CRD, the operator's VMDistributed controller off, vmagent endpoints mirrored. The other
/// combinations exist to run the operator's own VMDistributed controller on the same stack, for
/// the side-by-side benchmark (`tests/benches/operator_side_by_side.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorWorldOptions {
    /// Let the operator reconcile VMDistributed (no `-controller.disableReconcileFor`).
    pub reconcile_vmdistributed: bool,
    pub vmdistributed_crd: VMDistributedCrd,
    /// Give the operator the world's agent metrics proxy as `HTTP_PROXY`
    /// ([`OperatorWorld::agent_metrics_proxy`]; loopback addresses stay direct), for the
    /// operator's own VMDistributed controller, which polls vmagent `/metrics`.
    pub operator_http_proxy: bool,
    /// Mirror vmagent Services into EndpointSlices at 198.18.Y.Z (default). Without it, vmagent
    /// pods have no usable endpoints, as on a plain kwok cluster; the proxy still runs.
    pub vmagent_endpoints: bool,
}

impl Default for OperatorWorldOptions {
    fn default() -> Self {
        Self {
            reconcile_vmdistributed: false,
            vmdistributed_crd: VMDistributedCrd::default(),
            operator_http_proxy: false,
            vmagent_endpoints: true,
        }
    }
}

/// The processes and addresses of a running operator world (see the module docs).
pub struct OperatorWorld {
    options: OperatorWorldOptions,
    processes: Vec<(&'static str, SupervisedProcess)>,
    loopback: u8,
    operator_health: u16,
    agent_metrics_proxy: String,
    started_in: Duration,
    // Reserves 127.X.0.0/16 for this world among all processes on the machine while it lives.
    _loopback_lock: File,
    // Nodes added by [`ControlPlane::add_zone_nodes`], by zone, in the order their pod ranges
    // were handed out (after those of [`KWOK_NODES`]).
    extra_nodes: tokio::sync::Mutex<Vec<String>>,
}

/// How many nodes fit into one world's 127.X.0.0/16 with a /20 each (the first /20 is left to
/// kwok's `--node-ip` and `--cidr` fallback).
const MAX_NODES: usize = 15;

impl OperatorWorld {
    /// The pod IP range, `127.X.0.0/16`. Node `KWOK_NODES[i]` hands out `127.X.(16*(i+1)).0/20`.
    pub fn pod_cidr(&self) -> String {
        format!("127.{}.0.0/16", self.loopback)
    }

    /// How long [`ControlPlane::ensure_operator_world`] took to start it (until the nodes were
    /// Ready and the operator reported its caches synced).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Name and PID of each process: `kube-scheduler`, `kwok`, `vm-pod-standin`, `vm-operator`
    /// (kube-controller-manager is the control plane's, see
    /// [`ControlPlane::controller_manager_pid`]).
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        self.processes
            .iter()
            .map(|(name, p)| (*name, p.pid()))
            .collect()
    }

    /// Log file of one of [`Self::processes`].
    pub fn log_path(&self, name: &str) -> Option<&Path> {
        self.processes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.log_path())
    }

    /// `http://127.0.0.1:PORT`: the agent metrics proxy of `vm-pod-standin`, which answers
    /// `GET http://198.18.Y.Z:PORT/metrics` for the vmagent pods it mirrored into EndpointSlices
    /// (see [`crate::vmagent_standin`]). Give it to a controller with
    /// [`crate::ProcessSpec::agent_metrics_proxy`].
    pub fn agent_metrics_proxy(&self) -> String {
        self.agent_metrics_proxy.clone()
    }

    /// `http://127.0.0.1:PORT`: the operator's health endpoints (`/health`, `/ready`).
    pub fn operator_health_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.operator_health)
    }

    fn check_alive(&self) -> Result<()> {
        for (name, process) in &self.processes {
            if let Some(how) = process.exit_status()? {
                bail!(
                    "{name} exited ({how}); log tail:\n{}",
                    tail(process.log_path())
                );
            }
        }
        Ok(())
    }
}

impl ControlPlane {
    /// Starts the real VictoriaMetrics operator world on this control plane unless it runs
    /// already (see [`crate::operator_world`]); returns once the nodes are Ready and the operator
    /// has synced its caches. Fails if one of its processes has exited.
    pub async fn ensure_operator_world(&self) -> Result<()> {
        let world = self
            .operator_world
            .get_or_try_init(|| self.start_operator_world(OperatorWorldOptions::default()))
            .await?;
        world.check_alive()?;
        self.ensure_controller_manager().await
    }

    /// [`Self::ensure_operator_world`] with another VMDistributed setup. Fails if the world runs
    /// already with other options: one control plane serves one VMDistributed CRD.
    pub async fn ensure_operator_world_with(&self, options: OperatorWorldOptions) -> Result<()> {
        let world = self
            .operator_world
            .get_or_try_init(|| self.start_operator_world(options.clone()))
            .await?;
        if world.options != options {
            bail!(
                "the operator world runs with {:?}, not {options:?}",
                world.options
            );
        }
        self.ensure_operator_world().await
    }

    /// Adds a Ready kwok node `kwok-<zone>` labelled [`ZONE_LABEL`]` = <zone>` for each zone that
    /// has none yet (for manifests whose pods select nodes by other zone names than
    /// [`KWOK_NODES`]'). Starts the operator world first if needed.
    pub async fn add_zone_nodes(&self, zones: &[&str]) -> Result<()> {
        self.ensure_operator_world().await?;
        let world = self
            .operator_world
            .get()
            .ok_or_else(|| anyhow!("the operator world did not start"))?;
        let client = self.client().await?;
        let mut added = world.extra_nodes.lock().await;
        let mut nodes = Vec::new();
        for zone in zones {
            if KWOK_NODES.iter().any(|(_, z)| z == zone) || added.iter().any(|z| z == zone) {
                continue;
            }
            let index = KWOK_NODES.len() + added.len();
            if index >= MAX_NODES {
                bail!("an operator world holds at most {MAX_NODES} nodes");
            }
            added.push((*zone).to_owned());
            nodes.push((format!("kwok-{zone}"), (*zone).to_owned(), index));
        }
        if nodes.is_empty() {
            return Ok(());
        }
        apply_nodes(&client, world.loopback, &nodes).await?;
        let names: Vec<String> = nodes.into_iter().map(|(name, ..)| name).collect();
        wait_nodes_ready(&client, world, &names, Instant::now() + START_TIMEOUT).await
    }

    /// The operator world, if [`Self::ensure_operator_world`] started it.
    pub fn operator_world(&self) -> Option<&OperatorWorld> {
        self.operator_world.get()
    }

    async fn start_operator_world(&self, options: OperatorWorldOptions) -> Result<OperatorWorld> {
        let began = Instant::now();
        self.ensure_controller_manager().await?;
        let (loopback, loopback_lock) = reserve_loopback_range()?;
        let client = self.client().await?;
        let kubeconfig = self.kubeconfig_path().display().to_string();
        let mut processes = Vec::new();

        let scheduler = ProcessSpec::new(
            tool_path("kube-scheduler")?,
            self.log_path("kube-scheduler"),
        )
        .args([
            format!("--kubeconfig={kubeconfig}"),
            "--leader-elect=false".into(),
            // No serving at all: nothing scrapes or probes it.
            "--secure-port=0".into(),
        ]);
        processes.push(("kube-scheduler", self.spawn(scheduler)?));

        // kwok reads ~/.kwok/kwok.yaml when it exists; a private HOME keeps a developer's file out.
        let kwok_home = self.dir().join("kwok-home");
        std::fs::create_dir_all(&kwok_home)
            .with_context(|| format!("creating {}", kwok_home.display()))?;
        let kwok = ProcessSpec::new(tool_path("kwok")?, self.log_path("kwok"))
            .env("HOME", kwok_home.display().to_string())
            .args([
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", tool_path("kwok-stages.yaml")?.display()),
                "--manage-all-nodes=false".into(),
                format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1
                ),
                // Only for nodes without a podCIDR; ours all have one.
                format!("--cidr=127.{loopback}.0.0/16"),
                format!("--node-ip=127.{loopback}.0.1"),
            ]);
        processes.push(("kwok", self.spawn(kwok)?));

        let agent_metrics_port = free_port()?;
        let agent_metrics_proxy = format!("http://127.0.0.1:{agent_metrics_port}");
        let standin = ProcessSpec::new(
            tests_binary("vm-pod-standin")?,
            self.log_path("vm-pod-standin"),
        )
        .args([
            format!("--kubeconfig={kubeconfig}"),
            "--reload-delay=1s".into(),
            format!("--agent-metrics-proxy-port={agent_metrics_port}"),
        ])
        .args((!options.vmagent_endpoints).then(|| "--no-vmagent-endpoints".to_owned()));
        processes.push(("vm-pod-standin", self.spawn(standin)?));

        let nodes: Vec<(String, String, usize)> = KWOK_NODES
            .iter()
            .enumerate()
            .map(|(index, (name, zone))| ((*name).to_owned(), (*zone).to_owned(), index))
            .collect();
        apply_nodes(&client, loopback, &nodes).await?;
        apply_storage_class(&client).await?;
        // The operator sets up a controller per CRD kind it knows; a missing CRD would keep its
        // caches from ever syncing.
        install_vm_operator_crds(&client, &[]).await?;
        let vmdistributed_crds = match options.vmdistributed_crd {
            VMDistributedCrd::Project => {
                apply_crd_file(&client, &crate::paths::project_crd_path()).await?
            }
            VMDistributedCrd::Upstream => vec![apply_upstream_vmdistributed_crd(&client).await?],
        };
        for name in vmdistributed_crds {
            wait_crd_established(&client, &name, Duration::from_secs(60)).await?;
        }

        let operator_health = free_port()?;
        let operator = ProcessSpec::new(tool_path("vm-operator")?, self.log_path("vm-operator"))
            // This project's controller reconciles VMDistributed, unless the world is there to
            // run the operator's own.
            .args(
                (!options.reconcile_vmdistributed)
                    .then(|| "-controller.disableReconcileFor=VMDistributed".to_string()),
            )
            .args([
                // Its webhook server has no listen-host flag and would bind every interface.
                "-webhook.enable=false".into(),
                "-leader-elect=false".into(),
                "-metrics-bind-address=0".into(),
                // The default pprof address is :8435, the config-reloader port on every pod IP.
                "-pprof-addr=".into(),
                format!("-health-probe-bind-address=127.0.0.1:{operator_health}"),
            ])
            // The operator polls pod, PVC and CR readiness every 5 s by default; kwok pods are
            // ready at once, so 1 s keeps tests short.
            .env("VM_PODWAITREADYINTERVALCHECK", "1s")
            .env("VM_PVC_WAIT_READY_INTERVAL", "1s")
            .env("VM_WAIT_READY_INTERVAL", "1s");
        let operator = if options.operator_http_proxy {
            operator.agent_metrics_proxy(&agent_metrics_proxy)
        } else {
            operator
        };
        processes.push(("vm-operator", self.spawn(operator)?));

        let mut world = OperatorWorld {
            options,
            processes,
            loopback,
            operator_health,
            agent_metrics_proxy,
            started_in: Duration::ZERO,
            _loopback_lock: loopback_lock,
            extra_nodes: tokio::sync::Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let names: Vec<String> = nodes.into_iter().map(|(name, ..)| name).collect();
        wait_nodes_ready(&client, &world, &names, deadline).await?;
        loop {
            world.check_alive()?;
            if http_get_ok(world.operator_health, "/ready")
                && http_get_ok(agent_metrics_port, crate::vmagent_standin::ANSWERED_PATH)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "vm-operator (or vm-pod-standin's agent metrics proxy) not ready after \
                     {START_TIMEOUT:?}; vm-operator log tail:\n{}",
                    world.log_path("vm-operator").map(tail).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        world.started_in = began.elapsed();
        Ok(world)
    }
}

/// Applies the operator's own VMDistributed CRD from [`crate::vm_operator_crd_path`] (which
/// [`crate::vm_operator_crds`] leaves out on purpose); returns its name.
async fn apply_upstream_vmdistributed_crd(client: &Client) -> Result<String> {
    let path = crate::resources::vm_operator_crd_path()?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let docs = crate::resources::parse_yaml_documents(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    let crd: CustomResourceDefinition = docs
        .into_iter()
        .find(|doc| doc["spec"]["names"]["kind"] == "VMDistributed")
        .ok_or_else(|| anyhow!("{} has no VMDistributed CRD", path.display()))
        .and_then(|doc| Ok(serde_json::from_value(doc)?))?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying the upstream CRD {name}"))?;
    Ok(name)
}

/// Picks X for 127.X.0.0/16 (1..=254) that no other operator world on this machine holds, and
/// holds it with a file lock that the kernel releases when this process exits.
fn reserve_loopback_range() -> Result<(u8, File)> {
    let dir = std::env::temp_dir().join("vmdistributed-loopback");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Start at a random place so concurrent test processes rarely contend for the same lock.
    let start = (nanos ^ std::process::id()) % 254;
    for i in 0..254 {
        let x = u8::try_from((start + i) % 254 + 1).context("loopback octet")?;
        let path = dir.join(format!("127.{x}.lock"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        if file.try_lock().is_ok() {
            return Ok((x, file));
        }
    }
    bail!(
        "all 254 loopback ranges are taken (locks in {})",
        dir.display()
    )
}

fn pod_range(loopback: u8, index: usize) -> String {
    format!("127.{loopback}.{}.0/20", 16 * (index + 1))
}

/// Applies kwok nodes given as (name, zone, index of their pod range).
async fn apply_nodes(
    client: &Client,
    loopback: u8,
    nodes: &[(String, String, usize)],
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for (name, zone, index) in nodes {
        let range = pod_range(loopback, *index);
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    ZONE_LABEL: zone,
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
                "annotations": {KWOK_NODE_ANNOTATION.0: KWOK_NODE_ANNOTATION.1},
            },
            // kwok hands out pod IPs from the node's podCIDR: the IP tells the zone.
            "spec": {"podCIDR": range, "podCIDRs": [range]},
        });
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await
        .with_context(|| format!("applying node {name}"))?;
    }
    Ok(())
}

async fn apply_storage_class(client: &Client) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    // As kwok ships it (kustomize/stage/volume/fast/storage-class.yaml).
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kwok.x-k8s.io/volume",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    });
    api.patch(
        STORAGE_CLASS,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&class),
    )
    .await
    .context("applying the kwok StorageClass")?;
    Ok(())
}

async fn wait_nodes_ready(
    client: &Client,
    world: &OperatorWorld,
    names: &[String],
    deadline: Instant,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    loop {
        world.check_alive()?;
        let mut ready = 0;
        for name in names {
            let node = api.get(name).await?;
            let is_ready = node
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            ready += usize::from(is_ready);
        }
        if ready == names.len() {
            return untaint_nodes(&api, names).await;
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "{ready} of {} kwok nodes Ready after {START_TIMEOUT:?}; kwok log tail:\n{}",
                names.len(),
                world.log_path("kwok").map(tail).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes the `node.kubernetes.io/not-ready` taint the API server's TaintNodesByCondition
/// admission puts on every new Node. In a cluster the node-lifecycle controller lifts it once the
/// node is Ready; that controller is not run here because it would also evict pods from nodes
/// without kubelet heartbeats.
async fn untaint_nodes(api: &Api<Node>, names: &[String]) -> Result<()> {
    for name in names {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .with_context(|| format!("removing the taints of node {name}"))?;
    }
    Ok(())
}

/// `GET http://127.0.0.1:port{path}` answered with 200.
fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

/// The content hash the config-reloader reports as `configreloader_reload_content_hash` and the
/// operator compares with: CRC-32 (IEEE, as Go's `crc32.ChecksumIEEE`) of the Secret value it
/// watches (for VMAuth, the gzipped config).
pub fn config_reloader_hash(content: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in content {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Resident set size of a process in bytes (`VmRSS` from `/proc/PID/status`), for reports.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmRSS in {}", path.display()))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reloader_hash_is_crc32_ieee() {
        assert_eq!(config_reloader_hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(config_reloader_hash(b""), 0);
    }

    #[test]
    fn two_worlds_in_one_process_get_different_loopback_ranges() -> Result<()> {
        let (a, _lock_a) = reserve_loopback_range()?;
        let (b, _lock_b) = reserve_loopback_range()?;
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn node_ranges_do_not_overlap_and_stay_in_the_world_range() {
        assert_eq!(pod_range(7, 0), "127.7.16.0/20");
        assert_eq!(pod_range(7, 2), "127.7.48.0/20");
    }
}
