//! Upgrading older layouts on open.
//!
//! - Layout 1 keyed messages by UUID in `messages` and indexed them by
//!   folder text in `folders`, `paths` and `latest`. Every message is put
//!   again through the writer, then the old keyspaces are deleted.
//! - Layout 2 keyed every row by the message's UUID time; it had no `ids`.
//!   Its rows stay as they are, each message's cursor being its UUID, and
//!   `ids` is written from the `timeline` keys.
//!
//! Both keep each message where publish time had put it (its cursor is its
//! UUID), and both are idempotent, so an upgrade cut short by a crash
//! simply runs again on the next open.

use fjall::KeyspaceCreateOptions;
use postmesh_schema::{Cursor, Message, Stamper};

use super::keys::cursor_of_key;
use super::writer::{self, MAX_GROUP, Names, Prepared};
use super::{Tables, engine};
use crate::store::{PutOutcome, StoreError};

/// Writes `ids` for a layout 2 store; returns how many messages it has.
pub(super) fn from_layout_2(t: &Tables) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut batch = t.db.batch().durability(writer::durability(true));
    for guard in t.timeline.iter() {
        let key = guard.key().map_err(engine)?;
        let cursor = cursor_of_key(&key)?;
        // A layout 2 key is the message's UUID: it becomes its cursor.
        batch.insert(
            &t.ids,
            cursor.as_uuid().as_bytes(),
            cursor.as_uuid().as_bytes(),
        );
        n += 1;
        if n % MAX_GROUP == 0 {
            std::mem::replace(
                &mut batch,
                t.db.batch().durability(writer::durability(true)),
            )
            .commit()
            .map_err(engine)?;
        }
    }
    batch.commit().map_err(engine)?;
    Ok(n)
}

/// The keyspaces of layout 1 that layout 2 does not use.
const LAYOUT_1: [&str; 4] = ["messages", "folders", "paths", "latest"];

/// Rewrites the layout 1 messages, if any; returns how many were rewritten.
pub(super) fn from_layout_1(t: &Tables, names: &mut Names) -> Result<usize, StoreError> {
    if !t.db.keyspace_exists("messages") {
        return Ok(0);
    }
    let open = |name: &str| {
        t.db.keyspace(name, KeyspaceCreateOptions::default)
            .map_err(engine)
    };
    let old = open("messages")?;
    let mut rewritten = 0;
    let mut group = Vec::with_capacity(MAX_GROUP);
    // Every message keeps its UUID as its cursor: nothing is stamped.
    let stamper = Stamper::new(0);
    let mut flush = |group: &mut Vec<Prepared>| -> Result<(), StoreError> {
        let groups = vec![std::mem::take(group)];
        for outcome in writer::commit(t, names, &stamper, groups, writer::durability(true)) {
            rewritten += outcome?
                .iter()
                .filter(|p| p.outcome == PutOutcome::Inserted)
                .count();
        }
        Ok(())
    };
    for kv in old.iter() {
        let (uuid, json) = kv.into_inner().map_err(engine)?;
        let m = Message::from_json(&json, &t.limits)
            .map_err(|e| StoreError::Corrupt(format!("layout 1 message {uuid:?}: {e}")))?;
        group.push(Prepared::new(&m).at(Cursor::from_uuid(m.uuid)));
        if group.len() == MAX_GROUP {
            flush(&mut group)?;
        }
    }
    flush(&mut group)?;
    drop(old);
    for name in LAYOUT_1 {
        if t.db.keyspace_exists(name) {
            t.db.delete_keyspace(open(name)?).map_err(engine)?;
        }
    }
    Ok(rewritten)
}
