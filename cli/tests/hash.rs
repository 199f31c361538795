//! The slow-handler problem: the `hash` app, the offload pool, the stall
//! watchdog and the stats line, against the real server (and, for offload
//! as a library feature, against an `EventLoop` run in a thread).
//!
//! Each behaviour is a plain function `fn name(backend: &str)`;
//! `backend_suite!` turns the list into one `#[test]` per backend.
//!
//! Heavy requests are sized at run time ([`heavy_n`]): the tests run the
//! debug build, where one SHA-256 round costs about 60x what it costs in
//! release, so a fixed N would be either far too slow or far too fast.
//! Nothing here passes or fails on a timing threshold: "the light reply came
//! first" is checked as an order (when one reply arrived, was the other
//! already readable?), and "the job is running" is observed as the server
//! process burning CPU time (`/proc/PID/stat`), never by sleeping.

#[macro_use]
mod common;

use common::{LIVENESS, LoopThread, Server, parse_summary, read_to_end};
use iomux::App;
use iomux::app::split_lines;
use iomux::pool::{JobId, JobPanicked, JobResult};
use iomux::{Config, ConnId, Ctx};
use iomux_cli::apps::iterated_sha256_hex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

backend_suite! {
    endless_pipelining_is_bounded_by_the_job_limit,
    known_vectors,
    errors_keep_the_connection_usable,
    long_line_is_refused_and_skipped,
    pipelined_replies_keep_request_order_under_offload,
    light_request_not_blocked_by_offloaded_heavy_one,
    without_workers_heavy_request_blocks_the_loop_and_stalls,
    watchdog_quiet_for_light_traffic,
    watchdog_off_with_stall_ms_0,
    client_closes_while_its_job_runs,
    sigterm_waits_for_job_in_flight,
    job_longer_than_grace_is_abandoned,
    half_close_with_job_in_flight,
    half_close_past_the_job_limit,
    stats_lines,
    library_offload_from_a_custom_app,
    library_panicking_job_is_reported,
    library_shutdown_waits_then_abandons_jobs,
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Known answers, computed independently (Python's `hashlib`), so a wrong
/// `iterated_sha256_hex` cannot make the tests agree with a wrong server.
const ABC_1: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const ABC_2: &str = "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358";
const ABC_1000: &str = "fc8a6b86a13f71cd9a67f558ab6fd82a3dd89186163a017ed8051acf6d3f8f99";
const HELLO_WORLD_3: &str = "a8521c8d4af3029c527bc7118aef594c5a259e3bbc7be125196b5a2997fb763a";
const EMPTY_1: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The expected reply line (digest and `\n`), memoised: every backend asks
/// for the same heavy values, and computing them costs as much here as in
/// the server.
fn expected(text: &str, n: u64) -> String {
    static MEMO: OnceLock<Mutex<HashMap<(String, u64), String>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(hit) = memo.lock().unwrap().get(&(text.to_string(), n)) {
        return hit.clone();
    }
    let line = format!("{}\n", iterated_sha256_hex(text.as_bytes(), n));
    memo.lock()
        .unwrap()
        .insert((text.to_string(), n), line.clone());
    line
}

/// The iterated SHA-256 computed by `python3` (hashlib), or `None` when
/// there is no usable python3.
fn python_iterated(text: &str, n: u64) -> Option<String> {
    let script = "import hashlib, sys\n\
                  d = hashlib.sha256(sys.argv[1].encode()).digest()\n\
                  for _ in range(int(sys.argv[2]) - 1):\n    d = hashlib.sha256(d).digest()\n\
                  print(d.hex())\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, text, &n.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let hex = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (hex.len() == 64).then_some(hex)
}

/// Nanoseconds per SHA-256 round in this build (the server binary is built
/// with the same profile as this test). The fastest of a few runs, so other
/// tests running meanwhile make heavy requests longer, never shorter.
fn ns_per_round() -> f64 {
    static NS: OnceLock<f64> = OnceLock::new();
    *NS.get_or_init(|| {
        let rounds = 2000;
        (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(iterated_sha256_hex(b"calibrate", rounds));
                start.elapsed().as_nanos() as f64 / rounds as f64
            })
            .fold(f64::INFINITY, f64::min)
    })
}

/// An N whose `hash N ...` takes about `target` of CPU (at least 1000, at
/// most the protocol's maximum).
fn heavy_n(target: Duration) -> u64 {
    let n = (target.as_nanos() as f64 / ns_per_round()) as u64;
    n.clamp(1000, iomux_cli::apps::MAX_ITERATIONS)
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits until the server has burned `ticks` clock ticks of CPU since
/// `baseline`: the positive sign that a heavy request is being computed
/// (an idle server burns none).
fn wait_cpu_burn(server: &Server, baseline: u64, ticks: u64) {
    let deadline = Instant::now() + LIVENESS;
    while cpu_ticks(server.pid()) < baseline + ticks {
        assert!(
            Instant::now() < deadline,
            "the server never started on the heavy request\nstderr:\n{}",
            server.stderr_text()
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// Reads one `\n`-terminated line (the socket's read timeout bounds it).
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed after {:?} (no end of line)",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return String::from_utf8(line).expect("a UTF-8 reply");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read failed after {:?}: {e}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

/// Sends `line` plus `\n` and returns the one reply line.
fn ask(stream: &mut TcpStream, line: &str) -> String {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send a request");
    read_line(stream)
}

/// Whether bytes (or the end of stream) are waiting on `stream` right now.
fn readable_now(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let ready = match stream.peek(&mut byte) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("peek failed: {e}"),
    };
    stream.set_nonblocking(false).unwrap();
    ready
}

/// Polls `text()` until `done` holds; false after `timeout`.
fn wait_text(text: impl Fn() -> String, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done(&text()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The complete lines of `text`: a line being written may show up in
/// pieces (`eprintln!` can take several writes), so an unterminated tail is
/// left out.
fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text[..text.rfind('\n').map_or(0, |i| i + 1)].lines()
}

/// The (complete) `stall:` lines of a server's stderr.
fn stall_lines(stderr: &str) -> Vec<String> {
    complete_lines(stderr)
        .filter(|l| l.starts_with("stall:"))
        .map(str::to_string)
        .collect()
}

/// Parses `stall: hash handler for ADDR ran N ms on the loop thread
/// (backend NAME)`; returns (ADDR, N, NAME).
fn parse_stall(line: &str) -> Option<(String, u64, String)> {
    let rest = line.strip_prefix("stall: hash handler for ")?;
    let (addr, rest) = rest.split_once(" ran ")?;
    let (ms, rest) = rest.split_once(" ms on the loop thread (backend ")?;
    let backend = rest.strip_suffix(')')?;
    Some((addr.to_string(), ms.parse().ok()?, backend.to_string()))
}

/// The fields of a `stats:` line, in order.
const STATS_KEYS: [&str; 11] = [
    "clients",
    "accepted",
    "closed",
    "req_s",
    "in_bytes_s",
    "out_bytes_s",
    "turns_s",
    "turn_p99_us",
    "pending_out",
    "pool_queue",
    "stalls",
];

/// Parses a `stats:` line: exactly the [`STATS_KEYS`], each a finite,
/// non-negative number.
fn parse_stats(line: &str) -> Result<HashMap<&'static str, f64>, String> {
    let rest = line
        .strip_prefix("stats: ")
        .ok_or_else(|| format!("no 'stats: ' prefix: {line:?}"))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.len() != STATS_KEYS.len() {
        return Err(format!("expected {} fields: {line:?}", STATS_KEYS.len()));
    }
    let mut map = HashMap::new();
    for (field, key) in fields.iter().zip(STATS_KEYS) {
        let value = field
            .strip_prefix(key)
            .and_then(|v| v.strip_prefix('='))
            .ok_or_else(|| format!("expected {key}=...: {field:?} in {line:?}"))?;
        let number: f64 = value
            .parse()
            .map_err(|_| format!("{key} is not a number: {value:?} in {line:?}"))?;
        if !number.is_finite() || number < 0.0 {
            return Err(format!("{key} out of range: {value:?} in {line:?}"));
        }
        map.insert(key, number);
    }
    Ok(map)
}

/// Every complete `stats:` line of `stderr`, parsed; fails the test on a
/// malformed one.
fn all_stats(stderr: &str) -> Vec<HashMap<&'static str, f64>> {
    complete_lines(stderr)
        .filter(|l| l.starts_with("stats:"))
        .map(|l| parse_stats(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn hash_server(backend: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--app", "hash"];
    args.extend_from_slice(extra);
    let server = Server::start(backend, &args);
    assert!(
        server
            .startup
            .ends_with(&format!("(backend {backend}, app hash)")),
        "{}",
        server.startup
    );
    server
}

// ---------------------------------------------------------------------------
// The protocol
// ---------------------------------------------------------------------------

/// Known digests, iterated digests checked against independent values, and
/// TEXT taken verbatim (spaces included).
fn known_vectors(backend: &str) {
    let mut server = hash_server(backend, &[]);
    let mut c = server.connect();
    let mut bytes_in = 0;
    let mut bytes_out = 0;
    let mut check = |c: &mut TcpStream, line: &str, want: &str| {
        let got = ask(c, line);
        assert_eq!(got, format!("{want}\n"), "reply to {line:?}");
        bytes_in += line.len() + 1;
        bytes_out += got.len();
    };
    check(&mut c, "hash 1 abc", ABC_1);
    check(&mut c, "hash 2 abc", ABC_2);
    check(&mut c, "hash 1000 abc", ABC_1000);
    // TEXT is everything after the second space: inner and trailing spaces
    // are part of it.
    check(&mut c, "hash 3 hello  world ", HELLO_WORLD_3);
    check(&mut c, "hash 1 ", EMPTY_1);
    // The crate's own function agrees with the independent values...
    assert_eq!(iterated_sha256_hex(b"abc", 2), ABC_2);
    assert_eq!(iterated_sha256_hex(b"abc", 1000), ABC_1000);
    // ...and with python's hashlib on a value chosen here, when python3 is
    // there.
    let text = format!("iomux {backend} with  spaces ");
    let n = 777;
    match python_iterated(&text, n) {
        Some(hex) => check(&mut c, &format!("hash {n} {text}"), &hex),
        None => eprintln!("python3 with hashlib not available: skipping the runtime cross-check"),
    }
    drop(c);
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
    assert_eq!(summary.bytes_in, bytes_in as u64);
    assert_eq!(summary.bytes_out, bytes_out as u64);
}

/// Each bad request gets exactly one `error: ` line and the connection
/// goes on working.
fn errors_keep_the_connection_usable(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let mut c = server.connect();
    for bad in [
        "hash 0 x",
        "hash abc x",
        "hash 5",
        "foo",
        "",
        "hash",
        "hash 10000001 x",
        "hash -1 x",
        "HASH 1 x",
    ] {
        let reply = ask(&mut c, bad);
        assert!(
            reply.starts_with("error: ") && reply.len() > "error: \n".len(),
            "reply to {bad:?}: {reply:?}"
        );
        // Had the error produced more than one line, this would read it.
        assert_eq!(ask(&mut c, "hash 1 abc"), format!("{ABC_1}\n"));
    }
    // Errors pipelined between good requests, offloaded ones included.
    c.write_all(b"hash 1 abc\nbogus\nhash 1000 abc\nhash 0 abc\nhash 2 abc\n")
        .unwrap();
    assert_eq!(read_line(&mut c), format!("{ABC_1}\n"));
    assert!(read_line(&mut c).starts_with("error: "));
    assert_eq!(read_line(&mut c), format!("{ABC_1000}\n"));
    assert!(read_line(&mut c).starts_with("error: "));
    assert_eq!(read_line(&mut c), format!("{ABC_2}\n"));
    drop(c);
    server.stop();
}

/// A line over `--max-line` gets one `error: line too long`, the rest of
/// it is skipped however it arrives, and the connection stays usable.
fn long_line_is_refused_and_skipped(backend: &str) {
    let mut server = hash_server(backend, &["--max-line", "64"]);
    let mut c = server.connect();
    // Exactly at the limit: accepted.
    let text = "x".repeat(64 - "hash 1 ".len());
    assert_eq!(ask(&mut c, &format!("hash 1 {text}")), expected(&text, 1));
    // Also when its CR LF is split and the CR arrives first (it is part of
    // the terminator, not of the line).
    c.write_all(format!("hash 1 {text}\r").as_bytes()).unwrap();
    c.flush().unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(ask(&mut c, ""), expected(&text, 1), "the LF completes it");
    // Over the limit, in several writes (the pauses only make separate
    // reads likely; the outcome must not depend on them). Later pieces look
    // like requests: they are part of the long line and must be skipped.
    let pieces = [
        format!("hash 1 {}", "a".repeat(50)),
        "b".repeat(40),
        " hash 1 abc".to_string(),
        "c".repeat(100),
        " hash 2 abc\n".to_string(),
    ];
    for piece in &pieces {
        c.write_all(piece.as_bytes()).unwrap();
        c.flush().unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_line(&mut c), "error: line too long\n");
    // The next reply is the next request's: nothing else came out.
    assert_eq!(ask(&mut c, "hash 1 abc"), format!("{ABC_1}\n"));
    // A long line in the same write as requests around it.
    let long = format!("hash 1 {}", "z".repeat(300));
    c.write_all(format!("hash 2 abc\n{long}\nhash 1000 abc\n").as_bytes())
        .unwrap();
    assert_eq!(read_line(&mut c), format!("{ABC_2}\n"));
    assert_eq!(read_line(&mut c), "error: line too long\n");
    assert_eq!(read_line(&mut c), format!("{ABC_1000}\n"));
    // A long line whose end arrives much later, byte by byte.
    c.write_all("q".repeat(200).as_bytes()).unwrap();
    assert_eq!(read_line(&mut c), "error: line too long\n");
    for _ in 0..5 {
        c.write_all(b"q").unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    c.write_all(b"\nhash 3 hello  world \n").unwrap();
    assert_eq!(read_line(&mut c), format!("{HELLO_WORLD_3}\n"));
    assert!(
        !readable_now(&c),
        "an extra reply came after the long lines"
    );
    drop(c);
    server.stop();
}

// ---------------------------------------------------------------------------
// Offload
// ---------------------------------------------------------------------------

/// Heavy, light and bad requests pipelined in one write come back in
/// request order, although the light ones are ready long before the heavy
/// ones (and the second heavy one before the first, with two workers).
fn pipelined_replies_keep_request_order_under_offload(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "2", "--offload-above", "1000"]);
    let big = heavy_n(Duration::from_millis(250));
    let small = heavy_n(Duration::from_millis(60));
    let requests: Vec<(String, Option<String>)> = vec![
        (format!("hash {big} first"), Some(expected("first", big))),
        ("hash 1 second".into(), Some(expected("second", 1))),
        (
            format!("hash {small} third"),
            Some(expected("third", small)),
        ),
        ("hash 1 fourth".into(), Some(expected("fourth", 1))),
        ("hash 0 fifth".into(), None),
        ("hash 999 sixth".into(), Some(expected("sixth", 999))),
        ("hash 1000 seventh".into(), Some(expected("seventh", 1000))),
        ("hash 1 eighth".into(), Some(expected("eighth", 1))),
    ];
    let mut c = server.connect();
    let batch: String = requests.iter().map(|(r, _)| format!("{r}\n")).collect();
    c.write_all(batch.as_bytes()).unwrap();
    for (request, want) in &requests {
        let got = read_line(&mut c);
        match want {
            Some(want) => assert_eq!(&got, want, "reply to {request:?} (out of order?)"),
            None => assert!(got.starts_with("error: "), "reply to {request:?}: {got:?}"),
        }
    }
    assert!(!readable_now(&c), "more replies than requests");
    // And again on the same connection: the queue state is clean.
    assert_eq!(ask(&mut c, "hash 2 abc"), format!("{ABC_2}\n"));
    drop(c);
    server.stop();
}

/// While one connection's heavy request runs on the pool, another
/// connection's light request is answered: its reply arrives while the
/// heavy reply has not.
fn light_request_not_blocked_by_offloaded_heavy_one(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let n = heavy_n(Duration::from_millis(1000));
    let mut heavy = server.connect();
    let baseline = cpu_ticks(server.pid());
    heavy
        .write_all(format!("hash {n} heavy\n").as_bytes())
        .unwrap();
    wait_cpu_burn(&server, baseline, 3);
    // Connected, accepted and answered while the worker is busy.
    let mut light = server.connect();
    assert_eq!(ask(&mut light, "hash 1 abc"), format!("{ABC_1}\n"));
    assert_eq!(ask(&mut light, "hash 2 abc"), format!("{ABC_2}\n"));
    assert!(
        !readable_now(&heavy),
        "the heavy reply came before the light ones: the light client waited for it"
    );
    assert_eq!(read_line(&mut heavy), expected("heavy", n));
    drop((heavy, light));
    let summary = server.stop();
    assert_eq!(summary.clients, 2);
    assert!(
        stall_lines(&server.stderr_text()).is_empty(),
        "offloaded work stalled the loop:\n{}",
        server.stderr_text()
    );
}

/// With `--workers 0` the heavy request runs on the loop thread: a light
/// request sent meanwhile is answered only after it, and the watchdog names
/// the handler, the client and the backend.
fn without_workers_heavy_request_blocks_the_loop_and_stalls(backend: &str) {
    let mut server = hash_server(
        backend,
        &["--workers", "0", "--stall-ms", "20", "--stats", "0.1"],
    );
    let n = heavy_n(Duration::from_millis(400));
    let mut heavy = server.connect();
    let heavy_addr = heavy.local_addr().unwrap();
    let mut light = server.connect();
    let light_addr = light.local_addr().unwrap();
    // Both accepted before the loop gets busy.
    server.expect_connect_logged(heavy_addr);
    server.expect_connect_logged(light_addr);
    let baseline = cpu_ticks(server.pid());
    heavy
        .write_all(format!("hash {n} heavy\n").as_bytes())
        .unwrap();
    wait_cpu_burn(&server, baseline, 3);
    assert_eq!(ask(&mut light, "hash 1 abc"), format!("{ABC_1}\n"));
    assert!(
        readable_now(&heavy),
        "the light reply came while the heavy request was still running, without workers"
    );
    assert_eq!(read_line(&mut heavy), expected("heavy", n));
    let needle = format!("stall: hash handler for {heavy_addr} ran ");
    assert!(
        wait_text(
            || server.stderr_text(),
            LIVENESS,
            |t| stall_lines(t).iter().any(|l| l.starts_with(&needle))
        ),
        "no stall line for {heavy_addr}; stderr:\n{}",
        server.stderr_text()
    );
    let stderr = server.stderr_text();
    let line = stall_lines(&stderr)
        .into_iter()
        .find(|l| l.starts_with(&needle))
        .unwrap();
    let (addr, ms, name) =
        parse_stall(&line).unwrap_or_else(|| panic!("malformed stall line {line:?}"));
    assert_eq!(addr, heavy_addr.to_string());
    assert_eq!(name, backend, "{line}");
    assert!(ms >= 20, "a stall under the threshold was logged: {line}");
    // The count reaches the stats line.
    assert!(
        wait_text(
            || server.stderr_text(),
            LIVENESS,
            |t| all_stats(t).iter().any(|s| s["stalls"] >= 1.0)
        ),
        "no stats line counts the stall; stderr:\n{}",
        server.stderr_text()
    );
    drop((heavy, light));
    server.stop();
}

/// With the default threshold (100 ms), 200 light requests log no stall.
fn watchdog_quiet_for_light_traffic(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let mut clients: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    for i in 0..50 {
        for (k, c) in clients.iter_mut().enumerate() {
            let text = format!("light {k} {i}");
            assert_eq!(ask(c, &format!("hash 3 {text}")), expected(&text, 3));
        }
    }
    drop(clients);
    server.stop();
    let stderr = server.stderr_text();
    assert!(
        stall_lines(&stderr).is_empty(),
        "stall lines for light traffic:\n{stderr}"
    );
}

/// `--stall-ms 0` turns the watchdog off, even for a request that holds
/// the loop for longer than the default threshold.
fn watchdog_off_with_stall_ms_0(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "0", "--stall-ms", "0"]);
    let n = heavy_n(Duration::from_millis(150));
    let mut c = server.connect();
    assert_eq!(ask(&mut c, &format!("hash {n} off")), expected("off", n));
    assert_eq!(ask(&mut c, "hash 1 abc"), format!("{ABC_1}\n"));
    drop(c);
    server.stop();
    let stderr = server.stderr_text();
    assert!(
        stall_lines(&stderr).is_empty(),
        "stall lines with --stall-ms 0:\n{stderr}"
    );
}

/// Clients that go away while their job runs: one closes right after
/// sending, one resets the connection once its job is running. The server
/// logs both disconnects, drops the results, keeps serving, leaks no
/// descriptor, and stops cleanly.
fn client_closes_while_its_job_runs(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let fds_before = server.open_fds().len();
    let n = heavy_n(Duration::from_millis(300));

    let mut closer = server.connect();
    let closer_addr = closer.local_addr().unwrap();
    closer
        .write_all(format!("hash {n} closer\n").as_bytes())
        .unwrap();
    drop(closer);
    server.expect_disconnect_logged(closer_addr);

    let mut resetter = server.connect();
    let resetter_addr = resetter.local_addr().unwrap();
    let baseline = cpu_ticks(server.pid());
    resetter
        .write_all(format!("hash {n} resetter\n").as_bytes())
        .unwrap();
    wait_cpu_burn(&server, baseline, 3);
    rustix::net::sockopt::set_socket_linger(&resetter, Some(Duration::ZERO)).unwrap();
    drop(resetter); // sends a reset
    server.expect_disconnect_logged(resetter_addr);

    // New clients are served; the offloaded request queues behind the
    // orphaned jobs on the one worker, so once it is answered their results
    // have come back to the loop (and were dropped).
    let mut fresh = server.connect();
    assert_eq!(ask(&mut fresh, "hash 1 abc"), format!("{ABC_1}\n"));
    assert_eq!(ask(&mut fresh, "hash 1000 abc"), format!("{ABC_1000}\n"));
    let fresh_addr = fresh.local_addr().unwrap();
    drop(fresh);
    server.expect_disconnect_logged(fresh_addr);
    assert_eq!(
        server.open_fds().len(),
        fds_before,
        "descriptors leaked; stderr:\n{}",
        server.stderr_text()
    );
    let summary = server.stop();
    assert_eq!(summary.clients, 3);
}

/// SIGTERM while a job runs: the client still gets its digest, then the end
/// of stream; the server exits 0 with the shutdown line.
fn sigterm_waits_for_job_in_flight(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let n = heavy_n(Duration::from_millis(600));
    let mut idle = server.connect();
    assert_eq!(ask(&mut idle, "hash 1 abc"), format!("{ABC_1}\n"));
    let mut c = server.connect();
    let baseline = cpu_ticks(server.pid());
    c.write_all(format!("hash {n} in flight\n").as_bytes())
        .unwrap();
    wait_cpu_burn(&server, baseline, 3);
    server.sigterm();
    // The idle client is let go at once; the owed one gets its reply.
    let (rest, error) = read_to_end(&mut idle);
    assert!(rest.is_empty() && error.is_none(), "{rest:?} {error:?}");
    let (got, error) = read_to_end(&mut c);
    assert!(error.is_none(), "reading the owed reply failed: {error:?}");
    assert_eq!(String::from_utf8_lossy(&got), expected("in flight", n));
    drop((idle, c));
    let summary = server.expect_clean_exit();
    assert_eq!(summary.clients, 2);
    assert_eq!(summary.bytes_out, (ABC_1.len() + 1 + got.len()) as u64);
}

/// A job longer than the grace deadline (5 s) is abandoned: the server
/// closes the connection and exits 0 once the deadline passes, without
/// waiting for the job and without a panic.
fn job_longer_than_grace_is_abandoned(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let n = iomux_cli::apps::MAX_ITERATIONS;
    let mut c = server.connect();
    let baseline = cpu_ticks(server.pid());
    c.write_all(format!("hash {n} forever\n").as_bytes())
        .unwrap();
    wait_cpu_burn(&server, baseline, 3);
    server.sigterm();
    // Bounded by the socket's read timeout (10 s) and wait_exit's bound.
    let (got, error) = read_to_end(&mut c);
    let status = server.wait_exit(Duration::from_secs(9));
    let (stdout, stderr) = (server.stdout_text(), server.stderr_text());
    common::assert_no_panic(&stdout, &stderr);
    assert!(status.success(), "exit {status}\nstderr:\n{stderr}");
    assert!(
        parse_summary(stdout.lines().last().unwrap_or_default()).is_some(),
        "no shutdown line:\n{stdout}"
    );
    if let Some(e) = error {
        assert!(
            matches!(e.kind(), io::ErrorKind::ConnectionReset),
            "the connection ended with {e}"
        );
    }
    // In a fast (release) build the job may finish within the deadline;
    // then its reply must be right.
    if !got.is_empty() {
        assert!(
            ns_per_round() * (n as f64) < 5e9,
            "a reply arrived although the job outlasts the deadline"
        );
        assert_eq!(String::from_utf8_lossy(&got), expected("forever", n));
    }
}

/// A client that sends a heavy request and shuts down its write side gets
/// every reply, in order, before the end of stream.
fn half_close_with_job_in_flight(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1"]);
    let n = heavy_n(Duration::from_millis(200));
    let mut c = server.connect();
    c.write_all(format!("hash {n} half\nhash 1 abc\n").as_bytes())
        .unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, error) = read_to_end(&mut c);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("{}{ABC_1}\n", expected("half", n)),
        "replies owed at the half-close"
    );
    // Only a heavy request in flight, nothing else owed.
    let mut c = server.connect();
    c.write_all(format!("hash {n} alone\n").as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, error) = read_to_end(&mut c);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(String::from_utf8_lossy(&got), expected("alone", n));
    drop(c);
    let summary = server.stop();
    assert_eq!(summary.clients, 2);
}

/// 200 offloaded requests (more than the per-connection job limit of 64)
/// and then a half-close: the requests past the limit wait in the input,
/// are offered as jobs come back, and every one is answered, in order,
/// before the end of stream.
fn half_close_past_the_job_limit(backend: &str) {
    let mut server = hash_server(backend, &["--workers", "1", "--offload-above", "1"]);
    let mut c = server.connect();
    let requests: String = (0..200).map(|i| format!("hash 2 r{i}\n")).collect();
    c.write_all(requests.as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, error) = read_to_end(&mut c);
    assert!(error.is_none(), "{error:?}");
    let want: String = (0..200).map(|i| expected(&format!("r{i}"), 2)).collect();
    assert!(
        String::from_utf8_lossy(&got) == want,
        "got {} of 200 replies",
        got.iter().filter(|&&b| b == b'\n').count()
    );
    drop(c);
    server.stop();
}

// ---------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------

/// `--stats 0.2`: periodic `stats:` lines on stderr with every field, that
/// follow the traffic; stdout keeps exactly the start-up and shutdown lines.
/// A client that pipelines hundreds of offloaded requests without reading:
/// reading pauses at the loop's per-connection job limit (64), so the pool's
/// queue stays bounded, and every reply still comes back, in order, once the
/// client reads.
fn endless_pipelining_is_bounded_by_the_job_limit(backend: &str) {
    let mut server = hash_server(
        backend,
        &[
            "--workers",
            "1",
            "--offload-above",
            "10",
            "--stats",
            "0.05",
            "-q",
        ],
    );
    let n = heavy_n(Duration::from_millis(2)).max(10);
    let lines = 400;
    let mut c = server.connect();
    let mut burst = String::new();
    for i in 0..lines {
        burst += &format!("hash {n} p{i}\n");
    }
    c.write_all(burst.as_bytes()).expect("send the burst");
    let mut reader = io::BufReader::new(c.try_clone().expect("clone"));
    for i in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a reply");
        assert_eq!(line, expected(&format!("p{i}"), n), "reply {i}");
    }
    drop((reader, c));
    server.stop();
    let stats = all_stats(&server.stderr_text());
    assert!(!stats.is_empty());
    let most = stats.iter().map(|s| s["pool_queue"]).fold(0.0, f64::max);
    assert!(
        most <= 64.0,
        "the pool queue grew past the job limit: {most}"
    );
}

