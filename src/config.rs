//! The configuration tree. Defaults live in the `Default` impls; a TOML
//! file, `POSTMESH_*` environment variables (nested keys with `__`, e.g.
//! `POSTMESH_GATEWAY__MAX_SUBSCRIPTIONS=64`) and flags override them, in
//! that order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use postmesh_gateway::GatewayConfig;
use serde::{Deserialize, Serialize};

/// Everything one `postmesh` process needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded store keeps its files.
    pub data: PathBuf,
    /// The RabbitMQ postoffice (`amqp://user:pass@host:port/vhost`). Without
    /// one, the embedded in-process postoffice is used.
    pub amqp: Option<String>,
    /// This process's postoffice address elements.
    pub node: NodeConfig,
    /// The gateway role.
    pub gateway: GatewayConfig,
    /// The core role.
    pub core: CoreConfig,
    /// The largest message the mesh accepts, body plus meta, in bytes (a
    /// binary body before base64). Every role of every process of a region
    /// must agree: gateways refuse larger messages (`too_large`, HTTP 413)
    /// and size their writes for it, cores refuse them from any door.
    pub max_message_bytes: usize,
    /// The Rabbit Router (`postmesh router`): the hub and regional brokers
    /// it joins as a federation star. Other roles ignore it.
    pub router: postmesh_router::federation::RouterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES,
            data: PathBuf::from("./postmesh-data"),
            amqp: None,
            node: NodeConfig::default(),
            gateway: GatewayConfig::default(),
            core: CoreConfig::default(),
            router: Default::default(),
        }
    }
}

/// Address elements: `region.product.service.instance.pid`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub region: String,
    pub product: String,
    /// Defaults to the host name.
    pub instance: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            region: "local".into(),
            product: "postmesh".into(),
            instance: std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().replace(['.', '*', '#'], "-"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        }
    }
}

/// The core role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// fsync each commit group before acknowledging a publish.
    pub sync: bool,
    /// Store block cache, MiB.
    pub cache_mb: u64,
    /// Retention per category, in seconds: `{ feeds = 604800 }`.
    pub retention_secs: HashMap<String, u64>,
    /// How often expired messages are swept, seconds.
    pub sweep_secs: u64,
    /// Queues on a shared postoffice: prefetch and the bronze bounds.
    pub queues: postmesh_core::remote::QueueOptions,
    /// Runs this core's stamping clock ahead (behind, if negative) of the
    /// wall clock, in milliseconds: for tests of clock skew only.
    pub clock_offset_ms: i64,
}

/// The resume overlap window (`gateway.resume_overlap_ms`) with several
/// cores: clock skew between them (kept under a second by NTP) plus the
/// time from a core's store to the devices, with a wide margin.
pub const DEFAULT_RESUME_OVERLAP_MS: u64 = 5_000;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            sync: true,
            cache_mb: 64,
            retention_secs: HashMap::new(),
            sweep_secs: 60,
            queues: Default::default(),
            clock_offset_ms: 0,
        }
    }
}

impl CoreConfig {
    /// Retention as durations.
    pub fn retention(&self) -> HashMap<String, Duration> {
        self.retention_secs
            .iter()
            .map(|(k, v)| (k.clone(), Duration::from_secs(*v)))
            .collect()
    }
}

/// Loads the configuration: defaults, then `file` (if given), then
/// `POSTMESH_*` variables, then `overrides` (flags given on the command line).
pub fn load(
    file: Option<&Path>,
    overrides: serde_json::Value,
) -> Result<Config, Box<figment::Error>> {
    let mut f = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        f = f.merge(Toml::file_exact(path));
    }
    f = f
        .merge(
            Env::prefixed("POSTMESH_")
                .ignore(&[
                    "secret", "listen", "data", "amqp", "url", "token", "config", "log",
                ])
                .split("__"),
        )
        .merge(Serialized::defaults(overrides));
    f.extract().map_err(Box::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = std::env::temp_dir().join(format!("postmesh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("postmesh.toml");
        std::fs::write(
            &file,
            "data = \"/tmp/x\"\n[gateway]\nmax_subscriptions = 7\nlisten = \"127.0.0.1:9000\"\n[core.retention_secs]\nfeeds = 60\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            serde_json::json!({"gateway": {"listen": "127.0.0.1:9001"}}),
        )
        .unwrap();
        assert_eq!(c.data, PathBuf::from("/tmp/x"));
        assert_eq!(c.gateway.max_subscriptions, 7);
        assert_eq!(c.gateway.listen.port(), 9001, "flags beat the file");
        assert_eq!(c.core.retention()["feeds"], Duration::from_secs(60));
        std::fs::write(&file, "[gateway]\nmax_subscription = 7\n").unwrap();
        assert!(
            load(Some(&file), serde_json::json!({})).is_err(),
            "typos are errors"
        );
    }
}
