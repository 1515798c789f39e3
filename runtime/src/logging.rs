//! Structured logs on standard error, text or JSON, through `tracing`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether log lines name the module that logged (tracing's "target").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModulePath {
    /// Shown: the controller's work spans several modules (cache, reconcile, writer).
    Shown,
    /// Left out: the webhook's lines say what they are about in their own fields.
    Hidden,
}

/// Install the global subscriber. In JSON each line also carries the current span and the list
/// of spans: the controller runs every reconcile in a span naming its object
/// (`cr=namespace/name`) and zone work in a nested `zone` span, so both appear on every line.
///
/// # Errors
/// When the filter does not parse, or a subscriber is already installed.
pub fn init(format: LogFormat, filter: &str, module_path: ModulePath) -> anyhow::Result<()> {
    let env_filter = EnvFilter::try_new(filter)
        .map_err(|err| anyhow::anyhow!("--log-level {filter:?} is not a valid filter: {err}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a file, a pipe or a log collector
        // they are noise around every field.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(module_path == ModulePath::Shown);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_does_not_parse_is_an_error_naming_the_flag() {
        let err = init(LogFormat::Text, "info,=[", ModulePath::Hidden).unwrap_err();
        assert!(err.to_string().contains("--log-level"), "{err}");
    }
}
