//! The `[router]` section of the configuration: the hub, the regions and
//! the exchanges they share. Read from the config file by the binary
//! (serde, unknown keys refused), checked here by [`RouterConfig::validate`]
//! before anything talks to a broker.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::postoffice::Exchange;

/// The Rabbit Router's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// The hub broker every region is linked to.
    pub hub: Option<BrokerConfig>,
    /// The regional brokers. Adding a region is one more entry here and
    /// one `postmesh router apply`.
    pub regions: Vec<BrokerConfig>,
    /// The exchanges federated across the star. By default the
    /// postoffice's own, `postmesh.paths` and `postmesh.postoffice`.
    pub exchanges: Vec<String>,
    /// How long a federation link waits before reconnecting to a broker it
    /// lost, in seconds (the upstreams' `reconnect-delay`). RabbitMQ's
    /// default of 5 s makes a link come back about 15 s after a hub
    /// restart; 1 s brings that down to about 6 s.
    pub reconnect_delay_secs: u64,
    /// How often `postmesh router run` checks every broker and link, in
    /// seconds. A broker that lost its definitions is repaired within one
    /// interval of answering again.
    pub check_interval_secs: u64,
    /// Where `postmesh router run` serves `/metrics` (Prometheus).
    pub metrics_listen: SocketAddr,
    /// Every call to a management API gives up after this many seconds.
    pub http_timeout_secs: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            hub: None,
            regions: Vec::new(),
            exchanges: Exchange::ALL.iter().map(|e| e.name().to_owned()).collect(),
            reconnect_delay_secs: 1,
            check_interval_secs: 5,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 7490)),
            http_timeout_secs: 5,
        }
    }
}

/// One broker of the star.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// The broker's name in the star (`hub`, `east`): it names the
    /// upstreams that point at it and the links in `status` and metrics.
    pub name: String,
    /// How the *other* brokers reach it over AMQP,
    /// `amqp://user:password@host:5672/%2f`. Its path is the vhost the
    /// exchanges live in. This URI, credentials included, is stored in the
    /// upstreams of the brokers that federate from it.
    pub amqp: String,
    /// Its management API, `http://host:15672`.
    pub management: String,
    /// The management API's user.
    #[serde(default = "guest")]
    pub user: String,
    /// The management API user's password.
    #[serde(default = "guest")]
    pub password: String,
}

fn guest() -> String {
    "guest".into()
}

/// A `[router]` section that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouterConfigError {
    #[error("router.hub is missing: the star needs a hub broker")]
    NoHub,
    #[error("router.regions is empty: add at least one region")]
    NoRegions,
    #[error("{key}.name {name:?}: use letters, digits, '-' and '_' only")]
    BadName { key: String, name: String },
    #[error("{key}.name {name:?} is used twice: every broker needs its own name")]
    DuplicateName { key: String, name: String },
    #[error("{key}.amqp: {reason}")]
    BadAmqp { key: String, reason: String },
    #[error("{key}.management: {reason}")]
    BadManagement { key: String, reason: String },
    #[error("{key}: the same broker as {other} ({what}); a broker can be in the star once")]
    SameBroker {
        key: String,
        other: String,
        what: String,
    },
    #[error("router.exchanges: {0}")]
    BadExchanges(String),
    #[error("router.{key} must be at least 1")]
    Zero { key: &'static str },
}

/// A broker of a checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub name: String,
    /// The AMQP URI as written (it goes into upstreams verbatim).
    pub amqp: String,
    /// The vhost, from the AMQP URI's path (`/` when it has none).
    pub vhost: String,
    /// The management API's base URL.
    pub management: Url,
    pub user: String,
    pub password: String,
}

/// A checked configuration: the hub, the regions, and the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Star {
    pub hub: Broker,
    pub regions: Vec<Broker>,
    pub exchanges: Vec<String>,
    pub reconnect_delay: Duration,
    pub check_interval: Duration,
    pub metrics_listen: SocketAddr,
    pub http_timeout: Duration,
}

impl Star {
    /// The hub, then the regions in configuration order.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        std::iter::once(&self.hub).chain(self.regions.iter())
    }
}

