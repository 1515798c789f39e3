//! Certificates and keys for one control plane, made in process with rcgen (no openssl at runtime).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

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
    /// certificate and service account key pair into `dir/pki`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir)
            .with_context(|| format!("creating {}", pki_dir.display()))?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "vmdistributed-envtest-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "envtest-admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin_params.signed_by(&admin_key, &issuer)?;

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
            (&pki.ca_cert, ca_cert.pem()),
            (&pki.apiserver_cert, server_cert.pem()),
            (&pki.apiserver_key, server_key.serialize_pem()),
            (&pki.admin_cert, admin_cert.pem()),
            (&pki.admin_key, admin_key.serialize_pem()),
            (&pki.sa_key, sa_key.serialize_pem()),
            (&pki.sa_pub, sa_key.public_key_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(pki)
    }
}
