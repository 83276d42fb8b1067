//! TLS settings for `https://` endpoints (rustls with the ring backend, under the client's own HTTP/2 connections).
//!
//! The server is verified against the given CA, or against the system's
//! roots when no CA is given (as etcdctl does); a client certificate is
//! sent when the server demands one (`--client-cert-auth`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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

    /// The rustls connector these settings make (fails on a bad PEM).
    pub(crate) fn connector(&self) -> Result<Connector, Error> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::Config(format!("TLS settings: {what}: {e}"))
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("protocol versions", &e))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(insecure_verifier(provider))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca_pem {
                Some(ca) => {
                    for cert in CertificateDer::pem_slice_iter(ca) {
                        let cert = cert.map_err(|e| bad("CA certificate", &e))?;
                        roots.add(cert).map_err(|e| bad("CA certificate", &e))?;
                    }
                    if roots.is_empty() {
                        return Err(bad("CA certificate", &"no certificate in the PEM"));
                    }
                }
                None => {
                    // Unreadable system certificates are skipped, as tonic did.
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("client certificate", &e))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("client key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("client certificate", &e))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let domain_name = match &self.domain_name {
            Some(name) => {
                Some(ServerName::try_from(name.clone()).map_err(|e| bad("domain name", &e))?)
            }
            None => None,
        };
        Ok(Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            domain_name,
        })
    }
}

/// Makes TLS connections for one client (see [`TlsConfig::connector`]).
#[derive(Clone)]
pub(crate) struct Connector {
    tls: tokio_rustls::TlsConnector,
    /// The name to verify instead of the endpoint's host.
    domain_name: Option<ServerName<'static>>,
}

impl Connector {
    /// The TLS handshake over `tcp` with the endpoint `host`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = match &self.domain_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        };
        self.tls.connect(name, tcp).await
    }
}

/// A server-certificate verifier that accepts any certificate: **insecure
/// by design**. The connection is encrypted, and the handshake must still
/// be signed by the key of the certificate presented (so the session itself
/// is sound), but the server is not authenticated: anyone on the path can
/// impersonate it.
///
/// For explicitly insecure settings only: etcdctl's
/// `--insecure-skip-tls-verify` ([`TlsConfig::with_insecure_skip_verify`])
/// and health probes told to skip verification (Consul's `TLSSkipVerify`,
/// kv-discovery's `CheckTls::skip_verify`). `provider` supplies the
/// signature algorithms the handshake is checked with.
///
/// ```
/// use std::sync::Arc;
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let config = rustls::ClientConfig::builder_with_provider(provider.clone())
///     .with_safe_default_protocol_versions()
///     .unwrap()
///     .dangerous()
///     .with_custom_certificate_verifier(kv_client::tls::insecure_verifier(provider))
///     .with_no_client_auth();
/// # let _ = config;
/// ```
pub fn insecure_verifier(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyServerCert(provider))
}

/// See [`insecure_verifier`].
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
