//! TLS material for the webhook: PEM loading, reload on file change, test CA generation.
//!
//! - [`pem`]: read a certificate chain and private key from PEM (files or bytes).
//! - [`reload`]: a certificate resolver whose key pair can be swapped at run time, and a task that
//!   polls the mounted files and swaps in new material when it changes (a Secret remount), so new
//!   handshakes get the new certificate while established connections keep theirs.
//! - [`server`]: the rustls server configuration (TLS 1.2 and 1.3 only, ring, ALPN h2/http1.1).
//! - [`ca`]: a throwaway CA issuing serving certificates, for tests and the demo.
//! - [`secret_volume`]: writes files the way the kubelet updates a Secret volume (`..data` swap).

pub mod ca;
pub mod pem;
pub mod reload;
pub mod secret_volume;
pub mod server;

pub use ca::{IssuedCert, TestCa};
pub use pem::{CertError, load_key_pair, parse_key_pair};
pub use reload::{CertResolver, ReloadEvent, ReloadWatcher};
pub use server::server_config;
