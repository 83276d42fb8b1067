//! The server certificate, re-read when its files change on disk, so an
//! operator (or cert-manager) can rotate it without restarting kvd.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, TlsFiles};

/// The files are looked at no more often than this.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a version of a file: modification time and size.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// Serves the certificate loaded last; on a handshake at least
/// [`CHECK_EVERY`] after the previous check, reloads it if the cert or key
/// file changed. A pair that does not load (half-written, mismatched) is
/// logged and the previous certificate stays in use; it is retried on the
/// next check.
pub(super) struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

struct State {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
    /// The last reload error logged, so a file that stays broken is
    /// reported once, not on every check.
    last_error: Option<String>,
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &std::path::Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    [one(&files.cert), one(&files.key)]
}

impl ReloadingCert {
    /// Loads the pair now: an error here fails kvd's start.
    pub(super) fn load(
        files: TlsFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCert, TlsError> {
        let stamp = stamp(&files);
        let key = Arc::new(files.certified_key(&provider)?);
        Ok(ReloadingCert {
            files,
            provider,
            state: Mutex::new(State {
                key,
                stamp,
                checked: Instant::now(),
                last_error: None,
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock();
        if st.checked.elapsed() < CHECK_EVERY {
            return st.key.clone();
        }
        st.checked = Instant::now();
        let now = stamp(&self.files);
        if now == st.stamp {
            return st.key.clone();
        }
        match self.files.certified_key(&self.provider) {
            Ok(key) => {
                st.key = Arc::new(key);
                st.stamp = now;
                st.last_error = None;
                tracing::info!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    "reloaded the TLS certificate"
                );
            }
            Err(e) => {
                let e = e.to_string();
                if st.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "TLS certificate changed on disk but does not load; keeping the previous one");
                    st.last_error = Some(e);
                }
            }
        }
        st.key.clone()
    }
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
