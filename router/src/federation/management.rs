//! A typed client of RabbitMQ's management HTTP API, for what the router
//! reads and writes: the broker's overview, exchanges, parameters
//! (federation upstreams and upstream sets), policies, federation links
//! and queues. Every call has a timeout; nothing here retries (the
//! supervisor decides when to try again).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::Broker;

/// What went wrong talking to one broker's management API.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ManagementError {
    /// Nothing answered (connection refused, DNS, reset).
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Connected, but no answer within the timeout.
    #[error("{url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    /// 401: the user or password is wrong.
    #[error("{url}: login refused (check the management user and password)")]
    Unauthorized { url: String },
    /// 403: the user lacks the `administrator` or `policymaker` tag, or
    /// permissions on the vhost.
    #[error(
        "{url}: forbidden (the management user needs the policymaker or administrator tag and permissions on the vhost)"
    )]
    Forbidden { url: String },
    /// The federation management plugin is not enabled (its endpoints 404).
    #[error("{url}: the rabbitmq_federation_management plugin is not enabled")]
    NoFederation { url: String },
    /// The broker refused the request.
    #[error("{method} {url}: HTTP {status}: {reason}")]
    Refused {
        method: String,
        url: String,
        status: u16,
        reason: String,
    },
    /// The answer was not what the API documents.
    #[error("{url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
}

impl ManagementError {
    /// Whether trying again later may succeed (the broker is down, busy or
    /// restarting) as opposed to a mistake that needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            ManagementError::Unreachable { .. } | ManagementError::Timeout { .. } => true,
            ManagementError::Refused { status, .. } => *status >= 500,
            // A booting broker answers before its plugins are up.
            ManagementError::NoFederation { .. } => true,
            _ => false,
        }
    }
}

/// `GET /api/overview`, the fields the router uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Overview {
    pub cluster_name: String,
    #[serde(default)]
    pub rabbitmq_version: String,
    #[serde(default)]
    pub node: String,
}

/// An exchange as declared (`PUT /api/exchanges/{vhost}/{name}`) and as
/// read back, with the policy that applies to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

impl ExchangeDef {
    /// What `router::amqp` declares: a durable topic exchange without
    /// arguments. Declaring it otherwise would make RabbitMQ refuse one of
    /// the two declarations.
    pub fn postoffice() -> ExchangeDef {
        ExchangeDef {
            kind: "topic".into(),
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: serde_json::Map::new(),
        }
    }
}

/// `GET /api/exchanges/{vhost}/{name}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeInfo {
    #[serde(flatten)]
    pub def: ExchangeDef,
    /// The policy in effect, if any.
    #[serde(default)]
    pub policy: Option<String>,
}

/// A runtime parameter (`/api/parameters/{component}/{vhost}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub value: serde_json::Value,
}

/// A policy as listed by `GET /api/policies/{vhost}`.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to")]
    pub apply_to: String,
    pub priority: i64,
    pub definition: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `GET /api/federation-links/{vhost}`: one link of this (downstream)
/// broker.
#[derive(Debug, Clone, Deserialize)]
pub struct FederationLink {
    /// The upstream's name.
    pub upstream: String,
    /// The downstream exchange.
    #[serde(default)]
    pub exchange: Option<String>,
    /// `starting`, `running`, `error` or `shutdown`.
    pub status: String,
    /// Why the link is in `error`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl FederationLink {
    /// The error as one line of text.
    pub fn error_text(&self) -> Option<String> {
        self.error.as_ref().map(|e| match e {
            serde_json::Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
            other => other.to_string(),
        })
    }
}

/// `GET /api/queues/{vhost}/{name}`, the fields the router uses.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    /// Ready plus unacknowledged. Absent until the broker collected the
    /// queue's first statistics.
    #[serde(default)]
    pub messages: Option<u64>,
}

/// The management API of one broker, for its vhost.
#[derive(Debug, Clone)]
pub struct Management {
    base: Url,
    user: String,
    password: String,
    vhost: String,
    timeout: Duration,
    http: reqwest::Client,
}

impl Management {
    /// A client for `broker`, giving up on every call after `timeout`.
    pub fn new(broker: &Broker, timeout: Duration) -> Management {
        // Building fails only when a TLS backend cannot initialise, and
        // this build has none (configuration refuses https): fall back to
        // a default client rather than fail a command over it.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .unwrap_or_default();
        Management {
            base: broker.management.clone(),
            user: broker.user.clone(),
            password: broker.password.clone(),
            vhost: broker.vhost.clone(),
            timeout,
            http,
        }
    }

