//! Answers, on a kwok pod's own loopback IP, the HTTP endpoints the VictoriaMetrics operator calls
//! on its pods. kwok pods run no containers, so without this the operator would wait forever where
//! it talks to a pod directly.
//!
//! Served today: the config-reloader sidecar of VMAuth pods (`GET http://<podIP>:8435/metrics`),
//! which the operator polls after every config change when `spec.waitForConfigReload` is set. It
//! compares `configreloader_reload_content_hash{key="main"}` with the CRC32 of the config Secret's
//! gzipped content, so that is what is reported: the hash of the Secret content as a real
//! config-reloader would have confirmed it, `--reload-delay` after the pod started or the Secret
//! changed (the real one waits at least 1 s before it calls reload).
//!
//! Other pod endpoints are meant to be added as [`Endpoint`] variants: a pod maps to a list of
//! `(port, Endpoint)`, each served on `<podIP>:<port>` only, never on a wildcard address, and only
//! for IPs in 127.0.0.0/8. Listeners stop when their pod goes away.
//!
//! vmagent `/metrics` is found through EndpointSlices, which cannot hold loopback IPs, so it is
//! answered differently (`harness::vmagent_standin`): this program mirrors every vmagent pod's
//! Service into an EndpointSlice of its own at an address of 198.18.0.0/15 and answers those
//! addresses as an HTTP proxy on `127.0.0.1:--agent-metrics-proxy-port`, which the processes that
//! poll vmagents get as `HTTP_PROXY`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use harness::operator_world::config_reloader_hash;
use harness::vmagent_standin::{self, AddressBook};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use vmdistributed_runtime::kube_config;

/// The config-reloader's HTTP port (`build.ConfigReloaderDefaultPort` in the operator).
const CONFIG_RELOADER_PORT: u16 = 8435;
/// How long a listener keeps trying to bind: a recycled pod IP may still be held by the listener
/// of the pod that had it before, which is shutting down.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);
/// Secret versions remembered per key; enough for changes closer together than the reload delay.
const HISTORY: usize = 16;

/// Serves the operator-facing endpoints of kwok pods on their loopback pod IPs.
#[derive(Parser, Debug)]
#[command(name = "vm-pod-standin", version)]
struct Args {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Time from a pod start or a config Secret change until the config-reloader reports it as
    /// reloaded, e.g. 1s, 500ms.
    #[arg(long, default_value = "1s", value_parser = harness::sim::parse_duration)]
    reload_delay: Duration,
    /// Port on 127.0.0.1 of the vmagent `/metrics` proxy (0: any free port; the URL is logged).
    #[arg(long, default_value_t = 0)]
    agent_metrics_proxy_port: u16,
    /// Publish no EndpointSlices for vmagent pods (the proxy then has nothing to answer for).
    #[arg(long)]
    no_vmagent_endpoints: bool,
    /// tracing filter, e.g. info or debug.
    #[arg(long, default_value = "info", env = "VMD_LOG_LEVEL")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let log_level = args.log_level.clone();
    harness::stand_in_main("vm-pod-standin", &log_level, run(args)).await
}

async fn run(args: Args) -> Result<()> {
    let client = kube::Client::try_from(kube_config::load(args.kubeconfig.as_deref()).await?)?;
    let shared = Shared::new(args.reload_delay);
    let (listener, proxy_url) = vmagent_standin::bind_proxy(args.agent_metrics_proxy_port).await?;
    tracing::info!(reload_delay = ?args.reload_delay, agent_metrics_proxy = %proxy_url,
        vmagent_endpoints = !args.no_vmagent_endpoints, "vm-pod-standin started");
    let addresses = AddressBook::default();
    let (agents, agent_events) = vmagent_standin::vmagent_reflector(client.clone(), None);
    let proxy = vmagent_standin::serve_metrics_proxy(listener, addresses.clone(), agents.clone());
    let vmagent_endpoints = async {
        if args.no_vmagent_endpoints {
            vmagent_standin::drive(agent_events).await;
            Err(anyhow!("VMAgent watch ended"))
        } else {
            vmagent_standin::mirror_vmagent_endpoints(
                client.clone(),
                None,
                addresses,
                agents,
                agent_events,
            )
            .await
        }
    };
    let pods = watch_pods(client.clone(), shared.clone());
    let secrets = watch_secrets(client.clone(), shared);
    tokio::select! {
        r = pods => r,
        r = secrets => r,
        r = proxy => r,
        r = vmagent_endpoints => r,
        () = vmdistributed_runtime::signals::terminated() => Ok(()),
    }
}

