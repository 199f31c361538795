//! The load generator behind `iomux bench`, built on the iomux event loop.
//!
//! Closed loop: each active connection keeps `pipeline` requests in flight
//! and sends the next as soon as a response completes. Latency goes into an
//! HDR histogram (nanoseconds). Responses are checked byte for byte: a
//! short read is normal (TCP splits messages) and is simply continued.

pub mod proc;
pub mod report;
pub mod stats;

use hdrhistogram::Histogram;
use iomux::app::App;
use iomux::{Backend, CloseReason, Config, ConnId, Ctx, EventLoop};
use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a request and its response look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The response is the request's bytes, echoed.
    Echo,
    /// The response is this fixed text (the `ack` app's reply).
    Ack(Vec<u8>),
    /// `hash N TEXT` lines (the `hash` app): light connections ask N = 1,
    /// `heavy` further connections ask N = `heavy_iters`.
    Hash { heavy: usize, heavy_iters: u64 },
}

/// A benchmark run's parameters.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub addr: SocketAddr,
    pub conns: usize,
    pub pipeline: usize,
    pub idle: usize,
    pub size: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
    pub backend: Backend,
    /// Print a live line on stdout (only makes sense on a terminal).
    pub progress: bool,
    /// Send exactly this many requests in all (warm-up included), then
    /// stop; `duration` still caps the run. For per-request accounting
    /// such as `strace -c`.
    pub requests: Option<u64>,
}

/// Moments of a run that an observer (e.g. `iomux compare`) cares about.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The idle connections are open; active ones are not yet.
    IdleOpen,
    /// Warm-up is over; the measured window starts.
    WindowStart,
    /// The measured window ends.
    WindowEnd,
}

/// Called at each [`Phase`].
pub type Observer = Arc<dyn Fn(Phase) + Send + Sync>;

/// Errors seen during a run; any non-zero count fails the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Errors {
    pub connect_failures: u64,
    pub resets: u64,
    pub mismatched: u64,
    pub short: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect_failures + self.resets + self.mismatched + self.short
    }
    fn add(&mut self, o: &Errors) {
        self.connect_failures += o.connect_failures;
        self.resets += o.resets;
        self.mismatched += o.mismatched;
        self.short += o.short;
    }
}

/// The outcome of a run (measured window only).
pub struct BenchResult {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub window: Duration,
    pub latency: Histogram<u64>,
    /// Latency of the heavy connections (hash mode), kept apart.
    pub heavy_latency: Histogram<u64>,
    pub heavy_requests: u64,
    pub errors: Errors,
    /// CPU time the bench's threads used in the window.
    pub cpu: Duration,
    pub threads: usize,
}

impl BenchResult {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }
    /// Share of one core each bench thread used (1.0 = a full core).
    pub fn cpu_per_thread(&self) -> f64 {
        self.cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9) / self.threads.max(1) as f64
    }
    /// At or above this, the load generator was probably the limit.
    pub const SATURATED: f64 = 0.95;
}

