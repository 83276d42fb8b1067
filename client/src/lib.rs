//! Rust client for kv and any etcd v3 server.
//!
//! One cheap-to-clone [`Client`] balances requests over the configured
//! endpoints and offers every call on `&self`:
//! - KV: [`Client::get`], [`Client::put`], [`Client::delete`],
//!   [`Client::txn`], [`Client::compact`];
//! - watches that resume by themselves after a disconnect without losing or
//!   repeating events: [`Client::watch`];
//! - leases and a background keeper with a loss signal:
//!   [`Client::lease_grant`], [`Client::lease_keeper`];
//! - [`Client::status`], [`Client::member_list`], [`Client::alarm_list`].
//!
//! Failures are a typed [`Error`] decoded from etcd's wire error table, and
//! retries follow one policy ([`retry`]): reads retry on `Unavailable`,
//! writes only when they surely never reached a server.
//!
//! Endpoints that fail (down, frozen, partitioned) are set aside and probed
//! back with backoff (see the balancer notes on [`Client::unhealthy_endpoints`]).
//! [`ClientConfig::with_user`] adds etcd auth with transparent token renewal
//! ([`auth`] also has the user/role calls), and [`ClientConfig::with_tls`]
//! or `https://` endpoints add TLS ([`tls`]).
//!
//! ```no_run
//! use kv_client::{Client, ClientConfig, GetOptions};
//!
//! # async fn demo() -> kv_client::Result<()> {
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:2379"])).await?;
//! client.put("greeting", "hello", None).await?;
//! let resp = client.get("greeting", GetOptions::new()).await?;
//! assert_eq!(resp.kvs()[0].value, b"hello");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod auth;
mod balancer;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod options;
pub mod retry;
pub mod tls;
pub mod txn;
pub mod watch;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient,
};

use balancer::Balancer;

pub use cluster::{MemberAddResponse, MemberChangeResponse};
pub use config::{ClientConfig, Credentials};
pub use error::{Error, Result};
pub use kv::{
    CompactResponse, DeleteOptions, DeleteResponse, GetOptions, GetResponse, PutOptions,
    PutResponse, SortOrder, SortTarget,
};
pub use kv_proto::etcdserverpb::ResponseHeader;
pub use kv_proto::mvccpb::{Event, KeyValue, event::EventType};
pub use lease::{LeaseKeeper, LeaseListResponse, LeaseLost};
pub use maintenance::{HashKvResponse, SnapshotStream};
pub use retry::RetryPolicy;
pub use txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
pub use watch::{WATCH_BUFFER, WatchBatch, WatchOptions, WatchStream};

use retry::Repeatable;

