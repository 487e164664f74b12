//! The embedded store on [`fjall`], an LSM-tree storage engine: what
//! `postmesh up` runs on when no Cassandra cluster is configured. Chosen by
//! measurement (see bench/RESULTS.md): write-heavy ingest with several index
//! rows per message favours an LSM, and folder reads are short forward range
//! scans.
//!
//! # Layout 2 (fjall keyspaces)
//! | keyspace    | key                                     | value                   |
//! |-------------|-----------------------------------------|-------------------------|
//! | `timeline`  | !time key (16)                          | path, message JSON      |
//! | `names`     | folder or path, `.` written as byte 0   | id (u32 BE), is-a-path  |
//! | `below`     | folder id (4), !time key (16)           | the path                |
//! | `exact`     | path id (4), !time key (16)             | empty                   |
//! | `dismissed` | user (u64 BE), UUID                     | empty                   |
//! | `retention` | category                                | seconds (u64 BE)        |
//! | `meta`      | `layout`, `next_id`                     | u32 BE                  |
//!
//! A message has its record in `timeline` (which is also the root folder:
//! every message, newest first), one `below` row for each folder above its
//! path but the root, and one `exact` row. `names` numbers every folder and
//! path ever written, so index keys are 20 bytes whatever the path's length,
//! and lists them for `*` expansion and `latest`. The time key is inverted
//! (`!`) so a forward scan reads newest first; it is a permutation of the
//! UUID's bytes, so `timeline` is also the lookup by UUID.
//!
//! Why this shape: ingest is bound by the memtable's skip list (one search
//! per row written or checked). Layout 1 wrote seven rows per message of
//! depth three (five of them keyed by the full folder text, sharing long
//! prefixes) and read two; layout 2 writes four short ones and reads one.
//!
//! # Query plans
//! A pattern's leading literals and `*` elements are made concrete first: a
//! `*` is expanded to the children that exist by skip-scanning `names`
//! (byte 0 sorts below every element byte, so each subtree is contiguous
//! and the next child is one seek away). Up to the first `#` this yields
//! exact paths (their `exact` range) or folders (`below` and `exact` of the
//! folder, or `timeline` for the root, filtered by the rest of the pattern
//! unless it is a lone trailing `#`); the ranges are merged by time. Beyond
//! [`MAX_EXPANSION`] concrete prefixes the plan falls back to one filtered
//! scan of the literal prefix's folder.
//!
//! # Writes
//! One writer thread owns every write and commits in groups: it takes all
//! requests waiting (up to [`MAX_GROUP`] messages) and commits them in one
//! batch with one fsync. Messages are encoded by the caller, off that
//! thread. Readers run on tokio's blocking pool.

mod keys;
mod migrate;
mod query;
mod writer;

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use parking_lot::{Mutex, RwLock};
use postmesh_schema::message::v1_unix_millis;
use postmesh_schema::{Limits, Message, Pattern, Uuid};
use tokio::sync::{mpsc, oneshot};

use super::{HistoryQuery, Page, PutOutcome, Store, StoreError};
use keys::{inverted, split_record};
pub use query::MAX_EXPANSION;
pub use writer::{MAX_GROUP, NAMES_CACHED};
use writer::{Names, Prepared, Write, dismiss_key};

/// Write requests that may wait for the writer; more makes `put` fail with
/// [`StoreError::Overloaded`] rather than queue without bound.
pub const WRITE_QUEUE: usize = 4096;

/// The layout this build writes and reads (see the module documentation).
/// Layout 1 stores are rewritten on open ([`migrate`]).
pub const LAYOUT: u32 = 2;

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// fsync every commit group before acknowledging it. Turning this off
    /// keeps data safe from a process crash but not from an OS crash or
    /// power loss.
    pub sync: bool,
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// Path limits used when decoding stored messages.
    pub limits: Limits,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            sync: true,
            cache_bytes: 64 << 20,
            limits: Limits {
                // Stored messages were validated on the way in; decode them
                // whatever the limits are now.
                max_elements: usize::MAX,
                max_bytes: usize::MAX,
            },
        }
    }
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

#[derive(Clone)]
struct Tables {
    db: Database,
    timeline: Keyspace,
    names: Keyspace,
    below: Keyspace,
    exact: Keyspace,
    dismissed: Keyspace,
    retention: Keyspace,
    meta: Keyspace,
    /// Category → retention, mirrored from the `retention` keyspace.
    ttl: Arc<RwLock<HashMap<String, Duration>>>,
    limits: Limits,
}

