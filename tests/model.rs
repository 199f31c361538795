//! A seeded, model-based random test of the loop, on every backend, with
//! and without injected faults.
//!
//! Peers take random actions (requests that ask for replies, pushed output
//! to another connection, a pause, an offloaded job, `close_after_flush`,
//! `shutdown_after_flush`, an outbound connect back to one of the loop's
//! own listeners that makes a request of its own; half-closes, resets,
//! closes without reading, reads of random sizes, slow reads), then a
//! graceful shutdown. The loop listens twice, in plaintext and over TLS: a
//! random share of the peers (a third; `IOMUX_MODEL_TLS=PERCENT` to change
//! it) and of the outbound connects speak TLS, so the same checks hold of
//! their plaintext while the fault layer perturbs the ciphertext's I/O,
//! and a TLS peer that read to the end of a clean close must have seen
//! `close_notify` (and never a TLS error). The app keeps a
//! record of what it did and what the loop told it, and the test checks
//! the record against what the peers saw:
//! - every peer receives exactly the bytes the app sent it, in order, when
//!   it read to the end and nothing failed (a reset, a limit); a prefix of
//!   them otherwise; so does every outbound connection, from the side the
//!   loop accepted for it;
//! - every connection is opened once and closed once, and nothing is told
//!   of it after its close;
//! - input is never offered while the connection's output is full, and
//!   pending output stays within its bounds;
//! - the loop's descriptors return to what they were, and a loop with
//!   nothing to do sleeps (a few turns between two wake-ups, not
//!   thousands).
//!
//! `cargo test` runs a quick slice of seeds. Many more, for as long as it
//! takes, and one seed again:
//!
//! ```sh
//! IOMUX_MODEL_SEEDS=100000 cargo test --release --test model -- --nocapture
//! IOMUX_MODEL_SEEDS=1000 IOMUX_MODEL_TLS=100 cargo test --release --test model
//! IOMUX_MODEL_SEEDS=1000 IOMUX_MODEL_FAULT_RATE=0.3 cargo test --release --test model under_faults
//! IOMUX_MODEL_SEED=1234 cargo test --release --test model uring::
//! ```

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{LIVENESS, LoopThread, Rng};
use iomux::faults::FaultPlan;
use iomux::pool::{JobId, JobResult};
use iomux::rustls::pki_types::ServerName;
use iomux::rustls::{self, ClientConnection};
use iomux::{App, CloseReason, Config, ConnId, Ctx, Origin, SendError, TimerId};

backend_suite! {
    random_schedules_keep_the_contract,
    random_schedules_keep_the_contract_under_faults,
}

/// The largest reply, push or job result one command asks for.
const MAX_MESSAGE: usize = 20_000;
const HIGH_WATER: usize = 8 * 1024;
const MAX_OUTPUT: usize = 64 * 1024;
const MAX_JOBS: u32 = 4;
/// The most a connection may have pending: a full reply window, one
/// message past it, its jobs' results, and pushed output up to the limit.
const PENDING_BOUND: usize = HIGH_WATER + MAX_OUTPUT + (2 + MAX_JOBS as usize) * MAX_MESSAGE + 64;

fn random_schedules_keep_the_contract(backend: &str) {
    run_seeds(backend, None);
}

fn random_schedules_keep_the_contract_under_faults(backend: &str) {
    // `IOMUX_MODEL_FAULT_RATE` for a harsher (or milder) campaign.
    let rate = std::env::var("IOMUX_MODEL_FAULT_RATE")
        .ok()
        .map_or(0.1, |r| {
            r.parse().expect("IOMUX_MODEL_FAULT_RATE is a number")
        });
    run_seeds(backend, Some(rate));
}

