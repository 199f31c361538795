//! `iomux serve --tls-cert FILE --tls-key FILE`, on every backend: echo and
//! ack over TLS, a plaintext client turned away with a reason line, a
//! SIGTERM that flushes what a TLS client is owed and ends with
//! `close_notify`, Unix-domain TLS, several loops; `iomux bench --tls`
//! against it, keep-alive and a new connection per request (its text
//! report, `--hist`, `--interval`, and `--json` in the regular bench's
//! one schema whatever the outcome); and bad certificate or key files, or
//! a bench without a CA to trust, or `--new-conn --rate`, refused with one
//! line and the usage (run once). The certificates are made at test time.

#[macro_use]
mod common;

use common::pki::{Pki, read_to_close_notify};
use common::{LIVENESS, Rng, Server, assert_one_schema, json_key_paths, read_to_end, seed};
use iomux::rustls;
use std::io::{Read, Write};
use std::net::Shutdown;

backend_suite! {
    tls_echo,
    tls_ack,
    tls_hash,
    tls_plaintext_client_turned_away,
    tls_sigterm_flushes_then_close_notify,
    tls_unix_domain,
    tls_threads,
    bench_tls_keep_alive,
    bench_tls_new_connection_per_request,
    bench_new_conn_json_has_the_one_schema,
    bench_new_conn_sigint_prints_the_partial_result,
    bench_tls_refuses_an_untrusted_server,
}

/// `iomux serve` on 127.0.0.1:0 with `pki`'s certificate and `extra`.
fn start(backend: &str, pki: &Pki, extra: &[&str]) -> Server {
    let flags = pki.serve_flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let server = Server::start(backend, &args);
    assert!(server.startup.ends_with(", TLS)"), "{}", server.startup);
    server
}

/// 2 MB of random bytes through echo over TLS, in 64 KiB round trips;
/// the client's `close_notify` ends it, and the server answers with its
/// own.
fn tls_echo(backend: &str) {
    let pki = Pki::new(&format!("serve-echo-{backend}"));
    let mut server = start(backend, &pki, &["--app", "echo"]);
    let mut c = pki.connect(server.addr);
    let data = Rng::new(seed("tls_echo", backend)).bytes(2 << 20);
    let mut back = vec![0u8; 64 * 1024];
    for chunk in data.chunks(back.len()) {
        c.write_all(chunk).expect("send a chunk");
        c.read_exact(&mut back[..chunk.len()]).expect("its echo");
        assert!(back[..chunk.len()] == *chunk, "the echo differs");
    }
    c.conn.send_close_notify();
    c.flush().expect("send close_notify");
    let (rest, error) = read_to_close_notify(&mut c);
    assert!(rest.is_empty() && error.is_none(), "{rest:?} {error:?}");
    drop(c);
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
    assert!(summary.bytes_in > data.len() as u64, "{summary:?}");
}

/// ack over TLS: each message answered with --reply.
fn tls_ack(backend: &str) {
    let pki = Pki::new(&format!("serve-ack-{backend}"));
    let mut server = start(backend, &pki, &["--reply", "secret-ok"]);
    let mut c = pki.connect(server.addr);
    for _ in 0..3 {
        c.write_all(b"hello").expect("send");
        let mut got = [0u8; 9];
        c.read_exact(&mut got).expect("the reply");
        assert_eq!(&got, b"secret-ok");
    }
    assert!(
        server.wait_for_stdout(": hello", LIVENESS),
        "{}",
        server.stdout_text()
    );
    drop(c);
    server.stop();
}

/// hash over TLS, inline and offloaded to a worker: the digests come back
/// in request order.
fn tls_hash(backend: &str) {
    let pki = Pki::new(&format!("serve-hash-{backend}"));
    let mut server = start(
        backend,
        &pki,
        &[
            "--app",
            "hash",
            "--workers",
            "1",
            "--offload-above",
            "2",
            "-q",
        ],
    );
    let mut c = pki.connect(server.addr);
    c.write_all(b"hash 1 abc\nhash 3 abc\nhash 1 abc\n")
        .expect("send");
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    let mut got = vec![0u8; abc.len() * 3];
    c.read_exact(&mut got).expect("three digests");
    let got = String::from_utf8_lossy(&got).into_owned();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert_eq!(format!("{}\n", lines[0]), abc);
    assert_eq!(format!("{}\n", lines[2]), abc);
    assert_ne!(lines[1], lines[0], "3 iterations differ from 1");
    drop(c);
    server.stop();
}

