//! `deploy/local-mesh.sh`: `up` starts a hub, two regional brokers, the
//! Rabbit Router and a core and a gateway per region, prints one line per
//! region, and the regions reach each other; `down` leaves no process and
//! no listening port behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postmesh_tests::{Client, binary};
use serde_json::json;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy/local-mesh.sh")
}

fn run(base: &Path, what: &str) -> (bool, String, String) {
    let out = Command::new(script())
        .arg(what)
        .env("POSTMESH_MESH_DIR", base)
        .env("POSTMESH_BIN", binary())
        .output()
        .expect("the script runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pids `up` recorded.
fn pids(base: &Path) -> Vec<u32> {
    std::fs::read_dir(base.join("pids"))
        .expect("pid files")
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Whether anything listens on `host:port`.
fn listening(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(300)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_the_regions_that_reach_each_other_and_down_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mesh");
    let b = base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(&b, "up"))
        .await
        .unwrap();
    assert!(ok, "up failed:\n{out}{err}");

    // Exactly one line per region.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let mut regions = Vec::new();
    for (line, name) in lines.iter().zip(["east", "west"]) {
        let rest = line
            .strip_prefix(&format!("region {name} ws="))
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let (ws, http) = rest.split_once(" http=").expect("http=");
        assert!(ws.starts_with("ws://") && ws.ends_with("/ws"), "{line}");
        assert!(http.starts_with("http://"), "{line}");
        assert_eq!(ws, format!("{}/ws", http.replace("http://", "ws://")));
        regions.push((ws.to_owned(), http.to_owned()));
    }
    let started = pids(&base);
    assert_eq!(
        started.len(),
        8,
        "3 brokers, the router, 2 cores, 2 gateways"
    );
    let router = std::fs::read_to_string(base.join("router.toml")).unwrap();

    // A device in east receives what west publishes.
    let mut device = Client::connect(&regions[0].0).await;
    device.sub("local.#").await;
    let mut uuid = None;
    for _ in 0..100 {
        // The device's binding crosses the hub asynchronously: publish
        // probes until one arrives.
        let res = reqwest::Client::new()
            .post(format!("{}/v1/publish", regions[1].1))
            .json(&json!({"path": "local.probe", "body": "from west"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        if let Some(m) = device.next_within(Duration::from_millis(200)).await {
            uuid = Some(m);
            break;
        }
    }
    let m = uuid.expect("a message from west reached east");
    assert_eq!(m["body"], "from west");
    device.close().await;

    let b = base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || run(&b, "down"))
        .await
        .unwrap();
    assert!(ok, "down failed:\n{out}{err}");
    for pid in started {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} still runs after down"
        );
    }
    for (_, http) in &regions {
        assert!(
            !listening(http.trim_start_matches("http://")),
            "{http} still listens"
        );
    }
    for line in router.lines() {
        if let Some(url) = line.strip_prefix("management = \"") {
            let addr = url.trim_end_matches('"').trim_start_matches("http://");
            assert!(!listening(addr), "a broker still listens on {addr}");
        }
    }
    assert!(!base.exists(), "down removes its directory");
}
