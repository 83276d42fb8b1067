//! TLS settings for `https://` endpoints (rustls via tonic, ring backend).
//!
//! The server is verified against the given CA, or against the system's
//! roots when no CA is given (as etcdctl does); a client certificate is
//! sent when the server demands one (`--client-cert-auth`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::Error;

/// How to secure connections to `https://` endpoints.
///
/// ```
/// use kv_client::tls::TlsConfig;
/// # let (ca, cert, key) = (b"ca".to_vec(), b"cert".to_vec(), b"key".to_vec());
/// let tls = TlsConfig::new()
///     .with_ca_pem(ca)
///     .with_identity_pem(cert, key)
///     .with_domain_name("etcd.example.com");
/// assert!(tls.has_ca());
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain_name: Option<String>,
    insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsConfig {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.identity.is_some())
            .field("domain_name", &self.domain_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl TlsConfig {
    /// No CA (system roots), no client certificate.
    ///
    /// ```
    /// assert!(!kv_client::tls::TlsConfig::new().has_ca());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts servers signed by this CA (PEM), instead of the system roots.
    ///
    /// ```
    /// let t = kv_client::tls::TlsConfig::new().with_ca_pem(b"-----BEGIN CERTIFICATE-----".to_vec());
    /// assert!(t.has_ca());
    /// ```
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate and private key (both PEM).
    ///
    /// ```
    /// let t = kv_client::tls::TlsConfig::new().with_identity_pem(b"c".to_vec(), b"k".to_vec());
    /// assert!(t.has_identity());
    /// ```
    pub fn with_identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Verifies the server's certificate for this name instead of the
    /// endpoint's host.
    ///
    /// ```
    /// let t = kv_client::tls::TlsConfig::new().with_domain_name("localhost");
    /// # let _ = t;
    /// ```
    pub fn with_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Accepts any server certificate (etcdctl's
    /// `--insecure-skip-tls-verify`): the connection is encrypted but the
    /// server is not authenticated. For tests only.
    ///
    /// ```
    /// let t = kv_client::tls::TlsConfig::new().with_insecure_skip_verify(true);
    /// # let _ = t;
    /// ```
    pub fn with_insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    /// Whether a CA was given.
    ///
    /// ```
    /// assert!(!kv_client::tls::TlsConfig::default().has_ca());
    /// ```
    pub fn has_ca(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// Whether a client certificate was given.
    ///
    /// ```
    /// assert!(!kv_client::tls::TlsConfig::default().has_identity());
    /// ```
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// Applies these settings to a tonic endpoint.
    pub(crate) fn apply(&self, endpoint: Endpoint) -> Result<Endpoint, Error> {
        let uri = endpoint.uri().to_string();
        let bad =
            |e: tonic::transport::Error| Error::Config(format!("TLS settings for {uri:?}: {e}"));
        if self.insecure_skip_verify {
            // The verifier replaces the roots: none may be configured.
            let verifier = Arc::new(AcceptAnyServerCert(Arc::new(
                rustls::crypto::ring::default_provider(),
            )));
            return endpoint
                .tls_config_with_verifier(self.to_tonic(ClientTlsConfig::new()), verifier)
                .map_err(bad);
        }
        let roots = match &self.ca_pem {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint
            .clone()
            .tls_config(self.to_tonic(roots))
            .map_err(bad)
    }

    /// `tls` plus the client identity and name settings.
    fn to_tonic(&self, mut tls: ClientTlsConfig) -> ClientTlsConfig {
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.domain_name {
            tls = tls.domain_name(name.clone());
        }
        tls
    }
}

/// Checks nothing about the server's certificate, but still checks that
/// the handshake was signed by its key (so the session itself is sound).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
