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

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;

use crate::app::App;
use crate::backend::Backend;
use crate::config::Config;
use crate::event_loop::EventLoop;
use crate::mailbox::Group;
pub use crate::mailbox::Message;
use crate::stats::Stats;

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

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("local", &self.local)
            .field("loops", &self.listeners.len())
            .finish()
    }
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
        group.set_waker(index, lp.waker());
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
