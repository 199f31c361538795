//! The TCP→TCP proxy example on every backend: bytes both ways, a
//! half-close passed through, a slow reader on either side (nothing lost,
//! the proxy's output bounded), an upstream named by a host name or by
//! several addresses, and an upstream that refuses (the client closed, the
//! cause logged). Its `main` runs in a child process where its output and
//! exit code matter.

#[macro_use]
mod common;

#[path = "../examples/proxy.rs"]
mod proxy;

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, LIVENESS, LoopThread};
use iomux::{App, CloseReason, Config, ConnId, Ctx, TimerId};

backend_suite! {
    proxy_copies_both_ways,
    proxy_passes_a_half_close_through,
    proxy_slow_client_reader,
    proxy_slow_upstream_reader,
    proxy_upstream_refused,
    proxy_upstream_by_host_name,
    proxy_tries_each_address_in_order,
    proxy_main_logs_an_upstream_refusal,
}

/// The proxy, recording the most output ever pending on any connection.
struct Watched {
    inner: proxy::Proxy,
    max_pending: Arc<AtomicUsize>,
}

impl App for Watched {
    type State = proxy::Side;
    fn name(&self) -> &'static str {
        "proxy"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side, o: iomux::Origin) {
        self.inner.on_open(ctx, c, s, o)
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        c: ConnId,
        s: &mut proxy::Side,
        input: &[u8],
    ) -> usize {
        let used = self.inner.on_data(ctx, c, s, input);
        if let Some(other) = s.other() {
            self.max_pending
                .fetch_max(ctx.pending_output(other), Ordering::SeqCst);
        }
        used
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side) {
        self.inner.on_drain(ctx, c, s)
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side) {
        self.inner.on_eof(ctx, c, s)
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: proxy::Side, why: &CloseReason) {
        self.inner.on_close(ctx, c, s, why)
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side, t: TimerId) {
        self.inner.on_conn_timer(ctx, c, s, t)
    }
}

/// A proxy loop in a thread in front of `upstream`.
fn start(backend: &str, upstream: SocketAddr) -> LoopThread<Watched> {
    start_to(backend, vec![upstream])
}

/// A proxy loop in a thread in front of `upstreams`, tried in order.
fn start_to(backend: &str, upstreams: Vec<SocketAddr>) -> LoopThread<Watched> {
    let app = Watched {
        inner: proxy::Proxy::new(upstreams),
        max_pending: Arc::new(AtomicUsize::new(0)),
    };
    LoopThread::start(backend, Config::default(), app)
}

/// Stops the proxy; the most output it ever had pending.
fn stop(p: LoopThread<Watched>) -> usize {
    p.stop(LIVENESS).max_pending.load(Ordering::SeqCst)
}

/// An upstream that accepts one connection and hands it to `serve`.
fn upstream<F: FnOnce(TcpStream) + Send + 'static>(
    serve: F,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (s, _) = listener.accept().expect("the proxy connects");
        common::set_timeouts(&s, IO_TIMEOUT);
        serve(s)
    });
    (addr, t)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads `n` bytes in small pieces with pauses (a slow reader).
fn read_slowly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + 6 * LIVENESS;
    let mut got = Vec::with_capacity(n);
    let mut buf = [0u8; 8192];
    let mut reads = 0u32;
    while got.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} bytes", got.len());
        let k = match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other.expect("data, not a reset"),
        };
        assert!(k > 0, "closed after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
        reads += 1;
        if reads.is_multiple_of(16) && got.len() < n / 2 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

/// An upstream that echoes what it reads until end of stream.
fn echo_upstream() -> (SocketAddr, thread::JoinHandle<()>) {
    upstream(|mut s| {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => return,
                Ok(n) => s.write_all(&buf[..n]).expect("echo"),
            }
        }
    })
}

/// An address nothing listens on (a port just given back).
fn refusing_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// 4 MiB through an echoing upstream and back, whole and in order.
fn proxy_copies_both_ways(backend: &str) {
    let (up, t) = echo_upstream();
    let p = start(backend, up);
    let mut c = p.connect();
    let data = pattern(4 << 20);
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || w.write_all(&sent).unwrap());
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data, "the echo through the proxy differs");
    drop(c);
    t.join().unwrap();
    stop(p);
}

