//! `iomux bench` and `iomux compare` against real servers (short runs).

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_iomux");

/// `iomux serve -q ARGS` (on 127.0.0.1:0 unless ARGS bind elsewhere),
/// through the shared child helper, with its address as `--addr` takes it.
struct Server {
    _child: common::Server,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut full = vec!["serve", "-q"];
        if !args.contains(&"--bind") {
            full.extend(["--bind", "127.0.0.1:0"]);
        }
        full.extend_from_slice(args);
        let child = common::Server::spawn(&full, &[]);
        let addr = child.addr.to_string();
        Server {
            _child: child,
            addr,
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let start = Instant::now();
    let out = Command::new(EXE).args(args).output().expect("run iomux");
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "{args:?} took too long"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `bench --json` with `extra`, and a short duration and warm-up unless
/// `extra` sets them.
fn bench_json(extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["bench", "--json"];
    if !extra.iter().any(|a| *a == "-d" || *a == "--duration") {
        args.extend(["--duration", "0.5"]);
    }
    if !extra.contains(&"--warmup") {
        args.extend(["--warmup", "0.1"]);
    }
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}): {stdout} / {stderr}"));
    (code, json, stderr)
}

#[test]
fn bench_echo_run_counts_requests_and_no_errors() {
    let server = Server::start(&["--app", "echo"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "--conns",
        "8",
        "--pipeline",
        "2",
        "--size",
        "100",
        "--idle",
        "20",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(j["requests"].as_u64().unwrap() > 100, "{j}");
    assert_eq!(j["errors"]["mismatched"], 0);
    assert_eq!(j["errors"]["resets"], 0);
    let l = &j["latency_us"];
    let (p50, p99, max) = (
        l["p50_us"].as_f64().unwrap(),
        l["p99_us"].as_f64().unwrap(),
        l["max_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{l}");
    assert!(j["bench_cpu_per_thread"].as_f64().unwrap() > 0.0);
}

/// The load generator is built on the loop: it runs on every backend,
/// the completion driver included (exact count, idle connections, every
/// reply checked). A backend io_uring cannot run here says so.
#[test]
fn bench_runs_on_every_backend() {
    let server = Server::start(&["--app", "echo"]);
    for backend in iomux::Backend::ALL {
        if let Err(e) = backend.check() {
            assert!(
                std::env::var_os("IOMUX_REQUIRE_URING").is_none_or(|v| v == "0"),
                "IOMUX_REQUIRE_URING is set but {backend}: {e}"
            );
            eprintln!("bench_runs_on_every_backend on {backend}: skipped: {e}");
            continue;
        }
        let (code, stdout, stderr) = run(&[
            "bench",
            "--json",
            "--backend",
            backend.name(),
            "--addr",
            &server.addr,
            "--conns",
            "5",
            "--idle",
            "3",
            "--warmup",
            "0",
            "--requests",
            "500",
            "--duration",
            "60",
        ]);
        assert_eq!(code, 0, "{backend}: {stdout} {stderr}");
        let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
        assert_eq!(j["requests"], 500, "{backend}: {j}");
        assert_eq!(j["errors"]["mismatched"], 0, "{backend}: {j}");
        assert_eq!(j["errors"]["idle_closed"], 0, "{backend}: {j}");
    }
}

#[test]
fn bench_sends_exactly_the_requests_asked() {
    let server = Server::start(&["--app", "echo"]);
    let (code, stdout, stderr) = run(&[
        "bench",
        "--json",
        "--addr",
        &server.addr,
        "--conns",
        "7",
        "--threads",
        "2",
        "--warmup",
        "0",
        "--requests",
        "1001",
        "--duration",
        "60",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(j["requests"], 1001, "{j}");
    assert!(
        j["window_secs"].as_f64().unwrap() < 60.0,
        "it stopped at the count: {j}"
    );
    assert_eq!(j["sent"], 1001, "{j}");
}

#[test]
fn bench_ack_mode_and_threads() {
    let server = Server::start(&["--app", "ack", "--reply", "OK"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "--mode",
        "ack",
        "--reply",
        "OK",
        "--conns",
        "6",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(j["requests"].as_u64().unwrap() > 50, "{j}");
    assert_eq!(j["threads"], 2);
}

#[test]
fn bench_reports_mismatches_and_fails() {
    // An ack server answers `Ok,Thanks`, not the echo the bench expects.
    let server = Server::start(&["--app", "ack"]);
    let (code, j, _) = bench_json(&["--addr", &server.addr, "--conns", "3"]);
    assert_eq!(code, 1, "a run with errors exits non-zero: {j}");
    assert!(j["errors"]["mismatched"].as_u64().unwrap() >= 1, "{j}");
}

#[test]
fn bench_hash_mode_checks_digests_and_splits_heavy_latency() {
    let server = Server::start(&["--app", "hash", "--workers", "1", "--offload-above", "500"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "--mode",
        "hash",
        "--conns",
        "4",
        "--heavy",
        "1",
        "--heavy-iters",
        "2000",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(j["requests"].as_u64().unwrap() > 10, "{j}");
    assert!(j["heavy_requests"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["errors"]["mismatched"], 0);
}

#[test]
fn bench_refuses_a_dead_address_and_bad_flags() {
    // Bind then drop: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run(&["bench", "--addr", &addr, "--duration", "0.2"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&addr), "names the address: {stderr}");
    for bad in [
        &["bench", "--conns", "0"][..],
        &["bench", "--duration", "-1"],
        &["bench", "--mode", "nope"],
        &["bench", "--mode", "ack", "--pipeline", "4"],
        &["bench", "--backend", "kqueue"],
    ] {
        let (code, _, stderr) = run(bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn compare_small_matrix_writes_report_and_plots() {
    let dir = std::env::temp_dir().join(format!("iomux-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "select,epoll-et",
        "--idle",
        "0,50",
        "--conns",
        "4",
        "--repeat",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("[4/4]"), "progress shows points: {stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    for p in points {
        assert!(p["requests_per_sec"].as_f64().unwrap() > 0.0, "{p}");
        assert!(
            p["server_cpu_us_per_request"].as_f64().unwrap() >= 0.0,
            "{p}"
        );
        assert_eq!(p["errors"], 0, "{p}");
    }
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(
        md.contains("| select | 50 |") && md.contains("| epoll-et | 0 |"),
        "{md}"
    );
    for svg in ["cpu_per_request.svg", "throughput.svg", "latency_p99.svg"] {
        let text = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(text.contains("<svg") && text.contains("epoll-et"), "{svg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_runs_a_peer_command() {
    // The peer is iomux itself, launched through the {port} placeholder.
    let dir = std::env::temp_dir().join(format!("iomux-peer-{}", std::process::id()));
    let peer = format!("me={EXE} serve --app echo -q --bind 127.0.0.1:{{port}}");
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "poll",
        "--idle",
        "0",
        "--conns",
        "2",
        "--repeat",
        "1",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--peer",
        &peer,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("| me | 0 |"), "{stdout}");
    let (code, _, stderr) = run(&["compare", "--peer", "nolabel"]);
    assert_eq!(code, 2, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits for `child` to exit (killing it after `timeout`), then returns its
/// exit code, stdout and stderr.
fn finish(mut child: Child, timeout: Duration) -> (i32, String, String) {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    (status.code().unwrap_or(-1), stdout, stderr)
}

fn spawn(args: &[&str]) -> Child {
    Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iomux")
}

/// As [`spawn`], in a process group of its own (led by the child), as a
/// terminal's foreground job is.
fn spawn_in_own_group(args: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(EXE)
        .args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iomux")
}

fn sigint(child: &Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::INT,
    )
    .expect("send SIGINT");
}

/// Waits until `done` holds, at most `timeout`.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// A listener that accepts every connection and holds it, never reading
/// or answering. Stops (and closes everything) when dropped.
struct Silent {
    addr: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent {
            addr,
            stop,
            accepted,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An echo server in the test, one thread per connection, that counts the
/// bytes it echoed and can stall every connection once for `stall` after
/// `stall_after` of its first byte.
struct TestEcho {
    addr: String,
    echoed: Arc<AtomicU64>,
}

impl TestEcho {
    fn start(stall_after: Duration, stall: Duration) -> TestEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let echoed = Arc::new(AtomicU64::new(0));
        let e = echoed.clone();
        std::thread::spawn(move || {
            let first: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (e, first) = (e.clone(), first.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let mut buf = [0u8; 4096];
                    let mut stalled = stall.is_zero();
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let t0 = *first.get_or_init(Instant::now);
                        if !stalled && t0.elapsed() >= stall_after {
                            stalled = true;
                            std::thread::sleep(stall);
                        }
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        e.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        TestEcho { addr, echoed }
    }
}

fn json_of(stdout: &str, stderr: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout} / {stderr}"))
}

#[test]
fn bench_times_out_on_a_listener_that_never_answers() {
    let silent = Silent::start();
    let start = Instant::now();
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &silent.addr,
        "-c",
        "2",
        "--warmup",
        "0",
        "--timeout",
        "0.3",
        "-d",
        "1s",
        "--json",
    ]);
    assert!(start.elapsed() < Duration::from_secs(10), "no hang");
    assert_eq!(code, 1, "{stdout} {stderr}");
    let j = json_of(&stdout, &stderr);
    assert_eq!(j["ok"], false);
    // Each connection times out, is replaced, and its replacement does too.
    let timeouts = j["errors"]["timeouts"].as_u64().unwrap();
    assert!(timeouts >= 4, "{j}");
    assert_eq!(j["reconnects"], timeouts, "{j}");
    assert!(
        j["window_secs"].as_f64().unwrap() >= 0.9,
        "the run went on: {j}"
    );
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains(&silent.addr) && error.contains("response timeout"),
        "{error}"
    );
    assert!(
        stderr.contains(&silent.addr) && stderr.contains("response timeout"),
        "{stderr}"
    );
    let reopened = 2 + timeouts;
    assert!(
        wait_until(Duration::from_secs(5), || silent
            .accepted
            .load(Ordering::Relaxed)
            >= reopened),
        "{} accepted, {reopened} expected",
        silent.accepted.load(Ordering::Relaxed)
    );
}

/// What a [`Stingy`] server does once it has answered its share of a
/// connection, and read the next request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Nothing: the connection stays open and silent.
    Hold,
    /// A clean close: FIN (a half close, reading on, so no reset follows).
    Close,
    /// A reset (SO_LINGER 0).
    Reset,
}

/// A server that answers (echoes) the first `answered` bytes of each
/// connection, then does `then`: a server that stops answering mid-run.
struct Stingy {
    addr: String,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Stingy {
    fn start(answered: usize, then: Then) -> Stingy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                a.fetch_add(1, Ordering::Relaxed);
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut left = answered;
                    let mut buf = [0u8; 4096];
                    while left > 0 {
                        let n = match stream.read(&mut buf[..left.min(4096)]) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                    if then != Then::Hold && !matches!(stream.read(&mut buf), Ok(1..)) {
                        return;
                    }
                    match then {
                        Then::Hold => {
                            while !s.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                        Then::Close => {
                            let _ = stream.shutdown(std::net::Shutdown::Write);
                            while matches!(stream.read(&mut buf), Ok(1..)) {}
                        }
                        Then::Reset => {
                            let _ = rustix::net::sockopt::set_socket_linger(
                                &stream,
                                Some(Duration::ZERO),
                            );
                        }
                    }
                });
            }
        });
        Stingy {
            addr,
            accepted,
            stop,
        }
    }
}

/// A clean close by the server between responses is counted as such, not
/// as a reset; a reset is a reset.
#[test]
fn bench_tells_a_clean_close_from_a_reset() {
    for (then, closed, resets) in [(Then::Close, 2, 0), (Then::Reset, 0, 2)] {
        let server = Stingy::start(5 * 64, then);
        let (code, j, stderr) = bench_json(&[
            "--addr",
            &server.addr,
            "-c",
            "2",
            "--warmup",
            "0",
            "-d",
            "5s",
        ]);
        assert_eq!(code, 1, "{j} {stderr}");
        assert_eq!(j["errors"]["closed_by_server"], closed, "{j}");
        assert_eq!(j["errors"]["resets"], resets, "{j}");
        assert_eq!(j["errors"]["short"], 0, "{j}");
        assert_eq!(j["requests"], 10, "{j}");
        let error = j["error"].as_str().unwrap();
        if then == Then::Close {
            assert!(error.contains("a clean close"), "{error}");
        } else {
            assert!(error.contains("connection lost"), "{error}");
        }
    }
}

impl Drop for Stingy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A request past `--timeout` is counted, its connection replaced, and the
/// run goes on measuring the requests that are answered; the summary, the
/// JSON and the exit code say so.
#[test]
fn bench_timeouts_are_counted_and_the_run_goes_on() {
    // Five 64-byte requests answered per connection, then silence.
    let server = Stingy::start(5 * 64, Then::Hold);
    for json in [true, false] {
        let mut args = vec![
            "bench",
            "--addr",
            &server.addr,
            "-c",
            "2",
            "--warmup",
            "0",
            "-d",
            "1200ms",
            "--timeout",
            "200ms",
        ];
        if json {
            args.push("--json");
        }
        let before = server.accepted.load(Ordering::Relaxed);
        let start = Instant::now();
        let (code, stdout, stderr) = run(&args);
        assert!(start.elapsed() < Duration::from_secs(10), "no hang");
        assert_eq!(code, 1, "any timeout fails the run: {stdout} {stderr}");
        assert!(stderr.contains("response timeout"), "{stderr}");
        if json {
            let j = json_of(&stdout, &stderr);
            let timeouts = j["errors"]["timeouts"].as_u64().unwrap();
            let reconnects = j["reconnects"].as_u64().unwrap();
            // 1.2 s of 200 ms timeouts on two connections, each answering
            // five requests first: several rounds, each measured.
            assert!(timeouts >= 4, "{j}");
            assert_eq!(reconnects, timeouts, "pipeline 1: one per timeout: {j}");
            assert!(j["requests"].as_u64().unwrap() >= 5 * timeouts, "{j}");
            assert!(j["window_secs"].as_f64().unwrap() >= 1.1, "{j}");
            assert_eq!(j["errors"]["resets"], 0, "{j}");
            let total = before + 2 + reconnects;
            assert!(
                wait_until(Duration::from_secs(5), || server
                    .accepted
                    .load(Ordering::Relaxed)
                    >= total),
                "every replacement connected: {} of {total}",
                server.accepted.load(Ordering::Relaxed)
            );
        } else {
            let line = stdout
                .lines()
                .find(|l| l.trim_start().starts_with("timeouts"))
                .unwrap_or_else(|| panic!("no timeouts line: {stdout}"));
            assert!(
                line.contains("requests unanswered within 200.0 ms") && line.contains("reopened"),
                "{line}"
            );
        }
    }
}

#[test]
fn bench_connect_timeout_names_the_address() {
    // A backlog of 0 queues one connection; with it taken and nobody
    // accepting, the next connect's SYN is dropped and it times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        fillers.push(s);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let addr = addr.to_string();
    let start = Instant::now();
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &addr,
        "-c",
        "3",
        "--connect-timeout",
        "0.3",
        "--json",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "one timeout, not one per connection"
    );
    assert_eq!(code, 1, "{stdout} {stderr}");
    let j = json_of(&stdout, &stderr);
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains(&addr) && error.contains("connect timeout"),
        "{error}"
    );
    assert!(
        stderr.contains(&addr) && stderr.contains("connect timeout"),
        "{stderr}"
    );
}

#[test]
fn bench_with_no_completed_request_fails() {
    // Requests are sent but the window ends before any answer, and before
    // the response timeout: no error counted, yet nothing was measured.
    let silent = Silent::start();
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &silent.addr,
        "-c",
        "1",
        "--warmup",
        "0",
        "-d",
        "0.3",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(stdout.contains("requests    0"), "{stdout}");
    assert!(
        stderr.contains("no request completed") && stderr.contains(&silent.addr),
        "{stderr}"
    );
    // Nothing measured has no percentiles, rather than a fast 0.
    assert!(
        stdout.contains("latency     p50 n/a  p90 n/a  p99 n/a  p99.9 n/a  max n/a"),
        "{stdout}"
    );
}

#[test]
fn bench_requests_counts_measured_requests_only() {
    let server = Server::start(&["--app", "echo"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "3",
        "--warmup",
        "0.3",
        "-n",
        "500",
        "-d",
        "60",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert_eq!(j["requests"], 500, "warm-up requests are not counted: {j}");
    assert_eq!(j["sent"], 500, "{j}");
    let (code, _, stderr) = run(&["bench", "--addr", &server.addr, "-n", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--requests"), "{stderr}");
    // A short window is printed as it was, not rounded to 0.0 s.
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "3",
        "--warmup",
        "0",
        "-n",
        "300",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let head = stdout.lines().next().unwrap_or_default();
    let measured = head
        .strip_suffix(" measured")
        .and_then(|h| h.rsplit(", ").next())
        .unwrap_or_else(|| panic!("{head}"));
    let (value, unit) = measured.split_once(' ').unwrap_or_else(|| panic!("{head}"));
    assert!(
        value.parse::<f64>().is_ok_and(|v| v > 0.0) && ["s", "ms", "µs"].contains(&unit),
        "{head}"
    );
}

#[test]
fn bench_counts_idle_connections_closed_by_the_server() {
    // Also: serve takes fractional seconds for --idle-timeout.
    let server = Server::start(&["--app", "echo", "--idle-timeout", "0.3"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "2",
        "--idle",
        "5",
        "--warmup",
        "0",
        "-d",
        "1",
    ]);
    assert_eq!(code, 1, "{j} {stderr}");
    assert_eq!(j["errors"]["idle_closed"], 5, "{j}");
    assert_eq!(
        j["errors"]["resets"], 0,
        "active connections stay open: {j}"
    );
    assert!(
        j["error"].as_str().unwrap().contains("idle connections"),
        "{j}"
    );
}

#[test]
fn bench_sigint_prints_the_partial_result_and_exits_130() {
    for json in [true, false] {
        let echo = TestEcho::start(Duration::ZERO, Duration::ZERO);
        let mut args = vec![
            "bench", "--addr", &echo.addr, "-c", "2", "--warmup", "0", "-d", "60",
        ];
        if json {
            args.push("--json");
        }
        let child = spawn(&args);
        assert!(
            wait_until(Duration::from_secs(20), || echo
                .echoed
                .load(Ordering::Relaxed)
                > 64 * 200),
            "the bench got going"
        );
        sigint(&child);
        let (code, stdout, stderr) = finish(child, Duration::from_secs(20));
        assert_eq!(code, 130, "{stdout} {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        if json {
            let j = json_of(&stdout, &stderr);
            assert_eq!(j["interrupted"], true, "{j}");
            assert!(j["requests"].as_u64().unwrap() > 0, "{j}");
            assert!(j["window_secs"].as_f64().unwrap() < 60.0, "{j}");
        } else {
            assert!(stdout.contains("(interrupted: partial)"), "{stdout}");
            assert!(stdout.contains("latency     p50"), "{stdout}");
        }
    }
}

#[test]
fn bench_json_failure_is_a_json_object_with_the_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (code, stdout, stderr) = run(&["bench", "--addr", &addr, "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let j = json_of(&stdout, &stderr);
    assert_eq!(j["ok"], false);
    assert!(j["error"].as_str().unwrap().contains(&addr), "{j}");
}

/// `--json` prints one schema whatever happened: a clean run, an open-loop
/// run, a run that failed after its load, a refused connect, a usage of
/// --request; only the values differ (null where nothing was measured).
#[test]
fn bench_json_has_one_schema_whatever_the_outcome() {
    let server = Server::start(&["--app", "echo"]);
    let silent = Silent::start();
    let dead = format!("127.0.0.1:{}", dead_port());
    let runs: [(&[&str], i32); 5] = [
        (&["--addr", &server.addr, "-c", "2"], 0),
        (&["--addr", &server.addr, "-c", "2", "--rate", "500"], 0),
        (
            &[
                "--addr",
                &server.addr,
                "--request",
                "ab",
                "--reply-len",
                "2",
            ],
            0,
        ),
        (&["--addr", &silent.addr, "-c", "1", "--timeout", "0.2"], 1),
        (&["--addr", &dead, "-c", "2"], 1),
    ];
    let mut schemas = Vec::new();
    for (args, want) in runs {
        let (code, j, stderr) = bench_json(args);
        assert_eq!(code, want, "{args:?}: {j} {stderr}");
        schemas.push((args, j));
    }
    let first = common::json_key_paths(&schemas[0].1);
    assert!(first.contains("latency_us.p50_us") && first.contains("errors.timeouts"));
    common::assert_one_schema(&schemas);
    // The refused connect: nothing measured, said as null, not 0.
    let refused = &schemas[4].1;
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains(&dead),
        "{refused}"
    );
    assert!(refused["latency_us"]["p50_us"].is_null(), "{refused}");
    assert_eq!(refused["requests"], 0, "{refused}");
}

/// An output that cannot be written is refused before anything runs, not
/// found out at the end.
#[test]
fn output_paths_are_checked_before_the_run() {
    let silent = Silent::start();
    let start = Instant::now();
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &silent.addr,
        "-d",
        "30",
        "--hist",
        "/nonexistent/iomux/h.txt",
    ]);
    assert!(start.elapsed() < Duration::from_secs(10), "refused at once");
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(
        stderr.contains("--hist /nonexistent/iomux/h.txt: cannot write there"),
        "{stderr}"
    );
    assert_eq!(silent.accepted.load(Ordering::Relaxed), 0, "nothing ran");
    let file = std::env::temp_dir().join(format!("iomux-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, "a file").unwrap();
    let out = file.join("results");
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains("cannot write there"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("checking that"),
        "no server was started: {stderr}"
    );
}

#[test]
fn bench_progress_goes_to_stderr_on_a_terminal() {
    // `script` gives the bench a terminal; stdout goes to a file inside it,
    // so what `script` captures is the terminal's stderr.
    let server = Server::start(&["--app", "echo"]);
    let dir = std::env::temp_dir().join(format!("iomux-tty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let inner = format!(
        "{EXE} bench --addr {} -c 2 --warmup 0.5 -d 1.7 --json > {}",
        server.addr,
        json.display()
    );
    let child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let (code, terminal, _) = finish(child, Duration::from_secs(30));
    assert_eq!(code, 0, "{terminal}");
    assert!(
        terminal.contains("req/s") && terminal.contains("measuring"),
        "{terminal:?}"
    );
    let j: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).expect("clean JSON");
    assert_eq!(j["ok"], true, "{j}");
    // Not a terminal: no progress line.
    let (_, _, stderr) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "2",
        "--warmup",
        "0.5",
        "-d",
        "1.7",
    ]);
    assert!(!stderr.contains("measuring"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_names_resolve_in_bench_and_serve() {
    let server = Server::start(&["--app", "echo", "--bind", "localhost:0"]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    let (code, j, stderr) = bench_json(&["--addr", &format!("localhost:{port}"), "-c", "2"]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(j["requests"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["target"], format!("localhost:{port}"));
    let v6 = Server::start(&["--app", "echo", "--bind", "[::1]:0"]);
    assert!(v6.addr.starts_with("[::1]:"), "{}", v6.addr);
    let (code, j, stderr) = bench_json(&["--addr", &v6.addr, "-c", "2"]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert_eq!(j["addr"], v6.addr.as_str());
    let (code, _, stderr) = run(&["bench", "--addr", "no-such-host.invalid:80"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-host.invalid"), "{stderr}");
}

#[test]
fn bench_rate_holds_the_asked_rate_and_says_what_it_achieved() {
    let server = Server::start(&["--app", "echo"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "4",
        "--rate",
        "2000",
        "-d",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert_eq!(j["rate_asked"], 2000.0);
    let achieved = j["rate_achieved"].as_f64().unwrap();
    assert!((1700.0..=2300.0).contains(&achieved), "{j}");
    assert!(j["bench_lag_us"]["p50_us"].as_f64().is_some(), "{j}");
    // Every request due in the window is waited for and measured.
    assert_eq!(j["requests"], j["sent"], "{j}");
    assert!(
        j["latency_from_send_us"]["p50_us"].as_f64().is_some(),
        "{j}"
    );
    let (code, stdout, _) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "4",
        "--rate",
        "2000",
        "-d",
        "0.5",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("open loop at 2000 req/s") && stdout.contains("asked 2000/s, achieved"),
        "{stdout}"
    );
}

/// An echo server in the test, one thread per connection, that waits
/// `delay` before echoing what each read returned: with one request in
/// flight, a connection carries at most one request per `delay`.
struct SlowEcho {
    addr: String,
}

impl SlowEcho {
    fn start(delay: Duration) -> SlowEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        std::thread::sleep(delay);
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowEcho { addr }
    }
}

/// Open loop against a server that cannot carry the rate (2 connections
/// answering one request per 20 ms each: at most 100/s, asked 500/s): the
/// run still takes about its window, the achieved rate is what completed
/// over that time, the requests that never found a free pipeline slot are
/// missed, and the report says the server could not keep up.
#[test]
fn open_loop_against_a_slow_server_reports_that_it_could_not_keep_up() {
    let server = SlowEcho::start(Duration::from_millis(20));
    let args = [
        "--addr",
        &server.addr,
        "-c",
        "2",
        "--rate",
        "500",
        "-d",
        "1",
        "--warmup",
        "0",
    ];
    let started = Instant::now();
    let (code, j, stderr) = bench_json(&args);
    let took = started.elapsed();
    assert_eq!(code, 0, "{j} {stderr}");
    let f = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("{k}: {j}"));
    let (window, achieved, requests) = (f("window_secs"), f("rate_achieved"), f("requests"));
    // Over the time the run really took: no waiting for a backlog that
    // could never be sent, and the rate over that same time.
    assert!((1.0..1.5).contains(&window), "{j}");
    assert!(f("drain_secs") < 0.5, "{j}");
    assert!(took < Duration::from_secs(10), "the run took {took:?}");
    assert!((achieved - requests / window).abs() < 1.0, "{j}");
    assert!(achieved > 0.0 && achieved < 250.0, "{j}");
    assert_eq!(
        j["requests"], j["sent"],
        "every request sent is answered: {j}"
    );
    let missed = f("missed");
    assert!(missed >= 200.0, "{j}");
    // Every request due in the window is either answered or missed.
    assert!((requests + missed - 500.0).abs() <= 25.0, "{j}");
    assert_eq!(j["kept_up"], false, "{j}");
    assert_eq!(j["behind"], "server", "{j}");
    let why = j["behind_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("the server could not keep up with 500/s") && why.contains("2 conns x 1"),
        "{j}"
    );
    // The bytes over the same window: an echo receives what it sends.
    assert_eq!(j["mb_per_sec_sent"], j["mb_per_sec_received"], "{j}");
    let text: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let (code, stdout, _) = run(&[&["bench"], &text[..]].concat());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("missed\n"), "{stdout}");
    assert!(
        stdout.contains("  behind      the server could not keep up with 500/s"),
        "{stdout}"
    );
}

/// An easy rate is reported as kept up: nothing missed, no behind line.
#[test]
fn open_loop_at_an_easy_rate_is_reported_as_kept_up() {
    let server = Server::start(&["--app", "echo"]);
    let args = [
        "--addr",
        &server.addr,
        "-c",
        "4",
        "--rate",
        "200",
        "-d",
        "1",
        "--warmup",
        "0.1",
    ];
    let (code, j, stderr) = bench_json(&args);
    assert_eq!(code, 0, "{j} {stderr}");
    assert_eq!(j["kept_up"], true, "{j}");
    assert_eq!(j["missed"], 0, "{j}");
    assert!(j["behind"].is_null() && j["behind_reason"].is_null(), "{j}");
    let achieved = j["rate_achieved"].as_f64().unwrap_or_default();
    assert!((190.0..=210.0).contains(&achieved), "{j}");
    let (code, stdout, _) = run(&[&["bench"], &args[..]].concat());
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("asked 200/s, achieved") && stdout.contains(", 0 missed"),
        "{stdout}"
    );
    assert!(!stdout.contains("behind"), "{stdout}");
}

#[test]
fn open_loop_latency_counts_the_wait_a_stall_causes() {
    // The server stalls once for 300 ms. Closed loop: the one connection
    // waits, sends nothing, and only one request sees the stall. Open
    // loop: every request due during the stall waits, from its due time.
    let p = |j: &serde_json::Value, q: &str| j["latency_us"][q].as_f64().unwrap();
    let closed_server = TestEcho::start(Duration::from_millis(200), Duration::from_millis(300));
    let (code, closed, stderr) = bench_json(&[
        "--addr",
        &closed_server.addr,
        "-c",
        "1",
        "--warmup",
        "0",
        "-d",
        "1",
    ]);
    assert_eq!(code, 0, "{closed} {stderr}");
    let open_server = TestEcho::start(Duration::from_millis(200), Duration::from_millis(300));
    let (code, open, stderr) = bench_json(&[
        "--addr",
        &open_server.addr,
        "-c",
        "1",
        "--rate",
        "1000",
        "--warmup",
        "0",
        "-d",
        "1",
    ]);
    assert_eq!(code, 0, "{open} {stderr}");
    assert!(
        p(&closed, "max_us") >= 250_000.0,
        "the stall happened: {closed}"
    );
    assert!(
        p(&closed, "p90_us") < 100_000.0,
        "closed loop hides it: {closed}"
    );
    assert!(
        p(&open, "p90_us") >= 100_000.0,
        "open loop shows it: {open}"
    );
    assert!(p(&open, "p99_us") >= 200_000.0, "{open}");
}

#[test]
fn bench_connect_rate_paces_the_connections() {
    let server = Server::start(&["--app", "echo"]);
    let (code, j, stderr) =
        bench_json(&["--addr", &server.addr, "-c", "6", "--connect-rate", "20"]);
    assert_eq!(code, 0, "{j} {stderr}");
    // Six connections at 20/s: the last one 5 x 50 ms after the first.
    assert!(j["connect_secs"].as_f64().unwrap() >= 0.24, "{j}");
}

#[test]
fn bench_writes_a_histogram_and_interval_lines() {
    let server = Server::start(&["--app", "echo"]);
    let dir = std::env::temp_dir().join(format!("iomux-hist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hist = dir.join("latency.hgrm");
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "2",
        "--warmup",
        "0",
        "-d",
        "1",
        "--interval",
        "0.25",
        "--csv",
        "--hist",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "elapsed_secs,secs,requests,requests_per_sec,p50_us,p90_us,p99_us,max_us,errors"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .take_while(|l| !l.starts_with("iomux bench"))
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.len() >= 4, "{stdout}");
    for r in &rows {
        assert_eq!(r.len(), 9, "{r:?}");
        assert!(r[2].parse::<u64>().unwrap() > 0, "{r:?}");
    }
    assert!(
        stdout.contains("iomux bench:"),
        "the summary follows: {stdout}"
    );
    let text = std::fs::read_to_string(&hist).unwrap();
    assert!(
        text.contains("Percentile") && text.contains("#[Max"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.trim().starts_with(|c: char| c.is_ascii_digit()))
            .count()
            > 10,
        "{text}"
    );
    let (code, j, stderr) = bench_json(&["--addr", &server.addr, "-c", "2", "--interval", "0.2"]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(j["intervals"].as_array().unwrap().len() >= 2, "{j}");
    let (code, _, stderr) = run(&["bench", "--csv"]);
    assert_eq!(code, 2, "--csv needs --interval: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_short_flags() {
    let server = Server::start(&["--app", "echo"]);
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "3",
        "-P",
        "2",
        "-t",
        "2",
        "-n",
        "300",
        "-d",
        "30",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let j = json_of(&stdout, &stderr);
    assert_eq!(
        (
            j["conns"].as_u64(),
            j["pipeline"].as_u64(),
            j["threads"].as_u64()
        ),
        (Some(3), Some(2), Some(2)),
        "{j}"
    );
    assert_eq!(j["requests"], 300, "{j}");
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &server.addr,
        "-c",
        "2",
        "-d",
        "0.3",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let w = json_of(&stdout, &stderr)["window_secs"].as_f64().unwrap();
    assert!((0.25..2.0).contains(&w), "-d 0.3 measured {w} s");
}

/// Every flag that takes a duration takes `3s`, `1m`, `500ms`, `250us`
/// or plain seconds, and names the flag when it cannot.
#[test]
fn durations_take_units_in_every_command() {
    let server = Server::start(&[
        "--app",
        "echo",
        "--idle-timeout",
        "1m",
        "--write-timeout",
        "10s",
        "--max-output-soft",
        "1000000:2s",
    ]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--timeout",
        "5s",
        "--connect-timeout",
        "2500ms",
        "--interval",
        "100ms",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    let w = j["window_secs"].as_f64().unwrap();
    assert!((0.25..2.0).contains(&w), "-d 300ms measured {w} s");
    assert_eq!(j["response_timeout_secs"], 5.0, "{j}");
    assert_eq!(j["connect_timeout_secs"], 2.5, "{j}");
    for (args, flag) in [
        (&["bench", "-d", "3x"][..], "--duration"),
        (&["bench", "--timeout", "1m30s"], "--timeout"),
        (&["bench", "--warmup=-1s"], "--warmup"),
        (&["serve", "--idle-timeout", "5 minutes"], "--idle-timeout"),
        (&["serve", "--write-timeout", "inf"], "--write-timeout"),
        (&["serve", "--stats", "5ms"], "--stats"),
        (&["compare", "--duration", "2d"], "--duration"),
        (&["compare", "--start-timeout", "s"], "--start-timeout"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    // compare reads its durations with the same parser: with them
    // accepted, the first error is the one that follows.
    let (code, _, stderr) = run(&[
        "compare",
        "-d",
        "1m",
        "--warmup",
        "500ms",
        "--conns",
        "5",
        "--threads",
        "10",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--threads"), "{stderr}");
}

#[test]
fn usage_errors_name_the_subcommand_and_nothing_is_clamped() {
    for (args, needle) in [
        (&["bench", "--threads", "0"][..], "--threads"),
        (&["bench", "--threads", "4294967296"], "--threads"),
        (&["bench", "-t", "20", "-c", "10"], "Usage: iomux bench"),
        (&["bench", "--rate", "0"], "Usage: iomux bench"),
        (&["bench", "--timeout", "0"], "Usage: iomux bench"),
        (&["serve", "--max-clients", "0"], "--max-clients"),
        (&["serve", "--idle-timeout", "soon"], "--idle-timeout"),
        (&["serve", "--stats", "0.001"], "--stats"),
        (&["serve", "--bind", "8888"], "--bind"),
        (
            &["compare", "--conns", "5", "--threads", "10"],
            "Usage: iomux compare",
        ),
        (&["compare", "--rate", "0"], "--rate"),
        (&["compare", "--idle", "2000000"], "--idle"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("Usage: iomux <COMMAND>"),
            "{args:?}: {stderr}"
        );
    }
    let out = Command::new(EXE)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("IOMUX_BACKEND", "kqueue")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Usage: iomux serve"), "{stderr}");
}

fn compare_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("iomux-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn results(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn compare_checks_every_input_before_measuring() {
    let dir = compare_dir("check");
    let out = dir.to_str().unwrap();
    let start = Instant::now();
    let (code, _, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "--peer",
        "x=/nonexistent/server {port}",
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("peer x") && stderr.contains("Usage: iomux compare"),
        "{stderr}"
    );
    assert!(!stderr.contains("[1/"), "nothing was measured: {stderr}");
    // A peer that runs but never listens costs --start-timeout, not 15 s.
    let (code, _, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "--peer",
        "sleepy=sleep 30 {port}",
        "--start-timeout",
        "0.5",
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("did not accept") && !stderr.contains("[1/"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_keeps_what_it_measured_when_a_later_point_fails() {
    // The peer works for its first two starts (the check and run 1), then
    // exits at once.
    let dir = compare_dir("fail");
    std::fs::create_dir_all(&dir).unwrap();
    let count = dir.join("starts");
    let peer = format!(
        "flaky=sh -c 'n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; \
         if [ $n -lt 2 ]; then exec {EXE} serve --app echo -q --bind 127.0.0.1:$0; else exit 3; fi' {{port}}",
        c = count.display()
    );
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "-c",
        "2",
        "--repeat",
        "2",
        "-d",
        "0.2",
        "--warmup",
        "0",
        "--peer",
        &peer,
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    let j = results(&dir.join("out"));
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["runs_done"], 3, "{j}");
    assert!(j["error"].as_str().unwrap().contains("flaky"), "{j}");
    let md = std::fs::read_to_string(dir.join("out/results.md")).unwrap();
    assert!(
        md.contains("| flaky | 0 |") && md.contains("| epoll | 0 |") && md.contains("Partial"),
        "{md}"
    );
    assert!(dir.join("out/throughput.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_sigint_writes_what_is_done() {
    compare_interrupted("sigint", sigint);
}

/// Ctrl-C in a terminal goes to the whole process group: the servers
/// compare started stop too, and the run is still "interrupted".
#[test]
fn compare_sigint_to_the_process_group_is_still_an_interrupt() {
    compare_interrupted("sigint-group", |child| {
        let group = rustix::process::Pid::from_child(child);
        rustix::process::kill_process_group(group, rustix::process::Signal::INT)
            .expect("signal the group");
    });
}

fn compare_interrupted(name: &str, interrupt: impl Fn(&Child)) {
    let dir = compare_dir(name);
    let child = spawn_in_own_group(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "-c",
        "2",
        "--repeat",
        "50",
        "-d",
        "0.3",
        "--warmup",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let measured = || {
        std::fs::read_to_string(dir.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|j| j["runs_done"].as_u64() >= Some(1))
    };
    assert!(
        wait_until(Duration::from_secs(30), measured),
        "one run done"
    );
    interrupt(&child);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(30));
    assert_eq!(code, 130, "{stdout} {stderr}");
    let j = results(&dir);
    assert_eq!(j["status"], "interrupted", "{j}");
    let done = j["runs_done"].as_u64().unwrap();
    assert!((1..50).contains(&done), "{j}");
    assert_eq!(j["samples"].as_array().unwrap().len() as u64, done);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_records_a_rerunnable_command_line() {
    let dir = compare_dir("cmd");
    let peer = format!("it's me={EXE} serve --app echo -q --bind 127.0.0.1:{{port}}");
    let args = [
        "compare",
        "--backends",
        "poll",
        "--idle",
        "0",
        "-c",
        "2",
        "--repeat",
        "1",
        "-d",
        "0.2",
        "--warmup",
        "0",
        "--peer",
        &peer,
        "--out",
        dir.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let command = results(&dir)["command"].as_str().unwrap().to_string();
    // It runs from the directory it ran in, and the shell reads the
    // recorded line back into the same arguments.
    let cwd = std::env::current_dir().unwrap();
    assert!(
        command.starts_with(&format!("cd {} && ", cwd.display())),
        "{command}"
    );
    let line = command.replacen(" && ", " && printf '%s\\n' ", 1);
    let out = Command::new("sh")
        .args(["-c", &line])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(words[0], EXE);
    assert_eq!(&words[1..], &args.map(String::from)[..], "{command}");
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains(&command), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_matrix_of_pipeline_size_and_rate_with_na_spreads() {
    let dir = compare_dir("matrix");
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "-c",
        "2",
        "--pipeline",
        "1,4",
        "--size",
        "16,100",
        "--rate",
        "closed,1000",
        "--repeat",
        "1",
        "-d",
        "0.2",
        "--warmup",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let j = results(&dir);
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), 8, "{j}");
    let has = |pipeline: u64, size: u64, rate: Option<f64>| {
        points
            .iter()
            .any(|p| p["pipeline"] == pipeline && p["size"] == size && p["rate"].as_f64() == rate)
    };
    assert!(has(1, 16, None) && has(4, 100, Some(1000.0)), "{j}");
    for p in points {
        assert!(
            p["requests_per_sec_spread"].is_null(),
            "one run: no spread {p}"
        );
        assert_eq!(p["errors"], 0, "{p}");
    }
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(
        md.contains("| epoll | 0 | 4 | 100 | 1000 |") && md.contains("(n/a)"),
        "{md}"
    );
    assert!(!md.contains("±0%"), "{md}");
    let svg = std::fs::read_to_string(dir.join("throughput.svg")).unwrap();
    assert!(
        svg.contains("asked rate"),
        "x is the first dimension that varies"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--server-threads 1,2`: each backend runs as one loop and as a group
/// of two, labelled apart, both measured without errors.
#[test]
fn compare_server_threads_is_a_dimension() {
    let dir = compare_dir("server-threads");
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--server-threads",
        "1,2",
        "--idle",
        "0",
        "-c",
        "8",
        "--repeat",
        "1",
        "-d",
        "0.3",
        "--warmup",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let j = results(&dir);
    let points = j["points"].as_array().unwrap();
    let servers: Vec<&str> = points.iter().filter_map(|p| p["target"].as_str()).collect();
    assert_eq!(servers, ["epoll/t1", "epoll/t2"], "{j}");
    for p in points {
        assert_eq!(p["errors"], 0, "{p}");
        assert!(p["requests_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_warns_when_other_load_is_present() {
    // A busy loop in the test process is load that is neither the server
    // nor the bench.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let burner = std::thread::spawn(move || {
        let mut x = 0u64;
        while !s.load(Ordering::Relaxed) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        x
    });
    let dir = compare_dir("load");
    let (code, stdout, stderr) = run(&[
        "compare",
        "--backends",
        "epoll",
        "--idle",
        "0",
        "-c",
        "2",
        "--repeat",
        "1",
        "-d",
        "0.6",
        "--warmup",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    let _ = burner.join();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("other load"), "{stderr}");
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("**Warning:** other load"), "{md}");
    let j = results(&dir);
    assert!(
        j["samples"][0]["other_load"].as_f64().unwrap() > 0.25,
        "{j}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_names_the_address_when_the_server_resets_at_once() {
    // Every connection is accepted and reset (SO_LINGER 0): whether the
    // bench meets it before or after the load starts, the error names the
    // address (it once said only "Transport endpoint is not connected").
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let acceptor = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((c, _)) => {
                    rustix::net::sockopt::set_socket_linger(&c, Some(Duration::ZERO)).unwrap();
                    drop(c);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    let (code, stdout, stderr) = run(&["bench", "--addr", &addr, "-c", "4", "-d", "1", "--json"]);
    stop.store(true, Ordering::Relaxed);
    let _ = acceptor.join();
    assert_eq!(code, 1, "{stdout} {stderr}");
    let j = json_of(&stdout, &stderr);
    assert_eq!(j["ok"], false, "{j}");
    assert!(j["error"].as_str().unwrap().contains(&addr), "{j}");
    assert!(stderr.contains(&addr), "{stderr}");
}

/// A port nothing listens on (bound, then dropped).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `N` and `M` of "... connection N of M" in `message`.
/// A bench run that failed (exit 1) with a JSON error starting with
/// `prefix` and naming connection N of M: (N, M, the error).
fn timeout_failure(code: i32, stdout: &str, stderr: &str, prefix: &str) -> (u64, u64, String) {
    assert_eq!(code, 1, "{stdout} {stderr}");
    let error = json_of(stdout, stderr)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with(prefix), "{error}");
    let (n, of) = connection_number(&error);
    (n, of, error)
}

fn connection_number(message: &str) -> (u64, u64) {
    let rest = message
        .split(" connection ")
        .nth(1)
        .unwrap_or_else(|| panic!("no connection number in {message:?}"));
    let mut words = rest.split_whitespace();
    let n = words.next().and_then(|w| w.parse().ok());
    let of = words.next();
    let m = words.next().and_then(|w| w.parse().ok());
    match (n, of, m) {
        (Some(n), Some("of"), Some(m)) => (n, m),
        _ => panic!("no connection number in {message:?}"),
    }
}

#[test]
fn bench_connect_refused_names_the_target_and_the_addresses_tried() {
    let port = dead_port();
    // A name: the message gives it and what it resolved to (here at
    // least 127.0.0.1; ::1 too where localhost has both).
    let target = format!("localhost:{port}");
    let (code, stdout, stderr) = run(&[
        "bench", "--addr", &target, "-c", "4", "-t", "2", "--idle", "3", "--json",
    ]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    let j = json_of(&stdout, &stderr);
    let error = j["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("cannot connect to {target} ("))
            && error.contains(&format!("127.0.0.1:{port}"))
            && error.contains("refused"),
        "{error}"
    );
    assert!(stderr.contains(error), "{stderr}");
    // An address as the target: named once.
    let addr = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run(&["bench", "--addr", &addr, "-d", "0.2"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to {addr}: Connection refused")),
        "{stderr}"
    );
}

#[test]
fn bench_connect_timeout_after_the_first_connection_says_which() {
    // Backlog 0 and nobody accepting: the first connection (or first
    // few) waits in the accept queue, the next one's SYN is dropped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let start = Instant::now();
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &addr,
        "-c",
        "3",
        "--idle",
        "8",
        "-t",
        "2",
        "--connect-timeout",
        "0.3",
        "--json",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "one timeout ends the run"
    );
    let (n, of, error) = timeout_failure(
        code,
        &stdout,
        &stderr,
        &format!("cannot connect to {addr}: connect timeout (0.3 s) on idle connection "),
    );
    assert!(n >= 2 && of == 8, "not the first: {error}");
    drop(listener);
}

#[test]
fn bench_unix_connect_timeout_when_the_accept_queue_stays_full() {
    // A full Unix-domain accept queue fails a connect at once (EAGAIN):
    // the bench tries again until the connect timeout, then says so.
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let dir = std::env::temp_dir().join(format!("iomux-tools-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("full.sock");
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(path.as_path()).unwrap()).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    let addr = format!("unix:{}", path.display());
    let (code, stdout, stderr) = run(&[
        "bench",
        "--addr",
        &addr,
        "-c",
        "3",
        "--connect-timeout",
        "0.3",
        "--json",
    ]);
    let (n, of, error) = timeout_failure(
        code,
        &stdout,
        &stderr,
        &format!("cannot connect to {addr}: connect timeout (0.3 s) on active connection "),
    );
    assert!(n >= 2 && of == 3, "the first was queued: {error}");
    drop(fd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_counts_idle_connections_closed_by_the_server_on_every_thread() {
    let server = Server::start(&["--app", "echo", "--idle-timeout", "0.3"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "2",
        "-t",
        "2",
        "--idle",
        "5",
        "--warmup",
        "0",
        "-d",
        "1",
    ]);
    assert_eq!(code, 1, "{j} {stderr}");
    assert_eq!(j["errors"]["idle_closed"], 5, "{j}");
    assert_eq!(j["errors"]["resets"], 0, "{j}");
    assert_eq!(j["threads"], 2, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("5 of 5 idle connections were closed by the server"),
        "{j}"
    );
}

#[test]
fn bench_connect_rate_paces_every_thread_idle_connections_included() {
    let server = Server::start(&["--app", "echo"]);
    let (code, j, stderr) = bench_json(&[
        "--addr",
        &server.addr,
        "-c",
        "4",
        "-t",
        "2",
        "--idle",
        "4",
        "--connect-rate",
        "40",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    // Eight connections at 40/s in all, whichever thread opens them: the
    // last one 7 x 25 ms after the first.
    assert!(j["connect_secs"].as_f64().unwrap() >= 0.175, "{j}");
}

#[test]
fn bench_sigint_while_connecting_says_so_and_exits_130() {
    let silent = Silent::start();
    let child = spawn(&[
        "bench",
        "--addr",
        &silent.addr,
        "-c",
        "40",
        "-t",
        "2",
        "--connect-rate",
        "4",
        "--json",
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || silent
            .accepted
            .load(Ordering::Relaxed)
            >= 2),
        "the bench started connecting"
    );
    sigint(&child);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(20));
    assert_eq!(code, 130, "{stdout} {stderr}");
    assert!(
        stderr.contains("interrupted while opening connections"),
        "{stderr}"
    );
    let j = json_of(&stdout, &stderr);
    assert_eq!(j["interrupted"], true, "{j}");
    assert!(
        silent.accepted.load(Ordering::Relaxed) < 40,
        "it stopped early"
    );
}
