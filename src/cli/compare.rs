//! `iomux compare`: every backend (and peer servers) under the same load,
//! at several idle-connection counts, with a table and plots.

use crate::bench::report::{self, Sample};
use crate::bench::{self, BenchConfig, Mode, Observer, Phase, proc, stats};
use clap::Args;
use iomux::Backend;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Backends to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "select,poll,epoll,epoll-et,uring-poll", value_parser = super::serve::parse_backend)]
    backends: Vec<Backend>,
    /// Idle-connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,5000,10000")]
    idle: Vec<usize>,
    /// Active connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Request size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds measured per point.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up per point.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Runs per point (the report shows the median and the spread).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Another echo server: LABEL=COMMAND, with {port} in COMMAND.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(String, String)>,
    /// Where results.json, results.md and the plots go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
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

enum Target {
    Backend(Backend),
    Peer(String, String),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Backend(b) => b.resolve().name().to_string(),
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
    /// Starts the server, able to hold `clients` connections.
    fn start(target: &Target, clients: usize) -> Result<Server, String> {
        match target {
            Target::Backend(b) => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut child = Command::new(exe)
                    .args(["serve", "--app", "echo", "-q", "--bind", "127.0.0.1:0"])
                    .args(["--backend", b.name()])
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
                    .ok_or_else(|| format!("iomux serve did not start: '{}'", line.trim()))?;
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
                server.wait_ready(label)?;
                Ok(server)
            }
        }
    }

    fn wait_ready(&mut self, label: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("peer {label} exited early ({status})"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "peer {label} did not accept on {} within 15 s",
            self.addr
        ))
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

#[derive(Default)]
struct Probe {
    rss_empty: u64,
    rss_idle: u64,
    cpu_start: Duration,
    cpu_end: Duration,
}

fn run_point(
    target: &Target,
    idle: usize,
    repeat: usize,
    base: &BenchConfig,
) -> Result<Sample, String> {
    let server = Server::start(target, idle + base.conns)?;
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
            Phase::WindowStart => p.cpu_start = proc::cpu_time(pid).unwrap_or_default(),
            Phase::WindowEnd => p.cpu_end = proc::cpu_time(pid).unwrap_or_default(),
        }
    });
    let config = BenchConfig {
        addr: server.addr,
        idle,
        ..base.clone()
    };
    let result = bench::run(&config, Some(observer));
    server.stop();
    let result = result.map_err(|e| format!("{}: {e}", target.label()))?;
    let p = probe.lock().unwrap_or_else(|e| e.into_inner());
    let latency = stats::latency(&result.latency);
    let cpu_us = (p.cpu_end.saturating_sub(p.cpu_start)).as_secs_f64() * 1e6;
    Ok(Sample {
        target: target.label(),
        idle,
        repeat,
        requests_per_sec: result.requests_per_sec(),
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
        server_cpu_us_per_request: cpu_us / result.requests.max(1) as f64,
        rss_empty: p.rss_empty,
        rss_idle: if idle == 0 { p.rss_empty } else { p.rss_idle },
        bench_cpu: result.cpu_per_thread(),
        errors: result.errors.total(),
    })
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

pub fn run(args: CompareArgs) -> i32 {
    let warmup = match super::seconds("--warmup", args.warmup) {
        Ok(d) => d,
        Err(e) => return super::usage_error(&e),
    };
    let duration = match super::seconds("--duration", args.duration) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return super::usage_error("--duration must be more than 0"),
        Err(e) => return super::usage_error(&e),
    };
    if args.repeat == 0 || args.conns == 0 || args.size == 0 {
        return super::usage_error("--repeat, --conns and --size must be at least 1");
    }
    let mut targets: Vec<Target> = args.backends.iter().map(|&b| Target::Backend(b)).collect();
    targets.extend(
        args.peers
            .iter()
            .map(|(l, c)| Target::Peer(l.clone(), c.clone())),
    );
    if targets.is_empty() {
        return super::usage_error("nothing to compare: give --backends or --peer");
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("iomux compare: cannot create {}: {e}", args.out.display());
        return 1;
    }
    iomux::limits::raise_nofile_limit();
    let base = BenchConfig {
        addr: ([127, 0, 0, 1], 0).into(),
        conns: args.conns,
        pipeline: 1,
        idle: 0,
        size: args.size,
        mode: Mode::Echo,
        warmup,
        duration,
        threads: args.threads,
        backend: Backend::Epoll,
        progress: false,
        requests: None,
    };
    let total = args.repeat * args.idle.len() * targets.len();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut done = 0;
    // Interleaved (A B C A B C ...), so slow drift of a shared machine
    // spreads over every target instead of favouring one.
    for repeat in 0..args.repeat {
        for &idle in &args.idle {
            for target in &targets {
                let eta = if done == 0 {
                    "?".to_string()
                } else {
                    let per = started.elapsed().as_secs_f64() / done as f64;
                    format!("{:.0}s", per * (total - done) as f64)
                };
                eprintln!(
                    "iomux compare: [{}/{total}] {} at {idle} idle, run {}/{} (ETA {eta})",
                    done + 1,
                    target.label(),
                    repeat + 1,
                    args.repeat
                );
                match run_point(target, idle, repeat, &base) {
                    Ok(s) => {
                        eprintln!(
                            "iomux compare:   {:.0} req/s, {:.2} µs server CPU/req, p99 {}, {} errors",
                            s.requests_per_sec,
                            s.server_cpu_us_per_request,
                            stats::format_us(s.p99_us),
                            s.errors
                        );
                        samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("iomux compare: {e}");
                        return 1;
                    }
                }
                done += 1;
            }
        }
    }
    let points = report::aggregate(&samples);
    let command: String = std::env::args().collect::<Vec<_>>().join(" ");
    let title = format!("iomux compare, {}, {}", machine(), today());
    let json = serde_json::json!({
        "title": title,
        "command": command,
        "machine": machine(),
        "date": today(),
        "conns": args.conns,
        "size": args.size,
        "duration_secs": duration.as_secs_f64(),
        "repeat": args.repeat,
        "points": points,
        "samples": samples,
    });
    let write = |name: &str, text: String| {
        std::fs::write(args.out.join(name), text)
            .map_err(|e| format!("cannot write {}: {e}", args.out.join(name).display()))
    };
    let mut outcome = write(
        "results.json",
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .and_then(|_| write("results.md", report::markdown(&points, &title, &command)));
    type Metric = fn(&report::Point) -> f64;
    let plots: [(&str, &str, &str, Metric); 3] = [
        (
            "cpu_per_request.svg",
            "server CPU per request",
            "µs per request",
            |p| p.server_cpu_us_per_request,
        ),
        ("throughput.svg", "throughput", "requests/s", |p| {
            p.requests_per_sec
        }),
        ("latency_p99.svg", "p99 latency", "µs", |p| p.p99_us),
    ];
    for (file, what, unit, metric) in plots {
        if outcome.is_ok() {
            let caption = format!(
                "{what} vs idle connections — {}, {}",
                machine_short(),
                today()
            );
            outcome = report::plot(&points, &args.out.join(file), &caption, unit, metric);
        }
    }
    if let Err(e) = outcome {
        eprintln!("iomux compare: {e}");
        return 1;
    }
    print!("{}", report::markdown(&points, &title, &command));
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
}
