//! Leader election with etcd's `concurrency.Election` semantics and keys.
//!
//! A candidate puts `<name>/<lease id in hex>` = its proposal on its
//! session's lease; the leader is the key under `<name>/` with the lowest
//! create revision. [`Election::campaign`] returns once every older
//! candidate's key is gone. So `kvctl elect` and `etcdctl elect` on one name
//! see each other.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use kv_client::{
    Client, Compare, CompareOp, EventType, KeyValue, PutOptions, ResponseHeader, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::session::Session;
use crate::util::{
    Cleanup, delete_if_created_at, first_created, lease_hex, spawn_best_effort, wait_deletes,
};
use crate::{Error, Result};

/// An election named `name`, campaigned in on a [`Session`].
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use kv_discovery::{Election, Session};
/// let session = Session::with_ttl(&client, 10).await?;
/// let election = Election::new(&session, "scheduler");
/// let leadership = election.campaign("node-1").await?; // blocks until leader
/// leadership.proclaim("node-1 (draining)").await?;
/// leadership.resign().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Election {
    session: Session,
    name: String,
}

/// A leader as observed: its key-value and the header of the answer that
/// showed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Leader {
    /// The leader key-value (key `<name>/<lease hex>`, value the proposal).
    pub kv: KeyValue,
    /// The header of the read or watch answer that carried it (for a watch
    /// event, with the revision set to the key-value's, as etcd's `Observe`
    /// does).
    pub header: ResponseHeader,
}

impl Leader {
    /// The leader key.
    pub fn key(&self) -> &[u8] {
        &self.kv.key
    }
    /// The proposal.
    pub fn value(&self) -> &[u8] {
        &self.kv.value
    }
}

impl Election {
    /// The election `name` (keys live under `<name>/`).
    pub fn new(session: &Session, name: impl Into<String>) -> Election {
        Election {
            session: session.clone(),
            name: name.into(),
        }
    }

    fn prefix(&self) -> String {
        format!("{}/", self.name)
    }

    /// This session's candidate key: `<name>/<lease id in hex>`.
    pub fn key(&self) -> String {
        format!("{}{}", self.prefix(), lease_hex(self.session.lease_id()))
    }

    /// Campaigns with `value` and returns once leader. Dropping the future
    /// withdraws the candidacy (in the background). Fails with
    /// [`Error::SessionExpired`] if the session is lost while waiting.
    pub async fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<Leadership> {
        let value = value.into();
        let client = self.session.client();
        let key = self.key();
        let lease = self.session.lease_id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                value.clone(),
                PutOptions::new().with_lease(lease),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = client.txn(txn).await?;
        let mut rev = resp.revision();
        let mut header = resp.header().cloned().unwrap_or_default();
        let created = resp.succeeded();
        let mut cleanup = Cleanup::new(client, &key, rev, created);
        let mut leadership = Leadership {
            session: self.session.clone(),
            key: key.clone(),
            rev,
            header,
            resigned: true, // armed only once leader
        };
        if !created {
            let existing = match resp.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
                _ => None,
            };
            let kv = existing.ok_or(Error::SessionExpired)?;
            rev = kv.create_revision;
            leadership.rev = rev;
            if kv.value != value {
                header = leadership.proclaim_header(value).await?;
            }
        }
        let prefix = self.prefix();
        tokio::select! {
            r = wait_deletes(client, &prefix, rev - 1) => r?,
            _ = self.session.lost() => return Err(Error::SessionExpired),
        }
        cleanup.disarm();
        leadership.header = header;
        leadership.resigned = false;
        Ok(leadership)
    }

    /// The current leader, or [`Error::NoLeader`].
    pub async fn leader(&self) -> Result<Leader> {
        leader(self.session.client(), &self.name).await
    }

    /// Observes the leader: see [`observe`].
    pub fn observe(&self) -> Observer {
        observe(self.session.client(), &self.name)
    }
}

/// The current leader of election `name`, or [`Error::NoLeader`]. Needs no
/// session.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// let l = kv_discovery::election::leader(&client, "scheduler").await?;
/// println!("{}", String::from_utf8_lossy(l.value()));
/// # Ok(())
/// # }
/// ```
pub async fn leader(client: &Client, name: &str) -> Result<Leader> {
    let (kv, header) = first_created(client, &format!("{name}/")).await?;
    let kv = kv.ok_or(Error::NoLeader)?;
    Ok(Leader { kv, header })
}

/// A stream of the leaders of election `name` (etcd's `Observe`): the
/// current one (once there is one), then each proclaimed value and each
/// next leader, in order and each once. Transient failures are retried
/// inside; dropping the stream stops it. Needs no session.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) {
/// use futures::StreamExt;
/// let mut leaders = kv_discovery::election::observe(&client, "scheduler");
/// while let Some(l) = leaders.next().await {
///     println!("leader: {}", String::from_utf8_lossy(l.value()));
/// }
/// # }
/// ```
pub fn observe(client: &Client, name: &str) -> Observer {
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(observe_loop(client.clone(), format!("{name}/"), tx));
    Observer { rx, task }
}

/// The stream returned by [`observe`].
#[derive(Debug)]
pub struct Observer {
    rx: mpsc::Receiver<Leader>,
    task: JoinHandle<()>,
}

impl Observer {
    /// The next leader (the same as `StreamExt::next`, without needing the
    /// trait); `None` only if the observer task stopped.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) {
    /// let mut o = kv_discovery::election::observe(&client, "e");
    /// while let Some(l) = o.next_leader().await {
    ///     println!("{:?}", l.value());
    /// }
    /// # }
    /// ```
    pub async fn next_leader(&mut self) -> Option<Leader> {
        self.rx.recv().await
    }
}

