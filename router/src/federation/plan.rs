//! The plan: what every broker of the star must hold, computed from the
//! configuration alone (no I/O), so that it can be tested, printed and
//! counted without a broker.
//!
//! # Why these definitions
//! - **Exchanges** are declared on every broker exactly as the postoffice
//!   declares them (`amqp.rs`: durable topic, not auto-delete, not
//!   internal, no arguments). A declaration that differs in any of these
//!   is refused by RabbitMQ, and the postoffice would then fail to start.
//! - **Upstreams**: each region has one, pointing at the hub; the hub has
//!   one per region. That is 2N upstreams for N regions, where a full mesh
//!   needs N(N-1).
//! - **`max-hops`**: a message published in east reaches west in two hops
//!   (east → hub → west), so a region's upstream (the hub) has
//!   `max-hops` 2; the hub only pulls what was published in a region, one
//!   hop, so its upstreams have 1. Federation also drops a message whose
//!   `x-received-from` already names the receiving broker's cluster, so
//!   nothing comes back to the region it was published in, and every other
//!   region receives it once.
//! - **Bindings decide what travels.** A federation link consumes from a
//!   queue on its upstream bound with the downstream exchange's bindings
//!   (propagated over up to `max-hops`). A region where nothing is bound
//!   for a routing key receives nothing for it.
//! - **The upstream set** `postmesh` lists the upstreams of this plan, and
//!   the policy applies that set, not `all`: upstreams somebody else
//!   defined on the same broker are neither used nor touched. The set is
//!   also how the router recognises upstreams it created and must delete
//!   when a region leaves the configuration.
//! - **Upstreams acknowledge on confirm** (`ack-mode: on-confirm`, the
//!   safe mode): a message leaves the upstream's link queue only once the
//!   downstream broker has it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{Broker, Star};

/// The upstream set every postmesh policy applies.
pub const UPSTREAM_SET: &str = "postmesh";
/// The policy that federates the exchanges.
pub const POLICY: &str = "postmesh-federation";
/// A region's upstream (the hub): east → hub → west is two hops.
pub const REGION_MAX_HOPS: u8 = 2;
/// The hub's upstreams (the regions): one hop is enough.
pub const HUB_MAX_HOPS: u8 = 1;
/// The policy's priority. Only one policy applies to an exchange; a higher
/// priority policy matching the same exchanges would switch federation
/// off for them, which `apply` reports.
pub const POLICY_PRIORITY: i64 = 10;

/// Which side of the star a broker is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Hub,
    Region,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::Region => "region",
        }
    }
}

/// The way messages flow over a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The hub pulls from a region.
    RegionToHub,
    /// A region pulls from the hub.
    HubToRegion,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::RegionToHub => "region→hub",
            Direction::HubToRegion => "hub→region",
        }
    }
}

/// An upstream parameter's value, exactly as PUT to and read back from the
/// management API (RabbitMQ stores it as given, so equality is the diff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub uri: String,
    #[serde(rename = "max-hops")]
    pub max_hops: u8,
    #[serde(rename = "reconnect-delay")]
    pub reconnect_delay: u64,
    #[serde(rename = "ack-mode")]
    pub ack_mode: String,
}

/// One entry of an upstream set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    pub upstream: String,
}

/// A policy as the management API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub pattern: String,
    #[serde(rename = "apply-to")]
    pub apply_to: String,
    pub priority: i64,
    pub definition: BTreeMap<String, serde_json::Value>,
}

/// What one broker must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPlan {
    pub broker: Broker,
    pub role: Role,
    /// Durable topic exchanges, as the postoffice declares them.
    pub exchanges: Vec<String>,
    /// Upstreams by name (the name of the broker they point at).
    pub upstreams: BTreeMap<String, Upstream>,
    /// The members of the `postmesh` upstream set, sorted.
    pub upstream_set: Vec<SetMember>,
    /// The `postmesh-federation` policy.
    pub policy: Policy,
}

/// One federation link: `downstream` pulls `exchange` from `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    pub downstream: String,
    pub upstream: String,
    pub exchange: String,
    pub direction: Direction,
}

