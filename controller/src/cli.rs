//! Command line of `vmdistributed-controller`. Flag names and environment variables are part of
//! the contract with the Helm chart.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};
pub use vmdistributed_runtime::{LogFormat, PinArgs};

/// Zone-by-zone rollouts of VictoriaMetrics clusters described by `VMDistributed` objects.
#[derive(Debug, Parser)]
#[command(name = "vmdistributed-controller", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster.
    Run(RunArgs),
    /// Print the children a VMDistributed would produce, offline.
    Render(RenderArgs),
}

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "VMD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Take part in leader election on a Lease; only the leader acts.
    #[arg(
        long,
        env = "VMD_LEADER_ELECT",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(
        long,
        env = "VMD_LEASE_NAME",
        default_value = "vmdistributed-controller"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "VMD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Identity of this replica in the Lease (default: $POD_NAME, else hostname-pid).
    #[arg(long, env = "VMD_IDENTITY")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal. The holder renews a third of it early and
    /// stops acting before it expires.
    #[arg(long, env = "VMD_LEASE_DURATION_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration_seconds: u64,
    /// How many VMDistributed objects are reconciled at the same time.
    #[arg(long, env = "VMD_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Watch and reconcile only this namespace (default: all namespaces). RBAC may then be a
    /// Role in that namespace instead of a ClusterRole (except for the CRD read).
    #[arg(long, env = "VMD_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Path of a kubeconfig file (in-cluster configuration otherwise).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Log line format.
    #[arg(long, env = "VMD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in tracing-subscriber syntax, for example `info` or `info,kube=debug`.
    #[arg(long, env = "VMD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Versions pinned into children whose spec sets none.
    #[command(flatten)]
    pub pins: PinArgs,
    /// How long a first preflight rejection is held before the same generation is dry-run
    /// again (Go duration; doubled for each rejection in a row, at most 30m). Hidden: the
    /// default suits every cluster; tests shorten it.
    #[arg(long, env = "VMD_PREFLIGHT_RECHECK_BASE", default_value = "2m",
          value_parser = duration, hide = true)]
    pub preflight_recheck_base: std::time::Duration,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    shared::duration::parse_go_duration(s).map_err(|err| err.to_string())
}

/// Flags of `render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// YAML file with one or more VMDistributed documents, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// Versions pinned into children whose spec sets none, as the controller's flags.
    #[command(flatten)]
    pub pins: PinArgs,
}

impl RunArgs {
    /// The Lease namespace after applying the documented fallbacks.
    #[must_use]
    pub fn effective_lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned())
    }

    /// This replica's identity after applying the documented fallbacks.
    #[must_use]
    pub fn effective_identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vmdistributed-controller".to_owned())
}

#[cfg(test)]
mod tests {
    use shared::versions::PinnedVersions;

    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        let mut argv = vec!["vmdistributed-controller", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Run(run)) => run,
            other => panic!("unexpected parse result {other:?}"),
        }
    }

    #[test]
    fn leader_elect_defaults_to_true_and_takes_an_explicit_value() {
        assert!(run(&[]).leader_elect);
        assert!(run(&["--leader-elect"]).leader_elect);
        assert!(!run(&["--leader-elect=false"]).leader_elect);
        assert!(run(&["--leader-elect=true"]).leader_elect);
    }

    #[test]
    fn defaults_match_the_chart_contract() {
        let args = run(&[]);
        assert_eq!(args.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.lease_name, "vmdistributed-controller");
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.log_level, "info");
        assert_eq!(
            args.pins.pinned_versions(),
            PinnedVersions::operator_defaults()
        );
        assert_eq!(args.preflight_recheck_base, shared::preflight::RECHECK_BASE);
        assert_eq!(
            run(&["--preflight-recheck-base=1s"]).preflight_recheck_base,
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn pinned_versions_take_a_value_or_nothing() {
        let args = run(&[
            "--pinned-vmcluster-version",
            "v1.111.0-cluster",
            "--pinned-vmagent-version=",
        ]);
        assert_eq!(
            args.pins.pinned_versions(),
            PinnedVersions {
                vmcluster: Some("v1.111.0-cluster".to_owned()),
                vmagent: None,
                vmsingle: Some(shared::versions::OPERATOR_DEFAULT_VERSION.to_owned()),
            }
        );
    }

    #[test]
    fn render_takes_a_file_or_stdin() {
        let cli = Cli::try_parse_from(["vmdistributed-controller", "render", "-f", "-"]);
        assert!(
            matches!(cli.map(|c| c.command), Ok(Command::Render(RenderArgs { file, .. })) if file == "-")
        );
    }
}
