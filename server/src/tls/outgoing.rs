//! TLS for the connections kvd opens itself: to other members' peer URLs
//! (raft, forwarded requests, the join handshake) and, for a membership
//! change forwarded to the leader, to its client URL.
//!
//! The settings are process-wide, installed once by `main` before the node
//! starts: one kvd process is one member, and the connection sites (raft
//! network, join, forwarding) then need no TLS plumbing of their own. The
//! files are read each time a connection is set up, so a rotated client
//! certificate is used by the next new connection.

use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{load_roots, provider, read_pem, TlsError, TlsFiles};

/// What kvd presents and trusts on the connections it opens.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// For peer URLs: --peer-cert-file/--peer-key-file as our identity,
    /// --peer-trusted-ca-file to verify the other member.
    pub peer: Option<TlsFiles>,
    /// For other members' client URLs: --cert-file/--key-file as our
    /// identity, --trusted-ca-file to verify the member.
    pub client: Option<TlsFiles>,
}

static OUTGOING: OnceLock<Outgoing> = OnceLock::new();

/// Installs the outgoing TLS settings; the first call wins (kvd calls it
/// once, at start). Without it, https URLs cannot be dialled.
pub fn install(outgoing: Outgoing) {
    if OUTGOING.set(outgoing).is_err() {
        tracing::warn!("outgoing TLS settings installed twice: keeping the first");
    }
}

/// An endpoint for a member's peer URL: with TLS (peer files) if https.
pub fn peer_endpoint(url: &str) -> Result<Endpoint, String> {
    endpoint(url, "peer", |o| o.peer.as_ref())
}

/// An endpoint for a member's client URL: with TLS (client files) if https.
pub fn client_endpoint(url: &str) -> Result<Endpoint, String> {
    endpoint(url, "client", |o| o.client.as_ref())
}

fn endpoint(
    url: &str,
    what: &str,
    pick: impl Fn(&Outgoing) -> Option<&TlsFiles>,
) -> Result<Endpoint, String> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad {what} URL {url:?}: {e}"))?;
    if !crate::config::is_https(url) {
        return Ok(ep);
    }
    let files = OUTGOING.get().and_then(pick).ok_or_else(|| {
        format!("{what} URL {url:?} is https but kvd has no {what} TLS certificate configured")
    })?;
    let tls = client_tls(files).map_err(|e| e.to_string())?;
    ep.tls_config(tls)
        .map_err(|e| format!("{what} URL {url:?}: {e}"))
}

/// The client side of `files`: our certificate (checked against its key)
/// and the CA that must have signed the member we dial.
pub fn client_tls(files: &TlsFiles) -> Result<ClientTlsConfig, TlsError> {
    files.certified_key(&provider())?;
    let cert = read_pem(files.flags.cert, &files.cert)?;
    let key = read_pem(files.flags.key, &files.key)?;
    let mut tls = ClientTlsConfig::new().identity(Identity::from_pem(cert, key));
    let ca = files.ca.as_ref().ok_or_else(|| {
        TlsError::Setup(format!(
            "https needs {} to verify the members kvd connects to",
            files.flags.ca
        ))
    })?;
    load_roots(files.flags.ca, ca)?;
    tls = tls.ca_certificate(Certificate::from_pem(read_pem(files.flags.ca, ca)?));
    Ok(tls)
}