/// A client speaking plaintext to the TLS port is closed, with a reason
/// line naming TLS; the server goes on serving TLS clients.
fn tls_plaintext_client_turned_away(backend: &str) {
    let pki = Pki::new(&format!("serve-plain-{backend}"));
    let mut server = start(backend, &pki, &["--app", "echo"]);
    let mut plain = server.connect();
    let peer = plain.local_addr().unwrap();
    plain.write_all(b"hello in the clear\n").expect("send");
    let (back, _) = read_to_end(&mut plain);
    // At most rustls's alert, never the echo.
    assert!(
        !back.windows(5).any(|w| w == b"hello"),
        "plaintext echoed: {back:?}"
    );
    let logged = server.wait_stderr_until(LIVENESS, |t| {
        t.lines()
            .any(|l| l.contains(&peer.to_string()) && l.contains("TLS"))
    });
    assert!(
        logged,
        "no TLS reason for {peer}:\n{}",
        server.stderr_text()
    );
    server.expect_disconnect_logged(peer);
    let mut c = pki.connect(server.addr);
    c.write_all(b"still here").expect("send");
    let mut got = [0u8; 10];
    c.read_exact(&mut got).expect("the echo");
    assert_eq!(&got, b"still here");
    drop(c);
    assert_eq!(server.stop().clients, 2);
}

/// chat over TLS: a sender relays 8 MB of lines to a receiver that does
/// not read them; the server has read them all when it logs the sender's
/// disconnect. SIGTERM then: the receiver gets every line, then
/// `close_notify` (no truncation), and the server exits 0.
fn tls_sigterm_flushes_then_close_notify(backend: &str) {
    let pki = Pki::new(&format!("serve-sigterm-{backend}"));
    let mut server = start(
        backend,
        &pki,
        &["--app", "chat", "--max-output", "67108864"],
    );
    let mut receiver = pki.connect(server.addr);
    let receiver_addr = receiver.sock.local_addr().unwrap();
    while receiver.conn.is_handshaking() {
        receiver
            .conn
            .complete_io(&mut receiver.sock)
            .expect("the receiver's handshake");
    }
    server.expect_connect_logged(receiver_addr);
    let mut sender = pki.connect(server.addr);
    let sender_addr = sender.sock.local_addr().unwrap();
    let lines = 8000;
    let line = format!("{}\n", "x".repeat(1000));
    for _ in 0..lines {
        sender.write_all(line.as_bytes()).expect("send a line");
    }
    sender.conn.send_close_notify();
    sender.flush().expect("send close_notify");
    sender
        .sock
        .shutdown(Shutdown::Write)
        .expect("shut the write side");
    server.expect_disconnect_logged(sender_addr);
    server.sigterm();
    let (got, error) = read_to_close_notify(&mut receiver);
    assert!(
        error.is_none(),
        "the receiver's stream ended without close_notify after {} bytes: {error:?}",
        got.len()
    );
    let relayed = format!("{sender_addr}: {line}");
    assert_eq!(got.len(), relayed.len() * lines, "bytes relayed");
    assert!(
        got.chunks(relayed.len()).all(|c| c == relayed.as_bytes()),
        "a line differs"
    );
    drop((receiver, sender));
    let summary = server.expect_clean_exit();
    assert_eq!(summary.clients, 2);
}

/// TLS over a Unix-domain socket (abstract namespace).
fn tls_unix_domain(backend: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let pki = Pki::new(&format!("serve-unix-{backend}"));
    let name = format!("iomux-serve-tls-{}-{backend}", std::process::id());
    let bind = format!("unix:@{name}");
    let flags = pki.serve_flags();
    let mut args = vec![
        "serve",
        "--backend",
        backend,
        "--app",
        "echo",
        "--bind",
        &bind,
    ];
    args.extend(flags.iter().map(String::as_str));
    let mut server = Server::spawn(&args, &[]);
    let unix = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
        .expect("connect");
    unix.set_read_timeout(Some(LIVENESS)).unwrap();
    let localhost = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let session = rustls::ClientConnection::new(pki.client.clone(), localhost).unwrap();
    let mut c = rustls::StreamOwned::new(session, unix);
    c.write_all(b"over a unix socket").expect("send");
    let mut got = [0u8; 18];
    c.read_exact(&mut got).expect("the echo");
    assert_eq!(&got, b"over a unix socket");
    drop(c);
    server.stop();
}