fn stats_lines(backend: &str) {
    let mut server = hash_server(backend, &["--stats", "0.2", "--workers", "1"]);
    // A first line, before any client.
    assert!(
        wait_text(
            || server.stderr_text(),
            LIVENESS,
            |t| !all_stats(t).is_empty()
        ),
        "no stats line; stderr:\n{}",
        server.stderr_text()
    );
    let first = all_stats(&server.stderr_text())[0].clone();
    assert_eq!(first["clients"], 0.0);
    assert_eq!(first["accepted"], 0.0);
    assert_eq!(first["req_s"], 0.0);

    let mut c = server.connect();
    let (mut bytes_in, mut bytes_out) = (0, 0);
    // Requests spread over more than one interval, until a line shows them.
    let deadline = Instant::now() + LIVENESS;
    let mut i = 0;
    loop {
        let request = format!("hash {} stats {i}", if i % 3 == 0 { 1000 } else { 1 });
        let reply = ask(&mut c, &request);
        bytes_in += request.len() + 1;
        bytes_out += reply.len();
        i += 1;
        let seen = all_stats(&server.stderr_text())
            .iter()
            .any(|s| s["accepted"] >= 1.0 && s["clients"] == 1.0 && s["req_s"] > 0.0);
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stats line shows the traffic; stderr:\n{}",
            server.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let addr = c.local_addr().unwrap();
    drop(c);
    server.expect_disconnect_logged(addr);
    assert!(
        wait_text(
            || server.stderr_text(),
            LIVENESS,
            |t| all_stats(t)
                .iter()
                .any(|s| s["clients"] == 0.0 && s["closed"] >= 1.0 && s["accepted"] >= 1.0)
        ),
        "no stats line after the client left; stderr:\n{}",
        server.stderr_text()
    );
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
    assert_eq!(summary.bytes_in, bytes_in as u64);
    assert_eq!(summary.bytes_out, bytes_out as u64);
    let stdout = server.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "stdout:\n{stdout}");
    assert_eq!(
        lines[1],
        format!("iomux: shutdown, 1 client served, {bytes_in} bytes in, {bytes_out} bytes out")
    );
    let stats = all_stats(&server.stderr_text());
    assert!(stats.len() >= 3, "{stats:?}");
    for s in &stats {
        assert!(
            s["accepted"] <= 1.0 && s["closed"] <= s["accepted"],
            "{s:?}"
        );
        assert_eq!(s["stalls"], 0.0, "{s:?}");
    }
}

