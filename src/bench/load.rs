//! The bench's [`App`]: one `LoadGen` per thread, over its share of the
//! active connections.
//!
//! Per-connection response timeouts use one loop-wide check timer (every
//! `tick`) that looks at each connection's oldest request in flight.

use super::{BenchConfig, BenchResult, Errors, Interval, Mode, Observer, Phase, proc, stats};
use hdrhistogram::Histogram;
use iomux::app::App;
use iomux::{Addr, CloseReason, ConnId, Ctx};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMER_WINDOW_START: u64 = 1;
const TIMER_WINDOW_END: u64 = 2;
const TIMER_PROGRESS: u64 = 3;
const TIMER_CHECK: u64 = 4;
const TIMER_RATE: u64 = 5;
const TIMER_INTERVAL: u64 = 6;

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
}

impl Shared {
    pub(crate) fn new(cancel: Arc<AtomicBool>) -> Shared {
        Shared {
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            interval: Mutex::new((new_histogram(), 0)),
            cancel,
            start: Instant::now(),
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
    addr: Addr,
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
    let mut reply = iomux::app::iterated_sha256_hex(text, n).into_bytes();
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
    pub(crate) fn new(
        config: &BenchConfig,
        addr: Addr,
        leader: bool,
        observer: Option<Observer>,
        shared: Arc<Shared>,
    ) -> LoadGen {
        let now = Instant::now();
        LoadGen {
            addr,
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
        }
    }

    /// A connection this thread will load.
    pub(crate) fn add(&mut self, id: ConnId, heavy: bool) {
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

    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// No connection survived until the start: an empty window.
    pub(crate) fn finish_empty(&mut self) {
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
        ctx.set_timer(self.tick, TIMER_CHECK);
        if self.progress {
            ctx.set_timer(Duration::from_secs(1), TIMER_PROGRESS);
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
        ctx.send(conn, &self.request);
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
        if self.stopping {
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

    pub(crate) fn finish(self, addr: Addr) -> BenchResult {
        let window = match (self.window_start, self.window_end) {
            (Some(a), Some(b)) => b - a,
            (Some(a), None) => a.elapsed(),
            _ => Duration::ZERO,
        };
        let backlog = self.clients.values().map(|c| c.backlog.len() as u64).sum();
        BenchResult {
            addr,
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

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        if !self.started {
            self.begin(ctx);
        }
        if self.rate.is_some() && self.clients.get(&conn).is_some_and(|c| !c.heavy) {
            // Open loop: requests go out when they are due.
            return;
        }
        for _ in 0..self.pipeline {
            self.send_request(ctx, conn);
        }
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

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: u64) {
        if self.stopping {
            return;
        }
        match timer {
            TIMER_WINDOW_START => self.start_window(ctx),
            TIMER_WINDOW_END => self.end_window(ctx),
            TIMER_CHECK => self.check(ctx),
            TIMER_RATE => self.on_rate(ctx),
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
