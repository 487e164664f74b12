//! Patterns: what a device subscribes to and what history is read by.
//!
//! The semantics are exactly those of a RabbitMQ topic exchange: `*` matches
//! exactly one element, `#` matches zero or more. `feeds.#` matches `feeds`
//! and `feeds.a.b`; `feeds.*` matches `feeds.a` but not `feeds`.
//!
//! [`topic_match`] works on raw, unvalidated strings, including empty words,
//! so that the embedded postoffice behaves like RabbitMQ on any routing key.
//! [`Pattern`] is the validated form used at the edges (no empty elements,
//! within [`Limits`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::path::{Limits, Path, PathError, check_elements};

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternElem<'a> {
    /// Matches exactly this element.
    Literal(&'a str),
    /// `*`: exactly one element.
    Star,
    /// `#`: zero or more elements.
    Hash,
}

impl<'a> PatternElem<'a> {
    /// Classifies one `.`-separated word of a pattern.
    pub fn of(word: &'a str) -> Self {
        match word {
            "*" => PatternElem::Star,
            "#" => PatternElem::Hash,
            w => PatternElem::Literal(w),
        }
    }
}

/// Splits a routing or binding key into words the way RabbitMQ does: the
/// empty key has zero words, otherwise every `.` separates two words (which
/// may be empty).
pub fn words(key: &str) -> impl Iterator<Item = &str> + Clone {
    let mut split = key.split('.');
    if key.is_empty() {
        split.next();
    }
    split
}

/// RabbitMQ topic matching on raw strings. Iterative with one backtrack point
/// per `#`, which is enough for correctness because `#` is the only element
/// that can consume a variable number of words.
pub fn topic_match(pattern: &str, key: &str) -> bool {
    let p: smallvec_like::Words<'_> = smallvec_like::Words::new(pattern);
    let k: smallvec_like::Words<'_> = smallvec_like::Words::new(key);
    match_words(p.as_slice(), k.as_slice())
}

