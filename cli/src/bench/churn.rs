//! `iomux bench --new-conn`: a new connection for every request, so that
//! the rate measured is the server's rate of accepting (and, with `--tls`,
//! of full handshakes: no session is resumed), not of serving requests.
//!
//! Each of `--conns` slots per thread, in a closed loop: connect (over TLS
//! with `--tls`), send one request of the mode, read its whole response,
//! close (with `close_notify` over TLS), and connect again at once. The
//! latency of one is from the connect's start to its response's last
//! byte. Apart from the keep-alive load generator (`load/`): only the
//! request and the reply rule are shared.

use super::BenchConfig;
use super::wire::{Step, Wire};
use crate::tls::ClientTls;
use hdrhistogram::Histogram;
use iomux::{Addr, App, CloseReason, Config, ConnId, Ctx, EventLoop, TimerId};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TIMER_WINDOW_START: u64 = 1;
const TIMER_WINDOW_END: u64 = 2;
const TIMER_CHECK: u64 = 3;

/// What a `--new-conn` run measured (all threads).
#[derive(Debug)]
pub struct ChurnResult {
    pub addr: Addr,
    /// Connections that completed their request in the window.
    pub completed: u64,
    pub window: Duration,
    /// Connect start to response end, in microseconds.
    pub latency: Histogram<u64>,
    /// Connections that failed (refused, reset, a failed handshake, a
    /// wrong reply), in the window or not.
    pub errors: u64,
    pub first_error: Option<String>,
    /// CPU time the bench's threads used in the window.
    pub cpu: Duration,
    pub threads: usize,
    pub tls: bool,
    pub interrupted: bool,
}

impl ChurnResult {
    /// Connections (handshakes) per second in the window.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The report, as text.
    pub fn render(&self, config: &BenchConfig) -> String {
        let what = if self.tls {
            "TLS connections (full handshakes)"
        } else {
            "connections"
        };
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let mut s = format!(
            "iomux bench: a new connection per request, {} mode, to {} ({} at once, {} thread{}, \
             backend {})\n",
            config.mode.describe(),
            self.addr,
            config.conns,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            config.backend.resolve().name(),
        );
        s += &format!(
            "  {what}: {} in {:.2} s = {:.0}/s\n",
            self.completed,
            self.window.as_secs_f64(),
            self.rate()
        );
        if self.completed > 0 {
            s += &format!(
                "  latency (connect to response): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max \
                 {:.2} ms\n",
                ms(0.5),
                ms(0.9),
                ms(0.99),
                self.latency.max() as f64 / 1000.0
            );
        }
        s += &format!(
            "  bench CPU: {:.1} us per connection\n",
            self.cpu.as_secs_f64() * 1e6 / self.completed.max(1) as f64
        );
        s += &format!("  errors: {}\n", self.errors);
        s
    }
}

/// Runs the `--new-conn` load of `config`: `config.threads` loops, each
/// with its share of `config.conns` slots, against the first of
/// `config.addrs` that accepts a plain connect.
///
/// # Errors
/// No address accepts, a loop cannot start, or every connection failed.
pub fn run(config: &BenchConfig) -> io::Result<ChurnResult> {
    super::validate(config)?;
    iomux::limits::raise_nofile_limit();
    let addr = config
        .addrs
        .iter()
        .find(|a| match a {
            Addr::Tcp(tcp) => {
                std::net::TcpStream::connect_timeout(tcp, config.connect_timeout).is_ok()
            }
            _ => true,
        })
        .cloned()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{}: no address accepts a connection", config.target),
            )
        })?;
    let threads = config.threads;
    let results: Vec<io::Result<Churn>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let slots = config.conns / threads + usize::from(i < config.conns % threads);
                let addr = addr.clone();
                scope.spawn(move || run_thread(config, addr, slots))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a bench thread panicked")))
            })
            .collect()
    });
    let mut result = ChurnResult {
        addr,
        completed: 0,
        window: config.duration,
        latency: new_histogram(),
        errors: 0,
        first_error: None,
        cpu: Duration::ZERO,
        threads,
        tls: config.tls.is_some(),
        interrupted: false,
    };
    for r in results {
        let c = r?;
        result.completed += c.completed;
        let _ = result.latency.add(&c.latency);
        result.errors += c.errors;
        result.cpu += c.cpu;
        result.interrupted |= c.interrupted;
        if result.first_error.is_none() {
            result.first_error = c.first_error;
        }
        if c.window > Duration::ZERO {
            result.window = result.window.min(c.window);
        }
    }
    if result.completed == 0 && result.errors > 0 {
        let why = result.first_error.clone().unwrap_or_default();
        return Err(io::Error::other(format!(
            "every connection failed ({} errors); the first: {why}",
            result.errors
        )));
    }
    Ok(result)
}

