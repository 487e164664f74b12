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
    /// Which store the core keeps messages in.
    pub store: StoreConfig,
}

/// Which store engine a core uses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The on-disk store in `data/store`, private to this process.
    #[default]
    Embedded,
    /// A Cassandra keyspace, shared by every core configured with it.
    Cql,
}

/// `[core.store]`: the store engine and, for `cql`, where it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// CQL contact points, `host:port` (the port defaults to 9042).
    pub hosts: Vec<String>,
    /// The keyspace (made by `postmesh schema apply`).
    pub keyspace: String,
    /// CQL consistency of every read and write: `LOCAL_QUORUM` (the
    /// default), `QUORUM`, `EACH_QUORUM`, `LOCAL_ONE`, `ONE`, `TWO`,
    /// `THREE` or `ALL`.
    pub consistency: String,
    /// The consistency of reads, when not `consistency`.
    pub read_consistency: Option<String>,
    /// The consistency of writes, when not `consistency`.
    pub write_consistency: Option<String>,
    /// Speculative executions of a read (0: none): after
    /// `speculative_delay_ms` without an answer, the read also goes to the
    /// next replica, and the first answer wins.
    pub speculative_reads: usize,
    pub speculative_delay_ms: u64,
    /// The datacenter of this core's region (the driver keeps to its
    /// nodes, and `LOCAL_QUORUM` counts its replicas). Unset: every node.
    pub local_datacenter: Option<String>,
    /// Width of a folder's partition in time, seconds, for the root and
    /// every category `category_bucket_secs` does not name. Fixed for the
    /// life of a keyspace: reads find rows by it.
    pub bucket_secs: u64,
    /// Width of a category's partitions in time, seconds, by category:
    /// `{ feeds = 600 }`. Fixed for the life of a keyspace, like
    /// `bucket_secs`, and the same on every core.
    pub category_bucket_secs: HashMap<String, u64>,
    /// The shallowest folder that indexes a category's messages, by
    /// category: `{ id = 2 }` leaves the root and the folder `id` out of
    /// the index of `id.*` messages (ARCHITECTURE.md, "The CQL store").
    /// Fixed for the life of a keyspace.
    pub min_index_depth: HashMap<String, usize>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            hosts: Vec::new(),
            keyspace: "postmesh".into(),
            consistency: "LOCAL_QUORUM".into(),
            read_consistency: None,
            write_consistency: None,
            speculative_reads: 1,
            speculative_delay_ms: 100,
            local_datacenter: None,
            bucket_secs: 3600,
            category_bucket_secs: HashMap::new(),
            min_index_depth: HashMap::new(),
        }
    }
}

impl StoreConfig {
    /// Reads the `--store` flag: `embedded`, or
    /// `cql://host1:port,host2/keyspace` (the keyspace may be left out).
    /// Returns the `[core.store]` keys it sets, as overrides.
    pub fn flag(value: &str) -> Result<serde_json::Value, String> {
        if value == "embedded" {
            return Ok(serde_json::json!({ "kind": "embedded" }));
        }
        let Some(rest) = value.strip_prefix("cql://") else {
            return Err(format!(
                "--store {value:?}: expected `embedded` or `cql://host:port,.../keyspace`"
            ));
        };
        let (hosts, keyspace) = match rest.split_once('/') {
            Some((h, k)) => (h, Some(k)),
            None => (rest, None),
        };
        let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() {
            return Err(format!("--store {value:?}: no host"));
        }
        let mut out = serde_json::json!({ "kind": "cql", "hosts": hosts });
        match keyspace {
            Some(k) if !k.is_empty() => out["keyspace"] = serde_json::json!(k),
            Some(_) => return Err(format!("--store {value:?}: empty keyspace")),
            None => {}
        }
        Ok(out)
    }
}

/// The resume overlap window (`gateway.resume_overlap_ms`) with several
/// cores: clock skew between them (kept under a second by NTP) plus the
/// time from a core's store to the devices, with a wide margin.
pub const DEFAULT_RESUME_OVERLAP_MS: u64 = 5_000;

