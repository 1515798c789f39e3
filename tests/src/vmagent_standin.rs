//! A stand-in for vmagent's `/metrics` (its remote-write queue sizes) in every test world, so that
//! a controller that drains vmagent's persistent queues before a rollout step finds the agents and
//! can read their queues.
//!
//! A controller finds a VMAgent's pods through the EndpointSlices of its Service (label
//! `kubernetes.io/service-name=vmagent-<name>`, `<name>` with `spec.useLegacyNaming: true`), takes
//! the port named `http` and GETs `http://<address>:<port>/metrics`. Nothing here can answer on
//! those addresses directly, so the worlds publish each agent at an address of the benchmarking
//! range 198.18.0.0/15 (RFC 2544, where nothing listens), and the controller is started with
//! `HTTP_PROXY` pointing at a small proxy on 127.0.0.1 ([`serve_metrics_proxy`]) that answers
//! `GET http://198.18.Y.Z:PORT/metrics` for the agent published there (see
//! [`crate::ProcessSpec::agent_metrics_proxy`]). `NO_PROXY=127.0.0.0/8,localhost` keeps the API
//! server and everything else on 127.0.0.1 direct.
//!
//! - Real-operator tier ([`mirror_vmagent_endpoints`], run by `vm-pod-standin` for the whole
//!   world): the API server refuses loopback addresses in EndpointSlices, so the slices
//!   kube-controller-manager keeps for the vmagent Services of loopback kwok pods stay empty. The
//!   mirror publishes, per vmagent Service, a slice of its own (`<service>-standin`) with each
//!   Ready pod `127.X.Y.Z` at `198.18.Y.Z` ([`mirrored_address`]).
//! - Simulated operator ([`publish_sim_agent_endpoints`], run by `vm-operator-sim`): there are no
//!   pods; each VMAgent gets a slice named like its Service with one endpoint at an address of
//!   198.18.0.0/16 derived from its namespace and name ([`sim_address`]), ready while the VMAgent
//!   exists and is not being deleted (unless [`ENDPOINT_READY_ANNOTATION`] says `"false"`).
//!
//! Both label their slices `endpointslice.kubernetes.io/managed-by: vmd-test-standin`
//! ([`MANAGED_BY`]), so kube-controller-manager leaves them alone.
//!
//! # What an agent reports
//!
//! One series per entry of the live VMAgent's `spec.remoteWrite` (N = 1..=len), as vmagent does:
//!
//! ```text
//! # TYPE vmagent_remotewrite_pending_data_bytes gauge
//! vmagent_remotewrite_pending_data_bytes{path="/tmp/vmagent-remotewrite-data/persistent-queue/1_0000000000000000",url="1:secret-url"} 0
//! ```
//!
//! The path is `<tmpDataPath>/persistent-queue/<N>_0000000000000000` (`tmpDataPath` from
//! `spec.remoteWriteSettings.tmpDataPath`, else `spec.extraArgs["remoteWrite.tmpDataPath"]`, else
//! vmagent's default `/tmp/vmagent-remotewrite-data`; the all-zero hash means "no hash", matched
//! by index). Annotations on the VMAgent change that, read at every request:
//!
//! | annotation | value | effect |
//! |---|---|---|
//! | [`PENDING_BYTES_ANNOTATION`] | `"2=1048576,3=10"` | pending bytes by 1-based index; unlisted indices report 0 |
//! | [`PENDING_METRIC_ANNOTATION`] | `legacy` | only the older `vm_persistentqueue_bytes_pending{path="..."}` (no url label) |
//! | [`PENDING_URL_ANNOTATION`] | `show` (or `hide`) | url label `"N:<the real url>"` (`-remoteWrite.showURL`; also when `spec.remoteWriteSettings.showURL` is true) |
//! | [`PENDING_MISSING_ANNOTATION`] | `"2"` or `"1,3"` | those indices have no series at all |
//!
//! A value that does not parse is answered with HTTP 500 and the reason, never guessed at.
//!
//! # The proxy
//!
//! Absolute-form requests (`GET http://198.18.1.2:8429/metrics HTTP/1.1`) for an address the
//! world published are answered as above (the path is `/metrics` under the VMAgent's
//! `extraArgs["http.pathPrefix"]`); any other address or port gets 502, another path 404. HTTPS
//! agents (`extraArgs.tls`) are not served.
//! Origin-form `GET /-/answered` answers how many `/metrics` requests it served, as JSON
//! (`{"total": N, "agents": {"<namespace>/<name>": N}}`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context as _, Result, anyhow, bail};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shared::names::ChildKind;
use vmdistributed_runtime::resources;

use crate::supervisor::ProcessSpec;