/// Seeds run one after another (the descriptor count is the process's).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_seeds(backend: &str, fault_rate: Option<f64>) {
    let seeds: Vec<u64> = match std::env::var("IOMUX_MODEL_SEED") {
        Ok(one) => vec![one.parse().expect("IOMUX_MODEL_SEED is a number")],
        Err(_) => {
            let n = std::env::var("IOMUX_MODEL_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100);
            let base = common::seed("model", backend);
            (0..n).map(|i| base.wrapping_add(i)).collect()
        }
    };
    // The share of peers and outbound connects that speak TLS, in percent.
    let tls_share = match std::env::var("IOMUX_MODEL_TLS") {
        Ok(share) => share
            .parse::<usize>()
            .expect("IOMUX_MODEL_TLS is a percentage")
            .min(100),
        Err(_) => 33,
    };
    let started = Instant::now();
    let mut injected = 0;
    let mut outbound = 0;
    let mut tls = 0;
    for &seed in &seeds {
        let plan = fault_rate.map(|rate| FaultPlan { seed, rate });
        let _serial = lock(&ONE_AT_A_TIME);
        match run_one(backend, seed, plan, tls_share) {
            Ok(run) => {
                injected += run.faults;
                outbound += run.outbound;
                tls += run.tls;
            }
            Err(failure) => {
                let faults = plan.map_or(String::new(), |p| format!(" with IOMUX_FAULTS={p}"));
                let mut share = if tls_share == 33 {
                    String::new()
                } else {
                    format!(" IOMUX_MODEL_TLS={tls_share}")
                };
                if let Some(rate) = fault_rate.filter(|&r| r != 0.1) {
                    share.push_str(&format!(" IOMUX_MODEL_FAULT_RATE={rate}"));
                }
                panic!(
                    "{backend}: seed {seed}{faults} failed (replay: IOMUX_MODEL_SEED={seed}{share}): {failure}"
                );
            }
        }
    }
    if fault_rate.is_some() {
        assert!(
            injected > 0,
            "{backend}: no fault was injected in {} seeds",
            seeds.len()
        );
    } else {
        assert_eq!(injected, 0, "{backend}: faults without a plan");
    }
    assert!(
        outbound > 0 || seeds.len() < 20,
        "{backend}: no outbound connection was checked in {} seeds",
        seeds.len()
    );
    assert!(
        tls > 0 || tls_share == 0 || seeds.len() < 20,
        "{backend}: no TLS connection was checked in {} seeds",
        seeds.len()
    );
    eprintln!(
        "{backend}: {} seeds{} in {:.1} s ({injected} faults injected, {outbound} outbound connections checked, {tls} TLS connections checked)",
        seeds.len(),
        if fault_rate.is_some() {
            " under faults"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the app did and was told, by connection.
#[derive(Default)]
struct Record {
    opened: HashMap<ConnId, u32>,
    /// Why it closed: "clean" or what failed.
    closed: HashMap<ConnId, Ending>,
    /// ... in the loop's words.
    reasons: HashMap<ConnId, String>,
    /// Every byte queued to it, in order.
    sent: HashMap<ConnId, Vec<u8>>,
    violations: Vec<String>,
    /// The fault layer's count at the last close.
    faults: u64,
    /// The loop's turns at each wake-up the test rang.
    wake_turns: Vec<u64>,
    /// Timers cancelled, which must never fire.
    cancelled: Vec<TimerId>,
    /// Outbound connections: a failed connect is closed without an open.
    connects: HashSet<ConnId>,
    /// What each outbound connection received.
    received: HashMap<ConnId, Vec<u8>>,
    /// The TLS connections, as the loop says at their open.
    tls: HashSet<ConnId>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// Nothing lost: what was queued was written (peer closed, the app
    /// closed it after its output, the loop's shutdown).
    Clean,
    /// Output may be lost: a read or write failed, a limit, the app's
    /// own immediate close.
    Failed,
}

/// The app: commands by line (`E n`: reply n bytes; `P n`: push n bytes
/// to another connection; `Z ms`: pause reading that long; `J n`: an
/// offloaded job returns n bytes; `C`: close after the output; `S`: shut
/// the write side after the output; `O n`: connect to one of the loop's
/// own listeners, over TLS to the TLS one, and ask it, from there, for n
/// bytes). An outbound connection only records what it receives.
struct Model {
    rec: Arc<Mutex<Record>>,
    rng: Rng,
    open: Vec<ConnId>,
    /// The loop's plaintext and TLS listeners, for `O`: known once the
    /// loop runs.
    listeners: Arc<Mutex<Option<Listeners>>>,
    /// The share of outbound connects over TLS, in percent.
    tls_share: usize,
}

#[derive(Clone, Copy)]
struct Listeners {
    plain: SocketAddr,
    tls: SocketAddr,
}

/// The TLS configs of the model's listener and its clients.
fn tls_configs() -> &'static (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    common::pki::in_memory()
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

impl Model {
    /// Queues `n` pattern bytes for `to` and records what was queued.
    fn send(&mut self, ctx: &mut Ctx<'_>, to: ConnId, n: usize) {
        let mut rec = lock(&self.rec);
        let sent = rec.sent.entry(to).or_default();
        let start = sent.len();
        let bytes: Vec<u8> = (start..start + n).map(|k| pattern(to, k)).collect();
        match ctx.send(to, &bytes) {
            // Queued: over the limit it is queued too, then closed.
            Ok(()) | Err(SendError::OverLimit) => sent.extend_from_slice(&bytes),
            Err(_) => {}
        }
        let pending = ctx.pending_output(to);
        if pending > PENDING_BOUND {
            rec.violations.push(format!(
                "{to:?}: {pending} bytes pending (bound {PENDING_BOUND})"
            ));
        }
    }

    fn check_alive(&self, conn: ConnId, what: &str) {
        let mut rec = lock(&self.rec);
        if rec.closed.contains_key(&conn) {
            rec.violations
                .push(format!("{what} for {conn:?} after its close"));
        }
        if !rec.opened.contains_key(&conn) {
            rec.violations
                .push(format!("{what} for {conn:?} before its open"));
        }
    }
}

/// Byte `k` of what the app sends `to`: a reordered, lost or repeated
/// byte shows.
fn pattern(to: ConnId, k: usize) -> u8 {
    (k.wrapping_mul(31) ^ (k >> 8) ^ to.as_u64() as usize) as u8
}

impl App for Model {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), origin: Origin) {
        {
            let mut rec = lock(&self.rec);
            if ctx.is_tls(conn) {
                rec.tls.insert(conn);
            }
            let opens = rec.opened.entry(conn).or_default();
            *opens += 1;
            if *opens > 1 {
                rec.violations.push(format!("{conn:?} opened twice"));
            }
        }
        self.open.push(conn);
        if let Origin::Connected { .. } = origin {
            // One request, then the end of its stream: the accepted side
            // answers and closes, and this side reads to the end.
            let n = self.rng.range(1, MAX_MESSAGE);
            let request = format!("E {n}\n");
            let mut rec = lock(&self.rec);
            if ctx.send(conn, request.as_bytes()).is_ok() {
                rec.sent
                    .entry(conn)
                    .or_default()
                    .extend_from_slice(request.as_bytes());
            }
            ctx.shutdown_after_flush(conn);
            return;
        }
        // The greeting names the connection to its peer.
        let greeting = format!("ID {}\n", conn.as_u64());
        let mut rec = lock(&self.rec);
        if ctx.send(conn, greeting.as_bytes()).is_ok() {
            rec.sent
                .entry(conn)
                .or_default()
                .extend_from_slice(greeting.as_bytes());
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.check_alive(conn, "on_data");
        if ctx.output_full(conn) {
            lock(&self.rec).violations.push(format!(
                "input offered to {conn:?} while its output is full"
            ));
        }
        if let Some(Origin::Connected { .. }) = ctx.origin(conn) {
            let mut rec = lock(&self.rec);
            rec.received
                .entry(conn)
                .or_default()
                .extend_from_slice(input);
            return input.len();
        }
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if ctx.output_full(conn) {
                break; // offered again once the output drains
            }
            let text = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            let (cmd, arg) = text.split_once(' ').unwrap_or((&text, "0"));
            let n: usize = arg.parse::<usize>().unwrap_or(0).min(MAX_MESSAGE);
            match cmd {
                "E" => self.send(ctx, conn, n.max(1)),
                "P" => {
                    let others: Vec<ConnId> =
                        self.open.iter().copied().filter(|&c| c != conn).collect();
                    if !others.is_empty() {
                        let to = others[self.rng.range(0, others.len() - 1)];
                        self.send(ctx, to, n.max(1));
                    }
                }
                "Z" => {
                    ctx.pause_reading(conn);
                    ctx.set_conn_timer(conn, Duration::from_millis(n as u64 % 50), 1);
                    // And one set and cancelled at once: it must not fire.
                    if let Some(t) = ctx.set_conn_timer(conn, Duration::from_millis(1), 2)
                        && ctx.cancel_timer(t)
                    {
                        lock(&self.rec).cancelled.push(t);
                    }
                }
                "J" => {
                    if !ctx.can_offload(conn) {
                        break; // offered again when one of its jobs is back
                    }
                    ctx.offload(conn, move || Box::new(n.max(1)) as JobResult);
                }
                "O" => {
                    let target = *lock(&self.listeners);
                    let tls = self.rng.range(0, 99) < self.tls_share;
                    let out = match target {
                        Some(to) if tls => ctx
                            .connect_tls(to.tls, Arc::clone(&tls_configs().1), localhost())
                            .ok(),
                        Some(to) => ctx.connect(to.plain).ok(),
                        None => None,
                    };
                    if let Some(out) = out {
                        lock(&self.rec).connects.insert(out);
                    }
                }
                "C" => ctx.close_after_flush(conn),
                "S" => ctx.shutdown_after_flush(conn),
                _ => {}
            }
            used += end + 1;
        }
        used
    }

    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), timer: TimerId) {
        self.check_alive(conn, "on_conn_timer");
        let mut rec = lock(&self.rec);
        if rec.cancelled.contains(&timer) {
            rec.violations
                .push(format!("{conn:?}: cancelled timer {timer:?} fired"));
        }
        drop(rec);
        ctx.resume_reading(conn);
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        lock(&self.rec).wake_turns.push(ctx.stats().turns);
    }

    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        _: JobId,
        result: JobResult,
    ) {
        self.check_alive(conn, "on_job_done");
        if let Ok(n) = result.downcast::<usize>() {
            self.send(ctx, conn, *n);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.open.retain(|&c| c != conn);
        lock(&self.rec).faults = ctx.faults_injected();
        let ending = match reason {
            CloseReason::PeerClosed | CloseReason::Shutdown => Ending::Clean,
            _ => Ending::Failed,
        };
        let mut rec = lock(&self.rec);
        rec.reasons.insert(conn, format!("{reason:?}"));
        if !rec.opened.contains_key(&conn) && !rec.connects.contains(&conn) {
            // Only a connect that never came up is.
            rec.violations
                .push(format!("{conn:?} closed, never opened"));
        }
        if rec.closed.insert(conn, ending).is_some() {
            rec.violations.push(format!("{conn:?} closed twice"));
        }
    }
}

