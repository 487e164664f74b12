//! The engine contracts, run from here against the embedded engines and
//! the CQL store on a real Cassandra node (the RabbitMQ postoffice runs the
//! postoffice suite in `rabbitmq.rs`), and the CQL store's own layout
//! checks on that node.

use std::time::Duration;

use postmesh_core::Store as _;
use postmesh_core::store::{HistoryQuery, PutOutcome};
use postmesh_schema::{Body, Message, Path, Pattern, Uuid};

#[tokio::test]
async fn embedded_postoffice_keeps_the_postoffice_contract() {
    let po = postmesh_router::MemoryPostoffice::new();
    postmesh_router::contract::run_all(&po, "it").await;
}

#[tokio::test]
async fn embedded_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = postmesh_core::EmbeddedStore::open(dir.path(), Default::default()).unwrap();
    postmesh_core::store::contract::run_all(&store, "it").await;
}

#[tokio::test]
async fn cql_store_keeps_the_store_contract() {
    let keyspace = postmesh_tests::cql::Keyspace::fresh("contracts").await;
    let store = keyspace.store().await;
    postmesh_core::store::contract::run_all(store.as_ref(), "it").await;
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// `schema apply` is idempotent, and a keyspace at a newer schema version
/// than this build knows is refused, by `apply` and by the store.
#[tokio::test]
async fn cql_schema_is_versioned() {
    use postmesh_core::store::cql::{self, CqlError, CqlOptions, CqlStore, schema};
    let keyspace = postmesh_tests::cql::Keyspace::fresh("schema").await;
    let session = cql::connect(&keyspace.hosts).await.unwrap();
    let simple = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    assert_eq!(
        schema::apply(&session, &keyspace.name, simple)
            .await
            .unwrap(),
        schema::VERSION,
        "applied again: nothing to do"
    );
    session
        .query_unpaged(
            format!(
                "UPDATE {}.schema_version SET version = 99 WHERE id = 'postmesh'",
                keyspace.name
            ),
            (),
        )
        .await
        .unwrap();
    let refused = schema::apply(&session, &keyspace.name, simple).await;
    assert!(
        matches!(refused, Err(CqlError::NewerSchema { found: 99, .. })),
        "{refused:?}"
    );
    let opened = CqlStore::open(CqlOptions {
        hosts: keyspace.hosts.clone(),
        keyspace: keyspace.name.clone(),
        ..CqlOptions::default()
    })
    .await;
    assert!(matches!(opened, Err(CqlError::NewerSchema { .. })));
    keyspace.drop_now().await;
}

/// The differential test of query plans (`store::contract`), on a
/// keyspace of its own with the default layout.
#[tokio::test]
async fn cql_query_plans_agree_with_brute_force() {
    let keyspace = postmesh_tests::cql::Keyspace::fresh("plans").await;
    let store = keyspace.store().await;
    postmesh_core::store::contract::query_plans_agree_with_brute_force(store.as_ref()).await;
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// The same with per-category layouts: one-second buckets (the test's two
/// batches are seconds apart, so folders span several), and minimum index
/// depths that leave the root and shallow folders out of the index.
#[tokio::test]
async fn cql_query_plans_agree_with_brute_force_under_category_layouts() {
    use postmesh_core::store::cql::CategoryLayout;
    let keyspace = postmesh_tests::cql::Keyspace::fresh("layouts").await;
    let layout = |secs, min_index_depth| CategoryLayout {
        bucket: Duration::from_secs(secs),
        min_index_depth,
    };
    let store = keyspace
        .store_with(|o| {
            o.bucket = Duration::from_secs(1);
            o.categories = [
                ("a".to_owned(), layout(2, 2)),
                ("b".to_owned(), layout(1, 1)),
                ("a b".to_owned(), layout(1, 3)),
                ("ab".to_owned(), layout(3, 0)),
            ]
            .into();
        })
        .await;
    postmesh_core::store::contract::query_plans_agree_with_brute_force(store.as_ref()).await;
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// Rows of `folder` in `messages_by_folder`, bucket by bucket.
async fn folder_rows(keyspace: &postmesh_tests::cql::Keyspace, folder: &str) -> Vec<(i64, usize)> {
    let session = postmesh_core::store::cql::connect(&keyspace.hosts)
        .await
        .unwrap();
    let buckets = session
        .query_unpaged(
            format!(
                "SELECT bucket FROM {}.folder_buckets WHERE folder = ?",
                keyspace.name
            ),
            (folder,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut out = Vec::new();
    for b in buckets.rows::<(i64,)>().unwrap() {
        let (b,) = b.unwrap();
        let n = session
            .query_unpaged(
                format!(
                    "SELECT cursor FROM {}.messages_by_folder WHERE folder = ? AND bucket = ?",
                    keyspace.name
                ),
                (folder, b),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows_num();
        out.push((b, n));
    }
    out
}

fn msg(path: &str) -> Message {
    Message::new(
        Path::parse(path).unwrap(),
        Body::json(&serde_json::json!({})),
    )
}

/// Bucket walks on one-second buckets: history pages and `since` from a
/// cursor in the middle of a bucket cross bucket boundaries in both
/// directions, and the same UUID put again in a later bucket is one
/// message.
#[tokio::test]
async fn cql_bucket_walks() {
    use postmesh_core::store::cql::CategoryLayout;
    let keyspace = postmesh_tests::cql::Keyspace::fresh("buckets").await;
    let store = keyspace
        .store_with(|o| {
            o.categories = [(
                "w".to_owned(),
                CategoryLayout {
                    bucket: Duration::from_secs(1),
                    min_index_depth: 0,
                },
            )]
            .into();
        })
        .await;
    // Three rounds of three, each in a bucket of its own.
    let mut stored = Vec::new();
    for round in 0..3 {
        let ms: Vec<Message> = (0..3).map(|i| msg(&format!("w.r{round}.{i}"))).collect();
        let puts = store.put(ms.clone()).await.unwrap();
        for (m, p) in ms.into_iter().zip(puts) {
            stored.push(Message {
                cursor: Some(p.cursor),
                ..m
            });
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let w = folder_rows(&keyspace, "w").await;
    assert!(w.len() >= 3, "one bucket per round at least: {w:?}");
    assert_eq!(w.iter().map(|(_, n)| n).sum::<usize>(), 9);
    let newest_first: Vec<Uuid> = stored.iter().rev().map(|m| m.uuid).collect();
    // Pages of two, newest first: every page after the first starts in
    // the middle of a bucket or at its boundary.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(HistoryQuery {
                pattern: Pattern::parse("w.#").unwrap(),
                limit: 2,
                before,
            })
            .await
            .unwrap();
        seen.extend(page.messages.iter().map(|m| m.uuid));
        if !page.more {
            break;
        }
        before = page.next;
    }
    assert_eq!(seen, newest_first, "history pages across buckets");
    // `since` the middle message of the first round: the rest of its
    // bucket, then the later buckets, oldest first.
    let page = store
        .since(
            Pattern::parse("w.#").unwrap(),
            stored[1].cursor.unwrap(),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
        stored[2..].iter().map(|m| m.uuid).collect::<Vec<_>>()
    );
    // `before` the middle of the last round, with a wildcard.
    let page = store
        .history(HistoryQuery {
            pattern: Pattern::parse("w.*.1").unwrap(),
            limit: 10,
            before: stored[7].cursor,
        })
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
        [stored[4].uuid, stored[1].uuid]
    );
    // The same UUID again, seconds later: one message, at its first cursor.
    let again = store.put(vec![stored[0].clone()]).await.unwrap();
    assert_eq!(again[0].outcome, PutOutcome::Duplicate);
    assert_eq!(Some(again[0].cursor), stored[0].cursor);
    let all = store
        .history(HistoryQuery {
            pattern: Pattern::parse("w.#").unwrap(),
            limit: 100,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(
        all.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
        newest_first
    );
    let w = folder_rows(&keyspace, "w").await;
    assert_eq!(w.iter().map(|(_, n)| n).sum::<usize>(), 9, "no second row");
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// A minimum index depth keeps a category's messages out of the shallow
/// folders (the root included), and histories of shallow patterns are
/// still served, through the folders below, up to the expansion bound;
/// past it they are refused with `TooBroad`.
#[tokio::test]
async fn cql_minimum_index_depth() {
    use postmesh_core::store::StoreError;
    use postmesh_core::store::cql::{CategoryLayout, MAX_EXPANSION};
    let keyspace = postmesh_tests::cql::Keyspace::fresh("depth").await;
    let store = keyspace
        .store_with(|o| {
            o.categories = [(
                "id".to_owned(),
                CategoryLayout {
                    bucket: Duration::from_secs(3600),
                    min_index_depth: 2,
                },
            )]
            .into();
        })
        .await;
    let mut ms = vec![msg("id"), msg("other.x")];
    ms.extend((0..5).map(|u| msg(&format!("id.{u}.prefs"))));
    let puts = store.put(ms.clone()).await.unwrap();
    let cursor: Vec<Message> = ms
        .into_iter()
        .zip(puts)
        .map(|(m, p)| Message {
            cursor: Some(p.cursor),
            ..m
        })
        .collect();
    // `id` holds only the message at `id` itself; the root none of `id`.
    let id_rows: usize = folder_rows(&keyspace, "id").await.iter().map(|r| r.1).sum();
    assert_eq!(id_rows, 1);
    let root_rows: usize = folder_rows(&keyspace, "#").await.iter().map(|r| r.1).sum();
    assert_eq!(root_rows, 1, "only other.x in the root");
    assert_eq!(
        folder_rows(&keyspace, "id.3")
            .await
            .iter()
            .map(|r| r.1)
            .sum::<usize>(),
        1
    );
    let history = |p: &str| {
        let store = store.clone();
        let p = Pattern::parse(p).unwrap();
        async move {
            store
                .history(HistoryQuery {
                    pattern: p,
                    limit: 100,
                    before: None,
                })
                .await
        }
    };
    let uuids = |page: postmesh_core::store::Page| -> Vec<Uuid> {
        page.messages.iter().map(|m| m.uuid).collect()
    };
    let newest_first = |pred: &dyn Fn(&str) -> bool| -> Vec<Uuid> {
        cursor
            .iter()
            .rev()
            .filter(|m| pred(m.path.as_str()))
            .map(|m| m.uuid)
            .collect()
    };
    assert_eq!(
        uuids(history("id.#").await.unwrap()),
        newest_first(&|p| p.starts_with("id")),
        "a shallow pattern, through the folders below"
    );
    assert_eq!(
        uuids(history("#").await.unwrap()),
        newest_first(&|_| true),
        "the root, and the category it leaves out"
    );
    assert_eq!(
        uuids(history("id").await.unwrap()),
        newest_first(&|p| p == "id")
    );
    assert_eq!(
        uuids(history("id.*").await.unwrap()),
        Vec::<Uuid>::new(),
        "no message at depth two"
    );
    // Past the expansion bound: refused, with the reason; deeper
    // patterns and exact paths are still served.
    let many: Vec<Message> = (0..MAX_EXPANSION + 1)
        .map(|u| msg(&format!("id.u{u}.prefs")))
        .collect();
    store.put(many).await.unwrap();
    for p in ["id.#", "#", "#.prefs", "id.*.prefs"] {
        match history(p).await {
            Err(StoreError::TooBroad(why)) => assert!(why.contains("\"id\""), "{why}"),
            other => panic!("{p}: {other:?}"),
        }
    }
    assert_eq!(history("id.u7.#").await.unwrap().messages.len(), 1);
    assert_eq!(history("id.u7.prefs").await.unwrap().messages.len(), 1);
    assert_eq!(
        history("other.#").await.unwrap().messages.len(),
        1,
        "other categories are unaffected"
    );
    postmesh_core::Store::close(store.as_ref()).await;
    keyspace.drop_now().await;
}

/// Reads and writes each have their own consistency level. The keyspace
/// has one replica, so `TWO` cannot be met: a store that writes at `TWO`
/// reads at `ONE` but fails every write (retryable), and one that reads at
/// `TWO` cannot even open (it reads the retentions).
#[tokio::test]
async fn cql_consistency_per_operation() {
    use postmesh_core::store::StoreError;
    use postmesh_core::store::cql::{Consistency, CqlOptions, CqlStore};
    let keyspace = postmesh_tests::cql::Keyspace::fresh("consistency").await;
    let ones = keyspace
        .store_with(|o| {
            o.read_consistency = Consistency::One;
            o.write_consistency = Consistency::One;
        })
        .await;
    let m = msg("c.a");
    ones.put(vec![m.clone()]).await.unwrap();
    let writes_two = keyspace
        .store_with(|o| {
            o.read_consistency = Consistency::One;
            o.write_consistency = Consistency::Two;
        })
        .await;
    assert_eq!(
        writes_two.get(m.uuid).await.unwrap().map(|g| g.uuid),
        Some(m.uuid),
        "reads at ONE"
    );
    match writes_two.put(vec![msg("c.b")]).await {
        Err(e @ StoreError::Engine(_)) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("TWO"), "{e}");
        }
        other => panic!("a write at TWO on one replica: {other:?}"),
    }
    match writes_two
        .set_checkpoint("x", postmesh_schema::Cursor::now())
        .await
    {
        Err(e) => assert!(e.to_string().contains("TWO"), "{e}"),
        Ok(()) => panic!("a write at TWO on one replica succeeded"),
    }
    let reads_two = CqlStore::open(CqlOptions {
        hosts: keyspace.hosts.clone(),
        keyspace: keyspace.name.clone(),
        read_consistency: Consistency::Two,
        write_consistency: Consistency::One,
        ..CqlOptions::default()
    })
    .await;
    match reads_two {
        Err(e) => assert!(e.to_string().contains("TWO"), "{e}"),
        Ok(_) => panic!("a read at TWO on one replica succeeded"),
    }
    for s in [ones, writes_two] {
        postmesh_core::Store::close(s.as_ref()).await;
    }
    keyspace.drop_now().await;
}

/// The local datacenter: the node's own works; one the cluster does not
/// have is refused at open with one clear error naming those it has, and
/// so is an address where no node answers.
#[tokio::test]
async fn cql_local_datacenter_and_connection_errors() {
    use postmesh_core::store::cql::{CqlError, CqlOptions, CqlStore};
    let keyspace = postmesh_tests::cql::Keyspace::fresh("localdc").await;
    let local = keyspace
        .store_with(|o| o.local_datacenter = Some("datacenter1".into()))
        .await;
    let m = msg("dc.a");
    local.put(vec![m.clone()]).await.unwrap();
    assert!(local.get(m.uuid).await.unwrap().is_some());
    postmesh_core::Store::close(local.as_ref()).await;
    let open = |dc: Option<&str>, hosts: Vec<String>| {
        CqlStore::open(CqlOptions {
            hosts,
            keyspace: keyspace.name.clone(),
            local_datacenter: dc.map(str::to_owned),
            ..CqlOptions::default()
        })
    };
    match open(Some("elsewhere"), keyspace.hosts.clone()).await {
        Err(e @ CqlError::NoLocalDatacenter { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("\"elsewhere\"") && text.contains("datacenter1"),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened in a datacenter the cluster does not have"),
    }
    // Port 1 on loopback: nothing listens.
    match open(None, vec!["127.0.0.1:1".into()]).await {
        Err(e @ CqlError::Connect { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with("cannot connect to the CQL nodes"),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    keyspace.drop_now().await;
}

/// The store's health in `/healthz` and its latency in `/metrics`, over
/// HTTP from a real `postmesh up`: on the embedded store, and on a CQL
/// keyspace, which is then dropped under it: `/healthz` turns to 503 and
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_health_and_latency_over_http() {
    use postmesh::config::StoreKind;
    use postmesh_tests::Mesh;

    async fn check(mesh: &Mesh, kind: &str) {
        mesh.publish("health.a", serde_json::json!({"n": 1})).await;
        let (status, _) = mesh.get("/v1/history?pattern=health.%23", None).await;
        assert_eq!(status, 200);
        // The probe has 2 s: on a machine loaded enough, one can miss it,
        // and the next answer says so. A store that works answers again.
        let mut tries = 0;
        let health = loop {
            let (status, health) = mesh.get("/healthz", None).await;
            tries += 1;
            if status == 200 || tries == 10 {
                assert_eq!(status, 200, "{health}");
                break health;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(health["status"], "ok");
        assert_eq!(health["store"]["kind"], kind);
        assert_eq!(health["store"]["status"], "ok");
        assert!(health["store"]["latency_ms"].as_f64().unwrap() >= 0.0);
        let metrics = reqwest::get(format!("{}/metrics", mesh.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for op in ["put", "history", "probe"] {
            let line = metrics
                .lines()
                .find(|l| {
                    l.starts_with("postmesh_store_operation_seconds_count")
                        && l.contains(&format!("op=\"{op}\""))
                })
                .unwrap_or_else(|| panic!("no {op} latency in:\n{metrics}"));
            let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= 1.0, "{line}");
        }
        assert!(metrics.contains("postmesh_store_operation_seconds_bucket{"));
    }

    let embedded = Mesh::start().await;
    check(&embedded, "embedded").await;
    embedded.stop().await;

    let keyspace = postmesh_tests::cql::Keyspace::fresh("health").await;
    let (hosts, name) = (keyspace.hosts.clone(), keyspace.name.clone());
    let cql = Mesh::start_with(|c| {
        c.core.store.kind = StoreKind::Cql;
        c.core.store.hosts = hosts;
        c.core.store.keyspace = name;
    })
    .await;
    check(&cql, "cql").await;
    // The keyspace gone: the probe's read fails.
    keyspace.drop_now().await;
    let (status, health) = cql.get("/healthz", None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["store"]["status"], "unavailable");
    assert!(
        !health["store"]["error"].as_str().unwrap().is_empty(),
        "{health}"
    );
    let metrics = reqwest::get(format!("{}/metrics", cql.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("postmesh_store_operation_errors_total{op=\"probe\"} ")),
        "{metrics}"
    );
    cql.stop().await;
}
