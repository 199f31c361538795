//! `iomux bench`: the load generator.

use crate::bench::protocol::{self, ReplyRule};
use crate::bench::{
    self, BenchConfig, BenchResult, Interval, Mode, Observer, Phase, churn, stats, verdict,
};
use clap::{Args, ValueEnum};
use iomux::{Addr, Backend};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeName {
    /// A response is the request's bytes, echoed (`serve --app echo`).
    Echo,
    /// A response is the --reply text (`serve --app ack`).
    Ack,
    /// `hash N TEXT` lines, checked against our own SHA-256 (`serve --app hash`).
    Hash,
    /// HTTP/1.1 keep-alive: a `GET /` (or --request), each response's
    /// length from its headers (Content-Length or chunked).
    Http,
}

impl ModeName {
    fn name(self) -> &'static str {
        match self {
            ModeName::Echo => "echo",
            ModeName::Ack => "ack",
            ModeName::Hash => "hash",
            ModeName::Http => "http",
        }
    }
}

/// A server address as given (`HOST:PORT`, `unix:PATH`, `unix:@NAME`)
/// and what it resolves to.
#[derive(Clone, Debug)]
pub struct Target {
    pub text: String,
    pub addrs: Vec<Addr>,
}

fn parse_requests(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number of at least 1, got '{s}'")),
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    let addrs = match Addr::parse_unix(s) {
        Some(unix) => vec![unix?],
        None => super::resolve(s)?.into_iter().map(Addr::Tcp).collect(),
    };
    Ok(Target {
        text: s.to_string(),
        addrs,
    })
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server address: HOST:PORT (`localhost:8888`, `[::1]:8888`), or a
    /// Unix-domain socket (`unix:/tmp/iomux.sock`, `unix:@name`).
    #[arg(long, default_value = "127.0.0.1:8888", value_parser = parse_target)]
    pub addr: Target,
    /// Active connections.
    #[arg(short = 'c', long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub conns: u64,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub pipeline: u64,
    /// Extra connections opened first and kept silent.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub idle: u64,
    /// Request size in bytes (echo, ack, hash) [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    pub size: Option<u64>,
    /// What the server answers [default: echo].
    #[arg(long, value_enum, conflicts_with_all = ["reply_until", "reply_len"])]
    pub mode: Option<ModeName>,
    /// Any protocol: send these bytes as every request. TEXT takes the
    /// escapes \r \n \t \\ and \xNN; @FILE sends a file's raw bytes.
    /// Needs one reply rule: --reply-until, --reply-len or --mode http.
    /// Every request is the same, so only each reply's framing is
    /// checked, not its content.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub request: Option<String>,
    /// With --request: a reply ends at the first DELIM (escapes as in
    /// --request), e.g. '\r\n'.
    #[arg(
        long,
        value_name = "DELIM",
        requires = "request",
        conflicts_with = "reply_len"
    )]
    pub reply_until: Option<String>,
    /// With --request: every reply is N bytes.
    #[arg(long, value_name = "N", requires = "request", value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    pub reply_len: Option<u64>,
    /// The reply text expected in ack mode.
    #[arg(long, default_value = "Ok,Thanks")]
    pub reply: String,
    /// Load before measuring (`1s`, `500ms`, plain seconds).
    #[arg(long, default_value = "1", value_name = "DURATION", value_parser = super::parse_duration)]
    pub warmup: Duration,
    /// Time measured (`5s`, `1m`, plain seconds; with --requests: the
    /// longest the window may last).
    #[arg(short = 'd', long, default_value = "5", value_name = "DURATION", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// hash mode: extra connections sending heavy requests.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub heavy: u64,
    /// hash mode: iterations of each heavy request.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub heavy_iters: u64,
    /// Measure exactly N requests (sent after the warm-up), then stop.
    #[arg(short = 'n', long, value_parser = parse_requests)]
    pub requests: Option<u64>,
    /// Load-generator threads, each with its own event loop.
    #[arg(short = 't', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Open loop: R requests per second in all, spread over the
    /// connections; latency from each request's due time.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Open at most R connections per second.
    #[arg(long, value_name = "R")]
    pub connect_rate: Option<f64>,
    /// How long a connect may take before the run fails.
    #[arg(long, default_value = "3", value_name = "DURATION", value_parser = super::parse_duration)]
    pub connect_timeout: Duration,
    /// How long a request may wait for its response (response timeout).
    #[arg(long, default_value = "5", value_name = "DURATION", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// Write the latency percentile distribution (HdrHistogram text, ms) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hist: Option<PathBuf>,
    /// A line every DURATION of the measured window.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub interval: Option<Duration>,
    /// --interval lines as CSV.
    #[arg(long, requires = "interval")]
    pub csv: bool,
    /// The bench's own event-loop backend (any `serve --backend` name,
    /// `uring` included).
    #[arg(long, default_value = "epoll", value_parser = super::serve::parse_backend)]
    pub backend: Backend,
    /// Print the result (or the error) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: super::bench_tls::TlsArgs,
}

