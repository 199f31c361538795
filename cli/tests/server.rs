//! Integration tests of `iomux serve` with real TCP clients on 127.0.0.1.
//!
//! Each behaviour is a plain function `fn name(backend: &str)`;
//! `backend_suite!` turns the list of them into one `#[test]` per backend
//! (`select::seed_scenario`, `epoll_et::echo_8mib`, ...). The `cli` module
//! holds the tests of the command line itself, run once.

#[macro_use]
mod common;

use common::{LIVENESS, Rng, Server, expect_closed, read_n, read_to_end, round_trip, seed};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

backend_suite! {
    seed_scenario,
    reply_option,
    quiet_option,
    echo_random_200_clients,
    echo_8mib_single_write,
    clients_3000,
    client_that_never_reads,
    client_reset_mid_stream,
    back_pressure_is_not_idleness,
    write_timeout_disconnects_a_non_reader,
    half_close_echo,
    half_close_ack,
    half_closed_slow_reader_keeps_one_thread,
    idle_timeout,
    max_clients,
    out_of_descriptors_pauses_accepting,
    chat_broadcast,
    chat_long_line_disconnects_sender,
    chat_slow_receiver_disconnected,
    chat_soft_output_limit,
    chat_burst_keeps_fast_receivers,
    garbage_to_ack,
    garbage_to_chat,
    sigterm_flushes_pending_output,
    a_second_sigterm_ends_the_grace_period,
    sigint_exits_zero,
    max_clients_reply,
    ipv6_loopback,
}

const OK: &[u8] = b"Ok,Thanks";

/// Writes `data` from a thread (so the caller can read concurrently), then
/// shuts down the write side. Returns the write's outcome.
fn spawn_writer(stream: &TcpStream, data: Arc<Vec<u8>>) -> thread::JoinHandle<io::Result<()>> {
    let mut stream = stream.try_clone().expect("clone the client socket");
    thread::spawn(move || {
        stream.write_all(&data)?;
        stream.shutdown(Shutdown::Write)
    })
}

/// A client that writes and never reads. Its thread writes `chunk`-sized
/// pieces until `limit` bytes, a fatal error, or `stop`; a write that times
/// out (the socket buffers are full: back-pressure) sets `blocked` and is
/// retried. The socket is closed when the thread ends.
struct Flooder {
    written: Arc<AtomicU64>,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Flooder {
    fn start(mut stream: TcpStream, mut rng: Rng, limit: usize) -> Flooder {
        let written = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, b, s) = (written.clone(), blocked.clone(), stop.clone());
        stream
            .set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let thread = thread::spawn(move || {
            let mut sent = Vec::new();
            let chunk = rng.bytes(64 * 1024);
            let mut offset = 0;
            while sent.len() < limit && !s.load(Ordering::SeqCst) {
                let end = chunk.len().min(offset + limit - sent.len());
                match stream.write(&chunk[offset..end]) {
                    Ok(n) => {
                        sent.extend_from_slice(&chunk[offset..offset + n]);
                        offset = (offset + n) % chunk.len();
                        w.store(sent.len() as u64, Ordering::SeqCst);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        b.store(true, Ordering::SeqCst)
                    }
                    Err(_) => break,
                }
            }
            sent
        });
        Flooder {
            written,
            blocked,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until a write has blocked (or everything was written).
    fn wait_blocked_or_done(&self, limit: usize) {
        let deadline = Instant::now() + LIVENESS;
        while !self.blocked.load(Ordering::SeqCst)
            && self.written.load(Ordering::SeqCst) < limit as u64
        {
            assert!(
                Instant::now() < deadline,
                "the flooding client neither blocked nor finished"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops writing; returns what was written.
    fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("flooder thread")
    }
}

/// The seed's scenario: several clients each send text, get `Ok,Thanks`;
/// the server prints each message and logs each connect and disconnect.
fn seed_scenario(backend: &str) {
    let mut server = Server::start(backend, &[]);
    assert_eq!(
        server.startup,
        format!(
            "iomux: listening on {} (backend {backend}, app ack)",
            server.addr
        )
    );
    let mut clients: Vec<(TcpStream, SocketAddr)> = (0..5)
        .map(|_| {
            let c = server.connect();
            let addr = c.local_addr().unwrap();
            (c, addr)
        })
        .collect();
    let mut expected_lines = Vec::new();
    let mut bytes_in = 0;
    for (i, (client, addr)) in clients.iter_mut().enumerate() {
        let text = format!("hello from client {i}");
        round_trip(client, format!("{text}\n").as_bytes(), OK);
        bytes_in += text.len() + 1;
        expected_lines.push(format!("{addr}: {text}"));
        server.expect_connect_logged(*addr);
    }
    // A second message on the first connection gets its own reply.
    round_trip(&mut clients[0].0, b"again", OK);
    bytes_in += 5;
    expected_lines.push(format!("{}: again", clients[0].1));
    for line in &expected_lines {
        server.expect_stdout_line(line);
    }
    let addrs: Vec<SocketAddr> = clients.iter().map(|(_, a)| *a).collect();
    drop(clients);
    for addr in &addrs {
        server.expect_disconnect_logged(*addr);
    }
    let summary = server.stop();
    assert_eq!(summary.clients, 5);
    assert_eq!(summary.bytes_in, bytes_in as u64);
    assert_eq!(summary.bytes_out, 6 * OK.len() as u64);
    // Stdout carries only the start-up line, app output and the shutdown line.
    let stdout = server.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected_lines.len() + 2, "stdout:\n{stdout}");
    assert_eq!(lines[0], server.startup);
    for line in &lines[1..lines.len() - 1] {
        assert!(
            expected_lines.iter().any(|e| e == line),
            "unexpected stdout line {line:?}"
        );
    }
}

/// `--reply` replaces the reply text exactly (no newline added).
fn reply_option(backend: &str) {
    let mut server = Server::start(backend, &["--reply", "pong"]);
    let mut client = server.connect();
    round_trip(&mut client, b"ping 1\n", b"pong");
    // Had anything been added to the first reply, it would show up here.
    round_trip(&mut client, b"ping 2\n", b"pong");
    drop(client);
    assert_eq!(server.stop().bytes_out, 8);
}

/// `-q` drops per-message and per-connection lines, keeps start-up and
/// shutdown.
fn quiet_option(backend: &str) {
    let mut server = Server::start(backend, &["-q"]);
    let mut client = server.connect();
    for i in 0..3 {
        round_trip(&mut client, format!("message {i}\n").as_bytes(), OK);
    }
    drop(client);
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
    let stdout = server.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "quiet stdout:\n{stdout}");
    assert_eq!(lines[0], server.startup);
    assert!(lines[1].starts_with("iomux: shutdown, "));
    let stderr = server.stderr_text();
    assert!(!stderr.contains("connect"), "quiet stderr:\n{stderr}");
}

/// 200 clients at once, each echoing random data of random sizes.
fn echo_random_200_clients(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo", "-q"]);
    let clients = 200;
    let barrier = Arc::new(Barrier::new(clients));
    let mut rng = Rng::new(seed("echo_random", backend));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let mut stream = server.connect();
            let barrier = barrier.clone();
            let mut rng = Rng::new(rng.next_u64());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    // Everyone is connected before anyone sends.
                    barrier.wait();
                    let mut total = 0;
                    for round in 0..rng.range(1, 6) {
                        let len = rng.range(1, 24 * 1024);
                        let msg = rng.bytes(len);
                        // Sent in up to three pieces, read back in one go.
                        let mut rest = &msg[..];
                        while !rest.is_empty() {
                            let k = rng.range(1, rest.len());
                            stream.write_all(&rest[..k]).expect("send");
                            rest = &rest[k..];
                        }
                        let back = read_n(&mut stream, msg.len());
                        assert!(
                            back == msg,
                            "client {i} round {round}: echo differs ({} bytes)",
                            msg.len()
                        );
                        total += msg.len() as u64;
                    }
                    total
                })
                .unwrap()
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let summary = server.stop();
    assert_eq!(summary.clients, clients as u64);
    assert_eq!(summary.bytes_in, total);
    assert_eq!(summary.bytes_out, total);
}

