//! `vmd-demo` (run it through `./scripts/demo`): a zone-by-zone rollout on a real local control
//! plane, live.
//!
//! Starts etcd and kube-apiserver, installs the CRDs (this project's and the VictoriaMetrics
//! operator's own), runs the webhook as an HTTPS process registered with the API server, the real
//! VictoriaMetrics operator on kwok nodes (with kube-scheduler and kube-controller-manager, so its
//! StatefulSets, Deployments and pods really exist; `--sim` uses the simulated operator instead)
//! and the controller, applies the seed example with a third zone, waits for `operational`, shows
//! one apply the webhook rejects, then changes `clusterVersion` and prints one line per state
//! change until every zone is updated, followed by a summary whose invariants are checked on every
//! observed write. Then it keeps running (Ctrl-C stops it) unless `--no-wait` is given. Every
//! process it started is stopped by PID and its temporary directory removed on exit.

mod manifests;
mod stack;
mod timeline;
mod watch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use shared::api::VMDistributed;

use crate::manifests::{DemoSpec, NAMESPACE};
use crate::stack::Stack;
use crate::timeline::{Layout, Model, Report};
use crate::watch::Follower;

/// A live local demo of a zone-by-zone rollout (etcd, kube-apiserver, webhook, controller and the
/// VictoriaMetrics operator on fake kwok nodes, all on 127.0.0.1).
#[derive(Parser, Debug)]
#[command(name = "vmd-demo")]
struct Args {
    /// Exit after the summary instead of running until Ctrl-C.
    #[arg(long)]
    no_wait: bool,
    /// `zoneCommon.updatePause` of the demo object (Go duration).
    #[arg(long, default_value = "3s")]
    update_pause: String,
    /// `zoneCommon.readyTimeout` of the demo object (Go duration).
    #[arg(long, default_value = "1m")]
    ready_timeout: String,
    /// Use the simulated VictoriaMetrics operator (no pods, starts faster) instead of the real
    /// operator on kwok nodes.
    #[arg(long)]
    sim: bool,
    /// With `--sim`: how long the simulated operator takes to report a changed object
    /// `operational`.
    #[arg(long, default_value = "2s")]
    sim_ready_delay: String,
    /// `clusterVersion` the zones start with.
    #[arg(long, default_value = "v1.110.0-cluster")]
    from_version: String,
    /// `clusterVersion` the rollout moves them to.
    #[arg(long, default_value = "v1.111.0-cluster")]
    to_version: String,
    /// Upper bound for each wait (start-up, operational, rollout), in seconds.
    #[arg(long, default_value_t = 600)]
    wait_timeout: u64,
}

/// How far the demo got, for the exit code.
#[derive(Default)]
struct Progress {
    summary: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmd-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(demo(args))
}

