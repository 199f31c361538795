//! Stop signals, on every backend: the first starts the graceful shutdown
//! (the listener closes, owed output keeps flowing), a second ends its
//! grace period at once, and what was still owed is named in the close
//! reason.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, LIVENESS};
use iomux::{App, Backend, CloseReason, Config, ConnId, Ctx, EventLoop};
use rustix::process::{Signal, getpid, kill_process};

backend_suite! {
    a_second_stop_signal_ends_the_grace_period,
}

/// Signals go to the whole process: one test at a time sends them.
static SIGNALLING: Mutex<()> = Mutex::new(());

/// Far more than a socket holds: the client never reads it all.
const OWED: usize = 32 << 20;

/// Answers any input with `OWED` bytes; reports how the connection that
/// asked closed.
struct Flood {
    /// The connection that asked (the test's probes never do).
    asked: Option<ConnId>,
    closed: mpsc::Sender<String>,
    unsent: mpsc::Sender<usize>,
}

impl App for Flood {
    type State = ();
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.asked = Some(conn);
        let _ = ctx.send(conn, &vec![b'x'; OWED]);
        input.len()
    }
    fn on_close(&mut self, _: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        if self.asked != Some(conn) {
            return;
        }
        if let CloseReason::ShutdownCut { unsent } = reason {
            let _ = self.unsent.send(*unsent);
        }
        let _ = self.closed.send(format!("{reason:?}"));
    }
}

fn signal_self() {
    kill_process(getpid(), Signal::USR2).expect("signal this process");
}

/// Polls until `done` or the deadline; false on timeout.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LIVENESS;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

fn a_second_stop_signal_ends_the_grace_period(backend: &str) {
    let _one = SIGNALLING.lock().unwrap_or_else(|e| e.into_inner());
    let backend: Backend = backend.parse().expect("a backend");
    // A grace period far longer than the test waits: only the second
    // signal can end the shutdown in time.
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(600);
    config.max_output = 2 * OWED;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("an address");
    let (closed_tx, closed) = mpsc::channel();
    let (unsent_tx, unsent) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let runner = thread::spawn(move || {
        let mut lp = EventLoop::new(backend, config).expect("a loop");
        lp.listen(listener).expect("listen");
        lp.stop_on_signals(&[Signal::USR2.as_raw()])
            .expect("catch SIGUSR2");
        ready_tx.send(()).expect("the test waits");
        let mut app = Flood {
            asked: None,
            closed: closed_tx,
            unsent: unsent_tx,
        };
        lp.run(&mut app)
    });
    ready.recv_timeout(LIVENESS).expect("the loop starts");
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    client.write_all(b"go\n").expect("ask");
    let mut first = [0u8; 1];
    client.read_exact(&mut first).expect("the output starts");

    signal_self();
    // The graceful shutdown began: the listener is closed...
    assert!(
        wait_until(|| TcpStream::connect(addr).is_err()),
        "the first signal did not start the shutdown"
    );
    // ... and the owed connection is kept: it still gets bytes.
    let mut more = [0u8; 4096];
    assert!(client.read(&mut more).expect("still served") > 0);
    assert!(closed.try_recv().is_err(), "closed before the grace period");

    signal_self();
    let why = closed
        .recv_timeout(LIVENESS)
        .expect("the second signal closes the connection at once");
    let left = unsent
        .try_recv()
        .unwrap_or_else(|_| panic!("closed as {why}, not cut"));
    assert!(left > 0 && left < OWED, "{left} bytes unsent");
    let result = runner.join().expect("the loop thread");
    result.expect("the loop ends cleanly");
}
