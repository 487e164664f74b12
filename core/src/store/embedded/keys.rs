//! How the embedded store spells its keys and values. Every index key is a
//! 4-byte folder id followed by a message's inverted cursor key: 20 bytes,
//! which fjall keeps inline in its key views, so the memtable's comparisons
//! decide on the id (held in the view's 4-byte prefix) or on inline bytes,
//! never by chasing a pointer to a long, shared path prefix.

use postmesh_schema::Cursor;
use postmesh_schema::message::uuid_from_time_key;

use super::super::StoreError;

/// A folder's number in the `names` dictionary. Folders are numbered from 1
/// in the order they are first written; numbers are never reused.
pub(super) type Id = u32;

/// Separator of path elements in `names` keys: it sorts below every byte
/// an element may contain (elements have no control characters), so the
/// keys of one subtree are contiguous and children can be skip-scanned.
pub(super) const SEP: u8 = 0;

/// A cursor's key with every bit flipped, so that a forward scan reads
/// newest first.
pub(super) fn inverted(cursor: &Cursor) -> [u8; 16] {
    cursor.key().map(|b| !b)
}

/// The cursor whose inverted key ends `key`.
pub(super) fn cursor_of_key(key: &[u8]) -> Result<Cursor, StoreError> {
    let tail: [u8; 16] = key
        .get(key.len().saturating_sub(16)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("short key".into()))?;
    Ok(Cursor::from_uuid(uuid_from_time_key(&tail.map(|b| !b))))
}

/// An `exact` or `below` key: the folder id, then the inverted cursor key.
pub(super) fn index_key(id: Id, cursor: &Cursor) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&inverted(cursor));
    k
}

/// An `ids` value: the cursor a message was stored at.
pub(super) fn decode_cursor(v: &[u8]) -> Result<Cursor, StoreError> {
    let bytes: [u8; 16] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("ids value".into()))?;
    Ok(Cursor::from_uuid(postmesh_schema::Uuid::from_bytes(bytes)))
}

/// The UUID of a `timeline` record's message, without decoding the rest.
pub(super) fn uuid_of_record(v: &[u8]) -> Result<postmesh_schema::Uuid, StoreError> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        uuid: &'a str,
    }
    let json = split_record(v)?.1;
    serde_json::from_slice::<Id<'_>>(json)
        .ok()
        .and_then(|id| postmesh_schema::Uuid::parse_str(id.uuid).ok())
        .ok_or_else(|| StoreError::Corrupt("timeline record without a uuid".into()))
}

/// A `names` key: the dotted text with `.` written as [`SEP`].
pub(super) fn name_key(text: &str) -> Vec<u8> {
    text.bytes()
        .map(|b| if b == b'.' { SEP } else { b })
        .collect()
}

/// Inverse of [`name_key`].
pub(super) fn text_of_name_key(key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(
        key.iter()
            .map(|b| if *b == SEP { b'.' } else { *b })
            .collect(),
    )
    .map_err(|_| StoreError::Corrupt("name key".into()))
}

/// A `names` value: the folder's id, and whether messages are stored at
/// exactly this path (rather than only below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Name {
    pub id: Id,
    pub is_path: bool,
}

impl Name {
    pub(super) fn encode(self) -> [u8; 5] {
        let mut v = [0u8; 5];
        v[..4].copy_from_slice(&self.id.to_be_bytes());
        v[4] = u8::from(self.is_path);
        v
    }

    pub(super) fn decode(v: &[u8]) -> Result<Name, StoreError> {
        match v {
            [a, b, c, d, flag] => Ok(Name {
                id: Id::from_be_bytes([*a, *b, *c, *d]),
                is_path: *flag == 1,
            }),
            _ => Err(StoreError::Corrupt("name value".into())),
        }
    }
}

/// A `timeline` value: the path (u16 BE length, bytes), then the message
/// JSON. The path comes first so a scan of the root folder can filter
/// without decoding the message.
pub(super) fn record(path: &str, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + path.len() + json.len());
    v.extend_from_slice(&(path.len() as u16).to_be_bytes());
    v.extend_from_slice(path.as_bytes());
    v.extend_from_slice(json);
    v
}

/// Inverse of [`record`]: the path and the JSON.
pub(super) fn split_record(v: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let corrupt = || StoreError::Corrupt("timeline record".into());
    let (len, rest) = v.split_first_chunk::<2>().ok_or_else(corrupt)?;
    let len = usize::from(u16::from_be_bytes(*len));
    let (path, json) = rest.split_at_checked(len).ok_or_else(corrupt)?;
    Ok((std::str::from_utf8(path).map_err(|_| corrupt())?, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postmesh_schema::message::v1_from_parts;

    #[test]
    fn keys_round_trip_and_sort_newest_first() {
        let older = Cursor::from_uuid(v1_from_parts(1_000, 7, [1; 6]));
        let newer = Cursor::from_uuid(v1_from_parts(2_000, 3, [0; 6]));
        assert_eq!(cursor_of_key(&index_key(9, &older)).unwrap(), older);
        assert!(index_key(9, &newer) < index_key(9, &older));
        assert!(index_key(9, &older) < index_key(10, &newer));
        assert_eq!(text_of_name_key(&name_key("a.b-c.d")).unwrap(), "a.b-c.d");
        let n = Name {
            id: 70_000,
            is_path: true,
        };
        assert_eq!(Name::decode(&n.encode()).unwrap(), n);
        let r = record("feeds.x", b"{}");
        assert_eq!(split_record(&r).unwrap(), ("feeds.x", &b"{}"[..]));
        assert!(split_record(&r[..5]).is_err());
    }
}