async fn demo(args: Args) -> ExitCode {
    harness::install_crypto_provider();
    let mut stack = Stack::default();
    let mut progress = Progress::default();
    let result = tokio::select! {
        result = run(&mut stack, &mut progress, &args) => Some(result),
        () = vmdistributed_runtime::signals::terminated() => None,
    };
    let code = match result {
        Some(Ok(())) => match progress.summary {
            Some(true) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
        Some(Err(e)) => {
            eprintln!("\nvmd-demo: error: {e:#}");
            ExitCode::FAILURE
        }
        None => {
            println!("\nInterrupted.");
            match progress.summary {
                Some(true) => ExitCode::SUCCESS,
                Some(false) => ExitCode::FAILURE,
                None => ExitCode::from(130),
            }
        }
    };
    println!("Stopping everything the demo started:");
    let stopped = stack.stop();
    for line in &stopped.lines {
        println!("  stopped {line}");
    }
    if stopped.lines.is_empty() {
        println!("  nothing was running yet");
    }
    if let Some(dir) = stopped.dir {
        if dir.exists() {
            println!("  WARNING: {} is still there", dir.display());
        } else {
            println!("  removed {}", dir.display());
        }
    }
    code
}

fn step(n: u32, text: &str) {
    println!("\n[{n}/8] {text}");
}

async fn run(stack: &mut Stack, progress: &mut Progress, args: &Args) -> Result<()> {
    let timeout = Duration::from_secs(args.wait_timeout);
    let demo = DemoSpec {
        update_pause: args.update_pause.clone(),
        ready_timeout: args.ready_timeout.clone(),
        version_before: args.from_version.clone(),
        version_after: args.to_version.clone(),
    };
    let root = harness::workspace_root();
    let seed_yaml = std::fs::read_to_string(root.join("examples/seed.yaml"))
        .context("reading examples/seed.yaml")?;
    let seed = manifests::seed(&seed_yaml, &demo)?;
    let typed: VMDistributed =
        serde_json::from_value(seed.clone()).context("the demo object does not decode")?;
    let mut layout = Layout::of(&typed);
    layout.version_labels = vec![
        (args.from_version.clone(), "old".to_string()),
        (args.to_version.clone(), "new".to_string()),
    ];
    let (webhook_bin, controller_bin) = workspace_binaries()?;

    println!("vmdistributed demo: a zone-by-zone rollout on a local control plane");

    step(
        1,
        "control plane binaries (tests/envtest/build.sh; cached after the first build)",
    );
    let bin = tokio::task::spawn_blocking(harness::envtest_bin_dir)
        .await
        .context("envtest build task")??;
    println!("      {}", bin.display());

    step(2, "starting etcd + kube-apiserver on 127.0.0.1");
    let took = stack.start_control_plane().await?;
    let cp = stack.cp()?;
    println!(
        "      ready in {:.1}s at {} (data and logs in {})",
        took.as_secs_f64(),
        cp.server_url(),
        cp.dir().display()
    );
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    let client = cp.client().await?;

    step(
        3,
        "installing CRDs: VMDistributed (this project) and the VictoriaMetrics operator's own \
         (VMCluster, VMAgent, VMAuth, VMSingle, ...)",
    );
    cp.install_crds().await?;
    harness::apply_value(
        &client,
        None,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        &PatchParams::apply(harness::FIELD_MANAGER).force(),
    )
    .await?;
    println!("      established; namespace {NAMESPACE} created");

    step(
        4,
        "starting the admission webhook (HTTPS, certificate from a throwaway CA) and registering it",
    );
    let webhook = stack::start_webhook(stack, &webhook_bin).await?;
    stack::register_webhook(&client, &webhook).await?;
    wait_webhook_active(stack, &client, &seed, timeout).await?;
    println!(
        "      pid {}, https://127.0.0.1:{} (/mutate, /validate), health on http://127.0.0.1:{}; \
         MutatingWebhookConfiguration and ValidatingWebhookConfiguration {} answer",
        webhook.pid,
        webhook.tls_port,
        webhook.http_port,
        stack::WEBHOOK_CONFIG_NAME
    );

    let agent_metrics_proxy = if args.sim {
        step(
            5,
            "starting the simulated VictoriaMetrics operator and the controller",
        );
        let (sim_pid, agent_metrics_proxy) =
            stack::start_sim(stack, NAMESPACE, &args.sim_ready_delay)?;
        println!(
            "      vm-operator-sim pid {sim_pid} (objects become operational {} after each change)",
            args.sim_ready_delay
        );
        agent_metrics_proxy
    } else {
        step(
            5,
            "starting the VictoriaMetrics operator on kwok nodes, and the controller",
        );
        let cp = stack.cp()?;
        cp.ensure_operator_world().await?;
        let world = cp
            .operator_world()
            .ok_or_else(|| anyhow!("the operator world did not start"))?;
        let processes = world
            .processes()
            .iter()
            .map(|(name, pid)| format!("{name} {pid}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "      ready in {:.1}s: {processes}; kube-controller-manager {}",
            world.started_in().as_secs_f64(),
            cp.controller_manager_pid()
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string())
        );
        println!(
            "      nodes {} (fake kubelets: pods are Ready at once, with IPs in {})",
            harness::KWOK_NODES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
            world.pod_cidr()
        );
        world.agent_metrics_proxy()
    };
    let (controller_pid, controller_port) =
        stack::start_controller(stack, &controller_bin, &agent_metrics_proxy).await?;
    println!(
        "      vmdistributed-controller pid {controller_pid}, ready (metrics on http://127.0.0.1:{controller_port}/metrics)"
    );

    let mut follower = Follower::start(&client, NAMESPACE, Model::new(layout.clone()));

    step(6, "applying the seed example through the webhook");
    for line in manifests::describe(&demo) {
        println!("      {line}");
    }
    let params = PatchParams::apply("kubectl").force();
    let stored = harness::apply_value(&client, Some(NAMESPACE), seed.clone(), &params).await?;
    let stored = serde_json::to_value(&stored)?;
    let added = added_fields(&seed["spec"], &stored["spec"], "spec");
    if !added.is_empty() {
        println!("      defaults filled in by the mutating webhook:");
        for field in added {
            println!("        {field}");
        }
    }
    println!("      waiting for operational (children created together, then the VMAuth):");
    for line in timeline::legend(&layout) {
        println!("      {line}");
    }
    println!();
    follower
        .follow(
            stack,
            timeout,
            "the seed example to become operational",
            |m| m.settled(Some(&args.from_version)),
        )
        .await?;
    println!(
        "\n      operational: {} zones ready, every zone in the VMAuth read and write targets",
        layout.zones.len()
    );

    step(
        7,
        "an apply the webhook must reject (a zone referencing a VMCluster in another namespace)",
    );
    show_rejection(&client).await?;

    step(
        8,
        &format!(
            "rollout: clusterVersion {} -> {} (updatePause {})\n",
            args.from_version, args.to_version, args.update_pause
        ),
    );
    let started = Instant::now();
    follower.restart_clock();
    let api = vmd_api(&client);
    let patched = api
        .patch(
            &layout.cr,
            &PatchParams::default(),
            &Patch::Merge(manifests::version_patch(&args.to_version)),
        )
        .await
        .context("changing clusterVersion")?;
    let start_rv: u64 = patched
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("the API server returned a non-numeric resourceVersion"))?;
    follower
        .follow(stack, timeout, "the rollout to finish", |m| {
            m.settled(Some(&args.to_version))
        })
        .await?;
    let total = started.elapsed();
    let report = timeline::analyze(follower.model(), start_rv, &args.to_version);
    print_summary(&report, &layout, follower.model(), total);
    progress.summary = Some(report.all_held());

    println!("\nTry it yourself (the control plane stays up while the demo runs):");
    println!(
        "  KUBECONFIG={} kubectl get vmd -n {NAMESPACE} -w",
        kubeconfig.display()
    );
    if args.no_wait {
        return Ok(());
    }
    println!(
        "  KUBECONFIG={} kubectl edit vmd {} -n {NAMESPACE}   # e.g. change clusterVersion again",
        kubeconfig.display(),
        layout.cr
    );
    println!("\nWatching (new state changes appear below). Press Ctrl-C to stop everything.\n");
    follower.restart_clock();
    follower
        .follow(stack, Duration::MAX, "Ctrl-C", |_| false)
        .await
}