/// One 8 MiB write comes back complete and in order (the issue asks it of
/// epoll-et, where a lost edge would hang the client).
fn echo_8mib_single_write(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo"]);
    let mut client = server.connect();
    let data = Arc::new(Rng::new(seed("echo_8mib", backend)).bytes(8 << 20));
    let writer = spawn_writer(&client, data.clone());
    let (back, error) = read_to_end(&mut client);
    writer.join().unwrap().expect("write 8 MiB");
    assert!(
        error.is_none(),
        "reading the echo failed after {} bytes: {error:?}",
        back.len()
    );
    assert_eq!(back.len(), data.len(), "echoed length");
    assert!(back == *data, "echoed bytes differ");
    server.expect_disconnect_logged(client.local_addr().unwrap());
    let summary = server.stop();
    assert_eq!(summary.bytes_in, 8 << 20);
    assert_eq!(summary.bytes_out, 8 << 20);
}

/// 3000 clients connected at once (on select, server fds pass 1024): all
/// connect, each sends and gets its echo, then all close.
fn clients_3000(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo", "-q"]);
    let mut clients: Vec<TcpStream> = (0..3000).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i:04}\n").as_bytes())
            .unwrap_or_else(|e| panic!("client {i}: send: {e}"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let expected = format!("client {i:04}\n");
        let got = read_n(c, expected.len());
        assert_eq!(String::from_utf8_lossy(&got), expected, "client {i}");
    }
    // Still all open: one more round trip on the first and the last.
    round_trip(&mut clients[0], b"first\n", b"first\n");
    round_trip(&mut clients[2999], b"last\n", b"last\n");
    let fds = server.open_fds();
    assert!(fds.len() > 3000, "the server holds {} fds", fds.len());
    assert!(fds.iter().any(|&fd| fd > 1024), "no server fd above 1024");
    drop(clients);
    // All closed on the server side too.
    let deadline = Instant::now() + LIVENESS;
    while server.open_fds().len() > 100 {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} fds after its clients left",
            server.open_fds().len()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let summary = server.stop();
    assert_eq!(summary.clients, 3000);
    assert_eq!(summary.bytes_in, summary.bytes_out);
    assert_eq!(summary.bytes_in, 3000 * 12 + 6 + 5);
}

/// An echo client that writes 64 MiB and never reads: the server stops
/// reading it (back-pressure), its memory stays bounded, other clients are
/// still served, and dropping the stuck client leaves the server fine.
fn client_that_never_reads(backend: &str) {
    const LIMIT: usize = 64 << 20;
    let mut server = Server::start(backend, &["--app", "echo"]);
    let mut other = server.connect();
    round_trip(&mut other, b"warm-up", b"warm-up");
    let baseline = server.rss_kib();
    let stuck = server.connect();
    let stuck_addr = stuck.local_addr().unwrap();
    let flooder = Flooder::start(stuck, Rng::new(seed("never_reads", backend)), LIMIT);
    flooder.wait_blocked_or_done(LIMIT);
    // Give the server time to do whatever it would do with more input.
    let mut peak = 0;
    for round in 0..5 {
        thread::sleep(Duration::from_millis(100));
        peak = peak.max(server.rss_kib());
        round_trip(
            &mut other,
            format!("still served {round}").as_bytes(),
            format!("still served {round}").as_bytes(),
        );
    }
    let written = flooder.written.load(Ordering::SeqCst) as usize;
    assert!(
        written < LIMIT,
        "the server took all {LIMIT} bytes from a client that never reads"
    );
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 64 * 1024,
        "server RSS grew by {growth} KiB (baseline {baseline} KiB) with a client that never reads"
    );
    flooder.finish();
    server.expect_disconnect_logged(stuck_addr);
    round_trip(&mut other, b"after", b"after");
    let mut fresh = server.connect();
    round_trip(&mut fresh, b"fresh", b"fresh");
    drop((other, fresh));
    assert_eq!(server.stop().clients, 3);
}

