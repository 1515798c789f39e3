//! A throwaway certificate authority for tests, the envtest control plane and the demo (the chart
//! generates its own CA).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::pem::CertError;

/// A CA key pair and self-signed certificate.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A serving certificate and its key, PEM encoded.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The leaf certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

fn generate(err: rcgen::Error) -> CertError {
    CertError::Generate(err.to_string())
}

impl TestCa {
    /// A new CA (ECDSA P-256) with the given common name.
    ///
    /// # Errors
    /// [`CertError::Generate`] if key generation or signing fails.
    pub fn new(common_name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(generate)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(generate)?;
        Ok(Self { issuer })
    }

    /// The CA certificate (PEM): the webhook configurations' `caBundle` and the clients' trust
    /// anchor.
    #[must_use]
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    #[must_use]
    pub fn cert_der(&self) -> rustls_pki_types::CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issue a serving certificate for the given DNS names and IP addresses (as strings), e.g.
    /// `["127.0.0.1", "localhost"]`, with `common_name` as subject.
    ///
    /// # Errors
    /// [`CertError::Generate`] for an invalid name or a signing failure.
    pub fn issue_serving(&self, common_name: &str, sans: &[&str]) -> Result<IssuedCert, CertError> {
        let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names).map_err(generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issue a client certificate with `common_name` as subject and, if given, `organization`
    /// (for the API server a group, e.g. `system:masters`).
    ///
    /// # Errors
    /// [`CertError::Generate`] for a signing failure.
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> Result<IssuedCert, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            dn.push(DnType::OrganizationName, organization);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
