//! The VMDistributed admission webhook (docs/api.md "Validation summary"): HTTPS `POST /mutate`
//! (defaults) and `POST /validate` (validation, optional preflight dry-run), health and metrics on
//! plain HTTP, and the offline `check` command. The decisions come from the `shared` domain crate.

pub mod admission;
pub mod cli;
pub mod cpus;
pub mod metrics;
pub mod preflight;
pub mod routes;
pub mod server;