/// Two loops, both serving TLS: every client is answered.
fn tls_threads(backend: &str) {
    let pki = Pki::new(&format!("serve-threads-{backend}"));
    let mut server = start(backend, &pki, &["--app", "echo", "--threads", "2"]);
    assert!(server.startup.contains("2 loops"), "{}", server.startup);
    let mut clients: Vec<_> = (0..8).map(|_| pki.connect(server.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("client {i}");
        c.write_all(msg.as_bytes()).expect("send");
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).expect("the echo");
        assert_eq!(got, msg.as_bytes());
    }
    drop(clients);
    assert_eq!(server.stop().clients, 8);
}

/// `iomux bench --tls --tls-ca CA` on `backend` against `server`, with
/// `extra`; its exit code and output.
fn bench(backend: &str, server: &Server, ca: &std::path::Path, extra: &[&str]) -> common::Finished {
    let addr = server.addr.to_string();
    let ca = ca.display().to_string();
    let mut args = vec![
        "bench",
        "--addr",
        &addr,
        "--backend",
        backend,
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-name",
        "localhost",
        "-d",
        "0.5",
        "--warmup",
        "0.1",
    ];
    args.extend_from_slice(extra);
    common::run_to_exit(&args, &[], LIVENESS)
}

/// Keep-alive load over TLS: requests answered, checked byte for byte, no
/// error.
fn bench_tls_keep_alive(backend: &str) {
    let pki = Pki::new(&format!("bench-ka-{backend}"));
    let mut server = start(backend, &pki, &["--app", "echo", "-q"]);
    let done = bench(backend, &server, &pki.ca, &["-c", "8", "-P", "4", "--json"]);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}
{}",
        done.stdout,
        done.stderr
    );
    let json: serde_json::Value = serde_json::from_str(done.stdout.trim()).expect("JSON");
    assert!(json["requests"].as_u64().unwrap_or(0) > 0, "{json}");
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["errors"]["resets"], 0, "{json}");
    server.stop();
}

/// `--new-conn`: every request on a connection of its own, each a full
/// handshake; the report has the regular bench's lines and a handshakes
/// line; the server saw as many clients as the bench completed, or more;
/// `--hist` holds every one, `--interval` prints its lines first.
fn bench_tls_new_connection_per_request(backend: &str) {
    let pki = Pki::new(&format!("bench-nc-{backend}"));
    let mut server = start(backend, &pki, &["--app", "echo", "-q"]);
    let hist = pki.dir.join("new-conn.hist");
    let hist_arg = hist.display().to_string();
    let done = bench(
        backend,
        &server,
        &pki.ca,
        &[
            "-c",
            "4",
            "--new-conn",
            "--hist",
            &hist_arg,
            "--interval",
            "0.2",
        ],
    );
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}
{}",
        done.stdout,
        done.stderr
    );
    let out = &done.stdout;
    // "  LABEL N (R/s)...": N.
    let count_of = |label: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line:\n{out}"));
        line[label.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
    };
    let count = count_of("  requests    ");
    assert!(count > 0, "{out}");
    assert_eq!(count_of("  handshakes  "), count, "{out}");
    assert!(out.contains("full TLS handshakes, none resumed"), "{out}");
    for line in ["  throughput  ", "  latency     p50 ", "  bench cpu   "] {
        assert!(out.contains(line), "no {line:?}:\n{out}");
    }
    assert!(
        out.contains(
            "  errors      0 connect failures, 0 resets, 0 closed by server, 0 mismatched, \
             0 short, 0 timeouts, 0 idle closed"
        ),
        "{out}"
    );
    // The interval lines come first, then the report.
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("  [") && first.contains("req/s"), "{out}");
    let text = std::fs::read_to_string(&hist).expect("the --hist file");
    assert!(
        text.contains(&format!("Total count    = {count:12}]")),
        "{count} in {text}"
    );
    let summary = server.stop();
    assert!(summary.clients >= count, "{summary:?} vs {count}");
}

