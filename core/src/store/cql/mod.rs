//! The store on Apache Cassandra (any CQL server), through the `scylla`
//! driver. Several cores may share one keyspace: each stamps cursors with
//! its own [`Stamper`], and uniqueness by UUID is decided by a lightweight
//! transaction. The tables are in `deploy/cql/` ([`schema`]).
//!
//! # Writes
//! `put` stamps each message, then claims its UUID in `messages_by_id`
//! with `INSERT ... IF NOT EXISTS` (the claims of one put run
//! concurrently). A message whose claim applied is then written to every
//! folder above its path (and its bucket and children rows, and `latest`),
//! one message after another in cursor order: a reader can see a message
//! only once every earlier one of the same put is written, which is the
//! contract's "visible in stamping order". A claim that did not apply is
//! a duplicate: its rows are written again from the first put's claim, so
//! a put that died between its claim and its rows is completed. Every write
//! is idempotent and marked so, for the driver's retries.
//!
//! # Reads
//! A pattern becomes a list of folders, each read with a filter or not:
//! `*` elements are expanded through `children` (at most
//! [`MAX_EXPANSION`] folders; beyond, the folder before the `*` is read
//! with a filter). Each folder is read bucket by bucket (the buckets come
//! from `folder_buckets`), one partition at a time, in pages of at most
//! [`PAGE`] rows bounded by a cursor, and at most [`MAX_SCAN`] rows per
//! query; the folders' results are merged by cursor.
//!
//! # Retention
//! A category's retention is a TTL on every row written for it; reads also
//! skip what is past it (a retention set after a message was written does
//! not change its TTL), and `sweep` deletes those rows.

pub mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, try_join_all};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use parking_lot::{Mutex, RwLock};
use postmesh_schema::message::v1_unix_millis;
use postmesh_schema::pattern::PatternElem;
use postmesh_schema::{Cursor, Limits, Message, Pattern, Stamper, Uuid};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::response::query_result::QueryResult;
pub use scylla::statement::Consistency;
use scylla::statement::SerialConsistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimeuuid, CqlValue, Row};

use super::{HistoryQuery, Page, Put, PutOutcome, Store, StoreError};

/// Most rows one query examines, over all its folders.
pub const MAX_SCAN: usize = 100_000;
/// Most rows one request reads from one partition.
pub const PAGE: usize = 1000;
/// Most folders a pattern's `*` elements expand to.
pub const MAX_EXPANSION: usize = 256;
/// Most paths `latest` looks at.
pub const MAX_LATEST_PATHS: usize = 10_000;
/// Point reads of `latest` in flight at once.
const LATEST_READS: usize = 64;
/// Most claims (lightweight transactions) one put has in flight.
const CLAIMS_IN_FLIGHT: usize = 32;

/// Most buckets one request lists.
const BUCKETS_PER_READ: i32 = 64;
/// Most folders a sweep (or `newest`) reads for one category whose
/// shallow folders are not indexed.
const SWEEP_EXPANSION: usize = 100_000;
/// Most messages one sweep round deletes.
const SWEEP_ROUND: usize = 1000;

/// Why the CQL store could not be opened or its schema applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CqlError {
    #[error("cannot connect to the CQL nodes {hosts:?}: {message}")]
    Connect { hosts: Vec<String>, message: String },
    #[error("local datacenter {datacenter:?} has no node; the cluster's datacenters are {found:?}")]
    NoLocalDatacenter {
        datacenter: String,
        found: Vec<String>,
    },
    #[error("not a keyspace name: {0:?} (letters, digits and _, at most 48)")]
    Keyspace(String),
    #[error(
        "keyspace {keyspace:?} has no postmesh schema: run `postmesh schema apply --cql HOST:PORT --keyspace {keyspace}`"
    )]
    NoSchema { keyspace: String },
    #[error(
        "the keyspace is at schema version {found}, newer than this postmesh knows ({known}): upgrade postmesh"
    )]
    NewerSchema { found: i32, known: i32 },
    #[error(
        "the keyspace is at schema version {found}, older than this postmesh needs ({known}): run `postmesh schema apply`"
    )]
    OlderSchema { found: i32, known: i32 },
    #[error("schema: {0}")]
    Schema(String),
    #[error("preparing statements: {0}")]
    Prepare(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// How to reach the keyspace and how to use it.
#[derive(Debug, Clone)]
pub struct CqlOptions {
    /// Contact points, `host:port`.
    pub hosts: Vec<String>,
    pub keyspace: String,
    /// Consistency of every read (`LOCAL_QUORUM` by default).
    pub read_consistency: Consistency,
    /// Consistency of every write (`LOCAL_QUORUM` by default). The claim
    /// of a UUID, a lightweight transaction, is serialised at
    /// `LOCAL_SERIAL` whatever this says.
    pub write_consistency: Consistency,
    /// Speculative execution of reads: after this delay without an
    /// answer, the same read goes to the next replica too (the first
    /// answer wins); `None` turns it off. Only idempotent statements are
    /// ever run speculatively, and every read is.
    pub speculative_read: Option<Speculative>,
    /// The datacenter of this core's region: the driver sends requests to
    /// its nodes only, and `LOCAL_*` consistency counts its replicas.
    /// `None`: every node is local, which is right for a keyspace in one
    /// datacenter only.
    pub local_datacenter: Option<String>,
    /// Bucket width: a folder's partition holds the messages stored in one
    /// such window. Must stay the same for the life of a keyspace.
    pub bucket: Duration,
    /// Per-category layouts, by category (the first path element); the
    /// categories not named use `bucket` and index every folder.
    pub categories: HashMap<String, CategoryLayout>,
    /// Path limits used when decoding stored messages.
    pub limits: Limits,
    /// How far the stamping clock runs ahead of the wall clock, ms (tests).
    pub clock_offset_ms: i64,
    /// Most rows one query examines ([`MAX_SCAN`]).
    pub max_scan: usize,
}

/// Speculative execution: at most `max_extra` more executions of a read,
/// one every `delay` while none has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speculative {
    pub max_extra: usize,
    pub delay: Duration,
}