// ---------------------------------------------------------------------------
// Offload as a library feature
// ---------------------------------------------------------------------------

/// A custom app: `up TEXT` is upper-cased on a worker, `panic` panics on a
/// worker, `sleep MS` sleeps on a worker. Replies in completion order
/// (tests send one request at a time per connection).
#[derive(Default)]
struct Upper {
    /// Jobs handed to the pool so far (read by the test thread).
    submitted: Arc<AtomicUsize>,
    issued: HashSet<JobId>,
    loop_thread: Option<thread::ThreadId>,
    done: VecDeque<JobId>,
}

impl App for Upper {
    type State = ();

    fn name(&self) -> &'static str {
        "upper"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.loop_thread = Some(thread::current().id());
        let loop_thread = thread::current().id();
        let (lines, used) = split_lines(input);
        for line in lines {
            let line = String::from_utf8_lossy(line).into_owned();
            let job = if let Some(text) = line.strip_prefix("up ") {
                let text = text.to_string();
                ctx.offload(conn, move || {
                    let place = if thread::current().id() == loop_thread {
                        "loop"
                    } else {
                        "worker"
                    };
                    Box::new(format!("{} ({place})\n", text.to_uppercase())) as JobResult
                })
            } else if line == "panic" {
                ctx.offload(conn, || panic!("a job panics on purpose"))
            } else if let Some(ms) = line.strip_prefix("sleep ") {
                let ms: u64 = ms.parse().unwrap();
                ctx.offload(conn, move || {
                    thread::sleep(Duration::from_millis(ms));
                    Box::new(format!("slept {ms}\n")) as JobResult
                })
            } else {
                let _ = ctx.send(conn, b"unknown\n");
                continue;
            };
            match job {
                Some(id) => {
                    assert!(self.issued.insert(id), "job id {id:?} issued twice");
                    self.submitted.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    let _ = ctx.send(conn, b"no pool\n");
                }
            }
        }
        used
    }

    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        job: JobId,
        result: JobResult,
    ) {
        let on_loop = Some(thread::current().id()) == self.loop_thread;
        let known = self.issued.remove(&job);
        self.done.push_back(job);
        let reply = if !known {
            "unknown job\n".to_string()
        } else if !on_loop {
            "on_job_done off the loop thread\n".to_string()
        } else if result.is::<JobPanicked>() {
            "job panicked\n".to_string()
        } else {
            match result.downcast::<String>() {
                Ok(text) => *text,
                Err(_) => "bad result type\n".to_string(),
            }
        };
        let _ = ctx.send(conn, reply.as_bytes());
    }
}

