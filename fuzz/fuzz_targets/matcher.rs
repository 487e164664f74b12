//! Differential test of the topic matchers: the trie, `topic_match` and a
//! memoised textbook matcher written here must agree on every key.
//!
//! Input: text, one pattern per line (at most 12, at most 40 words each);
//! every line is also used as a key. RabbitMQ semantics: words split on
//! `.`, the empty string has no words, empty words are words, `*` is one
//! word, `#` zero or more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postmesh_schema::pattern::topic_match;
use postmesh_schema::Trie;

const MAX_PATTERNS: usize = 12;
const MAX_WORDS: usize = 40;

fn words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

/// `#` tries every split, `*` takes one word; memoised on (pattern index,
/// key index).
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
    let (p, k) = (words(pattern), words(key));
    let mut memo = vec![None; (p.len() + 1) * (k.len() + 1)];
    go(&p, &k, 0, 0, &mut memo)
}

fn check(trie: &Trie<usize>, patterns: &[&str], live: &[bool], key: &str) {
    let mut got: Vec<usize> = trie.matches(key).into_iter().copied().collect();
    got.sort_unstable();
    let mut want = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let reference = reference_match(p, key);
        assert_eq!(
            topic_match(p, key),
            reference,
            "topic_match({p:?}, {key:?}) disagrees with the reference"
        );
        if live[i] && reference {
            want.push(i);
        }
    }
    assert_eq!(got, want, "trie over {patterns:?} (live {live:?}) on key {key:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > MAX_PATTERNS + 1 || lines.iter().any(|l| l.split('.').count() > MAX_WORDS) {
        return;
    }
    // The last line is a key only (so that an input can hold 12 patterns
    // and one more key); every other line is a pattern and a key.
    let keys = &lines;
    let patterns = if lines.len() == 1 {
        &lines[..]
    } else {
        &lines[..lines.len() - 1]
    };

    let mut trie = Trie::new();
    let mut live = vec![true; patterns.len()];
    for (i, p) in patterns.iter().enumerate() {
        let new = !patterns[..i].contains(p);
        assert_eq!(trie.insert(p, i), new, "insert {p:?}");
    }
    let distinct = |live: &[bool]| {
        let mut d: Vec<&str> = (0..patterns.len())
            .filter(|&i| live[i])
            .map(|i| patterns[i])
            .collect();
        d.sort_unstable();
        d.dedup();
        d.len()
    };
    assert_eq!(trie.pattern_count(), distinct(&live));
    for key in keys.iter() {
        check(&trie, patterns, &live, key);
    }

    // Remove every other pattern: the pruned trie still agrees.
    for i in (0..patterns.len()).step_by(2) {
        let p = patterns[i];
        live[i] = false;
        let last = !(0..patterns.len()).any(|j| live[j] && patterns[j] == p);
        assert_eq!(trie.remove(p, &i), Some(last), "remove {p:?} #{i}");
        assert_eq!(trie.remove(p, &i), None, "remove {p:?} #{i} twice");
    }
    assert_eq!(trie.pattern_count(), distinct(&live));
    for key in keys.iter() {
        check(&trie, patterns, &live, key);
    }
    for i in (1..patterns.len()).step_by(2) {
        trie.remove(patterns[i], &i);
    }
    assert!(trie.is_empty());
    for key in keys.iter() {
        assert!(trie.matches(key).is_empty());
    }
});
