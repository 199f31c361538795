//! The HTTP and RESP examples, served by the loop on every backend and
//! driven by this suite's own clients: correctness, errors, and a deep
//! pipelined burst of large replies read slowly (every reply arrives, the
//! connection stays, output stays bounded).

#[macro_use]
mod common;

#[path = "../examples/http/main.rs"]
mod http;
#[path = "../examples/resp/main.rs"]
mod resp;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{LIVENESS, LoopThread};
use iomux::{App, Config, ConnId, Ctx, Limit};

backend_suite! {
    http_requests_and_errors,
    http_connection_close_and_http_1_0,
    http_deep_pipeline_read_slowly,
    resp_commands,
    resp_deep_pipeline_read_slowly,
    resp_over_limit_command_gets_an_error,
}

/// Wraps an app to record the most output ever pending on a connection
/// right after the app handled its input.
struct Watched<A> {
    inner: A,
    max_pending: Arc<AtomicUsize>,
}

impl<A: App> App for Watched<A> {
    type State = A::State;
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        st: &mut A::State,
        input: &[u8],
    ) -> usize {
        let used = self.inner.on_data(ctx, conn, st, input);
        self.max_pending
            .fetch_max(ctx.pending_output(conn), Ordering::SeqCst);
        used
    }
    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: &mut A::State, limit: Limit) {
        self.inner.on_limit(ctx, conn, st, limit)
    }
}

/// Reads until `want` bytes arrived or the peer closed; the bytes and
/// whether it closed cleanly.
fn read_exactly(stream: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    stream.read_exact(&mut got).expect("the whole reply");
    got
}

/// Reads everything until end of stream, failing on a reset.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("end of stream, not a reset");
    got
}

/// A client thread that writes `data` in one go (the server reads it as
/// fast as flow control lets it).
fn write_all_in_background(stream: &TcpStream, data: Vec<u8>) -> thread::JoinHandle<()> {
    let mut writer = stream.try_clone().expect("clone");
    thread::spawn(move || writer.write_all(&data).expect("the pipelined requests"))
}

/// Reads `total` bytes in small pieces with pauses: a client that reads,
/// but slower than the server could write.
fn read_slowly(stream: &mut TcpStream, total: usize) -> Vec<u8> {
    let deadline = Instant::now() + 6 * LIVENESS;
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 16 * 1024];
    let mut reads = 0u64;
    while got.len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} bytes",
            got.len()
        );
        let n = match stream.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other.expect("a reply, not a reset"),
        };
        assert!(n > 0, "closed after {} of {total} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads.is_multiple_of(8) && got.len() < total / 2 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn http_response(status: &str, body: &str, connection: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
}

/// Keep-alive requests on one connection, a body echoed, 404, 405; then a
/// malformed request gets 400 and the connection closes.
fn http_requests_and_errors(backend: &str) {
    let server = LoopThread::start(backend, http::config(), http::Http::default());
    let mut c = server.connect();
    let hello = http_response("200 OK", "Hello from iomux\n", "keep-alive");
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_exactly(&mut c, hello.len()), hello.as_bytes());
    }
    c.write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel")
        .unwrap();
    c.write_all(b"lo").unwrap();
    let echoed = http_response("200 OK", "hello", "keep-alive");
    assert_eq!(read_exactly(&mut c, echoed.len()), echoed.as_bytes());
    c.write_all(b"GET /nope HTTP/1.1\r\n\r\nDELETE / HTTP/1.1\r\n\r\n")
        .unwrap();
    let missing = http_response("404 Not Found", "not found\n", "keep-alive");
    let refused = http_response("405 Method Not Allowed", "", "keep-alive");
    let want = format!("{missing}{refused}");
    assert_eq!(read_exactly(&mut c, want.len()), want.as_bytes());
    c.write_all(b"garbage\r\n\r\n").unwrap();
    let bad = http_response("400 Bad Request", "", "close");
    assert_eq!(read_to_close(&mut c), bad.as_bytes());
    // An over-long head: 431, then close.
    let mut d = server.connect();
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(http::MAX_HEAD));
    d.write_all(head.as_bytes()).unwrap();
    let too_large = http_response("431 Request Header Fields Too Large", "", "close");
    assert_eq!(read_to_close(&mut d), too_large.as_bytes());
    server.stop(LIVENESS);
}

/// `Connection: close` and HTTP/1.0 get one response and end of stream.
fn http_connection_close_and_http_1_0(backend: &str) {
    let server = LoopThread::start(backend, http::config(), http::Http::default());
    for request in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut c = server.connect();
        c.write_all(request).unwrap();
        let want = http_response("200 OK", "Hello from iomux\n", "close");
        assert_eq!(read_to_close(&mut c), want.as_bytes());
    }
    server.stop(LIVENESS);
}

