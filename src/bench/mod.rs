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
//! Latency goes into an HDR histogram (nanoseconds). Responses are checked
//! byte for byte: a short read is normal (TCP splits messages) and is
//! simply continued. Every way a run can go wrong (a connect or response
//! timeout, a reset, a wrong or cut response, an idle connection closed by
//! the server, no response at all) is counted and described with the
//! server's address.

mod load;
pub mod proc;
pub mod report;
pub mod stats;

use hdrhistogram::Histogram;
use iomux::{Addr, Backend, Config, EventLoop};
use load::{LoadGen, Shared};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

impl Mode {
    /// The mode's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Ack(_) => "ack",
            Mode::Hash { .. } => "hash",
        }
    }
}

/// A benchmark run's parameters.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Where the server may be, in order (a host name can resolve to
    /// several addresses); the first that accepts a connection is used for
    /// every connection.
    pub addrs: Vec<Addr>,
    /// The server as the user named it, for messages.
    pub target: String,
    pub conns: usize,
    pub pipeline: usize,
    pub idle: usize,
    pub size: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
    pub backend: Backend,
    /// Print a live line on stderr (the caller checks for a terminal).
    pub progress: bool,
    /// Measure exactly this many requests (sent after the warm-up), then
    /// stop; `duration` still caps the run. For per-request accounting
    /// such as `strace -c`.
    pub requests: Option<u64>,
    /// A connect that takes longer fails the run.
    pub connect_timeout: Duration,
    /// A request unanswered this long after it was sent is a timeout
    /// error, and its connection is closed.
    pub response_timeout: Duration,
    /// Open loop: requests per second in all, spread over the connections.
    pub rate: Option<f64>,
    /// Connections opened per second at most (idle and active).
    pub connect_rate: Option<f64>,
    /// A [`Phase::Interval`] report every so often during the window.
    pub interval: Option<Duration>,
    /// Set (e.g. by a SIGINT handler) to end the run early; the result
    /// then says `interrupted`.
    pub cancel: Arc<AtomicBool>,
}

