//! Deadlines: a min-heap over a slab of entries, so a timer can be
//! cancelled in O(1) and its heap slot reclaimed later.
//!
//! Cancelling removes the entry from the slab at once; its heap slot is
//! skipped when it reaches the top, and the heap is rebuilt without the
//! dead slots once they outnumber the live ones (so cancelling timers in a
//! loop cannot grow memory). An entry's [`TimerId`] carries a sequence
//! number: an id whose entry was fired or cancelled, even if its slab slot
//! was reused since, cancels nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

/// Names one armed timer: returned by the calls that set one, and handed
/// to the callback when it fires, with the tag it was set with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    seq: u32,
    tag: u64,
}

impl TimerId {
    /// The tag given when the timer was set (what kind of timer it is,
    /// for an app that sets several).
    pub fn tag(&self) -> u64 {
        self.tag
    }

    pub(crate) fn tagged(self, tag: u64) -> TimerId {
        TimerId { tag, ..self }
    }
}

struct Entry<T> {
    seq: u32,
    what: T,
}

/// Armed timers of payload `T`; ties leave in the order they were added.
pub(crate) struct Timers<T> {
    entries: Slab<Entry<T>>,
    /// (deadline, order of adding, slab key, entry seq).
    heap: BinaryHeap<Reverse<(Instant, u64, u32, u32)>>,
    added: u64,
    seq: u32,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            entries: Slab::new(),
            heap: BinaryHeap::new(),
            added: 0,
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Arms `what`, due at `at`.
    pub(crate) fn add(&mut self, at: Instant, what: T) -> TimerId {
        self.seq = self.seq.wrapping_add(1);
        self.added += 1;
        let seq = self.seq;
        let key = self.entries.insert(Entry { seq, what }) as u32;
        self.heap.push(Reverse((at, self.added, key, seq)));
        TimerId { key, seq, tag: 0 }
    }

    /// Disarms `id`; returns its payload, or `None` if it already fired or
    /// was cancelled.
    pub(crate) fn cancel(&mut self, id: TimerId) -> Option<T> {
        let key = id.key as usize;
        if self.entries.get(key).is_some_and(|e| e.seq == id.seq) {
            let what = self.entries.remove(key).what;
            self.compact_if_sparse();
            Some(what)
        } else {
            None
        }
    }

    /// The payload of `id`, while it is armed.
    pub(crate) fn get(&self, id: TimerId) -> Option<&T> {
        self.entries
            .get(id.key as usize)
            .filter(|e| e.seq == id.seq)
            .map(|e| &e.what)
    }

    /// Disarms every timer whose payload fails `keep` (e.g. those of a
    /// closed connection).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|_, e| keep(&e.what));
        self.compact_if_sparse();
    }

    /// Rebuilds the heap without dead slots once they are the majority.
    fn compact_if_sparse(&mut self) {
        if self.heap.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse((_, _, key, seq))| is_live(entries, *key, *seq));
        }
    }

    /// Drops dead slots from the top, so the top is a live timer.
    fn skip_dead(&mut self) {
        while let Some(Reverse((_, _, key, seq))) = self.heap.peek() {
            if is_live(&self.entries, *key, *seq) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_dead();
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// Time until the earliest deadline, zero when it has passed.
    pub(crate) fn next_timeout(&mut self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Removes and returns one entry due at or before `now`, with its id.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerId, T)> {
        self.skip_dead();
        match self.heap.peek() {
            Some(&Reverse((at, _, key, seq))) if at <= now => {
                self.heap.pop();
                let what = self.entries.remove(key as usize).what;
                Some((TimerId { key, seq, tag: 0 }, what))
            }
            _ => None,
        }
    }

    /// Number of armed timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Heap slots, live and dead (for tests of the compaction).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.heap.len()
    }
}

fn is_live<T>(entries: &Slab<Entry<T>>, key: u32, seq: u32) -> bool {
    entries.get(key as usize).is_some_and(|e| e.seq == seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_timer_comes_back_with_the_id_it_was_set_with() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let late = t.add(t0 + Duration::from_millis(20), "late");
        let early = t.add(t0 + Duration::from_millis(10), "early");
        assert_ne!(late, early);
        let later = t0 + Duration::from_millis(30);
        assert_eq!(t.pop_due(later), Some((early, "early")));
        assert_eq!(t.pop_due(later), Some((late, "late")));
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.add(t0 + Duration::from_millis(30), "c");
        t.add(t0 + Duration::from_millis(10), "a");
        t.add(t0 + Duration::from_millis(20), "b");
        assert_eq!(t.next_timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0).map(|(_, w)| w), None);
        let later = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(later).map(|(_, w)| w), Some("a"));
        assert_eq!(t.pop_due(later).map(|(_, w)| w), Some("b"));
        assert_eq!(t.pop_due(later).map(|(_, w)| w), None);
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
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(t0).map(|(_, w)| w)).collect();
        assert_eq!(order, vec![5, 1, 3]);
        assert_eq!(t.len(), 0);
        for i in 0..10 {
            t.add(t0, i);
        }
        t.retain(|i| i % 3 == 0);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_due(t0).map(|(_, w)| w)).collect();
        assert_eq!(order, vec![0, 3, 6, 9]);
    }

    #[test]
    fn a_cancelled_timer_never_fires_and_its_id_goes_stale() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = t.add(t0 + Duration::from_millis(5), "a");
        let b = t.add(t0 + Duration::from_millis(10), "b");
        assert_eq!(t.cancel(a), Some("a"));
        assert_eq!(t.cancel(a), None, "cancelling twice does nothing");
        assert_eq!(t.next_timeout(t0), Some(Duration::from_millis(10)));
        // The freed slot is reused; the old id must not cancel the new one.
        let c = t.add(t0 + Duration::from_millis(1), "c");
        assert_eq!(t.cancel(a), None);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(t.pop_due(later).map(|(_, w)| w), Some("c"));
        assert_eq!(t.cancel(c), None, "a fired timer cannot be cancelled");
        assert_eq!(t.pop_due(later).map(|(_, w)| w), Some("b"));
        assert_eq!(t.cancel(b), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancelling_in_a_loop_does_not_grow_the_heap() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.add(t0 + Duration::from_secs(60), 0u32);
        for i in 0..100_000 {
            let id = t.add(t0 + Duration::from_secs(30), i);
            t.cancel(id);
        }
        assert_eq!(t.len(), 1);
        assert!(t.slots() <= 2 * t.len() + 65, "{} heap slots", t.slots());
    }
}