/// `iomux bench --json` on `backend` with `args` and a short window; its
/// exit code, document and stderr.
fn bench_json(backend: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec![
        "bench",
        "--json",
        "--backend",
        backend,
        "-d",
        "0.5",
        "--warmup",
        "0.1",
    ];
    all.extend_from_slice(args);
    let done = common::run_to_exit(&all, &[], LIVENESS);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    let json = serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{args:?}: no JSON ({e}): {}\n{}", done.stdout, done.stderr));
    (done.status.code().unwrap_or(-1), json, done.stderr)
}

/// `--new-conn --json` prints the regular bench's one schema, whatever
/// happened: over TLS and not, failed handshakes, a refused connect; the
/// regular keep-alive run's keys and its are the same. Its figures: a
/// request per completed connection, handshakes per second, the whole
/// cycle's latency, failed handshakes as connect failures, the bench's
/// CPU, the intervals.
fn bench_new_conn_json_has_the_one_schema(backend: &str) {
    let (pki, other) = (
        Pki::new(&format!("bench-nc-json-{backend}")),
        Pki::new(&format!("bench-nc-json-other-{backend}")),
    );
    let mut tls = start(backend, &pki, &["--app", "echo", "-q"]);
    let mut plain = Server::start(backend, &["--app", "echo", "-q"]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    // Never accepts: the kernel completes a few connects for its backlog,
    // and none is ever answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let silent_addr = silent.local_addr().expect("its address").to_string();
    let (tls_addr, plain_addr) = (tls.addr.to_string(), plain.addr.to_string());
    let (ca, other_ca) = (pki.ca.display().to_string(), other.ca.display().to_string());
    let run = |args: &[&str], ca: Option<&str>| -> (i32, serde_json::Value, String) {
        let mut all = args.to_vec();
        if let Some(ca) = ca {
            all.extend(["--tls", "--tls-ca", ca, "--tls-name", "localhost"]);
        }
        bench_json(backend, &all)
    };
    let runs: [(&[&str], Option<&str>, i32); 6] = [
        // The reference: the regular, keep-alive bench.
        (&["--addr", &tls_addr, "-c", "2"], Some(&ca), 0),
        (
            &[
                "--addr",
                &tls_addr,
                "-c",
                "2",
                "--new-conn",
                "--interval",
                "0.2",
            ],
            Some(&ca),
            0,
        ),
        (&["--addr", &plain_addr, "-c", "2", "--new-conn"], None, 0),
        (
            &["--addr", &tls_addr, "-c", "2", "--new-conn"],
            Some(&other_ca),
            1,
        ),
        (&["--addr", &dead, "-c", "2", "--new-conn"], None, 1),
        (
            &[
                "--addr",
                &silent_addr,
                "-c",
                "1",
                "--new-conn",
                "--timeout",
                "0.2",
            ],
            None,
            1,
        ),
    ];
    let mut docs = Vec::new();
    for (args, ca, want) in runs {
        let (code, j, stderr) = run(args, ca);
        assert_eq!(code, want, "{args:?}: {j} {stderr}");
        docs.push((args, j));
    }
    let first = json_key_paths(&docs[0].1);
    assert!(first.contains("latency_us.p50_us") && first.contains("errors.connect_failures"));
    assert_one_schema(&docs);
    let regular = &docs[0].1;
    assert_eq!(regular["new_conn"], false, "{regular}");
    assert!(regular["handshakes_per_sec"].is_null(), "{regular}");
    assert!(regular["connections_per_sec"].is_null(), "{regular}");
    // Over TLS: every request a full handshake.
    let j = &docs[1].1;
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(
        (&j["new_conn"], &j["tls"]),
        (&true.into(), &true.into()),
        "{j}"
    );
    assert!(j["requests"].as_u64().is_some_and(|n| n > 0), "{j}");
    let rate = j["requests_per_sec"].as_f64().unwrap_or(0.0);
    assert!(rate > 0.0, "{j}");
    assert_eq!(j["handshakes_per_sec"].as_f64(), Some(rate), "{j}");
    assert_eq!(j["connections_per_sec"].as_f64(), Some(rate), "{j}");
    let positive = |v: &serde_json::Value| v.as_f64().is_some_and(|x| x > 0.0);
    assert!(positive(&j["latency_us"]["p50_us"]), "{j}");
    assert!(positive(&j["bench_cpu_per_thread"]), "{j}");
    assert!(positive(&j["mb_per_sec_received"]), "{j}");
    assert!(
        j["intervals"].as_array().is_some_and(|i| !i.is_empty()),
        "{j}"
    );
    assert_eq!((&j["pipeline"], &j["idle"]), (&1.into(), &0.into()), "{j}");
    assert!(j["rate_asked"].is_null() && j["missed"].is_null(), "{j}");
    let errors = j["errors"].as_object().expect("errors");
    assert!(errors.values().all(|n| *n == 0), "{j}");
    // In the clear: connections per second, no handshake.
    let j = &docs[2].1;
    assert_eq!((&j["ok"], &j["tls"]), (&true.into(), &false.into()), "{j}");
    assert!(j["handshakes_per_sec"].is_null(), "{j}");
    assert!(positive(&j["connections_per_sec"]), "{j}");
    // An untrusted certificate: every handshake fails, each counted.
    let j = &docs[3].1;
    assert_eq!(
        (&j["ok"], &j["requests"]),
        (&false.into(), &0.into()),
        "{j}"
    );
    assert!(positive(&j["errors"]["connect_failures"]), "{j}");
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{j}"
    );
    // A refused connect: nothing measured, said as null.
    let j = &docs[4].1;
    assert_eq!(
        (&j["ok"], &j["requests"]),
        (&false.into(), &0.into()),
        "{j}"
    );
    assert!(
        j["error"].as_str().is_some_and(|e| e.contains(&dead)),
        "{j}"
    );
    assert!(j["latency_us"]["p50_us"].is_null(), "{j}");
    // No reply within --timeout: counted, the connection replaced.
    let j = &docs[5].1;
    assert_eq!(
        (&j["ok"], &j["requests"]),
        (&false.into(), &0.into()),
        "{j}"
    );
    assert!(positive(&j["errors"]["timeouts"]), "{j}");
    assert!(positive(&j["reconnects"]), "{j}");
    drop(silent);
    tls.stop();
    plain.stop();
}

