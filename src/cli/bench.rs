//! `iomux bench`: the load generator.

use crate::bench::{self, BenchConfig, BenchResult, Mode, stats};
use clap::{Args, ValueEnum};
use iomux::Backend;
use std::net::SocketAddr;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ModeName {
    /// A response is the request's bytes, echoed (`serve --app echo`).
    Echo,
    /// A response is the --reply text (`serve --app ack`).
    Ack,
    /// `hash N TEXT` lines, checked against our own SHA-256 (`serve --app hash`).
    Hash,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,
    /// Active connections.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Extra connections opened first and kept silent.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// Request size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// What the server answers.
    #[arg(long, value_enum, default_value = "echo")]
    pub mode: ModeName,
    /// The reply text expected in ack mode.
    #[arg(long, default_value = "Ok,Thanks")]
    pub reply: String,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// hash mode: extra connections sending heavy requests.
    #[arg(long, default_value_t = 0)]
    pub heavy: usize,
    /// hash mode: iterations of each heavy request.
    #[arg(long, default_value_t = 100_000)]
    pub heavy_iters: u64,
    /// Send exactly N requests in all (warm-up included), then stop.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Load-generator threads, each with its own event loop.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The bench's own event-loop backend.
    #[arg(long, default_value = "epoll", value_parser = super::serve::parse_backend)]
    pub backend: Backend,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn to_config(&self, progress: bool) -> Result<BenchConfig, String> {
        Ok(BenchConfig {
            addr: self.addr,
            conns: self.conns,
            pipeline: self.pipeline,
            idle: self.idle,
            size: self.size,
            mode: match self.mode {
                ModeName::Echo => Mode::Echo,
                ModeName::Ack => Mode::Ack(self.reply.clone().into_bytes()),
                ModeName::Hash => Mode::Hash {
                    heavy: self.heavy,
                    heavy_iters: self.heavy_iters,
                },
            },
            warmup: super::seconds("--warmup", self.warmup)?,
            duration: super::seconds("--duration", self.duration)?,
            threads: self.threads,
            backend: self.backend,
            progress,
            requests: self.requests,
        })
    }
}

pub fn run(args: BenchArgs) -> i32 {
    let config = match args.to_config(!args.json) {
        Ok(c) => c,
        Err(e) => return super::usage_error(&e),
    };
    let result = match bench::run(&config, None) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return super::usage_error(&e.to_string());
        }
        Err(e) => {
            eprintln!("iomux bench: {e}");
            return 1;
        }
    };
    if args.json {
        println!("{}", to_json(&config, &result));
    } else {
        print!("{}", render(&config, &result));
    }
    if result.errors.total() > 0 { 1 } else { 0 }
}

/// The JSON document of a run.
pub fn to_json(c: &BenchConfig, r: &BenchResult) -> serde_json::Value {
    let l = stats::latency(&r.latency);
    serde_json::json!({
        "addr": c.addr.to_string(),
        "conns": c.conns,
        "pipeline": c.pipeline,
        "idle": c.idle,
        "size": c.size,
        "mode": mode_name(&c.mode),
        "heavy_requests": r.heavy_requests,
        "heavy_latency_us": stats::latency(&r.heavy_latency),
        "threads": r.threads,
        "window_secs": r.window.as_secs_f64(),
        "requests": r.requests,
        "requests_per_sec": r.requests_per_sec(),
        "mb_per_sec_sent": r.bytes_sent as f64 / 1e6 / r.window.as_secs_f64().max(1e-9),
        "mb_per_sec_received": r.bytes_received as f64 / 1e6 / r.window.as_secs_f64().max(1e-9),
        "latency_us": l,
        "errors": r.errors,
        "bench_cpu_per_thread": r.cpu_per_thread(),
        "bench_saturated": r.cpu_per_thread() >= BenchResult::SATURATED,
    })
}

fn mode_name(mode: &Mode) -> &'static str {
    match mode {
        Mode::Echo => "echo",
        Mode::Ack(_) => "ack",
        Mode::Hash { .. } => "hash",
    }
}

/// The human-readable report of a run.
pub fn render(c: &BenchConfig, r: &BenchResult) -> String {
    let l = stats::latency(&r.latency);
    let secs = r.window.as_secs_f64().max(1e-9);
    let mode = mode_name(&c.mode);
    let mut s = format!(
        "iomux bench: {} {mode}, {} conns x pipeline {}, {} idle, {} B, {} thread(s), {:.1} s measured\n",
        c.addr, c.conns, c.pipeline, c.idle, c.size, r.threads, secs
    );
    s += &format!(
        "  requests    {} ({:.0}/s)\n  throughput  {:.2} MB/s sent, {:.2} MB/s received\n",
        r.requests,
        r.requests_per_sec(),
        r.bytes_sent as f64 / 1e6 / secs,
        r.bytes_received as f64 / 1e6 / secs
    );
    s += &format!(
        "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
        stats::format_us(l.p50_us),
        stats::format_us(l.p90_us),
        stats::format_us(l.p99_us),
        stats::format_us(l.p999_us),
        stats::format_us(l.max_us)
    );
    if let Mode::Hash { heavy, heavy_iters } = c.mode {
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
        "  errors      {} connect failures, {} resets, {} mismatched, {} short\n",
        e.connect_failures, e.resets, e.mismatched, e.short
    );
    let cpu = r.cpu_per_thread();
    s += &format!("  bench cpu   {:.0}% of a core per thread", cpu * 100.0);
    if cpu >= BenchResult::SATURATED {
        s += " (saturated: the load generator, not the server, may be the limit; try --threads)";
    }
    s += "\n";
    s
}
