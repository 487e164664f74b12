//! The Rabbit Router against three real brokers (hub, east, west), shared
//! by these tests and used by one test at a time (some kill the hub).
//! The router is the real `postmesh` binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use postmesh_router::{AmqpPostoffice, Exchange, Outgoing, Postoffice, Properties, QueueSpec};
use postmesh_tests::binary;
use postmesh_tests::rabbit::Rabbit;
use postmesh_tests::star::{self, Star};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// One test at a time owns the star.
static STAR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn the_star() -> &'static Star {
    tokio::task::spawn_blocking(star::shared)
        .await
        .expect("star")
}

/// Runs `postmesh router <args>` with `config`: (exit code, stdout, stderr).
async fn router(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(binary())
        .arg("router")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("POSTMESH_LOG", "warn")
        .output()
        .await
        .expect("postmesh runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn apply(config: &Path) {
    let (code, out, err) = router(config, &["apply"]).await;
    assert_eq!(code, 0, "apply failed:\n{out}{err}");
}

/// The star's default configuration written under `dir` and applied, once
/// every link is running; the configuration's path.
async fn applied(star: &'static Star, dir: &Path) -> std::path::PathBuf {
    let config = star.write_config(dir, "");
    apply(&config).await;
    wait_for(Duration::from_secs(30), "links running", || {
        all_running(star)
    })
    .await;
    config
}

/// Polls `check` every 100 ms for at most `within`; the time it took.
async fn wait_for<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {within:?}");
}

/// Running links per node, from each node's management API.
async fn running_links(node: &Rabbit) -> usize {
    match node.api_get("federation-links/%2F").await {
        Value::Array(links) => links.iter().filter(|l| l["status"] == "running").count(),
        _ => 0,
    }
}

/// Every link of the star runs: 2 regions × 2 exchanges on the hub, 2
/// exchanges on each region.
async fn all_running(star: &Star) -> bool {
    running_links(&star.hub).await == 4
        && running_links(&star.east).await == 2
        && running_links(&star.west).await == 2
}

