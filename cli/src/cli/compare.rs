//! `iomux compare`: every backend (and peer servers) under the same load,
//! at several idle-connection counts, with a table and plots.

use crate::bench::report::{self, Sample};
use crate::bench::{BenchConfig, plot, proc, stats};
use crate::compare::machine::{cores, machine, machine_short, today};
use crate::compare::{Cell, Outcome, Rate, Server, Target, check_matrix, run_point};
use clap::Args;
use iomux::Backend;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    /// Time measured per point (`5s`, `1m`, plain seconds).
    #[arg(short = 'd', long, default_value = "5", value_name = "DURATION", value_parser = super::parse_duration)]
    duration: Duration,
    /// Warm-up per point.
    #[arg(long, default_value = "1", value_name = "DURATION", value_parser = super::parse_duration)]
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
    /// Another echo server: LABEL=COMMAND, with {port} in COMMAND
    /// (repeatable: one --peer per server).
    #[arg(long = "peer", value_name = "LABEL=COMMAND", value_parser = parse_peer)]
    peers: Vec<(String, String)>,
    /// How long a server (or peer) may take to accept its first connection.
    #[arg(long, default_value = "5", value_name = "DURATION", value_parser = super::parse_duration)]
    start_timeout: Duration,
    /// Where results.json, results.md and the plots go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

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

/// The command line as a report records it: re-runnable from anywhere,
/// so from the directory it ran in (relative `--out` and peer commands
/// mean the same) and with this binary's absolute path.
fn rerunnable(args: &[String], cwd: Option<&Path>, exe: Option<&Path>) -> String {
    let mut args = args.to_vec();
    if let (Some(first), Some(exe)) = (args.first_mut(), exe) {
        *first = exe.display().to_string();
    }
    let line = command_line(&args);
    match cwd {
        Some(dir) => format!("cd {} && {line}", shell_quote(&dir.display().to_string())),
        None => line,
    }
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
        let cores = cores().unwrap_or(1);
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
        self.write_file(
            "results.json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        self.write_file(
            "results.md",
            report::markdown(&points, &self.title, &self.command, &notes),
        )?;
        self.write_plots(&points)
    }

    fn write_file(&self, name: &str, text: String) -> Result<(), String> {
        let path = self.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The three plots, each an SVG and a PNG; with no point yet, none
    /// (and no stale plots of an earlier run beside these results).
    fn write_plots(&self, points: &[report::Point]) -> Result<(), String> {
        if points.is_empty() {
            for file in ["cpu_per_request", "throughput", "latency_p99"] {
                for ext in ["svg", "png"] {
                    let _ = std::fs::remove_file(self.out.join(file).with_extension(ext));
                }
            }
            return Ok(());
        }
        let x = plot::XAxis::choose(points).description();
        let plots: [(&str, &str, &str, plot::Metric); 3] = [
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
        let workload = plot::Workload {
            conns: self.args.conns,
            bench_threads: self.args.threads,
            server_threads: self.args.server_threads.clone(),
            duration: self.args.duration,
            warmup: self.args.warmup,
        };
        for (file, what, unit, metric) in plots {
            let caption = format!("{what} vs {x} — {}, {}", machine_short(), today());
            plot::plot(
                points,
                &self.out.join(file),
                &caption,
                unit,
                metric,
                &workload,
            )?;
        }
        Ok(())
    }
}

pub fn run(args: CompareArgs) -> i32 {
    if args.duration.is_zero() {
        return super::usage_error("--duration must be more than 0");
    }
    let targets = targets(&args);
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
    let cells = cells(&args);
    if let Err(e) = check_matrix(&base, &cells) {
        return super::usage_error(&e);
    }
    if let Err(e) = super::check_writable_dir("--out", &args.out) {
        return super::usage_error(&e);
    }
    iomux::limits::raise_nofile_limit();
    stop_on_signals(&cancel);
    let argv: Vec<String> = std::env::args().collect();
    let report = Report {
        out: &args.out,
        command: rerunnable(
            &argv,
            std::env::current_dir().ok().as_deref(),
            std::env::current_exe().ok().as_deref(),
        ),
        title: format!("iomux compare, {}, {}", machine(), today()),
        args: &args,
        total: args.repeat as usize * cells.len() * targets.len(),
        load_before: proc::loadavg(),
    };
    if let Err(e) = check_servers_start(&targets, args.start_timeout) {
        return super::usage_error(&e);
    }
    if let Err(e) = report.write(&[], "started", None) {
        eprintln!("iomux compare: {e}");
        return 1;
    }
    warn_if_busy(report.load_before);
    match measure(&report, &targets, &cells, &base, &cancel) {
        Ok(samples) => finish(&report, &samples),
        Err(code) => code,
    }
}

/// Every `--backends` at every `--server-threads`, then the peers.
fn targets(args: &CompareArgs) -> Vec<Target> {
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
    targets
}

/// The matrix: every idle count, pipeline depth, size and rate.
fn cells(args: &CompareArgs) -> Vec<Cell> {
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
    cells
}

/// The first SIGINT or SIGTERM sets `cancel` (the run stops after the
/// current point's window); a second one ends the process at once.
fn stop_on_signals(cancel: &Arc<AtomicBool>) {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ =
            signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED, cancel.clone());
        let _ = signal_hook::flag::register(signal, cancel.clone());
    }
}

