//! `iomux serve`: the multi-client server.

use crate::apps::{Ack, Chat, Echo, Hash};
use clap::{Args, ValueEnum};
use iomux::App;
use iomux::group::Threads;
use iomux::net::Listener;
use iomux::{Addr, Backend, Config, EventLoop, Stats};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Copy, Clone, Debug, ValueEnum)]
enum AppName {
    /// Print each message and answer the --reply text (the classic
    /// multiplexing example).
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
    /// Address to listen on: HOST:PORT (`localhost:8888`, `[::1]:8888`;
    /// port 0 picks a free port), `unix:PATH` for a Unix-domain socket
    /// file, or `unix:@NAME` for Linux's abstract namespace.
    #[arg(long, default_value = "127.0.0.1:8888", value_parser = parse_bind)]
    bind: Addr,
    /// Kernel mechanism [default: auto, or $IOMUX_BACKEND] [possible
    /// values: auto, select, poll, epoll, epoll-et, uring-poll (readiness);
    /// uring (completion)]
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
    /// Written to a client turned away by --max-clients before it is
    /// closed, with escapes (\r \n \t \\ \xNN); e.g.
    /// '-ERR max number of clients reached\r\n'. At most 4096 bytes.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true, value_parser = parse_reply_text)]
    max_clients_reply: Option<Escaped>,
    /// How long a shutdown (SIGINT, SIGTERM) waits for clients to receive
    /// what they are owed (`5s`, `1m`, plain seconds; 0 = close at once).
    /// A second signal ends the wait.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_grace)]
    shutdown_grace: Duration,
    /// Close a client silent this long (`30s`, `1m`, `500ms`, plain
    /// seconds; 0 = never). Time the server is not reading a client
    /// (back-pressure) does not count.
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_timeout)]
    idle_timeout: Duration,
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
    /// Print a stats line on stderr every DURATION (`1s`, `500ms`, plain
    /// seconds; 0 = off).
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_period)]
    stats: Duration,
    /// No per-message and per-connection lines.
    #[arg(short, long)]
    quiet: bool,
    /// Disconnect a client whose pushed output stays over BYTES for DURATION
    /// (Redis's soft client-output-buffer-limit), as BYTES:DURATION.
    #[arg(long, value_name = "BYTES:DURATION", value_parser = parse_soft_limit)]
    max_output_soft: Option<(usize, Duration)>,
    /// Disconnect a client that has output waiting and takes none of it
    /// for DURATION (`10s`, plain seconds; 0 = never).
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_timeout)]
    write_timeout: Duration,
    /// Event loops, each in its own thread (0 = one per available core):
    /// on TCP each has its own SO_REUSEPORT listener, on a unix: address
    /// they share one. --max-clients counts all of them; --workers is per
    /// loop.
    #[arg(short = 't', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..=1024))]
    threads: u16,
    /// Serve TLS with this PEM certificate chain (server certificate
    /// first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a TLS client may take to finish its handshake.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_handshake_timeout)]
    tls_handshake_timeout: Duration,
}

/// `--tls-handshake-timeout`: from 1 ms to a day.
fn parse_handshake_timeout(s: &str) -> Result<Duration, String> {
    let d = super::parse_duration_up_to(s, Duration::from_secs(86_400))?;
    if d < Duration::from_millis(1) {
        return Err(format!("must be at least 1ms, got {s}"));
    }
    Ok(d)
}

/// `BYTES:DURATION` (`262144:10s`, `262144:10`), both more than 0.
fn parse_soft_limit(s: &str) -> Result<(usize, Duration), String> {
    let usage = || format!("expected BYTES:DURATION (for example 262144:10s), got {s:?}");
    let (bytes, period) = s.split_once(':').ok_or_else(usage)?;
    let bytes: usize = bytes.parse().map_err(|_| usage())?;
    let period = super::parse_duration(period).map_err(|e| format!("{e} (in {s:?})"))?;
    if bytes == 0 || period.is_zero() {
        return Err(usage());
    }
    Ok((bytes, period))
}

