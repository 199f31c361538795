//! Helpers for the integration tests: one `#[test]` per backend, a loop on
//! its own thread, client sockets with time limits, and a small seeded PRNG.
//! The command's tests (`cli/tests/`) add a running `iomux` child with its
//! output captured (`cli/tests/common/child.rs`).
//!
//! Everything here is bounded in time: a helper that waits takes a timeout
//! (or uses [`LIVENESS`]) and fails the test with what the server printed,
//! rather than hanging.

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

/// One `#[test]` per backend and behaviour: `mod select { fn NAME() }`, ...
#[allow(unused_macros)] // a test crate may have no per-backend suite
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        backend_suite!(@backend select, "select", $($name),*);
        backend_suite!(@backend poll, "poll", $($name),*);
        backend_suite!(@backend epoll, "epoll", $($name),*);
        backend_suite!(@backend epoll_et, "epoll-et", $($name),*);
        backend_suite!(@backend uring_poll, "uring-poll", $($name),*);
        backend_suite!(@backend uring, "uring", $($name),*);
    };
    (@backend $module:ident, $backend:literal, $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    if crate::common::skip_unavailable($backend, concat!(stringify!($module), "::", stringify!($name))) {
                        return;
                    }
                    super::$name($backend)
                }
            )*
        }
    };
}

pub mod pki;

use iomux::{App, Backend, Config, EventLoop, StopHandle, Waker};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Once;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Every concrete backend; each behaviour is tested on all of them.
pub const BACKENDS: [&str; 6] = ["select", "poll", "epoll", "epoll-et", "uring-poll", "uring"];

/// True (after saying so on the terminal) when `backend` cannot run on this
/// machine: io_uring unavailable. Written straight to stderr, past the test
/// harness's capture, so a skipped case shows in every run as
/// `NAME: skipped: io_uring unavailable: REASON`. With
/// `IOMUX_REQUIRE_URING=1` (CI, where it must run) it fails instead.
pub fn skip_unavailable(backend: &str, test: &str) -> bool {
    let backend: iomux::Backend = backend.parse().expect("a backend name");
    match backend.check() {
        Ok(()) => false,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            if std::env::var_os("IOMUX_REQUIRE_URING").is_some_and(|v| v != "0") {
                panic!("{test}: IOMUX_REQUIRE_URING is set but {e}");
            }
            let line = format!("{test}: skipped: {e}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            true
        }
        Err(e) => panic!("{test}: opening {backend}: {e}"),
    }
}

/// A generous bound for anything that should happen "promptly". Reaching it
/// means the server is stuck, not slow.
pub const LIVENESS: Duration = Duration::from_secs(10);

/// Read and write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises this process's open-files limit (the 3000-client tests need it);
/// the server it spawns inherits the raised limit too.
pub fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        iomux::limits::raise_nofile_limit();
    });
}

/// Sets both timeouts of `stream`.
pub fn set_timeouts(stream: &TcpStream, timeout: Duration) {
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
}

/// Reads exactly `n` bytes (the socket's read timeout bounds the wait).
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut buf[got..]) {
            Ok(0) => panic!(
                "connection closed after {got} of {n} bytes (got {:?})",
                String::from_utf8_lossy(&buf[..got])
            ),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read failed after {got} of {n} bytes: {e} (got {:?})",
                String::from_utf8_lossy(&buf[..got])
            ),
        }
    }
    buf
}

/// Reads until end of stream. Returns the bytes and the error that ended
/// the stream early, if any (a reset, or the read timeout).
pub fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (data, None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (data, Some(e)),
        }
    }
}

/// Fails unless the server closes `stream` (end of stream or a reset)
/// without sending anything more, within the socket's read timeout.
pub fn expect_closed(stream: &mut TcpStream, what: &str) {
    let (data, error) = read_to_end(stream);
    assert!(
        data.is_empty(),
        "{what}: expected the server to close, got {} bytes: {:?}",
        data.len(),
        String::from_utf8_lossy(&data[..data.len().min(200)])
    );
    if let Some(e) = error {
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{what}: expected end of stream or a reset, got {e}"
        );
    }
}

/// Sends `msg` and reads back exactly `reply.len()` bytes, which must equal
/// `reply`.
pub fn round_trip(stream: &mut TcpStream, msg: &[u8], reply: &[u8]) {
    stream.write_all(msg).expect("send a message");
    let got = read_n(stream, reply.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(reply),
        "unexpected reply to {:?}",
        String::from_utf8_lossy(msg)
    );
}

