//! The subscriptions DNS answers come from: one per service, started on
//! the first query for it, dropped after it goes unasked for a while, and
//! never more than a fixed number (a client asking for random names
//! evicts the least recently asked one rather than growing the set).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use kv_client::Client;
use tokio::sync::OnceCell;

use crate::{HealthFilter, ServiceFilter, ServiceInstance, Subscription};

/// Why a lookup has no answer (the DNS reply is SERVFAIL).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// Every slot holds a subscription still starting.
    #[error("all {0} subscription slots are starting")]
    Full(usize),
    /// The first read of the service did not finish in time.
    #[error("starting the subscription timed out")]
    Timeout,
    /// The first read of the service failed.
    #[error(transparent)]
    Start(#[from] crate::Error),
}

struct Entry {
    sub: Arc<OnceCell<Subscription>>,
    last_used: Instant,
}

pub(crate) struct Cache {
    client: Client,
    namespace: String,
    health: HealthFilter,
    max: usize,
    start_timeout: Duration,
    entries: StdMutex<HashMap<String, Entry>>,
}

impl Cache {
    pub(crate) fn new(
        client: Client,
        namespace: String,
        health: HealthFilter,
        max: usize,
        start_timeout: Duration,
    ) -> Cache {
        Cache {
            client,
            namespace,
            health,
            max,
            start_timeout,
            entries: StdMutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many subscriptions are held (started or starting).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The instances of `service` passing the health filter now.
    pub(crate) async fn instances(
        &self,
        service: &str,
    ) -> Result<Vec<ServiceInstance>, LookupError> {
        let cell = self.slot(service)?;
        let start = cell.get_or_try_init(|| {
            let prefix = format!("{}/services/{service}/", self.namespace);
            let filter = ServiceFilter::new().with_health(self.health);
            Subscription::start_filtered(self.client.clone(), prefix, filter)
        });
        let result = match tokio::time::timeout(self.start_timeout, start).await {
            Ok(Ok(sub)) => return Ok(sub.current()),
            Ok(Err(e)) => LookupError::Start(e),
            Err(_) => LookupError::Timeout,
        };
        // A failed start holds no slot: the next query tries again.
        let mut map = self.lock();
        if map
            .get(service)
            .is_some_and(|e| Arc::ptr_eq(&e.sub, &cell) && !e.sub.initialized())
        {
            map.remove(service);
        }
        Err(result)
    }

    /// The slot of `service`, made (evicting the least recently used
    /// started subscription when full) if missing.
    fn slot(&self, service: &str) -> Result<Arc<OnceCell<Subscription>>, LookupError> {
        let now = Instant::now();
        let mut map = self.lock();
        if let Some(e) = map.get_mut(service) {
            e.last_used = now;
            return Ok(e.sub.clone());
        }
        if map.len() >= self.max {
            let victim = map
                .iter()
                .filter(|(_, e)| e.sub.initialized())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    tracing::debug!(service = %k, "dns: evicting the least recently used subscription");
                    map.remove(&k);
                }
                None => return Err(LookupError::Full(self.max)),
            }
        }
        let sub = Arc::new(OnceCell::new());
        map.insert(
            service.to_string(),
            Entry {
                sub: sub.clone(),
                last_used: now,
            },
        );
        Ok(sub)
    }

    /// Drops the started subscriptions not asked for within `idle`.
    fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        self.lock()
            .retain(|_, e| !e.sub.initialized() || now.duration_since(e.last_used) < idle);
    }
}

/// Sweeps `cache` every half `idle` until it is dropped.
pub(crate) fn spawn_sweeper(cache: Weak<Cache>, idle: Duration) -> tokio::task::JoinHandle<()> {
    let period = (idle / 2).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match cache.upgrade() {
                Some(c) => c.sweep(idle),
                None => return,
            }
        }
    })
}
