//! Side-by-side benchmark (not a test) of the two VMDistributed controllers on the real
//! VictoriaMetrics operator: run with
//! `cargo bench -p vmdistributed-tests --bench operator_side_by_side`. Prints Markdown tables for
//! BENCHMARKS.md on stdout and the details (requests by resource, zone order, log lines) on
//! stderr.
//!
//! Each setup gets a control plane of its own, started with an audit log, and the operator world
//! of `harness::operator_world` (kwok nodes, kube-scheduler, kube-controller-manager, the real
//! `vm-operator` with pod readiness polled every second):
//! - `upstream`: the operator's own VMDistributed CRD, and the operator with its VMDistributed
//!   controller enabled (the same binary as in every other setup);
//! - `ours`: the project CRD, the operator's VMDistributed reconcile disabled, and a release build
//!   of `vmdistributed-controller` (as shipped: default `--concurrency`, no leader election,
//!   watching the benchmark's namespace).
//!
//! Both get the same 3-zone CR (`harness::manifests::three_zones`, an upstream-shaped manifest
//! both CRDs accept) and the same `clusterVersion` changes. Measured per change: the total
//! rollout time (PATCH sent → the CR `operational` at the new generation and every zone's
//! VMCluster `operational` at the new version), each zone's time out of the VMAuth (its VMAgent
//! missing from the write target ref or its VMCluster from the read one, as a watch on the VMAuth
//! sees it), the API requests each client made (kube-apiserver's audit log: our controller
//! authenticates as a ServiceAccount of its own, the operator is told apart by its user agent),
//! and the CPU time (utime + stime) and RSS of the controller under test, of the operator and of
//! kube-apiserver.
//!
//! The operator's VMDistributed controller polls every VMAgent pod's `/metrics` for
//! `vmagent_remotewrite_pending_data_bytes` before it takes a zone out of the VMAuth and before
//! it puts it back, and finds the pods through their Service's EndpointSlices. Two things of this
//! stack stop that: kwok pods run nothing, and the API server refuses loopback addresses in an
//! EndpointSlice, so the Service's slices of the loopback pods stay empty (kube-controller-
//! manager logs `may not be in the loopback range`) and the controller waits for endpoints until
//! its readyTimeout. The operator world therefore publishes, next to each vmagent Service's own
//! slice, a slice of its own with each Ready vmagent pod at an address of the benchmarking range
//! (pod `127.X.Y.Z` → `198.18.Y.Z`, RFC 2544), and answers those polls through the world's agent
//! metrics proxy on 127.0.0.1 (`harness::vmagent_standin`) with what an idle vmagent reports: every
//! queue empty (URLs hidden, as vmagent hides them by default). In the measured setups the
//! operator and our controller get that proxy as `HTTP_PROXY`. Nothing leaves 127.0.0.1: requests
//! to loopback addresses are never proxied, and nothing listens on 198.18.0.0/15. Both setups get
//! the same, so the environment differs only in the VMDistributed controller. The `as-is` setup
//! runs the operator's controller without either (no mirrored slices, no proxy), to record where
//! it stops on a plain kwok world.
//!
//! Variables: `VMD_BENCH_ROUNDS` (changes per setup, default 3), `VMD_BENCH_SETUPS` (default
//! `"upstream ours as-is"`), `VMD_BENCH_READY_TIMEOUT_S` (`zoneCommon.readyTimeout`, default 120),
//! `VMD_BENCH_UPDATE_PAUSE_S` (`zoneCommon.updatePause`, default 1), `VMD_BENCH_IDLE_S` (the idle
//! window measured after creation, default 30; 0 skips it).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt;
use harness::controller_env::standalone_controller;
use harness::operator_world::{OperatorWorldOptions, VMDistributedCrd};
use harness::proc_stats::{cpu_seconds, process_name, status_kib};
use harness::{ControlPlane, Options, SupervisedProcess};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shared::names::ChildKind;
use vmdistributed_runtime::resources;

const CR: &str = "bench";
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// The version the CR is created with; change `r` sets `v1.(110+r).0-cluster`.
const FIRST_MINOR: u32 = 110;
/// The ServiceAccount our controller authenticates as, so that the audit log tells its requests
/// from the benchmark's own (both are kube-rs clients).
const CONTROLLER_SA: &str = "vmd-bench-controller";
const OPERATOR_CLIENT: &str = "vm-operator";
const OUR_CLIENT: &str = "vmdistributed-controller";
/// Time between two changes, so that every controller is idle when the next one starts.
const SETTLE: Duration = Duration::from_secs(10);
const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Upstream,
    Ours,
    UpstreamAsIs,
}

