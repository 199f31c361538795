//! The HTTP and RESP examples, served by the loop on every backend and
//! driven by this suite's own clients: correctness, errors, and a deep
//! pipelined burst of large replies read slowly (every reply arrives, the
//! connection stays, output stays bounded); for RESP also `SET`'s
//! options, keys that expire (looked up or not) and `CONFIG GET`.

#[macro_use]
mod common;

#[path = "../examples/http/main.rs"]
mod http;
// Each example is a crate of its own with its own copy of the examples'
// logger; this suite holds two of them.
#[allow(clippy::duplicate_mod)]
#[path = "../examples/resp/main.rs"]
mod resp;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{LIVENESS, LoopThread};
use iomux::{App, Config, ConnId, Ctx, Limit, TimerId};

backend_suite! {
    http_requests_and_errors,
    http_connection_close_and_http_1_0,
    http_deep_pipeline_read_slowly,
    resp_commands,
    resp_deep_pipeline_read_slowly,
    resp_over_limit_command_gets_an_error,
    resp_set_options_and_ttls,
    resp_keys_expire_when_looked_up,
    resp_keys_expire_unasked,
    resp_config_get_for_redis_benchmark,
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
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: TimerId) {
        self.inner.on_timer(ctx, timer)
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

/// One HTTP response as the server sent it.
#[derive(Debug)]
struct Response {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Checks the status, body and `Connection`, and that `Date` and
    /// `Content-Type` are there.
    fn assert(&self, status: u16, body: &[u8], connection: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body, body, "{self:?}");
        assert_eq!(self.field("connection"), Some(connection), "{self:?}");
        let date = self.field("date").expect("a Date field");
        assert!(date.len() == 29 && date.ends_with(" GMT"), "Date: {date}");
        assert!(self.field("content-type").is_some(), "{self:?}");
    }
}

/// Parses the response at the front of `buf`: it and its length.
fn split_response(buf: &[u8]) -> (Response, usize) {
    let head_len = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    let head = std::str::from_utf8(&buf[..head_len - 4]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let fields: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("name: value");
            (n.to_string(), v.to_string())
        })
        .collect();
    let mut response = Response {
        status,
        fields,
        body: Vec::new(),
    };
    let len: usize = response
        .field("content-length")
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    response.body = buf[head_len..head_len + len].to_vec();
    (response, head_len + len)
}

/// Reads one response off `stream`.
fn read_response(stream: &mut TcpStream) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let len = content_length_of(&head);
    head.extend(read_exactly(stream, len));
    split_response(&head).0
}

/// The `Content-Length` of a head.
fn content_length_of(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: ").map(str::to_string))
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length")
}

/// Keep-alive requests on one connection, a body echoed, 404, 405 with
/// `Allow`; then a malformed request gets 400 and the connection closes.
fn http_requests_and_errors(backend: &str) {
    let server = LoopThread::start(backend, http::config(), http::Http::default());
    let mut c = server.connect();
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut c).assert(200, b"Hello from iomux\n", "keep-alive");
    }
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhel")
        .unwrap();
    c.write_all(b"lo").unwrap();
    read_response(&mut c).assert(200, b"hello", "keep-alive");
    // Bare LF line endings are requests too.
    c.write_all(b"GET /nope HTTP/1.1\nHost: t\n\nDELETE / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_response(&mut c).assert(404, b"not found\n", "keep-alive");
    let refused = read_response(&mut c);
    refused.assert(405, b"Method Not Allowed\n", "keep-alive");
    assert_eq!(refused.field("allow"), Some("GET, HEAD"));
    c.write_all(b"garbage\r\n\r\n").unwrap();
    let rest = read_to_close(&mut c);
    let (bad, len) = split_response(&rest);
    bad.assert(400, b"Bad Request\n", "close");
    assert_eq!(len, rest.len(), "nothing after the 400");
    // Two different lengths: 400, then close.
    let mut e = server.connect();
    e.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    .unwrap();
    split_response(&read_to_close(&mut e))
        .0
        .assert(400, b"Bad Request\n", "close");
    // An over-long head: 431, then close.
    let mut d = server.connect();
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(http::MAX_HEAD));
    d.write_all(head.as_bytes()).unwrap();
    let reason = b"Request Header Fields Too Large\n";
    split_response(&read_to_close(&mut d))
        .0
        .assert(431, reason, "close");
    server.stop(LIVENESS);
}