/// Annotation: pending bytes by 1-based remote-write index, `"2=1048576,3=10"`.
pub const PENDING_BYTES_ANNOTATION: &str = "sim.vmdistributed.io/pending-bytes";
/// Annotation: `legacy` reports only `vm_persistentqueue_bytes_pending`.
pub const PENDING_METRIC_ANNOTATION: &str = "sim.vmdistributed.io/pending-metric";
/// Annotation: `show` makes the url label `"N:<url>"`, `hide` keeps `"N:secret-url"`.
pub const PENDING_URL_ANNOTATION: &str = "sim.vmdistributed.io/pending-url";
/// Annotation: 1-based indices, comma-separated, whose series are left out.
pub const PENDING_MISSING_ANNOTATION: &str = "sim.vmdistributed.io/pending-missing";
/// Annotation (simulated operator only): `"false"` publishes the agent's endpoint not ready.
pub const ENDPOINT_READY_ANNOTATION: &str = "sim.vmdistributed.io/endpoint-ready";
/// `endpointslice.kubernetes.io/managed-by` of the slices published here, and their field
/// manager.
pub const MANAGED_BY: &str = "vmd-test-standin";
/// vmagent's default HTTP port (`spec.port` overrides it).
pub const VMAGENT_PORT: u16 = 8429;
/// vmagent's default `-remoteWrite.tmpDataPath`.
pub const DEFAULT_TMP_DATA_PATH: &str = "/tmp/vmagent-remotewrite-data";
/// `NO_PROXY` of the processes given the proxy: everything on the machine stays direct.
pub const NO_PROXY: &str = "127.0.0.0/8,localhost";
/// Origin-form path on the proxy that reports how many `/metrics` requests it answered.
pub const ANSWERED_PATH: &str = "/-/answered";

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The label the operator gives a VMAgent's pods: the VMAgent's name.
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

impl ProcessSpec {
    /// Sends the process's plain-HTTP requests to addresses off the machine through the agent
    /// metrics proxy `proxy_url` (`http://127.0.0.1:PORT`), keeping 127.0.0.0/8 direct:
    /// `HTTP_PROXY`/`http_proxy` and `NO_PROXY`/`no_proxy` (both spellings, so that a variable
    /// inherited from the test's own environment cannot win).
    pub fn agent_metrics_proxy(self, proxy_url: &str) -> Self {
        self.env("HTTP_PROXY", proxy_url)
            .env("http_proxy", proxy_url)
            .env("NO_PROXY", NO_PROXY)
            .env("no_proxy", NO_PROXY)
    }
}

/// The name of a VMAgent's Service: `vmagent-<name>`, or `<name>` with `spec.useLegacyNaming`.
pub fn service_name(agent: &DynamicObject) -> String {
    let name = agent.name_any();
    if agent.data["spec"]["useLegacyNaming"].as_bool() == Some(true) {
        name
    } else {
        format!("vmagent-{name}")
    }
}

/// The HTTP port of a VMAgent: `spec.port`, else [`VMAGENT_PORT`].
pub fn agent_port(agent: &DynamicObject) -> u16 {
    let port = &agent.data["spec"]["port"];
    port.as_str()
        .and_then(|p| p.parse().ok())
        .or_else(|| port.as_u64().and_then(|p| u16::try_from(p).ok()))
        .unwrap_or(VMAGENT_PORT)
}

/// Where a VMAgent serves its metrics: `/metrics` under `spec.extraArgs["http.pathPrefix"]`.
pub fn metrics_path(agent: &DynamicObject) -> String {
    let prefix = agent.data["spec"]["extraArgs"]["http.pathPrefix"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    format!("{prefix}/metrics")
}

fn tmp_data_path(spec: &Value) -> String {
    let path = spec["remoteWriteSettings"]["tmpDataPath"]
        .as_str()
        .or_else(|| spec["extraArgs"]["remoteWrite.tmpDataPath"].as_str())
        .unwrap_or(DEFAULT_TMP_DATA_PATH);
    path.trim_end_matches('/').to_owned()
}

/// `"2=1048576, 3=10"` → {2: 1048576, 3: 10}; indices are 1-based.
pub fn parse_pending_bytes(text: &str) -> Result<BTreeMap<usize, u64>> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (index, bytes) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("{item:?} is not INDEX=BYTES"))?;
        let index = parse_index(index)?;
        let bytes = bytes
            .trim()
            .parse()
            .with_context(|| format!("{item:?}: bytes must be a non-negative integer"))?;
        out.insert(index, bytes);
    }
    Ok(out)
}

/// `"1, 3"` → {1, 3}.
pub fn parse_indices(text: &str) -> Result<BTreeSet<usize>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_index)
        .collect()
}

fn parse_index(text: &str) -> Result<usize> {
    match text.trim().parse::<usize>() {
        Ok(0) | Err(_) => bail!("{text:?} is not a 1-based remote-write index"),
        Ok(index) => Ok(index),
    }
}

