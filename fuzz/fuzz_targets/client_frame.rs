//! The client frame parser on arbitrary text: it never panics, every
//! refusal renders as a JSON `err` frame, and a parsed `pub` re-encodes
//! (`Message::to_json`) to a frame and a stored message that parse back to
//! an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postmesh_schema::protocol::{parse_client_frame, ClientFrame};
use postmesh_schema::{Limits, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    match parse_client_frame(text, &limits) {
        Err(e) => {
            let frame = e.to_frame();
            let v: serde_json::Value = serde_json::from_str(&frame)
                .unwrap_or_else(|err| panic!("err frame {frame:?} is not JSON: {err}"));
            assert_eq!(v["op"], "err", "{frame}");
        }
        Ok(ClientFrame::Pub { id, message }) => {
            let json = message.to_json();
            // The stored / wire form reads back as the same message.
            let stored = Message::from_json(&json, &limits)
                .unwrap_or_else(|e| panic!("to_json of {message:?} does not read back: {e}"));
            assert_eq!(stored, message);
            // And as a pub frame: splice the op and id in front of its fields.
            assert_eq!(json.first(), Some(&b'{'));
            let mut again = format!(r#"{{"op":"pub","id":{id},"#).into_bytes();
            again.extend_from_slice(&json[1..]);
            let again = String::from_utf8(again).expect("to_json writes UTF-8");
            match parse_client_frame(&again, &limits) {
                Ok(ClientFrame::Pub {
                    id: id2,
                    message: m2,
                }) => {
                    assert_eq!(id2, id);
                    assert_eq!(m2, message, "re-encoded as {again}");
                }
                other => panic!("re-encoded pub {again} parsed as {other:?}"),
            }
        }
        Ok(frame) => {
            let _ = frame.id();
        }
    }
});