impl Setup {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "upstream" => Ok(Self::Upstream),
            "ours" => Ok(Self::Ours),
            "as-is" => Ok(Self::UpstreamAsIs),
            other => bail!("VMD_BENCH_SETUPS: unknown setup {other:?} (upstream, ours, as-is)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Ours => "ours",
            Self::UpstreamAsIs => "upstream, as-is",
        }
    }

    fn world(self) -> OperatorWorldOptions {
        match self {
            Self::Ours => OperatorWorldOptions {
                operator_http_proxy: true,
                ..OperatorWorldOptions::default()
            },
            Self::Upstream => OperatorWorldOptions {
                reconcile_vmdistributed: true,
                vmdistributed_crd: VMDistributedCrd::Upstream,
                operator_http_proxy: true,
                vmagent_endpoints: true,
            },
            Self::UpstreamAsIs => OperatorWorldOptions {
                reconcile_vmdistributed: true,
                vmdistributed_crd: VMDistributedCrd::Upstream,
                operator_http_proxy: false,
                vmagent_endpoints: false,
            },
        }
    }

    /// The API client (see [`client_of`]) whose requests are the controller under test's.
    fn controller_client(self) -> &'static str {
        match self {
            Self::Ours => OUR_CLIENT,
            Self::Upstream | Self::UpstreamAsIs => OPERATOR_CLIENT,
        }
    }
}

struct Config {
    rounds: u32,
    ready_timeout_s: u64,
    update_pause_s: u64,
    idle: Duration,
}

impl Config {
    fn manifest(&self) -> String {
        harness::manifests::three_zones(
            CR,
            &version(0),
            &format!("{}s", self.ready_timeout_s),
            &format!("{}s", self.update_pause_s),
        )
    }

    /// The longest a create or change may take: every zone may use its whole readyTimeout.
    fn rollout_budget(&self) -> Duration {
        Duration::from_secs(3 * (self.ready_timeout_s + self.update_pause_s) + 60)
    }
}

fn version(change: u32) -> String {
    format!("v1.{}.0-cluster", FIRST_MINOR + change)
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// One stack: control plane, operator world, namespace and (for `ours`) our controller.
struct Stack {
    setup: Setup,
    cp: ControlPlane,
    client: Client,
    ns: String,
    vmd: Api<DynamicObject>,
    operator_pid: u32,
    apiserver_pid: u32,
    controller: Option<SupervisedProcess>,
    /// The world's vmagent `/metrics` proxy, but in the `as-is` setup.
    agent_metrics_proxy: Option<String>,
    start: StackStart,
}

#[derive(Clone, Copy)]
struct StackStart {
    /// `ControlPlane::start_with_audit_log` until the operator world reported ready.
    total: Duration,
    control_plane: Duration,
    world: Duration,
}

impl Stack {
    fn controller_pid(&self) -> u32 {
        self.controller
            .as_ref()
            .map_or(self.operator_pid, SupervisedProcess::pid)
    }

    fn audit_log(&self) -> Result<&Path> {
        self.cp
            .audit_log_path()
            .ok_or_else(|| anyhow!("the control plane has no audit log"))
    }
}

fn api(client: &Client, ns: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, resource)
}

async fn start_stack(setup: Setup) -> Result<Stack> {
    let began = Instant::now();
    let cp = ControlPlane::start_with_audit_log(Options::default()).await?;
    cp.ensure_operator_world_with(setup.world()).await?;
    let total = began.elapsed();
    let world = cp
        .operator_world()
        .ok_or_else(|| anyhow!("the operator world did not start"))?;
    let start = StackStart {
        total,
        control_plane: cp.started_in(),
        world: world.started_in(),
    };
    let operator_pid = world
        .processes()
        .into_iter()
        .find_map(|(name, pid)| (name == "vm-operator").then_some(pid))
        .ok_or_else(|| anyhow!("no vm-operator in the operator world"))?;
    let apiserver_pid = cp
        .pids()
        .into_iter()
        .find(|pid| process_name(*pid) == "kube-apiserver")
        .ok_or_else(|| anyhow!("no kube-apiserver among the control plane's processes"))?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "side-by-side").await?;
    let agent_metrics_proxy = (setup != Setup::UpstreamAsIs).then(|| world.agent_metrics_proxy());
    let controller = if setup == Setup::Ours {
        let proxy = world.agent_metrics_proxy();
        Some(start_our_controller(&cp, &client, &ns, &proxy).await?)
    } else {
        None
    };
    let vmd = api(&client, &ns, &resources::vmdistributed());
    Ok(Stack {
        setup,
        cp,
        client,
        ns,
        vmd,
        operator_pid,
        apiserver_pid,
        controller,
        agent_metrics_proxy,
        start,
    })
}

