//! Controller benchmark (not a test): run with
//! `cargo bench -p vmdistributed-tests --bench controller_rollout` (release build of the
//! controller and the simulated operator, on the local control plane). Prints a Markdown table for
//! BENCHMARKS.md. Sizes can be changed with `VMD_BENCH_CRS` (default 50) and `VMD_BENCH_RSS_CRS`
//! (default 300).
//!
//! Measures:
//! 1. time from a CR spec change (the PATCH response) to the first child write seen by a watch;
//! 2. per-zone orchestration overhead: a 3-zone rollout's duration minus what the simulated
//!    operator's readiness delay and `updatePause` account for, divided by the zones;
//! 3. N CRs of 3 zones rolling out together vs one alone;
//! 4. controller RSS with many CRs (all operational, caches filled).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use harness::{ControlPlane, ProcessSpec, SupervisedProcess};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use shared::VMDistributed;

const READY_DELAY_MS: u64 = 500;
const PAUSE_MS: u64 = 1000;

fn manifest(name: &str, version: &str) -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1alpha1
kind: VMDistributed
metadata:
  name: {name}
spec:
  zoneCommon:
    readyTimeout: 60s
    updatePause: {PAUSE_MS}ms
    vmcluster:
      spec:
        clusterVersion: {version}
        vminsert: {{replicaCount: 1}}
        vmselect: {{replicaCount: 1}}
        vmstorage: {{replicaCount: 1}}
  zones:
    - name: zone-a
    - name: zone-b
    - name: zone-c
"#
    )
}

fn operational(cr: &VMDistributed, generation: i64) -> bool {
    cr.metadata.generation == Some(generation)
        && cr.status.as_ref().is_some_and(|s| {
            s.update_status == Some(shared::api::UpdateStatus::Operational)
                && s.observed_generation == Some(generation)
        })
}

async fn wait_all(api: &Api<VMDistributed>, names: &[String], generation: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = api.list(&Default::default()).await?;
        let done = names.iter().all(|n| {
            list.items
                .iter()
                .any(|cr| cr.metadata.name.as_deref() == Some(n) && operational(cr, generation))
        });
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("CRs not operational at generation {generation} after 600s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS missing")
}

struct World {
    cp: &'static ControlPlane,
    client: Client,
    ns: String,
    _sim: SupervisedProcess,
    controller: SupervisedProcess,
}

