//! `iomux bench --new-conn`: a new connection for every request, so that
//! the rate measured is the server's rate of accepting (and, with `--tls`,
//! of full handshakes: no session is resumed), not of serving requests.
//!
//! Each of `--conns` slots per thread, in a closed loop: connect (over TLS
//! with `--tls`), send one request of the mode, read its whole response,
//! close (with `close_notify` over TLS), and connect again at once. The
//! latency of one is from the connect's start to its response's last
//! byte. Apart from the keep-alive load generator (`load/`): the request,
//! the reply rule and the recording (window, CPU, histograms, intervals,
//! the tally of errors) are shared, so its result is a [`BenchResult`]
//! like any run's.

use super::record::{Recording, Tally};
use super::schedule::InFlight;
use super::wire::{Step, Wire};
use super::{BenchConfig, BenchResult, Observer, Phase};
use crate::tls::ClientTls;
use iomux::{Addr, App, CloseReason, Config, ConnId, Ctx, EventLoop, Limit, TimerId};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TIMER_WINDOW_START: u64 = 1;
const TIMER_WINDOW_END: u64 = 2;
const TIMER_CHECK: u64 = 3;
const TIMER_INTERVAL: u64 = 4;

/// How often the cancel flag, the response timeouts and the interval
/// merge are looked at.
const TICK: Duration = Duration::from_millis(50);

/// Runs the `--new-conn` load of `config`: `config.threads` loops, each
/// with its share of `config.conns` slots, against the first of
/// `config.addrs` that accepts a plain connect. The result counts a
/// request per completed connection (connect, handshake, request, whole
/// reply); a connect or TLS handshake that fails is a connect failure.
/// `observer` sees the window's start and end and its intervals.
///
/// # Errors
/// A configuration `--new-conn` cannot run (`InvalidInput`), no address
/// accepts, or a loop cannot start.
pub fn run(config: &BenchConfig, observer: Option<Observer>) -> io::Result<BenchResult> {
    super::validate(config)?;
    if config.pipeline > 1 || config.idle > 0 || config.rate.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a new connection per request has one request per connection: no --pipeline, \
             --idle or --rate",
        ));
    }
    iomux::limits::raise_nofile_limit();
    let mut last_error = None;
    let addr = config
        .addrs
        .iter()
        .find(|a| match a {
            Addr::Tcp(tcp) => {
                match std::net::TcpStream::connect_timeout(tcp, config.connect_timeout) {
                    Ok(_) => true,
                    Err(e) => {
                        last_error = Some(e);
                        false
                    }
                }
            }
            _ => true,
        })
        .cloned()
        .ok_or_else(|| {
            let why = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("cannot connect to {}: {why}", config.target),
            )
        })?;
    let threads = config.threads;
    let tally = Arc::new(Tally::new());
    let parts: Vec<io::Result<BenchResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let slots = config.conns / threads + usize::from(i < config.conns % threads);
                let addr = addr.clone();
                let observer = if i == 0 { observer.clone() } else { None };
                let tally = tally.clone();
                scope.spawn(move || run_thread(config, addr, slots, i == 0, observer, tally))
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
    let mut result: Option<BenchResult> = None;
    for part in parts {
        let part = part?;
        match &mut result {
            None => result = Some(part),
            Some(acc) => acc.absorb(part),
        }
    }
    let mut result = result.ok_or_else(|| io::Error::other("no bench thread ran"))?;
    result.interrupted |= config.cancel.load(Ordering::Relaxed);
    result.first_error = tally.first_error();
    Ok(result)
}

