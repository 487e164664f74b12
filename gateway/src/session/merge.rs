//! The merge of replays from the store with the live stream, on one
//! connection: every message once, none missing.
//!
//! # Why it holds
//! A replay (`sub` with `history` or `since`, a reread after a postoffice
//! outage, login sync) first makes its patterns live, then reads the store.
//! From the moment they are live, [`Merge::live`] *holds* every live frame
//! that matches only patterns still being replayed. The store read sees
//! everything stored before it, and everything distributed after the
//! patterns were live is held: a message is in one or the other or both
//! (a core stores before it distributes), so nothing is missed.
//! [`Merge::replay`] sends what the read found, except what already went
//! out live through another subscription while the patterns were pending;
//! [`Merge::settle`] then releases the held frames that the replay did not
//! contain. A replayed message whose live copy was still on its way when
//! the store was read is dropped when it arrives, for [`REPLAY_MEMORY`].
//!
//! # Late frames
//! A message is stored before it is distributed, and a gateway's queue may
//! still hold it when a replay has already read it from the store. So a
//! live frame may arrive after the device has it: from a replay on this
//! connection, or from before the position it resumed from (received on an
//! earlier connection, live or replayed). The merge keeps, per replayed
//! pattern and per stamper, the cursor up to which the device has
//! everything ([`Merge::cover`]): a live frame from that stamper at or
//! below it, matching no other pattern, is dropped. One core distributes
//! in cursor order, so this is exact, and the stream a device receives is
//! in cursor order across replays, live frames and reconnections. One
//! exception: a reread after a postoffice outage leaves out what the hub
//! had fanned out already, which may still be held here; its cover stops
//! below the oldest message it left out ([`Merge::cover_reread`]), and a
//! held message older than what the reread sent goes out after it.
//!
//! The order: replayed messages come oldest first by cursor, held frames in
//! the order they arrived (for one core, cursor order as well), so a device
//! that resumes from the cursor of the last message it received misses
//! nothing that was stored before it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postmesh_schema::{Cursor, Message, Pattern, Uuid};

use crate::outbox::Live;

/// How long replayed UUIDs are remembered to drop live copies that were
/// still in flight when the replay was read, when the cover of their
/// pattern cannot tell (another core's stamper). Distribution follows
/// persistence within milliseconds; ten seconds is a wide margin.
pub const REPLAY_MEMORY: Duration = Duration::from_secs(10);

/// What to do with one live frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it now.
    Send,
    /// Held until the replay that covers it settles.
    Held,
    /// A copy of something already sent.
    Drop,
    /// Held, but more frames are held than the connection may buffer: close
    /// it as a slow consumer.
    Overflow,
}

/// The merge state of one connection.
#[derive(Debug)]
pub struct Merge {
    /// Patterns being replayed: live frames matching only these are held.
    pending: Vec<Pattern>,
    /// Live frames held, in arrival order.
    held: Vec<Arc<Live>>,
    /// Their bytes.
    held_bytes: usize,
    /// UUIDs sent live (through an active pattern) while a replay pended.
    delivered: HashSet<Uuid>,
    /// UUIDs replayed, and until when a live copy of them is dropped.
    replayed: Option<(HashSet<Uuid>, Instant)>,
    /// Per pattern and stamper: the device has everything up to here.
    covers: Vec<(Pattern, Cursor)>,
    /// The highest cover: a frame above it is not late (fast path).
    highest_cover: Option<Cursor>,
    /// Most frames held at once.
    cap: usize,
    /// Most bytes of frames held at once.
    max_bytes: usize,
}

impl Merge {
    /// A merge that holds at most `cap` live frames while a replay pends.
    pub fn new(cap: usize) -> Merge {
        Merge {
            pending: Vec::new(),
            held: Vec::new(),
            held_bytes: 0,
            delivered: HashSet::new(),
            replayed: None,
            covers: Vec::new(),
            highest_cover: None,
            cap,
            max_bytes: usize::MAX,
        }
    }

