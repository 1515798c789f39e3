//! Controller benchmark (not a test): run with
//! `cargo bench -p vmdistributed-tests --bench controller_rollout` (release build of the
//! controller and the simulated operator, on the local control plane). Prints a Markdown table for
//! BENCHMARKS.md. Sizes can be changed with `VMD_BENCH_CRS` (CR counts rolling out together,
//! default `"50 200"`), `VMD_BENCH_SLOW_DELAY_MS` (the same counts again with this ready delay,
//! default 5000; 0 skips them), `VMD_BENCH_RSS_CRS` (default 1000; 0 skips the RSS run) and
//! `VMD_BENCH_ROUNDS` (single-CR rollouts for measurements 1 and 2, default 8; 0 skips them).
//!
//! Measures:
//! 1. time from a CR spec change (the PATCH response) to the first child write seen by a watch;
//! 2. per-zone orchestration overhead: with `updatePause: 0s`, the part of a 3-zone rollout during
//!    which no child is waiting for the (simulated) operator, divided by the zones. A watch on the
//!    children records when each one starts and stops waiting (new generation seen →
//!    `operational` at that generation seen); what is left of the rollout is the controller's own
//!    time: watch delays, decisions, status writes, live reads and applies;
//! 3. N CRs of 3 zones rolling out together vs one alone in the same setup, with the CPU each
//!    process used and the API requests served meanwhile;
//! 4. controller RSS with many CRs (all operational, caches filled).
//!
//! Every rollout of measurements 1–3 is also judged by the rollout invariant checker the tests use
//! (`harness::state_recorder`, `shared::rollout::invariants`) on every state its watches saw: a
//! fast controller that broke the serving guarantees would fail the benchmark, not win it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use harness::controller_env::standalone_controller;
use harness::proc_stats::{cpu_seconds, process_name, status_kib};
use harness::state_recorder::StateRecorder;
use harness::{ControlPlane, SimOperator, SupervisedProcess};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use shared::VMDistributed;
use shared::names::ChildKind;

const READY_DELAY_MS: u64 = 500;
const PAUSE_MS: u64 = 1000;
/// `--concurrency` for the runs that measure time, so that many CRs progress at once.
const MANY_AT_ONCE: u16 = 64;

fn manifest(name: &str, version: &str) -> String {
    manifest_with_pause(name, version, &format!("{PAUSE_MS}ms"))
}

fn manifest_with_pause(name: &str, version: &str, pause: &str) -> String {
    harness::manifests::three_zones(name, version, "60s", pause)
}

fn operational(cr: &VMDistributed, generation: i64) -> bool {
    cr.metadata.generation == Some(generation)
        && cr.status.as_ref().is_some_and(|s| {
            s.update_status == Some(shared::api::UpdateStatus::Operational)
                && s.observed_generation == Some(generation)
        })
}

/// Waits until every CR in `names` is operational at `generation`, as a watch shows it: the
/// moment is exact for one CR and for many alike (polling would add up to its interval, and
/// listing many CRs often would load the API server being measured).
async fn wait_all(api: &Api<VMDistributed>, names: &[String], generation: i64) -> Result<()> {
    let budget = Duration::from_secs(600 + u64::try_from(names.len()).unwrap_or(0));
    let mut pending: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let watch = async {
        while let Some(event) = events.next().await {
            if let watcher::Event::Apply(cr) | watcher::Event::InitApply(cr) = event?
                && operational(&cr, generation)
            {
                pending.remove(cr.metadata.name.as_deref().unwrap_or_default());
            }
            if pending.is_empty() {
                return Ok(());
            }
        }
        bail!("the watch of the CRs ended")
    };
    tokio::time::timeout(budget, watch).await.with_context(|| {
        format!("CRs not operational at generation {generation} after {budget:?}")
    })?
}

async fn bump(api: &Api<VMDistributed>, name: &str, version: &str) -> Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": version}}}}}),
        ),
    )
    .await?;
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// `apiserver_request_total` summed by verb, resource and subresource (every client, every
/// response code), from the API server's own metrics.
async fn apiserver_requests(client: &Client) -> Result<std::collections::BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let subresource = label("subresource");
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            if subresource.is_empty() {
                String::new()
            } else {
                format!("/{subresource}")
            }
        );
        *out.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

