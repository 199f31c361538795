//! `iomux compare`: every backend (and peer servers) under the same load,
//! at several idle-connection counts, with a table and plots.

use crate::bench::report::{self, Sample};
use crate::bench::{self, BenchConfig, Observer, Phase, proc, stats};
use clap::Args;
use iomux::Backend;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Backends to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "select,poll,epoll,epoll-et,uring-poll,uring", value_parser = super::serve::parse_backend)]
    backends: Vec<Backend>,
    /// Idle-connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,5000,10000", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    idle: Vec<u64>,
    /// Active connections.
    #[arg(short = 'c', long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    conns: u64,
    /// Request sizes in bytes, comma-separated (a matrix dimension).
    #[arg(long, value_delimiter = ',', default_value = "64", value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    size: Vec<u64>,
    /// Pipeline depths, comma-separated (a matrix dimension).
    #[arg(short = 'P', long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pipeline: Vec<u64>,
    /// Open-loop rates in requests/s, comma-separated; `closed` for the
    /// closed loop (a matrix dimension).
    #[arg(long, value_delimiter = ',', default_value = "closed", value_parser = parse_rate)]
    rate: Vec<Rate>,
    /// Seconds measured per point.
    #[arg(short = 'd', long, default_value = "5", value_parser = super::parse_seconds)]
    duration: Duration,
    /// Seconds of warm-up per point.
    #[arg(long, default_value = "1", value_parser = super::parse_seconds)]
    warmup: Duration,
    /// Runs per point (the report shows the median and the spread).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    repeat: u64,
    /// Load-generator threads.
    #[arg(short = 't', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
    /// Event loops of each iomux server (`serve --threads`), comma-separated:
    /// `1,2` reports how a backend scales (servers are then labelled
    /// `epoll/t2` and so on).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u64).range(1..=1024))]
    server_threads: Vec<u64>,
    /// Another echo server: LABEL=COMMAND, with {port} in COMMAND.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(String, String)>,
    /// Seconds a server (or peer) may take to accept its first connection.
    #[arg(long, default_value = "5", value_parser = super::parse_seconds)]
    start_timeout: Duration,
    /// Where results.json, results.md and the plots go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

/// One value of `--rate`: `None` is the closed loop.
type Rate = Option<f64>;

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "closed" {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(Some(r)),
        _ => Err(format!(
            "expected `closed` or requests per second (more than 0, at most 1e9), got '{s}'"
        )),
    }
}

fn parse_peer(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((label, cmd)) if !label.is_empty() && cmd.contains("{port}") => {
            Ok((label.to_string(), cmd.to_string()))
        }
        _ => Err(format!(
            "expected LABEL=COMMAND with {{port}} in COMMAND, got '{s}'"
        )),
    }
}

/// `arg` as a POSIX shell reads it back: bare when it is plain, otherwise
/// in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(arg: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !arg.is_empty() && arg.bytes().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The command line, re-runnable in a shell.
pub fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

enum Target {
    /// `iomux serve` on a backend with this many loops; `labelled`: the
    /// loop count is part of the label.
    Backend {
        backend: Backend,
        loops: u64,
        labelled: bool,
    },
    Peer(String, String),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Backend {
                backend,
                loops,
                labelled,
            } => {
                let name = backend.resolve().name();
                if *labelled {
                    format!("{name}/t{loops}")
                } else {
                    name.to_string()
                }
            }
            Target::Peer(label, _) => label.clone(),
        }
    }
}