/// What one port of a pod answers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// The operator's config-reloader sidecar, watching `key` of Secret `namespace/name`.
    ConfigReloader {
        namespace: String,
        name: String,
        key: String,
    },
}

/// A pod that gets listeners.
#[derive(Clone, Debug)]
struct ServedPod {
    namespace: String,
    name: String,
    ip: Ipv4Addr,
    endpoints: Vec<(u16, Endpoint)>,
    /// When this pod was first seen with its IP: its containers "started" then.
    started: Instant,
}

/// One Secret key's content hashes over time, oldest first.
type History = Vec<(u32, Instant)>;

#[derive(Default)]
struct Inner {
    /// By pod UID.
    pods: HashMap<String, ServedPod>,
    /// Running listeners by address, with the sender that stops them.
    listeners: HashMap<SocketAddrV4, watch::Sender<bool>>,
    /// By (namespace, name) of the Secret, then key.
    secrets: HashMap<(String, String), BTreeMap<String, History>>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    reload_delay: Duration,
}

impl Shared {
    fn new(reload_delay: Duration) -> Self {
        Shared {
            inner: Arc::default(),
            reload_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn watch_pods(client: Client, shared: Shared) -> Result<()> {
    let api: Api<Pod> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // The watcher backs off and retries by itself.
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        match event {
            Event::Init => relisted = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                upsert_pod(&shared, &pod);
            }
            Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    shared.lock().pods.retain(|uid, _| seen.contains(uid));
                }
            }
            Event::Apply(pod) => upsert_pod(&shared, &pod),
            Event::Delete(pod) => {
                shared.lock().pods.remove(&pod.uid().unwrap_or_default());
            }
        }
        sync_listeners(&shared);
    }
    Err(anyhow!("pod watch ended"))
}

async fn watch_secrets(client: Client, shared: Shared) -> Result<()> {
    let api: Api<Secret> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relisted: Option<HashSet<(String, String)>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "secret watch");
                continue;
            }
        };
        match event {
            Event::Init => relisted = Some(HashSet::new()),
            Event::InitApply(secret) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(secret_key(&secret));
                }
                record_secret(&shared, &secret);
            }
            Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    shared.lock().secrets.retain(|key, _| seen.contains(key));
                }
            }
            Event::Apply(secret) => record_secret(&shared, &secret),
            Event::Delete(secret) => {
                shared.lock().secrets.remove(&secret_key(&secret));
            }
        }
    }
    Err(anyhow!("secret watch ended"))
}

fn secret_key(secret: &Secret) -> (String, String) {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

/// Appends the hash of every key whose content changed, stamped with the time it was seen.
fn record_secret(shared: &Shared, secret: &Secret) {
    let now = Instant::now();
    let mut inner = shared.lock();
    let keys = inner.secrets.entry(secret_key(secret)).or_default();
    for (key, value) in secret.data.iter().flatten() {
        let hash = config_reloader_hash(&value.0);
        let history = keys.entry(key.clone()).or_default();
        if history.last().map(|(h, _)| *h) != Some(hash) {
            history.push((hash, now));
            if history.len() > HISTORY {
                history.remove(0);
            }
        }
    }
}

fn upsert_pod(shared: &Shared, pod: &Pod) {
    let uid = pod.uid().unwrap_or_default();
    let mut inner = shared.lock();
    match served(pod) {
        Some((ip, endpoints)) => {
            let started = match inner.pods.get(&uid) {
                Some(old) if old.ip == ip => old.started,
                _ => Instant::now(),
            };
            inner.pods.insert(
                uid,
                ServedPod {
                    namespace: pod.namespace().unwrap_or_default(),
                    name: pod.name_any(),
                    ip,
                    endpoints,
                    started,
                },
            );
        }
        None => {
            inner.pods.remove(&uid);
        }
    }
}

/// The loopback IP and endpoints of a running pod this program answers for, if any.
fn served(pod: &Pod) -> Option<(Ipv4Addr, Vec<(u16, Endpoint)>)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: Ipv4Addr = status.pod_ip.as_deref()?.parse().ok()?;
    if !ip.is_loopback() {
        return None;
    }
    let endpoints = endpoints(pod);
    (!endpoints.is_empty()).then_some((ip, endpoints))
}

