//! Structured logs through `tracing`. Every reconcile runs in a span carrying the object
//! (`cr=namespace/name`) and zone-specific work in a nested `zone` span, so both appear on every
//! line in either format.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::cli::LogFormat;

/// Install the global subscriber.
///
/// # Errors
/// When the filter does not parse.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|err| anyhow::anyhow!("--log-level {level:?} is not a valid filter: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        // Colour codes only for a person at a terminal: in a file, a pipe or a log collector
        // they are noise around every field.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    }
    .map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))
}
