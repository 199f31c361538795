//! An HTTP/1.1 keep-alive server on iomux, in two pages: pipelining,
//! `Content-Length` bodies, `Connection: close`, HTTP/1.0, `Date` and
//! `Content-Type` on every response, and the errors a real server owes
//! (400, 404, 405 with `Allow`, 413, 431, 501, 505). The request parser,
//! and what it accepts, is in `parse.rs`.
//!
//! ```sh
//! cargo run --release --example http              # 127.0.0.1:8080
//! IOMUX_BACKEND=poll cargo run --example http 127.0.0.1:9000
//! curl -i http://127.0.0.1:8080/
//! wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//! ```
//!
//! Given a PEM certificate chain and its key it serves HTTPS instead (TLS
//! 1.2 and 1.3, ALPN `http/1.1`):
//!
//! ```sh
//! cargo run --release --example http 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem
//! curl --cacert cert.pem https://localhost:8443/
//! wrk -t1 -c50 -d5s https://127.0.0.1:8443/
//! h2load --h1 -n 10000 -c 50 https://127.0.0.1:8443/
//! ```
//!
//! Routes: `GET /` (and `HEAD /`) says hello; `GET /bytes/N` answers N bytes (at most
//! 16 MiB); `POST /echo` answers its body. The request loop stops between
//! requests when the connection's output is full ([`Ctx::output_full`]):
//! the loop offers the rest again once the client has read enough, so a
//! client pipelining thousands of requests gets every reply and the
//! server's memory stays bounded.

use std::path::Path;
use std::sync::Arc;

use iomux::rustls::pki_types::pem::PemObject;
use iomux::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use iomux::rustls::{self, ServerConfig};
use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Limit, SIGINT, SIGTERM};

#[path = "../common/logger.rs"]
mod logger;

mod parse;

pub use parse::{MAX_BODY, MAX_HEAD, Parsed, Request, parse};

/// Largest `/bytes/N`.
pub const MAX_BYTES: usize = 16 << 20;

/// The app: no state per connection, a header buffer reused for all.
#[derive(Default)]
pub struct Http {
    reply: Vec<u8>,
    date: Date,
}

/// The `Date` field's value, made again only when the second changes.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.text.is_empty() || now != self.second {
            self.second = now;
            self.text = http_date(now);
        }
        &self.text
    }
}

/// An IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), years from 0 March.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A response's content type.
const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

/// What a response says besides its status and body.
struct Head<'a> {
    content_type: &'a str,
    keep_alive: bool,
    /// For 405: the methods the resource has.
    allow: Option<&'a str>,
}

impl Http {
    /// Sends a status line and fields for a body of `len` bytes.
    fn head(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        status: u16,
        reason: &str,
        len: usize,
        head: &Head<'_>,
    ) {
        use std::io::Write;
        self.reply.clear();
        let connection = if head.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let date = self.date.now();
        let _ = write!(
            self.reply,
            "HTTP/1.1 {status} {reason}\r\nDate: {date}\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n",
            head.content_type
        );
        if let Some(methods) = head.allow {
            let _ = write!(self.reply, "Allow: {methods}\r\n");
        }
        self.reply.extend_from_slice(b"\r\n");
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
        head: &Head<'_>,
    ) {
        self.head(ctx, conn, status, reason, body.len(), head);
        let _ = ctx.send(conn, body);
        Self::done(ctx, conn, head.keep_alive);
    }

    /// A text response of the status's reason phrase.
    fn refuse(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        status: u16,
        reason: &str,
        head: &Head<'_>,
    ) {
        let body = format!("{reason}\n");
        self.respond(ctx, conn, status, reason, body.as_bytes(), head);
    }

    /// `n` bytes of `x`, sent from one static chunk (no allocation).
    fn respond_bytes(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, n: usize, keep_alive: bool) {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        let head = Head {
            content_type: OCTETS,
            keep_alive,
            allow: None,
        };
        self.head(ctx, conn, 200, "OK", n, &head);
        let mut left = n;
        while left > 0 {
            let take = left.min(CHUNK.len());
            let _ = ctx.send(conn, &CHUNK[..take]);
            left -= take;
        }
        Self::done(ctx, conn, keep_alive);
    }