fn library_config(workers: usize) -> Config {
    let mut config = Config::default();
    config.workers = workers;
    config
}

/// Any app can hand a closure to the pool and get its result back on the
/// loop thread, on every backend; without a pool `offload` says so.
fn library_offload_from_a_custom_app(backend: &str) {
    let lp = LoopThread::start(backend, library_config(1), Upper::default());
    let mut a = lp.connect();
    let mut b = lp.connect();
    assert_eq!(ask(&mut a, "up hello"), "HELLO (worker)\n");
    assert_eq!(ask(&mut b, "up world"), "WORLD (worker)\n");
    assert_eq!(ask(&mut a, "up again"), "AGAIN (worker)\n");
    // A job that takes a while does not hold up other connections' jobs'
    // results being delivered once they are done (one worker: FIFO).
    a.write_all(b"sleep 50\n").unwrap();
    assert_eq!(ask(&mut b, "up after"), "AFTER (worker)\n");
    assert_eq!(read_line(&mut a), "slept 50\n");
    assert_eq!(ask(&mut b, "what"), "unknown\n");
    drop((a, b));
    let app = lp.stop(LIVENESS);
    assert!(
        app.issued.is_empty(),
        "jobs never came back: {:?}",
        app.issued
    );
    assert_eq!(app.done.len(), 5);

    let lp = LoopThread::start(backend, library_config(0), Upper::default());
    let mut c = lp.connect();
    assert_eq!(ask(&mut c, "up x"), "no pool\n");
    drop(c);
    lp.stop(LIVENESS);
}