/// `--request`'s bytes: TEXT unescaped, or @FILE's raw bytes.
fn request_bytes(arg: &str) -> Result<Vec<u8>, String> {
    let bytes = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("--request: cannot read {path}: {e}"))?
        }
        None => protocol::unescape(arg).map_err(|e| format!("--request: {e}"))?,
    };
    if bytes.is_empty() {
        return Err("--request is empty".into());
    }
    Ok(bytes)
}

impl BenchArgs {
    /// The mode the flags ask for: the bench's own (`--mode`, echo unless
    /// said), or any protocol (`--request` with one reply rule, or `--mode
    /// http`). Clap refuses a reply rule without `--request` and two rules
    /// at once; the rest is refused here, naming the flags.
    fn mode(&self) -> Result<Mode, String> {
        let rule = match (&self.reply_until, self.reply_len) {
            (Some(delim), _) => {
                let delim = protocol::unescape(delim).map_err(|e| format!("--reply-until: {e}"))?;
                if delim.is_empty() {
                    return Err("--reply-until must not be empty".into());
                }
                Some(ReplyRule::Until(delim))
            }
            (None, Some(n)) => Some(ReplyRule::Len(n as usize)),
            (None, None) => None,
        };
        let request = self.request.as_deref().map(request_bytes).transpose()?;
        if (request.is_some() || self.mode == Some(ModeName::Http))
            && let Some(size) = self.size
        {
            return Err(format!(
                "--size {size} sizes the echo, ack and hash requests; --request and --mode http \
                 send their own"
            ));
        }
        Ok(match (self.mode.unwrap_or(ModeName::Echo), request, rule) {
            (ModeName::Http, request, _) => Mode::Framed {
                request: request.unwrap_or_else(|| Mode::http_get(&self.addr.text)),
                reply: ReplyRule::Http,
            },
            (_, Some(request), Some(reply)) => Mode::Framed { request, reply },
            (_, Some(_), None) if self.mode.is_some() => {
                return Err(format!(
                    "--request does not go with --mode {}: that mode makes its own requests \
                     (with --request, give a reply rule: --reply-until DELIM, --reply-len N or \
                     --mode http)",
                    self.mode.map_or("echo", |m| m.name())
                ));
            }
            (_, Some(_), None) => {
                return Err(
                    "--request needs a reply rule: --reply-until DELIM, --reply-len N or --mode http"
                        .into(),
                );
            }
            (ModeName::Echo, None, _) => Mode::Echo,
            (ModeName::Ack, None, _) => Mode::Ack(self.reply.clone().into_bytes()),
            (ModeName::Hash, None, _) => Mode::Hash {
                heavy: self.heavy as usize,
                heavy_iters: self.heavy_iters,
            },
        })
    }

    pub fn to_config(&self, progress: bool) -> Result<BenchConfig, String> {
        let mode = self.mode()?;
        let size = match &mode {
            Mode::Framed { request, .. } => request.len(),
            _ => self.size.unwrap_or(64) as usize,
        };
        Ok(BenchConfig {
            addrs: self.addr.addrs.clone(),
            target: self.addr.text.clone(),
            conns: self.conns as usize,
            pipeline: self.pipeline as usize,
            idle: self.idle as usize,
            size,
            warmup: self.warmup,
            duration: self.duration,
            threads: self.threads as usize,
            backend: self.backend,
            progress,
            requests: self.requests,
            connect_timeout: self.connect_timeout,
            response_timeout: self.timeout,
            rate: self.rate,
            connect_rate: self.connect_rate,
            interval: self.interval,
            cancel: Arc::new(AtomicBool::new(false)),
            tls: self.tls.client(&self.addr.text, &mode)?,
            new_conn: self.tls.new_conn,
            mode,
        })
    }
}

/// Exit code of a run cut short by Ctrl-C (128 + SIGINT).
const INTERRUPTED: i32 = 130;