/// How one category's messages are laid out in `messages_by_folder`.
/// Fixed for the life of a keyspace, and the same on every core of it:
/// reads find a folder's rows by its bucket window and by which folders
/// are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryLayout {
    /// The bucket window of the category's folders (the category's own
    /// folder and every folder below it).
    pub bucket: Duration,
    /// The shallowest folder depth that indexes every message below it.
    /// The root has depth 0, the category's folder 1, `category.x` 2.
    /// With `min_index_depth = d`, the category's messages have no row in
    /// the folders shallower than `d` (the root included once `d >= 1`),
    /// except in the folder of their own path. A history of a shallower
    /// pattern is read from the folders at depth `d` below it (found
    /// through `children`), as long as there are at most
    /// [`MAX_EXPANSION`]; beyond, it is refused with
    /// [`StoreError::TooBroad`].
    pub min_index_depth: usize,
}

impl Default for CqlOptions {
    fn default() -> Self {
        CqlOptions {
            hosts: vec!["127.0.0.1:9042".into()],
            keyspace: "postmesh".into(),
            read_consistency: Consistency::LocalQuorum,
            write_consistency: Consistency::LocalQuorum,
            speculative_read: Some(Speculative {
                max_extra: 1,
                delay: Duration::from_millis(100),
            }),
            local_datacenter: None,
            bucket: Duration::from_secs(3600),
            categories: HashMap::new(),
            limits: Limits {
                max_elements: usize::MAX,
                max_bytes: usize::MAX,
            },
            clock_offset_ms: 0,
            max_scan: MAX_SCAN,
        }
    }
}

/// Connects to CQL nodes. Start-up failures are one clear error.
///
/// The driver's default load balancing is token-aware (a request goes to
/// a replica of its partition first); `local_datacenter` keeps it to that
/// datacenter's nodes.
pub async fn connect(hosts: &[String]) -> Result<Session, CqlError> {
    connect_in(hosts, None).await
}

/// [`connect`], with requests kept to the nodes of `local_datacenter`
/// when given. Refuses a datacenter none of the cluster's nodes is in.
pub async fn connect_in(
    hosts: &[String],
    local_datacenter: Option<&str>,
) -> Result<Session, CqlError> {
    let mut balancing = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = local_datacenter {
        balancing = balancing
            .prefer_datacenter(dc.to_owned())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(balancing.build())
        .build();
    let session = SessionBuilder::new()
        .known_nodes(hosts)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|e| CqlError::Connect {
            hosts: hosts.to_vec(),
            message: e.to_string(),
        })?;
    if let Some(dc) = local_datacenter {
        let found: Vec<String> = session
            .get_cluster_state()
            .get_nodes_info()
            .iter()
            .filter_map(|n| n.datacenter.clone())
            .collect();
        if !found.iter().any(|d| d == dc) {
            let mut found = found;
            found.sort();
            found.dedup();
            return Err(CqlError::NoLocalDatacenter {
                datacenter: dc.to_owned(),
                found,
            });
        }
    }
    Ok(session)
}

struct Statements {
    claim: PreparedStatement,
    by_id: PreparedStatement,
    folder_row: PreparedStatement,
    bucket_row: PreparedStatement,
    child_row: PreparedStatement,
    latest_row: PreparedStatement,
    buckets_down: PreparedStatement,
    buckets_up: PreparedStatement,
    rows_down: PreparedStatement,
    rows_down_before: PreparedStatement,
    rows_up_after: PreparedStatement,
    children: PreparedStatement,
    latest_of: PreparedStatement,
    dismiss: PreparedStatement,
    dismissed: PreparedStatement,
    set_retention: PreparedStatement,
    clear_retention: PreparedStatement,
    retentions: PreparedStatement,
    checkpoint: PreparedStatement,
    set_checkpoint: PreparedStatement,
    delete_folder_row: PreparedStatement,
    delete_by_id: PreparedStatement,
    probe: PreparedStatement,
}

