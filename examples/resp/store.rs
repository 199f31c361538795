//! The resp example's keyspace: values with an optional deadline, and the
//! deadlines in order, so the keys that are due are found without a scan.
//!
//! Deadlines are Unix times in milliseconds, as Redis keeps them (`EXAT`
//! and `PXAT` name one directly), and a key is gone once the clock is
//! past its deadline. Every lookup removes a key it finds past its
//! deadline, so no command ever sees one (Redis's lazy expiry);
//! [`Store::expire_due`] removes those nobody asks for (its active
//! expiry, which the app runs off a loop timer). Until then [`Store::len`]
//! still counts them, as Redis's `DBSIZE` does.

use std::collections::{BTreeSet, HashMap};

/// A value and when it expires (`None`: never).
struct Entry {
    value: Vec<u8>,
    deadline: Option<i64>,
}

impl Entry {
    /// Past its deadline at `now` (a key lives through its deadline's
    /// millisecond, as in Redis).
    fn expired(&self, now: i64) -> bool {
        self.deadline.is_some_and(|at| now > at)
    }
}

/// What setting a value does to the key's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// None any more (a plain `SET`).
    Clear,
    /// The one it had (`KEEPTTL`, `INCR`); none for a new key.
    Keep,
    /// This one (`EX`, `PX`, `EXAT`, `PXAT`).
    At(i64),
}

/// The keys.
#[derive(Default)]
pub struct Store {
    keys: HashMap<Vec<u8>, Entry>,
    /// `(deadline, key)` for every key that has a deadline, earliest first.
    deadlines: BTreeSet<(i64, Vec<u8>)>,
}

impl Store {
    /// The live entry of `key` at `now`, after removing it if it is past
    /// its deadline.
    fn live(&mut self, key: &[u8], now: i64) -> Option<&mut Entry> {
        if self.keys.get(key)?.expired(now) {
            self.remove_entry(key);
            return None;
        }
        self.keys.get_mut(key)
    }

    /// Removes `key` whether or not it is past its deadline; true if it
    /// was there.
    fn remove_entry(&mut self, key: &[u8]) -> bool {
        let Some(entry) = self.keys.remove(key) else {
            return false;
        };
        if let Some(at) = entry.deadline {
            self.deadlines.remove(&(at, key.to_vec()));
        }
        true
    }

    /// The value of `key` at `now`.
    pub fn get(&mut self, key: &[u8], now: i64) -> Option<&[u8]> {
        self.live(key, now).map(|e| e.value.as_slice())
    }

    /// Whether `key` is there at `now`.
    pub fn contains(&mut self, key: &[u8], now: i64) -> bool {
        self.live(key, now).is_some()
    }

    /// The deadline of `key` at `now`: `None` if there is no such key,
    /// `Some(None)` if it never expires.
    pub fn deadline(&mut self, key: &[u8], now: i64) -> Option<Option<i64>> {
        self.live(key, now).map(|e| e.deadline)
    }

    /// Sets `key` to `value`, its deadline as `ttl` says.
    pub fn set(&mut self, key: &[u8], value: Vec<u8>, ttl: Ttl, now: i64) {
        let kept = match ttl {
            Ttl::Keep => self.live(key, now).and_then(|e| e.deadline),
            Ttl::Clear | Ttl::At(_) => None,
        };
        let deadline = match ttl {
            Ttl::At(at) => Some(at),
            Ttl::Keep | Ttl::Clear => kept,
        };
        match self.keys.get_mut(key) {
            Some(entry) => entry.value = value,
            None => {
                let entry = Entry {
                    value,
                    deadline: None,
                };
                self.keys.insert(key.to_vec(), entry);
            }
        }
        self.set_deadline(key, deadline);
    }

    /// Gives an existing `key` a new deadline (`None`: never); false if
    /// there is no such key (past its deadline or not).
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<i64>) -> bool {
        let Some(entry) = self.keys.get_mut(key) else {
            return false;
        };
        let old = std::mem::replace(&mut entry.deadline, deadline);
        if old != deadline {
            if let Some(at) = old {
                self.deadlines.remove(&(at, key.to_vec()));
            }
            if let Some(at) = deadline {
                self.deadlines.insert((at, key.to_vec()));
            }
        }
        true
    }

    /// Removes `key`; true if it was there at `now`.
    pub fn remove(&mut self, key: &[u8], now: i64) -> bool {
        self.live(key, now).is_some() && self.remove_entry(key)
    }

    /// How many keys there are, counting those past their deadline that
    /// nothing removed yet.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.deadlines.clear();
    }

    /// The earliest deadline of any key.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Removes up to `budget` keys past their deadline at `now`, the
    /// earliest first; how many it removed.
    pub fn expire_due(&mut self, now: i64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match self.deadlines.first() {
                Some((at, _)) if now > *at => {}
                _ => break,
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.keys.remove(&key);
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_through_their_deadline_then_vanish() {
        let mut s = Store::default();
        s.set(b"k", b"v".to_vec(), Ttl::At(100), 0);
        s.set(b"p", b"w".to_vec(), Ttl::Clear, 0);
        assert_eq!(s.get(b"k", 100), Some(&b"v"[..]));
        assert_eq!(s.deadline(b"k", 100), Some(Some(100)));
        assert_eq!(s.len(), 2, "not yet expired");
        assert_eq!(s.get(b"k", 101), None);
        assert_eq!(s.len(), 1, "the lookup removed it");
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.deadline(b"p", 101), Some(None));
    }

    #[test]
    fn setting_clears_or_keeps_the_deadline() {
        let mut s = Store::default();
        s.set(b"k", b"1".to_vec(), Ttl::At(50), 0);
        s.set(b"k", b"2".to_vec(), Ttl::Keep, 0);
        assert_eq!(s.deadline(b"k", 0), Some(Some(50)));
        s.set(b"k", b"3".to_vec(), Ttl::Clear, 0);
        assert_eq!(s.deadline(b"k", 0), Some(None));
        assert_eq!(s.next_deadline(), None, "the index follows");
        s.set(b"k", b"4".to_vec(), Ttl::At(10), 0);
        // Keep on a key past its deadline: a new key, with none.
        s.set(b"k", b"5".to_vec(), Ttl::Keep, 20);
        assert_eq!(s.deadline(b"k", 20), Some(None));
        assert_eq!(s.get(b"k", 20), Some(&b"5"[..]));
    }

    #[test]
    fn due_keys_leave_earliest_first_within_a_budget() {
        let mut s = Store::default();
        for i in 0..10 {
            s.set(format!("k{i}").as_bytes(), vec![], Ttl::At(i), 0);
        }
        s.set(b"p", vec![], Ttl::Clear, 0);
        assert_eq!(s.expire_due(5, 3), 3);
        assert_eq!(s.next_deadline(), Some(3));
        assert_eq!(s.expire_due(5, 100), 2, "k3 and k4; k5 lives through 5");
        assert_eq!(s.len(), 6);
        assert!(s.remove(b"k9", 5));
        assert!(!s.remove(b"k9", 5));
        assert!(!s.remove(b"k8", 9), "past its deadline: not there");
        assert_eq!(s.len(), 4);
    }
}