pub fn run(args: BenchArgs) -> i32 {
    let config = match args.to_config(std::io::stderr().is_terminal()) {
        Ok(c) => c,
        Err(e) => return super::usage_error(&e),
    };
    if let Err(e) = bench::validate(&config) {
        return super::usage_error(&e.to_string());
    }
    if let Some(path) = &args.hist
        && let Err(e) = super::check_writable_file("--hist", path)
    {
        return super::usage_error(&e);
    }
    // The first Ctrl-C ends the run with its partial result; a second one
    // while the bench is still finishing exits at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            INTERRUPTED,
            config.cancel.clone(),
        );
        let _ = signal_hook::flag::register(signal, config.cancel.clone());
    }
    let observer = args.interval.map(|_| interval_printer(args.csv, args.json));
    let result = if config.new_conn {
        churn::run(&config, observer)
    } else {
        bench::run(&config, observer)
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let interrupted = e.kind() == std::io::ErrorKind::Interrupted;
            if args.json {
                // The same document as any run's, with nothing measured
                // (`addrs` is never empty: the configuration was validated).
                let addr = config.addrs.first().cloned();
                let mut nothing = BenchResult::nothing(
                    addr.unwrap_or(Addr::Tcp(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))),
                );
                nothing.interrupted = interrupted;
                nothing.threads = config.threads;
                println!("{}", to_json(&config, &nothing, Some(&e.to_string())));
            }
            eprintln!("iomux bench: {e}");
            return if interrupted { INTERRUPTED } else { 1 };
        }
    };
    let failure = result.failure();
    if args.json {
        println!("{}", to_json(&config, &result, failure.as_deref()));
    } else {
        print!("{}", render(&config, &result));
    }
    if let Some(path) = &args.hist
        && let Err(e) = std::fs::write(path, stats::percentile_distribution(&result.latency))
    {
        eprintln!("iomux bench: cannot write {}: {e}", path.display());
        return 1;
    }
    if result.interrupted {
        eprintln!(
            "iomux bench: interrupted after {} measured; the result is partial",
            stats::format_secs(result.window)
        );
        return INTERRUPTED;
    }
    match failure {
        Some(f) => {
            eprintln!("iomux bench: {f}");
            1
        }
        None => 0,
    }
}

/// Prints each interval line: on stdout, or on stderr when stdout holds
/// the JSON document.
fn interval_printer(csv: bool, json: bool) -> Observer {
    let print = move |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    Arc::new(move |phase| match phase {
        Phase::WindowStart if csv => print(INTERVAL_CSV_HEADER),
        Phase::Interval(i) => print(&interval_line(&i, csv)),
        _ => {}
    })
}

pub const INTERVAL_CSV_HEADER: &str =
    "elapsed_secs,secs,requests,requests_per_sec,p50_us,p90_us,p99_us,max_us,errors";

/// One `--interval` line, as text or CSV.
pub fn interval_line(i: &Interval, csv: bool) -> String {
    if csv {
        // An interval without responses has no percentiles: empty fields.
        let us = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        format!(
            "{:.3},{:.3},{},{:.1},{},{},{},{},{}",
            i.elapsed_secs,
            i.secs,
            i.requests,
            i.requests_per_sec,
            us(i.p50_us),
            us(i.p90_us),
            us(i.p99_us),
            us(i.max_us),
            i.errors
        )
    } else {
        format!(
            "  [{:6.1} s] {:10.0} req/s  p50 {}  p99 {}  max {}  {} errors",
            i.elapsed_secs,
            i.requests_per_sec,
            stats::format_us(i.p50_us),
            stats::format_us(i.p99_us),
            stats::format_us(i.max_us),
            i.errors
        )
    }
}