impl Link {
    /// `east→hub postmesh.paths`: the way messages go.
    pub fn label(&self) -> String {
        format!("{}→{} {}", self.upstream, self.downstream, self.exchange)
    }
}

/// What the whole star must hold: the hub first, then the regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub brokers: Vec<BrokerPlan>,
}

/// Computes the plan of a checked configuration.
pub fn plan(star: &Star) -> Plan {
    let delay = star.reconnect_delay.as_secs().max(1);
    let upstream = |to: &Broker, max_hops: u8| Upstream {
        uri: to.amqp.clone(),
        max_hops,
        reconnect_delay: delay,
        ack_mode: "on-confirm".into(),
    };
    let policy = Policy {
        pattern: exchanges_pattern(&star.exchanges),
        apply_to: "exchanges".into(),
        priority: POLICY_PRIORITY,
        definition: BTreeMap::from([(
            "federation-upstream-set".to_owned(),
            serde_json::Value::String(UPSTREAM_SET.into()),
        )]),
    };
    let broker_plan =
        |broker: &Broker, role: Role, upstreams: BTreeMap<String, Upstream>| BrokerPlan {
            broker: broker.clone(),
            role,
            exchanges: star.exchanges.clone(),
            upstream_set: upstreams
                .keys()
                .map(|n| SetMember {
                    upstream: n.clone(),
                })
                .collect(),
            upstreams,
            policy: policy.clone(),
        };
    let hub_upstreams = star
        .regions
        .iter()
        .map(|r| (r.name.clone(), upstream(r, HUB_MAX_HOPS)))
        .collect();
    let mut brokers = vec![broker_plan(&star.hub, Role::Hub, hub_upstreams)];
    for r in &star.regions {
        let ups = BTreeMap::from([(star.hub.name.clone(), upstream(&star.hub, REGION_MAX_HOPS))]);
        brokers.push(broker_plan(r, Role::Region, ups));
    }
    Plan { brokers }
}

/// `^(postmesh\.paths|postmesh\.postoffice)$`: exactly these exchanges.
fn exchanges_pattern(exchanges: &[String]) -> String {
    let names: Vec<String> = exchanges.iter().map(|e| regex::escape(e)).collect();
    format!("^({})$", names.join("|"))
}

impl Plan {
    /// Every link the plan sets up, by downstream broker.
    pub fn links(&self) -> Vec<Link> {
        let mut links = Vec::new();
        for b in &self.brokers {
            let direction = match b.role {
                Role::Hub => Direction::RegionToHub,
                Role::Region => Direction::HubToRegion,
            };
            for up in b.upstreams.keys() {
                for x in &b.exchanges {
                    links.push(Link {
                        downstream: b.broker.name.clone(),
                        upstream: up.clone(),
                        exchange: x.clone(),
                        direction,
                    });
                }
            }
        }
        links
    }

    /// The upstreams of every broker, counted.
    pub fn upstream_count(&self) -> usize {
        self.brokers.iter().map(|b| b.upstreams.len()).sum()
    }

    /// The broker plan named `name`.
    pub fn broker(&self, name: &str) -> Option<&BrokerPlan> {
        self.brokers.iter().find(|b| b.broker.name == name)
    }
}

/// Upstreams a star needs for `regions` regions: one per region on the
/// hub and one on each region (2N).
pub fn star_upstreams(regions: usize) -> usize {
    2 * regions
}