impl BenchConfig {
    /// The defaults of `iomux bench` against `addr`.
    pub fn new(addr: SocketAddr) -> BenchConfig {
        BenchConfig {
            addrs: vec![Addr::Tcp(addr)],
            target: addr.to_string(),
            conns: 100,
            pipeline: 1,
            idle: 0,
            size: 64,
            mode: Mode::Echo,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            threads: 1,
            backend: Backend::Epoll,
            progress: false,
            requests: None,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
            rate: None,
            connect_rate: None,
            interval: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Active connections (light and heavy).
    fn active(&self) -> usize {
        match self.mode {
            Mode::Hash { heavy, .. } => self.conns + heavy,
            _ => self.conns,
        }
    }
}

/// Moments of a run that an observer (e.g. `iomux compare`) cares about.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Phase {
    /// The idle connections are open; active ones are not yet.
    IdleOpen,
    /// Warm-up is over; the measured window starts.
    WindowStart,
    /// One `interval` of the window is over (see [`BenchConfig::interval`]).
    Interval(Interval),
    /// The measured window ends.
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
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub errors: u64,
}

/// Errors seen during a run; any non-zero count fails the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Errors {
    /// Connections that could not be opened (after the first succeeded).
    pub connect_failures: u64,
    /// Active connections reset or closed by the server.
    pub resets: u64,
    /// Responses that differ from what the request asks.
    pub mismatched: u64,
    /// Connections closed in the middle of a response.
    pub short: u64,
    /// Requests unanswered within the response timeout.
    pub timeouts: u64,
    /// Idle connections the server closed (e.g. its idle timeout).
    pub idle_closed: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect_failures
            + self.resets
            + self.mismatched
            + self.short
            + self.timeouts
            + self.idle_closed
    }
    fn add(&mut self, o: &Errors) {
        self.connect_failures += o.connect_failures;
        self.resets += o.resets;
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
    pub window: Duration,
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
    /// The first error, described (with the address).
    pub first_error: Option<String>,
    /// CPU time the bench's threads used in the window.
    pub cpu: Duration,
    pub threads: usize,
    /// Time spent opening the connections.
    pub connect_time: Duration,
    /// The run was cut short by [`BenchConfig::cancel`].
    pub interrupted: bool,
    /// Open loop: requests due but never sent (their connection was busy
    /// until the end).
    pub backlog: u64,
    /// The [`Phase::Interval`] reports, in order.
    pub intervals: Vec<Interval>,
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
/// Errors: `InvalidInput` for a bad configuration, `Interrupted` if
/// `cancel` was set before the load started, otherwise a message naming
/// the address (no connection, a connect timeout, out of descriptors).
pub fn run(config: &BenchConfig, observer: Option<Observer>) -> io::Result<BenchResult> {
    validate(config)?;
    iomux::limits::raise_nofile_limit();
    let connect_started = Instant::now();
    let mut connector = Connector::new(config);
    let idle = connector.open(config.idle, "idle")?;
    if let Some(o) = &observer {
        o(Phase::IdleOpen);
    }
    let mut active: Vec<(Connected, bool)> = connector
        .open(config.conns, "active")?
        .into_iter()
        .map(|s| (s, false))
        .collect();
    if let Mode::Hash { heavy, .. } = config.mode {
        let heavy = connector.open(heavy, "heavy")?;
        active.extend(heavy.into_iter().map(|s| (s, true)));
    }
    let connect_time = connect_started.elapsed();
    let addr = connector
        .chosen
        .clone()
        .unwrap_or_else(|| config.addrs[0].clone());
    if active.is_empty() {
        return Err(io::Error::other(format!(
            "could not connect to {addr}: no active connection opened"
        )));
    }
    let threads = config.threads.clamp(1, active.len());
    let light_total = active.iter().filter(|(_, heavy)| !heavy).count();
    let mut groups: Vec<Vec<(Connected, bool)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in active.into_iter().enumerate() {
        groups[i % threads].push(s);
    }
    let shared = Arc::new(Shared::new(config.cancel.clone()));
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(i, streams)| {
            let mut config = config.clone();
            config.requests = config
                .requests
                .map(|n| n / threads as u64 + u64::from((i as u64) < n % threads as u64));
            // Each thread's share of the rate follows its share of the
            // connections.
            let light = streams.iter().filter(|(_, heavy)| !heavy).count();
            config.rate = config
                .rate
                .map(|r| r * light as f64 / light_total.max(1) as f64);
            let observer = if i == 0 { observer.clone() } else { None };
            let (shared, addr) = (shared.clone(), addr.clone());
            std::thread::spawn(move || run_thread(&config, addr, streams, i == 0, observer, shared))
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
                acc.sent += part.sent;
                acc.bytes_sent += part.bytes_sent;
                acc.bytes_received += part.bytes_received;
                acc.window = acc.window.max(part.window);
                let _ = acc.latency.add(&part.latency);
                let _ = acc.heavy_latency.add(&part.heavy_latency);
                acc.heavy_requests += part.heavy_requests;
                let _ = acc.send_lag.add(&part.send_lag);
                let _ = acc.from_send.add(&part.from_send);
                acc.errors.add(&part.errors);
                acc.cpu += part.cpu;
                acc.threads += part.threads;
                acc.interrupted |= part.interrupted;
                acc.backlog += part.backlog;
                acc.intervals.extend(part.intervals);
                acc
            }
        });
    }
    let mut result = result.ok_or_else(|| io::Error::other("no bench thread ran"))?;
    result.connect_time = connect_time;
    // A Ctrl-C also reaches the server when it shares the terminal: if its
    // connections died of it before a thread saw the flag, this run was
    // still interrupted, not failed.
    result.interrupted |= config.cancel.load(Ordering::Relaxed);
    result.errors.add(&connector.errors);
    let closed = idle_closed(&idle);
    if closed > 0 {
        result.errors.idle_closed += closed;
        shared.note_error(format!(
            "{addr}: {closed} of {} idle connections were closed by the server \
             (an idle timeout on the server?)",
            idle.len()
        ));
    }
    drop(idle);
    result.first_error = connector
        .first_error
        .take()
        .or_else(|| shared.first_error());
    Ok(result)
}

