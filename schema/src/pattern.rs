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
    /// subscription against the patterns a token allows.
    pub fn covers(&self, other: &Pattern) -> bool {
        let a: Vec<PatternElem<'_>> = self.elements().collect();
        let b: Vec<PatternElem<'_>> = other.elements().collect();
        covers(&a, &b)
    }
}

/// Pattern containment by dynamic programming: `memo[i][j]` answers whether
/// `a[i..]` covers `b[j..]`. A `*` in `b` stands for an arbitrary single word,
/// which only `*` or `#` in `a` can absorb; a `#` in `b` can be any sequence,
/// which only `#` in `a` can absorb.
fn covers(a: &[PatternElem<'_>], b: &[PatternElem<'_>]) -> bool {
    let (n, m) = (a.len(), b.len());
    // memo[i * (m + 1) + j]
    let mut memo = vec![false; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    memo[idx(n, m)] = true;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            let v = if i == n {
                false
            } else {
                match a[i] {
                    PatternElem::Hash => {
                        // `#` matches nothing more, or absorbs b[j] and stays.
                        memo[idx(i + 1, j)] || (j < m && memo[idx(i, j + 1)])
                    }
                    PatternElem::Star => {
                        j < m && !matches!(b[j], PatternElem::Hash) && memo[idx(i + 1, j + 1)]
                    }
                    PatternElem::Literal(w) => {
                        j < m && b[j] == PatternElem::Literal(w) && memo[idx(i + 1, j + 1)]
                    }
                }
            };
            memo[idx(i, j)] = v;
        }
    }
    memo[idx(0, 0)]
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
        ];
        for (a, b, want) in cases {
            let (pa, pb) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
            assert_eq!(pa.covers(&pb), *want, "{a} covers {b}");
        }
    }
}