fn run_thread(
    config: &BenchConfig,
    addr: Addr,
    slots: usize,
    leader: bool,
    observer: Option<Observer>,
    tally: Arc<Tally>,
) -> io::Result<BenchResult> {
    let mut loop_config = Config::default();
    loop_config.stall_threshold = None;
    loop_config.connect_timeout = Some(config.connect_timeout);
    loop_config.tls_handshake_timeout = config.response_timeout;
    loop_config.max_clients = loop_config.max_clients.max(slots + 1);
    // A framed reply stays whole in the loop's input until its rule finds
    // its end: as large as the largest request may be.
    loop_config.max_input = 64 << 20;
    loop_config.shutdown_grace = Duration::from_millis(100);
    let mut lp: EventLoop<Slot> = EventLoop::new(config.backend, loop_config)?;
    let mut churn = Churn {
        addr: addr.clone(),
        tls: config.tls.clone(),
        wire: Wire::new(&config.mode, config.size),
        slots,
        open: HashMap::new(),
        warmup: config.warmup,
        duration: config.duration,
        response_timeout: config.response_timeout,
        cancel: config.cancel.clone(),
        leader,
        observer,
        tally,
        record: Recording::new(false, false, config.interval),
        measuring: false,
        stopping: false,
    };
    lp.run(&mut churn)?;
    Ok(churn.record.finish(addr))
}

/// One connection: how much of its response arrived, whether it is over.
#[derive(Default)]
struct Slot {
    received: usize,
    done: bool,
}

/// A connection's cycle: when its connect started (its latency is from
/// there) and when its request was sent (its response timeout runs from
/// there; `None` until it is open).
struct Cycle {
    started: Instant,
    sent: Option<Instant>,
}