/// The JSON document of a run.
pub fn to_json(c: &BenchConfig, r: &BenchResult, failure: Option<&str>) -> serde_json::Value {
    let l = stats::latency(&r.latency);
    let secs = r.window.as_secs_f64().max(1e-9);
    let kept_up = verdict::kept_up(r, c.rate);
    let behind = verdict::behind(r, c.rate, c.conns, c.pipeline);
    let mut doc = serde_json::json!({
        "ok": failure.is_none() && !r.interrupted,
        "error": failure,
        "interrupted": r.interrupted,
        "addr": r.addr.to_string(),
        "target": c.target,
        "conns": c.conns,
        "pipeline": c.pipeline,
        "idle": c.idle,
        "size": c.size,
        "mode": c.mode.name(),
        "request": c.mode.framed().map(|(request, _)| request.escape_ascii().to_string()),
        "reply_rule": c.mode.framed().map(|(_, rule)| rule.to_string()),
        "rate_asked": c.rate,
        "rate_achieved": c.rate.map(|_| r.requests_per_sec()),
        "sent": r.sent,
        // Open loop: requests due in the window and never sent; whether
        // the run kept up with the asked rate and, if not, which side was
        // the limit and why; null in the closed loop.
        "missed": c.rate.map(|_| r.missed),
        "kept_up": kept_up,
        "behind": behind.as_ref().map(|b| b.side),
        "behind_reason": behind.as_ref().map(|b| b.why.clone()),
        "drain_secs": r.drain.as_secs_f64(),
        "connect_secs": r.connect_time.as_secs_f64(),
        "connect_timeout_secs": c.connect_timeout.as_secs_f64(),
        "response_timeout_secs": c.response_timeout.as_secs_f64(),
        "heavy_requests": r.heavy_requests,
        "heavy_latency_us": stats::latency(&r.heavy_latency),
        "threads": r.threads,
        "window_secs": r.window.as_secs_f64(),
        "requests": r.requests,
        "requests_per_sec": r.requests_per_sec(),
        "mb_per_sec_sent": r.bytes_sent as f64 / 1e6 / secs,
        "mb_per_sec_received": r.bytes_received as f64 / 1e6 / secs,
        "latency_us": l,
        // Open loop only; in the closed loop every percentile is null.
        "bench_lag_us": stats::latency(&r.send_lag),
        "latency_from_send_us": stats::latency(&r.from_send),
        "bench_lag_cause": verdict::lag_cause(r),
        "errors": r.errors,
        "reconnects": r.reconnects,
        "intervals": r.intervals,
        "bench_cpu_per_thread": r.cpu_per_thread(),
        "bench_saturated": r.cpu_per_thread() >= BenchResult::SATURATED,
        "bench_cpu_wait_per_thread": r.cpu_wait_per_thread(),
    });
    // `--new-conn`: every request on a connection of its own (with
    // `--tls`, a full handshake each); its rates, null otherwise. (Apart:
    // one `json!` of every key is past its macro's recursion limit.)
    let new_conn = serde_json::json!({
        "new_conn": c.new_conn,
        "tls": c.tls.is_some(),
        "connections_per_sec": c.new_conn.then(|| r.requests_per_sec()),
        "handshakes_per_sec": (c.new_conn && c.tls.is_some()).then(|| r.requests_per_sec()),
    });
    if let (Some(doc), serde_json::Value::Object(more)) = (doc.as_object_mut(), new_conn) {
        doc.extend(more);
    }
    doc
}