/// The store on a CQL keyspace.
pub struct CqlStore {
    session: Session,
    st: Statements,
    stamper: Stamper,
    /// The bucket window of the root and of categories without a layout.
    bucket_ms: i64,
    /// Per-category bucket window (ms) and minimum index depth.
    layouts: HashMap<String, (i64, usize)>,
    limits: Limits,
    max_scan: usize,
    ttl: RwLock<HashMap<String, Duration>>,
    /// `(folder, bucket)` and `(folder, child, bucket)` rows this handle
    /// wrote, so that each is written once per bucket, not per message.
    written: Mutex<HashSet<(String, String, i64)>>,
    closed: std::sync::atomic::AtomicBool,
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn tu(c: &Cursor) -> CqlTimeuuid {
    CqlTimeuuid::from(*c.as_uuid())
}

fn cursor(t: CqlTimeuuid) -> Cursor {
    Cursor::from_uuid(t.into())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The root folder's key: CQL refuses an empty partition key, and no path
/// element can be `#`.
const ROOT: &str = "#";

/// The folders a message at `path` is in: the root ([`ROOT`]) and every
/// prefix, the path included.
fn folders(path: &str) -> Vec<&str> {
    let mut out = vec![ROOT];
    out.extend(postmesh_schema::path::ancestors(path));
    out.push(path);
    out
}

/// The category (first element) of a path or folder.
fn category(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// The depth of a folder: 0 for the root, 1 for a category.
fn depth(folder: &str) -> usize {
    if folder == ROOT {
        0
    } else {
        folder.split('.').count()
    }
}

/// The parent folder of a path or folder ([`ROOT`] for a category).
fn parent(path: &str) -> &str {
    path.rfind('.').map(|i| &path[..i]).unwrap_or(ROOT)
}

/// The last element of a path or folder.
fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn join(folder: &str, child: &str) -> String {
    if folder == ROOT {
        child.to_owned()
    } else {
        format!("{folder}.{child}")
    }
}

/// One folder to read, and the pattern its rows must match (none: all).
struct Source {
    folder: String,
    filter: Option<Pattern>,
    /// Return rows past their retention too (for the sweep).
    expired_too: bool,
}

/// What reading one folder found.
struct Scan {
    found: Vec<Message>,
    /// It found more than it was asked for.
    more: bool,
    /// It stopped at the row budget here (the last row examined).
    stopped: Option<Cursor>,
}

impl CqlStore {
    /// Opens the store on an existing keyspace (`postmesh schema apply`
    /// makes it), checking its schema version.
    pub async fn open(options: CqlOptions) -> Result<CqlStore, CqlError> {
        let session = connect_in(&options.hosts, options.local_datacenter.as_deref()).await?;
        Self::with_session(session, options).await
    }

    /// [`CqlStore::open`] on a session made elsewhere.
    pub async fn with_session(session: Session, options: CqlOptions) -> Result<CqlStore, CqlError> {
        let ks = &options.keyspace;
        if !schema::valid_keyspace(ks) {
            return Err(CqlError::Keyspace(ks.clone()));
        }
        match schema::version(&session, ks).await? {
            None => {
                return Err(CqlError::NoSchema {
                    keyspace: ks.clone(),
                });
            }
            Some(v) if v > schema::VERSION => {
                return Err(CqlError::NewerSchema {
                    found: v,
                    known: schema::VERSION,
                });
            }
            Some(v) if v < schema::VERSION => {
                return Err(CqlError::OlderSchema {
                    found: v,
                    known: schema::VERSION,
                });
            }
            Some(_) => {}
        }
        // Reads may run speculatively; writes never do (the claim is not
        // idempotent, and a speculative write gains nothing).
        let mut read_profile = session
            .get_default_execution_profile_handle()
            .pointee_to_builder();
        if let Some(sp) = options.speculative_read {
            read_profile = read_profile.speculative_execution_policy(Some(Arc::new(
                SimpleSpeculativeExecutionPolicy {
                    max_retry_count: sp.max_extra,
                    retry_interval: sp.delay,
                },
            )));
        }
        let read_profile = read_profile.build().into_handle();
        let (rc, wc) = (options.read_consistency, options.write_consistency);
        let read_profile = &read_profile;
        // `read`: a read (idempotent, at the read consistency, perhaps
        // speculative); otherwise a write at the write consistency.
        let prep = |cql: String, read: bool, idempotent: bool| {
            let session = &session;
            async move {
                let mut p = session
                    .prepare(cql.clone())
                    .await
                    .map_err(|e| CqlError::Prepare(format!("{cql}: {e}")))?;
                p.set_serial_consistency(Some(SerialConsistency::LocalSerial));
                p.set_is_idempotent(idempotent);
                if read {
                    p.set_consistency(rc);
                    p.set_execution_profile_handle(Some(read_profile.clone()));
                } else {
                    p.set_consistency(wc);
                }
                Ok::<_, CqlError>(p)
            }
        };
        let st = Statements {
            claim: prep(format!("INSERT INTO {ks}.messages_by_id (uuid, cursor, path, message) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?"), false, false).await?,
            by_id: prep(format!("SELECT cursor, path, message FROM {ks}.messages_by_id WHERE uuid = ?"), true, true).await?,
            folder_row: prep(format!("INSERT INTO {ks}.messages_by_folder (folder, bucket, cursor, path, message) VALUES (?, ?, ?, ?, ?) USING TTL ?"), false, true).await?,
            bucket_row: prep(format!("INSERT INTO {ks}.folder_buckets (folder, bucket) VALUES (?, ?) USING TTL ?"), false, true).await?,
            child_row: prep(format!("INSERT INTO {ks}.children (folder, child) VALUES (?, ?) USING TTL ?"), false, true).await?,
            latest_row: prep(format!("INSERT INTO {ks}.latest (parent, path, cursor, message) VALUES (?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?"), false, true).await?,
            buckets_down: prep(format!("SELECT bucket FROM {ks}.folder_buckets WHERE folder = ? AND bucket <= ? ORDER BY bucket DESC LIMIT {BUCKETS_PER_READ}"), true, true).await?,
            buckets_up: prep(format!("SELECT bucket FROM {ks}.folder_buckets WHERE folder = ? AND bucket >= ? ORDER BY bucket ASC LIMIT {BUCKETS_PER_READ}"), true, true).await?,
            rows_down: prep(format!("SELECT cursor, path, message FROM {ks}.messages_by_folder WHERE folder = ? AND bucket = ? LIMIT ?"), true, true).await?,
            rows_down_before: prep(format!("SELECT cursor, path, message FROM {ks}.messages_by_folder WHERE folder = ? AND bucket = ? AND cursor < ? LIMIT ?"), true, true).await?,
            rows_up_after: prep(format!("SELECT cursor, path, message FROM {ks}.messages_by_folder WHERE folder = ? AND bucket = ? AND cursor > ? ORDER BY cursor ASC LIMIT ?"), true, true).await?,
            children: prep(format!("SELECT child FROM {ks}.children WHERE folder = ? LIMIT ?"), true, true).await?,
            latest_of: prep(format!("SELECT cursor, message FROM {ks}.latest WHERE parent = ? AND path = ?"), true, true).await?,
            dismiss: prep(format!("INSERT INTO {ks}.dismissed (user, uuid) VALUES (?, ?) IF NOT EXISTS"), false, false).await?,
            dismissed: prep(format!("SELECT uuid FROM {ks}.dismissed WHERE user = ? AND uuid = ?"), true, true).await?,
            set_retention: prep(format!("INSERT INTO {ks}.retention (category, seconds) VALUES (?, ?)"), false, true).await?,
            clear_retention: prep(format!("DELETE FROM {ks}.retention WHERE category = ?"), false, true).await?,
            retentions: prep(format!("SELECT category, seconds FROM {ks}.retention LIMIT 10000"), true, true).await?,
            checkpoint: prep(format!("SELECT cursor FROM {ks}.checkpoints WHERE name = ?"), true, true).await?,
            set_checkpoint: prep(format!("INSERT INTO {ks}.checkpoints (name, cursor) VALUES (?, ?)"), false, true).await?,
            delete_folder_row: prep(format!("DELETE FROM {ks}.messages_by_folder WHERE folder = ? AND bucket = ? AND cursor = ?"), false, true).await?,
            delete_by_id: prep(format!("DELETE FROM {ks}.messages_by_id WHERE uuid = ?"), false, true).await?,
            probe: prep(format!("SELECT version FROM {ks}.schema_version WHERE id = ?"), true, true).await?,
        };
        let store = CqlStore {
            session,
            st,
            stamper: Stamper::new(options.clock_offset_ms),
            bucket_ms: options.bucket.as_millis().max(1) as i64,
            layouts: options
                .categories
                .iter()
                .map(|(c, l)| {
                    (
                        c.clone(),
                        (l.bucket.as_millis().max(1) as i64, l.min_index_depth),
                    )
                })
                .collect(),
            limits: options.limits,
            max_scan: options.max_scan.max(1),
            ttl: RwLock::new(HashMap::new()),
            written: Mutex::new(HashSet::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        };
        store.load_retentions().await?;
        if let Some(n) = store.newest().await? {
            store.stamper.observe(n);
        }
        Ok(store)
    }

    /// The bucket window of `folder`'s partitions, ms: its category's, or
    /// the default (the root's).
    fn window_ms(&self, folder: &str) -> i64 {
        if folder == ROOT {
            return self.bucket_ms;
        }
        self.layouts
            .get(category(folder))
            .map_or(self.bucket_ms, |l| l.0)
    }

    /// The bucket of `folder` that a message stored at `c` is in.
    fn bucket_of(&self, folder: &str, c: &Cursor) -> i64 {
        v1_unix_millis(c.as_uuid()) as i64 / self.window_ms(folder)
    }

    /// The minimum index depth of `category` (0: every folder).
    fn min_depth(&self, category: &str) -> usize {
        self.layouts.get(category).map_or(0, |l| l.1)
    }

    /// The folders that hold a row of a message at `path`: those at its
    /// category's minimum index depth or deeper, and its own.
    fn index_folders<'p>(&self, path: &'p str) -> Vec<&'p str> {
        let min = self.min_depth(category(path));
        folders(path)
            .into_iter()
            .filter(|f| *f == path || depth(f) >= min)
            .collect()
    }

    /// Whether `folder` holds a row of every message at or below it.
    fn complete(&self, folder: &str) -> bool {
        if folder == ROOT {
            self.layouts.values().all(|l| l.1 == 0)
        } else {
            depth(folder) >= self.min_depth(category(folder))
        }
    }

    /// Replaces each source whose folder is not [`complete`] by that
    /// folder (for the messages at exactly its path) and the folders below
    /// it, down to the depth that indexes everything: at most `max`
    /// folders in all, else [`StoreError::TooBroad`].
    ///
    /// [`complete`]: CqlStore::complete
    async fn completed(
        &self,
        pattern: &Pattern,
        sources: Vec<Source>,
        max: usize,
    ) -> Result<Vec<Source>, StoreError> {
        let mut out = Vec::new();
        let mut todo = sources;
        while let Some(src) = todo.pop() {
            if out.len() + todo.len() >= max {
                return Err(self.too_broad(pattern, &src.folder, max));
            }
            if self.complete(&src.folder) {
                out.push(src);
                continue;
            }
            let below: Vec<String> = if src.folder == ROOT {
                // The root holds the categories that index it; the others
                // are read from their own folders.
                self.layouts
                    .iter()
                    .filter(|(_, l)| l.1 > 0)
                    .map(|(c, _)| c.clone())
                    .collect()
            } else {
                let children = self.children(&src.folder, max + 1).await?;
                if children.len() > max {
                    return Err(self.too_broad(pattern, &src.folder, max));
                }
                children
                    .into_iter()
                    .map(|c| join(&src.folder, &c))
                    .collect()
            };
            for folder in below {
                todo.push(Source {
                    folder,
                    filter: src.filter.clone(),
                    expired_too: src.expired_too,
                });
            }
            // The folder itself still holds the messages of its own path
            // (and, for the root, of the categories that index it).
            out.push(src);
        }
        Ok(out)
    }

    fn too_broad(&self, pattern: &Pattern, folder: &str, max: usize) -> StoreError {
        let cat = if folder == ROOT { "" } else { category(folder) };
        let min = self.min_depth(cat);
        StoreError::TooBroad(format!(
            "{pattern}: the folder {:?} is not indexed (category {cat:?} indexes from depth {min}) and is read through the folders below it, which are more than {max}: name a deeper pattern",
            if folder == ROOT { "" } else { folder },
        ))
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    async fn load_retentions(&self) -> Result<(), StoreError> {
        let all = self.retentions().await?;
        *self.ttl.write() = all.into_iter().collect();
        Ok(())
    }

    /// The TTL, in seconds, of rows written for `path` (0: none).
    fn ttl_secs(&self, path: &str) -> i32 {
        let category = path.split('.').next().unwrap_or(path);
        match self.ttl.read().get(category) {
            Some(d) => d.as_secs().clamp(1, i32::MAX as u64) as i32,
            None => 0,
        }
    }

    /// Whether a message at `path` stored at `c` is past its retention.
    fn expired(&self, path: &str, c: &Cursor, now_ms: u64) -> bool {
        let category = path.split('.').next().unwrap_or(path);
        match self.ttl.read().get(category) {
            Some(ttl) => v1_unix_millis(c.as_uuid()) + ttl.as_millis() as u64 <= now_ms,
            None => false,
        }
    }

    fn decode(&self, c: Cursor, json: &str) -> Result<Message, StoreError> {
        let mut m = Message::from_json(json.as_bytes(), &self.limits)
            .map_err(|e| StoreError::Corrupt(format!("message at {c}: {e}")))?;
        m.cursor = Some(c);
        Ok(m)
    }

    /// Writes every row that indexes one stored message.
    async fn index(&self, c: Cursor, path: &str, json: &str) -> Result<(), StoreError> {
        let ttl = self.ttl_secs(path);
        // Bucket and children rows outlive the messages they lead to.
        let ttl_long = if ttl == 0 {
            0
        } else {
            ttl.saturating_add((self.window_ms(path) / 1000) as i32 + 60)
        };
        let s = &self.session;
        type Write<'a> = BoxFuture<'a, Result<QueryResult, ExecutionError>>;
        let mut once = Vec::new();
        let mut writes: Vec<Write<'_>> = Vec::new();
        let indexed = self.index_folders(path);
        for f in &indexed {
            let bucket = self.bucket_of(f, &c);
            writes.push(
                s.execute_unpaged(&self.st.folder_row, (*f, bucket, tu(&c), path, json, ttl))
                    .boxed(),
            );
        }
        {
            let mut written = self.written.lock();
            if written.len() > 100_000 {
                written.clear();
            }
            for f in folders(path) {
                let bucket = self.bucket_of(f, &c);
                if indexed.contains(&f) && written.insert((f.to_owned(), String::new(), bucket)) {
                    once.push((f.to_owned(), None, bucket));
                }
                // Every folder's children, indexed or not: the plan walks
                // them to expand `*` and to read below unindexed folders.
                if f != ROOT {
                    let (p, child) = (parent(f), last(f));
                    if written.insert((p.to_owned(), child.to_owned(), bucket)) {
                        once.push((p.to_owned(), Some(child.to_owned()), bucket));
                    }
                }
            }
        }
        for (f, child, bucket) in &once {
            match child {
                None => writes.push(
                    s.execute_unpaged(&self.st.bucket_row, (f.as_str(), *bucket, ttl_long))
                        .boxed(),
                ),
                Some(ch) => writes.push(
                    s.execute_unpaged(&self.st.child_row, (f.as_str(), ch.as_str(), ttl_long))
                        .boxed(),
                ),
            }
        }
        let micros = (v1_unix_millis(c.as_uuid()) as i64) * 1000 + (c.ticks() % 10_000 / 10) as i64;
        writes.push(
            s.execute_unpaged(
                &self.st.latest_row,
                (parent(path), path, tu(&c), json, ttl, micros),
            )
            .boxed(),
        );
        if let Err(e) = try_join_all(writes).await {
            // Written again by the next bucket's first message, or never:
            // forget them, so a retry writes them.
            let mut written = self.written.lock();
            for (f, child, bucket) in once {
                written.remove(&(f, child.unwrap_or_default(), bucket));
            }
            return Err(engine(e));
        }
        Ok(())
    }

    /// The first put's claim of `uuid`: cursor, path, message.
    async fn claimed(&self, uuid: Uuid) -> Result<Option<(Cursor, String, String)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.by_id, (uuid,))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        let row = rows
            .maybe_first_row::<(CqlTimeuuid, String, String)>()
            .map_err(engine)?;
        Ok(row.map(|(c, p, m)| (cursor(c), p, m)))
    }

    /// Claims `uuid` for `c`; `Ok(None)` when the claim applied, else the
    /// first claim.
    async fn claim(
        &self,
        uuid: Uuid,
        c: Cursor,
        path: &str,
        json: &str,
    ) -> Result<Option<(Cursor, String, String)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(
                &self.st.claim,
                (uuid, tu(&c), path, json, self.ttl_secs(path)),
            )
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        let row: Row = rows.first_row().map_err(engine)?;
        match row.columns.first() {
            Some(Some(CqlValue::Boolean(true))) => Ok(None),
            Some(Some(CqlValue::Boolean(false))) => match self.claimed(uuid).await? {
                Some(first) => Ok(Some(first)),
                // Claimed, then expired or swept between the two reads.
                None => Err(StoreError::Engine(format!(
                    "the claim of {uuid} vanished; retry"
                ))),
            },
            other => Err(StoreError::Engine(format!(
                "unexpected conditional write result: {other:?}"
            ))),
        }
    }