/// The client sends a request and half-closes; the upstream sees end of
/// stream, answers, and closes; the client gets the answer, then end of
/// stream.
fn proxy_passes_a_half_close_through(backend: &str) {
    let (up, t) = upstream(|mut s| {
        let mut request = Vec::new();
        s.read_to_end(&mut request)
            .expect("end of stream from the proxy");
        assert_eq!(request, b"question");
        s.write_all(b"answer").unwrap();
    });
    let p = start(backend, up);
    let mut c = p.connect();
    c.write_all(b"question").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply)
        .expect("the answer, then end of stream");
    assert_eq!(reply, b"answer");
    t.join().unwrap();
    stop(p);
}

/// The upstream sends 16 MiB to a client that reads slowly: all of it
/// arrives and the proxy never holds much more than a high-water mark.
fn proxy_slow_client_reader(backend: &str) {
    const N: usize = 16 << 20;
    let (up, t) = upstream(|mut s| s.write_all(&pattern(N)).expect("the download"));
    let p = start(backend, up);
    let mut c = p.connect();
    let got = read_slowly(&mut c, N);
    assert!(got == pattern(N), "the download differs");
    drop(c);
    t.join().unwrap();
    let peak = stop(p);
    let bound = Config::default().high_water + 64 * 1024;
    assert!(peak <= bound, "{peak} bytes pending (bound {bound})");
}

/// A client uploads 16 MiB to an upstream that reads slowly: all of it
/// arrives, the proxy's output stays bounded.
fn proxy_slow_upstream_reader(backend: &str) {
    const N: usize = 16 << 20;
    let (tx, rx) = mpsc::channel();
    let (up, t) = upstream(move |mut s| {
        let got = read_slowly(&mut s, N);
        let _ = tx.send(got == pattern(N));
    });
    let p = start(backend, up);
    let c = p.connect();
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&pattern(N)).expect("the upload"));
    assert!(
        rx.recv_timeout(6 * LIVENESS)
            .expect("the upstream read it all"),
        "the upload differs"
    );
    writer.join().unwrap();
    drop(c);
    t.join().unwrap();
    let peak = stop(p);
    let bound = Config::default().high_water + 64 * 1024;
    assert!(peak <= bound, "{peak} bytes pending (bound {bound})");
}

/// Nothing listens upstream: the client is closed (end of stream, no
/// data), and the proxy goes on.
fn proxy_upstream_refused(backend: &str) {
    let p = start(backend, refusing_address());
    let mut c = p.connect();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty());
    stop(p);
}

/// A round trip of `msg` through the proxy at `p` to an echoing upstream.
fn echo_through(p: &LoopThread<Watched>, msg: &[u8]) {
    let mut c = p.connect();
    common::round_trip(&mut c, msg, msg);
}

/// `localhost:PORT` as the upstream: resolved, and used (whichever of its
/// addresses comes first, the one listening answers).
fn proxy_upstream_by_host_name(backend: &str) {
    let (up, t) = echo_upstream();
    let upstreams = proxy::resolve(&format!("localhost:{}", up.port())).expect("localhost");
    assert!(upstreams.contains(&up), "localhost is {upstreams:?}");
    let p = start_to(backend, upstreams);
    echo_through(&p, b"hello by name");
    t.join().unwrap();
    stop(p);
}

/// Two addresses, the first refusing: the client is served by the second,
/// and every client still gets the first tried first.
fn proxy_tries_each_address_in_order(backend: &str) {
    let dead = refusing_address();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let live = listener.local_addr().unwrap();
    let t = thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().expect("the proxy connects");
            common::set_timeouts(&s, IO_TIMEOUT);
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("a request");
            s.write_all(&buf).expect("its echo");
        }
    });
    let p = start_to(backend, vec![dead, live]);
    echo_through(&p, b"first");
    echo_through(&p, b"again");
    t.join().unwrap();
    stop(p);
}

