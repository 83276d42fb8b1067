//! TLS of `https://` HTTP checks and gRPC checks of `https://` targets:
//! rustls on the `ring` provider (as kv-client and tonic use), verifying
//! the server against a CA file or the system's roots, with Consul's
//! `TLSServerName` and `TLSSkipVerify`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The most bytes read from a CA file (a bundle of a few hundred
/// certificates fits; anything larger is not a CA file).
const MAX_CA_FILE: u64 = 4 << 20;

/// How an `https://` check verifies the server: against
/// [`ca_file`](Self::ca_file) or else the system's root certificates, for
/// [`server_name`](Self::server_name) or else the URL's host, unless
/// [`skip_verify`](Self::skip_verify). Set with [`Check::with_tls_ca_file`],
/// [`Check::with_tls_server_name`] and [`Check::with_tls_skip_verify`];
/// plain `http://` checks ignore it.
///
/// [`Check::with_tls_ca_file`]: super::Check::with_tls_ca_file
/// [`Check::with_tls_server_name`]: super::Check::with_tls_server_name
/// [`Check::with_tls_skip_verify`]: super::Check::with_tls_skip_verify
///
/// ```
/// let c = kv_discovery::Check::http("web", "https://127.0.0.1:8443/health")
///     .with_tls_ca_file("/etc/web/ca.pem")
///     .with_tls_server_name("web.internal");
/// assert_eq!(c.tls().server_name.as_deref(), Some("web.internal"));
/// assert!(!c.tls().skip_verify);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckTls {
    /// PEM file of the CA certificates to trust instead of the system's
    /// roots; read at each probe, so a renewed CA is picked up.
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must be valid for (also sent as SNI),
    /// instead of the URL's host (Consul's `TLSServerName`).
    pub server_name: Option<String>,
    /// Accepts any server certificate (Consul's `TLSSkipVerify`): the
    /// connection is encrypted but the server is not authenticated.
    pub skip_verify: bool,
}

impl super::Check {
    /// Sets all three TLS settings at once, e.g. those of another check
    /// ([`Check::tls`](super::Check::tls)); see [`CheckTls`].
    ///
    /// ```
    /// use kv_discovery::Check;
    /// let template = Check::http("a", "https://127.0.0.1:8443/").with_tls_skip_verify(true);
    /// let c = Check::http("b", "https://127.0.0.1:9443/").with_tls(template.tls().clone());
    /// assert!(c.tls().skip_verify);
    /// ```
    pub fn with_tls(mut self, tls: CheckTls) -> super::Check {
        self.tls = tls;
        self
    }
}

/// Why the TLS settings of a check cannot be used (the probe turns
/// critical with this as its output).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    #[error("cannot read CA file {path:?}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {0:?} is larger than {MAX_CA_FILE} bytes")]
    CaTooLarge(PathBuf),
    #[error("CA file {path:?}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("no system root certificates found (give a CA file)")]
    NoSystemRoots,
    #[error("invalid TLS server name {0:?}")]
    BadServerName(String),
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's roots, loaded once per process (hundreds of files).
fn system_roots() -> Result<Arc<RootCertStore>, TlsSetupError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(r) = ROOTS.get() {
        return Ok(r.clone());
    }
    let loaded = rustls_native_certs::load_native_certs();
    if !loaded.errors.is_empty() {
        tracing::debug!(errors = ?loaded.errors, "some system root certificates were not loaded");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "unparsable system root certificates ignored");
    }
    if added == 0 {
        return Err(TlsSetupError::NoSystemRoots);
    }
    Ok(ROOTS.get_or_init(|| Arc::new(roots)).clone())
}

/// The CA certificates of `path` (PEM), size-checked before reading.
fn file_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsSetupError> {
    use std::io::Read;
    let read_err = |source| TlsSetupError::ReadCa {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(read_err)?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(TlsSetupError::CaTooLarge(path.to_path_buf()));
    }
    let bad = |reason: String| TlsSetupError::BadCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("bad certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(Arc::new(roots))
}

/// The server-certificate verifier these settings ask for.
pub(crate) fn verifier(tls: &CheckTls) -> Result<Arc<dyn ServerCertVerifier>, TlsSetupError> {
    if tls.skip_verify {
        // Encrypted but unauthenticated, as asked (Consul's TLSSkipVerify).
        return Ok(kv_client::tls::insecure_verifier(provider()));
    }
    let roots = match &tls.ca_file {
        Some(path) => file_roots(path)?,
        None => system_roots()?,
    };
    let v = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    Ok(v)
}

/// A client config for HTTP/1 over TLS with these settings.
pub(crate) fn http1_config(tls: &CheckTls) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier(tls)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to verify and send as SNI: the set server name, else `host`
/// (a DNS name or an IP address, without IPv6 brackets).
pub(crate) fn server_name(
    tls: &CheckTls,
    host: &str,
) -> Result<ServerName<'static>, TlsSetupError> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|_| TlsSetupError::BadServerName(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_and_names_are_errors() {
        let dir = std::env::temp_dir().join(format!("kvd-check-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let tls = |ca: &Path| CheckTls {
            ca_file: Some(ca.to_path_buf()),
            ..Default::default()
        };
        let err = verifier(&tls(&missing)).err().unwrap().to_string();
        assert!(err.contains("cannot read CA file"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = verifier(&tls(&empty)).err().unwrap().to_string();
        assert!(err.contains("no certificate"), "{err}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = verifier(&tls(&garbage)).err().unwrap().to_string();
        assert!(err.contains("bad certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let named = CheckTls {
            server_name: Some("bad name".into()),
            ..Default::default()
        };
        assert!(server_name(&named, "h").is_err());
        assert!(server_name(&CheckTls::default(), "::1").is_ok());
        assert!(
            verifier(&CheckTls {
                skip_verify: true,
                ..Default::default()
            })
            .is_ok()
        );
    }
}
