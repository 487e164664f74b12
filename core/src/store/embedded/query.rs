//! Reading: a pattern becomes a plan of sources, each source one or two
//! key ranges, and the ranges are read newest first (or oldest first) and
//! merged by time.

use postmesh_schema::{Cursor, Pattern};

use super::keys::{
    Id, Name, SEP, cursor_of_key, inverted, name_key, split_record, text_of_name_key,
};
use fjall::{Readable, Snapshot};

use super::{Tables, engine, now_millis};
use crate::store::StoreError;

/// Reads of one query, all at one instant: a snapshot across keyspaces, so
/// that a query sees every commit group before some point and none after
/// it. (Ranges read one after another without it could see a later group
/// and miss an earlier one.)
pub(super) struct Reader<'a> {
    pub t: &'a Tables,
    pub s: Snapshot,
}

impl Tables {
    /// A reader at the current instant.
    pub(super) fn reader(&self) -> Reader<'_> {
        Reader {
            t: self,
            s: self.db.snapshot(),
        }
    }

    /// The dictionary entry of a folder or path as of now (for the writer).
    pub(super) fn name(&self, text: &str) -> Result<Option<Name>, StoreError> {
        self.names
            .get(name_key(text))
            .map_err(engine)?
            .map(|v| Name::decode(&v))
            .transpose()
    }
}

/// Most concrete prefixes a pattern's `*` elements expand to before a query
/// scans the literal prefix's folder with a filter instead.
pub const MAX_EXPANSION: usize = 256;

/// Most index rows one query examines, over all its ranges. A filter that
/// rarely matches (`feeds.#.nomatch`) would otherwise read a whole folder
/// for one page: past the budget the page ends early, says `more`, and
/// gives the position the next page starts from.
pub const MAX_SCAN: usize = 100_000;

/// Most paths `latest` looks at for one query.
pub const MAX_LATEST_PATHS: usize = 10_000;

/// What one range's scan found.
struct Scanned {
    found: Vec<Cursor>,
    /// The scan stopped at its budget here (the last row examined): what
    /// lies beyond was not read.
    cut: Option<Cursor>,
}

/// Where a query reads.
#[derive(Debug)]
pub(super) enum Source {
    /// One exact path.
    Path(String),
    /// A folder: its own path and everything below it, filtered by the
    /// pattern unless every message in it matches.
    Folder { folder: String, filter: bool },
}

/// One ordered key range.
#[derive(Debug)]
enum Range {
    /// The `timeline`: every message (the root folder).
    Timeline,
    /// The messages at exactly `path` (`exact` rows of its id).
    Exact { id: Id, path: String },
    /// The messages strictly below a folder (`below` rows of its id).
    Below { id: Id },
}