/// SplitMix64: a small, seeded, deterministic generator (no `rand`).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// A seed that differs per test and backend but is fixed across runs.
pub fn seed(test: &str, backend: &str) -> u64 {
    // FNV-1a over both names.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in test.bytes().chain([0]).chain(backend.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// An `EventLoop` over `backend` running `app` in its own thread, listening
/// on one or more ports of 127.0.0.1 (each bound to port 0).
pub struct LoopThread<A> {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in the order they were added.
    pub addrs: Vec<SocketAddr>,
    pub stop: StopHandle,
    pub waker: Waker,
    done: mpsc::Receiver<(io::Result<()>, A)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<A: App + Send + 'static> LoopThread<A> {
    /// One listener.
    pub fn start(backend: &str, config: Config, app: A) -> LoopThread<A> {
        LoopThread::start_listening(backend, config, 1, app)
    }

    /// `listeners` listeners on one loop. Fails the test if the loop cannot
    /// be built or refuses a listener.
    pub fn start_listening(
        backend: &str,
        config: Config,
        listeners: usize,
        app: A,
    ) -> LoopThread<A> {
        LoopThread::start_with(backend, config, app, move |lp| {
            let mut addrs = Vec::with_capacity(listeners);
            for _ in 0..listeners {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
                addrs.push(listener.local_addr().expect("a listener's address"));
                lp.listen(listener).expect("the loop takes the listener");
            }
            addrs
        })
    }

    /// A loop that `setup` prepares on its own thread before it runs (its
    /// listeners, connects); `setup` returns the listeners' addresses.
    pub fn start_with(
        backend: &str,
        config: Config,
        mut app: A,
        setup: impl FnOnce(&mut EventLoop<A::State>) -> Vec<SocketAddr> + Send + 'static,
    ) -> LoopThread<A> {
        let backend: Backend = backend.parse().expect("a backend name");
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut lp: EventLoop<A::State> =
                EventLoop::new(backend, config).expect("create the loop");
            let addrs = setup(&mut lp);
            ready_tx
                .send((addrs, lp.stop_handle(), lp.waker()))
                .expect("the test waits for the loop");
            let result = lp.run(&mut app);
            let _ = done_tx.send((result, app));
        });
        let (addrs, stop, waker) = ready_rx
            .recv_timeout(LIVENESS)
            .expect("the loop thread started");
        LoopThread {
            addr: addrs[0],
            addrs,
            stop,
            waker,
            done,
            thread: Some(thread),
        }
    }

    /// A client of the first listener, with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the loop");
        set_timeouts(&s, IO_TIMEOUT);
        s
    }

    /// Stops the loop and waits (bounded) for `run` to return.
    pub fn stop(mut self, within: Duration) -> A {
        self.stop.stop();
        let (result, app) = self
            .done
            .recv_timeout(within)
            .expect("the loop did not stop in time");
        result.expect("the loop failed");
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the loop thread panicked");
        }
        app
    }
}

impl<A> Drop for LoopThread<A> {
    /// A test that failed early still stops its loop (without waiting).
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.stop();
        }
    }
}

/// Sockets of this process whose local TCP port is `port` and that are
/// not listening: a server's accepted connections still open (the
/// clients, in the same process, have ports of their own). From
/// `/proc/net/tcp{,6}`, matched against this process's descriptors.
pub fn server_sockets(port: u16) -> usize {
    let mine: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 0A: LISTEN.
            if local_port == Some(port) && *state != "0A" && mine.contains(*inode) {
                count += 1;
            }
        }
    }
    count
}

/// Waits (at most [`LIVENESS`]) until no accepted connection of the
/// server on `port` is open in this process; fails with how many are.
pub fn wait_no_server_sockets(port: u16) {
    let deadline = std::time::Instant::now() + LIVENESS;
    loop {
        let open = server_sockets(port);
        if open == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} server sockets on port {port} still open"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends back what it gets.
pub struct Echo;

impl App for Echo {
    type State = ();
    fn name(&self) -> &'static str {
        "echo"
    }
    fn on_data(
        &mut self,
        ctx: &mut iomux::Ctx<'_>,
        conn: iomux::ConnId,
        _: &mut (),
        input: &[u8],
    ) -> usize {
        let _ = ctx.send(conn, input);
        input.len()
    }
}