/// What a peer did, which says what it must have received.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PeerMode {
    /// Read to the end: it must have everything.
    Reading,
    /// Reset or closed without reading: a prefix.
    Gone,
}

struct Peer {
    stream: TcpStream,
    got: Vec<u8>,
    id: Option<u64>,
    mode: PeerMode,
    write_open: bool,
    /// Reads the rest in small pieces, a pause now and then: the loop's
    /// output backs up meanwhile.
    slow: bool,
    /// A TLS peer's session: what it sends and reads goes through it.
    tls: Option<Box<TlsPeer>>,
}

/// A TLS peer's side of the session, pumped by hand over its non-blocking
/// socket.
struct TlsPeer {
    session: ClientConnection,
    /// Its write side is to be shut once its ciphertext is out (shutting
    /// it sooner would cut a record, which no client does).
    shut_when_flushed: bool,
    /// Writing failed or the write side is shut: nothing more goes out.
    write_dead: bool,
    /// The stream ended: end of stream, a reset, or `close_notify`.
    ended: bool,
    /// The server's `close_notify` came.
    close_notify: bool,
    /// What rustls refused of what the server sent: a defect, since
    /// nothing here ever corrupts a byte, unless `provoked`.
    error: Option<String>,
    /// It sent `close_notify` during the handshake, which a TLS 1.3
    /// server answers with a fatal alert.
    provoked: bool,
}

