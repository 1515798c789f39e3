//! Command-line interface (flags and environment variables are a contract with the chart).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};
pub use vmdistributed_runtime::{LogFormat, PinArgs};

/// Admission webhook for VMDistributed: defaulting and validation over HTTPS, and an offline
/// `check` of manifests.
#[derive(Debug, Parser)]
#[command(name = "vmdistributed-webhook", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /mutate and POST /validate over HTTPS, health and metrics over HTTP.
    Serve(Box<ServeArgs>),
    /// Default and validate VMDistributed manifests offline; exit code 1 on any error.
    Check(CheckArgs),
}

/// Flags of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTPS address of POST /mutate and POST /validate.
    #[arg(long, env = "VMD_TLS_ADDR", default_value = "0.0.0.0:9443")]
    pub tls_addr: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "VMD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// PEM certificate chain (reloaded when the file changes).
    #[arg(long, env = "VMD_TLS_CERT_FILE", default_value = "/tls/tls.crt")]
    pub tls_cert_file: PathBuf,
    /// PEM private key (reloaded when the file changes).
    #[arg(long, env = "VMD_TLS_KEY_FILE", default_value = "/tls/tls.key")]
    pub tls_key_file: PathBuf,
    /// How often the certificate files are checked for changes (Go duration).
    #[arg(long, env = "VMD_TLS_RELOAD_INTERVAL", default_value = "1s", value_parser = duration)]
    pub tls_reload_interval: Duration,
    /// Server-side dry-run every rendered child on /validate.
    #[arg(long, env = "VMD_PREFLIGHT", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    pub preflight: bool,
    /// Budget of all preflight dry-runs of one review (Go duration, under the request timeout).
    #[arg(long, env = "VMD_PREFLIGHT_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub preflight_timeout: Duration,
    /// Budget of one admission request, body included (Go duration, under the API server's 10s).
    #[arg(long, env = "VMD_REQUEST_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Kubeconfig for preflight (in-cluster configuration otherwise).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Log line format.
    #[arg(long, env = "VMD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, tracing syntax (e.g. `info`, `vmdistributed_webhook=debug`).
    #[arg(long, env = "VMD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Tokio worker threads [default: the CPUs this process may use, from its cgroup CPU
    /// quota and CPU affinity].
    #[arg(long, env = "VMD_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Preflight renders children with the versions the controller pins where a spec sets
    /// none, so it dry-runs what the controller will write: the same flags as the controller's
    /// (the chart sets both from `controller.pinnedVersions`).
    #[command(flatten)]
    pub pins: PinArgs,
}

/// Flags of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// YAML file with one or more documents, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
}

fn duration(s: &str) -> Result<Duration, String> {
    shared::duration::parse_go_duration(s).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use shared::versions::{OPERATOR_DEFAULT_VERSION, PinnedVersions};

    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["vmdistributed-webhook", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Serve(serve)) => *serve,
            other => panic!("unexpected parse result {other:?}"),
        }
    }

    #[test]
    fn preflight_pins_what_the_controller_pins_by_default_and_takes_its_flags() {
        assert_eq!(
            serve(&[]).pins.pinned_versions(),
            PinnedVersions::operator_defaults()
        );
        assert_eq!(
            serve(&[
                "--pinned-vmcluster-version=v1.111.0-cluster",
                "--pinned-vmagent-version=",
            ])
            .pins
            .pinned_versions(),
            PinnedVersions {
                vmcluster: Some("v1.111.0-cluster".to_owned()),
                vmagent: None,
                vmsingle: Some(OPERATOR_DEFAULT_VERSION.to_owned()),
            }
        );
    }
}