/// A Prometheus label value, quoted and escaped.
fn label(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// The `/metrics` body of a VMAgent as its pods would report it now (see the module docs).
pub fn render_metrics(agent: &DynamicObject) -> Result<String> {
    let spec = &agent.data["spec"];
    let annotations = agent.annotations();
    let read = |key: &str| annotations.get(key).map(|v| v.trim());
    let pending = read(PENDING_BYTES_ANNOTATION)
        .map(parse_pending_bytes)
        .transpose()
        .with_context(|| format!("annotation {PENDING_BYTES_ANNOTATION}"))?
        .unwrap_or_default();
    let missing = read(PENDING_MISSING_ANNOTATION)
        .map(parse_indices)
        .transpose()
        .with_context(|| format!("annotation {PENDING_MISSING_ANNOTATION}"))?
        .unwrap_or_default();
    let legacy = match read(PENDING_METRIC_ANNOTATION) {
        None | Some("" | "current") => false,
        Some("legacy") => true,
        Some(other) => bail!("annotation {PENDING_METRIC_ANNOTATION}: {other:?} is not legacy"),
    };
    let show_url = match read(PENDING_URL_ANNOTATION) {
        None | Some("") => spec["remoteWriteSettings"]["showURL"].as_bool() == Some(true),
        Some("show") => true,
        Some("hide") => false,
        Some(other) => bail!("annotation {PENDING_URL_ANNOTATION}: {other:?} is not show or hide"),
    };
    let queues = tmp_data_path(spec) + "/persistent-queue";
    let remote_writes = spec["remoteWrite"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let metric = if legacy {
        "vm_persistentqueue_bytes_pending"
    } else {
        "vmagent_remotewrite_pending_data_bytes"
    };
    let mut out = format!("# TYPE {metric} gauge\n");
    for (i, remote_write) in remote_writes.iter().enumerate() {
        let n = i + 1;
        if missing.contains(&n) {
            continue;
        }
        let path = label(&format!("{queues}/{n}_0000000000000000"));
        let bytes = pending.get(&n).copied().unwrap_or(0);
        if legacy {
            out.push_str(&format!("{metric}{{path={path}}} {bytes}\n"));
        } else {
            let url = if show_url {
                format!("{n}:{}", remote_write["url"].as_str().unwrap_or_default())
            } else {
                format!("{n}:secret-url")
            };
            let url = label(&url);
            out.push_str(&format!("{metric}{{path={path},url={url}}} {bytes}\n"));
        }
    }
    Ok(out)
}

/// A VMAgent: (namespace, name).
pub type AgentRef = (String, String);

/// Which agent each published address belongs to; shared by a publisher and the proxy.
#[derive(Clone, Default)]
pub struct AddressBook(Arc<Mutex<HashMap<Ipv4Addr, AgentRef>>>);

impl AddressBook {
    fn lock(&self) -> MutexGuard<'_, HashMap<Ipv4Addr, AgentRef>> {
        // Plain data: a panic while holding the lock leaves nothing half-done worth stopping for.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent published at `address`.
    pub fn get(&self, address: Ipv4Addr) -> Option<AgentRef> {
        self.lock().get(&address).cloned()
    }

    fn insert(&self, address: Ipv4Addr, agent: AgentRef) {
        self.lock().insert(address, agent);
    }

    fn remove(&self, address: Ipv4Addr) {
        self.lock().remove(&address);
    }
}

/// A reflector over the VMAgents of `namespace` (all when `None`): the store the proxy reads and
/// the event stream that keeps it current (poll it, e.g. with [`publish_sim_agent_endpoints`] or
/// [`drive`]). Watch errors (the CRD not installed yet) are retried with backoff.
pub fn vmagent_reflector(
    client: Client,
    namespace: Option<&str>,
) -> (
    Store<DynamicObject>,
    impl Stream<Item = watcher::Result<Event<DynamicObject>>> + Send + 'static,
) {
    let resource = resources::child(ChildKind::VMAgent);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let writer = reflector::store::Writer::new(resource);
    let store = writer.as_reader();
    let events = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
    );
    (store, events)
}

/// Polls a reflector's events for their effect on the store only.
pub async fn drive(events: impl Stream<Item = watcher::Result<Event<DynamicObject>>>) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            tracing::debug!(error = %e, "VMAgent watch (retried)");
        }
    }
}

fn agent_ref(agent: &DynamicObject) -> AgentRef {
    (agent.namespace().unwrap_or_default(), agent.name_any())
}