    /// The children of `folder` that exist, at most `limit`.
    async fn children(&self, folder: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.children, (folder, limit as i32))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        rows.rows::<(String,)>()
            .map_err(engine)?
            .map(|r| r.map(|(c,)| c).map_err(engine))
            .collect()
    }

    /// The folders to read for `pattern`, each with its filter.
    async fn plan(&self, pattern: &Pattern) -> Result<Vec<Source>, StoreError> {
        let elems: Vec<PatternElem<'_>> = pattern.elements().collect();
        let mut prefixes = vec![ROOT.to_owned()];
        for (i, e) in elems.iter().enumerate() {
            match e {
                PatternElem::Literal(w) => {
                    for p in &mut prefixes {
                        *p = join(p, w);
                    }
                }
                PatternElem::Star => {
                    let mut next = Vec::new();
                    for p in &prefixes {
                        for c in self.children(p, MAX_EXPANSION + 1).await? {
                            next.push(join(p, &c));
                        }
                        if next.len() > MAX_EXPANSION {
                            break;
                        }
                    }
                    if next.len() > MAX_EXPANSION {
                        // Too many: read the folders reached so far, filtered.
                        let sources = prefixes
                            .into_iter()
                            .map(|folder| Source {
                                folder,
                                filter: Some(pattern.clone()),
                                expired_too: false,
                            })
                            .collect();
                        return self.completed(pattern, sources, MAX_EXPANSION).await;
                    }
                    prefixes = next;
                }
                PatternElem::Hash => {
                    let trailing = i + 1 == elems.len();
                    let sources = prefixes
                        .into_iter()
                        .map(|folder| Source {
                            folder,
                            filter: (!trailing).then(|| pattern.clone()),
                            expired_too: false,
                        })
                        .collect();
                    return self.completed(pattern, sources, MAX_EXPANSION).await;
                }
            }
        }
        // No `#`: exact paths, read from their folders without descendants
        // (a path's own folder always holds its messages).
        Ok(prefixes
            .into_iter()
            .map(|folder| Source {
                folder,
                filter: Some(pattern.clone()),
                expired_too: false,
            })
            .collect())
    }

    /// Buckets of `folder` from `from` on, in the scan's direction.
    async fn buckets(&self, folder: &str, from: i64, down: bool) -> Result<Vec<i64>, StoreError> {
        let st = if down {
            &self.st.buckets_down
        } else {
            &self.st.buckets_up
        };
        let rows = self
            .session
            .execute_unpaged(st, (folder, from))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        rows.rows::<(i64,)>()
            .map_err(engine)?
            .map(|r| r.map(|(b,)| b).map_err(engine))
            .collect()
    }

    /// Reads one folder from `bound` (exclusive) in the scan's direction
    /// until `want` messages match, it runs out, or `budget` rows were
    /// examined.
    async fn scan(
        &self,
        src: &Source,
        bound: Option<Cursor>,
        down: bool,
        want: usize,
        budget: &mut usize,
    ) -> Result<Scan, StoreError> {
        let now = now_millis();
        let mut out = Scan {
            found: Vec::new(),
            more: false,
            stopped: None,
        };
        let mut position = bound;
        let mut from_bucket = match (bound, down) {
            (Some(b), _) => self.bucket_of(&src.folder, &b),
            (None, true) => i64::MAX,
            (None, false) => i64::MIN,
        };
        loop {
            let buckets = self.buckets(&src.folder, from_bucket, down).await?;
            if buckets.is_empty() {
                return Ok(out);
            }
            let last_bucket = *buckets.last().expect("not empty");
            for bucket in buckets {
                loop {
                    if *budget == 0 {
                        out.stopped = position;
                        out.more = true;
                        return Ok(out);
                    }
                    // Unfiltered, the rows still wanted (and one to tell
                    // `more`); filtered, a whole page.
                    let wanted = match src.filter {
                        Some(_) => PAGE,
                        None => want + 1 - out.found.len(),
                    };
                    let limit = wanted.min(PAGE).min(*budget) as i32;
                    // The bound applies in its own bucket only.
                    let at = position.filter(|p| self.bucket_of(&src.folder, p) == bucket);
                    let f = src.folder.as_str();
                    let res = match (down, at) {
                        (true, Some(p)) => {
                            self.session
                                .execute_unpaged(
                                    &self.st.rows_down_before,
                                    (f, bucket, tu(&p), limit),
                                )
                                .await
                        }
                        (true, None) => {
                            self.session
                                .execute_unpaged(&self.st.rows_down, (f, bucket, limit))
                                .await
                        }
                        (false, p) => {
                            let p = p.unwrap_or(Cursor::at_ticks(0));
                            self.session
                                .execute_unpaged(&self.st.rows_up_after, (f, bucket, tu(&p), limit))
                                .await
                        }
                    };
                    let rows = res.map_err(engine)?.into_rows_result().map_err(engine)?;
                    let n = rows.rows_num();
                    *budget = budget.saturating_sub(n.max(1));
                    for r in rows
                        .rows::<(CqlTimeuuid, String, String)>()
                        .map_err(engine)?
                    {
                        let (c, path, json) = r.map_err(engine)?;
                        let c = cursor(c);
                        position = Some(c);
                        let wanted = match &src.filter {
                            Some(p) => p.matches_str(&path),
                            None => true,
                        };
                        if wanted && (src.expired_too || !self.expired(&path, &c, now)) {
                            if out.found.len() == want {
                                out.more = true;
                                return Ok(out);
                            }
                            out.found.push(self.decode(c, &json)?);
                        }
                    }
                    if n < limit as usize {
                        break; // this bucket is done
                    }
                }
                // The next bucket starts at its own end.
                position = None;
            }
            from_bucket = if down {
                last_bucket - 1
            } else {
                last_bucket + 1
            };
        }
    }

    /// Reads every source of `pattern` and merges them by cursor.
    async fn query(
        &self,
        pattern: &Pattern,
        bound: Option<Cursor>,
        down: bool,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.check_open()?;
        let sources = self.plan(pattern).await?;
        let mut budget = self.max_scan;
        let mut all = Vec::new();
        let mut more = false;
        let mut stopped: Option<Cursor> = None;
        for src in &sources {
            let scan = self.scan(src, bound, down, limit, &mut budget).await?;
            more |= scan.more;
            if let Some(s) = scan.stopped {
                stopped = Some(match stopped {
                    None => s,
                    Some(o) if down => o.max(s),
                    Some(o) => o.min(s),
                });
            }
            all.extend(scan.found);
            if budget == 0 {
                more = true;
                break;
            }
        }
        let mut seen = HashSet::new();
        all.retain(|m| seen.insert(m.uuid));
        all.sort_by_key(|m| m.cursor);
        if down {
            all.reverse();
        }
        if let Some(s) = stopped {
            // Past where a source stopped, another's rows may miss some.
            all.retain(|m| {
                let c = m.cursor.expect("read with a cursor");
                if down { c >= s } else { c <= s }
            });
        }
        if all.len() > limit {
            all.truncate(limit);
            more = true;
        }
        let next = if more {
            all.last().and_then(|m| m.cursor).or(stopped)
        } else {
            None
        };
        Ok(Page {
            stale: false,
            messages: all,
            more,
            gap: false,
            next,
        })
    }

    /// The `latest` row of `path`, unless past its retention.
    async fn latest_at(&self, path: &str, now: u64) -> Result<Option<Message>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.latest_of, (parent(path), path))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        match rows
            .maybe_first_row::<(CqlTimeuuid, String)>()
            .map_err(engine)?
        {
            Some((c, json)) if !self.expired(path, &cursor(c), now) => {
                Ok(Some(self.decode(cursor(c), &json)?))
            }
            _ => Ok(None),
        }
    }

    /// Concrete paths under `pattern`'s literal part that exist and match
    /// it, walking `children`; at most `max`, and whether there were more.
    async fn paths(
        &self,
        pattern: &Pattern,
        max: usize,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let mut out = Vec::new();
        let mut frontier: Vec<String> = match pattern.literal_prefix() {
            Some(p) if !p.is_empty() => vec![p.trim_end_matches('.').to_owned()],
            _ => self.children(ROOT, max + 1).await?,
        };
        let mut visited = 0usize;
        while let Some(f) = frontier.pop() {
            visited += 1;
            if visited > max * 4 || out.len() > max {
                return Ok((out, true));
            }
            if pattern.matches_str(&f) {
                out.push(f.clone());
            }
            // Descend only where the pattern can still match below.
            let depth = f.split('.').count();
            let elems: Vec<PatternElem<'_>> = pattern.elements().collect();
            let deeper =
                elems.iter().any(|e| matches!(e, PatternElem::Hash)) || elems.len() > depth;
            if deeper {
                for c in self.children(&f, max + 1).await? {
                    frontier.push(join(&f, &c));
                }
            }
        }
        let more = out.len() > max;
        out.truncate(max);
        Ok((out, more))
    }
}

