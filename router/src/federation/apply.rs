//! Makes every broker hold what the plan says, changing only what differs.
//!
//! For each broker: read its current definitions ([`read`]), compare them
//! with its part of the plan ([`diff`], pure), then make the changes in an
//! order that never leaves a half-set link: exchanges, then upstreams, then
//! the upstream set naming them, then the policy that applies the set, and
//! last the deletion of upstreams the set no longer names. Run again, it
//! finds nothing to change.
//!
//! Before changing anything, the cluster names of all the brokers that
//! answered are compared. Federation's loop detection keys on them, so two
//! brokers sharing one would silently drop each other's messages. The
//! router does not rename a broker (`PUT /api/cluster-name`): the name is
//! part of the broker's own configuration (`cluster_name` in
//! `rabbitmq.conf`, which a broker that lost its data keeps, while a name
//! set over the API would be lost with the data); it refuses to configure
//! the brokers concerned and says which they are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures_util::future::join_all;

use super::management::{ExchangeDef, ExchangeInfo, Management, ManagementError, PolicyInfo};
use super::plan::{BrokerPlan, POLICY, Plan, SetMember, UPSTREAM_SET};

/// The management API's name for upstream parameters.
pub const UPSTREAM_COMPONENT: &str = "federation-upstream";
/// The management API's name for upstream-set parameters.
pub const UPSTREAM_SET_COMPONENT: &str = "federation-upstream-set";

/// Why a broker could not be brought in line with the plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error(transparent)]
    Management(#[from] ManagementError),
    /// The exchange exists with other properties. Fixing it means deleting
    /// it (and its bindings), which is left to a person.
    #[error(
        "exchange {exchange} exists as {found}, not as a durable topic exchange without arguments; \
         delete it (with its bindings) or fix the configuration"
    )]
    ExchangeMismatch { exchange: String, found: String },
    /// Several brokers share a cluster name.
    #[error(
        "cluster_name {cluster_name:?} is shared by {}: federation would drop their messages as loops; \
         give each broker its own cluster_name (rabbitmq.conf) and restart it",
        brokers.join(", ")
    )]
    ClusterNameShared {
        cluster_name: String,
        brokers: Vec<String>,
    },
}

impl ApplyError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Management(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// One change made (or, in a dry run, to make) on a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    DeclareExchange { name: String },
    CreateUpstream { name: String, max_hops: u8 },
    UpdateUpstream { name: String, max_hops: u8 },
    SetUpstreamSet { members: Vec<String> },
    SetPolicy,
    DeleteUpstream { name: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::DeclareExchange { name } => write!(f, "declared exchange {name}"),
            Change::CreateUpstream { name, max_hops } => {
                write!(f, "created upstream {name} (max-hops {max_hops})")
            }
            Change::UpdateUpstream { name, max_hops } => {
                write!(f, "updated upstream {name} (max-hops {max_hops})")
            }
            Change::SetUpstreamSet { members } => {
                write!(
                    f,
                    "set upstream set {UPSTREAM_SET} to [{}]",
                    members.join(", ")
                )
            }
            Change::SetPolicy => write!(f, "set policy {POLICY}"),
            Change::DeleteUpstream { name } => write!(f, "deleted upstream {name}"),
        }
    }
}

/// What a broker holds now, of what the plan is about.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub cluster_name: String,
    /// The planned exchanges, `None` where missing.
    pub exchanges: BTreeMap<String, Option<ExchangeInfo>>,
    /// Every upstream on the broker's vhost, by name.
    pub upstreams: BTreeMap<String, serde_json::Value>,
    /// The `postmesh` upstream set, if it exists.
    pub upstream_set: Option<serde_json::Value>,
    /// The `postmesh-federation` policy, if it exists.
    pub policy: Option<PolicyInfo>,
}

/// The changes a broker needs, and what the router noticed but cannot fix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
}