fn upstreams(v: &Value) -> BTreeMap<String, Value> {
    v.as_array()
        .expect("a list of upstreams")
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["value"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_changes_nothing_the_second_time() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let dir = tempfile::tempdir().unwrap();
    let config = star.write_config(dir.path(), "");
    // Brokers the router has not touched yet.
    for (_, node) in star.nodes() {
        node.api_delete("policies/%2F/postmesh-federation").await;
        node.api_delete("parameters/federation-upstream-set/%2F/postmesh")
            .await;
        for name in upstreams(&node.api_get("parameters/federation-upstream/%2F").await).keys() {
            node.api_delete(&format!("parameters/federation-upstream/%2F/{name}"))
                .await;
        }
        for x in ["postmesh.paths", "postmesh.postoffice"] {
            node.api_delete(&format!("exchanges/%2F/{x}")).await;
        }
    }

    let (code, out, err) = router(&config, &["apply", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("hub: would have created upstream east (max-hops 1)"),
        "{out}"
    );
    assert!(out.contains("16 changes to make"), "{out}");
    assert!(
        star.hub
            .api_get("policies/%2F/postmesh-federation")
            .await
            .is_null(),
        "a dry run changes nothing"
    );

    let (code, out, err) = router(&config, &["apply"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let expected = "\
hub: declared exchange postmesh.paths
hub: declared exchange postmesh.postoffice
hub: created upstream east (max-hops 1)
hub: created upstream west (max-hops 1)
hub: set upstream set postmesh to [east, west]
hub: set policy postmesh-federation
east: declared exchange postmesh.paths
east: declared exchange postmesh.postoffice
east: created upstream hub (max-hops 2)
east: set upstream set postmesh to [hub]
east: set policy postmesh-federation
west: declared exchange postmesh.paths
west: declared exchange postmesh.postoffice
west: created upstream hub (max-hops 2)
west: set upstream set postmesh to [hub]
west: set policy postmesh-federation
applied 16 changes
";
    assert_eq!(out, expected);

    let (code, out, err) = router(&config, &["apply"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "hub: up to date\neast: up to date\nwest: up to date\nnothing to change: every broker matches the plan\n"
    );

    // The definitions themselves.
    let hub = upstreams(&star.hub.api_get("parameters/federation-upstream/%2F").await);
    assert_eq!(hub.keys().collect::<Vec<_>>(), ["east", "west"]);
    assert_eq!(hub["east"]["max-hops"], 1);
    assert_eq!(hub["east"]["uri"], star.east.amqp_url.as_str());
    for region in [&star.east, &star.west] {
        let ups = upstreams(&region.api_get("parameters/federation-upstream/%2F").await);
        assert_eq!(ups.keys().collect::<Vec<_>>(), ["hub"]);
        assert_eq!(ups["hub"]["max-hops"], 2);
        assert_eq!(ups["hub"]["uri"], star.hub.amqp_url.as_str());
    }
    for (name, node) in star.nodes() {
        let policy = node.api_get("policies/%2F/postmesh-federation").await;
        assert_eq!(
            policy["definition"]["federation-upstream-set"], "postmesh",
            "{name}"
        );
        for x in ["postmesh.paths", "postmesh.postoffice"] {
            let e = node.api_get(&format!("exchanges/%2F/{x}")).await;
            assert_eq!(
                (&e["type"], &e["durable"], &e["policy"]),
                (
                    &Value::from("topic"),
                    &Value::from(true),
                    &Value::from("postmesh-federation")
                ),
                "{name} {x}"
            );
        }
    }
    wait_for(Duration::from_secs(30), "links running", || {
        all_running(star)
    })
    .await;
}

/// Reads deliveries for `quiet` after the last one: payloads in order.
async fn drain(consumer: &mut postmesh_router::Consumer, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(quiet, consumer.next()).await {
        got.push(String::from_utf8_lossy(&d.payload).into_owned());
        d.ack().await.expect("ack");
    }
    got
}

fn message(key: &str, payload: &str) -> Outgoing {
    Outgoing {
        routing_key: key.into(),
        payload: Bytes::from(payload.to_owned()),
        props: Properties {
            persistent: true,
            ..Properties::default()
        },
    }
}

/// Publishes probes on `from` until one reaches `to`: the binding behind
/// `to` went through the hub to `from` (asynchronously, in tens of ms).
/// Then reads everything that arrived.
async fn until_bound(from: &AmqpPostoffice, to: &mut postmesh_router::Consumer, key: &str) {
    let started = Instant::now();
    loop {
        from.publish(Exchange::Paths, message(key, "probe"))
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(200), to.next())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the binding for {key} did not reach the publishing region"
        );
    }
    drain(to, Duration::from_secs(1)).await;
}

/// Messages published into `exchange` on `node` so far, once the count
/// reached `at_least` and then stopped moving. Statistics are collected
/// every 500 ms on these nodes, but on a loaded machine the management
/// database can lag by seconds: a count that merely held still for one
/// interval may not include the last message yet, so the caller says how
/// many it knows have been published at the least.
async fn published_in(node: &Rabbit, exchange: &str, at_least: u64) -> u64 {
    let read = || async {
        node.api_get(&format!("exchanges/%2F/{exchange}"))
            .await
            .pointer("/message_stats/publish_in")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let started = Instant::now();
    let mut last = read().await;
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = read().await;
        if now >= at_least && now == last {
            return now;
        }
        last = now;
    }
    panic!("the statistics of {exchange} did not reach {at_least} and settle (last {last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_once_and_only_to_where_it_is_bound() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let dir = tempfile::tempdir().unwrap();
    applied(star, dir.path()).await;

    // The postoffice declares its exchanges on connecting: the router's
    // declarations must agree with them, or RabbitMQ refuses one.
    let east = AmqpPostoffice::connect(&star.east.amqp_url)
        .await
        .expect("east");
    let west = AmqpPostoffice::connect(&star.west.amqp_url)
        .await
        .expect("west");
    let _hub = AmqpPostoffice::connect(&star.hub.amqp_url)
        .await
        .expect("hub");
    for (po, q) in [(&east, "crossing.east"), (&west, "crossing.west")] {
        po.declare_queue(&QueueSpec::transient(q)).await.unwrap();
        po.bind(Exchange::Paths, q, "feeds.#").await.unwrap();
    }
    let mut at_east = east.consume("crossing.east", 100).await.unwrap();
    let mut at_west = west.consume("crossing.west", 100).await.unwrap();

    // West's binding reaches east through the hub asynchronously: probe.
    until_bound(&east, &mut at_west, "feeds.probe").await;
    drain(&mut at_east, Duration::from_millis(200)).await;
    let n = 20;
    for i in 0..n {
        east.publish(
            Exchange::Paths,
            message(&format!("feeds.n.{i}"), &format!("m{i}")),
        )
        .await
        .unwrap();
    }
    let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let got_west = drain(&mut at_west, Duration::from_secs(3)).await;
    assert_eq!(
        got_west, expected,
        "west receives each message once, in order"
    );
    let got_east = drain(&mut at_east, Duration::from_secs(1)).await;
    assert_eq!(
        got_east, expected,
        "east's own copy only: nothing comes back"
    );

    // Only what is bound travels: nobody subscribes to sports anywhere, so
    // neither the hub's exchange nor west's sees a sports message; they
    // see the feeds message published after them.
    // At least one probe and the n messages above crossed already.
    let west_before = published_in(&star.west, "postmesh.paths", n + 1).await;
    let hub_before = published_in(&star.hub, "postmesh.paths", n + 1).await;
    for i in 0..n {
        east.publish(
            Exchange::Paths,
            message(&format!("sports.{i}"), &format!("s{i}")),
        )
        .await
        .unwrap();
    }
    east.publish(Exchange::Paths, message("feeds.end", "end"))
        .await
        .unwrap();
    assert_eq!(drain(&mut at_west, Duration::from_secs(3)).await, ["end"]);
    assert_eq!(
        published_in(&star.west, "postmesh.paths", west_before + 1).await - west_before,
        1
    );
    assert_eq!(
        published_in(&star.hub, "postmesh.paths", hub_before + 1).await - hub_before,
        1
    );

    for (po, q) in [(&east, "crossing.east"), (&west, "crossing.west")] {
        po.delete_queue(q).await.unwrap();
    }
}

/// `postmesh router status` with the rows keyed by link label.
async fn status(config: &Path) -> (i32, BTreeMap<String, Vec<String>>, String) {
    let (code, out, err) = router(config, &["status"]).await;
    let rows = out
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<String> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect();
    (code, rows, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_killed_hub_down_then_running_again() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let dir = tempfile::tempdir().unwrap();
    let config = applied(star, dir.path()).await;
    let (code, rows, text) = status(&config).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(rows.len(), 8, "{text}");
    assert!(rows.values().all(|r| r[1] == "running"), "{text}");
    assert_eq!(rows["east→hub postmesh.paths"][0], "region→hub");
    assert_eq!(rows["hub→west postmesh.paths"][0], "hub→region");

    // A subscriber in west, so that what east publishes during the outage
    // waits on east for the hub.
    let west = AmqpPostoffice::connect(&star.west.amqp_url).await.unwrap();
    west.declare_queue(&QueueSpec::transient("outage.west"))
        .await
        .unwrap();
    west.bind(Exchange::Paths, "outage.west", "outage.#")
        .await
        .unwrap();
    let mut at_west = west.consume("outage.west", 100).await.unwrap();
    let east = AmqpPostoffice::connect(&star.east.amqp_url).await.unwrap();
    until_bound(&east, &mut at_west, "outage.probe").await;

    tokio::task::spawn_blocking(|| star::shared().hub.kill())
        .await
        .unwrap();
    for i in 0..3 {
        east.publish(Exchange::Paths, message("outage.x", &format!("o{i}")))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let (rows, text) = loop {
        let (code, rows, text) = status(&config).await;
        if code != 0
            && rows.values().all(|r| r[1] != "running")
            && rows["east→hub postmesh.paths"][2] == "3"
        {
            break (rows, text);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "every link down, 3 messages waiting on east:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("status with the hub killed:\n{text}");
    assert_eq!(rows["east→hub postmesh.paths"][1], "unreachable", "{text}");
    assert!(
        rows["east→hub postmesh.paths"][3].contains("cannot reach"),
        "{text}"
    );
    // East answers, and its link from the hub is there but not running.
    // RabbitMQ retries it while the hub is gone: its state moves between
    // `error`, `shutdown` (shown as `other`) and `starting`.
    assert!(
        matches!(
            rows["hub→east postmesh.paths"][1].as_str(),
            "error" | "other" | "starting"
        ),
        "{text}"
    );

    let booted = Instant::now();
    tokio::task::spawn_blocking(|| star::shared().hub.restart().expect("hub restarts"))
        .await
        .unwrap();
    let boot = booted.elapsed();
    let recovered = wait_for(
        Duration::from_secs(60),
        "every link running again",
        || async { status(&config).await.0 == 0 },
    )
    .await;
    eprintln!("hub restart: booted in {boot:.1?}, every link running {recovered:.1?} later");
    let got = drain(&mut at_west, Duration::from_secs(3)).await;
    assert_eq!(got, ["o0", "o1", "o2"], "what waited on east crosses once");
    west.delete_queue("outage.west").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_repairs_a_hub_that_lost_its_definitions() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let dir = tempfile::tempdir().unwrap();
    let interval = 2;
    let config = star.write_config(
        dir.path(),
        &format!("check_interval_secs = {interval}\nmetrics_listen = \"127.0.0.1:0\"\n"),
    );
    let mut child = tokio::process::Command::new(binary())
        .args(["router", "run", "--config"])
        .arg(&config)
        .env("POSTMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("postmesh router run starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut metrics_url = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await
    {
        if let Some(u) = line.split_whitespace().find(|w| w.ends_with("/metrics")) {
            metrics_url = Some(u.to_owned());
            break;
        }
    }
    let metrics_url = metrics_url.expect("the router prints its metrics address");
    let metrics = || async {
        reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap()
    };
    let running = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("postmesh_router_link_running{") && l.ends_with(" 1"))
            .count()
    };
    wait_for(
        Duration::from_secs(30),
        "every link running in the metrics",
        || async { running(&metrics().await) == 8 },
    )
    .await;

    // The hub comes back empty, as a replaced machine would.
    let booted = Instant::now();
    tokio::task::spawn_blocking(|| {
        let hub = &star::shared().hub;
        hub.kill();
        hub.wipe_data().expect("wipe");
        hub.restart().expect("hub restarts");
    })
    .await
    .unwrap();
    let boot = booted.elapsed();
    assert!(
        star.hub
            .api_get("policies/%2F/postmesh-federation")
            .await
            .is_null(),
        "the hub lost its definitions"
    );
    let repaired = wait_for(
        Duration::from_secs(interval + 10),
        "the hub repaired",
        || async {
            !star
                .hub
                .api_get("policies/%2F/postmesh-federation")
                .await
                .is_null()
                && upstreams(&star.hub.api_get("parameters/federation-upstream/%2F").await).len()
                    == 2
        },
    )
    .await;
    let links = wait_for(Duration::from_secs(60), "every link running again", || {
        all_running(star)
    })
    .await;
    eprintln!(
        "empty hub: booted in {boot:.1?}, repaired {repaired:.1?} after, every link running {:.1?} after",
        repaired + links
    );
    assert!(
        repaired <= Duration::from_secs(interval + 2),
        "repaired within the check interval of the hub answering: {repaired:?}"
    );
    let text = metrics().await;
    assert!(
        text.lines().any(
            |l| l.starts_with("postmesh_router_reapplies_total{broker=\"hub\"}")
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
    wait_for(
        Duration::from_secs(10),
        "links running in the metrics",
        || async { running(&metrics().await) == 8 },
    )
    .await;

    // SIGTERM stops it promptly and cleanly.
    let pid = child.id().expect("pid").to_string();
    let stopped = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stops within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    eprintln!("router stopped {:.1?} after SIGTERM", stopped.elapsed());
}

/// Two brokers with one cluster name would drop each other's messages as
/// loops: apply refuses them, names them, and still configures the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_sharing_a_cluster_name_are_refused() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let dir = tempfile::tempdir().unwrap();
    let config = star.write_config(dir.path(), "");
    let rename = |node: &'static Rabbit, name: String| async move {
        let res = reqwest::Client::new()
            .put(format!("{}/api/cluster-name", node.mgmt_url))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    };
    rename(&star::shared().west, star.east.cluster_name().to_owned()).await;
    let (code, out, err) = router(&config, &["apply"]).await;
    rename(&star::shared().west, star.west.cluster_name().to_owned()).await;
    assert_eq!(code, 1, "{out}{err}");
    let expected = format!(
        "cluster_name {:?} is shared by east, west",
        star.east.cluster_name()
    );
    assert!(out.contains(&format!("east: error: {expected}")), "{out}");
    assert!(out.contains(&format!("west: error: {expected}")), "{out}");
    assert!(!out.contains("hub: error"), "the hub is configured: {out}");
    assert!(
        err.contains("2 of 3 brokers not brought in line with the plan: east, west"),
        "{err}"
    );
    apply(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_and_unreachable_brokers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    std::fs::write(&config, "[router]\nregions = []\n").unwrap();
    let (code, _, err) = router(&config, &["apply"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "postmesh: configuration: router.hub is missing: the star needs a hub broker"
    );

    // Brokers that do not exist: port 1 on loopback refuses at once.
    let broker = |table: &str, name: &str, port: u16| {
        format!(
            "[{table}]\nname = \"{name}\"\namqp = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\nmanagement = \"http://127.0.0.1:{}\"\n",
            port + 1
        )
    };
    std::fs::write(
        &config,
        format!(
            "{}{}",
            broker("router.hub", "hub", 1),
            broker("[router.regions]", "east", 3)
        ),
    )
    .unwrap();
    let (code, out, err) = router(&config, &["apply"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("hub: error: cannot reach http://127.0.0.1:2/api/overview"),
        "{out}"
    );
    assert!(
        err.contains("2 of 2 brokers not brought in line with the plan: hub, east"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (code, out, _) = router(&config, &["status"]).await;
    assert_eq!(code, 1);
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("east→hub postmesh.paths "))
        .expect("a row per link")
        .split_whitespace()
        .collect();
    assert_eq!(row[2..4], ["region→hub", "unreachable"], "{out}");
}