/// When a resume reads once more (`gateway.resume_settle_ms`) on a broker:
/// a replica crosses from another core, or another region through the
/// hub, in milliseconds; this leaves a wide margin.
pub const DEFAULT_RESUME_SETTLE_MS: u64 = 2_000;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            sync: true,
            cache_mb: 64,
            retention_secs: HashMap::new(),
            sweep_secs: 60,
            queues: Default::default(),
            clock_offset_ms: 0,
            store: StoreConfig::default(),
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
                    "secret", "listen", "data", "amqp", "url", "token", "config", "log", "store",
                ])
                // deploy/cassandra.sh's settings (POSTMESH_CQL_PORT, ...)
                // and the address it exports (POSTMESH_CQL) are not ours.
                .filter(|k| !k.starts_with("cql") && !k.starts_with("cassandra"))
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
        std::fs::write(&file, "[core.store]\nkind = \"cql\"\nhosts = [\"h:1\"]\n").unwrap();
        let c = load(Some(&file), serde_json::json!({})).unwrap();
        assert_eq!(c.core.store.kind, StoreKind::Cql);
        assert_eq!(c.core.store.keyspace, "postmesh", "default keyspace");
        std::fs::write(&file, "[gateway]\nmax_subscription = 7\n").unwrap();
        assert!(
            load(Some(&file), serde_json::json!({})).is_err(),
            "typos are errors"
        );
    }

    /// The production examples in deploy/production load as they are.
    #[test]
    fn production_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/production");
        let c = load(Some(&dir.join("postmesh.toml")), serde_json::json!({}))
            .expect("postmesh.toml loads");
        assert_eq!(c.node.region, "eu");
        assert!(c.gateway.validate().is_ok());
        let r =
            load(Some(&dir.join("router.toml")), serde_json::json!({})).expect("router.toml loads");
        assert_eq!(r.router.regions.len(), 2);
    }

    #[test]
    fn tls_is_a_section_of_the_gateway() {
        let dir = std::env::temp_dir().join(format!("postmesh-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("postmesh.toml");
        assert_eq!(load(None, serde_json::json!({})).unwrap().gateway.tls, None);
        std::fs::write(
            &file,
            "[gateway.tls]\ncert = \"/etc/postmesh/chain.pem\"\nkey = \"/etc/postmesh/key.pem\"\n",
        )
        .unwrap();
        let tls = load(Some(&file), serde_json::json!({}))
            .unwrap()
            .gateway
            .tls
            .expect("a TLS section");
        assert_eq!(tls.cert, PathBuf::from("/etc/postmesh/chain.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/postmesh/key.pem"));
        std::fs::write(&file, "[gateway.tls]\ncert = \"/etc/postmesh/chain.pem\"\n").unwrap();
        assert!(
            load(Some(&file), serde_json::json!({})).is_err(),
            "a certificate without its key is an error"
        );
        std::fs::write(
            &file,
            "[gateway.tls]\ncert = \"c\"\nkey = \"k\"\npassword = \"p\"\n",
        )
        .unwrap();
        assert!(
            load(Some(&file), serde_json::json!({})).is_err(),
            "typos are errors"
        );
    }

    #[test]
    fn store_flag() {
        let f = StoreConfig::flag("cql://a:19042,b/ks").unwrap();
        assert_eq!(
            f,
            serde_json::json!({"kind": "cql", "hosts": ["a:19042", "b"], "keyspace": "ks"})
        );
        let f = StoreConfig::flag("cql://a").unwrap();
        assert_eq!(f, serde_json::json!({"kind": "cql", "hosts": ["a"]}));
        assert_eq!(
            StoreConfig::flag("embedded").unwrap(),
            serde_json::json!({"kind": "embedded"})
        );
        for bad in ["cql://", "cql:///ks", "cql://a/", "mysql://a", "cassandra"] {
            assert!(StoreConfig::flag(bad).is_err(), "{bad}");
        }
    }
}
