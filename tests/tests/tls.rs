//! TLS on the gateway's listener, against the real binary: `wss://` and
//! `https://` on one port, the certificate reloaded on SIGHUP without
//! dropping connections (a bad file keeps the old one), clients that do not
//! speak TLS (or never finish a handshake) dropped without hurting others,
//! shutdown with TLS connections open, and start-up refusing bad files.
//!
//! Every certificate is made here: two authorities, so a client that trusts
//! only one of them tells which certificate the server presents.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postmesh_tests::{Client, Closed, Process};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a process that must exit, or a state the test waits for, may
/// take. Far above what they need: it only keeps a failing test from
/// hanging.
const WAIT: Duration = Duration::from_secs(30);

/// A certificate authority made for one test.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate for `localhost` and `127.0.0.1`, with its chain and
/// key as the files the gateway reads.
struct Leaf {
    /// The server's certificate, then its authority's.
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Authority {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn root(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn issue(&self, name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A client's TLS settings: trusts `roots` only, and never resumes a
/// session, so every connection is a full handshake and reports the
/// certificate the server presents now.
fn trusting(roots: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// An HTTPS client trusting `roots` only. Each request has a connection of
/// its own: a kept-alive one could be closed by the server's header timeout
/// (1 s in one test) just as the next request goes out on it.
fn https(roots: &[CertificateDer<'static>]) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(trusting(roots))
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTPS client")
}

/// A device over `wss://`, trusting `roots` only.
async fn device(server: &Process, roots: &[CertificateDer<'static>]) -> Client {
    Client::connect_tls(url(server), Arc::new(trusting(roots))).await
}

fn url(server: &Process) -> &str {
    server.ws_url.as_deref().expect("a gateway")
}

/// The certificate files of one server, in a directory of the test's.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("chain.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("postmesh.toml")
    }

    /// Writes `leaf`'s chain and key where the gateway reads them.
    fn install(&self, leaf: &Leaf) {
        std::fs::write(self.cert(), &leaf.chain_pem).unwrap();
        std::fs::write(self.key(), &leaf.key_pem).unwrap();
    }

    /// A configuration with TLS and `gateway` settings.
    fn write_config(&self, gateway: &str) -> PathBuf {
        std::fs::write(
            self.config(),
            format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\n{gateway}\n\
                 [gateway.tls]\ncert = {:?}\nkey = {:?}\n",
                self.cert(),
                self.key()
            ),
        )
        .unwrap();
        self.config()
    }

    /// `postmesh up` with TLS and `gateway` settings.
    async fn up(&self, gateway: &str) -> Process {
        let config = self.write_config(gateway);
        let server = Process::start(
            &[
                "up",
                "--config",
                config.to_str().unwrap(),
                "--data",
                self.data().to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert!(
            url(&server).starts_with("wss://"),
            "a server with TLS announces wss://, not {}",
            url(&server)
        );
        server
    }
}

/// Publishes one message over `https://`; returns its UUID.
async fn publish(server: &Process, client: &reqwest::Client, path: &str) -> String {
    let res = client
        .post(format!("{}/v1/publish", server.http()))
        .json(&json!({"path": path, "body": path}))
        .send()
        .await
        .expect("publish over https");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["uuid"].as_str().expect("a uuid").to_owned()
}

/// The value of a counter on `/metrics`, read over `https://`.
async fn counter(server: &Process, client: &reqwest::Client, name: &str) -> u64 {
    let text = client
        .get(format!("{}/metrics", server.http()))
        .send()
        .await
        .expect("metrics over https")
        .text()
        .await
        .unwrap();
    let line = format!("{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sends SIGHUP and waits until the server counted the reload in `name`
/// (`postmesh_gateway_tls_reloads` or `..._reload_failures`) once more.
async fn reload(server: &Process, client: &reqwest::Client, name: &str) {
    let before = counter(server, client, name).await;
    server.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    while counter(server, client, name).await == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not move after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_on_one_port_and_a_reload_reaches_new_connections_only() {
    let (first_ca, second_ca) = (Authority::new("first"), Authority::new("second"));
    let (first, second) = (first_ca.issue("first"), second_ca.issue("second"));
    let both = [first_ca.root(), second_ca.root()];
    let files = Files::new();
    files.install(&first);
    let mut server = files.up("").await;
    let old_https = https(&[first_ca.root()]);

    // The HTTP API over https://.
    let health: Value = old_https
        .get(format!("{}/healthz", server.http()))
        .send()
        .await
        .expect("healthz over https")
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");

    // A device over wss:// receives what is published over https://.
    let mut old = device(&server, &[first_ca.root()]).await;
    assert_eq!(old.peer_certificate(), Some(&first.der));
    old.sub("tls.#").await;
    let uuid = publish(&server, &old_https, "tls.before").await;
    let m = old.msg().await;
    assert_eq!(
        (m["uuid"].as_str(), &m["path"]),
        (Some(&*uuid), &json!("tls.before"))
    );
    let history: Value = old_https
        .get(format!("{}/v1/history?pattern=tls.%23", server.http()))
        .send()
        .await
        .expect("history over https")
        .json()
        .await
        .unwrap();
    assert_eq!(history["messages"][0]["uuid"], uuid.as_str(), "{history}");

    // Renew: another authority's certificate, then SIGHUP.
    files.install(&second);
    reload(&server, &https(&both), "postmesh_gateway_tls_reloads").await;

    // New connections see the new certificate: a client that trusts only
    // the first authority is refused, one that trusts the second is served.
    let refused = Client::try_connect_tls(url(&server), Arc::new(trusting(&[first_ca.root()])))
        .await
        .err()
        .expect("the old certificate is no longer presented");
    assert!(
        refused.to_string().contains("certificate"),
        "refused for its certificate: {refused}"
    );
    assert!(
        https(&[first_ca.root()])
            .get(format!("{}/healthz", server.http()))
            .send()
            .await
            .is_err(),
        "https:// no longer presents the old certificate"
    );
    let mut new = device(&server, &[second_ca.root()]).await;
    assert_eq!(new.peer_certificate(), Some(&second.der));
    new.sub("tls.#").await;

    // The connection opened before the reload still works both ways.
    let new_https = https(&[second_ca.root()]);
    let uuid = publish(&server, &new_https, "tls.after").await;
    for device in [&mut old, &mut new] {
        let m = device.msg().await;
        assert_eq!(
            (m["uuid"].as_str(), &m["path"]),
            (Some(&*uuid), &json!("tls.after"))
        );
    }
    let r = old
        .request(json!({"op": "pub", "path": "tls.from-old", "body": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(new.msg().await["path"], "tls.from-old");
    assert_eq!(old.msg().await["path"], "tls.from-old");

    server.signal("TERM");
    server.exits_cleanly(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_bad_files_keeps_the_old_certificate() {
    let authority = Authority::new("only");
    let (first, second) = (authority.issue("first"), authority.issue("second"));
    let roots = [authority.root()];
    let files = Files::new();
    files.install(&first);
    let mut server = files.up("").await;
    let client = https(&roots);
    let mut old = device(&server, &roots).await;
    old.sub("tls.#").await;

    // Not a certificate; then a renewed certificate without its key.
    std::fs::write(files.cert(), "not a certificate").unwrap();
    reload(&server, &client, "postmesh_gateway_tls_reload_failures").await;
    std::fs::write(files.cert(), &second.chain_pem).unwrap();
    reload(&server, &client, "postmesh_gateway_tls_reload_failures").await;
    assert_eq!(
        counter(&server, &client, "postmesh_gateway_tls_reloads").await,
        0
    );

    // The first certificate still serves old and new connections.
    let mut fresh = device(&server, &roots).await;
    assert_eq!(fresh.peer_certificate(), Some(&first.der));
    fresh.sub("tls.#").await;
    let uuid = publish(&server, &client, "tls.kept").await;
    assert_eq!(old.msg().await["uuid"], uuid.as_str());
    assert_eq!(fresh.msg().await["uuid"], uuid.as_str());

    // Fixed files are taken by the next reload.
    files.install(&second);
    reload(&server, &client, "postmesh_gateway_tls_reloads").await;
    let renewed = device(&server, &roots).await;
    assert_eq!(renewed.peer_certificate(), Some(&second.der));
    let uuid = publish(&server, &client, "tls.renewed").await;
    assert_eq!(old.msg().await["uuid"], uuid.as_str());

    server.signal("TERM");
    server.exits_cleanly(WAIT).await;
}

/// Whether the server closes `s` within `wait` (EOF or an error); what it
/// sent before, if anything.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_tls_are_dropped_and_others_go_on() {
    let authority = Authority::new("only");
    let leaf = authority.issue("server");
    let roots = [authority.root()];
    let files = Files::new();
    files.install(&leaf);
    let mut server = files.up("header_timeout_secs = 1").await;
    let client = https(&roots);
    let addr = server.host();
    let mut bystander = device(&server, &roots).await;
    bystander.sub("tls.#").await;

    // Plain HTTP on the TLS port: refused, never answered in HTTP.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: postmesh\r\n\r\n")
        .await
        .unwrap();
    let said = closed_within(&mut plain, WAIT)
        .await
        .expect("a plain HTTP client is dropped");
    assert!(
        !said.starts_with(b"HTTP/"),
        "a plain client got an HTTP answer: {:?}",
        String::from_utf8_lossy(&said)
    );
    let http = format!("http://{addr}/healthz");
    assert!(
        reqwest::get(&http).await.is_err(),
        "http:// on the TLS port fails"
    );
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .is_err(),
        "ws:// on the TLS port fails"
    );

    // A client that opens a socket and sends nothing, and one that starts a
    // handshake record and stalls: both dropped at the header timeout.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert!(
        closed_within(&mut silent, WAIT).await.is_some(),
        "a client that never starts its handshake is dropped"
    );
    assert!(
        closed_within(&mut stalled, WAIT).await.is_some(),
        "a client that never finishes its handshake is dropped"
    );
    let failures = counter(&server, &client, "postmesh_gateway_tls_handshake_failures").await;
    assert!(
        failures >= 5,
        "five failed handshakes counted, not {failures}"
    );

    // The device connected all along still receives, and new ones connect.
    let uuid = publish(&server, &client, "tls.after-the-noise").await;
    assert_eq!(bystander.msg().await["uuid"], uuid.as_str());
    let mut late = device(&server, &roots).await;
    late.sub("tls.#").await;
    let uuid = publish(&server, &client, "tls.late").await;
    assert_eq!(late.msg().await["uuid"], uuid.as_str());
    assert_eq!(bystander.msg().await["uuid"], uuid.as_str());

    server.signal("TERM");
    server.exits_cleanly(WAIT).await;
}

/// Request headers without the blank line that ends them.
const HALF_HEADERS: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: postmesh\r\nAccept: */*\r\n";

/// A TLS connection that sent half a request, and a TCP connection that
/// never started its handshake; both still open when the test returns
/// them (the header timeout is long).
async fn hold_open(
    server: &Process,
    roots: &[CertificateDer<'static>],
) -> (tokio_rustls::client::TlsStream<TcpStream>, TcpStream) {
    let addr = server.host();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let mut half = tokio_rustls::TlsConnector::from(Arc::new(trusting(roots)))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    half.write_all(HALF_HEADERS).await.unwrap();
    half.flush().await.unwrap();
    let silent = TcpStream::connect(&addr).await.unwrap();
    // Served after the two were accepted.
    let health = https(roots)
        .get(format!("{}/healthz", server.http()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    (half, silent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_are_cut_at_the_shutdown_deadline() {
    let authority = Authority::new("only");
    let roots = [authority.root()];
    let files = Files::new();
    files.install(&authority.issue("server"));
    let mut server = files.up("drain_secs = 2\nheader_timeout_secs = 3600").await;
    let mut device = device(&server, &roots).await;
    device.sub("tls.#").await;
    let _held = hold_open(&server, &roots).await;
    server.signal("TERM");
    let (closed, _) = device.until_closed().await;
    assert_eq!(closed, Closed::Code(1001), "devices are closed with 1001");
    server.exits_cleanly(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_with_tls_connections_open() {
    let authority = Authority::new("only");
    let roots = [authority.root()];
    let files = Files::new();
    files.install(&authority.issue("server"));
    // A deadline no test waits for: only the second signal can end it.
    let mut server = files
        .up("drain_secs = 3600\nheader_timeout_secs = 3600")
        .await;
    let _held = hold_open(&server, &roots).await;
    server.signal("TERM");
    // The first signal is taken once the listener is closed.
    assert!(
        server.listener_closes().await,
        "the listener closes on the first signal"
    );
    server.signal("INT");
    server.exits_cleanly(WAIT).await;
}

/// Runs `postmesh up` with `files`' configuration; it must fail to start.
/// Returns its standard error.
async fn refused_start(files: &Files) -> String {
    let config = files.write_config("");
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(postmesh_tests::binary())
            .args(["up", "--config", config.to_str().unwrap(), "--data"])
            .arg(files.data())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a refused start ends")
    .expect("postmesh runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(" is up"),
        "not announced as up"
    );
    stderr
}

/// The last line of `stderr`: the one `postmesh: ...` line the CLI prints.
fn last_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

fn mentions(line: &str, path: &Path, words: &str) {
    assert!(line.starts_with("postmesh: "), "{line}");
    assert!(
        line.contains(&*path.to_string_lossy()),
        "names {}: {line}",
        path.display()
    );
    assert!(line.contains(words), "says {words:?}: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_bad_certificate_stops_the_start_with_a_message() {
    let authority = Authority::new("only");
    let (leaf, other) = (authority.issue("server"), authority.issue("other"));
    let files = Files::new();

    let stderr = refused_start(&files).await;
    mentions(
        last_line(&stderr),
        &files.cert(),
        "cannot read the TLS certificate file",
    );

    std::fs::write(files.cert(), "not a certificate").unwrap();
    std::fs::write(files.key(), &leaf.key_pem).unwrap();
    let stderr = refused_start(&files).await;
    mentions(last_line(&stderr), &files.cert(), "holds no certificate");

    std::fs::write(files.cert(), &leaf.chain_pem).unwrap();
    std::fs::write(files.key(), "").unwrap();
    let stderr = refused_start(&files).await;
    mentions(last_line(&stderr), &files.key(), "holds no private key");

    std::fs::write(files.key(), &other.key_pem).unwrap();
    let stderr = refused_start(&files).await;
    mentions(
        last_line(&stderr),
        &files.key(),
        "does not go with the certificate",
    );

    // With the right key it starts.
    std::fs::write(files.key(), &leaf.key_pem).unwrap();
    let mut server = files.up("").await;
    server.signal("TERM");
    server.exits_cleanly(WAIT).await;
}
