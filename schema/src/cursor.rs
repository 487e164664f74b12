//! The resume order: where a store put a message, as distinct from what the
//! message is.
//!
//! A message's UUID is its identity and carries its *publish* time, chosen
//! by whoever published it (a gateway, or a client resending with the UUID
//! it chose). Publish time is not the order in which messages are stored
//! and delivered: a pipelined publish waits for the batch before it, a
//! client resends an old UUID, another region's message arrives late. So a
//! store stamps every message it stores with a [`Cursor`] from its own
//! [`Stamper`], strictly increasing in the order it commits. Folders,
//! `since` and `before` follow cursors; devices resume from the cursor of
//! the last message they received.
//!
//! A cursor is spelled as a version-1 UUID (a Cassandra `timeuuid` can
//! cluster by it): the timestamp is the store's clock when it committed,
//! the clock sequence and node identify the stamper.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::v1::{now_ticks, time_key, v1_from_parts, v1_ticks};

/// A cursor that is not a version-1 UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor (a version-1 UUID): {0:?}")]
pub struct CursorError(pub String);

/// A position in a store's resume order. Ordered by its timestamp, then by
/// the stamper's identity, so the order is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor(Uuid);

impl Cursor {
    /// The cursor spelled by `uuid` (any version-1 UUID is a position).
    pub fn from_uuid(uuid: Uuid) -> Cursor {
        Cursor(uuid)
    }

    /// The lowest position at `ticks` (v1 ticks): every cursor stamped at
    /// that tick or later sorts after it.
    pub fn at_ticks(ticks: u64) -> Cursor {
        Cursor(v1_from_parts(ticks, 0, [0; 6]))
    }

    /// The lowest position now.
    pub fn now() -> Cursor {
        Cursor::at_ticks(now_ticks())
    }

    /// The UUID that spells it.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The stamping clock's time, in v1 ticks (100 ns since 1582-10-15).
    pub fn ticks(&self) -> u64 {
        v1_ticks(&self.0)
    }

    /// A 16-byte key whose byte order is cursor order.
    pub fn key(&self) -> [u8; 16] {
        time_key(&self.0)
    }

    /// The lowest position `millis` before this one (an overlap window).
    pub fn earlier_by_millis(&self, millis: u64) -> Cursor {
        Cursor::at_ticks(self.ticks().saturating_sub(millis.saturating_mul(10_000)))
    }

    /// Which stamper made it: its clock sequence and node.
    pub fn stamper(&self) -> [u8; 8] {
        self.0.as_bytes()[8..].try_into().expect("8 bytes")
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        match Uuid::parse_str(s) {
            Ok(u) if u.get_version_num() == 1 => Ok(Cursor(u)),
            _ => Err(CursorError(s.to_owned())),
        }
    }
}

impl serde::Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cursor, D::Error> {
        Uuid::deserialize(d).map(Cursor)
    }
}

/// Hands out strictly increasing cursors: one per store writer.
///
/// The timestamp is the wall clock (plus a fixed offset, which tests use to
/// skew one writer's clock), but never at or below the last one handed out
/// or [`observed`](Stamper::observe): a clock that steps back, or a restart
/// on a clock behind the store's newest cursor, cannot reorder the store.
#[derive(Debug)]
pub struct Stamper {
    last: AtomicU64,
    clock_seq: u16,
    node: [u8; 6],
    offset_ticks: i64,
}

impl Stamper {
    /// A stamper with a random identity whose clock runs `offset_millis`
    /// ahead of the wall clock (behind, when negative).
    pub fn new(offset_millis: i64) -> Stamper {
        let r = Uuid::new_v4();
        let r = r.as_bytes();
        let mut node = [r[0], r[1], r[2], r[3], r[4], r[5]];
        node[0] |= 0x01; // a random node id, not a MAC (RFC 9562 6.10)
        Stamper {
            last: AtomicU64::new(0),
            clock_seq: u16::from_be_bytes([r[6], r[7]]) & 0x3fff,
            node,
            offset_ticks: offset_millis.saturating_mul(10_000),
        }
    }

    /// Its identity, as [`Cursor::stamper`] reads it from every cursor it
    /// makes: a core tells its own messages from others' in a shared store
    /// by it.
    pub fn identity(&self) -> [u8; 8] {
        Cursor(v1_from_parts(0, self.clock_seq, self.node)).stamper()
    }

    /// Never stamps at or below `cursor` from now on.
    pub fn observe(&self, cursor: Cursor) {
        self.last.fetch_max(cursor.ticks(), Ordering::Relaxed);
    }

    /// The next cursor: later than every one before it.
    pub fn next(&self) -> Cursor {
        let now = now_ticks().saturating_add_signed(self.offset_ticks);
        let mut last = self.last.load(Ordering::Relaxed);
        let ticks = loop {
            let next = now.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        Cursor(v1_from_parts(ticks, self.clock_seq, self.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_increase_and_order_by_time_then_stamper() {
        let s = Stamper::new(0);
        let a = s.next();
        let b = s.next();
        assert!(a < b);
        let far = Cursor::at_ticks(b.ticks() + 1_000_000_000);
        s.observe(far);
        let c = s.next();
        assert!(c > far, "a stamp after an observed cursor sorts after it");
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        assert!(Cursor::at_ticks(c.ticks()) <= c);
        assert_eq!(c.earlier_by_millis(1).ticks(), c.ticks() - 10_000);
    }

    #[test]
    fn a_cursor_names_its_stamper() {
        let (s, t) = (Stamper::new(0), Stamper::new(0));
        assert_eq!(s.next().stamper(), s.identity());
        assert_eq!(t.next().stamper(), t.identity());
        assert_ne!(s.identity(), t.identity());
    }

    #[test]
    fn a_skewed_stamper_runs_behind() {
        let behind = Stamper::new(-3_000).next();
        let now = Cursor::now();
        assert!(behind.ticks() + 29_000_000 < now.ticks());
    }
}
