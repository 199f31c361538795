//! Delivery: what the server pushes reaches a slow reader whole and in
//! order; what it took from a peer goes back before a graceful shutdown
//! ends; a half-closed peer gets its end of stream, and no socket outlives
//! its descriptor.
//!
//! Each behaviour pins a defect first seen on `--backend uring` (the
//! scripts in `shared/repro/` show it by hand), and runs on every backend.
//! The kernel's own view of the sockets comes from `/proc/net/tcp`.

#[macro_use]
mod common;

use common::{IO_TIMEOUT, LIVENESS, Server, raise_fd_limit, read_to_end, set_timeouts};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, RecvFlags, SocketType};
use rustix::process::Signal;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

backend_suite! {
    pushed_output_stays_in_order,
    graceful_shutdown_returns_taken_input,
    half_closed_peers_get_eof_and_sockets_are_released,
}

/// A client of `addr` whose receive buffer is set to `bytes` before it
/// connects (so the window it offers is small from the start).
fn connect_with_rcvbuf(addr: SocketAddr, bytes: usize) -> TcpStream {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket(family, SocketType::STREAM, None).expect("a TCP socket");
    rustix::net::sockopt::set_socket_recv_buffer_size(&fd, bytes).expect("set SO_RCVBUF");
    rustix::net::connect(&fd, &addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let stream = TcpStream::from(fd);
    set_timeouts(&stream, IO_TIMEOUT);
    stream
}

/// One line of `/proc/net/tcp` or `/proc/net/tcp6`: the kernel's view of a
/// socket, as `ss` shows it.
#[derive(Clone, Debug)]
struct TcpEntry {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    /// Bytes written and not yet acknowledged by the peer (`ss`'s Send-Q).
    tx_queue: u64,
    /// Bytes received and not yet read by the owner (`ss`'s Recv-Q).
    rx_queue: u64,
    /// 0 once no process holds the socket (an orphan, `TIME_WAIT`, or a
    /// connection not yet accepted).
    inode: u64,
}

const TCP_LISTEN: u8 = 0x0a;

fn state_name(state: u8) -> &'static str {
    match state {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0a => "LISTEN",
        0x0b => "CLOSING",
        _ => "?",
    }
}

impl std::fmt::Display for TcpEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {} (send-q {}, recv-q {}, inode {})",
            state_name(self.state),
            self.local,
            self.remote,
            self.tx_queue,
            self.rx_queue,
            self.inode
        )
    }
}

