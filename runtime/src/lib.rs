//! What the two binaries share at run time and the pure `shared` crate must not hold: the log
//! subscriber, how they find their cluster, and the command-line flags both take. One definition each, so the controller and
//! the webhook cannot drift apart (the webhook's preflight must render children with the very
//! versions the controller pins).

pub mod kube_config;
pub mod logging;
pub mod pins;
pub mod resources;

pub use logging::LogFormat;
pub use pins::PinArgs;
