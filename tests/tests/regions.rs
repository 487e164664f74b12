//! Two regions joined through the Rabbit Router: each region has its own
//! broker, core and gateway (real `postmesh` processes), and the brokers
//! are federated as a star through a hub by `postmesh router apply`.
//! Messages published in one region reach the devices of the other exactly
//! once, in publish order per path; a device that moves to the other
//! region's gateway resumes with `since` and misses nothing. The hub, or
//! one region's broker, killed mid-stream loses and duplicates nothing;
//! dismissal and login sync work for a user with devices in both regions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use postmesh_tests::star::{self, Star};
use postmesh_tests::{Client, Process, binary};
use serde_json::{Value, json};

/// One test at a time owns the star (one kills the hub).
static STAR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn the_star() -> &'static Star {
    tokio::task::spawn_blocking(star::shared)
        .await
        .expect("star")
}

/// `postmesh <role>` in `region` on `amqp`. The processes of one test
/// share a product of their own (so that both regions' cores are one
/// service, addressed by region, and no other test's).
async fn node(
    product: &str,
    role: &str,
    amqp: &str,
    region: &str,
    data: Option<&tempfile::TempDir>,
) -> Process {
    node_with(product, role, amqp, region, data, &[]).await
}

/// [`node`] with `extra` arguments.
async fn node_with(
    product: &str,
    role: &str,
    amqp: &str,
    region: &str,
    data: Option<&tempfile::TempDir>,
    extra: &[&str],
) -> Process {
    let mut args = vec![role, "--amqp", amqp];
    if role == "gateway" {
        args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    }
    args.extend_from_slice(extra);
    if let Some(d) = data {
        args.extend_from_slice(&["--data", d.path().to_str().unwrap()]);
    }
    let instance = format!("{role}-{region}");
    Process::start(
        &args,
        &[
            ("POSTMESH_NODE__REGION", region),
            ("POSTMESH_NODE__PRODUCT", product),
            ("POSTMESH_NODE__INSTANCE", instance.as_str()),
        ],
    )
    .await
}

/// Both regions of the star applied, each with a core (on an embedded
/// store of its own) and a gateway, of product `product` (one per test).
/// Dropping it stops them.
struct TwoRegions {
    east: Process,
    west: Process,
    _cores: (Process, Process),
    _dirs: [tempfile::TempDir; 3],
}

async fn two_regions(star: &Star, product: &str, gateway_args: &[&str]) -> TwoRegions {
    let dir = tempfile::tempdir().unwrap();
    apply(star, &dir).await;
    let (de, dw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let east_core = node(product, "core", &star.east.amqp_url, "east", Some(&de)).await;
    let west_core = node(product, "core", &star.west.amqp_url, "west", Some(&dw)).await;
    let east = node_with(
        product,
        "gateway",
        &star.east.amqp_url,
        "east",
        None,
        gateway_args,
    )
    .await;
    let west = node_with(
        product,
        "gateway",
        &star.west.amqp_url,
        "west",
        None,
        gateway_args,
    )
    .await;
    TwoRegions {
        east,
        west,
        _cores: (east_core, west_core),
        _dirs: [dir, de, dw],
    }
}

/// `postmesh router apply` for the star.
async fn apply(star: &Star, dir: &tempfile::TempDir) {
    let config = star.write_config(dir.path(), "");
    let out = tokio::process::Command::new(binary())
        .args(["router", "apply", "--config"])
        .arg(&config)
        .env("POSTMESH_LOG", "warn")
        .output()
        .await
        .expect("postmesh router runs");
    assert!(
        out.status.success(),
        "apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `check` every 100 ms for at most 30 s.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 30 s");
}

/// Whether `node`'s exchange `exchange` has a binding with `key` (a
/// federated binding arrives on the upstream's exchange).
async fn has_binding(node: &postmesh_tests::rabbit::Rabbit, exchange: &str, key: &str) -> bool {
    match node
        .api_get(&format!("exchanges/%2F/{exchange}/bindings/source"))
        .await
    {
        Value::Array(b) => b.iter().any(|b| b["routing_key"] == key),
        _ => false,
    }
}

async fn publish(gw: &Process, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/publish", gw.http()))
        .json(&json!({"path": path, "body": body}))
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 200, "publish to {path}");
    res.json().await.unwrap()
}

/// Collects `n` messages from `device`, each UUID once on this connection.
async fn receive(device: &mut Client, n: usize) -> Vec<Value> {
    let msgs = device.msgs(n).await;
    let uuids: HashSet<_> = msgs.iter().map(|m| m["uuid"].clone()).collect();
    assert_eq!(uuids.len(), n, "no message twice on one connection");
    msgs
}

