//! The rustls server configuration of the webhook.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::pem::{CertError, ring_provider};
use crate::reload::CertResolver;

/// A server configuration with the ring provider, TLS 1.2 and 1.3 only, no client
/// authentication, ALPN `h2` then `http/1.1`, and certificates from `resolver` (so a reload
/// changes what new handshakes present without rebuilding the configuration).
///
/// # Errors
/// [`CertError::Mismatch`] if the provider rejects the protocol versions (not expected with ring).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, CertError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| CertError::Mismatch(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
