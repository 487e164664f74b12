//! The gateway's own text frame: what sessions read and write, whatever
//! the transport.
//!
//! A [`Frame`] is UTF-8 by construction and cheap to clone (a reference
//! count on shared bytes), so one encoded message fans out to many
//! connections without copies. It belongs to the gateway rather than to a
//! WebSocket library so that a transport that is not WebSocket (SockJS
//! over HTTP) needs nothing from one; each adapter converts at its edge.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

/// A UTF-8 text frame on shared storage.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Frame(ByteString);

/// Bytes that are not UTF-8 cannot be a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a text frame must be UTF-8")]
pub struct NotUtf8;

impl Frame {
    /// A frame of static text, without allocating.
    pub const fn from_static(s: &'static str) -> Frame {
        Frame(ByteString::from_static(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared bytes, for a transport that writes them.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Frame {
    fn from(s: String) -> Frame {
        Frame(ByteString::from(s))
    }
}

impl From<&str> for Frame {
    fn from(s: &str) -> Frame {
        Frame(ByteString::from(s))
    }
}

impl TryFrom<Bytes> for Frame {
    type Error = NotUtf8;

    fn try_from(b: Bytes) -> Result<Frame, NotUtf8> {
        ByteString::try_from(b).map(Frame).map_err(|_| NotUtf8)
    }
}

impl TryFrom<Vec<u8>> for Frame {
    type Error = NotUtf8;

    fn try_from(v: Vec<u8>) -> Result<Frame, NotUtf8> {
        String::from_utf8(v).map(Frame::from).map_err(|_| NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utf8_makes_a_frame() {
        assert_eq!(
            Frame::try_from(Bytes::from_static(b"{\"op\":\"ping\"}"))
                .unwrap()
                .as_str(),
            "{\"op\":\"ping\"}"
        );
        assert_eq!(
            Frame::try_from(Bytes::from_static(b"\xff\xfe")),
            Err(NotUtf8)
        );
        assert_eq!(Frame::try_from(vec![0xc3, 0x28]), Err(NotUtf8));
        assert_eq!(Frame::try_from("é".as_bytes().to_vec()).unwrap().len(), 2);
    }

    #[test]
    fn clones_share_their_bytes() {
        let a = Frame::from("x".repeat(1024));
        let b = a.clone();
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert_eq!(b.into_bytes().len(), 1024);
    }
}
