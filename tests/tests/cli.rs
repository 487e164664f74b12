//! The `postmesh` binary: commands, exit codes and messages.

use std::process::{Command, Stdio};

use postmesh_tests::{Mesh, binary};
use serde_json::{Value, json};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_tail_and_history() {
    let mesh = Mesh::start().await;
    let url = mesh.url();
    let mut tail = tokio::process::Command::new(binary())
        .args(["tail", "cli.#", "--url", &url])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the tail's subscription is live.
    for _ in 0..100 {
        let (_, m) = mesh.get("/metrics", None).await;
        if m.as_str()
            .unwrap()
            .contains("postmesh_gateway_subscriptions 1")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let u = url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "publish",
            "cli.a",
            r#"{"n":1}"#,
            "--url",
            &u,
            "--meta",
            r#"{"k":"v"}"#,
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let uuid = out.trim().to_owned();
    assert_eq!(uuid.len(), 36);

    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .expect("tail prints")
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["uuid"], uuid);
    assert_eq!(v["meta"]["k"], "v");
    tail.kill().await.unwrap();

    let u = url.clone();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run(&["history", "cli.#", "--url", &u]))
            .await
            .unwrap();
    assert_eq!(code, 0);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["body"], json!({"n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_nonzero() {
    let mesh = Mesh::start().await;
    let url = mesh.url();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || run(&["publish", "bad.*", "--url", &url]))
            .await
            .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("bad_path"), "{err}");
    let (code, _, err) = run(&["publish", "a", "{not json", "--url", "http://127.0.0.1:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("not valid JSON"), "{err}");
    let (code, _, err) = run(&["history", "a.#", "--url", "http://127.0.0.1:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach"), "{err}");
    let (code, _, err) = run(&["token", "--secret", "s", "--subs", "a..b"]);
    assert_ne!(code, 0);
    assert!(err.contains("pattern"), "{err}");
}

#[test]
fn token_command_issues_a_verifiable_token() {
    let (code, out, err) = run(&[
        "token", "--secret", "k", "--sub", "42", "--subs", "feeds.#", "--pubs", "feeds.x",
    ]);
    assert_eq!(code, 0, "{err}");
    let grants = postmesh_gateway::auth::Authority::new(Some("k"))
        .verify(out.trim())
        .unwrap();
    assert_eq!(grants.user, Some(42));
    assert!(grants.can_publish(&postmesh_schema::Path::parse("feeds.x").unwrap()));
}

#[test]
fn role_commands_read_flags_env_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[gateway]\nlisten = \"0.0.0.0:7400\"\n").unwrap();
    let out = Command::new(binary())
        .args(["up", "--config", file.to_str().unwrap()])
        .env_remove("POSTMESH_SECRET")
        .env("POSTMESH_DATA", dir.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a secret"), "{err}");
    std::fs::write(&file, "[gateway]\nlisten_typo = 1\n").unwrap();
    let out = Command::new(binary())
        .args(["up", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_typo"));
}

/// `postmesh up` prints its URLs, and Ctrl-C (SIGINT) closes devices with
/// 1001, drains and exits 0, leaving the data directory reusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_its_urls_and_ctrl_c_drains_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = postmesh_tests::Process::start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let ws_url = up.ws_url.clone().expect("a ws:// URL");
    let mut device = postmesh_tests::Client::connect(&ws_url).await;
    device.sub("x.#").await;
    let pid = up.child.id().unwrap().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let (how, _) = device.until_closed().await;
    assert_eq!(how, postmesh_tests::Closed::Code(1001));
    let exit = tokio::time::timeout(std::time::Duration::from_secs(20), up.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// `tail` survives a crash of the server: it reconnects to the same
/// address, resumes from the cursor of the last message it printed, and
/// prints every message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_resumes_across_a_server_crash_and_prints_each_message_once() {
    use postmesh_tests::Process;
    use std::time::Duration;
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let listen = postmesh_tests::free_loopback_addr();
    let data = dir.path().to_str().unwrap().to_owned();
    let args = ["up", "--listen", listen.as_str(), "--data", data.as_str()];
    let mut server = Process::start(&args, &[]).await;
    let url = server.http();
    let mut tail = tokio::process::Command::new(binary())
        .args(["tail", "crash.#", "--url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let client = reqwest::Client::new();
    // Wait until the tail's subscription is live.
    for _ in 0..100 {
        let metrics = client.get(format!("{url}/metrics")).send().await.unwrap();
        if metrics
            .text()
            .await
            .unwrap()
            .contains("postmesh_gateway_subscriptions 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Retried until the server answers: it may be restarting.
    let publish = async |n: u64| -> String {
        for _ in 0..100 {
            let res = client
                .post(format!("{url}/v1/publish"))
                .json(&json!({"path": format!("crash.{n}"), "body": n}))
                .send()
                .await;
            if let Ok(r) = res
                && r.status() == 200
            {
                let v: Value = r.json().await.unwrap();
                return v["uuid"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("publish {n} never answered");
    };
    let first = publish(1).await;
    let mut printed = vec![next_json(&mut lines).await];
    server.kill().await;
    server = Process::start(&args, &[]).await;
    let missed = publish(2).await;
    let after = publish(3).await;
    printed.push(next_json(&mut lines).await);
    printed.push(next_json(&mut lines).await);
    let uuids: Vec<&str> = printed
        .iter()
        .map(|m| m["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, [first.as_str(), missed.as_str(), after.as_str()]);
    assert!(
        printed.iter().all(|m| m["cursor"].is_string()),
        "{printed:?}"
    );
    let more = tokio::time::timeout(Duration::from_millis(700), lines.next_line()).await;
    assert!(more.is_err(), "nothing printed twice: {more:?}");
    drop(server);
}

/// The next line a child printed, as JSON.
async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(std::time::Duration::from_secs(15), lines.next_line())
        .await
        .expect("printed in time")
        .unwrap()
        .expect("a line");
    serde_json::from_str(&line).unwrap()
}

/// `postmesh up | head -1`, and a terminal that went away: a server whose
/// standard output and error are closed goes on serving, and stops cleanly
/// on SIGTERM (writing to them must neither panic nor block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_keeps_serving_when_its_output_is_closed() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let listen = postmesh_tests::free_loopback_addr();
    let mut up = tokio::process::Command::new(binary())
        .args(["up", "--listen", &listen, "--data"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Both pipes are closed before the server writes to them.
    drop(up.stdout.take());
    drop(up.stderr.take());

    let client = reqwest::Client::new();
    let mut serving = false;
    for _ in 0..300 {
        if let Some(status) = up.try_wait().unwrap() {
            panic!("postmesh up exited with {status:?} once its output was closed");
        }
        if let Ok(res) = client.get(format!("http://{listen}/healthz")).send().await
            && res.status() == 200
        {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "postmesh up never served");
    // Still serving once it has had every chance to write its banner.
    let published = client
        .post(format!("http://{listen}/v1/publish"))
        .json(&json!({"path": "closed.out", "body": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);

    let pid = up.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// `postmesh history | head -1` and `postmesh tail | head -1`: once the
/// reader has gone, the command stops quietly with success. Before, it
/// panicked with "failed printing to stdout".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_tail_stop_quietly_when_their_reader_goes() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mesh = Mesh::start().await;
    let url = mesh.url();
    // More than a pipe holds (64 KiB), so the writer meets the closed pipe.
    let body = "z".repeat(8 * 1024);
    for i in 0..40 {
        mesh.publish(&format!("head.{i}"), json!(body)).await;
    }
    for args in [
        vec!["history", "head.#", "--limit", "40", "--url", &url],
        vec!["tail", "head.#", "--history", "40", "--url", &url],
    ] {
        let mut child = tokio::process::Command::new(binary())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("a first line");
        assert!(first.contains("head."), "{first}");
        drop(lines);
        if args[0] == "tail" {
            // Something new to print, in case the replay fitted the pipe.
            mesh.publish("head.new", json!("after")).await;
        }
        let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
            .await
            .unwrap_or_else(|_| panic!("`postmesh {}` went on after its reader left", args[0]))
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert!(status.success(), "{}: {status} {err}", args[0]);
        assert!(!err.contains("panicked"), "{}: {err}", args[0]);
    }
}