/// N CRs changed at once, in a namespace (and controller) of their own, against one CR changed
/// alone in the same setup.
struct Together {
    crs: usize,
    ready_delay_ms: u64,
    solo_seconds: f64,
    seconds: f64,
    cpu_used: String,
    requests: f64,
    rss_kib: u64,
    states_checked: usize,
}

async fn many_together(many: usize, ready_delay_ms: u64) -> Result<Together> {
    let w = world_with(
        &format!("bench-many-{many}"),
        ready_delay_ms,
        Some(MANY_AT_ONCE),
    )
    .await?;
    let recorder = StateRecorder::start(&w.client, &w.ns).await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    let names: Vec<String> = (0..many).map(|i| format!("cr-{i}")).collect();
    let solo = ["solo".to_owned()];
    for name in names.iter().chain(&solo) {
        harness::apply_yaml(&w.client, Some(&w.ns), &manifest(name, "v1.0.0")).await?;
    }
    wait_all(&api, &names, 1).await?;
    wait_all(&api, &solo, 1).await?;
    let start = Instant::now();
    bump(&api, "solo", "v1.1.0").await?;
    wait_all(&api, &solo, 2).await?;
    let solo_seconds = start.elapsed().as_secs_f64();
    let mut processes = vec![
        ("controller".to_owned(), w.controller.pid()),
        ("simulated operator".to_owned(), w.sim.process.pid()),
    ];
    processes.extend(
        w.cp.pids()
            .into_iter()
            .map(|pid| (process_name(pid), pid))
            .filter(|(name, _)| name == "etcd" || name == "kube-apiserver"),
    );
    let requests_before = apiserver_requests(&w.client).await?;
    let cpu_before: Vec<f64> = processes.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let start = Instant::now();
    // Changed together: concurrently, not one PATCH after the other.
    futures::stream::iter(&names)
        .map(|name| bump(&api, name, "v1.1.0"))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    wait_all(&api, &names, 2).await?;
    let seconds = start.elapsed().as_secs_f64();
    let requests_after = apiserver_requests(&w.client).await?;
    let mut requests: Vec<(String, f64)> = requests_after
        .into_iter()
        .map(|(key, after)| {
            let before = requests_before.get(&key).copied().unwrap_or(0.0);
            (key, after - before)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    requests.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = requests.iter().map(|(_, n)| n).sum();
    eprintln!("API requests during the {many}-CR rollout: {total:.0}");
    for (key, n) in &requests {
        eprintln!("  {n:>6.0} {key}");
    }
    let cpu_used = processes
        .iter()
        .zip(cpu_before)
        .map(|((name, pid), before)| format!("{name} {:.1} s", cpu_seconds(*pid) - before))
        .collect::<Vec<_>>()
        .join(", ");
    let rss_kib = rss_kib(w.controller.pid())?;
    let states_checked = check_invariants(&recorder, &names)?;
    eprintln!("rollout invariants held on {states_checked} states ({many} CRs together)");
    eprintln!(
        "{many} CRs together (ready delay {ready_delay_ms} ms): {seconds:.2} s, one alone {solo_seconds:.2} s; RSS {rss_kib} KiB; CPU {cpu_used}"
    );
    Ok(Together {
        crs: many,
        ready_delay_ms,
        solo_seconds,
        seconds,
        cpu_used,
        requests: total,
        rss_kib,
        states_checked,
    })
}

struct World {
    cp: &'static ControlPlane,
    client: Client,
    ns: String,
    sim: SimOperator,
    controller: SupervisedProcess,
}

async fn world(prefix: &str) -> Result<World> {
    world_with(prefix, READY_DELAY_MS, Some(MANY_AT_ONCE)).await
}

/// A namespace with its simulator and controller; `concurrency` `None` runs the controller with
/// its shipped default.
async fn world_with(prefix: &str, ready_delay_ms: u64, concurrency: Option<u16>) -> Result<World> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, prefix).await?;
    let kubeconfig = cp.kubeconfig_path().display().to_string();
    let (spec, agent_metrics_proxy) = harness::sim::sim_operator_spec(cp.log_path("bench-sim"))?;
    let sim = cp.spawn_sim_operator(
        spec.args([
            "--ready-delay".to_owned(),
            format!("{ready_delay_ms}ms"),
            "--namespace".to_owned(),
            ns.clone(),
            "--kubeconfig".to_owned(),
            kubeconfig.clone(),
            "--log-level".to_owned(),
            "warn".to_owned(),
        ]),
        agent_metrics_proxy,
    )?;
    sim.wait_ready().await?;
    let controller = spawn_controller(cp, &ns, concurrency, sim.agent_metrics_proxy())?;
    Ok(World {
        cp,
        client,
        ns,
        sim,
        controller,
    })
}

