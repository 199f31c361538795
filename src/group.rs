//! One loop per core: N loops in N threads that share nothing but a few
//! counters and a mailbox each.
//!
//! Every loop has its own listening socket bound to the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections across them (by a
//! hash of the connection's addresses), and its own app, built by a
//! factory. Loops reach each other's clients by posting messages
//! ([`crate::Ctx::post`], [`crate::Ctx::post_to_others`]): a message waits
//! in the receiving loop's mailbox, its waker rings, and
//! [`crate::App::on_message`] runs on that loop's thread. Mailboxes are
//! FIFO, so messages from one loop arrive at another in the order sent.
//!
//! Shared across the group: the client count (so `max_clients` is a total),
//! and each loop's counters (for one stats line with totals).

use std::any::Any;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;

use crate::app::App;
use crate::config::Config;
use crate::event_loop::EventLoop;
use crate::selector::Backend;
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
    failed: AtomicBool,
    published: Vec<Published>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    fn new(loops: usize) -> Group {
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
            published: (0..loops).map(|_| Published::default()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    /// Posts `message` to loop `to`; false if there is no such loop.
    pub fn post(&self, to: usize, message: Message) -> bool {
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
    pub fn take(&self, index: usize, into: &mut Vec<Message>) {
        if let Some(mailbox) = self.mailboxes.get(index) {
            mailbox.rung.store(false, Ordering::Release);
            into.append(&mut lock(&mailbox.queue));
        }
    }

    /// Publishes loop `index`'s counters for the group's stats line.
    pub fn publish(&self, index: usize, snapshot: &LoopSnapshot) {
        if let Some(slot) = self.published.get(index) {
            slot.store(snapshot);
        }
    }

    /// Every loop's last published counters, by loop index.
    pub fn published(&self) -> Vec<LoopSnapshot> {
        self.published.iter().map(Published::load).collect()
    }
}

/// How a group of loops ended: each loop's counters, by loop index.
#[derive(Debug)]
pub struct GroupStats {
    /// Counters of each loop.
    pub loops: Vec<Stats>,
}

impl GroupStats {
    /// The counters of all loops added up.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for s in &self.loops {
            t += s;
        }
        t
    }
}

/// A group of loops serving one address. Built with [`Threads::new`],
/// started with [`Threads::run`].
pub struct Threads {
    listeners: Vec<TcpListener>,
    local: SocketAddr,
}

impl Threads {
    /// `loops` listening sockets on `addr` with `SO_REUSEPORT` (port 0:
    /// the first picks a port, the others join it).
    pub fn new(addr: SocketAddr, loops: usize) -> io::Result<Threads> {
        if loops == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a group needs at least one loop",
            ));
        }
        if addr.port() != 0 {
            // SO_REUSEPORT would let this group share a port with another
            // server's group without a word; a plain bind says if the port
            // is taken. (Bound, not listening, and closed at once.)
            crate::net::bind_probe(addr)?;
        }
        let first = crate::net::tcp_listener_reuseport(addr)?;
        let local = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..loops {
            listeners.push(crate::net::tcp_listener_reuseport(local)?);
        }
        Ok(Threads { listeners, local })
    }

    /// Number of loops.
    pub fn loops(&self) -> usize {
        self.listeners.len()
    }

    /// The address the loops listen on (the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs one loop per listener, each in its own thread with the app
    /// `make_app(index)` and `config` (`max_clients` counts the whole
    /// group), stopping all of them on SIGINT/SIGTERM. `ready` runs once
    /// every loop is up (with the backend's resolved name). Returns when
    /// every loop has finished its graceful shutdown.
    pub fn run<A, F>(
        self,
        backend: Backend,
        config: Config,
        make_app: F,
        ready: impl FnOnce(&'static str),
    ) -> io::Result<GroupStats>
    where
        A: App,
        F: Fn(usize) -> A + Sync,
    {
        config.validate()?;
        let loops = self.listeners.len();
        let group = Arc::new(Group::new(loops));
        let barrier = Barrier::new(loops + 1);
        let results = thread::scope(|scope| {
            let handles: Vec<_> = self
                .listeners
                .into_iter()
                .enumerate()
                .map(|(index, listener)| {
                    let (group, config, barrier, make_app) =
                        (group.clone(), config.clone(), &barrier, &make_app);
                    thread::Builder::new()
                        .name(format!("iomux-loop-{index}"))
                        .spawn_scoped(scope, move || {
                            run_member(index, listener, backend, config, group, barrier, make_app)
                        })
                })
                .collect::<io::Result<_>>()?;
            barrier.wait();
            // Every loop has registered its waker (or failed) by now.
            if !group.failed.load(Ordering::SeqCst) {
                ready(backend.resolve().name());
            }
            let results: Vec<io::Result<Stats>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")))
                })
                .collect();
            Ok::<_, io::Error>(results)
        })?;
        let loops = results.into_iter().collect::<io::Result<Vec<Stats>>>()?;
        Ok(GroupStats { loops })
    }
}

/// One loop of a group: set up, wait for the others, run.
fn run_member<A: App, F: Fn(usize) -> A>(
    index: usize,
    listener: TcpListener,
    backend: Backend,
    config: Config,
    group: Arc<Group>,
    barrier: &Barrier,
    make_app: &F,
) -> io::Result<Stats> {
    let setup = || -> io::Result<EventLoop<A::State>> {
        let mut lp = EventLoop::new(backend, config)?;
        lp.listen(listener)?;
        lp.stop_on_signals(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        let _ = group.mailboxes[index].waker.set(lp.waker());
        lp.join_group(group.clone(), index);
        Ok(lp)
    };
    let built = setup();
    if built.is_err() {
        group.failed.store(true, Ordering::SeqCst);
    }
    barrier.wait();
    let mut lp = built?;
    if group.failed.load(Ordering::SeqCst) {
        return Ok(lp.stats()); // another loop could not start: none runs
    }
    let mut app = make_app(index);
    lp.run(&mut app)?;
    Ok(lp.stats())
}