/// `--bind`: `unix:PATH`, `unix:@NAME`, an address, or a host name (the
/// first address it resolves to).
fn parse_bind(s: &str) -> Result<Addr, String> {
    if let Some(unix) = Addr::parse_unix(s) {
        return unix;
    }
    super::resolve(s).map(|addrs| Addr::Tcp(addrs[0]))
}

fn parse_max_clients(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be from 1 to 10000000 (0 would refuse every client), got '{s}'"
        )),
    }
}

/// Bytes written as escaped text on the command line.
#[derive(Clone, Debug)]
struct Escaped(Vec<u8>);

/// `--max-clients-reply`: escaped text.
fn parse_reply_text(s: &str) -> Result<Escaped, String> {
    crate::bench::protocol::unescape(s).map(Escaped)
}

/// `--shutdown-grace`: up to a day.
fn parse_grace(s: &str) -> Result<Duration, String> {
    super::parse_duration_up_to(s, Duration::from_secs(86_400))
}

/// `--idle-timeout` and `--write-timeout`: 0 (off), or from 1 ms to a year.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = super::parse_duration_up_to(s, Duration::from_secs(31_536_000))?;
    at_least_or_off(d, Duration::from_millis(1), s)
}

/// `--stats`: 0 (off) or at least 10 ms.
fn parse_period(s: &str) -> Result<Duration, String> {
    at_least_or_off(super::parse_duration(s)?, Duration::from_millis(10), s)
}

/// `d`, unless it is neither 0 (off) nor at least `min`.
fn at_least_or_off(d: Duration, min: Duration, s: &str) -> Result<Duration, String> {
    if !d.is_zero() && d < min {
        return Err(format!(
            "must be 0 (off) or at least {}, got {s}",
            super::duration::describe(min)
        ));
    }
    Ok(d)
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
    config.max_clients_reply = args.max_clients_reply.map(|r| r.0);
    config.shutdown_grace = args.shutdown_grace;
    config.idle_timeout = (!args.idle_timeout.is_zero()).then_some(args.idle_timeout);
    config.max_output = args.max_output;
    // Room for one over-long line plus a read, so chat and hash see it and
    // apply their own rule.
    config.max_input = args.max_line.saturating_add(64 * 1024);
    config.workers = args.workers.into();
    config.stall_threshold = (args.stall_ms > 0).then(|| Duration::from_millis(args.stall_ms));
    config.max_output_soft = args.max_output_soft;
    config.write_timeout = (!args.write_timeout.is_zero()).then_some(args.write_timeout);
    config.stats_interval = (!args.stats.is_zero()).then_some(args.stats);
    config.tls_handshake_timeout = args.tls_handshake_timeout;
    if let Err(e) = config.validate() {
        return super::usage_error(&e.to_string());
    }
    // Read before binding: a bad file is a usage mistake, said at once.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::tls::server_config(cert, key, &[]) {
            Ok(tls) => Some(tls),
            Err(e) => return super::usage_error(&e),
        },
        _ => None,
    };
    let loops = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let listening = match loops {
        1 => Listener::bind(&args.bind).map(Listening::One),
        n => Threads::bind(&args.bind, n).map(|t| match &tls {
            Some(tls) => Listening::Group(t.tls(Arc::clone(tls))),
            None => Listening::Group(t),
        }),
    };
    let listening = match listening {
        Ok(l) => l,
        Err(e) => {
            eprintln!("iomux: cannot listen on {}: {e}", args.bind);
            return 1;
        }
    };
    let server = Server {
        backend,
        config,
        listening,
        tls,
    };
    let (max_line, offload_above, print) = (args.max_line, args.offload_above, !args.quiet);
    let reply = args.reply.as_bytes();
    match args.app {
        AppName::Ack => server.run(|_| Ack::new(reply, print)),
        AppName::Echo => server.run(|_| Echo),
        AppName::Chat => server.run(|_| Chat::new(max_line)),
        AppName::Hash => server.run(|_| Hash::new(max_line, offload_above)),
    }
}

