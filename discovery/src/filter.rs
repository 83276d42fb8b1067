//! Which instances a subscriber or a listing wants: by tags, metadata and
//! health.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Health, ServiceInstance};

/// The health states a subscriber accepts (Consul's `passing` /
/// `passing,warning` / any).
///
/// ```
/// use kv_discovery::{Health, HealthFilter};
/// assert!(HealthFilter::PassingOrWarning.accepts(Health::Warning));
/// assert!(!HealthFilter::Passing.accepts(Health::Warning));
/// assert!(HealthFilter::All.accepts(Health::Critical));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HealthFilter {
    /// Every instance, whatever its health.
    #[default]
    All,
    /// Passing and warning instances (not critical ones).
    PassingOrWarning,
    /// Passing instances only.
    Passing,
}

impl HealthFilter {
    /// Whether an instance in state `health` passes the filter.
    pub fn accepts(self, health: Health) -> bool {
        match self {
            HealthFilter::All => true,
            HealthFilter::PassingOrWarning => health != Health::Critical,
            HealthFilter::Passing => health == Health::Passing,
        }
    }
}

/// A filter on a service's instances: every listed tag present, every
/// listed metadata pair equal, the health accepted. The default accepts
/// everything.
///
/// ```
/// use kv_discovery::{Health, HealthFilter, ServiceFilter, ServiceInstance};
/// let f = ServiceFilter::new().with_tag("v2").with_health(HealthFilter::Passing);
/// let inst = ServiceInstance::new("web", "10.0.0.1:80").with_tag("v2").with_tag("eu");
/// assert!(f.matches(&inst));
/// assert!(!f.matches(&inst.clone().with_health(Health::Warning)));
/// assert!(!f.matches(&ServiceInstance::new("web", "10.0.0.2:80")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    tags: BTreeSet<String>,
    metadata: BTreeMap<String, String>,
    health: HealthFilter,
}

impl ServiceFilter {
    /// A filter that accepts every instance.
    pub fn new() -> ServiceFilter {
        ServiceFilter::default()
    }

    /// Requires the tag (several calls: all of them).
    pub fn with_tag(mut self, tag: impl Into<String>) -> ServiceFilter {
        self.tags.insert(tag.into());
        self
    }

    /// Requires the metadata label `key` to equal `value`.
    ///
    /// ```
    /// use kv_discovery::{ServiceFilter, ServiceInstance};
    /// let f = ServiceFilter::new().with_metadata("zone", "eu-1");
    /// assert!(f.matches(&ServiceInstance::new("s", "a:1").with_metadata("zone", "eu-1")));
    /// assert!(!f.matches(&ServiceInstance::new("s", "a:1").with_metadata("zone", "us-1")));
    /// ```
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Accepts only instances whose health passes `health`.
    pub fn with_health(mut self, health: HealthFilter) -> ServiceFilter {
        self.health = health;
        self
    }

    /// The required tags.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str)
    }

    /// The health filter.
    pub fn health(&self) -> HealthFilter {
        self.health
    }

    /// Whether `inst` passes the filter.
    pub fn matches(&self, inst: &ServiceInstance) -> bool {
        self.health.accepts(inst.health)
            && self.tags.iter().all(|t| inst.tags.iter().any(|x| x == t))
            && self
                .metadata
                .iter()
                .all(|(k, v)| inst.metadata.get(k) == Some(v))
    }
}