/// `Connection: close` and HTTP/1.0 get one response and end of stream.
fn http_connection_close_and_http_1_0(backend: &str) {
    let server = LoopThread::start(backend, http::config(), http::Http::default());
    for request in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut c = server.connect();
        c.write_all(request).unwrap();
        let all = read_to_close(&mut c);
        let (response, len) = split_response(&all);
        response.assert(200, b"Hello from iomux\n", "close");
        assert_eq!(len, all.len(), "one response, then end of stream");
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
    // Every head has the same length (a Date is always 29 bytes).
    let first = read_response(&mut c);
    first.assert(200, &[b'x'; SIZE], "keep-alive");
    let head_len = "HTTP/1.1 200 OK\r\n".len()
        + first
            .fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + 2;
    let one = head_len + SIZE;
    let got = read_slowly(&mut c, (REQUESTS - 1) * one);
    writer.join().expect("the writer");
    let mut at = 0;
    for i in 1..REQUESTS {
        let (response, len) = split_response(&got[at..]);
        assert_eq!(len, one, "response {i}");
        assert_eq!(response.status, 200, "response {i}");
        assert!(
            response.body.iter().all(|&b| b == b'x'),
            "response {i} body"
        );
        at += len;
    }
    let peak = max_pending.load(Ordering::SeqCst);
    assert!(
        peak <= high_water + 2 * one,
        "{peak} bytes pending at most (high water {high_water}, one reply {one})"
    );
    // Still open and serving.
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut c).assert(200, b"Hello from iomux\n", "keep-alive");
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

/// Reads one RESP reply off `stream`, whole (a bulk string's body, an
/// array's elements), as the bytes that came.
fn read_reply(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("a reply line");
        line.push(byte[0]);
    }
    let count = || -> i64 {
        std::str::from_utf8(&line[1..line.len() - 2])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a length in {:?}", String::from_utf8_lossy(&line)))
    };
    match line[0] {
        b'$' if count() >= 0 => {
            let body = read_exactly(stream, count() as usize + 2);
            [line, body].concat()
        }
        b'*' => {
            let mut all = line.clone();
            for _ in 0..count().max(0) {
                all.extend(read_reply(stream));
            }
            all
        }
        _ => line,
    }
}

/// Sends the command `words` (split at spaces) and reads its reply.
fn ask(stream: &mut TcpStream, words: &str) -> String {
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    stream.write_all(&resp_command(&args)).unwrap();
    String::from_utf8_lossy(&read_reply(stream)).into_owned()
}

/// Each `(command, reply)` in turn on `stream`.
fn resp_script(stream: &mut TcpStream, steps: &[(&str, &str)]) {
    for (words, want) in steps {
        assert_eq!(ask(stream, words), *want, "{words}");
    }
}

/// The integer of an integer reply.
fn integer(reply: &str) -> i64 {
    reply
        .strip_prefix(':')
        .and_then(|r| r.strip_suffix("\r\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an integer reply, not {reply:?}"))
}