/// Prints the start-up line.
fn print_listening(
    local: impl std::fmt::Display,
    backend: &str,
    app: &str,
    loops: usize,
    tls: bool,
) {
    let mut out = std::io::stdout().lock();
    let loops = if loops > 1 {
        format!(", {loops} loops")
    } else {
        String::new()
    };
    let tls = if tls { ", TLS" } else { "" };
    let _ = writeln!(
        out,
        "iomux: listening on {local} (backend {backend}, app {app}{loops}{tls})"
    );
    let _ = out.flush();
}

/// `1 client`, `2 clients`.
fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Prints the shutdown summary; returns exit code 0.
fn print_summary(stats: &Stats) -> i32 {
    // Not println!: a closed stdout must not turn a clean stop into a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "iomux: shutdown, {} served, {} in, {} out",
        count(stats.accepted, "client"),
        count(stats.bytes_in, "byte"),
        count(stats.bytes_out, "byte")
    );
    let _ = out.flush();
    0
}

/// Where the server listens: one loop, or a group of loops.
enum Listening {
    One(Listener),
    Group(Threads),
}

/// What every app is served with.
struct Server {
    backend: Backend,
    config: Config,
    listening: Listening,
    /// Every listener's TLS, when serving TLS.
    tls: Option<Arc<iomux::rustls::ServerConfig>>,
}

impl Server {
    /// Runs the app `make_app` builds (once per loop) until a signal stops
    /// the loops; returns the exit code.
    fn run<A: App, F: Fn(usize) -> A + Sync>(self, make_app: F) -> i32 {
        let Server {
            backend,
            config,
            listening,
            tls,
        } = self;
        let threads = match listening {
            Listening::One(listener) => {
                return run_one(backend, config, listener, tls, make_app(0));
            }
            Listening::Group(threads) => threads,
        };
        let threads = match threads.stop_on_signals(&[iomux::SIGINT, iomux::SIGTERM]) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("iomux: cannot start: {e}");
                return 1;
            }
        };
        let (local, loops) = (threads.local_addr().clone(), threads.loops());
        let app_name = make_app(0).name();
        let is_tls = tls.is_some();
        let ready = |backend: &str| print_listening(local, backend, app_name, loops, is_tls);
        match threads.run(backend, config, make_app, ready) {
            Ok(stats) => print_summary(&stats.total()),
            Err(e) => {
                eprintln!("iomux: cannot run the {backend} event loops: {e}");
                1
            }
        }
    }
}

/// One loop on this thread.
fn run_one<A: App>(
    backend: Backend,
    config: Config,
    listener: Listener,
    tls: Option<Arc<iomux::rustls::ServerConfig>>,
    mut app: A,
) -> i32 {
    let is_tls = tls.is_some();
    let setup = || -> std::io::Result<(EventLoop<A::State>, Addr)> {
        let local = listener.local_addr()?;
        let mut lp = EventLoop::new(backend, config)?;
        match tls {
            Some(tls) => lp.listen_tls(listener, tls)?,
            None => lp.listen(listener)?,
        }
        lp.stop_on_signals(&[iomux::SIGINT, iomux::SIGTERM])?;
        Ok((lp, local))
    };
    let (mut lp, local) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("iomux: cannot start the {backend} event loop: {e}");
            return 1;
        }
    };
    print_listening(local, lp.backend_name(), app.name(), 1, is_tls);
    if let Err(e) = lp.run(&mut app) {
        eprintln!("iomux: event loop failed: {e}");
        return 1;
    }
    print_summary(&lp.stats())
}

#[cfg(test)]
mod tests {
    use super::parse_soft_limit;
    use std::time::Duration;

    #[test]
    fn soft_limit_is_bytes_colon_a_duration() {
        assert_eq!(
            parse_soft_limit("262144:10"),
            Ok((262_144, Duration::from_secs(10)))
        );
        assert_eq!(
            parse_soft_limit("1000:0.5"),
            Ok((1000, Duration::from_millis(500)))
        );
        assert_eq!(
            parse_soft_limit("1000:250ms"),
            Ok((1000, Duration::from_millis(250)))
        );
        for bad in [
            "", "10", "x:1", "10:x", "0:1", "10:0", "10:-1", "10:1e9", "10:3x",
        ] {
            assert!(parse_soft_limit(bad).is_err(), "{bad:?} accepted");
        }
    }
}