/// Upstreams a full mesh of `regions` regions needs: each pulls from every
/// other (N(N-1)).
pub fn full_mesh_upstreams(regions: usize) -> usize {
    regions * regions.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::config::RouterConfig;
    use crate::federation::config::tests::broker_config;

    fn star(regions: usize) -> Star {
        RouterConfig {
            hub: Some(broker_config("hub", 5000)),
            regions: (0..regions)
                .map(|i| broker_config(&format!("r{i}"), 5001 + i as u16))
                .collect(),
            ..RouterConfig::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn regions_pull_from_the_hub_with_two_hops_and_the_hub_from_each_region_with_one() {
        let p = plan(&star(2));
        let hub = p.broker("hub").unwrap();
        assert_eq!(hub.role, Role::Hub);
        assert_eq!(hub.upstreams.keys().collect::<Vec<_>>(), ["r0", "r1"]);
        assert!(hub.upstreams.values().all(|u| u.max_hops == HUB_MAX_HOPS));
        assert_eq!(
            hub.upstreams["r0"].uri,
            "amqp://guest:guest@127.0.0.2:5001/%2f"
        );
        let r0 = p.broker("r0").unwrap();
        assert_eq!(r0.upstreams.keys().collect::<Vec<_>>(), ["hub"]);
        assert_eq!(r0.upstreams["hub"].max_hops, REGION_MAX_HOPS);
        assert_eq!(
            r0.upstreams["hub"].uri,
            "amqp://guest:guest@127.0.0.2:5000/%2f"
        );
        assert_eq!(r0.upstreams["hub"].reconnect_delay, 1);
        assert_eq!(
            r0.upstream_set,
            [SetMember {
                upstream: "hub".into()
            }]
        );
        for b in &p.brokers {
            assert_eq!(b.exchanges, ["postmesh.paths", "postmesh.postoffice"]);
            assert_eq!(
                b.policy.pattern,
                r"^(postmesh\.paths|postmesh\.postoffice)$"
            );
            assert_eq!(b.policy.definition["federation-upstream-set"], "postmesh");
        }
    }

    #[test]
    fn the_policy_pattern_matches_exactly_the_exchanges() {
        let re = regex::Regex::new(&exchanges_pattern(&["a.b".into(), "c+".into()])).unwrap();
        assert!(re.is_match("a.b") && re.is_match("c+"));
        assert!(!re.is_match("axb") && !re.is_match("a.b.c") && !re.is_match("cc"));
    }

    #[test]
    fn links_run_both_ways_per_exchange() {
        let p = plan(&star(2));
        let labels: Vec<String> = p
            .links()
            .iter()
            .map(|l| format!("{} {}", l.label(), l.direction.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                "r0→hub postmesh.paths region→hub",
                "r0→hub postmesh.postoffice region→hub",
                "r1→hub postmesh.paths region→hub",
                "r1→hub postmesh.postoffice region→hub",
                "hub→r0 postmesh.paths hub→region",
                "hub→r0 postmesh.postoffice hub→region",
                "hub→r1 postmesh.paths hub→region",
                "hub→r1 postmesh.postoffice hub→region",
            ]
        );
    }

    /// The reason for the star: links grow with N, not N².
    #[test]
    fn star_against_full_mesh_for_3_10_and_50_regions() {
        // (regions, star upstreams, full mesh upstreams)
        let expected = [(3, 6, 6), (10, 20, 90), (50, 100, 2450)];
        for (n, star_ups, mesh_ups) in expected {
            let p = plan(&star(n));
            assert_eq!(p.upstream_count(), star_ups, "{n} regions");
            assert_eq!(star_upstreams(n), star_ups);
            assert_eq!(full_mesh_upstreams(n), mesh_ups);
            // Links are per exchange: two exchanges double both.
            assert_eq!(p.links().len(), 2 * star_ups);
            assert_eq!(p.brokers.len(), n + 1);
        }
    }

    #[test]
    fn adding_a_region_adds_one_upstream_on_the_hub_and_one_on_the_region() {
        let before = plan(&star(2));
        let after = plan(&star(3));
        for b in before.brokers.iter().filter(|b| b.role == Role::Region) {
            assert_eq!(
                after.broker(&b.broker.name),
                Some(b),
                "the other regions are unchanged"
            );
        }
        assert_eq!(after.broker("hub").unwrap().upstreams.len(), 3);
        assert_eq!(after.broker("r2").unwrap().upstreams.len(), 1);
    }

    #[test]
    fn upstream_values_serialise_as_rabbitmq_names_them() {
        let p = plan(&star(1));
        let v = serde_json::to_value(&p.brokers[1].upstreams["hub"]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"uri": "amqp://guest:guest@127.0.0.2:5000/%2f",
                "max-hops": 2, "reconnect-delay": 1, "ack-mode": "on-confirm"})
        );
    }
}