/// `ADDR:PORT` in the kernel's hex: the address as 32-bit words in host
/// byte order (one for IPv4, four for IPv6), the port big-endian.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn parse_proc_line(line: &str) -> Option<TcpEntry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = f.get(4)?.split_once(':')?;
    Some(TcpEntry {
        local: parse_proc_addr(f.get(1)?)?,
        remote: parse_proc_addr(f.get(2)?)?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// Every TCP socket of the network namespace `dir` (`/proc/net` or
/// `/proc/PID/net`) sees, IPv4 and IPv6.
fn tcp_table(dir: &str) -> Vec<TcpEntry> {
    let mut entries = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("{dir}/{file}");
        let Ok(text) = std::fs::read_to_string(&path) else {
            assert!(file == "tcp6", "cannot read {path}");
            continue; // no IPv6 here
        };
        for line in text.lines().skip(1) {
            let entry = parse_proc_line(line);
            entries.push(entry.unwrap_or_else(|| panic!("unexpected line of {path}: {line:?}")));
        }
    }
    entries
}

/// Polls `check` every few ms until it returns `None` or `within` passes;
/// returns the last `Some` (what still does not hold).
fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        let failing = check()?;
        if Instant::now() >= deadline {
            return Some(failing);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the server no longer listens (it has begun its graceful
/// shutdown, which closes the listeners first).
fn wait_listener_closed(server: &Server) {
    let port = server.addr.port();
    let listening = wait_for(LIVENESS, || {
        tcp_table("/proc/net")
            .into_iter()
            .find(|e| e.state == TCP_LISTEN && e.local.port() == port)
    });
    if let Some(entry) = listening {
        panic!(
            "the server still listens {LIVENESS:?} after SIGTERM: {entry}\nstderr:\n{}",
            server.stderr_text()
        );
    }
}

// ---------------------------------------------------------------------------
// Pushed output stays in order.

/// Lines per write of the sender, and the `x`s that pad each.
/// Lines the sender sends, 20 per write.
const LINES: u64 = 32_000;
const LINES_PER_WRITE: u64 = 20;
const PAD: usize = 180;

/// Chat with a soft output limit (and a hard one far away): one sender
/// writes numbered lines a couple of ms apart; one receiver with a small
/// receive buffer reads in bursts with pauses, so the output the server
/// pushes to it stays over the soft limit for long stretches. Every line
/// must arrive, in order: the output over the limit that the server offers
/// the socket at once must not overtake output already on its way.
fn pushed_output_stays_in_order(backend: &str) {
    // The sender sends for about this long (lines a couple of ms apart);
    // the receiver reads 64 KiB, then pauses, meanwhile.
    let send_for = Duration::from_millis(2500);
    let pause = Duration::from_millis(100);
    let max_output = (256u64 << 20).to_string();
    let server = Server::start(
        backend,
        &[
            "--app",
            "chat",
            "-q",
            "--max-output-soft",
            "65536:60",
            "--max-output",
            &max_output,
        ],
    );
    let mut receiver = connect_with_rcvbuf(server.addr, 32 * 1024);
    let mut sender = server.connect();
    // The receiver connected first, so it is a member by the time the
    // sender's first line is relayed: once it has that line, it hears all.
    sender.write_all(b"hello\n").expect("the sender");
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + LIVENESS;
    while !pending.ends_with(b": hello\n") {
        assert!(Instant::now() < deadline, "the receiver got no hello");
        let n = match receiver.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other.expect("the receiver reads hello"),
        };
        assert!(n > 0, "the server closed the receiver");
        pending.extend_from_slice(&buf[..n]);
    }
    pending.clear();

    let sending = Arc::new(AtomicBool::new(true));
    let still_sending = sending.clone();
    let mut sender_thread = Some(thread::spawn(move || {
        let pad = "x".repeat(PAD);
        let total = LINES;
        let gap = Duration::from_millis(2);
        let mut next = 0u64;
        while next < total {
            let batch: String = (next..next + LINES_PER_WRITE)
                .map(|i| format!("{i:09} {pad}\n"))
                .collect();
            sender.write_all(batch.as_bytes()).expect("the sender");
            next += LINES_PER_WRITE;
            thread::sleep(gap);
        }
        still_sending.store(false, Ordering::SeqCst);
        (sender, next)
    }));

    // Slow while the sender sends (a read, then a pause), then as fast as
    // it can until it has every line.
    let mut lines = Lines::default();
    let mut sent = None;
    let deadline = Instant::now() + send_for + LIVENESS;
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    loop {
        if !sending.load(Ordering::SeqCst)
            && let Some(thread) = sender_thread.take()
        {
            let (sender, n) = thread.join().expect("the sender thread");
            drop(sender);
            sent = Some(n);
        }
        if sent.is_some_and(|n| lines.count >= n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver has {} lines of {sent:?} after {:?}; out of order: {:?}",
            lines.count,
            send_for + LIVENESS,
            lines.out_of_order
        );
        match receiver.read(&mut buf) {
            Ok(0) => panic!(
                "the server closed the receiver after {} lines; stderr:\n{}",
                lines.count,
                server.stderr_text()
            ),
            Ok(n) => lines.take(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("the receiver: {e}"),
        }
        if sent.is_none() {
            thread::sleep(pause); // a slow reader
        }
    }
    let sent = sent.unwrap_or_default();
    assert!(
        lines.out_of_order.is_empty(),
        "{backend}: pushed lines arrived out of order ({} lines of {sent}): {}",
        lines.count,
        lines.out_of_order.join("; ")
    );
    assert_eq!(lines.count, sent, "every line arrives exactly once");
}

/// The receiver's side: chat lines `ADDR: NNNNNNNNN xxx...`, checked to
/// come numbered one after another.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    /// Complete lines so far.
    count: u64,
    /// The number the next line must have.
    expect: u64,
    /// The first few lines that broke the sequence.
    out_of_order: Vec<String>,
}

impl Lines {
    fn take(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for line in self.partial[..end].split(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(line);
            let seq: u64 = text
                .split_once(": ")
                .and_then(|(_, msg)| msg.get(..9)?.parse().ok())
                .unwrap_or_else(|| panic!("unexpected chat line {text:?}"));
            if seq != self.expect && self.out_of_order.len() < 50 {
                self.out_of_order.push(format!(
                    "line {}: got {seq}, expected {}",
                    self.count, self.expect
                ));
            }
            self.expect = seq + 1;
            self.count += 1;
        }
        self.partial.drain(..=end);
    }
}

// ---------------------------------------------------------------------------
// A graceful shutdown returns what it took.

/// Echo: clients send without reading until the server stops taking their
/// bytes (its output for them is full: flow control); then SIGTERM. Each
/// client then reads to the end of stream: it must get back exactly what
/// the server had taken from the kernel (sent, less what still waits in
/// the client's send queue and the server's receive queue).
fn graceful_shutdown_returns_taken_input(backend: &str) {
    const CLIENTS: usize = 4;
    const CAP: usize = 64 << 20;
    const STALLED: Duration = Duration::from_millis(500);
    let mut server = Server::start(backend, &["--app", "echo", "-q"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for c in &clients {
        c.set_nonblocking(true).unwrap();
    }
    let chunk = vec![b'e'; 64 * 1024];
    let mut sent = [0usize; CLIENTS];
    let mut progress = [Instant::now(); CLIENTS];
    let deadline = Instant::now() + LIVENESS;
    loop {
        let mut moved = false;
        let mut stalled = 0;
        for (i, c) in clients.iter_mut().enumerate() {
            if sent[i] >= CAP || progress[i].elapsed() >= STALLED {
                stalled += 1;
                continue;
            }
            match c.write(&chunk[..chunk.len().min(CAP - sent[i])]) {
                Ok(n) => {
                    sent[i] += n;
                    progress[i] = Instant::now();
                    moved = true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("client {i} after {} bytes: {e}", sent[i]),
            }
        }
        if stalled == CLIENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server still takes bytes after {LIVENESS:?} (sent {sent:?})"
        );
        if !moved {
            thread::sleep(Duration::from_millis(5));
        }
    }

    // What the server took: the kernel's queues, read until two readings
    // a little apart agree (delayed acknowledgements settled).
    let server_addr = server.addr;
    let locals: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    let queued = || -> Vec<(u64, u64)> {
        let table = tcp_table("/proc/net");
        let find = |local: SocketAddr, remote: SocketAddr| {
            table
                .iter()
                .find(|e| e.local == local && e.remote == remote)
                .unwrap_or_else(|| panic!("no socket {local} -> {remote} in /proc/net/tcp"))
                .clone()
        };
        locals
            .iter()
            .map(|&me| {
                (
                    find(me, server_addr).tx_queue,
                    find(server_addr, me).rx_queue,
                )
            })
            .collect()
    };
    let mut last = queued();
    let unsettled = wait_for(LIVENESS, || {
        thread::sleep(Duration::from_millis(50));
        let now = queued();
        let changed = now != last;
        last = now;
        changed.then_some(())
    });
    assert!(
        unsettled.is_none(),
        "the socket queues kept changing: {last:?}"
    );
    let taken: Vec<u64> = (0..CLIENTS)
        .map(|i| sent[i] as u64 - last[i].0 - last[i].1)
        .collect();
    assert!(
        taken.iter().all(|&t| t > 0),
        "the server took nothing from some client: taken {taken:?} (sent {sent:?}, queued {last:?})"
    );

    server.sigterm();
    // Reading before the shutdown began would let the server take more.
    wait_listener_closed(&server);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                c.set_nonblocking(false).unwrap();
                read_to_end(&mut c)
            })
        })
        .collect();
    let mut echoed = Vec::new();
    for (i, reader) in readers.into_iter().enumerate() {
        let (data, error) = reader.join().expect("a reader thread");
        assert!(
            data.iter().all(|&b| b == b'e'),
            "client {i}: echoed bytes that were never sent"
        );
        if let Some(e) = error {
            panic!(
                "client {i}: the stream ended with {e} after {} bytes (taken {})",
                data.len(),
                taken[i]
            );
        }
        echoed.push(data.len() as u64);
    }
    assert_eq!(
        echoed, taken,
        "{backend}: bytes echoed before the end of stream (left) vs bytes the server took \
         before SIGTERM (right), per client (sent {sent:?}; client send-q, server recv-q: {last:?})"
    );
    let summary = server.expect_clean_exit();
    assert_eq!(summary.bytes_out, echoed.iter().sum::<u64>());
}