#[async_trait]
impl Store for CqlStore {
    /// Shared: every core of a keyspace reads and writes the same tables.
    fn is_shared(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "cql"
    }

    /// One read of the keyspace's schema version, at the read consistency:
    /// it answers when enough replicas of one partition do.
    async fn probe(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.session
            .execute_unpaged(&self.st.probe, ("postmesh",))
            .await
            .map_err(engine)?;
        Ok(())
    }

    fn stamper(&self) -> [u8; 8] {
        self.stamper.identity()
    }

    async fn put(&self, messages: Vec<Message>) -> Result<Vec<Put>, StoreError> {
        self.check_open()?;
        // Stamp in the order given; a UUID twice in one put is one message.
        let mut first: HashMap<Uuid, usize> = HashMap::new();
        let mut jobs = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if first.contains_key(&m.uuid) {
                continue;
            }
            first.insert(m.uuid, i);
            let json = String::from_utf8(
                Message {
                    cursor: None,
                    ..m.clone()
                }
                .to_json(),
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            jobs.push((i, self.stamper.next(), json));
        }
        // Claims are lightweight transactions, four round trips each for
        // the replicas: a bounded number in flight, in order, so that a
        // pipeline group of thousands does not overload the nodes at once.
        let claims: Vec<_> = jobs
            .iter()
            .map(|(i, c, json)| self.claim(messages[*i].uuid, *c, messages[*i].path.as_str(), json))
            .collect();
        let claims: Vec<_> = stream::iter(claims)
            .buffered(CLAIMS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut puts: Vec<Option<Put>> = vec![None; messages.len()];
        // Rows one message after another, in cursor order.
        for ((i, c, json), claim) in jobs.iter().zip(claims) {
            let put = match claim {
                None => {
                    self.index(*c, messages[*i].path.as_str(), json).await?;
                    Put {
                        outcome: PutOutcome::Inserted,
                        cursor: *c,
                    }
                }
                Some((fc, path, fjson)) => {
                    self.index(fc, &path, &fjson).await?;
                    Put {
                        outcome: PutOutcome::Duplicate,
                        cursor: fc,
                    }
                }
            };
            puts[*i] = Some(put);
        }
        Ok(messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                puts[i].unwrap_or_else(|| {
                    let p = puts[first[&m.uuid]].expect("the first of the uuid was put");
                    Put {
                        outcome: PutOutcome::Duplicate,
                        cursor: p.cursor,
                    }
                })
            })
            .collect())
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<Message>, StoreError> {
        self.check_open()?;
        match self.claimed(uuid).await? {
            Some((c, path, json)) if !self.expired(&path, &c, now_millis()) => {
                Ok(Some(self.decode(c, &json)?))
            }
            _ => Ok(None),
        }
    }

