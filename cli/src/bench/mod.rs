//! The load generator behind `iomux bench`, built on the iomux event loop.
//!
//! Two models, as wrk and wrk2 have them:
//!
//! - **Closed loop** (the default): each active connection keeps
//!   `pipeline` requests in flight and sends the next as soon as a
//!   response completes. Latency is from the real send time. A slow server
//!   slows the bench down with it, so queueing delay is hidden
//!   ("coordinated omission").
//! - **Open loop** (`rate`): requests are due at a fixed rate across the
//!   connections, round robin, whatever the server does. A request is sent
//!   when it is due, or as soon as its connection has a free pipeline slot,
//!   and its latency is measured from the time it was *due*: the waiting a
//!   real client would have seen is counted.
//!
//! Latency goes into an HDR histogram (nanoseconds). Responses of the
//! bench's own modes are checked byte for byte; any other protocol's
//! (`--request`, `--mode http`) are framed by a reply rule
//! (`protocol.rs`). A short read is normal (TCP splits messages) and is
//! simply continued. Every way a run can go wrong (a connect or response
//! timeout, a reset, a clean close by the server, a wrong or cut
//! response, an idle connection closed by the server, no response at all)
//! is counted and described with the server's address; a response timeout
//! replaces its connection and the run goes on.
//!
//! Each load thread opens its own connections on its loop, without
//! blocking it, and the load starts once every thread's are open
//! (`open.rs`): the connect time is reported apart from the window.

pub mod churn;
mod config;
mod load;
mod open;
pub mod plot;
pub mod proc;
pub mod protocol;
mod record;
pub mod report;
mod schedule;
pub mod stats;
pub mod verdict;
mod wire;

pub use config::BenchConfig;
pub(crate) use config::validate;
use hdrhistogram::Histogram;
use iomux::{Addr, Config, EventLoop};
use load::{LoadGen, Shared};
use open::Plan;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Duration;
pub use wire::Mode;

/// Moments of a run that an observer (e.g. `iomux compare`) cares about.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Phase {
    /// The idle connections are open; active ones are not yet.
    IdleOpen,
    /// Warm-up is over; the measured window starts.
    WindowStart,
    /// One `interval` of the window is over (see [`BenchConfig::interval`]).
    Interval(Interval),
    /// The measured window ends: in the open loop, once the requests due
    /// in it are answered (the time [`BenchResult::window`] counts).
    WindowEnd,
}

/// Called at each [`Phase`].
pub type Observer = Arc<dyn Fn(Phase) + Send + Sync>;

/// One interval of the measured window.
#[derive(Copy, Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Interval {
    /// Seconds from the window's start to this interval's end.
    pub elapsed_secs: f64,
    /// The interval's length in seconds.
    pub secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Percentiles of the interval's responses; `None` without any.
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    pub errors: u64,
}

/// Errors seen during a run; any non-zero count fails the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Errors {
    /// Connections that could not be opened (after the first succeeded).
    pub connect_failures: u64,
    /// Active connections reset, or lost to another error.
    pub resets: u64,
    /// Active connections the server closed cleanly (a FIN between
    /// responses; one in the middle of a response is `short`).
    pub closed_by_server: u64,
    /// Responses that differ from what the request asks.
    pub mismatched: u64,
    /// Connections closed in the middle of a response.
    pub short: u64,
    /// Requests unanswered within the response timeout (each such
    /// connection is closed and replaced; the run goes on).
    pub timeouts: u64,
    /// Idle connections the server closed (e.g. its idle timeout).
    pub idle_closed: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect_failures
            + self.resets
            + self.closed_by_server
            + self.mismatched
            + self.short
            + self.timeouts
            + self.idle_closed
    }
    fn add(&mut self, o: &Errors) {
        self.connect_failures += o.connect_failures;
        self.resets += o.resets;
        self.closed_by_server += o.closed_by_server;
        self.mismatched += o.mismatched;
        self.short += o.short;
        self.timeouts += o.timeouts;
        self.idle_closed += o.idle_closed;
    }
}

