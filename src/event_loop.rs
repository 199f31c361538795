//! The event loop: one thread, many connections, any backend.
//!
//! One turn, step by step:
//! 1. Pick the wait's timeout: zero if connections are left unfinished from
//!    the last turn (edge-triggered budget), else until the next timer.
//! 2. Wait on the selector.
//! 3. Dispatch each event by token: a listener accepts (up to a budget),
//!    the waker and the signal pipe are drained, a connection reads (up to
//!    a budget, handing bytes to the [`App`]) and writes. A token whose
//!    generation no longer matches a live connection is stale and dropped.
//! 4. Serve the connections left unfinished last turn (edge-triggered only:
//!    no new edge will come for them).
//! 5. Fire due timers (idle timeouts, accept back-off, shutdown deadline).
//! 6. Before sleeping, write every connection's new output (most replies go
//!    out here in one write, and write interest is only turned on for what
//!    the socket did not take), then close what was scheduled to close.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::net::SocketFlags;
use slab::Slab;

use crate::app::App;
use crate::conn::{Conn, ConnId, Flush};
use crate::pool::{JobId, JobResult, Pool};
use crate::selector::{Backend, Event, Events, Interest, Selector, Token};
use crate::timer::Timers;
use crate::waker::{SignalPipe, StopHandle, Waker};

/// Tunables of the loop. `Default` gives the server's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connections beyond this are accepted and closed at once.
    pub max_clients: usize,
    /// Close a connection that sent nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Disconnect a connection whose pending output exceeds this.
    pub max_output: usize,
    /// Disconnect a connection whose unconsumed input exceeds this.
    pub max_input: usize,
    /// Stop reading a connection while its pending output is above this...
    pub high_water: usize,
    /// ...and resume once it is at or below this.
    pub low_water: usize,
    /// Bytes read from one connection per turn before others get a go.
    pub read_budget: usize,
    /// Connections accepted per listener per turn.
    pub accept_budget: usize,
    /// How long a graceful shutdown may spend flushing output.
    pub shutdown_grace: Duration,
    /// How long accepting pauses after `EMFILE`/`ENFILE`.
    pub accept_backoff: Duration,
    /// Log `connect ADDR` / `disconnect ADDR` lines on stderr.
    pub log_connections: bool,
    /// Set `TCP_NODELAY` on accepted connections.
    pub nodelay: bool,
    /// Worker threads for [`Ctx::offload`] (0: no pool, apps run inline).
    pub workers: usize,
    /// Stop reading a connection while this many of its jobs are in
    /// flight, so one client cannot fill the pool's queue (or memory).
    pub max_jobs_per_conn: u32,
    /// Log a handler call that runs longer than this (the stall watchdog).
    pub stall_threshold: Option<Duration>,
    /// Print a `stats:` line on stderr this often.
    pub stats_interval: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_clients: 10_000,
            idle_timeout: None,
            max_output: 1 << 20,
            max_input: 1 << 20,
            high_water: 256 * 1024,
            low_water: 64 * 1024,
            read_budget: 256 * 1024,
            accept_budget: 256,
            shutdown_grace: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(100),
            log_connections: true,
            nodelay: true,
            workers: 0,
            max_jobs_per_conn: 64,
            stall_threshold: Some(Duration::from_millis(100)),
            stats_interval: None,
        }
    }
}

/// Counters since the loop was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections admitted (accepted under the limit, or adopted).
    pub accepted: u64,
    /// Connections accepted and closed at once (over `max_clients`).
    pub rejected: u64,
    /// Connections closed.
    pub closed: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Turns of the loop.
    pub turns: u64,
    /// Requests served, as counted by apps ([`Ctx::record_request`]).
    pub requests: u64,
    /// Handler calls that ran over the stall threshold.
    pub stalls: u64,
}

/// Why a connection was closed.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed its side and everything owed was sent.
    PeerClosed,
    /// The app closed it.
    App,
    /// Silent for longer than the idle timeout.
    Idle,
    /// Pending output went over `max_output` (the peer does not read).
    OutputLimit,
    /// Unconsumed input went over `max_input`.
    InputLimit,
    /// The loop is shutting down.
    Shutdown,
    /// A read or write failed (reset, broken pipe, ...).
    Error(io::Error),
}

impl CloseReason {
    /// Short text for logs; `None` for the ordinary end of a connection.
    pub fn describe(&self) -> Option<String> {
        match self {
            CloseReason::PeerClosed | CloseReason::App | CloseReason::Shutdown => None,
            CloseReason::Idle => Some("idle timeout".into()),
            CloseReason::OutputLimit => Some("output limit exceeded (client not reading)".into()),
            CloseReason::InputLimit => Some("input limit exceeded".into()),
            CloseReason::Error(e) => Some(e.to_string()),
        }
    }
}

const WAKER: Token = Token(u64::MAX);
const SIGNALS: Token = Token(u64::MAX - 1);
const LISTENER_BASE: u64 = u64::MAX - 1 - 1024;

fn listener_token(i: usize) -> Token {
    Token(LISTENER_BASE + i as u64)
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Idle(ConnId),
    /// A lingering close gives up waiting for the peer.
    Linger(ConnId),
    ResumeAccept,
    Stats,
    App(u64),
}

struct Listener {
    socket: TcpListener,
    registered: bool,
}

