//! `iomux bench` driving protocols it does not know (`--request` with a
//! reply rule, `--mode http`): the RESP and HTTP examples served by the
//! loop in this process, `serve --app hash` as a line protocol, and test
//! servers that cut their replies anywhere.

#[macro_use]
mod common;

#[allow(dead_code)]
#[path = "../../examples/http/main.rs"]
mod http;
// Both examples include the same logger module.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/resp/main.rs"]
mod resp;

use common::{LIVENESS, LoopThread, run_to_exit};
use iomux::Config;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `iomux bench --json ARGS` with a short window unless ARGS set one:
/// exit code, the JSON document, stderr.
fn bench(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut full = vec!["bench", "--json"];
    if !args.contains(&"-d") {
        full.extend(["-d", "400ms"]);
    }
    if !args.contains(&"--warmup") {
        full.extend(["--warmup", "100ms"]);
    }
    full.extend_from_slice(args);
    let done = run_to_exit(&full, &[], 6 * LIVENESS);
    let json = serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bench printed no JSON ({e}): {}\n{}",
            done.stdout, done.stderr
        )
    });
    (done.status.code().unwrap_or(-1), json, done.stderr)
}

/// A successful run: exit 0, requests measured, no error of any kind, and
/// `bytes` received per request.
fn assert_clean(code: i32, j: &serde_json::Value, stderr: &str, reply_bytes: f64) {
    assert_eq!(code, 0, "{j} {stderr}");
    assert_eq!(j["ok"], true, "{j}");
    let requests = j["requests"].as_u64().unwrap_or(0);
    assert!(requests > 10, "{j}");
    let errors = j["errors"].as_object().expect("an errors object");
    assert!(errors.values().all(|v| v == 0), "{j}");
    let per_request =
        j["mb_per_sec_received"].as_f64().unwrap() * 1e6 / j["requests_per_sec"].as_f64().unwrap();
    assert!(
        (per_request - reply_bytes).abs() < 0.5,
        "{per_request} bytes received per request, expected {reply_bytes}: {j}"
    );
}

