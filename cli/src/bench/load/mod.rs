//! The bench's [`App`]: one `LoadGen` per thread, over its share of the
//! connections. It opens them itself from `on_start`, on its own loop
//! (`connect.rs` over `open.rs`), and starts the load once every thread's
//! are open. Its life is one [`LoadPhase`] after another; its requests
//! and responses go through `traffic.rs`, in the format of `wire.rs`, at
//! the pace of `schedule.rs`, measured by `record.rs`.
//!
//! Per-connection response timeouts use one loop-wide check timer (every
//! `tick`) that looks at each connection's oldest request in flight; the
//! same timer notices a cancel while the connections are being opened. A
//! connection past the timeout is closed (a late reply could not be told
//! from the next one's) and, while the load runs, replaced by a new one
//! opened the same way as the first ones: a server that stops answering
//! some requests is measured on, not abandoned.

mod connect;
mod traffic;

use super::open::{Attempt, Gates, Kind, Opener, Plan, Planned, Stage};
use super::record::{Recording, Tally};
use super::schedule::{Client, Schedule, WakeUp};
use super::wire::Wire;
use super::{BenchConfig, BenchResult, Observer, Phase};
use iomux::app::App;
use iomux::{Addr, CloseReason, ConnId, Ctx, Limit};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const TIMER_WINDOW_START: u64 = 1;
const TIMER_WINDOW_END: u64 = 2;
const TIMER_PROGRESS: u64 = 3;
const TIMER_CHECK: u64 = 4;
const TIMER_RATE: u64 = 5;
const TIMER_INTERVAL: u64 = 6;
/// The next connect is due (`--connect-rate`).
const TIMER_CONNECT: u64 = 7;
/// Unix-domain connects that found the accept queue full try again.
const TIMER_RETRY: u64 = 8;

/// How soon a Unix-domain connect that found the accept queue full is
/// tried again.
const RETRY_AFTER: Duration = Duration::from_millis(1);

/// What the threads of one run share.
pub(crate) struct Shared {
    pub(crate) tally: Tally,
    cancel: Arc<AtomicBool>,
    start: Instant,
    /// Where the threads meet while opening their connections.
    pub(crate) gates: Gates,
    /// Told [`Phase::IdleOpen`] by the thread that opened the last idle
    /// connection.
    observer: Option<Observer>,
}

impl Shared {
    pub(crate) fn new(
        cancel: Arc<AtomicBool>,
        threads: usize,
        idle: usize,
        observer: Option<Observer>,
    ) -> Shared {
        let start = Instant::now();
        Shared {
            tally: Tally::new(),
            cancel,
            start,
            gates: Gates::new(threads, idle, start),
            observer,
        }
    }
}

/// Where a thread is in its run; it only moves forward (any phase may
/// jump to `Stopped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadPhase {
    /// Opening this thread's connections (see `open.rs`); no request yet.
    Opening,
    /// The load runs; nothing is measured yet.
    WarmingUp,
    /// The measured window.
    Measuring,
    /// Open loop, window over: waiting for the responses to the requests
    /// due in the window and sent (their latency is the tail a cut-off
    /// would hide), up to the response timeout. Nothing more is sent.
    Draining,
    /// The loop was asked to stop; what still arrives is ignored.
    Stopped,
}

pub(crate) struct LoadGen {
    phase: LoadPhase,
    /// The address connections go to (for the leader, the one being
    /// tried until one accepts).
    addr: Addr,
    /// The server as the user named it, for messages.
    target: String,
    warmup: Duration,
    duration: Duration,
    response_timeout: Duration,
    tick: Duration,
    progress: bool,
    leader: bool,
    observer: Option<Observer>,
    shared: Arc<Shared>,
    clients: HashMap<ConnId, Client>,
    wire: Wire,
    schedule: Schedule,
    record: Recording,
    last_progress: (Instant, u64),
    /// Opening this thread's share of the connections.
    opener: Opener,
    /// Its idle connections that are open.
    idle: HashSet<ConnId>,
    /// The first thread tells the run which address accepted.
    chosen_tx: Option<mpsc::Sender<Addr>>,
    connect_timeout: Duration,
    /// The connect timer and the retry timer are armed.
    connect_timer: bool,
    retry_timer: bool,
    /// Open loop: the loop's wake-up latency for the rate timer, and when
    /// that timer is due (if it had to wait).
    wake: WakeUp,
    rate_armed: Option<Instant>,
    /// The window closed (no request falls due after it).
    window_closed: bool,
    /// Connect over TLS with this (`--tls`).
    tls: Option<crate::tls::ClientTls>,
}