fn slice(
    ns: &str,
    name: &str,
    service: &str,
    port: u16,
    endpoints: impl IntoIterator<Item = (Ipv4Addr, bool)>,
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                SERVICE_NAME_LABEL: service,
                // Not the endpointslice controller's: it leaves this slice alone.
                MANAGED_BY_LABEL: MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints.into_iter().map(|(ip, ready)| json!({
            "addresses": [ip.to_string()],
            "conditions": {"ready": ready},
        })).collect::<Vec<_>>(),
    })
}

async fn apply_slice(client: &Client, ns: &str, slice: Value) -> Result<()> {
    let name = slice["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(MANAGED_BY).force(),
        &Patch::Apply(&slice),
    )
    .await
    .with_context(|| format!("applying EndpointSlice {ns}/{name}"))?;
    Ok(())
}

async fn delete_slice(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting EndpointSlice {ns}/{name}")),
    }
}

/// The address the simulated operator publishes a VMAgent at: 198.18.0.0/16, from an FNV-1a hash
/// of `namespace/name`, the next free one when `taken` (by another agent) says so.
pub fn sim_address(namespace: &str, name: &str, taken: impl Fn(Ipv4Addr) -> bool) -> Ipv4Addr {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let start = (hash % 65_536) as u16;
    let at = |i: u16| {
        let [c, d] = i.to_be_bytes();
        Ipv4Addr::new(198, 18, c, d)
    };
    (0..=u16::MAX)
        .map(|step| at(start.wrapping_add(step)))
        .find(|ip| !taken(*ip))
        .unwrap_or_else(|| at(start))
}

/// What the simulated operator publishes for one VMAgent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SimSlice {
    name: String,
    port: u16,
    address: Ipv4Addr,
    ready: bool,
}

/// For every VMAgent of `events` (the stream of the [`vmagent_reflector`] whose store is
/// `agents`), keeps an EndpointSlice named like its Service with one endpoint at [`sim_address`],
/// port `http` = [`agent_port`], ready while the VMAgent exists and is not being deleted (and
/// [`ENDPOINT_READY_ANNOTATION`] is not `"false"`), and records the address in `addresses`. A
/// VMAgent's slice is deleted with it; after the first listing, slices of this kind whose VMAgent
/// is gone are deleted too (a restart of the simulator missed their deletion). Failed writes are
/// retried every [`RETRY_EVERY`]. Runs until the stream ends.
pub async fn publish_sim_agent_endpoints(
    client: Client,
    namespace: Option<String>,
    addresses: AddressBook,
    agents: Store<DynamicObject>,
    events: impl Stream<Item = watcher::Result<Event<DynamicObject>>>,
) -> Result<()> {
    let mut events = std::pin::pin!(events);
    let mut published: HashMap<AgentRef, SimSlice> = HashMap::new();
    let mut relisted: Option<HashSet<AgentRef>> = None;
    // Agents whose last write failed, and whether the stale-slice cleanup did.
    let mut failed: BTreeSet<AgentRef> = BTreeSet::new();
    let mut cleanup_failed = false;
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "VMAgent watch (retried)");
                    continue;
                }
                None => bail!("the VMAgent watch ended"),
            },
            _ = retry.tick(), if !failed.is_empty() || cleanup_failed => {
                for key in std::mem::take(&mut failed) {
                    let live = agents.get(&ObjectRef::new_with(&key.1, resources::child(ChildKind::VMAgent)).within(&key.0));
                    let result = match live {
                        Some(agent) => publish_sim_agent(&client, &addresses, &mut published, &agent).await,
                        None => unpublish_sim_agent(&client, &addresses, &mut published, &key).await,
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = format!("{e:#}"), "vmagent endpoints (retried)");
                        failed.insert(key);
                    }
                }
                if cleanup_failed {
                    cleanup_failed = delete_stale_slices(&client, namespace.as_deref(), &published)
                        .await
                        .inspect_err(|e| tracing::warn!(error = format!("{e:#}"), "stale vmagent endpoints (retried)"))
                        .is_err();
                }
                continue;
            }
        };
        let (key, result) = match event {
            Event::Init => {
                relisted = Some(HashSet::new());
                continue;
            }
            Event::InitApply(agent) | Event::Apply(agent) => {
                let key = agent_ref(&agent);
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(key.clone());
                }
                let result = publish_sim_agent(&client, &addresses, &mut published, &agent).await;
                (key, result)
            }
            Event::Delete(agent) => {
                let key = agent_ref(&agent);
                let result = unpublish_sim_agent(&client, &addresses, &mut published, &key).await;
                (key, result)
            }
            Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<AgentRef> = published
                    .keys()
                    .filter(|key| !seen.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    if let Err(e) =
                        unpublish_sim_agent(&client, &addresses, &mut published, &key).await
                    {
                        tracing::warn!(error = format!("{e:#}"), "vmagent endpoints");
                        failed.insert(key);
                    }
                }
                cleanup_failed = delete_stale_slices(&client, namespace.as_deref(), &published)
                    .await
                    .inspect_err(|e| {
                        tracing::warn!(error = format!("{e:#}"), "stale vmagent endpoints")
                    })
                    .is_err();
                continue;
            }
        };
        match result {
            Ok(()) => {
                failed.remove(&key);
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "vmagent endpoints");
                failed.insert(key);
            }
        }
    }
}

