//! A TCP→TCP proxy on iomux: accept a client, connect to the upstream
//! without blocking the loop, copy both ways with back-pressure on both
//! sides, and pass a half-close through.
//!
//! ```sh
//! cargo run --release -- serve --app echo --bind 127.0.0.1:9000 &
//! cargo run --release --example proxy 127.0.0.1:8000 localhost:9000
//! echo hello | nc -q1 127.0.0.1 8000
//! ```
//!
//! Either address may be a host name: it is resolved once, at start-up.
//! A name can stand for several addresses (`localhost` is often `::1`
//! and `127.0.0.1`); each client's upstream connect tries them in order
//! until one answers, as `TcpStream::connect` does. Every failed attempt
//! is logged with the client's address and the cause (see
//! `examples/common/logger.rs` for `RUST_LOG`), and a client none of them
//! answered is closed.
//!
//! Back-pressure is the app contract's: when one side's output is full
//! ([`Ctx::output_full`]), the proxy stops consuming the other side's
//! input and pauses reading it; `on_drain` resumes it. So a slow reader on
//! either side slows the other down, and the proxy holds about a
//! high-water mark of data per direction, never the whole stream.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use iomux::net::Listener;
use iomux::{
    App, Backend, CloseReason, Config, ConnId, Ctx, EventLoop, Origin, SIGINT, SIGTERM, TimerId,
};

#[path = "common/logger.rs"]
mod logger;

/// What a connection is to the proxy. A connection's state is only
/// reachable from its own callbacks, so each side records the other's id
/// and nothing else: the pairing needs no table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// An upstream whose connect is still in progress (or failed): its
    /// client is in its [`Origin`] until it is up.
    #[default]
    Unpaired,
    /// An accepted client and its upstream, from the moment the connect is
    /// asked for (the id of the failed attempt until the next is asked).
    Client { upstream: ConnId },
    /// An upstream that is up, and the client it serves.
    Upstream { client: ConnId },
}

impl Side {
    /// The connection on the other side.
    pub fn other(&self) -> Option<ConnId> {
        match *self {
            Side::Unpaired => None,
            Side::Client { upstream } => Some(upstream),
            Side::Upstream { client } => Some(client),
        }
    }
}

/// The proxy: the upstream's addresses, tried in this order.
pub struct Proxy {
    upstreams: Vec<SocketAddr>,
}

/// Resolves `name` (`host:port`, `[v6]:port` or a literal address) to
/// its addresses, in the resolver's order, each once.
pub fn resolve(name: &str) -> Result<Vec<SocketAddr>, String> {
    let found = name
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {name:?}: {e}"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("{name:?} resolves to no address"));
    }
    Ok(addrs)
}

impl Proxy {
    /// A proxy to `upstreams`, tried in order for each client.
    ///
    /// # Panics
    /// If `upstreams` is empty ([`resolve`] never returns an empty list).
    pub fn new(upstreams: Vec<SocketAddr>) -> Proxy {
        assert!(!upstreams.is_empty(), "a proxy needs an upstream address");
        Proxy { upstreams }
    }

    /// Asks for `client`'s upstream, trying the addresses from the
    /// `first`th on until a connect starts; closes the client when none is
    /// left. Only ever called from the client's own callbacks, so that the
    /// new connection's [`Origin`] names the client.
    fn connect_upstream(&self, ctx: &mut Ctx<'_>, client: ConnId, side: &mut Side, first: usize) {
        for (index, &addr) in self.upstreams.iter().enumerate().skip(first) {
            match ctx.connect(addr) {
                Ok(upstream) => {
                    *side = Side::Client { upstream };
                    return;
                }
                Err(e) => self.failed(ctx, client, index, &e.to_string()),
            }
        }
        ctx.close_because(client, "no upstream address answered");
    }

    /// Logs that the `index`th upstream address failed `client`, and
    /// what happens next.
    fn failed(&self, ctx: &Ctx<'_>, client: ConnId, index: usize, cause: &str) {
        let peer = ctx.peer(client).map_or("?".into(), |p| p.to_string());
        let next = if index + 1 < self.upstreams.len() {
            "trying the next address"
        } else {
            "closing the client"
        };
        log::warn!(
            "client {peer}: upstream {} failed: {cause}; {next}",
            self.upstreams[index]
        );
    }
}

impl App for Proxy {
    type State = Side;

