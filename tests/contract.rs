//! The app contract of the library (issue 7), pinned on every backend.
//!
//! Each behaviour is a plain function `fn name(backend: &str)` with a small
//! `App` of its own, run by an `EventLoop` in a thread ([`LoopThread`]) and
//! driven by real TCP clients on 127.0.0.1; `backend_suite!` turns the list
//! into one `#[test]` per backend. The apps write what the loop tells them
//! into a [`Journal`] the test waits on (with a deadline, never a guess),
//! and the library's own log lines are captured by a `log::Log` installed
//! once for this test binary ([`capture_logs`]), filtered by peer address.

#[macro_use]
mod common;

use common::{LIVENESS, LoopThread, expect_closed, read_n, read_to_end, set_timeouts};
use iomux::app::App;
use iomux::pool::{JobId, JobResult};
use iomux::{Backend, CloseReason, Config, ConnId, Ctx, EventLoop, Limit, Status, TimerId};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

backend_suite! {
    one_request_per_call_gets_every_reply,
    leftover_is_offered_before_eof,
    bounded_app_is_not_stranded_by_the_read_budget,
    deep_pipeline_small_values_read_slowly,
    deep_pipeline_large_values_read_slowly,
    replies_are_not_bound_by_max_output,
    pushed_output_hard_limit_closes_non_reader,
    pushed_output_soft_limit_closes_after_its_period,
    last_reply_to_a_non_reader_waits_at_most_the_grace,
    oversized_request_answered_before_close,
    oversized_request_without_reply_closes_promptly,
    pause_and_resume_reading,
    a_paused_connection_holds_at_most_a_window_received_ahead,
    a_paused_connection_whose_peer_resets_is_closed,
    drain_is_told_once_after_output_full,
    connection_and_loop_timers,
    state_is_per_connection_and_returned_on_close,
    back_pressure_and_pause_are_not_idle,
    write_timeout_closes_a_non_reader,
    jobs_in_flight_are_not_idle,
    wake_calls_on_wake_but_job_results_do_not,
    run_once_returns_in_time_and_stops,
    invalid_config_is_refused,
    local_addr_and_socket_options,
    the_library_logs_through_the_log_facade,
    many_listeners_all_accept,
}

// ---------------------------------------------------------------------
// What the apps saw: the journal.

/// A [`CloseReason`] the test can compare (that one holds an `io::Error`).
#[derive(Clone, Debug, PartialEq)]
enum Reason {
    PeerClosed,
    App,
    AppError(String),
    Idle,
    NotReading,
    Limit(Limit),
    Shutdown,
    Error(io::ErrorKind),
    Other(String),
}

impl From<&CloseReason> for Reason {
    fn from(reason: &CloseReason) -> Reason {
        match reason {
            CloseReason::PeerClosed => Reason::PeerClosed,
            CloseReason::App => Reason::App,
            CloseReason::AppError(why) => Reason::AppError(why.clone()),
            CloseReason::Idle => Reason::Idle,
            CloseReason::NotReading => Reason::NotReading,
            CloseReason::Limit(limit) => Reason::Limit(*limit),
            CloseReason::Shutdown => Reason::Shutdown,
            CloseReason::Error(e) => Reason::Error(e.kind()),
            other => Reason::Other(format!("{other:?}")),
        }
    }
}

/// One callback the loop made.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Open,
    /// The input `on_data` was offered.
    Data(Vec<u8>),
    Eof,
    Drain,
    Limit(Limit),
    /// The state's final value, from `on_close`.
    Final(u64),
    Close(Reason),
    /// `on_conn_timer`: the timer's id and the state's label.
    ConnTimer(u64, String),
    Timer(u64),
    Wake,
    JobDone,
    /// Anything else an app wants to show the test.
    Note(String),
}

#[derive(Clone, Debug)]
struct Entry {
    /// The connection's peer (the client's local address); `None` for
    /// loop-wide callbacks.
    peer: Option<SocketAddr>,
    /// `Ctx::now` of the turn it happened in.
    at: Instant,
    ev: Ev,
}

