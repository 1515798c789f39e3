//! Starts a local control plane (etcd + kube-apiserver, optionally kube-controller-manager, the
//! project CRD and the upstream VictoriaMetrics CRDs, and the simulated VictoriaMetrics
//! operator) and keeps it running until stdin reaches EOF or the process gets SIGINT/SIGTERM; everything is removed on exit.
//!
//! Prints one JSON line on stdout once ready:
//! `{"kubeconfig": "...", "server": "https://127.0.0.1:PORT", "dir": "...", "pids": [...], "started_ms": N}`
//!
//! Example: `KUBECONFIG=$(envtest-up --crds --sim < /dev/tty | jq -r .kubeconfig)` in one shell,
//! or simply run it and copy the kubeconfig path.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use harness::{ControlPlane, Options};

#[derive(Parser, Debug)]
#[command(name = "envtest-up")]
struct Args {
    /// Also run kube-controller-manager (namespace and garbagecollector controllers).
    #[arg(long)]
    controller_manager: bool,
    /// Install the project CRD and the upstream VictoriaMetrics CRDs.
    #[arg(long)]
    crds: bool,
    /// Run the simulated VictoriaMetrics operator (implies --crds).
    #[arg(long)]
    sim: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("envtest-up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options {
        controller_manager: args.controller_manager,
    })
    .await?;
    if args.crds || args.sim {
        cp.install_crds().await?;
    }
    if args.sim {
        cp.ensure_sim_operator().await?;
    }
    let line = serde_json::json!({
        "kubeconfig": cp.kubeconfig_path(),
        "server": cp.server_url(),
        "dir": cp.dir(),
        "pids": cp.pids(),
        "started_ms": cp.started_in().as_millis() as u64,
        // The HTTP_PROXY for a controller: the simulator's VMAgents' /metrics.
        "agent_metrics_proxy": cp.sim_agent_metrics_proxy(),
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;

    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut sink);
    });
    tokio::select! {
        _ = stdin_closed => {}
        () = vmdistributed_runtime::signals::terminated() => {}
    }
    cp.stop()
}
