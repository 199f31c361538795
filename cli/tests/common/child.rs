//! A running `iomux` child with its output captured, and what it printed
//! when it ended. Bounded in time like everything in `common`.

use super::{IO_TIMEOUT, LIVENESS, raise_fd_limit, set_timeouts};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What a child wrote to one pipe, collected by a background thread so the
/// child never blocks on a full pipe.
pub struct Captured {
    state: Mutex<CapturedState>,
    changed: Condvar,
}

struct CapturedState {
    bytes: Vec<u8>,
    closed: bool,
}

impl Captured {
    fn drain(mut pipe: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured {
            state: Mutex::new(CapturedState {
                bytes: Vec::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let sink = captured.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let mut state = sink.state.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                } else {
                    state.bytes.extend_from_slice(&buf[..n]);
                }
                sink.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        captured
    }

    /// Everything so far, as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().unwrap().bytes).into_owned()
    }

    /// Waits until `done(text)` holds; false if the pipe closed or time ran
    /// out first.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&String::from_utf8_lossy(&state.bytes)) {
                return true;
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits until the pipe is closed (the child exited), at most `timeout`.
    fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
        true
    }
}

/// The `iomux` command with a clean environment (no inherited
/// `IOMUX_BACKEND`), stdin closed, stdout and stderr piped.
fn iomux_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    raise_fd_limit();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iomux"));
    cmd.args(args);
    configure(cmd, env)
}

/// `iomux ARGS` started with an open-files limit of `limit` (soft and
/// hard, so it cannot raise it), through util-linux's `prlimit`; `None`
/// where there is no `prlimit`.
fn iomux_command_with_fd_limit(args: &[&str], limit: u64) -> Option<Command> {
    let found = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return None;
    }
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={limit}:{limit}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_iomux"))
        .args(args);
    Some(configure(cmd, &[]))
}

fn configure(mut cmd: Command, env: &[(&str, &str)]) -> Command {
    cmd.env_remove("IOMUX_BACKEND")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// How a short-lived `iomux` invocation ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `iomux ARGS` to completion (killed after `timeout`, which fails the
/// test) and returns its exit status and output.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Finished {
    let mut child = iomux_command(args, env)
        .spawn()
        .expect("spawn the iomux binary");
    let stdout = Captured::drain(child.stdout.take().unwrap());
    let stderr = Captured::drain(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "iomux {args:?} did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            stdout.text(),
            stderr.text()
        )
    });
    stdout.wait_closed(LIVENESS);
    stderr.wait_closed(LIVENESS);
    let finished = Finished {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
    };
    assert_no_panic(&finished.stdout, &finished.stderr);
    finished
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Fails the test if either output shows a Rust panic.
pub fn assert_no_panic(stdout: &str, stderr: &str) {
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        assert!(
            !text.contains("panicked"),
            "the server panicked ({name}):\n{text}"
        );
    }
}

/// The counters of the shutdown line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub clients: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Parses `iomux: shutdown, N clients served, B bytes in, B bytes out`
/// (`1 client`, `1 byte` for one).
pub fn parse_summary(line: &str) -> Option<Summary> {
    let rest = line.strip_prefix("iomux: shutdown, ")?;
    let mut parts = rest.split(", ");
    // `1 client served`, `2 clients served`: the plural says the count.
    let mut number = |thing: &str, what: &str| -> Option<u64> {
        let part = parts.next()?;
        let (n, rest) = part.split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        let noun = if n == 1 {
            thing.to_string()
        } else {
            format!("{thing}s")
        };
        (rest == format!("{noun} {what}")).then_some(n)
    };
    let summary = Summary {
        clients: number("client", "served")?,
        bytes_in: number("byte", "in")?,
        bytes_out: number("byte", "out")?,
    };
    parts.next().is_none().then_some(summary)
}

/// A running `iomux serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// The address it listens on (from its start-up line).
    pub addr: SocketAddr,
    /// The start-up line, without the newline.
    pub startup: String,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
}

impl Server {
    /// `iomux serve --bind 127.0.0.1:0 --backend BACKEND EXTRA...`.
    pub fn start(backend: &str, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--backend", backend];
        args.extend_from_slice(extra);
        Server::spawn(&args, &[])
    }

