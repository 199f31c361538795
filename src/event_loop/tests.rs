//! Loop internals driven by hand, on every backend.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::*;
use crate::ctx::Ctx;
use crate::reason::CloseReason;

/// Records which connections got data.
#[derive(Default)]
struct Recorder {
    data: Vec<(ConnId, Vec<u8>)>,
    closed: Vec<ConnId>,
}

impl App for Recorder {
    type State = ();
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn on_data(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.data.push((conn, input.to_vec()));
        input.len()
    }
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _: (), _reason: &CloseReason) {
        self.closed.push(conn);
    }
}

fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

/// Waits until the server side of a socket has `n` bytes to read.
fn wait_readable(stream: &impl std::os::fd::AsFd, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rustix::io::ioctl_fionread(stream).unwrap_or(0) < n as u64 {
        assert!(std::time::Instant::now() < deadline, "data never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Trap 4: a handler closes connection N, the next accept reuses its slot
/// (and fd number), and an event for the old N is still queued in the same
/// batch. The generation in the token must stop it.
fn stale_event_never_reaches_the_new_connection(backend: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = EventLoop::new(backend, Config::default()).unwrap();
    let mut app = Recorder::default();
    let (old_server, _old_client) = pair(&listener);
    let old = lp.adopt(old_server).unwrap();
    lp.shared.schedule_close(old, CloseReason::App);
    lp.reap(&mut app);
    assert_eq!(app.closed, vec![old]);
    let (new_server, mut new_client) = pair(&listener);
    let new = lp.adopt(new_server).unwrap();
    assert_eq!(new.index(), old.index(), "the slot is reused");
    assert_ne!(new, old);
    new_client.write_all(b"for the new one").unwrap();
    wait_readable(&lp.shared.conns[new.index()].stream, 15);
    lp.dispatch(
        &mut app,
        Event::new(Token(old.0), Ready::READABLE | Ready::WRITABLE),
    );
    assert!(
        app.data.is_empty(),
        "a stale event delivered data: {:?}",
        app.data
    );
    lp.dispatch(&mut app, Event::new(Token(new.0), Ready::READABLE));
    assert_eq!(app.data, vec![(new, b"for the new one".to_vec())]);
}

/// The completion driver's twin of the trap above: the old connection's
/// receive is still armed (and its peer's bytes arrive) when it closes and a
/// new connection takes its slot and fd number. Its completions belong to
/// an operation of the old one and must never reach the new one.
#[test]
fn stale_completions_never_reach_the_new_connection() {
    if crate::backend::skip_unavailable(Backend::Uring, "stale_completions_never_reach") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = EventLoop::new(Backend::Uring, Config::default()).unwrap();
    let mut app = Recorder::default();
    let (old_server, mut old_client) = pair(&listener);
    let old = lp.adopt(old_server).unwrap();
    lp.run_once(&mut app, Some(Duration::ZERO)).unwrap(); // arms its receive
    old_client.write_all(b"stale").unwrap();
    lp.shared.schedule_close(old, CloseReason::App);
    lp.reap(&mut app);
    assert_eq!(app.closed, vec![old]);
    let (new_server, mut new_client) = pair(&listener);
    let new = lp.adopt(new_server).unwrap();
    assert_eq!(new.index(), old.index(), "the slot is reused");
    new_client.write_all(b"fresh").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.data.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no data for the new one"
        );
        lp.run_once(&mut app, Some(Duration::from_millis(10)))
            .unwrap();
    }
    assert_eq!(app.data, vec![(new, b"fresh".to_vec())]);
    // The old socket closes once its cancelled receive is over.
    let mut buf = [0u8; 8];
    old_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loop {
        match old_client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        lp.run_once(&mut app, Some(Duration::from_millis(10)))
            .unwrap();
    }
}

#[test]
fn stale_events_are_dropped_on_every_backend() {
    // Readiness events; the completion driver's twin is the test above.
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_completion()) {
        if crate::backend::skip_unavailable(backend, "stale_event_never_reaches_the_new_connection")
        {
            continue;
        }
        stale_event_never_reaches_the_new_connection(backend);
    }
}

/// Replies once, then closes after the reply is written.
struct ReplyAndClose;

impl App for ReplyAndClose {
    type State = ();
    fn name(&self) -> &'static str {
        "reply-and-close"
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let _ = ctx.send(conn, b"bye\n");
        ctx.close_after_flush(conn);
        input.len()
    }
}

/// A loop with one connection whose `hello` was read: `ReplyAndClose` has
/// queued its reply and asked to close after it.
fn said_hello(backend: Backend) -> (EventLoop, ConnId, TcpStream, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = EventLoop::new(backend, Config::default()).unwrap();
    let (server, mut client) = pair(&listener);
    let id = lp.adopt(server).unwrap();
    client.write_all(b"hello\n").unwrap();
    wait_readable(&lp.shared.conns[id.index()].stream, 6);
    lp.dispatch(&mut ReplyAndClose, Event::new(Token(id.0), Ready::READABLE));
    (lp, id, client, listener)
}

