//! Writing: one thread owns every write and commits in groups, so folder
//! ids are assigned without races and a group costs one fsync.

use std::collections::HashMap;
use std::time::Duration;

use fjall::{OwnedWriteBatch as WriteBatch, PersistMode};
use postmesh_schema::path::ancestors;
use postmesh_schema::{Cursor, Message, Path, Stamper, Uuid};
use tokio::sync::{mpsc, oneshot};

use super::keys::{
    Id, Name, cursor_of_key, index_key, inverted, name_key, record, split_record, uuid_of_record,
};
use super::{Tables, engine, now_millis};
use crate::store::{Put, PutOutcome, StoreError};

/// Most messages committed in one group (one fsync).
pub const MAX_GROUP: usize = 4096;
/// Most `names` entries the writer keeps in memory. Beyond it the cache is
/// emptied and refills from the keyspace (a point read per folder).
pub const NAMES_CACHED: usize = 1 << 18;

/// The `meta` key holding the next folder id.
pub(super) const NEXT_ID: &[u8] = b"next_id";

/// A message ready for the writer: its record encoded by the caller, off
/// the writer thread.
pub(super) struct Prepared {
    uuid: Uuid,
    path: Path,
    record: Vec<u8>,
    /// Where to put it; `None`: stamp it when it joins a commit group.
    cursor: Option<Cursor>,
}

impl Prepared {
    pub(super) fn new(m: &Message) -> Prepared {
        // The record holds the message without a cursor: its key is one.
        let json = match m.cursor {
            None => m.to_json(),
            Some(_) => Message {
                cursor: None,
                ..m.clone()
            }
            .to_json(),
        };
        Prepared {
            uuid: m.uuid,
            path: m.path.clone(),
            record: record(m.path.as_str(), &json),
            cursor: None,
        }
    }

    /// Keeps the position it had in an older layout.
    pub(super) fn at(mut self, cursor: Cursor) -> Prepared {
        self.cursor = Some(cursor);
        self
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Write {
    Put(Vec<Prepared>, Reply<Vec<Put>>),
    Dismiss(u64, Uuid, Reply<bool>),
    Retention(String, Option<Duration>, Reply<()>),
    /// One batch of a sweep: how many were deleted, and whether more are
    /// due.
    Sweep(Reply<(usize, bool)>),
}

/// The writer's view of the `names` dictionary: a bounded cache in front of
/// the keyspace, and the next id to hand out.
pub(super) struct Names {
    cache: HashMap<String, Name>,
    next: Id,
}

impl Names {
    pub(super) fn load(t: &Tables) -> Result<Names, StoreError> {
        let next = match t.meta.get(NEXT_ID).map_err(engine)? {
            Some(v) => Id::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("next id".into()))?,
            ),
            None => 1,
        };
        Ok(Names {
            cache: HashMap::new(),
            next,
        })
    }

    fn remember(&mut self, text: &str, name: Name) {
        if self.cache.len() >= NAMES_CACHED {
            self.cache.clear();
        }
        self.cache.insert(text.to_owned(), name);
    }

    /// The id of `text`, numbering it (in `batch`) when it is new and
    /// marking it as a message path when `is_path`.
    fn resolve(
        &mut self,
        t: &Tables,
        batch: &mut WriteBatch,
        text: &str,
        is_path: bool,
    ) -> Result<Id, StoreError> {
        let cached = self.cache.get(text).copied();
        let known = match cached {
            Some(n) => Some(n),
            None => t.name(text)?,
        };
        let name = match known {
            Some(n) if n.is_path || !is_path => {
                if cached.is_none() {
                    self.remember(text, n);
                }
                return Ok(n.id);
            }
            Some(n) => Name { is_path: true, ..n },
            None => {
                let id = self.next;
                self.next = id
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Engine("folder ids exhausted".into()))?;
                batch.insert(&t.meta, NEXT_ID, self.next.to_be_bytes());
                Name { id, is_path }
            }
        };
        batch.insert(&t.names, name_key(text), name.encode());
        self.remember(text, name);
        Ok(name.id)
    }

    /// After a failed commit: what was cached may not be stored.
    fn forget(&mut self, t: &Tables) {
        match Names::load(t) {
            Ok(fresh) => *self = fresh,
            Err(_) => self.cache.clear(),
        }
    }
}

pub(super) fn durability(sync: bool) -> Option<PersistMode> {
    Some(if sync {
        PersistMode::SyncAll
    } else {
        PersistMode::Buffer
    })
}

pub(super) fn writer_loop(
    t: Tables,
    mut names: Names,
    stamper: Stamper,
    mut rx: mpsc::Receiver<Write>,
    sync: bool,
) {
    let durability = durability(sync);
    while let Some(first) = rx.blocking_recv() {
        let mut puts: Vec<(Vec<Prepared>, Reply<Vec<Put>>)> = Vec::new();
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
                    let _ = reply.send(dismiss(&t, user, uuid, durability));
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
            let (groups, replies): (Vec<_>, Vec<_>) = puts.into_iter().unzip();
            let outcomes = commit(&t, &mut names, &stamper, groups, durability);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
    }
}

