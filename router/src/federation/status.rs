//! The state of every planned link, read from the brokers themselves (so
//! `postmesh router status` works whether or not a router runs).
//!
//! A link is seen from its downstream broker (`GET /api/federation-links`);
//! the messages waiting for it sit in a queue on its upstream broker,
//! named after the exchange and the downstream's cluster name. While the
//! downstream broker is unreachable its cluster name comes from an earlier
//! look, if any, so that a supervisor keeps counting what piles up for a
//! hub that is down.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::future::join_all;

use super::management::{FederationLink, Management, ManagementError, link_queue};
use super::plan::{Link, Plan};

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkState {
    /// Messages flow.
    Running,
    /// Connecting.
    Starting,
    /// The link failed (its upstream is down or refuses); federation
    /// retries after the upstream's `reconnect-delay`.
    Error,
    /// The downstream has no such link: not applied, or lost with the
    /// broker's definitions.
    Missing,
    /// The downstream broker's management API does not answer.
    Unreachable,
    /// Any other state RabbitMQ reports (`shutdown`).
    Other,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Running => "running",
            LinkState::Starting => "starting",
            LinkState::Error => "error",
            LinkState::Missing => "missing",
            LinkState::Unreachable => "unreachable",
            LinkState::Other => "other",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [LinkState; 6] = [
        LinkState::Running,
        LinkState::Starting,
        LinkState::Error,
        LinkState::Missing,
        LinkState::Unreachable,
        LinkState::Other,
    ];
}

/// One planned link and what the brokers say about it.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub link: Link,
    pub state: LinkState,
    /// Messages in the link's queue on the upstream broker; `None` when
    /// that cannot be read (a broker down, the queue not declared yet).
    pub waiting: Option<u64>,
    pub error: Option<String>,
}

/// Cluster names of the brokers, by broker name, as last seen.
pub type ClusterNames = BTreeMap<String, String>;

/// Reads the state of every link of the plan (`clients[i]` speaks to
/// `plan.brokers[i]`). `clusters` remembers cluster names across calls.
pub async fn status(
    plan: &Plan,
    clients: &[Management],
    clusters: &mut ClusterNames,
) -> Vec<LinkStatus> {
    let seen = join_all(clients.iter().map(|m| async move {
        let overview = m.overview().await?;
        let links = m.federation_links().await?;
        Ok::<_, ManagementError>((overview.cluster_name, links))
    }))
    .await;
    let mut links_of: BTreeMap<&str, Result<Vec<FederationLink>, ManagementError>> =
        BTreeMap::new();
    for (b, r) in plan.brokers.iter().zip(seen) {
        let name = b.broker.name.as_str();
        match r {
            Ok((cluster, links)) => {
                clusters.insert(name.to_owned(), cluster);
                links_of.insert(name, Ok(links));
            }
            Err(e) => {
                links_of.insert(name, Err(e));
            }
        }
    }
    let client_of: BTreeMap<&str, &Management> = plan
        .brokers
        .iter()
        .map(|b| b.broker.name.as_str())
        .zip(clients)
        .collect();
    let planned = plan.links();
    let clusters_now: &ClusterNames = clusters;
    let waiting = join_all(planned.iter().map(|l| {
        let upstream = client_of.get(l.upstream.as_str()).copied();
        async move { waiting_for(l, upstream?, clusters_now).await }
    }))
    .await;
    planned
        .into_iter()
        .zip(waiting)
        .map(|(link, waiting)| {
            let (state, error) = match links_of.get(link.downstream.as_str()) {
                Some(Ok(links)) => {
                    let mine: Vec<&FederationLink> = links
                        .iter()
                        .filter(|f| {
                            f.upstream == link.upstream
                                && f.exchange.as_deref() == Some(link.exchange.as_str())
                        })
                        .collect();
                    match mine.iter().find(|f| f.status == "running").or(mine.first()) {
                        None => (LinkState::Missing, None),
                        Some(f) => (
                            match f.status.as_str() {
                                "running" => LinkState::Running,
                                "starting" => LinkState::Starting,
                                "error" => LinkState::Error,
                                _ => LinkState::Other,
                            },
                            f.error_text(),
                        ),
                    }
                }
                Some(Err(e)) => (LinkState::Unreachable, Some(e.to_string())),
                None => (LinkState::Unreachable, None),
            };
            LinkStatus {
                link,
                state,
                waiting,
                error,
            }
        })
        .collect()
}

/// Messages waiting for `link` in its queue on the upstream broker.
///
/// The queue is named after the downstream's cluster name. When that name
/// was never seen (the downstream has been unreachable since this process
/// started: a hub that is down), the queue is recognised as the only link
/// queue of the exchange on the upstream that belongs to no other broker
/// known here; in a star, a region's link queues all belong to the hub.
async fn waiting_for(link: &Link, upstream: &Management, clusters: &ClusterNames) -> Option<u64> {
    if let Some(c) = clusters.get(&link.downstream) {
        return upstream
            .queue(&link_queue(&link.exchange, c))
            .await
            .ok()
            .flatten()
            .and_then(|q| q.messages);
    }
    let others: Vec<String> = clusters
        .iter()
        .filter(|(b, _)| **b != link.downstream)
        .map(|(_, c)| link_queue(&link.exchange, c))
        .collect();
    let candidates: Vec<_> = upstream
        .link_queues(&link.exchange)
        .await
        .ok()?
        .into_iter()
        .filter(|q| !others.contains(&q.name))
        .collect();
    match candidates.as_slice() {
        [only] => only.messages,
        _ => None,
    }
}

/// The status as a table: link, direction, state, messages waiting, last
/// error.
pub fn table(statuses: &[LinkStatus]) -> String {
    let rows: Vec<[String; 5]> = statuses
        .iter()
        .map(|s| {
            [
                s.link.label(),
                s.link.direction.as_str().to_owned(),
                s.state.as_str().to_owned(),
                s.waiting.map_or("-".to_owned(), |n| n.to_string()),
                s.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["LINK", "DIRECTION", "STATE", "WAITING", "LAST ERROR"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::plan::Direction;

    #[test]
    fn the_table_lines_up() {
        let s = |up: &str, down: &str, dir, state, waiting, error: Option<&str>| LinkStatus {
            link: Link {
                downstream: down.into(),
                upstream: up.into(),
                exchange: "postmesh.paths".into(),
                direction: dir,
            },
            state,
            waiting,
            error: error.map(String::from),
        };
        let t = table(&[
            s(
                "east",
                "hub",
                Direction::RegionToHub,
                LinkState::Running,
                Some(0),
                None,
            ),
            s(
                "hub",
                "east",
                Direction::HubToRegion,
                LinkState::Error,
                None,
                Some("econnrefused"),
            ),
        ]);
        assert_eq!(
            t,
            "LINK                     DIRECTION   STATE    WAITING  LAST ERROR\n\
             east→hub postmesh.paths  region→hub  running  0        -\n\
             hub→east postmesh.paths  hub→region  error    -        econnrefused\n"
        );
    }
}
