//! A Redis-protocol (RESP2) server on iomux: PING, ECHO, SET, GET, INCR,
//! DEL, EXISTS, DBSIZE, FLUSHALL, CONFIG GET, in multi-bulk or inline
//! form; enough for `redis-cli` and `redis-benchmark -t ping,set,get,incr`.
//!
//! ```sh
//! cargo run --release --example resp              # 127.0.0.1:6379
//! redis-cli -p 6379 set greeting hello
//! redis-benchmark -p 6379 -t ping,set,get,incr -n 100000 -P 16 -q
//! ```
//!
//! Flow control as a protocol needs it: the command loop stops between
//! commands when the connection's output is full, and the loop offers the
//! rest again once the client has read enough, so `-P 1000` pipelines with
//! large values never cut a client off. A command larger than the loop's
//! `max_input` gets `-ERR` (from [`App::on_limit`]) before the close,
//! rather than a reset.

use std::collections::HashMap;

use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Limit, SIGINT, SIGTERM};

#[path = "../common/logger.rs"]
mod logger;

mod parse;

pub use parse::{Parsed, parse};

/// The store and the reply writer, shared by all connections.
#[derive(Default)]
pub struct Resp {
    store: HashMap<Vec<u8>, Vec<u8>>,
    out: Vec<u8>,
}

impl Resp {
    fn bulk(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => {
                self.out
                    .extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
                self.out.extend_from_slice(v);
                self.out.extend_from_slice(b"\r\n");
            }
            None => self.out.extend_from_slice(b"$-1\r\n"),
        }
    }

    fn integer(&mut self, n: i64) {
        self.out.extend_from_slice(format!(":{n}\r\n").as_bytes());
    }

    fn error(&mut self, message: &str) {
        self.out
            .extend_from_slice(format!("-ERR {message}\r\n").as_bytes());
    }

    /// Runs one command, appending its reply to `self.out`.
    fn execute(&mut self, args: &[Vec<u8>]) {
        let Some(name) = args.first() else {
            return; // an empty inline line: Redis answers nothing
        };
        let name = name.to_ascii_uppercase();
        match (name.as_slice(), args.len()) {
            (b"PING", 1) => self.out.extend_from_slice(b"+PONG\r\n"),
            (b"PING" | b"ECHO", 2) => self.bulk(Some(&args[1])),
            (b"SET", 3) => {
                self.store.insert(args[1].clone(), args[2].clone());
                self.out.extend_from_slice(b"+OK\r\n");
            }
            (b"GET", 2) => {
                let value = self.store.get(&args[1]).cloned();
                self.bulk(value.as_deref());
            }
            (b"INCR", 2) => {
                let current = self.store.get(&args[1]).map(|v| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                });
                match current.unwrap_or(Some(0)).and_then(|n| n.checked_add(1)) {
                    Some(n) => {
                        self.store
                            .insert(args[1].clone(), n.to_string().into_bytes());
                        self.integer(n);
                    }
                    None => self.error("value is not an integer or out of range"),
                }
            }
            (b"DEL", n) if n > 1 => {
                let removed = args[1..]
                    .iter()
                    .filter(|k| self.store.remove(*k).is_some())
                    .count();
                self.integer(removed as i64);
            }
            (b"EXISTS", n) if n > 1 => {
                let found = args[1..]
                    .iter()
                    .filter(|k| self.store.contains_key(*k))
                    .count();
                self.integer(found as i64);
            }
            (b"DBSIZE", 1) => self.integer(self.store.len() as i64),
            (b"FLUSHALL", 1) => {
                self.store.clear();
                self.out.extend_from_slice(b"+OK\r\n");
            }
            // redis-benchmark asks for these at start; an empty answer is fine.
            (b"CONFIG", 3) => self.out.extend_from_slice(b"*0\r\n"),
            (
                b"PING" | b"ECHO" | b"SET" | b"GET" | b"INCR" | b"DEL" | b"EXISTS" | b"DBSIZE"
                | b"FLUSHALL" | b"CONFIG",
                _,
            ) => {
                let message = format!(
                    "wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(&name).to_lowercase()
                );
                self.error(&message)
            }
            _ => {
                let message = format!(
                    "unknown command '{}'",
                    String::from_utf8_lossy(&name[..name.len().min(64)])
                );
                self.error(&message)
            }
        }
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
                    self.execute(&args);
                    let _ = ctx.send(conn, &self.out);
                    ctx.record_request();
                    used += len;
                }
                Parsed::Error(message) => {
                    self.out.clear();
                    self.error(&message);
                    let _ = ctx.send(conn, &self.out);
                    ctx.close_after_flush(conn);
                    return input.len();
                }
            }
        }
        used
    }

    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        if let Limit::Input { max } = limit {
            self.out.clear();
            self.error(&format!("Protocol error: command larger than {max} bytes"));
            let _ = ctx.send(conn, &self.out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_answer_like_redis() {
        let mut r = Resp::default();
        let run = |r: &mut Resp, words: &[&str]| {
            r.out.clear();
            r.execute(
                &words
                    .iter()
                    .map(|w| w.as_bytes().to_vec())
                    .collect::<Vec<_>>(),
            );
            String::from_utf8(r.out.clone()).unwrap()
        };
        assert_eq!(run(&mut r, &["ping"]), "+PONG\r\n");
        assert_eq!(run(&mut r, &["GET", "n"]), "$-1\r\n");
        assert_eq!(run(&mut r, &["INCR", "n"]), ":1\r\n");
        assert_eq!(run(&mut r, &["INCR", "n"]), ":2\r\n");
        assert_eq!(run(&mut r, &["SET", "s", "abc"]), "+OK\r\n");
        assert!(run(&mut r, &["INCR", "s"]).starts_with("-ERR value is not an integer"));
        assert_eq!(run(&mut r, &["GET", "s"]), "$3\r\nabc\r\n");
        assert_eq!(run(&mut r, &["DEL", "s", "n", "x"]), ":2\r\n");
        assert!(run(&mut r, &["GET"]).starts_with("-ERR wrong number"));
        assert!(run(&mut r, &["NOPE"]).starts_with("-ERR unknown command"));
    }
}
