//! The store contract suite, run against every [`Store`] implementation.
//! Each check uses its own category, so checks can share one store.

use std::time::Duration;

use postmesh_schema::message::{new_v1, now_ticks, v1_from_parts};
use postmesh_schema::{Body, Message, Path, Pattern, Uuid};

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
    latest_per_path(store, &format!("{cat}latest")).await;
    dismissals(store).await;
    retention(store, &format!("{cat}ttl")).await;
}

/// Round trip, and the same UUID twice stores once.
pub async fn put_get_idempotent<S: Store + ?Sized>(store: &S, cat: &str) {
    let m = msg(&format!("{cat}.a"), new_v1(), 1);
    assert_eq!(
        store.put(vec![m.clone()]).await.unwrap(),
        [PutOutcome::Inserted]
    );
    assert_eq!(store.get(m.uuid).await.unwrap().as_ref(), Some(&m));
    let mut other = msg(&format!("{cat}.b"), m.uuid, 2);
    other.class = postmesh_schema::Class::Gold;
    let fresh = msg(&format!("{cat}.a"), new_v1(), 3);
    let outcomes = store
        .put(vec![other, fresh.clone(), fresh.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            PutOutcome::Duplicate,
            PutOutcome::Inserted,
            PutOutcome::Duplicate
        ]
    );
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
}

/// Newest first by UUID time, whatever the insertion order, for every
/// pattern shape.
pub async fn history_order_and_patterns<S: Store + ?Sized>(store: &S, cat: &str) {
    // Inserted out of time order on purpose.
    let m56 = msg(&format!("{cat}.breaking-news.56"), uuid_at(1_000, 1), 56);
    let m55 = msg(&format!("{cat}.breaking-news.55"), uuid_at(2_000, 2), 55);
    let deep = msg(&format!("{cat}.breaking-news.55.x"), uuid_at(500, 3), 0);
    let other = msg(&format!("{cat}.sports.56"), uuid_at(1_500, 4), 1);
    let top = msg(cat, uuid_at(3_000, 5), 2);
    store
        .put(vec![m56.clone(), deep.clone(), m55.clone()])
        .await
        .unwrap();
    store.put(vec![other.clone(), top.clone()]).await.unwrap();
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
        [m56.path.as_str(), other.path.as_str()],
        "wildcard in the middle"
    );
    let page = store.history(h(format!("{cat}.#"), 10)).await.unwrap();
    assert_eq!(page.messages.len(), 5, "# matches the category itself too");
    assert_eq!(page.messages[4], top);
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
                uuid_at(10_000 - i as u64 * 10, i as u16),
                i,
            )
        })
        .collect();
    for chunk in all.chunks(10) {
        store.put(chunk.to_vec()).await.unwrap();
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
        before = page.messages.last().map(|m| m.uuid);
        if !page.more {
            break;
        }
    }
    let want: Vec<Uuid> = all.iter().rev().map(|m| m.uuid).collect();
    assert_eq!(seen, want);
}

/// `since` is everything after a UUID, oldest first, bounded.
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
    store.put(all.clone()).await.unwrap();
    let page = store
        .since(pat(&format!("{cat}.#")), all[2].uuid, 100)
        .await
        .unwrap();
    assert_eq!(page.messages, all[3..].to_vec());
    assert!(!page.more);
    let page = store
        .since(pat(&format!("{cat}.s.*")), all[0].uuid, 2)
        .await
        .unwrap();
    assert_eq!(page.messages, all[1..3].to_vec());
    assert!(page.more);
    let page = store
        .since(pat(&format!("{cat}.#")), all[5].uuid, 100)
        .await
        .unwrap();
    assert!(page.messages.is_empty());
}

/// The newest message at each path.
pub async fn latest_per_path<S: Store + ?Sized>(store: &S, cat: &str) {
    let a1 = msg(&format!("{cat}.a"), uuid_at(3_000, 1), 1);
    let a2 = msg(&format!("{cat}.a"), uuid_at(1_000, 2), 2);
    let b1 = msg(&format!("{cat}.b"), uuid_at(2_000, 3), 3);
    let a0 = msg(&format!("{cat}.a"), uuid_at(5_000, 4), 0);
    // a0 arrives last but is older: it must not replace a2.
    store.put(vec![a1, a2.clone(), b1.clone()]).await.unwrap();
    store.put(vec![a0]).await.unwrap();
    let page = store.latest(pat(&format!("{cat}.*")), 100).await.unwrap();
    assert_eq!(page.messages, [a2.clone(), b1.clone()]);
    let page = store.latest(pat(&format!("{cat}.a")), 100).await.unwrap();
    assert_eq!(page.messages, [a2]);
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

/// Messages past their category's retention are not returned, and sweep
/// deletes them.
pub async fn retention<S: Store + ?Sized>(store: &S, cat: &str) {
    let old = msg(&format!("{cat}.x"), uuid_at(120_000, 1), 1);
    let new = msg(&format!("{cat}.x"), uuid_at(1_000, 2), 2);
    store.put(vec![old.clone(), new.clone()]).await.unwrap();
    let all = HistoryQuery {
        pattern: pat(&format!("{cat}.#")),
        limit: 10,
        before: None,
    };
    assert_eq!(store.history(all.clone()).await.unwrap().messages.len(), 2);
    store
        .set_retention(cat.to_owned(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        store.history(all.clone()).await.unwrap().messages,
        std::slice::from_ref(&new)
    );
    assert_eq!(store.get(old.uuid).await.unwrap(), None);
    assert!(
        store
            .since(pat(&format!("{cat}.#")), uuid_at(200_000, 9), 10)
            .await
            .unwrap()
            .messages
            == [new.clone()]
    );
    assert!(store.sweep().await.unwrap() >= 1);
    store.set_retention(cat.to_owned(), None).await.unwrap();
    assert_eq!(
        store.history(all).await.unwrap().messages,
        [new],
        "swept messages are gone for good"
    );
}
