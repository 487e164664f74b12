//! The error surface: a device that breaks the WebSocket protocol is told
//! why with RFC 6455's close code.

use postmesh_tests::{Closed, Mesh};

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