#[test]
fn resp_ping_until_crlf() {
    let server = LoopThread::start("epoll", Config::default(), resp::Resp::default());
    let addr = server.addr.to_string();
    for pipeline in ["1", "8"] {
        let (code, j, stderr) = bench(&[
            "--addr",
            &addr,
            "-c",
            "4",
            "-P",
            pipeline,
            "--request",
            "PING\\r\\n",
            "--reply-until",
            "\\r\\n",
        ]);
        assert_clean(code, &j, &stderr, 7.0);
        assert_eq!(j["mode"], "request", "{j}");
        assert_eq!(j["request"], "PING\\r\\n", "{j}");
        assert_eq!(j["reply_rule"], "until '\\r\\n'", "{j}");
        assert_eq!(j["size"], 6, "{j}");
    }
    // The same request from a file, as raw bytes: a multi-bulk ECHO whose
    // reply is a bulk string of fixed length.
    let file = std::env::temp_dir().join(format!("iomux-resp-echo-{}", std::process::id()));
    std::fs::write(&file, b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n").unwrap();
    let at_file = format!("@{}", file.display());
    let (code, j, stderr) = bench(&[
        "--addr",
        &addr,
        "-c",
        "2",
        "--request",
        &at_file,
        "--reply-len",
        "11",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_clean(code, &j, &stderr, 11.0);
    server.stop(LIVENESS);
}

#[test]
fn http_example_in_http_mode() {
    let server = LoopThread::start("epoll", http::config(), http::Http::default());
    let addr = server.addr.to_string();
    // The size of `GET /`'s response, from the server itself.
    let mut probe = server.connect();
    probe
        .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        probe.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let body: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    let reply = (head.len() + body) as f64;
    drop(probe);
    let (code, j, stderr) = bench(&["--addr", &addr, "-c", "4", "-P", "4", "--mode", "http"]);
    assert_clean(code, &j, &stderr, reply);
    assert_eq!(j["mode"], "http", "{j}");
    assert_eq!(j["reply_rule"], "http", "{j}");
    assert!(
        j["request"].as_str().unwrap().contains("Host: 127.0.0.1"),
        "{j}"
    );
    // Another request, with a larger body.
    let (code, j, stderr) = bench(&[
        "--addr",
        &addr,
        "-c",
        "2",
        "--mode",
        "http",
        "--request",
        "GET /bytes/3000 HTTP/1.1\\r\\nHost: bench\\r\\n\\r\\n",
    ]);
    assert_eq!(code, 0, "{j} {stderr}");
    let per_request =
        j["mb_per_sec_received"].as_f64().unwrap() * 1e6 / j["requests_per_sec"].as_f64().unwrap();
    assert!((3000.0..3400.0).contains(&per_request), "{j}");
    server.stop(LIVENESS);
}

#[test]
fn a_line_protocol_until_newline() {
    let mut server = common::Server::start("epoll", &["--app", "hash", "-q"]);
    let addr = server.addr.to_string();
    let (code, j, stderr) = bench(&[
        "--addr",
        &addr,
        "-c",
        "3",
        "-P",
        "4",
        "-t",
        "2",
        "--request",
        "hash 1 abc\\n",
        "--reply-until",
        "\\n",
    ]);
    // 64 hex digits and a newline.
    assert_clean(code, &j, &stderr, 65.0);
    server.stop();
}

/// A reply the rule cannot frame is a mismatch that names the reason, and
/// the run fails.
#[test]
fn malformed_replies_fail_the_run_with_the_reason() {
    let server = LoopThread::start("epoll", Config::default(), resp::Resp::default());
    let addr = server.addr.to_string();
    let (code, j, stderr) = bench(&["--addr", &addr, "-c", "1", "--mode", "http"]);
    assert_eq!(code, 1, "{j} {stderr}");
    assert!(j["errors"]["mismatched"].as_u64().unwrap() >= 1, "{j}");
    let error = j["error"].as_str().unwrap();
    assert!(
        error.contains("malformed") && error.contains("bad status line") && error.contains(&addr),
        "{error}"
    );
    server.stop(LIVENESS);
}

/// A test HTTP server that answers each request (each `\r\n\r\n`) with a
/// chunked response (extensions and a trailer included), written in
/// pieces cut at a different byte each time, with a pause between so the
/// bench reads them apart. Counts the responses it sent.
fn chunked_server() -> (String, Arc<AtomicU64>) {
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                let mut cut = 1;
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let (a, b) = RESPONSE.split_at(cut);
                        cut = cut % (RESPONSE.len() - 1) + 1;
                        let ok = stream.write_all(a).is_ok() && {
                            std::thread::sleep(Duration::from_micros(200));
                            stream.write_all(b).is_ok()
                        };
                        if !ok {
                            return;
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (addr, sent)
}

#[test]
fn chunked_responses_cut_anywhere_are_framed() {
    let (addr, sent) = chunked_server();
    let (code, j, stderr) = bench(&["--addr", &addr, "-c", "2", "--mode", "http", "-d", "1s"]);
    assert_eq!(code, 0, "{j} {stderr}");
    assert!(
        j["requests"].as_u64().unwrap() > 100,
        "{j} (the server sent {})",
        sent.load(Ordering::Relaxed)
    );
    let errors = j["errors"].as_object().unwrap();
    assert!(errors.values().all(|v| v == 0), "{j}");
}

#[test]
fn conflicting_or_missing_flags_are_usage_errors() {
    for (args, needle) in [
        (&["--request", "x"][..], "needs a reply rule"),
        (
            &["--request", "x", "--mode", "echo"],
            "does not go with --mode echo",
        ),
        (
            &["--request", "x", "--mode", "hash"],
            "does not go with --mode hash",
        ),
        (&["--reply-until", "\\n"], "--request"),
        (&["--reply-len", "3"], "--request"),
        (
            &["--request", "x", "--reply-until", "\\n", "--reply-len", "3"],
            "cannot be used with",
        ),
        (
            &["--request", "x", "--mode", "http", "--reply-len", "3"],
            "cannot be used with",
        ),
        (&["--mode", "http", "--size", "10"], "--size 10"),
        (
            &["--request", "x", "--reply-len", "3", "--size", "10"],
            "--size 10",
        ),
        (
            &["--request", "a\\q", "--reply-len", "3"],
            "unknown escape '\\q'",
        ),
        (&["--request", "\\x1", "--reply-len", "3"], "two hex digits"),
        (
            &["--request", "x", "--reply-until", "ab\\"],
            "--reply-until: a trailing backslash",
        ),
        (
            &["--request", "x", "--reply-until", ""],
            "--reply-until must not be empty",
        ),
        (&["--request", "", "--reply-len", "1"], "--request is empty"),
        (&["--request", "x", "--reply-len", "0"], "--reply-len"),
        (
            &[
                "--request",
                "@/nonexistent/iomux-request",
                "--reply-len",
                "1",
            ],
            "cannot read /nonexistent/iomux-request",
        ),
    ] {
        let mut full = vec!["bench"];
        full.extend_from_slice(args);
        let done = run_to_exit(&full, &[], LIVENESS);
        assert_eq!(done.status.code(), Some(2), "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(needle), "{args:?}: {}", done.stderr);
        // One message, then the usage (clap's own value errors point to
        // --help instead).
        assert!(
            done.stderr.contains("Usage: iomux bench") || done.stderr.contains("try '--help'"),
            "{args:?}: {}",
            done.stderr
        );
    }
}