/// In publish order per path.
fn assert_order_per_path(got: &[Value], published: &[(String, Value)]) {
    let mut want: HashMap<&str, Vec<&Value>> = HashMap::new();
    for (path, uuid) in published {
        want.entry(path).or_default().push(uuid);
    }
    let mut have: HashMap<&str, Vec<&Value>> = HashMap::new();
    for m in got {
        have.entry(m["path"].as_str().unwrap())
            .or_default()
            .push(&m["uuid"]);
    }
    assert_eq!(have, want, "every message once, in publish order per path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_regions_once_and_a_device_resumes_in_the_other_region() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let regions = two_regions(star, "regions", &[]).await;
    let (east, west) = (&regions.east, &regions.west);

    // A device in east; its binding reaches west through the hub.
    let mut device = east.ws(None).await;
    device.sub("feeds.#").await;
    wait_for("east's binding on west's paths exchange", || {
        has_binding(&star.west, "postmesh.paths", "feeds.#")
    })
    .await;

    // 200 messages published in west arrive in east once, in order per
    // path.
    let mut published = Vec::new();
    for i in 0..200 {
        let path = format!("feeds.{}.x", i % 5);
        let r = publish(west, &path, json!(i)).await;
        published.push((path, r["uuid"].clone()));
    }
    let got = receive(&mut device, 200).await;
    assert_order_per_path(&got, &published);
    device.quiet(Duration::from_millis(500)).await;
    let position = got.last().unwrap()["cursor"].clone();
    device.close().await;

    // While the device is away, west publishes 100 more. It comes back
    // on west's gateway (it moved region) from its last cursor.
    let mut missed = Vec::new();
    for i in 0..100 {
        let path = format!("feeds.{}.x", i % 5);
        let r = publish(west, &path, json!(1000 + i)).await;
        missed.push((path, r["uuid"].clone()));
    }
    let mut moved = west.ws(None).await;
    let r = moved
        .request(json!({"op": "sub", "pattern": "feeds.#", "since": position}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let replayed = r["replayed"].as_u64().expect("replayed") as usize;
    let resumed = receive(&mut moved, replayed).await;
    // What it already had (the resume overlap reads a little before its
    // cursor) it drops by UUID, as every client does.
    let had: HashSet<Value> = got.iter().map(|m| m["uuid"].clone()).collect();
    let fresh: Vec<Value> = resumed
        .into_iter()
        .filter(|m| !had.contains(&m["uuid"]))
        .collect();
    assert_order_per_path(&fresh, &missed);

    // Live again, now from the other region: east publishes, the device
    // (now on west) receives each once.
    wait_for("west's binding on east's paths exchange", || {
        has_binding(&star.east, "postmesh.paths", "feeds.#")
    })
    .await;
    let mut from_east = Vec::new();
    for i in 0..50 {
        let path = format!("feeds.{}.x", i % 5);
        let r = publish(east, &path, json!(2000 + i)).await;
        from_east.push((path, r["uuid"].clone()));
    }
    let live = receive(&mut moved, 50).await;
    assert_order_per_path(&live, &from_east);
    moved.quiet(Duration::from_millis(500)).await;

    // Each region's core holds what the other region published: history
    // from east's gateway shows west's messages, and the other way round.
    let history = |gw: &Process| {
        let url = format!("{}/v1/history?pattern=feeds.%23&limit=1000", gw.http());
        async move {
            let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["uuid"].clone())
                .collect::<HashSet<Value>>()
        }
    };
    let all: HashSet<Value> = published
        .iter()
        .chain(&missed)
        .chain(&from_east)
        .map(|(_, u)| u.clone())
        .collect();
    for gw in [&east, &west] {
        let mut seen = HashSet::new();
        for _ in 0..100 {
            seen = history(gw).await;
            if seen == all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen.len(),
            all.len(),
            "history holds every region's messages"
        );
        assert_eq!(seen, all);
    }
}

/// The hub killed with kill -9 during a stream of 1 000 messages (a third
/// of them bronze) from west to a device in east, and restarted: every
/// region keeps serving its own devices meanwhile, and the device ends
/// with every message exactly once (what waited in the link queues
/// crosses once the hub is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let regions = two_regions(star, "hubout", &[]).await;
    let (east, west) = (&regions.east, &regions.west);
    let mut device = east.ws(None).await;
    device.sub("out.#").await;
    wait_for("east's binding on west's paths exchange", || {
        has_binding(&star.west, "postmesh.paths", "out.#")
    })
    .await;
    // West's own device, to show west keeps serving during the outage.
    let mut local = west.ws(None).await;
    local.sub("out.#").await;

    let total = 1000;
    let client = reqwest::Client::new();
    let mut published = HashSet::new();
    for i in 0..total {
        if i == 300 {
            tokio::task::spawn_blocking(|| star.hub.kill())
                .await
                .unwrap();
        }
        if i == 600 {
            tokio::task::spawn_blocking(|| star.hub.restart())
                .await
                .unwrap()
                .expect("the hub restarts");
        }
        let class = if i % 3 == 0 { "bronze" } else { "silver" };
        let res = client
            .post(format!("{}/v1/publish", west.http()))
            .json(&json!({"path": format!("out.{}", i % 4), "body": i, "class": class}))
            .send()
            .await
            .expect("publish");
        assert_eq!(res.status(), 200, "west serves during the outage ({i})");
        let r: Value = res.json().await.unwrap();
        published.insert(r["uuid"].clone());
    }
    // West's device got everything live, hub or no hub.
    let here = receive(&mut local, total).await;
    assert_eq!(
        here.iter()
            .map(|m| m["uuid"].clone())
            .collect::<HashSet<_>>(),
        published
    );
    // East's device gets everything, each once, once the links are back.
    let there = receive(&mut device, total).await;
    assert_eq!(
        there
            .iter()
            .map(|m| m["uuid"].clone())
            .collect::<HashSet<_>>(),
        published
    );
    device.quiet(Duration::from_secs(1)).await;
}

/// A device moves from west to east while the hub is down. What west
/// publishes meanwhile cannot come live (east's new binding cannot reach
/// west) and is not in east's core when the device resumes (its replicas
/// wait in west's link queue). East's core hears no marks from west, so
/// the gateway's late reads go on until the hub is back and the replicas
/// have landed: the device ends with every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_moves_region_during_a_hub_outage_misses_nothing() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let regions = two_regions(star, "moving", &[]).await;
    let (east, west) = (&regions.east, &regions.west);

    let mut device = west.ws(None).await;
    device.sub("move.#").await;
    let mut had = Vec::new();
    for i in 0..20 {
        had.push(publish(west, &format!("move.{}", i % 3), json!(i)).await);
    }
    let got = receive(&mut device, had.len()).await;
    let position = got.last().unwrap()["cursor"].clone();
    device.close().await;
    // East's core has west's messages so far.
    wait_for("west's messages replicated to east", || {
        let url = format!("{}/v1/history?pattern=move.%23&limit=100", east.http());
        async move {
            let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            v["messages"].as_array().map(Vec::len) == Some(20)
        }
    })
    .await;

    tokio::task::spawn_blocking(|| star.hub.kill())
        .await
        .unwrap();
    let mut missed = HashSet::new();
    for i in 0..30 {
        let r = publish(west, &format!("move.{}", i % 3), json!(100 + i)).await;
        missed.insert(r["uuid"].as_str().unwrap().to_owned());
    }
    // Long enough for east's core to notice west is quiet.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut moved = east.ws(None).await;
    let r = moved
        .request(json!({"op": "sub", "pattern": "move.#", "since": position}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    tokio::task::spawn_blocking(|| star.hub.restart())
        .await
        .unwrap()
        .expect("the hub restarts");

    // Within the late reads' minute, each missed message arrives once;
    // copies of what the device had (the overlap) only inside replays.
    let had: HashSet<String> = had
        .iter()
        .map(|r| r["uuid"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < missed.len() && Instant::now() < deadline {
        let Some(f) = moved.next_within(Duration::from_secs(1)).await else {
            continue;
        };
        match f["op"].as_str() {
            Some("msg") => {
                let u = f["uuid"].as_str().unwrap().to_owned();
                if had.contains(&u) {
                    continue;
                }
                assert!(missed.contains(&u), "unexpected {f}");
                assert!(seen.insert(u), "delivered twice: {f}");
            }
            Some("reread") => panic!("the resume gave up: {f}"),
            _ => {}
        }
    }
    let lost: Vec<&String> = missed.difference(&seen).collect();
    assert!(lost.is_empty(), "never received: {lost:?}");
    moved.quiet(Duration::from_secs(1)).await;
}

/// Messages of `n` (from `from` on) for paths under `down.`, each with a
/// UUID of its own, as `publish_until_accepted` sends them.
fn batch(from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            json!({"path": format!("down.{}", i % 4), "body": i,
                   "uuid": postmesh_schema::message::new_v1().to_string()})
        })
        .collect()
}

fn uuids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["uuid"].as_str().expect("a uuid").to_owned())
        .collect()
}