impl LoadGen {
    /// Thread `thread`'s share of `plan`. The first thread (the leader)
    /// tries `addrs` in order and sends the one that accepted on
    /// `chosen_tx`; the others get that one address.
    pub(crate) fn new(
        config: &BenchConfig,
        thread: usize,
        plan: Plan,
        addrs: Vec<Addr>,
        chosen_tx: Option<mpsc::Sender<Addr>>,
        observer: Option<Observer>,
        shared: Arc<Shared>,
    ) -> LoadGen {
        let leader = thread == 0;
        let opener = Opener::new(
            plan,
            thread,
            addrs,
            !leader,
            config.connect_rate,
            shared.start,
        );
        let schedule = Schedule::new(config.pipeline, config.rate, config.requests);
        // Open loop and --requests: the requests due (sent) in the
        // window are measured, however late they are answered.
        let count_sent = config.requests.is_some() || config.rate.is_some();
        LoadGen {
            phase: LoadPhase::Opening,
            addr: opener.addr().clone(),
            target: config.target.clone(),
            warmup: config.warmup,
            duration: config.duration,
            response_timeout: config.response_timeout,
            tick: (config.response_timeout / 4)
                .clamp(Duration::from_millis(10), Duration::from_millis(100)),
            progress: leader && config.progress,
            leader,
            observer,
            shared,
            clients: HashMap::new(),
            wire: Wire::new(&config.mode, config.size),
            record: Recording::new(count_sent, schedule.is_open_loop(), config.interval),
            schedule,
            last_progress: (Instant::now(), 0),
            opener,
            idle: HashSet::new(),
            chosen_tx,
            connect_timeout: config.connect_timeout,
            connect_timer: false,
            retry_timer: false,
            wake: WakeUp::new(),
            rate_armed: None,
            window_closed: false,
            tls: config.tls.clone(),
        }
    }

    fn stopped(&self) -> bool {
        self.phase == LoadPhase::Stopped
    }

    fn measuring(&self) -> bool {
        self.phase == LoadPhase::Measuring
    }

    /// A connection this thread will load.
    fn add(&mut self, id: ConnId, planned: Planned) {
        let client = Client::new(self.schedule.pipeline, planned);
        if !client.heavy {
            self.schedule.add(id);
        }
        self.clients.insert(id, client);
    }

    /// Puts `conn` to work: in the closed loop its pipeline of requests
    /// goes out now; in the open loop it is already in the round robin and
    /// its requests go out when they are due.
    fn start_requests(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let paced = self
            .clients
            .get(&conn)
            .is_none_or(|c| self.schedule.paces(c.heavy));
        if !paced {
            for _ in 0..self.schedule.pipeline {
                self.send_request(ctx, conn);
            }
        }
    }

    /// Opens a connection in place of one closed after a response timeout,
    /// so that the load goes on at the same number of connections.
    fn reopen(&mut self, ctx: &mut Ctx<'_>, planned: Planned) {
        self.record.reconnects += 1;
        let attempt = Attempt {
            planned,
            since: Instant::now(),
        };
        self.start_connect(ctx, attempt);
    }

    fn error(&mut self, message: String) {
        self.shared.tally.note_error(message);
    }

