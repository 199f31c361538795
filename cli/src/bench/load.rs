//! The bench's [`App`]: one `LoadGen` per thread, over its share of the
//! connections. It opens them itself from `on_start`, on its own loop
//! (see `open.rs`), and starts the load once every thread's are open.
//!
//! Per-connection response timeouts use one loop-wide check timer (every
//! `tick`) that looks at each connection's oldest request in flight; the
//! same timer notices a cancel while the connections are being opened.

use super::open::{Attempt, Gates, Kind, Next, Opener, Plan, Stage};
use super::{BenchConfig, BenchResult, Errors, Interval, Mode, Observer, Phase, proc, stats};
use hdrhistogram::Histogram;
use iomux::app::App;
use iomux::{Addr, CloseReason, ConnId, Ctx};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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
    /// Responses completed (warm-up included), for the progress line.
    completed: AtomicU64,
    /// Errors so far, for the progress and interval lines.
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The current interval's latencies, merged from every thread.
    interval: Mutex<(Histogram<u64>, u64)>,
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
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            interval: Mutex::new((new_histogram(), 0)),
            cancel,
            start,
            gates: Gates::new(threads, idle, start),
            observer,
        }
    }

    /// Keeps `message` if it is the run's first error.
    pub(crate) fn note_error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(message);
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A request sent and not yet answered.
struct InFlight {
    /// When it was due: latency is measured from here.
    due: Instant,
    /// When it was written (the response timeout runs from here).
    sent: Instant,
    /// Sent in the measured window (what `--requests` counts).
    measured: bool,
}

struct Client {
    /// Requests in flight, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Open loop: requests due but not sent (the pipeline was full), with
    /// their due time and whether they are measured.
    backlog: VecDeque<(Instant, bool)>,
    /// Sequence number of the next request to send.
    next_seq: u64,
    /// Bytes of the oldest in-flight response received so far.
    received: usize,
    heavy: bool,
}

impl Client {
    fn measured(&self) -> u64 {
        let a = self.in_flight.iter().filter(|f| f.measured).count();
        let b = self.backlog.iter().filter(|(_, m)| *m).count();
        (a + b) as u64
    }
}

/// The open-loop schedule of one thread.
struct Rate {
    /// Time between two due requests (this thread's share of the rate).
    step: f64,
    /// When the schedule started, and how many requests are due so far.
    origin: Instant,
    due: u64,
    /// Round robin over `LoadGen::order`.
    next_conn: usize,
}

impl Rate {
    fn next_due(&self) -> Instant {
        // At most a year ahead: far beyond any window, never an overflow.
        let secs = (self.step * self.due as f64).clamp(0.0, 31_536_000.0);
        self.origin + Duration::from_secs_f64(secs)
    }
}