    fn name(&self) -> &'static str {
        "proxy"
    }

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side, origin: Origin) {
        if let Origin::Connected { by } = origin {
            // The upstream of client `by` is up.
            match by {
                Some(client) => {
                    *side = Side::Upstream { client };
                    ctx.resume_reading(client);
                }
                None => ctx.close(conn),
            }
            return;
        }
        // Nothing is read from the client until the upstream is up: its
        // bytes would have nowhere to go.
        ctx.pause_reading(conn);
        self.connect_upstream(ctx, conn, side, 0);
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side, input: &[u8]) -> usize {
        let Some(other) = side.other() else {
            return 0;
        };
        if ctx.output_full(other) {
            ctx.pause_reading(conn); // resumed by `other`'s drain
            return 0;
        }
        if let Err(why) = ctx.send(other, input) {
            ctx.close_because(conn, format!("the other side cannot take more: {why}"));
        }
        input.len()
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, side: &mut Side) {
        if let Some(other) = side.other() {
            ctx.resume_reading(other);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side) {
        // A half-close passes through: the other side sees end of stream
        // once it has everything, and may still answer.
        if let Some(other) = side.other() {
            ctx.keep_open(conn);
            ctx.shutdown_after_flush(other);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: Side, why: &CloseReason) {
        // Either side closed: the other follows once it has written what
        // it holds (an upstream still connecting closes at once; a stale
        // id, of an attempt that failed, is ignored).
        if let Some(other) = side.other() {
            ctx.close_after_flush(other);
            return;
        }
        // An upstream that never came up (refused, unreachable, timed
        // out), for a client still there; not one closed because its
        // client left, or by the shutdown (those have no cause).
        let Some(Origin::Connected { by: Some(client) }) = ctx.origin(conn) else {
            return;
        };
        let (Some(cause), Some(upstream)) = (why.describe(), ctx.peer_addr(conn)) else {
            return;
        };
        if ctx.peer(client).is_none() {
            return;
        }
        let index = self
            .upstreams
            .iter()
            .position(|&a| a == upstream)
            .unwrap_or(self.upstreams.len() - 1);
        self.failed(ctx, client, index, &cause);
        if index + 1 == self.upstreams.len() {
            ctx.close_because(client, format!("upstream connect failed: {cause}"));
            return;
        }
        // The next attempt is asked from the client's own callback (a
        // timer due at once, its tag the address to try), not from here:
        // a connect asked here would name this dead upstream as its origin.
        if ctx
            .set_conn_timer(client, Duration::ZERO, (index + 1) as u64)
            .is_none()
        {
            ctx.close_because(client, "cannot retry the upstream");
        }
    }

    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side, timer: TimerId) {
        // The only connection timer: try the next upstream address.
        let next = usize::try_from(timer.tag()).unwrap_or(usize::MAX);
        self.connect_upstream(ctx, conn, side, next);
    }
}

/// The command line: where to listen and the upstream's addresses, or
/// what is wrong with it.
fn parse_args(args: &[String]) -> Result<(SocketAddr, &str, Vec<SocketAddr>), String> {
    let [listen, upstream] = args else {
        return Err(format!("two addresses expected, got {}", args.len()));
    };
    Ok((resolve(listen)?[0], upstream, resolve(upstream)?))
}

/// `main` for `args` (without the program's name): a usage error exits
/// with status 2; otherwise it serves until SIGINT or SIGTERM. The tests
/// run it in a child process, as a user would.
pub fn main_with(args: &[String]) -> std::io::Result<()> {
    logger::install();
    let (listen, upstream, upstreams) = parse_args(args).unwrap_or_else(|why| {
        eprintln!("proxy: {why}");
        eprintln!(
            "usage: proxy LISTEN_ADDR UPSTREAM_ADDR   (host:port or a literal address; backend from $IOMUX_BACKEND, log level from $RUST_LOG)"
        );
        std::process::exit(2);
    });
    let backend = Backend::from_env().map_err(std::io::Error::other)?;
    let mut lp = EventLoop::new(backend, Config::default())?;
    let listener = Listener::bind(&listen.into())?;
    let bound = listener.local_addr()?;
    lp.listen(listener)?;
    lp.stop_on_signals(&[SIGINT, SIGTERM])?;
    let tried: Vec<String> = upstreams.iter().map(SocketAddr::to_string).collect();
    println!(
        "proxy: {bound} -> {upstream} ({}) (backend {})",
        tried.join(", "),
        lp.backend_name()
    );
    lp.run(&mut Proxy::new(upstreams))
}

#[allow(dead_code)] // the tests include this file for `Proxy`, not `main`
fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    main_with(&args)
}