/// The embedded store. Cheap to share behind an `Arc`; dropping the last
/// handle stops the writer after it has committed everything queued.
pub struct EmbeddedStore {
    tables: Tables,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, rewriting a layout 1 store.
    pub fn open(dir: &FsPath, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(engine)?;
        let db = Database::builder(dir)
            .cache_size(options.cache_bytes)
            .open()
            .map_err(engine)?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(engine)
        };
        let tables = Tables {
            timeline: ks("timeline")?,
            names: ks("names")?,
            below: ks("below")?,
            exact: ks("exact")?,
            dismissed: ks("dismissed")?,
            retention: ks("retention")?,
            meta: ks("meta")?,
            ttl: Arc::default(),
            limits: options.limits,
            db: db.clone(),
        };
        match tables.meta.get(b"layout").map_err(engine)? {
            Some(v) if v.as_ref() != LAYOUT.to_be_bytes() => {
                return Err(StoreError::Corrupt(format!(
                    "{} holds a store of layout {:?}; this build reads layout {LAYOUT}",
                    dir.display(),
                    v.as_ref()
                )));
            }
            Some(_) => {}
            None => {
                let mut b = db.batch().durability(writer::durability(true));
                b.insert(&tables.meta, b"layout", LAYOUT.to_be_bytes());
                b.commit().map_err(engine)?;
            }
        }
        {
            let mut ttl = tables.ttl.write();
            for kv in tables.retention.iter() {
                let (k, v) = kv.into_inner().map_err(engine)?;
                let secs = u64::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("retention".into()))?,
                );
                ttl.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    Duration::from_secs(secs),
                );
            }
        }
        let mut names = Names::load(&tables)?;
        let migrated = migrate::from_layout_1(&tables, &mut names)?;
        if migrated > 0 {
            tracing::info!(messages = migrated, "store rewritten from layout 1");
        }
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_tables = tables.clone();
        let sync = options.sync;
        let writer = std::thread::Builder::new()
            .name("postmesh-store-writer".into())
            .spawn(move || writer::writer_loop(writer_tables, names, rx, sync))
            .map_err(engine)?;
        Ok(EmbeddedStore {
            tables,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let sender = self.writes.lock().clone().ok_or(StoreError::Closed)?;
        sender.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let tables = self.tables.clone();
        tokio::task::spawn_blocking(move || f(&tables))
            .await
            .map_err(|e| StoreError::Engine(format!("read task failed: {e}")))?
    }

    /// Stops the writer after it has committed what is queued, and waits.
    pub fn close(&self) {
        self.writes.lock().take();
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }

    /// Bytes on disk.
    pub fn disk_space(&self) -> u64 {
        self.tables.db.disk_space().unwrap_or(0)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Tables {
    fn expired(&self, path: &str, uuid: &Uuid, now_ms: u64) -> bool {
        let category = path.split('.').next().unwrap_or(path);
        match self.ttl.read().get(category) {
            Some(ttl) => v1_unix_millis(uuid) + ttl.as_millis() as u64 <= now_ms,
            None => false,
        }
    }

    fn load(&self, uuid: &Uuid) -> Result<Option<Message>, StoreError> {
        match self.timeline.get(inverted(uuid)).map_err(engine)? {
            Some(v) => Message::from_json(split_record(&v)?.1, &self.limits)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("message {uuid}: {e}"))),
            None => Ok(None),
        }
    }

    fn load_all(&self, uuids: &[Uuid]) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::with_capacity(uuids.len());
        for u in uuids {
            // A row swept between the index read and here is simply skipped.
            if let Some(m) = self.load(u)? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put(&self, messages: Vec<Message>) -> Result<Vec<PutOutcome>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = messages.iter().map(Prepared::new).collect();
        self.write(|tx| Write::Put(prepared, tx)).await
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError> {
        self.read(move |t| {
            let m = t.load(&uuid)?;
            Ok(m.filter(|m| !t.expired(m.path.as_str(), &m.uuid, now_millis())))
        })
        .await
    }

    async fn history(&self, q: HistoryQuery) -> Result<Page, StoreError> {
        self.read(move |t| {
            let (uuids, more) = t.query(&q.pattern, q.before.as_ref(), true, q.limit)?;
            Ok(Page {
                messages: t.load_all(&uuids)?,
                more,
            })
        })
        .await
    }

    async fn since(&self, pattern: Pattern, after: Uuid, limit: usize) -> Result<Page, StoreError> {
        self.read(move |t| {
            let (uuids, more) = t.query(&pattern, Some(&after), false, limit)?;
            Ok(Page {
                messages: t.load_all(&uuids)?,
                more,
            })
        })
        .await
    }

    async fn latest(&self, pattern: Pattern, limit: usize) -> Result<Page, StoreError> {
        self.read(move |t| {
            let mut hits = t.latest_of(&pattern)?;
            hits.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
            let more = hits.len() > limit;
            hits.truncate(limit);
            let uuids: Vec<Uuid> = hits.into_iter().map(|(_, u)| u).collect();
            Ok(Page {
                messages: t.load_all(&uuids)?,
                more,
            })
        })
        .await
    }

    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<bool, StoreError> {
        self.write(|tx| Write::Dismiss(user, uuid, tx)).await
    }

    async fn dismissed(&self, user: u64, uuids: Vec<Uuid>) -> Result<Vec<bool>, StoreError> {
        self.read(move |t| {
            uuids
                .iter()
                .map(|u| {
                    t.dismissed
                        .contains_key(dismiss_key(user, u))
                        .map_err(engine)
                })
                .collect()
        })
        .await
    }

    async fn set_retention(
        &self,
        category: String,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.write(|tx| Write::Retention(category, ttl, tx)).await
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        self.write(Write::Sweep).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postmesh_schema::message::time_key;

    /// A message with no body at `path`.
    fn bare(path: &str) -> Message {
        Message::new(
            postmesh_schema::Path::parse(path).unwrap(),
            postmesh_schema::Body::None,
        )
    }

    #[tokio::test]
    async fn embedded_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        crate::store::contract::run_all(&store, "c").await;
    }

    /// Every query plan (exact paths, expanded `*`, folders with and
    /// without a filter, the fallback scan) against a brute-force filter of
    /// everything stored, on paths whose elements prefix each other.
    #[tokio::test]
    async fn query_plans_agree_with_brute_force() {
        use crate::store::contract::uuid_at;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let words = ["a", "b", "a-b", "ab", "a b"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut all = Vec::new();
        for i in 0..400u16 {
            let depth = 1 + (next() % 4) as usize;
            let path: Vec<&str> = (0..depth)
                .map(|_| words[(next() % words.len() as u64) as usize])
                .collect();
            let m = Message {
                uuid: uuid_at(100_000 - u64::from(i) * 7 - next() % 5, i),
                ..bare(&path.join("."))
            };
            all.push(m);
        }
        store.put(all.clone()).await.unwrap();
        let mut by_time = all.clone();
        by_time.sort_by_key(|m| std::cmp::Reverse(time_key(&m.uuid)));
        let elems = ["a", "b", "a-b", "ab", "*", "#"];
        for _ in 0..300 {
            let len = 1 + (next() % 4) as usize;
            let p: Vec<&str> = (0..len)
                .map(|_| elems[(next() % elems.len() as u64) as usize])
                .collect();
            let pattern = Pattern::parse(&p.join(".")).unwrap();
            let want: Vec<Uuid> = by_time
                .iter()
                .filter(|m| pattern.matches(&m.path))
                .map(|m| m.uuid)
                .collect();
            let page = store
                .history(HistoryQuery {
                    pattern: pattern.clone(),
                    limit: 1000,
                    before: None,
                })
                .await
                .unwrap();
            let got: Vec<Uuid> = page.messages.iter().map(|m| m.uuid).collect();
            assert_eq!(got, want, "history {pattern}");
            if want.len() > 3 {
                let page = store
                    .history(HistoryQuery {
                        pattern: pattern.clone(),
                        limit: 2,
                        before: Some(want[1]),
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
                    want[2..4],
                    "paged {pattern}"
                );
                let page = store.since(pattern.clone(), want[3], 2).await.unwrap();
                assert_eq!(
                    page.messages.iter().map(|m| m.uuid).collect::<Vec<_>>(),
                    [want[2], want[1]],
                    "since {pattern}"
                );
                assert!(page.more);
            }
            let mut newest: HashMap<&str, &Message> = HashMap::new();
            for m in by_time.iter().rev() {
                if pattern.matches(&m.path) {
                    newest.insert(m.path.as_str(), m);
                }
            }
            let mut want_latest: Vec<Uuid> = newest.values().map(|m| m.uuid).collect();
            want_latest.sort_by_key(|u| std::cmp::Reverse(time_key(u)));
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
    }

    #[test]
    fn children_skip_scan_sees_siblings_that_share_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let paths = ["x", "x.y", "x-foo", "x-foo.z", "xa", "x y.q", "y"];
        let msgs = paths.iter().map(|p| bare(p)).collect();
        rt.block_on(store.put(msgs)).unwrap();
        let mut roots = store.tables.children("").unwrap().unwrap();
        roots.sort();
        assert_eq!(roots, ["x", "x y", "x-foo", "xa", "y"]);
        assert_eq!(store.tables.children("x").unwrap().unwrap(), ["y"]);
        assert!(store.tables.children("y").unwrap().unwrap().is_empty());
        // Too many children: the plan falls back to a filtered folder scan.
        let many = (0..=MAX_EXPANSION)
            .map(|i| bare(&format!("w.{i}.z")))
            .collect();
        rt.block_on(store.put(many)).unwrap();
        assert!(store.tables.children("w").unwrap().is_none());
        let plan = store
            .tables
            .plan(&Pattern::parse("w.*.z").unwrap())
            .unwrap();
        assert!(
            matches!(
                plan.as_slice(),
                [query::Source::Folder { filter: true, .. }]
            ),
            "{plan:?}"
        );
        let page = rt
            .block_on(store.history(HistoryQuery {
                pattern: Pattern::parse("w.*.z").unwrap(),
                limit: 1000,
                before: None,
            }))
            .unwrap();
        assert_eq!(page.messages.len(), MAX_EXPANSION + 1);
    }

    /// A layout 1 store (messages by UUID in `messages`, indexes keyed by
    /// folder text) is rewritten on open: every message can be read by
    /// every query, and the old keyspaces are gone.
    #[tokio::test]
    async fn layout_1_stores_are_rewritten_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let msgs: Vec<Message> = ["feeds.a.1", "feeds.a.2", "feeds.b.1", "id.prefs.c.2"]
            .iter()
            .map(|p| bare(p))
            .collect();
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let old = db
                .keyspace("messages", KeyspaceCreateOptions::default)
                .unwrap();
            let folders = db
                .keyspace("folders", KeyspaceCreateOptions::default)
                .unwrap();
            for m in &msgs {
                old.insert(m.uuid.as_bytes(), m.to_json()).unwrap();
                folders.insert(m.path.as_str(), []).unwrap();
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for name in ["messages", "folders"] {
            assert!(!store.tables.db.keyspace_exists(name), "{name}");
        }
        let history = |p: &str| {
            store.history(HistoryQuery {
                pattern: Pattern::parse(p).unwrap(),
                limit: 10,
                before: None,
            })
        };
        assert_eq!(history("#").await.unwrap().messages.len(), 4);
        let feeds = history("feeds.*.1").await.unwrap().messages;
        assert_eq!(feeds, [msgs[2].clone(), msgs[0].clone()]);
        let latest = store
            .latest(Pattern::parse("feeds.a.*").unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(latest.messages, [msgs[1].clone(), msgs[0].clone()]);
        assert_eq!(
            store.get(msgs[3].uuid).await.unwrap(),
            Some(msgs[3].clone())
        );
        // Stored again, a rewritten message is a duplicate.
        assert_eq!(
            store.put(vec![msgs[0].clone()]).await.unwrap(),
            [PutOutcome::Duplicate]
        );
    }

    #[test]
    fn a_store_of_another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
            meta.insert("layout", 9u32.to_be_bytes()).unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let err = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("layout"), "{err}");
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = bare("feeds.x");
        {
            let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
            store.put(vec![m.clone()]).await.unwrap();
            store
                .set_retention("other".into(), Some(Duration::from_secs(5)))
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert_eq!(store.get(m.uuid).await.unwrap(), Some(m));
        assert_eq!(
            store.tables.ttl.read().get("other"),
            Some(&Duration::from_secs(5))
        );
    }
}