// ---------------------------------------------------------------------------
// Half-closed peers get their end of stream; sockets are released.

/// Chat members that only listen (their input is drained by one thread).
const NOISE: usize = 300;
/// Bytes each of them sends per trial, no newline: nothing is relayed, but
/// the ring has receives to complete (and its buffers run short).
const NOISE_BYTES: usize = 16_000;
/// Members that send a backlog for the visitor while the server is stopped.
const TALKERS: usize = 10;
/// Lines each talker sends per trial, and the padding of each.
const TALKER_LINES: usize = 10;
const TALKER_PAD: usize = 4000;
/// The visitor's receive buffer: far less than its backlog.
const VISITOR_RCVBUF: usize = 16 * 1024;
const TRIALS: usize = 12;

/// Reads (and drops) whatever arrives on `streams` until `stop`.
fn spawn_drain(streams: Arc<Vec<TcpStream>>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut open = vec![true; streams.len()];
        let mut buf = vec![0u8; 64 * 1024];
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        while !stop.load(Ordering::SeqCst) {
            let live: Vec<usize> = (0..streams.len()).filter(|&i| open[i]).collect();
            let mut fds: Vec<PollFd<'_>> = live
                .iter()
                .map(|&i| PollFd::new(&streams[i], PollFlags::IN))
                .collect();
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("poll: {e}"),
            }
            let ready: Vec<usize> = fds
                .iter()
                .zip(&live)
                .filter(|(fd, _)| !fd.revents().is_empty())
                .map(|(_, &i)| i)
                .collect();
            drop(fds);
            for i in ready {
                loop {
                    match rustix::net::recv(&streams[i], &mut buf[..], RecvFlags::DONTWAIT) {
                        Ok((0, _)) => {
                            open[i] = false;
                            break;
                        }
                        Ok(_) => {}
                        Err(rustix::io::Errno::AGAIN) => break,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(_) => {
                            open[i] = false;
                            break;
                        }
                    }
                }
            }
        }
    })
}