/// A release `vmdistributed-controller` for namespace `ns`, authenticated as the ServiceAccount
/// [`CONTROLLER_SA`] (bound to cluster-admin: RBAC is not what is measured), polling vmagent
/// `/metrics` through `agent_metrics_proxy`; returns once it answers `/readyz`.
async fn start_our_controller(
    cp: &ControlPlane,
    client: &Client,
    ns: &str,
    agent_metrics_proxy: &str,
) -> Result<SupervisedProcess> {
    let objects = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: {CONTROLLER_SA}
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {CONTROLLER_SA}-{ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: {CONTROLLER_SA}
  namespace: {ns}
"#
    );
    harness::apply_yaml(client, Some(ns), &objects).await?;
    let kubeconfig = cp.service_account_kubeconfig(ns, CONTROLLER_SA, cp.dir())?;
    let port = harness::free_port()?;
    let controller = cp.spawn(
        standalone_controller(cp, "controller", &kubeconfig, Some(ns), port)?
            .args(["--log-level=warn".to_owned()])
            .agent_metrics_proxy(agent_metrics_proxy),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_ok(SocketAddr::from(([127, 0, 0, 1], port)), "/readyz").await {
        if let Some(how) = controller.exit_status()? {
            bail!("vmdistributed-controller exited ({how})");
        }
        if Instant::now() > deadline {
            bail!("vmdistributed-controller not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(controller)
}

/// `GET path` answered with 200 (a blocking read with a 2 s timeout, run off the runtime).
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let timeout = Duration::from_secs(2);
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(timeout));
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200")
    })
    .await
    .unwrap_or(false)
}

/// What the watches saw during a create or change, stamped on arrival.
enum Seen {
    /// Per zone: out of the VMAuth (its VMAgent not a write target or its VMCluster not a read
    /// target).
    Auth { at: Instant, out: [bool; 3] },
    /// A zone's VMCluster: at the target version and `operational` for its generation.
    Cluster {
        at: Instant,
        zone: usize,
        done: bool,
    },
    /// The CR: `updateStatus` and `observedGeneration`.
    Cr {
        at: Instant,
        status: String,
        observed: Option<i64>,
        reason: String,
    },
}

fn child_zone(name: &str) -> Option<usize> {
    ZONES.iter().position(|z| name == format!("{CR}-{z}"))
}

/// Zones out of the VMAuth, from its `defaultTargetRefs` (both controllers write a `VMAgent`
/// write ref and a `VMCluster/vmselect` read ref listing the member zones' objects, or a static
/// stub when no zone is a member).
fn zones_out(vmauth: &DynamicObject) -> [bool; 3] {
    let mut write = HashSet::new();
    let mut read = HashSet::new();
    let refs = vmauth.data["spec"]["defaultTargetRefs"].as_array();
    for target in refs.into_iter().flatten() {
        let kind = target["crd"]["kind"].as_str().unwrap_or_default();
        let names = target["crd"]["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["name"].as_str());
        if kind == "VMAgent" {
            write.extend(names);
        } else if kind.starts_with("VMCluster") {
            read.extend(names);
        }
    }
    ZONES.map(|z| {
        let child = format!("{CR}-{z}");
        !(write.contains(child.as_str()) && read.contains(child.as_str()))
    })
}

fn status_str<'a>(obj: &'a DynamicObject, field: &str) -> &'a str {
    obj.data["status"][field].as_str().unwrap_or_default()
}

fn cluster_done(obj: &DynamicObject, version: &str) -> bool {
    obj.data["spec"]["clusterVersion"].as_str() == Some(version)
        && status_str(obj, "updateStatus") == "operational"
        && obj.data["status"]["observedGeneration"].as_i64() >= obj.metadata.generation
}

/// Watches the VMAuth, the VMClusters and the CR of `stack` into `tx` until aborted.
fn spawn_watches(
    stack: &Stack,
    version: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<Seen>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let auth = api(
        &stack.client,
        &stack.ns,
        &resources::child(ChildKind::VMAuth),
    );
    let by_name = watcher::Config::default().fields(&format!("metadata.name={CR}"));
    let (tx1, config) = (tx.clone(), by_name.clone());
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(auth, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = event {
                let _ = tx1.send(Seen::Auth {
                    at: Instant::now(),
                    out: zones_out(&obj),
                });
            }
        }
    }));
    let clusters = api(
        &stack.client,
        &stack.ns,
        &resources::child(ChildKind::VMCluster),
    );
    let (tx2, version) = (tx.clone(), version.to_owned());
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(clusters, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = event
                && let Some(zone) = child_zone(&obj.name_any())
            {
                let _ = tx2.send(Seen::Cluster {
                    at: Instant::now(),
                    zone,
                    done: cluster_done(&obj, &version),
                });
            }
        }
    }));
    let (tx3, vmd) = (tx.clone(), stack.vmd.clone());
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(vmd, by_name).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = event {
                let _ = tx3.send(Seen::Cr {
                    at: Instant::now(),
                    status: status_str(&obj, "updateStatus").to_owned(),
                    observed: obj.data["status"]["observedGeneration"].as_i64(),
                    reason: status_str(&obj, "reason").to_owned(),
                });
            }
        }
    }));
    tasks
}