    /// Every thread's connections are open: the load starts, with the
    /// warm-up, and the window's timers are set.
    fn begin_load(&mut self, ctx: &mut Ctx<'_>) {
        if self.clients.is_empty() {
            // None of this thread's survived until now: an empty window.
            self.record.empty_window();
            self.stop(ctx);
            return;
        }
        self.phase = LoadPhase::WarmingUp;
        if self.schedule.is_open_loop() {
            self.schedule.start(Instant::now());
            ctx.set_timer(Duration::ZERO, TIMER_RATE);
        }
        if self.warmup.is_zero() {
            self.start_window(ctx);
        } else {
            ctx.set_timer(self.warmup, TIMER_WINDOW_START);
        }
        ctx.set_timer(self.warmup + self.duration, TIMER_WINDOW_END);
        if self.progress {
            ctx.set_timer(Duration::from_secs(1), TIMER_PROGRESS);
        }
        let heavy = self
            .clients
            .iter()
            .filter(|(_, c)| c.heavy)
            .map(|(&id, _)| id);
        let ids: Vec<ConnId> = self.schedule.order().iter().copied().chain(heavy).collect();
        for conn in ids {
            self.start_requests(ctx, conn);
        }
    }

    fn start_window(&mut self, ctx: &mut Ctx<'_>) {
        // Open loop: requests of the warm-up still waiting for a pipeline
        // slot are dropped (they are not measured, and would otherwise go
        // out ahead of every measured one).
        self.drop_backlogs();
        self.phase = LoadPhase::Measuring;
        self.record.start_window(&self.shared.tally);
        if let Some(o) = &self.observer {
            o(Phase::WindowStart);
        }
        if self.leader
            && let Some(every) = self.record.interval()
        {
            ctx.set_timer(every, TIMER_INTERVAL);
        }
        // A thread whose share of `--requests` is 0 has nothing to measure.
        if self.schedule.budget_spent() {
            self.end_window(ctx);
        }
    }

    /// Forgets a failed connection (the caller closes it or it is closed)
    /// and ends the run when none is left (and none is being reopened) or
    /// nothing measured remains.
    fn drop_client(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        self.schedule.remove(conn, client.measured());
        // Its requests due and still waiting to be sent never will be.
        let unsent = client.backlog.iter().filter(|&&(_, m)| m).count();
        self.record.missed(unsent as u64);
        if matches!(self.phase, LoadPhase::Opening | LoadPhase::Stopped) {
            // Lost while connections are still being opened: the load
            // starts without it (or, with none left, ends at once).
            return;
        }
        if self.clients.is_empty() {
            if self.phase == LoadPhase::Draining {
                self.stop(ctx);
            } else if self.opener.connecting() == 0 {
                self.end_window(ctx);
            }
        } else if self.schedule.budget_done() && self.measuring() {
            self.end_window(ctx);
        } else {
            self.drained(ctx);
        }
    }