/// East's broker killed with kill -9 during a stream of 1 000 messages
/// published in both regions, and restarted. Meanwhile west keeps serving
/// its own device, which keeps receiving what west publishes; east's
/// gateway keeps its device connected, and east's publishes are resent
/// until east accepts them again. Every device of both regions ends with
/// every message exactly once (what crossed while east was away reaches
/// east's device live once the links are back, or by its reread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_broker_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let regions = two_regions(star, "regionout", &[]).await;
    let (east, west) = (&regions.east, &regions.west);
    let mut in_east = east.ws(None).await;
    in_east.sub("down.#").await;
    let mut in_west = west.ws(None).await;
    in_west.sub("down.#").await;
    wait_for("east's binding on west's paths exchange", || {
        has_binding(&star.west, "postmesh.paths", "down.#")
    })
    .await;
    wait_for("west's binding on east's paths exchange", || {
        has_binding(&star.east, "postmesh.paths", "down.#")
    })
    .await;

    let client = reqwest::Client::new();
    let batch_size = 10;
    let (mut before, mut during, mut after) = (Vec::new(), Vec::new(), Vec::new());
    // 300 before the outage, a batch each from west and east in turn.
    for b in 0..30 {
        let gw = if b % 2 == 0 { &west } else { &east };
        let messages = batch(b * batch_size, batch_size);
        postmesh_tests::publish_until_accepted(&client, &gw.http(), &messages).await;
        before.extend(uuids(&messages));
    }

    tokio::task::spawn_blocking(|| star.east.kill())
        .await
        .unwrap();
    // East cannot accept while its broker is away: its batch is resent
    // until it is back.
    let stalled = batch(300, batch_size);
    let east_url = east.http();
    let resend = {
        let (client, messages) = (client.clone(), stalled.clone());
        tokio::spawn(async move {
            postmesh_tests::publish_until_accepted(&client, &east_url, &messages).await
        })
    };
    // 300 in west during the outage.
    for b in 0..30 {
        let messages = batch(310 + b * batch_size, batch_size);
        postmesh_tests::publish_until_accepted(&client, &west.http(), &messages).await;
        during.extend(uuids(&messages));
    }
    // West's device has received everything so far, east or no east.
    let so_far: Vec<String> = before.iter().chain(&during).cloned().collect();
    in_west
        .receive_each_once(&so_far.iter().collect::<HashSet<_>>())
        .await;
    assert!(!resend.is_finished(), "east accepted nothing while down");

    tokio::task::spawn_blocking(|| star.east.restart())
        .await
        .unwrap()
        .expect("east's broker restarts");
    // 390 more from both regions, as east comes back.
    for b in 0..39 {
        let gw = if b % 2 == 0 { &west } else { &east };
        let messages = batch(610 + b * batch_size, batch_size);
        postmesh_tests::publish_until_accepted(&client, &gw.http(), &messages).await;
        after.extend(uuids(&messages));
    }
    resend.await.unwrap();
    after.extend(uuids(&stalled));
    let all: Vec<String> = so_far.iter().chain(&after).cloned().collect();
    assert_eq!(all.len(), 1000);

    in_west
        .receive_each_once(&after.iter().collect::<HashSet<_>>())
        .await;
    in_east
        .receive_each_once(&all.iter().collect::<HashSet<_>>())
        .await;
}

