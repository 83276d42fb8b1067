//! Registering service instances, and finding them.
//!
//! A [`Registration`] writes its instance at
//! `<namespace>/services/<service>/<id>` on its own lease, and a background
//! task keeps it there: when the lease is lost (not renewed within its TTL
//! during a partition, revoked, expired), it grants a new lease and writes
//! the entry again, reporting each step as a [`RegistrationEvent`]. It also
//! watches its own key, and writes the entry again on the same lease when
//! someone deletes it while the lease is alive.

use kv_client::{Client, DeleteOptions, GetOptions};

use crate::instance::check_segment;
use crate::subscription::Subscription;
use crate::{Check, Error, Health, Result, ServiceFilter, ServiceInstance};

pub use crate::registration::{Registration, RegistrationEvent};

/// The default key namespace.
pub const DEFAULT_NAMESPACE: &str = "kv";
/// The default TTL of a registration's lease, in seconds: a dead instance
/// disappears within this time.
pub const DEFAULT_REGISTRATION_TTL: i64 = 10;

/// Where services are registered: a client, a key namespace and a TTL.
///
/// ```no_run
/// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
/// use kv_discovery::{Registry, ServiceInstance};
/// let registry = Registry::new(client).with_namespace("prod").with_ttl(5);
/// let reg = registry.register(ServiceInstance::new("api", "10.0.0.1:80")).await?;
/// for inst in registry.list("api").await? {
///     println!("{} {:?}", inst.id, inst.addrs);
/// }
/// reg.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Registry {
    client: Client,
    namespace: String,
    ttl: i64,
}

impl Registry {
    /// A registry in [`DEFAULT_NAMESPACE`] with [`DEFAULT_REGISTRATION_TTL`].
    pub fn new(client: Client) -> Registry {
        Registry {
            client,
            namespace: DEFAULT_NAMESPACE.to_string(),
            ttl: DEFAULT_REGISTRATION_TTL,
        }
    }
    /// Uses another key namespace (a key prefix without trailing `/`).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Registry {
        self.namespace = namespace.into();
        self
    }
    /// Uses another lease TTL (seconds) for registrations.
    pub fn with_ttl(mut self, ttl: i64) -> Registry {
        self.ttl = ttl;
        self
    }
    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key prefix of a service's instances: `<namespace>/services/<service>/`.
    ///
    /// ```no_run
    /// # fn f(client: kv_client::Client) {
    /// let r = kv_discovery::Registry::new(client);
    /// assert_eq!(r.service_prefix("api"), "kv/services/api/");
    /// # }
    /// ```
    pub fn service_prefix(&self, service: &str) -> String {
        format!("{}/services/{service}/", self.namespace)
    }

    /// The key of one instance.
    pub fn instance_key(&self, service: &str, id: &str) -> String {
        format!("{}{id}", self.service_prefix(service))
    }

    /// Registers `instance` and keeps it registered until the returned
    /// [`Registration`] is closed or dropped. Returns once the entry is
    /// written.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use kv_discovery::{Registry, ServiceInstance};
    /// let reg = Registry::new(client).register(ServiceInstance::new("api", "127.0.0.1:8080")).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register(&self, instance: ServiceInstance) -> Result<Registration> {
        check_segment(&instance.service)?;
        check_segment(&instance.id)?;
        let key = self.instance_key(&instance.service, &instance.id);
        crate::registration::start(&self.client, key, self.ttl, instance, Vec::new()).await
    }

    /// Registers `instance` with health checks this process runs (see
    /// [`Check`]): the entry carries each check's state (starting critical,
    /// as Consul's) and the worst of them as its health; each state change
    /// is one write.
    ///
    /// ```no_run
    /// # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
    /// use kv_discovery::{Check, Registry, ServiceInstance};
    /// let reg = Registry::new(client)
    ///     .register_with_checks(
    ///         ServiceInstance::new("db", "127.0.0.1:5432"),
    ///         [Check::tcp("port", "127.0.0.1:5432")],
    ///     )
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_with_checks(
        &self,
        mut instance: ServiceInstance,
        checks: impl IntoIterator<Item = Check>,
    ) -> Result<Registration> {
        check_segment(&instance.service)?;
        check_segment(&instance.id)?;
        let checks: Vec<Check> = checks.into_iter().collect();
        let mut names = std::collections::HashSet::new();
        for c in &checks {
            if c.name().is_empty() || !names.insert(c.name()) {
                return Err(Error::InvalidCheck(c.name().to_string()));
            }
        }
        if !checks.is_empty() {
            instance.checks = crate::check::initial_states(&checks);
            instance.health = Health::Critical;
        }
        let key = self.instance_key(&instance.service, &instance.id);
        crate::registration::start(&self.client, key, self.ttl, instance, checks).await
    }

    /// The instances of `service` registered now.
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let n = r.list("api").await?.len();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, service: &str) -> Result<Vec<ServiceInstance>> {
        self.list_with(service, &ServiceFilter::new()).await
    }

    /// The instances of `service` registered now that pass `filter`.
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// use kv_discovery::{HealthFilter, ServiceFilter};
    /// let healthy = r.list_with("web", &ServiceFilter::new().with_health(HealthFilter::Passing)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_with(
        &self,
        service: &str,
        filter: &ServiceFilter,
    ) -> Result<Vec<ServiceInstance>> {
        check_segment(service)?;
        let resp = self
            .client
            .get(
                self.service_prefix(service),
                GetOptions::new().with_prefix(),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(crate::subscription::decode)
            .filter(|i| filter.matches(i))
            .collect())
    }

    /// Deletes an instance's entry; returns whether it existed. A live
    /// owner keeps running and writes the entry straight back (it watches
    /// its own key): stop the owner to remove an instance for good.
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let existed = r.deregister("api", "api-1").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn deregister(&self, service: &str, id: &str) -> Result<bool> {
        check_segment(service)?;
        check_segment(id)?;
        let resp = self
            .client
            .delete(self.instance_key(service, id), DeleteOptions::new())
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Subscribes to the live set of `service`'s instances: see
    /// [`Subscription`].
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// let sub = r.subscribe("api").await?;
    /// println!("{} instances", sub.current().len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&self, service: &str) -> Result<Subscription> {
        self.subscribe_with(service, ServiceFilter::new()).await
    }

    /// Subscribes to the instances of `service` that pass `filter` (tags,
    /// metadata, health): see [`Subscription::start_filtered`].
    ///
    /// ```no_run
    /// # async fn demo(r: kv_discovery::Registry) -> kv_discovery::Result<()> {
    /// use kv_discovery::{HealthFilter, ServiceFilter};
    /// let filter = ServiceFilter::new().with_tag("v2").with_health(HealthFilter::PassingOrWarning);
    /// let sub = r.subscribe_with("web", filter).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe_with(
        &self,
        service: &str,
        filter: ServiceFilter,
    ) -> Result<Subscription> {
        check_segment(service)?;
        Subscription::start_filtered(self.client.clone(), self.service_prefix(service), filter)
            .await
    }
}