/// What apps may touch: everything but the selector and the listeners.
pub(crate) struct Shared {
    pub conns: Slab<Conn>,
    pub config: Config,
    pub stats: Stats,
    pub now: Instant,
    /// Connections with new output, flushed before the loop sleeps.
    pub dirty: Vec<ConnId>,
    /// Connections to close, with why.
    pub closing: Vec<(ConnId, CloseReason)>,
    timers: Timers<TimerKind>,
    stop_requested: bool,
    pool: Option<Pool>,
    /// The backend's name, for stall lines.
    backend: &'static str,
    /// Scratch for [`Ctx::broadcast`].
    broadcast_ids: Vec<ConnId>,
}

/// The handle an [`App`] gets in every callback.
pub struct Ctx<'a> {
    pub(crate) shared: &'a mut Shared,
}

impl Ctx<'_> {
    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.shared
            .conns
            .get_mut(conn.index())
            .filter(|c| c.id == conn && !c.closing && !c.lingering)
    }

    /// Queues `data` for `conn`; it is written before the loop sleeps.
    /// Returns false if the connection is gone or closing. A connection
    /// whose pending output passes `max_output` even after the socket took
    /// what it could is disconnected.
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> bool {
        let max_output = self.shared.config.max_output;
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        c.queue(data);
        // One turn can queue more than the limit for a peer that reads
        // promptly (a chat burst of short lines); the limit is for output
        // the peer does not take, so offer it to the socket before judging.
        let flushed = (c.pending() > max_output).then(|| c.flush());
        let newly_dirty = !std::mem::replace(&mut c.dirty, true);
        let pending = c.pending();
        if newly_dirty {
            self.shared.dirty.push(conn);
        }
        match flushed {
            Some(Ok((n, _))) => self.shared.stats.bytes_out += n as u64,
            Some(Err(e)) => {
                self.close_with(conn, CloseReason::Error(e));
                return false;
            }
            None => {}
        }
        if pending > max_output {
            self.close_with(conn, CloseReason::OutputLimit);
            return false;
        }
        true
    }

    /// Queues `data` for every open connection except `except`.
    pub fn broadcast(&mut self, data: &[u8], except: Option<ConnId>) {
        // A list kept in `Shared`, so a chat line allocates nothing.
        let mut ids = std::mem::take(&mut self.shared.broadcast_ids);
        ids.extend(
            self.shared
                .conns
                .iter()
                .map(|(_, c)| c.id)
                .filter(|&id| Some(id) != except),
        );
        for &id in &ids {
            self.send(id, data);
        }
        ids.clear();
        self.shared.broadcast_ids = ids;
    }

    /// Closes `conn` now, dropping any output not yet written.
    pub fn close(&mut self, conn: ConnId) {
        self.close_with(conn, CloseReason::App);
    }

    /// Closes `conn` once its pending output is written.
    pub fn close_after_flush(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.close_when_flushed = true;
            // Nothing more is read: a level-triggered backend must stop
            // reporting input that will never be taken.
            c.read_paused = true;
            if !c.dirty {
                c.dirty = true;
                self.shared.dirty.push(conn);
            }
        }
    }

    fn close_with(&mut self, conn: ConnId, reason: CloseReason) {
        self.shared.schedule_close(conn, reason);
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.shared.get(conn).map(|c| c.peer)
    }

    /// Bytes queued for `conn` and not yet written.
    pub fn pending_output(&self, conn: ConnId) -> usize {
        self.shared.get(conn).map_or(0, Conn::pending)
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.conns.len()
    }

    /// Calls [`App::on_timer`] with `id` after `after`.
    pub fn set_timer(&mut self, after: Duration, id: u64) {
        if let Some(at) = self.shared.now.checked_add(after) {
            self.shared.timers.add(at, TimerKind::App(id));
        }
    }

    /// The time this turn started (cheaper than `Instant::now`).
    pub fn now(&self) -> Instant {
        self.shared.now
    }

    /// Starts a graceful shutdown of the loop.
    pub fn stop(&mut self) {
        self.shared.stop_requested = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    /// Counts one request served (for the stats line's rate).
    pub fn record_request(&mut self) {
        self.shared.stats.requests += 1;
    }

    /// Worker threads in the offload pool (0: none, run work inline).
    pub fn workers(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, Pool::workers)
    }

    /// True if `conn` may hand another job to the pool now (there is a
    /// pool and the connection is under [`Config::max_jobs_per_conn`]).
    /// When it may not, leave the request unconsumed: reading pauses, and
    /// the unconsumed input is offered again once one of its jobs is back.
    pub fn can_offload(&self, conn: ConnId) -> bool {
        let max = self.shared.config.max_jobs_per_conn;
        self.shared.pool.is_some() && self.shared.get(conn).is_some_and(|c| c.jobs < max)
    }

    /// Runs `job` on the offload pool; its result comes back to
    /// [`App::on_job_done`] on the loop thread. The connection stays open
    /// (even after its peer shuts down, or during a graceful stop) until
    /// its jobs are done. `None` if there is no pool or `conn` is gone.
    pub fn offload<F>(&mut self, conn: ConnId, job: F) -> Option<JobId>
    where
        F: FnOnce() -> JobResult + Send + 'static,
    {
        self.shared.pool.as_ref()?;
        self.conn_mut(conn)?.jobs += 1;
        let pool = self.shared.pool.as_mut()?;
        Some(pool.submit(conn, Box::new(job)))
    }
}

