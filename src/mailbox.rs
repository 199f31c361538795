//! What the loops of a group share: a mailbox each (cross-loop
//! messages, rung through the receiving loop's waker), the client count,
//! and each loop's published counters. Apart from the threads that run
//! the loops (`group.rs`), so the loop can use it without knowing how
//! groups are started.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::stats::Stats;
use crate::waker::Waker;

/// What one loop sends another; the receiver downcasts it.
pub type Message = Box<dyn Any + Send>;

/// A loop's inbox.
struct Mailbox {
    queue: Mutex<Vec<Message>>,
    /// Rung once per batch: set by the first poster, cleared by the reader.
    rung: AtomicBool,
    waker: OnceLock<Waker>,
}

/// What one loop tells the group's stats line.
#[derive(Clone, Copy, Default)]
pub(crate) struct LoopSnapshot {
    pub stats: Stats,
    pub clients: usize,
    pub turn_p99_us: u64,
    pub pending: usize,
}

/// A loop's [`LoopSnapshot`], as atomics another loop can read.
#[derive(Default)]
struct Published {
    accepted: AtomicU64,
    closed: AtomicU64,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    turns: AtomicU64,
    stalls: AtomicU64,
    clients: AtomicU64,
    turn_p99_us: AtomicU64,
    pending: AtomicU64,
}

impl Published {
    fn store(&self, s: &LoopSnapshot) {
        let put = |cell: &AtomicU64, v: u64| cell.store(v, Ordering::Relaxed);
        put(&self.accepted, s.stats.accepted);
        put(&self.closed, s.stats.closed);
        put(&self.requests, s.stats.requests);
        put(&self.bytes_in, s.stats.bytes_in);
        put(&self.bytes_out, s.stats.bytes_out);
        put(&self.turns, s.stats.turns);
        put(&self.stalls, s.stats.stalls);
        put(&self.clients, s.clients as u64);
        put(&self.turn_p99_us, s.turn_p99_us);
        put(&self.pending, s.pending as u64);
    }

    fn load(&self) -> LoopSnapshot {
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let stats = Stats {
            accepted: get(&self.accepted),
            closed: get(&self.closed),
            requests: get(&self.requests),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            turns: get(&self.turns),
            stalls: get(&self.stalls),
            ..Stats::default()
        };
        LoopSnapshot {
            stats,
            clients: get(&self.clients) as usize,
            turn_p99_us: get(&self.turn_p99_us),
            pending: get(&self.pending) as usize,
        }
    }
}

/// What the loops of a group share.
pub(crate) struct Group {
    mailboxes: Vec<Mailbox>,
    /// Open connections across the group.
    pub clients: AtomicUsize,
    /// A loop failed to start: the others stop instead of running.
    pub failed: AtomicBool,
    /// Every loop's stop flag (a group stops as one).
    pub stop: std::sync::Arc<AtomicBool>,
    published: Vec<Published>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    pub(crate) fn new(loops: usize) -> Group {
        Group {
            mailboxes: (0..loops)
                .map(|_| Mailbox {
                    queue: Mutex::new(Vec::new()),
                    rung: AtomicBool::new(false),
                    waker: OnceLock::new(),
                })
                .collect(),
            clients: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            stop: std::sync::Arc::new(AtomicBool::new(false)),
            published: (0..loops).map(|_| Published::default()).collect(),
        }
    }

    /// Gives loop `index` the waker its mailbox rings (once). A stop asked
    /// before the loop had a waker rings it now.
    pub(crate) fn set_waker(&self, index: usize, waker: Waker) {
        if let Some(mailbox) = self.mailboxes.get(index) {
            let _ = mailbox.waker.set(waker);
            if self.stop.load(Ordering::SeqCst)
                && let Some(waker) = mailbox.waker.get()
            {
                let _ = waker.ring();
            }
        }
    }

    /// Asks every loop to stop (see [`crate::StopHandle`]).
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in self.mailboxes.iter().filter_map(|m| m.waker.get()) {
            let _ = waker.ring();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.mailboxes.len()
    }

    /// Posts `message` to loop `to`; false if there is no such loop.
    pub(crate) fn post(&self, to: usize, message: Message) -> bool {
        let Some(mailbox) = self.mailboxes.get(to) else {
            return false;
        };
        lock(&mailbox.queue).push(message);
        if !mailbox.rung.swap(true, Ordering::AcqRel)
            && let Some(waker) = mailbox.waker.get()
        {
            let _ = waker.ring();
        }
        true
    }

    /// Takes loop `index`'s messages, in the order they were posted.
    pub(crate) fn take(&self, index: usize, into: &mut Vec<Message>) {
        if let Some(mailbox) = self.mailboxes.get(index) {
            mailbox.rung.store(false, Ordering::Release);
            into.append(&mut lock(&mailbox.queue));
        }
    }

    /// Publishes loop `index`'s counters for the group's stats line.
    pub(crate) fn publish(&self, index: usize, snapshot: &LoopSnapshot) {
        if let Some(slot) = self.published.get(index) {
            slot.store(snapshot);
        }
    }

    /// Every loop's last published counters, by loop index.
    pub(crate) fn published(&self) -> Vec<LoopSnapshot> {
        self.published.iter().map(Published::load).collect()
    }
}