/// The body of the child process of the tests that run the proxy's
/// `main` as a user does (its logger on its own stderr, its exit code):
/// they start this test binary again with only this test and
/// [`MAIN_ARGS`] set. Without it (an ordinary run) there is nothing to do.
#[test]
fn proxy_main_in_child() {
    let Ok(args) = std::env::var(MAIN_ARGS) else {
        return;
    };
    let args: Vec<String> = args.lines().map(str::to_string).collect();
    let code = match proxy::main_with(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("proxy: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// The environment variable that holds the child's arguments, one a line.
const MAIN_ARGS: &str = "IOMUX_TEST_PROXY_MAIN_ARGS";

/// The proxy's `main` in a child process, its output read line by line
/// in the background; killed (by its handle) when dropped.
struct MainChild {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every line seen so far, for a failure's message.
    seen: Vec<String>,
}

impl MainChild {
    /// `proxy ARGS` with `IOMUX_BACKEND=backend` and the default log level.
    fn start(backend: &str, args: &[&str]) -> MainChild {
        let exe = std::env::current_exe().expect("this test binary");
        let mut child = Command::new(exe)
            .args(["proxy_main_in_child", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(MAIN_ARGS, args.join("\n"))
            .env("IOMUX_BACKEND", backend)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the proxy's main");
        let stdout = lines_of(child.stdout.take().expect("a stdout pipe"));
        let stderr = lines_of(child.stderr.take().expect("a stderr pipe"));
        MainChild {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The first line of stdout (`err` false) or stderr for which `want`
    /// holds, within [`LIVENESS`]; fails the test with all it printed.
    fn wait_line(&mut self, err: bool, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIVENESS;
        loop {
            let rx = if err { &self.stderr } else { &self.stdout };
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what}; the proxy printed {:#?}", self.seen),
            }
        }
    }

    /// The address from the start-up line.
    fn listening(&mut self) -> SocketAddr {
        // The harness's `test NAME ... ` may come first on the line.
        let line = self.wait_line(false, "start-up line", |l| l.contains("proxy: "));
        line.split_once("proxy: ")
            .and_then(|(_, l)| l.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Waits (bounded) for the child to exit by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIVENESS;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the proxy") {
                return status;
            }
            assert!(Instant::now() < deadline, "the proxy did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for MainChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines read from `pipe`, as they come.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Run as a user runs it, with an upstream that refuses: the client is
/// closed, and stderr says which client, which upstream and why.
fn proxy_main_logs_an_upstream_refusal(backend: &str) {
    let dead = refusing_address();
    let mut proxy = MainChild::start(backend, &["127.0.0.1:0", &dead.to_string()]);
    let mut c = TcpStream::connect(proxy.listening()).expect("connect to the proxy");
    common::set_timeouts(&c, IO_TIMEOUT);
    let client = c.local_addr().unwrap();
    common::expect_closed(&mut c, "a client whose upstream refused");
    let line = proxy.wait_line(true, "log line for the refusal", |l| {
        l.contains(&format!("client {client}:"))
    });
    assert!(
        line.starts_with("WARN ")
            && line.contains(&format!("upstream {dead} failed"))
            && line.contains("refused"),
        "{line:?}"
    );
}

/// An upstream that is not a `host:port`: one error line naming it, the
/// usage, exit status 2. (A well-formed name the resolver does not know
/// takes the same path; it is not tried here, as it would ask a DNS server
/// off this machine.)
#[test]
fn proxy_main_refuses_an_unresolvable_upstream() {
    for bad in ["nonsense", "localhost:99999"] {
        let mut proxy = MainChild::start("epoll", &["127.0.0.1:0", bad]);
        let status = proxy.wait_exit();
        assert_eq!(status.code(), Some(2), "{bad}");
        let error = proxy.wait_line(true, "error line", |l| l.starts_with("proxy: "));
        assert!(
            error.contains("cannot resolve") && error.contains(bad),
            "{error:?}"
        );
        proxy.wait_line(true, "usage", |l| l.starts_with("usage: proxy "));
    }
}