    /// `base/api/<segments>`, each segment percent-encoded (`/` becomes
    /// `%2F`, as the vhost `/` must be).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("api").extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<Option<reqwest::Response>, ManagementError> {
        self.call_url(method, self.url(segments), body).await
    }

    async fn call_url(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<reqwest::Response>, ManagementError> {
        let shown = url.to_string();
        let mut req = self
            .http
            .request(method.clone(), url)
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.transport(&shown, e))?;
        match res.status() {
            s if s.is_success() => Ok(Some(res)),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED => Err(ManagementError::Unauthorized { url: shown }),
            StatusCode::FORBIDDEN => Err(ManagementError::Forbidden { url: shown }),
            s => {
                let text = res.text().await.unwrap_or_default();
                #[derive(Deserialize)]
                struct Reason {
                    reason: String,
                }
                let reason = serde_json::from_str::<Reason>(&text)
                    .map(|r| r.reason)
                    .unwrap_or(text);
                Err(ManagementError::Refused {
                    method: method.to_string(),
                    url: shown,
                    status: s.as_u16(),
                    reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
                })
            }
        }
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> ManagementError {
        if e.is_timeout() {
            ManagementError::Timeout {
                url: url.to_owned(),
                secs: self.timeout.as_secs(),
            }
        } else if e.is_decode() {
            ManagementError::Decode {
                url: url.to_owned(),
                reason: e.to_string(),
            }
        } else {
            // reqwest's Display is "error sending request"; the cause says why.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            ManagementError::Unreachable {
                url: url.to_owned(),
                reason,
            }
        }
    }

    /// GET, `None` on 404.
    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<Option<T>, ManagementError> {
        self.get_url(self.url(segments)).await
    }

    async fn get_url<T: DeserializeOwned>(&self, url: Url) -> Result<Option<T>, ManagementError> {
        let shown = url.to_string();
        match self.call_url(Method::GET, url, None).await? {
            None => Ok(None),
            Some(res) => res.json().await.map(Some).map_err(|e| {
                if e.is_timeout() {
                    ManagementError::Timeout {
                        url: shown,
                        secs: self.timeout.as_secs(),
                    }
                } else {
                    ManagementError::Decode {
                        url: shown,
                        reason: e.to_string(),
                    }
                }
            }),
        }
    }

    async fn put(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<(), ManagementError> {
        match self.call(Method::PUT, segments, Some(body)).await? {
            Some(_) => Ok(()),
            None => Err(ManagementError::Refused {
                method: "PUT".into(),
                url: self.url(segments).to_string(),
                status: 404,
                reason: "not found (does the vhost exist?)".into(),
            }),
        }
    }

    /// DELETE; deleting what is already gone succeeds.
    async fn delete(&self, segments: &[&str]) -> Result<(), ManagementError> {
        self.call(Method::DELETE, segments, None).await.map(|_| ())
    }

    /// The broker's cluster name and version.
    pub async fn overview(&self) -> Result<Overview, ManagementError> {
        self.get(&["overview"])
            .await?
            .ok_or_else(|| ManagementError::Decode {
                url: self.url(&["overview"]).to_string(),
                reason: "no overview (is this the management API?)".into(),
            })
    }

    /// The exchange `name` in this vhost, if it exists.
    pub async fn exchange(&self, name: &str) -> Result<Option<ExchangeInfo>, ManagementError> {
        self.get(&["exchanges", &self.vhost, name]).await
    }

    /// Declares the exchange `name`.
    pub async fn declare_exchange(
        &self,
        name: &str,
        def: &ExchangeDef,
    ) -> Result<(), ManagementError> {
        let body = serde_json::to_value(def).map_err(|e| self.encode(e))?;
        self.put(&["exchanges", &self.vhost, name], &body).await
    }

    /// The parameters of `component` (`federation-upstream`,
    /// `federation-upstream-set`) in this vhost.
    pub async fn parameters(&self, component: &str) -> Result<Vec<Parameter>, ManagementError> {
        match self.get(&["parameters", component, &self.vhost]).await? {
            Some(list) => Ok(list),
            // An unknown component (the federation plugin is off) is 404.
            None => Err(ManagementError::NoFederation {
                url: self.base.to_string(),
            }),
        }
    }

    /// Sets the parameter `component`/`name` to `value`.
    pub async fn put_parameter(
        &self,
        component: &str,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), ManagementError> {
        let body = serde_json::json!({ "value": value });
        self.put(&["parameters", component, &self.vhost, name], &body)
            .await
    }

    /// Deletes the parameter `component`/`name`.
    pub async fn delete_parameter(
        &self,
        component: &str,
        name: &str,
    ) -> Result<(), ManagementError> {
        self.delete(&["parameters", component, &self.vhost, name])
            .await
    }

    /// The policy `name` in this vhost, if it exists.
    pub async fn policy(&self, name: &str) -> Result<Option<PolicyInfo>, ManagementError> {
        self.get(&["policies", &self.vhost, name]).await
    }

    /// Sets the policy `name`.
    pub async fn put_policy(
        &self,
        name: &str,
        policy: &super::plan::Policy,
    ) -> Result<(), ManagementError> {
        let body = serde_json::to_value(policy).map_err(|e| self.encode(e))?;
        self.put(&["policies", &self.vhost, name], &body).await
    }

    /// This broker's federation links (it is their downstream).
    pub async fn federation_links(&self) -> Result<Vec<FederationLink>, ManagementError> {
        match self.get(&["federation-links", &self.vhost]).await? {
            Some(list) => Ok(list),
            None => Err(ManagementError::NoFederation {
                url: self.base.to_string(),
            }),
        }
    }

    /// The queue `name` in this vhost, if it exists.
    pub async fn queue(&self, name: &str) -> Result<Option<QueueInfo>, ManagementError> {
        self.get(&["queues", &self.vhost, name]).await
    }

    /// The federation link queues of `exchange` in this vhost (at most
    /// 100: one per downstream broker), found by name on the broker's side.
    pub async fn link_queues(&self, exchange: &str) -> Result<Vec<QueueInfo>, ManagementError> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<QueueInfo>,
        }
        let mut url = self.url(&["queues", &self.vhost]);
        url.query_pairs_mut()
            .append_pair("page", "1")
            .append_pair("page_size", "100")
            .append_pair("use_regex", "true")
            .append_pair(
                "name",
                &format!("^{}", regex::escape(&link_queue(exchange, ""))),
            )
            .append_pair("columns", "name,messages");
        Ok(self
            .get_url::<Page>(url)
            .await?
            .map(|p| p.items)
            .unwrap_or_default())
    }

    fn encode(&self, e: serde_json::Error) -> ManagementError {
        ManagementError::Decode {
            url: self.base.to_string(),
            reason: format!("cannot encode the request: {e}"),
        }
    }
}

