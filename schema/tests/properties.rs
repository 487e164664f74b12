//! Property tests for `postmesh-schema`: base62 id paths, the topic trie
//! against `topic_match` and an independent reference matcher, pattern
//! containment, message and frame encoding, and parsers fed arbitrary input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use postmesh_schema::address::{Address, RoutingKey};
use postmesh_schema::idpath::{self, IdError};
use postmesh_schema::message::v1_from_parts;
use postmesh_schema::pattern::{self, topic_match};
use postmesh_schema::protocol::{self, ClientFrame, ErrorCode};
use postmesh_schema::{Body, Class, Limits, Message, Path, Pattern, Trie};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Reference matcher
// ---------------------------------------------------------------------------

/// RabbitMQ word splitting, written independently of `pattern::words`: the
/// empty string has no words, otherwise every `.` separates two words.
fn ref_words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

/// Plain recursive topic matcher: `#` tries every split, `*` takes one word.
/// Memoised on (pattern index, key index) so long inputs with many `#` stay
/// polynomial; the recursion itself is the textbook definition.
fn reference_match(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let slot = i * (k.len() + 1) + j;
        if let Some(v) = memo[slot] {
            return v;
        }
        let v = match p.get(i) {
            None => j == k.len(),
            Some(&"#") => (j..=k.len()).any(|jj| go(p, k, i + 1, jj, memo)),
            Some(&"*") => j < k.len() && go(p, k, i + 1, j + 1, memo),
            Some(w) => k.get(j) == Some(w) && go(p, k, i + 1, j + 1, memo),
        };
        memo[slot] = Some(v);
        v
    }
    let (p, k) = (ref_words(pattern), ref_words(key));
    let mut memo = vec![None; (p.len() + 1) * (k.len() + 1)];
    go(&p, &k, 0, 0, &mut memo)
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// A key word: the small alphabet plus the empty word.
fn key_word() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("")]
}

/// A pattern word: key words plus the two wildcards.
fn pattern_word() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => key_word(),
        2 => Just("*"),
        2 => Just("#"),
    ]
}

/// 0 to 6 key words joined by `.`. Zero words and one empty word both give
/// the empty key, which has zero words.
fn raw_key() -> impl Strategy<Value = String> {
    vec(key_word(), 0..=6).prop_map(|w| w.join("."))
}

fn raw_pattern() -> impl Strategy<Value = String> {
    vec(pattern_word(), 0..=6).prop_map(|w| w.join("."))
}

/// A validated pattern: 1..=max non-empty words from {a, b, *, #}.
fn valid_pattern(max: usize) -> impl Strategy<Value = Pattern> {
    vec(
        prop_oneof![Just("a"), Just("b"), Just("*"), Just("#")],
        1..=max,
    )
    .prop_map(|w| Pattern::parse(&w.join(".")).expect("non-empty words form a valid pattern"))
}

/// Ids biased towards the interesting places: zero, small numbers, powers
/// of 62 and their neighbours, and the top of the range.
fn id() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..1000,
        (0u32..=10, -1i64..=1).prop_map(|(e, d)| 62u64.pow(e).saturating_add_signed(d)),
        (u64::MAX - 1000)..=u64::MAX,
    ]
}

/// One path element: printable text without `.`, sometimes with JSON-hostile
/// characters (quotes, backslashes, non-ASCII).
fn path_element() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,10}",
        "[\"\\\\/ é€😀\u{2028}a*#]{1,6}",
        "[^.\\p{Cc}]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = Path> {
    vec(path_element(), 1..=6).prop_filter_map("not a valid path", |elems| {
        Path::parse(&elems.join(".")).ok()
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Floats whose shortest decimal form serde_json reads back exactly
        // (see `meta_floats_round_trip` for ones it does not).
        (any::<i16>(), 0u32..=10)
            .prop_map(|(i, k)| Value::from(f64::from(i) / f64::from(1u32 << k))),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(".{0,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn meta() -> impl Strategy<Value = Map<String, Value>> {
    btree_map(".{0,8}", json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

/// Bodies that round-trip. A JSON body of `null` is excluded: the wire form
/// reads `"body": null` as no body (see `json_null_body_round_trips`).
fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::None),
        json_value()
            .prop_filter("null is no body", |v| !v.is_null())
            .prop_map(|v| Body::json(&v)),
        vec(any::<u8>(), 0..80).prop_map(|b| Body::Binary(Bytes::from(b))),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Gold), Just(Class::Silver), Just(Class::Bronze)]
}