/// Ctrl-C during `--new-conn`: the partial result, as text or JSON, and
/// exit code 130, as any run's; in the clear, a `connections` line.
fn bench_new_conn_sigint_prints_the_partial_result(backend: &str) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let mut server = Server::start(backend, &["--app", "echo", "-q"]);
    let addr = server.addr.to_string();
    for json in [true, false] {
        let mut args = vec![
            "bench",
            "--addr",
            &addr,
            "--backend",
            backend,
            "-c",
            "2",
            "--warmup",
            "0",
            "-d",
            "60",
            "--new-conn",
            "--interval",
            "0.05",
        ];
        if json {
            args.push("--json");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_iomux"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn iomux bench");
        let collect = |pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let into = text.clone();
            let reader = std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut t = into.lock().unwrap_or_else(|e| e.into_inner());
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            (text, reader)
        };
        let (stdout, out_reader) = collect(Box::new(child.stdout.take().expect("stdout")));
        let (stderr, err_reader) = collect(Box::new(child.stderr.take().expect("stderr")));
        let read = |t: &Arc<Mutex<String>>| t.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The interval lines (on stderr with --json): it is measuring.
        let lines = if json { &stderr } else { &stdout };
        let deadline = Instant::now() + LIVENESS;
        while !read(lines).contains("req/s") {
            assert!(
                Instant::now() < deadline,
                "no interval line: {} {}",
                read(&stdout),
                read(&stderr)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::INT,
        )
        .expect("send SIGINT");
        let deadline = Instant::now() + LIVENESS;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the bench did not exit after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = (out_reader.join(), err_reader.join());
        let (out, err) = (read(&stdout), read(&stderr));
        assert_eq!(status.code(), Some(130), "{out} {err}");
        assert!(err.contains("interrupted"), "{err}");
        if json {
            let j: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
            assert_eq!(
                (&j["interrupted"], &j["ok"]),
                (&true.into(), &false.into()),
                "{j}"
            );
            assert!(j["requests"].as_u64().is_some_and(|n| n > 0), "{j}");
            assert!(j["window_secs"].as_f64().is_some_and(|w| w < 60.0), "{j}");
        } else {
            assert!(out.contains("(interrupted: partial)"), "{out}");
            assert!(out.contains("  connections "), "{out}");
            assert!(out.contains("connect to close"), "{out}");
        }
    }
    server.stop();
}

