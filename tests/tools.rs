//! `iomux bench` and `iomux compare` against real servers (short runs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_iomux");

/// A server child, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(EXE)
            .args(["serve", "--bind", "127.0.0.1:0", "-q"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn iomux serve");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("startup line");
        let addr = line
            .split_whitespace()
            .nth(3)
            .expect("address in the startup line")
            .to_string();
        // Keep draining so the server never blocks on stdout.
        std::thread::spawn(move || for _ in out.lines() {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn bench_json(extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["bench", "--duration", "0.5", "--warmup", "0.1", "--json"];
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