/// `--idle-timeout 1`: a silent client is closed as idle, but a client the
/// server stopped reading (it floods and never reads, so back-pressure
/// holds its bytes in the kernel) is not: that silence is the server's.
fn back_pressure_is_not_idleness(backend: &str) {
    const LIMIT: usize = 64 << 20;
    let mut server = Server::start(backend, &["--app", "echo", "--idle-timeout", "1"]);
    let stuck = server.connect();
    let stuck_addr = stuck.local_addr().unwrap();
    let silent = server.connect();
    let silent_addr = silent.local_addr().unwrap();
    let flooder = Flooder::start(stuck, Rng::new(seed("not_idle", backend)), LIMIT);
    flooder.wait_blocked_or_done(LIMIT);
    assert!(
        server.wait_for_stderr(&format!("{silent_addr}: idle timeout"), LIVENESS),
        "the silent client was not closed as idle; stderr:\n{}",
        server.stderr_text()
    );
    // Two more idle periods: long enough for a wrong idle close.
    let until = Instant::now() + Duration::from_millis(2200);
    while Instant::now() < until {
        assert!(
            !server
                .stderr_text()
                .contains(&format!("disconnect {stuck_addr}")),
            "the back-pressured client was closed; stderr:\n{}",
            server.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    flooder.finish();
    server.expect_disconnect_logged(stuck_addr);
    drop(silent);
    server.stop();
}

/// `--write-timeout 0.5`: a client that floods and never reads has replies
/// waiting that it does not take; it is disconnected with that reason, and
/// others are still served.
fn write_timeout_disconnects_a_non_reader(backend: &str) {
    const LIMIT: usize = 64 << 20;
    let mut server = Server::start(backend, &["--app", "echo", "--write-timeout", "0.5"]);
    let mut other = server.connect();
    let stuck = server.connect();
    let stuck_addr = stuck.local_addr().unwrap();
    let flooder = Flooder::start(stuck, Rng::new(seed("write_timeout", backend)), LIMIT);
    assert!(
        server.wait_for_stderr(
            &format!("{stuck_addr}: write timeout (client not reading)"),
            LIVENESS
        ),
        "no write timeout; stderr:\n{}",
        server.stderr_text()
    );
    server.expect_disconnect_logged(stuck_addr);
    flooder.finish();
    round_trip(&mut other, b"still served", b"still served");
    drop(other);
    server.stop();
}

/// A client resets (SO_LINGER 0) while the server still owes it output:
/// only that client is closed, others go on being served.
fn client_reset_mid_stream(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo"]);
    let mut bystander = server.connect();
    round_trip(&mut bystander, b"before", b"before");
    let victim = server.connect();
    let victim_addr = victim.local_addr().unwrap();
    // Send a lot without reading, so the server is mid-stream when the
    // reset comes.
    let flooder = Flooder::start(
        victim.try_clone().unwrap(),
        Rng::new(seed("reset", backend)),
        1 << 20,
    );
    flooder.wait_blocked_or_done(1 << 20);
    rustix::net::sockopt::set_socket_linger(&victim, Some(Duration::ZERO))
        .expect("set SO_LINGER 0");
    flooder.finish();
    drop(victim); // the last descriptor: the kernel sends RST
    server.expect_disconnect_logged(victim_addr);
    round_trip(&mut bystander, b"after", b"after");
    let mut fresh = server.connect();
    round_trip(&mut fresh, b"fresh", b"fresh");
    drop((bystander, fresh));
    assert_eq!(server.stop().clients, 3);
}

/// Echo: the client sends 2 MiB then shuts its write side; it gets every
/// byte back, then end of stream.
fn half_close_echo(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo"]);
    let mut client = server.connect();
    let data = Arc::new(Rng::new(seed("half_close", backend)).bytes(2 << 20));
    let writer = spawn_writer(&client, data.clone());
    let (back, error) = read_to_end(&mut client);
    writer.join().unwrap().expect("write then shut down");
    assert!(error.is_none(), "reading the echo failed: {error:?}");
    assert!(
        back == *data,
        "echo after half-close differs ({} of {} bytes)",
        back.len(),
        data.len()
    );
    server.expect_disconnect_logged(client.local_addr().unwrap());
    server.stop();
}

/// The server's threads (from /proc/PID/task).
fn threads(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("list /proc/PID/task")
        .count()
}

/// Echo: a client sends 4.5 MiB, shuts its write side and reads nothing
/// for a while, so the echo waits on a full socket while the peer's end of
/// stream is in; then it reads everything. The server stays one thread all
/// along (on io_uring, a send waiting on such a socket is not left to the
/// kernel, which would hand it to a worker thread that blocks in it), and
/// every byte comes back in order.
fn half_closed_slow_reader_keeps_one_thread(backend: &str) {
    let mut server = Server::start(backend, &["--app", "echo"]);
    let before = threads(&server);
    let mut client = server.connect();
    let data = Arc::new(Rng::new(seed("slow_half_close", backend)).bytes(9 << 19));
    let writer = spawn_writer(&client, data.clone());
    let deadline = Instant::now() + LIVENESS;
    let mut most = before;
    while !writer.is_finished() {
        assert!(Instant::now() < deadline, "the 4.5 MiB were never taken");
        most = most.max(threads(&server));
        thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap().expect("write then shut down");
    // The peer does not read for a while: the window in which a send left
    // to the kernel would be handed to a worker.
    let quiet = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet {
        most = most.max(threads(&server));
        thread::sleep(Duration::from_millis(10));
    }
    let (back, error) = read_to_end(&mut client);
    most = most.max(threads(&server));
    assert!(error.is_none(), "reading the echo failed: {error:?}");
    assert!(
        back == *data,
        "echo after a half-close differs ({} of {} bytes)",
        back.len(),
        data.len()
    );
    assert_eq!(
        most, before,
        "the server grew from {before} to {most} threads"
    );
    server.stop();
}

/// Ack: a message then a shut write side; the reply still arrives, then
/// end of stream.
fn half_close_ack(backend: &str) {
    let mut server = Server::start(backend, &[]);
    let mut client = server.connect();
    let addr = client.local_addr().unwrap();
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (back, error) = read_to_end(&mut client);
    assert!(error.is_none(), "read after half-close failed: {error:?}");
    assert_eq!(String::from_utf8_lossy(&back), "Ok,Thanks");
    server.expect_stdout_line(&format!("{addr}: last words"));
    server.expect_disconnect_logged(addr);
    server.stop();
}

/// `--idle-timeout 1`: a silent client is closed after about a second; one
/// that sends every 300 ms stays open well past it.
fn idle_timeout(backend: &str) {
    let mut server = Server::start(backend, &["--idle-timeout", "1"]);
    let started = Instant::now();
    let mut silent = server.connect();
    let silent_addr = silent.local_addr().unwrap();
    let mut active = server.connect();
    let active_addr = active.local_addr().unwrap();
    let chatter = thread::spawn(move || {
        for i in 0..8 {
            thread::sleep(Duration::from_millis(300));
            round_trip(&mut active, format!("ping {i}").as_bytes(), OK);
        }
        active
    });
    expect_closed(&mut silent, "the silent client");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before the 1 s idle timeout"
    );
    assert!(elapsed < LIVENESS, "closed only after {elapsed:?}");
    server.expect_disconnect_logged(silent_addr);
    assert!(
        server.wait_for_stderr(&format!("{silent_addr}: idle timeout"), LIVENESS),
        "no idle timeout logged; stderr:\n{}",
        server.stderr_text()
    );
    // The active client kept talking for 2.4 s, past the timeout...
    let mut active = chatter.join().expect("the active client was served");
    assert!(
        !server
            .stderr_text()
            .contains(&format!("disconnect {active_addr}")),
        "the active client was disconnected"
    );
    // ...and once it falls silent, it is closed too.
    expect_closed(&mut active, "the active client, once silent");
    server.stop();
}

/// `--max-clients 2`: a third client is accepted and closed at once (and
/// logged); the first two are unaffected; a slot that frees up is reused.
fn max_clients(backend: &str) {
    let mut server = Server::start(backend, &["--max-clients", "2"]);
    let mut first = server.connect();
    let mut second = server.connect();
    round_trip(&mut first, b"one", OK);
    round_trip(&mut second, b"two", OK);
    let mut third = server.connect();
    let third_addr = third.local_addr().unwrap();
    expect_closed(&mut third, "the client over --max-clients");
    assert!(
        server.wait_for_stderr(&third_addr.to_string(), LIVENESS),
        "the rejected client was not logged; stderr:\n{}",
        server.stderr_text()
    );
    round_trip(&mut first, b"one again", OK);
    round_trip(&mut second, b"two again", OK);
    let first_addr = first.local_addr().unwrap();
    drop(first);
    server.expect_disconnect_logged(first_addr);
    let mut fourth = server.connect();
    round_trip(&mut fourth, b"four", OK);
    drop((second, fourth));
    let summary = server.stop();
    assert_eq!(summary.clients, 3, "the rejected client is not served");
}

/// Out of descriptors (EMFILE): the server logs once per burst, does not
/// spin, keeps serving connected clients, and accepts the queued ones once
/// descriptors free up. The server starts under a low limit (an io_uring
/// multishot accept keeps the limit it was armed with, so lowering it
/// later would not reach it), then clients take the descriptors left.
fn out_of_descriptors_pauses_accepting(backend: &str) {
    const LIMIT: u64 = 64;
    let Some(mut server) = Server::start_with_fd_limit(backend, &["--app", "echo"], LIMIT) else {
        eprintln!("skipped: no prlimit to start the server with a low open-files limit");
        return;
    };
    // New descriptors take the lowest free numbers below the limit.
    let below = server
        .open_fds()
        .iter()
        .filter(|&&fd| u64::from(fd) < LIMIT)
        .count();
    let free = LIMIT as usize - below;
    let mut clients: Vec<TcpStream> = (0..free + 6).map(|_| server.connect()).collect();
    assert!(
        server.wait_for_stderr("pausing accepts", LIVENESS),
        "EMFILE was not logged; stderr:\n{}",
        server.stderr_text()
    );
    round_trip(&mut clients[0], b"still served", b"still served");
    // Stuck for a while with no descriptor free: one log line, no spinning.
    let cpu_before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_millis(1000));
    let cpu_used = cpu_ticks(server.pid()) - cpu_before;
    assert!(
        cpu_used < 50,
        "the server spun on EMFILE: {cpu_used} ticks in 1 s"
    );
    let logged = server.stderr_text().matches("pausing accepts").count();
    assert_eq!(
        logged,
        1,
        "log once per burst; stderr:\n{}",
        server.stderr_text()
    );
    // Free descriptors: the queued clients are accepted and served.
    let freed: Vec<TcpStream> = clients.drain(..free).collect();
    drop(freed);
    let mut late = clients.pop().expect("a queued client");
    let mut waiting = clients.remove(0);
    round_trip(&mut waiting, b"accepted later", b"accepted later");
    drop(clients);
    round_trip(&mut late, b"last one", b"last one");
    drop((waiting, late));
    server.stop();
}

/// User + system CPU ticks of a process (`/proc/PID/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Connects `n` clients and waits until the server has logged each.
fn connect_logged(server: &Server, n: usize) -> Vec<(TcpStream, SocketAddr)> {
    (0..n)
        .map(|_| {
            let c = server.connect();
            let addr = c.local_addr().unwrap();
            server.expect_connect_logged(addr);
            (c, addr)
        })
        .collect()
}

/// Chat: a line from one client reaches the two others as `ADDR: LINE\n`,
/// never its sender; lines split across writes are joined.
fn chat_broadcast(backend: &str) {
    let mut server = Server::start(backend, &["--app", "chat"]);
    let mut clients = connect_logged(&server, 3);
    let addrs: Vec<SocketAddr> = clients.iter().map(|(_, a)| *a).collect();
    clients[0].0.write_all(b"hello from a\n").unwrap();
    for (c, _) in &mut clients[1..] {
        let line = format!("{}: hello from a\n", addrs[0]);
        assert_eq!(String::from_utf8_lossy(&read_n(c, line.len())), line);
    }
    // The first thing a gets is b's line, so its own was not sent back.
    clients[1].0.write_all(b"hi from b\r\n").unwrap();
    for i in [0, 2] {
        let line = format!("{}: hi from b\n", addrs[1]);
        let got = read_n(&mut clients[i].0, line.len());
        assert_eq!(String::from_utf8_lossy(&got), line, "client {i}");
    }
    // A line in two writes, then two lines in one.
    clients[2].0.write_all(b"par").unwrap();
    thread::sleep(Duration::from_millis(50));
    clients[2].0.write_all(b"tial\nsecond\n").unwrap();
    for i in [0, 1] {
        let lines = format!("{0}: partial\n{0}: second\n", addrs[2]);
        let got = read_n(&mut clients[i].0, lines.len());
        assert_eq!(String::from_utf8_lossy(&got), lines, "client {i}");
    }
    drop(clients);
    for addr in addrs {
        server.expect_disconnect_logged(addr);
    }
    assert_eq!(server.stop().clients, 3);
}

/// Chat with `--max-line 100`: a longer line (or unfinished line) drops its
/// sender and is relayed to no one; 100 bytes is still fine.
fn chat_long_line_disconnects_sender(backend: &str) {
    let mut server = Server::start(backend, &["--app", "chat", "--max-line", "100"]);
    let mut clients = connect_logged(&server, 4);
    let addrs: Vec<SocketAddr> = clients.iter().map(|(_, a)| *a).collect();
    let mut long = vec![b'x'; 200];
    long.push(b'\n');
    clients[2].0.write_all(&long).unwrap();
    expect_closed(&mut clients[2].0, "the sender of a 200-byte line");
    server.expect_disconnect_logged(addrs[2]);
    assert!(
        server
            .stderr_text()
            .contains(&format!("{}: line too long (max 100 bytes)", addrs[2])),
        "the reason was not logged; stderr:\n{}",
        server.stderr_text()
    );
    // An unfinished line over the limit also disconnects.
    clients[3].0.write_all(&[b'z'; 150]).unwrap();
    expect_closed(&mut clients[3].0, "the sender of 150 bytes without newline");
    server.expect_disconnect_logged(addrs[3]);
    // Exactly the limit is relayed, even when its CR arrives before its LF
    // (the pause only makes separate reads likely); the first bytes b gets
    // are a's line.
    let mut ok_line = vec![b'y'; 100];
    ok_line.push(b'\r');
    clients[0].0.write_all(&ok_line).unwrap();
    thread::sleep(Duration::from_millis(20));
    clients[0].0.write_all(b"\n").unwrap();
    let expected = format!("{}: {}\n", addrs[0], "y".repeat(100));
    let got = read_n(&mut clients[1].0, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    round_trip_chat(&mut clients, 1, 0);
    drop(clients);
    server.stop();
}

/// Client `from` says a line; client `to` must receive exactly it next.
fn round_trip_chat(clients: &mut [(TcpStream, SocketAddr)], from: usize, to: usize) {
    let from_addr = clients[from].1;
    clients[from].0.write_all(b"still here\n").unwrap();
    let expected = format!("{from_addr}: still here\n");
    let got = read_n(&mut clients[to].0, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// Reads chat lines until `{sender}: {last}` arrives; returns the lines
/// before it, without the sender prefix.
fn read_chat_until(stream: &mut TcpStream, sender: SocketAddr, last: &str) -> Vec<String> {
    read_chat_counting(stream, sender, last, &AtomicU64::new(0))
}

/// [`read_chat_until`], counting the lines read so far in `read`.
fn read_chat_counting(
    stream: &mut TcpStream,
    sender: SocketAddr,
    last: &str,
    read: &AtomicU64,
) -> Vec<String> {
    let prefix = format!("{sender}: ");
    let mut reader = io::BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match io::BufRead::read_line(&mut reader, &mut line) {
            Ok(0) => panic!("the receiver was closed after {} lines", lines.len()),
            Ok(_) => {}
            Err(e) => panic!("the receiver failed after {} lines: {e}", lines.len()),
        }
        let body = line
            .strip_prefix(&prefix)
            .and_then(|l| l.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("unexpected chat line {line:?}"))
            .to_string();
        if body == last {
            return lines;
        }
        lines.push(body);
        read.fetch_add(1, Ordering::SeqCst);
    }
}

/// Chat with `--max-output 65536`: a receiver that never reads is
/// disconnected once its pending output passes the limit, while a reading
/// receiver gets every line, in order. The sender keeps at most a window
/// of lines ahead of the reader: a reader that falls a full limit behind
/// is, by the limit's definition, not keeping up, and would be cut off too.
fn chat_slow_receiver_disconnected(backend: &str) {
    slow_receiver_is_cut_off(
        backend,
        &["--max-output", "65536"],
        "output limit exceeded (client not reading): hard limit 65536 bytes",
    );
}

/// The same with a soft limit (Redis's `client-output-buffer-limit`): a
/// non-reader over 64 KiB of pushed output for 0.3 s is disconnected, far
/// below the hard limit; the reader is not.
fn chat_soft_output_limit(backend: &str) {
    slow_receiver_is_cut_off(
        backend,
        &[
            "--max-output",
            "100000000",
            "--max-output-soft",
            "65536:0.3",
        ],
        "output limit exceeded (client not reading): soft limit 65536 bytes for 300ms",
    );
}

/// Three chat clients: a sender, a reader, and one that never reads,
/// under `limits`; the non-reader is disconnected with `reason` logged,
/// the reader gets every line.
fn slow_receiver_is_cut_off(backend: &str, limits: &[&str], reason: &str) {
    const WINDOW: u64 = 32; // 32 lines of ~1 KB: half the limit
    let mut args = vec!["--app", "chat"];
    args.extend_from_slice(limits);
    let mut server = Server::start(backend, &args);
    let clients = connect_logged(&server, 3);
    let addrs: Vec<SocketAddr> = clients.iter().map(|(_, a)| *a).collect();
    let mut it = clients.into_iter().map(|(c, _)| c);
    let (mut sender, mut reader, slow) = (it.next().unwrap(), it.next().unwrap(), it.next());
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let (stop_flag, read_so_far) = (stop.clone(), read.clone());
    let sending = thread::spawn(move || {
        let pad = "p".repeat(1000);
        let mut sent = 0u64;
        let deadline = Instant::now() + LIVENESS;
        while !stop_flag.load(Ordering::SeqCst) && sent < 200_000 {
            while sent >= read_so_far.load(Ordering::SeqCst) + WINDOW {
                assert!(Instant::now() < deadline, "the reader stopped at {sent}");
                thread::sleep(Duration::from_micros(200));
            }
            let batch: String = (sent..sent + 16)
                .map(|i| format!("line {i:07} {pad}\n"))
                .collect();
            sender.write_all(batch.as_bytes()).expect("the sender");
            sent += 16;
        }
        sender.write_all(b"final\n").expect("the sender");
        (sender, sent)
    });
    let sender_addr = addrs[0];
    let reading = thread::spawn(move || {
        let lines = read_chat_counting(&mut reader, sender_addr, "final", &read);
        (reader, lines)
    });
    let dropped = server.wait_for_stderr(&format!("disconnect {}", addrs[2]), LIVENESS);
    stop.store(true, Ordering::SeqCst);
    let (sender, sent) = sending.join().expect("the sender thread");
    let (reader, lines) = reading.join().expect("the reader thread");
    assert!(
        dropped,
        "the slow receiver was not disconnected after {sent} lines; stderr:\n{}",
        server.stderr_text()
    );
    assert!(
        server
            .stderr_text()
            .contains(&format!("{}: {reason}", addrs[2])),
        "the reason was not logged; stderr:\n{}",
        server.stderr_text()
    );
    assert_eq!(lines.len() as u64, sent, "lines the reader got");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("line {i:07} ")),
            "line {i} is {:?}",
            &line[..line.len().min(20)]
        );
    }
    drop((sender, reader, slow));
    server.stop();
}