/// Stores groups of messages in one batch: one outcome per group. New
/// messages are stamped in the order they are added, so cursor order is
/// the order of the groups and of the messages within each.
pub(super) fn commit(
    t: &Tables,
    names: &mut Names,
    stamper: &Stamper,
    groups: Vec<Vec<Prepared>>,
    durability: Option<PersistMode>,
) -> Vec<Result<Vec<Put>, StoreError>> {
    let mut batch = t.db.batch().durability(durability);
    let mut seen: HashMap<Uuid, Cursor> = HashMap::new();
    let mut outcomes: Vec<Result<Vec<Put>, StoreError>> = groups
        .into_iter()
        .map(|msgs| {
            let mut out = Vec::with_capacity(msgs.len());
            for m in msgs {
                out.push(add(t, names, stamper, &mut batch, &mut seen, m)?);
            }
            Ok(out)
        })
        .collect();
    if let Err(e) = batch.commit() {
        names.forget(t);
        for o in &mut outcomes {
            *o = Err(engine(&e));
        }
    }
    outcomes
}

/// Adds one message's rows to `batch`: its record in `timeline`, its
/// cursor in `ids`, a `below` row for each folder above it but the root,
/// and an `exact` row.
fn add(
    t: &Tables,
    names: &mut Names,
    stamper: &Stamper,
    batch: &mut WriteBatch,
    seen: &mut HashMap<Uuid, Cursor>,
    m: Prepared,
) -> Result<Put, StoreError> {
    let stored = match seen.get(&m.uuid) {
        Some(c) => Some(*c),
        None => t.cursor_of(&m.uuid)?,
    };
    if let Some(cursor) = stored {
        return Ok(Put {
            outcome: PutOutcome::Duplicate,
            cursor,
        });
    }
    let path = m.path.as_str();
    // Every id first, so an error leaves no half-indexed message behind.
    let mut above: Vec<Id> = Vec::with_capacity(8);
    for folder in m.path.ancestors() {
        above.push(names.resolve(t, batch, folder, false)?);
    }
    let own = names.resolve(t, batch, path, true)?;
    let cursor = m.cursor.unwrap_or_else(|| stamper.next());
    seen.insert(m.uuid, cursor);
    for id in &above {
        batch.insert(&t.below, index_key(*id, &cursor), path.as_bytes());
    }
    batch.insert(&t.exact, index_key(own, &cursor), []);
    batch.insert(&t.ids, m.uuid.as_bytes(), cursor.as_uuid().as_bytes());
    batch.insert(&t.timeline, inverted(&cursor), m.record);
    Ok(Put {
        outcome: PutOutcome::Inserted,
        cursor,
    })
}

fn dismiss(
    t: &Tables,
    user: u64,
    uuid: Uuid,
    durability: Option<PersistMode>,
) -> Result<bool, StoreError> {
    let key = dismiss_key(user, &uuid);
    if t.dismissed.contains_key(key).map_err(engine)? {
        return Ok(false);
    }
    let mut b = t.db.batch().durability(durability);
    b.insert(&t.dismissed, key, []);
    b.commit().map_err(engine)?;
    Ok(true)
}

pub(super) fn dismiss_key(user: u64, uuid: &Uuid) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&user.to_be_bytes());
    k[8..].copy_from_slice(uuid.as_bytes());
    k
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

/// Most messages deleted in one batch by [`sweep`].
pub(super) const SWEEP_BATCH: usize = 1000;

/// Deletes at most [`SWEEP_BATCH`] expired messages, oldest first, in one
/// commit, and says whether more are due. One batch at a time, so writes
/// queued meanwhile go between two batches instead of waiting for the
/// whole backlog. Folder ids stay numbered: `names` only grows.
fn sweep(t: &Tables, durability: Option<PersistMode>) -> Result<(usize, bool), StoreError> {
    let categories: Vec<String> = t.ttl.read().keys().cloned().collect();
    let now = now_millis();
    // (cursor, id of the folder it was found under)
    let mut expired: Vec<(Cursor, Id)> = Vec::new();
    for category in categories {
        let Some(name) = t.name(&category)? else {
            continue;
        };
        // Oldest entries are at the end of each (inverted) range.
        for keyspace in [&t.below, &t.exact] {
            for guard in keyspace.prefix(name.id.to_be_bytes()).rev() {
                if expired.len() >= SWEEP_BATCH {
                    break;
                }
                let cursor = cursor_of_key(&guard.key().map_err(engine)?)?;
                if !t.expired(&category, &cursor, now) {
                    break;
                }
                expired.push((cursor, name.id));
            }
        }
    }
    if expired.is_empty() {
        return Ok((0, false));
    }
    let mut b = t.db.batch().durability(durability);
    for (cursor, found_under) in &expired {
        let key = inverted(cursor);
        match t.timeline.get(key).map_err(engine)? {
            // Every row of the message, found by its path.
            Some(rec) => {
                let path = split_record(&rec)?.0;
                for folder in ancestors(path) {
                    if let Some(n) = t.name(folder)? {
                        b.remove(&t.below, index_key(n.id, cursor).to_vec());
                    }
                }
                if let Some(n) = t.name(path)? {
                    b.remove(&t.exact, index_key(n.id, cursor).to_vec());
                }
                b.remove(&t.ids, uuid_of_record(&rec)?.as_bytes().to_vec());
            }
            // The record is gone: remove the rows found, so no batch finds
            // them again.
            None => {
                b.remove(&t.below, index_key(*found_under, cursor).to_vec());
                b.remove(&t.exact, index_key(*found_under, cursor).to_vec());
            }
        }
        b.remove(&t.timeline, key.to_vec());
    }
    b.commit().map_err(engine)?;
    Ok((expired.len(), expired.len() >= SWEEP_BATCH))
}