async fn world(prefix: &str) -> Result<World> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, prefix).await?;
    let kubeconfig = cp.kubeconfig_path().display().to_string();
    let sim = cp.spawn(
        ProcessSpec::new(harness::sim_operator_binary()?, cp.log_path("bench-sim")).args([
            "--ready-delay".to_owned(),
            format!("{READY_DELAY_MS}ms"),
            "--namespace".to_owned(),
            ns.clone(),
            "--kubeconfig".to_owned(),
            kubeconfig.clone(),
            "--log-level".to_owned(),
            "warn".to_owned(),
        ]),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let controller = cp.spawn(
        ProcessSpec::new(
            harness::controller_binary()?,
            cp.log_path("bench-controller"),
        )
        .args([
            "run".to_owned(),
            "--kubeconfig".to_owned(),
            kubeconfig,
            "--leader-elect=false".to_owned(),
            "--watch-namespace".to_owned(),
            ns.clone(),
            "--http-addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--log-level".to_owned(),
            "warn".to_owned(),
            "--concurrency".to_owned(),
            "64".to_owned(),
        ]),
    )?;
    Ok(World {
        cp,
        client,
        ns,
        _sim: sim,
        controller,
    })
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

#[tokio::main]
async fn main() -> Result<()> {
    harness::install_crypto_provider();
    let many: usize = std::env::var("VMD_BENCH_CRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rss_crs: usize = std::env::var("VMD_BENCH_RSS_CRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);

    // 1 and 2: one CR, repeated rollouts.
    let w = world("bench-one").await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    harness::apply_yaml(&w.client, Some(&w.ns), &manifest("one", "v1.0.0")).await?;
    wait_all(&api, &["one".to_owned()], 1).await?;
    let mut first_write_ms = Vec::new();
    let mut rollout_s = Vec::new();
    for round in 1..=8 {
        let resources: Vec<ApiResource> = ["VMCluster", "VMAgent", "VMAuth"]
            .iter()
            .map(|k| ApiResource {
                group: "operator.victoriametrics.com".into(),
                version: "v1beta1".into(),
                api_version: "operator.victoriametrics.com/v1beta1".into(),
                kind: (*k).into(),
                plural: format!("{}s", k.to_lowercase()),
            })
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut watches = Vec::new();
        for resource in resources {
            let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), &w.ns, &resource);
            let tx = tx.clone();
            watches.push(tokio::spawn(async move {
                let mut seen = std::collections::HashMap::new();
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(Ok(event)) = stream.next().await {
                    if let watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) = event {
                        let generation = obj.metadata.generation.unwrap_or(0);
                        let name = obj.metadata.name.clone().unwrap_or_default();
                        if let Some(old) = seen.insert(name, generation)
                            && generation > old
                        {
                            let _ = tx.send(Instant::now());
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = Instant::now();
        bump(&api, "one", &format!("v1.{round}.0")).await?;
        let sent = Instant::now();
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await?
            .context("no child write")?;
        first_write_ms.push(first.duration_since(sent).as_secs_f64() * 1000.0);
        wait_all(&api, &["one".to_owned()], 1 + round).await?;
        rollout_s.push(start.elapsed().as_secs_f64());
        for watch in watches {
            watch.abort();
        }
    }
    // Each zone waits for readiness three times (VMAuth without it, the zone, VMAuth with it) and
    // there is a pause between consecutive zones.
    let waited = 3.0 * 3.0 * READY_DELAY_MS as f64 / 1000.0 + 2.0 * PAUSE_MS as f64 / 1000.0;
    let one_rollout = median(rollout_s.clone());
    let overhead_ms = (one_rollout - waited) / 3.0 * 1000.0;
    eprintln!(
        "first write median {:.0} ms; rollout median {one_rollout:.2} s; overhead {overhead_ms:.0} ms/zone",
        median(first_write_ms.clone())
    );
    drop(w);

    // 3: many CRs together.
    let w = world("bench-many").await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    let names: Vec<String> = (0..many).map(|i| format!("cr-{i}")).collect();
    for name in &names {
        harness::apply_yaml(&w.client, Some(&w.ns), &manifest(name, "v1.0.0")).await?;
    }
    wait_all(&api, &names, 1).await?;
    let start = Instant::now();
    for name in &names {
        bump(&api, name, "v1.1.0").await?;
    }
    wait_all(&api, &names, 2).await?;
    let many_s = start.elapsed().as_secs_f64();
    let rss_many = rss_kib(w.controller.pid())?;
    eprintln!("{many} CRs together: {many_s:.2} s; RSS {rss_many} KiB");
    drop(w);

    // 4: RSS with more CRs.
    let w = world("bench-rss").await?;
    let api: Api<VMDistributed> = Api::namespaced(w.client.clone(), &w.ns);
    // Idle = started, checks done, caches listed, nothing to reconcile yet.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss_kib(w.controller.pid())?;
    let names: Vec<String> = (0..rss_crs).map(|i| format!("cr-{i}")).collect();
    for name in &names {
        harness::apply_yaml(&w.client, Some(&w.ns), &manifest(name, "v1.0.0")).await?;
    }
    wait_all(&api, &names, 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_full = rss_kib(w.controller.pid())?;
    let _ = w.cp;
    drop(w);

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| CR spec change → first child write (8 runs) | median {:.0} ms, max {:.0} ms |",
        median(first_write_ms.clone()),
        percentile(first_write_ms, 1.0)
    );
    println!(
        "| 3-zone rollout, 1 CR (ready delay {READY_DELAY_MS} ms, updatePause {PAUSE_MS} ms; 8 runs) | median {one_rollout:.2} s, of which readiness + pauses {waited:.2} s |"
    );
    println!(
        "| per-zone orchestration overhead beyond readiness and pause | {overhead_ms:.0} ms |"
    );
    println!(
        "| {many} CRs × 3 zones rolling out together | {many_s:.2} s ({:.2}× one alone) |",
        many_s / one_rollout
    );
    println!(
        "| controller RSS: idle / {many} CRs / {rss_crs} CRs (all operational) | {:.1} MiB / {:.1} MiB / {:.1} MiB |",
        idle as f64 / 1024.0,
        rss_many as f64 / 1024.0,
        rss_full as f64 / 1024.0
    );
    Ok(())
}
