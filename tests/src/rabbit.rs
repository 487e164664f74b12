//! A private RabbitMQ node for tests: started on free loopback ports in a
//! temporary directory, shared by the tests of one test binary, and killed
//! by a watchdog when the test process exits (however it exits).
//!
//! Nothing of the machine's own RabbitMQ (configuration, cookie, a broker on
//! 5672) is read or touched. A missing `rabbitmq-server` fails loudly with
//! the command that installs it; `deploy/test.sh` installs it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where Debian's package puts the server scripts. The `/usr/sbin` wrappers
/// switch to the `rabbitmq` user (another HOME, another cookie), so the
/// harness calls these directly.
pub const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

/// The loopback address nodes listen on: 127.0.0.2 cannot clash with other
/// programs' outgoing sockets, which sit on 127.0.0.1.
pub const NODE_IP: &str = "127.0.0.2";

/// A running node.
pub struct Rabbit {
    /// `amqp://guest:guest@127.0.0.2:<port>/%2f`
    pub amqp_url: String,
    /// `http://127.0.0.2:<port>` (management API, user guest).
    pub mgmt_url: String,
    pub amqp_port: u16,
    name: String,
    base: PathBuf,
    env: Vec<(String, String)>,
}

static SHARED: OnceLock<Rabbit> = OnceLock::new();

/// The node shared by this test binary, started on first use.
pub fn shared() -> &'static Rabbit {
    SHARED.get_or_init(|| {
        Rabbit::start("shared").unwrap_or_else(|e| panic!("cannot start RabbitMQ: {e}"))
    })
}