    /// Response timeouts, a cancel, the interval merge: every `tick`.
    fn check(&mut self, ctx: &mut Ctx<'_>) {
        if self.shared.cancel.load(Ordering::Relaxed) {
            if self.phase == LoadPhase::Opening {
                let why = "interrupted while opening connections".to_string();
                return self.fail(ctx, io::ErrorKind::Interrupted, why);
            }
            self.record.interrupted = true;
            if self.phase == LoadPhase::Draining {
                self.stop(ctx);
            } else {
                self.end_window(ctx);
            }
            return;
        }
        let now = Instant::now();
        let timeout = self.response_timeout;
        let past = |sent: Instant| now.saturating_duration_since(sent) > timeout;
        // Each connection whose oldest request is past the timeout, with
        // how many of its requests are.
        let late: Vec<(ConnId, u64, usize, Planned)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.in_flight.front().is_some_and(|f| past(f.sent)))
            .map(|(&id, c)| {
                let n = c.in_flight.iter().filter(|f| past(f.sent)).count();
                (id, n as u64, c.received, c.planned)
            })
            .collect();
        for (conn, requests, received, planned) in late {
            self.record.errors.timeouts += requests;
            // Its replies cannot be told apart from late ones any more: it
            // is closed, and the load goes on with a new one in its place.
            let reopen = matches!(self.phase, LoadPhase::WarmingUp | LoadPhase::Measuring);
            self.error(format!(
                "{}: no response within {} (response timeout; {} received); the connection \
                 was closed{}",
                self.addr,
                super::stats::format_secs(timeout),
                self.wire.progress(received),
                if reopen {
                    " and another opened in its place"
                } else {
                    ""
                }
            ));
            ctx.close(conn);
            if reopen {
                self.reopen(ctx, planned);
            }
            self.drop_client(ctx, conn);
            if self.stopped() {
                return;
            }
        }
        if !self.leader {
            self.record.merge_interval(&self.shared.tally);
        }
        ctx.set_timer(self.tick, TIMER_CHECK);
    }

    /// Leader: one interval line from every thread's latencies.
    fn report_interval(&mut self) {
        let line = self.record.report_interval(&self.shared.tally);
        if self.progress {
            // The interval line may go to the same terminal.
            self.clear_progress();
        }
        if let Some(o) = &self.observer {
            o(Phase::Interval(line));
        }
    }

    /// Ends the measured window (or the warm-up, if the run ends in it).
    /// Open loop: what fell due by now is taken off the schedule (and sent
    /// where a pipeline slot is free); what still waits for a slot is
    /// missed, never sent; the requests in flight are waited for (see
    /// [`LoadPhase::Draining`]).
    fn end_window(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.phase, LoadPhase::Stopped | LoadPhase::Draining) {
            return;
        }
        if self.schedule.is_open_loop() && self.measuring() {
            self.send_due(ctx);
        }
        self.close_window();
        let missed = self.drop_backlogs();
        self.record.missed(missed);
        if self.schedule.is_open_loop()
            && !self.record.interrupted
            && self.schedule.outstanding() > 0
        {
            self.phase = LoadPhase::Draining;
        } else {
            self.stop(ctx);
        }
    }

    /// Empties every connection's backlog of due requests not sent;
    /// returns how many of them were measured.
    fn drop_backlogs(&mut self) -> u64 {
        let mut measured = 0;
        for c in self.clients.values_mut() {
            measured += c.backlog.drain(..).filter(|&(_, m)| m).count() as u64;
        }
        self.schedule.forget(measured);
        measured
    }

    /// Draining: the last measured response is in (or its connection gone).
    fn drained(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase == LoadPhase::Draining && self.schedule.outstanding() == 0 {
            self.stop(ctx);
        }
    }

    fn close_window(&mut self) {
        self.record.close_window();
        if self.leader && self.record.interval().is_some() && self.measuring() {
            // The last, partial interval.
            if self.record.since_last_interval() >= Duration::from_millis(1) {
                self.report_interval();
            }
        } else {
            self.record.merge_interval(&self.shared.tally);
        }
        self.window_closed = true;
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.phase = LoadPhase::Stopped;
        self.record.end_run();
        // The window's time ends with the run (open loop: after the wait
        // for its last answers), as the result counts it.
        if self.window_closed
            && let Some(o) = &self.observer
        {
            o(Phase::WindowEnd);
        }
        if self.progress {
            self.clear_progress();
        }
        ctx.stop();
    }

    fn clear_progress(&self) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{:70}\r", "");
        let _ = err.flush();
    }

    pub(crate) fn finish(mut self) -> BenchResult {
        // Requests still waiting to be sent when the run stopped (a lost
        // connection's were counted when it was dropped): missed too.
        let left = self.drop_backlogs();
        self.record.missed(left);
        self.record.finish(self.addr)
    }

    fn print_progress(&mut self) {
        let now = Instant::now();
        let total = self.shared.tally.completed();
        let errors = self.shared.tally.errors();
        let (then, before) = self.last_progress;
        let rate = (total - before) as f64 / (now - then).as_secs_f64().max(1e-9);
        self.last_progress = (now, total);
        let elapsed = (now - self.shared.start).as_secs_f64();
        let all = (self.warmup + self.duration).as_secs_f64();
        let phase = if self.measuring() {
            "measuring"
        } else {
            "warming up"
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{elapsed:5.1}/{all:.1}s] {phase}: {rate:10.0} req/s, {errors} errors   "
        );
        let _ = err.flush();
    }
}

impl App for LoadGen {
    type State = ();