/// The queue on an upstream broker where messages wait for a downstream
/// broker's link: federation names it after the exchange and the
/// downstream's cluster name.
pub fn link_queue(exchange: &str, downstream_cluster: &str) -> String {
    format!("federation: {exchange} -> {downstream_cluster}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str, vhost: &str) -> Management {
        Management::new(
            &Broker {
                name: "b".into(),
                amqp: "amqp://h".into(),
                vhost: vhost.into(),
                management: Url::parse(base).unwrap(),
                user: "u".into(),
                password: "p".into(),
            },
            Duration::from_secs(1),
        )
    }

    #[test]
    fn segments_are_percent_encoded() {
        let m = client("http://h:15672", "/");
        assert_eq!(
            m.url(&["exchanges", "/", "postmesh.paths"]).as_str(),
            "http://h:15672/api/exchanges/%2F/postmesh.paths"
        );
        let m = client("http://h:15672/rabbit/", "prod/eu");
        assert_eq!(
            m.url(&["queues", "prod/eu", "federation: x -> hub"])
                .as_str(),
            "http://h:15672/rabbit/api/queues/prod%2Feu/federation:%20x%20-%3E%20hub"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_retryable() {
        // Port 1 on loopback: nothing listens there.
        let m = client("http://127.0.0.1:1", "/");
        let e = m.overview().await.unwrap_err();
        assert!(matches!(e, ManagementError::Unreachable { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .starts_with("cannot reach http://127.0.0.1:1/api/overview")
        );
    }
}
