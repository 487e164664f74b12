//! The client commands: `publish` and `history` over HTTP, `tail` over
//! WebSocket, `token` offline.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use postmesh_router::backoff::Backoff;
use postmesh_schema::RecentSet;
use postmesh_schema::protocol::close;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{Endpoint, HistoryArgs, PublishArgs, TailArgs, TokenArgs};

fn base(endpoint: &Endpoint) -> String {
    endpoint.url.trim_end_matches('/').to_owned()
}

fn parse_json(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("{what} is not valid JSON ({e}); quote strings, e.g. '\"hello\"', and objects as '{{\"k\":1}}'")
    })
}

async fn check(res: reqwest::Response) -> Result<Value, String> {
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| format!("reading the response: {e}"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(body)
    } else {
        let msg = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        let code = body.get("code").and_then(Value::as_str).unwrap_or("error");
        Err(format!("{status}: {code}: {msg}"))
    }
}

fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    endpoint: &Endpoint,
) -> reqwest::RequestBuilder {
    let req = client.request(method, url);
    match &endpoint.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

fn unreachable(url: &str, e: reqwest::Error) -> String {
    format!("cannot reach {url}: {e} (is `postmesh up` running?)")
}

/// `postmesh publish PATH [BODY_JSON]`: prints the UUID.
pub async fn publish(args: PublishArgs) -> Result<ExitCode, String> {
    let mut msg = json!({ "path": args.path });
    if let Some(b) = &args.body {
        msg["body"] = parse_json("BODY_JSON", b)?;
    }
    if let Some(m) = &args.meta {
        msg["meta"] = parse_json("--meta", m)?;
    }
    if let Some(c) = &args.class {
        msg["class"] = json!(c);
    }
    if let Some(u) = &args.uuid {
        msg["uuid"] = json!(u);
    }
    let url = format!("{}/v1/publish", base(&args.endpoint));
    let client = reqwest::Client::new();
    let res = request(&client, reqwest::Method::POST, url.clone(), &args.endpoint)
        .json(&msg)
        .send()
        .await
        .map_err(|e| unreachable(&url, e))?;
    let body = check(res).await?;
    line(body["uuid"].as_str().unwrap_or_default())?;
    Ok(ExitCode::SUCCESS)
}

/// `postmesh history PATTERN`: one JSON line per message, newest first.
pub async fn history(args: HistoryArgs) -> Result<ExitCode, String> {
    let url = format!("{}/v1/history", base(&args.endpoint));
    let client = reqwest::Client::new();
    let mut query = vec![
        ("pattern", args.pattern.clone()),
        ("limit", args.limit.to_string()),
    ];
    if let Some(b) = &args.before {
        query.push(("before", b.clone()));
    }
    let res = request(&client, reqwest::Method::GET, url.clone(), &args.endpoint)
        .query(&query)
        .send()
        .await
        .map_err(|e| unreachable(&url, e))?;
    let body = check(res).await?;
    for m in body["messages"].as_array().into_iter().flatten() {
        if !line(m)? {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells the user something on stderr, if it is still there (`eprintln!`
/// would panic once it is closed).
fn say(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Writes one line to stdout: `Ok(false)` once the reader has gone away
/// (`postmesh history | head -1`), and the command then stops quietly and
/// successfully, as other writers into `head` do. `println!` would panic
/// there instead. Any other write error is the command's error.
fn line(text: impl std::fmt::Display) -> Result<bool, String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("cannot write to standard output: {e}")),
    }
}

/// How many UUIDs `tail` remembers to print each message once.
const TAIL_DEDUPE: usize = 65_536;

/// Why one connection of `tail` ended.
enum TailEnd {
    /// Ctrl-C.
    Interrupted,
    /// The connection went away (a restart, a network hiccup, a slow
    /// consumer, an idle close): reconnect and resume.
    Lost(String),
    /// The server refused (a bad pattern, a token): reconnecting cannot help.
    Refused(String),
    /// Standard output's reader went away: nothing more to print to.
    OutputClosed,
}

/// `postmesh tail PATTERN`: subscribes and prints each message as a JSON
/// line until Ctrl-C. A dropped connection is resumed, with backoff, from
/// the cursor of the last message printed; each UUID is printed once.
pub async fn tail(args: TailArgs) -> Result<ExitCode, String> {
    let http = base(&args.endpoint);
    let ws = if let Some(rest) = http.strip_prefix("https://") {
        format!("wss://{rest}/ws")
    } else if let Some(rest) = http.strip_prefix("http://") {
        format!("ws://{rest}/ws")
    } else {
        format!("{http}/ws")
    };
    if let Some(s) = &args.since {
        postmesh_schema::message::parse_v1(s).map_err(|e| format!("--since: {e}"))?;
    }
    let mut position = args.since.clone();
    let mut seen: RecentSet<String> = RecentSet::new(TAIL_DEDUPE);
    let mut backoff = Backoff::new(std::time::Duration::from_secs(5));
    let mut connected_once = false;
    loop {
        let socket = match tokio_tungstenite::connect_async(ws.as_str()).await {
            Ok((socket, _)) => socket,
            Err(e) if !connected_once => {
                return Err(format!(
                    "cannot connect to {ws}: {e} (is `postmesh up` running?)"
                ));
            }
            Err(e) => {
                say(format_args!(
                    "postmesh tail: cannot reconnect to {ws}: {e}; retrying"
                ));
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let history = if connected_once { None } else { args.history };
        connected_once = true;
        match tail_connection(socket, &args, history, &mut position, &mut seen).await {
            TailEnd::Interrupted | TailEnd::OutputClosed => return Ok(ExitCode::SUCCESS),
            TailEnd::Refused(why) => return Err(why),
            TailEnd::Lost(why) => {
                let from = position.as_deref().unwrap_or("now");
                say(format_args!("postmesh tail: {why}; resuming from {from}"));
                backoff = Backoff::new(std::time::Duration::from_secs(5));
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// One connection of `tail`: subscribes from `position` (or with
/// `history`), prints what is new, and keeps `position` at the cursor of
/// the last message printed.
async fn tail_connection(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    args: &TailArgs,
    history: Option<u32>,
    position: &mut Option<String>,
    seen: &mut RecentSet<String>,
) -> TailEnd {
    let lost = |e: &dyn std::fmt::Display| TailEnd::Lost(format!("connection lost: {e}"));
    if let Some(t) = &args.endpoint.token {
        let auth = json!({"op": "auth", "id": 0, "token": t});
        if let Err(e) = socket.send(Message::text(auth.to_string())).await {
            return lost(&e);
        }
    }
    let mut sub_id = 1u64;
    let sub = |id: u64, position: &Option<String>| {
        let mut sub = json!({"op": "sub", "id": id, "pattern": args.pattern});
        match (position, history) {
            (Some(p), _) => sub["since"] = json!(p),
            (None, Some(k)) => sub["history"] = json!(k),
            (None, None) => {}
        }
        Message::text(sub.to_string())
    };
    if let Err(e) = socket.send(sub(sub_id, position)).await {
        return lost(&e);
    }
    loop {
        let frame = tokio::select! {
            _ = tokio::signal::ctrl_c() => return TailEnd::Interrupted,
            f = socket.next() => f,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return match frame {
                    Some(f) if u16::from(f.code) == close::TOKEN_EXPIRED => {
                        TailEnd::Refused(format!("server closed the connection: 4001 {}", f.reason))
                    }
                    Some(f) => TailEnd::Lost(format!(
                        "server closed the connection: {} {}",
                        u16::from(f.code),
                        f.reason
                    )),
                    None => TailEnd::Lost("server closed the connection".into()),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return lost(&e),
            None => return TailEnd::Lost("connection closed".into()),
        };
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return TailEnd::Refused(format!("bad frame from server: {e}")),
        };
        match v["op"].as_str() {
            Some("msg") => {
                if let Some(c) = v["cursor"].as_str() {
                    *position = Some(c.to_owned());
                }
                let fresh = v["uuid"].as_str().is_none_or(|u| seen.insert(u.to_owned()));
                if fresh {
                    let mut m = v;
                    if let Some(o) = m.as_object_mut() {
                        o.remove("op");
                    }
                    match line(m) {
                        Ok(true) => {}
                        Ok(false) => return TailEnd::OutputClosed,
                        Err(e) => return TailEnd::Refused(e),
                    }
                }
            }
            Some("ok") if v["id"] == sub_id => {
                if v["gap"] == true {
                    say(format_args!(
                        "postmesh tail: messages after {} may have been deleted by retention",
                        position.as_deref().unwrap_or("the start")
                    ));
                }
                if v["more"] == true && position.is_some() {
                    // The replay stopped at its limit: go on from there.
                    sub_id += 1;
                    if let Err(e) = socket.send(sub(sub_id, position)).await {
                        return lost(&e);
                    }
                }
            }
            Some("reread") if v["gap"] == true => {
                say(format_args!(
                    "postmesh tail: messages may have been deleted by retention"
                ));
            }
            Some("err") => {
                return TailEnd::Refused(format!(
                    "{}: {}",
                    v["code"].as_str().unwrap_or("error"),
                    v["message"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
}

/// `postmesh token`: prints a signed token.
pub fn token(args: TokenArgs) -> Result<ExitCode, String> {
    for p in args.subs.iter().chain(&args.pubs) {
        postmesh_schema::Pattern::parse(p).map_err(|e| format!("pattern {p:?}: {e}"))?;
    }
    if let Some(s) = &args.sub {
        postmesh_schema::idpath::parse_decimal(s).map_err(|e| format!("--sub: {e}"))?;
    }
    if args.secret.is_empty() {
        return Err("--secret must not be empty".into());
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + args.ttl;
    let claims = postmesh_gateway::auth::Claims {
        sub: args.sub,
        exp,
        nbf: None,
        subs: args.subs,
        pubs: args.pubs,
    };
    let token =
        postmesh_gateway::auth::issue_token(&args.secret, &claims).map_err(|e| e.to_string())?;
    line(token)?;
    Ok(ExitCode::SUCCESS)
}