fn match_words(p: &[&str], k: &[&str]) -> bool {
    // Classic wildcard matching with backtracking to the last `#`.
    let (mut pi, mut ki) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None; // (pattern index of '#', key index)
    while ki < k.len() {
        if pi < p.len() {
            match PatternElem::of(p[pi]) {
                PatternElem::Hash => {
                    star = Some((pi, ki));
                    pi += 1;
                    continue;
                }
                PatternElem::Star => {
                    pi += 1;
                    ki += 1;
                    continue;
                }
                PatternElem::Literal(w) if w == k[ki] => {
                    pi += 1;
                    ki += 1;
                    continue;
                }
                PatternElem::Literal(_) => {}
            }
        }
        match star {
            Some((spi, ski)) => {
                pi = spi + 1;
                ki = ski + 1;
                star = Some((spi, ski + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|w| *w == "#")
}

/// Tiny stack-first word buffer so matching does not allocate for ordinary
/// keys (up to 32 words, the default path limit).
pub(crate) mod smallvec_like {
    pub(crate) struct Words<'a> {
        inline: [&'a str; 32],
        len: usize,
        heap: Vec<&'a str>,
    }

    impl<'a> Words<'a> {
        pub(crate) fn new(key: &'a str) -> Self {
            let mut w = Words {
                inline: [""; 32],
                len: 0,
                heap: Vec::new(),
            };
            for word in super::words(key) {
                if w.len < 32 {
                    w.inline[w.len] = word;
                } else {
                    if w.heap.is_empty() {
                        w.heap.extend_from_slice(&w.inline);
                    }
                    w.heap.push(word);
                }
                w.len += 1;
            }
            w
        }

        pub(crate) fn as_slice(&self) -> &[&'a str] {
            if self.len <= 32 {
                &self.inline[..self.len]
            } else {
                &self.heap
            }
        }
    }
}

/// A validated subscription / history pattern.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(String);

impl Pattern {
    /// Parses with the default [`Limits`].
    pub fn parse(s: &str) -> Result<Pattern, PathError> {
        Self::parse_with(s, &Limits::default())
    }

    /// Parses with explicit limits. Elements are literals, `*` or `#`; no
    /// element may be empty.
    pub fn parse_with(s: &str, limits: &Limits) -> Result<Pattern, PathError> {
        check_elements(s, limits, true)?;
        Ok(Pattern(s.to_owned()))
    }

    /// The pattern that matches exactly one path.
    pub fn exact(path: &Path) -> Pattern {
        Pattern(path.as_str().to_owned())
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The elements, classified.
    pub fn elements(&self) -> impl Iterator<Item = PatternElem<'_>> {
        self.0.split('.').map(PatternElem::of)
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &Path) -> bool {
        topic_match(&self.0, path.as_str())
    }

    /// Whether `key` (any raw string) matches.
    pub fn matches_str(&self, key: &str) -> bool {
        topic_match(&self.0, key)
    }

    /// True if the pattern has no wildcard: it names one path.
    pub fn is_exact(&self) -> bool {
        self.elements()
            .all(|e| matches!(e, PatternElem::Literal(_)))
    }

    /// The longest run of literal elements before the first wildcard, as
    /// text (`feeds.breaking-news` for `feeds.breaking-news.#`), or `None`
    /// when the pattern starts with a wildcard. Every path the pattern
    /// matches lies in this folder (or is the folder itself).
    pub fn literal_prefix(&self) -> Option<&str> {
        let mut end = 0;
        for (i, word) in self.0.split('.').enumerate() {
            if word == "*" || word == "#" {
                break;
            }
            end += word.len() + usize::from(i > 0);
        }
        (end > 0).then(|| &self.0[..end])
    }

    /// True for `<literal prefix>.#` and `#`: every message in the folder of
    /// the literal prefix matches, so a store can answer with one range read
    /// and no filtering.
    pub fn is_folder(&self) -> bool {
        let mut elems = self.elements().peekable();
        while let Some(e) = elems.next() {
            match e {
                PatternElem::Literal(_) => {}
                PatternElem::Hash => return elems.peek().is_none(),
                PatternElem::Star => return false,
            }
        }
        false
    }

    /// Whether every key this pattern matches is also matched by `self`:
    /// `feeds.#` covers `feeds.breaking-news.*`. Used to check a requested
    /// subscription against the patterns a token allows. Exact (both sound
    /// and complete) up to [`COVERS_STATE_LIMIT`] explored states, beyond
    /// which it answers `false`: for authorization, refusing is the safe side.
    pub fn covers(&self, other: &Pattern) -> bool {
        let a: Vec<PatternElem<'_>> = self.elements().collect();
        let b: Vec<PatternElem<'_>> = other.elements().collect();
        covers(&a, &b)
    }
}

/// Most product states [`Pattern::covers`] explores before refusing.
pub const COVERS_STATE_LIMIT: usize = 4096;

/// A symbol of the key alphabet that matters for two patterns: one of their
/// literals, or any other word (`None`), which only wildcards match.
type Symbol<'a> = Option<&'a str>;

/// The positions of a pattern an NFA can be in, as a bit set. Position `i`
/// means "the first `i` elements are matched"; `#` loops on itself.
fn closure(p: &[PatternElem<'_>], mut set: u64) -> u64 {
    // `#` may match zero words: from `i` also reach `i + 1`. Positions only
    // grow, so one forward pass suffices.
    for (i, e) in p.iter().enumerate() {
        if set & (1 << i) != 0 && *e == PatternElem::Hash {
            set |= 1 << (i + 1);
        }
    }
    set
}

fn step(p: &[PatternElem<'_>], set: u64, sym: Symbol<'_>) -> u64 {
    let mut next = 0u64;
    for (i, e) in p.iter().enumerate() {
        if set & (1 << i) == 0 {
            continue;
        }
        match e {
            PatternElem::Hash => next |= 1 << i,
            PatternElem::Star => next |= 1 << (i + 1),
            PatternElem::Literal(w) if sym == Some(*w) => next |= 1 << (i + 1),
            PatternElem::Literal(_) => {}
        }
    }
    closure(p, next)
}

/// Language containment L(b) ⊆ L(a) by exploring the product of b's and
/// a's position sets (a subset construction) over the symbols that can
/// make a difference: the literals of both patterns and one "other" word.
/// Containment fails iff some reachable state has b accepting and a not.
fn covers(a: &[PatternElem<'_>], b: &[PatternElem<'_>]) -> bool {
    if a.len() >= 63 || b.len() >= 63 {
        return false;
    }
    let mut symbols: Vec<Symbol<'_>> = vec![None];
    for e in a.iter().chain(b) {
        if let PatternElem::Literal(w) = e
            && !symbols.contains(&Some(*w))
        {
            symbols.push(Some(*w));
        }
    }
    let (a_accept, b_accept) = (1u64 << a.len(), 1u64 << b.len());
    let start = (closure(b, 1), closure(a, 1));
    let mut seen = std::collections::HashSet::from([start]);
    let mut todo = vec![start];
    while let Some((sb, sa)) = todo.pop() {
        if sb & b_accept != 0 && sa & a_accept == 0 {
            return false;
        }
        for &sym in &symbols {
            let nb = step(b, sb, sym);
            if nb == 0 {
                continue;
            }
            let next = (nb, step(a, sa, sym));
            if seen.insert(next) {
                if seen.len() > COVERS_STATE_LIMIT {
                    return false;
                }
                todo.push(next);
            }
        }
    }
    true
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pattern, key, expected), including the RabbitMQ edge cases measured
    /// on a real broker (see deploy notes): empty words and the empty key.
    const CASES: &[(&str, &str, bool)] = &[
        ("feeds.#", "feeds", true),
        ("feeds.#", "feeds.a.b", true),
        ("feeds.#", "feeds.", true),
        ("feeds.#", "feedsx", false),
        ("feeds.*", "feeds.a", true),
        ("feeds.*", "feeds", false),
        ("feeds.*", "feeds.", true),
        ("feeds.*.x", "feeds..x", true),
        ("*", "", false),
        ("#", "", true),
        ("#", "a.b.c", true),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.x.y.c", false),
        ("a.*.#", "a", false),
        ("a.*.#", "a.b", true),
        ("#.b.#", "b", true),
        ("#.b.#", "a.b.c.b", true),
        ("#.#", "", true),
        ("*.*", "a", false),
        ("*.*", "a.b", true),
        ("a.b", "a.b", true),
        ("a.b", "a.b.c", false),
        ("a.*.c.#", "a.b.c", true),
        ("a.*.c.#", "a.b.d", false),
        ("#.a.*", "x.y.a.z", true),
        ("#.a.*", "x.y.a", false),
        ("", "", true),
        ("", "a", false),
    ];

    #[test]
    fn topic_semantics() {
        for (p, k, want) in CASES {
            assert_eq!(topic_match(p, k), *want, "pattern {p:?} key {k:?}");
        }
    }

    #[test]
    fn validation() {
        assert!(Pattern::parse("feeds.#").is_ok());
        assert!(Pattern::parse("*.b.#").is_ok());
        assert_eq!(
            Pattern::parse("a..#").unwrap_err(),
            PathError::EmptyElement { index: 1 }
        );
        assert_eq!(Pattern::parse("").unwrap_err(), PathError::Empty);
    }

    #[test]
    fn literal_prefix_and_folder() {
        let p = |s| Pattern::parse(s).unwrap();
        assert_eq!(
            p("feeds.breaking-news.#").literal_prefix(),
            Some("feeds.breaking-news")
        );
        assert!(p("feeds.breaking-news.#").is_folder());
        assert_eq!(p("feeds.*.56").literal_prefix(), Some("feeds"));
        assert!(!p("feeds.*.56").is_folder());
        assert_eq!(p("#").literal_prefix(), None);
        assert!(p("#").is_folder());
        assert_eq!(p("a.b").literal_prefix(), Some("a.b"));
        assert!(p("a.b").is_exact());
        assert!(!p("a.b").is_folder());
        assert!(!p("a.#.b").is_folder());
    }

    #[test]
    fn containment() {
        let cases: &[(&str, &str, bool)] = &[
            ("#", "anything.#", true),
            ("feeds.#", "feeds.breaking-news.*", true),
            ("feeds.#", "feeds", true),
            ("feeds.#", "#", false),
            ("feeds.*", "feeds.x", true),
            ("feeds.*", "feeds.#", false),
            ("feeds.*", "feeds.*", true),
            ("*.#", "#", false),
            ("#.#", "#", true),
            ("#.a", "*.#.a", true),
            ("a.#", "#.a", false),
            ("id.*.c.2.x.M", "id.prefs.c.2.x.M", true),
            ("id.*.c.2.x.M", "id.*.c.2.x.M.#", false),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("*.#", "#.a", true),
            ("#.*", "*.#", true),
            ("*.#", "#.*", true),
            ("a.*.#", "a.#.a", true),
            ("*.#", "#", false),
        ];
        for (a, b, want) in cases {
            let (pa, pb) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
            assert_eq!(pa.covers(&pb), *want, "{a} covers {b}");
        }
    }
}