pub(crate) struct LoadGen {
    /// The address connections go to (for the leader, the one being
    /// tried until one accepts).
    addr: Addr,
    /// The server as the user named it, for messages.
    target: String,
    mode: Mode,
    size: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    response_timeout: Duration,
    tick: Duration,
    progress: bool,
    leader: bool,
    /// `--requests`: count requests sent in the window, not completions.
    count_sent: bool,
    /// Measured requests this thread may still send (`--requests`).
    budget: Option<u64>,
    /// Measured requests sent or due and not yet answered.
    measured_outstanding: u64,
    observer: Option<Observer>,
    shared: Arc<Shared>,
    clients: HashMap<ConnId, Client>,
    /// Light connections in the order they were added (open-loop round robin).
    order: Vec<ConnId>,
    rate: Option<Rate>,
    rate_per_sec: Option<f64>,
    /// Bytes of request 0; request k differs in its first 8 bytes.
    base: Vec<u8>,
    /// Scratch for building a request.
    request: Vec<u8>,
    started: bool,
    recording: bool,
    stopping: bool,
    /// Open loop, window over: waiting for the measured responses.
    draining: bool,
    interrupted: bool,
    window_start: Option<Instant>,
    window_end: Option<Instant>,
    cpu_start: Duration,
    cpu_end: Duration,
    requests: u64,
    sent: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
    heavy_latency: Histogram<u64>,
    heavy_requests: u64,
    /// Open loop: how late the bench took each request off its schedule
    /// (its own lateness: timer resolution, CPU; not the time a request
    /// then waits for a free pipeline slot, which is the server's).
    send_lag: Histogram<u64>,
    /// Open loop: latency from the real send time (what a closed loop
    /// would report; wrk2's "uncorrected" latency).
    from_send: Histogram<u64>,
    pub(crate) errors: Errors,
    last_progress: (Instant, u64),
    /// The one heavy request's expected reply, computed once.
    heavy_reply: Option<Vec<u8>>,
    interval: Option<Duration>,
    /// This thread's latencies since it last merged them into `shared`.
    interval_hist: Histogram<u64>,
    interval_requests: u64,
    /// Leader: the last interval's end and the error count then.
    last_interval: (Instant, u64),
    intervals: Vec<Interval>,
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
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// Request `seq` of a connection: `base` with the sequence number mixed
/// into its first bytes, so a response from the wrong request is caught.
pub fn build_request(base: &[u8], seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    for (b, s) in out.iter_mut().zip(seq.to_le_bytes()) {
        *b ^= s;
    }
}

/// The `hash` app's reply to TEXT with N iterations.
pub fn hash_reply(text: &[u8], n: u64) -> Vec<u8> {
    let mut reply = crate::apps::iterated_sha256_hex(text, n).into_bytes();
    reply.push(b'\n');
    reply
}

const PAYLOAD_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A printable pseudo-random payload of `size` bytes.
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
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
        let now = Instant::now();
        let leader = thread == 0;
        let opener = Opener::new(
            plan,
            thread,
            addrs,
            !leader,
            config.connect_rate,
            shared.start,
        );
        LoadGen {
            addr: opener.addr().clone(),
            target: config.target.clone(),
            mode: config.mode.clone(),
            size: config.size,
            pipeline: config.pipeline,
            warmup: config.warmup,
            duration: config.duration,
            response_timeout: config.response_timeout,
            tick: (config.response_timeout / 4)
                .clamp(Duration::from_millis(10), Duration::from_millis(100)),
            progress: leader && config.progress,
            leader,
            // Open loop and --requests: the requests due (sent) in the
            // window are measured, however late they are answered.
            count_sent: config.requests.is_some() || config.rate.is_some(),
            budget: config.requests,
            measured_outstanding: 0,
            observer,
            shared,
            clients: HashMap::new(),
            order: Vec::new(),
            rate: None,
            rate_per_sec: config.rate,
            base: payload(config.size, PAYLOAD_SEED),
            request: Vec::with_capacity(config.size),
            started: false,
            recording: false,
            stopping: false,
            draining: false,
            interrupted: false,
            window_start: None,
            window_end: None,
            cpu_start: Duration::ZERO,
            cpu_end: Duration::ZERO,
            requests: 0,
            sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            heavy_latency: new_histogram(),
            heavy_requests: 0,
            send_lag: new_histogram(),
            from_send: new_histogram(),
            // Computed before the run: it costs as much as a heavy request.
            heavy_reply: match config.mode {
                Mode::Hash { heavy, heavy_iters } if heavy > 0 => {
                    let mut text = b"heavy ".to_vec();
                    text.extend_from_slice(&payload(config.size, PAYLOAD_SEED));
                    Some(hash_reply(&text, heavy_iters))
                }
                _ => None,
            },
            errors: Errors::default(),
            last_progress: (now, 0),
            interval: config.interval,
            interval_hist: new_histogram(),
            interval_requests: 0,
            last_interval: (now, 0),
            intervals: Vec::new(),
            opener,
            idle: HashSet::new(),
            chosen_tx,
            connect_timeout: config.connect_timeout,
            connect_timer: false,
            retry_timer: false,
        }
    }

    /// A connection this thread will load.
    fn add(&mut self, id: ConnId, heavy: bool) {
        self.clients.insert(
            id,
            Client {
                in_flight: VecDeque::with_capacity(self.pipeline),
                backlog: VecDeque::new(),
                next_seq: 0,
                received: 0,
                heavy,
            },
        );
        if !heavy {
            self.order.push(id);
        }
    }

    /// No connection survived until the start: an empty window.
    fn finish_empty(&mut self) {
        let now = Instant::now();
        self.window_start = Some(now);
        self.window_end = Some(now);
    }

    fn error(&mut self, message: String) {
        self.shared.note_error(message);
    }

    fn begin(&mut self, ctx: &mut Ctx<'_>) {
        self.started = true;
        if let Some(per_sec) = self.rate_per_sec.filter(|r| r.is_finite() && *r > 0.0) {
            self.rate = Some(Rate {
                step: 1.0 / per_sec,
                origin: Instant::now(),
                due: 0,
                next_conn: 0,
            });
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
    }

    /// Moves the opening of this thread's connections along: starts the
    /// connects that may start, and passes the gates where every thread
    /// meets (all idle connections open, then all connections open).
    fn advance(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            if self.stopping {
                return;
            }
            if self.shared.gates.failed() {
                // This thread or another ended the run before its load.
                self.stop(ctx);
                return;
            }
            match self.opener.stage {
                Stage::Idle | Stage::Active => {
                    self.start_due(ctx);
                    if self.stopping || !self.opener.stage_complete() {
                        return;
                    }
                    let idle = self.opener.stage == Stage::Idle;
                    self.opener.advance();
                    let gates = &self.shared.gates;
                    if !idle {
                        gates.all_done(self.clients.len(), &self.addr);
                    } else if gates.idle_done(self.idle.len()) {
                        // The last thread with idle connections to open:
                        // the others wait until the observer has seen them.
                        if let Some(o) = &self.shared.observer {
                            o(Phase::IdleOpen);
                        }
                        gates.pass_idle();
                    }
                }
                Stage::WaitIdle if self.shared.gates.idle_passed() => self.opener.advance(),
                Stage::WaitOpen if self.shared.gates.all_open() => {
                    self.opener.advance();
                    self.begin_load(ctx);
                    return;
                }
                Stage::WaitIdle | Stage::WaitOpen | Stage::Done => return,
            }
        }
    }

    /// Starts every connect that may start now, and arms the connect timer
    /// for the next one if it is due later (`--connect-rate`).
    fn start_due(&mut self, ctx: &mut Ctx<'_>) {
        while !self.stopping {
            match self.opener.next(Instant::now()) {
                Next::Start(attempt) => self.start_connect(ctx, attempt),
                Next::At(due) => {
                    if !self.connect_timer {
                        self.connect_timer = true;
                        // Timers count from the turn's start.
                        ctx.set_timer(due.saturating_duration_since(ctx.now()), TIMER_CONNECT);
                    }
                    return;
                }
                Next::Wait => return,
            }
        }
    }

    fn start_connect(&mut self, ctx: &mut Ctx<'_>, attempt: Attempt) {
        match ctx.connect(self.opener.addr()) {
            Ok(id) => self.opener.started(id, attempt),
            Err(e) => self.connect_failed(ctx, attempt, e),
        }
    }

    /// A connect failed, at once or (before `on_open`) in `on_close`: it
    /// is tried again (a full Unix-domain accept queue), the next address
    /// is tried (none accepted yet), it is counted (another connection to
    /// the chosen address failed), or the run ends with a message saying
    /// why (no address accepts, a connect timeout, out of descriptors).
    fn connect_failed(&mut self, ctx: &mut Ctx<'_>, attempt: Attempt, mut e: io::Error) {
        let now = Instant::now();
        if e.kind() == io::ErrorKind::WouldBlock {
            if now < attempt.since + self.connect_timeout {
                self.opener.retry_later(attempt);
                if !self.retry_timer {
                    self.retry_timer = true;
                    ctx.set_timer(RETRY_AFTER, TIMER_RETRY);
                }
                return;
            }
            e = io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out (the server's accept queue stayed full)",
            );
        }
        if self.opener.next_addr() {
            // Each address gets a connect timeout of its own.
            self.start_connect(
                ctx,
                Attempt {
                    since: now,
                    ..attempt
                },
            );
            return;
        }
        let addr = self.opener.addr().clone();
        let planned = attempt.planned;
        let what = planned.kind.name();
        let errno = e.raw_os_error();
        if errno == Some(rustix::io::Errno::MFILE.raw_os_error())
            || errno == Some(rustix::io::Errno::NFILE.raw_os_error())
        {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let message = format!(
                "cannot open {} {what} connections to {addr}: {e}; the open-files \
                 limit is {} (raise it with `ulimit -n`, up to the hard limit {})",
                planned.of,
                limit.current.map_or("unlimited".into(), |v| v.to_string()),
                limit.maximum.map_or("unlimited".into(), |v| v.to_string()),
            );
            return self.fail(ctx, io::ErrorKind::Other, message);
        }
        if e.kind() == io::ErrorKind::TimedOut {
            // Each further try would cost the whole timeout.
            let message = format!(
                "cannot connect to {addr}: connect timeout ({} s) on {what} connection {} of {}",
                self.connect_timeout.as_secs_f64(),
                planned.number + 1,
                planned.of
            );
            return self.fail(ctx, io::ErrorKind::TimedOut, message);
        }
        if !self.opener.chosen() {
            let tried: Vec<String> = self.opener.addrs().iter().map(|a| a.to_string()).collect();
            let target = if tried.len() > 1 || tried[0] != self.target {
                format!("{} ({})", self.target, tried.join(", "))
            } else {
                self.target.clone()
            };
            return self.fail(ctx, e.kind(), format!("cannot connect to {target}: {e}"));
        }
        self.errors.connect_failures += 1;
        self.error(format!("{addr}: {what} connection failed: {e}"));
        self.opener.give_up();
    }

    /// Ends the run before its load, on every thread.
    fn fail(&mut self, ctx: &mut Ctx<'_>, kind: io::ErrorKind, message: String) {
        self.shared.gates.fail(kind, message);
        self.stop(ctx);
    }

    /// Every thread's connections are open: the load starts.
    fn begin_load(&mut self, ctx: &mut Ctx<'_>) {
        if self.clients.is_empty() {
            // None of this thread's survived until now: an empty window.
            self.finish_empty();
            self.stop(ctx);
            return;
        }
        self.begin(ctx);
        let heavy = self
            .clients
            .iter()
            .filter(|(_, c)| c.heavy)
            .map(|(&id, _)| id);
        let ids: Vec<ConnId> = self.order.iter().copied().chain(heavy).collect();
        for conn in ids {
            if self.rate.is_some() && self.clients.get(&conn).is_some_and(|c| !c.heavy) {
                // Open loop: requests go out when they are due.
                continue;
            }
            for _ in 0..self.pipeline {
                self.send_request(ctx, conn);
            }
        }
    }

    fn start_window(&mut self, ctx: &mut Ctx<'_>) {
        self.recording = true;
        let now = Instant::now();
        self.window_start = Some(now);
        self.last_interval = (now, self.shared.errors.load(Ordering::Relaxed));
        self.cpu_start = proc::thread_cpu_time();
        if let Some(o) = &self.observer {
            o(Phase::WindowStart);
        }
        if self.leader
            && let Some(every) = self.interval
        {
            ctx.set_timer(every, TIMER_INTERVAL);
        }
        // A thread whose share of `--requests` is 0 has nothing to measure.
        if self.budget == Some(0) {
            self.end_window(ctx);
        }
    }

    /// Whether one more request may go out, and if it is measured.
    fn take_slot(&mut self) -> Option<bool> {
        if self.stopping || self.draining {
            return None;
        }
        if !self.recording {
            return Some(false);
        }
        if let Some(left) = &mut self.budget {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        self.measured_outstanding += 1;
        self.sent += 1;
        Some(true)
    }

    /// Closed loop: the next request of `conn`, now.
    fn send_request(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        if !self.clients.contains_key(&conn) {
            return;
        }
        let Some(measured) = self.take_slot() else {
            return;
        };
        let now = Instant::now();
        self.transmit(ctx, conn, now, now, measured);
    }

    /// Writes the next request of `conn`, due at `due`.
    fn transmit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, due: Instant, now: Instant, m: bool) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let seq = client.next_seq;
        client.next_seq += 1;
        client.in_flight.push_back(InFlight {
            due,
            sent: now,
            measured: m,
        });
        let heavy = client.heavy;
        self.build(heavy, seq);
        if self.recording {
            self.bytes_sent += self.request.len() as u64;
        }
        // A connection that cannot take it is closing, and its close
        // reports why.
        let _ = ctx.send(conn, &self.request);
    }

    /// Open loop: sends what is due on `conn` while its pipeline has room.
    fn pump(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let now = Instant::now();
        loop {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            if client.in_flight.len() >= self.pipeline {
                return;
            }
            let Some((due, measured)) = client.backlog.pop_front() else {
                return;
            };
            self.transmit(ctx, conn, due, now, measured);
        }
    }

    /// Open loop: makes every request due by now, round robin.
    fn on_rate(&mut self, ctx: &mut Ctx<'_>) {
        let now = self.send_due(ctx);
        if let Some(rate) = &self.rate
            && !self.stopping
            && !self.draining
            && self.budget != Some(0)
        {
            ctx.set_timer(rate.next_due().saturating_duration_since(now), TIMER_RATE);
        }
    }

    /// Open loop: sends (or queues) every request due by now. Called from
    /// the rate timer and after each batch of responses, so that under load
    /// requests go out closer to their due time than the loop's
    /// millisecond timer allows. Returns the `now` it used.
    fn send_due(&mut self, ctx: &mut Ctx<'_>) -> Instant {
        let now = Instant::now();
        loop {
            let Some(rate) = &self.rate else {
                return now;
            };
            let due = rate.next_due();
            if due > now || self.order.is_empty() {
                return now;
            }
            let Some(measured) = self.take_slot() else {
                // Stopping, or the `--requests` budget is spent.
                return now;
            };
            let Some(rate) = &mut self.rate else {
                return now;
            };
            let conn = self.order[rate.next_conn % self.order.len()];
            rate.next_conn = rate.next_conn.wrapping_add(1);
            rate.due += 1;
            if self.recording {
                let _ = self
                    .send_lag
                    .record(nanos(now.saturating_duration_since(due)).max(1));
            }
            if let Some(c) = self.clients.get_mut(&conn) {
                c.backlog.push_back((due, measured));
            }
            self.pump(ctx, conn);
        }
    }

    /// Request `seq` into `self.request`.
    fn build(&mut self, heavy: bool, seq: u64) {
        match self.mode {
            Mode::Echo | Mode::Ack(_) => build_request(&self.base, seq, &mut self.request),
            Mode::Hash { heavy_iters, .. } => {
                // Light texts vary with seq; the heavy text is fixed, so its
                // (expensive) expected digest is computed once.
                self.request.clear();
                if heavy {
                    let _ = write!(self.request, "hash {heavy_iters} heavy ");
                } else {
                    let _ = write!(self.request, "hash 1 {seq} ");
                }
                self.request.extend_from_slice(&self.base);
                self.request.push(b'\n');
            }
        }
    }

    /// The bytes response `seq` of a (heavy or light) connection must have.
    fn expected(&mut self, heavy: bool, seq: u64) -> &[u8] {
        match &self.mode {
            Mode::Echo => {
                build_request(&self.base, seq, &mut self.request);
                &self.request
            }
            Mode::Ack(reply) => reply,
            Mode::Hash { heavy_iters, .. } if heavy => {
                let n = *heavy_iters;
                let base = &self.base;
                self.heavy_reply.get_or_insert_with(|| {
                    let mut text = b"heavy ".to_vec();
                    text.extend_from_slice(base);
                    hash_reply(&text, n)
                })
            }
            Mode::Hash { .. } => {
                let mut text = format!("{seq} ").into_bytes();
                text.extend_from_slice(&self.base);
                self.request = hash_reply(&text, 1);
                &self.request
            }
        }
    }

    fn response_len(&self) -> usize {
        match &self.mode {
            Mode::Echo => self.size,
            Mode::Ack(reply) => reply.len(),
            Mode::Hash { .. } => 65,
        }
    }

    /// Forgets a failed connection (the caller closes it or it is closed)
    /// and ends the run when none is left or nothing measured remains.
    fn drop_client(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        self.measured_outstanding -= client.measured().min(self.measured_outstanding);
        self.order.retain(|&c| c != conn);
        if self.stopping || !self.started {
            // Lost while connections are still being opened: the load
            // starts without it (or, with none left, ends at once).
            return;
        }
        if self.clients.is_empty() {
            if self.draining {
                self.stop(ctx);
            } else {
                self.end_window(ctx);
            }
        } else if self.budget == Some(0) && self.measured_outstanding == 0 && self.recording {
            self.end_window(ctx);
        } else {
            self.drained(ctx);
        }
    }

    /// Response timeouts, a cancel, the interval merge: every `tick`.
    fn check(&mut self, ctx: &mut Ctx<'_>) {
        if self.shared.cancel.load(Ordering::Relaxed) {
            if !self.started {
                let why = "interrupted while opening connections".to_string();
                return self.fail(ctx, io::ErrorKind::Interrupted, why);
            }
            self.interrupted = true;
            if self.draining {
                self.stop(ctx);
            } else {
                self.end_window(ctx);
            }
            return;
        }
        let now = Instant::now();
        let timeout = self.response_timeout;
        let late: Vec<(ConnId, usize)> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.in_flight
                    .front()
                    .is_some_and(|f| now.saturating_duration_since(f.sent) > timeout)
            })
            .map(|(&id, c)| (id, c.received))
            .collect();
        let response_len = self.response_len();
        for (conn, received) in late {
            self.errors.timeouts += 1;
            self.error(format!(
                "{}: no response within {} s (response timeout; {received} of \
                 {response_len} bytes of the response received)",
                self.addr,
                timeout.as_secs_f64()
            ));
            ctx.close(conn);
            self.drop_client(ctx, conn);
            if self.stopping {
                return;
            }
        }
        if !self.leader {
            self.merge_interval();
        }
        ctx.set_timer(self.tick, TIMER_CHECK);
    }

    fn merge_interval(&mut self) {
        if self.interval.is_none() || self.interval_requests == 0 {
            return;
        }
        let mut acc = self
            .shared
            .interval
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = acc.0.add(&self.interval_hist);
        acc.1 += self.interval_requests;
        self.interval_hist.reset();
        self.interval_requests = 0;
    }

    /// Leader: one interval line from every thread's latencies.
    fn report_interval(&mut self) {
        self.merge_interval();
        let now = Instant::now();
        let (then, errors_then) = self.last_interval;
        let errors_now = self.shared.errors.load(Ordering::Relaxed);
        self.last_interval = (now, errors_now);
        let (hist, requests) = {
            let mut acc = self
                .shared
                .interval
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let out = (acc.0.clone(), acc.1);
            acc.0.reset();
            acc.1 = 0;
            out
        };
        let secs = (now - then).as_secs_f64();
        let l = stats::latency(&hist);
        let line = Interval {
            elapsed_secs: self.window_start.map_or(0.0, |s| (now - s).as_secs_f64()),
            secs,
            requests,
            requests_per_sec: requests as f64 / secs.max(1e-9),
            p50_us: l.p50_us,
            p90_us: l.p90_us,
            p99_us: l.p99_us,
            max_us: l.max_us,
            errors: errors_now - errors_then,
        };
        self.intervals.push(line);
        if self.progress {
            // The interval line may go to the same terminal.
            self.clear_progress();
        }
        if let Some(o) = &self.observer {
            o(Phase::Interval(line));
        }
    }

    /// Ends the measured window. Open loop: requests due in the window
    /// and still unanswered are waited for first (their latency is the tail
    /// a cut-off would hide), up to the response timeout.
    fn end_window(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopping || self.draining {
            return;
        }
        self.close_window();
        if self.rate.is_some() && !self.interrupted && self.measured_outstanding > 0 {
            self.draining = true;
        } else {
            self.stop(ctx);
        }
    }

    /// Draining: the last measured response is in (or its connection gone).
    fn drained(&mut self, ctx: &mut Ctx<'_>) {
        if self.draining && self.measured_outstanding == 0 {
            self.stop(ctx);
        }
    }

    fn close_window(&mut self) {
        if self.window_start.is_none() {
            let now = Instant::now();
            self.window_start = Some(now);
            self.cpu_start = proc::thread_cpu_time();
        }
        self.window_end = Some(Instant::now());
        self.cpu_end = proc::thread_cpu_time();
        if self.leader && self.interval.is_some() && self.recording {
            // The last, partial interval.
            if self.last_interval.0.elapsed() >= Duration::from_millis(1) {
                self.report_interval();
            }
        } else {
            self.merge_interval();
        }
        self.recording = false;
        if let Some(o) = &self.observer {
            o(Phase::WindowEnd);
        }
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopping = true;
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

    pub(crate) fn finish(self) -> BenchResult {
        let window = match (self.window_start, self.window_end) {
            (Some(a), Some(b)) => b - a,
            (Some(a), None) => a.elapsed(),
            _ => Duration::ZERO,
        };
        let backlog = self.clients.values().map(|c| c.backlog.len() as u64).sum();
        BenchResult {
            addr: self.addr,
            requests: self.requests,
            sent: self.sent,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            window,
            latency: self.latency,
            heavy_latency: self.heavy_latency,
            heavy_requests: self.heavy_requests,
            send_lag: self.send_lag,
            from_send: self.from_send,
            errors: self.errors,
            first_error: None,
            cpu: self.cpu_end.saturating_sub(self.cpu_start),
            threads: 1,
            connect_time: Duration::ZERO,
            interrupted: self.interrupted,
            backlog,
            intervals: self.intervals,
        }
    }

    fn print_progress(&mut self) {
        let now = Instant::now();
        let total = self.shared.completed.load(Ordering::Relaxed);
        let errors = self.shared.errors.load(Ordering::Relaxed);
        let (then, before) = self.last_progress;
        let rate = (total - before) as f64 / (now - then).as_secs_f64().max(1e-9);
        self.last_progress = (now, total);
        let elapsed = (now - self.shared.start).as_secs_f64();
        let all = (self.warmup + self.duration).as_secs_f64();
        let phase = if self.recording {
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

    /// One response of `conn` completed.
    fn complete(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, done: InFlight, heavy: bool) {
        let counted = if self.count_sent {
            done.measured
        } else {
            self.recording
        };
        if counted {
            let ns = nanos(done.due.elapsed()).max(1);
            if heavy {
                let _ = self.heavy_latency.record(ns);
                self.heavy_requests += 1;
            } else {
                let _ = self.latency.record(ns);
                self.requests += 1;
                if self.rate.is_some() {
                    let _ = self.from_send.record(nanos(done.sent.elapsed()).max(1));
                }
                if self.interval.is_some() {
                    let _ = self.interval_hist.record(ns);
                    self.interval_requests += 1;
                }
            }
            self.bytes_received += self.response_len() as u64;
        }
        if done.measured {
            self.measured_outstanding = self.measured_outstanding.saturating_sub(1);
        }
        self.shared.completed.fetch_add(1, Ordering::Relaxed);
        if self.stopping {
            return;
        }
        if self.rate.is_some() && !heavy {
            self.pump(ctx, conn);
        } else {
            self.send_request(ctx, conn);
        }
        if self.budget == Some(0) && self.measured_outstanding == 0 && self.recording {
            self.end_window(ctx);
        }
        self.drained(ctx);
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
            Kind::Light => self.add(conn, false),
            Kind::Heavy => self.add(conn, true),
        }
        self.advance(ctx);
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let response_len = self.response_len();
        let mut used = 0;
        while used < input.len() {
            let Some(client) = self.clients.get_mut(&conn) else {
                return input.len();
            };
            let heavy = client.heavy;
            if client.in_flight.is_empty() {
                self.errors.mismatched += 1;
                self.error(format!(
                    "{}: {} bytes nobody asked for (no request in flight)",
                    self.addr,
                    input.len() - used
                ));
                ctx.close(conn);
                self.drop_client(ctx, conn);
                return input.len();
            }
            let seq = client.next_seq - client.in_flight.len() as u64;
            let offset = client.received;
            let take = (response_len - offset).min(input.len() - used);
            let expected = &self.expected(heavy, seq)[offset..offset + take];
            if expected != &input[used..used + take] {
                let at = offset
                    + expected
                        .iter()
                        .zip(&input[used..used + take])
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                self.errors.mismatched += 1;
                self.error(format!(
                    "{}: response {seq} differs from what {} mode expects at byte {at}",
                    self.addr,
                    self.mode.name()
                ));
                ctx.close(conn);
                self.drop_client(ctx, conn);
                return input.len();
            }
            used += take;
            let Some(client) = self.clients.get_mut(&conn) else {
                return input.len();
            };
            client.received += take;
            if client.received == response_len {
                client.received = 0;
                if let Some(done) = client.in_flight.pop_front() {
                    self.complete(ctx, conn, done, heavy);
                }
            }
        }
        if self.rate.is_some() && !self.stopping {
            self.send_due(ctx);
        }
        used
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        if self.idle.remove(&conn) {
            if !self.stopping {
                // An idle timeout on the server, most likely.
                self.errors.idle_closed += 1;
            }
            ctx.close(conn);
            return;
        }
        if !self.stopping
            && let Some(c) = self.clients.get(&conn)
        {
            let received = c.received;
            if received > 0 {
                self.errors.short += 1;
                self.error(format!(
                    "{}: the server closed a connection in the middle of a response \
                     ({received} of {} bytes)",
                    self.addr,
                    self.response_len()
                ));
            } else {
                self.errors.resets += 1;
                self.error(format!(
                    "{}: the server closed an active connection",
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
            if !self.stopping {
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
            if !self.stopping {
                self.errors.idle_closed += 1;
            }
            return;
        }
        if !self.stopping && self.clients.contains_key(&conn) {
            self.errors.resets += 1;
            let why = reason
                .describe()
                .unwrap_or_else(|| "closed by the server".into());
            self.error(format!("{}: connection lost: {why}", self.addr));
            self.drop_client(ctx, conn);
        }
        self.clients.remove(&conn);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: iomux::TimerId) {
        if self.stopping {
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
                    if !self.stopping {
                        self.start_connect(ctx, attempt);
                    }
                }
                self.advance(ctx);
            }
            TIMER_INTERVAL if !self.draining => {
                self.report_interval();
                if let Some(every) = self.interval {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_differ_by_sequence_and_keep_their_size() {
        let base = payload(64, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        build_request(&base, 0, &mut a);
        build_request(&base, 1, &mut b);
        assert_eq!(a, base);
        assert_eq!(b.len(), 64);
        assert_ne!(a, b);
        let mut tiny = Vec::new();
        build_request(&base[..3], 0x0102_0304, &mut tiny);
        assert_eq!(tiny.len(), 3);
    }

    #[test]
    fn payload_is_printable_and_deterministic() {
        let p = payload(100, 7);
        assert!(p.iter().all(|b| b.is_ascii_lowercase()));
        assert_eq!(p, payload(100, 7));
        assert_ne!(p, payload(100, 8));
    }

    #[test]
    fn rate_schedule_is_evenly_spaced_from_its_origin() {
        let origin = Instant::now();
        let mut r = Rate {
            step: 0.001,
            origin,
            due: 0,
            next_conn: 0,
        };
        assert_eq!(r.next_due(), origin);
        r.due = 1500;
        assert_eq!(r.next_due() - origin, Duration::from_millis(1500));
    }
}