/// Reads what `plan` is about from the broker.
pub async fn read(m: &Management, plan: &BrokerPlan) -> Result<Current, ManagementError> {
    let overview = m.overview().await?;
    let mut exchanges = BTreeMap::new();
    for x in &plan.exchanges {
        exchanges.insert(x.clone(), m.exchange(x).await?);
    }
    let upstreams = m
        .parameters(UPSTREAM_COMPONENT)
        .await?
        .into_iter()
        .map(|p| (p.name, p.value))
        .collect();
    let upstream_set = m
        .parameters(UPSTREAM_SET_COMPONENT)
        .await?
        .into_iter()
        .find(|p| p.name == UPSTREAM_SET)
        .map(|p| p.value);
    let policy = m.policy(POLICY).await?;
    Ok(Current {
        cluster_name: overview.cluster_name,
        exchanges,
        upstreams,
        upstream_set,
        policy,
    })
}

/// The changes that make `current` match `plan`, in the order to make
/// them. Pure: the unit tests drive it with made-up definitions.
pub fn diff(plan: &BrokerPlan, current: &Current) -> Result<Diff, ApplyError> {
    let mut d = Diff::default();
    let wanted = ExchangeDef::postoffice();
    for x in &plan.exchanges {
        match current.exchanges.get(x).and_then(Option::as_ref) {
            None => d.changes.push(Change::DeclareExchange { name: x.clone() }),
            Some(info) if info.def != wanted => {
                return Err(ApplyError::ExchangeMismatch {
                    exchange: x.clone(),
                    found: describe(&info.def),
                });
            }
            Some(info) => match &info.policy {
                Some(p) if p != POLICY => d.warnings.push(format!(
                    "exchange {x} follows policy {p}, not {POLICY}: it is not federated \
                     (a policy of higher priority matches it)"
                )),
                _ => {}
            },
        }
    }
    for (name, up) in &plan.upstreams {
        let value = serde_json::to_value(up).unwrap_or_default();
        match current.upstreams.get(name) {
            None => d.changes.push(Change::CreateUpstream {
                name: name.clone(),
                max_hops: up.max_hops,
            }),
            Some(v) if *v != value => d.changes.push(Change::UpdateUpstream {
                name: name.clone(),
                max_hops: up.max_hops,
            }),
            Some(_) => {}
        }
    }
    let set_value = serde_json::to_value(&plan.upstream_set).unwrap_or_default();
    if current.upstream_set.as_ref() != Some(&set_value) {
        d.changes.push(Change::SetUpstreamSet {
            members: plan
                .upstream_set
                .iter()
                .map(|m| m.upstream.clone())
                .collect(),
        });
    }
    let policy_matches = current.policy.as_ref().is_some_and(|p| {
        p.pattern == plan.policy.pattern
            && p.apply_to == plan.policy.apply_to
            && p.priority == plan.policy.priority
            && p.definition == plan.policy.definition
    });
    if !policy_matches {
        d.changes.push(Change::SetPolicy);
    }
    // Upstreams the router created earlier (its set named them) that the
    // plan no longer has: a region that left the configuration.
    let ours: BTreeSet<String> = current
        .upstream_set
        .as_ref()
        .and_then(|v| serde_json::from_value::<Vec<SetMember>>(v.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.upstream)
        .collect();
    for name in ours {
        if !plan.upstreams.contains_key(&name) && current.upstreams.contains_key(&name) {
            d.changes.push(Change::DeleteUpstream { name });
        }
    }
    Ok(d)
}

fn describe(def: &ExchangeDef) -> String {
    format!(
        "{} {}{}{}{}",
        if def.durable { "durable" } else { "transient" },
        def.kind,
        if def.auto_delete { ", auto-delete" } else { "" },
        if def.internal { ", internal" } else { "" },
        if def.arguments.is_empty() {
            String::new()
        } else {
            format!(
                ", arguments {}",
                serde_json::Value::Object(def.arguments.clone())
            )
        }
    )
}

/// Makes `changes` on the broker, in order.
async fn execute(m: &Management, plan: &BrokerPlan, changes: &[Change]) -> Result<(), ApplyError> {
    for c in changes {
        match c {
            Change::DeclareExchange { name } => {
                m.declare_exchange(name, &ExchangeDef::postoffice()).await?
            }
            Change::CreateUpstream { name, .. } | Change::UpdateUpstream { name, .. } => {
                let value = serde_json::to_value(&plan.upstreams[name]).unwrap_or_default();
                m.put_parameter(UPSTREAM_COMPONENT, name, &value).await?
            }
            Change::SetUpstreamSet { .. } => {
                let value = serde_json::to_value(&plan.upstream_set).unwrap_or_default();
                m.put_parameter(UPSTREAM_SET_COMPONENT, UPSTREAM_SET, &value)
                    .await?
            }
            Change::SetPolicy => m.put_policy(POLICY, &plan.policy).await?,
            Change::DeleteUpstream { name } => m.delete_parameter(UPSTREAM_COMPONENT, name).await?,
        }
    }
    Ok(())
}

/// What happened on one broker.
#[derive(Debug)]
pub struct Outcome {
    pub broker: String,
    /// Its cluster name, when it answered.
    pub cluster_name: Option<String>,
    pub result: Result<Diff, ApplyError>,
}

/// Brings every broker in line with the plan (`clients[i]` speaks to
/// `plan.brokers[i]`); with `dry_run`, only says what it would change.
/// Brokers are handled concurrently and independently: one that is down
/// or refuses does not keep the others from being configured.
pub async fn apply(plan: &Plan, clients: &[Management], dry_run: bool) -> Vec<Outcome> {
    let reads = join_all(
        plan.brokers
            .iter()
            .zip(clients)
            .map(|(b, m)| async move { read(m, b).await }),
    )
    .await;
    let mut by_cluster: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (b, r) in plan.brokers.iter().zip(&reads) {
        if let Ok(c) = r {
            by_cluster
                .entry(c.cluster_name.as_str())
                .or_default()
                .push(b.broker.name.clone());
        }
    }
    let shared: BTreeMap<&str, Vec<String>> = by_cluster
        .into_iter()
        .filter(|(_, brokers)| brokers.len() > 1)
        .collect();
    let work = plan
        .brokers
        .iter()
        .zip(clients)
        .zip(&reads)
        .map(|((b, m), r)| {
            let shared = &shared;
            async move {
                let cluster_name = r.as_ref().ok().map(|c| c.cluster_name.clone());
                let result = match r {
                    Err(e) => Err(ApplyError::Management(e.clone())),
                    Ok(c) => match shared.get(c.cluster_name.as_str()) {
                        Some(brokers) => Err(ApplyError::ClusterNameShared {
                            cluster_name: c.cluster_name.clone(),
                            brokers: brokers.clone(),
                        }),
                        None => match diff(b, c) {
                            Ok(d) if dry_run => Ok(d),
                            Ok(d) => execute(m, b, &d.changes).await.map(|()| d),
                            Err(e) => Err(e),
                        },
                    },
                };
                Outcome {
                    broker: b.broker.name.clone(),
                    cluster_name,
                    result,
                }
            }
        });
    join_all(work).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::config::RouterConfig;
    use crate::federation::config::tests::broker_config;
    use crate::federation::plan::plan;

    fn the_plan(regions: usize) -> Plan {
        plan(
            &RouterConfig {
                hub: Some(broker_config("hub", 5000)),
                regions: (0..regions)
                    .map(|i| broker_config(&format!("r{i}"), 5001 + i as u16))
                    .collect(),
                ..RouterConfig::default()
            }
            .validate()
            .unwrap(),
        )
    }

    /// What a broker holds once the plan is applied to it.
    fn applied(b: &BrokerPlan) -> Current {
        Current {
            cluster_name: b.broker.name.clone(),
            exchanges: b
                .exchanges
                .iter()
                .map(|x| {
                    (
                        x.clone(),
                        Some(ExchangeInfo {
                            def: ExchangeDef::postoffice(),
                            policy: Some(POLICY.into()),
                        }),
                    )
                })
                .collect(),
            upstreams: b
                .upstreams
                .iter()
                .map(|(n, u)| (n.clone(), serde_json::to_value(u).unwrap()))
                .collect(),
            upstream_set: Some(serde_json::to_value(&b.upstream_set).unwrap()),
            policy: Some(PolicyInfo {
                name: POLICY.into(),
                pattern: b.policy.pattern.clone(),
                apply_to: b.policy.apply_to.clone(),
                priority: b.policy.priority,
                definition: b.policy.definition.clone(),
            }),
        }
    }

    #[test]
    fn an_empty_broker_gets_everything_in_order() {
        let p = the_plan(2);
        let d = diff(&p.brokers[0], &Current::default()).unwrap();
        let lines: Vec<String> = d.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "declared exchange postmesh.paths",
                "declared exchange postmesh.postoffice",
                "created upstream r0 (max-hops 1)",
                "created upstream r1 (max-hops 1)",
                "set upstream set postmesh to [r0, r1]",
                "set policy postmesh-federation",
            ]
        );
    }

    #[test]
    fn an_applied_broker_needs_nothing() {
        let p = the_plan(3);
        for b in &p.brokers {
            assert_eq!(
                diff(b, &applied(b)).unwrap(),
                Diff::default(),
                "{}",
                b.broker.name
            );
        }
    }

    #[test]
    fn a_changed_upstream_is_updated_and_foreign_ones_are_left_alone() {
        let p = the_plan(1);
        let b = &p.brokers[1];
        let mut c = applied(b);
        c.upstreams.get_mut("hub").unwrap()["max-hops"] = 1.into();
        c.upstreams
            .insert("elsewhere".into(), serde_json::json!({"uri": "amqp://x"}));
        let d = diff(b, &c).unwrap();
        assert_eq!(
            d.changes,
            [Change::UpdateUpstream {
                name: "hub".into(),
                max_hops: 2
            }]
        );
    }

    #[test]
    fn a_region_that_left_is_unlinked_after_the_set_no_longer_names_it() {
        let before = the_plan(3);
        let after = the_plan(2);
        let d = diff(&after.brokers[0], &applied(&before.brokers[0])).unwrap();
        assert_eq!(
            d.changes,
            [
                Change::SetUpstreamSet {
                    members: vec!["r0".into(), "r1".into()]
                },
                Change::DeleteUpstream { name: "r2".into() },
            ]
        );
    }

    #[test]
    fn adding_a_region_touches_the_hub_and_the_new_region_only() {
        let before = the_plan(2);
        let after = the_plan(3);
        let hub = diff(&after.brokers[0], &applied(&before.brokers[0])).unwrap();
        assert_eq!(
            hub.changes,
            [
                Change::CreateUpstream {
                    name: "r2".into(),
                    max_hops: 1
                },
                Change::SetUpstreamSet {
                    members: vec!["r0".into(), "r1".into(), "r2".into()]
                },
            ]
        );
        for i in 1..3 {
            assert!(
                diff(&after.brokers[i], &applied(&before.brokers[i]))
                    .unwrap()
                    .changes
                    .is_empty()
            );
        }
    }

    #[test]
    fn an_exchange_declared_otherwise_is_refused_not_replaced() {
        let p = the_plan(1);
        let b = &p.brokers[0];
        let mut c = applied(b);
        c.exchanges.insert(
            "postmesh.paths".into(),
            Some(ExchangeInfo {
                def: ExchangeDef {
                    kind: "fanout".into(),
                    ..ExchangeDef::postoffice()
                },
                policy: None,
            }),
        );
        let e = diff(b, &c).unwrap_err().to_string();
        assert!(
            e.contains("exchange postmesh.paths exists as durable fanout"),
            "{e}"
        );
    }

    #[test]
    fn a_policy_that_wins_over_ours_is_reported() {
        let p = the_plan(1);
        let b = &p.brokers[1];
        let mut c = applied(b);
        c.exchanges
            .get_mut("postmesh.paths")
            .unwrap()
            .as_mut()
            .unwrap()
            .policy = Some("ha-all".into());
        let d = diff(b, &c).unwrap();
        assert!(d.changes.is_empty());
        assert!(
            d.warnings[0].contains("follows policy ha-all"),
            "{:?}",
            d.warnings
        );
    }
}
