//! Path and pattern parsing on arbitrary text, and what is built on it.
//!
//! Input: up to three lines, `a`, `b` and `key`. Each line is parsed as a
//! path and as a pattern; the checks are that nothing panics, parsed text
//! round-trips, and the pattern operations agree with each other on `key`:
//! `covers` is sound, a pattern's literal prefix is the folder of every path
//! it matches, a folder pattern matches exactly its folder, and an exact
//! pattern matches its own path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postmesh_schema::{Path, Pattern};

fn check_path(s: &str) -> Option<Path> {
    let p = Path::parse(s).ok()?;
    assert_eq!(p.as_str(), s);
    assert_eq!(p.to_string(), s);
    assert_eq!(s.parse::<Path>().as_ref(), Ok(&p));
    let elems: Vec<&str> = p.elements().collect();
    assert_eq!(elems.len(), p.depth());
    assert_eq!(elems.join("."), s);
    assert_eq!(p.category(), elems[0]);
    assert_eq!(p.ancestors().count(), p.depth() - 1);
    for a in p.ancestors() {
        assert!(s.starts_with(a) && s.as_bytes()[a.len()] == b'.');
    }
    let exact = Pattern::exact(&p);
    assert!(exact.is_exact());
    assert!(exact.matches(&p));
    assert_eq!(Pattern::parse(s).as_ref(), Ok(&exact));
    Some(p)
}

fn check_pattern(s: &str) -> Option<Pattern> {
    let p = Pattern::parse(s).ok()?;
    assert_eq!(p.as_str(), s);
    assert_eq!(p.to_string(), s);
    assert_eq!(s.parse::<Pattern>().as_ref(), Ok(&p));
    assert_eq!(p.elements().count(), s.split('.').count());
    if let Some(prefix) = p.literal_prefix() {
        assert!(s.starts_with(prefix));
    }
    Some(p)
}

/// Everything one pattern says about one path must be consistent.
fn check_pattern_on_path(p: &Pattern, path: &Path) {
    let m = p.matches(path);
    assert_eq!(m, p.matches_str(path.as_str()));
    let k = path.as_str();
    let in_folder = |prefix: &str| {
        k == prefix || (k.starts_with(prefix) && k.as_bytes()[prefix.len()] == b'.')
    };
    if m {
        if let Some(prefix) = p.literal_prefix() {
            assert!(in_folder(prefix), "{p:?} matches {path:?} outside {prefix:?}");
        }
        if p.is_exact() {
            assert_eq!(p.as_str(), k);
        }
    }
    if p.is_folder() {
        let want = p.literal_prefix().is_none_or(in_folder);
        assert_eq!(m, want, "folder pattern {p:?} on {path:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let a = lines.next().unwrap_or("");
    let b = lines.next().unwrap_or("");
    let key = lines.next().unwrap_or("");

    let paths: Vec<Path> = [a, b, key].into_iter().filter_map(check_path).collect();
    let (pa, pb) = (check_pattern(a), check_pattern(b));
    for p in [&pa, &pb].into_iter().flatten() {
        let _ = p.matches_str(key);
        for path in &paths {
            check_pattern_on_path(p, path);
        }
    }
    if let (Some(pa), Some(pb)) = (&pa, &pb) {
        // covers is sound: whatever b matches, a matches too. (It may
        // answer false when unsure, so only this direction is checked.)
        if pa.covers(pb) && pb.matches_str(key) {
            assert!(
                pa.matches_str(key),
                "{pa:?} covers {pb:?}, which matches {key:?}, but it does not"
            );
        }
        let _ = pb.covers(pa);
        // A pattern of at most 10 elements has at most 2^11 position sets,
        // within the covers state limit, so it must cover itself.
        if pa.elements().count() <= 10 {
            assert!(pa.covers(pa), "{pa:?} does not cover itself");
        }
    }
});