/// Idle connections the server closed or reset (read end of stream or an
/// error). Nothing is read from the live ones.
fn idle_closed(idle: &[Connected]) -> u64 {
    idle.iter().filter(|c| c.closed_by_peer()).count() as u64
}

pub(crate) fn validate(c: &BenchConfig) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if c.addrs.is_empty() {
        return bad(format!("{}: no address to connect to", c.target));
    }
    if c.conns == 0 {
        return bad("--conns must be at least 1".into());
    }
    if c.pipeline == 0 {
        return bad("--pipeline must be at least 1".into());
    }
    if c.size == 0 {
        return bad("--size must be at least 1".into());
    }
    if c.conns > 1_000_000 || c.idle > 1_000_000 {
        return bad("--conns and --idle must be at most 1000000".into());
    }
    if c.pipeline > 65_536 {
        return bad("--pipeline must be at most 65536".into());
    }
    if c.size > 64 << 20 {
        return bad("--size must be at most 67108864 (64 MiB)".into());
    }
    if c.duration.is_zero() {
        return bad("--duration must be more than 0".into());
    }
    if c.threads == 0 || c.threads > 1024 {
        return bad(format!(
            "--threads must be from 1 to 1024, got {}",
            c.threads
        ));
    }
    if c.threads > c.active() {
        return bad(format!(
            "--threads ({}) must be at most the number of active connections ({})",
            c.threads,
            c.active()
        ));
    }
    if c.requests == Some(0) {
        return bad("--requests must be at least 1".into());
    }
    if c.connect_timeout.is_zero() {
        return bad("--connect-timeout must be more than 0".into());
    }
    if c.response_timeout.is_zero() {
        return bad("--timeout must be more than 0".into());
    }
    for (flag, v) in [("--rate", c.rate), ("--connect-rate", c.connect_rate)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0 && v <= 1e9)
        {
            return bad(format!(
                "{flag} must be more than 0 and at most 1e9 per second, got {v}"
            ));
        }
    }
    if let Some(i) = c.interval
        && i < Duration::from_millis(10)
    {
        return bad("--interval must be at least 0.01 seconds".into());
    }
    if let Mode::Hash { heavy_iters, heavy } = c.mode {
        if !(1..=iomux::app::MAX_ITERATIONS).contains(&heavy_iters) {
            return bad("--heavy-iters must be from 1 to 10000000".into());
        }
        if heavy > 1_000_000 {
            return bad("--heavy must be at most 1000000".into());
        }
        if heavy > 0 && c.rate.is_some() {
            return bad(
                "--rate cannot be combined with --heavy (heavy connections are closed-loop)".into(),
            );
        }
    }
    if let Mode::Ack(reply) = &c.mode {
        if reply.is_empty() {
            return bad("--reply must not be empty in ack mode".into());
        }
        if c.pipeline > 1 {
            // ack answers each read, not each request: with several
            // requests in flight the kernel may merge them into one read.
            return bad("--mode ack needs --pipeline 1 (the ack protocol has no framing)".into());
        }
    }
    Ok(())
}