/// How often failed EndpointSlice writes are tried again.
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

async fn publish_sim_agent(
    client: &Client,
    addresses: &AddressBook,
    published: &mut HashMap<AgentRef, SimSlice>,
    agent: &DynamicObject,
) -> Result<()> {
    let key = agent_ref(agent);
    let address = match published.get(&key) {
        Some(old) => old.address,
        None => {
            let book = addresses.lock();
            sim_address(&key.0, &key.1, |ip| book.contains_key(&ip))
        }
    };
    addresses.insert(address, key.clone());
    let not_ready = agent
        .annotations()
        .get(ENDPOINT_READY_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let desired = SimSlice {
        name: service_name(agent),
        port: agent_port(agent),
        address,
        ready: agent.metadata.deletion_timestamp.is_none() && !not_ready,
    };
    let old = published.get(&key).cloned();
    if old.as_ref() == Some(&desired) {
        return Ok(());
    }
    let body = slice(
        &key.0,
        &desired.name,
        &desired.name,
        desired.port,
        [(desired.address, desired.ready)],
    );
    apply_slice(client, &key.0, body).await?;
    if let Some(old) = old.filter(|old| old.name != desired.name) {
        delete_slice(client, &key.0, &old.name).await?;
    }
    tracing::info!(namespace = %key.0, vmagent = %key.1, slice = %desired.name,
        address = %desired.address, ready = desired.ready, "vmagent endpoint published");
    published.insert(key, desired);
    Ok(())
}

async fn unpublish_sim_agent(
    client: &Client,
    addresses: &AddressBook,
    published: &mut HashMap<AgentRef, SimSlice>,
    key: &AgentRef,
) -> Result<()> {
    let Some(old) = published.get(key) else {
        return Ok(());
    };
    addresses.remove(old.address);
    delete_slice(client, &key.0, &old.name).await?;
    published.remove(key);
    Ok(())
}

/// Deletes this module's slices in `namespace` (all when `None`) that no published agent owns.
async fn delete_stale_slices(
    client: &Client,
    namespace: Option<&str>,
    published: &HashMap<AgentRef, SimSlice>,
) -> Result<()> {
    let api: Api<EndpointSlice> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ours = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let wanted: HashSet<(String, String)> = published
        .iter()
        .map(|((ns, _), s)| (ns.clone(), s.name.clone()))
        .collect();
    for slice in api.list(&ours).await?.items {
        let key = (slice.namespace().unwrap_or_default(), slice.name_any());
        if !wanted.contains(&key) {
            delete_slice(client, &key.0, &key.1).await?;
        }
    }
    Ok(())
}

/// The address the mirror publishes a Ready, running pod with IP `127.X.Y.Z` at: `198.18.Y.Z`
/// (Y.Z is unique within one operator world, whose pods all come from one 127.X.0.0/16).
pub fn mirrored_address(pod: &Pod) -> Option<Ipv4Addr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip: Ipv4Addr = status.pod_ip.as_deref()?.parse().ok()?;
    let [a, _, c, d] = ip.octets();
    (ready && a == 127).then(|| Ipv4Addr::new(198, 18, c, d))
}

/// A vmagent pod as the mirror sees it.
struct MirroredPod {
    agent: AgentRef,
    address: Option<Ipv4Addr>,
}

/// What was published for one agent: slice name and (port, addresses).
type MirrorSlice = (String, u16, BTreeSet<Ipv4Addr>);

