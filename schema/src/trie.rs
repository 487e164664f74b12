//! The topic trie: one matcher from patterns to subscribers.
//!
//! Used by the embedded postoffice (binding keys to queues) and by the
//! gateway's local fan-out (patterns to connections). Patterns that share a
//! prefix share nodes; matching follows only the branches a key can take
//! (one literal lookup, the `*` child and the `#` child per level), keeping
//! the set of nodes reached after each word, so its cost is polynomial in
//! the key's depth and the nodes on its way (never combinatorial in the
//! `#`s of a pattern), and independent of the number of patterns. Semantics are RabbitMQ's topic exchange on raw strings,
//! including empty words (see [`crate::pattern::topic_match`]).

use std::collections::HashMap;

use crate::pattern::smallvec_like::Words;

/// Maps patterns to values. A pattern may hold several values (e.g. several
/// connections subscribed to `feeds.#`); each value is stored once per pattern.
#[derive(Debug)]
pub struct Trie<T> {
    root: Node<T>,
    patterns: usize,
}

#[derive(Debug)]
struct Node<T> {
    literal: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            hash: None,
            values: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.literal.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    fn child_mut(&mut self, word: &str) -> &mut Node<T> {
        match word {
            "*" => self.star.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            w => self.literal.entry(w.into()).or_default(),
        }
    }
}

impl<T> Default for Trie<T> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            patterns: 0,
        }
    }
}

impl<T: PartialEq> Trie<T> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` under `pattern`. Returns `true` when the pattern had no
    /// value before: the caller's cue to create an upstream binding.
    /// Adding a value that is already there changes nothing and returns `false`.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut node = &mut self.root;
        for word in crate::pattern::words(pattern) {
            node = node.child_mut(word);
        }
        let first = node.values.is_empty();
        if !node.values.contains(&value) {
            node.values.push(value);
            if first {
                self.patterns += 1;
            }
        }
        first
    }

    /// Removes `value` from `pattern`. Returns `Some(true)` when the pattern
    /// has no value left (the caller's cue to drop the upstream binding),
    /// `Some(false)` when others remain, `None` when it was not there.
    /// Empty branches are pruned so the trie does not grow with churn.
    pub fn remove(&mut self, pattern: &str, value: &T) -> Option<bool> {
        let words = Words::new(pattern);
        let (found, now_empty) = remove_rec(&mut self.root, words.as_slice(), value);
        if found && now_empty {
            self.patterns -= 1;
        }
        found.then_some(now_empty)
    }

    /// Calls `f` with every value of every pattern that matches `key`. Each
    /// matching pattern is visited once, even when a pattern with several
    /// `#` could match the key in more than one way.
    pub fn for_each_match<'a>(&'a self, key: &str, mut f: impl FnMut(&'a T)) {
        self.for_each_matching_pattern(key, |values| values.iter().for_each(&mut f));
    }

    /// Calls `f` once per matching pattern with that pattern's values.
    /// Values are unique within one call of `f`; across calls the same value
    /// may appear again (a subscriber under two matching patterns), which
    /// the caller dedupes only when there was more than one call.
    pub fn for_each_matching_pattern<'a>(&'a self, key: &str, mut f: impl FnMut(&'a [T])) {
        let words = Words::new(key);
        let mut hits: Vec<&Node<T>> = Vec::new();
        let _work = walk(&self.root, words.as_slice(), &mut hits);
        // A node reached both looping and not is one pattern.
        if hits.len() > 1 {
            hits.sort_unstable_by_key(|n| std::ptr::from_ref::<Node<T>>(n) as usize);
            hits.dedup_by(|a, b| std::ptr::eq(*a, *b));
        }
        for node in hits {
            f(&node.values);
        }
    }

    /// The values of the matching patterns, collected.
    pub fn matches(&self, key: &str) -> Vec<&T> {
        let mut out = Vec::new();
        self.for_each_match(key, |v| out.push(v));
        out
    }

    /// The values held under exactly this pattern.
    pub fn get(&self, pattern: &str) -> &[T] {
        let mut node = &self.root;
        for word in crate::pattern::words(pattern) {
            let next = match word {
                "*" => node.star.as_deref(),
                "#" => node.hash.as_deref(),
                w => node.literal.get(w),
            };
            match next {
                Some(n) => node = n,
                None => return &[],
            }
        }
        &node.values
    }

    /// Number of distinct patterns holding at least one value.
    pub fn pattern_count(&self) -> usize {
        self.patterns
    }

    /// True when no pattern holds a value.
    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }
}

/// One state of the walk: a node, and whether it was reached through a `#`
/// edge (such a node may go on swallowing words).
type State<'a, T> = (&'a Node<T>, bool);

/// Adds `state` and everything its `#` children reach without a word
/// (`#` matches zero words; `#.#` chains).
fn enter<'a, T>(states: &mut Vec<State<'a, T>>, state: State<'a, T>) {
    let mut next = Some(state);
    while let Some(st) = next {
        states.push(st);
        next = st.0.hash.as_deref().map(|h| (h, true));
    }
}

/// Sorts and dedupes a state set by node (and flag), so that each node is
/// walked once per word whatever number of ways reached it.
fn dedupe<T>(states: &mut Vec<State<'_, T>>) {
    states.sort_unstable_by_key(|(n, looping)| {
        (std::ptr::from_ref::<Node<T>>(*n) as usize, *looping)
    });
    states.dedup_by(|a, b| std::ptr::eq(a.0, b.0) && a.1 == b.1);
}

