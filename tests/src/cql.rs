//! The Cassandra node the CQL tests use: one per test run, started by
//! `deploy/test.sh` (through `deploy/cassandra.sh start`), which exports
//! its address as `POSTMESH_CQL`. Each test binary works in a fresh
//! keyspace of its own, dropped at the end.
//!
//! A CQL test without a node fails: it is never skipped.

use std::sync::Arc;

use postmesh_core::store::cql::{self, CqlOptions, CqlStore};

/// The node's address, `host:port`, from `POSTMESH_CQL`.
pub fn node() -> String {
    match std::env::var("POSTMESH_CQL") {
        Ok(a) if !a.is_empty() => a,
        _ => panic!(
            "POSTMESH_CQL is not set: the CQL tests need a Cassandra node. \
             Run them through deploy/test.sh, or start one with \
             `deploy/cassandra.sh start` and export the POSTMESH_CQL=host:port it prints"
        ),
    }
}

/// A fresh keyspace on the node, with the schema applied; dropped by
/// [`Keyspace::drop_now`].
pub struct Keyspace {
    pub name: String,
    pub hosts: Vec<String>,
}

impl Keyspace {
    /// `prefix` names the test binary; the process id makes it fresh.
    pub async fn fresh(prefix: &str) -> Keyspace {
        Self::fresh_on(vec![node()], prefix).await
    }

    /// A fresh keyspace on the node(s) at `hosts`.
    pub async fn fresh_on(hosts: Vec<String>, prefix: &str) -> Keyspace {
        crate::arm_watchdog();
        let name = format!("t_{prefix}_{}", std::process::id());
        let session = cql::connect(&hosts).await.expect("the CQL node answers");
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
            .await
            .expect("dropping an old keyspace");
        cql::schema::apply(
            &session,
            &name,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        )
        .await
        .expect("applying the schema");
        Keyspace { name, hosts }
    }

    /// A store on this keyspace.
    pub async fn store(&self) -> Arc<CqlStore> {
        Arc::new(
            CqlStore::open(CqlOptions {
                hosts: self.hosts.clone(),
                keyspace: self.name.clone(),
                ..CqlOptions::default()
            })
            .await
            .expect("opening the CQL store"),
        )
    }

    /// A store on this keyspace with options of the test's own.
    pub async fn store_with(&self, options: impl FnOnce(&mut CqlOptions)) -> Arc<CqlStore> {
        let mut o = CqlOptions {
            hosts: self.hosts.clone(),
            keyspace: self.name.clone(),
            ..CqlOptions::default()
        };
        options(&mut o);
        Arc::new(CqlStore::open(o).await.expect("opening the CQL store"))
    }

    /// Drops the keyspace.
    pub async fn drop_now(self) {
        let session = cql::connect(&self.hosts)
            .await
            .expect("the CQL node answers");
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.name), ())
            .await
            .expect("dropping the keyspace");
    }
}

/// A Cassandra node of a test's own, started through `deploy/cassandra.sh`
/// on its own loopback address, ports and directory, so that killing it
/// disturbs no other test. Stopped (and its directory removed) on drop.
pub struct OwnNode {
    /// `host:port` of its CQL port.
    pub addr: String,
    envs: Vec<(&'static str, String)>,
    dir: std::path::PathBuf,
}

impl OwnNode {
    /// Starts a node on `host` (a loopback address no other test uses),
    /// with its CQL, storage and JMX ports at `base`, `base + 1` and
    /// `base + 2`. Panics with the script's output when it cannot start.
    pub fn start(host: &str, base: u16) -> OwnNode {
        let dir = std::env::temp_dir().join(format!("postmesh-own-cassandra-{host}-{base}"));
        let _ = std::fs::remove_dir_all(&dir);
        let envs = vec![
            ("POSTMESH_CQL_HOST", host.to_owned()),
            ("POSTMESH_CQL_PORT", base.to_string()),
            ("POSTMESH_CASSANDRA_STORAGE_PORT", (base + 1).to_string()),
            ("POSTMESH_CASSANDRA_JMX_PORT", (base + 2).to_string()),
            ("POSTMESH_CASSANDRA_DIR", dir.display().to_string()),
            // Synced before each write is acknowledged: with the default
            // (periodic, every 10 s) a kill -9 loses the writes the node
            // acknowledged since its last sync, and a test that kills it
            // could not count on acknowledged messages.
            ("POSTMESH_CASSANDRA_COMMITLOG_SYNC", "batch".to_owned()),
        ];
        let node = OwnNode {
            addr: format!("{host}:{base}"),
            envs,
            dir,
        };
        node.script("start");
        node
    }

    fn script(&self, cmd: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cassandra.sh");
        let out = std::process::Command::new(script)
            .arg(cmd)
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("deploy/cassandra.sh runs");
        assert!(
            out.status.success() || cmd == "stop",
            "deploy/cassandra.sh {cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kill -9 of the node's process (the pid the script started).
    pub fn kill9(&self) {
        let pid = std::fs::read_to_string(self.dir.join("cassandra.pid")).expect("a pid file");
        let status = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid}");
        // Gone (or a zombie waiting to be reaped) before the caller goes on.
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Starts it again on its existing data (after [`OwnNode::kill9`]).
    pub fn restart(&self) {
        self.script("start");
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        self.script("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
