//! The servers `iomux compare` measures, as child processes: this
//! binary's `serve` on one backend, or a peer's own command. Each is
//! started fresh for a run, waited for until it accepts, and stopped after.

use iomux::Backend;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server to compare.
pub enum Target {
    /// `iomux serve` on a backend with this many loops; `labelled`: the
    /// loop count is part of the label.
    Backend {
        backend: Backend,
        loops: u64,
        labelled: bool,
    },
    /// Another echo server: its label, and its command with `{port}`.
    Peer(String, String),
}

impl Target {
    /// Its name in the report.
    pub fn label(&self) -> String {
        match self {
            Target::Backend {
                backend,
                loops,
                labelled,
            } => {
                let name = backend.resolve().name();
                if *labelled {
                    format!("{name}/t{loops}")
                } else {
                    name.to_string()
                }
            }
            Target::Peer(label, _) => label.clone(),
        }
    }
}

/// A server child process; killed if still running when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Kept open so the server's last line does not meet a closed pipe.
    _stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Server {
    /// Starts the server, able to hold `clients` connections, and waits
    /// (at most `timeout`) until it accepts a connection.
    pub fn start(target: &Target, clients: usize, timeout: Duration) -> Result<Server, String> {
        match target {
            Target::Backend {
                backend: b, loops, ..
            } => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut child = Command::new(exe)
                    .args(["serve", "--app", "echo", "-q", "--bind", "127.0.0.1:0"])
                    .args(["--backend", b.name()])
                    .args(["--threads", &loops.to_string()])
                    .args(["--max-clients", &(clients + 100).to_string()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("cannot start iomux serve: {e}"))?;
                let stdout = child.stdout.take().ok_or("no stdout")?;
                let mut line = String::new();
                let mut stdout = BufReader::new(stdout);
                // Its start-up line says where it listens: it is ready.
                let _ = stdout.read_line(&mut line);
                let addr = line
                    .split_whitespace()
                    .nth(3)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| {
                        format!("iomux serve --backend {b} did not start: '{}'", line.trim())
                    })?;
                Ok(Server {
                    child,
                    addr,
                    _stdout: Some(stdout),
                })
            }
            Target::Peer(label, command) => {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| e.to_string())?
                    .port();
                let command = command.replace("{port}", &port.to_string());
                // `exec` so the measured PID is the server, not the shell.
                let child = Command::new("sh")
                    .args(["-c", &format!("exec {command}")])
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start peer {label}: {e}"))?;
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                let mut server = Server {
                    child,
                    addr,
                    _stdout: None,
                };
                server.wait_ready(&format!("peer {label} (`{command}`)"), timeout)?;
                Ok(server)
            }
        }
    }

    /// Waits until the server accepts a connection, it exits, or `timeout`.
    fn wait_ready(&mut self, what: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{what} exited before it listened ({status})"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what} did not accept on {} within {} s (--start-timeout)",
                    self.addr,
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and up to 10 s for it to exit (then `Drop` kills it).
    pub fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