/// A job that panics comes back as `JobPanicked`; the worker and the loop
/// go on.
fn library_panicking_job_is_reported(backend: &str) {
    let lp = LoopThread::start(backend, library_config(1), Upper::default());
    let mut c = lp.connect();
    assert_eq!(ask(&mut c, "panic"), "job panicked\n");
    assert_eq!(ask(&mut c, "up still here"), "STILL HERE (worker)\n");
    assert_eq!(ask(&mut c, "panic"), "job panicked\n");
    let mut d = lp.connect();
    assert_eq!(ask(&mut d, "up other"), "OTHER (worker)\n");
    drop((c, d));
    let app = lp.stop(LIVENESS);
    assert!(app.issued.is_empty());
}

/// A stop with jobs in flight: a job that ends within the grace period
/// still gets its reply out, then the connection closes; one that outlasts
/// it is abandoned and `run` returns at the deadline.
fn library_shutdown_waits_then_abandons_jobs(backend: &str) {
    let mut config = library_config(2);
    config.shutdown_grace = Duration::from_millis(800);
    let app = Upper::default();
    let submitted = app.submitted.clone();
    let lp = LoopThread::start(backend, config, app);
    let mut quick = lp.connect();
    let mut slow = lp.connect();
    slow.write_all(b"sleep 30000\n").unwrap();
    assert_eq!(ask(&mut quick, "sleep 1"), "slept 1\n");
    quick.write_all(b"sleep 300\n").unwrap();
    // Both jobs are in flight before the stop.
    let deadline = Instant::now() + LIVENESS;
    while submitted.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the loop never took the request");
        thread::sleep(Duration::from_millis(2));
    }
    // Stopped from another thread, so this one can read meanwhile; `stop`
    // fails unless `run` returns within LIVENESS (the job sleeps 30 s).
    let stopper = thread::spawn(move || lp.stop(LIVENESS));
    let (got, error) = read_to_end(&mut quick);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(String::from_utf8_lossy(&got), "slept 300\n");
    let (got, error) = read_to_end(&mut slow);
    assert!(
        got.is_empty(),
        "the abandoned job replied: {:?}",
        String::from_utf8_lossy(&got)
    );
    if let Some(e) = error {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
    let app = stopper
        .join()
        .expect("the loop stopped after the grace deadline");
    // The abandoned job never came back.
    assert_eq!(app.issued.len(), 1);
}