/// Samples VmRSS of `pids` every 100 ms until `stop`; returns the highest value of each (KiB).
fn spawn_rss_sampler(pids: Vec<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut peak = vec![0; pids.len()];
        while !stop.load(Ordering::Relaxed) {
            for (pid, peak) in pids.iter().zip(peak.iter_mut()) {
                *peak = (*peak).max(status_kib(*pid, "VmRSS:").unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

/// One create or `clusterVersion` change, measured.
struct Rollout {
    total: Duration,
    out_of_lb: [Duration; 3],
    /// Zones in the order they first left the VMAuth.
    order: Vec<usize>,
    /// Client → verb → requests received during the rollout.
    requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Client → `verb resource[/subresource]` → requests (stderr detail).
    by_resource: BTreeMap<String, BTreeMap<String, u64>>,
    cpu_controller: f64,
    cpu_operator: f64,
    cpu_apiserver: f64,
    /// KiB: the controller under test's RSS at the end, highest sample during, VmHWM.
    rss_controller: (u64, u64, u64),
    /// KiB: the same for the operator process.
    rss_operator: (u64, u64, u64),
    /// vmagent `/metrics` polls the proxy answered (the operator's queue checks).
    vmagent_polls: u64,
}

enum Action {
    Create,
    Change(u32),
}

/// vmagent `/metrics` requests the world's proxy has answered so far (0 in the `as-is` setup).
async fn polls(stack: &Stack) -> Result<u64> {
    match &stack.agent_metrics_proxy {
        Some(proxy) => Ok(harness::vmagent_standin::answered(proxy).await?.0),
        None => Ok(0),
    }
}

async fn measure(stack: &Stack, config: &Config, action: &Action) -> Result<Rollout> {
    let version = match action {
        Action::Create => version(0),
        Action::Change(n) => version(*n),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watches = spawn_watches(stack, &version, &tx);
    drop(tx);
    // Let the watches list: their first events give the state before the change.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pids = vec![stack.controller_pid(), stack.operator_pid];
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(pids.clone(), stop.clone());
    let cpu_before = [
        cpu_seconds(stack.controller_pid()),
        cpu_seconds(stack.operator_pid),
        cpu_seconds(stack.apiserver_pid),
    ];
    let polls_before = polls(stack).await?;
    let wall_start = unix_nanos();
    let start = Instant::now();
    let generation = match action {
        Action::Create => {
            harness::apply_yaml(&stack.client, Some(&stack.ns), &config.manifest()).await?;
            1
        }
        Action::Change(_) => {
            let patch = json!({"spec": {"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": version}}}}});
            let cr = stack
                .vmd
                .patch(CR, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            cr.metadata.generation.context("the CR has no generation")?
        }
    };
    let mut seen = Vec::new();
    let mut clusters = [false; 3];
    let mut cr_done = false;
    let mut last_cr = (String::new(), None, String::new());
    let deadline = tokio::time::Instant::now() + config.rollout_budget();
    let end = loop {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let Ok(Some(event)) = next else {
            for watch in &watches {
                watch.abort();
            }
            stop.store(true, Ordering::Relaxed);
            bail!(
                "{}: not done after {:?}: CR {last_cr:?}, VMClusters done {clusters:?}",
                stack.setup.name(),
                config.rollout_budget()
            );
        };
        let at = match &event {
            Seen::Cluster { at, zone, done } => {
                clusters[*zone] = *done;
                *at
            }
            Seen::Cr {
                at,
                status,
                observed,
                reason,
            } => {
                cr_done = status == "operational" && *observed == Some(generation);
                last_cr = (status.clone(), *observed, reason.clone());
                *at
            }
            Seen::Auth { at, .. } => *at,
        };
        seen.push(event);
        if at >= start && cr_done && clusters.iter().all(|d| *d) {
            break at;
        }
    };
    let wall_end = wall_start + i128::try_from((end - start).as_nanos()).unwrap_or(i128::MAX);
    for watch in watches {
        watch.abort();
    }
    stop.store(true, Ordering::Relaxed);
    let cpu_after = [
        cpu_seconds(stack.controller_pid()),
        cpu_seconds(stack.operator_pid),
        cpu_seconds(stack.apiserver_pid),
    ];
    let vmagent_polls = polls(stack).await? - polls_before;
    let peaks = sampler.await.context("RSS sampler")?;
    let rss = |pid: u32, peak: u64| -> Result<(u64, u64, u64)> {
        Ok((status_kib(pid, "VmRSS:")?, peak, status_kib(pid, "VmHWM:")?))
    };
    let rss_controller = rss(pids[0], peaks[0])?;
    let rss_operator = rss(pids[1], peaks[1])?;
    let (out_of_lb, order) = time_out_of_lb(&seen, start, end);
    // Audit events are written when a request completes; give the last ones time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, by_resource) = audit_requests(stack.audit_log()?, wall_start, wall_end)?;
    Ok(Rollout {
        total: end - start,
        out_of_lb,
        order,
        requests,
        by_resource,
        cpu_controller: cpu_after[0] - cpu_before[0],
        cpu_operator: cpu_after[1] - cpu_before[1],
        cpu_apiserver: cpu_after[2] - cpu_before[2],
        rss_controller,
        rss_operator,
        vmagent_polls,
    })
}

/// Per zone, the time within `[start, end]` it spent out of the VMAuth, and the order in which
/// zones first left it.
fn time_out_of_lb(seen: &[Seen], start: Instant, end: Instant) -> ([Duration; 3], Vec<usize>) {
    let mut out = [false; 3];
    let mut since = start;
    let mut total = [Duration::ZERO; 3];
    let mut order = Vec::new();
    for event in seen {
        let Seen::Auth { at, out: now } = event else {
            continue;
        };
        let at = (*at).clamp(start, end);
        for zone in 0..3 {
            if out[zone] {
                total[zone] += at - since;
            }
            if now[zone] && !out[zone] && at > start && !order.contains(&zone) {
                order.push(zone);
            }
        }
        out = *now;
        since = at;
    }
    for zone in 0..3 {
        if out[zone] {
            total[zone] += end - since;
        }
    }
    (total, order)
}

fn unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Who made a request: our controller by its ServiceAccount, everyone else by the program name
/// in the user agent (`vm-operator/...`, `kube-controller-manager/...`, ...).
fn client_of(event: &Value) -> String {
    let user = event["user"]["username"].as_str().unwrap_or_default();
    if user.ends_with(&format!(":{CONTROLLER_SA}")) {
        return OUR_CLIENT.to_owned();
    }
    let agent = event["userAgent"].as_str().unwrap_or_default();
    match agent.split('/').next() {
        Some(program) if !program.is_empty() => program.to_owned(),
        _ => format!("{user} (no user agent)"),
    }
}

type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// Requests received in `[from, to]` (Unix nanoseconds), by client and verb, and by client and
/// `verb resource`; each audit ID is counted once.
fn audit_requests(path: &Path, from: i128, to: i128) -> Result<(Counts, Counts)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ids = HashSet::new();
    let mut by_verb = Counts::new();
    let mut by_resource = Counts::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(jiff::Timestamp::as_nanosecond);
        if !received.is_some_and(|t| (from..=to).contains(&t)) {
            continue;
        }
        if !ids.insert(event["auditID"].as_str().unwrap_or_default().to_owned()) {
            continue;
        }
        let client = client_of(&event);
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        let object = &event["objectRef"];
        let resource = match (object["resource"].as_str(), object["subresource"].as_str()) {
            (Some(r), Some(s)) => format!("{r}/{s}"),
            (Some(r), None) => r.to_owned(),
            _ => event["requestURI"].as_str().unwrap_or_default().to_owned(),
        };
        *by_verb
            .entry(client.clone())
            .or_default()
            .entry(verb.clone())
            .or_default() += 1;
        *by_resource
            .entry(client)
            .or_default()
            .entry(format!("{verb} {resource}"))
            .or_default() += 1;
    }
    Ok((by_verb, by_resource))
}

fn requests_cell(counts: Option<&BTreeMap<String, u64>>) -> String {
    let Some(counts) = counts else {
        return "0".to_owned();
    };
    let total: u64 = counts.values().sum();
    let parts: Vec<String> = VERBS
        .iter()
        .filter_map(|v| counts.get(*v).map(|n| format!("{v} {n}")))
        .chain(
            counts
                .iter()
                .filter(|(v, _)| !VERBS.contains(&v.as_str()))
                .map(|(v, n)| format!("{v} {n}")),
        )
        .collect();
    format!("**{total}** ({})", parts.join(", "))
}

fn total_requests(counts: Option<&BTreeMap<String, u64>>) -> u64 {
    counts.map_or(0, |c| c.values().sum())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Requests per client during an idle window after creation.
struct Idle {
    seconds: f64,
    requests: Counts,
    cpu_controller: f64,
    cpu_operator: f64,
}

async fn idle_window(stack: &Stack, length: Duration) -> Result<Idle> {
    let before = [
        cpu_seconds(stack.controller_pid()),
        cpu_seconds(stack.operator_pid),
    ];
    let from = unix_nanos();
    tokio::time::sleep(length).await;
    let to = unix_nanos();
    let after = [
        cpu_seconds(stack.controller_pid()),
        cpu_seconds(stack.operator_pid),
    ];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, by_resource) = audit_requests(stack.audit_log()?, from, to)?;
    eprintln!(
        "[{}] idle {:.0} s, requests by resource:",
        stack.setup.name(),
        length.as_secs_f64()
    );
    print_detail(stack.setup, &by_resource);
    Ok(Idle {
        seconds: length.as_secs_f64(),
        requests,
        cpu_controller: after[0] - before[0],
        cpu_operator: after[1] - before[1],
    })
}

/// Requests by `verb resource` of the controller under test and the operator, on stderr.
fn print_detail(setup: Setup, by_resource: &Counts) {
    for client in [setup.controller_client(), OPERATOR_CLIENT]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let Some(counts) = by_resource.get(client) else {
            eprintln!("  {client}: none");
            continue;
        };
        let mut rows: Vec<_> = counts.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        let rows: Vec<String> = rows.iter().map(|(k, n)| format!("{n} {k}")).collect();
        eprintln!("  {client}: {}", rows.join(", "));
    }
    let others: Vec<String> = by_resource
        .iter()
        .filter(|(c, _)| *c != OUR_CLIENT && *c != OPERATOR_CLIENT)
        .map(|(c, counts)| format!("{c} {}", counts.values().sum::<u64>()))
        .collect();
    eprintln!("  other clients: {}", others.join(", "));
}