    async fn history(&self, q: HistoryQuery) -> Result<Page, StoreError> {
        self.query(&q.pattern, q.before, true, q.limit).await
    }

    async fn since(
        &self,
        pattern: Pattern,
        after: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.query(&pattern, Some(after), false, limit).await
    }

    async fn newest(&self) -> Result<Option<Cursor>, StoreError> {
        let root = Source {
            folder: ROOT.to_owned(),
            filter: None,
            expired_too: true,
        };
        // With categories that leave the root out of their index, their
        // folders too (as many as a sweep reads); past that bound, the
        // newest of the folders that index the root only.
        let all = Pattern::parse("#").expect("a pattern");
        let sources = match self.completed(&all, vec![root], SWEEP_EXPANSION).await {
            Ok(s) => s,
            Err(StoreError::TooBroad(why)) => {
                tracing::warn!(%why, "newest cursor: reading the root folder only");
                vec![Source {
                    folder: ROOT.to_owned(),
                    filter: None,
                    expired_too: true,
                }]
            }
            Err(e) => return Err(e),
        };
        let mut newest = None;
        for src in &sources {
            let mut budget = PAGE;
            let scan = self.scan(src, None, true, 1, &mut budget).await?;
            newest = newest.max(scan.found.first().and_then(|m| m.cursor));
        }
        Ok(newest)
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.checkpoint, (name,))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        Ok(rows
            .maybe_first_row::<(CqlTimeuuid,)>()
            .map_err(engine)?
            .map(|(c,)| cursor(c)))
    }

    async fn set_checkpoint(&self, name: &str, c: Cursor) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.st.set_checkpoint, (name, tu(&c)))
            .await
            .map_err(engine)?;
        Ok(())
    }

    async fn latest(&self, pattern: Pattern, limit: usize) -> Result<Page, StoreError> {
        self.check_open()?;
        let (paths, truncated) = self.paths(&pattern, MAX_LATEST_PATHS).await?;
        let now = now_millis();
        // At most LATEST_READS point reads in flight.
        let mut found: Vec<Message> = Vec::new();
        for chunk in paths.chunks(LATEST_READS) {
            let got = try_join_all(chunk.iter().map(|p| self.latest_at(p, now))).await?;
            found.extend(got.into_iter().flatten());
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.cursor));
        let more = truncated || found.len() > limit;
        found.truncate(limit);
        Ok(Page {
            stale: false,
            next: None,
            messages: found,
            more,
            gap: false,
        })
    }

    async fn dismiss(&self, user: u64, uuid: Uuid) -> Result<bool, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.dismiss, (user as i64, uuid))
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        let row: Row = rows.first_row().map_err(engine)?;
        Ok(matches!(
            row.columns.first(),
            Some(Some(CqlValue::Boolean(true)))
        ))
    }

    async fn dismissed(&self, user: u64, uuids: Vec<Uuid>) -> Result<Vec<bool>, StoreError> {
        let reads = uuids.iter().map(|u| async move {
            let rows = self
                .session
                .execute_unpaged(&self.st.dismissed, (user as i64, *u))
                .await
                .map_err(engine)?
                .into_rows_result()
                .map_err(engine)?;
            Ok::<_, StoreError>(rows.rows_num() > 0)
        });
        try_join_all(reads).await
    }

    async fn set_retention(
        &self,
        category: String,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        match ttl {
            Some(d) => {
                self.session
                    .execute_unpaged(
                        &self.st.set_retention,
                        (category.as_str(), d.as_secs() as i64),
                    )
                    .await
                    .map_err(engine)?;
                self.ttl.write().insert(category, d);
            }
            None => {
                self.session
                    .execute_unpaged(&self.st.clear_retention, (category.as_str(),))
                    .await
                    .map_err(engine)?;
                self.ttl.write().remove(&category);
            }
        }
        Ok(())
    }

    async fn retentions(&self) -> Result<Vec<(String, Duration)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.st.retentions, ())
            .await
            .map_err(engine)?
            .into_rows_result()
            .map_err(engine)?;
        rows.rows::<(String, i64)>()
            .map_err(engine)?
            .map(|r| {
                r.map(|(c, s)| (c, Duration::from_secs(s.max(0) as u64)))
                    .map_err(engine)
            })
            .collect()
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        self.check_open()?;
        self.load_retentions().await?;
        let retentions: Vec<(String, Duration)> = self
            .ttl
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut total = 0;
        for (category, ttl) in retentions {
            // v1 ticks are 100 ns.
            let ttl_ticks = (ttl.as_micros() as u64).saturating_mul(10);
            let cutoff =
                Cursor::at_ticks(postmesh_schema::message::now_ticks().saturating_sub(ttl_ticks));
            let src = Source {
                folder: category.clone(),
                filter: None,
                expired_too: true,
            };
            let everything = Pattern::parse(&format!("{category}.#")).map_err(|e| {
                StoreError::Corrupt(format!("retention category {category:?}: {e}"))
            })?;
            for src in self
                .completed(&everything, vec![src], SWEEP_EXPANSION)
                .await?
            {
                loop {
                    let mut budget = SWEEP_ROUND * 2;
                    // Oldest first from the beginning: everything up to the cutoff.
                    let scan = self
                        .scan(&src, None, false, SWEEP_ROUND, &mut budget)
                        .await?;
                    let old: Vec<&Message> = scan
                        .found
                        .iter()
                        .filter(|m| m.cursor.is_some_and(|c| c <= cutoff))
                        .collect();
                    if old.is_empty() {
                        break;
                    }
                    for m in &old {
                        let c = m.cursor.expect("read with a cursor");
                        let mut deletes = Vec::new();
                        for f in self.index_folders(m.path.as_str()) {
                            let bucket = self.bucket_of(f, &c);
                            deletes.push(
                                self.session.execute_unpaged(
                                    &self.st.delete_folder_row,
                                    (f, bucket, tu(&c)),
                                ),
                            );
                        }
                        try_join_all(deletes).await.map_err(engine)?;
                        self.session
                            .execute_unpaged(&self.st.delete_by_id, (m.uuid,))
                            .await
                            .map_err(engine)?;
                    }
                    total += old.len();
                    if old.len() < scan.found.len() || !scan.more {
                        break;
                    }
                }
            }
        }
        Ok(total)
    }

    async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }
}