    fn route(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: &Request<'_>) {
        let keep_alive = req.keep_alive;
        let text = Head {
            content_type: TEXT,
            keep_alive,
            allow: None,
        };
        match (req.method, req.target) {
            ("HEAD", "/") => {
                // The length a GET would have, and no body.
                self.head(ctx, conn, 200, "OK", HELLO.len(), &text);
                Self::done(ctx, conn, keep_alive);
            }
            ("GET", "/") => self.respond(ctx, conn, 200, "OK", HELLO, &text),
            ("GET", t) if t.starts_with("/bytes/") => match t["/bytes/".len()..].parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => self.respond_bytes(ctx, conn, n, keep_alive),
                _ => self.respond(ctx, conn, 400, "Bad Request", b"bad size\n", &text),
            },
            ("POST", "/echo") => {
                let octets = Head {
                    content_type: OCTETS,
                    keep_alive,
                    allow: None,
                };
                self.respond(ctx, conn, 200, "OK", req.body, &octets)
            }
            (_, target @ ("/" | "/echo")) => {
                let allow = if target == "/" { "GET, HEAD" } else { "POST" };
                let head = Head {
                    allow: Some(allow),
                    ..text
                };
                self.refuse(ctx, conn, 405, "Method Not Allowed", &head)
            }
            _ => self.respond(ctx, conn, 404, "Not Found", b"not found\n", &text),
        }
    }
}

/// The body of `GET /`.
const HELLO: &[u8] = b"Hello from iomux\n";

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
                    let close = Head {
                        content_type: TEXT,
                        keep_alive: false,
                        allow: None,
                    };
                    self.refuse(ctx, conn, status, reason, &close);
                    return input.len();
                }
            }
        }
        used
    }

    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        if let Limit::Input { .. } = limit {
            let close = Head {
                content_type: TEXT,
                keep_alive: false,
                allow: None,
            };
            self.refuse(ctx, conn, 413, "Content Too Large", &close);
        }
    }
}

/// The loop's config for this server: room for a whole head and body.
pub fn config() -> Config {
    let mut config = Config::default();
    config.max_input = MAX_HEAD + MAX_BODY + 4;
    config
}

/// The TLS config of an HTTPS server: the PEM certificate chain in `cert`
/// (the server's first), its PEM private key in `key`, ALPN `http/1.1`.
///
/// # Errors
/// Which file could not be read or used, and why.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    use rustls::pki_types::pem::Error;
    let said = |path: &Path, e: Error| match e {
        Error::Io(e) => format!("{}: {e}", path.display()),
        Error::NoItemsFound => format!("{}: no PEM item of the kind expected", path.display()),
        e => format!("{}: not valid PEM ({e:?})", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| said(cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| said(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

const USAGE: &str = "usage: http [ADDR] [--tls-cert FILE --tls-key FILE]   \
                     (backend from $IOMUX_BACKEND, log level from $RUST_LOG)";

#[allow(dead_code)] // the tests include this file for `Http`, not `main`
fn main() -> std::io::Result<()> {
    logger::install();
    let usage = |why: &str| -> ! {
        eprintln!("http: {why}\n{USAGE}");
        std::process::exit(2);
    };
    let (mut addr, mut cert, mut key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-cert" => {
                cert = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--tls-cert needs a FILE")),
                )
            }
            "--tls-key" => {
                key = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--tls-key needs a FILE")),
                )
            }
            _ if addr.is_none() => match arg.parse() {
                Ok(a) => addr = Some(a),
                Err(_) => usage(&format!("not an address: {arg}")),
            },
            _ => usage(&format!("unexpected {arg}")),
        }
    }
    let addr: std::net::SocketAddr = addr.unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => match tls_config(Path::new(&cert), Path::new(&key)) {
            Ok(tls) => Some(tls),
            Err(e) => usage(&e),
        },
        (None, None) => None,
        _ => usage("--tls-cert and --tls-key go together"),
    };
    let backend = Backend::from_env().map_err(std::io::Error::other)?;
    let mut lp = EventLoop::new(backend, config())?;
    let listener = iomux::net::tcp_listener(addr)?;
    let https = if tls.is_some() { ", HTTPS" } else { "" };
    match tls {
        Some(tls) => lp.listen_tls(listener, tls)?,
        None => lp.listen(listener)?,
    }
    lp.stop_on_signals(&[SIGINT, SIGTERM])?;
    println!(
        "http: listening on {addr} (backend {}{https})",
        lp.backend_name()
    );
    lp.run(&mut Http::default())
}

#[cfg(test)]
mod tests {
    use super::http_date;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }
}
