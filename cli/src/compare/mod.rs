//! What `iomux compare` measures, beneath its flags (`cli/compare.rs`):
//! one run of one target at one point of the matrix is a fresh server
//! (`server.rs`) under a bench load, read from /proc at the window's edges
//! (`machine.rs`), and comes to one [`Sample`] of the report.

pub mod machine;
mod server;

pub use server::{Server, Target};

use crate::bench::report::Sample;
use crate::bench::{self, BenchConfig, BenchResult, Observer, Phase, proc, stats, verdict};
use machine::Reading;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One value of `--rate`: `None` is the closed loop.
pub type Rate = Option<f64>;

/// One point of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub idle: usize,
    pub pipeline: usize,
    pub size: usize,
    pub rate: Rate,
}

impl Cell {
    pub fn describe(&self) -> String {
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
pub enum Outcome {
    Done(Sample),
    Interrupted,
}

/// The bench run of `cell` against `addr`: `base` with the cell's values.
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

/// Checks the flags that clap cannot: every matrix point must be a valid
/// bench run.
pub fn check_matrix(base: &BenchConfig, cells: &[Cell]) -> Result<(), String> {
    for cell in cells {
        let config = bench_config(base, cell, ([127, 0, 0, 1], 1).into());
        bench::validate(&config).map_err(|e| format!("{e} (at {})", cell.describe()))?;
    }
    Ok(())
}

/// The server's memory and the CPU readings, taken as the bench reaches
/// each [`Phase`].
#[derive(Default)]
struct Probe {
    rss_empty: u64,
    rss_idle: u64,
    start: Reading,
    end: Reading,
}

impl Probe {
    /// Fills `probe` in from the bench's phases, for the server `pid`.
    fn observer(probe: Arc<Mutex<Probe>>, pid: u32) -> Observer {
        Arc::new(move |phase| {
            let mut p = probe.lock().unwrap_or_else(|e| e.into_inner());
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
        })
    }
}

/// One run of `target` at `cell` (repeat number `repeat`): a fresh
/// server, the bench, the server stopped, the sample.
pub fn run_point(
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
    let observer = Probe::observer(probe.clone(), pid);
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
    Ok(Outcome::Done(sample(label, cell, repeat, &result, &p)))
}

/// What one run measured, for the report.
fn sample(target: String, cell: &Cell, repeat: usize, result: &BenchResult, p: &Probe) -> Sample {
    let latency = stats::latency(&result.latency);
    let (a, b) = (&p.start, &p.end);
    let cpu_us = a.server_cpu_until(b).as_secs_f64() * 1e6;
    let window = a
        .secs_until(b)
        .unwrap_or(result.window.as_secs_f64())
        .max(1e-9);
    Sample {
        target,
        idle: cell.idle,
        pipeline: cell.pipeline,
        size: cell.size,
        rate: cell.rate,
        repeat,
        requests_per_sec: result.requests_per_sec(),
        // A run without a completed request is an error before this.
        p50_us: latency.p50_us.unwrap_or(f64::NAN),
        p99_us: latency.p99_us.unwrap_or(f64::NAN),
        server_cpu_us_per_request: cpu_us / result.requests.max(1) as f64,
        rss_empty: p.rss_empty,
        rss_idle: if cell.idle == 0 {
            p.rss_empty
        } else {
            p.rss_idle
        },
        bench_cpu: result.cpu_per_thread(),
        other_load: a.other_load_until(b, window),
        errors: result.errors.total(),
        missed: result.missed,
        kept_up: verdict::kept_up(result, cell.rate),
    }
}
