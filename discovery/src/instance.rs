//! What a registration stores: one service instance, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CheckState, Error, Result};

/// An instance's health as its owner reports it.
///
/// ```
/// use kv_discovery::Health;
/// assert_eq!(serde_json::to_string(&Health::Warning).unwrap(), "\"warning\"");
/// assert_eq!(Health::default(), Health::Passing);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving normally.
    #[default]
    Passing,
    /// Serving, degraded.
    Warning,
    /// Not serving: load balancers built with
    /// [`Subscription::into_discover`](crate::Subscription::into_discover) leave it out.
    Critical,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        })
    }
}

/// One instance of a service, stored as JSON at
/// `<namespace>/services/<service>/<id>`.
///
/// ```
/// use kv_discovery::{Health, ServiceInstance};
/// let inst = ServiceInstance::new("api", "10.0.0.1:8080")
///     .with_id("api-1")
///     .with_addr("[::1]:8080")
///     .with_metadata("zone", "eu-1")
///     .with_version("1.4.2")
///     .with_health(Health::Warning);
/// assert_eq!(inst.addrs, ["10.0.0.1:8080", "[::1]:8080"]);
/// let json = serde_json::to_string(&inst).unwrap();
/// assert_eq!(serde_json::from_str::<ServiceInstance>(&json).unwrap(), inst);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The service name.
    pub service: String,
    /// The instance ID, unique within the service (a UUID v4 by default).
    pub id: String,
    /// Where the instance listens.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Tags subscribers can filter on (see [`ServiceFilter`](crate::ServiceFilter)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The version of the software (free-form, may be empty).
    #[serde(default)]
    pub version: String,
    /// The health the owner reports (with checks: the worst of them).
    #[serde(default)]
    pub health: Health,
    /// The states of the health checks the owner runs, by check name
    /// (empty without checks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, CheckState>,
}

impl ServiceInstance {
    /// An instance of `service` at `addr` with a fresh UUID v4 as ID,
    /// passing health.
    ///
    /// ```
    /// let a = kv_discovery::ServiceInstance::new("api", "127.0.0.1:8080");
    /// let b = kv_discovery::ServiceInstance::new("api", "127.0.0.1:8080");
    /// assert_ne!(a.id, b.id);
    /// assert_eq!(a.id.len(), 36);
    /// ```
    pub fn new(service: impl Into<String>, addr: impl Into<String>) -> Self {
        ServiceInstance {
            service: service.into(),
            id: uuid_v4(),
            addrs: vec![addr.into()],
            metadata: BTreeMap::new(),
            tags: Vec::new(),
            version: String::new(),
            health: Health::Passing,
            checks: BTreeMap::new(),
        }
    }
    /// Sets the instance ID.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
    /// Adds an address.
    pub fn with_addr(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }
    /// Adds a metadata label.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
    /// Adds a tag (once: a tag already present is not repeated).
    ///
    /// ```
    /// let i = kv_discovery::ServiceInstance::new("web", "10.0.0.1:80").with_tag("v2").with_tag("v2");
    /// assert_eq!(i.tags, ["v2"]);
    /// assert!(i.has_tag("v2"));
    /// ```
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if !self.has_tag(&tag) {
            self.tags.push(tag);
        }
        self
    }
    /// Whether the instance carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }
    /// Sets the health.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// The instance as stored (JSON).
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Encode(e.to_string()))
    }
}

/// Checks that `name` can be one segment of a key.
pub(crate) fn check_segment(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::InvalidName(name.to_string()));
    }
    Ok(())
}

/// A random (version 4, RFC 4122 variant) UUID in its hyphenated form.
pub(crate) fn uuid_v4() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4() {
        let u = uuid_v4();
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn missing_fields_default() {
        let inst: ServiceInstance = serde_json::from_str(r#"{"service":"s","id":"i"}"#).unwrap();
        assert_eq!(inst.health, Health::Passing);
        assert!(inst.addrs.is_empty());
        assert!(inst.tags.is_empty());
    }

    #[test]
    fn segments_reject_slashes() {
        assert!(check_segment("a/b").is_err());
        assert!(check_segment("").is_err());
        assert!(check_segment("api").is_ok());
    }
}