impl Reader<'_> {
    /// The dictionary entry of a folder or path, if anything was ever
    /// stored at or below it.
    pub(super) fn name(&self, text: &str) -> Result<Option<Name>, StoreError> {
        self.s
            .get(&self.t.names, name_key(text))
            .map_err(engine)?
            .map(|v| Name::decode(&v))
            .transpose()
    }

    /// The distinct next elements below `prefix` (dotted; "" is the root),
    /// found by skip-scanning `names`: one seek per child. `None` when
    /// there are more than [`MAX_EXPANSION`].
    pub(super) fn children(&self, prefix: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut base = name_key(prefix);
        if !prefix.is_empty() {
            base.push(SEP);
        }
        let mut out = Vec::new();
        let mut start = base.clone();
        loop {
            let Some(guard) = self.s.range(&self.t.names, start.clone()..).next() else {
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
                    .map_err(|_| StoreError::Corrupt("name".into()))?,
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
    pub(super) fn plan(&self, pattern: &Pattern) -> Result<Vec<Source>, StoreError> {
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

    /// The key ranges of a source, with whether to filter them.
    fn ranges(&self, source: Source, out: &mut Vec<(Range, bool)>) -> Result<(), StoreError> {
        match source {
            Source::Path(path) => {
                if let Some(Name { id, is_path: true }) = self.name(&path)? {
                    out.push((Range::Exact { id, path }, false));
                }
            }
            Source::Folder { folder, filter } if folder.is_empty() => {
                out.push((Range::Timeline, filter));
            }
            Source::Folder { folder, filter } => {
                if let Some(Name { id, is_path }) = self.name(&folder)? {
                    out.push((Range::Below { id }, filter));
                    if is_path {
                        out.push((Range::Exact { id, path: folder }, filter));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads up to `limit + 1` matching entries of one range, newest first
    /// (or oldest first), strictly beyond `cursor`, examining at most
    /// `budget` rows.
    fn scan(
        &self,
        range: &Range,
        filter: Option<&Pattern>,
        cursor: Option<&Cursor>,
        newest_first: bool,
        limit: usize,
        budget: usize,
    ) -> Result<Scanned, StoreError> {
        let (keyspace, prefix) = match range {
            Range::Timeline => (&self.t.timeline, Vec::new()),
            Range::Exact { id, .. } => (&self.t.exact, id.to_be_bytes().to_vec()),
            Range::Below { id } => (&self.t.below, id.to_be_bytes().to_vec()),
        };
        let at = |c: &Cursor| [prefix.as_slice(), &inverted(c)].concat();
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 17]);
        use std::ops::Bound::{Excluded, Included};
        let s = &self.s;
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match (cursor, newest_first) {
            (None, true) => Box::new(s.range(keyspace, prefix..end)),
            (Some(c), true) => {
                Box::new(s.range::<Vec<u8>, _>(keyspace, (Excluded(at(c)), Excluded(end))))
            }
            (Some(c), false) => Box::new(
                s.range::<Vec<u8>, _>(keyspace, (Included(prefix.clone()), Excluded(at(c))))
                    .rev(),
            ),
            (None, false) => Box::new(s.range(keyspace, prefix..end).rev()),
        };
        let now = now_millis();
        let mut found = Vec::with_capacity(limit.min(1024) + 1);
        for (examined, guard) in iter.enumerate() {
            let (key, value) = guard.into_inner().map_err(engine)?;
            let at = cursor_of_key(&key)?;
            if examined == budget {
                return Ok(Scanned {
                    found,
                    cut: Some(at),
                });
            }
            let path = match range {
                Range::Timeline => split_record(&value)?.0,
                Range::Exact { path, .. } => path.as_str(),
                Range::Below { .. } => std::str::from_utf8(&value)
                    .map_err(|_| StoreError::Corrupt("below path".into()))?,
            };
            if filter.is_some_and(|p| !p.matches_str(path)) {
                continue;
            }
            if self.t.expired(path, &at, now) {
                continue;
            }
            found.push(at);
            if found.len() > limit {
                break;
            }
        }
        Ok(Scanned { found, cut: None })
    }

    /// Merges the ranges of `pattern` into one ordered page of cursors: at
    /// most `limit`, whether there are more, and where the next page starts
    /// when there are (the last cursor of this page, or the point where the
    /// scan budget ran out).
    pub(super) fn query(
        &self,
        pattern: &Pattern,
        cursor: Option<&Cursor>,
        newest_first: bool,
        limit: usize,
    ) -> Result<(Vec<Cursor>, Option<Cursor>), StoreError> {
        let mut ranges = Vec::new();
        for source in self.plan(pattern)? {
            self.ranges(source, &mut ranges)?;
        }
        // Shared by the ranges; never under one page, so that ranges whose
        // rows all match (no filter) still fill a page each.
        let budget = (self.t.max_scan / ranges.len().max(1)).max(limit + 1);
        let mut all = Vec::new();
        // How far every range has been read: the least advanced cut.
        let mut complete_to: Option<Cursor> = None;
        for (range, filter) in &ranges {
            let filter = filter.then_some(pattern);
            let scanned = self.scan(range, filter, cursor, newest_first, limit, budget)?;
            all.extend(scanned.found);
            if let Some(cut) = scanned.cut {
                complete_to = Some(match complete_to {
                    None => cut,
                    Some(c) if newest_first => c.max(cut),
                    Some(c) => c.min(cut),
                });
            }
        }
        if newest_first {
            all.sort_unstable_by_key(|c| std::cmp::Reverse(*c));
        } else {
            all.sort_unstable();
        }
        // Beyond a cut, another range may hold rows not read yet.
        if let Some(cut) = complete_to {
            all.retain(|c| if newest_first { *c > cut } else { *c < cut });
        }
        if all.len() > limit {
            all.truncate(limit);
            let next = all.last().copied();
            return Ok((all, next));
        }
        Ok((all, complete_to))
    }

    /// The newest message of each path matching: the first `exact` row of
    /// each path that `names` lists below the plan's folders.
    /// Looks at most at [`MAX_LATEST_PATHS`] paths; `true` with the hits
    /// when it stopped there.
    pub(super) fn latest_of(&self, pattern: &Pattern) -> Result<(Vec<Cursor>, bool), StoreError> {
        let mut paths: Vec<(String, Id)> = Vec::new();
        let (mut cut, mut examined) = (false, 0usize);
        let mut below = |prefix: &[u8]| -> Result<(), StoreError> {
            for guard in self.s.prefix(&self.t.names, prefix) {
                if examined >= MAX_LATEST_PATHS {
                    cut = true;
                    break;
                }
                examined += 1;
                let (key, value) = guard.into_inner().map_err(engine)?;
                let name = Name::decode(&value)?;
                if name.is_path {
                    paths.push((text_of_name_key(&key)?, name.id));
                }
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
                    let mut key = name_key(&folder);
                    key.push(SEP);
                    below(&key)?;
                    exact.push(folder);
                }
            }
        }
        for p in exact {
            if let Some(Name { id, is_path: true }) = self.name(&p)? {
                paths.push((p, id));
            }
        }
        let now = now_millis();
        let mut hits = Vec::new();
        for (path, id) in paths {
            if !pattern.matches_str(&path) {
                continue;
            }
            let Some(newest) = self.s.prefix(&self.t.exact, id.to_be_bytes()).next() else {
                continue;
            };
            let at = cursor_of_key(&newest.key().map_err(engine)?)?;
            // Older messages of a path are older still: none is current.
            if !self.t.expired(&path, &at, now) {
                hits.push(at);
            }
        }
        Ok((hits, cut))
    }
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