/// The outcome of a run (measured window only).
pub struct BenchResult {
    /// The address every connection went to.
    pub addr: Addr,
    pub requests: u64,
    /// Measured requests sent (open loop: due), answered or not.
    pub sent: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The time the window really took: from its start until the last
    /// response it measured came in (open loop: the responses to the
    /// requests due in it are waited for after it closes). Rates, MB/s
    /// and CPU shares are over this.
    pub window: Duration,
    /// Open loop: the part of [`BenchResult::window`] after its scheduled
    /// end, spent waiting for responses (the overrun).
    pub drain: Duration,
    pub latency: Histogram<u64>,
    /// Latency of the heavy connections (hash mode), kept apart.
    pub heavy_latency: Histogram<u64>,
    pub heavy_requests: u64,
    /// Open loop: how late the bench took requests off its schedule (its
    /// own share of the latency).
    pub send_lag: Histogram<u64>,
    /// Open loop: latency from the real send time ("uncorrected").
    pub from_send: Histogram<u64>,
    pub errors: Errors,
    /// Connections opened in place of ones closed after a response
    /// timeout.
    pub reconnects: u64,
    /// The first error, described (with the address).
    pub first_error: Option<String>,
    /// CPU time the bench's threads used in the window.
    pub cpu: Duration,
    /// Time the bench's threads were ready to run but waited for a CPU
    /// (another thread or program had it), in the window.
    pub cpu_wait: Duration,
    pub threads: usize,
    /// Time spent opening the connections.
    pub connect_time: Duration,
    /// The run was cut short by [`BenchConfig::cancel`].
    pub interrupted: bool,
    /// Open loop: requests that fell due in the window but were never
    /// sent: when it closed they still waited for a free pipeline slot (or
    /// for the bench to get to them). They are not in the latency.
    pub missed: u64,
    /// The [`Phase::Interval`] reports, in order.
    pub intervals: Vec<Interval>,
}

impl BenchResult {
    /// The result of a run that measured nothing (it failed before its
    /// load, or was interrupted then), against `addr`: every count 0,
    /// every histogram empty, so that its report has the same fields as
    /// any other.
    pub fn nothing(addr: Addr) -> BenchResult {
        BenchResult {
            addr,
            requests: 0,
            sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            window: Duration::ZERO,
            drain: Duration::ZERO,
            latency: record::new_histogram(),
            heavy_latency: record::new_histogram(),
            heavy_requests: 0,
            send_lag: record::new_histogram(),
            from_send: record::new_histogram(),
            errors: Errors::default(),
            reconnects: 0,
            first_error: None,
            cpu: Duration::ZERO,
            cpu_wait: Duration::ZERO,
            threads: 0,
            connect_time: Duration::ZERO,
            interrupted: false,
            missed: 0,
            intervals: Vec::new(),
        }
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }
    /// Share of one core each bench thread used (1.0 = a full core).
    pub fn cpu_per_thread(&self) -> f64 {
        self.cpu.as_secs_f64() / self.window.as_secs_f64().max(1e-9) / self.threads.max(1) as f64
    }
    /// Share of the window each bench thread spent waiting for a CPU.
    pub fn cpu_wait_per_thread(&self) -> f64 {
        self.cpu_wait.as_secs_f64()
            / self.window.as_secs_f64().max(1e-9)
            / self.threads.max(1) as f64
    }
    /// Adds another thread's part of the run.
    fn absorb(&mut self, part: BenchResult) {
        self.requests += part.requests;
        self.sent += part.sent;
        self.bytes_sent += part.bytes_sent;
        self.bytes_received += part.bytes_received;
        self.window = self.window.max(part.window);
        self.drain = self.drain.max(part.drain);
        let _ = self.latency.add(&part.latency);
        let _ = self.heavy_latency.add(&part.heavy_latency);
        self.heavy_requests += part.heavy_requests;
        let _ = self.send_lag.add(&part.send_lag);
        let _ = self.from_send.add(&part.from_send);
        self.errors.add(&part.errors);
        self.reconnects += part.reconnects;
        self.cpu += part.cpu;
        self.cpu_wait += part.cpu_wait;
        self.threads += part.threads;
        self.interrupted |= part.interrupted;
        self.missed += part.missed;
        self.intervals.extend(part.intervals);
    }

