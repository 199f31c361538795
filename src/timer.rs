//! A min-heap of deadlines.
//!
//! Idle timeouts are lazy: each connection has at most one entry; when it
//! expires the loop checks the connection's real deadline (last read +
//! timeout) and pushes it again if the connection was active meanwhile. So
//! a read costs no heap operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A min-heap of `(deadline, T)`; ties leave in insertion order.
pub struct Timers<T: Ord> {
    heap: BinaryHeap<Reverse<(Instant, u64, T)>>,
    seq: u64,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T: Ord> Timers<T> {
    /// Adds `what`, due at `at`.
    pub fn add(&mut self, at: Instant, what: T) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, what)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Time until the earliest deadline, zero when it has passed.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Removes and returns one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, w))| w),
            _ => None,
        }
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|Reverse((_, _, what))| keep(what));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.add(t0 + Duration::from_millis(30), "c");
        t.add(t0 + Duration::from_millis(10), "a");
        t.add(t0 + Duration::from_millis(20), "b");
        assert_eq!(t.next_timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let later = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(later), Some("a"));
        assert_eq!(t.pop_due(later), Some("b"));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.next_timeout(t0 + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn equal_deadlines_keep_insertion_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for i in [5, 1, 3] {
            t.add(t0, i);
        }
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(t0)).collect();
        assert_eq!(order, vec![5, 1, 3]);
        assert!(t.is_empty());
        for i in 0..10 {
            t.add(t0, i);
        }
        t.retain(|i| i % 3 == 0);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(t0)).collect();
        assert_eq!(order, vec![0, 3, 6, 9]);
    }
}
