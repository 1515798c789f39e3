//! Simulated VictoriaMetrics operator for tests and the demo; see `harness::sim` for the behavior
//! and the annotations (`sim.vmdistributed.io/fail`, `.../stuck`, `.../ready-after`).
//!
//! It also stands in for the VMAgents' pods (`harness::vmagent_standin`): an EndpointSlice per
//! VMAgent and a proxy on `127.0.0.1:--metrics-proxy-port` answering their `/metrics` (queue
//! sizes, `sim.vmdistributed.io/pending-*` annotations). Give it as `HTTP_PROXY` to the
//! controller. The URL is logged at start (`agent metrics proxy listening`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harness::sim::{SimConfig, parse_duration};
use harness::vmagent_standin::{self, AddressBook};
use vmdistributed_runtime::kube_config;

/// Drives VMCluster, VMAgent, VMAuth and VMSingle objects to `expanding`, then `operational`.
#[derive(Parser, Debug)]
#[command(name = "vm-operator-sim", version)]
struct Args {
    /// Time from a spec change (new generation) to `operational`, e.g. 1s, 500ms, 2m.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    ready_delay: std::time::Duration,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Port on 127.0.0.1 of the vmagent `/metrics` proxy (0: any free port; the URL is logged).
    #[arg(long, default_value_t = 0)]
    metrics_proxy_port: u16,
    /// tracing filter, e.g. info or debug.
    #[arg(long, default_value = "info", env = "VMD_LOG_LEVEL")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let log_level = args.log_level.clone();
    harness::stand_in_main("vm-operator-sim", &log_level, run(args)).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_from(kube_config::load(args.kubeconfig.as_deref()).await?)?;
    let (listener, proxy_url) = vmagent_standin::bind_proxy(args.metrics_proxy_port).await?;
    tracing::info!(ready_delay = ?args.ready_delay, namespace = ?args.namespace, "vm-operator-sim started");
    tracing::info!(url = %proxy_url, "agent metrics proxy listening");
    let addresses = AddressBook::default();
    let (agents, agent_events) =
        vmagent_standin::vmagent_reflector(client.clone(), args.namespace.as_deref());
    let proxy = vmagent_standin::serve_metrics_proxy(listener, addresses.clone(), agents.clone());
    let endpoints = vmagent_standin::publish_sim_agent_endpoints(
        client.clone(),
        args.namespace.clone(),
        addresses,
        agents,
        agent_events,
    );
    let sim = harness::sim::run(
        client,
        SimConfig {
            ready_delay: args.ready_delay,
            namespace: args.namespace,
        },
    );
    tokio::select! {
        r = sim => r,
        r = proxy => r,
        r = endpoints => r,
    }
}
