//! Simulated VictoriaMetrics operator for tests and the demo; see `harness::sim` for the behavior
//! and the annotations (`sim.vmdistributed.io/fail`, `.../stuck`, `.../ready-after`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harness::sim::{SimConfig, parse_duration};
use kube::config::{KubeConfigOptions, Kubeconfig};

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
    /// tracing filter, e.g. info or debug.
    #[arg(long, default_value = "info", env = "VMD_LOG_LEVEL")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    harness::install_crypto_provider();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-operator-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?,
            )?
        }
        None => kube::Client::try_default().await?,
    };
    tracing::info!(ready_delay = ?args.ready_delay, namespace = ?args.namespace, "vm-operator-sim started");
    harness::sim::run(
        client,
        SimConfig {
            ready_delay: args.ready_delay,
            namespace: args.namespace,
        },
    )
    .await
}
