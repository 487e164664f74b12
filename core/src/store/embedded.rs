//! The embedded store on [`fjall`], an LSM-tree storage engine: what
//! `postmesh up` runs on when no Cassandra cluster is configured. Chosen by
//! measurement (see bench/RESULTS.md): write-heavy ingest with several index
//! rows per message favours an LSM, and folder reads are short forward range
//! scans.
//!
//! # Layout (fjall keyspaces)
//! | keyspace    | key                                             | value           |
//! |-------------|-------------------------------------------------|-----------------|
//! | `messages`  | UUID (16 bytes)                                 | message JSON    |
//! | `folders`   | u16 BE folder length, folder, !time key (16)    | the path        |
//! | `paths`     | u16 BE path length, path, !time key (16)        | empty           |
//! | `latest`    | path with `.` written as byte 0                 | UUID            |
//! | `dismissed` | user (u64 BE), UUID                             | empty           |
//! | `retention` | category                                        | seconds (u64 BE)|
//!
//! A message has one `folders` row per ancestor prefix of its path, one for
//! the path itself and one in the root folder (length 0), plus one `paths`
//! row. The time key is inverted (`!`) so a forward scan reads newest first.
//!
//! # Query plans
//! A pattern's leading literals and `*` elements are made concrete first: a
//! `*` is expanded to the children that exist by skip-scanning `latest`
//! (byte 0 sorts below every element byte, so each subtree is contiguous
//! and the next child is one seek away). Up to the first `#` this yields
//! exact paths (read from `paths`) or folders (read from `folders`,
//! filtered by the rest of the pattern unless it is a lone trailing `#`);
//! the sources are merged by time. Beyond [`MAX_EXPANSION`] concrete
//! prefixes the plan falls back to one filtered scan of the literal
//! prefix's folder.
//!
//! # Writes
//! One writer thread owns every write and commits in groups: it takes all
//! requests waiting (up to [`MAX_GROUP`] messages) and commits them in one
//! batch with one fsync. Readers run on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Mutex, RwLock};
use postmesh_schema::message::{time_key, uuid_from_time_key, v1_unix_millis};
use postmesh_schema::{Limits, Message, Pattern, Uuid};
use tokio::sync::{mpsc, oneshot};

use super::{HistoryQuery, Page, PutOutcome, Store, StoreError};

/// Most messages committed in one group (one fsync).
pub const MAX_GROUP: usize = 4096;
/// Write requests that may wait for the writer; more makes `put` fail with
/// [`StoreError::Overloaded`] rather than queue without bound.
pub const WRITE_QUEUE: usize = 4096;

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
    messages: Keyspace,
    folders: Keyspace,
    paths: Keyspace,
    latest: Keyspace,
    dismissed: Keyspace,
    retention: Keyspace,
    /// Category → retention, mirrored from the `retention` keyspace.
    ttl: Arc<RwLock<HashMap<String, Duration>>>,
    limits: Limits,
}

type PutReply = oneshot::Sender<Result<Vec<PutOutcome>, StoreError>>;
type PutRequest = (Vec<Message>, PutReply);