impl Peer {
    fn new(stream: TcpStream, slow: bool, tls: bool) -> Result<Peer, String> {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let tls = if tls {
            let mut session = ClientConnection::new(Arc::clone(&tls_configs().1), localhost())
                .map_err(|e| e.to_string())?;
            // What the peer sends waits in its session while the loop does
            // not read: never refused.
            session.set_buffer_limit(None);
            Some(Box::new(TlsPeer {
                session,
                shut_when_flushed: false,
                write_dead: false,
                ended: false,
                close_notify: false,
                error: None,
                provoked: false,
            }))
        } else {
            None
        };
        let mut peer = Peer {
            stream,
            got: Vec::new(),
            id: None,
            mode: PeerMode::Reading,
            write_open: true,
            slow,
            tls,
        };
        peer.pump_write(); // the ClientHello
        Ok(peer)
    }

    /// Reads what is there now (non-blocking).
    fn read_some(&mut self, limit: usize) {
        if self.tls.is_some() {
            self.read_tls(limit);
            self.pump_write();
            return;
        }
        let mut buf = vec![0u8; limit.max(1)];
        match self.stream.read(&mut buf) {
            Ok(n) => self.got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {}
        }
        self.learn_id();
    }

    /// A TLS peer reads at most `limit` bytes of ciphertext there now and
    /// opens them: true if it read any, or the stream ended.
    fn read_tls(&mut self, limit: usize) -> bool {
        let Some(tls) = self.tls.as_deref_mut() else {
            return false;
        };
        if tls.ended {
            return true;
        }
        let mut progress = false;
        match tls
            .session
            .read_tls(&mut (&self.stream).take(limit.max(1) as u64))
        {
            Ok(0) => {
                tls.ended = true;
                progress = true;
            }
            Ok(_) => progress = true,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            // A reset: what came before it is all there is.
            Err(_) => tls.ended = true,
        }
        match tls.session.process_new_packets() {
            Ok(state) => {
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = self.got.len();
                    self.got.resize(start + n, 0);
                    if let Err(e) = tls.session.reader().read_exact(&mut self.got[start..]) {
                        self.got.truncate(start);
                        tls.error = Some(format!("reading plaintext: {e}"));
                        tls.ended = true;
                    }
                }
                if state.peer_has_closed() {
                    tls.close_notify = true;
                    tls.ended = true;
                }
            }
            Err(e) => {
                if std::env::var_os("IOMUX_MODEL_TRACE").is_some() {
                    eprintln!("TLS peer {:?}: {e} after {} bytes", self.id, self.got.len());
                }
                tls.error = Some(e.to_string());
                tls.ended = true;
            }
        }
        self.learn_id();
        progress
    }

    /// A TLS peer writes what its session has to send, as far as the
    /// socket takes it now; then shuts its write side if it was to.
    fn pump_write(&mut self) {
        let Some(tls) = self.tls.as_deref_mut() else {
            return;
        };
        while !tls.write_dead && tls.session.wants_write() {
            match tls.session.write_tls(&mut &self.stream) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    break;
                }
                Err(_) => tls.write_dead = true,
            }
        }
        if tls.shut_when_flushed && !tls.session.wants_write() {
            tls.shut_when_flushed = false;
            tls.write_dead = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    /// Ends the peer's writing: a TLS peer sends `close_notify` first
    /// when `notify` (or just the TCP end, as many clients do).
    fn shut_write(&mut self, notify: bool) {
        self.write_open = false;
        match self.tls.as_deref_mut() {
            Some(tls) => {
                if notify {
                    tls.provoked |= tls.session.is_handshaking();
                    tls.session.send_close_notify();
                }
                tls.shut_when_flushed = true;
                self.pump_write();
            }
            None => {
                let _ = self.stream.shutdown(Shutdown::Write);
            }
        }
    }

    fn learn_id(&mut self) {
        if self.id.is_none()
            && let Some(end) = self.got.iter().position(|&b| b == b'\n')
        {
            self.id = String::from_utf8_lossy(&self.got[..end])
                .strip_prefix("ID ")
                .and_then(|n| n.parse().ok());
        }
    }

    fn send(&mut self, line: &str) {
        if self.write_open && self.mode == PeerMode::Reading {
            if let Some(tls) = self.tls.as_deref_mut() {
                // Unbounded (`set_buffer_limit(None)`): takes all of it.
                let _ = tls.session.writer().write_all(line.as_bytes());
                self.pump_write();
                return;
            }
            // A full socket or a reset peer: the line is lost, which is
            // the peer's business (the app only answers what it got).
            let _ = self.stream.write_all(line.as_bytes());
        }
    }

    /// Reads until end of stream (or the deadline, which is a failure).
    fn read_to_end(&mut self, deadline: Instant) -> Result<(), String> {
        if self.tls.is_some() {
            return self.read_tls_to_end(deadline);
        }
        self.stream
            .set_nonblocking(false)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; if self.slow { 512 } else { 64 * 1024 }];
        let mut reads = 0u32;
        loop {
            reads += 1;
            if self.slow && reads.is_multiple_of(16) {
                std::thread::sleep(Duration::from_micros(200));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("peer {:?}: no end of stream in time", self.id));
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return Err(format!("peer {:?}: no end of stream in time", self.id));
                }
                // A reset: what came before it is all there is.
                Err(e) => {
                    if std::env::var_os("IOMUX_MODEL_TRACE").is_some() {
                        eprintln!(
                            "peer {:?}: read ended with {e} after {} bytes",
                            self.id,
                            self.got.len()
                        );
                    }
                    break;
                }
            }
        }
        self.learn_id();
        Ok(())
    }

    /// A TLS peer reads (and writes what its session owes: the end of its
    /// handshake, its requests) until its stream ends, waiting in `poll`
    /// for the socket between tries.
    fn read_tls_to_end(&mut self, deadline: Instant) -> Result<(), String> {
        let limit = if self.slow { 512 } else { 64 * 1024 };
        let mut reads = 0u32;
        loop {
            self.pump_write();
            let progress = self.read_tls(limit);
            let Some(tls) = self.tls.as_deref() else {
                return Ok(());
            };
            if tls.ended {
                if std::env::var_os("IOMUX_MODEL_TRACE").is_some() {
                    eprintln!(
                        "TLS peer {:?}: ended after {} bytes (close_notify {}, error {:?})",
                        self.id,
                        self.got.len(),
                        tls.close_notify,
                        tls.error
                    );
                }
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("TLS peer {:?}: no end of stream in time", self.id));
            }
            if progress {
                reads += 1;
                if self.slow && reads.is_multiple_of(16) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                continue;
            }
            let mut flags = rustix::event::PollFlags::IN;
            if !tls.write_dead && tls.session.wants_write() {
                flags |= rustix::event::PollFlags::OUT;
            }
            let wait = rustix::event::Timespec::try_from(left.min(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            let mut fds = [rustix::event::PollFd::new(&self.stream, flags)];
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
        }
    }
}