/// Chat with `--max-output 65536`: a burst of many short lines (far more
/// output than input) must not disconnect receivers that do read.
fn chat_burst_keeps_fast_receivers(backend: &str) {
    let mut server = Server::start(backend, &["--app", "chat", "--max-output", "65536"]);
    let mut clients = connect_logged(&server, 2);
    let addrs: Vec<SocketAddr> = clients.iter().map(|(_, a)| *a).collect();
    let (mut sender, _) = clients.remove(0);
    let (mut reader, _) = clients.remove(0);
    let burst: String = (0..40_000).map(|i| format!("{i}\n")).collect();
    let writer = thread::spawn(move || {
        sender.write_all(burst.as_bytes()).expect("the burst");
        sender.write_all(b"final\n").expect("the burst");
        sender
    });
    let lines = read_chat_until(&mut reader, addrs[0], "final");
    let sender = writer.join().unwrap();
    assert_eq!(lines.len(), 40_000);
    assert!(lines.iter().enumerate().all(|(i, l)| *l == i.to_string()));
    drop((sender, reader));
    server.stop();
}

/// Random bytes (NUL, invalid UTF-8, anything) to ack: replies keep coming,
/// the server lives.
fn garbage_to_ack(backend: &str) {
    let mut server = Server::start(backend, &[]);
    let mut rng = Rng::new(seed("garbage_ack", backend));
    for _ in 0..4 {
        let mut client = server.connect();
        let len = rng.range(1, 4096);
        let mut junk = rng.bytes(len);
        junk.extend_from_slice(b"\0\xff\xfe\xc3");
        client.write_all(&junk).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (back, error) = read_to_end(&mut client);
        assert!(error.is_none(), "read failed: {error:?}");
        assert!(
            !back.is_empty() && back.chunks(OK.len()).all(|c| c == OK),
            "replies to garbage: {:?}",
            String::from_utf8_lossy(&back)
        );
    }
    let mut client = server.connect();
    round_trip(&mut client, b"sane", OK);
    drop(client);
    assert_eq!(server.stop().clients, 5);
}