/// The endpoints a pod needs, judged by the labels and containers the operator gives it.
fn endpoints(pod: &Pod) -> Vec<(u16, Endpoint)> {
    let mut out = Vec::new();
    let labels = pod.labels();
    let is_vmauth = labels.get("app.kubernetes.io/name").map(String::as_str) == Some("vmauth")
        && labels.get("managed-by").map(String::as_str) == Some("vm-operator");
    if is_vmauth && let Some(reloader) = config_reloader(pod) {
        out.push(reloader);
    }
    out
}

/// The `config-reloader` container's port and watched Secret, from its arguments
/// (`--config-secret-name=NS/NAME`, `--config-secret-key=KEY`, as the operator writes them).
fn config_reloader(pod: &Pod) -> Option<(u16, Endpoint)> {
    let spec = pod.spec.as_ref()?;
    let container = spec
        .containers
        .iter()
        .find(|c| c.name == "config-reloader")?;
    let args = container.args.as_deref().unwrap_or_default();
    let flag = |name: &str| {
        args.iter().find_map(|a| {
            a.trim_start_matches('-')
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
    };
    let secret = flag("config-secret-name")?;
    let key = flag("config-secret-key")?;
    let (namespace, name) = secret.split_once('/')?;
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("reloader-http"))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(CONFIG_RELOADER_PORT);
    Some((
        port,
        Endpoint::ConfigReloader {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key,
        },
    ))
}

/// Starts a listener for every wanted address and stops the ones no pod wants any more.
fn sync_listeners(shared: &Shared) {
    let mut inner = shared.lock();
    let wanted: HashSet<SocketAddrV4> = inner
        .pods
        .values()
        .flat_map(|p| {
            p.endpoints
                .iter()
                .map(|(port, _)| SocketAddrV4::new(p.ip, *port))
        })
        .collect();
    inner.listeners.retain(|addr, stop| {
        let keep = wanted.contains(addr);
        if !keep {
            tracing::info!(%addr, "stop serving");
            let _ = stop.send(true);
        }
        keep
    });
    for addr in wanted {
        if inner.listeners.contains_key(&addr) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        inner.listeners.insert(addr, stop);
        tokio::spawn(serve(shared.clone(), addr, stopped));
    }
}

async fn serve(shared: Shared, addr: SocketAddrV4, mut stopped: watch::Receiver<bool>) {
    let listener = match bind(addr, &mut stopped).await {
        Ok(Some(listener)) => listener,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(%addr, error = format!("{e:#}"), "cannot serve");
            return;
        }
    };
    tracing::info!(%addr, "serving");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state((shared, addr));
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%addr, error = %e, "serving failed");
    }
}

/// Binds `addr` (the pod's own IP, never a wildcard), retrying while an earlier listener of a
/// recycled IP shuts down. `None` when stopped before it could bind.
async fn bind(
    addr: SocketAddrV4,
    stopped: &mut watch::Receiver<bool>,
) -> Result<Option<tokio::net::TcpListener>> {
    let deadline = Instant::now() + BIND_RETRY_FOR;
    loop {
        let attempt = (|| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::V4(addr))?;
            socket.listen(128)
        })();
        match attempt {
            Ok(listener) => return Ok(Some(listener)),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("binding {addr}"));
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped.wait_for(|stop| *stop) => return Ok(None),
        }
    }
}

async fn metrics(State((shared, addr)): State<(Shared, SocketAddrV4)>) -> impl IntoResponse {
    let inner = shared.lock();
    let endpoint = inner.pods.values().find_map(|pod| {
        (pod.ip == *addr.ip())
            .then(|| {
                pod.endpoints
                    .iter()
                    .find(|(port, _)| *port == addr.port())
                    .map(|(_, e)| (pod, e))
            })
            .flatten()
    });
    let Some((pod, endpoint)) = endpoint else {
        return (StatusCode::NOT_FOUND, "no pod here\n".to_owned());
    };
    let body = match endpoint {
        Endpoint::ConfigReloader {
            namespace,
            name,
            key,
        } => {
            let history = inner
                .secrets
                .get(&(namespace.clone(), name.clone()))
                .and_then(|keys| keys.get(key));
            let reloaded = reloaded_hash(
                history.map(Vec::as_slice).unwrap_or_default(),
                pod.started,
                shared.reload_delay,
                Instant::now(),
            );
            // The test of the operator world reads this line to see the operator asked.
            tracing::info!(
                pod = %format!("{}/{}", pod.namespace, pod.name),
                hash = reloaded.map(|(h, _)| h),
                "config-reloader metrics"
            );
            config_reloader_metrics(reloaded)
        }
    };
    (StatusCode::OK, body)
}

