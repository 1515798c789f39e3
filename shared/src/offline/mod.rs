//! The offline commands (`vmdistributed-webhook check`, `vmdistributed-controller render`):
//! each result is computed by a pure function so it can be tested without running a binary. The
//! binaries print `stdout` and `stderr` as they are and exit with `exit_code`.
//!
//! - [`check`]: validate and default documents as the webhook would;
//! - [`render`]: the children a document renders to.

pub mod check;
pub mod render;

/// What an offline command prints and how it exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliOutput {
    /// Text for standard output (the command's result, e.g. YAML documents).
    pub stdout: String,
    /// Text for standard error (notes, warnings and errors for humans).
    pub stderr: String,
    /// Process exit code: 0 on success, 1 when any error was found.
    pub exit_code: i32,
}