fn close_after_flush_sends_then_closes(backend: Backend) {
    let (mut lp, _id, mut client, _listener) = said_hello(backend);
    lp.before_sleep(&mut ReplyAndClose);
    assert!(lp.shared.conns.is_empty(), "closed once flushed");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye\n");
}

// These two drive a readiness backend's steps by hand (an event, then the
// flush); on the completion driver a send completes in a later turn. The
// behaviours are in the suites that run on every backend (tests/contract.rs:
// `close_after_flush_*`, `a_last_reply_survives_unread_input`).
#[test]
fn close_after_flush_on_every_backend() {
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_completion()) {
        if crate::backend::skip_unavailable(backend, "close_after_flush_sends_then_closes") {
            continue;
        }
        close_after_flush_sends_then_closes(backend);
    }
}

/// A lingering close (unread input at close time) waits for the peer to
/// close, but not for ever: the grace period ends it.
fn lingering_close_gives_up(backend: Backend) {
    let (mut lp, id, mut client, _listener) = said_hello(backend);
    let mut app = ReplyAndClose;
    client.write_all(b"more, never read").unwrap();
    wait_readable(&lp.shared.conns[id.index()].stream, 16);
    lp.before_sleep(&mut app);
    assert!(
        lp.shared
            .conns
            .get(id.index())
            .is_some_and(|c| c.phase == crate::conn::Phase::Lingering),
        "unread input: the connection lingers instead of resetting"
    );
    lp.shared.now += lp.shared.config.shutdown_grace + Duration::from_secs(1);
    lp.fire_timers(&mut app);
    assert!(lp.shared.conns.is_empty(), "the linger gave up");
}

#[test]
fn lingering_close_gives_up_on_every_backend() {
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_completion()) {
        if crate::backend::skip_unavailable(backend, "lingering_close_gives_up") {
            continue;
        }
        lingering_close_gives_up(backend);
    }
}

#[test]
fn an_invalid_config_is_refused_up_front() {
    let config = Config {
        max_jobs_per_conn: 0,
        ..Config::default()
    };
    let e = EventLoop::<()>::new(Backend::Poll, config).expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// The completion driver with only two provided buffers and many clients
/// sending at once: receives run out of buffers (`ENOBUFS` ends them) and
/// are armed again when buffers are back; every byte still comes back, in
/// order, to the client that sent it.
#[test]
fn receives_out_of_provided_buffers_are_armed_again() {
    if crate::backend::skip_unavailable(Backend::Uring, "receives_out_of_provided_buffers") {
        return;
    }
    const CLIENTS: usize = 24;
    const BYTES: usize = 64 * 1024;
    let config = Config {
        uring_buffers: 2,
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lp = EventLoop::new(Backend::Uring, config).unwrap();
    let mut app = Echo;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (server, client) = pair(&listener);
        lp.adopt(server).unwrap();
        client.set_nonblocking(true).unwrap();
        let data: Vec<u8> = (0..BYTES).map(|j| (i * 7 + j) as u8).collect();
        clients.push((client, data, 0usize, Vec::new()));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while clients
        .iter()
        .any(|(_, data, _, got)| got.len() < data.len())
    {
        assert!(std::time::Instant::now() < deadline, "the echo stalled");
        for (client, data, sent, got) in &mut clients {
            if *sent < data.len()
                && let Ok(n) = client.write(&data[*sent..])
            {
                *sent += n;
            }
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        lp.run_once(&mut app, Some(Duration::from_millis(1)))
            .unwrap();
    }
    for (i, (_, data, _, got)) in clients.iter().enumerate() {
        assert!(got == data, "client {i} got other bytes back");
    }
}

/// A loop that stops with no connection stops listening at once, even
/// while the loop value lives on (on the completion driver the armed
/// accept holds the socket until its cancel reaches the kernel).
#[test]
fn a_stopped_loop_no_longer_listens_on_every_backend() {
    for backend in Backend::ALL {
        if crate::backend::skip_unavailable(backend, "a_stopped_loop_no_longer_listens") {
            continue;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut lp: EventLoop<()> = EventLoop::new(backend, Config::default()).unwrap();
        lp.listen(listener).unwrap();
        let mut app = Echo;
        lp.run_once(&mut app, Some(Duration::ZERO)).unwrap();
        lp.stop_handle().stop();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lp
            .run_once(&mut app, Some(Duration::from_millis(10)))
            .unwrap()
            == Status::Running
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: never stopped"
            );
        }
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{backend}: still listening after the stop: {refused:?}"
        );
        drop(lp);
    }
}

/// Sends back what it gets.
struct Echo;

impl crate::App for Echo {
    type State = ();
    fn name(&self) -> &'static str {
        "echo"
    }
    fn on_data(
        &mut self,
        ctx: &mut crate::Ctx<'_>,
        conn: crate::ConnId,
        _: &mut (),
        input: &[u8],
    ) -> usize {
        let _ = ctx.send(conn, input);
        input.len()
    }
}
