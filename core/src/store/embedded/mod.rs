//! The embedded store on [`fjall`], an LSM-tree storage engine: what every
//! core runs on (a Cassandra store is planned, not implemented). Chosen by
//! measurement (see bench/RESULTS.md): write-heavy ingest with several index
//! rows per message favours an LSM, and folder reads are short forward range
//! scans.
//!
//! # Layout 3 (fjall keyspaces)
//! | keyspace    | key                                     | value                   |
//! |-------------|-----------------------------------------|-------------------------|
//! | `timeline`  | !cursor key (16)                        | path, message JSON      |
//! | `ids`       | message UUID (16)                       | cursor (16)             |
//! | `names`     | folder or path, `.` written as byte 0   | id (u32 BE), is-a-path  |
//! | `below`     | folder id (4), !cursor key (16)         | the path                |
//! | `exact`     | path id (4), !cursor key (16)           | empty                   |
//! | `dismissed` | user (u64 BE), UUID                     | empty                   |
//! | `retention` | category                                | seconds (u64 BE)        |
//! | `meta`      | `layout`, `next_id`, `checkpoint:NAME`  | u32 BE, cursor          |
//!
//! A message has its record in `timeline` (which is also the root folder:
//! every message, newest first), its cursor in `ids` (the lookup by UUID,
//! and what makes a put idempotent), one `below` row for each folder above
//! its path but the root, and one `exact` row. The writer thread stamps
//! each new message with the next [`Cursor`] of its [`Stamper`] as it adds
//! it to a commit group, so cursor order is commit order. `names` numbers
//! every folder and path ever written, so index keys are 20 bytes whatever
//! the path's length, and lists them for `*` expansion and `latest`. The
//! cursor key is inverted (`!`) so a forward scan reads newest first.
//!
//! Why this shape: ingest is bound by the memtable's skip list (one search
//! per row written or checked). Layout 1 wrote seven rows per message of
//! depth three (five of them keyed by the full folder text, sharing long
//! prefixes) and read two; layout 2 wrote four short ones and read one;
//! layout 3 adds the `ids` row that separates a message's identity from its
//! place in the resume order. Layout 2 stores are upgraded on open by
//! writing `ids` (a layout 2 message's cursor is its UUID).
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
use fjall::{Database, Keyspace, KeyspaceCreateOptions, Readable};
use parking_lot::{Mutex, RwLock};
use postmesh_schema::{Cursor, Limits, Message, Pattern, Stamper, Uuid};
use tokio::sync::{mpsc, oneshot};

use super::{HistoryQuery, Page, Put, Store, StoreError};
use keys::{cursor_of_key, decode_cursor, inverted, split_record};
pub use query::{MAX_EXPANSION, MAX_LATEST_PATHS, MAX_SCAN};
pub use writer::{MAX_GROUP, NAMES_CACHED};
use writer::{Names, Prepared, Write, dismiss_key};

/// Write requests that may wait for the writer; more makes `put` fail with
/// [`StoreError::Overloaded`] rather than queue without bound.
pub const WRITE_QUEUE: usize = 4096;

/// The layout this build writes and reads (see the module documentation).
/// Layout 1 and 2 stores are upgraded on open ([`migrate`]).
pub const LAYOUT: u32 = 3;

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
    /// How far the stamping clock runs ahead of the wall clock (behind when
    /// negative), in milliseconds. Zero but in tests of clock skew.
    pub clock_offset_ms: i64,
    /// Most index rows one query examines ([`MAX_SCAN`]).
    pub max_scan: usize,
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
            clock_offset_ms: 0,
            max_scan: MAX_SCAN,
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
    ids: Keyspace,
    names: Keyspace,
    below: Keyspace,
    exact: Keyspace,
    dismissed: Keyspace,
    retention: Keyspace,
    meta: Keyspace,
    /// Category → retention, mirrored from the `retention` keyspace.
    ttl: Arc<RwLock<HashMap<String, Duration>>>,
    limits: Limits,
    max_scan: usize,
}

