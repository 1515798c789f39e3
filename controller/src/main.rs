//! `vmdistributed-controller`: performs the zone-by-zone rollout of `VMDistributed` objects
//! (`run`) and prints the children an object would produce, offline (`render`).

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;

use vmdistributed_controller::cli::{Cli, Command};
use vmdistributed_controller::run;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => render(&args.file, &args.pins.pinned_versions()),
        Command::Run(args) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            if let Err(err) = vmdistributed_runtime::logging::init(
                args.log_format,
                &args.log_level,
                vmdistributed_runtime::logging::ModulePath::Shown,
            ) {
                eprintln!("error: {err:#}");
                return ExitCode::from(2);
            }
            // One thread: kube-runtime already runs every reconcile inside the controller's own
            // future, so more workers only carried the HTTP connection tasks, and each thread that
            // allocates gets a glibc arena of its own (fragmented memory the process keeps).
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the async runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `render -f FILE|-`: the pure logic lives in `shared::offline::render`.
fn render(file: &str, pins: &shared::versions::PinnedVersions) -> ExitCode {
    let input = if file == "-" {
        let mut text = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: cannot read standard input: {err}");
            return ExitCode::FAILURE;
        }
        text
    } else {
        match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("error: cannot read {file}: {err}");
                return ExitCode::FAILURE;
            }
        }
    };
    let output = shared::offline::render::render_documents_with(&input, pins);
    let _ = std::io::stdout().write_all(output.stdout.as_bytes());
    let _ = std::io::stderr().write_all(output.stderr.as_bytes());
    ExitCode::from(u8::try_from(output.exit_code).unwrap_or(1))
}
