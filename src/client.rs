//! The client commands: `publish` and `history` over HTTP, `tail` over
//! WebSocket, `token` offline.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
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
    println!("{}", body["uuid"].as_str().unwrap_or_default());
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
        println!("{m}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `postmesh tail PATTERN`: subscribes and prints each message as a JSON
/// line until the server closes or Ctrl-C.
pub async fn tail(args: TailArgs) -> Result<ExitCode, String> {
    let http = base(&args.endpoint);
    let ws = if let Some(rest) = http.strip_prefix("https://") {
        format!("wss://{rest}/ws")
    } else if let Some(rest) = http.strip_prefix("http://") {
        format!("ws://{rest}/ws")
    } else {
        format!("{http}/ws")
    };
    let (mut socket, _) = tokio_tungstenite::connect_async(ws.as_str())
        .await
        .map_err(|e| format!("cannot connect to {ws}: {e} (is `postmesh up` running?)"))?;
    if let Some(t) = &args.endpoint.token {
        let auth = json!({"op": "auth", "id": 0, "token": t});
        socket
            .send(Message::text(auth.to_string()))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut sub = json!({"op": "sub", "id": 1, "pattern": args.pattern});
    if let Some(k) = args.history {
        sub["history"] = json!(k);
    }
    socket
        .send(Message::text(sub.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let frame = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            f = socket.next() => f,
        };
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value =
                    serde_json::from_str(&t).map_err(|e| format!("bad frame from server: {e}"))?;
                match v["op"].as_str() {
                    Some("msg") => {
                        let mut m = v;
                        if let Some(o) = m.as_object_mut() {
                            o.remove("op");
                        }
                        println!("{m}");
                    }
                    Some("err") => {
                        return Err(format!(
                            "{}: {}",
                            v["code"].as_str().unwrap_or("error"),
                            v["message"].as_str().unwrap_or("")
                        ));
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return match frame {
                    Some(f) if u16::from(f.code) != 1000 => Err(format!(
                        "server closed the connection: {} {}",
                        u16::from(f.code),
                        f.reason
                    )),
                    _ => Ok(ExitCode::SUCCESS),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("connection lost: {e}")),
            None => return Ok(ExitCode::SUCCESS),
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
        subs: args.subs,
        pubs: args.pubs,
    };
    let token =
        postmesh_gateway::auth::issue_token(&args.secret, &claims).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