/// Random bytes to chat: relayed exactly, line by line (a `\r` before the
/// `\n` dropped), unfinished tail kept back; the server lives.
fn garbage_to_chat(backend: &str) {
    let mut server = Server::start(backend, &["--app", "chat"]);
    let mut clients = connect_logged(&server, 2);
    let sender_addr = clients[0].1;
    let mut rng = Rng::new(seed("garbage_chat", backend));
    let mut junk = rng.bytes(16 * 1024);
    // Some newlines, a CRLF and a NUL for sure.
    for _ in 0..20 {
        let at = rng.range(0, junk.len() - 1);
        junk[at] = b'\n';
    }
    junk.extend_from_slice(b"\0\xff\r\n\xc3\xa9 tail");
    let mut expected = Vec::new();
    let complete = junk.iter().rposition(|&b| b == b'\n').unwrap();
    for line in junk[..complete].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        expected.extend_from_slice(format!("{sender_addr}: ").as_bytes());
        expected.extend_from_slice(line);
        expected.push(b'\n');
    }
    clients[0].0.write_all(&junk).unwrap();
    let got = read_n(&mut clients[1].0, expected.len());
    assert!(got == expected, "relayed garbage differs");
    // The tail was kept back; a newline finishes it.
    clients[0].0.write_all(b" end\n").unwrap();
    let tail = format!("{sender_addr}: \u{e9} tail end\n");
    let got = read_n(&mut clients[1].0, tail.len());
    assert_eq!(String::from_utf8_lossy(&got), tail);
    round_trip_chat(&mut clients, 1, 0);
    drop(clients);
    server.stop();
}