/// A connection to a kv or etcd cluster. Cloning is cheap and every clone
/// shares the same connections and watch stream.
///
/// ```no_run
/// # async fn demo() -> kv_client::Result<()> {
/// let client = kv_client::Client::connect(kv_client::ClientConfig::new(["127.0.0.1:2379"])).await?;
/// let other = client.clone();
/// tokio::spawn(async move { other.put("k", "v", None).await });
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Endpoint choice, health and the auth token, under every call.
    balancer: Balancer,
    config: ClientConfig,
    /// The shared watch stream's command queue, started on first use.
    watch_hub: Mutex<Option<watch::HubHandle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.config.endpoints())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client for the configured endpoints. Connections are made
    /// lazily (and re-made after failures) by the request that needs them,
    /// so without a user this only fails on a bad configuration and an
    /// unreachable cluster shows up as [`Error::Unavailable`] on the first
    /// request. With a user ([`ClientConfig::with_user`]) it authenticates
    /// first, so a wrong password is [`Error::AuthFailed`] here.
    ///
    /// ```no_run
    /// # async fn demo() -> kv_client::Result<()> {
    /// use kv_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new(["127.0.0.1:2379", "127.0.0.1:22379"])).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let balancer = Balancer::new(&config)?;
        if let Some(tokens) = balancer.tokens() {
            tokens.refresh(&balancer, tokens.generation()).await?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                balancer,
                config,
                watch_hub: Mutex::new(None),
            }),
        })
    }

    /// The endpoints currently set aside after failures (they get no
    /// requests until a background probe finds them healthy again).
    ///
    /// Requests go round robin over the endpoints not set aside. One is set
    /// aside when a request to it fails in the transport, runs out its
    /// deadline, or is answered `Unavailable`/timeout; after a backoff
    /// (the [`RetryPolicy`], doubling per failed probe) a `Status` probe
    /// must answer with a known leader before it gets requests again. This
    /// replaces tower's load balancer, which keeps a frozen or partitioned
    /// member in rotation as long as its TCP connection looks ready. With a
    /// single endpoint nothing is set aside.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) {
    /// for e in client.unhealthy_endpoints() {
    ///     eprintln!("avoiding {e}");
    /// }
    /// # }
    /// ```
    pub fn unhealthy_endpoints(&self) -> Vec<String> {
        self.inner.balancer.set_aside()
    }

    pub(crate) fn balancer(&self) -> &Balancer {
        &self.inner.balancer
    }

    /// The configuration this client was built with.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) {
    /// println!("{:?}", client.config().endpoints());
    /// # }
    /// ```
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn kv_client(&self) -> KvClient<Balancer> {
        let c = &self.inner.config;
        KvClient::new(self.inner.balancer.clone())
            .max_decoding_message_size(c.max_decoding_message_size())
            .max_encoding_message_size(c.max_encoding_message_size())
    }

    pub(crate) fn watch_client(&self) -> WatchClient<Balancer> {
        let c = &self.inner.config;
        WatchClient::new(self.inner.balancer.clone())
            .max_decoding_message_size(c.max_decoding_message_size())
            .max_encoding_message_size(c.max_encoding_message_size())
    }

    pub(crate) fn lease_client(&self) -> LeaseClient<Balancer> {
        let c = &self.inner.config;
        LeaseClient::new(self.inner.balancer.clone())
            .max_decoding_message_size(c.max_decoding_message_size())
            .max_encoding_message_size(c.max_encoding_message_size())
    }

    pub(crate) fn cluster_client(&self) -> ClusterClient<Balancer> {
        let c = &self.inner.config;
        ClusterClient::new(self.inner.balancer.clone())
            .max_decoding_message_size(c.max_decoding_message_size())
            .max_encoding_message_size(c.max_encoding_message_size())
    }

    pub(crate) fn maintenance_client(&self) -> MaintenanceClient<Balancer> {
        let c = &self.inner.config;
        MaintenanceClient::new(self.inner.balancer.clone())
            .max_decoding_message_size(c.max_decoding_message_size())
            .max_encoding_message_size(c.max_encoding_message_size())
    }

    /// Runs one unary RPC under the retry policy and the request timeout,
    /// charging each attempt's outcome to the endpoint it went to. A
    /// request refused for its auth token gets one more try with a new
    /// token (the server refused it before applying it, so this is safe
    /// for writes too).
    pub(crate) async fn unary<T, F, Fut>(&self, repeatable: Repeatable, mut attempt: F) -> Result<T>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = &self.inner.config;
        let balancer = &self.inner.balancer;
        let tokens = balancer.tokens();
        let mut refreshed = false;
        loop {
            let seen = tokens.map(|t| t.generation());
            let result = retry::call(c.retry(), c.request_timeout(), repeatable, |left| {
                balancer.observe(left, attempt(left))
            })
            .await;
            match (result, tokens, seen) {
                (Err(e), Some(tokens), Some(seen)) if e.needs_new_token() && !refreshed => {
                    tracing::debug!(%e, "auth token refused: authenticating again");
                    refreshed = true;
                    tokens.refresh(balancer, seen).await?;
                }
                (result, ..) => return result,
            }
        }
    }

    /// The shared watch hub, started on first use.
    pub(crate) fn watch_hub(&self) -> watch::HubHandle {
        let mut hub = self
            .inner
            .watch_hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match hub.as_ref() {
            Some(h) if !h.is_closed() => h.clone(),
            _ => {
                let h = watch::HubHandle::start(self.clone_for_hub());
                *hub = Some(h.clone());
                h
            }
        }
    }

    /// What the watch hub keeps: the channel and config, not the hub slot
    /// itself (so dropping every `Client` and stream ends the hub).
    fn clone_for_hub(&self) -> HubClient {
        HubClient {
            client: self.watch_client(),
            config: self.inner.config.clone(),
        }
    }
}

/// The parts of a client the background watch hub needs.
pub(crate) struct HubClient {
    pub(crate) client: WatchClient<Balancer>,
    pub(crate) config: ClientConfig,
}
