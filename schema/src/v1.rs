//! Version-1 (time-based) UUIDs: the generator and the arithmetic on their
//! timestamps that message identities and cursors share.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// 100 ns intervals between the Gregorian epoch (1582-10-15) and 1970-01-01.
const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

struct Generator {
    last_ticks: AtomicU64,
    clock_seq: u16,
    node: [u8; 6],
}

fn generator() -> &'static Generator {
    static GEN: OnceLock<Generator> = OnceLock::new();
    GEN.get_or_init(|| {
        let random = Uuid::new_v4();
        let r = random.as_bytes();
        let mut node = [r[0], r[1], r[2], r[3], r[4], r[5]];
        node[0] |= 0x01; // multicast bit: a random node id, not a MAC (RFC 9562 6.10)
        Generator {
            last_ticks: AtomicU64::new(0),
            clock_seq: u16::from_be_bytes([r[6], r[7]]) & 0x3fff,
            node,
        }
    })
}

/// A fresh version-1 UUID. Timestamps are strictly increasing within the
/// process (a tick is borrowed from the future under bursts), so ids from
/// one process are unique and ordered even at millions per second.
pub fn new_v1() -> Uuid {
    let g = generator();
    let now = now_ticks();
    let mut last = g.last_ticks.load(Ordering::Relaxed);
    let ticks = loop {
        let next = now.max(last + 1);
        match g
            .last_ticks
            .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    v1_from_parts(ticks, g.clock_seq, g.node)
}

/// Now, in v1 UUID ticks: 100 ns intervals since 1582-10-15.
pub fn now_ticks() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 / 100)
        .unwrap_or(0)
        + GREGORIAN_OFFSET
}

/// Builds a v1 UUID from a 60-bit tick count, a 14-bit clock sequence and a
/// node id.
pub fn v1_from_parts(ticks: u64, clock_seq: u16, node: [u8; 6]) -> Uuid {
    let time_low = (ticks & 0xffff_ffff) as u32;
    let time_mid = ((ticks >> 32) & 0xffff) as u16;
    let time_hi = ((ticks >> 48) & 0x0fff) as u16 | 0x1000;
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&time_low.to_be_bytes());
    b[4..6].copy_from_slice(&time_mid.to_be_bytes());
    b[6..8].copy_from_slice(&time_hi.to_be_bytes());
    let cs = (clock_seq & 0x3fff) | 0x8000; // RFC 4122 variant
    b[8..10].copy_from_slice(&cs.to_be_bytes());
    b[10..16].copy_from_slice(&node);
    Uuid::from_bytes(b)
}

/// The 60-bit timestamp of a v1 UUID, in 100 ns ticks since 1582-10-15.
pub fn v1_ticks(uuid: &Uuid) -> u64 {
    let b = uuid.as_bytes();
    let low = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mid = u64::from(u16::from_be_bytes([b[4], b[5]]));
    let hi = u64::from(u16::from_be_bytes([b[6], b[7]]) & 0x0fff);
    (hi << 48) | (mid << 32) | low
}

/// Unix time in milliseconds of a v1 UUID.
pub fn v1_unix_millis(uuid: &Uuid) -> u64 {
    v1_ticks(uuid).saturating_sub(GREGORIAN_OFFSET) / 10_000
}

/// A 16-byte key that sorts v1 UUIDs by time (ties broken by clock sequence
/// and node), so byte order is time order.
pub fn time_key(uuid: &Uuid) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&v1_ticks(uuid).to_be_bytes());
    k[8..].copy_from_slice(&uuid.as_bytes()[8..]);
    k
}

/// Inverse of [`time_key`].
pub fn uuid_from_time_key(k: &[u8; 16]) -> Uuid {
    let ticks = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
    let mut b = *v1_from_parts(ticks, 0, [0; 6]).as_bytes();
    b[8..].copy_from_slice(&k[8..]);
    Uuid::from_bytes(b)
}