/// Everything measured on one setup.
struct SetupResult {
    setup: Setup,
    start: StackStart,
    create: Rollout,
    idle: Option<Idle>,
    changes: Vec<Rollout>,
}

async fn run_setup(setup: Setup, config: &Config) -> Result<SetupResult> {
    let stack = start_stack(setup).await?;
    eprintln!(
        "[{}] stack started in {:.2} s (control plane {:.2} s, operator world {:.2} s), namespace {}",
        setup.name(),
        stack.start.total.as_secs_f64(),
        stack.start.control_plane.as_secs_f64(),
        stack.start.world.as_secs_f64(),
        stack.ns
    );
    let create = measure(&stack, config, &Action::Create).await?;
    report_rollout(setup, "create", &create);
    tokio::time::sleep(SETTLE).await;
    let idle = if config.idle.is_zero() {
        None
    } else {
        Some(idle_window(&stack, config.idle).await?)
    };
    let mut changes = Vec::new();
    for n in 1..=config.rounds {
        let change = measure(&stack, config, &Action::Change(n)).await?;
        report_rollout(setup, &format!("change {n} → {}", version(n)), &change);
        changes.push(change);
        tokio::time::sleep(SETTLE).await;
    }
    Ok(SetupResult {
        setup,
        start: stack.start,
        create,
        idle,
        changes,
    })
}