/// A server child process; killed if still running when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Kept open so the server's last line does not meet a closed pipe.
    _stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Server {
    /// Starts the server, able to hold `clients` connections, and waits
    /// (at most `timeout`) until it accepts a connection.
    fn start(target: &Target, clients: usize, timeout: Duration) -> Result<Server, String> {
        match target {
            Target::Backend {
                backend: b, loops, ..
            } => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut child = Command::new(exe)
                    .args(["serve", "--app", "echo", "-q", "--bind", "127.0.0.1:0"])
                    .args(["--backend", b.name()])
                    .args(["--threads", &loops.to_string()])
                    .args(["--max-clients", &(clients + 100).to_string()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("cannot start iomux serve: {e}"))?;
                let stdout = child.stdout.take().ok_or("no stdout")?;
                let mut line = String::new();
                let mut stdout = BufReader::new(stdout);
                let _ = stdout.read_line(&mut line);
                let addr = line
                    .split_whitespace()
                    .nth(3)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| {
                        format!("iomux serve --backend {b} did not start: '{}'", line.trim())
                    })?;
                Ok(Server {
                    child,
                    addr,
                    _stdout: Some(stdout),
                })
            }
            Target::Peer(label, command) => {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| e.to_string())?
                    .port();
                let command = command.replace("{port}", &port.to_string());
                // `exec` so the measured PID is the server, not the shell.
                let child = Command::new("sh")
                    .args(["-c", &format!("exec {command}")])
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start peer {label}: {e}"))?;
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                let mut server = Server {
                    child,
                    addr,
                    _stdout: None,
                };
                server.wait_ready(&format!("peer {label} (`{command}`)"), timeout)?;
                Ok(server)
            }
        }
    }

    fn wait_ready(&mut self, what: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{what} exited before it listened ({status})"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what} did not accept on {} within {} s (--start-timeout)",
                    self.addr,
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What is read from /proc at the edges of the window.
#[derive(Default, Clone, Copy)]
struct Reading {
    at: Option<Instant>,
    server_cpu: Duration,
    own_cpu: Duration,
    machine_busy: Duration,
}

impl Reading {
    fn now(server: u32) -> Reading {
        Reading {
            at: Some(Instant::now()),
            server_cpu: proc::cpu_time(server).unwrap_or_default(),
            own_cpu: proc::cpu_time(std::process::id()).unwrap_or_default(),
            machine_busy: proc::machine_busy().unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct Probe {
    rss_empty: u64,
    rss_idle: u64,
    start: Reading,
    end: Reading,
}

/// One point of the matrix.
#[derive(Clone, Copy, Debug)]
struct Cell {
    idle: usize,
    pipeline: usize,
    size: usize,
    rate: Rate,
}

impl Cell {
    fn describe(&self) -> String {
        let rate = self
            .rate
            .map_or("closed loop".into(), |r| format!("{r} req/s"));
        format!(
            "{} idle, pipeline {}, {} B, {rate}",
            self.idle, self.pipeline, self.size
        )
    }
}

/// What a point's run came to.
enum Outcome {
    Done(Sample),
    Interrupted,
}

fn bench_config(base: &BenchConfig, cell: &Cell, addr: SocketAddr) -> BenchConfig {
    BenchConfig {
        addrs: vec![iomux::Addr::Tcp(addr)],
        target: addr.to_string(),
        idle: cell.idle,
        pipeline: cell.pipeline,
        size: cell.size,
        rate: cell.rate,
        ..base.clone()
    }
}

fn run_point(
    target: &Target,
    cell: &Cell,
    repeat: usize,
    base: &BenchConfig,
    start_timeout: Duration,
) -> Result<Outcome, String> {
    let server = Server::start(target, cell.idle + base.conns, start_timeout)?;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(100));
    let probe = Arc::new(Mutex::new(Probe {
        rss_empty: proc::rss_bytes(pid).unwrap_or(0),
        ..Probe::default()
    }));
    let p = probe.clone();
    let observer: Observer = Arc::new(move |phase| {
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Phase::IdleOpen => {
                // Let the server accept them all before measuring memory.
                std::thread::sleep(Duration::from_millis(200));
                p.rss_idle = proc::rss_bytes(pid).unwrap_or(0);
            }
            Phase::WindowStart => p.start = Reading::now(pid),
            Phase::WindowEnd => p.end = Reading::now(pid),
            Phase::Interval(_) => {}
        }
    });
    let config = bench_config(base, cell, server.addr);
    let result = bench::run(&config, Some(observer));
    server.stop();
    let label = target.label();
    let result = match result {
        Ok(r) if r.interrupted => return Ok(Outcome::Interrupted),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(Outcome::Interrupted),
        Err(e) => return Err(format!("{label} at {}: {e}", cell.describe())),
        Ok(r) => r,
    };
    if result.requests == 0 {
        let why = result.failure().unwrap_or_default();
        return Err(format!("{label} at {}: {why}", cell.describe()));
    }
    let p = probe.lock().unwrap_or_else(|e| e.into_inner());
    let latency = stats::latency(&result.latency);
    let (a, b) = (p.start, p.end);
    let cpu_us = b.server_cpu.saturating_sub(a.server_cpu).as_secs_f64() * 1e6;
    let window = match (a.at, b.at) {
        (Some(a), Some(b)) => (b - a).as_secs_f64().max(1e-9),
        _ => result.window.as_secs_f64().max(1e-9),
    };
    let busy = b.machine_busy.saturating_sub(a.machine_busy).as_secs_f64();
    let ours = b.server_cpu.saturating_sub(a.server_cpu).as_secs_f64()
        + b.own_cpu.saturating_sub(a.own_cpu).as_secs_f64();
    Ok(Outcome::Done(Sample {
        target: label,
        idle: cell.idle,
        pipeline: cell.pipeline,
        size: cell.size,
        rate: cell.rate,
        repeat,
        requests_per_sec: result.requests_per_sec(),
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
        server_cpu_us_per_request: cpu_us / result.requests.max(1) as f64,
        rss_empty: p.rss_empty,
        rss_idle: if cell.idle == 0 {
            p.rss_empty
        } else {
            p.rss_idle
        },
        bench_cpu: result.cpu_per_thread(),
        other_load: ((busy - ours) / window).max(0.0),
        errors: result.errors.total(),
    }))
}

/// "N cores, Linux KERNEL, CPU MODEL".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{}, {cpu}", machine_short())
}

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days algorithm.
pub fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    civil_date(days)
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Exit code of a run cut short by Ctrl-C (128 + SIGINT).
const INTERRUPTED: i32 = 130;

/// Everything the report needs besides the samples.
struct Report<'a> {
    out: &'a Path,
    command: String,
    title: String,
    args: &'a CompareArgs,
    total: usize,
    load_before: Option<f64>,
}