    /// At or above this, the load generator was probably the limit.
    pub const SATURATED: f64 = 0.95;

    /// Why this run failed, or `None` if it did not: any error, or no
    /// request completed at all.
    pub fn failure(&self) -> Option<String> {
        if self.errors.total() > 0 {
            let first = self.first_error.clone().unwrap_or_default();
            return Some(format!("{} error(s); first: {first}", self.errors.total()));
        }
        if self.requests + self.heavy_requests == 0 {
            return Some(format!(
                "no request completed against {} in {:.1} s",
                self.addr,
                self.window.as_secs_f64()
            ));
        }
        None
    }
}

/// Opens the connections, runs the load, returns the measured window.
///
/// Each load thread opens its own share of the connections on its own
/// loop (non-blocking connects, paced by `connect_rate` with the loop's
/// timers); the load starts once every thread's are open (see `open.rs`).
///
/// Errors: `InvalidInput` for a bad configuration, `Interrupted` if
/// `cancel` was set before the load started, otherwise a message naming
/// the address (no connection, a connect timeout, out of descriptors).
pub fn run(config: &BenchConfig, observer: Option<Observer>) -> io::Result<BenchResult> {
    validate(config)?;
    iomux::limits::raise_nofile_limit();
    let threads = config.threads;
    let plan = Plan {
        idle: config.idle,
        light: config.conns,
        heavy: config.active() - config.conns,
        threads,
    };
    let shared = Arc::new(Shared::new(
        config.cancel.clone(),
        threads,
        config.idle,
        observer.clone(),
    ));
    if config.idle == 0
        && let Some(o) = &observer
    {
        // No idle connection to wait for: "all open" already.
        o(Phase::IdleOpen);
    }
    let spawn = |i: usize, addrs: Vec<Addr>, chosen: Option<mpsc::Sender<Addr>>| {
        let mut config = config.clone();
        config.requests = config
            .requests
            .map(|n| n / threads as u64 + u64::from((i as u64) < n % threads as u64));
        // Each thread's share of the rate follows its share of the
        // connections.
        config.rate = config
            .rate
            .map(|r| r * plan.light_of(i) as f64 / plan.light.max(1) as f64);
        let observer = if i == 0 { observer.clone() } else { None };
        let shared = shared.clone();
        std::thread::spawn(move || run_thread(&config, i, plan, addrs, chosen, observer, shared))
    };
    // The first thread finds the address that accepts; the others start
    // once it is known (if the first thread fails first, they never do).
    let (chosen_tx, chosen_rx) = mpsc::channel();
    let mut handles = vec![spawn(0, config.addrs.clone(), Some(chosen_tx))];
    if let Ok(addr) = chosen_rx.recv() {
        handles.extend((1..threads).map(|i| spawn(i, vec![addr.clone()], None)));
    }
    let mut result: Option<BenchResult> = None;
    for h in handles {
        let part = h
            .join()
            .map_err(|_| io::Error::other("a bench thread panicked"))??;
        match &mut result {
            None => result = Some(part),
            Some(acc) => acc.absorb(part),
        }
    }
    // A failure before the load (no address accepts, a connect timeout,
    // out of descriptors, a cancel) is the run's outcome.
    if let Some(e) = shared.gates.failure() {
        return Err(e);
    }
    let mut result = result.ok_or_else(|| io::Error::other("no bench thread ran"))?;
    result.connect_time = shared.gates.connect_time();
    // A Ctrl-C also reaches the server when it shares the terminal: if its
    // connections died of it before a thread saw the flag, this run was
    // still interrupted, not failed.
    result.interrupted |= config.cancel.load(Ordering::Relaxed);
    let closed = result.errors.idle_closed;
    if closed > 0 {
        shared.tally.note_error(format!(
            "{}: {closed} of {} idle connections were closed by the server \
             (an idle timeout on the server?)",
            result.addr,
            shared.gates.idle_open()
        ));
    }
    result.first_error = shared.tally.first_error();
    Ok(result)
}

