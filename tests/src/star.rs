//! Three private RabbitMQ nodes, `hub`, `east` and `west`, for the Rabbit
//! Router's tests: started in parallel on first use, shared by the tests of
//! one test binary, killed by the watchdog when the test process exits
//! (see [`rabbit`](crate::rabbit)). Each has the management and federation
//! plugins and its own cluster name; none is federated until a test runs
//! `postmesh router apply`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::rabbit::Rabbit;

/// The three nodes.
pub struct Star {
    pub hub: Rabbit,
    pub east: Rabbit,
    pub west: Rabbit,
    /// How long the three took to boot together.
    pub booted_in: Duration,
}

static SHARED: OnceLock<Star> = OnceLock::new();

/// Statistics every half second instead of every five, so that a test can
/// read an exchange's message counts soon after the messages went by.
const STATS_CONF: &str = "collect_statistics_interval = 500\n";

/// The star shared by this test binary, started on first use. A missing
/// `rabbitmq-server` fails the test, with the command that installs it.
pub fn shared() -> &'static Star {
    SHARED.get_or_init(|| {
        let started = Instant::now();
        let mut nodes = Rabbit::start_all(&["hub", "east", "west"], STATS_CONF)
            .unwrap_or_else(|e| panic!("cannot start the RabbitMQ star: {e}"));
        let booted_in = started.elapsed();
        eprintln!("star: hub, east and west booted in {booted_in:.1?}");
        let west = nodes.pop().expect("west");
        let east = nodes.pop().expect("east");
        let hub = nodes.pop().expect("hub");
        Star {
            hub,
            east,
            west,
            booted_in,
        }
    })
}

impl Star {
    /// The nodes with their names in the router's configuration.
    pub fn nodes(&self) -> [(&'static str, &Rabbit); 3] {
        [
            ("hub", &self.hub),
            ("east", &self.east),
            ("west", &self.west),
        ]
    }

    /// A configuration file in `dir` with a `[router]` section for the
    /// three nodes (`extra` is added to the section), for `postmesh router`.
    pub fn write_config(&self, dir: &Path, extra: &str) -> PathBuf {
        let broker = |table: &str, name: &str, node: &Rabbit| {
            format!(
                "[{table}]\nname = \"{name}\"\namqp = \"{}\"\nmanagement = \"{}\"\nuser = \"guest\"\npassword = \"guest\"\n\n",
                node.amqp_url, node.mgmt_url
            )
        };
        let text = format!(
            "[router]\n{extra}\n{}{}{}",
            broker("router.hub", "hub", &self.hub),
            broker("[router.regions]", "east", &self.east),
            broker("[router.regions]", "west", &self.west),
        );
        let path = dir.join("router.toml");
        std::fs::write(&path, text).expect("write the router configuration");
        path
    }
}
