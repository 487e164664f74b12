//! A bounded set of recently seen ids: the dedupe window for idempotent
//! delivery. Gold messages arrive more than once by design, and resends
//! ("if in doubt: resend") do too; consumers drop what they saw recently.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// Remembers the last `capacity` distinct ids; the oldest is forgotten first.
#[derive(Debug)]
pub struct RecentSet<T> {
    order: VecDeque<T>,
    set: HashSet<T>,
    capacity: usize,
}

impl<T: Hash + Eq + Clone> RecentSet<T> {
    /// A window of `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        RecentSet {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`. Returns `false` if it was already in the window.
    pub fn insert(&mut self, id: T) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.clone());
        self.set.insert(id);
        true
    }

    /// Forgets `id`. Its slot in the eviction order stays until evicted,
    /// which at worst makes the window briefly shorter.
    pub fn remove(&mut self, id: &T) {
        self.set.remove(id);
    }

    /// Whether `id` is in the window.
    pub fn contains(&self, id: &T) -> bool {
        self.set.contains(id)
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest() {
        let mut r = RecentSet::new(3);
        assert!(r.insert(1));
        assert!(!r.insert(1));
        assert!(r.insert(2));
        assert!(r.insert(3));
        assert!(r.insert(4));
        assert!(!r.contains(&1));
        assert!(r.contains(&4));
        assert_eq!(r.len(), 3);
        assert!(r.insert(1), "forgotten ids are new again");
    }
}