/// The embedded store. Cheap to share behind an `Arc`; dropping the last
/// handle stops the writer after it has committed everything queued.
pub struct EmbeddedStore {
    tables: Tables,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer's stamper's identity (the stamper lives in its thread).
    stamper_id: [u8; 8],
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
            ids: ks("ids")?,
            names: ks("names")?,
            below: ks("below")?,
            exact: ks("exact")?,
            dismissed: ks("dismissed")?,
            retention: ks("retention")?,
            meta: ks("meta")?,
            ttl: Arc::default(),
            limits: options.limits,
            max_scan: options.max_scan.max(1),
            db: db.clone(),
        };
        let layout = tables.meta.get(b"layout").map_err(engine)?;
        match layout.as_ref().map(|v| v.as_ref()) {
            Some(v) if v == LAYOUT.to_be_bytes() => {}
            Some(v) if v == 2u32.to_be_bytes() => {
                let upgraded = migrate::from_layout_2(&tables)?;
                tracing::info!(messages = upgraded, "store upgraded from layout 2");
            }
            Some(v) => {
                return Err(StoreError::Corrupt(format!(
                    "{} holds a store of layout {v:?}; this build reads layout {LAYOUT}",
                    dir.display(),
                )));
            }
            None => {}
        }
        if layout.as_ref().map(|v| v.as_ref()) != Some(&LAYOUT.to_be_bytes()[..]) {
            let mut b = db.batch().durability(writer::durability(true));
            b.insert(&tables.meta, b"layout", LAYOUT.to_be_bytes());
            b.commit().map_err(engine)?;
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
        // Stamps continue after the newest stored, whatever the clock says.
        let stamper = Stamper::new(options.clock_offset_ms);
        if let Some(newest) = tables.newest()? {
            stamper.observe(newest);
        }
        let stamper_id = stamper.identity();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_tables = tables.clone();
        let sync = options.sync;
        let writer = std::thread::Builder::new()
            .name("postmesh-store-writer".into())
            .spawn(move || writer::writer_loop(writer_tables, names, stamper, rx, sync))
            .map_err(engine)?;
        Ok(EmbeddedStore {
            tables,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            stamper_id,
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

    /// Stops the writer after it has committed what is queued, and waits
    /// (blocking the calling thread: [`Store::close`] is the async form).
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

/// Unix milliseconds of a cursor: when its message was stored.
fn stored_millis(cursor: &Cursor) -> u64 {
    postmesh_schema::message::v1_unix_millis(cursor.as_uuid())
}

/// The `meta` key of a named checkpoint.
fn checkpoint_key(name: &str) -> Vec<u8> {
    [b"checkpoint:".as_slice(), name.as_bytes()].concat()
}

impl Tables {
    fn expired(&self, path: &str, cursor: &Cursor, now_ms: u64) -> bool {
        let category = path.split('.').next().unwrap_or(path);
        match self.ttl.read().get(category) {
            Some(ttl) => stored_millis(cursor) + ttl.as_millis() as u64 <= now_ms,
            None => false,
        }
    }

    /// Where the message `uuid` is stored, if it is (as of now: for the
    /// writer).
    fn cursor_of(&self, uuid: &Uuid) -> Result<Option<Cursor>, StoreError> {
        self.ids
            .get(uuid.as_bytes())
            .map_err(engine)?
            .map(|v| decode_cursor(&v))
            .transpose()
    }

    /// The newest cursor stored: the first `timeline` key.
    fn newest(&self) -> Result<Option<Cursor>, StoreError> {
        match self.timeline.iter().next() {
            Some(guard) => Ok(Some(cursor_of_key(&guard.key().map_err(engine)?)?)),
            None => Ok(None),
        }
    }
}

impl query::Reader<'_> {
    /// The message stored at `cursor`, with its cursor set.
    fn load(&self, cursor: &Cursor) -> Result<Option<Message>, StoreError> {
        match self
            .s
            .get(&self.t.timeline, inverted(cursor))
            .map_err(engine)?
        {
            Some(v) => {
                let mut m = Message::from_json(split_record(&v)?.1, &self.t.limits)
                    .map_err(|e| StoreError::Corrupt(format!("message at {cursor}: {e}")))?;
                m.cursor = Some(*cursor);
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    fn load_all(&self, cursors: &[Cursor]) -> Result<Vec<Message>, StoreError> {
        let mut out = Vec::with_capacity(cursors.len());
        for c in cursors {
            // A row swept between the index read and here is simply skipped.
            if let Some(m) = self.load(c)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Where the message `uuid` is stored, if it is.
    fn cursor_of(&self, uuid: &Uuid) -> Result<Option<Cursor>, StoreError> {
        self.s
            .get(&self.t.ids, uuid.as_bytes())
            .map_err(engine)?
            .map(|v| decode_cursor(&v))
            .transpose()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    /// Private: the files are this process's alone.
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn is_shared(&self) -> bool {
        false
    }

    /// The writer takes requests, and a read answers.
    async fn probe(&self) -> Result<(), StoreError> {
        let writer_runs = self.writes.lock().as_ref().is_some_and(|w| !w.is_closed());
        if !writer_runs {
            return Err(StoreError::Closed);
        }
        self.read(|t| t.newest()).await.map(|_| ())
    }

    fn stamper(&self) -> [u8; 8] {
        self.stamper_id
    }

    async fn put(&self, messages: Vec<Message>) -> Result<Vec<Put>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = messages.iter().map(Prepared::new).collect();
        self.write(|tx| Write::Put(prepared, tx)).await
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError> {
        self.read(move |t| {
            let r = t.reader();
            let Some(cursor) = r.cursor_of(&uuid)? else {
                return Ok(None);
            };
            let m = r.load(&cursor)?;
            Ok(m.filter(|m| !t.expired(m.path.as_str(), &cursor, now_millis())))
        })
        .await
    }

    async fn history(&self, q: HistoryQuery) -> Result<Page, StoreError> {
        self.read(move |t| {
            let r = t.reader();
            let (cursors, next) = r.query(&q.pattern, q.before.as_ref(), true, q.limit)?;
            Ok(Page {
                stale: false,
                messages: r.load_all(&cursors)?,
                more: next.is_some(),
                gap: false,
                next,
            })
        })
        .await
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(move |t| {
            let r = t.reader();
            let (cursors, next) = r.query(&pattern, Some(&after), false, limit)?;
            Ok(Page {
                stale: false,
                messages: r.load_all(&cursors)?,
                more: next.is_some(),
                gap: false,
                next,
            })
        })
        .await
    }

    async fn newest(&self) -> Result<Option<Cursor>, StoreError> {
        self.read(|t| t.newest()).await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        let key = checkpoint_key(name);
        self.read(move |t| {
            t.meta
                .get(key)
                .map_err(engine)?
                .map(|v| decode_cursor(&v))
                .transpose()
        })
        .await
    }

    async fn set_checkpoint(&self, name: &str, cursor: Cursor) -> Result<(), StoreError> {
        let key = checkpoint_key(name);
        self.read(move |t| {
            t.meta
                .insert(key, cursor.as_uuid().as_bytes())
                .map_err(engine)
        })
        .await
    }

    async fn latest(&self, pattern: Pattern, limit: usize) -> Result<Page, StoreError> {
        self.read(move |t| {
            let r = t.reader();
            let (mut hits, cut) = r.latest_of(&pattern)?;
            hits.sort_unstable_by_key(|c| std::cmp::Reverse(*c));
            let more = cut || hits.len() > limit;
            hits.truncate(limit);
            Ok(Page {
                stale: false,
                messages: r.load_all(&hits)?,
                more,
                gap: false,
                next: None,
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

    async fn retentions(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        Ok(self
            .tables
            .ttl
            .read()
            .iter()
            .map(|(c, d)| (c.clone(), *d))
            .collect())
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        // Batch after batch, each a request of its own: writes queued
        // meanwhile are committed between two batches.
        let mut total = 0;
        loop {
            let (deleted, more) = self.write(Write::Sweep).await?;
            total += deleted;
            if !more {
                return Ok(total);
            }
        }
    }

    async fn close(&self) {
        self.writes.lock().take();
        let writer = self.writer.lock().take();
        if let Some(w) = writer {
            // Joining waits for the last commit group's fsync: off the
            // runtime's threads.
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    /// everything stored: the differential test every store runs.
    #[tokio::test]
    async fn query_plans_agree_with_brute_force() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        crate::store::contract::query_plans_agree_with_brute_force(&store).await;
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
        let mut roots = store.tables.reader().children("").unwrap().unwrap();
        roots.sort();
        assert_eq!(roots, ["x", "x y", "x-foo", "xa", "y"]);
        assert_eq!(store.tables.reader().children("x").unwrap().unwrap(), ["y"]);
        assert!(
            store
                .tables
                .reader()
                .children("y")
                .unwrap()
                .unwrap()
                .is_empty()
        );
        // Too many children: the plan falls back to a filtered folder scan.
        let many = (0..=MAX_EXPANSION)
            .map(|i| bare(&format!("w.{i}.z")))
            .collect();
        rt.block_on(store.put(many)).unwrap();
        assert!(store.tables.reader().children("w").unwrap().is_none());
        let plan = store
            .tables
            .reader()
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
        let again = store.put(vec![msgs[0].clone()]).await.unwrap();
        assert_eq!(again[0].outcome, crate::store::PutOutcome::Duplicate);
        assert_eq!(again[0].cursor, Cursor::from_uuid(msgs[0].uuid));
    }

    /// A layout 2 store (rows keyed by UUID time, no `ids`) is upgraded on
    /// open: its messages keep their order, with their UUIDs as cursors,
    /// are found by UUID and stay idempotent; new ones are stamped after.
    #[tokio::test]
    async fn layout_2_stores_are_upgraded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<Message> = ["feeds.a.1", "feeds.a.2"].iter().map(|p| bare(p)).collect();
        {
            let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
            // Write layout 2 by hand: timeline and index keys from the UUID.
            let mut names = Names::load(&store.tables).unwrap();
            let stamper = Stamper::new(0);
            let groups = vec![
                old.iter()
                    .map(|m| Prepared::new(m).at(Cursor::from_uuid(m.uuid)))
                    .collect(),
            ];
            for r in writer::commit(&store.tables, &mut names, &stamper, groups, None) {
                r.unwrap();
            }
            for m in &old {
                store.tables.ids.remove(m.uuid.as_bytes()).unwrap();
            }
            store
                .tables
                .meta
                .insert("layout", 2u32.to_be_bytes())
                .unwrap();
            store.close();
        }
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let got = store
            .get(old[1].uuid)
            .await
            .unwrap()
            .expect("found by uuid");
        assert_eq!(got.cursor, Some(Cursor::from_uuid(old[1].uuid)));
        let again = store.put(old.clone()).await.unwrap();
        assert!(
            again
                .iter()
                .all(|p| p.outcome == crate::store::PutOutcome::Duplicate)
        );
        let new = bare("feeds.a.3");
        let put = store.put(vec![new.clone()]).await.unwrap();
        assert!(put[0].cursor > Cursor::from_uuid(old[1].uuid));
        let page = store
            .since(
                Pattern::parse("feeds.#").unwrap(),
                Cursor::from_uuid(old[0].uuid),
                10,
            )
            .await
            .unwrap();
        assert_eq!(page.messages, [old[1].clone(), new]);
    }

    /// Reopened on a clock that runs behind the newest stamp, the store
    /// still stamps after it: a restart cannot reorder the resume order.
    #[tokio::test]
    async fn stamps_continue_after_the_newest_on_a_clock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let ahead = EmbeddedOptions {
                clock_offset_ms: 60_000,
                ..EmbeddedOptions::default()
            };
            let store = EmbeddedStore::open(dir.path(), ahead).unwrap();
            store.put(vec![bare("a.b")]).await.unwrap()[0].cursor
        };
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let second = store.put(vec![bare("a.b")]).await.unwrap()[0].cursor;
        assert!(second > first, "{second} after {first}");
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

    /// A large expired backlog is swept a batch at a time, so a write made
    /// while it is swept is committed between two batches rather than after
    /// the whole backlog.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_lets_writes_through_between_batches() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            sync: false,
            ..EmbeddedOptions::default()
        };
        let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
        // A backlog of many batches, so that the sweep is far from done when
        // the write arrives even on a loaded machine.
        let chunks = 16;
        let backlog = chunks * writer::SWEEP_BATCH;
        for chunk in 0..chunks {
            let msgs = (0..writer::SWEEP_BATCH)
                .map(|i| bare(&format!("old.{chunk}.{i}")))
                .collect();
            store.put(msgs).await.unwrap();
        }
        store
            .set_retention("old".into(), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let sweeper = {
            let store = store.clone();
            tokio::spawn(async move { store.sweep().await })
        };
        // Once the sweep has started (its first batch is gone), write.
        while store.tables.timeline.iter().count() == backlog {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.put(vec![bare("new.1")]).await.unwrap();
        let left = store.tables.timeline.iter().count();
        assert!(
            left > writer::SWEEP_BATCH,
            "the write waited for the whole backlog of {backlog} ({left} rows left)"
        );
        assert_eq!(sweeper.await.unwrap().unwrap(), backlog);
        assert_eq!(store.sweep().await.unwrap(), 0, "nothing left");
    }

    /// A filter that matches nearly nothing reads a bounded number of rows
    /// per query: pages end early with `more` and the `next` position, and
    /// paging on from it finds what matches, each message once.
    #[tokio::test]
    async fn a_sparse_filter_reads_a_bounded_page_and_pages_on() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            sync: false,
            max_scan: 50,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        let first = bare("feeds.a.nomatch");
        store.put(vec![first.clone()]).await.unwrap();
        let noise: Vec<Message> = (0..300).map(|i| bare(&format!("feeds.k.{i}"))).collect();
        store.put(noise).await.unwrap();
        let last = bare("feeds.b.nomatch");
        store.put(vec![last.clone()]).await.unwrap();
        let pattern = Pattern::parse("feeds.#.nomatch").unwrap();

        let mut found = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages < 20, "pages on to the end");
            let page = store
                .history(HistoryQuery {
                    pattern: pattern.clone(),
                    limit: 10,
                    before,
                })
                .await
                .unwrap();
            found.extend(page.messages.iter().map(|m| m.uuid));
            if !page.more {
                break;
            }
            before = Some(page.next.expect("where to go on"));
        }
        assert!(pages > 2, "the budget cut pages short ({pages})");
        assert_eq!(found, [last.uuid, first.uuid]);

        let mut found = Vec::new();
        let mut after = Cursor::at_ticks(0);
        loop {
            let page = store.since(pattern.clone(), after, 10).await.unwrap();
            found.extend(page.messages.iter().map(|m| m.uuid));
            if !page.more {
                break;
            }
            after = page.next.expect("where to go on");
        }
        assert_eq!(found, [first.uuid, last.uuid]);
    }
}