    /// `iomux ARGS` with `ENV`, which must start a server; waits for its
    /// start-up line (failing the test with its output if none comes).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn_command(iomux_command(args, env), args)
    }

    /// [`Server::start`] under an open-files limit of `limit` from the
    /// start (see [`iomux_command_with_fd_limit`]); `None` without
    /// `prlimit`.
    pub fn start_with_fd_limit(backend: &str, extra: &[&str], limit: u64) -> Option<Server> {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--backend", backend];
        args.extend_from_slice(extra);
        let cmd = iomux_command_with_fd_limit(&args, limit)?;
        Some(Server::spawn_command(cmd, &args))
    }

    fn spawn_command(mut cmd: Command, args: &[&str]) -> Server {
        let mut child = cmd.spawn().expect("spawn the iomux binary");
        let stdout = Captured::drain(child.stdout.take().unwrap());
        let stderr = Captured::drain(child.stderr.take().unwrap());
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            startup: String::new(),
            stdout,
            stderr,
        };
        let started = server.stdout.wait_until(LIVENESS, |t| t.contains('\n'));
        assert!(
            started,
            "iomux {args:?} printed no start-up line\nstdout:\n{}\nstderr:\n{}",
            server.stdout_text(),
            server.stderr_text()
        );
        let text = server.stdout_text();
        let line = text.lines().next().unwrap_or_default().to_string();
        let listening = line
            .strip_prefix("iomux: listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default();
        // A Unix-domain server has no TCP address (`addr` stays 0.0.0.0:0).
        let addr = match listening.parse() {
            Ok(addr) => Some(addr),
            Err(_) if listening.starts_with("unix:") => Some(server.addr),
            Err(_) => None,
        };
        let Some(addr) = addr else {
            panic!("unexpected start-up line {line:?}");
        };
        assert!(
            line.ends_with(')') && line.contains(" (backend ") && line.contains(", app "),
            "unexpected start-up line {line:?}"
        );
        server.addr = addr;
        server.startup = line;
        server
    }

    /// Fails the test, with what the server printed, if it has exited.
    pub fn assert_alive(&mut self, context: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the server died ({status}) {context}\nstderr:\n{}",
                self.stderr_text()
            );
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connected client with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        set_timeouts(&stream, IO_TIMEOUT);
        stream
    }

    /// Everything the server printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.text()
    }

    /// Everything the server printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stderr contains `needle`; false on timeout.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        self.stderr.wait_until(timeout, |t| t.contains(needle))
    }

    /// Waits until `done(stderr so far)` holds; false on timeout.
    pub fn wait_stderr_until(&self, timeout: Duration, done: impl FnMut(&str) -> bool) -> bool {
        self.stderr.wait_until(timeout, done)
    }

    /// Waits until stdout contains `needle`; false on timeout.
    pub fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> bool {
        self.stdout.wait_until(timeout, |t| t.contains(needle))
    }

    /// Fails the test unless a stdout line equal to `line` shows up.
    pub fn expect_stdout_line(&self, line: &str) {
        let found = self
            .stdout
            .wait_until(LIVENESS, |t| t.lines().any(|l| l == line));
        assert!(
            found,
            "no stdout line {line:?}; stdout:\n{}",
            self.stdout_text()
        );
    }

    /// Fails the test unless a stderr line ends in `connect ADDR` (and is
    /// not a `disconnect` line).
    pub fn expect_connect_logged(&self, addr: SocketAddr) {
        let suffix = format!("connect {addr}");
        let found = self.stderr.wait_until(LIVENESS, |t| {
            t.lines().any(|l| {
                l.strip_suffix(&suffix)
                    .is_some_and(|head| !head.ends_with("dis"))
            })
        });
        assert!(
            found,
            "no line ending in {suffix:?}; stderr:\n{}",
            self.stderr_text()
        );
    }

    /// Fails the test unless a stderr line ends in `disconnect ADDR`.
    pub fn expect_disconnect_logged(&self, addr: SocketAddr) {
        let suffix = format!("disconnect {addr}");
        let found = self
            .stderr
            .wait_until(LIVENESS, |t| t.lines().any(|l| l.ends_with(&suffix)));
        assert!(
            found,
            "no line ending in {suffix:?}; stderr:\n{}",
            self.stderr_text()
        );
    }

    /// Sends a signal (`rustix::process::Signal`) to the server.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a real pid");
        rustix::process::kill_process(pid, signal).expect("signal the server");
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(rustix::process::Signal::INT);
    }

    /// Waits for the server to exit (failing the test after `timeout`) and
    /// for its output pipes to close.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = wait_child(&mut self.child, timeout);
        let Some(status) = status else {
            panic!(
                "the server did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout_text(),
                self.stderr_text()
            );
        };
        self.stdout.wait_closed(LIVENESS);
        self.stderr.wait_closed(LIVENESS);
        status
    }

    /// SIGTERM, then checks the graceful end: exit status 0, no panic, and
    /// a well-formed shutdown line as the last line of stdout. Returns its
    /// counters.
    pub fn stop(&mut self) -> Summary {
        self.sigterm();
        self.expect_clean_exit()
    }

    /// Checks the end after a signal was sent; see [`Server::stop`].
    pub fn expect_clean_exit(&mut self) -> Summary {
        let status = self.wait_exit(LIVENESS);
        let (stdout, stderr) = (self.stdout_text(), self.stderr_text());
        assert_no_panic(&stdout, &stderr);
        assert!(
            status.success(),
            "the server exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let last = stdout.lines().last().unwrap_or_default();
        parse_summary(last).unwrap_or_else(|| {
            panic!("the last stdout line is not the shutdown line: {last:?}\nstderr:\n{stderr}")
        })
    }

    /// The server's open file descriptors (from /proc/PID/fd).
    pub fn open_fds(&self) -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/PID/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a VmRSS line")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every key path of a JSON document's objects (`errors.timeouts`),
/// arrays' contents left out.
pub fn json_key_paths(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        if let Some(map) = v.as_object() {
            for (k, v) in map {
                let path = format!("{prefix}{k}");
                walk(v, &format!("{path}."), out);
                out.insert(path);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// Asserts every document of `docs` (each with the arguments that made it)
/// has the first one's key paths, no more and no fewer.
pub fn assert_one_schema<A: std::fmt::Debug>(docs: &[(A, serde_json::Value)]) {
    let (first_args, first) = &docs[0];
    let reference = json_key_paths(first);
    for (args, j) in &docs[1..] {
        let keys = json_key_paths(j);
        let missing: Vec<_> = reference.difference(&keys).collect();
        let extra: Vec<_> = keys.difference(&reference).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{args:?} against {first_args:?}: missing {missing:?}, extra {extra:?}\n{j}"
        );
    }
}