/// SIGTERM with output pending: a client that sent far more than it read
/// (the server stopped reading it: back-pressure) starts reading only after
/// the signal, and gets every byte the server echoed, then end of stream;
/// the server exits 0 with a correct shutdown line.
fn sigterm_flushes_pending_output(backend: &str) {
    const LIMIT: usize = 64 << 20;
    let mut server = Server::start(backend, &["--app", "echo"]);
    let mut idle = server.connect();
    round_trip(&mut idle, b"idle", b"idle");
    let mut owed = server.connect();
    let flooder = Flooder::start(
        owed.try_clone().unwrap(),
        Rng::new(seed("sigterm", backend)),
        LIMIT,
    );
    flooder.wait_blocked_or_done(LIMIT);
    let sent = flooder.finish();
    assert!(sent.len() < LIMIT, "the server never pushed back");
    server.sigterm();
    thread::sleep(Duration::from_millis(100));
    expect_closed(&mut idle, "an idle client at shutdown");
    let (back, error) = read_to_end(&mut owed);
    // A client closes once it has its end of stream.
    drop(owed);
    let summary = server.expect_clean_exit();
    assert!(
        error.is_none(),
        "reading what was owed failed after {} bytes: {error:?}",
        back.len()
    );
    assert_eq!(
        back.len() as u64 + 4,
        summary.bytes_out,
        "bytes the client got vs. bytes the server wrote ({summary:?}, {} sent)",
        sent.len()
    );
    assert!(
        back == sent[..back.len()],
        "what came back is not what was sent"
    );
    assert_eq!(summary.clients, 2);
    // Input past what was echoed was read and discarded while the
    // connection closed; it is counted as read.
    assert_eq!(summary.bytes_in, sent.len() as u64 + 4, "{summary:?}");
}

