//! TLS for client and peer traffic, with etcd's flags and rules (rustls on
//! the `ring` provider, as kv-client uses).
//!
//! - A listener whose URL is `https://` is served with TLS: the handshake
//!   runs first ([`accept`]), then the decrypted bytes go through the client
//!   API's AuthorityFix, then to tonic. ALPN offers `h2`, then `http/1.1`.
//! - Like etcd (`TLSInfo.ServerConfig`), a trusted CA file *or*
//!   `--client-cert-auth` makes the server demand a client certificate signed
//!   by that CA. kvd further requires the CA file whenever client-cert auth
//!   is on (Go would fall back to the system roots, rustls has none here).
//! - The certificate and key are re-read when either file changes on disk,
//!   checked at most once a second ([`reload`]), so certificates rotate
//!   without a restart; a pair that fails to load keeps the previous one.
//! - A verified client certificate's CN (etcd maps it to the user) is read
//!   with [`client_cert_cn`].
//! - Outgoing peer connections (raft, forwarding, the join handshake) take
//!   their TLS settings from [`install`], called once at start by `main`.

mod accept;
mod cn;
mod flags;
mod outgoing;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

pub use accept::incoming;
pub use cn::common_name;
pub use flags::{acceptors, check_urls, client_cert_auth, client_files, outgoing, peer_files};
pub use outgoing::{client_endpoint, install, peer_endpoint, Outgoing};
pub use tokio_rustls::TlsAcceptor;

/// PEM files larger than this are refused before they are read: a
/// certificate chain or key is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why TLS could not be set up (at start) or a file could not be reloaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path:?}: cannot read: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path:?}: larger than {MAX_PEM_BYTES} bytes, not a PEM certificate or key")]
    TooLarge { flag: &'static str, path: PathBuf },
    #[error("{flag} {path:?}: no PEM certificate in the file")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag} {path:?}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("{flag} {path:?}: {reason}")]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{cert_flag} {cert:?} does not match {key_flag} {key:?}: {reason}")]
    Mismatch {
        cert_flag: &'static str,
        cert: PathBuf,
        key_flag: &'static str,
        key: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// The flag names of one side, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub cert: &'static str,
    pub key: &'static str,
    pub ca: &'static str,
    pub cert_auth: &'static str,
}

/// The client side's flags.
pub const CLIENT_FLAGS: Flags = Flags {
    cert: "--cert-file",
    key: "--key-file",
    ca: "--trusted-ca-file",
    cert_auth: "--client-cert-auth",
};

/// The peer side's flags.
pub const PEER_FLAGS: Flags = Flags {
    cert: "--peer-cert-file",
    key: "--peer-key-file",
    ca: "--peer-trusted-ca-file",
    cert_auth: "--peer-client-cert-auth",
};

/// One side's TLS files (client or peer), as the flags give them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub flags: Flags,
}

impl TlsFiles {
    /// The files of one side, or None when neither cert nor key is given.
    /// Half a pair, or client-cert auth without a CA, is an error.
    pub fn from_flags(
        flags: Flags,
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
        client_cert_auth: bool,
    ) -> Result<Option<TlsFiles>, TlsError> {
        let (cert, key) = match (cert, key) {
            (None, None) => {
                if client_cert_auth {
                    return Err(TlsError::Setup(format!(
                        "{} needs {} and {} (and {})",
                        flags.cert_auth, flags.cert, flags.key, flags.ca
                    )));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
            _ => {
                return Err(TlsError::Setup(format!(
                    "{} and {} must be given together",
                    flags.cert, flags.key
                )))
            }
        };
        if client_cert_auth && ca.is_none() {
            return Err(TlsError::Setup(format!(
                "{} needs {} (the CA that signs the accepted certificates)",
                flags.cert_auth, flags.ca
            )));
        }
        Ok(Some(TlsFiles {
            cert,
            key,
            ca: ca.map(Path::to_path_buf),
            client_cert_auth,
            flags,
        }))
    }

    /// The server configuration: the reloading certificate, client
    /// certificates required when a CA is given (etcd's rule), ALPN h2.
    /// Every file is read now, so a bad one fails the start.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let resolver = Arc::new(reload::ReloadingCert::load(self.clone(), provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &self.ca {
            Some(ca) => {
                let roots = load_roots(self.flags.ca, ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            flag: self.flags.ca,
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        // http/1.1 too: curl --http1.1 and other HTTP/1.1 clients (health
        // probes, the JSON gateway) connect, as Go lets them reach etcd.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A TLS acceptor for this side's listeners.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.server_config()?))
    }

    /// Loads and checks the certificate chain and key (the key must belong
    /// to the first certificate).
    pub fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let certs = load_certs(self.flags.cert, &self.cert)?;
        let key_pem = read_pem(self.flags.key, &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                flag: self.flags.key,
                path: self.key.clone(),
            },
            e => TlsError::Invalid {
                flag: self.flags.key,
                path: self.key.clone(),
                reason: e.to_string(),
            },
        })?;
        let signer =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::Invalid {
                    flag: self.flags.key,
                    path: self.key.clone(),
                    reason: e.to_string(),
                })?;
        let ck = CertifiedKey::new(certs, signer);
        match ck.keys_match() {
            // Unknown: the key type cannot tell its public key; the
            // handshake would still fail on a real mismatch.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(ck)
            }
            Err(e) => Err(TlsError::Mismatch {
                cert_flag: self.flags.cert,
                cert: self.cert.clone(),
                key_flag: self.flags.key,
                key: self.key.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The crypto provider everywhere in kvd: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file after checking its size.
fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            flag,
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Every certificate in a PEM file; at least one.
fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            flag,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The CA certificates of a trusted-CA file.
fn load_roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(flag, path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            flag,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The CN of the verified client certificate a request came with, if the
/// connection is TLS and the client presented one (kvd accepts a client
/// certificate only after verifying it against --trusted-ca-file).
///
/// etcd's rule for auth: with client-cert auth, a request without a token
/// acts as the user named by this CN. Use it in a handler as
/// `kvd::tls::client_cert_cn(&request)`.
pub fn client_cert_cn<T>(req: &tonic::Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    common_name(certs.first()?.as_ref())
}

#[cfg(test)]
mod tests;
