//! What the two binaries share at run time and the pure `shared` crate must not hold: the log
//! subscriber, how they find their cluster, the command-line flags both take, the health and
//! metrics endpoints and the signals that stop them. One definition each, so the controller and
//! the webhook cannot drift apart (the webhook's preflight must render children with the very
//! versions the controller pins).

pub mod dry_run;
pub mod health;
pub mod kube_config;
pub mod logging;
pub mod pins;
pub mod resources;
pub mod signals;

pub use logging::LogFormat;
pub use pins::PinArgs;