/// Seconds a restarted controller gets to list everything and reconcile every CR once.
const RESTART_SETTLE_S: u64 = 30;

/// Controller RSS (KiB) around many CRs.
struct Rss {
    idle: u64,
    full: u64,
    peak: u64,
    restarted: u64,
    restarted_peak: u64,
}

async fn rss_with_many(crs: usize) -> Result<Rss> {
    // Memory is measured as shipped: the default `--concurrency`.
    let w = world_with("bench-rss", READY_DELAY_MS, None).await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    // Idle = started, checks done, caches listed, nothing to reconcile yet.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss_kib(w.controller.pid())?;
    let names: Vec<String> = (0..crs).map(|i| format!("cr-{i}")).collect();
    for name in &names {
        harness::apply_yaml(&w.client, Some(&w.ns), &manifest(name, "v1.0.0")).await?;
    }
    wait_all(&api, &names, 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let full = rss_kib(w.controller.pid())?;
    let peak = status_kib(w.controller.pid(), "VmHWM:")?;
    // Stopped before the next one starts: two controllers without leader election would both act.
    let World {
        cp,
        ns,
        sim,
        controller,
        ..
    } = w;
    controller.stop(Duration::from_secs(10))?;
    let controller = spawn_controller(cp, &ns, None, sim.agent_metrics_proxy())?;
    tokio::time::sleep(Duration::from_secs(RESTART_SETTLE_S)).await;
    let restarted = rss_kib(controller.pid())?;
    let restarted_peak = status_kib(controller.pid(), "VmHWM:")?;
    drop((sim, controller));
    Ok(Rss {
        idle,
        full,
        peak,
        restarted,
        restarted_peak,
    })
}

/// A release controller acting on namespace `ns` only, without leader election, polling the
/// VMAgents' `/metrics` through the simulator's `agent_metrics_proxy`.
fn spawn_controller(
    cp: &ControlPlane,
    ns: &str,
    concurrency: Option<u16>,
    agent_metrics_proxy: &str,
) -> Result<SupervisedProcess> {
    let port = harness::free_port()?;
    cp.spawn(
        standalone_controller(cp, "bench-controller", cp.kubeconfig_path(), Some(ns), port)?
            .args(["--log-level=warn".to_owned()])
            .args(
                concurrency
                    .map(|n| ["--concurrency".to_owned(), n.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .agent_metrics_proxy(agent_metrics_proxy),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[index]
}

/// What one rollout of one CR looked like from the outside.
struct Round {
    /// PATCH answered → first child with a new generation seen.
    first_write: Duration,
    /// PATCH sent → the CR seen `operational` at the new generation.
    total: Duration,
    /// Within `total`, the time during which at least one child was waiting for the operator
    /// (a generation it has not reported `operational` for).
    with_operator: Duration,
}

/// What the watches saw, stamped on arrival.
enum Seen {
    Child {
        at: Instant,
        key: String,
        waiting: bool,
        new_generation: bool,
    },
    CrOperational {
        at: Instant,
    },
}

fn child_waiting(obj: &DynamicObject) -> bool {
    let status = obj.data.get("status");
    let operational = status
        .and_then(|s| s.get("updateStatus"))
        .and_then(serde_json::Value::as_str)
        == Some("operational");
    let observed = status
        .and_then(|s| s.get("observedGeneration"))
        .and_then(serde_json::Value::as_i64);
    !(operational && observed >= obj.metadata.generation)
}

/// Change CR `name` to `generation` (a new `clusterVersion`) and time its rollout through
/// watches on its children and on the CR.
async fn timed_rollout(w: &World, name: &str, generation: i64) -> Result<Round> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let mut watches = Vec::new();
    for kind in [ChildKind::VMCluster, ChildKind::VMAgent, ChildKind::VMAuth] {
        let resource = vmdistributed_runtime::resources::child(kind);
        let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), &w.ns, &resource);
        // Every child, the VMAuth included, carries the claim label.
        let selector = format!("operator.victoriametrics.com/vmdistributed={name}");
        let tx = tx.clone();
        watches.push(tokio::spawn(async move {
            let mut generations = std::collections::HashMap::new();
            let config = watcher::Config::default().labels(&selector);
            let mut stream = watcher(api, config).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) = event {
                    let at = Instant::now();
                    let child = obj.metadata.name.clone().unwrap_or_default();
                    let generation = obj.metadata.generation.unwrap_or(0);
                    let previous = generations.insert(child.clone(), generation);
                    let _ = tx.send(Seen::Child {
                        at,
                        key: format!("{kind}/{child}"),
                        waiting: child_waiting(&obj),
                        new_generation: previous.is_some_and(|old| generation > old),
                    });
                }
            }
        }));
    }
    let crs: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    let cr_name = name.to_owned();
    watches.push(tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={cr_name}"));
        let mut stream = watcher(crs, config).boxed();
        while let Some(Ok(event)) = stream.next().await {
            if let watcher::Event::Apply(cr) | watcher::Event::InitApply(cr) = event
                && operational(&cr, generation)
            {
                let _ = tx.send(Seen::CrOperational { at: Instant::now() });
            }
        }
    }));
    // Let the watches list and settle before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    let start = Instant::now();
    bump(&api, name, &format!("v1.{generation}.0")).await?;
    let sent = Instant::now();
    let mut seen = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Some(Seen::CrOperational { at })) => break at,
            Ok(Some(child)) => seen.push(child),
            Ok(None) | Err(_) => bail!("{name} did not become operational at {generation}"),
        }
    };
    for watch in watches {
        watch.abort();
    }
    let mut first_write = None;
    let mut waiting: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut with_operator = Duration::ZERO;
    let mut last = start;
    for event in seen {
        let Seen::Child {
            at,
            key,
            waiting: now_waiting,
            new_generation,
        } = event
        else {
            continue;
        };
        if new_generation && at >= sent && first_write.is_none() {
            first_write = Some(at.duration_since(sent));
        }
        let at = at.clamp(start, end);
        if waiting.values().any(|w| *w) {
            with_operator += at.duration_since(last);
        }
        last = at;
        waiting.insert(key, now_waiting);
    }
    if waiting.values().any(|w| *w) {
        with_operator += end.duration_since(last);
    }
    Ok(Round {
        first_write: first_write.context("no child write seen")?,
        total: end.duration_since(start),
        with_operator,
    })
}