/// The id in the greeting at the front of `got`, if it is all there.
fn greeting(got: &[u8]) -> Option<u64> {
    let end = got.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&got[..end]).into_owned();
    line.strip_prefix("ID ")?.parse().ok()
}

/// Whether every outbound connection is closed, and every side the loop
/// accepted for one that greeted it.
fn outbound_done(rec: &Record) -> bool {
    rec.connects.iter().all(|c| rec.closed.contains_key(c))
        && rec
            .received
            .values()
            .filter_map(|got| greeting(got))
            .all(|id| rec.closed.keys().any(|c| c.as_u64() == id))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// With `IOMUX_MODEL_TRACE`, the loop's log lines on stderr.
struct TraceLog;

impl log::Log for TraceLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("[{}] {}", record.target(), record.args());
    }
    fn flush(&self) {}
}

/// What one schedule did.
struct Run {
    /// Faults injected.
    faults: u64,
    /// Outbound connections whose bytes were checked.
    outbound: usize,
    /// TLS connections whose bytes were checked (peers and outbound).
    tls: usize,
}

/// One seeded schedule; `Err` says what broke.
fn run_one(
    backend: &str,
    seed: u64,
    faults: Option<FaultPlan>,
    tls_share: usize,
) -> Result<Run, String> {
    let mut rng = Rng::new(seed);
    // Which peers speak TLS, from a generator of its own: the schedule of
    // actions is the same whatever the share.
    let mut tls_rng = Rng::new(seed ^ 0x7e15);
    let mut config = Config::default();
    config.high_water = HIGH_WATER;
    config.low_water = HIGH_WATER / 4;
    config.max_output = MAX_OUTPUT;
    config.workers = 2;
    config.max_jobs_per_conn = MAX_JOBS;
    config.stall_threshold = None;
    config.faults = faults;
    // One seed in three runs the completion driver short of provided
    // buffers: its receives really end with `ENOBUFS` and are armed again.
    if seed.is_multiple_of(3) {
        config.uring_buffers = 2;
    }
    let fds_before = open_fds();
    let rec = Arc::new(Mutex::new(Record::default()));
    let listeners = Arc::new(Mutex::new(None));
    let app = Model {
        rec: rec.clone(),
        rng: Rng::new(seed ^ 0x5eed),
        open: Vec::new(),
        listeners: listeners.clone(),
        tls_share,
    };
    let lp = LoopThread::start_with(backend, config, app, |lp| {
        let plain = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let tls = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let addrs = vec![plain.local_addr().unwrap(), tls.local_addr().unwrap()];
        lp.listen(plain).expect("the loop takes the listener");
        lp.listen_tls(tls, Arc::clone(&tls_configs().0))
            .expect("the loop takes the TLS listener");
        addrs
    });
    let to = Listeners {
        plain: lp.addrs[0],
        tls: lp.addrs[1],
    };
    *lock(&listeners) = Some(to);
    let mut peers: Vec<Peer> = Vec::new();
    for _ in 0..rng.range(2, 5) {
        let slow = rng.range(0, 3) == 0;
        let tls = tls_rng.range(0, 99) < tls_share;
        let addr = if tls { to.tls } else { to.plain };
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        if std::env::var_os("IOMUX_MODEL_TRACE").is_some() {
            eprintln!(
                "peer {} from {:?}: tls {tls}, slow {slow}",
                peers.len(),
                stream.local_addr()
            );
        }
        peers.push(Peer::new(stream, slow, tls)?);
    }
    let trace = std::env::var_os("IOMUX_MODEL_TRACE").is_some();
    if trace && log::set_logger(&TraceLog).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    for _ in 0..rng.range(20, 60) {
        let p = rng.range(0, peers.len() - 1);
        let n = rng.range(1, MAX_MESSAGE);
        let action = rng.range(0, 99);
        if trace {
            eprintln!("peer {p} ({:?}): action {action} n {n}", peers[p].id);
        }
        match action {
            0..=24 => peers[p].send(&format!("E {n}\n")),
            25..=34 => peers[p].send(&format!("P {n}\n")),
            35..=39 => peers[p].send(&format!("Z {n}\n")),
            40..=47 => peers[p].send(&format!("J {n}\n")),
            48..=49 => peers[p].send("C\n"),
            50..=51 => peers[p].send("S\n"),
            52..=54 => peers[p].shut_write(tls_rng.range(0, 3) > 0),
            55..=56 if peers[p].mode == PeerMode::Reading => {
                // A reset: close with SO_LINGER 0.
                let _ =
                    rustix::net::sockopt::set_socket_linger(&peers[p].stream, Some(Duration::ZERO));
                let _ = peers[p].stream.shutdown(Shutdown::Both);
                peers[p].mode = PeerMode::Gone;
            }
            57 => {
                let _ = peers[p].stream.shutdown(Shutdown::Both);
                peers[p].mode = PeerMode::Gone;
            }
            58..=84 => {
                let limit = rng.range(1, 64 * 1024);
                peers[p].read_some(limit);
            }
            85..=88 => peers[p].send(&format!("O {n}\n")),
            _ => std::thread::sleep(Duration::from_micros(rng.range(0, 2000) as u64)),
        }
    }
    // A graceful shutdown now or after the peers' end: what is owed is
    // delivered either way.
    let stop_first = rng.range(0, 1) == 0;
    if trace {
        eprintln!("stop first: {stop_first}");
    }
    if stop_first {
        lp.stop.stop();
    }
    let deadline = Instant::now() + LIVENESS;
    for peer in peers.iter_mut().filter(|p| p.mode == PeerMode::Reading) {
        if trace {
            let port = lp.addr.port();
            let out = std::process::Command::new("ss")
                .args([
                    "-tnoie",
                    "state",
                    "all",
                    &format!("( sport = :{port} or dport = :{port} )"),
                ])
                .output();
            if let Ok(out) = out {
                eprintln!(
                    "before peer {:?} reads:\n{}",
                    peer.id,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
        if peer.write_open {
            peer.shut_write(tls_rng.range(0, 3) > 0);
        }
        peer.read_to_end(deadline)?;
    }
    if !stop_first && seed.is_multiple_of(4) {
        // The peers are done; outbound connections made late may still be
        // at their exchange (a TLS handshake, a reply in short writes):
        // wait until they and the sides accepted for them are closed.
        let deadline = Instant::now() + LIVENESS;
        while !outbound_done(&lock(&rec)) {
            if Instant::now() > deadline {
                lock(&rec)
                    .violations
                    .push("outbound connections still open".into());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Everyone is done: the loop sleeps. Two wake-ups a moment apart
        // are a few turns apart, not thousands (a loop that spins).
        let wake_and_wait = |count: usize| -> Result<u64, String> {
            lp.waker.wake().map_err(|e| e.to_string())?;
            let deadline = Instant::now() + LIVENESS;
            loop {
                if let Some(&turns) = lock(&rec).wake_turns.get(count) {
                    return Ok(turns);
                }
                if Instant::now() > deadline {
                    return Err("a wake-up was not answered".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Closed connections may still linger a moment (each end of an
        // outbound pair waits for the other's, with faults in between):
        // a loop that spins turns too often in every window, one that
        // finished a lingering close does not in the next.
        let mut turned = Vec::new();
        for window in 0..3 {
            let before = wake_and_wait(2 * window)?;
            std::thread::sleep(Duration::from_millis(20));
            let after = wake_and_wait(2 * window + 1)?;
            turned.push(after - before);
            if after - before <= 20 {
                break;
            }
        }
        if turned.iter().all(|&t| t > 20) {
            lock(&rec).violations.push(format!(
                "an idle loop turned {turned:?} times in windows of 20 ms"
            ));
        }
    }
    drop(lp.stop(LIVENESS));
    let rec = lock(&rec);
    let mut problems = rec.violations.clone();
    for (conn, opens) in &rec.opened {
        if *opens == 1 && !rec.closed.contains_key(conn) {
            problems.push(format!("{conn:?} opened, never closed"));
        }
    }
    let mut tls_checked = 0;
    for peer in &peers {
        if let Some(e) = peer
            .tls
            .as_deref()
            .filter(|t| !t.provoked)
            .and_then(|t| t.error.as_ref())
        {
            problems.push(format!(
                "TLS peer {:?}: rustls refused the loop's bytes: {e}",
                peer.id
            ));
        }
        let Some(id) = peer.id else {
            continue; // never greeted: reset or refused before its first byte
        };
        let conn = rec.opened.keys().find(|c| c.as_u64() == id).copied();
        let Some(conn) = conn else {
            problems.push(format!("peer greeted as {id}, which the app never opened"));
            continue;
        };
        if rec.tls.contains(&conn) != peer.tls.is_some() {
            problems.push(format!(
                "{conn:?}: TLS {} to its peer, {} to the app",
                peer.tls.is_some(),
                rec.tls.contains(&conn)
            ));
        }
        let sent = rec.sent.get(&conn).map_or(&[][..], |s| &s[..]);
        let exact = peer.mode == PeerMode::Reading && rec.closed.get(&conn) == Some(&Ending::Clean);
        if let Some(tls) = peer.tls.as_deref() {
            tls_checked += 1;
            // A clean close of a TLS connection ends with `close_notify`.
            if exact && !tls.close_notify {
                problems.push(format!(
                    "{conn:?} ({:?}): a clean close without close_notify after {} bytes",
                    rec.reasons.get(&conn),
                    peer.got.len()
                ));
            }
        }
        let ok = if exact {
            peer.got == sent
        } else {
            sent.starts_with(&peer.got)
        };
        if !ok {
            let same = peer
                .got
                .iter()
                .zip(sent)
                .take_while(|(a, b)| a == b)
                .count();
            problems.push(format!(
                "{conn:?} ({:?}, {:?}): received {} bytes, sent {}, equal for the first {same}{}",
                peer.mode,
                rec.reasons.get(&conn),
                peer.got.len(),
                sent.len(),
                if exact { "" } else { " (must be a prefix)" }
            ));
        }
    }
    for (&out, got) in rec.received.iter() {
        // The side the loop accepted for it greeted it with its id.
        let accepted =
            greeting(got).and_then(|id| rec.opened.keys().find(|c| c.as_u64() == id).copied());
        let Some(accepted) = accepted else {
            // Cut short inside the greeting: only when a side failed (an
            // injected reset ends the loop's side, and the kernel then
            // sends a plain end of stream), or the shutdown stopped its
            // reading (a short read, then no more), may it have so little.
            let cut = rec.closed.get(&out) == Some(&Ending::Failed)
                || rec.reasons.get(&out).is_some_and(|r| r == "Shutdown");
            let cut_short = rec.sent.iter().any(|(c, sent)| {
                sent.starts_with(got) && (cut || rec.closed.get(c) == Some(&Ending::Failed))
            });
            if cut_short {
                continue;
            }
            problems.push(format!(
                "outbound {out:?} ({:?}) received no greeting: {:?}",
                rec.reasons.get(&out),
                String::from_utf8_lossy(&got[..got.len().min(40)])
            ));
            continue;
        };
        if rec.tls.contains(&out) != rec.tls.contains(&accepted) {
            problems.push(format!(
                "outbound {out:?} and {accepted:?}, its accepted side, differ in TLS"
            ));
        }
        if rec.tls.contains(&out) {
            tls_checked += 1;
        }
        let sent = rec.sent.get(&accepted).map_or(&[][..], |s| &s[..]);
        // Read to the end, from a side that closed clean: everything.
        let exact = rec.reasons.get(&out).is_some_and(|r| r == "PeerClosed")
            && rec.closed.get(&accepted) == Some(&Ending::Clean);
        let ok = if exact {
            got == sent
        } else {
            sent.starts_with(got)
        };
        if !ok {
            problems.push(format!(
                "outbound {out:?} from {accepted:?} ({:?}, {:?}): received {} bytes, sent {}{}",
                rec.reasons.get(&out),
                rec.reasons.get(&accepted),
                got.len(),
                sent.len(),
                if exact { "" } else { " (must be a prefix)" }
            ));
        }
    }
    drop(peers);
    // The loop's descriptors (listener, selector, sockets) are gone once it
    // returned, the peers' now; the waker's goes with the last pool worker,
    // which exits on its own a moment later.
    let deadline = Instant::now() + LIVENESS;
    while open_fds() > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let fds_after = open_fds();
    if fds_after > fds_before {
        problems.push(format!("{} descriptors left open", fds_after - fds_before));
    }
    if problems.is_empty() {
        Ok(Run {
            faults: rec.faults,
            outbound: rec.received.len(),
            tls: tls_checked,
        })
    } else {
        Err(problems.join("; "))
    }
}