impl RouterConfig {
    /// Checks everything that can be checked without a broker.
    pub fn validate(&self) -> Result<Star, RouterConfigError> {
        let hub = self.hub.as_ref().ok_or(RouterConfigError::NoHub)?;
        if self.regions.is_empty() {
            return Err(RouterConfigError::NoRegions);
        }
        for (key, value) in [
            ("reconnect_delay_secs", self.reconnect_delay_secs),
            ("check_interval_secs", self.check_interval_secs),
            ("http_timeout_secs", self.http_timeout_secs),
        ] {
            if value == 0 {
                return Err(RouterConfigError::Zero { key });
            }
        }
        let mut seen = BTreeSet::new();
        for e in &self.exchanges {
            if e.is_empty() || e.starts_with("amq.") {
                return Err(RouterConfigError::BadExchanges(format!(
                    "{e:?} cannot be declared (empty, or reserved amq.*)"
                )));
            }
            if !seen.insert(e) {
                return Err(RouterConfigError::BadExchanges(format!(
                    "{e:?} is listed twice"
                )));
            }
        }
        if self.exchanges.is_empty() {
            return Err(RouterConfigError::BadExchanges("the list is empty".into()));
        }
        let hub = broker("router.hub", hub)?;
        let mut regions = Vec::with_capacity(self.regions.len());
        for (i, r) in self.regions.iter().enumerate() {
            regions.push(broker(&format!("router.regions[{i}]"), r)?);
        }
        let keys: Vec<String> = std::iter::once("router.hub".to_owned())
            .chain((0..regions.len()).map(|i| format!("router.regions[{i}]")))
            .collect();
        let all: Vec<&Broker> = std::iter::once(&hub).chain(regions.iter()).collect();
        for (i, b) in all.iter().enumerate() {
            for (j, earlier) in all[..i].iter().enumerate() {
                if b.name == earlier.name {
                    return Err(RouterConfigError::DuplicateName {
                        key: keys[i].clone(),
                        name: b.name.clone(),
                    });
                }
                let same = if b.management == earlier.management {
                    Some(format!("management {}", b.management))
                } else if amqp_endpoint(&b.amqp) == amqp_endpoint(&earlier.amqp) {
                    Some(format!("amqp {}", amqp_endpoint(&b.amqp)))
                } else {
                    None
                };
                if let Some(what) = same {
                    return Err(RouterConfigError::SameBroker {
                        key: keys[i].clone(),
                        other: keys[j].clone(),
                        what,
                    });
                }
            }
        }
        Ok(Star {
            hub,
            regions,
            exchanges: self.exchanges.clone(),
            reconnect_delay: Duration::from_secs(self.reconnect_delay_secs),
            check_interval: Duration::from_secs(self.check_interval_secs),
            metrics_listen: self.metrics_listen,
            http_timeout: Duration::from_secs(self.http_timeout_secs),
        })
    }
}

/// `host:port/vhost` of an AMQP URI that parsed before.
fn amqp_endpoint(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or(""),
            u.port().unwrap_or(5672),
            u.path()
        ),
        Err(_) => uri.to_owned(),
    }
}