/// Keeps, for every VMAgent with pods in `namespace` (all when `None`), an EndpointSlice
/// `<service>-standin` labelled with its Service's name that lists its Ready pods at
/// [`mirrored_address`], port `http` = [`agent_port`], and records each address in `addresses`.
/// `agents` is the store of `agent_events` (a [`vmagent_reflector`]), whose changes re-publish
/// (e.g. `spec.useLegacyNaming` renames the Service). Failed writes are retried every
/// [`RETRY_EVERY`]. Runs until a watch ends.
pub async fn mirror_vmagent_endpoints(
    client: Client,
    namespace: Option<String>,
    addresses: AddressBook,
    agents: Store<DynamicObject>,
    agent_events: impl Stream<Item = watcher::Result<Event<DynamicObject>>> + Send,
) -> Result<()> {
    let pods: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = watcher::Config::default().labels("app.kubernetes.io/name=vmagent");
    let pod_events = watcher::watcher(pods, config)
        .default_backoff()
        .map(Either::Pod);
    let agent_events = agent_events.map(Either::Agent);
    let mut events = std::pin::pin!(futures::stream::select(pod_events, agent_events));
    let mut pods: HashMap<String, MirroredPod> = HashMap::new();
    let mut published: HashMap<AgentRef, MirrorSlice> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    // Agents whose last write failed, tried again every RETRY_EVERY.
    let mut failed: BTreeSet<AgentRef> = BTreeSet::new();
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(event) => event,
                None => bail!("the vmagent pod watch ended"),
            },
            _ = retry.tick(), if !failed.is_empty() => Either::Retry,
        };
        let touched: Vec<AgentRef> = match event {
            Either::Retry => std::mem::take(&mut failed).into_iter().collect(),
            Either::Agent(Ok(Event::Apply(agent) | Event::InitApply(agent))) => {
                vec![agent_ref(&agent)]
            }
            Either::Agent(Ok(_)) => continue,
            Either::Pod(Ok(Event::Init)) => {
                relisted = Some(HashSet::new());
                continue;
            }
            Either::Pod(Ok(Event::InitApply(pod) | Event::Apply(pod))) => {
                let uid = pod.uid().unwrap_or_default();
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(uid.clone());
                }
                let Some(instance) = pod.labels().get(INSTANCE_LABEL).cloned() else {
                    continue;
                };
                let agent = (pod.namespace().unwrap_or_default(), instance);
                let address = mirrored_address(&pod);
                let old = pods.insert(
                    uid,
                    MirroredPod {
                        agent: agent.clone(),
                        address,
                    },
                );
                old.map(|p| p.agent).into_iter().chain([agent]).collect()
            }
            Either::Pod(Ok(Event::Delete(pod))) => {
                let removed = pods.remove(&pod.uid().unwrap_or_default());
                removed.map(|p| p.agent).into_iter().collect()
            }
            Either::Pod(Ok(Event::InitDone)) => {
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<String> = pods
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|uid| pods.remove(&uid).map(|p| p.agent))
                    .collect()
            }
            Either::Pod(Err(e)) | Either::Agent(Err(e)) => {
                tracing::debug!(error = %e, "vmagent mirror watch (retried)");
                continue;
            }
        };
        for agent in touched.into_iter().collect::<BTreeSet<_>>() {
            match mirror_agent(&client, &addresses, &agents, &pods, &mut published, &agent).await {
                Ok(()) => {
                    failed.remove(&agent);
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "vmagent endpoints mirror");
                    failed.insert(agent);
                }
            }
        }
    }
}

enum Either<P, A> {
    Pod(P),
    Agent(A),
    Retry,
}

async fn mirror_agent(
    client: &Client,
    addresses: &AddressBook,
    agents: &Store<DynamicObject>,
    pods: &HashMap<String, MirroredPod>,
    published: &mut HashMap<AgentRef, MirrorSlice>,
    agent: &AgentRef,
) -> Result<()> {
    let live = agents
        .get(&ObjectRef::new_with(&agent.1, resources::child(ChildKind::VMAgent)).within(&agent.0));
    let (service, port) = match &live {
        Some(live) => (service_name(live), agent_port(live)),
        None => (format!("vmagent-{}", agent.1), VMAGENT_PORT),
    };
    let members: BTreeSet<Ipv4Addr> = pods
        .values()
        .filter(|p| &p.agent == agent)
        .filter_map(|p| p.address)
        .collect();
    let name = format!("{service}-standin");
    let old = published.get(agent);
    if let Some((_, _, old_members)) = old {
        for gone in old_members.difference(&members) {
            addresses.remove(*gone);
        }
    }
    for address in &members {
        addresses.insert(*address, agent.clone());
    }
    let desired: MirrorSlice = (name, port, members);
    if old == Some(&desired) {
        return Ok(());
    }
    let body = slice(
        &agent.0,
        &desired.0,
        &service,
        port,
        desired.2.iter().map(|ip| (*ip, true)),
    );
    apply_slice(client, &agent.0, body).await?;
    if let Some((old_name, ..)) = old.filter(|(old_name, ..)| *old_name != desired.0) {
        delete_slice(client, &agent.0, old_name).await?;
    }
    tracing::info!(namespace = %agent.0, vmagent = %agent.1, slice = %desired.0,
        endpoints = desired.2.len(), "vmagent endpoints mirrored");
    published.insert(agent.clone(), desired);
    Ok(())
}

/// Counts of `/metrics` requests answered, by agent.
#[derive(Default)]
struct Answered(Mutex<BTreeMap<AgentRef, u64>>);

#[derive(Clone)]
struct ProxyState {
    addresses: AddressBook,
    agents: Store<DynamicObject>,
    answered: Arc<Answered>,
}

