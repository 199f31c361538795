//! A TCP→TCP proxy on iomux: accept a client, connect to the upstream
//! without blocking the loop, copy both ways with back-pressure on both
//! sides, and pass a half-close through.
//!
//! ```sh
//! cargo run --release -- serve --app echo --bind 127.0.0.1:9000 &
//! cargo run --release --example proxy 127.0.0.1:8000 127.0.0.1:9000
//! echo hello | nc -q1 127.0.0.1 8000
//! ```
//!
//! Back-pressure is the app contract's: when one side's output is full
//! ([`Ctx::output_full`]), the proxy stops consuming the other side's
//! input and pauses reading it; `on_drain` resumes it. So a slow reader on
//! either side slows the other down, and the proxy holds about a
//! high-water mark of data per direction, never the whole stream.

use std::net::SocketAddr;

use iomux::net::Listener;
use iomux::{App, Backend, CloseReason, Config, ConnId, Ctx, EventLoop, Origin, SIGINT, SIGTERM};

#[path = "common/logger.rs"]
mod logger;

/// Each side knows the other.
#[derive(Default)]
pub struct Side {
    /// The connection on the other side: the client's upstream from the
    /// moment it is asked for, the upstream's client once it is up.
    pub other: Option<ConnId>,
}

/// The proxy: where to connect.
pub struct Proxy {
    upstream: SocketAddr,
}

impl Proxy {
    pub fn new(upstream: SocketAddr) -> Proxy {
        Proxy { upstream }
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
            side.other = by;
            match by {
                Some(client) => ctx.resume_reading(client),
                None => ctx.close(conn),
            }
            return;
        }
        match ctx.connect(self.upstream) {
            Ok(up) => {
                side.other = Some(up);
                // Nothing is read from the client until the upstream is up:
                // its bytes would have nowhere to go.
                ctx.pause_reading(conn);
            }
            Err(e) => ctx.close_because(conn, format!("cannot connect upstream: {e}")),
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side, input: &[u8]) -> usize {
        let Some(other) = side.other else {
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
        if let Some(other) = side.other {
            ctx.resume_reading(other);
        }
    }

    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side) {
        // A half-close passes through: the other side sees end of stream
        // once it has everything, and may still answer.
        if let Some(other) = side.other {
            ctx.keep_open(conn);
            ctx.shutdown_after_flush(other);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: Side, why: &CloseReason) {
        match (side.other, ctx.origin(conn)) {
            // Either side closed: the other follows once it has written
            // what it holds (an upstream still connecting closes at once).
            (Some(other), _) => ctx.close_after_flush(other),
            // An upstream that never came up (refused, timed out).
            (None, Some(Origin::Connected { by: Some(client) })) => {
                let why = why.describe().unwrap_or_else(|| "closed".into());
                ctx.close_because(client, format!("upstream connect failed: {why}"));
            }
            (None, _) => {}
        }
    }
}

#[allow(dead_code)] // the tests include this file for `Proxy`, not `main`
fn main() -> std::io::Result<()> {
    logger::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [listen, upstream] => listen.parse().ok().zip(upstream.parse().ok()),
        _ => None,
    };
    let Some((listen, upstream)): Option<(SocketAddr, SocketAddr)> = parsed else {
        eprintln!(
            "usage: proxy LISTEN_ADDR UPSTREAM_ADDR   (backend from $IOMUX_BACKEND, log level from $RUST_LOG)"
        );
        std::process::exit(2);
    };
    let backend = Backend::from_env().map_err(std::io::Error::other)?;
    let mut lp = EventLoop::new(backend, Config::default())?;
    lp.listen(Listener::bind(&listen.into())?)?;
    lp.stop_on_signals(&[SIGINT, SIGTERM])?;
    println!(
        "proxy: {listen} -> {upstream} (backend {})",
        lp.backend_name()
    );
    lp.run(&mut Proxy::new(upstream))
}