/// 2,000 pipelined `GET /bytes/10000` (20 MB of replies) written at once
/// and read slowly: every response arrives, whole and in order, on the
/// same connection, and the server never holds much more than the
/// high-water mark of output.
fn http_deep_pipeline_read_slowly(backend: &str) {
    const REQUESTS: usize = 2000;
    const SIZE: usize = 10_000;
    let max_pending = Arc::new(AtomicUsize::new(0));
    let app = Watched {
        inner: http::Http::default(),
        max_pending: max_pending.clone(),
    };
    let config = http::config();
    let high_water = config.high_water;
    let server = LoopThread::start(backend, config, app);
    let mut c = server.connect();
    let request = format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: t\r\n\r\n");
    let writer = write_all_in_background(&c, request.repeat(REQUESTS).into_bytes());
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nConnection: keep-alive\r\n\r\n");
    let one = head.len() + SIZE;
    let got = read_slowly(&mut c, REQUESTS * one);
    writer.join().expect("the writer");
    for (i, response) in got.chunks(one).enumerate() {
        assert!(
            response.starts_with(head.as_bytes()),
            "response {i} has a bad head"
        );
        assert!(
            response[head.len()..].iter().all(|&b| b == b'x'),
            "response {i} body"
        );
    }
    let peak = max_pending.load(Ordering::SeqCst);
    assert!(
        peak <= high_water + 2 * one,
        "{peak} bytes pending at most (high water {high_water}, one reply {one})"
    );
    // Still open and serving.
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let hello = http_response("200 OK", "Hello from iomux\n", "keep-alive");
    assert_eq!(read_exactly(&mut c, hello.len()), hello.as_bytes());
    server.stop(LIVENESS);
}

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The commands a Redis client sends, multi-bulk and inline, and a
/// protocol error that closes.
fn resp_commands(backend: &str) {
    let server = LoopThread::start(backend, Config::default(), resp::Resp::default());
    let mut c = server.connect();
    let mut script = Vec::new();
    script.extend(resp_command(&[b"PING"]));
    script.extend(b"PING\r\n");
    script.extend(resp_command(&[b"SET", b"k", b"v a l"]));
    script.extend(resp_command(&[b"GET", b"k"]));
    script.extend(resp_command(&[b"INCR", b"n"]));
    script.extend(b"INCR n\r\n");
    script.extend(resp_command(&[b"DEL", b"k", b"n", b"x"]));
    script.extend(resp_command(&[b"GET", b"k"]));
    c.write_all(&script).unwrap();
    let want = "+PONG\r\n+PONG\r\n+OK\r\n$5\r\nv a l\r\n:1\r\n:2\r\n:2\r\n$-1\r\n";
    assert_eq!(read_exactly(&mut c, want.len()), want.as_bytes());
    c.write_all(b"*1\r\n$x\r\n").unwrap();
    let got = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert!(got.starts_with("-ERR Protocol error"), "{got:?}");
    server.stop(LIVENESS);
}

/// The case from the issue: 20,000 pipelined `GET` of a 1,000-byte value
/// (the replies far over `max_output`), written at once and read slowly.
/// All replies arrive and the client is never cut off.
fn resp_deep_pipeline_read_slowly(backend: &str) {
    const REQUESTS: usize = 20_000;
    let max_pending = Arc::new(AtomicUsize::new(0));
    let app = Watched {
        inner: resp::Resp::default(),
        max_pending: max_pending.clone(),
    };
    let mut config = Config::default();
    config.max_output = 64 * 1024;
    let high_water = config.high_water;
    let server = LoopThread::start(backend, config, app);
    let mut c = server.connect();
    let value = vec![b'v'; 1000];
    c.write_all(&resp_command(&[b"SET", b"key", &value]))
        .unwrap();
    assert_eq!(read_exactly(&mut c, 5), b"+OK\r\n");
    let writer = write_all_in_background(&c, resp_command(&[b"GET", b"key"]).repeat(REQUESTS));
    let mut reply = b"$1000\r\n".to_vec();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    let got = read_slowly(&mut c, REQUESTS * reply.len());
    writer.join().expect("the writer");
    assert!(
        got.chunks(reply.len()).all(|r| r == reply),
        "a reply differs"
    );
    let peak = max_pending.load(Ordering::SeqCst);
    assert!(
        peak <= high_water + 2 * reply.len(),
        "{peak} bytes pending at most"
    );
    c.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exactly(&mut c, 7), b"+PONG\r\n");
    server.stop(LIVENESS);
}

/// A 200 KiB `SET` over a 64 KiB `max_input`: the client gets `-ERR`
/// and then end of stream, not a reset; others are still served.
fn resp_over_limit_command_gets_an_error(backend: &str) {
    let mut config = Config::default();
    config.max_input = 64 * 1024;
    let server = LoopThread::start(backend, config, resp::Resp::default());
    let mut other = server.connect();
    let mut c = server.connect();
    let value = vec![b'v'; 200 * 1024];
    let writer = write_all_in_background(&c, resp_command(&[b"SET", b"big", &value]));
    let got = String::from_utf8(read_to_close(&mut c)).unwrap();
    assert_eq!(
        got,
        "-ERR Protocol error: command larger than 65536 bytes\r\n"
    );
    // The writer may see a reset once the server closed; either is fine.
    let _ = writer.join();
    let _ = c.shutdown(Shutdown::Both);
    other.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exactly(&mut other, 7), b"+PONG\r\n");
    server.stop(LIVENESS);
}