enum Write {
    Put(Vec<Message>, PutReply),
    Dismiss(u64, Uuid, oneshot::Sender<Result<bool, StoreError>>),
    Retention(
        String,
        Option<Duration>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Sweep(oneshot::Sender<Result<usize, StoreError>>),
}

/// The embedded store. Cheap to share behind an `Arc`; dropping the last
/// handle stops the writer after it has committed everything queued.
pub struct EmbeddedStore {
    tables: Tables,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`.
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
            messages: ks("messages")?,
            folders: ks("folders")?,
            paths: ks("paths")?,
            latest: ks("latest")?,
            dismissed: ks("dismissed")?,
            retention: ks("retention")?,
            ttl: Arc::default(),
            limits: options.limits,
            db: db.clone(),
        };
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
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_tables = tables.clone();
        let sync = options.sync;
        let writer = std::thread::Builder::new()
            .name("postmesh-store-writer".into())
            .spawn(move || writer_loop(writer_tables, rx, sync))
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

fn folder_prefix(folder: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + folder.len() + 16);
    k.extend_from_slice(&(folder.len() as u16).to_be_bytes());
    k.extend_from_slice(folder.as_bytes());
    k
}

fn inverted(uuid: &Uuid) -> [u8; 16] {
    time_key(uuid).map(|b| !b)
}

fn folder_key(prefix: &[u8], uuid: &Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&inverted(uuid));
    k
}

fn uuid_of_folder_key(key: &[u8]) -> Result<Uuid, StoreError> {
    let tail: [u8; 16] = key
        .get(key.len().saturating_sub(16)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("short folder key".into()))?;
    Ok(uuid_from_time_key(&tail.map(|b| !b)))
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
        match self.messages.get(uuid.as_bytes()).map_err(engine)? {
            Some(v) => Message::from_json(&v, &self.limits)
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

    /// The distinct next elements below `prefix` (dotted; "" is the root),
    /// found by skip-scanning the `latest` keyspace: one seek per child.
    /// `None` when there are more than [`MAX_EXPANSION`].
    fn children(&self, prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut base = latest_key(prefix);
        if !prefix.is_empty() {
            base.push(SEP);
        }
        let mut out = Vec::new();
        let mut start = base.clone();
        loop {
            let Some(guard) = self.latest.range(start.clone()..).next() else {
                break;
            };
            let key = guard.key().map_err(engine)?;
            let Some(rest) = key.strip_prefix(base.as_slice()) else {
                break;
            };
            let child = rest.split(|b| *b == SEP).next().unwrap_or_default();
            if out.len() == MAX_EXPANSION {
                return Ok(None);
            }
            out.push(
                String::from_utf8(child.to_vec())
                    .map_err(|_| StoreError::Corrupt("latest path".into()))?,
            );
            // Past every key of this child: they all continue with SEP or end.
            start = base.clone();
            start.extend_from_slice(child);
            start.push(SEP + 1);
        }
        Ok(Some(out))
    }

    /// Turns a pattern into the sources to read. Leading literals and `*`
    /// elements are made concrete (a `*` by listing the children that exist),
    /// up to the first `#`: `feeds.*.56` becomes the exact paths
    /// `feeds.a.56`, `feeds.b.56`, ... and `id.*.c.#` the folders `id.prefs.c`,
    /// `id.inbox.c`. Beyond [`MAX_EXPANSION`] concrete prefixes it falls back
    /// to scanning the folder of the literal prefix with a filter.
    fn plan(&self, pattern: &Pattern) -> Result<Vec<Source>, StoreError> {
        let elems: Vec<&str> = pattern.as_str().split('.').collect();
        let mut prefixes = vec![String::new()];
        let mut hash_at = elems.len();
        for (i, e) in elems.iter().enumerate() {
            match *e {
                "#" => {
                    hash_at = i;
                    break;
                }
                "*" => {
                    let mut next = Vec::new();
                    for p in &prefixes {
                        let Some(children) = self.children(p)? else {
                            return Ok(vec![fallback(pattern)]);
                        };
                        next.extend(children.into_iter().map(|c| join(p, &c)));
                        if next.len() > MAX_EXPANSION {
                            return Ok(vec![fallback(pattern)]);
                        }
                    }
                    prefixes = next;
                }
                literal => {
                    for p in &mut prefixes {
                        *p = join(p, literal);
                    }
                }
            }
        }
        Ok(if hash_at == elems.len() {
            prefixes.into_iter().map(Source::Path).collect()
        } else {
            let filter = hash_at + 1 != elems.len();
            prefixes
                .into_iter()
                .map(|folder| Source::Folder { folder, filter })
                .collect()
        })
    }