/// The coarse monotonic clock (a few ms resolution, and cheaper than
/// `Instant::now`): enough to see a handler that holds the loop for tens of
/// milliseconds, cheap enough to read around every handler call.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Calls an app handler, timing it when the stall watchdog is on: the
/// seed's weakness made visible — while a handler runs, nobody else is
/// served.
fn timed<R>(
    shared: &mut Shared,
    app: &mut dyn App,
    conn: Option<ConnId>,
    call: impl FnOnce(&mut dyn App, &mut Ctx<'_>) -> R,
) -> R {
    let Some(limit) = shared.config.stall_threshold else {
        return call(app, &mut Ctx { shared });
    };
    let start = coarse_now();
    let result = call(app, &mut Ctx { shared });
    let took = coarse_now().saturating_sub(start);
    if took > limit {
        shared.stats.stalls += 1;
        let peer = conn
            .and_then(|id| shared.get(id))
            .map_or_else(|| "-".to_string(), |c| c.peer.to_string());
        eprintln!(
            "stall: {} handler for {peer} ran {} ms on the loop thread (backend {})",
            app.name(),
            took.as_millis(),
            shared.backend
        );
    }
    result
}

impl Shared {
    /// The connection `id` names, if it still exists (closing or not).
    fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.index()).filter(|c| c.id == id)
    }

    fn schedule_close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self
            .conns
            .get_mut(conn.index())
            .filter(|c| c.id == conn && !c.closing)
        {
            c.closing = true;
            self.closing.push((conn, reason));
        }
    }

    fn live(&mut self, token: Token) -> Option<&mut Conn> {
        let id = ConnId(token.0);
        self.conns
            .get_mut(id.index())
            .filter(|c| c.id == id && !c.closing)
    }
}

/// A single-threaded event loop over one selector.
pub struct EventLoop {
    selector: Box<dyn Selector>,
    events: Events,
    listeners: Vec<Listener>,
    shared: Shared,
    waker: Waker,
    stop_flag: Arc<AtomicBool>,
    signals: Option<SignalPipe>,
    /// Tokens to serve next turn without a new event (edge-triggered only).
    unfinished: Vec<Token>,
    /// Empty lists swapped with `unfinished` and the dirty list, so that
    /// walking them allocates nothing.
    spare_tokens: Vec<Token>,
    spare_ids: Vec<ConnId>,
    /// The selector is edge-triggered (asked once, used on every event).
    edge: bool,
    /// Where reads land before the app sees them (one per loop, not per
    /// connection).
    scratch: Vec<u8>,
    generation: u32,
    /// Connections adopted before `run`, whose `on_open` is still due.
    unopened: Vec<ConnId>,
    shutting_down: Option<Instant>,
    emfile_logged: bool,
    /// When the current turn's work started (for the stats line).
    turn_started: Option<Instant>,
    turn_times: TurnTimes,
    last_stats: (Instant, Stats),
}

/// Loop-turn durations in power-of-two microsecond buckets: enough for a
/// p99 in a stats line, at no allocation and one add per turn.
#[derive(Default)]
struct TurnTimes {
    buckets: [u64; 32],
}

impl TurnTimes {
    fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let bucket = (64 - us.leading_zeros()) as usize;
        self.buckets[bucket.min(self.buckets.len() - 1)] += 1;
    }

    /// Upper bound of the bucket holding the 99th percentile, in µs.
    fn p99_us(&self) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1u64 << i;
            }
        }
        1u64 << (self.buckets.len() - 1)
    }
}

/// Size of one read.
const READ_CHUNK: usize = 64 * 1024;

impl EventLoop {
    /// A loop over `backend` with `config`.
    pub fn new(backend: Backend, config: Config) -> io::Result<EventLoop> {
        let mut selector = backend.open()?;
        let waker = Waker::new()?;
        selector.register(waker.fd(), WAKER, Interest::READABLE)?;
        let backend = selector.name();
        let edge = selector.edge_triggered();
        let pool = match config.workers {
            0 => None,
            n => Some(Pool::new(n, waker.clone())?),
        };
        Ok(EventLoop {
            selector,
            events: Events::with_capacity(256),
            listeners: Vec::new(),
            shared: Shared {
                conns: Slab::new(),
                config,
                stats: Stats::default(),
                now: Instant::now(),
                dirty: Vec::new(),
                closing: Vec::new(),
                timers: Timers::default(),
                stop_requested: false,
                pool,
                backend,
                broadcast_ids: Vec::new(),
            },
            waker,
            stop_flag: Arc::new(AtomicBool::new(false)),
            signals: None,
            unfinished: Vec::new(),
            spare_tokens: Vec::new(),
            spare_ids: Vec::new(),
            edge,
            scratch: vec![0; READ_CHUNK],
            generation: 0,
            unopened: Vec::new(),
            shutting_down: None,
            emfile_logged: false,
            turn_started: None,
            turn_times: TurnTimes::default(),
            last_stats: (Instant::now(), Stats::default()),
        })
    }