/// Ports this process handed to a node. Tests of one binary start nodes in
/// parallel: a port a node has not bound yet looks free to the next one.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A free TCP port below the kernel's range for outgoing connections
/// (32768-60999), so no outgoing socket can take it before the node binds.
/// Never one this process handed out before.
fn free_port(ip: &str) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let seed = std::process::id() as u64 * 7919 + nanos;
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..4000u64 {
        let port = 20_000 + ((seed + i * 104_729) % 12_000) as u16;
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind((ip, port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-32000");
}

/// Whether the listener at `addr` is the node named `name`: it answers
/// AMQP 0-9-1's protocol header with `connection.start`, whose server
/// properties carry the node's `cluster_name`. Another program (or another
/// node) that took the port first is not mistaken for this node.
fn is_node(addr: &SocketAddr, name: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut header = [0u8; 7];
    if s.write_all(b"AMQP\x00\x00\x09\x01").is_err()
        || s.read_exact(&mut header).is_err()
        || header[0] != 1
    {
        return false;
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size.min(64 * 1024)];
    s.read_exact(&mut payload).is_ok() && payload.windows(name.len()).any(|w| w == name.as_bytes())
}

impl Rabbit {
    /// Starts a node named `name` and waits until it accepts AMQP.
    pub fn start(name: &str) -> Result<Rabbit, String> {
        let mut nodes = Rabbit::start_all(&[name], "")?;
        Ok(nodes.remove(0))
    }

    /// Starts nodes named `names` in parallel (a boot takes seconds, most
    /// of it waiting) and waits until each accepts AMQP. `extra_conf` is
    /// appended to each node's `rabbitmq.conf`.
    pub fn start_all(names: &[&str], extra_conf: &str) -> Result<Vec<Rabbit>, String> {
        crate::arm_watchdog();
        let server = Path::new(RABBITMQ_BIN).join("rabbitmq-server");
        if !server.exists() {
            return Err(format!(
                "{} is missing: install RabbitMQ with `apt-get install -y rabbitmq-server` (deploy/test.sh does this)",
                server.display()
            ));
        }
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let node = Rabbit::prepare(name, extra_conf)?;
            node.launch()?;
            nodes.push(node);
        }
        for (i, name) in names.iter().enumerate() {
            let mut last = String::new();
            let mut attempt = 0;
            loop {
                match nodes[i].wait_ready(Duration::from_secs(90)) {
                    Ok(()) => break,
                    Err(e) => {
                        last = format!("{last}{e}; ");
                        nodes[i].kill();
                        let out = std::fs::read_to_string(nodes[i].base.join("server.out"))
                            .unwrap_or_default();
                        if !(out.contains("eaddrinuse") || out.contains("already_used")) {
                            return Err(format!("{name}: {e}\n{}", tail(&out, 30)));
                        }
                        attempt += 1;
                        if attempt >= 6 {
                            return Err(format!("{name}: gave up after port clashes: {last}"));
                        }
                        nodes[i] = Rabbit::prepare(name, extra_conf)?;
                        nodes[i].launch()?;
                    }
                }
            }
        }
        Ok(nodes)
    }

    /// A node's directory and configuration on free ports, not started.
    fn prepare(name: &str, extra_conf: &str) -> Result<Rabbit, String> {
        let base =
            std::env::temp_dir().join(format!("postmesh-rabbit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("home")).map_err(|e| e.to_string())?;
        let amqp = free_port(NODE_IP);
        let mgmt = free_port(NODE_IP);
        let dist = free_port("127.0.0.1");
        let epmd = free_port("127.0.0.1");
        let node = Rabbit {
            amqp_url: format!("amqp://guest:guest@{NODE_IP}:{amqp}/%2f"),
            mgmt_url: format!("http://{NODE_IP}:{mgmt}"),
            amqp_port: amqp,
            name: format!("pm{}{name}", std::process::id()),
            env: Vec::new(),
            base,
        };
        node.configure(mgmt, dist, epmd, extra_conf)
    }

    fn configure(
        mut self,
        mgmt: u16,
        dist: u16,
        epmd: u16,
        extra_conf: &str,
    ) -> Result<Rabbit, String> {
        let d = &self.base;
        let conf = format!(
            "listeners.tcp.default = {NODE_IP}:{amqp}\n\
             management.tcp.ip = {NODE_IP}\n\
             management.tcp.port = {mgmt}\n\
             cluster_name = {name}\n\
             loopback_users.guest = true\n\
             log.console = false\n\
             log.file.level = warning\n\
             {extra_conf}",
            amqp = self.amqp_port,
            name = self.name,
        );
        std::fs::write(d.join("rabbitmq.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(d.join("advanced.config"), "[].\n").map_err(|e| e.to_string())?;
        std::fs::write(d.join("rabbitmq-env.conf"), "").map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("enabled_plugins"),
            "[rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management].\n",
        )
        .map_err(|e| e.to_string())?;
        let p = |x: &str| d.join(x).display().to_string();
        self.env = vec![
            ("HOME".into(), p("home")),
            (
                "RABBITMQ_NODENAME".into(),
                format!("{}@localhost", self.name),
            ),
            ("RABBITMQ_NODE_IP_ADDRESS".into(), NODE_IP.into()),
            ("RABBITMQ_NODE_PORT".into(), self.amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), dist.to_string()),
            ("ERL_EPMD_PORT".into(), epmd.to_string()),
            ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
            ("RABBITMQ_MNESIA_BASE".into(), p("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), p("log")),
            ("RABBITMQ_CONFIG_FILE".into(), p("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), p("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE".into(), p("rabbitmq-env.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), p("enabled_plugins")),
            ("RABBITMQ_PID_FILE".into(), p("rabbit.pid")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ];
        Ok(self)
    }

    /// Starts the server in its own process group, with a watchdog that
    /// kills the group (and the node's epmd) when this process exits.
    fn launch(&self) -> Result<(), String> {
        let out = std::fs::File::create(self.base.join("server.out")).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("setsid")
            .arg(Path::new(RABBITMQ_BIN).join("rabbitmq-server"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawning rabbitmq-server: {e}"))?;
        let pgid = child.id();
        std::fs::write(self.base.join("pgid"), pgid.to_string()).map_err(|e| e.to_string())?;
        let epmd = self.env_var("ERL_EPMD_PORT");
        let watchdog = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             kill -9 -{pgid} 2>/dev/null; sleep 1; ERL_EPMD_PORT={epmd} epmd -kill >/dev/null 2>&1; \
             rm -rf '{base}'",
            me = std::process::id(),
            base = self.base.display(),
        );
        Command::new("setsid")
            .args(["sh", "-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning the watchdog: {e}"))?;
        Ok(())
    }

    fn env_var(&self, key: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn pgid(&self) -> Option<u32> {
        std::fs::read_to_string(self.base.join("pgid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the node speaks AMQP as itself (see [`is_node`]). A
    /// listener that accepts is not enough: a node still booting accepts
    /// and then aborts the connection, and the port may be another's.
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let addr: SocketAddr = format!("{NODE_IP}:{}", self.amqp_port)
            .parse()
            .expect("address");
        let started = Instant::now();
        while started.elapsed() < within {
            if is_node(&addr, &self.name) {
                return Ok(());
            }
            let alive = self.pgid().is_some_and(|g| {
                Command::new("kill")
                    .args(["-0", &g.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if !alive {
                return Err("rabbitmq-server exited during boot".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("RabbitMQ did not accept AMQP within {within:?}"))
    }

    /// Kills the node at once (`kill -9` of its process group): a crash.
    pub fn kill(&self) {
        if self.signal("-9") {
            // Wait until the port is free again.
            let addr: SocketAddr = format!("{NODE_IP}:{}", self.amqp_port)
                .parse()
                .expect("address");
            for _ in 0..100 {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Freezes the node (`SIGSTOP` of its process group): its sockets stay
    /// open and nothing answers, as with a paused machine or a partition.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen node run again (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Sends `sig` to the node's process group; `false` if it has none
    /// (never launched).
    fn signal(&self, sig: &str) -> bool {
        let Some(g) = self.pgid() else {
            return false;
        };
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{g}")])
            .status();
        true
    }

    /// Starts the node again on the same ports and data, after [`kill`](Self::kill).
    pub fn restart(&self) -> Result<(), String> {
        self.launch()?;
        self.wait_ready(Duration::from_secs(90))
    }

    /// Deletes the node's data (definitions, messages), after
    /// [`kill`](Self::kill): the next [`restart`](Self::restart) boots an
    /// empty broker, as a replaced machine would.
    pub fn wipe_data(&self) -> Result<(), String> {
        match std::fs::remove_dir_all(self.base.join("mnesia")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// The node's `cluster_name`, distinct per node (federation's loop
    /// detection keys on it).
    pub fn cluster_name(&self) -> &str {
        &self.name
    }

    /// `GET /api/<path>` on the management API, as JSON (`Null` on 404).
    pub async fn api_get(&self, path: &str) -> serde_json::Value {
        let res = reqwest::Client::new()
            .get(format!("{}/api/{path}", self.mgmt_url))
            .basic_auth("guest", Some("guest"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return serde_json::Value::Null;
        }
        res.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `DELETE /api/<path>` on the management API (404 is fine).
    pub async fn api_delete(&self, path: &str) {
        let res = reqwest::Client::new()
            .delete(format!("{}/api/{path}", self.mgmt_url))
            .basic_auth("guest", Some("guest"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
        assert!(
            res.status().is_success() || res.status() == reqwest::StatusCode::NOT_FOUND,
            "DELETE {path}: {}",
            res.status()
        );
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