/// `target/<profile>/vmdistributed-webhook` and `vmdistributed-controller`, next to this binary
/// (`./scripts/demo` builds them first).
fn workspace_binaries() -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = harness::paths::target_profile_dir()?;
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow!(
                "{} is missing: run ./scripts/demo (it builds the webhook and the controller first)",
                path.display()
            ))
        }
    };
    Ok((
        find("vmdistributed-webhook")?,
        find("vmdistributed-controller")?,
    ))
}

fn vmd_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &vmdistributed_runtime::resources::vmdistributed(),
    )
}

/// Registration takes effect asynchronously in the API server: dry-run applies until the
/// validating webhook denies the cross-namespace object and the mutating one fills a default.
async fn wait_webhook_active(
    stack: &Stack,
    client: &kube::Client,
    seed: &Value,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout.min(Duration::from_secs(120));
    let dry_run = PatchParams::apply("kubectl").force().dry_run();
    loop {
        stack.check_alive()?;
        let denied = matches!(
            harness::apply_value(client, Some(NAMESPACE), manifests::cross_namespace(), &dry_run).await,
            Err(e) if format!("{e:#}").contains("admission webhook")
        );
        let defaulted =
            match harness::apply_value(client, Some(NAMESPACE), seed.clone(), &dry_run).await {
                Ok(obj) => obj.data.pointer("/spec/backendType").is_some(),
                Err(_) => false,
            };
        if denied && defaulted {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the API server did not start calling the webhook (validating active: {denied}, \
                 mutating active: {defaulted})"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn show_rejection(client: &kube::Client) -> Result<()> {
    let object = manifests::cross_namespace();
    let reference = &object["spec"]["zones"][0]["vmcluster"]["ref"];
    println!(
        "      VMDistributed {NAMESPACE}/{} with zones[0].vmcluster.ref = {{name: {}, namespace: {}}}",
        manifests::REJECTED_NAME,
        reference["name"].as_str().unwrap_or_default(),
        reference["namespace"].as_str().unwrap_or_default()
    );
    let params = PatchParams::apply("kubectl").force();
    match vmd_api(client)
        .patch(manifests::REJECTED_NAME, &params, &Patch::Apply(&object))
        .await
    {
        Ok(_) => bail!("the API server accepted an object with a cross-namespace ref"),
        Err(kube::Error::Api(status)) => {
            println!("      rejected (HTTP {}):", status.code);
            for line in status.message.lines() {
                println!("        {line}");
            }
            Ok(())
        }
        Err(e) => Err(anyhow!(e).context("applying the cross-namespace object")),
    }
}

/// `path=value` of every leaf in `stored` that `applied` did not have (the webhook's defaults).
fn added_fields(applied: &Value, stored: &Value, path: &str) -> Vec<String> {
    match (applied, stored) {
        (Value::Object(a), Value::Object(s)) => s
            .iter()
            .flat_map(|(key, value)| match a.get(key) {
                Some(inner) => added_fields(inner, value, &format!("{path}.{key}")),
                None => vec![format!("{path}.{key}: {value}")],
            })
            .collect(),
        (Value::Array(a), Value::Array(s)) if a.len() == s.len() => a
            .iter()
            .zip(s)
            .enumerate()
            .flat_map(|(i, (x, y))| added_fields(x, y, &format!("{path}[{i}]")))
            .collect(),
        _ => Vec::new(),
    }
}

fn print_summary(report: &Report, layout: &Layout, model: &Model, total: Duration) {
    println!("\nSummary");
    println!("  zones updated in order: {}", report.order.join(", "));
    println!(
        "  spec order:             {}",
        layout
            .zones
            .iter()
            .map(|z| z.zone.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (zone, out) in &report.out_of_lb {
        println!(
            "  {zone}: out of the load balancer for {:.1}s",
            out.as_secs_f64()
        );
    }
    if !report.pauses.is_empty() {
        println!(
            "  pauses between zones: {}",
            report
                .pauses
                .iter()
                .map(|p| format!("{:.1}s", p.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("  total rollout duration: {:.1}s", total.as_secs_f64());
    for zone in &layout.zones {
        let text = timeline::pods_text(layout, &model.pod_counts(&zone.zone));
        if !text.is_empty() {
            println!("  {}: VMCluster pods now{text}", zone.zone);
        }
    }
    println!(
        "  invariants: {}",
        if report.all_held() {
            "all held"
        } else {
            "VIOLATED"
        }
    );
    for (held, text) in &report.invariants {
        println!("    [{}] {text}", if *held { "ok" } else { "FAILED" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn added_fields_lists_only_new_leaves() {
        let applied = json!({"zones": [{"name": "a"}], "zoneCommon": {"updatePause": "3s"}});
        let stored = json!({
            "zones": [{"name": "a", "trafficMode": "read-write"}],
            "zoneCommon": {"updatePause": "3s", "readyTimeout": "5m"},
            "backendType": "VMCluster"
        });
        let mut added = added_fields(&applied, &stored, "spec");
        added.sort();
        assert_eq!(
            added,
            [
                "spec.backendType: \"VMCluster\"",
                "spec.zoneCommon.readyTimeout: \"5m\"",
                "spec.zones[0].trafficMode: \"read-write\""
            ]
        );
    }
}