/// A server whose certificate the bench does not trust: every connection
/// fails its handshake, the run exits 1 saying so.
fn bench_tls_refuses_an_untrusted_server(backend: &str) {
    let (pki, other) = (
        Pki::new(&format!("bench-untrusted-{backend}")),
        Pki::new(&format!("bench-other-{backend}")),
    );
    let mut server = start(backend, &pki, &["--app", "echo", "-q"]);
    for extra in [&["-c", "2"][..], &["-c", "2", "--new-conn"]] {
        let done = bench(backend, &server, &other.ca, extra);
        assert_eq!(
            done.status.code(),
            Some(1),
            "{}
{}",
            done.stdout,
            done.stderr
        );
        assert!(done.stderr.contains("certificate"), "{}", done.stderr);
    }
    server.stop();
}

/// The command line, run once: bad files are a usage mistake.
mod cli {
    use super::common::pki::Pki;
    use super::common::run_to_exit;
    use std::time::Duration;

    const QUICK: Duration = Duration::from_secs(10);

    /// `serve ARGS` exits 2, its one-line error naming `what`, with the
    /// usage after it; no start-up line.
    fn refused(args: &[&str], what: &[&str]) {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let done = run_to_exit(&all, &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        let first = done.stderr.lines().next().unwrap_or_default();
        for w in what {
            assert!(first.contains(w), "{w:?} not in {first:?}\n{}", done.stderr);
        }
        assert!(
            done.stderr.contains("Usage: iomux serve"),
            "{}",
            done.stderr
        );
        assert!(done.stdout.is_empty(), "stdout:\n{}", done.stdout);
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let pki = Pki::new("cli-missing");
        let missing = pki.dir.join("nope.pem").display().to_string();
        let key = pki.key.display().to_string();
        refused(
            &["--tls-cert", &missing, "--tls-key", &key],
            &["--tls-cert", &missing, "cannot read"],
        );
    }

    #[test]
    fn a_key_file_without_a_key_is_named() {
        let pki = Pki::new("cli-nokey");
        let cert = pki.cert.display().to_string();
        refused(
            &["--tls-cert", &cert, "--tls-key", &cert],
            &["--tls-key", "no private key"],
        );
    }

    #[test]
    fn a_certificate_file_without_a_certificate_is_named() {
        let pki = Pki::new("cli-nocert");
        let key = pki.key.display().to_string();
        refused(
            &["--tls-cert", &key, "--tls-key", &key],
            &["--tls-cert", "no certificate"],
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (a, b) = (Pki::new("cli-pair-a"), Pki::new("cli-pair-b"));
        let (cert, key) = (a.cert.display().to_string(), b.key.display().to_string());
        refused(
            &["--tls-cert", &cert, "--tls-key", &key],
            &["--tls-cert", "--tls-key"],
        );
    }

    #[test]
    fn bench_tls_needs_a_ca_or_insecure() {
        let done = run_to_exit(&["bench", "--tls", "-d", "0.1"], &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("--tls-ca"), "{}", done.stderr);
        assert!(done.stderr.contains("--tls-insecure"), "{}", done.stderr);
        let done = run_to_exit(
            &[
                "bench",
                "--tls",
                "--tls-ca",
                "/nonexistent.pem",
                "-d",
                "0.1",
            ],
            &[],
            QUICK,
        );
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("/nonexistent.pem"), "{}", done.stderr);
    }

    /// `--new-conn` has no open loop: `--rate` is refused, naming both.
    #[test]
    fn bench_new_conn_refuses_rate() {
        let done = run_to_exit(
            &["bench", "--new-conn", "--rate", "100", "-d", "0.1"],
            &[],
            QUICK,
        );
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        let first = done.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains("--new-conn") && first.contains("--rate"),
            "{}",
            done.stderr
        );
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let pki = Pki::new("cli-alone");
        let cert = pki.cert.display().to_string();
        let done = run_to_exit(&["serve", "--tls-cert", &cert], &[], QUICK);
        assert_eq!(done.status.code(), Some(2), "stderr:\n{}", done.stderr);
        assert!(done.stderr.contains("--tls-key"), "{}", done.stderr);
    }
}