/// Callbacks in the order the loop made them, shared between an app (on
/// the loop thread) and its test.
#[derive(Clone, Default)]
struct Journal(Arc<(Mutex<Vec<Entry>>, Condvar)>);

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, peer: Option<SocketAddr>, at: Instant, ev: Ev) {
        self.lock().push(Entry { peer, at, ev });
        self.0.1.notify_all();
    }

    /// Everything recorded for `peer`, with when.
    fn timed(&self, peer: SocketAddr) -> Vec<(Instant, Ev)> {
        self.lock()
            .iter()
            .filter(|e| e.peer == Some(peer))
            .map(|e| (e.at, e.ev.clone()))
            .collect()
    }

    /// Everything recorded for `peer`.
    fn of(&self, peer: SocketAddr) -> Vec<Ev> {
        self.timed(peer).into_iter().map(|(_, ev)| ev).collect()
    }

    /// How many entries (of any peer) `pick` accepts.
    fn count(&self, pick: impl Fn(&Ev) -> bool) -> usize {
        self.lock().iter().filter(|e| pick(&e.ev)).count()
    }

    /// Waits until `done` holds for the journal; fails the test with the
    /// journal after [`LIVENESS`].
    fn wait(&self, what: &str, mut done: impl FnMut(&[Entry]) -> bool) {
        let deadline = Instant::now() + LIVENESS;
        let mut entries = self.lock();
        loop {
            if done(&entries) {
                return;
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}: {entries:#?}");
            entries = self
                .0
                .1
                .wait_timeout(entries, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for `peer` to be opened (so a broadcast reaches it).
    fn wait_open(&self, peer: SocketAddr) {
        self.wait(&format!("{peer} to open"), |es| {
            es.iter().any(|e| e.peer == Some(peer) && e.ev == Ev::Open)
        });
    }

    /// Why `peer` was closed, if it was.
    fn closed(&self, peer: SocketAddr) -> Option<(Instant, Reason)> {
        self.timed(peer).into_iter().find_map(|(at, ev)| match ev {
            Ev::Close(reason) => Some((at, reason)),
            _ => None,
        })
    }

    /// Waits until `peer` is closed; returns when (`Ctx::now`) and why.
    fn wait_closed(&self, peer: SocketAddr) -> (Instant, Reason) {
        self.wait(&format!("{peer} to close"), |es| {
            es.iter()
                .any(|e| e.peer == Some(peer) && matches!(e.ev, Ev::Close(_)))
        });
        self.closed(peer).expect("just seen")
    }
}

/// The part every test app shares: its journal, and each connection's peer
/// (a closed connection's id no longer has one).
struct Rec {
    journal: Journal,
    peers: HashMap<ConnId, SocketAddr>,
}

impl Rec {
    fn new(journal: &Journal) -> Rec {
        Rec {
            journal: journal.clone(),
            peers: HashMap::new(),
        }
    }

    fn open(&mut self, ctx: &Ctx<'_>, conn: ConnId) {
        let peer = ctx.peer_addr(conn).expect("an open connection has a peer");
        self.peers.insert(conn, peer);
        self.journal.push(Some(peer), ctx.now(), Ev::Open);
    }

    fn note(&self, ctx: &Ctx<'_>, conn: ConnId, ev: Ev) {
        let peer = self.peers.get(&conn).copied();
        self.journal.push(peer, ctx.now(), ev);
    }

    fn global(&self, ctx: &Ctx<'_>, ev: Ev) {
        self.journal.push(None, ctx.now(), ev);
    }

    fn close(&mut self, ctx: &Ctx<'_>, conn: ConnId, reason: &CloseReason) {
        let peer = self.peers.remove(&conn);
        self.journal
            .push(peer, ctx.now(), Ev::Close(Reason::from(reason)));
    }
}

// ---------------------------------------------------------------------
// The library's log lines.

struct Capture;

static CAPTURED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static CAPTURE: Capture = Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("iomux")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            CAPTURED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((record.target().to_string(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per process: every test that reads
/// log lines calls this first).
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Where the captured log is now: lines after it were logged later.
fn log_mark() -> usize {
    CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Whether the close reason `why` was logged for `peer` (a line `PEER: WHY`
/// of target `iomux::conn`) after `mark`. The loop logs it before
/// `on_close`, so once the journal shows the close it is there. A client
/// port is reused by later tests of this process (and may be by a
/// concurrent one towards another loop), hence the mark, and a search
/// rather than asking for the only line.
fn logged_reason(mark: usize, peer: SocketAddr, why: &str) -> bool {
    let line = format!("{peer}: {why}");
    CAPTURED.lock().unwrap_or_else(|e| e.into_inner())[mark..]
        .iter()
        .any(|(target, l)| target == "iomux::conn" && *l == line)
}

/// The `iomux::conn` lines about `peer`, for failure messages.
fn conn_lines(peer: SocketAddr) -> Vec<String> {
    let peer = peer.to_string();
    CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(target, line)| target == "iomux::conn" && line.contains(&peer))
        .map(|(_, line)| line.clone())
        .collect()
}

// ---------------------------------------------------------------------
// Client helpers.

/// Reads one `\n`-terminated line (without it).
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!("closed inside a line: {:?}", String::from_utf8_lossy(&line)),
            Ok(_) if byte[0] == b'\n' => return String::from_utf8_lossy(&line).into_owned(),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read failed inside a line: {e} (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

/// Sends `line` and returns the reply line.
fn ask(stream: &mut TcpStream, line: &str) -> String {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send a request");
    read_line(stream)
}

fn peer_of(stream: &TcpStream) -> SocketAddr {
    stream.local_addr().expect("a connected socket")
}

/// Waits until `instant` has passed: only where a test must show that
/// something does *not* happen for a while.
fn sleep_until(instant: Instant) {
    let now = Instant::now();
    if instant > now {
        thread::sleep(instant - now);
    }
}

/// The complete `\n`-terminated lines at the front of `input`, and the
/// bytes they use (the `\n` included).
fn lines(input: &[u8]) -> (Vec<String>, usize) {
    let (lines, used) = iomux::app::split_lines(input);
    let lines = lines
        .into_iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    (lines, used)
}

// ---------------------------------------------------------------------
// 1. Re-offer without new bytes.

/// Answers exactly one `\n` line per call (`+LINE`), leaving the rest.
struct OnePerCall {
    rec: Rec,
}

impl App for OnePerCall {
    type State = ();
    fn name(&self) -> &'static str {
        "one-per-call"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.rec.note(ctx, conn, Ev::Data(input.to_vec()));
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        let mut reply = b"+".to_vec();
        reply.extend_from_slice(&input[..=end]);
        let _ = ctx.send(conn, &reply);
        end + 1
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Requests left unconsumed by an app that answers one per call are
/// offered again without new bytes: three pipelined `PING`s in one write
/// get three replies, and 200 (past the loop's per-turn re-offer budget)
/// get 200, in order.
fn one_request_per_call_gets_every_reply(backend: &str) {
    let journal = Journal::default();
    let app = OnePerCall {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut c = lp.connect();
    c.write_all(b"PING\nPING\nPING\n").unwrap();
    assert_eq!(read_n(&mut c, 18), b"+PING\n+PING\n+PING\n");

    let burst: String = (0..200).map(|i| format!("r{i}\n")).collect();
    let expected: String = (0..200).map(|i| format!("+r{i}\n")).collect();
    c.write_all(burst.as_bytes()).unwrap();
    let got = read_n(&mut c, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    let peer = peer_of(&c);
    assert_eq!(journal.closed(peer), None, "never closed meanwhile");
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    lp.stop(LIVENESS);
}

/// At end of stream, what the app left is offered (again, without new
/// bytes) before `on_eof`: lines written together with the shutdown of the
/// client's write side are all answered, then `on_eof` runs (after the last
/// offer, which holds only the unfinished tail), then the connection
/// closes as `PeerClosed` and the client reads end of stream, no reset.
fn leftover_is_offered_before_eof(backend: &str) {
    let journal = Journal::default();
    let app = OnePerCall {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    for count in [3, 100] {
        let mut c = lp.connect();
        let peer = peer_of(&c);
        let mut request: String = (0..count).map(|i| format!("line{i}\n")).collect();
        request.push_str("partial");
        let expected: String = (0..count).map(|i| format!("+line{i}\n")).collect();
        c.write_all(request.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (got, error) = read_to_end(&mut c);
        assert!(error.is_none(), "{count} lines: {error:?}");
        assert_eq!(String::from_utf8_lossy(&got), expected, "{count} lines");
        assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);

        let events = journal.of(peer);
        let eof = events.iter().position(|e| *e == Ev::Eof);
        let eof = eof.unwrap_or_else(|| panic!("no on_eof: {events:?}"));
        assert_eq!(events.len(), eof + 2, "only the close after on_eof");
        assert_eq!(
            events[eof - 1],
            Ev::Data(b"partial".to_vec()),
            "the last offer before on_eof is the unfinished tail"
        );
        let offers = events.iter().filter(|e| matches!(e, Ev::Data(_))).count();
        assert!(offers > count, "{offers} offers for {count} lines + tail");
    }
    lp.stop(LIVENESS);
}

/// Answers at most `per_call` lines per call, echoing them; `big` gets 1 MiB
/// instead (far over the high-water mark). Receive buffers are made roomy
/// (through `Ctx::socket`), so a client's burst waits whole in the kernel.
struct Bounded {
    per_call: usize,
}

impl App for Bounded {
    type State = ();
    fn name(&self) -> &'static str {
        "bounded"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        if let Some(socket) = ctx.socket(conn) {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, 1 << 20);
        }
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        for _ in 0..self.per_call {
            let Some(end) = input[used..].iter().position(|&b| b == b'\n') else {
                break;
            };
            if &input[used..used + end] == b"big" {
                let _ = ctx.send(conn, &vec![b'b'; 1 << 20]);
            } else {
                let _ = ctx.send(conn, &input[used..=used + end]);
            }
            used += end + 1;
        }
        used
    }
}

/// An app that answers a bounded number of requests per call is never
/// stranded when one read uses up the read budget and empties the socket:
/// the input it left is offered again without new bytes on every backend
/// (a level-triggered one gets no new event for bytes already read).
/// Regression: on select, poll and level epoll the rest waited for the
/// client's next bytes.
fn bounded_app_is_not_stranded_by_the_read_budget(backend: &str) {
    let mut config = Config::default();
    // One full read uses the budget up.
    config.read_budget = 64 * 1024;
    let lp = LoopThread::start(backend, config, Bounded { per_call: 10 });
    let mut c = lp.connect();
    // While the big reply fills the connection the loop does not read, so
    // the burst below is read later in one full read.
    c.write_all(b"big\n").unwrap();
    let first = read_n(&mut c, 1);
    let requests: String = (0..8192).map(|i| format!("{i:07}\n")).collect();
    assert_eq!(requests.len(), 64 * 1024);
    c.write_all(requests.as_bytes()).unwrap();
    let big = read_n(&mut c, (1 << 20) - 1);
    assert!(first.iter().chain(&big).all(|&b| b == b'b'));
    let got = read_n(&mut c, requests.len());
    assert_eq!(String::from_utf8_lossy(&got), requests);
    drop(c);
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 2, 3. Deep pipelining, read slowly.

/// Answers `GET I` with a `len`-byte value made from `I`; with
/// `respect_full` it stops between requests while `Ctx::output_full`.
struct Values {
    rec: Rec,
    len: usize,
    respect_full: bool,
    /// The most pending output seen right after a reply was queued.
    max_pending: Arc<AtomicUsize>,
    /// Calls that stopped early because the output was full.
    stops: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl Values {
    fn new(journal: &Journal, len: usize, respect_full: bool) -> Values {
        Values {
            rec: Rec::new(journal),
            len,
            respect_full,
            max_pending: Arc::default(),
            stops: Arc::default(),
            served: Arc::default(),
        }
    }
}

/// The reply to `GET i`: `i`, then a letter that depends on `i`, `len`
/// bytes in all, ending in `\n`.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{i:08}:").into_bytes();
    v.resize(len - 1, b'a' + (i % 26) as u8);
    v.push(b'\n');
    v
}

impl App for Values {
    type State = ();
    fn name(&self) -> &'static str {
        "values"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if self.respect_full && ctx.output_full(conn) {
                self.stops.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let line = &input[used..used + end];
            used += end + 1;
            let index = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.strip_prefix("GET "))
                .and_then(|i| i.parse().ok());
            let Some(index) = index else {
                ctx.close_because(conn, "bad request");
                return used;
            };
            let _ = ctx.send(conn, &value(index, self.len));
            self.served.fetch_add(1, Ordering::Relaxed);
            self.max_pending
                .fetch_max(ctx.pending_output(conn), Ordering::Relaxed);
        }
        used
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Writes `count` pipelined `GET`s in one go from one thread (then, with
/// `then_eof`, shuts down its write side) and reads the replies slowly
/// (small reads, short pauses) from this one, checking them byte for byte
/// and in order. The connection must stay open throughout (with
/// `then_eof`: until the last reply, then end of stream after `on_eof`).
fn pipeline_read_slowly(
    lp: &LoopThread<Values>,
    journal: &Journal,
    count: usize,
    len: usize,
    then_eof: bool,
) {
    let mut c = lp.connect();
    let peer = peer_of(&c);
    let requests: String = (0..count).map(|i| format!("GET {i}\n")).collect();
    let mut writer = c.try_clone().unwrap();
    let writing = thread::spawn(move || {
        writer.write_all(requests.as_bytes())?;
        if then_eof {
            writer.shutdown(Shutdown::Write)?;
        }
        Ok::<(), io::Error>(())
    });
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let mut reads = 0usize;
    let total = count * len;
    let mut expected = Vec::new();
    let mut next = 0;
    while got < total {
        let n = match c.read(&mut buf[..(total - got).min(4096)]) {
            Ok(0) => panic!(
                "closed after {got} of {total} bytes: {:?}",
                journal.of(peer)
            ),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed after {got} of {total} bytes: {e}"),
        };
        while expected.len() < n {
            expected.extend_from_slice(&value(next, len));
            next += 1;
        }
        if buf[..n] != expected[..n] {
            let at = got + (0..n).find(|&k| buf[k] != expected[k]).unwrap_or(0);
            panic!("reply bytes differ at offset {at} (reply {})", at / len);
        }
        expected.drain(..n);
        got += n;
        reads += 1;
        if reads.is_multiple_of(16) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    writing.join().unwrap().expect("all requests written");
    if then_eof {
        let (rest, error) = read_to_end(&mut c);
        assert!(
            rest.is_empty() && error.is_none(),
            "{} bytes, {error:?}",
            rest.len()
        );
        assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
        assert_eq!(
            journal.of(peer),
            [Ev::Open, Ev::Eof, Ev::Close(Reason::PeerClosed)],
            "on_eof once every request was answered"
        );
        return;
    }
    assert_eq!(journal.closed(peer), None, "the reader was never cut off");
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
}

fn pipeline_config() -> Config {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    config
}

/// A client pipelining deeply and reading slowly, with an app that stops
/// between requests while `output_full`: every reply arrives, in order and
/// byte-exact, the connection is never closed, and the server's pending
/// output never exceeds the high-water mark plus one reply (memory is
/// bounded); the app did meet `output_full`. 20,000 requests of a
/// 1,000-byte value (`redis-benchmark -d 1000 -P 20000`); and again with
/// the client's end of stream right behind the requests, which waits
/// (`on_eof`) until every request was offered and answered.
fn deep_pipeline_small_values_read_slowly(backend: &str) {
    deep_pipeline(backend, 20_000, 1000, false);
    deep_pipeline(backend, 20_000, 1000, true);
}

/// As above with 64 pipelined 100 KB replies, each alone bigger than the
/// high-water mark (`redis-benchmark -d 100000 -P 64`).
fn deep_pipeline_large_values_read_slowly(backend: &str) {
    deep_pipeline(backend, 64, 100_000, false);
}

fn deep_pipeline(backend: &str, count: usize, len: usize, then_eof: bool) {
    let journal = Journal::default();
    let app = Values::new(&journal, len, true);
    let (max_pending, stops, served) = (
        app.max_pending.clone(),
        app.stops.clone(),
        app.served.clone(),
    );
    let config = pipeline_config();
    let high = config.high_water;
    let lp = LoopThread::start(backend, config, app);
    pipeline_read_slowly(&lp, &journal, count, len, then_eof);
    assert_eq!(served.load(Ordering::Relaxed), count);
    let max = max_pending.load(Ordering::Relaxed);
    assert!(
        max <= high + len,
        "pending output reached {max} bytes (high water {high} + one reply {len})"
    );
    assert!(
        stops.load(Ordering::Relaxed) > 0,
        "the burst never met back-pressure, so this tested nothing"
    );
    lp.stop(LIVENESS);
}

/// Replies are not pushed output: an app that ignores `output_full` and
/// answers the whole burst at once still gets every reply to a client that
/// reads (slowly), though its pending output goes far past a 64 KiB
/// `max_output`.
fn replies_are_not_bound_by_max_output(backend: &str) {
    let journal = Journal::default();
    let app = Values::new(&journal, 1000, false);
    let max_pending = app.max_pending.clone();
    let mut config = pipeline_config();
    config.max_output = 64 * 1024;
    let lp = LoopThread::start(backend, config, app);
    pipeline_read_slowly(&lp, &journal, 20_000, 1000, false);
    let max = max_pending.load(Ordering::Relaxed);
    assert!(
        max > 64 * 1024,
        "pending output stayed at {max} bytes, under max_output: nothing was proved"
    );
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 4. Output pushed to peers that do not read.

/// A publisher's `push N` sends N bytes to every other connection (pushed
/// output) and answers `pushed`; `ping` answers `pong`. Connections' send
/// buffers are made small (through `Ctx::socket`) so the kernel absorbs
/// little. After a push, notes each connection whose pending output is
/// over one of the `watch` marks (`Note(NAME)`, once per mark). Answers a
/// limit with `limit_reply`, if any.
struct Pusher {
    rec: Rec,
    watch: Vec<(usize, &'static str)>,
    noted: Vec<(ConnId, &'static str)>,
    /// Sent from `on_limit`.
    limit_reply: Option<&'static [u8]>,
}

impl App for Pusher {
    type State = ();
    fn name(&self) -> &'static str {
        "pusher"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        if let Some(socket) = ctx.socket(conn) {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(socket, 16 * 1024);
        }
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            if line == "ping" {
                let _ = ctx.send(conn, b"pong\n");
            } else if let Some(n) = line.strip_prefix("push ").and_then(|n| n.parse().ok()) {
                ctx.broadcast(&vec![b'p'; n], Some(conn));
                let peers: Vec<ConnId> = self.rec.peers.keys().copied().collect();
                for other in peers {
                    for &(mark, name) in &self.watch {
                        if ctx.pending_output(other) > mark && !self.noted.contains(&(other, name))
                        {
                            self.noted.push((other, name));
                            self.rec.note(ctx, other, Ev::Note(name.into()));
                        }
                    }
                }
                let _ = ctx.send(conn, b"pushed\n");
            } else {
                ctx.close_because(conn, "bad request");
            }
        }
        used
    }
    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        self.rec.note(ctx, conn, Ev::Limit(limit));
        if let Some(reply) = self.limit_reply {
            let _ = ctx.send(conn, reply);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A client that reads everything it is sent, counting the bytes.
struct Reader {
    stream: TcpStream,
    got: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reader {
    fn start(stream: TcpStream) -> Reader {
        let got = Arc::new(AtomicUsize::new(0));
        let mut reading = stream.try_clone().unwrap();
        let counter = got.clone();
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = reading.read(&mut buf) {
                counter.fetch_add(n, Ordering::SeqCst);
            }
        });
        Reader {
            stream,
            got,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until at least `n` bytes were read.
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + LIVENESS;
        while self.got.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the reading client got {} of {n} bytes",
                self.got.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PUSH: usize = 32 * 1024;

/// More than the kernel buffers of a connection that does not read take
/// (its receive window and our small send buffer).
const DEEP: usize = 1 << 20;

/// Asks the publisher for one push and waits for its `pushed`.
fn push(publisher: &mut TcpStream) {
    assert_eq!(ask(publisher, &format!("push {PUSH}")), "pushed");
}

/// Output pushed to a connection that does not read: once over the hard
/// `max_output` the app's `on_limit(Limit::Output)` runs and then the
/// connection closes with `CloseReason::Limit(Limit::Output)` (logged as
/// such); a receiver that reads gets every push and stays open.
fn pushed_output_hard_limit_closes_non_reader(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let app = Pusher {
        rec: Rec::new(&journal),
        watch: Vec::new(),
        noted: Vec::new(),
        limit_reply: None,
    };
    let mut config = Config::default();
    config.max_output = 256 * 1024;
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let (reader_peer, sleeper_peer) = (peer_of(&reader.stream), peer_of(&sleeper));
    journal.wait_open(reader_peer);
    journal.wait_open(sleeper_peer);

    let mut pushes = 0;
    while journal.closed(sleeper_peer).is_none() {
        assert!(
            pushes < 2000,
            "{} MiB pushed, never over the limit",
            pushes / 32
        );
        push(&mut publisher);
        pushes += 1;
        // Paced by the reader, which never has more than one push pending.
        reader.wait_for(pushes * PUSH);
    }
    let max = 256 * 1024;
    assert_eq!(
        journal.of(sleeper_peer),
        vec![
            Ev::Open,
            Ev::Limit(Limit::Output { max }),
            Ev::Close(Reason::Limit(Limit::Output { max })),
        ],
        "on_limit, then the close"
    );
    assert!(
        logged_reason(
            mark,
            sleeper_peer,
            "output limit exceeded (client not reading): hard limit 262144 bytes"
        ),
        "logged: {:?}",
        conn_lines(sleeper_peer)
    );
    push(&mut publisher);
    reader.wait_for((pushes + 1) * PUSH);
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    drop((reader, sleeper));
    lp.stop(LIVENESS);
}

/// The soft output limit: a non-reader over it is closed only once it has
/// been over for the whole period (`Limit::OutputSoft`, after `on_limit`),
/// not before; a receiver that went over but then read everything before
/// the period ended stays open; a receiver that reads throughout is
/// unaffected.
fn pushed_output_soft_limit_closes_after_its_period(backend: &str) {
    let journal = Journal::default();
    let soft = 128 * 1024;
    let period = Duration::from_millis(300);
    let app = Pusher {
        rec: Rec::new(&journal),
        // Over the soft limit; and far enough over it that the kernel cannot
        // take enough more to bring it back under.
        watch: vec![(soft, "over"), (soft + DEEP, "deep")],
        noted: Vec::new(),
        limit_reply: None,
    };
    let mut config = Config::default();
    config.max_output = 64 << 20;
    config.max_output_soft = Some((soft, period));
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let late = lp.connect();
    let peers = [peer_of(&reader.stream), peer_of(&sleeper), peer_of(&late)];
    for peer in peers {
        journal.wait_open(peer);
    }
    let [reader_peer, sleeper_peer, late_peer] = peers;
    let noted = |peer, name: &str| {
        journal
            .timed(peer)
            .into_iter()
            .find(|(_, ev)| *ev == Ev::Note(name.into()))
            .map(|(at, _)| at)
    };

    // Pushes, paced by the reader, until the late reader is over the limit.
    let mut pushes = 0;
    while noted(late_peer, "over").is_none() {
        assert!(pushes < 2000, "never over the soft limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    // Then it reads everything it was sent, and goes on reading.
    let late = Reader::start(late);
    late.wait_for(pushes * PUSH);
    let late_over = noted(late_peer, "over").expect("seen over");
    let in_time = Instant::now() < late_over + period;
    // The sleeper never reads: on until it is far over, or closed.
    while noted(sleeper_peer, "deep").is_none() && journal.closed(sleeper_peer).is_none() {
        assert!(pushes < 2000, "never far over the soft limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
        if in_time {
            late.wait_for(pushes * PUSH);
        }
    }

    let (closed_at, reason) = journal.wait_closed(sleeper_peer);
    let limit = Limit::OutputSoft { max: soft, period };
    assert_eq!(reason, Reason::Limit(limit));
    let events: Vec<Ev> = journal
        .of(sleeper_peer)
        .into_iter()
        .filter(|e| *e != Ev::Note("deep".into()))
        .collect();
    assert_eq!(
        events,
        [
            Ev::Open,
            Ev::Note("over".into()),
            Ev::Limit(limit),
            Ev::Close(Reason::Limit(limit))
        ]
    );
    // The loop's clock for "over since" restarts whenever the output is
    // written back under the limit, so it started no earlier than the first
    // time the app saw it over.
    let held = closed_at - noted(sleeper_peer, "over").expect("seen over");
    assert!(held >= period, "closed after {held:?} over the soft limit");
    assert!(held < period + LIVENESS, "closed only after {held:?}");

    // A round trip now is served after every timer due before it.
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    if in_time {
        assert_eq!(journal.closed(late_peer), None, "drained in time, kept");
    } else {
        eprintln!("note: the late reader drained after the period; not checked");
    }
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    drop((reader, sleeper, late));
    lp.stop(LIVENESS);
}

/// A last reply queued in `on_limit` for a peer that does not read can
/// never be written: the connection still closes, with `Limit(Output)`,
/// once the grace period is over (not before, not never); nothing more is
/// pushed to it meanwhile, and a reading receiver is unaffected.
fn last_reply_to_a_non_reader_waits_at_most_the_grace(backend: &str) {
    let journal = Journal::default();
    let app = Pusher {
        rec: Rec::new(&journal),
        // What it can hold: up to the limit, the push that went over, the
        // last reply; more would be pushes queued after the limit.
        watch: vec![(256 * 1024 + PUSH + 64, "grew")],
        noted: Vec::new(),
        limit_reply: Some(b"-ERR you are not reading\n"),
    };
    let grace = Duration::from_millis(300);
    let mut config = Config::default();
    config.max_output = 256 * 1024;
    config.shutdown_grace = grace;
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let (reader_peer, sleeper_peer) = (peer_of(&reader.stream), peer_of(&sleeper));
    journal.wait_open(reader_peer);
    journal.wait_open(sleeper_peer);
    let limit = Limit::Output { max: 256 * 1024 };
    let mut pushes = 0;
    while !journal.of(sleeper_peer).contains(&Ev::Limit(limit)) {
        assert!(pushes < 2000, "never over the limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    let limit_at = journal
        .timed(sleeper_peer)
        .into_iter()
        .find(|(_, e)| *e == Ev::Limit(limit))
        .map(|(at, _)| at)
        .expect("just seen");
    // Pushes go on meanwhile; they are not queued for it.
    for _ in 0..4 {
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    let (closed_at, reason) = journal.wait_closed(sleeper_peer);
    assert_eq!(reason, Reason::Limit(limit));
    assert!(
        closed_at - limit_at >= grace,
        "closed after {:?}",
        closed_at - limit_at
    );
    assert_eq!(
        journal.of(sleeper_peer),
        [Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    drop((reader, sleeper));
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 5. A request over max_input.

/// Answers each line with `ok LEN`; in `on_limit` sends `reply`, if any.
struct Sizer {
    rec: Rec,
    reply: Option<&'static [u8]>,
}

impl App for Sizer {
    type State = ();
    fn name(&self) -> &'static str {
        "sizer"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            let _ = ctx.send(conn, format!("ok {}\n", line.len()).as_bytes());
        }
        used
    }
    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        self.rec.note(ctx, conn, Ev::Limit(limit));
        if let Some(reply) = self.reply {
            let _ = ctx.send(conn, reply);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

const MAX_INPUT: usize = 64 * 1024;

/// Starts writing 200 KiB without a newline from another thread (write
/// errors are expected once the server closes).
fn send_oversized(c: &TcpStream) -> thread::JoinHandle<()> {
    let mut writer = c.try_clone().unwrap();
    thread::spawn(move || {
        let _ = writer.write_all(&vec![b'x'; 200 * 1024]);
    })
}

fn sizer_loop(backend: &str, journal: &Journal, reply: Option<&'static [u8]>) -> LoopThread<Sizer> {
    let mut config = Config::default();
    config.max_input = MAX_INPUT;
    let app = Sizer {
        rec: Rec::new(journal),
        reply,
    };
    LoopThread::start(backend, config, app)
}

/// A request over `max_input`: `on_limit(Limit::Input)` runs and its error
/// reply is written before the close; the client reads exactly that reply,
/// then end of stream (no reset, though it was still sending), and the
/// close reason is `Limit(Input)`, logged.
fn oversized_request_answered_before_close(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = sizer_loop(backend, &journal, Some(b"-ERR too large\n"));
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "hello"), "ok 5");
    let writing = send_oversized(&c);
    let (got, error) = read_to_end(&mut c);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR too large\n");
    assert!(error.is_none(), "the reply was followed by {error:?}");
    writing.join().unwrap();
    drop(c);
    let limit = Limit::Input { max: MAX_INPUT };
    assert_eq!(journal.wait_closed(peer).1, Reason::Limit(limit));
    assert_eq!(
        journal.of(peer),
        vec![Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    assert!(
        logged_reason(mark, peer, "input limit exceeded (65536 bytes unconsumed)"),
        "logged: {:?}",
        conn_lines(peer)
    );
    lp.stop(LIVENESS);
}

/// Without a reply from `on_limit`, a request over `max_input` closes the
/// connection at once (well before the grace period a last reply would
/// get), with `Limit(Input)`.
fn oversized_request_without_reply_closes_promptly(backend: &str) {
    let journal = Journal::default();
    let lp = sizer_loop(backend, &journal, None);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "hello"), "ok 5");
    let started = Instant::now();
    let writing = send_oversized(&c);
    expect_closed(&mut c, "over max_input");
    let (_, reason) = journal.wait_closed(peer);
    let took = started.elapsed();
    let limit = Limit::Input { max: MAX_INPUT };
    assert_eq!(reason, Reason::Limit(limit));
    assert_eq!(
        journal.of(peer),
        vec![Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    let grace = Config::default().shutdown_grace;
    assert!(took < grace, "closed after {took:?}, not at once");
    writing.join().unwrap();
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 6. Pause, resume, drain.

const RESUME: u64 = 1;

/// `pause`: pauses reading, answers `paused` and resumes on a connection
/// timer `resume` later (the rest of the input waits). `big N`: N bytes of
/// output at once, noting `output_full` after it (and leaving the rest of
/// the input while it is full). Other lines: `got LINE`.
struct Pauser {
    rec: Rec,
    resume: Duration,
}

impl App for Pauser {
    type State = ();
    fn name(&self) -> &'static str {
        "pauser"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.rec.note(ctx, conn, Ev::Data(input.to_vec()));
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            used += end + 1;
            if line == "pause" {
                ctx.pause_reading(conn);
                ctx.set_conn_timer(conn, self.resume, RESUME);
                let _ = ctx.send(conn, b"paused\n");
                return used;
            } else if let Some(n) = line.strip_prefix("big ").and_then(|n| n.parse().ok()) {
                let _ = ctx.send(conn, &vec![b'b'; n]);
                let full = ctx.output_full(conn);
                self.rec.note(ctx, conn, Ev::Note(format!("full {full}")));
                if full {
                    // The rest waits until the output drains.
                    return used;
                }
            } else {
                let _ = ctx.send(conn, format!("got {line}\n").as_bytes());
            }
        }
        used
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), timer: TimerId) {
        self.rec
            .note(ctx, conn, Ev::ConnTimer(timer.tag(), String::new()));
        if timer.tag() == RESUME {
            ctx.resume_reading(conn);
        }
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Drain);
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

fn pauser_loop(backend: &str, journal: &Journal) -> LoopThread<Pauser> {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    let app = Pauser {
        rec: Rec::new(journal),
        resume: Duration::from_millis(200),
    };
    LoopThread::start(backend, config, app)
}

/// A connection paused by its app whose peer then resets is closed with
/// the error at once, before the app resumes it: nothing waits for the app
/// to act (on the completion driver no receive is armed then, so a poll with
/// no interest hears the reset). `select` cannot watch a descriptor for
/// errors alone (`Interest::NONE`), so there the reset is seen when reading
/// resumes: later, but still a close with the error.
fn a_paused_connection_whose_peer_resets_is_closed(backend: &str) {
    let journal = Journal::default();
    let app = Pauser {
        rec: Rec::new(&journal),
        resume: Duration::from_secs(3),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    c.write_all(b"pause\n").unwrap();
    assert_eq!(read_line(&mut c), "paused");
    rustix::net::sockopt::set_socket_linger(&c, Some(Duration::ZERO)).unwrap();
    drop(c); // a reset
    let (_, reason) = journal.wait_closed(peer);
    assert!(
        matches!(reason, Reason::Error(_) | Reason::PeerClosed),
        "closed as {reason:?}"
    );
    let resumed = journal
        .of(peer)
        .iter()
        .any(|e| matches!(e, Ev::ConnTimer(RESUME, _)));
    assert_eq!(
        resumed,
        backend == "select",
        "closed before the resume on every backend but select: {:?}",
        journal.of(peer)
    );
    lp.stop(LIVENESS);
}

/// Whether `ev` is an offer of input other than a `pause` request.
fn offers_other_than_pause(ev: &Ev) -> bool {
    matches!(ev, Ev::Data(d) if !d.starts_with(b"pause"))
}

/// `pause_reading` holds input back until `resume_reading`: what came in
/// the same write as `pause` is offered only after the resume, without new
/// bytes; what the client sends while paused likewise; an end of stream
/// that arrives while paused is told (`on_eof`) only after the resume and
/// the lines before it.
fn pause_and_resume_reading(backend: &str) {
    let journal = Journal::default();
    let lp = pauser_loop(backend, &journal);

    // In the same write: already in the loop's buffer when it pauses.
    let mut c = lp.connect();
    let peer = peer_of(&c);
    c.write_all(b"pause\nA\nB\n").unwrap();
    assert_eq!(read_line(&mut c), "paused");
    assert_eq!(read_line(&mut c), "got A");
    assert_eq!(read_line(&mut c), "got B");
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    assert!(
        !events[..resumed].iter().any(offers_other_than_pause),
        "input offered while paused: {events:?}"
    );
    assert!(
        events[resumed + 1..].contains(&Ev::Data(b"A\nB\n".to_vec())),
        "the held input is offered after the resume without new bytes: {events:?}"
    );

    // Sent while paused: waits in the socket.
    let mut d = lp.connect();
    let peer = peer_of(&d);
    assert_eq!(ask(&mut d, "pause"), "paused");
    d.write_all(b"C\n").unwrap();
    d.write_all(b"D\n").unwrap();
    assert_eq!(read_line(&mut d), "got C");
    assert_eq!(read_line(&mut d), "got D");
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    assert!(
        !events[..resumed].iter().any(offers_other_than_pause),
        "input offered while paused: {events:?}"
    );
    assert_eq!(ask(&mut d, "still here"), "got still here");

    // The end of stream comes while paused: nothing is stranded, the lines
    // are answered after the resume, then `on_eof`, then the close.
    let mut e = lp.connect();
    let peer = peer_of(&e);
    assert_eq!(ask(&mut e, "pause"), "paused");
    e.write_all(b"E\nF\n").unwrap();
    e.shutdown(Shutdown::Write).unwrap();
    let (got, error) = read_to_end(&mut e);
    assert_eq!(String::from_utf8_lossy(&got), "got E\ngot F\n");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    let eof = events.iter().position(|e| *e == Ev::Eof);
    assert!(eof.is_some_and(|eof| eof > resumed), "{events:?}");
    drop((c, d));
    lp.stop(LIVENESS);
}

/// How far ahead of its app a connection may have received: the readiness
/// backends read 64 KiB at a time; the completion driver's receive brings
/// at most a 64 KiB window per arming, plus the rest of one provided buffer.
const AHEAD_BOUND: u64 = 64 * 1024 + 4096;
const MEASURE: u64 = 2;

#[derive(Clone, Copy, PartialEq)]
enum AheadPhase {
    /// Paused from the start, while the socket fills.
    Held,
    /// Resumed: the first offer pauses it again.
    Resumed,
    /// Paused after taking one offer, until the measurement.
    Paused,
    /// Measured: takes everything from now on.
    Taking,
}

/// Lets the socket fill while paused, resumes, pauses again at the first
/// offer, and a little later notes how many bytes the loop holds that it
/// has not offered (`ahead N`); then takes everything (`taken N` at EOF).
struct Ahead {
    rec: Rec,
    phase: AheadPhase,
    taken: u64,
}

impl App for Ahead {
    type State = ();
    fn name(&self) -> &'static str {
        "ahead"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
        ctx.pause_reading(conn);
        ctx.set_conn_timer(conn, Duration::from_millis(200), RESUME);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.taken += input.len() as u64;
        if self.phase == AheadPhase::Resumed {
            self.phase = AheadPhase::Paused;
            ctx.pause_reading(conn);
            ctx.set_conn_timer(conn, Duration::from_millis(300), MEASURE);
        }
        input.len()
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), timer: TimerId) {
        match (timer.tag(), self.phase) {
            (RESUME, AheadPhase::Held) => self.phase = AheadPhase::Resumed,
            (MEASURE, AheadPhase::Paused) => {
                let ahead = ctx.stats().bytes_in - self.taken;
                self.rec.note(ctx, conn, Ev::Note(format!("ahead {ahead}")));
                self.phase = AheadPhase::Taking;
            }
            _ => return,
        }
        ctx.resume_reading(conn);
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        let taken = self.taken;
        self.rec.note(ctx, conn, Ev::Note(format!("taken {taken}")));
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A connection whose app stops taking input while a fast peer sends holds
/// at most a window of input received ahead (on `uring` the multishot
/// receive keeps going until its cancel lands, and without a cap it could
/// take a whole socket's worth, up to the buffer ring); nothing is lost.
fn a_paused_connection_holds_at_most_a_window_received_ahead(backend: &str) {
    const SENT: usize = 4 << 20;
    let journal = Journal::default();
    let app = Ahead {
        rec: Rec::new(&journal),
        phase: AheadPhase::Held,
        taken: 0,
    };
    capture_logs();
    let lp = LoopThread::start(backend, Config::default(), app);
    let uncapped = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(target, line)| {
            target == "iomux::uring" && line.starts_with("this kernel does not cap")
        });
    if backend == "uring" && uncapped {
        eprintln!("skipped on uring: this kernel does not cap a multishot receive (Linux 6.17)");
        lp.stop(LIVENESS);
        return;
    }
    let c = lp.connect();
    let peer = peer_of(&c);
    let writer = thread::spawn(move || {
        let mut c = c;
        c.write_all(&vec![b'x'; SENT])
            .expect("the loop takes it all");
        c.shutdown(Shutdown::Write).expect("half-close");
        c
    });
    let note = |prefix: &str| {
        let prefix = format!("{prefix} ");
        journal.wait(&prefix, |es| {
            es.iter().any(|e| {
                e.peer == Some(peer) && matches!(&e.ev, Ev::Note(n) if n.starts_with(&prefix))
            })
        });
        journal
            .of(peer)
            .into_iter()
            .find_map(|ev| match ev {
                Ev::Note(n) => n.strip_prefix(&prefix).and_then(|v| v.parse::<u64>().ok()),
                _ => None,
            })
            .expect("a number")
    };
    let ahead = note("ahead");
    assert!(
        ahead <= AHEAD_BOUND,
        "{ahead} bytes received ahead of the app (at most {AHEAD_BOUND})"
    );
    assert_eq!(note("taken"), SENT as u64, "every byte reached the app");
    drop(writer.join().expect("the writer"));
    lp.stop(LIVENESS);
}

/// `on_drain` runs once after `output_full` was true and the output was
/// written down to the low-water mark; input is held meanwhile and offered
/// after; a connection that was never full is never told.
fn drain_is_told_once_after_output_full(backend: &str) {
    let journal = Journal::default();
    let lp = pauser_loop(backend, &journal);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "small"), "got small");
    let big = 1 << 20;
    c.write_all(format!("big {big}\nafter\n").as_bytes())
        .unwrap();
    let got = read_n(&mut c, big);
    assert!(got.iter().all(|&b| b == b'b'));
    assert_eq!(read_line(&mut c), "got after");
    assert_eq!(ask(&mut c, "again"), "got again");
    let events = journal.of(peer);
    let full = events
        .iter()
        .position(|e| *e == Ev::Note("full true".into()))
        .unwrap_or_else(|| panic!("output_full was not true after 1 MiB: {events:?}"));
    let drains: Vec<usize> = (0..events.len())
        .filter(|&i| events[i] == Ev::Drain)
        .collect();
    assert_eq!(drains.len(), 1, "told once: {events:?}");
    assert!(drains[0] > full, "drained after it was full: {events:?}");
    let after = events
        .iter()
        .position(|e| matches!(e, Ev::Data(d) if d.starts_with(b"after")));
    assert!(
        after.is_some_and(|after| after > drains[0]),
        "the request after the big reply is offered after the drain: {events:?}"
    );

    let mut other = lp.connect();
    let other_peer = peer_of(&other);
    assert_eq!(ask(&mut other, "x"), "got x");
    assert!(!journal.of(other_peer).contains(&Ev::Drain));
    drop((c, other));
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 7. Timers.

/// Per connection: a label and the timers it armed.
#[derive(Default)]
struct TimerState {
    label: String,
    timers: HashMap<u64, TimerId>,
}

/// `name X`, `arm ID MS`, `cancel ID` (connection timers, answered `ok`,
/// `armed ID`, `cancel ID BOOL`), `garm ID MS`, `gcancel ID` (loop-wide
/// timers). A connection timer sends `fired ID`, a loop-wide one `gfired
/// ID` to the connection that armed it.
struct Timed {
    rec: Rec,
    global: HashMap<u64, (TimerId, ConnId)>,
}

fn id_and_ms(args: &str) -> Option<(u64, Duration)> {
    let (id, ms) = args.split_once(' ')?;
    Some((id.parse().ok()?, Duration::from_millis(ms.parse().ok()?)))
}

impl App for Timed {
    type State = TimerState;
    fn name(&self) -> &'static str {
        "timed"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut TimerState, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        st: &mut TimerState,
        input: &[u8],
    ) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            let (cmd, args) = line.split_once(' ').unwrap_or((&line, ""));
            let reply = match (cmd, id_and_ms(args), args.parse::<u64>()) {
                ("name", _, _) => {
                    st.label = args.to_string();
                    "ok".to_string()
                }
                ("arm", Some((id, after)), _) => {
                    let timer = ctx.set_conn_timer(conn, after, id).expect("armed");
                    st.timers.insert(id, timer);
                    format!("armed {id}")
                }
                ("cancel", _, Ok(id)) => {
                    let timer = st.timers.get(&id).copied();
                    let cancelled = timer.is_some_and(|t| ctx.cancel_timer(t));
                    format!("cancel {id} {cancelled}")
                }
                ("garm", Some((id, after)), _) => {
                    let timer = ctx.set_timer(after, id).expect("armed");
                    self.global.insert(id, (timer, conn));
                    format!("garmed {id}")
                }
                ("gcancel", _, Ok(id)) => {
                    let timer = self.global.get(&id).map(|(t, _)| *t);
                    let cancelled = timer.is_some_and(|t| ctx.cancel_timer(t));
                    format!("gcancel {id} {cancelled}")
                }
                _ => "?".to_string(),
            };
            let _ = ctx.send(conn, format!("{reply}\n").as_bytes());
        }
        used
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: &mut TimerState, t: TimerId) {
        let id = t.tag();
        assert_eq!(
            st.timers.get(&id),
            Some(&t),
            "fired as set_conn_timer named it"
        );
        self.rec
            .note(ctx, conn, Ev::ConnTimer(id, st.label.clone()));
        let _ = ctx.send(conn, format!("fired {id}\n").as_bytes());
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, t: TimerId) {
        let id = t.tag();
        self.rec.global(ctx, Ev::Timer(id));
        if let Some(&(armed, conn)) = self.global.get(&id) {
            assert_eq!(armed, t, "fired as set_timer named it");
            let _ = ctx.send(conn, format!("gfired {id}\n").as_bytes());
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: TimerState, reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Sends `script` in one write and reads lines until `replies` command
/// replies and the `fired` line `last` (if any) came; returns (replies,
/// fired).
fn run_script(
    c: &mut TcpStream,
    script: &str,
    replies: usize,
    last: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    c.write_all(script.as_bytes()).unwrap();
    let (mut answers, mut fired) = (Vec::new(), Vec::new());
    let waiting = |fired: &Vec<String>| last.is_some_and(|l| !fired.iter().any(|f| f == l));
    while answers.len() < replies || waiting(&fired) {
        let line = read_line(c);
        if line.starts_with("fired ") || line.starts_with("gfired ") {
            fired.push(line);
        } else {
            answers.push(line);
        }
    }
    (answers, fired)
}

/// Connection timers fire with their id, for their connection, with its
/// state; a cancelled one never fires (a later one does, and timers fire in
/// deadline order); cancelling a fired or cancelled timer says false; a
/// connection that closes with timers armed never gets `on_conn_timer`
/// afterwards, nor does a new connection in its slot. Loop-wide
/// `set_timer`/`cancel_timer` likewise.
fn connection_and_loop_timers(backend: &str) {
    let journal = Journal::default();
    let app = Timed {
        rec: Rec::new(&journal),
        global: HashMap::new(),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut a = lp.connect();
    let mut b = lp.connect();
    let (b_replies, b_fired) = run_script(&mut b, "name b\narm 7 30\n", 2, Some("fired 7"));
    let (a_replies, a_fired) = run_script(
        &mut a,
        "name a\narm 1 50\narm 2 100\ncancel 2\narm 3 150\n",
        5,
        Some("fired 3"),
    );
    assert_eq!(b_replies, ["ok", "armed 7"]);
    assert_eq!(b_fired, ["fired 7"]);
    assert_eq!(
        a_replies,
        ["ok", "armed 1", "armed 2", "cancel 2 true", "armed 3"]
    );
    assert_eq!(
        a_fired,
        ["fired 1", "fired 3"],
        "the cancelled 2 never fired"
    );
    assert_eq!(ask(&mut a, "cancel 1"), "cancel 1 false", "fired already");
    assert_eq!(
        ask(&mut a, "cancel 2"),
        "cancel 2 false",
        "cancelled already"
    );
    let label = |s: &str| s.to_string();
    assert_eq!(
        journal.of(peer_of(&a))[1..],
        [Ev::ConnTimer(1, label("a")), Ev::ConnTimer(3, label("a"))]
    );
    assert_eq!(journal.of(peer_of(&b))[1..], [Ev::ConnTimer(7, label("b"))]);

    // Closed with two timers armed; a new connection likely takes its slot.
    let mut c = lp.connect();
    let c_peer = peer_of(&c);
    let (replies, _) = run_script(&mut c, "name c\narm 9 100\narm 10 100\n", 3, None);
    assert_eq!(replies, ["ok", "armed 9", "armed 10"]);
    drop(c);
    journal.wait_closed(c_peer);
    let mut d = lp.connect();
    assert_eq!(ask(&mut d, "name d"), "ok");
    // Due after c's timers: once it fires, theirs were due too.
    let (_, fired) = run_script(&mut a, "arm 11 300\n", 1, Some("fired 11"));
    assert_eq!(fired, ["fired 11"]);
    let conn_timers = journal.count(|e| matches!(e, Ev::ConnTimer(..)));
    assert_eq!(conn_timers, 4, "7, 1, 3, 11 and nothing for c or d");
    assert_eq!(journal.of(peer_of(&d)), [Ev::Open]);

    // Loop-wide.
    let (replies, fired) = run_script(
        &mut a,
        "garm 100 50\ngarm 101 80\ngcancel 101\ngarm 102 120\n",
        4,
        Some("gfired 102"),
    );
    assert_eq!(
        replies,
        ["garmed 100", "garmed 101", "gcancel 101 true", "garmed 102"]
    );
    assert_eq!(fired, ["gfired 100", "gfired 102"]);
    assert_eq!(ask(&mut a, "gcancel 100"), "gcancel 100 false");
    assert_eq!(
        journal.count(|e| matches!(e, Ev::Timer(_))),
        2,
        "101 never fired"
    );
    drop((a, b, d));
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 8. Per-connection state.

#[derive(Default)]
struct Count(u64);

/// `n`: counts in the connection's state and answers the count. `quit`:
/// answers `bye` and closes after the flush. `bad`: `close_because`.
struct Counter {
    rec: Rec,
}

impl App for Counter {
    type State = Count;
    fn name(&self) -> &'static str {
        "counter"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut Count, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: &mut Count, input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            match line.as_str() {
                "n" => {
                    st.0 += 1;
                    let _ = ctx.send(conn, format!("{}\n", st.0).as_bytes());
                }
                "quit" => {
                    let _ = ctx.send(conn, b"bye\n");
                    ctx.close_after_flush(conn);
                }
                _ => ctx.close_because(conn, format!("bad request {line:?}")),
            }
        }
        used
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: Count, reason: &CloseReason) {
        self.rec.note(ctx, conn, Ev::Final(st.0));
        self.rec.close(ctx, conn, reason);
    }
}

/// `App::State` is per connection: each connection's counter counts its
/// own requests, and `on_close` gets its final value by value. A
/// connection in a freed slot starts from `Default`. Also: `close_after_flush`
/// writes the last reply first (`CloseReason::App`), `close_because` closes
/// with `AppError` and its reason is logged.
fn state_is_per_connection_and_returned_on_close(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let app = Counter {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut a = lp.connect();
    let mut b = lp.connect();
    let (pa, pb) = (peer_of(&a), peer_of(&b));
    assert_eq!(ask(&mut a, "n"), "1");
    assert_eq!(ask(&mut b, "n"), "1");
    a.write_all(b"n\nn\n").unwrap();
    b.write_all(b"n\nn\nn\nn\n").unwrap();
    assert_eq!(read_n(&mut a, 4), b"2\n3\n");
    assert_eq!(read_n(&mut b, 8), b"2\n3\n4\n5\n");

    a.write_all(b"quit\n").unwrap();
    let (got, error) = read_to_end(&mut a);
    assert_eq!(String::from_utf8_lossy(&got), "bye\n");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(journal.wait_closed(pa).1, Reason::App);

    b.write_all(b"bad\n").unwrap();
    expect_closed(&mut b, "after a bad request");
    let why = "bad request \"bad\"".to_string();
    assert_eq!(journal.wait_closed(pb).1, Reason::AppError(why.clone()));
    assert!(
        logged_reason(mark, pb, &why),
        "logged: {:?}",
        conn_lines(pb)
    );

    let mut c = lp.connect();
    let pc = peer_of(&c);
    assert_eq!(
        ask(&mut c, "n"),
        "1",
        "a new connection starts from Default"
    );
    drop(c);
    journal.wait_closed(pc);
    let finals = |peer| {
        journal
            .of(peer)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Final(n) => Some(n),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(finals(pa), [3]);
    assert_eq!(finals(pb), [5]);
    assert_eq!(finals(pc), [1]);
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 9. Idle, not reading.

/// `flood`: answers with 1 MiB at once (far over the high-water mark) and
/// again on every `on_drain`, so the connection stays full once the kernel
/// buffers are. `burst`: 8 MiB once. `pause`: pauses reading for good, answers `paused`.
/// Anything else: `ok`. The state says whether the connection floods.
struct Flooder {
    rec: Rec,
}

const FLOOD: usize = 1 << 20;

/// More than the kernel buffers of a connection take, so some stays
/// pending in the loop until the client reads.
const BURST: usize = 8 << 20;

impl App for Flooder {
    type State = bool;
    fn name(&self) -> &'static str {
        "flooder"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut bool, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        flooding: &mut bool,
        input: &[u8],
    ) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            self.rec
                .note(ctx, conn, Ev::Data(line.clone().into_bytes()));
            match line.as_str() {
                "flood" => {
                    *flooding = true;
                    let _ = ctx.send(conn, &vec![b'f'; FLOOD]);
                }
                "burst" => {
                    let _ = ctx.send(conn, &vec![b'f'; BURST]);
                }
                "pause" => {
                    ctx.pause_reading(conn);
                    let _ = ctx.send(conn, b"paused\n");
                }
                _ => {
                    let _ = ctx.send(conn, b"ok\n");
                }
            }
        }
        used
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, flooding: &mut bool) {
        self.rec.note(ctx, conn, Ev::Drain);
        if *flooding {
            let _ = ctx.send(conn, &vec![b'f'; FLOOD]);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: bool, reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

fn flooder_loop(
    backend: &str,
    journal: &Journal,
    write_timeout: Option<Duration>,
) -> LoopThread<Flooder> {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    config.idle_timeout = Some(IDLE);
    config.write_timeout = write_timeout;
    let app = Flooder {
        rec: Rec::new(journal),
    };
    LoopThread::start(backend, config, app)
}

const IDLE: Duration = Duration::from_millis(300);

/// The idle timeout measures the peer's silence: a connection the loop is
/// not reading because its output is full (the client never reads a big
/// reply) or because the app paused it is not closed as `Idle`, even after
/// several idle periods, and one that then drains its output has a whole
/// idle period from then on; a silent client is closed as `Idle` after the
/// timeout (logged).
fn back_pressure_and_pause_are_not_idle(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = flooder_loop(backend, &journal, None);
    let silent = lp.connect();
    let mut flooded = lp.connect();
    let mut paused = lp.connect();
    let mut burst = lp.connect();
    flooded.write_all(b"flood\n").unwrap();
    burst.write_all(b"burst\n").unwrap();
    assert_eq!(ask(&mut paused, "pause"), "paused");
    let quiet_since = Instant::now();
    let peers = [peer_of(&silent), peer_of(&flooded), peer_of(&paused)];

    let (closed_at, reason) = journal.wait_closed(peers[0]);
    assert_eq!(reason, Reason::Idle);
    let opened_at = journal.timed(peers[0])[0].0;
    assert!(
        closed_at - opened_at >= IDLE,
        "closed after {:?}",
        closed_at - opened_at
    );
    assert!(
        logged_reason(mark, peers[0], "idle timeout"),
        "logged: {:?}",
        conn_lines(peers[0])
    );

    // Three idle periods of silence from the other two; a round trip after
    // that is served after every timer due before it.
    sleep_until(quiet_since + 3 * IDLE);
    let mut probe = lp.connect();
    assert_eq!(ask(&mut probe, "hello"), "ok");
    for peer in &peers[1..] {
        assert_eq!(journal.closed(*peer), None, "{peer} was closed");
    }
    assert!(
        journal.of(peers[1]).contains(&Ev::Data(b"flood".to_vec())),
        "the flood was asked for"
    );

    // Full for three idle periods, then read: the silence starts when the
    // output drains, so it has most of an idle period left afterwards.
    let got = read_n(&mut burst, BURST);
    thread::sleep(IDLE / 6);
    assert_eq!(
        ask(&mut burst, "still here"),
        "ok",
        "answered, so still open"
    );
    // Checked after the round trip: 8 MiB take a while in a debug build
    // (long enough for this connection to go idle now; it may).
    assert!(got.iter().all(|&b| b == b'f'));
    drop((silent, flooded, paused, probe, burst));
    lp.stop(LIVENESS);
}

/// With a write timeout, a connection whose output is pending and taken by
/// no one for that long is closed as `NotReading` (logged), not `Idle`.
fn write_timeout_closes_a_non_reader(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = flooder_loop(backend, &journal, Some(Duration::from_millis(300)));
    let mut flooded = lp.connect();
    let peer = peer_of(&flooded);
    flooded.write_all(b"flood\n").unwrap();
    let (closed_at, reason) = journal.wait_closed(peer);
    assert_eq!(reason, Reason::NotReading);
    let asked_at = journal
        .timed(peer)
        .into_iter()
        .find(|(_, e)| *e == Ev::Data(b"flood".to_vec()))
        .expect("the flood was asked for")
        .0;
    assert!(closed_at - asked_at >= Duration::from_millis(300));
    assert!(
        logged_reason(mark, peer, "write timeout (client not reading)"),
        "logged: {:?}",
        conn_lines(peer)
    );
    drop(flooded);
    lp.stop(LIVENESS);
}

/// `sleep MS`: a job that sleeps MS ms, answered `slept MS`; at the job
/// limit the request is left for when a job is back.
struct Sleepy {
    rec: Rec,
}

impl App for Sleepy {
    type State = ();
    fn name(&self) -> &'static str {
        "sleepy"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if !ctx.can_offload(conn) {
                break;
            }
            let line = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            used += end + 1;
            let ms: u64 = line
                .strip_prefix("sleep ")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            ctx.offload(conn, move || {
                thread::sleep(Duration::from_millis(ms));
                Box::new(ms) as JobResult
            });
        }
        used
    }
    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        _: JobId,
        result: JobResult,
    ) {
        let ms = result.downcast::<u64>().map_or(u64::MAX, |ms| *ms);
        self.rec.note(ctx, conn, Ev::JobDone);
        let _ = ctx.send(conn, format!("slept {ms}\n").as_bytes());
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A client waiting for the answers to its requests is not idle: neither
/// one whose request waits for its job limit (the loop is not reading it;
/// the request is offered again, without new bytes, when the job is back)
/// nor one whose job is still running (the loop owes it a reply), though
/// it sends nothing for three idle timeouts. Once answered and silent, it
/// is closed as `Idle`. Regression: a job in flight under the job limit did
/// not stop the idle timeout, which closed the connection and dropped the
/// result.
fn jobs_in_flight_are_not_idle(backend: &str) {
    for max_jobs in [1, 64] {
        let journal = Journal::default();
        let mut config = Config::default();
        config.workers = 1;
        config.max_jobs_per_conn = max_jobs;
        config.idle_timeout = Some(IDLE);
        let app = Sleepy {
            rec: Rec::new(&journal),
        };
        let lp = LoopThread::start(backend, config, app);
        let mut c = lp.connect();
        let peer = peer_of(&c);
        let long = 3 * IDLE.as_millis();
        c.write_all(format!("sleep {long}\nsleep 1\n").as_bytes())
            .unwrap();
        assert_eq!(
            read_line(&mut c),
            format!("slept {long}"),
            "max_jobs {max_jobs}"
        );
        assert_eq!(read_line(&mut c), "slept 1", "max_jobs {max_jobs}");
        let (closed_at, reason) = journal.wait_closed(peer);
        assert_eq!(reason, Reason::Idle, "max_jobs {max_jobs}");
        let last_job = journal
            .timed(peer)
            .into_iter()
            .filter(|(_, e)| *e == Ev::JobDone)
            .map(|(at, _)| at)
            .next_back()
            .expect("jobs came back");
        assert!(
            closed_at - last_job >= IDLE,
            "max_jobs {max_jobs}: closed {:?} after its last job came back",
            closed_at - last_job
        );
        drop(c);
        lp.stop(LIVENESS);
    }
}

// ---------------------------------------------------------------------
// 10. Wake-ups and job results.

/// `job`: offloads a closure returning 7, answered `done 7` from
/// `on_job_done`. Wake-ups are journaled.
struct Waking {
    rec: Rec,
}

impl App for Waking {
    type State = ();
    fn name(&self) -> &'static str {
        "waking"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for _ in lines {
            if ctx.offload(conn, || Box::new(7u32) as JobResult).is_none() {
                let _ = ctx.send(conn, b"no pool\n");
            }
        }
        used
    }
    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        _: JobId,
        result: JobResult,
    ) {
        self.rec.note(ctx, conn, Ev::JobDone);
        let value = result.downcast::<u32>().map_or(0, |v| *v);
        let _ = ctx.send(conn, format!("done {value}\n").as_bytes());
    }
    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.rec.global(ctx, Ev::Wake);
    }
}

/// `Waker::wake` calls `on_wake`; the pool's job results ring the same
/// doorbell but must not.
fn wake_calls_on_wake_but_job_results_do_not(backend: &str) {
    let journal = Journal::default();
    let mut config = Config::default();
    config.workers = 1;
    let app = Waking {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, config, app);
    let mut c = lp.connect();
    let wakes = || journal.count(|e| *e == Ev::Wake);
    for _ in 0..5 {
        assert_eq!(ask(&mut c, "job"), "done 7");
    }
    c.write_all(b"job\njob\njob\n").unwrap();
    assert_eq!(read_n(&mut c, 21), b"done 7\ndone 7\ndone 7\n");
    // Each reply came after its result's doorbell was handled.
    assert_eq!(wakes(), 0, "job results called on_wake");
    lp.waker.wake().unwrap();
    journal.wait("on_wake", |es| es.iter().any(|e| e.ev == Ev::Wake));
    assert_eq!(ask(&mut c, "job"), "done 7");
    assert_eq!(wakes(), 1);
    lp.waker.wake().unwrap();
    journal.wait("a second on_wake", |es| {
        es.iter().filter(|e| e.ev == Ev::Wake).count() == 2
    });
    assert_eq!(journal.count(|e| *e == Ev::JobDone), 9);
    drop(c);
    lp.stop(LIVENESS);
}

// ---------------------------------------------------------------------
// 11. Embedding: run_once, Config::validate.

/// Echoes lines.
struct Quiet {
    rec: Rec,
}

impl App for Quiet {
    type State = ();
    fn name(&self) -> &'static str {
        "quiet"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (_, used) = lines(input);
        let _ = ctx.send(conn, &input[..used]);
        used
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// `run_once(Some(t))` with nothing to do returns `Running` after about
/// `t` (not before); a reply leaves within the turn that handled its
/// request; after `StopHandle::stop` it returns `Stopped` within a few
/// turns (closing its connections as `Shutdown`), and `Stopped` again on
/// every later call, at once.
fn run_once_returns_in_time_and_stops(backend: &str) {
    let journal = Journal::default();
    let mut app = Quiet {
        rec: Rec::new(&journal),
    };
    let backend: Backend = backend.parse().unwrap();
    let mut lp: EventLoop<()> = EventLoop::new(backend, Config::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    lp.listen(listener).unwrap();
    let t = Duration::from_millis(100);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Running);
        let took = started.elapsed();
        assert!(took >= t, "returned after {took:?}, before {t:?}");
        assert!(took < t + Duration::from_secs(2), "returned after {took:?}");
    }

    let mut c = TcpStream::connect(addr).unwrap();
    set_timeouts(&c, common::IO_TIMEOUT);
    let peer = peer_of(&c);
    c.write_all(b"hi\n").unwrap();
    let deadline = Instant::now() + LIVENESS;
    while !journal.of(peer).contains(&Ev::Open) || rustix::io::ioctl_fionread(&c).unwrap() < 3 {
        assert!(Instant::now() < deadline, "never answered");
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Running);
    }
    assert_eq!(read_n(&mut c, 3), b"hi\n");

    lp.stop_handle().stop();
    let mut turns = 0;
    while lp.run_once(&mut app, Some(t)).unwrap() == Status::Running {
        turns += 1;
        assert!(turns < 10, "still running {turns} turns after the stop");
    }
    assert_eq!(journal.closed(peer).map(|(_, r)| r), Some(Reason::Shutdown));
    let (got, error) = read_to_end(&mut c);
    assert!(got.is_empty() && error.is_none(), "{got:?} {error:?}");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Stopped);
        assert!(started.elapsed() < t, "a stopped loop waited");
    }
}

/// `EventLoop::new` refuses, with `InvalidInput` naming the field, a
/// config that would hang or spin.
fn invalid_config_is_refused(backend: &str) {
    let backend: Backend = backend.parse().unwrap();
    type Breaks = fn(&mut Config);
    let cases: [(Breaks, &str); 7] = [
        (|c| c.max_jobs_per_conn = 0, "max_jobs_per_conn"),
        (|c| c.accept_budget = 0, "accept_budget"),
        (|c| c.read_budget = 0, "read_budget"),
        (|c| c.max_input = 0, "max_input"),
        (|c| c.low_water = c.high_water + 1, "low_water"),
        (|c| c.write_timeout = Some(Duration::ZERO), "write_timeout"),
        (
            |c| c.max_output_soft = Some((c.max_output + 1, Duration::from_secs(1))),
            "max_output_soft",
        ),
    ];
    for (break_it, field) in cases {
        let mut config = Config::default();
        break_it(&mut config);
        match EventLoop::<()>::new(backend, config) {
            Ok(_) => panic!("a config with a bad {field} was accepted"),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{field}: {e}");
                assert!(e.to_string().contains(field), "{e} should name {field}");
            }
        }
    }
    assert!(EventLoop::<()>::new(backend, Config::default()).is_ok());
}

// ---------------------------------------------------------------------
// 12, 13. The socket, the listeners.

/// On open: notes `local_addr` and what `socket` shows of `TCP_NODELAY`
/// and `SO_KEEPALIVE` before and after flipping them; sends the local
/// address as a line.
struct Sockets {
    rec: Rec,
}

impl App for Sockets {
    type State = ();
    fn name(&self) -> &'static str {
        "sockets"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
        let local = ctx.local_addr(conn);
        let note = match (local, ctx.socket(conn)) {
            (Some(local), Some(socket)) => {
                let before = socket.nodelay().ok();
                let _ = socket.set_nodelay(before != Some(true));
                let after = socket.nodelay().ok();
                let _ = rustix::net::sockopt::set_socket_keepalive(socket, true);
                let keepalive = rustix::net::sockopt::socket_keepalive(socket).ok();
                let _ = ctx.send(conn, format!("{local}\n").as_bytes());
                format!("{local} nodelay {before:?}->{after:?} keepalive {keepalive:?}")
            }
            (local, socket) => format!("local {local:?} socket {}", socket.is_some()),
        };
        self.rec.note(ctx, conn, Ev::Note(note));
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
}

/// `Ctx::local_addr` is the listener's address, and `Ctx::socket` gives
/// the socket for options: `nodelay` reflects `Config::nodelay`, and
/// `set_nodelay` and `SO_KEEPALIVE` (through `AsFd`) take effect.
fn local_addr_and_socket_options(backend: &str) {
    for nodelay in [true, false] {
        let journal = Journal::default();
        let mut config = Config::default();
        config.nodelay = nodelay;
        let app = Sockets {
            rec: Rec::new(&journal),
        };
        let lp = LoopThread::start(backend, config, app);
        let mut c = lp.connect();
        assert_eq!(read_line(&mut c), lp.addr.to_string());
        let expected = format!(
            "{} nodelay Some({nodelay})->Some({}) keepalive Some(true)",
            lp.addr, !nodelay
        );
        assert_eq!(journal.of(peer_of(&c)), [Ev::Open, Ev::Note(expected)]);
        drop(c);
        lp.stop(LIVENESS);
    }
}

/// `slow`: holds the loop thread for 60 ms. Anything else: `ok`.
struct Slow;

impl App for Slow {
    type State = ();
    fn name(&self) -> &'static str {
        "slow"
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            if line == "slow" {
                thread::sleep(Duration::from_millis(60));
            }
            let _ = ctx.send(conn, b"ok\n");
        }
        used
    }
}

/// The library prints nothing itself: connection events, stalls and
/// stats go to the `log` facade under `iomux::conn`, `iomux::stall` and
/// `iomux::stats`, where a program's logger (here, this test binary's)
/// picks them up.
fn the_library_logs_through_the_log_facade(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let mut config = Config::default();
    config.stall_threshold = Some(Duration::from_millis(20));
    config.stats_interval = Some(Duration::from_millis(50));
    let lp = LoopThread::start(backend, config, Slow);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "slow"), "ok");
    drop(c);
    let has = |target: &str, needle: &str| {
        CAPTURED.lock().unwrap_or_else(|e| e.into_inner())[mark..]
            .iter()
            .any(|(t, line)| t == target && line.contains(needle))
    };
    let deadline = Instant::now() + LIVENESS;
    let wanted = [
        ("iomux::conn", format!("connect {peer}")),
        ("iomux::conn", format!("disconnect {peer}")),
        ("iomux::stall", format!("slow handler for {peer} ran ")),
        ("iomux::stats", "clients=".to_string()),
    ];
    for (target, needle) in &wanted {
        while !has(target, needle) {
            assert!(
                Instant::now() < deadline,
                "no {target} line with {needle:?}"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }
    lp.stop(LIVENESS);
}

/// 1,100 listeners on one loop all accept, each connection on its own
/// listener (their tokens once collided with the loop's own past about
/// 1,000). Needs the open-files limit raised.
fn many_listeners_all_accept(backend: &str) {
    const LISTENERS: usize = 1100;
    let limit = iomux::limits::raise_nofile_limit();
    if limit.is_some_and(|n| n < 4 * LISTENERS as u64) {
        eprintln!("skipped: the open-files limit {limit:?} is too low for {LISTENERS} listeners");
        return;
    }
    let journal = Journal::default();
    let app = Sockets {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start_listening(backend, Config::default(), LISTENERS, app);
    assert_eq!(lp.addrs.len(), LISTENERS);
    for addr in &lp.addrs {
        let mut c = TcpStream::connect(addr).unwrap();
        set_timeouts(&c, common::IO_TIMEOUT);
        assert_eq!(
            read_line(&mut c),
            addr.to_string(),
            "accepted by its listener"
        );
    }
    assert_eq!(journal.count(|e| *e == Ev::Open), LISTENERS);
    lp.stop(LIVENESS);
}