impl Report<'_> {
    /// Writes results.json, results.md and (with samples) the plots; called
    /// after every point, so a run that stops keeps what it measured.
    fn write(&self, samples: &[Sample], status: &str, error: Option<&str>) -> Result<(), String> {
        let points = report::aggregate(samples);
        let mut notes = Vec::new();
        if status != "complete" {
            notes.push(format!(
                "**Partial:** {} of {} runs measured ({status}{}).",
                samples.len(),
                self.total,
                error.map_or(String::new(), |e| format!(": {e}"))
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(load) = self.load_before {
            notes.push(format!(
                "Load average before the run: {load:.2} ({cores} cores)."
            ));
        }
        let warnings = report::warnings(&points);
        let json = serde_json::json!({
            "title": self.title,
            "command": self.command,
            "machine": machine(),
            "date": today(),
            "status": status,
            "error": error,
            "runs_done": samples.len(),
            "runs_total": self.total,
            "load_before": self.load_before,
            "warnings": warnings,
            "conns": self.args.conns,
            "sizes": self.args.size,
            "pipelines": self.args.pipeline,
            "server_threads": self.args.server_threads,
            "rates": self.args.rate,
            "duration_secs": self.args.duration.as_secs_f64(),
            "repeat": self.args.repeat,
            "points": points,
            "samples": samples,
        });
        let write = |name: &str, text: String| {
            let path = self.out.join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(
            "results.json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        write(
            "results.md",
            report::markdown(&points, &self.title, &self.command, &notes),
        )?;
        if points.is_empty() {
            // No stale plots of an earlier run beside these results.
            for file in ["cpu_per_request.svg", "throughput.svg", "latency_p99.svg"] {
                let _ = std::fs::remove_file(self.out.join(file));
            }
            return Ok(());
        }
        let x = report::XAxis::choose(&points).description();
        let plots: [(&str, &str, &str, report::Metric); 3] = [
            (
                "cpu_per_request.svg",
                "server CPU per request",
                "µs per request",
                |p| {
                    let [lo, hi] = p.server_cpu_range;
                    [p.server_cpu_us_per_request, lo, hi]
                },
            ),
            ("throughput.svg", "throughput", "requests/s", |p| {
                let [lo, hi] = p.requests_per_sec_range;
                [p.requests_per_sec, lo, hi]
            }),
            ("latency_p99.svg", "p99 latency", "µs", |p| {
                let [lo, hi] = p.p99_range;
                [p.p99_us, lo, hi]
            }),
        ];
        for (file, what, unit, metric) in plots {
            let caption = format!("{what} vs {x} — {}, {}", machine_short(), today());
            report::plot(&points, &self.out.join(file), &caption, unit, metric)?;
        }
        Ok(())
    }
}

/// Checks the flags that clap cannot: every matrix point must be a valid
/// bench run.
fn check_matrix(base: &BenchConfig, cells: &[Cell]) -> Result<(), String> {
    for cell in cells {
        let config = bench_config(base, cell, ([127, 0, 0, 1], 1).into());
        bench::validate(&config).map_err(|e| format!("{e} (at {})", cell.describe()))?;
    }
    Ok(())
}

pub fn run(args: CompareArgs) -> i32 {
    if args.duration.is_zero() {
        return super::usage_error("--duration must be more than 0");
    }
    let labelled = args.server_threads != [1];
    let mut targets: Vec<Target> = args
        .backends
        .iter()
        .flat_map(|&backend| {
            args.server_threads
                .iter()
                .map(move |&loops| Target::Backend {
                    backend,
                    loops,
                    labelled,
                })
        })
        .collect();
    targets.extend(
        args.peers
            .iter()
            .map(|(l, c)| Target::Peer(l.clone(), c.clone())),
    );
    if targets.is_empty() {
        return super::usage_error("nothing to compare: give --backends or --peer");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let base = BenchConfig {
        conns: args.conns as usize,
        warmup: args.warmup,
        duration: args.duration,
        threads: args.threads as usize,
        cancel: cancel.clone(),
        ..BenchConfig::new(([127, 0, 0, 1], 0).into())
    };
    let mut cells = Vec::new();
    for &idle in &args.idle {
        for &pipeline in &args.pipeline {
            for &size in &args.size {
                for &rate in &args.rate {
                    cells.push(Cell {
                        idle: idle as usize,
                        pipeline: pipeline as usize,
                        size: size as usize,
                        rate,
                    });
                }
            }
        }
    }
    if let Err(e) = check_matrix(&base, &cells) {
        return super::usage_error(&e);
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("iomux compare: cannot create {}: {e}", args.out.display());
        return 1;
    }
    iomux::limits::raise_nofile_limit();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ =
            signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED, cancel.clone());
        let _ = signal_hook::flag::register(signal, cancel.clone());
    }
    let argv: Vec<String> = std::env::args().collect();
    let report = Report {
        out: &args.out,
        command: command_line(&argv),
        title: format!("iomux compare, {}, {}", machine(), today()),
        args: &args,
        total: args.repeat as usize * cells.len() * targets.len(),
        load_before: proc::loadavg(),
    };
    // Every server must start and accept before the first measurement.
    for target in &targets {
        eprintln!("iomux compare: checking that {} starts", target.label());
        match Server::start(target, 0, args.start_timeout) {
            Ok(server) => server.stop(),
            Err(e) => return super::usage_error(&e),
        }
    }
    if let Err(e) = report.write(&[], "started", None) {
        eprintln!("iomux compare: {e}");
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if let Some(load) = report.load_before
        && load >= cores / 2.0
    {
        eprintln!(
            "iomux compare: warning: the load average is {load:.2} on {cores} cores before the first run; results will be noisy"
        );
    }
    let total = report.total;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut done = 0;
    // Interleaved (A B C A B C ...), so slow drift of a shared machine
    // spreads over every target instead of favouring one.
    for repeat in 0..args.repeat as usize {
        for cell in &cells {
            for target in &targets {
                let eta = if done == 0 {
                    "?".to_string()
                } else {
                    let per = started.elapsed().as_secs_f64() / done as f64;
                    format!("{:.0}s", per * (total - done) as f64)
                };
                eprintln!(
                    "iomux compare: [{}/{total}] {} at {}, run {}/{} (ETA {eta})",
                    done + 1,
                    target.label(),
                    cell.describe(),
                    repeat + 1,
                    args.repeat
                );
                let outcome = if cancel.load(Ordering::Relaxed) {
                    Ok(Outcome::Interrupted)
                } else {
                    run_point(target, cell, repeat, &base, args.start_timeout)
                };
                match outcome {
                    Ok(Outcome::Done(s)) => {
                        eprintln!(
                            "iomux compare:   {:.0} req/s, {:.2} µs server CPU/req, p99 {}, {} errors",
                            s.requests_per_sec,
                            s.server_cpu_us_per_request,
                            stats::format_us(s.p99_us),
                            s.errors
                        );
                        if s.other_load > report::OTHER_LOAD_WARNING {
                            eprintln!(
                                "iomux compare:   warning: other load of {:.2} cores during this run (not the server, not the bench)",
                                s.other_load
                            );
                        }
                        samples.push(s);
                        if let Err(e) = report.write(&samples, "running", None) {
                            eprintln!("iomux compare: {e}");
                            return 1;
                        }
                    }
                    Ok(Outcome::Interrupted) => {
                        let _ = report.write(&samples, "interrupted", None);
                        eprintln!(
                            "iomux compare: interrupted; {} of {total} runs kept in {}",
                            samples.len(),
                            args.out.display()
                        );
                        return INTERRUPTED;
                    }
                    Err(e) => {
                        eprintln!("iomux compare: {e}");
                        let _ = report.write(&samples, "failed", Some(&e));
                        eprintln!(
                            "iomux compare: {} of {total} runs kept in {}",
                            samples.len(),
                            args.out.display()
                        );
                        return 1;
                    }
                }
                done += 1;
            }
        }
    }
    if let Err(e) = report.write(&samples, "complete", None) {
        eprintln!("iomux compare: {e}");
        return 1;
    }
    let points = report::aggregate(&samples);
    for w in report::warnings(&points) {
        eprintln!("iomux compare: warning: {w}");
    }
    print!(
        "{}",
        report::markdown(&points, &report.title, &report.command, &[])
    );
    println!(
        "\nwrote {}/{{results.json,results.md,cpu_per_request.svg,throughput.svg,latency_p99.svg}}",
        args.out.display()
    );
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    if errors > 0 { 1 } else { 0 }
}

fn machine_short() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, Linux {}", kernel())
}

fn kernel() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_783), "2026-11-26");
    }

    #[test]
    fn peers_need_a_label_and_a_port_placeholder() {
        assert_eq!(
            parse_peer("tokio=target/release/examples/tokio_echo {port}").unwrap(),
            (
                "tokio".to_string(),
                "target/release/examples/tokio_echo {port}".to_string()
            )
        );
        assert!(parse_peer("tokio").is_err());
        assert!(parse_peer("=x {port}").is_err());
        assert!(parse_peer("t=no-port").is_err());
    }

    #[test]
    fn rates_are_closed_or_positive() {
        assert_eq!(parse_rate("closed"), Ok(None));
        assert_eq!(parse_rate("5000"), Ok(Some(5000.0)));
        for bad in ["0", "-1", "nan", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_lines_are_shell_quoted() {
        assert_eq!(shell_quote("--idle"), "--idle");
        assert_eq!(shell_quote("0,1000"), "0,1000");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_quote("tokio=target/release/tokio_echo {port}"),
            "'tokio=target/release/tokio_echo {port}'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let line = command_line(&[
            "iomux".into(),
            "compare".into(),
            "--peer".into(),
            "a=b {port}".into(),
        ]);
        assert_eq!(line, "iomux compare --peer 'a=b {port}'");
    }
}