/// Opens the connections, runs the load, returns the measured window.
pub fn run(config: &BenchConfig, observer: Option<Observer>) -> io::Result<BenchResult> {
    validate(config)?;
    iomux::limits::raise_nofile_limit();
    let mut errors = Errors::default();
    let idle = open_connections(config.addr, config.idle, "idle", &mut errors)?;
    if let Some(o) = &observer {
        o(Phase::IdleOpen);
    }
    let mut active: Vec<(TcpStream, bool)> =
        open_connections(config.addr, config.conns, "active", &mut errors)?
            .into_iter()
            .map(|s| (s, false))
            .collect();
    if let Mode::Hash { heavy, .. } = config.mode {
        let heavy = open_connections(config.addr, heavy, "heavy", &mut errors)?;
        active.extend(heavy.into_iter().map(|s| (s, true)));
    }
    if active.is_empty() {
        return Err(io::Error::other(format!(
            "could not connect to {}: no active connection opened",
            config.addr
        )));
    }
    let threads = config.threads.clamp(1, active.len());
    let mut groups: Vec<Vec<(TcpStream, bool)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in active.into_iter().enumerate() {
        groups[i % threads].push(s);
    }
    let completed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(i, streams)| {
            let mut config = config.clone();
            config.requests = config
                .requests
                .map(|n| n / threads as u64 + u64::from((i as u64) < n % threads as u64));
            let observer = if i == 0 { observer.clone() } else { None };
            let completed = completed.clone();
            std::thread::spawn(move || {
                run_thread(&config, streams, i == 0, observer, completed, start)
            })
        })
        .collect();
    let mut result: Option<BenchResult> = None;
    for h in handles {
        let part = h
            .join()
            .map_err(|_| io::Error::other("a bench thread panicked"))??;
        result = Some(match result {
            None => part,
            Some(mut acc) => {
                acc.requests += part.requests;
                acc.bytes_sent += part.bytes_sent;
                acc.bytes_received += part.bytes_received;
                acc.window = acc.window.max(part.window);
                let _ = acc.latency.add(&part.latency);
                let _ = acc.heavy_latency.add(&part.heavy_latency);
                acc.heavy_requests += part.heavy_requests;
                acc.errors.add(&part.errors);
                acc.cpu += part.cpu;
                acc.threads += part.threads;
                acc
            }
        });
    }
    drop(idle);
    let mut result = result.ok_or_else(|| io::Error::other("no bench thread ran"))?;
    result.errors.add(&errors);
    Ok(result)
}

fn validate(c: &BenchConfig) -> io::Result<()> {
    let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
    if c.conns == 0 {
        return bad("--conns must be at least 1");
    }
    if c.pipeline == 0 {
        return bad("--pipeline must be at least 1");
    }
    if c.size == 0 {
        return bad("--size must be at least 1");
    }
    if c.conns > 1_000_000 || c.idle > 1_000_000 {
        return bad("--conns and --idle must be at most 1000000");
    }
    if c.pipeline > 65_536 {
        return bad("--pipeline must be at most 65536");
    }
    if c.size > 64 << 20 {
        return bad("--size must be at most 67108864 (64 MiB)");
    }
    if c.duration.is_zero() {
        return bad("--duration must be more than 0");
    }
    if let Mode::Hash { heavy_iters, heavy } = c.mode {
        if !(1..=iomux::app::MAX_ITERATIONS).contains(&heavy_iters) {
            return bad("--heavy-iters must be from 1 to 10000000");
        }
        if heavy > 1_000_000 {
            return bad("--heavy must be at most 1000000");
        }
    }
    if let Mode::Ack(reply) = &c.mode {
        if reply.is_empty() {
            return bad("--reply must not be empty in ack mode");
        }
        if c.pipeline > 1 {
            // ack answers each read, not each request: with several
            // requests in flight the kernel may merge them into one read.
            return bad("--mode ack needs --pipeline 1 (the ack protocol has no framing)");
        }
    }
    Ok(())
}

fn open_connections(
    addr: SocketAddr,
    n: usize,
    what: &str,
    errors: &mut Errors,
) -> io::Result<Vec<TcpStream>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                out.push(s);
            }
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error())
                    || e.raw_os_error() == Some(rustix::io::Errno::NFILE.raw_os_error()) =>
            {
                let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
                return Err(io::Error::other(format!(
                    "cannot open {n} {what} connections: {e}; the open-files limit is {} \
                     (raise it with `ulimit -n`, up to the hard limit {})",
                    limit.current.map_or("unlimited".into(), |v| v.to_string()),
                    limit.maximum.map_or("unlimited".into(), |v| v.to_string()),
                )));
            }
            Err(e) if out.is_empty() && errors.connect_failures == 0 => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot connect to {addr}: {e}"),
                ));
            }
            Err(_) => errors.connect_failures += 1,
        }
    }
    Ok(out)
}

fn run_thread(
    config: &BenchConfig,
    streams: Vec<(TcpStream, bool)>,
    leader: bool,
    observer: Option<Observer>,
    completed: Arc<AtomicU64>,
    start: Instant,
) -> io::Result<BenchResult> {
    let mut loop_config = Config::default();
    // The bench's own handlers are short; its stall lines would only
    // confuse a reader of the server's.
    loop_config.stall_threshold = None;
    loop_config.max_clients = usize::MAX;
    let mut lp = EventLoop::new(config.backend, loop_config)?;
    let mut load = LoadGen::new(config, leader, observer, completed, start);
    for (s, heavy) in streams {
        let id = lp.adopt(s)?;
        if heavy {
            load.heavy.insert(id);
        }
    }
    lp.run(&mut load)?;
    Ok(load.finish())
}