/// Asks `words` until the reply is `want`, for at most five seconds.
fn ask_until(stream: &mut TcpStream, words: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = ask(stream, words);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{words}: still {got:?}, not {want:?}, after 5 s"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// `SET`'s conditions, `GET`, `KEEPTTL` and its errors over the wire, and
/// what `TTL`/`PTTL`/`EXPIRE`/`PERSIST` say of the keys it made.
fn resp_set_options_and_ttls(backend: &str) {
    let server = LoopThread::start(backend, Config::default(), resp::Resp::default());
    let mut c = server.connect();
    resp_script(
        &mut c,
        &[
            ("SET k v NX", "+OK\r\n"),
            ("SET k w NX", "$-1\r\n"),
            ("SET x v XX", "$-1\r\n"),
            ("EXISTS x", ":0\r\n"),
            ("SET k w XX GET", "$1\r\nv\r\n"),
            ("SET k v NX XX", "-ERR syntax error\r\n"),
            ("SET k v EX 10 PX 100", "-ERR syntax error\r\n"),
            (
                "SET k v EX ten",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "SET k v EX 0",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                "SET k v PX -1",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            ("GET k", "$1\r\nw\r\n"),
            ("TTL k", ":-1\r\n"),
            ("TTL nope", ":-2\r\n"),
            ("PTTL nope", ":-2\r\n"),
            ("SET k v EX 100", "+OK\r\n"),
        ],
    );
    let ttl = integer(&ask(&mut c, "TTL k"));
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(ask(&mut c, "SET k w KEEPTTL"), "+OK\r\n");
    let pttl = integer(&ask(&mut c, "PTTL k"));
    assert!((1..=100_000).contains(&pttl), "PTTL {pttl} after KEEPTTL");
    resp_script(
        &mut c,
        &[
            ("SET k v", "+OK\r\n"),
            ("TTL k", ":-1\r\n"),
            ("EXPIRE k 100", ":1\r\n"),
            ("PERSIST k", ":1\r\n"),
            ("TTL k", ":-1\r\n"),
            ("PEXPIRE k 0", ":1\r\n"),
            ("GET k", "$-1\r\n"),
        ],
    );
    server.stop(LIVENESS);
}

/// A key set with `PX 50` is there at once and gone once its time has
/// passed, to every command that asks; a plain `SET` of another key
/// keeps it for good.
fn resp_keys_expire_when_looked_up(backend: &str) {
    let server = LoopThread::start(backend, Config::default(), resp::Resp::default());
    let mut c = server.connect();
    resp_script(
        &mut c,
        &[
            ("SET k v PX 50", "+OK\r\n"),
            ("SET kept v PX 50", "+OK\r\n"),
            ("SET kept w", "+OK\r\n"),
            ("INCR n", ":1\r\n"),
            ("PEXPIRE n 50", ":1\r\n"),
        ],
    );
    ask_until(&mut c, "GET k", "$-1\r\n");
    ask_until(&mut c, "INCR n", ":1\r\n"); // a fresh counter
    resp_script(
        &mut c,
        &[
            ("EXISTS k", ":0\r\n"),
            ("TTL k", ":-2\r\n"),
            ("DEL k", ":0\r\n"),
            ("GET kept", "$1\r\nw\r\n"),
            ("TTL n", ":-1\r\n"),
        ],
    );
    server.stop(LIVENESS);
}

/// 2,500 keys with `PX 30` (more than one firing of the expiry timer
/// removes) nobody asks for again leave `DBSIZE` by themselves; a key
/// without a deadline stays.
fn resp_keys_expire_unasked(backend: &str) {
    const KEYS: usize = 2500;
    let server = LoopThread::start(backend, Config::default(), resp::Resp::default());
    let mut c = server.connect();
    let mut burst = Vec::new();
    for i in 0..KEYS {
        let key = format!("key:{i}");
        burst.extend(resp_command(&[b"SET", key.as_bytes(), b"v", b"PX", b"30"]));
    }
    burst.extend(resp_command(&[b"SET", b"stays", b"v"]));
    let writer = write_all_in_background(&c, burst);
    assert_eq!(
        read_exactly(&mut c, 5 * (KEYS + 1)),
        b"+OK\r\n".repeat(KEYS + 1)
    );
    writer.join().expect("the writer");
    ask_until(&mut c, "DBSIZE", ":1\r\n");
    assert_eq!(ask(&mut c, "GET stays"), "$1\r\nv\r\n");
    server.stop(LIVENESS);
}

/// What `redis-benchmark` asks before it starts (both at once, as it
/// does), answered as Redis answers; a glob; an unknown parameter.
fn resp_config_get_for_redis_benchmark(backend: &str) {
    let server = LoopThread::start(backend, Config::default(), resp::Resp::default());
    let mut c = server.connect();
    let mut both = resp_command(&[b"CONFIG", b"GET", b"save"]);
    both.extend(resp_command(&[b"CONFIG", b"GET", b"appendonly"]));
    c.write_all(&both).unwrap();
    let want = "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
    assert_eq!(read_exactly(&mut c, want.len()), want.as_bytes());
    resp_script(
        &mut c,
        &[
            (
                "CONFIG GET append*",
                "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
            ),
            ("CONFIG GET nosuch", "*0\r\n"),
            (
                "CONFIG GET",
                "-ERR wrong number of arguments for 'config|get' command\r\n",
            ),
        ],
    );
    server.stop(LIVENESS);
}