/// Serves the agent metrics proxy on `listener` (see the module docs): the agent published at the
/// requested address in `addresses`, as `agents` holds it now. Runs until the listener fails.
pub async fn serve_metrics_proxy(
    listener: tokio::net::TcpListener,
    addresses: AddressBook,
    agents: Store<DynamicObject>,
) -> Result<()> {
    let state = ProxyState {
        addresses,
        agents,
        answered: Arc::default(),
    };
    let app = axum::Router::new().fallback(answer).with_state(state);
    axum::serve(listener, app)
        .await
        .context("serving the agent metrics proxy")
}

async fn answer(State(state): State<ProxyState>, uri: Uri) -> Response {
    if uri.authority().is_none() {
        if uri.path() != ANSWERED_PATH {
            return (StatusCode::NOT_FOUND, "not a proxy request\n").into_response();
        }
        let counts = state
            .answered
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let total: u64 = counts.values().sum();
        let agents: serde_json::Map<String, Value> = counts
            .into_iter()
            .map(|((ns, name), n)| (format!("{ns}/{name}"), json!(n)))
            .collect();
        return axum::Json(json!({"total": total, "agents": agents})).into_response();
    }
    let bad_gateway = |why: String| (StatusCode::BAD_GATEWAY, why + "\n").into_response();
    let Some(ip) = uri.host().and_then(|h| h.parse::<Ipv4Addr>().ok()) else {
        return bad_gateway(format!("{uri}: not an agent address"));
    };
    let Some(agent_ref) = state.addresses.get(ip) else {
        return bad_gateway(format!("{uri}: no vmagent is published at {ip}"));
    };
    let Some(agent) = state.agents.get(
        &ObjectRef::new_with(&agent_ref.1, resources::child(ChildKind::VMAgent))
            .within(&agent_ref.0),
    ) else {
        return bad_gateway(format!(
            "{uri}: VMAgent {}/{} is gone",
            agent_ref.0, agent_ref.1
        ));
    };
    let port = agent_port(&agent);
    if uri.port_u16().unwrap_or(80) != port {
        return bad_gateway(format!(
            "{uri}: vmagent {}/{} listens on {port}",
            agent_ref.0, agent_ref.1
        ));
    }
    if uri.path() != metrics_path(&agent) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    match render_metrics(&agent) {
        Ok(body) => {
            *state
                .answered
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(agent_ref)
                .or_default() += 1;
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                body,
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(namespace = %agent_ref.0, vmagent = %agent_ref.1,
                error = format!("{e:#}"), "cannot render vmagent metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
        }
    }
}

/// Binds the proxy's listener on `127.0.0.1:port` (0: any free port); the listener and its URL.
pub async fn bind_proxy(port: u16) -> Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the agent metrics proxy on 127.0.0.1:{port}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// Waits until the proxy at `url` (`http://127.0.0.1:PORT`) answers [`ANSWERED_PATH`].
pub async fn wait_proxy(url: &str, timeout: std::time::Duration) -> Result<()> {
    let port = proxy_port(url)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = crate::net::http_get(port, ANSWERED_PATH).await {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the agent metrics proxy {url} does not answer after {timeout:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The port of a proxy URL `http://127.0.0.1:PORT`.
pub fn proxy_port(url: &str) -> Result<u16> {
    url.rsplit_once(':')
        .and_then(|(_, port)| port.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow!("{url:?} is not http://127.0.0.1:PORT"))
}

/// `GET http://<address>:<port>/metrics` through the proxy at `proxy_url`: (status, body).
pub async fn get_through_proxy(
    proxy_url: &str,
    address: Ipv4Addr,
    port: u16,
) -> Result<(u16, String)> {
    crate::net::http_get(
        proxy_port(proxy_url)?,
        &format!("http://{address}:{port}/metrics"),
    )
    .await
}

/// The proxy's count of answered `/metrics` requests: (total, by `namespace/name`).
pub async fn answered(proxy_url: &str) -> Result<(u64, BTreeMap<String, u64>)> {
    let (code, body) = crate::net::http_get(proxy_port(proxy_url)?, ANSWERED_PATH).await?;
    if code != 200 {
        bail!("{proxy_url}{ANSWERED_PATH}: HTTP {code}: {body}");
    }
    let value: Value = serde_json::from_str(&body).context("parsing the answered counts")?;
    let total = value["total"].as_u64().unwrap_or(0);
    let agents = value["agents"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    Ok((total, agents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(annotations: Value, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "operator.victoriametrics.com/v1beta1",
            "kind": "VMAgent",
            "metadata": {"name": "a", "namespace": "ns", "annotations": annotations},
            "spec": spec,
        }))
        .expect("valid VMAgent")
    }

    fn three_writes() -> Value {
        json!({"remoteWrite": [
            {"url": "http://z1/api/v1/write"},
            {"url": "http://z2/api/v1/write"},
            {"url": "http://z3/api/v1/write"},
        ]})
    }

    #[test]
    fn one_series_per_remote_write_with_the_annotated_bytes() -> Result<()> {
        let body = render_metrics(&agent(
            json!({PENDING_BYTES_ANNOTATION: "2=1048576"}),
            three_writes(),
        ))?;
        assert_eq!(
            body,
            "# TYPE vmagent_remotewrite_pending_data_bytes gauge\n\
             vmagent_remotewrite_pending_data_bytes{path=\"/tmp/vmagent-remotewrite-data/persistent-queue/1_0000000000000000\",url=\"1:secret-url\"} 0\n\
             vmagent_remotewrite_pending_data_bytes{path=\"/tmp/vmagent-remotewrite-data/persistent-queue/2_0000000000000000\",url=\"2:secret-url\"} 1048576\n\
             vmagent_remotewrite_pending_data_bytes{path=\"/tmp/vmagent-remotewrite-data/persistent-queue/3_0000000000000000\",url=\"3:secret-url\"} 0\n"
        );
        Ok(())
    }

    #[test]
    fn legacy_shown_urls_missing_series_and_tmp_data_path() -> Result<()> {
        let mut spec = three_writes();
        spec["remoteWriteSettings"] = json!({"tmpDataPath": "/data/"});
        let legacy = render_metrics(&agent(
            json!({PENDING_METRIC_ANNOTATION: "legacy", PENDING_MISSING_ANNOTATION: "2",
                PENDING_BYTES_ANNOTATION: "3=10"}),
            spec,
        ))?;
        assert_eq!(
            legacy,
            "# TYPE vm_persistentqueue_bytes_pending gauge\n\
             vm_persistentqueue_bytes_pending{path=\"/data/persistent-queue/1_0000000000000000\"} 0\n\
             vm_persistentqueue_bytes_pending{path=\"/data/persistent-queue/3_0000000000000000\"} 10\n"
        );
        let shown = render_metrics(&agent(
            json!({PENDING_URL_ANNOTATION: "show"}),
            three_writes(),
        ))?;
        assert!(
            shown.contains("url=\"2:http://z2/api/v1/write\"} 0\n"),
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn malformed_annotations_are_errors() {
        for (key, value) in [
            (PENDING_BYTES_ANNOTATION, "0=5"),
            (PENDING_BYTES_ANNOTATION, "2:5"),
            (PENDING_BYTES_ANNOTATION, "2=-1"),
            (PENDING_MISSING_ANNOTATION, "x"),
            (PENDING_METRIC_ANNOTATION, "old"),
            (PENDING_URL_ANNOTATION, "yes"),
        ] {
            let result = render_metrics(&agent(json!({key: value}), three_writes()));
            assert!(result.is_err(), "{key}={value} was accepted");
        }
    }

    #[test]
    fn service_names_follow_legacy_naming() {
        assert_eq!(service_name(&agent(json!({}), json!({}))), "vmagent-a");
        assert_eq!(
            service_name(&agent(json!({}), json!({"useLegacyNaming": true}))),
            "a"
        );
        assert_eq!(agent_port(&agent(json!({}), json!({"port": "9429"}))), 9429);
        assert_eq!(agent_port(&agent(json!({}), json!({}))), VMAGENT_PORT);
        assert_eq!(metrics_path(&agent(json!({}), json!({}))), "/metrics");
        assert_eq!(
            metrics_path(&agent(
                json!({}),
                json!({"extraArgs": {"http.pathPrefix": "/vm/"}})
            )),
            "/vm/metrics"
        );
    }

    #[test]
    fn sim_addresses_are_stable_and_skip_taken_ones() {
        let first = sim_address("ns", "a", |_| false);
        assert_eq!(first, sim_address("ns", "a", |_| false));
        assert_eq!(first.octets()[..2], [198, 18]);
        let next = sim_address("ns", "a", |ip| ip == first);
        assert_ne!(next, first);
        assert_ne!(sim_address("ns", "b", |_| false), first);
    }

    #[test]
    fn pods_are_mirrored_from_their_loopback_ip_when_ready() {
        let pod = |ready: &str, ip: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
            }))
            .expect("valid pod")
        };
        assert_eq!(
            mirrored_address(&pod("True", "127.9.16.3")),
            Some(Ipv4Addr::new(198, 18, 16, 3))
        );
        assert_eq!(mirrored_address(&pod("False", "127.9.16.3")), None);
        assert_eq!(mirrored_address(&pod("True", "10.0.0.3")), None);
    }

    #[test]
    fn proxy_urls_give_their_port() -> Result<()> {
        assert_eq!(proxy_port("http://127.0.0.1:4321")?, 4321);
        assert!(proxy_port("http://127.0.0.1").is_err());
        Ok(())
    }
}