fn broker(key: &str, b: &BrokerConfig) -> Result<Broker, RouterConfigError> {
    if b.name.is_empty()
        || !b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RouterConfigError::BadName {
            key: key.into(),
            name: b.name.clone(),
        });
    }
    let bad_amqp = |reason: String| RouterConfigError::BadAmqp {
        key: key.into(),
        reason,
    };
    let amqp = Url::parse(&b.amqp).map_err(|e| bad_amqp(format!("{:?}: {e}", b.amqp)))?;
    if !matches!(amqp.scheme(), "amqp" | "amqps") || amqp.host_str().is_none_or(str::is_empty) {
        return Err(bad_amqp(format!(
            "{:?} is not amqp://user:password@host:port/vhost",
            b.amqp
        )));
    }
    // RabbitMQ's URI spec: no path is the default vhost "/", otherwise the
    // path (percent-decoded, `%2f` for "/") names it.
    let vhost = match amqp.path() {
        "" | "/" => "/".to_owned(),
        p => percent_encoding::percent_decode_str(&p[1..])
            .decode_utf8()
            .map_err(|_| bad_amqp(format!("{:?}: the vhost is not UTF-8", b.amqp)))?
            .into_owned(),
    };
    let bad_mgmt = |reason: String| RouterConfigError::BadManagement {
        key: key.into(),
        reason,
    };
    let management =
        Url::parse(&b.management).map_err(|e| bad_mgmt(format!("{:?}: {e}", b.management)))?;
    if management.scheme() == "https" {
        // The HTTP client is built without TLS (as for the rest of the
        // workspace): say so rather than fail on the first call.
        return Err(bad_mgmt(format!(
            "{:?}: https is not supported by this build; use http (on a private network or through a local TLS proxy)",
            b.management
        )));
    }
    if management.scheme() != "http" || management.host_str().is_none_or(str::is_empty) {
        return Err(bad_mgmt(format!(
            "{:?} is not http://host:port",
            b.management
        )));
    }
    Ok(Broker {
        name: b.name.clone(),
        amqp: b.amqp.clone(),
        vhost,
        management,
        user: b.user.clone(),
        password: b.password.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn broker_config(name: &str, port: u16) -> BrokerConfig {
        BrokerConfig {
            name: name.into(),
            amqp: format!("amqp://guest:guest@127.0.0.2:{port}/%2f"),
            management: format!("http://127.0.0.2:{}", port + 10_000),
            user: "guest".into(),
            password: "guest".into(),
        }
    }

    fn config() -> RouterConfig {
        RouterConfig {
            hub: Some(broker_config("hub", 5000)),
            regions: vec![broker_config("east", 5001), broker_config("west", 5002)],
            ..RouterConfig::default()
        }
    }

    #[test]
    fn a_good_star_validates() {
        let star = config().validate().unwrap();
        assert_eq!(star.hub.vhost, "/");
        assert_eq!(star.regions.len(), 2);
        assert_eq!(
            star.exchanges,
            ["postmesh.paths", "postmesh.postoffice"],
            "the postoffice's exchanges by default"
        );
        let names: Vec<&str> = star.brokers().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["hub", "east", "west"]);
    }

    #[test]
    fn vhosts_come_from_the_amqp_path() {
        let mut c = config();
        c.regions[0].amqp = "amqp://u:p@h:1/prod%2Feu".into();
        c.regions[1].amqp = "amqp://u:p@h2:1".into();
        let star = c.validate().unwrap();
        assert_eq!(star.regions[0].vhost, "prod/eu");
        assert_eq!(star.regions[1].vhost, "/");
    }

    #[test]
    fn bad_configurations_name_the_key() {
        type Change = Box<dyn Fn(&mut RouterConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.hub = None), "router.hub is missing"),
            (Box::new(|c| c.regions.clear()), "router.regions is empty"),
            (
                Box::new(|c| c.regions[1].name = "east".into()),
                "router.regions[1].name \"east\" is used twice",
            ),
            (
                Box::new(|c| c.regions[0].name = "ea st".into()),
                "router.regions[0].name",
            ),
            (
                Box::new(|c| c.regions[0].amqp = "http://x".into()),
                "router.regions[0].amqp",
            ),
            (
                Box::new(|c| c.hub.as_mut().unwrap().management = "nope".into()),
                "router.hub.management",
            ),
            (
                Box::new(|c| c.regions[0].management = "https://east:15671".into()),
                "https is not supported",
            ),
            (
                Box::new(|c| c.regions[1].management = c.regions[0].management.clone()),
                "router.regions[1]: the same broker as router.regions[0]",
            ),
            (
                Box::new(|c| c.regions[1].amqp = c.hub.as_ref().unwrap().amqp.clone()),
                "router.regions[1]: the same broker as router.hub",
            ),
            (
                Box::new(|c| c.exchanges = vec!["a".into(), "a".into()]),
                "listed twice",
            ),
            (
                Box::new(|c| c.exchanges = vec!["amq.topic".into()]),
                "reserved",
            ),
            (
                Box::new(|c| c.check_interval_secs = 0),
                "router.check_interval_secs must be at least 1",
            ),
        ];
        for (change, expected) in cases {
            let mut c = config();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
    }
}