/// One thread's slots.
struct Churn {
    addr: Addr,
    tls: Option<ClientTls>,
    wire: Wire,
    slots: usize,
    /// Connections open (or opening).
    open: HashMap<ConnId, Cycle>,
    warmup: Duration,
    duration: Duration,
    response_timeout: Duration,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    /// Thread 0: reports the window's phases and intervals.
    leader: bool,
    observer: Option<Observer>,
    tally: Arc<Tally>,
    record: Recording,
    measuring: bool,
    stopping: bool,
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
                self.open.insert(
                    id,
                    Cycle {
                        started,
                        sent: None,
                    },
                );
            }
            Err(e) => {
                // Out of descriptors, say: not retried in a tight loop,
                // the run ends.
                self.record.errors.connect_failures += 1;
                self.failed(format!("{}: connect: {e}", self.addr));
                self.end(ctx);
            }
        }
    }

    /// Notes an error (counted by the caller in its kind).
    fn failed(&mut self, why: String) {
        self.tally.note_error(why);
    }

    fn start_window(&mut self, ctx: &mut Ctx<'_>) {
        self.measuring = true;
        self.record.start_window(&self.tally);
        if self.leader {
            if let Some(o) = &self.observer {
                o(Phase::WindowStart);
            }
            if let Some(every) = self.record.interval() {
                ctx.set_timer(every, TIMER_INTERVAL);
            }
        }
    }

    fn report_interval(&mut self) {
        let line = self.record.report_interval(&self.tally);
        if let Some(o) = &self.observer {
            o(Phase::Interval(line));
        }
    }

    fn end(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if self.measuring && self.record.interval().is_some() {
            if self.leader && self.record.since_last_interval() >= Duration::from_millis(1) {
                // The last, partial interval.
                self.report_interval();
            } else {
                self.record.merge_interval(&self.tally);
            }
        }
        if self.measuring {
            self.record.end_run();
        } else {
            // Ended in the warm-up (a cancel, a connect that cannot
            // start): nothing measured.
            self.record.empty_window();
        }
        if self.leader
            && let Some(o) = &self.observer
        {
            o(Phase::WindowEnd);
        }
        let open: Vec<ConnId> = self.open.keys().copied().collect();
        for id in open {
            ctx.close(id);
        }
        ctx.stop();
    }

    /// Requests unanswered within the response timeout: counted, their
    /// connections closed and replaced (a reconnect, as in the keep-alive
    /// bench).
    fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        let late: Vec<ConnId> = self
            .open
            .iter()
            .filter(|(_, c)| c.sent.is_some_and(|s| s.elapsed() >= self.response_timeout))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.open.remove(&id);
            self.record.errors.timeouts += 1;
            self.failed(format!(
                "{}: no response within {} (response timeout); the connection was closed and \
                 another opened in its place",
                self.addr,
                super::stats::format_secs(self.response_timeout)
            ));
            ctx.close(id);
            self.record.reconnects += 1;
            self.connect(ctx);
            if self.stopping {
                return;
            }
        }
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
        ctx.set_timer(TICK, TIMER_CHECK);
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut Slot, _: iomux::Origin) {
        // Over TLS, once the handshake is done.
        let request = self.wire.request(false, 0);
        let len = request.len();
        let _ = ctx.send(conn, request);
        if let Some(cycle) = self.open.get_mut(&conn) {
            cycle.sent = Some(Instant::now());
        }
        if self.measuring {
            self.record.sent();
            self.record.bytes_sent(len);
        }
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
            Step::Whole { len, .. } => {
                slot.done = true;
                if let Some(cycle) = self.open.remove(&conn) {
                    let done = InFlight {
                        due: cycle.started,
                        sent: cycle.sent.unwrap_or(cycle.started),
                        measured: self.measuring,
                    };
                    self.record
                        .response(&done, false, self.measuring, len, &self.tally);
                }
                ctx.close_after_flush(conn);
                if !self.stopping {
                    self.connect(ctx);
                }
                input.len()
            }
            Step::Wrong(why) => {
                slot.done = true;
                if self.open.remove(&conn).is_some() && !self.stopping {
                    self.record.errors.mismatched += 1;
                    self.failed(format!("{}: {why}", self.addr));
                    self.connect(ctx);
                }
                ctx.close(conn);
                input.len()
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, slot: Slot, reason: &CloseReason) {
        let Some(cycle) = self.open.remove(&conn) else {
            return;
        };
        if self.stopping {
            return;
        }
        // Closed before its whole response.
        let why = reason.describe();
        let addr = &self.addr;
        // `on_open` comes once TCP is established; over TLS, the handshake
        // follows (the request waits for it): a TLS error before any reply
        // is the handshake's.
        let handshake = matches!(reason, CloseReason::Tls(_)) && slot.received == 0;
        let (count, message) = if cycle.sent.is_none() || handshake {
            // Refused, timed out, reset, a failed TLS handshake.
            let why = why.unwrap_or_else(|| "closed before it was established".into());
            (
                &mut self.record.errors.connect_failures,
                format!("{addr}: connection failed: {why}"),
            )
        } else {
            match reason {
                CloseReason::Limit(Limit::Input { max }) => (
                    &mut self.record.errors.mismatched,
                    format!("{addr}: a reply over {max} bytes (the reply rule found no end to it)"),
                ),
                CloseReason::PeerClosed if slot.received > 0 => (
                    &mut self.record.errors.short,
                    format!(
                        "{addr}: the server closed a connection in the middle of a response ({})",
                        self.wire.progress(slot.received)
                    ),
                ),
                CloseReason::PeerClosed => (
                    &mut self.record.errors.closed_by_server,
                    format!("{addr}: the server closed a connection before its response"),
                ),
                _ => (
                    &mut self.record.errors.resets,
                    format!(
                        "{addr}: connection lost: {}",
                        why.unwrap_or_else(|| "closed before the response".into())
                    ),
                ),
            }
        };
        *count += 1;
        self.failed(message);
        self.connect(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: TimerId) {
        if self.stopping {
            return;
        }
        match timer.tag() {
            TIMER_WINDOW_START => self.start_window(ctx),
            TIMER_WINDOW_END => self.end(ctx),
            TIMER_CHECK => {
                if self.cancel.load(Ordering::Relaxed) {
                    self.record.interrupted = true;
                    self.end(ctx);
                    return;
                }
                self.check_timeouts(ctx);
                if !self.leader {
                    self.record.merge_interval(&self.tally);
                }
                ctx.set_timer(TICK, TIMER_CHECK);
            }
            TIMER_INTERVAL => {
                self.report_interval();
                if let Some(every) = self.record.interval() {
                    ctx.set_timer(every, TIMER_INTERVAL);
                }
            }
            _ => {}
        }
    }
}