/// Every server must start and accept before the first measurement.
fn check_servers_start(targets: &[Target], timeout: Duration) -> Result<(), String> {
    for target in targets {
        eprintln!("iomux compare: checking that {} starts", target.label());
        Server::start(target, 0, timeout)?.stop();
    }
    Ok(())
}

fn warn_if_busy(load_before: Option<f64>) {
    let cores = cores().unwrap_or(1) as f64;
    if let Some(load) = load_before
        && load >= cores / 2.0
    {
        eprintln!(
            "iomux compare: warning: the load average is {load:.2} on {cores} cores before the first run; results will be noisy"
        );
    }
}

/// Runs every target at every point, `--repeat` times, writing the report
/// after each run. `Err` is the exit code of a run that stopped early (the
/// report then keeps what was measured).
fn measure(
    report: &Report<'_>,
    targets: &[Target],
    cells: &[Cell],
    base: &BenchConfig,
    cancel: &AtomicBool,
) -> Result<Vec<Sample>, i32> {
    let args = report.args;
    let total = report.total;
    let started = Instant::now();
    let mut samples = Vec::new();
    // Interleaved (A B C A B C ...), so slow drift of a shared machine
    // spreads over every target instead of favouring one.
    for repeat in 0..args.repeat as usize {
        for cell in cells {
            for target in targets {
                let done = samples.len();
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
                    run_point(target, cell, repeat, base, args.start_timeout)
                };
                // A signal to the whole process group (Ctrl-C in a
                // terminal) stops the servers too: a run that failed then
                // is the interrupt's doing, not the server's.
                let outcome = match outcome {
                    Err(e) if cancel.load(Ordering::SeqCst) => {
                        eprintln!(
                            "iomux compare: the run in progress ended with the interrupt ({e})"
                        );
                        Ok(Outcome::Interrupted)
                    }
                    other => other,
                };
                match outcome {
                    Ok(Outcome::Done(s)) => {
                        print_sample(&s);
                        samples.push(s);
                        if let Err(e) = report.write(&samples, "running", None) {
                            eprintln!("iomux compare: {e}");
                            return Err(1);
                        }
                    }
                    Ok(Outcome::Interrupted) => {
                        let _ = report.write(&samples, "interrupted", None);
                        eprintln!(
                            "iomux compare: interrupted; {} of {total} runs kept in {}",
                            samples.len(),
                            args.out.display()
                        );
                        return Err(INTERRUPTED);
                    }
                    Err(e) => {
                        eprintln!("iomux compare: {e}");
                        let _ = report.write(&samples, "failed", Some(&e));
                        eprintln!(
                            "iomux compare: {} of {total} runs kept in {}",
                            samples.len(),
                            args.out.display()
                        );
                        return Err(1);
                    }
                }
            }
        }
    }
    Ok(samples)
}

/// One run's line on stderr.
fn print_sample(s: &Sample) {
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
}

/// The complete report, its table on stdout; exit 1 if any run had errors.
fn finish(report: &Report<'_>, samples: &[Sample]) -> i32 {
    if let Err(e) = report.write(samples, "complete", None) {
        eprintln!("iomux compare: {e}");
        return 1;
    }
    let points = report::aggregate(samples);
    for w in report::warnings(&points) {
        eprintln!("iomux compare: warning: {w}");
    }
    print!(
        "{}",
        report::markdown(&points, &report.title, &report.command, &[])
    );
    println!(
        "\nwrote {}/{{results.json,results.md}} and {{cpu_per_request,throughput,latency_p99}}.{{svg,png}}",
        report.out.display()
    );
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    if errors > 0 { 1 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_recorded_command_runs_from_anywhere() {
        let argv = [
            "iomux".to_string(),
            "compare".into(),
            "--out".into(),
            "r".into(),
        ];
        assert_eq!(
            rerunnable(
                &argv,
                Some(Path::new("/home/me/my dir")),
                Some(Path::new("/opt/iomux/bin/iomux"))
            ),
            "cd '/home/me/my dir' && /opt/iomux/bin/iomux compare --out r"
        );
        assert_eq!(rerunnable(&argv, None, None), "iomux compare --out r");
    }
}
