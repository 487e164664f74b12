//! The error surface: a device that breaks the WebSocket protocol is told
//! why with RFC 6455's close code, and every HTTP error, whoever produces it
//! (a handler, the query parser, the router), is the documented
//! `{"code","message"}` JSON.

use postmesh_tests::{Closed, Mesh};
use serde_json::Value;

/// The mask of every raw client frame below.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `first` is FIN, RSV and opcode; the payload is masked
/// when `masked` (as every client frame must be).
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => f.push(mask_bit | n as u8),
        n => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&MASK);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

#[tokio::test]
async fn protocol_violations_close_with_their_rfc_6455_code() {
    let mesh = Mesh::start().await;
    let ping = br#"{"op":"ping","id":1}"#;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked client frame", frame(0x81, ping, false), 1002),
        ("reserved data opcode 0x3", frame(0x83, b"", true), 1002),
        ("reserved control opcode 0xB", frame(0x8b, b"", true), 1002),
        ("reserved bit RSV1", frame(0xc1, ping, true), 1002),
        (
            "control frame over 125 bytes",
            frame(0x89, &[b'p'; 126], true),
            1002,
        ),
        ("fragmented control frame", frame(0x09, b"", true), 1002),
        (
            "continuation with nothing to continue",
            frame(0x80, ping, true),
            1002,
        ),
        (
            "text frame that is not UTF-8",
            frame(0x81, &[0xff, 0xfe], true),
            1007,
        ),
        (
            "UTF-8 broken across fragments",
            [frame(0x01, &[b'{', 0xc3], true), frame(0x80, &[0x28], true)].concat(),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut d = mesh.ws().await;
        // A working connection first: the violation is what closes it.
        d.request(serde_json::json!({"op": "ping"})).await;
        d.send_raw(&bytes).await;
        let (how, _) = d.until_closed().await;
        assert_eq!(how, Closed::Code(code), "{what}");
    }
    // The gateway and its other devices never noticed.
    let mut other = mesh.ws().await;
    assert_eq!(
        other.request(serde_json::json!({"op": "ping"})).await["op"],
        "ok"
    );
}

/// A raw HTTP exchange: status, content type and body as JSON.
async fn http(mesh: &Mesh, method: &str, path_and_query: &str) -> (u16, String, Value) {
    let res = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{}{path_and_query}", mesh.url()),
        )
        .send()
        .await
        .expect("http request");
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, kind, body)
}

/// Asserts that `got` (status, content type, body) is the documented
/// error: `status`, JSON `{"code","message"}` with `code` and a message.
fn assert_documented_error(what: &str, got: &(u16, String, Value), status: u16, code: &str) {
    let (s, kind, body) = got;
    assert_eq!(
        (*s, body["code"].as_str()),
        (status, Some(code)),
        "{what} gave {s} {body}"
    );
    assert_eq!(kind, "application/json", "{what}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what} gave {body}"
    );
}

#[tokio::test]
async fn every_http_error_is_json_with_a_code() {
    let mesh = Mesh::start().await;
    mesh.publish("errors.1", serde_json::json!(1)).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        // The query parser's refusals.
        (
            "GET",
            "/v1/history?pattern=a.%23&pattern=b",
            400,
            "bad_frame",
        ),
        (
            "GET",
            "/v1/latest?pattern=a&limit=1&limit=2",
            400,
            "bad_frame",
        ),
        ("POST", "/v1/publish?token=a&token=b", 400, "bad_frame"),
        ("GET", "/ws?batch=maybe", 400, "bad_frame"),
        // Percent-encoding that is not UTF-8 is refused, not decoded lossily.
        ("GET", "/v1/history?pattern=%FF%FE", 400, "bad_pattern"),
        ("GET", "/v1/latest?pattern=errors.%C3", 400, "bad_pattern"),
        (
            "GET",
            "/v1/history?pattern=errors.%23&before=%FF",
            400,
            "bad_frame",
        ),
        (
            "GET",
            "/v1/history?%FF=1&pattern=errors.%23",
            400,
            "bad_frame",
        ),
        // The router's.
        ("DELETE", "/v1/publish", 405, "unknown_op"),
        ("GET", "/v1/publish", 405, "unknown_op"),
        ("POST", "/v1/history", 405, "unknown_op"),
        ("PUT", "/healthz", 405, "unknown_op"),
        ("GET", "/v2/publish", 404, "unknown_op"),
        ("GET", "/nowhere/at/all", 404, "unknown_op"),
        ("POST", "/nowhere", 404, "unknown_op"),
    ];
    for &(method, path, status, code) in cases {
        let got = http(&mesh, method, path).await;
        assert_documented_error(&format!("{method} {path}"), &got, status, code);
    }
    // A 405 still says what is allowed.
    let res = reqwest::Client::new()
        .delete(format!("{}/v1/publish", mesh.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    // Well-formed UTF-8, percent-encoded, is read as before.
    let (s, _, body) = http(&mesh, "GET", "/v1/history?pattern=errors.%23").await;
    assert_eq!(
        (s, body["messages"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (s, _, _) = http(&mesh, "GET", "/v1/history?pattern=caf%C3%A9.%23").await;
    assert_eq!(s, 200);
}

/// Sends `request` as raw bytes and reads the answer until the gateway
/// closes the connection: status, content type and body as JSON.
async fn raw_http(mesh: &Mesh, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(mesh.addr).await.unwrap();
    // The gateway may answer and close before it has read all of a large
    // request: what matters is the answer.
    let _ = tcp.write_all(request).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut got),
    )
    .await
    .expect("the gateway answers and closes");
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().unwrap();
    let kind = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_owned();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, kind, body)
}

#[tokio::test]
async fn a_request_that_is_not_http_gets_json_too() {
    let mesh = Mesh::start().await;
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "no request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "bad_frame",
        ),
        (
            "a header without a colon",
            b"GET /healthz HTTP/1.1\r\nhost x\r\n\r\n".to_vec(),
            400,
            "bad_frame",
        ),
        (
            "an unknown HTTP version",
            b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(),
            400,
            "bad_frame",
        ),
        (
            "a content length that is not a number",
            b"POST /v1/publish HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n".to_vec(),
            400,
            "bad_frame",
        ),
        (
            "headers past the buffer",
            huge.into_bytes(),
            431,
            "too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let got = raw_http(&mesh, &request).await;
        assert_documented_error(what, &got, status, code);
    }
    // The gateway still serves, over the same wrapper, afterwards.
    let (s, _, body) = raw_http(
        &mesh,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
}
