//! Certificates and keys for one control plane, made in process (no openssl at runtime) by the
//! project's one test CA.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use certs::TestCa;
use rcgen::KeyPair;

/// Files written under `<dir>/pki`.
#[derive(Clone, Debug)]
pub struct Pki {
    /// CA that signed the API server's serving certificate and the admin client certificate.
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    /// Client certificate with `O=system:masters`: full access through RBAC.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Service account token signing key pair (mandatory apiserver flags).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

impl Pki {
    /// Generates a fresh CA, serving certificate (SAN 127.0.0.1, localhost), admin client
    /// certificate and service account key pair into `dir/pki`. The CA is the project's test CA
    /// ([`certs::TestCa`]), the one the webhook tests and the demo use.
    pub fn generate(dir: &Path) -> Result<Self> {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir)
            .with_context(|| format!("creating {}", pki_dir.display()))?;

        let ca = TestCa::new("vmdistributed-envtest-ca")?;
        let server = ca.issue_serving("kube-apiserver", &["127.0.0.1", "localhost"])?;
        let admin = ca.issue_client("envtest-admin", Some("system:masters"))?;

        // ECDSA P-256 (rcgen's default): the apiserver accepts it for ES256 service account tokens.
        let sa_key = KeyPair::generate()?;

        let pki = Pki {
            ca_cert: pki_dir.join("ca.crt"),
            apiserver_cert: pki_dir.join("apiserver.crt"),
            apiserver_key: pki_dir.join("apiserver.key"),
            admin_cert: pki_dir.join("admin.crt"),
            admin_key: pki_dir.join("admin.key"),
            sa_key: pki_dir.join("sa.key"),
            sa_pub: pki_dir.join("sa.pub"),
        };
        let files = [
            (&pki.ca_cert, ca.cert_pem()),
            (&pki.apiserver_cert, server.cert_pem),
            (&pki.apiserver_key, server.key_pem),
            (&pki.admin_cert, admin.cert_pem),
            (&pki.admin_key, admin.key_pem),
            (&pki.sa_key, sa_key.serialize_pem()),
            (&pki.sa_pub, sa_key.public_key_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(pki)
    }
}