/// The server's TCP sockets on its port (not its listener) that no
/// descriptor of its own holds: kept open by something else (the kernel
/// working for a ring on a descriptor already closed).
fn sockets_without_fd(server: &Server) -> Vec<TcpEntry> {
    let pid = server.pid();
    let table = tcp_table(&format!("/proc/{pid}/net"));
    let mut held = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue; // closed meanwhile
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                held.insert(inode);
            }
        }
    }
    table
        .into_iter()
        .filter(|e| {
            e.local.port() == server.addr.port()
                && e.state != TCP_LISTEN
                && e.inode != 0
                && !held.contains(&e.inode)
        })
        .collect()
}

/// The server's side of the connection from `peer`, as the kernel sees it,
/// and whether a descriptor of the server holds it.
fn server_side_of(server: &Server, peer: SocketAddr) -> String {
    let pid = server.pid();
    let leaked: HashSet<u64> = sockets_without_fd(server).iter().map(|e| e.inode).collect();
    let sides: Vec<String> = tcp_table(&format!("/proc/{pid}/net"))
        .into_iter()
        .filter(|e| e.local == server.addr && e.remote == peer)
        .map(|e| {
            let owner = if e.inode == 0 {
                "no owner (closed)"
            } else if leaked.contains(&e.inode) {
                "no descriptor holds it"
            } else {
                "held by a descriptor"
            };
            format!("{e}: {owner}")
        })
        .collect();
    if sides.is_empty() {
        "gone".to_string()
    } else {
        sides.join("; ")
    }
}

/// Waits until chat member `joined` hears lines `from` sends (sent every
/// few ms until one arrives: a line relayed before `joined` was admitted
/// does not reach it).
fn wait_member(from: &TcpStream, joined: &TcpStream, what: &str) {
    let deadline = Instant::now() + LIVENESS;
    let mut heard = Vec::new();
    let mut buf = [0u8; 4096];
    let mut joined = joined;
    joined
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut from = from;
    while !heard.ends_with(b": sync\n") {
        assert!(
            Instant::now() < deadline,
            "the {what} never heard the others"
        );
        from.write_all(b"sync\n").unwrap();
        match joined.read(&mut buf) {
            Ok(0) => panic!("the server closed the {what}"),
            Ok(n) => heard.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("the {what}: {e}"),
        }
    }
    joined.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Whether process `pid` is stopped (state `T` in /proc/PID/stat).
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
}