fn v1_uuid() -> impl Strategy<Value = uuid::Uuid> {
    (0u64..(1 << 60), any::<u16>(), any::<[u8; 6]>())
        .prop_map(|(t, cs, node)| v1_from_parts(t, cs, node))
}

fn message() -> impl Strategy<Value = Message> {
    (
        path(),
        v1_uuid(),
        class(),
        meta(),
        body(),
        proptest::option::of(v1_uuid()),
    )
        .prop_map(|(path, uuid, class, meta, body, cursor)| Message {
            path,
            uuid,
            class,
            meta,
            body,
            cursor: cursor.map(postmesh_schema::Cursor::from_uuid),
        })
}

// ---------------------------------------------------------------------------
// Base62 id paths
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn split_id_round_trips(n in id()) {
        let split = idpath::split_id(n);
        let elems: Vec<&str> = split.split('.').collect();
        prop_assert_eq!(idpath::join_id(elems.iter().copied()), Ok(n));
        prop_assert!(elems.len() <= 11);
        prop_assert!(elems.iter().all(|e| e.len() == 1 && e.as_bytes()[0].is_ascii_alphanumeric()), "{split}");
        if n == 0 {
            prop_assert_eq!(split.as_str(), "0");
        } else {
            prop_assert_ne!(elems[0], "0", "leading zero element for {}", n);
            // The canonical form is the only one: a leading zero is refused.
            let padded = std::iter::once("0").chain(elems.iter().copied());
            prop_assert_eq!(idpath::join_id(padded), Err(IdError::LeadingZero));
        }
    }

    #[test]
    fn split_id_path_round_trips(n in id(), zeros in 0usize..25, kind in "[a-z]{1,8}") {
        let decimal = format!("id.{kind}.{}{n}", "0".repeat(zeros));
        let split = idpath::split_id_path(&decimal).unwrap();
        prop_assert_eq!(split.as_str(), format!("id.{kind}.{}", idpath::split_id(n)));
        let joined = idpath::join_id_path(&split).unwrap();
        prop_assert_eq!(&joined, &format!("id.{kind}.{n}"));
        // Canonical forms are fixed points of the round trip.
        prop_assert_eq!(idpath::split_id_path(&joined).unwrap(), split);
        let prefs = idpath::prefs_path(n);
        prop_assert_eq!(prefs.as_str(), format!("id.prefs.{}", idpath::split_id(n)));
        prop_assert_eq!(idpath::join_id_path(&prefs).unwrap(), format!("id.prefs.{n}"));
        prop_assert!(topic_match(&idpath::user_pattern(n), prefs.as_str()));
    }

    #[test]
    fn split_ids_order_like_numbers_by_length_then_digits(a in id(), b in id()) {
        // Base62 digits in alphabet order and no leading zeros: comparing
        // (element count, digits) compares the numbers.
        let key = |n: u64| {
            let s = idpath::split_id(n);
            (s.len(), s)
        };
        prop_assert_eq!(a.cmp(&b), key(a).cmp(&key(b)));
    }
}

// ---------------------------------------------------------------------------
// Topic matching: reference vs topic_match vs Trie
// ---------------------------------------------------------------------------

#[test]
fn reference_matcher_agrees_with_known_cases() {
    // The RabbitMQ cases from pattern.rs, checked against the reference so
    // that the reference itself is known to be right.
    let cases: &[(&str, &str, bool)] = &[
        ("feeds.#", "feeds", true),
        ("feeds.#", "feeds.", true),
        ("feeds.*", "feeds", false),
        ("feeds.*", "feeds.", true),
        ("feeds.*.x", "feeds..x", true),
        ("*", "", false),
        ("#", "", true),
        ("a.#.b", "a.b", true),
        ("#.b.#", "a.b.c.b", true),
        ("#.#", "", true),
        ("#.a.*", "x.y.a", false),
        ("", "", true),
        ("", "a", false),
        ("", ".", false),
        (".", ".", true),
        ("*", ".", false),
        ("*.*", ".", true),
        ("#", ".", true),
    ];
    for (p, k, want) in cases {
        assert_eq!(
            reference_match(p, k),
            *want,
            "reference: pattern {p:?} key {k:?}"
        );
        assert_eq!(
            topic_match(p, k),
            *want,
            "topic_match: pattern {p:?} key {k:?}"
        );
    }
}