impl Stream for Observer {
    type Item = Leader;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Leader>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identity of one leader value, to never report it twice.
fn ident(kv: &KeyValue) -> (Vec<u8>, i64, i64) {
    (kv.key.clone(), kv.create_revision, kv.mod_revision)
}

async fn observe_loop(client: Client, prefix: String, tx: mpsc::Sender<Leader>) {
    let mut last = None;
    let mut backoff = crate::util::backoff(&client);
    loop {
        match observe_once(&client, &prefix, &tx, &mut last).await {
            Ok(()) => backoff.reset(),
            Err(ObserveEnd::Closed) => return,
            Err(ObserveEnd::Failed(e)) => {
                let wait = backoff.next_delay();
                tracing::debug!(%prefix, %e, ?wait, "election observer retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

enum ObserveEnd {
    Closed,
    Failed(Error),
}

impl From<kv_client::Error> for ObserveEnd {
    fn from(e: kv_client::Error) -> Self {
        ObserveEnd::Failed(e.into())
    }
}

/// Reports the current leader, follows its key until it is deleted.
async fn observe_once(
    client: &Client,
    prefix: &str,
    tx: &mpsc::Sender<Leader>,
    last: &mut Option<(Vec<u8>, i64, i64)>,
) -> std::result::Result<(), ObserveEnd> {
    let (first, header) = first_created(client, prefix)
        .await
        .map_err(ObserveEnd::Failed)?;
    let rev = header.revision;
    let leader = match first {
        Some(kv) => Leader { kv, header },
        None => {
            // Wait for the first candidate.
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(rev + 1);
            let mut w = client.watch(prefix, opts).await?;
            loop {
                let batch = match w.next().await {
                    Some(b) => b?,
                    None => return Err(ObserveEnd::Failed(lost())),
                };
                let put = batch
                    .events()
                    .iter()
                    .find(|e| e.r#type() == EventType::Put)
                    .and_then(|e| e.kv.clone());
                if let Some(kv) = put {
                    let mut header = *batch.header();
                    header.revision = kv.mod_revision;
                    break Leader { kv, header };
                }
            }
        }
    };
    let from = leader.header.revision + 1;
    let key = leader.kv.key.clone();
    send(tx, leader, last).await?;
    let mut w = client
        .watch(key, WatchOptions::new().with_start_revision(from))
        .await?;
    loop {
        let batch = match w.next().await {
            Some(b) => b?,
            None => return Err(ObserveEnd::Failed(lost())),
        };
        for e in batch.events() {
            if e.r#type() == EventType::Delete {
                return Ok(());
            }
            if let Some(kv) = e.kv.clone() {
                let mut header = *batch.header();
                header.revision = kv.mod_revision;
                send(tx, Leader { kv, header }, last).await?;
            }
        }
    }
}

fn lost() -> Error {
    kv_client::Error::Transport("election observer lost its watch".into()).into()
}

async fn send(
    tx: &mpsc::Sender<Leader>,
    leader: Leader,
    last: &mut Option<(Vec<u8>, i64, i64)>,
) -> std::result::Result<(), ObserveEnd> {
    let id = ident(&leader.kv);
    if last.as_ref() == Some(&id) {
        return Ok(());
    }
    *last = Some(id);
    tx.send(leader).await.map_err(|_| ObserveEnd::Closed)
}

/// Leadership won by [`Election::campaign`]. Dropping it resigns in the
/// background (best effort); the leadership also ends when the session is
/// lost.
#[derive(Debug)]
pub struct Leadership {
    session: Session,
    key: String,
    rev: i64,
    header: ResponseHeader,
    resigned: bool,
}

impl Leadership {
    /// The leader key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The create revision of the leader key (a fencing token).
    pub fn revision(&self) -> i64 {
        self.rev
    }
    /// The header of the last successful campaign or proclaim.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }
    /// A compare that holds only while still leader.
    pub fn is_leader(&self) -> Compare {
        Compare::create_revision(self.key.as_str(), CompareOp::Equal, self.rev)
    }
    /// Resolves when the session (and so the leadership) is lost.
    pub fn session_lost(
        &self,
    ) -> impl std::future::Future<Output = kv_client::LeaseLost> + Send + 'static {
        self.session.lost()
    }

    /// Announces a new value without a new election; fails with
    /// [`Error::NotLeader`] if no longer leader.
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let _ = self.proclaim_header(value.into()).await?;
        Ok(())
    }

    async fn proclaim_header(&self, value: Vec<u8>) -> Result<ResponseHeader> {
        let opts = PutOptions::new().with_lease(self.session.lease_id());
        let txn = Txn::new().when([self.is_leader()]).and_then([TxnOp::put(
            self.key.as_str(),
            value,
            opts,
        )]);
        let resp = self.session.client().txn(txn).await?;
        if !resp.succeeded() {
            return Err(Error::NotLeader);
        }
        Ok(resp.header().cloned().unwrap_or_default())
    }

    /// Gives up leadership (deletes the key) so the next candidate wins.
    pub async fn resign(mut self) -> Result<()> {
        self.resigned = true;
        delete_if_created_at(self.session.client(), &self.key, self.rev).await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if !self.resigned {
            let (client, key, rev) = (self.session.client().clone(), self.key.clone(), self.rev);
            spawn_best_effort("resign", async move {
                delete_if_created_at(&client, &key, rev).await
            });
        }
    }
}
