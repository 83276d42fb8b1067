//! From kvd's flags to TLS settings, with etcd's start-up checks.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{is_https, Config, ConfigError};

use super::{Outgoing, TlsError, TlsFiles, CLIENT_FLAGS, PEER_FLAGS};

/// Checks, without I/O, that every https URL has its TLS flags and that
/// the TLS flags come in valid combinations. An https listen client URL
/// without --cert-file/--key-file gets etcd's error; so does an https peer
/// URL (listen, advertised, or in --initial-cluster) without the peer pair.
/// An http URL with certificates is served in plaintext, as etcd does (main
/// warns).
pub fn check_urls(cfg: &Config) -> Result<(), ConfigError> {
    let client_files = client_files(cfg)?;
    if let Some(url) = cfg.listen_client_urls.iter().find(|u| is_https(u)) {
        if client_files.is_none() {
            return Err(ConfigError::TlsNeedsCert {
                side: "client",
                flags: "--cert-file, --key-file",
                url: url.clone(),
            });
        }
    }
    let peer_files = peer_files(cfg)?;
    let members = cfg.initial_members()?;
    let mut peer_urls = cfg
        .listen_peer_urls
        .iter()
        .chain(&cfg.initial_advertise_peer_urls)
        .chain(members.iter().flat_map(|(_, urls)| urls));
    if let Some(url) = peer_urls.find(|u| is_https(u)) {
        match peer_files {
            None => {
                return Err(ConfigError::TlsNeedsCert {
                    side: "peer",
                    flags: "--peer-cert-file, --peer-key-file",
                    url: url.clone(),
                })
            }
            // kvd dials the other members' https peer URLs and must verify
            // them; rustls has no system roots to fall back on.
            Some(f) if f.ca.is_none() => {
                return Err(TlsError::Setup(format!(
                    "https peer URL {url} needs --peer-trusted-ca-file to verify the other members"
                ))
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The client side's files (--cert-file, --key-file, --trusted-ca-file,
/// --client-cert-auth), or None.
pub fn client_files(cfg: &Config) -> Result<Option<TlsFiles>, TlsError> {
    CLIENT_CERT_AUTH.store(cfg.client_cert_auth, Ordering::Relaxed);
    TlsFiles::from_flags(
        CLIENT_FLAGS,
        cfg.cert_file.as_deref(),
        cfg.key_file.as_deref(),
        cfg.trusted_ca_file.as_deref(),
        cfg.client_cert_auth,
    )
}

/// --client-cert-auth, recorded by [`client_files`] (called once at start)
/// for the auth layer, which sits below the listeners.
static CLIENT_CERT_AUTH: AtomicBool = AtomicBool::new(false);

/// Whether --client-cert-auth is on: a verified client certificate's CN is
/// then the user of a request without a token (etcd's rule).
pub fn client_cert_auth() -> bool {
    CLIENT_CERT_AUTH.load(Ordering::Relaxed)
}

/// The peer side's files, or None.
pub fn peer_files(cfg: &Config) -> Result<Option<TlsFiles>, TlsError> {
    TlsFiles::from_flags(
        PEER_FLAGS,
        cfg.peer_cert_file.as_deref(),
        cfg.peer_key_file.as_deref(),
        cfg.peer_trusted_ca_file.as_deref(),
        cfg.peer_client_cert_auth,
    )
}

/// What kvd's own connections use: the peer files for peer URLs; for a
/// member's https client URL (a membership change forwarded to the leader),
/// the client pair, verified with --trusted-ca-file or, without one,
/// --peer-trusted-ca-file.
pub fn outgoing(cfg: &Config) -> Result<Outgoing, TlsError> {
    let peer = peer_files(cfg)?;
    let client = client_files(cfg)?.map(|mut f| {
        if f.ca.is_none() {
            f.ca = cfg.peer_trusted_ca_file.clone();
        }
        f
    });
    Ok(Outgoing { peer, client })
}

/// One TLS acceptor per listen URL: Some for https URLs (the side's files
/// must exist, [`check_urls`] made sure), None for http. Reads and checks
/// every file now, so a missing, unreadable or mismatched one fails the
/// start with a clear error. An http URL given certificates is served in
/// plaintext with a warning, as etcd does.
pub fn acceptors(
    urls: &[String],
    files: Option<&TlsFiles>,
) -> Result<Vec<Option<super::TlsAcceptor>>, TlsError> {
    let mut acceptor = None;
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        if !is_https(url) {
            if let Some(f) = files {
                tracing::warn!(
                    %url,
                    "scheme is HTTP while key and cert files are present ({}, {}); serving this URL without TLS",
                    f.flags.cert,
                    f.flags.key
                );
            }
            out.push(None);
            continue;
        }
        let files =
            files.ok_or_else(|| TlsError::Setup(format!("{url}: https needs a certificate")))?;
        if acceptor.is_none() {
            acceptor = Some(files.acceptor()?);
        }
        out.push(acceptor.clone());
    }
    Ok(out)
}