const TIMER_WINDOW_START: u64 = 1;
const TIMER_WINDOW_END: u64 = 2;
const TIMER_PROGRESS: u64 = 3;

struct Client {
    /// Send times of the requests in flight, oldest first.
    in_flight: VecDeque<Instant>,
    /// Sequence number of the next request to send.
    next_seq: u64,
    /// Bytes of the oldest in-flight response received so far.
    received: usize,
}

/// The bench's [`App`]: one per thread.
struct LoadGen {
    mode: Mode,
    size: usize,
    pipeline: usize,
    warmup: Duration,
    duration: Duration,
    progress: bool,
    /// Requests this thread may still send (`--requests`).
    budget: Option<u64>,
    /// Requests sent and not yet answered.
    outstanding: u64,
    observer: Option<Observer>,
    completed: Arc<AtomicU64>,
    start: Instant,
    clients: HashMap<ConnId, Client>,
    /// Bytes of request 0; request k differs in its first 8 bytes.
    base: Vec<u8>,
    /// Scratch for building a request.
    request: Vec<u8>,
    started: bool,
    recording: bool,
    stopping: bool,
    window_start: Option<Instant>,
    window_end: Option<Instant>,
    cpu_start: Duration,
    cpu_end: Duration,
    requests: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
    heavy_latency: Histogram<u64>,
    heavy_requests: u64,
    errors: Errors,
    last_progress: (Instant, u64),
    /// Connections sending heavy requests (hash mode).
    heavy: HashSet<ConnId>,
    /// The one heavy request's text and its expected reply, computed once.
    heavy_reply: Option<Vec<u8>>,
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

impl LoadGen {
    fn new(
        config: &BenchConfig,
        leader: bool,
        observer: Option<Observer>,
        completed: Arc<AtomicU64>,
        start: Instant,
    ) -> LoadGen {
        LoadGen {
            mode: config.mode.clone(),
            size: config.size,
            pipeline: config.pipeline,
            warmup: config.warmup,
            duration: config.duration,
            progress: leader && config.progress && std::io::stdout().is_terminal(),
            budget: config.requests,
            outstanding: 0,
            observer,
            completed,
            start,
            clients: HashMap::new(),
            base: payload(config.size, PAYLOAD_SEED),
            request: Vec::with_capacity(config.size),
            started: false,
            recording: false,
            stopping: false,
            window_start: None,
            window_end: None,
            cpu_start: Duration::ZERO,
            cpu_end: Duration::ZERO,
            requests: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            heavy_latency: new_histogram(),
            heavy_requests: 0,
            heavy: HashSet::new(),
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
            last_progress: (start, 0),
        }
    }

    fn begin(&mut self, ctx: &mut Ctx<'_>) {
        self.started = true;
        if self.warmup.is_zero() {
            self.start_window();
        } else {
            ctx.set_timer(self.warmup, TIMER_WINDOW_START);
        }
        ctx.set_timer(self.warmup + self.duration, TIMER_WINDOW_END);
        if self.progress {
            ctx.set_timer(Duration::from_secs(1), TIMER_PROGRESS);
        }
    }

    fn start_window(&mut self) {
        self.recording = true;
        self.window_start = Some(Instant::now());
        self.cpu_start = proc::thread_cpu_time();
        if let Some(o) = &self.observer {
            o(Phase::WindowStart);
        }
    }

