//! `iomux serve`: the multi-client server.

use clap::{Args, ValueEnum};
use iomux::app::{Ack, App, Chat, Echo, Hash};
use iomux::{Backend, Config, EventLoop};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Copy, Clone, Debug, ValueEnum)]
enum AppName {
    /// Print each message and answer the --reply text (the seed's server).
    Ack,
    /// Send back every byte received.
    Echo,
    /// Relay each line to all other clients.
    Chat,
    /// Answer `hash N TEXT` lines with SHA-256 iterated N times (CPU work).
    Hash,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (`localhost:8888`, `[::1]:8888`);
    /// port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8888", value_parser = parse_bind)]
    bind: SocketAddr,
    /// Readiness mechanism [default: auto, or $IOMUX_BACKEND]
    /// [possible values: auto, select, poll, epoll, epoll-et]
    #[arg(long, value_parser = parse_backend)]
    backend: Option<Backend>,
    /// What the server does with the bytes.
    #[arg(long, value_enum, default_value = "ack")]
    app: AppName,
    /// Reply sent for each message (ack).
    #[arg(long, default_value = "Ok,Thanks")]
    reply: String,
    /// Connections beyond this are accepted and closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = parse_max_clients)]
    max_clients: usize,
    /// Close a client silent this many seconds (0 = never; fractions allowed).
    #[arg(long, default_value = "0", value_parser = parse_idle_timeout)]
    idle_timeout: Duration,
    /// Disconnect a client whose unsent output passes this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_output: usize,
    /// Longest line accepted: chat disconnects the sender, hash answers
    /// an error.
    #[arg(long, default_value_t = 65536)]
    max_line: usize,
    /// Worker threads for heavy requests (0 = all work on the loop thread).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    workers: u16,
    /// hash: requests with at least this many iterations go to the workers.
    #[arg(long, default_value_t = 1000)]
    offload_above: u64,
    /// Log a handler that holds the loop thread longer than this (0 = off).
    #[arg(long, default_value_t = 100)]
    stall_ms: u64,
    /// Print a stats line on stderr every SECS seconds (0 = off).
    #[arg(long, default_value_t = 0.0, value_parser = parse_stats)]
    stats: f64,
    /// No per-message and per-connection lines.
    #[arg(short, long)]
    quiet: bool,
}

/// `--bind`: an address or a host name; the first address it resolves to.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    super::resolve(s).map(|addrs| addrs[0])
}

fn parse_max_clients(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be from 1 to 10000000 (0 would refuse every client), got '{s}'"
        )),
    }
}

fn parse_idle_timeout(s: &str) -> Result<Duration, String> {
    let d = super::parse_seconds_up_to(s, 31_536_000.0)?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(format!(
            "must be 0 (off) or at least 0.001 seconds, got {s}"
        ));
    }
    Ok(d)
}

fn parse_stats(s: &str) -> Result<f64, String> {
    let d = super::parse_seconds(s)?;
    if !d.is_zero() && d < Duration::from_millis(10) {
        return Err(format!("must be 0 (off) or at least 0.01 seconds, got {s}"));
    }
    Ok(d.as_secs_f64())
}

pub fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse::<Backend>().map_err(|e| e.to_string())
}

pub fn run(args: ServeArgs) -> i32 {
    let backend = match args.backend {
        Some(b) => b,
        None => match Backend::from_env() {
            Ok(b) => b,
            Err(e) => return super::usage_error(&format!("IOMUX_BACKEND: {e}")),
        },
    };
    iomux::limits::raise_nofile_limit();
    let config = Config {
        max_clients: args.max_clients,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        max_output: args.max_output,
        // Room for one over-long line plus a read, so chat sees it and
        // disconnects with its own rule.
        max_input: args.max_line.saturating_add(64 * 1024),
        log_connections: !args.quiet,
        workers: args.workers.into(),
        stall_threshold: (args.stall_ms > 0).then(|| Duration::from_millis(args.stall_ms)),
        stats_interval: match super::seconds("--stats", args.stats) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d.max(Duration::from_millis(10))),
            Err(e) => return super::usage_error(&e),
        },
        ..Config::default()
    };
    let mut app: Box<dyn App> = match args.app {
        AppName::Ack => Box::new(Ack::new(args.reply.as_bytes(), !args.quiet)),
        AppName::Echo => Box::new(Echo),
        AppName::Chat => Box::new(Chat::new(args.max_line)),
        AppName::Hash => Box::new(Hash::new(args.max_line, args.offload_above)),
    };
    let listener = match iomux::net::tcp_listener(args.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("iomux: cannot listen on {}: {e}", args.bind);
            return 1;
        }
    };
    let setup = || -> std::io::Result<(EventLoop, SocketAddr)> {
        let local = listener.local_addr()?;
        let mut lp = EventLoop::new(backend, config)?;
        lp.listen(listener)?;
        lp.stop_on_signals(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        Ok((lp, local))
    };
    let (mut lp, local) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("iomux: cannot start the {backend} event loop: {e}");
            return 1;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "iomux: listening on {local} (backend {}, app {})",
            lp.backend_name(),
            app.name()
        );
        let _ = out.flush();
    }
    if let Err(e) = lp.run(app.as_mut()) {
        eprintln!("iomux: event loop failed: {e}");
        return 1;
    }
    let stats = lp.stats();
    // Not println!: a closed stdout must not turn a clean stop into a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "iomux: shutdown, {} clients served, {} bytes in, {} bytes out",
        stats.accepted, stats.bytes_in, stats.bytes_out
    );
    let _ = out.flush();
    0
}
