//! A Redis-protocol (RESP2) server on iomux: PING, ECHO, SET (with `EX`,
//! `PX`, `EXAT`, `PXAT`, `NX`, `XX`, `GET`, `KEEPTTL`), GET, INCR, DEL,
//! EXISTS, TTL, PTTL, EXPIRE, PEXPIRE, PERSIST, DBSIZE, FLUSHALL and
//! CONFIG GET, in multi-bulk or inline form, with Redis's replies and
//! errors; enough for `redis-cli` and `redis-benchmark -t ping,set,get,incr`.
//!
//! ```sh
//! cargo run --release --example resp              # 127.0.0.1:6379
//! redis-cli -p 6379 set greeting hello EX 60
//! redis-benchmark -p 6379 -t ping,set,get,incr -n 100000 -P 16 -q
//! ```
//!
//! Flow control as a protocol needs it: the command loop stops between
//! commands when the connection's output is full, and the loop offers the
//! rest again once the client has read enough, so `-P 1000` pipelines with
//! large values never cut a client off. A command larger than the loop's
//! `max_input` gets `-ERR` (from [`App::on_limit`]) before the close,
//! rather than a reset.
//!
//! Keys with a deadline expire as in Redis: no command sees one past its
//! deadline (it is removed when looked up), and a loop timer, armed for
//! the earliest deadline only while some key has one, removes those
//! nobody asks for. The files: `parse.rs` reads commands, `commands.rs`
//! runs them, `store.rs` keeps the keys and their deadlines, `reply.rs`
//! writes the answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Limit, SIGINT, SIGTERM, TimerId};

#[path = "../common/logger.rs"]
mod logger;

mod commands;
mod parse;
mod reply;
mod store;

pub use parse::{Parsed, parse};

/// The store, the reply writer and the expiry timer, shared by all
/// connections.
#[derive(Default)]
pub struct Resp {
    store: store::Store,
    out: reply::Reply,
    sweep: Sweep,
}

/// The active expiry's timer: armed for the earliest deadline while some
/// key has one, so an idle server with no such key sets no timer at all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    #[default]
    Idle,
    /// Due just after the deadline `at` (Unix milliseconds).
    Armed { timer: TimerId, at: i64 },
}

/// Most keys one firing of the expiry timer removes, so that a million
/// keys expiring together do not hold the loop up; the rest go a
/// millisecond later, with clients served in between.
const SWEEP_BUDGET: usize = 1000;

/// Longest the expiry timer is set for: a deadline years away is checked
/// again hourly rather than given a delay the clock cannot represent.
const SWEEP_MAX_DELAY: Duration = Duration::from_secs(3600);

/// The wall clock in Unix milliseconds: the time Redis's deadlines are in
/// (`EXAT` names one), so a deadline follows the clock if it is set.
fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Resp {
    /// Arms the expiry timer for the earliest deadline, unless it is armed
    /// for that one or sooner. A timer armed for a key that went away is
    /// left to fire and find nothing: cheaper than re-arming on every
    /// `DEL`.
    fn schedule_sweep(&mut self, ctx: &mut Ctx<'_>) {
        let Some(next) = self.store.next_deadline() else {
            return;
        };
        if let Sweep::Armed { timer, at } = self.sweep {
            if at <= next {
                return;
            }
            ctx.cancel_timer(timer);
        }
        // A key lives through its deadline's millisecond; at least a
        // millisecond, so keys still due after a full budget never make
        // a timer that is due at once, turn after turn.
        let wait = next.saturating_sub(unix_millis()).saturating_add(1).max(1);
        let delay = Duration::from_millis(wait.unsigned_abs()).min(SWEEP_MAX_DELAY);
        self.sweep = match ctx.set_timer(delay, 0) {
            Some(timer) => Sweep::Armed { timer, at: next },
            None => Sweep::Idle,
        };
    }
}

impl App for Resp {
    type State = ();

    fn name(&self) -> &'static str {
        "resp"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        // Between commands, stop when the client has not read enough yet.
        while used < input.len() && !ctx.output_full(conn) {
            match parse(&input[used..]) {
                Parsed::Partial => break,
                Parsed::Command(args, len) => {
                    self.out.clear();
                    self.execute(&args, unix_millis());
                    let _ = ctx.send(conn, self.out.bytes());
                    ctx.record_request();
                    used += len;
                }
                Parsed::Error(message) => {
                    self.out.clear();
                    self.out.error(&message);
                    let _ = ctx.send(conn, self.out.bytes());
                    ctx.close_after_flush(conn);
                    used = input.len();
                    break;
                }
            }
        }
        self.schedule_sweep(ctx);
        used
    }

    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        if let Limit::Input { max } = limit {
            self.out.clear();
            self.out
                .error(&format!("Protocol error: command larger than {max} bytes"));
            let _ = ctx.send(conn, self.out.bytes());
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: TimerId) {
        if let Sweep::Armed { timer: armed, .. } = self.sweep
            && armed == timer
        {
            self.sweep = Sweep::Idle;
            self.store.expire_due(unix_millis(), SWEEP_BUDGET);
            self.schedule_sweep(ctx);
        }
    }
}

#[allow(dead_code)] // the tests include this file for `Resp`, not `main`
fn main() -> std::io::Result<()> {
    logger::install();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:6379".into());
    let Ok(addr) = addr.parse() else {
        eprintln!("usage: resp [ADDR]   (backend from $IOMUX_BACKEND, log level from $RUST_LOG)");
        std::process::exit(2);
    };
    let backend = Backend::from_env().map_err(std::io::Error::other)?;
    let mut config = Config::default();
    // Values up to 32 MiB, like a modest Redis `proto-max-bulk-len`.
    config.max_input = 32 << 20;
    let mut lp = EventLoop::new(backend, config)?;
    lp.listen(iomux::net::tcp_listener(addr)?)?;
    lp.stop_on_signals(&[SIGINT, SIGTERM])?;
    println!("resp: listening on {addr} (backend {})", lp.backend_name());
    lp.run(&mut Resp::default())
}
