//! `NativeClient`: connect, close, cluster status and members. The KV,
//! txn, watch, lease, lock, election and registry calls are further
//! `#[napi] impl` blocks in their own files.

use napi_derive::napi;
use tokio_util::sync::CancellationToken;

use crate::convert::{Bytes, Header, bytes, millis};
use crate::{errors, guard};

/// TLS settings: PEM strings or Buffers.
#[napi(object)]
pub struct TlsOptions {
    /// CA certificates to verify servers with (PEM); the system roots when absent.
    pub ca: Option<Bytes>,
    /// Client certificate (PEM), with `key`, for mutual TLS.
    pub cert: Option<Bytes>,
    /// Client private key (PEM).
    pub key: Option<Bytes>,
    /// The name to verify the server certificate against.
    pub server_name: Option<String>,
    /// Accepts any server certificate (tests only).
    pub insecure_skip_verify: Option<bool>,
}

/// How to reach the cluster.
#[napi(object)]
pub struct ConnectOptions {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsOptions>,
    pub connect_timeout_ms: Option<f64>,
    /// Bounds every attempt of one call together (10 s by default).
    pub request_timeout_ms: Option<f64>,
    pub retry_initial_backoff_ms: Option<f64>,
    pub retry_max_backoff_ms: Option<f64>,
    pub retry_max_attempts: Option<u32>,
}

fn config(o: ConnectOptions) -> napi::Result<kv_client::ClientConfig> {
    let mut c = kv_client::ClientConfig::new(o.endpoints);
    match (o.username, o.password) {
        (Some(u), Some(p)) => c = c.with_user(u, p),
        (None, None) => {}
        _ => return Err(errors::invalid("username and password go together")),
    }
    if let Some(t) = o.tls {
        let mut tls = kv_client::tls::TlsConfig::new();
        if let Some(ca) = t.ca {
            tls = tls.with_ca_pem(bytes(ca));
        }
        match (t.cert, t.key) {
            (Some(cert), Some(key)) => tls = tls.with_identity_pem(bytes(cert), bytes(key)),
            (None, None) => {}
            _ => return Err(errors::invalid("tls.cert and tls.key go together")),
        }
        if let Some(name) = t.server_name {
            tls = tls.with_domain_name(name);
        }
        if let Some(skip) = t.insecure_skip_verify {
            tls = tls.with_insecure_skip_verify(skip);
        }
        c = c.with_tls_config(tls);
    }
    if let Some(ms) = o.connect_timeout_ms {
        c = c.with_connect_timeout(millis(ms, "connectTimeoutMs")?);
    }
    if let Some(ms) = o.request_timeout_ms {
        c = c.with_request_timeout(millis(ms, "requestTimeoutMs")?);
    }
    let mut retry = c.retry().clone();
    if let Some(ms) = o.retry_initial_backoff_ms {
        retry = retry.with_initial_backoff(millis(ms, "retry.initialBackoffMs")?);
    }
    if let Some(ms) = o.retry_max_backoff_ms {
        retry = retry.with_max_backoff(millis(ms, "retry.maxBackoffMs")?);
    }
    if let Some(n) = o.retry_max_attempts {
        retry = retry.with_max_attempts(n);
    }
    Ok(c.with_retry(retry))
}

/// Connects (authenticating first when a user is given). Connections are
/// made lazily, so an unreachable cluster shows up on the first call.
#[napi]
pub async fn connect(options: ConnectOptions) -> napi::Result<NativeClient> {
    guard(async {
        let client = kv_client::Client::connect(config(options)?)
            .await
            .map_err(errors::client)?;
        Ok(NativeClient {
            client,
            closed: CancellationToken::new(),
        })
    })
    .await
}

/// One connection to a kv or etcd cluster (cheap to share).
#[napi]
pub struct NativeClient {
    pub(crate) client: kv_client::Client,
    /// Fired by `close()`: every pending wait of this client ends.
    pub(crate) closed: CancellationToken,
}

impl NativeClient {
    /// The client, or `CLOSED` after `close()`.
    pub(crate) fn live(&self) -> napi::Result<kv_client::Client> {
        if self.closed.is_cancelled() {
            return Err(errors::closed());
        }
        Ok(self.client.clone())
    }
}

/// Answer to `status()`.
#[napi(object, object_from_js = false)]
pub struct StatusResult {
    pub header: Option<Header>,
    pub version: String,
    /// The leader's member ID ("0" = no leader).
    pub leader: String,
    pub db_size: i64,
    pub raft_index: String,
    pub raft_term: String,
    pub errors: Vec<String>,
}

/// One cluster member.
#[napi(object, object_from_js = false)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[napi]
impl NativeClient {
    /// Ends every pending watch, keeper, lock wait and subscription of this
    /// client (they settle), and fails later calls with `CLOSED`.
    #[napi]
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// The configured endpoints.
    #[napi(getter)]
    pub fn endpoints(&self) -> Vec<String> {
        self.client.config().endpoints().to_vec()
    }

    /// The status of the member that answers.
    #[napi]
    pub async fn status(&self) -> napi::Result<StatusResult> {
        let c = self.live()?;
        guard(async move {
            let s = c.status().await.map_err(errors::client)?;
            Ok(StatusResult {
                header: s.0.header.as_ref().map(Header::from),
                version: s.version().to_string(),
                leader: s.leader().to_string(),
                db_size: s.db_size(),
                raft_index: s.raft_index().to_string(),
                raft_term: s.raft_term().to_string(),
                errors: s.errors().to_vec(),
            })
        })
        .await
    }

    /// The cluster's members.
    #[napi]
    pub async fn members(&self) -> napi::Result<Vec<Member>> {
        let c = self.live()?;
        guard(async move {
            let r = c.member_list().await.map_err(errors::client)?;
            Ok(r.members()
                .iter()
                .map(|m| Member {
                    id: m.id.to_string(),
                    name: m.name.clone(),
                    peer_urls: m.peer_ur_ls.clone(),
                    client_urls: m.client_ur_ls.clone(),
                    is_learner: m.is_learner,
                })
                .collect())
        })
        .await
    }
}