/// The first SIGTERM is logged and starts the shutdown, which waits for a
/// client that is owed output and does not read; a second ends the wait
/// (far shorter than the grace period asked for), with a reason line.
fn a_second_sigterm_ends_the_grace_period(backend: &str) {
    const LIMIT: usize = 64 << 20;
    let mut server = Server::start(backend, &["--app", "echo", "--shutdown-grace", "10m"]);
    let owed = server.connect();
    let peer = owed.local_addr().unwrap();
    let flooder = Flooder::start(
        owed.try_clone().unwrap(),
        Rng::new(seed("second-sigterm", backend)),
        LIMIT,
    );
    flooder.wait_blocked_or_done(LIMIT);
    let sent = flooder.finish();
    assert!(sent.len() < LIMIT, "the server never pushed back");
    server.sigterm();
    assert!(
        server.wait_for_stderr("SIGTERM: shutting down gracefully", LIVENESS),
        "the signal was not logged; stderr:\n{}",
        server.stderr_text()
    );
    server.assert_alive("during the grace period");
    server.sigterm();
    let summary = server.expect_clean_exit();
    assert_eq!(summary.clients, 1);
    let stderr = server.stderr_text();
    assert!(stderr.contains("SIGTERM again: closing"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&peer.to_string()) && l.contains("bytes unsent")),
        "no reason line for {peer}:\n{stderr}"
    );
    drop(owed);
}

/// `--max-clients-reply`: a client over the limit is told why, then
/// closed; the one within it is still served.
fn max_clients_reply(backend: &str) {
    let mut server = Server::start(
        backend,
        &[
            "--max-clients",
            "1",
            "--max-clients-reply",
            "-ERR max number of clients reached\\r\\n",
        ],
    );
    let mut first = server.connect();
    round_trip(&mut first, b"one", OK);
    let mut over = server.connect();
    let mut told = Vec::new();
    over.read_to_end(&mut told)
        .expect("the refusal and end of stream");
    assert_eq!(told, b"-ERR max number of clients reached\r\n");
    round_trip(&mut first, b"still", OK);
    drop(first);
    server.stop();
}

/// SIGINT also shuts down gracefully with status 0.
fn sigint_exits_zero(backend: &str) {
    let mut server = Server::start(backend, &[]);
    let mut client = server.connect();
    round_trip(&mut client, b"hi", OK);
    server.sigint();
    let summary = server.expect_clean_exit();
    assert_eq!(
        summary,
        common::Summary {
            clients: 1,
            bytes_in: 2,
            bytes_out: OK.len() as u64
        }
    );
    expect_closed(&mut client, "a client at shutdown");
}