/// The hash a config-reloader reports at `now`: the newest content it has applied, where content
/// seen at `seen` counts as applied at `max(seen, started) + delay`. `None` before the first
/// reload (a real sidecar then exposes no hash at all).
fn reloaded_hash(
    history: &[(u32, Instant)],
    started: Instant,
    delay: Duration,
    now: Instant,
) -> Option<(u32, Instant)> {
    history.iter().rev().find_map(|(hash, seen)| {
        let applied = (*seen).max(started) + delay;
        (applied <= now).then_some((*hash, applied))
    })
}

fn config_reloader_metrics(reloaded: Option<(u32, Instant)>) -> String {
    let Some((hash, applied)) = reloaded else {
        return "configreloader_last_reload_successful 0\n".to_owned();
    };
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let applied_unix = unix_now.saturating_sub(applied.elapsed()).as_secs();
    format!(
        "configreloader_reload_content_hash{{key=\"main\"}} {hash}\n\
         configreloader_last_reload_successful 1\n\
         configreloader_last_reload_success_timestamp_seconds {applied_unix}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_is_reported_after_the_delay_and_follows_changes() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let history = [(1, t0), (2, t0 + 5 * s)];
        let hash = |now| reloaded_hash(&history, t0, s, now).map(|(h, _)| h);
        assert_eq!(hash(t0), None, "nothing before the first reload");
        assert_eq!(hash(t0 + s), Some(1));
        assert_eq!(hash(t0 + 5 * s), Some(1), "the change is not applied yet");
        assert_eq!(hash(t0 + 6 * s), Some(2));
        // A pod started after both versions reloads only the newest, one delay after it started.
        let late = t0 + 10 * s;
        assert_eq!(reloaded_hash(&history, late, s, late), None);
        assert_eq!(
            reloaded_hash(&history, late, s, late + s).map(|(h, _)| h),
            Some(2)
        );
    }

    #[test]
    fn config_reloader_args_are_read_like_the_operator_writes_them() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "vmauth-a-0", "namespace": "ns",
                "labels": {"app.kubernetes.io/name": "vmauth", "managed-by": "vm-operator"}},
            "spec": {"containers": [
                {"name": "vmauth"},
                {"name": "config-reloader", "args": [
                    "--config-envsubst-file=/opt/vmauth/config.yaml",
                    "--config-secret-key=config.yaml.gz",
                    "--config-secret-name=ns/vmauth-config-a",
                    "--reload-url=http://localhost:8427/-/reload"],
                 "ports": [{"name": "reloader-http", "containerPort": 8435}]}]},
            "status": {"phase": "Running", "podIP": "127.9.1.4"}
        }))
        .expect("valid pod");
        let (ip, endpoints) = served(&pod).expect("served");
        assert_eq!(ip, Ipv4Addr::new(127, 9, 1, 4));
        assert_eq!(
            endpoints,
            vec![(
                8435,
                Endpoint::ConfigReloader {
                    namespace: "ns".into(),
                    name: "vmauth-config-a".into(),
                    key: "config.yaml.gz".into(),
                }
            )]
        );
    }

    #[test]
    fn non_loopback_and_foreign_pods_are_not_served() {
        let pod = |labels: serde_json::Value, ip: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns", "labels": labels},
                "spec": {"containers": [{"name": "config-reloader", "args": [
                    "--config-secret-key=k", "--config-secret-name=ns/s"]}]},
                "status": {"phase": "Running", "podIP": ip}
            }))
            .expect("valid pod")
        };
        let vmauth =
            serde_json::json!({"app.kubernetes.io/name": "vmauth", "managed-by": "vm-operator"});
        assert!(served(&pod(vmauth.clone(), "127.3.1.1")).is_some());
        assert!(served(&pod(vmauth, "10.0.0.5")).is_none());
        assert!(
            served(&pod(
                serde_json::json!({"app.kubernetes.io/name": "vmagent"}),
                "127.3.1.2"
            ))
            .is_none()
        );
    }
}