    /// Reads up to `limit + 1` matching entries of one source, newest first
    /// (or oldest first), strictly beyond `cursor`.
    fn scan(
        &self,
        source: &Source,
        pattern: &Pattern,
        cursor: Option<&Uuid>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<([u8; 16], Uuid)>, StoreError> {
        let (keyspace, prefix, filter) = match source {
            Source::Path(p) => (&self.paths, folder_prefix(p), false),
            Source::Folder { folder, filter } => (&self.folders, folder_prefix(folder), *filter),
        };
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 17]);
        let now = now_millis();
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match (cursor, newest_first) {
            (None, true) => Box::new(keyspace.range(prefix.clone()..end)),
            (Some(c), true) => {
                let start = folder_key(&prefix, c);
                Box::new(keyspace.range::<Vec<u8>, _>((
                    std::ops::Bound::Excluded(start),
                    std::ops::Bound::Excluded(end),
                )))
            }
            (Some(c), false) => {
                let stop = folder_key(&prefix, c);
                Box::new(keyspace.range(prefix.clone()..stop).rev())
            }
            (None, false) => Box::new(keyspace.range(prefix.clone()..end).rev()),
        };
        let mut found = Vec::with_capacity(limit.min(1024) + 1);
        for guard in iter {
            let (key, path) = guard.into_inner().map_err(engine)?;
            let path = match source {
                Source::Path(p) => p.as_str(),
                Source::Folder { .. } => std::str::from_utf8(&path)
                    .map_err(|_| StoreError::Corrupt("folder path".into()))?,
            };
            if filter && !pattern.matches_str(path) {
                continue;
            }
            let uuid = uuid_of_folder_key(&key)?;
            if self.expired(path, &uuid, now) {
                continue;
            }
            found.push((time_key(&uuid), uuid));
            if found.len() > limit {
                break;
            }
        }
        Ok(found)
    }

    /// Merges the sources of `pattern` into one ordered page of UUIDs.
    fn query(
        &self,
        pattern: &Pattern,
        cursor: Option<&Uuid>,
        newest_first: bool,
        limit: usize,
    ) -> Result<(Vec<Uuid>, bool), StoreError> {
        let sources = self.plan(pattern)?;
        let mut all = Vec::new();
        for source in &sources {
            all.extend(self.scan(source, pattern, cursor, newest_first, limit)?);
        }
        if sources.len() > 1 {
            if newest_first {
                all.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            } else {
                all.sort_unstable_by_key(|e| e.0);
            }
        }
        let more = all.len() > limit;
        all.truncate(limit);
        Ok((all.into_iter().map(|(_, u)| u).collect(), more))
    }

    /// The newest message of each path matching, from the `latest` keyspace.
    fn latest_of(&self, pattern: &Pattern) -> Result<Vec<([u8; 16], Uuid)>, StoreError> {
        // (path, uuid) candidates from each source, filtered below.
        let mut found: Vec<(String, fjall::Slice)> = Vec::new();
        let mut below = |prefix: &[u8]| -> Result<(), StoreError> {
            for guard in self.latest.prefix(prefix) {
                let (key, uuid) = guard.into_inner().map_err(engine)?;
                found.push((path_of_latest_key(&key)?, uuid));
            }
            Ok(())
        };
        let mut exact = Vec::new();
        for source in self.plan(pattern)? {
            match source {
                Source::Path(p) => exact.push(p),
                Source::Folder { folder, .. } if folder.is_empty() => below(b"")?,
                // The folder's own path, then everything below it.
                Source::Folder { folder, .. } => {
                    let mut key = latest_key(&folder);
                    key.push(SEP);
                    below(&key)?;
                    exact.push(folder);
                }
            }
        }
        for p in exact {
            if let Some(uuid) = self.latest.get(latest_key(&p)).map_err(engine)? {
                found.push((p, uuid));
            }
        }
        let now = now_millis();
        let mut hits = Vec::new();
        for (path, uuid) in found {
            if !pattern.matches_str(&path) {
                continue;
            }
            let uuid =
                Uuid::from_slice(&uuid).map_err(|_| StoreError::Corrupt("latest uuid".into()))?;
            if !self.expired(&path, &uuid, now) {
                hits.push((time_key(&uuid), uuid));
            }
        }
        Ok(hits)
    }
}

/// Where a query reads.
#[derive(Debug)]
enum Source {
    /// One exact path (the `paths` keyspace).
    Path(String),
    /// A folder (the `folders` keyspace), filtered by the pattern unless
    /// every message in it matches.
    Folder { folder: String, filter: bool },
}

/// Most concrete prefixes a pattern's `*` elements expand to before a query
/// scans the literal prefix's folder with a filter instead.
pub const MAX_EXPANSION: usize = 256;

/// Separator of path elements in `latest` keys: it sorts below every byte
/// an element may contain (elements have no control characters), so the
/// keys of one subtree are contiguous and children can be skip-scanned.
const SEP: u8 = 0;

fn latest_key(path: &str) -> Vec<u8> {
    path.bytes()
        .map(|b| if b == b'.' { SEP } else { b })
        .collect()
}

