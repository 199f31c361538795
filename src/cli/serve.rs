//! `iomux serve`: the multi-client server.

use clap::{Args, ValueEnum};
use iomux::app::{Ack, App, Chat, Echo, Hash};
use iomux::{Backend, Config, EventLoop};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
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
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8888")]
    bind: SocketAddr,
    /// Readiness mechanism [default: auto, or $IOMUX_BACKEND]
    /// [possible values: auto, select, poll, epoll, epoll-et, uring-poll]
    #[arg(long, value_parser = parse_backend)]
    backend: Option<Backend>,
    /// What the server does with the bytes.
    #[arg(long, value_enum, default_value = "ack")]
    app: AppName,
    /// Reply sent for each message (ack).
    #[arg(long, default_value = "Ok,Thanks")]
    reply: String,
    /// Connections beyond this are accepted and closed at once.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Close a client silent this many seconds (0 = never).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    idle_timeout: u64,
    /// Disconnect a client whose pushed, unsent output (chat lines it does
    /// not read) passes this many bytes. Replies to a client's own
    /// requests are bounded by flow control instead.
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
    #[arg(long, default_value_t = 0.0)]
    stats: f64,
    /// No per-message and per-connection lines.
    #[arg(short, long)]
    quiet: bool,
    /// Disconnect a client whose pushed output stays over BYTES for SECS
    /// seconds (Redis's soft client-output-buffer-limit), as BYTES:SECS.
    #[arg(long, value_name = "BYTES:SECS", value_parser = parse_soft_limit)]
    max_output_soft: Option<(usize, Duration)>,
    /// Disconnect a client that has output waiting and takes none of it
    /// for SECS seconds (0 = never).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    write_timeout: f64,
}

/// `BYTES:SECS`, both positive.
fn parse_soft_limit(s: &str) -> Result<(usize, Duration), String> {
    let usage = || format!("expected BYTES:SECS (for example 262144:10), got {s:?}");
    let (bytes, secs) = s.split_once(':').ok_or_else(usage)?;
    let bytes: usize = bytes.parse().map_err(|_| usage())?;
    let secs: f64 = secs.parse().map_err(|_| usage())?;
    let period = super::seconds("the soft limit's SECS", secs)?;
    if bytes == 0 || period.is_zero() {
        return Err(usage());
    }
    Ok((bytes, period))
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
    super::logger::install(args.quiet);
    let mut config = Config::default();
    config.max_clients = args.max_clients;
    config.idle_timeout = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    config.max_output = args.max_output;
    // Room for one over-long line plus a read, so chat and hash see it and
    // apply their own rule.
    config.max_input = args.max_line.saturating_add(64 * 1024);
    config.workers = args.workers.into();
    config.stall_threshold = (args.stall_ms > 0).then(|| Duration::from_millis(args.stall_ms));
    config.max_output_soft = args.max_output_soft;
    config.write_timeout = match super::seconds("--write-timeout", args.write_timeout) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => return super::usage_error(&e),
    };
    config.stats_interval = match super::seconds("--stats", args.stats) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d.max(Duration::from_millis(10))),
        Err(e) => return super::usage_error(&e),
    };
    if let Err(e) = config.validate() {
        return super::usage_error(&e.to_string());
    }
    let listener = match iomux::net::tcp_listener(args.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("iomux: cannot listen on {}: {e}", args.bind);
            return 1;
        }
    };
    let server = Server {
        backend,
        config,
        listener,
    };
    match args.app {
        AppName::Ack => server.run(Ack::new(args.reply.as_bytes(), !args.quiet)),
        AppName::Echo => server.run(Echo),
        AppName::Chat => server.run(Chat::new(args.max_line)),
        AppName::Hash => server.run(Hash::new(args.max_line, args.offload_above)),
    }
}

/// What every app is served with.
struct Server {
    backend: Backend,
    config: Config,
    listener: TcpListener,
}

impl Server {
    /// Runs `app` until a signal stops the loop; returns the exit code.
    fn run<A: App>(self, mut app: A) -> i32 {
        let Server {
            backend,
            config,
            listener,
        } = self;
        let setup = || -> std::io::Result<(EventLoop<A::State>, SocketAddr)> {
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
        if let Err(e) = lp.run(&mut app) {
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
}

#[cfg(test)]
mod tests {
    use super::parse_soft_limit;
    use std::time::Duration;

    #[test]
    fn soft_limit_is_bytes_colon_seconds() {
        assert_eq!(
            parse_soft_limit("262144:10"),
            Ok((262_144, Duration::from_secs(10)))
        );
        assert_eq!(
            parse_soft_limit("1000:0.5"),
            Ok((1000, Duration::from_millis(500)))
        );
        for bad in ["", "10", "x:1", "10:x", "0:1", "10:0", "10:-1", "10:1e9"] {
            assert!(parse_soft_limit(bad).is_err(), "{bad:?} accepted");
        }
    }
}