    fn name(&self) -> &'static str {
        "bench"
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_timer(self.tick, TIMER_CHECK);
        self.advance(ctx);
    }

    /// A gate opened, or the run failed on another thread.
    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.advance(ctx);
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        let Some((planned, first)) = self.opener.opened(conn) else {
            return;
        };
        if first {
            self.addr = self.opener.addr().clone();
            if let Some(tx) = self.chosen_tx.take() {
                // The other threads start now, with this address.
                let _ = tx.send(self.addr.clone());
            }
        }
        match planned.kind {
            Kind::Idle => {
                self.idle.insert(conn);
            }
            Kind::Light | Kind::Heavy => {
                self.add(conn, planned);
                if self.opener.stage == Stage::Done {
                    // A replacement, opened while the load runs.
                    if matches!(self.phase, LoadPhase::WarmingUp | LoadPhase::Measuring) {
                        self.start_requests(ctx, conn);
                    } else {
                        ctx.close(conn);
                        self.drop_client(ctx, conn);
                    }
                }
            }
        }
        self.advance(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.receive(ctx, conn, input)
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        if self.idle.remove(&conn) {
            if !self.stopped() {
                // An idle timeout on the server, most likely.
                self.record.errors.idle_closed += 1;
            }
            ctx.close(conn);
            return;
        }
        if !self.stopped()
            && let Some(c) = self.clients.get(&conn)
        {
            let received = c.received;
            if received > 0 {
                self.record.errors.short += 1;
                self.error(format!(
                    "{}: the server closed a connection in the middle of a response \
                     ({})",
                    self.addr,
                    self.wire.progress(received)
                ));
            } else {
                // A clean end of stream (FIN) between responses: not a reset.
                self.record.errors.closed_by_server += 1;
                self.error(format!(
                    "{}: the server closed an active connection (a clean close, between \
                     responses)",
                    self.addr
                ));
            }
            self.drop_client(ctx, conn);
        }
        ctx.close(conn);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        if let Some(attempt) = self.opener.failed(conn) {
            // Closed before it was established: the connect failed.
            if !self.stopped() {
                let e = match reason {
                    CloseReason::Error(e) => match e.raw_os_error() {
                        Some(code) => io::Error::from_raw_os_error(code),
                        None => io::Error::new(e.kind(), e.to_string()),
                    },
                    other => io::Error::other(
                        other
                            .describe()
                            .unwrap_or_else(|| "closed before it was established".into()),
                    ),
                };
                self.connect_failed(ctx, attempt, e);
                self.advance(ctx);
            }
            return;
        }
        if self.idle.remove(&conn) {
            if !self.stopped() {
                self.record.errors.idle_closed += 1;
            }
            return;
        }
        if !self.stopped() && self.clients.contains_key(&conn) {
            let why = reason
                .describe()
                .unwrap_or_else(|| "closed by the server".into());
            match reason {
                CloseReason::Limit(Limit::Input { max }) => {
                    self.record.errors.mismatched += 1;
                    self.error(format!(
                        "{}: a reply over {max} bytes (the reply rule found no end to it)",
                        self.addr
                    ));
                }
                CloseReason::PeerClosed => {
                    self.record.errors.closed_by_server += 1;
                    self.error(format!(
                        "{}: the server closed an active connection",
                        self.addr
                    ));
                }
                _ => {
                    self.record.errors.resets += 1;
                    self.error(format!("{}: connection lost: {why}", self.addr));
                }
            }
            self.drop_client(ctx, conn);
        }
        self.clients.remove(&conn);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: iomux::TimerId) {
        if self.stopped() {
            return;
        }
        match timer.tag() {
            TIMER_WINDOW_START => self.start_window(ctx),
            TIMER_WINDOW_END => self.end_window(ctx),
            TIMER_CHECK => self.check(ctx),
            TIMER_RATE => self.on_rate(ctx),
            TIMER_CONNECT => {
                self.connect_timer = false;
                self.advance(ctx);
            }
            TIMER_RETRY => {
                self.retry_timer = false;
                for attempt in self.opener.take_retries() {
                    if !self.stopped() {
                        self.start_connect(ctx, attempt);
                    }
                }
                self.advance(ctx);
            }
            TIMER_INTERVAL if self.phase != LoadPhase::Draining => {
                self.report_interval();
                if let Some(every) = self.record.interval() {
                    ctx.set_timer(every, TIMER_INTERVAL);
                }
            }
            TIMER_PROGRESS => {
                self.print_progress();
                ctx.set_timer(Duration::from_secs(1), TIMER_PROGRESS);
            }
            _ => {}
        }
    }
}