fn path_of_latest_key(key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(
        key.iter()
            .map(|b| if *b == SEP { b'.' } else { *b })
            .collect(),
    )
    .map_err(|_| StoreError::Corrupt("latest key".into()))
}

fn join(prefix: &str, elem: &str) -> String {
    if prefix.is_empty() {
        elem.to_owned()
    } else {
        format!("{prefix}.{elem}")
    }
}

fn fallback(pattern: &Pattern) -> Source {
    Source::Folder {
        folder: pattern.literal_prefix().unwrap_or("").to_owned(),
        filter: !pattern.is_folder(),
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn put(&self, messages: Vec<Message>) -> Result<Vec<PutOutcome>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| Write::Put(messages, tx)).await
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

fn dismiss_key(user: u64, uuid: &Uuid) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&user.to_be_bytes());
    k[8..].copy_from_slice(uuid.as_bytes());
    k
}

fn writer_loop(t: Tables, mut rx: mpsc::Receiver<Write>, sync: bool) {
    let durability = Some(if sync {
        PersistMode::SyncAll
    } else {
        PersistMode::Buffer
    });
    while let Some(first) = rx.blocking_recv() {
        let mut puts: Vec<PutRequest> = Vec::new();
        let mut queued = 0usize;
        let mut next = Some(first);
        // Group commit: take everything already waiting, up to MAX_GROUP messages.
        while let Some(w) = next.take() {
            match w {
                Write::Put(msgs, reply) => {
                    queued += msgs.len();
                    puts.push((msgs, reply));
                }
                Write::Dismiss(user, uuid, reply) => {
                    let r = (|| {
                        let key = dismiss_key(user, &uuid);
                        if t.dismissed.contains_key(key).map_err(engine)? {
                            return Ok(false);
                        }
                        let mut b = t.db.batch().durability(durability);
                        b.insert(&t.dismissed, key, []);
                        b.commit().map_err(engine)?;
                        Ok(true)
                    })();
                    let _ = reply.send(r);
                }
                Write::Retention(category, ttl, reply) => {
                    let _ = reply.send(set_retention(&t, category, ttl, durability));
                }
                Write::Sweep(reply) => {
                    let _ = reply.send(sweep(&t, durability));
                }
            }
            if queued < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !puts.is_empty() {
            commit_puts(&t, puts, durability);
        }
    }
}

fn commit_puts(t: &Tables, puts: Vec<PutRequest>, durability: Option<PersistMode>) {
    let mut batch = t.db.batch().durability(durability);
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut latest: HashMap<String, Uuid> = HashMap::new();
    let mut outcomes: Vec<Result<Vec<PutOutcome>, StoreError>> = Vec::with_capacity(puts.len());
    for (msgs, _) in &puts {
        let r = (|| {
            let mut out = Vec::with_capacity(msgs.len());
            for m in msgs {
                if seen.contains(&m.uuid)
                    || t.messages.contains_key(m.uuid.as_bytes()).map_err(engine)?
                {
                    out.push(PutOutcome::Duplicate);
                    continue;
                }
                seen.insert(m.uuid);
                batch.insert(&t.messages, m.uuid.as_bytes().to_vec(), m.to_json());
                let path = m.path.as_str();
                let inv = inverted(&m.uuid);
                for folder in std::iter::once("").chain(m.path.prefixes()) {
                    let mut k = folder_prefix(folder);
                    k.extend_from_slice(&inv);
                    batch.insert(&t.folders, k, path.as_bytes().to_vec());
                }
                let mut k = folder_prefix(path);
                k.extend_from_slice(&inv);
                batch.insert(&t.paths, k, []);
                let current = match latest.get(path) {
                    Some(u) => Some(*u),
                    None => t
                        .latest
                        .get(latest_key(path))
                        .map_err(engine)?
                        .and_then(|v| Uuid::from_slice(&v).ok()),
                };
                if current.is_none_or(|c| time_key(&c) < time_key(&m.uuid)) {
                    latest.insert(path.to_owned(), m.uuid);
                    batch.insert(&t.latest, latest_key(path), m.uuid.as_bytes().to_vec());
                }
                out.push(PutOutcome::Inserted);
            }
            Ok(out)
        })();
        outcomes.push(r);
    }
    let committed = batch.commit().map_err(engine);
    for ((_, reply), outcome) in puts.into_iter().zip(outcomes) {
        let r = match &committed {
            Ok(()) => outcome,
            Err(e) => Err(StoreError::Engine(e.to_string())),
        };
        let _ = reply.send(r);
    }
}

fn set_retention(
    t: &Tables,
    category: String,
    ttl: Option<Duration>,
    durability: Option<PersistMode>,
) -> Result<(), StoreError> {
    let mut b = t.db.batch().durability(durability);
    match ttl {
        Some(d) => b.insert(
            &t.retention,
            category.as_bytes().to_vec(),
            d.as_secs().to_be_bytes().to_vec(),
        ),
        None => b.remove(&t.retention, category.as_bytes().to_vec()),
    }
    b.commit().map_err(engine)?;
    let mut map = t.ttl.write();
    match ttl {
        Some(d) => map.insert(category, d),
        None => map.remove(&category),
    };
    Ok(())
}

/// Deletes expired messages of every category with a retention, oldest
/// first, in batches.
fn sweep(t: &Tables, durability: Option<PersistMode>) -> Result<usize, StoreError> {
    let categories: Vec<String> = t.ttl.read().keys().cloned().collect();
    let now = now_millis();
    let mut total = 0;
    for category in categories {
        let prefix = folder_prefix(&category);
        loop {
            // Oldest entries are at the end of the (inverted) folder.
            let mut expired: Vec<Uuid> = Vec::new();
            for guard in t.folders.prefix(&prefix).rev() {
                let (key, path) = guard.into_inner().map_err(engine)?;
                let uuid = uuid_of_folder_key(&key)?;
                if !t.expired(&String::from_utf8_lossy(&path), &uuid, now) || expired.len() >= 1000
                {
                    break;
                }
                expired.push(uuid);
            }
            if expired.is_empty() {
                break;
            }
            let mut b = t.db.batch().durability(durability);
            for uuid in &expired {
                let Some(m) = t.load(uuid)? else {
                    continue;
                };
                let inv = inverted(uuid);
                for folder in std::iter::once("").chain(m.path.prefixes()) {
                    let mut k = folder_prefix(folder);
                    k.extend_from_slice(&inv);
                    b.remove(&t.folders, k);
                }
                let mut k = folder_prefix(m.path.as_str());
                k.extend_from_slice(&inv);
                b.remove(&t.paths, k);
                let lk = latest_key(m.path.as_str());
                if t.latest.get(&lk).map_err(engine)?.as_deref() == Some(uuid.as_bytes().as_slice())
                {
                    b.remove(&t.latest, lk);
                }
                b.remove(&t.messages, uuid.as_bytes().to_vec());
                total += 1;
            }
            b.commit().map_err(engine)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                ..Message::new(
                    postmesh_schema::Path::parse(&path.join(".")).unwrap(),
                    postmesh_schema::Body::None,
                )
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
        let msgs = paths
            .iter()
            .map(|p| {
                Message::new(
                    postmesh_schema::Path::parse(p).unwrap(),
                    postmesh_schema::Body::None,
                )
            })
            .collect();
        rt.block_on(store.put(msgs)).unwrap();
        let mut roots = store.tables.children("").unwrap().unwrap();
        roots.sort();
        assert_eq!(roots, ["x", "x y", "x-foo", "xa", "y"]);
        assert_eq!(store.tables.children("x").unwrap().unwrap(), ["y"]);
        assert!(store.tables.children("y").unwrap().unwrap().is_empty());
        // Too many children: the plan falls back to a filtered folder scan.
        let many = (0..=MAX_EXPANSION)
            .map(|i| {
                Message::new(
                    postmesh_schema::Path::parse(&format!("w.{i}.z")).unwrap(),
                    postmesh_schema::Body::None,
                )
            })
            .collect();
        rt.block_on(store.put(many)).unwrap();
        assert!(store.tables.children("w").unwrap().is_none());
        let plan = store
            .tables
            .plan(&Pattern::parse("w.*.z").unwrap())
            .unwrap();
        assert!(
            matches!(plan.as_slice(), [Source::Folder { filter: true, .. }]),
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

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = Message::new(
            postmesh_schema::Path::parse("feeds.x").unwrap(),
            postmesh_schema::Body::None,
        );
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