/// Replays every recorded state of each CR in `names` through the shared invariant checker;
/// fails on the first CR with a violation. Returns the number of states checked.
fn check_invariants(recorder: &StateRecorder, names: &[String]) -> Result<usize> {
    let mut states = 0;
    for name in names {
        states += recorder
            .check(name)
            .with_context(|| format!("rollout invariants of {name}"))?
            .states;
    }
    Ok(states)
}

/// Measurements 1 and 2, one entry per round.
struct Singles {
    first_write_ms: Vec<f64>,
    rollout_s: Vec<f64>,
    overhead_ms: Vec<f64>,
    /// States the invariant checker judged, over both CRs.
    states_checked: usize,
}

/// One CR, repeated rollouts; then one with no pause for the overhead.
async fn single_rollouts(rounds: i64) -> Result<Singles> {
    let w = world("bench-one").await?;
    let recorder = StateRecorder::start(&w.client, &w.ns).await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    harness::apply_yaml(&w.client, Some(&w.ns), &manifest("one", "v1.0.0")).await?;
    harness::apply_yaml(
        &w.client,
        Some(&w.ns),
        &manifest_with_pause("nopause", "v1.0.0", "0s"),
    )
    .await?;
    wait_all(&api, &["one".to_owned(), "nopause".to_owned()], 1).await?;
    let mut first_write_ms = Vec::new();
    let mut rollout_s = Vec::new();
    let mut overhead_ms = Vec::new();
    for round in 1..=rounds {
        let one = timed_rollout(&w, "one", 1 + round).await?;
        first_write_ms.push(one.first_write.as_secs_f64() * 1000.0);
        rollout_s.push(one.total.as_secs_f64());
        let nopause = timed_rollout(&w, "nopause", 1 + round).await?;
        let own = nopause.total.saturating_sub(nopause.with_operator);
        overhead_ms.push(own.as_secs_f64() * 1000.0 / 3.0);
        eprintln!(
            "round {round}: first write {:.0} ms, rollout {:.2} s; no pause: {:.2} s of which children waiting {:.2} s",
            one.first_write.as_secs_f64() * 1000.0,
            one.total.as_secs_f64(),
            nopause.total.as_secs_f64(),
            nopause.with_operator.as_secs_f64()
        );
    }
    let states_checked = check_invariants(&recorder, &["one".to_owned(), "nopause".to_owned()])?;
    eprintln!("rollout invariants held on {states_checked} states (one CR at a time)");
    Ok(Singles {
        first_write_ms,
        rollout_s,
        overhead_ms,
        states_checked,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    harness::install_crypto_provider();
    let sizes: Vec<usize> = std::env::var("VMD_BENCH_CRS")
        .unwrap_or_else(|_| "50 200".to_owned())
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("VMD_BENCH_CRS: CR counts separated by spaces")?;
    let slow_delay_ms: u64 = std::env::var("VMD_BENCH_SLOW_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rss_crs: usize = std::env::var("VMD_BENCH_RSS_CRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: i64 = std::env::var("VMD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);

    // 1 and 2: one CR at a time.
    let singles = if rounds > 0 {
        Some(single_rollouts(rounds).await?)
    } else {
        None
    };

    // 3: many CRs together, with the benchmark's short ready delay (API-bound on a small
    // machine) and with a slower, more realistic one.
    let mut together = Vec::new();
    for &many in &sizes {
        together.push(many_together(many, READY_DELAY_MS).await?);
    }
    if slow_delay_ms > 0 {
        for &many in &sizes {
            together.push(many_together(many, slow_delay_ms).await?);
        }
    }

    // 4: RSS with many CRs: while they are created and roll out to `operational`, then in a
    // controller restarted with all of them in place (the steady state of a long-running
    // replica, and what a new leader holds).
    let rss = if rss_crs > 0 {
        Some(rss_with_many(rss_crs).await?)
    } else {
        None
    };

    println!("| measurement | result |");
    println!("|---|---|");
    if let Some(singles) = singles {
        let rounds = singles.first_write_ms.len();
        println!(
            "| CR spec change → first child write ({rounds} runs) | median {:.0} ms, max {:.0} ms |",
            median(singles.first_write_ms.clone()),
            percentile(singles.first_write_ms, 1.0)
        );
        println!(
            "| 3-zone rollout, 1 CR (ready delay {READY_DELAY_MS} ms, updatePause {PAUSE_MS} ms; {rounds} runs) | median {:.2} s |",
            median(singles.rollout_s)
        );
        println!(
            "| per-zone orchestration overhead beyond readiness (updatePause 0; {rounds} runs) | median {:.0} ms, max {:.0} ms |",
            median(singles.overhead_ms.clone()),
            percentile(singles.overhead_ms, 1.0)
        );
        println!(
            "| rollout invariants (shared checker), one CR at a time | held on all {} states |",
            singles.states_checked
        );
    }
    for t in &together {
        println!(
            "| {} CRs × 3 zones rolling out together (ready delay {} ms) | {:.2} s vs {:.2} s for one alone in the same setup: **{:.2}×**; {:.0} API requests; CPU used: {}; controller RSS after: {:.1} MiB; invariants held on {} states |",
            t.crs,
            t.ready_delay_ms,
            t.seconds,
            t.solo_seconds,
            t.seconds / t.solo_seconds,
            t.requests,
            t.cpu_used,
            t.rss_kib as f64 / 1024.0,
            t.states_checked
        );
    }
    if let Some(rss) = rss {
        println!(
            "| controller RSS: idle / {rss_crs} CRs created and operational (7 children each) / peak while creating | {:.1} MiB / {:.1} MiB / {:.1} MiB |",
            rss.idle as f64 / 1024.0,
            rss.full as f64 / 1024.0,
            rss.peak as f64 / 1024.0
        );
        println!(
            "| controller RSS: restarted with the {rss_crs} CRs in place, after {RESTART_SETTLE_S} s / peak | {:.1} MiB / {:.1} MiB |",
            rss.restarted as f64 / 1024.0,
            rss.restarted_peak as f64 / 1024.0
        );
    }
    Ok(())
}
