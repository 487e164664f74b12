//! Rewriting a store of layout 1, where messages were keyed by UUID in
//! `messages` and indexed by folder text in `folders`, `paths` and
//! `latest`. Every message is put again through the layout 2 writer, then
//! the old keyspaces are deleted. Puts are idempotent, so a rewrite cut
//! short by a crash simply runs again on the next open.

use fjall::KeyspaceCreateOptions;
use postmesh_schema::Message;

use super::writer::{self, MAX_GROUP, Names, Prepared};
use super::{Tables, engine};
use crate::store::{PutOutcome, StoreError};

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
    let mut flush = |group: &mut Vec<Prepared>| -> Result<(), StoreError> {
        let groups = vec![std::mem::take(group)];
        for outcome in writer::commit(t, names, groups, writer::durability(true)) {
            rewritten += outcome?
                .iter()
                .filter(|o| **o == PutOutcome::Inserted)
                .count();
        }
        Ok(())
    };
    for kv in old.iter() {
        let (uuid, json) = kv.into_inner().map_err(engine)?;
        let m = Message::from_json(&json, &t.limits)
            .map_err(|e| StoreError::Corrupt(format!("layout 1 message {uuid:?}: {e}")))?;
        group.push(Prepared::new(&m));
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
