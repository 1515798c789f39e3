//! `vmdistributed-controller`: performs the zone-by-zone rollout of `VMDistributed` objects
//! (`run`).

mod children;
mod cli;
mod error;
mod http;
mod leader;
mod logging;
mod managed_fields;
mod metrics;
mod reconcile;
mod run;
mod startup;
mod writer;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            if let Err(err) = logging::init(args.log_format, &args.log_level) {
                eprintln!("error: {err:#}");
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
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