fn sorted<T: Ord + Clone>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = v.into_iter().collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn topic_match_agrees_with_reference(p in raw_pattern(), k in raw_key()) {
        prop_assert_eq!(topic_match(&p, &k), reference_match(&p, &k), "pattern {:?} key {:?}", p, k);
    }

    #[test]
    fn words_agrees_with_reference(p in raw_pattern()) {
        prop_assert_eq!(pattern::words(&p).collect::<Vec<_>>(), ref_words(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Long inputs (beyond the 32 words kept inline by the matcher).
    #[test]
    fn topic_match_agrees_with_reference_on_long_inputs(
        p in vec(prop_oneof![3 => Just("a"), 3 => Just("b"), 2 => Just("*"), 1 => Just("#"), 1 => Just("")], 0..48),
        k in vec(prop_oneof![Just("a"), Just("b"), Just("")], 0..48),
    ) {
        let (p, k) = (p.join("."), k.join("."));
        prop_assert_eq!(topic_match(&p, &k), reference_match(&p, &k), "pattern {:?} key {:?}", p, k);
        // A key always matches itself read as a pattern when it has no wildcard.
        prop_assert!(topic_match(&k, &k));
    }

    #[test]
    fn trie_agrees_with_topic_match(
        patterns in vec(raw_pattern(), 1..40),
        keys in vec(raw_key(), 1..24),
    ) {
        let mut trie = Trie::new();
        for (i, p) in patterns.iter().enumerate() {
            trie.insert(p, i);
        }
        let distinct: BTreeSet<&String> = patterns.iter().collect();
        prop_assert_eq!(trie.pattern_count(), distinct.len());
        for k in &keys {
            let want: Vec<usize> = (0..patterns.len()).filter(|&i| topic_match(&patterns[i], k)).collect();
            let ref_want: Vec<usize> = (0..patterns.len()).filter(|&i| reference_match(&patterns[i], k)).collect();
            prop_assert_eq!(&want, &ref_want, "topic_match vs reference on key {:?}", k);
            let got = sorted(trie.matches(k).into_iter().copied());
            prop_assert_eq!(&got, &want, "Trie::matches on key {:?}", k);
            let mut visited = Vec::new();
            trie.for_each_match(k, |v| visited.push(*v));
            // Sorted equality with a duplicate-free list: each value exactly once.
            prop_assert_eq!(sorted(visited), want, "Trie::for_each_match on key {:?}", k);
        }
        for (i, p) in patterns.iter().enumerate() {
            prop_assert!(trie.get(p).contains(&i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Patterns made mostly of `#` (the shape that made trying every split
    /// for every `#` combinatorial) against long keys: the trie still
    /// agrees with the memoized reference.
    #[test]
    fn trie_agrees_with_reference_on_hash_heavy_patterns(
        patterns in vec(vec(prop_oneof![4 => Just("#"), 1 => Just("*"), 2 => Just("a"), 1 => Just("b")], 1..16), 1..12),
        keys in vec(vec(prop_oneof![3 => Just("a"), 1 => Just("b")], 0..40), 1..8),
    ) {
        let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
        let mut trie = Trie::new();
        for (i, p) in patterns.iter().enumerate() {
            trie.insert(p, i);
        }
        for k in keys.iter().map(|k| k.join(".")) {
            let want: Vec<usize> = (0..patterns.len()).filter(|&i| reference_match(&patterns[i], &k)).collect();
            prop_assert_eq!(sorted(trie.matches(&k).into_iter().copied()), want, "key {:?}", k);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Keys beyond the 32 words the matcher keeps inline, against patterns
    /// of similar length.
    #[test]
    fn trie_agrees_with_topic_match_on_long_keys(
        patterns in vec(
            vec(prop_oneof![3 => Just("a"), 3 => Just("b"), 2 => Just("*"), 1 => Just("#")], 0..40)
                .prop_map(|w| w.join(".")),
            1..12,
        ),
        keys in vec(vec(prop_oneof![Just("a"), Just("b")], 28..40).prop_map(|w| w.join(".")), 1..6),
    ) {
        let mut trie = Trie::new();
        for (i, p) in patterns.iter().enumerate() {
            trie.insert(p, i);
        }
        for k in &keys {
            let want: Vec<usize> = (0..patterns.len()).filter(|&i| reference_match(&patterns[i], k)).collect();
            prop_assert_eq!(sorted(trie.matches(k).into_iter().copied()), want, "key {:?}", k);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, u8),
    Remove(usize, u8),
}

fn ops(pool: usize) -> impl Strategy<Value = Vec<Op>> {
    vec(
        prop_oneof![
            (0..pool, 0u8..4).prop_map(|(p, v)| Op::Insert(p, v)),
            (0..pool, 0u8..4).prop_map(|(p, v)| Op::Remove(p, v)),
        ],
        0..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn trie_insert_remove_matches_model(
        (pool, ops) in vec(raw_pattern(), 1..10).prop_flat_map(|pool| {
            let n = pool.len();
            (Just(pool), ops(n))
        }),
        keys in vec(raw_key(), 1..12),
    ) {
        let mut trie: Trie<u8> = Trie::new();
        let mut model: HashMap<&str, BTreeSet<u8>> = HashMap::new();
        for op in &ops {
            match *op {
                Op::Insert(p, v) => {
                    let pat = pool[p].as_str();
                    let set = model.entry(pat).or_default();
                    let was_empty = set.is_empty();
                    set.insert(v);
                    prop_assert_eq!(trie.insert(pat, v), was_empty, "insert {:?} {}", pat, v);
                }
                Op::Remove(p, v) => {
                    let pat = pool[p].as_str();
                    let set = model.entry(pat).or_default();
                    let want = set.remove(&v).then_some(set.is_empty());
                    prop_assert_eq!(trie.remove(pat, &v), want, "remove {:?} {}", pat, v);
                }
            }
            let live = model.values().filter(|s| !s.is_empty()).count();
            prop_assert_eq!(trie.pattern_count(), live);
            prop_assert_eq!(trie.is_empty(), live == 0);
        }
        for (pat, set) in &model {
            prop_assert_eq!(sorted(trie.get(pat).iter().copied()), set.iter().copied().collect::<Vec<_>>());
        }
        for k in &keys {
            let want = sorted(
                model
                    .iter()
                    .filter(|(p, _)| reference_match(p, k))
                    .flat_map(|(_, s)| s.iter().copied()),
            );
            prop_assert_eq!(sorted(trie.matches(k).into_iter().copied()), want.clone(), "matches {:?}", k);
            let mut visited = Vec::new();
            trie.for_each_match(k, |v| visited.push(*v));
            prop_assert_eq!(sorted(visited), want, "for_each_match {:?}", k);
        }
        // Removing everything that is left empties the trie.
        for (pat, set) in &model {
            for v in set {
                prop_assert!(trie.remove(pat, v).is_some());
            }
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.pattern_count(), 0);
        for k in &keys {
            prop_assert!(trie.matches(k).is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Pattern containment
// ---------------------------------------------------------------------------

/// Every key of 0..=max words over {a, b, c}. `c` appears in no pattern, so
/// it stands for "any other word".
fn keys_up_to(max: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer: Vec<String> = vec![String::new()];
    for len in 1..=max {
        let mut next = Vec::new();
        for prefix in &layer {
            for w in ["a", "b", "c"] {
                next.push(if len == 1 {
                    w.to_owned()
                } else {
                    format!("{prefix}.{w}")
                });
            }
        }
        out.extend(next.iter().cloned());
        layer = next;
    }
    out
}

fn universe() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| keys_up_to(5))
}

/// Containment decided on the finite universe: every key `b` matches, `a`
/// matches too.
fn contained_on(keys: &[String], a: &Pattern, b: &Pattern) -> bool {
    keys.iter().all(|k| !b.matches_str(k) || a.matches_str(k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn covers_is_sound(a in valid_pattern(6), b in valid_pattern(6)) {
        if a.covers(&b) {
            for k in universe() {
                prop_assert!(!b.matches_str(k) || a.matches_str(k),
                    "{} covers {} but key {:?} matches only the latter", a, b, k);
            }
        }
    }

    #[test]
    fn covers_is_complete(a in valid_pattern(3), b in valid_pattern(3)) {
        if contained_on(universe(), &a, &b) {
            prop_assert!(a.covers(&b), "{} contains {} on all keys of up to 5 words, but covers says no", a, b);
        }
    }

    #[test]
    fn literal_prefix_bounds_matches_and_folders_are_exact(a in valid_pattern(6)) {
        let prefix = a.literal_prefix();
        let in_folder = |k: &str| match prefix {
            None => true,
            Some(p) => k == p || k.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')),
        };
        for k in universe() {
            if a.matches_str(k) {
                prop_assert!(in_folder(k), "{} matches {:?} outside its prefix {:?}", a, k, prefix);
            } else if a.is_folder() {
                prop_assert!(!in_folder(k), "folder {} misses {:?} inside {:?}", a, k, prefix);
            }
        }
    }

    #[test]
    fn covers_is_reflexive_and_exact_patterns_are_points(a in valid_pattern(6), k in vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..6)) {
        prop_assert!(a.covers(&a));
        let path = Path::parse(&k.join(".")).unwrap();
        let exact = Pattern::exact(&path);
        prop_assert!(exact.is_exact());
        prop_assert_eq!(a.covers(&exact), a.matches(&path), "{} vs {}", a, path);
    }
}

/// Completeness where a `*` must take one word out of a `#`: every key `#.a`
/// matches has at least one word, so `*.#` covers it; `#.*` and `*.#` are
/// the same set, so each covers the other.
#[test]
fn covers_is_complete_on_small_patterns() {
    let a = Pattern::parse("*.#").unwrap();
    let b = Pattern::parse("#.a").unwrap();
    assert!(contained_on(universe(), &a, &b));
    assert!(a.covers(&b), "*.# covers #.a");
    let a = Pattern::parse("#.*").unwrap();
    let b = Pattern::parse("*.#").unwrap();
    assert!(a.covers(&b), "#.* covers *.# (they are the same set)");
    let patterns = all_patterns(3);
    let mut missed = Vec::new();
    for a in &patterns {
        for b in &patterns {
            if contained_on(universe(), a, b) && !a.covers(b) {
                missed.push(format!("{a} ⊇ {b}"));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "{} containments missed, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(10)]
    );
}

/// Every valid pattern of 1..=max words over {a, b, *, #}.
fn all_patterns(max: usize) -> Vec<Pattern> {
    let mut out = Vec::new();
    let mut layer: Vec<String> = vec![String::new()];
    for len in 1..=max {
        let mut next = Vec::new();
        for prefix in &layer {
            for w in ["a", "b", "*", "#"] {
                next.push(if len == 1 {
                    w.to_owned()
                } else {
                    format!("{prefix}.{w}")
                });
            }
        }
        out.extend(next.iter().map(|s| Pattern::parse(s).unwrap()));
        layer = next;
    }
    out
}

/// Match sets as bitsets over a key universe, so that all pairs can be
/// compared quickly.
fn match_bits(p: &Pattern, keys: &[String]) -> Vec<u64> {
    let mut bits = vec![0u64; keys.len().div_ceil(64)];
    for (i, k) in keys.iter().enumerate() {
        if p.matches_str(k) {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

fn subset(b: &[u64], a: &[u64]) -> bool {
    b.iter().zip(a).all(|(x, y)| x & !y == 0)
}

/// Keys of up to 5 words decide containment for patterns of up to 3 words:
/// the answer is the same as with keys of up to 7 words. This is what makes
/// the finite universe used above a sound stand-in for all keys.
#[test]
fn five_word_universe_decides_containment_of_three_word_patterns() {
    let patterns = all_patterns(3);
    let (small, large) = (keys_up_to(5), keys_up_to(7));
    let bits_small: Vec<_> = patterns.iter().map(|p| match_bits(p, &small)).collect();
    let bits_large: Vec<_> = patterns.iter().map(|p| match_bits(p, &large)).collect();
    for (i, a) in patterns.iter().enumerate() {
        for (j, b) in patterns.iter().enumerate() {
            assert_eq!(
                subset(&bits_small[j], &bits_small[i]),
                subset(&bits_large[j], &bits_large[i]),
                "{a} vs {b}"
            );
        }
    }
}

/// Exhaustive over all pairs of patterns of up to 3 words: `covers` is sound
/// and complete.
#[test]
fn covers_exhaustive_on_three_word_patterns() {
    let patterns = all_patterns(3);
    let keys = universe();
    let bits: Vec<_> = patterns.iter().map(|p| match_bits(p, keys)).collect();
    let mut incomplete = 0;
    for (i, a) in patterns.iter().enumerate() {
        for (j, b) in patterns.iter().enumerate() {
            let contained = subset(&bits[j], &bits[i]);
            let covers = a.covers(b);
            assert!(!covers || contained, "unsound: {a} covers {b}");
            if contained && !covers {
                incomplete += 1;
            }
        }
    }
    assert_eq!(incomplete, 0, "containments covers missed");
}

// ---------------------------------------------------------------------------
// Messages and frames
// ---------------------------------------------------------------------------

fn body_fields(m: &Message) -> Vec<(&'static str, Value)> {
    match &m.body {
        Body::None => vec![],
        Body::Json(_) => vec![("body", m.body.as_json().expect("JSON body"))],
        Body::Binary(b) => vec![("body_base64", Value::String(BASE64.encode(b)))],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn message_json_round_trips(m in message()) {
        let limits = Limits::default();
        let bytes = m.to_json();
        let back = Message::from_json(&bytes, &limits).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.cursor, m.cursor, "the cursor round trips too");
        // And it is ordinary JSON with exactly the documented fields.
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want: BTreeSet<&str> = ["path", "uuid", "class", "meta"].into();
        if m.cursor.is_some() {
            want.insert("cursor");
        }
        want.extend(body_fields(&m).iter().map(|(k, _)| *k));
        prop_assert_eq!(keys, want);
    }

    #[test]
    fn msg_frame_is_the_message_with_op_msg(m in message()) {
        let frame = protocol::msg_frame(&m);
        let v: Value = serde_json::from_slice(&frame)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&frame))))?;
        let obj = v.as_object().unwrap();
        prop_assert_eq!(&obj["op"], "msg");
        prop_assert_eq!(&obj["path"], m.path.as_str());
        prop_assert_eq!(&obj["uuid"], &m.uuid.hyphenated().to_string());
        prop_assert_eq!(&obj["class"], m.class.as_str());
        prop_assert_eq!(&obj["meta"], &Value::Object(m.meta.clone()));
        let body = body_fields(&m);
        for (k, want) in &body {
            prop_assert_eq!(&obj[*k], want);
        }
        match m.cursor {
            Some(c) => prop_assert_eq!(&obj["cursor"], &c.to_string()),
            None => prop_assert!(!obj.contains_key("cursor")),
        }
        prop_assert_eq!(obj.len(), 5 + body.len() + usize::from(m.cursor.is_some()));
        // A reader that ignores `op` gets the message back.
        prop_assert_eq!(Message::from_json(&frame, &Limits::default()).unwrap(), m.clone());
        // msg_frame is to_json with `"op":"msg",` spliced in front.
        let json = m.to_json();
        prop_assert_eq!(&frame[..12], br#"{"op":"msg","#);
        prop_assert_eq!(&frame[12..], &json[1..]);
    }

    #[test]
    fn pub_frame_round_trips(m in message(), id in any::<u64>()) {
        let mut obj = Map::new();
        obj.insert("op".into(), "pub".into());
        obj.insert("id".into(), id.into());
        obj.insert("path".into(), m.path.as_str().into());
        obj.insert("uuid".into(), m.uuid.to_string().into());
        obj.insert("class".into(), m.class.as_str().into());
        obj.insert("meta".into(), Value::Object(m.meta.clone()));
        for (k, v) in body_fields(&m) {
            obj.insert(k.into(), v);
        }
        let text = Value::Object(obj).to_string();
        match protocol::parse_client_frame(&text, &Limits::default()) {
            Ok(ClientFrame::Pub { id: got_id, message }) => {
                prop_assert_eq!(got_id, id);
                // JSON bodies are kept as the publisher's text, which here is
                // serde_json's compact form, the same as Body::json's.
                prop_assert_eq!(message, m);
            }
            other => prop_assert!(false, "{:?} for {}", other, text),
        }
    }

    #[test]
    fn ok_messages_frame_is_valid_json(ms in vec(message(), 0..4), id in any::<u64>()) {
        let frame = protocol::ok_messages_frame(id, &ms, false, None, protocol::MAX_REPLY_BYTES);
        let v: Value = serde_json::from_slice(&frame).unwrap();
        prop_assert_eq!(&v["op"], "ok");
        prop_assert_eq!(&v["id"], &Value::from(id));
        let arr = v["messages"].as_array().unwrap();
        prop_assert_eq!(arr.len(), ms.len());
        for (got, m) in arr.iter().zip(&ms) {
            let back = Message::from_json(got.to_string().as_bytes(), &Limits::default()).unwrap();
            prop_assert_eq!(&back.path, &m.path);
            prop_assert_eq!(back.uuid, m.uuid);
        }
    }
}

/// serde_json, built without its `float_roundtrip` feature, parses some
/// floats one ULP off, so a message whose meta holds such a float is not
/// equal to itself after `to_json` / `from_json`. JSON bodies are unaffected
/// (they are kept as raw text).
#[test]
fn meta_floats_round_trip() {
    let mut m = Message::new(Path::parse("a").unwrap(), Body::None);
    m.meta.insert("f".into(), json!(-8.212255251336632e-94));
    let back = Message::from_json(&m.to_json(), &Limits::default()).unwrap();
    assert_eq!(back, m);
}

/// `Body::json(&Value::Null)` is no body, as `"body":null` is on the wire.
#[test]
fn json_null_body_round_trips() {
    let mut m = Message::new(Path::parse("a").unwrap(), Body::json(&Value::Null));
    m.class = Class::Gold;
    let back = Message::from_json(&m.to_json(), &Limits::default()).unwrap();
    assert_eq!(back, m);
}

// ---------------------------------------------------------------------------
// Parsers never panic
// ---------------------------------------------------------------------------

/// Strings that are mostly path-like, so that the interesting branches are
/// reached, mixed with fully arbitrary text.
fn fuzz_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ab.*#\\-\u{0}\n ]{0,40}",
        vec(
            prop_oneof![
                Just("a"),
                Just(""),
                Just("*"),
                Just("#"),
                Just("x y"),
                Just("é")
            ],
            0..40
        )
        .prop_map(|w| w.join(".")),
        (1usize..2000).prop_map(|n| "x.".repeat(n)),
    ]
}

fn small_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..6, 0usize..20).prop_map(|(max_elements, max_bytes)| Limits {
            max_elements,
            max_bytes
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn path_and_pattern_parsers_are_total(s in fuzz_string(), limits in small_limits()) {
        let path = Path::parse_with(&s, &limits);
        let pat = Pattern::parse_with(&s, &limits);
        let elems: Vec<&str> = s.split('.').collect();
        let valid_pattern = !s.is_empty()
            && s.len() <= limits.max_bytes
            && elems.len() <= limits.max_elements
            && elems.iter().all(|e| !e.is_empty() && !e.chars().any(char::is_control));
        prop_assert_eq!(pat.is_ok(), valid_pattern, "{:?}", s);
        prop_assert_eq!(path.is_ok(), valid_pattern && elems.iter().all(|e| *e != "*" && *e != "#"), "{:?}", s);
        if let Ok(p) = &path {
            prop_assert_eq!(p.as_str(), s.as_str());
            prop_assert_eq!(p.depth(), elems.len());
            prop_assert_eq!(p.category(), elems[0]);
            prop_assert_eq!(p.ancestors().count(), elems.len() - 1);
            prop_assert_eq!(p.ancestors().last(), s.rsplit_once('.').map(|(parent, _)| parent));
            for a in p.ancestors() {
                prop_assert!(s.starts_with(a) && s.as_bytes()[a.len()] == b'.');
            }
            let exact = Pattern::exact(p);
            prop_assert!(exact.matches(p) && exact.is_exact());
            // Serde agrees with parse.
            let back: Path = serde_json::from_value(Value::String(s.clone())).unwrap();
            prop_assert_eq!(&back, p);
        }
        if let Ok(p) = &pat {
            prop_assert!(p.covers(p));
            if let Ok(path) = &path {
                // No wildcard: the pattern is its own literal prefix.
                prop_assert!(p.is_exact() && !p.is_folder());
                prop_assert_eq!(p.literal_prefix(), Some(path.as_str()));
            } else {
                let _ = (p.literal_prefix(), p.is_folder());
            }
        }
        // The other string-taking functions must not panic either.
        let _ = Path::parse(&s);
        let _ = Pattern::parse(&s);
        let _ = topic_match(&s, &s);
        let _ = topic_match("#.a.*", &s);
        let _ = idpath::split_id_path(&s);
        let _ = idpath::parse_decimal(&s);
        let _ = idpath::join_id(s.split('.'));
        let _ = Address::parse(&s);
        let _ = RoutingKey::parse(&s);
        let _ = Message::from_json(s.as_bytes(), &limits);
        let _ = protocol::parse_client_frame(&s, &limits);
    }
}

fn fuzz_json_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => json_value(),
        1 => (-5i64..1100).prop_map(Value::from),
        1 => prop_oneof![Just("gold"), Just("silver"), Just("bronze"), Just("platinum")].prop_map(Value::from),
        1 => v1_uuid().prop_map(|u| Value::String(u.to_string())),
        1 => Just(Value::String("67e55044-10b1-426f-9247-bb680e5fe0c8".into())),
        1 => fuzz_string().prop_map(Value::String),
        1 => prop_oneof![Just("feeds.#"), Just("a.*.c"), Just("a..b"), Just("*"), Just("AA=="), Just("!!")].prop_map(Value::from),
    ]
}

const OPS: &[&str] = &[
    "auth", "sub", "unsub", "pub", "history", "latest", "dismiss", "ping",
];
const FIELDS: &[&str] = &[
    "pattern",
    "path",
    "token",
    "uuid",
    "before",
    "since",
    "history",
    "limit",
    "class",
    "meta",
    "body",
    "body_base64",
];

fn fuzz_frame()
-> impl Strategy<Value = (Option<Value>, Option<Value>, BTreeMap<&'static str, Value>)> {
    let op = proptest::option::weighted(
        0.95,
        prop_oneof![
            8 => proptest::sample::select(OPS).prop_map(Value::from),
            1 => ".{0,6}".prop_map(Value::from),
            1 => json_value(),
        ],
    );
    let id = proptest::option::weighted(
        0.9,
        prop_oneof![
            6 => any::<u64>().prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => json_value(),
        ],
    );
    let fields = btree_map(proptest::sample::select(FIELDS), fuzz_json_field(), 0..8);
    (op, id, fields)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn client_frame_parser_is_total((op, id, fields) in fuzz_frame()) {
        let mut obj = Map::new();
        if let Some(op) = &op {
            obj.insert("op".into(), op.clone());
        }
        if let Some(id) = &id {
            obj.insert("id".into(), id.clone());
        }
        for (k, v) in &fields {
            obj.insert((*k).into(), v.clone());
        }
        let text = Value::Object(obj).to_string();
        let want_id = id.as_ref().and_then(Value::as_u64);
        match protocol::parse_client_frame(&text, &Limits::default()) {
            Ok(frame) => {
                prop_assert_eq!(Some(frame.id()), want_id, "{}", text);
                prop_assert!(op.as_ref().and_then(Value::as_str).is_some_and(|o| OPS.contains(&o)));
            }
            Err(e) => {
                // The echoed id is the frame's, when it could be read.
                if e.id.is_some() {
                    prop_assert_eq!(e.id, want_id, "{}", text);
                }
                let v: Value = serde_json::from_str(&e.to_frame()).unwrap();
                prop_assert_eq!(&v["op"], "err");
                prop_assert_eq!(&v["code"], e.code.as_str());
            }
        }
        // Truncations of a frame are refused, never a panic.
        for cut in (0..text.len()).step_by(7).filter(|c| text.is_char_boundary(*c)) {
            let _ = protocol::parse_client_frame(&text[..cut], &Limits::default());
        }
    }

    #[test]
    fn non_objects_are_bad_json(v in json_value().prop_filter("objects", |v| !v.is_object())) {
        let e = protocol::parse_client_frame(&v.to_string(), &Limits::default()).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::BadJson);
        prop_assert_eq!(e.id, None);
    }
}

#[test]
fn typical_frames_parse() {
    // A smoke test of the frames the benchmarks use, so that a broken
    // benchmark input shows up here first.
    let text = json!({
        "op": "pub", "id": 42, "path": "feeds.breaking-news.56", "class": "gold",
        "meta": {"source": "wire"}, "body": {"headline": "x"}
    })
    .to_string();
    assert!(matches!(
        protocol::parse_client_frame(&text, &Limits::default()),
        Ok(ClientFrame::Pub { id: 42, .. })
    ));
}