/// Ends the run on every thread if this one panics, so that none waits
/// for it at a gate.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .gates
                .fail(io::ErrorKind::Other, "a bench thread panicked".into());
        }
    }
}

fn run_thread(
    config: &BenchConfig,
    thread: usize,
    plan: Plan,
    addrs: Vec<Addr>,
    chosen: Option<mpsc::Sender<Addr>>,
    observer: Option<Observer>,
    shared: Arc<Shared>,
) -> io::Result<BenchResult> {
    // The kernel may defer a thread's wake-up by its timer slack (50 µs
    // by default) to batch it with others: an open-loop request due in
    // 300 µs would go out 50 µs late. This thread asks for none (a
    // failure leaves the default: the bench lag then shows it).
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut loop_config = Config::default();
    // The bench's own handlers are short; its stall lines would only
    // confuse a reader of the server's.
    loop_config.stall_threshold = None;
    loop_config.max_clients = usize::MAX;
    loop_config.connect_timeout = Some(config.connect_timeout);
    // A framed reply stays whole in the loop's input until its rule finds
    // its end: as large as the largest request may be.
    loop_config.max_input = 64 << 20;
    // At the end, requests a server never read must not hold the bench.
    loop_config.shutdown_grace = Duration::from_millis(100);
    let mut lp = match EventLoop::new(config.backend, loop_config) {
        Ok(lp) => lp,
        Err(e) => {
            // The other threads must not wait for this one at a gate.
            shared
                .gates
                .fail(e.kind(), format!("cannot start a bench loop: {e}"));
            return Err(e);
        }
    };
    shared.gates.join(lp.waker());
    let _guard = FailOnPanic(&shared);
    let mut load = LoadGen::new(
        config,
        thread,
        plan,
        addrs,
        chosen,
        observer,
        shared.clone(),
    );
    if let Err(e) = lp.run(&mut load) {
        shared
            .gates
            .fail(e.kind(), format!("a bench loop failed: {e}"));
        return Err(e);
    }
    Ok(load.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// An echo server on loopback that accepts `n` connections, or what
    /// came within 20 s (one thread each, ending at the client's end of
    /// stream); joining it says how many it accepted.
    fn echo_accepting(n: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        let addr = listener.local_addr().expect("its address");
        listener.set_nonblocking(true).expect("non-blocking");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let accept = move || {
            while std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => return s.set_nonblocking(false).ok().map(|()| s),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return None,
                }
            }
            None
        };
        let server = std::thread::spawn(move || {
            let echo = |mut s: TcpStream| {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            };
            let conns: Vec<_> = (0..n)
                .map_while(|_| accept())
                .map(|s| std::thread::spawn(move || echo(s)))
                .collect();
            let accepted = conns.len();
            for c in conns {
                let _ = c.join();
            }
            accepted
        });
        (addr, server)
    }

    #[test]
    fn the_first_address_that_accepts_serves_every_thread() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (live, server) = echo_accepting(6);
        let config = BenchConfig {
            addrs: vec![Addr::Tcp(dead), Addr::Tcp(live)],
            target: "twice".into(),
            conns: 4,
            idle: 2,
            threads: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
            ..BenchConfig::new(live)
        };
        let result = run(&config, None).expect("the live address is found");
        assert_eq!(result.addr, Addr::Tcp(live));
        assert_eq!(result.errors.total(), 0, "{:?}", result.first_error);
        assert!(result.requests > 0);
        assert_eq!(result.threads, 2);
        // Exactly the asked connections, no probe: the refused address
        // was tried once, the first that accepted was used by all.
        assert_eq!(server.join().expect("the server thread"), 6);
    }

    #[test]
    fn errors_total_counts_every_kind() {
        let e = Errors {
            connect_failures: 1,
            resets: 2,
            closed_by_server: 7,
            mismatched: 3,
            short: 4,
            timeouts: 5,
            idle_closed: 6,
        };
        assert_eq!(e.total(), 28);
        let mut sum = Errors::default();
        sum.add(&e);
        sum.add(&e);
        assert_eq!(sum.total(), 56);
    }
}
