//! The store contract suite, run against every [`Store`] implementation.
//! Each check uses its own category, so checks can share one store.

use std::time::Duration;

use postmesh_schema::message::{new_v1, now_ticks, v1_from_parts};
use postmesh_schema::{Body, Cursor, Message, Path, Pattern, Uuid};

use super::{HistoryQuery, PutOutcome, Store};

/// A v1 UUID `ms_ago` milliseconds in the past, made unique by `seq`.
pub fn uuid_at(ms_ago: u64, seq: u16) -> Uuid {
    v1_from_parts(
        now_ticks() - ms_ago * 10_000,
        seq,
        [1, 2, 3, 4, 5, seq as u8],
    )
}

fn msg(path: &str, uuid: Uuid, n: i64) -> Message {
    Message {
        uuid,
        ..Message::new(
            Path::parse(path).unwrap(),
            Body::json(&serde_json::json!({ "n": n })),
        )
    }
}

fn pat(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

fn paths(page: &super::Page) -> Vec<&str> {
    page.messages.iter().map(|m| m.path.as_str()).collect()
}

/// Runs every check; `cat` prefixes the categories used.
pub async fn run_all<S: Store + ?Sized>(store: &S, cat: &str) {
    put_get_idempotent(store, &format!("{cat}put")).await;
    history_order_and_patterns(store, &format!("{cat}hist")).await;
    paging_with_before(store, &format!("{cat}page")).await;
    since_is_oldest_first(store, &format!("{cat}since")).await;
    since_follows_store_order(store, &format!("{cat}order")).await;
    latest_per_path(store, &format!("{cat}latest")).await;
    dismissals(store).await;
    checkpoints(store, &format!("{cat}mark")).await;
    retention(store, &format!("{cat}ttl")).await;
}

/// Puts `messages` and returns them as stored: with their cursors.
async fn put_all<S: Store + ?Sized>(store: &S, messages: &[Message]) -> Vec<Message> {
    let puts = store.put(messages.to_vec()).await.unwrap();
    messages
        .iter()
        .zip(puts)
        .map(|(m, p)| Message {
            cursor: Some(p.cursor),
            ..m.clone()
        })
        .collect()
}

fn cursors(messages: &[Message]) -> Vec<Option<Cursor>> {
    messages.iter().map(|m| m.cursor).collect()
}

/// Round trip, and the same UUID twice stores once, at the first cursor.
pub async fn put_get_idempotent<S: Store + ?Sized>(store: &S, cat: &str) {
    let m = msg(&format!("{cat}.a"), new_v1(), 1);
    let first = store.put(vec![m.clone()]).await.unwrap();
    assert_eq!(first[0].outcome, PutOutcome::Inserted);
    let got = store.get(m.uuid).await.unwrap().expect("stored");
    assert_eq!(got, m);
    assert_eq!(
        got.cursor,
        Some(first[0].cursor),
        "read back with its cursor"
    );
    let mut other = msg(&format!("{cat}.b"), m.uuid, 2);
    other.class = postmesh_schema::Class::Gold;
    let fresh = msg(&format!("{cat}.a"), new_v1(), 3);
    let puts = store
        .put(vec![other, fresh.clone(), fresh.clone()])
        .await
        .unwrap();
    assert_eq!(
        puts.iter().map(|p| p.outcome).collect::<Vec<_>>(),
        [
            PutOutcome::Duplicate,
            PutOutcome::Inserted,
            PutOutcome::Duplicate
        ]
    );
    assert_eq!(puts[0].cursor, first[0].cursor, "a duplicate stays put");
    assert_eq!(puts[2].cursor, puts[1].cursor);
    assert!(puts[1].cursor > first[0].cursor, "stamped in put order");
    assert_eq!(
        store.get(m.uuid).await.unwrap().as_ref(),
        Some(&m),
        "first write wins"
    );
    let h = store
        .history(HistoryQuery {
            pattern: pat(&format!("{cat}.#")),
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(h.messages.len(), 2, "duplicates are not indexed twice");
    assert_eq!(store.get(new_v1()).await.unwrap(), None);
    let newest = store.newest().await.unwrap().expect("a newest cursor");
    assert!(newest >= puts[1].cursor);
}

/// Newest first by cursor (the order stored), whatever the UUID times, for
/// every pattern shape.
pub async fn history_order_and_patterns<S: Store + ?Sized>(store: &S, cat: &str) {
    // UUID times disagree with the order stored on purpose.
    let m55 = msg(&format!("{cat}.breaking-news.55"), uuid_at(1_000, 2), 55);
    let m56 = msg(&format!("{cat}.breaking-news.56"), uuid_at(2_000, 1), 56);
    let deep = msg(&format!("{cat}.breaking-news.55.x"), uuid_at(500, 3), 0);
    let other = msg(&format!("{cat}.sports.56"), uuid_at(3_000, 4), 1);
    let top = msg(cat, uuid_at(9_000, 5), 2);
    put_all(store, &[m55.clone(), m56.clone(), deep.clone()]).await;
    put_all(store, &[other.clone(), top.clone()]).await;
    let h = |p: String, limit: usize| HistoryQuery {
        pattern: pat(&p),
        limit,
        before: None,
    };

    let page = store
        .history(h(format!("{cat}.breaking-news.#"), 10))
        .await
        .unwrap();
    assert_eq!(
        paths(&page),
        [deep.path.as_str(), m56.path.as_str(), m55.path.as_str()],
        "one folder, newest first"
    );
    assert!(!page.more);
    let page = store
        .history(h(format!("{cat}.breaking-news.*"), 10))
        .await
        .unwrap();
    assert_eq!(paths(&page), [m56.path.as_str(), m55.path.as_str()]);
    let page = store.history(h(format!("{cat}.*.56"), 10)).await.unwrap();
    assert_eq!(
        paths(&page),
        [other.path.as_str(), m56.path.as_str()],
        "wildcard in the middle"
    );
    let page = store.history(h(format!("{cat}.#"), 10)).await.unwrap();
    assert_eq!(page.messages.len(), 5, "# matches the category itself too");
    assert_eq!(page.messages[0], top);
    assert_eq!(page.messages[4], m55);
    let page = store
        .history(h(format!("{cat}.breaking-news.55"), 10))
        .await
        .unwrap();
    assert_eq!(
        paths(&page),
        [m55.path.as_str()],
        "exact path excludes descendants"
    );
    let page = store
        .history(h("*.breaking-news.56".to_owned(), 10))
        .await
        .unwrap();
    assert!(
        paths(&page).contains(&m56.path.as_str()),
        "leading wildcard"
    );
    let page = store.history(h(format!("{cat}.#.x"), 10)).await.unwrap();
    assert_eq!(paths(&page), [deep.path.as_str()]);
    let page = store
        .history(h(format!("{cat}.breaking-news.#"), 2))
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(page.more);
}

/// Walking pages with `before` visits every message once, in order.
pub async fn paging_with_before<S: Store + ?Sized>(store: &S, cat: &str) {
    let n = 57;
    let all: Vec<Message> = (0..n)
        .map(|i| {
            msg(
                &format!("{cat}.f.{}", i % 4),
                uuid_at(10_000 - (i as u64 % 7) * 10, i as u16),
                i,
            )
        })
        .collect();
    for chunk in all.chunks(10) {
        put_all(store, chunk).await;
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(HistoryQuery {
                pattern: pat(&format!("{cat}.f.#")),
                limit: 10,
                before,
            })
            .await
            .unwrap();
        seen.extend(page.messages.iter().map(|m| m.uuid));
        before = page.messages.last().and_then(|m| m.cursor);
        if !page.more {
            break;
        }
    }
    let want: Vec<Uuid> = all.iter().rev().map(|m| m.uuid).collect();
    assert_eq!(seen, want);
}

/// `since` is everything after a cursor, oldest first, bounded.
pub async fn since_is_oldest_first<S: Store + ?Sized>(store: &S, cat: &str) {
    let all: Vec<Message> = (0..6)
        .map(|i| {
            msg(
                &format!("{cat}.s.{i}"),
                uuid_at(6_000 - i as u64 * 100, i as u16),
                i,
            )
        })
        .collect();
    let all = put_all(store, &all).await;
    let at = |i: usize| all[i].cursor.expect("stored");
    let page = store
        .since(pat(&format!("{cat}.#")), at(2), 100)
        .await
        .unwrap();
    assert_eq!(page.messages, all[3..].to_vec());
    assert_eq!(cursors(&page.messages), cursors(&all[3..]));
    assert!(!page.more);
    let page = store
        .since(pat(&format!("{cat}.s.*")), at(0), 2)
        .await
        .unwrap();
    assert_eq!(page.messages, all[1..3].to_vec());
    assert!(page.more);
    let page = store
        .since(pat(&format!("{cat}.#")), at(5), 100)
        .await
        .unwrap();
    assert!(page.messages.is_empty());
}

/// A message stored after another is after it in the resume order, even
/// when its UUID is older (a resend with the UUID its publisher chose).
pub async fn since_follows_store_order<S: Store + ?Sized>(store: &S, cat: &str) {
    let fresh = put_all(store, &[msg(&format!("{cat}.a"), new_v1(), 1)]).await;
    let resent = msg(&format!("{cat}.b"), uuid_at(3_600_000, 1), 2);
    let resent = put_all(store, &[resent]).await;
    let page = store
        .since(pat(&format!("{cat}.#")), fresh[0].cursor.unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages, resent,
        "the old UUID stored later is resumed"
    );
    let page = store
        .history(HistoryQuery {
            pattern: pat(&format!("{cat}.#")),
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(page.messages[0], resent[0], "and is the newest in history");
}

/// The message stored last at each path.
pub async fn latest_per_path<S: Store + ?Sized>(store: &S, cat: &str) {
    let a1 = msg(&format!("{cat}.a"), uuid_at(3_000, 1), 1);
    let a2 = msg(&format!("{cat}.a"), uuid_at(1_000, 2), 2);
    let b1 = msg(&format!("{cat}.b"), uuid_at(2_000, 3), 3);
    let a0 = msg(&format!("{cat}.a"), uuid_at(5_000, 4), 0);
    put_all(store, &[a1, a2.clone(), b1.clone()]).await;
    let page = store.latest(pat(&format!("{cat}.*")), 100).await.unwrap();
    assert_eq!(page.messages, [b1.clone(), a2.clone()]);
    // Stored last, it is the latest at its path whatever its UUID says.
    put_all(store, std::slice::from_ref(&a0)).await;
    let page = store.latest(pat(&format!("{cat}.a")), 100).await.unwrap();
    assert_eq!(page.messages, std::slice::from_ref(&a0));
    let page = store.latest(pat(&format!("{cat}.*")), 100).await.unwrap();
    assert_eq!(page.messages, [a0, b1]);
    let page = store.latest(pat(&format!("{cat}.*")), 1).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert!(page.more);
}

/// Dismissals are per user.
pub async fn dismissals<S: Store + ?Sized>(store: &S) {
    let (u1, u2) = (new_v1(), new_v1());
    assert!(store.dismiss(42, u1).await.unwrap());
    assert!(!store.dismiss(42, u1).await.unwrap());
    assert_eq!(
        store.dismissed(42, vec![u1, u2]).await.unwrap(),
        [true, false]
    );
    assert_eq!(store.dismissed(43, vec![u1]).await.unwrap(), [false]);
}

/// Named checkpoints read back what was set last.
pub async fn checkpoints<S: Store + ?Sized>(store: &S, name: &str) {
    assert_eq!(store.checkpoint(name).await.unwrap(), None);
    let (a, b) = (Cursor::now(), Cursor::from_uuid(new_v1()));
    store.set_checkpoint(name, a).await.unwrap();
    store.set_checkpoint(name, b).await.unwrap();
    assert_eq!(store.checkpoint(name).await.unwrap(), Some(b));
}

/// Messages stored longer ago than their category's retention are not
/// returned, and sweep deletes them. Retention counts from when a message
/// was stored (as a Cassandra TTL does), so this check waits out a short
/// one.
pub async fn retention<S: Store + ?Sized>(store: &S, cat: &str) {
    let ttl = Duration::from_secs(2);
    // An old UUID does not make a message expire: storing it now does not.
    let old = msg(&format!("{cat}.x"), uuid_at(120_000, 1), 1);
    put_all(store, std::slice::from_ref(&old)).await;
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    let new = msg(&format!("{cat}.x"), uuid_at(600_000, 2), 2);
    let new = put_all(store, &[new]).await.remove(0);
    let all = HistoryQuery {
        pattern: pat(&format!("{cat}.#")),
        limit: 10,
        before: None,
    };
    assert_eq!(store.history(all.clone()).await.unwrap().messages.len(), 2);
    store
        .set_retention(cat.to_owned(), Some(ttl))
        .await
        .unwrap();
    assert_eq!(
        store.history(all.clone()).await.unwrap().messages,
        std::slice::from_ref(&new)
    );
    assert_eq!(store.get(old.uuid).await.unwrap(), None);
    assert_eq!(
        store
            .since(pat(&format!("{cat}.#")), Cursor::at_ticks(0), 10)
            .await
            .unwrap()
            .messages,
        std::slice::from_ref(&new)
    );
    assert!(
        store
            .retentions()
            .await
            .unwrap()
            .contains(&(cat.to_owned(), ttl))
    );
    assert!(store.sweep().await.unwrap() >= 1);
    store.set_retention(cat.to_owned(), None).await.unwrap();
    assert_eq!(
        store.history(all).await.unwrap().messages,
        [new],
        "swept messages are gone for good"
    );
}

/// How long the differential test's retention is: its first batch of
/// messages is stored longer ago than this, its second one not (at first).
const PLAN_TTL: Duration = Duration::from_secs(4);

/// Milliseconds since the epoch of a cursor's stamp.
fn cursor_ms(c: &Cursor) -> u64 {
    postmesh_schema::message::v1_unix_millis(c.as_uuid())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every query plan against a brute-force filter of everything stored:
/// history of random patterns (`*` anywhere, `#` anywhere, exact paths),
/// `before` paging, `since`, `latest`, dismissals, and a retention
/// (queries skip what it expired, `sweep` deletes it). Paths are built
/// from elements that prefix each other (`a`, `ab`, `a-b`, `a b`), and
/// are stored in two batches further apart than the retention.
///
/// The patterns reach the root (`#`, `*.a`), so the store must hold
/// nothing else. Takes about `PLAN_TTL` plus the queries.
pub async fn query_plans_agree_with_brute_force<S: Store + ?Sized>(store: &S) {
    let words = ["a", "b", "a-b", "ab", "a b"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut batches = [Vec::new(), Vec::new()];
    for i in 0..400u16 {
        let depth = 1 + (next() % 4) as usize;
        let path: Vec<&str> = (0..depth)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .collect();
        // UUID times disagree with the order stored.
        let m = msg(
            &path.join("."),
            uuid_at(100_000 - u64::from(i) * 7 - next() % 5, i),
            i64::from(i),
        );
        batches[usize::from(i >= 200)].push(m);
    }
    // One put per batch: cursors follow the order given, and the second
    // batch is stored after the first has outlived the retention.
    let first = put_all(store, &batches[0]).await;
    tokio::time::sleep(PLAN_TTL + Duration::from_millis(500)).await;
    let second = put_all(store, &batches[1]).await;
    // Newest first.
    let by_time: Vec<Message> = first.iter().chain(&second).rev().cloned().collect();
    let elems = ["a", "b", "a-b", "ab", "*", "#"];
    let mut random_pattern = || {
        let len = 1 + (next() % 4) as usize;
        let p: Vec<&str> = (0..len)
            .map(|_| elems[(next() % elems.len() as u64) as usize])
            .collect();
        pat(&p.join("."))
    };
    for _ in 0..300 {
        let pattern = random_pattern();
        check_plans(store, &pattern, &by_time).await;
    }

    // Dismissals, per user, against a set.
    let mut dismissed = std::collections::HashSet::new();
    for (i, m) in by_time.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let user = 7 + (i % 2) as u64;
        assert!(
            store.dismiss(user, m.uuid).await.unwrap(),
            "first dismissal"
        );
        dismissed.insert((user, m.uuid));
    }
    for user in [7, 8, 9] {
        let uuids: Vec<Uuid> = by_time.iter().map(|m| m.uuid).collect();
        let want: Vec<bool> = uuids
            .iter()
            .map(|u| dismissed.contains(&(user, *u)))
            .collect();
        assert_eq!(
            store.dismissed(user, uuids).await.unwrap(),
            want,
            "dismissed by {user}"
        );
    }

    // A retention on one category: what it expired is skipped by every
    // query. A message whose expiry falls while a query runs may or may
    // not be returned, so a pattern matching one is not compared.
    store
        .set_retention("ab".to_owned(), Some(PLAN_TTL))
        .await
        .unwrap();
    let ttl_ms = PLAN_TTL.as_millis() as u64;
    let expires = |m: &Message| {
        (m.path.as_str() == "ab" || m.path.as_str().starts_with("ab."))
            .then(|| cursor_ms(&m.cursor.expect("stored")) + ttl_ms)
    };
    let mut compared = 0;
    for _ in 0..40 {
        let pattern = random_pattern();
        let start = now_ms();
        let alive: Vec<Message> = by_time
            .iter()
            .filter(|m| expires(m).is_none_or(|e| e > start))
            .cloned()
            .collect();
        let got = whole_history(store, &pattern).await;
        let end = now_ms();
        let unsure = by_time.iter().any(|m| {
            pattern.matches(&m.path) && expires(m).is_some_and(|e| e > start && e <= end + 1)
        });
        if unsure {
            continue;
        }
        compared += 1;
        assert_eq!(
            got,
            matching(&alive, &pattern),
            "history {pattern} under a retention"
        );
    }
    assert!(compared >= 20, "only {compared} patterns compared");
    // The sweep deletes at least the first batch's messages of `ab`, and
    // nothing outside it.
    let expired_first: Vec<Uuid> = first
        .iter()
        .filter(|m| expires(m).is_some())
        .map(|m| m.uuid)
        .collect();
    assert!(!expired_first.is_empty());
    let swept = store.sweep().await.unwrap();
    assert!(swept >= expired_first.len(), "swept {swept}");
    store.set_retention("ab".to_owned(), None).await.unwrap();
    let all = store
        .history(HistoryQuery {
            pattern: pat("#"),
            limit: 1000,
            before: None,
        })
        .await
        .unwrap();
    let got: std::collections::HashSet<Uuid> = all.messages.iter().map(|m| m.uuid).collect();
    for m in &by_time {
        if expires(m).is_none() {
            assert!(got.contains(&m.uuid), "{} kept", m.path);
        }
    }
    for u in &expired_first {
        assert!(!got.contains(u), "swept for good");
    }
}

/// The UUIDs of one history page of up to 1000 (all a test stores),
/// newest first.
async fn whole_history<S: Store + ?Sized>(store: &S, pattern: &Pattern) -> Vec<Uuid> {
    let page = store
        .history(HistoryQuery {
            pattern: pattern.clone(),
            limit: 1000,
            before: None,
        })
        .await
        .unwrap();
    page.messages.iter().map(|m| m.uuid).collect()
}

/// The UUIDs of the `messages` that `pattern` matches, in their order: the
/// brute-force answer the query plans must agree with.
fn matching(messages: &[Message], pattern: &Pattern) -> Vec<Uuid> {
    messages
        .iter()
        .filter(|m| pattern.matches(&m.path))
        .map(|m| m.uuid)
        .collect()
}

/// One pattern's history (whole, paged with `before`), `since` and
/// `latest` against `visible` (newest first) filtered by brute force.
async fn check_plans<S: Store + ?Sized>(store: &S, pattern: &Pattern, visible: &[Message]) {
    let cursor_of = |u: &Uuid| visible.iter().find(|m| m.uuid == *u).unwrap().cursor;
    let want = matching(visible, pattern);
    assert_eq!(
        whole_history(store, pattern).await,
        want,
        "history {pattern}"
    );
    if want.len() > 3 {
        let page = store
            .history(HistoryQuery {
                pattern: pattern.clone(),
                limit: 2,
                before: cursor_of(&want[1]),
            })
            .await
            .unwrap();
        assert_eq!(
            page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
            want[2..4],
            "paged {pattern}"
        );
        let page = store
            .since(pattern.clone(), cursor_of(&want[3]).unwrap(), 2)
            .await
            .unwrap();
        assert_eq!(
            page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
            [want[2], want[1]],
            "since {pattern}"
        );
        assert!(page.more);
    }
    let mut newest: std::collections::HashMap<&str, &Message> = Default::default();
    for m in visible.iter().rev() {
        if pattern.matches(&m.path) {
            newest.insert(m.path.as_str(), m);
        }
    }
    let mut want_latest: Vec<Uuid> = newest.values().map(|m| m.uuid).collect();
    want_latest.sort_by_key(|u| std::cmp::Reverse(cursor_of(u)));
    let got: Vec<Uuid> = store
        .latest(pattern.clone(), 1000)
        .await
        .unwrap()
        .messages
        .iter()
        .map(|m| m.uuid)
        .collect();
    assert_eq!(got, want_latest, "latest {pattern}");
}
