//! `iomux serve --bind unix:PATH` and `unix:@NAME`, on every backend:
//! echo and chat over Unix-domain sockets, peers named `unix:#N` in logs
//! and chat lines, a stale socket file replaced, a live one refused, the
//! file removed at shutdown.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use common::{IO_TIMEOUT, LIVENESS, Server, run_to_exit};

backend_suite! {
    unix_echo,
    unix_chat,
    unix_abstract_echo,
    unix_stale_file_replaced_live_one_refused,
    bench_over_unix_sockets,
    adopted_unix_stream_echo,
    unix_threads_share_one_socket,
}

/// `iomux serve --backend BACKEND EXTRA` (EXTRA has the `--bind`).
fn start(backend: &str, extra: &[&str]) -> Server {
    let mut args = vec!["serve", "--backend", backend];
    args.extend_from_slice(extra);
    Server::spawn(&args, &[])
}

/// A socket path of this test's own, in a fresh directory.
fn socket_path(test: &str, backend: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iomux-{test}-{backend}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir.join("s.sock")
}

fn connect(path: &PathBuf) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect over the Unix socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn read_exact(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    s.read_exact(&mut got).expect("the reply");
    got
}

/// Echo over a socket file: bytes come back; connect and disconnect are
/// logged as `unix:#N`; the file is gone after the shutdown.
fn unix_echo(backend: &str) {
    let path = socket_path("echo", backend);
    let bind = format!("unix:{}", path.display());
    let mut server = start(backend, &["--app", "echo", "--bind", &bind]);
    assert!(
        server
            .startup
            .starts_with(&format!("iomux: listening on {bind} (")),
        "{}",
        server.startup
    );
    let mut c = connect(&path);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = c.try_clone().unwrap();
    let sent = data.clone();
    let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    assert_eq!(read_exact(&mut c, data.len()), data);
    t.join().unwrap();
    assert!(
        server.wait_for_stderr("connect unix:#", LIVENESS),
        "{}",
        server.stderr_text()
    );
    drop(c);
    assert!(
        server.wait_for_stderr("disconnect unix:#", LIVENESS),
        "{}",
        server.stderr_text()
    );
    assert!(
        !server.stderr_text().contains("reset"),
        "a clean close is not a reset: {}",
        server.stderr_text()
    );
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// `--threads 2` on a socket file: the loops share the one socket, every
/// client is served, the summary counts them all, the file goes at the end.
fn unix_threads_share_one_socket(backend: &str) {
    let path = socket_path("threads", backend);
    let bind = format!("unix:{}", path.display());
    let mut server = start(
        backend,
        &["--app", "echo", "-q", "--threads", "2", "--bind", &bind],
    );
    assert!(server.startup.contains(", 2 loops)"), "{}", server.startup);
    let mut clients: Vec<UnixStream> = (0..12).map(|_| connect(&path)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("line {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_exact(c, msg.len()), msg.as_bytes());
    }
    drop(clients);
    let summary = server.stop();
    assert_eq!(summary.clients, 12);
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// Chat between Unix-domain clients: each line reaches the others,
/// prefixed with the sender's `unix:#N` name.
fn unix_chat(backend: &str) {
    let path = socket_path("chat", backend);
    let bind = format!("unix:{}", path.display());
    let mut server = start(backend, &["--app", "chat", "-q", "--bind", &bind]);
    let mut a = connect(&path);
    let mut b = connect(&path);
    // Both are accepted once a line from one reaches the other.
    let mut line = Vec::new();
    for attempt in 0..100 {
        a.write_all(format!("hello {attempt}\n").as_bytes())
            .unwrap();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = b.read(&mut buf) {
            line.extend_from_slice(&buf[..n]);
            break;
        }
    }
    b.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let text = String::from_utf8_lossy(&line).into_owned();
    assert!(
        text.starts_with("unix:#") && text.contains(": hello "),
        "{text:?}"
    );
    b.write_all(b"back\n").unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(": back\n") {
        let mut buf = [0u8; 256];
        let n = match a.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.expect("the line from b"),
        };
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    drop((a, b));
    server.stop();
}

/// The abstract namespace: no file at all, echo works.
fn unix_abstract_echo(backend: &str) {
    let name = format!("iomux-test-{backend}-{}", std::process::id());
    let bind = format!("unix:@{name}");
    let mut server = start(backend, &["--app", "echo", "-q", "--bind", &bind]);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut c = UnixStream::connect_addr(&addr).expect("connect to the abstract name");
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"abstract").unwrap();
    assert_eq!(read_exact(&mut c, 8), b"abstract");
    drop(c);
    server.stop();
}

/// A socket file nobody listens on (a crashed server's) is replaced; one a
/// running server listens on is refused with one line and exit 1; a path
/// that is not a socket is refused too.
fn unix_stale_file_replaced_live_one_refused(backend: &str) {
    let path = socket_path("stale", backend);
    drop(UnixListener::bind(&path).unwrap()); // leaves the file behind
    assert!(path.exists());
    let bind = format!("unix:{}", path.display());
    let mut server = start(backend, &["--app", "echo", "-q", "--bind", &bind]);
    let mut c = connect(&path);
    c.write_all(b"x").unwrap();
    assert_eq!(read_exact(&mut c, 1), b"x");
    let second = run_to_exit(
        &["serve", "--backend", backend, "--bind", &bind],
        &[],
        LIVENESS,
    );
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains("listening on") && second.stderr.contains("already"),
        "{}",
        second.stderr
    );
    // The running server is unharmed.
    c.write_all(b"y").unwrap();
    assert_eq!(read_exact(&mut c, 1), b"y");
    drop(c);
    server.stop();
    let file = path.with_file_name("plain");
    std::fs::write(&file, b"not a socket").unwrap();
    let bind = format!("unix:{}", file.display());
    let refused = run_to_exit(
        &["serve", "--backend", backend, "--bind", &bind],
        &[],
        LIVENESS,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is not a socket"),
        "{}",
        refused.stderr
    );
    assert!(file.exists(), "a file that is not a socket is left alone");
}

/// `iomux bench --addr unix:PATH` loads a Unix-domain server (idle
/// connections included) and checks every reply; one the server closes
/// for idleness is counted.
fn bench_over_unix_sockets(backend: &str) {
    let path = socket_path("bench", backend);
    let bind = format!("unix:{}", path.display());
    let mut server = start(backend, &["--app", "echo", "-q", "--bind", &bind]);
    let args = [
        "bench",
        "--addr",
        &bind,
        "--backend",
        backend,
        "-c",
        "4",
        "--idle",
        "3",
        "-d",
        "0.3",
        "--warmup",
        "0",
        "--json",
    ];
    let done = run_to_exit(&args, &[], LIVENESS);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}\n{}",
        done.stdout,
        done.stderr
    );
    let json: serde_json::Value = serde_json::from_str(done.stdout.trim()).expect("JSON");
    assert!(json["requests"].as_u64().unwrap_or(0) > 0, "{json}");
    assert_eq!(json["errors"]["connect_failures"], 0, "{json}");
    assert_eq!(json["addr"], bind.as_str());
    let summary = server.stop();
    assert_eq!(summary.clients, 7);
    // A server that closes idle clients: the bench says so.
    let mut server = start(
        backend,
        &[
            "--app",
            "echo",
            "-q",
            "--bind",
            &bind,
            "--idle-timeout",
            "0.2",
        ],
    );
    let args = [
        "bench",
        "--addr",
        &bind,
        "--backend",
        backend,
        "-c",
        "2",
        "--idle",
        "3",
        "-d",
        "0.6",
        "--warmup",
        "0",
        "--json",
    ];
    let done = run_to_exit(&args, &[], LIVENESS);
    assert_eq!(
        done.status.code(),
        Some(1),
        "{}\n{}",
        done.stdout,
        done.stderr
    );
    let json: serde_json::Value = serde_json::from_str(done.stdout.trim()).expect("JSON");
    assert_eq!(json["errors"]["idle_closed"], 3, "{json}");
    server.stop();
}

/// `EventLoop::adopt_unix`: a connected Unix-domain stream (one end of a
/// socketpair, unnamed) joins a loop and is served like an accepted one.
fn adopted_unix_stream_echo(backend: &str) {
    let backend: iomux::Backend = backend.parse().expect("a backend");
    let (ours, mut theirs) = UnixStream::pair().expect("a socketpair");
    theirs.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let looping = std::thread::spawn(move || {
        let mut lp: iomux::EventLoop<()> =
            iomux::EventLoop::new(backend, iomux::Config::default())?;
        lp.adopt(ours)?;
        let _ = handle_tx.send(lp.stop_handle());
        lp.run(&mut common::Echo)
    });
    let stop = handle_rx.recv_timeout(LIVENESS).expect("the loop started");
    theirs.write_all(b"through an adopted stream").unwrap();
    assert_eq!(read_exact(&mut theirs, 25), b"through an adopted stream");
    stop.stop();
    looping
        .join()
        .expect("the loop thread")
        .expect("the loop ran");
    let mut rest = Vec::new();
    theirs
        .read_to_end(&mut rest)
        .expect("end of stream at the shutdown");
    assert!(rest.is_empty(), "{rest:?}");
}