    fn send_request(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        if let Some(left) = &mut self.budget {
            if *left == 0 {
                return;
            }
            *left -= 1;
        }
        self.outstanding += 1;
        let heavy = self.heavy.contains(&conn);
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let seq = client.next_seq;
        client.next_seq += 1;
        client.in_flight.push_back(Instant::now());
        self.build(heavy, seq);
        if self.recording {
            self.bytes_sent += self.request.len() as u64;
        }
        ctx.send(conn, &self.request);
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

    fn end_window(&mut self, ctx: &mut Ctx<'_>) {
        if self.window_start.is_none() {
            self.start_window();
        }
        self.window_end = Some(Instant::now());
        self.cpu_end = proc::thread_cpu_time();
        self.recording = false;
        self.stopping = true;
        if let Some(o) = &self.observer {
            o(Phase::WindowEnd);
        }
        if self.progress {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r{:60}\r", "");
            let _ = out.flush();
        }
        ctx.stop();
    }

    fn finish(self) -> BenchResult {
        let window = match (self.window_start, self.window_end) {
            (Some(a), Some(b)) => b - a,
            (Some(a), None) => a.elapsed(),
            _ => Duration::ZERO,
        };
        BenchResult {
            requests: self.requests,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            window,
            latency: self.latency,
            heavy_latency: self.heavy_latency,
            heavy_requests: self.heavy_requests,
            errors: self.errors,
            cpu: self.cpu_end.saturating_sub(self.cpu_start),
            threads: 1,
        }
    }

    fn print_progress(&mut self) {
        let now = Instant::now();
        let total = self.completed.load(Ordering::Relaxed);
        let (then, before) = self.last_progress;
        let rate = (total - before) as f64 / (now - then).as_secs_f64().max(1e-9);
        self.last_progress = (now, total);
        let elapsed = (now - self.start).as_secs_f64();
        let all = (self.warmup + self.duration).as_secs_f64();
        let phase = if self.recording {
            "measuring"
        } else {
            "warming up"
        };
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r[{elapsed:5.1}/{all:.1}s] {phase}: {rate:10.0} req/s   "
        );
        let _ = out.flush();
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
        self.clients.insert(
            conn,
            Client {
                in_flight: VecDeque::with_capacity(self.pipeline),
                next_seq: 0,
                received: 0,
            },
        );
        for _ in 0..self.pipeline {
            self.send_request(ctx, conn);
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let response_len = self.response_len();
        let heavy = self.heavy.contains(&conn);
        let mut used = 0;
        while used < input.len() {
            let Some(client) = self.clients.get_mut(&conn) else {
                return input.len();
            };
            let Some(&sent_at) = client.in_flight.front() else {
                // Bytes nobody asked for.
                self.errors.mismatched += 1;
                self.clients.remove(&conn);
                ctx.close(conn);
                return input.len();
            };
            let seq = client.next_seq - client.in_flight.len() as u64;
            let offset = client.received;
            let take = (response_len - offset).min(input.len() - used);
            let expected = &self.expected(heavy, seq)[offset..offset + take];
            if expected != &input[used..used + take] {
                self.errors.mismatched += 1;
                self.clients.remove(&conn);
                ctx.close(conn);
                return input.len();
            }
            used += take;
            let Some(client) = self.clients.get_mut(&conn) else {
                return input.len();
            };
            client.received += take;
            if client.received == response_len {
                client.received = 0;
                client.in_flight.pop_front();
                if self.recording {
                    let ns = sent_at.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                    if heavy {
                        let _ = self.heavy_latency.record(ns.max(1));
                        self.heavy_requests += 1;
                    } else {
                        let _ = self.latency.record(ns.max(1));
                        self.requests += 1;
                    }
                    self.bytes_received += response_len as u64;
                }
                self.completed.fetch_add(1, Ordering::Relaxed);
                self.outstanding -= 1;
                if !self.stopping {
                    self.send_request(ctx, conn);
                    if self.budget == Some(0) && self.outstanding == 0 {
                        self.end_window(ctx);
                    }
                }
            }
        }
        used
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        if !self.stopping
            && let Some(c) = self.clients.get(&conn)
            && c.received > 0
        {
            // One error for this connection, not also a reset in on_close.
            self.errors.short += 1;
            self.clients.remove(&conn);
        }
        ctx.close(conn);
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _: (), _reason: &CloseReason) {
        if self.clients.remove(&conn).is_some() && !self.stopping {
            self.errors.resets += 1;
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: u64) {
        match timer {
            TIMER_WINDOW_START => self.start_window(),
            TIMER_WINDOW_END if !self.stopping => self.end_window(ctx),
            TIMER_PROGRESS if !self.stopping => {
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
}