/// The nodes whose patterns match `words`: a simulation of the trie as an
/// automaton over the set of states reached after each word. Each node is
/// in a set at most twice, so a key of `n` words costs `O(n × nodes
/// reached)` whatever the patterns; trying every split for every `#`
/// instead grows combinatorially with the `#`s on one pattern.
/// Returns how many states it stepped through: the work done.
fn walk<'a, T>(root: &'a Node<T>, words: &[&str], hits: &mut Vec<&'a Node<T>>) -> usize {
    let mut states: Vec<State<'a, T>> = Vec::new();
    enter(&mut states, (root, false));
    let mut next: Vec<State<'a, T>> = Vec::new();
    let mut work = 0;
    for word in words {
        work += states.len();
        next.clear();
        for &(node, looping) in &states {
            if looping {
                next.push((node, true));
            }
            if let Some(c) = node.literal.get(*word) {
                enter(&mut next, (c, false));
            }
            if let Some(s) = node.star.as_deref() {
                enter(&mut next, (s, false));
            }
        }
        dedupe(&mut next);
        std::mem::swap(&mut states, &mut next);
        if states.is_empty() {
            return work;
        }
    }
    hits.extend(
        states
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !n.values.is_empty()),
    );
    work + states.len()
}

/// Returns (found, pattern now has no values).
fn remove_rec<T: PartialEq>(node: &mut Node<T>, words: &[&str], value: &T) -> (bool, bool) {
    let Some((word, rest)) = words.split_first() else {
        let Some(pos) = node.values.iter().position(|v| v == value) else {
            return (false, false);
        };
        node.values.swap_remove(pos);
        return (true, node.values.is_empty());
    };
    let result;
    match *word {
        "*" | "#" => {
            let slot = if *word == "*" {
                &mut node.star
            } else {
                &mut node.hash
            };
            let Some(child) = slot.as_deref_mut() else {
                return (false, false);
            };
            result = remove_rec(child, rest, value);
            if child.is_empty() {
                *slot = None;
            }
        }
        w => {
            let Some(child) = node.literal.get_mut(w) else {
                return (false, false);
            };
            result = remove_rec(child, rest, value);
            if child.is_empty() {
                node.literal.remove(w);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::topic_match;

    #[test]
    fn insert_match_remove() {
        let mut t = Trie::new();
        assert!(t.insert("feeds.#", 1));
        assert!(!t.insert("feeds.#", 2));
        assert!(!t.insert("feeds.#", 2), "duplicate value is a no-op");
        assert!(t.insert("feeds.*.56", 3));
        assert!(t.insert("id.*.c.2.x.M", 4));
        let mut got: Vec<i32> = t
            .matches("feeds.breaking-news.56")
            .into_iter()
            .copied()
            .collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(
            t.matches("feeds").into_iter().copied().collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(t.matches("id.prefs.c.2.x.M"), [&4]);
        assert!(t.matches("id.prefs.c.2.x").is_empty());
        assert_eq!(t.pattern_count(), 3);
        assert_eq!(t.remove("feeds.#", &1), Some(false));
        assert_eq!(t.remove("feeds.#", &1), None);
        assert_eq!(t.remove("feeds.#", &2), Some(true));
        assert_eq!(t.remove("feeds.*.56", &3), Some(true));
        assert_eq!(t.remove("id.*.c.2.x.M", &4), Some(true));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "branches are pruned");
    }

    #[test]
    fn a_pattern_matching_twice_is_visited_once() {
        let mut t = Trie::new();
        t.insert("#.a.#", 7);
        t.insert("#", 8);
        let mut seen = Vec::new();
        t.for_each_match("a.a.a", |v| seen.push(*v));
        seen.sort();
        assert_eq!(seen, [7, 8]);
    }

    /// The subscription that wedged a server: ten `#` then a literal that
    /// never comes, against a 32-word key. Each word steps through a few
    /// states, not through every way of splitting the key among the `#`s.
    #[test]
    fn many_hashes_cost_polynomial_work() {
        let mut t = Trie::new();
        let wedge = "feeds.#.#.#.#.#.#.#.#.#.#.nomatch";
        t.insert(wedge, 1);
        t.insert("#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.a.#", 2);
        t.insert("feeds.#", 3);
        let key = std::iter::once("feeds")
            .chain(std::iter::repeat_n("a", 31))
            .collect::<Vec<_>>()
            .join(".");
        let words = Words::new(&key);
        let mut hits = Vec::new();
        let work = walk(&t.root, words.as_slice(), &mut hits);
        let nodes = 2 * (12 + 18 + 2);
        assert!(
            work <= 32 * nodes,
            "{work} states stepped for a 32-word key over {nodes} node states"
        );
        let mut got: Vec<i32> = t.matches(&key).into_iter().copied().collect();
        got.sort();
        assert_eq!(got, [2, 3]);
        assert!(!topic_match(wedge, &key));
    }

    #[test]
    fn agrees_with_topic_match() {
        let patterns = [
            "#", "*", "a", "a.#", "a.*", "*.b", "#.b", "a.#.b", "a.*.#", "#.#", "*.*.*", "",
            "a..b", "*.", "#.a.#",
        ];
        let keys = [
            "", "a", "b", "a.b", "a.b.c", "a..b", "a.", ".", "x.a.b", "a.a.b.b", "a.b.b",
        ];
        let mut t = Trie::new();
        for (i, p) in patterns.iter().enumerate() {
            t.insert(p, i);
        }
        for k in keys {
            let mut got: Vec<usize> = t.matches(k).into_iter().copied().collect();
            got.sort();
            let want: Vec<usize> = (0..patterns.len())
                .filter(|i| topic_match(patterns[*i], k))
                .collect();
            assert_eq!(got, want, "key {k:?}");
        }
    }
}