const SECRET: &str = "regions-secret";
/// The user of the design's example: its id paths are `id.*.c.2.x.M`.
const USER: u64 = 9067832;
const PREFS: &str = "id.prefs.c.2.x.M";

/// `POST /v1/publish` of `message` with `token`; the answer.
async fn publish_with(gw: &Process, token: &str, message: Value) -> Value {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/publish", gw.http()))
        .bearer_auth(token)
        .json(&message)
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status(), 200, "publish {message}");
    res.json().await.unwrap()
}

/// The UUIDs of `pattern`'s history (URL-encoded) read through `gw` with
/// `token`.
async fn history_with(gw: &Process, token: &str, pattern: &str) -> Vec<Value> {
    gw.get(&format!("/v1/history?pattern={pattern}"), Some(token))
        .await["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["uuid"].clone())
        .collect()
}

/// Waits until `key` is bound on each region's paths exchange (bound by
/// the other region's gateway, through the hub).
async fn bound_in_both(star: &Star, key: &str) {
    for (name, node) in [("east", &star.east), ("west", &star.west)] {
        wait_for(&format!("{key} bound on {name}'s paths exchange"), || {
            has_binding(node, "postmesh.paths", key)
        })
        .await;
    }
}

/// A user with a phone on east's gateway and a laptop on west's. Login
/// sync in either region reads the preferences stored through the other
/// (each region's core holds them); a dismissal on the phone reaches the
/// laptop and leaves the message out of the user's history and login sync
/// in both regions; preferences changed through one region re-sync the
/// devices of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismiss_and_login_sync_for_a_user_with_devices_in_two_regions() {
    let _owner = STAR.lock().await;
    let star = the_star().await;
    let regions = two_regions(star, "twouser", &["--secret", SECRET]).await;
    let (east, west) = (&regions.east, &regions.west);
    let admin = postmesh_tests::token(SECRET, None, &["#"], &["#"]);
    let user = postmesh_tests::token(SECRET, Some(USER), &["alerts.#", "sports.#"], &[]);

    // Preferences stored through east, and held by west's core too.
    let prefs = publish_with(
        east,
        &admin,
        json!({"path": PREFS, "body": {"subscribe": ["alerts.#"]}}),
    )
    .await;
    wait_for("west's core holds the preferences", || {
        let (west, admin, uuid) = (&west, &admin, prefs["uuid"].clone());
        async move { history_with(west, admin, PREFS).await == [uuid] }
    })
    .await;

    // Login sync on both sides: the stored preferences, then `synced`.
    let mut phone = east.ws(Some(&user)).await;
    let mut laptop = west.ws(Some(&user)).await;
    for (name, device) in [("east", &mut phone), ("west", &mut laptop)] {
        let synced = device.expect("synced", None).await;
        assert_eq!(synced["user"], USER.to_string());
        assert_eq!(
            synced["patterns"],
            json!(["alerts.#"]),
            "login sync in {name}"
        );
        assert_eq!(device.msg().await["uuid"], prefs["uuid"], "{name}");
    }
    bound_in_both(star, "alerts.#").await;
    bound_in_both(star, "id.*.c.2.x.M").await;

    // An alert published in west reaches both devices, and is in the
    // user's history in both regions.
    let alert = publish_with(west, &admin, json!({"path": "alerts.1", "body": "x"})).await;
    assert_eq!(phone.msg().await["uuid"], alert["uuid"]);
    assert_eq!(laptop.msg().await["uuid"], alert["uuid"]);
    for gw in [&east, &west] {
        wait_for("the alert in the user's history", || {
            let (user, uuid) = (&user, alert["uuid"].clone());
            async move { history_with(gw, user, "alerts.%23").await == [uuid] }
        })
        .await;
    }

    // Dismissed on the phone, in east: every device of the user is told,
    // the laptop in west too.
    let r = phone
        .request(json!({"op": "dismiss", "uuid": alert["uuid"]}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    for device in [&mut phone, &mut laptop] {
        let d = device.expect("dismissed", None).await;
        assert_eq!(d["uuid"], alert["uuid"]);
    }
    // Both regions' cores leave it out of the user's history, but not
    // out of anyone else's.
    for gw in [&east, &west] {
        wait_for("the dismissal in the user's history", || {
            let user = &user;
            async move { history_with(gw, user, "alerts.%23").await.is_empty() }
        })
        .await;
        assert_eq!(
            history_with(gw, &admin, "alerts.%23").await,
            [alert["uuid"].clone()]
        );
    }
    // A tablet logging in through west: login sync leaves it out too.
    let mut tablet = west.ws(Some(&user)).await;
    let synced = tablet.expect("synced", None).await;
    assert_eq!(synced["patterns"], json!(["alerts.#"]));
    assert_eq!(tablet.msg().await["uuid"], prefs["uuid"]);
    tablet.quiet(Duration::from_millis(500)).await;
    tablet.close().await;

    // Preferences changed through west: both devices re-sync.
    publish_with(
        west,
        &admin,
        json!({"path": PREFS, "body": {"subscribe": ["sports.#"]}}),
    )
    .await;
    for (name, device) in [("east", &mut phone), ("west", &mut laptop)] {
        assert_eq!(device.msg().await["path"], PREFS, "{name}");
        let synced = device.expect("synced", None).await;
        assert_eq!(synced["patterns"], json!(["sports.#"]), "re-sync in {name}");
    }
    bound_in_both(star, "sports.#").await;
    // The old preference is dropped, the new one live, on both sides.
    publish_with(east, &admin, json!({"path": "alerts.2"})).await;
    let goal = publish_with(east, &admin, json!({"path": "sports.1", "body": "goal"})).await;
    for device in [&mut phone, &mut laptop] {
        assert_eq!(device.msg().await["uuid"], goal["uuid"]);
        device.quiet(Duration::from_millis(500)).await;
    }
}