/// `--bind [::1]:0` works (skipped when this machine has no IPv6 loopback).
fn ipv6_loopback(backend: &str) {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: cannot bind [::1] here");
        return;
    }
    let mut server = Server::spawn(
        &[
            "serve",
            "--bind",
            "[::1]:0",
            "--backend",
            backend,
            "--app",
            "echo",
        ],
        &[],
    );
    assert!(server.addr.is_ipv6(), "{}", server.startup);
    assert!(server.startup.starts_with("iomux: listening on [::1]:"));
    let mut client = server.connect();
    let addr = client.local_addr().unwrap();
    server.expect_connect_logged(addr);
    assert!(addr.to_string().starts_with("[::1]:"));
    round_trip(&mut client, b"over v6", b"over v6");
    drop(client);
    server.expect_disconnect_logged(addr);
    server.stop();
}

/// The command line itself, run once (not per backend).
mod cli {
    use super::common::{Server, run_to_exit};
    use std::net::TcpListener;
    use std::time::Duration;

    const QUICK: Duration = Duration::from_secs(10);

    #[test]
    fn unknown_flag_exits_2_with_usage() {
        let done = run_to_exit(&["serve", "--no-such-flag"], &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("--no-such-flag"), "{}", done.stderr);
        assert!(done.stderr.contains("Usage"), "{}", done.stderr);
        assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
    }

    #[test]
    fn unknown_backend_exits_2_listing_names() {
        let done = run_to_exit(&["serve", "--backend", "nope"], &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        for name in [
            "auto",
            "select",
            "poll",
            "epoll",
            "epoll-et",
            "uring-poll",
            "uring",
        ] {
            assert!(
                done.stderr.contains(name),
                "{name} missing:\n{}",
                done.stderr
            );
        }
        assert!(done.stderr.contains("nope"), "{}", done.stderr);
    }

    #[test]
    fn unknown_app_exits_2() {
        let done = run_to_exit(&["serve", "--app", "nope"], &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("nope"), "{}", done.stderr);
        assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
    }

    #[test]
    fn env_backend_applies_without_the_flag() {
        let env = [("IOMUX_BACKEND", "poll")];
        let mut server = Server::spawn(&["serve", "--bind", "127.0.0.1:0"], &env);
        assert!(
            server.startup.ends_with("(backend poll, app ack)"),
            "{}",
            server.startup
        );
        server.stop();
        // The flag wins over the environment.
        let args = ["serve", "--bind", "127.0.0.1:0", "--backend", "select"];
        let mut server = Server::spawn(&args, &env);
        assert!(
            server.startup.ends_with("(backend select, app ack)"),
            "{}",
            server.startup
        );
        server.stop();
    }

    #[test]
    fn invalid_env_backend_exits_2() {
        let env = [("IOMUX_BACKEND", "kqueue")];
        let done = run_to_exit(&["serve", "--bind", "127.0.0.1:0"], &env, QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("kqueue"), "{}", done.stderr);
        assert!(done.stderr.contains("epoll-et"), "{}", done.stderr);
        assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
    }

    #[test]
    fn address_in_use_exits_1_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let done = run_to_exit(&["serve", "--bind", &addr], &[], QUICK);
        assert_eq!(done.status.code(), Some(1), "stderr:\n{}", done.stderr);
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr:\n{}", done.stderr);
        assert!(lines[0].contains(&addr), "{}", lines[0]);
        assert!(lines[0].to_lowercase().contains("in use"), "{}", lines[0]);
        assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
    }

    /// Where io_uring cannot be set up (here forced by `IOMUX_NO_URING`;
    /// the same path as `kernel.io_uring_disabled` or a seccomp filter),
    /// uring-poll fails with one line naming the reason, exit 1.
    #[test]
    fn uring_unavailable_exits_1_naming_the_reason() {
        for backend in ["uring-poll", "uring"] {
            let args = ["serve", "--bind", "127.0.0.1:0", "--backend", backend];
            let done = run_to_exit(&args, &[("IOMUX_NO_URING", "1")], QUICK);
            assert_eq!(done.status.code(), Some(1), "stderr:\n{}", done.stderr);
            let lines: Vec<&str> = done.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "stderr:\n{}", done.stderr);
            assert!(
                lines[0].contains(&format!("the {backend} event loop"))
                    && lines[0].contains("io_uring unavailable: disabled by IOMUX_NO_URING"),
                "{}",
                lines[0]
            );
            assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
        }
    }

    #[test]
    fn auto_resolves_to_epoll() {
        let args = ["serve", "--bind", "127.0.0.1:0", "--backend", "auto"];
        let mut server = Server::spawn(&args, &[]);
        assert!(
            server.startup.ends_with("(backend epoll, app ack)"),
            "{}",
            server.startup
        );
        server.stop();
        // And it is the default.
        let mut server = Server::spawn(&["serve", "--bind", "127.0.0.1:0"], &[]);
        assert!(
            server.startup.ends_with("(backend epoll, app ack)"),
            "{}",
            server.startup
        );
        server.stop();
    }

    #[test]
    fn startup_line_names_the_app() {
        for app in ["ack", "echo", "chat"] {
            let args = ["serve", "--bind", "127.0.0.1:0", "--app", app];
            let mut server = Server::spawn(&args, &[]);
            assert_eq!(
                server.startup,
                format!(
                    "iomux: listening on {} (backend epoll, app {app})",
                    server.addr
                )
            );
            assert_ne!(server.addr.port(), 0, "the real port is printed");
            server.stop();
        }
    }
}