fn new_histogram() -> Histogram<u64> {
    // 1 us to 100 s, 3 significant digits: cannot fail.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

fn run_thread(config: &BenchConfig, addr: Addr, slots: usize) -> io::Result<Churn> {
    let mut loop_config = Config::default();
    loop_config.connect_timeout = Some(config.connect_timeout);
    loop_config.tls_handshake_timeout = config.response_timeout;
    loop_config.max_clients = loop_config.max_clients.max(slots + 1);
    let mut lp: EventLoop<Slot> = EventLoop::new(config.backend, loop_config)?;
    let mut churn = Churn {
        addr,
        tls: config.tls.clone(),
        wire: Wire::new(&config.mode, config.size),
        slots,
        open: HashMap::new(),
        warmup: config.warmup,
        duration: config.duration,
        cancel: config.cancel.clone(),
        measuring: false,
        stopping: false,
        window_start: None,
        window: Duration::ZERO,
        cpu_start: Duration::ZERO,
        cpu: Duration::ZERO,
        completed: 0,
        latency: new_histogram(),
        errors: 0,
        first_error: None,
        interrupted: false,
    };
    lp.run(&mut churn)?;
    Ok(churn)
}

/// One connection: when its connect started, how much of its response
/// arrived.
#[derive(Default)]
struct Slot {
    received: usize,
    done: bool,
}

/// One thread's slots.
struct Churn {
    addr: Addr,
    tls: Option<ClientTls>,
    wire: Wire,
    slots: usize,
    /// Connections open (or opening), with when their connect started.
    open: HashMap<ConnId, Instant>,
    warmup: Duration,
    duration: Duration,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    measuring: bool,
    stopping: bool,
    window_start: Option<Instant>,
    window: Duration,
    cpu_start: Duration,
    cpu: Duration,
    completed: u64,
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    interrupted: bool,
}

impl Churn {
    /// Opens a connection in a free slot.
    fn connect(&mut self, ctx: &mut Ctx<'_>) {
        let started = Instant::now();
        let id = match &self.tls {
            Some(tls) => ctx.connect_tls(self.addr.clone(), tls.config.clone(), tls.name.clone()),
            None => ctx.connect(self.addr.clone()),
        };
        match id {
            Ok(id) => {
                self.open.insert(id, started);
            }
            Err(e) => {
                self.failed(format!("{}: connect: {e}", self.addr));
                // Not at once: a failing connect in a tight loop.
                self.stop_soon(ctx);
            }
        }
    }

    fn failed(&mut self, why: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }

    /// A connect that cannot even start: the run ends.
    fn stop_soon(&mut self, ctx: &mut Ctx<'_>) {
        self.end(ctx);
    }

    fn end(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(start) = self.window_start.take() {
            self.window = start.elapsed();
            self.cpu = super::proc::thread_cpu_time().saturating_sub(self.cpu_start);
        }
        let open: Vec<ConnId> = self.open.keys().copied().collect();
        for id in open {
            ctx.close(id);
        }
        ctx.stop();
    }
}

impl App for Churn {
    type State = Slot;

    fn name(&self) -> &'static str {
        "bench --new-conn"
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        for _ in 0..self.slots {
            self.connect(ctx);
        }
        ctx.set_timer(self.warmup, TIMER_WINDOW_START);
        ctx.set_timer(self.warmup + self.duration, TIMER_WINDOW_END);
        ctx.set_timer(Duration::from_millis(50), TIMER_CHECK);
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut Slot, _: iomux::Origin) {
        // Over TLS, sent once the handshake is done.
        let request = self.wire.request(false, 0).to_vec();
        let _ = ctx.send(conn, &request);
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, slot: &mut Slot, input: &[u8]) -> usize {
        if slot.done {
            return input.len();
        }
        match self.wire.take(false, 0, slot.received, input) {
            Step::More => 0,
            Step::Part { used } => {
                slot.received += used;
                used
            }
            Step::Whole { .. } => {
                slot.done = true;
                if let Some(started) = self.open.remove(&conn)
                    && self.measuring
                {
                    self.completed += 1;
                    let us = started.elapsed().as_micros().max(1) as u64;
                    let _ = self.latency.record(us.min(100_000_000));
                }
                ctx.close_after_flush(conn);
                if !self.stopping {
                    self.connect(ctx);
                }
                input.len()
            }
            Step::Wrong(why) => {
                self.failed(format!("{}: {why}", self.addr));
                ctx.close(conn);
                input.len()
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: Slot, reason: &CloseReason) {
        if self.open.remove(&conn).is_none() || self.stopping {
            return;
        }
        // Closed before its response: refused, reset, a failed handshake.
        let why = reason
            .describe()
            .unwrap_or_else(|| "closed before the response".into());
        self.failed(format!("{}: {why}", self.addr));
        self.connect(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: TimerId) {
        match timer.tag() {
            TIMER_WINDOW_START if !self.stopping => {
                self.measuring = true;
                self.window_start = Some(Instant::now());
                self.cpu_start = super::proc::thread_cpu_time();
            }
            TIMER_WINDOW_END => self.end(ctx),
            TIMER_CHECK if !self.stopping => {
                if self.cancel.load(Ordering::Relaxed) {
                    self.interrupted = true;
                    self.end(ctx);
                } else {
                    ctx.set_timer(Duration::from_millis(50), TIMER_CHECK);
                }
            }
            _ => {}
        }
    }
}