fn report_rollout(setup: Setup, what: &str, r: &Rollout) {
    let order: Vec<&str> = r.order.iter().map(|z| ZONES[*z]).collect();
    eprintln!(
        "[{}] {what}: {:.2} s; out of the VMAuth {:.2} / {:.2} / {:.2} s, zones left it in order {order:?}; CPU controller {:.2} s, operator {:.2} s, kube-apiserver {:.2} s; vmagent /metrics polls answered {}",
        setup.name(),
        r.total.as_secs_f64(),
        r.out_of_lb[0].as_secs_f64(),
        r.out_of_lb[1].as_secs_f64(),
        r.out_of_lb[2].as_secs_f64(),
        r.cpu_controller,
        r.cpu_operator,
        r.cpu_apiserver,
        r.vmagent_polls,
    );
    print_detail(setup, &r.by_resource);
}

/// The operator's VMDistributed controller on the world as the harness starts it (no answer on
/// the vmagent pods' `/metrics`): create the CR and watch it for a readyTimeout and a margin.
async fn upstream_as_is(config: &Config) -> Result<String> {
    let stack = start_stack(Setup::UpstreamAsIs).await?;
    eprintln!(
        "[{}] stack started in {:.2} s (control plane {:.2} s, operator world {:.2} s)",
        Setup::UpstreamAsIs.name(),
        stack.start.total.as_secs_f64(),
        stack.start.control_plane.as_secs_f64(),
        stack.start.world.as_secs_f64(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watches = spawn_watches(&stack, &version(0), &tx);
    drop(tx);
    let start = Instant::now();
    harness::apply_yaml(&stack.client, Some(&stack.ns), &config.manifest()).await?;
    let observe = Duration::from_secs(config.ready_timeout_s + 45);
    let mut timeline: Vec<String> = Vec::new();
    let mut last = (String::new(), None, String::new());
    let mut clusters = [false; 3];
    let deadline = tokio::time::Instant::now() + observe;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match event {
            Seen::Cr {
                at,
                status,
                observed,
                reason,
            } => {
                let now = (status, observed, reason);
                if now != last {
                    timeline.push(format!(
                        "{:.1} s: updateStatus `{}`{}",
                        at.saturating_duration_since(start).as_secs_f64(),
                        if now.0.is_empty() { "(none)" } else { &now.0 },
                        if now.2.is_empty() {
                            String::new()
                        } else {
                            format!(", reason `{}`", now.2)
                        }
                    ));
                    last = now;
                }
            }
            Seen::Cluster { zone, done, .. } => clusters[zone] = done,
            Seen::Auth { .. } => {}
        }
    }
    for watch in watches {
        watch.abort();
    }
    let log_path = stack
        .cp
        .operator_world()
        .and_then(|w| w.log_path("vm-operator"))
        .ok_or_else(|| anyhow!("no vm-operator log"))?;
    let log = std::fs::read_to_string(log_path)
        .with_context(|| format!("reading {}", log_path.display()))?;
    // The VMDistributed controller's own lines and its reconcile errors.
    let relevant: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(r#""logger":"controller.VMDistributed""#)
                || (l.contains(r#""controller":"vmdistributed""#)
                    && l.contains(r#""level":"error""#))
        })
        .collect();
    eprintln!(
        "[{}] the operator's VMDistributed log lines ({} in all):",
        Setup::UpstreamAsIs.name(),
        relevant.len()
    );
    for line in &relevant {
        eprintln!("  {line}");
    }
    let mut out = format!(
        "Observed for {:.0} s after the CR was created (readyTimeout {} s). VMClusters operational at {}: {}. CR status timeline:\n",
        observe.as_secs_f64(),
        config.ready_timeout_s,
        version(0),
        ZONES
            .iter()
            .zip(clusters)
            .map(|(z, d)| format!("{z} {}", if d { "yes" } else { "no" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for line in &timeline {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str(&format!(
        "The operator's VMDistributed log lines ({} in all, the first 12):\n",
        relevant.len()
    ));
    for line in relevant.iter().take(12) {
        out.push_str(&format!("    {line}\n"));
    }
    let kcm = std::fs::read_to_string(stack.cp.dir().join("kube-controller-manager.log"))
        .unwrap_or_default();
    if let Some(line) = kcm
        .lines()
        .find(|l| l.contains("vmagent-") && l.contains("loopback range"))
    {
        out.push_str(&format!(
            "kube-controller-manager on the vmagent Service's EndpointSlice:\n    {line}\n"
        ));
    }
    Ok(out)
}

fn print_tables(results: &[SetupResult], config: &Config) {
    println!(
        "Same 3-zone CR (`harness::manifests::three_zones`, readyTimeout {} s, updatePause {} s), `clusterVersion` {} → {}, ….",
        config.ready_timeout_s,
        config.update_pause_s,
        version(0),
        version(1)
    );
    println!();
    println!(
        "| setup | run | rollout | out of the VMAuth, zone a / b / c | API requests, controller under test | API requests, operator's other controllers | CPU s: controller under test / operator / kube-apiserver | RSS MiB, controller under test: end / peak during / VmHWM |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for result in results {
        let setup = result.setup;
        let mut rows: Vec<(String, &Rollout)> = vec![("create".to_owned(), &result.create)];
        rows.extend(
            result
                .changes
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("change {}", i + 1), r)),
        );
        for (run, r) in rows {
            let controller = r.requests.get(setup.controller_client());
            let operator = if setup == Setup::Ours {
                requests_cell(r.requests.get(OPERATOR_CLIENT))
            } else {
                "(same process)".to_owned()
            };
            let cpu = if setup == Setup::Ours {
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    r.cpu_controller, r.cpu_operator, r.cpu_apiserver
                )
            } else {
                format!("{:.2} / (same) / {:.2}", r.cpu_controller, r.cpu_apiserver)
            };
            let out = if run == "create" {
                "—".to_owned()
            } else {
                format!(
                    "{:.2} / {:.2} / {:.2} s",
                    r.out_of_lb[0].as_secs_f64(),
                    r.out_of_lb[1].as_secs_f64(),
                    r.out_of_lb[2].as_secs_f64()
                )
            };
            println!(
                "| {} | {run} | {:.2} s | {out} | {} | {operator} | {cpu} | {:.1} / {:.1} / {:.1} |",
                setup.name(),
                r.total.as_secs_f64(),
                requests_cell(controller),
                mib(r.rss_controller.0),
                mib(r.rss_controller.1),
                mib(r.rss_controller.2),
            );
        }
    }
    println!();
    println!(
        "| setup | median rollout | median out of the VMAuth per zone | median requests: controller under test / operator's others | median CPU s: controller under test + operator | operator RSS MiB end / VmHWM | stack start (control plane + operator world) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for result in results {
        let setup = result.setup;
        let changes = &result.changes;
        let rollout = median(changes.iter().map(|r| r.total.as_secs_f64()).collect());
        let out = median(
            changes
                .iter()
                .flat_map(|r| r.out_of_lb.iter().map(Duration::as_secs_f64))
                .collect(),
        );
        let controller = median(
            changes
                .iter()
                .map(|r| total_requests(r.requests.get(setup.controller_client())) as f64)
                .collect(),
        );
        let operator = if setup == Setup::Ours {
            format!(
                "{:.0}",
                median(
                    changes
                        .iter()
                        .map(|r| total_requests(r.requests.get(OPERATOR_CLIENT)) as f64)
                        .collect()
                )
            )
        } else {
            "(same)".to_owned()
        };
        let cpu = median(
            changes
                .iter()
                .map(|r| {
                    if setup == Setup::Ours {
                        r.cpu_controller + r.cpu_operator
                    } else {
                        r.cpu_controller
                    }
                })
                .collect(),
        );
        let last = changes.last().unwrap_or(&result.create);
        println!(
            "| {} | {rollout:.2} s | {out:.2} s | {controller:.0} / {operator} | {cpu:.2} | {:.1} / {:.1} | {:.2} s ({:.2} + {:.2}) |",
            setup.name(),
            mib(last.rss_operator.0),
            mib(last.rss_operator.2),
            result.start.total.as_secs_f64(),
            result.start.control_plane.as_secs_f64(),
            result.start.world.as_secs_f64(),
        );
    }
    if results.iter().any(|r| r.idle.is_some()) {
        println!();
        println!(
            "| setup | idle window after creation | requests, controller under test | requests, operator's others | CPU s: controller under test / operator |"
        );
        println!("|---|---|---|---|---|");
        for result in results {
            let Some(idle) = &result.idle else {
                continue;
            };
            let setup = result.setup;
            let operator = if setup == Setup::Ours {
                requests_cell(idle.requests.get(OPERATOR_CLIENT))
            } else {
                "(same process)".to_owned()
            };
            println!(
                "| {} | {:.0} s | {} | {operator} | {:.2} / {} |",
                setup.name(),
                idle.seconds,
                requests_cell(idle.requests.get(setup.controller_client())),
                idle.cpu_controller,
                if setup == Setup::Ours {
                    format!("{:.2}", idle.cpu_operator)
                } else {
                    "(same)".to_owned()
                }
            );
        }
    }
}

/// Commit and machine, for the record.
fn describe_run() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(harness::workspace_root())
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--", "controller", "shared"]);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} UTC, commit {commit}{}, {cpus} CPUs ({model}), load average at start {}",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M"),
        if dirty.is_empty() {
            String::new()
        } else {
            format!(
                " (controller/ or shared/ with uncommitted changes: {} files)",
                dirty.lines().count()
            )
        },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    harness::install_crypto_provider();
    let config = Config {
        rounds: u32::try_from(env_u64("VMD_BENCH_ROUNDS", 3)?).context("VMD_BENCH_ROUNDS")?,
        ready_timeout_s: env_u64("VMD_BENCH_READY_TIMEOUT_S", 120)?,
        update_pause_s: env_u64("VMD_BENCH_UPDATE_PAUSE_S", 1)?,
        idle: Duration::from_secs(env_u64("VMD_BENCH_IDLE_S", 30)?),
    };
    let setups: Vec<Setup> = std::env::var("VMD_BENCH_SETUPS")
        .unwrap_or_else(|_| "upstream ours as-is".to_owned())
        .split_whitespace()
        .map(Setup::parse)
        .collect::<Result<_>>()?;
    // Built before any stack starts, so the build is not part of a measurement.
    if setups.contains(&Setup::Ours) {
        tokio::task::spawn_blocking(harness::controller_binary)
            .await
            .context("controller build task")??;
    }
    let run = describe_run();
    eprintln!("{run}");
    let mut results = Vec::new();
    let mut as_is = None;
    for setup in setups {
        // One stack at a time: each holds about 1 GB and the machine's cores.
        if setup == Setup::UpstreamAsIs {
            as_is = Some(upstream_as_is(&config).await?);
        } else {
            results.push(run_setup(setup, &config).await?);
        }
    }
    println!("{run}");
    println!();
    if !results.is_empty() {
        print_tables(&results, &config);
    }
    if let Some(as_is) = as_is {
        println!();
        println!(
            "Upstream on the world as the harness starts it (nothing answers on the vmagent pods' /metrics):"
        );
        println!("{as_is}");
    }
    Ok(())
}