    /// The running backend's name (`auto` resolved).
    pub fn backend_name(&self) -> &'static str {
        self.selector.name()
    }

    /// Accepts connections from `listener` (made non-blocking here).
    pub fn listen(&mut self, listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let token = listener_token(self.listeners.len());
        self.selector
            .register(listener.as_fd(), token, Interest::READABLE)?;
        self.listeners.push(Listener {
            socket: listener,
            registered: true,
        });
        Ok(())
    }

    /// Adds an already connected stream (e.g. a client's outgoing
    /// connection). Its `on_open` runs when the loop starts.
    pub fn adopt(&mut self, stream: TcpStream) -> io::Result<ConnId> {
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr()?;
        let id = self.insert(stream, peer)?;
        self.unopened.push(id);
        Ok(id)
    }

    /// Shuts down gracefully when one of `signals` arrives (e.g. SIGINT,
    /// SIGTERM).
    pub fn stop_on_signals(&mut self, signals: &[i32]) -> io::Result<()> {
        let pipe = SignalPipe::new(signals)?;
        self.selector
            .register(pipe.fd(), SIGNALS, Interest::READABLE)?;
        self.signals = Some(pipe);
        Ok(())
    }

    /// Wakes the loop from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Stops the loop from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            requested: self.stop_flag.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    /// Runs until stopped (signal, [`StopHandle`], or [`Ctx::stop`]) and
    /// the graceful shutdown is over.
    pub fn run(&mut self, app: &mut dyn App) -> io::Result<()> {
        self.shared.now = Instant::now();
        self.last_stats = (self.shared.now, self.shared.stats);
        if let Some(every) = self.shared.config.stats_interval {
            self.shared
                .timers
                .add(self.shared.now + every, TimerKind::Stats);
        }
        for id in std::mem::take(&mut self.unopened) {
            timed(&mut self.shared, app, Some(id), |app, ctx| {
                app.on_open(ctx, id)
            });
            self.reap(app);
        }
        loop {
            self.before_sleep(app);
            if self.shared.stop_requested && self.shutting_down.is_none() {
                self.begin_shutdown(app);
            }
            if let Some(deadline) = self.shutting_down
                && (self.shared.conns.is_empty() || Instant::now() >= deadline)
            {
                self.close_all(app);
                return Ok(());
            }
            let timeout = self.next_timeout();
            if let Some(started) = self.turn_started.take() {
                self.turn_times.record(started.elapsed());
            }
            self.selector.select(&mut self.events, timeout)?;
            self.shared.now = Instant::now();
            if self.shared.config.stats_interval.is_some() {
                self.turn_started = Some(self.shared.now);
            }
            self.shared.stats.turns += 1;
            // Connections left unfinished by the *last* turn (edge-triggered
            // budget or resumed reading): taken before this turn's events,
            // so one that uses up its budget now waits for the next turn.
            let mut batch = std::mem::take(&mut self.spare_tokens);
            std::mem::swap(&mut batch, &mut self.unfinished);
            for i in 0..self.events.len() {
                if let Some(event) = self.events.get(i) {
                    self.dispatch(app, event);
                }
            }
            for token in batch.drain(..) {
                // The edge that raised these may also have told of the
                // peer's end of stream, and was spent while the connection
                // was paused or over budget: read on past a short read
                // (until `WouldBlock`), or that end would never be seen.
                let event = Event::new(token, true, false, false, false).with_read_closed(true);
                self.dispatch(app, event);
            }
            self.spare_tokens = batch;
            self.fire_timers(app);
        }
    }

    fn next_timeout(&self) -> Option<Duration> {
        if !self.unfinished.is_empty() {
            return Some(Duration::ZERO);
        }
        // From now, not from the turn's start: a slow turn must not make
        // every timer late by its length.
        let timer = self.shared.timers.next_timeout(Instant::now());
        let shutdown = self
            .shutting_down
            .map(|d| d.saturating_duration_since(Instant::now()));
        match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn dispatch(&mut self, app: &mut dyn App, event: Event) {
        match event.token {
            WAKER => {
                self.waker.drain();
                if self.stop_flag.load(Ordering::SeqCst) {
                    self.shared.stop_requested = true;
                }
                timed(&mut self.shared, app, None, |app, ctx| app.on_wake(ctx));
                self.collect_jobs(app);
            }
            SIGNALS => {
                if self.signals.as_mut().is_some_and(SignalPipe::drain) {
                    self.shared.stop_requested = true;
                }
            }
            Token(t) if t >= LISTENER_BASE => self.accept(app, (t - LISTENER_BASE) as usize),
            token => {
                if event.is_readable() {
                    self.read(app, token, event.is_read_closed());
                }
                if event.is_writable()
                    && let Some(c) = self.shared.live(token)
                    && c.pending() > 0
                {
                    let id = c.id;
                    self.flush(id);
                }
                // An error or hang-up on a connection that is neither
                // reading nor writing (e.g. half-closed, waiting for a job)
                // would be reported again on every wait: close it now.
                if (event.is_error() || event.is_hup())
                    && let Some(c) = self.shared.live(token)
                    && c.pending() == 0
                    && (c.read_closed || c.read_paused)
                {
                    let id = c.id;
                    let error = c.stream.take_error().ok().flatten();
                    let error = error.unwrap_or_else(|| io::ErrorKind::ConnectionReset.into());
                    self.shared.schedule_close(id, CloseReason::Error(error));
                }
            }
        }
        self.reap(app);
    }

    fn insert(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<ConnId> {
        self.generation = (self.generation + 1) & 0x7fff_ffff;
        let entry = self.shared.conns.vacant_entry();
        let id = ConnId::new(entry.key(), self.generation);
        let interest = if self.edge {
            // Registered once for both: no epoll_ctl per state change.
            Interest::BOTH
        } else {
            Interest::READABLE
        };
        self.selector
            .register(stream.as_fd(), Token(id.0), interest)?;
        let mut conn = Conn::new(stream, peer, id, self.shared.now);
        conn.registered = interest;
        entry.insert(conn);
        self.shared.stats.accepted += 1;
        if let Some(at) = self
            .shared
            .config
            .idle_timeout
            .and_then(|t| self.shared.now.checked_add(t))
        {
            self.shared.timers.add(at, TimerKind::Idle(id));
        }
        Ok(id)
    }

    fn accept(&mut self, app: &mut dyn App, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        if !listener.registered || self.shutting_down.is_some() {
            return;
        }
        for _ in 0..self.shared.config.accept_budget {
            let accepted = rustix::net::acceptfrom_with(
                &self.listeners[index].socket,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            );
            match accepted {
                Ok((fd, addr)) => {
                    self.emfile_logged = false;
                    let stream = TcpStream::from(fd);
                    let peer = addr
                        .and_then(|a| SocketAddr::try_from(a).ok())
                        .or_else(|| stream.peer_addr().ok());
                    let Some(peer) = peer else { continue };
                    self.admit(app, stream, peer);
                }
                Err(rustix::io::Errno::AGAIN) => return,
                // Errors of that one connection (accept(2) says: retry).
                Err(
                    rustix::io::Errno::INTR
                    | rustix::io::Errno::CONNABORTED
                    | rustix::io::Errno::PROTO
                    | rustix::io::Errno::PERM
                    | rustix::io::Errno::NOPROTOOPT
                    | rustix::io::Errno::HOSTDOWN
                    | rustix::io::Errno::NONET
                    | rustix::io::Errno::HOSTUNREACH
                    | rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::NETUNREACH
                    | rustix::io::Errno::NETDOWN,
                ) => {}
                // Out of resources, or something unexpected: back off for a
                // moment (logged once) rather than spin or drop the backlog.
                Err(e) => {
                    self.pause_accepting(e.into());
                    return;
                }
            }
        }
        // Budget used up with connections still queued.
        if self.edge {
            self.unfinished.push(listener_token(index));
        }
    }

    fn admit(&mut self, app: &mut dyn App, stream: TcpStream, peer: SocketAddr) {
        let config = &self.shared.config;
        if self.shared.conns.len() >= config.max_clients {
            self.shared.stats.rejected += 1;
            if config.log_connections {
                eprintln!(
                    "iomux: rejected {peer}: too many clients (max {})",
                    config.max_clients
                );
            }
            return; // dropping the stream closes it
        }
        if config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        match self.insert(stream, peer) {
            Ok(id) => {
                if self.shared.config.log_connections {
                    eprintln!("iomux: connect {peer}");
                }
                timed(&mut self.shared, app, Some(id), |app, ctx| {
                    app.on_open(ctx, id)
                });
            }
            Err(e) => eprintln!("iomux: cannot watch {peer}: {e}"),
        }
    }

    /// Out of descriptors: the pending connection stays queued and the
    /// listener stays readable, so accepting again at once would spin.
    /// Stop watching the listeners for a moment instead; connected clients
    /// go on being served, and closing ones free descriptors meanwhile.
    fn pause_accepting(&mut self, error: io::Error) {
        if !self.emfile_logged {
            eprintln!(
                "iomux: accept failed: {error}; pausing accepts for {:?} (raise the open-files limit or lower --max-clients)",
                self.shared.config.accept_backoff
            );
            self.emfile_logged = true;
        }
        for l in &mut self.listeners {
            if l.registered {
                let _ = self.selector.deregister(l.socket.as_fd());
                l.registered = false;
            }
        }
        let at = self.shared.now + self.shared.config.accept_backoff;
        self.shared.timers.add(at, TimerKind::ResumeAccept);
    }

    fn resume_accepting(&mut self) {
        if self.shutting_down.is_some() {
            return;
        }
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if !l.registered {
                l.registered = self
                    .selector
                    .register(l.socket.as_fd(), listener_token(i), Interest::READABLE)
                    .is_ok();
            }
        }
    }

    fn read(&mut self, app: &mut dyn App, token: Token, peer_shut: bool) {
        let edge = self.edge;
        let config = &self.shared.config;
        let (budget_limit, high_water, max_input, max_jobs) = (
            config.read_budget,
            config.high_water,
            config.max_input,
            config.max_jobs_per_conn,
        );
        let mut budget = budget_limit;
        let now = self.shared.now;
        loop {
            let Some(conn) = self.shared.live(token) else {
                return;
            };
            let id = conn.id;
            let lingering = conn.lingering;
            if !lingering && (conn.read_closed || conn.read_paused || conn.close_when_flushed) {
                return;
            }
            if conn.pending() > high_water || conn.jobs >= max_jobs {
                // Back-pressure: leave the rest in the kernel until the peer
                // reads what it is owed.
                conn.read_paused = true;
                self.update_interest(id);
                return;
            }
            if std::mem::take(&mut conn.redeliver) && !conn.input.is_empty() {
                // Input the app left unconsumed while at its job limit.
                self.deliver(app, id, 0, max_input);
                continue;
            }
            match conn.read(&mut self.scratch) {
                Ok(0) if lingering => {
                    self.shared.schedule_close(id, CloseReason::PeerClosed);
                    return;
                }
                Ok(0) => {
                    conn.read_closed = true;
                    timed(&mut self.shared, app, Some(id), |app, ctx| {
                        app.on_eof(ctx, id)
                    });
                    self.mark_dirty(id);
                    return;
                }
                Ok(n) => {
                    conn.last_read = now;
                    self.shared.stats.bytes_in += n as u64;
                    if !lingering {
                        self.deliver(app, id, n, max_input);
                    }
                    budget = budget.saturating_sub(n);
                    // On a stream socket a short read means the receive queue
                    // is empty now, unless the peer's end of stream is queued
                    // behind it (then read on to see it; no edge would come).
                    if n < self.scratch.len() && !peer_shut {
                        return;
                    }
                    if budget == 0 {
                        if edge {
                            self.unfinished.push(token);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.shared.schedule_close(id, CloseReason::Error(e));
                    return;
                }
            }
        }
    }

    /// Hands `scratch[..n]` to the app, after any input it left unconsumed.
    fn deliver(&mut self, app: &mut dyn App, id: ConnId, n: usize, max_input: usize) {
        let Some(conn) = self.shared.live(Token(id.0)) else {
            return;
        };
        let data = &self.scratch[..n];
        if conn.input.is_empty() {
            let used = timed(&mut self.shared, app, Some(id), |app, ctx| {
                app.on_data(ctx, id, data)
            });
            let rest = &data[used.min(n)..];
            if !rest.is_empty()
                && let Some(c) = self.shared.live(Token(id.0))
            {
                c.input.extend_from_slice(rest);
            }
        } else {
            let mut input = std::mem::take(&mut conn.input);
            input.extend_from_slice(data);
            let used = timed(&mut self.shared, app, Some(id), |app, ctx| {
                app.on_data(ctx, id, &input)
            });
            input.drain(..used.min(input.len()));
            if let Some(c) = self.shared.live(Token(id.0))
                && !input.is_empty()
            {
                c.input = input;
            }
        }
        if let Some(c) = self.shared.live(Token(id.0))
            && c.input.len() > max_input
        {
            self.shared.schedule_close(id, CloseReason::InputLimit);
        }
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.shared.live(Token(id.0))
            && !c.dirty
        {
            c.dirty = true;
            self.shared.dirty.push(id);
        }
    }

    /// Writes what the socket takes; then decides what the connection
    /// waits for next (or closes it when it owes nothing more).
    fn flush(&mut self, id: ConnId) {
        let low_water = self.shared.config.low_water;
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let edge = self.edge;
        // The conns table directly (not `live`), so that the counters below
        // can be updated while the connection is borrowed.
        let Some(conn) = self
            .shared
            .conns
            .get_mut(id.index())
            .filter(|c| c.id == id && !c.closing)
        else {
            return;
        };
        conn.dirty = false;
        match conn.flush() {
            Ok((n, outcome)) => {
                self.shared.stats.bytes_out += n as u64;
                if conn.read_paused
                    && !conn.close_when_flushed
                    && conn.pending() <= low_water
                    && conn.jobs < max_jobs
                {
                    conn.read_paused = false;
                    if edge || !conn.input.is_empty() {
                        // The data that made us pause raised its edge long
                        // ago, and input the app left for later is not in
                        // the socket at all: serve both without waiting for
                        // a new event.
                        conn.redeliver |= !conn.input.is_empty();
                        self.unfinished.push(Token(id.0));
                    }
                }
                // Offloaded jobs still owe replies: a half-closed or
                // shutting-down connection stays open until they are back
                // (`collect_jobs` marks it dirty again).
                if matches!(outcome, Flush::Done)
                    && conn.owes_nothing()
                    && (conn.read_closed || conn.close_when_flushed)
                {
                    self.finish(id, CloseReason::PeerClosed);
                    return;
                }
                self.update_interest(id);
            }
            Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
        }
    }

    /// Closes a connection that owes nothing more, unless input is waiting
    /// unread (reading was paused, or it just arrived): closing then makes
    /// the kernel answer with a reset, which also throws away the output
    /// still queued in the kernel for the peer. So shut the write side
    /// instead (the peer gets all its output, then end of stream) and read,
    /// discarding, until the peer closes too (a "lingering close"). During
    /// a shutdown the grace deadline bounds the wait.
    fn finish(&mut self, id: ConnId, reason: CloseReason) {
        let edge = self.edge;
        let Some(conn) = self.shared.live(Token(id.0)) else {
            return;
        };
        if conn.lingering {
            return;
        }
        let unread =
            !conn.read_closed && rustix::io::ioctl_fionread(&conn.stream).is_ok_and(|n| n > 0);
        if !unread {
            self.shared.schedule_close(id, reason);
            return;
        }
        if let Err(e) = conn.stream.shutdown(std::net::Shutdown::Write) {
            self.shared.schedule_close(id, CloseReason::Error(e));
            return;
        }
        conn.lingering = true;
        conn.read_paused = false;
        // A peer that never closes its side must not keep the fd forever.
        let give_up = self.shared.now + self.shared.config.shutdown_grace;
        self.shared.timers.add(give_up, TimerKind::Linger(id));
        if edge {
            // The waiting input raised its edge long ago.
            self.unfinished.push(Token(id.0));
        }
        self.update_interest(id);
    }

    /// Level-triggered backends are told only of real changes (trap: an
    /// `epoll_ctl` per request). Edge-triggered ones keep both interests.
    fn update_interest(&mut self, id: ConnId) {
        if self.edge {
            return;
        }
        let Some(conn) = self.shared.live(Token(id.0)) else {
            return;
        };
        let wanted = conn.level_interest();
        if wanted != conn.registered {
            match self
                .selector
                .reregister(conn.stream.as_fd(), Token(id.0), wanted)
            {
                Ok(()) => conn.registered = wanted,
                Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
            }
        }
    }

    fn before_sleep(&mut self, app: &mut dyn App) {
        // Flushing can schedule closes, closes call apps, apps queue output.
        while !self.shared.dirty.is_empty() || !self.shared.closing.is_empty() {
            let mut batch = std::mem::take(&mut self.spare_ids);
            std::mem::swap(&mut batch, &mut self.shared.dirty);
            for id in batch.drain(..) {
                self.flush(id);
            }
            self.spare_ids = batch;
            self.reap(app);
        }
    }

    /// Closes everything scheduled for closing.
    fn reap(&mut self, app: &mut dyn App) {
        while let Some((id, reason)) = self.shared.closing.pop() {
            let Some(conn) = self.shared.get(id) else {
                continue;
            };
            // Deregister before the fd closes (epoll watches descriptions).
            let _ = self.selector.deregister(conn.stream.as_fd());
            let peer = conn.peer;
            if conn.jobs > 0
                && let Some(pool) = &self.shared.pool
            {
                pool.cancel(id);
            }
            // Closed before it is logged: a reader of the log sees the fd gone.
            drop(self.shared.conns.remove(id.index()));
            self.shared.stats.closed += 1;
            if self.shared.config.log_connections {
                if let Some(why) = reason.describe() {
                    eprintln!("iomux: {peer}: {why}");
                }
                eprintln!("iomux: disconnect {peer}");
            }
            timed(&mut self.shared, app, Some(id), |app, ctx| {
                app.on_close(ctx, id, &reason)
            });
        }
    }

    /// Idle-timeout entries of closed connections are dropped lazily when
    /// they come due; with many short connections and a long timeout they
    /// would pile up, so sweep them once they outnumber live connections.
    fn compact_timers(&mut self) {
        let shared = &mut self.shared;
        if shared.timers.len() > 2 * shared.conns.len() + 1024 {
            let conns = &shared.conns;
            shared.timers.retain(|kind| match kind {
                TimerKind::Idle(id) | TimerKind::Linger(id) => {
                    conns.get(id.index()).is_some_and(|c| c.id == *id)
                }
                _ => true,
            });
        }
    }

    fn fire_timers(&mut self, app: &mut dyn App) {
        self.compact_timers();
        let now = self.shared.now;
        while let Some(kind) = self.shared.timers.pop_due(now) {
            match kind {
                TimerKind::Idle(id) => {
                    let Some(timeout) = self.shared.config.idle_timeout else {
                        continue;
                    };
                    let Some(conn) = self.shared.live(Token(id.0)) else {
                        continue;
                    };
                    let deadline = conn.last_read + timeout;
                    if deadline <= now {
                        self.shared.schedule_close(id, CloseReason::Idle);
                    } else {
                        self.shared.timers.add(deadline, TimerKind::Idle(id));
                    }
                }
                TimerKind::Linger(id) => {
                    if self.shared.live(Token(id.0)).is_some_and(|c| c.lingering) {
                        self.shared.schedule_close(id, CloseReason::PeerClosed);
                    }
                }
                TimerKind::ResumeAccept => self.resume_accepting(),
                TimerKind::Stats => {
                    self.print_stats();
                    if let Some(every) = self.shared.config.stats_interval {
                        self.shared.timers.add(now + every, TimerKind::Stats);
                    }
                }
                TimerKind::App(t) => {
                    timed(&mut self.shared, app, None, |app, ctx| app.on_timer(ctx, t))
                }
            }
            self.reap(app);
        }
    }

    /// Hands finished offloaded jobs to the app.
    fn collect_jobs(&mut self, app: &mut dyn App) {
        let Some(pool) = &self.shared.pool else {
            return;
        };
        for (job, id, result) in pool.take_done() {
            let (live, redeliver) = match self.shared.live(Token(id.0)) {
                Some(c) => {
                    c.jobs -= 1;
                    // Input left for later at the job limit can go on now.
                    c.redeliver |= !c.input.is_empty();
                    (true, c.redeliver)
                }
                None => (false, false),
            };
            if redeliver {
                self.unfinished.push(Token(id.0));
            }
            timed(&mut self.shared, app, Some(id), |app, ctx| {
                app.on_job_done(ctx, id, job, result)
            });
            if live {
                // It may now owe nothing more (half-closed, shutting down).
                self.mark_dirty(id);
            }
            self.reap(app);
        }
    }

    /// One `stats:` line on stderr: rates over the interval since the last.
    fn print_stats(&mut self) {
        let now = Instant::now();
        let (then, before) = self.last_stats;
        let secs = (now - then).as_secs_f64().max(1e-9);
        let s = self.shared.stats;
        let rate = |a: u64, b: u64| (a - b) as f64 / secs;
        let pending: usize = self.shared.conns.iter().map(|(_, c)| c.pending()).sum();
        let queued = self.shared.pool.as_ref().map_or(0, Pool::queued);
        eprintln!(
            "stats: clients={} accepted={} closed={} req_s={:.0} in_bytes_s={:.0} out_bytes_s={:.0} \
             turns_s={:.0} turn_p99_us={} pending_out={} pool_queue={} stalls={}",
            self.shared.conns.len(),
            s.accepted,
            s.closed,
            rate(s.requests, before.requests),
            rate(s.bytes_in, before.bytes_in),
            rate(s.bytes_out, before.bytes_out),
            rate(s.turns, before.turns),
            self.turn_times.p99_us(),
            pending,
            queued,
            s.stalls
        );
        self.turn_times = TurnTimes::default();
        self.last_stats = (now, s);
    }

    /// Stop accepting; close idle connections; give the others until the
    /// grace deadline to receive what they are owed.
    fn begin_shutdown(&mut self, app: &mut dyn App) {
        self.shutting_down = Some(Instant::now() + self.shared.config.shutdown_grace);
        for l in self.listeners.drain(..) {
            if l.registered {
                let _ = self.selector.deregister(l.socket.as_fd());
            }
        }
        let ids: Vec<ConnId> = self.shared.conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            let Some(conn) = self.shared.live(Token(id.0)) else {
                continue;
            };
            if conn.owes_nothing() {
                self.finish(id, CloseReason::Shutdown);
            } else {
                conn.read_paused = true;
                conn.close_when_flushed = true;
                self.update_interest(id);
            }
        }
        self.reap(app);
    }

    fn close_all(&mut self, app: &mut dyn App) {
        let ids: Vec<ConnId> = self.shared.conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            self.shared.schedule_close(id, CloseReason::Shutdown);
        }
        self.reap(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Records which connections got data.
    #[derive(Default)]
    struct Recorder {
        data: Vec<(ConnId, Vec<u8>)>,
        closed: Vec<ConnId>,
    }

    impl App for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn on_data(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, input: &[u8]) -> usize {
            self.data.push((conn, input.to_vec()));
            input.len()
        }
        fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _reason: &CloseReason) {
            self.closed.push(conn);
        }
    }

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    /// Trap 4: a handler closes connection N, the next accept reuses its
    /// slot (and fd number), and an event for the old N is still queued in
    /// the same batch. The generation in the token must stop it.
    fn stale_event_never_reaches_the_new_connection(backend: Backend) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut lp = EventLoop::new(backend, Config::default()).unwrap();
        let mut app = Recorder::default();
        let (old_server, _old_client) = pair(&listener);
        let old = lp.adopt(old_server).unwrap();
        lp.shared.schedule_close(old, CloseReason::App);
        lp.reap(&mut app);
        assert_eq!(app.closed, vec![old]);
        let (new_server, mut new_client) = pair(&listener);
        let new = lp.adopt(new_server).unwrap();
        assert_eq!(new.index(), old.index(), "the slot is reused");
        assert_ne!(new, old);
        new_client.write_all(b"for the new one").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        lp.dispatch(&mut app, Event::new(Token(old.0), true, true, false, false));
        assert!(
            app.data.is_empty(),
            "a stale event delivered data: {:?}",
            app.data
        );
        lp.dispatch(
            &mut app,
            Event::new(Token(new.0), true, false, false, false),
        );
        assert_eq!(app.data, vec![(new, b"for the new one".to_vec())]);
    }

    #[test]
    fn stale_events_are_dropped_on_every_backend() {
        for backend in Backend::ALL {
            stale_event_never_reaches_the_new_connection(backend);
        }
    }

    /// Replies once, then closes after the reply is written.
    struct ReplyAndClose;

    impl App for ReplyAndClose {
        fn name(&self) -> &'static str {
            "reply-and-close"
        }
        fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, input: &[u8]) -> usize {
            ctx.send(conn, b"bye\n");
            ctx.close_after_flush(conn);
            input.len()
        }
    }

    /// A loop with one connection whose `hello` was read: `ReplyAndClose`
    /// has queued its reply and asked to close after it.
    fn said_hello(backend: Backend) -> (EventLoop, ConnId, TcpStream, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut lp = EventLoop::new(backend, Config::default()).unwrap();
        let (server, mut client) = pair(&listener);
        let id = lp.adopt(server).unwrap();
        client.write_all(b"hello\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        lp.dispatch(
            &mut ReplyAndClose,
            Event::new(Token(id.0), true, false, false, false),
        );
        (lp, id, client, listener)
    }

    fn close_after_flush_sends_then_closes(backend: Backend) {
        use std::io::Read;
        let (mut lp, _id, mut client, _listener) = said_hello(backend);
        lp.before_sleep(&mut ReplyAndClose);
        assert!(lp.shared.conns.is_empty(), "closed once flushed");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye\n");
    }

    /// A lingering close (unread input at close time) waits for the peer to
    /// close, but not for ever: the grace period ends it.
    fn lingering_close_gives_up(backend: Backend) {
        let (mut lp, id, mut client, _listener) = said_hello(backend);
        let mut app = ReplyAndClose;
        client.write_all(b"more, never read").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        lp.before_sleep(&mut app);
        assert!(
            lp.shared.conns.get(id.index()).is_some_and(|c| c.lingering),
            "unread input: the connection lingers instead of resetting"
        );
        lp.shared.now += lp.shared.config.shutdown_grace + Duration::from_secs(1);
        lp.fire_timers(&mut app);
        assert!(lp.shared.conns.is_empty(), "the linger gave up");
    }

    #[test]
    fn lingering_close_gives_up_on_every_backend() {
        for backend in Backend::ALL {
            lingering_close_gives_up(backend);
        }
    }

    #[test]
    fn close_after_flush_on_every_backend() {
        for backend in Backend::ALL {
            close_after_flush_sends_then_closes(backend);
        }
    }

    #[test]
    fn turn_times_p99_is_a_bucket_bound() {
        let mut t = TurnTimes::default();
        assert_eq!(t.p99_us(), 0);
        for _ in 0..990 {
            t.record(Duration::from_micros(3));
        }
        for _ in 0..10 {
            t.record(Duration::from_millis(5));
        }
        // 99 % of turns took 3 µs: the p99 is the bound of their bucket.
        assert_eq!(t.p99_us(), 4);
        t.record(Duration::from_millis(5));
        assert_eq!(t.p99_us(), 8192, "1 % + 1 slow turns move the p99");
    }
}