    /// Holds at most `max_bytes` of frames as well (a shared frame counts
    /// fully: the connection keeps it alive).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Merge {
        self.max_bytes = max_bytes;
        self
    }

    /// The device has every message matching `pattern`, from `cursor`'s
    /// stamper, up to `cursor`: a resume position, or a replayed message.
    pub fn cover(&mut self, pattern: &Pattern, cursor: Cursor) {
        self.highest_cover = self.highest_cover.max(Some(cursor));
        match self
            .covers
            .iter_mut()
            .find(|(p, c)| p == pattern && c.stamper() == cursor.stamper())
        {
            Some((_, c)) => *c = (*c).max(cursor),
            None => self.covers.push((pattern.clone(), cursor)),
        }
    }

    /// Covers `pattern` up to every message of a replay.
    pub fn cover_all<'a>(
        &mut self,
        pattern: &Pattern,
        messages: impl IntoIterator<Item = &'a Message>,
    ) {
        for m in messages {
            if let Some(c) = m.cursor {
                self.cover(pattern, c);
            }
        }
    }

    /// Covers `pattern` up to the messages of a reread, but only below
    /// `left_out`: the oldest message the reread left out because the hub
    /// had fanned it out already. The device may not have that one yet
    /// (held here, or still in its outbox behind the reread marker), and a
    /// cover at or above it would drop it as late.
    pub fn cover_reread<'a>(
        &mut self,
        pattern: &Pattern,
        messages: impl IntoIterator<Item = &'a Message>,
        left_out: Option<Cursor>,
    ) {
        let below = messages
            .into_iter()
            .filter(|m| m.cursor.is_some_and(|c| left_out.is_none_or(|l| c < l)));
        self.cover_all(pattern, below);
    }

    /// `pattern` is no longer held: its covers go.
    pub fn forget(&mut self, pattern: &Pattern) {
        self.covers.retain(|(p, _)| p != pattern);
        self.highest_cover = self.covers.iter().map(|(_, c)| *c).max();
    }

    /// Whether the device has the message of a frame at `cursor` for
    /// `path`: every subscribed pattern it matches covers it.
    fn is_covered(&self, cursor: Cursor, path: &str, subscribed: &[Pattern]) -> bool {
        if self.highest_cover.is_none_or(|h| cursor > h) {
            return false;
        }
        let mut matched = false;
        for p in subscribed.iter().filter(|p| p.matches_str(path)) {
            matched = true;
            let covered = self
                .covers
                .iter()
                .any(|(q, c)| q == p && c.stamper() == cursor.stamper() && cursor <= *c);
            if !covered {
                return false;
            }
        }
        matched
    }

    /// The patterns being replayed.
    pub fn pending(&self) -> &[Pattern] {
        &self.pending
    }

    /// Whether `pattern` is being replayed.
    pub fn is_pending(&self, pattern: &Pattern) -> bool {
        self.pending.contains(pattern)
    }

    /// `patterns` are about to be made live and replayed: from now on live
    /// frames that match nothing else are held.
    pub fn begin(&mut self, patterns: impl IntoIterator<Item = Pattern>) {
        self.pending.extend(patterns);
    }

    /// Whether a frame for `path` matches a subscription (among
    /// `subscribed`, every pattern the connection holds) not being replayed.
    pub fn is_active(&self, subscribed: &[Pattern], path: &str) -> bool {
        subscribed
            .iter()
            .any(|p| !self.pending.contains(p) && p.matches_str(path))
    }

    /// Decides about a live frame; a held frame is kept here.
    pub fn live(&mut self, live: &Arc<Live>, subscribed: &[Pattern], now: Instant) -> Verdict {
        if self.was_replayed(&live.uuid, now)
            || live
                .cursor
                .is_some_and(|c| self.is_covered(c, &live.path, subscribed))
        {
            return Verdict::Drop;
        }
        if self.pending.is_empty() {
            return Verdict::Send;
        }
        if !self.is_active(subscribed, &live.path) {
            self.held.push(live.clone());
            self.held_bytes += live.frame.len();
            return if self.held.len() > self.cap || self.held_bytes > self.max_bytes {
                Verdict::Overflow
            } else {
                Verdict::Held
            };
        }
        self.delivered.insert(live.uuid);
        Verdict::Send
    }

    /// The messages of a replay (oldest first) to send: those not already
    /// sent live while it pended, nor replayed before. They are remembered
    /// against late live copies.
    pub fn replay(&mut self, messages: Vec<Message>, now: Instant) -> Vec<Message> {
        self.expire(now);
        let fresh: Vec<Message> = messages
            .into_iter()
            .filter(|m| !self.delivered.contains(&m.uuid))
            .filter(|m| {
                !self
                    .replayed
                    .as_ref()
                    .is_some_and(|(s, _)| s.contains(&m.uuid))
            })
            .collect();
        if !fresh.is_empty() {
            let until = now + REPLAY_MEMORY;
            let (set, deadline) = self.replayed.get_or_insert_with(|| (HashSet::new(), until));
            set.extend(fresh.iter().map(|m| m.uuid));
            *deadline = until;
        }
        fresh
    }

    /// Keeps what was replayed until at least `until`: a resume's late
    /// read is due then, and drops by it what the resume already sent.
    pub fn remember_until(&mut self, until: Instant) {
        if let Some((_, deadline)) = &mut self.replayed {
            *deadline = (*deadline).max(until);
        }
    }

    /// The replay of `patterns` is done. Once nothing pends any more, the
    /// held frames that match an active subscription and were neither
    /// replayed nor sent are returned, in arrival order, to be sent.
    pub fn settle(
        &mut self,
        patterns: &[Pattern],
        subscribed: &[Pattern],
        now: Instant,
    ) -> Vec<Arc<Live>> {
        self.pending.retain(|p| !patterns.contains(p));
        if !self.pending.is_empty() {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let delivered = std::mem::take(&mut self.delivered);
        self.expire(now);
        let replayed = self.replayed.as_ref().map(|(set, _)| set);
        held.into_iter()
            .filter(|l| !delivered.contains(&l.uuid))
            .filter(|l| !replayed.is_some_and(|r| r.contains(&l.uuid)))
            .filter(|l| subscribed.iter().any(|p| p.matches_str(&l.path)))
            .filter(|l| {
                !l.cursor
                    .is_some_and(|c| self.is_covered(c, &l.path, subscribed))
            })
            .collect()
    }

    /// Lets go of what the merge remembers past its time (the replayed
    /// UUIDs), so a quiet connection does not keep a replay's memory.
    pub fn tidy(&mut self, now: Instant) {
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        if self
            .replayed
            .as_ref()
            .is_some_and(|(_, until)| *until < now)
        {
            self.replayed = None;
        }
    }

    fn was_replayed(&mut self, uuid: &Uuid, now: Instant) -> bool {
        self.expire(now);
        self.replayed
            .as_ref()
            .is_some_and(|(set, _)| set.contains(uuid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::{live, message};

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    fn uuids<'a>(ms: impl IntoIterator<Item = &'a Message>) -> Vec<Uuid> {
        ms.into_iter().map(|m| m.uuid).collect()
    }

    #[test]
    fn without_a_replay_everything_goes_out() {
        let mut m = Merge::new(4);
        let subs = [pat("a.#")];
        let x = message("a.x");
        assert_eq!(m.live(&live(&x), &subs, Instant::now()), Verdict::Send);
    }

    /// The three cases of the module documentation in one replay: a frame
    /// sent through another subscription is not replayed; a frame both held
    /// and replayed goes out once; a late live copy is dropped.
    #[test]
    fn replay_and_live_merge_without_gap_or_duplicate() {
        let now = Instant::now();
        let mut m = Merge::new(16);
        let subs = [pat("b.y"), pat("b.#")];
        m.begin([pat("b.#")]);
        let (old, held_and_stored, only_held, other) = (
            message("b.old"),
            message("b.x"),
            message("b.z"),
            message("b.y"),
        );
        // Through the active b.y: sent, and remembered.
        assert_eq!(m.live(&live(&other), &subs, now), Verdict::Send);
        assert_eq!(m.live(&live(&held_and_stored), &subs, now), Verdict::Held);
        assert_eq!(m.live(&live(&only_held), &subs, now), Verdict::Held);
        // The store read (oldest first) saw old, held_and_stored and other.
        let stored = vec![old.clone(), held_and_stored.clone(), other.clone()];
        let sent = m.replay(stored, now);
        assert_eq!(uuids(&sent), uuids([&old, &held_and_stored]));
        let released = m.settle(&[pat("b.#")], &subs, now);
        assert_eq!(
            released.iter().map(|l| l.uuid).collect::<Vec<_>>(),
            [only_held.uuid],
            "only what the replay did not contain"
        );
        assert!(m.pending().is_empty());
        // A live copy of a replayed message, late: dropped.
        assert_eq!(m.live(&live(&old), &subs, now), Verdict::Drop);
        // Past the memory it would go out (the memory is bounded in time).
        let later = now + REPLAY_MEMORY + Duration::from_secs(1);
        assert_eq!(m.live(&live(&old), &subs, later), Verdict::Send);
    }

    /// A reread leaves out what the hub fanned out already. What it left
    /// out may still be held (it came after the reread marker), and is
    /// older than what the reread sent: the reread's cover must not reach
    /// it, or settling would drop it as a late copy and the device would
    /// never get it.
    #[test]
    fn a_reread_does_not_cover_what_it_left_out() {
        let now = Instant::now();
        let subs = [pat("s.#")];
        let ms = stamped(&postmesh_schema::Stamper::new(0), "s.x", 2);
        let (left_out, newer) = (&ms[0], &ms[1]);
        let mut m = Merge::new(16);
        m.begin([pat("s.#")]);
        assert_eq!(m.live(&live(left_out), &subs, now), Verdict::Held);
        let sent = m.replay(vec![newer.clone()], now);
        assert_eq!(uuids(&sent), uuids([newer]));
        m.cover_reread(&pat("s.#"), &sent, left_out.cursor);
        let released = m.settle(&[pat("s.#")], &subs, now);
        assert_eq!(
            released.iter().map(|l| l.uuid).collect::<Vec<_>>(),
            [left_out.uuid],
            "the held message goes out"
        );
        // Covering the whole reread would have lost it.
        let mut m = Merge::new(16);
        m.begin([pat("s.#")]);
        assert_eq!(m.live(&live(left_out), &subs, now), Verdict::Held);
        m.replay(vec![newer.clone()], now);
        m.cover_all(&pat("s.#"), [newer]);
        assert!(m.settle(&[pat("s.#")], &subs, now).is_empty());
        // Below what it left out, the reread covers as any replay does.
        let ms = stamped(&postmesh_schema::Stamper::new(1), "s.x", 3);
        let mut m = Merge::new(16);
        m.begin([pat("s.#")]);
        m.replay(vec![ms[0].clone(), ms[2].clone()], now);
        m.cover_reread(&pat("s.#"), [&ms[0], &ms[2]], ms[1].cursor);
        assert!(m.settle(&[pat("s.#")], &subs, now).is_empty());
        let later = now + REPLAY_MEMORY + Duration::from_secs(1);
        assert_eq!(m.live(&live(&ms[0]), &subs, later), Verdict::Drop);
        assert_eq!(m.live(&live(&ms[1]), &subs, later), Verdict::Send);
    }

    #[test]
    fn nothing_is_released_while_another_replay_pends() {
        let now = Instant::now();
        let mut m = Merge::new(16);
        let subs = [pat("a.#"), pat("b.#")];
        m.begin([pat("a.#")]);
        m.begin([pat("b.#")]);
        let (a, b) = (message("a.1"), message("b.1"));
        assert_eq!(m.live(&live(&a), &subs, now), Verdict::Held);
        assert_eq!(m.live(&live(&b), &subs, now), Verdict::Held);
        assert!(m.settle(&[pat("a.#")], &subs, now).is_empty());
        assert!(m.is_pending(&pat("b.#")));
        // a.# is active again: its frames are no longer held.
        let a2 = message("a.2");
        assert_eq!(m.live(&live(&a2), &subs, now), Verdict::Send);
        let released = m.settle(&[pat("b.#")], &subs, now);
        assert_eq!(
            released.iter().map(|l| l.uuid).collect::<Vec<_>>(),
            [a.uuid, b.uuid],
            "in arrival order"
        );
    }

    #[test]
    fn a_replay_that_failed_releases_nothing_for_its_pattern() {
        let now = Instant::now();
        let mut m = Merge::new(16);
        m.begin([pat("a.#")]);
        let a = message("a.1");
        assert_eq!(m.live(&live(&a), &[pat("a.#")], now), Verdict::Held);
        // The subscription was dropped: its held frames go nowhere.
        assert!(m.settle(&[pat("a.#")], &[], now).is_empty());
    }

    #[test]
    fn holding_more_than_the_cap_overflows() {
        let now = Instant::now();
        let mut m = Merge::new(2);
        let subs = [pat("a.#")];
        m.begin([pat("a.#")]);
        for _ in 0..2 {
            assert_eq!(m.live(&live(&message("a.x")), &subs, now), Verdict::Held);
        }
        assert_eq!(
            m.live(&live(&message("a.x")), &subs, now),
            Verdict::Overflow
        );
    }

    #[test]
    fn holding_more_bytes_than_the_bound_overflows() {
        let now = Instant::now();
        let one = live(&message("a.x")).frame.len();
        let mut m = Merge::new(100).with_max_bytes(3 * one);
        let subs = [pat("a.#")];
        m.begin([pat("a.#")]);
        for _ in 0..3 {
            assert_eq!(m.live(&live(&message("a.x")), &subs, now), Verdict::Held);
        }
        assert_eq!(
            m.live(&live(&message("a.x")), &subs, now),
            Verdict::Overflow
        );
        // Settling lets go of what was held, bytes included.
        let mut m = Merge::new(100).with_max_bytes(3 * one);
        for _ in 0..2 {
            m.begin([pat("a.#")]);
            for _ in 0..3 {
                assert_eq!(m.live(&live(&message("a.x")), &subs, now), Verdict::Held);
            }
            assert_eq!(m.settle(&[pat("a.#")], &subs, now).len(), 3);
        }
    }

    /// Messages stamped in order by one store: `n` of them at `path`.
    fn stamped(stamper: &postmesh_schema::Stamper, path: &str, n: usize) -> Vec<Message> {
        (0..n)
            .map(|_| Message {
                cursor: Some(stamper.next()),
                ..message(path)
            })
            .collect()
    }

    /// A frame that arrives after the device has its message, from before
    /// the position it resumed from or from this replay, is dropped, even
    /// after the replayed UUIDs are forgotten; a frame above is not.
    #[test]
    fn late_frames_below_the_cover_are_dropped() {
        let now = Instant::now();
        let store = postmesh_schema::Stamper::new(0);
        let ms = stamped(&store, "a.x", 6);
        let subs = [pat("a.#")];
        let mut m = Merge::new(16);
        // Resumed from ms[1]: the device has ms[0] and ms[1].
        m.begin([pat("a.#")]);
        m.cover(&pat("a.#"), ms[1].cursor.unwrap());
        let replay = m.replay(ms[2..4].to_vec(), now);
        m.cover_all(&pat("a.#"), &replay);
        assert!(m.settle(&[pat("a.#")], &subs, now).is_empty());
        let later = now + REPLAY_MEMORY + Duration::from_secs(1);
        for late in &ms[..4] {
            assert_eq!(m.live(&live(late), &subs, later), Verdict::Drop, "{late:?}");
        }
        assert_eq!(m.live(&live(&ms[4]), &subs, later), Verdict::Send);
        // Another store's stamper is not covered by this one's cursors.
        let other = stamped(&postmesh_schema::Stamper::new(-60_000), "a.y", 1);
        assert_eq!(m.live(&live(&other[0]), &subs, later), Verdict::Send);
        // Through a pattern the replay did not cover, a frame is owed.
        let both = [pat("a.#"), pat("a.x")];
        assert_eq!(m.live(&live(&ms[0]), &both, later), Verdict::Send);
        m.forget(&pat("a.#"));
        assert_eq!(m.live(&live(&ms[0]), &subs, later), Verdict::Send);
    }

    #[test]
    fn replaying_twice_sends_once() {
        let now = Instant::now();
        let mut m = Merge::new(4);
        let x = message("a.x");
        assert_eq!(m.replay(vec![x.clone()], now).len(), 1);
        assert!(m.replay(vec![x], now).is_empty());
    }
}