/// Resumes a stopped server even when a trial fails half-way (before the
/// server's own Drop kills it).
struct Resume<'a>(&'a Server);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.pid() as i32) {
            let _ = rustix::process::kill_process(pid, Signal::CONT);
        }
    }
}

/// Chat: while the server is stopped (SIGSTOP), talkers queue a backlog for
/// a visitor with a small receive buffer, the visitor sends a line and
/// half-closes, and idle members send a few bytes each (work for the ring,
/// nothing relayed). After SIGCONT the visitor must get its backlog and
/// then the end of stream; at the end no socket of the server may be held
/// open without a descriptor.
fn half_closed_peers_get_eof_and_sockets_are_released(backend: &str) {
    raise_fd_limit();
    let server = Server::start(
        backend,
        &["--app", "chat", "--max-line", "1000000", "--stall-ms=100"],
    );
    let _resume = Resume(&server);
    let members: Vec<TcpStream> = (0..NOISE + TALKERS).map(|_| server.connect()).collect();
    let newest = members.last().unwrap();
    wait_member(&members[0], newest, "members");
    let members = Arc::new(members);
    let stop = Arc::new(AtomicBool::new(false));
    let drain = spawn_drain(members.clone(), stop.clone());
    let (noise, talkers) = members.split_at(NOISE);
    let noise_bytes = vec![b'n'; NOISE_BYTES];
    let pid = server.pid();

    let mut failures = Vec::new();
    let started = Instant::now();
    for trial in 0..TRIALS {
        let mut visitor = connect_with_rcvbuf(server.addr, VISITOR_RCVBUF);
        let me = visitor.local_addr().unwrap();
        server.expect_connect_logged(me);
        server.signal(Signal::STOP);
        let running = wait_for(LIVENESS, || (!is_stopped(pid)).then_some(()));
        assert!(running.is_none(), "the server did not stop on SIGSTOP");
        (&talkers[0]).write_all(b"chat line 0\n").unwrap();
        visitor.write_all(b"visitor line\n").unwrap();
        visitor.shutdown(Shutdown::Write).unwrap();
        let per_talker = NOISE / TALKERS / 2;
        let mut quiet = noise.iter();
        for (i, mut talker) in talkers.iter().enumerate() {
            for mut n in quiet.by_ref().take(per_talker) {
                n.write_all(&noise_bytes).unwrap();
            }
            let line = format!("chat line {i} {}\n", "p".repeat(TALKER_PAD));
            talker
                .write_all(line.repeat(TALKER_LINES).as_bytes())
                .unwrap();
        }
        for mut n in quiet {
            n.write_all(&noise_bytes).unwrap();
        }
        server.signal(Signal::CONT);

        let until = Instant::now() + LIVENESS;
        visitor
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        let eof = loop {
            match visitor.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => break Err(e.to_string()),
            }
            if Instant::now() >= until {
                break Err(format!("no end of stream within {LIVENESS:?}"));
            }
        };
        if let Err(e) = eof {
            failures.push(format!(
                "trial {trial}: visitor {me}: {e} after {got} bytes; server side: {}",
                server_side_of(&server, me)
            ));
        }
        drop(visitor);
    }
    let took = started.elapsed();

    // Closing takes the server a moment; a socket still held without a
    // descriptor after that never closes.
    let leaked = wait_for(Duration::from_secs(2), || {
        let leaked = sockets_without_fd(&server);
        (!leaked.is_empty()).then_some(leaked)
    });
    stop.store(true, Ordering::SeqCst);
    drain.join().expect("the drain thread");
    let mut problems = failures;
    if let Some(leaked) = leaked {
        let list: Vec<String> = leaked.iter().map(ToString::to_string).collect();
        problems.push(format!(
            "{} server sockets without a descriptor: {}",
            list.len(),
            list.join("; ")
        ));
    }
    assert!(
        problems.is_empty(),
        "{backend}: {TRIALS} trials in {took:?}:\n{}",
        problems.join("\n")
    );
}