/// An open connection to the server, TCP or Unix-domain.
pub(crate) enum Connected {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connected {
    /// Whether the server closed it (end of stream or an error waiting);
    /// nothing is consumed.
    fn closed_by_peer(&self) -> bool {
        let fd = match self {
            Connected::Tcp(s) => s.as_fd(),
            Connected::Unix(s) => s.as_fd(),
        };
        let mut byte = [0u8; 1];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(fd, &mut byte[..], flags) {
            Ok((0, _)) => true,
            Ok(_) => false, // the server sent something to a silent client
            Err(rustix::io::Errno::AGAIN) => false,
            Err(_) => true,
        }
    }
}

/// Connects to a Unix-domain socket within `timeout` (a full backlog
/// makes a non-blocking connect fail with `EAGAIN`: retried until then).
fn connect_unix(addr: &Addr, timeout: Duration) -> io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let target = match addr {
        Addr::Unix(path) => SocketAddrUnix::new(path.as_path())?,
        Addr::Abstract(name) => SocketAddrUnix::new_abstract_name(name.as_bytes())?,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} is not a Unix-domain address"),
            ));
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        match rustix::net::connect(&fd, &target) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(rustix::io::Errno::AGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens connections one after another, at most `connect_rate` a second,
/// each within the connect timeout.
struct Connector<'a> {
    config: &'a BenchConfig,
    /// The address that accepted the first connection.
    chosen: Option<Addr>,
    started: Instant,
    opened: u64,
    errors: Errors,
    first_error: Option<String>,
}

impl Connector<'_> {
    fn new(config: &BenchConfig) -> Connector<'_> {
        Connector {
            config,
            chosen: None,
            started: Instant::now(),
            opened: 0,
            errors: Errors::default(),
            first_error: None,
        }
    }

    /// Waits for the connect rate, checking for a cancel.
    fn pace(&self) -> io::Result<()> {
        let interrupted = || {
            io::Error::new(
                io::ErrorKind::Interrupted,
                "interrupted while opening connections",
            )
        };
        if let Some(rate) = self.config.connect_rate {
            let due = self.started + Duration::from_secs_f64(self.opened as f64 / rate);
            loop {
                if self.config.cancel.load(Ordering::Relaxed) {
                    return Err(interrupted());
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
            }
        }
        if self.config.cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        Ok(())
    }

    fn connect_to(addr: &Addr, timeout: Duration) -> io::Result<Connected> {
        match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout)?;
                let _ = s.set_nodelay(true);
                Ok(Connected::Tcp(s))
            }
            other => connect_unix(other, timeout).map(Connected::Unix),
        }
    }

    fn connect(&mut self) -> Result<Connected, (Addr, io::Error)> {
        let timeout = self.config.connect_timeout;
        if let Some(addr) = &self.chosen {
            return Self::connect_to(addr, timeout).map_err(|e| (addr.clone(), e));
        }
        let mut last = None;
        for addr in &self.config.addrs {
            match Self::connect_to(addr, timeout) {
                Ok(s) => {
                    self.chosen = Some(addr.clone());
                    return Ok(s);
                }
                Err(e) => last = Some((addr.clone(), e)),
            }
        }
        Err(last.unwrap_or_else(|| (self.config.addrs[0].clone(), io::ErrorKind::NotFound.into())))
    }

    fn open(&mut self, n: usize, what: &str) -> io::Result<Vec<Connected>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            self.pace()?;
            self.opened += 1;
            match self.connect() {
                Ok(s) => out.push(s),
                Err((addr, e)) => {
                    let errno = e.raw_os_error();
                    if errno == Some(rustix::io::Errno::MFILE.raw_os_error())
                        || errno == Some(rustix::io::Errno::NFILE.raw_os_error())
                    {
                        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
                        return Err(io::Error::other(format!(
                            "cannot open {n} {what} connections to {addr}: {e}; the open-files \
                             limit is {} (raise it with `ulimit -n`, up to the hard limit {})",
                            limit.current.map_or("unlimited".into(), |v| v.to_string()),
                            limit.maximum.map_or("unlimited".into(), |v| v.to_string()),
                        )));
                    }
                    if e.kind() == io::ErrorKind::TimedOut {
                        // Each further try would cost the whole timeout.
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "cannot connect to {addr}: connect timeout ({} s) on {what} \
                                 connection {} of {n}",
                                self.config.connect_timeout.as_secs_f64(),
                                i + 1
                            ),
                        ));
                    }
                    if self.chosen.is_none() {
                        let tried: Vec<String> =
                            self.config.addrs.iter().map(|a| a.to_string()).collect();
                        let target = if tried.len() > 1 || tried[0] != self.config.target {
                            format!("{} ({})", self.config.target, tried.join(", "))
                        } else {
                            self.config.target.clone()
                        };
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot connect to {target}: {e}"),
                        ));
                    }
                    self.errors.connect_failures += 1;
                    self.first_error
                        .get_or_insert_with(|| format!("{addr}: {what} connection failed: {e}"));
                }
            }
        }
        Ok(out)
    }
}

