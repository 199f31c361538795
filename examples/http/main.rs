//! An HTTP/1.1 keep-alive server on iomux, in two pages: pipelining,
//! `Content-Length` bodies, `Connection: close`, HTTP/1.0, and the errors a
//! real server owes (400, 404, 405, 413, 431, 501).
//!
//! ```sh
//! cargo run --release --example http              # 127.0.0.1:8080
//! IOMUX_BACKEND=poll cargo run --example http 127.0.0.1:9000
//! curl -i http://127.0.0.1:8080/
//! wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//! ```
//!
//! Routes: `GET /` says hello; `GET /bytes/N` answers N bytes (at most
//! 16 MiB); `POST /echo` answers its body. The request loop stops between
//! requests when the connection's output is full ([`Ctx::output_full`]):
//! the loop offers the rest again once the client has read enough, so a
//! client pipelining thousands of requests gets every reply and the
//! server's memory stays bounded.

use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Limit, SIGINT, SIGTERM};

/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Largest `/bytes/N`.
pub const MAX_BYTES: usize = 16 << 20;

/// The app: no state per connection, a header buffer reused for all.
#[derive(Default)]
pub struct Http {
    reply: Vec<u8>,
}

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// Keep the connection open after the response.
    pub keep_alive: bool,
    pub body: &'a [u8],
}

/// What the front of the input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request of `len` bytes.
    Request(Request<'a>, usize),
    /// Not a whole request yet.
    Partial,
    /// A request the server refuses: status and reason; the connection
    /// closes after the response.
    Error(u16, &'static str),
}

/// Parses one request off the front of `input`.
pub fn parse(input: &[u8]) -> Parsed<'_> {
    let Some(head_len) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if input.len() > MAX_HEAD {
            Parsed::Error(431, "Request Header Fields Too Large")
        } else {
            Parsed::Partial
        };
    };
    if head_len > MAX_HEAD {
        return Parsed::Error(431, "Request Header Fields Too Large");
    }
    let Ok(head) = std::str::from_utf8(&input[..head_len]) else {
        return Parsed::Error(400, "Bad Request");
    };
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Error(400, "Bad Request");
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Parsed::Error(400, "Bad Request"),
    };
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Error(400, "Bad Request");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_BODY => length = n,
                Ok(_) => return Parsed::Error(413, "Content Too Large"),
                Err(_) => return Parsed::Error(400, "Bad Request"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Error(501, "Not Implemented");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = if value.eq_ignore_ascii_case("close") {
                false
            } else if value.eq_ignore_ascii_case("keep-alive") {
                true
            } else {
                keep_alive
            };
        }
    }
    let start = head_len + 4;
    let Some(body) = input.get(start..start + length) else {
        return Parsed::Partial;
    };
    let request = Request {
        method,
        target,
        keep_alive,
        body,
    };
    Parsed::Request(request, start + length)
}

impl Http {
    /// Sends a status line and headers for a body of `len` bytes.
    fn head(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        status: u16,
        reason: &str,
        len: usize,
        keep_alive: bool,
    ) {
        use std::io::Write;
        self.reply.clear();
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(
            self.reply,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
        );
        let _ = ctx.send(conn, &self.reply);
    }

    /// Ends a response: counted, and the connection closes after it unless
    /// kept alive.
    fn done(ctx: &mut Ctx<'_>, conn: ConnId, keep_alive: bool) {
        ctx.record_request();
        if !keep_alive {
            ctx.close_after_flush(conn);
        }
    }

    fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        status: u16,
        reason: &str,
        body: &[u8],
        keep_alive: bool,
    ) {
        self.head(ctx, conn, status, reason, body.len(), keep_alive);
        let _ = ctx.send(conn, body);
        Self::done(ctx, conn, keep_alive);
    }

    /// `n` bytes of `x`, sent from one static chunk (no allocation).
    fn respond_bytes(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, n: usize, keep_alive: bool) {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        self.head(ctx, conn, 200, "OK", n, keep_alive);
        let mut left = n;
        while left > 0 {
            let take = left.min(CHUNK.len());
            let _ = ctx.send(conn, &CHUNK[..take]);
            left -= take;
        }
        Self::done(ctx, conn, keep_alive);
    }

    fn route(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: &Request<'_>) {
        let keep = req.keep_alive;
        match (req.method, req.target) {
            ("GET", "/") => self.respond(ctx, conn, 200, "OK", b"Hello from iomux\n", keep),
            ("GET", t) if t.starts_with("/bytes/") => match t["/bytes/".len()..].parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => self.respond_bytes(ctx, conn, n, keep),
                _ => self.respond(ctx, conn, 400, "Bad Request", b"bad size\n", keep),
            },
            ("POST", "/echo") => self.respond(ctx, conn, 200, "OK", req.body, keep),
            (_, "/" | "/echo") => self.respond(ctx, conn, 405, "Method Not Allowed", b"", keep),
            _ => self.respond(ctx, conn, 404, "Not Found", b"not found\n", keep),
        }
    }
}

impl App for Http {
    type State = ();

    fn name(&self) -> &'static str {
        "http"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        // Between requests, stop when the client has not read enough yet.
        while used < input.len() && !ctx.output_full(conn) {
            match parse(&input[used..]) {
                Parsed::Partial => break,
                Parsed::Request(req, len) => {
                    self.route(ctx, conn, &req);
                    used += len;
                    if !req.keep_alive {
                        return input.len(); // nothing after it is read
                    }
                }
                Parsed::Error(status, reason) => {
                    self.respond(ctx, conn, status, reason, b"", false);
                    return input.len();
                }
            }
        }
        used
    }

    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        if let Limit::Input { .. } = limit {
            self.respond(ctx, conn, 413, "Content Too Large", b"", false);
        }
    }
}

/// The loop's config for this server: room for a whole head and body.
pub fn config() -> Config {
    let mut config = Config::default();
    config.max_input = MAX_HEAD + MAX_BODY + 4;
    config
}

#[allow(dead_code)] // the tests include this file for `Http`, not `main`
fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let Ok(addr) = addr.parse() else {
        eprintln!("usage: http [ADDR]   (backend from $IOMUX_BACKEND)");
        std::process::exit(2);
    };
    let backend = Backend::from_env().map_err(std::io::Error::other)?;
    let mut lp = EventLoop::new(backend, config())?;
    lp.listen(iomux::net::tcp_listener(addr)?)?;
    lp.stop_on_signals(&[SIGINT, SIGTERM])?;
    println!("http: listening on {addr} (backend {})", lp.backend_name());
    lp.run(&mut Http::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_requests_one_at_a_time() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET";
        let Parsed::Request(first, n) = parse(input) else {
            panic!("{:?}", parse(input))
        };
        assert_eq!(
            (first.method, first.target, first.keep_alive),
            ("GET", "/", true)
        );
        let Parsed::Request(second, m) = parse(&input[n..]) else {
            panic!()
        };
        assert_eq!(second.body, b"abc");
        assert_eq!(parse(&input[n + m..]), Parsed::Partial);
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(parse(b"GET /\r\n\r\n"), Parsed::Error(400, "Bad Request"));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(big.as_bytes()), Parsed::Error(431, _)));
        assert!(matches!(
            parse(&vec![b'a'; MAX_HEAD + 1]),
            Parsed::Error(431, _)
        ));
        let huge = format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse(huge.as_bytes()), Parsed::Error(413, _)));
        let chunked = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(chunked), Parsed::Error(501, _)));
        let Parsed::Request(old, _) = parse(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!old.keep_alive, "HTTP/1.0 closes unless asked");
        let Parsed::Request(close, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!close.keep_alive);
    }
}
