//! `vmdistributed-webhook serve` and `vmdistributed-webhook check -f FILE|-`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use vmdistributed_runtime::logging::{self, ModulePath};
use vmdistributed_webhook::cli::{CheckArgs, Cli, Command, ServeArgs};
use vmdistributed_webhook::metrics::Metrics;
use vmdistributed_webhook::preflight::Preflight;
use vmdistributed_webhook::routes::AppState;
use vmdistributed_webhook::server;

/// Admission is allocation-heavy (one JSON document in, one out, per request); mimalloc's
/// thread-local free lists cost less than glibc malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!("{err:#}");
                eprintln!("vmdistributed-webhook: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => check(&args),
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    logging::init(args.log_format, &args.log_level, ModulePath::Hidden)?;
    if args.preflight && args.preflight_timeout >= args.request_timeout {
        anyhow::bail!(
            "--preflight-timeout ({:?}) must be shorter than --request-timeout ({:?})",
            args.preflight_timeout,
            args.request_timeout
        );
    }
    let worker_threads = args
        .worker_threads
        .unwrap_or_else(vmdistributed_webhook::cpus::available)
        .max(1);
    tracing::info!(worker_threads, "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let preflight = if args.preflight {
            Some(
                Preflight::connect(args.kubeconfig.as_deref(), args.preflight_timeout)
                    .await?
                    .with_pinned_versions(args.pins.pinned_versions()),
            )
        } else {
            None
        };
        let mut state = AppState::new(Arc::new(Metrics::new()));
        state.preflight = preflight;
        state.request_timeout = args.request_timeout;
        let options = server::ServerOptions {
            tls_addr: args.tls_addr,
            http_addr: args.http_addr,
            cert_file: args.tls_cert_file.clone(),
            key_file: args.tls_key_file.clone(),
            reload_interval: args.tls_reload_interval,
        };
        server::start(&options, Arc::new(state))
            .await?
            .run_until_signal()
            .await
    })
}

fn check(args: &CheckArgs) -> ExitCode {
    let input = if args.file == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map(|_| input)
            .context("reading standard input")
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))
    };
    let input = match input {
        Ok(input) => input,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let output = shared::offline::check::check_documents(&input);
    let _ = std::io::stdout().write_all(output.stdout.as_bytes());
    let _ = std::io::stderr().write_all(output.stderr.as_bytes());
    if output.exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