fn run_thread(
    config: &BenchConfig,
    addr: Addr,
    streams: Vec<(Connected, bool)>,
    leader: bool,
    observer: Option<Observer>,
    shared: Arc<Shared>,
) -> io::Result<BenchResult> {
    let mut loop_config = Config::default();
    // The bench's own handlers are short; its stall lines would only
    // confuse a reader of the server's.
    loop_config.stall_threshold = None;
    loop_config.max_clients = usize::MAX;
    // At the end, requests a server never read must not hold the bench.
    loop_config.shutdown_grace = Duration::from_millis(100);
    let mut lp = EventLoop::new(config.backend, loop_config)?;
    let mut load = LoadGen::new(config, addr.clone(), leader, observer, shared.clone());
    for (s, heavy) in streams {
        let adopted = match s {
            Connected::Tcp(s) => lp.adopt(s),
            Connected::Unix(s) => lp.adopt_unix(s),
        };
        match adopted {
            Ok(id) => load.add(id, heavy),
            Err(e) => {
                // The server closed it between connect and start.
                load.errors.resets += 1;
                shared.note_error(format!(
                    "{addr}: connection lost before the load started: {e}"
                ));
            }
        }
    }
    if load.is_empty() {
        load.finish_empty();
    } else {
        lp.run(&mut load)?;
    }
    Ok(load.finish(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_total_counts_every_kind() {
        let e = Errors {
            connect_failures: 1,
            resets: 2,
            mismatched: 3,
            short: 4,
            timeouts: 5,
            idle_closed: 6,
        };
        assert_eq!(e.total(), 21);
        let mut sum = Errors::default();
        sum.add(&e);
        sum.add(&e);
        assert_eq!(sum.total(), 42);
    }

    #[test]
    fn validate_refuses_out_of_range_values() {
        let ok = BenchConfig::new(([127, 0, 0, 1], 1).into());
        assert!(validate(&ok).is_ok());
        let cases: Vec<(BenchConfig, &str)> = vec![
            (
                BenchConfig {
                    threads: 0,
                    ..ok.clone()
                },
                "--threads",
            ),
            (
                BenchConfig {
                    threads: 1025,
                    ..ok.clone()
                },
                "--threads",
            ),
            (
                BenchConfig {
                    threads: 101,
                    ..ok.clone()
                },
                "active connections",
            ),
            (
                BenchConfig {
                    requests: Some(0),
                    ..ok.clone()
                },
                "--requests",
            ),
            (
                BenchConfig {
                    rate: Some(0.0),
                    ..ok.clone()
                },
                "--rate",
            ),
            (
                BenchConfig {
                    rate: Some(f64::NAN),
                    ..ok.clone()
                },
                "--rate",
            ),
            (
                BenchConfig {
                    connect_rate: Some(-1.0),
                    ..ok.clone()
                },
                "--connect-rate",
            ),
            (
                BenchConfig {
                    response_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "--timeout",
            ),
            (
                BenchConfig {
                    interval: Some(Duration::from_millis(1)),
                    ..ok.clone()
                },
                "--interval",
            ),
            (
                BenchConfig {
                    mode: Mode::Hash {
                        heavy: 1,
                        heavy_iters: 10,
                    },
                    rate: Some(10.0),
                    ..ok.clone()
                },
                "--heavy",
            ),
        ];
        for (c, flag) in cases {
            let e = validate(&c).expect_err(flag);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(flag), "{e} should name {flag}");
        }
    }
}
