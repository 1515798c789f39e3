//! Loading a certificate chain and its private key from PEM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded or generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate PEM holds no usable certificate.
    #[error("certificate PEM: {0}")]
    Certificate(String),
    /// The key PEM holds no usable private key.
    #[error("private key PEM: {0}")]
    Key(String),
    /// The key cannot be used by rustls or does not belong to the certificate.
    #[error("certificate and key: {0}")]
    Mismatch(String),
    /// Certificate generation failed.
    #[error("generating a certificate: {0}")]
    Generate(String),
    /// Writing files failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Parse a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1) into
/// a rustls key pair, checking that the key belongs to the leaf certificate.
///
/// # Errors
/// [`CertError`] when either PEM is unusable or the key does not match the certificate.
pub fn parse_key_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| CertError::Certificate(err.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::Certificate("no CERTIFICATE section".to_owned()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| CertError::Key(err.to_string()))?;
    let provider = ring_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|err| CertError::Mismatch(err.to_string()))?;
    Ok(Arc::new(certified))
}

/// Read and parse the certificate and key files (see [`parse_key_pair`]).
///
/// # Errors
/// [`CertError`] when a file cannot be read or its content is unusable.
pub fn load_key_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let (cert, key) = read_pair(cert_path, key_path)?;
    parse_key_pair(&cert, &key)
}

/// Read both files. Reads the certificate again after the key so a pair straddling an atomic
/// Secret update (certificate from the old version, key from the new) is detected and read again.
pub(crate) fn read_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let mut attempts = 0;
    loop {
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        let cert_again = read(cert_path)?;
        attempts += 1;
        if cert == cert_again || attempts >= 3 {
            return Ok((cert_again, key));
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The ring provider, used explicitly so nothing depends on a process-wide default.
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}