/// The human-readable report of a run.
pub fn render(c: &BenchConfig, r: &BenchResult) -> String {
    let l = stats::latency(&r.latency);
    let secs = r.window.as_secs_f64().max(1e-9);
    let mode = c.mode.describe();
    let model = match c.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_string(),
    };
    let conns = if c.new_conn {
        let each = if c.tls.is_some() {
            "TLS connection (a full handshake)"
        } else {
            "connection"
        };
        format!("a new {each} per request, {} at once", c.conns)
    } else {
        format!(
            "{} conns x pipeline {}, {} idle",
            c.conns, c.pipeline, c.idle
        )
    };
    let mut s = format!(
        "iomux bench: {} {mode}, {model}, {conns}, {} B, {} thread(s), {} measured{}\n",
        r.addr,
        c.size,
        r.threads,
        stats::format_secs(r.window),
        if r.interrupted {
            " (interrupted: partial)"
        } else {
            ""
        }
    );
    s += &format!(
        "  requests    {} ({:.0}/s)\n",
        r.requests,
        r.requests_per_sec()
    );
    if c.new_conn {
        // One request per connection: the same count, said as what it is.
        let (label, what) = if c.tls.is_some() {
            ("handshakes ", "full TLS handshakes, none resumed")
        } else {
            ("connections", "connect to close")
        };
        s += &format!(
            "  {label} {} ({:.0}/s), {what}\n",
            r.requests,
            r.requests_per_sec()
        );
    }
    s += &format!(
        "  throughput  {:.2} MB/s sent, {:.2} MB/s received\n",
        r.bytes_sent as f64 / 1e6 / secs,
        r.bytes_received as f64 / 1e6 / secs
    );
    if let Some(rate) = c.rate {
        let achieved = r.requests_per_sec();
        s += &format!(
            "  rate        asked {rate:.0}/s, achieved {achieved:.0}/s ({:.1}%), {} missed\n",
            100.0 * achieved / rate,
            r.missed
        );
        if !r.drain.is_zero() {
            s += &format!(
                "  drain       {} after the window for the last answers (in the rates above)\n",
                stats::format_secs(r.drain)
            );
        }
        if let Some(b) = verdict::behind(r, c.rate, c.conns, c.pipeline) {
            s += &format!("  behind      {}\n", b.why);
        }
    }
    let from = if c.rate.is_some() {
        " (from each request's due time)"
    } else if c.new_conn {
        " (the whole cycle: connect, handshake, request, reply)"
    } else {
        ""
    };
    s += &format!(
        "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{from}\n",
        stats::format_us(l.p50_us),
        stats::format_us(l.p90_us),
        stats::format_us(l.p99_us),
        stats::format_us(l.p999_us),
        stats::format_us(l.max_us)
    );
    if c.rate.is_some() {
        let u = stats::latency(&r.from_send);
        s += &format!(
            "  from send   p50 {}  p90 {}  p99 {}  p99.9 {}  max {} (uncorrected: from the real send time)\n",
            stats::format_us(u.p50_us),
            stats::format_us(u.p90_us),
            stats::format_us(u.p99_us),
            stats::format_us(u.p999_us),
            stats::format_us(u.max_us)
        );
        let lag = stats::latency(&r.send_lag);
        let cause = verdict::lag_cause(r).map_or(String::new(), |c| format!(": {}", c.describe()));
        s += &format!(
            "  bench lag   p50 {}  p99 {}  max {} (how late the bench itself got to due requests{cause})\n",
            stats::format_us(lag.p50_us),
            stats::format_us(lag.p99_us),
            stats::format_us(lag.max_us)
        );
        if let Some(w) = verdict::lag_warning(r) {
            s += &format!("  warning     {w}\n");
        }
    }
    if let Mode::Hash { heavy, heavy_iters } = c.mode
        && heavy > 0
    {
        let h = stats::latency(&r.heavy_latency);
        s += &format!(
            "  heavy       {heavy} conns x hash {heavy_iters}: {} requests, p50 {}  p99 {}  max {}\n",
            r.heavy_requests,
            stats::format_us(h.p50_us),
            stats::format_us(h.p99_us),
            stats::format_us(h.max_us)
        );
    }
    let e = &r.errors;
    s += &format!(
        "  errors      {} connect failures, {} resets, {} closed by server, {} mismatched, {} short, {} timeouts, {} idle closed\n",
        e.connect_failures,
        e.resets,
        e.closed_by_server,
        e.mismatched,
        e.short,
        e.timeouts,
        e.idle_closed
    );
    if e.timeouts > 0 {
        s += &format!(
            "  timeouts    {} requests unanswered within {}: their connections were closed, {} reopened, and the run went on\n",
            e.timeouts,
            stats::format_secs(c.response_timeout),
            r.reconnects
        );
    }
    if let Some(first) = &r.first_error {
        s += &format!("  first error {first}\n");
    }
    let cpu = r.cpu_per_thread();
    s += &format!(
        "  bench cpu   {:.0}% of a core per thread, {:.0}% of the time waiting for one",
        cpu * 100.0,
        r.cpu_wait_per_thread() * 100.0
    );
    if c.new_conn && r.requests > 0 {
        s += &format!(
            ", {:.0} µs per connection",
            r.cpu.as_secs_f64() * 1e6 / r.requests as f64
        );
    }
    if cpu >= BenchResult::SATURATED {
        s += " (saturated: the load generator, not the server, may be the limit; try --threads)";
    }
    s += "\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_lines_as_text_and_csv() {
        let i = Interval {
            elapsed_secs: 2.0,
            secs: 1.0,
            requests: 1000,
            requests_per_sec: 1000.0,
            p50_us: Some(100.0),
            p90_us: Some(200.0),
            p99_us: Some(1500.0),
            max_us: Some(3000.0),
            errors: 0,
        };
        let csv = interval_line(&i, true);
        assert_eq!(csv, "2.000,1.000,1000,1000.0,100.0,200.0,1500.0,3000.0,0");
        assert_eq!(
            csv.split(',').count(),
            INTERVAL_CSV_HEADER.split(',').count()
        );
        let text = interval_line(&i, false);
        assert!(
            text.contains("1000 req/s") && text.contains("p99 1.50 ms"),
            "{text}"
        );
        let quiet = Interval {
            requests: 0,
            requests_per_sec: 0.0,
            p50_us: None,
            p90_us: None,
            p99_us: None,
            max_us: None,
            ..i
        };
        assert_eq!(interval_line(&quiet, true), "2.000,1.000,0,0.0,,,,,0");
        let text = interval_line(&quiet, false);
        assert!(text.contains("p50 n/a  p99 n/a  max n/a"), "{text}");
    }
}
