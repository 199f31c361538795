//! Selector unit tests, run once per backend (see `for_each_backend`).
//! (One file of over 800 lines: the whole selector contract, case by case,
//! which every backend must meet.)
//!
//! Every behaviour is a plain function taking a [`Backend`]; the macro at
//! the bottom turns each into one `#[test]` per backend, so a failure names
//! both the behaviour and the backend (`selector::tests::epoll_et::...`).
//!
//! Negative checks ("nothing is reported") use a short timeout: the fds
//! here are pipes and Unix sockets, whose readiness changes synchronously
//! with the write that causes it. TCP readiness may lag (loopback delivery
//! can be deferred), so TCP checks only wait *for* an event, with a long
//! deadline that a passing test never reaches.

use super::*;
use crate::backend::{Backend, UnknownBackend};
use rustix::pipe::{PipeFlags, pipe_with};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Long enough for any event that is due; only a failing test waits it out.
const DEADLINE: Duration = Duration::from_secs(5);
/// Long enough to see an event that would be (wrongly) reported.
const QUIET_MS: u64 = 20;

fn open(backend: Backend) -> Box<dyn Selector> {
    backend.open().expect("open the selector")
}

/// A non-blocking pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).expect("pipe")
}

fn put(fd: &OwnedFd, data: &[u8]) {
    assert_eq!(rustix::io::write(fd, data).expect("write"), data.len());
}

/// Reads everything a non-blocking fd holds; returns the byte count.
fn drain(fd: &OwnedFd) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(rustix::io::Errno::AGAIN) => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// One wait of `ms` milliseconds; the events it returned.
fn wait(sel: &mut dyn Selector, ms: u64) -> Vec<Event> {
    let mut events = Events::with_capacity(64);
    sel.select(&mut events, Some(Duration::from_millis(ms)))
        .expect("select");
    events.iter().copied().collect()
}

/// Waits until an event for `token` comes; panics after [`DEADLINE`].
fn wait_for(sel: &mut dyn Selector, token: Token) -> Event {
    let start = Instant::now();
    let mut events = Events::with_capacity(64);
    while start.elapsed() < DEADLINE {
        sel.select(&mut events, Some(DEADLINE)).expect("select");
        if let Some(ev) = events.iter().find(|e| e.token == token) {
            return *ev;
        }
    }
    panic!("no event for {token:?} within {DEADLINE:?}");
}

/// The single event of `events`, which must be for `token`.
fn only(events: &[Event], token: Token) -> Event {
    assert_eq!(
        events.len(),
        1,
        "expected one event for {token:?}: {events:?}"
    );
    assert_eq!(events[0].token, token, "{events:?}");
    events[0]
}

/// The kernel said "readable" itself, not only error or hang-up (which
/// [`Event::is_readable`] also counts).
fn raw_readable(ev: &Event) -> bool {
    ev.ready().contains(Ready::READABLE)
}
fn raw_writable(ev: &Event) -> bool {
    ev.ready().contains(Ready::WRITABLE)
}

/// A connected TCP pair on loopback: (client, server side).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    server.set_nonblocking(true).unwrap();
    (client, server)
}

// ---- the suite ------------------------------------------------------------

fn name_and_mode(backend: Backend) {
    let sel = open(backend);
    assert_eq!(sel.name(), backend.name());
    assert_eq!(sel.edge_triggered(), backend == Backend::EpollEt);
    assert!(Backend::ALL.contains(&backend));
    assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
}

fn readable_pipe(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(7), Interest::READABLE)
        .unwrap();
    assert!(wait(&mut *sel, 0).is_empty(), "empty pipe is not readable");
    put(&w, b"x");
    let ev = only(&wait(&mut *sel, 1000), Token(7));
    assert!(raw_readable(&ev) && ev.is_readable());
    assert!(!ev.is_writable() && !ev.is_error() && !ev.is_hup());
}

fn writable_pipe(backend: Backend) {
    let mut sel = open(backend);
    let (_r, w) = pipe();
    sel.register(w.as_fd(), Token(3), Interest::WRITABLE)
        .unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(3));
    assert!(raw_writable(&ev) && ev.is_writable());
    assert!(!ev.is_readable(), "write end asked for writability only");
}

fn unix_pair_readiness(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.register(a.as_fd(), Token(1), Interest::BOTH).unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(ev.is_writable() && !ev.is_readable(), "{ev:?}");
    b.write_all(b"hello").unwrap();
    if backend == Backend::EpollEt {
        let ev = only(&wait(&mut *sel, 1000), Token(1));
        assert!(raw_readable(&ev), "{ev:?}");
    } else {
        let ev = only(&wait(&mut *sel, 1000), Token(1));
        assert!(raw_readable(&ev) && raw_writable(&ev), "{ev:?}");
    }
}

fn tcp_pair_readiness(backend: Backend) {
    let mut sel = open(backend);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    sel.register(listener.as_fd(), Token(100), Interest::READABLE)
        .unwrap();
    assert!(wait(&mut *sel, 0).is_empty(), "no connection yet");
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert!(wait_for(&mut *sel, Token(100)).is_readable());
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    sel.register(server.as_fd(), Token(200), Interest::READABLE)
        .unwrap();
    client.write_all(b"ping").unwrap();
    let ev = wait_for(&mut *sel, Token(200));
    assert!(raw_readable(&ev) && !ev.is_writable(), "{ev:?}");
    let mut buf = [0u8; 16];
    assert_eq!((&server).read(&mut buf).unwrap(), 4);
}

fn write_interest_filters_readable(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"unread data").unwrap();
    sel.register(a.as_fd(), Token(5), Interest::WRITABLE)
        .unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(5));
    assert!(raw_writable(&ev), "{ev:?}");
    assert!(!raw_readable(&ev), "readability was not asked for: {ev:?}");
    assert!(!ev.is_readable(), "no error or hang-up either: {ev:?}");
}

fn read_interest_filters_writable(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.register(a.as_fd(), Token(5), Interest::READABLE)
        .unwrap();
    assert!(
        wait(&mut *sel, QUIET_MS).is_empty(),
        "writable but only readability was asked for"
    );
    b.write_all(b"x").unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(5));
    assert!(raw_readable(&ev) && !ev.is_writable(), "{ev:?}");
}

fn reregister_changes_interest_and_token(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"data").unwrap();
    sel.register(a.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(raw_readable(&ev) && !ev.is_writable());

    sel.reregister(a.as_fd(), Token(2), Interest::WRITABLE)
        .unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(2));
    assert!(raw_writable(&ev) && !ev.is_readable(), "{ev:?}");

    sel.reregister(a.as_fd(), Token(3), Interest::BOTH).unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(3));
    assert!(raw_readable(&ev) && raw_writable(&ev), "{ev:?}");

    sel.reregister(a.as_fd(), Token(4), Interest::NONE).unwrap();
    assert!(
        wait(&mut *sel, QUIET_MS).is_empty(),
        "nothing asked for, no error: no event"
    );

    sel.reregister(a.as_fd(), Token(5), Interest::READABLE)
        .unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(5));
    assert!(raw_readable(&ev) && !ev.is_writable());
}

fn deregister_stops_events(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    let (r2, w2) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    sel.register(r2.as_fd(), Token(2), Interest::READABLE)
        .unwrap();
    put(&w, b"x");
    put(&w2, b"y");
    assert_eq!(wait(&mut *sel, 1000).len(), 2);
    sel.deregister(r.as_fd()).unwrap();
    // New data for both (so an edge-triggered backend has a new edge too).
    put(&w, b"x");
    put(&w2, b"y");
    only(&wait(&mut *sel, 1000), Token(2));
    sel.deregister(r2.as_fd()).unwrap();
    assert!(wait(&mut *sel, QUIET_MS).is_empty());
    // A deregistered fd can be registered again, with a new token.
    sel.register(r.as_fd(), Token(9), Interest::READABLE)
        .unwrap();
    only(&wait(&mut *sel, 1000), Token(9));
}

fn reused_fd_number_gets_the_new_token(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    let old = r.as_raw_fd();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    put(&w, b"x");
    sel.deregister(r.as_fd()).unwrap();
    drop((r, w));
    // The number is usually reused at once; either way only the new
    // registration may be reported.
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(2), Interest::READABLE)
        .unwrap();
    assert!(wait(&mut *sel, QUIET_MS).is_empty(), "fd {old} was reused");
    put(&w, b"y");
    only(&wait(&mut *sel, 1000), Token(2));
}

/// A wait that filled `events` may leave readiness behind (uring-poll keeps
/// the completions in its ring): deregistering the fd, closing it and
/// reusing its number must not let the old readiness through, under either
/// token.
fn deregister_drops_readiness_left_from_a_full_wait(backend: Backend) {
    let mut sel = open(backend);
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    sel.register(r1.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    sel.register(r2.as_fd(), Token(2), Interest::READABLE)
        .unwrap();
    put(&w1, b"x");
    put(&w2, b"y");
    let mut events = Events::with_capacity(1);
    sel.wait_once(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    let first = only(
        &events.iter().copied().collect::<Vec<_>>(),
        events.list[0].token,
    );
    // The other one is still ready (or its completion is still queued).
    let (other_r, other_w, other_token) = if first.token == Token(1) {
        (r2, w2, Token(2))
    } else {
        (r1, w1, Token(1))
    };
    let number = other_r.as_raw_fd();
    sel.deregister(other_r.as_fd()).unwrap();
    drop((other_r, other_w));
    let (r3, w3) = pipe();
    sel.register(r3.as_fd(), Token(3), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    for _ in 0..3 {
        events.clear();
        sel.wait_once(&mut events, Some(Duration::from_millis(QUIET_MS)))
            .unwrap();
        assert!(
            events.iter().all(|e| e.token == first.token),
            "fd {number} (reused: {}) reported stale readiness: {:?}",
            r3.as_raw_fd() == number,
            events.iter().collect::<Vec<_>>()
        );
        assert!(events.iter().all(|e| e.token != other_token));
    }
    put(&w3, b"z");
    let ev = wait_for(&mut *sel, Token(3));
    assert!(raw_readable(&ev), "{ev:?}");
}

/// The peer shut its write side: a registration that does not ask for
/// reading hears nothing of it (uring-poll's polls always carry
/// `POLLRDHUP`, which must neither be reported nor make a wait return at
/// once), and writability is still reported.
fn half_closed_peer_without_read_interest(backend: Backend) {
    let mut sel = open(backend);
    let (client, server) = tcp_pair();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    sel.register(server.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    assert!(wait_for(&mut *sel, Token(1)).is_readable());
    assert_eq!((&server).read(&mut [0u8; 8]).unwrap(), 0);
    sel.reregister(server.as_fd(), Token(2), Interest::NONE)
        .unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        assert!(wait(&mut *sel, QUIET_MS).is_empty());
        assert!(
            start.elapsed() >= Duration::from_millis(QUIET_MS),
            "the wait returned early: nothing asked for is ready"
        );
    }
    sel.reregister(server.as_fd(), Token(3), Interest::WRITABLE)
        .unwrap();
    let ev = wait_for(&mut *sel, Token(3));
    assert!(raw_writable(&ev) && !raw_readable(&ev), "{ev:?}");
    if !sel.edge_triggered() {
        let ev = only(&wait(&mut *sel, 1000), Token(3));
        assert!(raw_writable(&ev), "level-triggered: again: {ev:?}");
    }
    // Still told when the peer goes away entirely.
    drop(client);
    (&server).write_all(b"to a closed peer").unwrap();
    let start = Instant::now();
    loop {
        let events = wait(&mut *sel, 100);
        if events.iter().any(|e| e.is_error() || e.is_hup()) || backend == Backend::Select {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no error or hang-up: {events:?}"
        );
    }
}

fn register_twice_is_already_exists(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    let err = sel
        .register(r.as_fd(), Token(2), Interest::WRITABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    // The first registration is untouched.
    put(&w, b"x");
    only(&wait(&mut *sel, 1000), Token(1));
}

fn unregistered_fd_is_not_found(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    let err = sel.deregister(r.as_fd()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let err = sel
        .reregister(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // Deregistering twice: the second time it is unknown again.
    sel.register(w.as_fd(), Token(1), Interest::WRITABLE)
        .unwrap();
    sel.deregister(w.as_fd()).unwrap();
    let err = sel.deregister(w.as_fd()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    // A high fd number the tables never saw.
    let high = rustix::io::fcntl_dupfd_cloexec(&r, 900).unwrap();
    let err = sel.deregister(high.as_fd()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

fn timeout_waits_at_least_the_timeout(backend: Backend) {
    let mut sel = open(backend);
    let mut events = Events::with_capacity(8);
    let start = Instant::now();
    sel.select(&mut events, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(events.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "nothing registered"
    );

    let (r, _w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    let start = Instant::now();
    sel.select(&mut events, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(events.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(50), "idle pipe");

    // Sub-millisecond timeouts are kept (or rounded up), never rounded
    // down to a busy poll.
    let start = Instant::now();
    sel.select(&mut events, Some(Duration::from_micros(300)))
        .unwrap();
    assert!(events.is_empty());
    assert!(start.elapsed() >= Duration::from_micros(300));
}

/// A wait of 200 µs is not stretched to a whole millisecond (where the
/// kernel takes nanoseconds): of waits tried for up to 5 s, 20 must end
/// within 800 µs of asking (each lasts at least 200 µs). On a loaded
/// machine many wake up late; with millisecond rounding none could end
/// before 1 ms.
fn a_sub_millisecond_wait_is_not_rounded_up_to_a_millisecond(backend: Backend) {
    let mut sel = open(backend);
    let (r, _w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let asked = Duration::from_micros(200);
    let deadline = Instant::now() + DEADLINE;
    let (mut tries, mut prompt) = (0, 0);
    while Instant::now() < deadline && prompt < 20 {
        let start = Instant::now();
        sel.select(&mut events, Some(asked)).unwrap();
        let took = start.elapsed();
        assert!(events.is_empty());
        assert!(took >= asked, "a wait of {asked:?} ended after {took:?}");
        if !sel.sub_millisecond_timeouts() {
            // epoll without epoll_pwait2: rounded up, as it says.
            assert!(took >= Duration::from_millis(1), "{took:?}");
            return;
        }
        tries += 1;
        if took < Duration::from_micros(800) {
            prompt += 1;
        }
    }
    assert!(
        prompt >= 20,
        "of {tries} waits of {asked:?}, {prompt} ended within 800 µs"
    );
}

fn ready_fd_ends_the_wait_early(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        put(&w, b"x");
        w
    });
    let mut events = Events::with_capacity(8);
    // Forever: only the write can end this wait.
    sel.select(&mut events, None).unwrap();
    only(&events.iter().copied().collect::<Vec<_>>(), Token(1));
    drop(writer.join().unwrap());
}

fn level_or_edge_triggered(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    put(&w, b"first");
    only(&wait(&mut *sel, 1000), Token(1));
    if sel.edge_triggered() {
        // Reported once per new data, not again while it stays unread...
        assert!(wait(&mut *sel, QUIET_MS).is_empty(), "edge reported twice");
        // ...and again when more arrives.
        put(&w, b"second");
        only(&wait(&mut *sel, 1000), Token(1));
        assert!(wait(&mut *sel, QUIET_MS).is_empty());
    } else {
        // Reported on every wait while unread.
        for _ in 0..3 {
            only(&wait(&mut *sel, 0), Token(1));
        }
        put(&w, b"second");
        only(&wait(&mut *sel, 0), Token(1));
    }
    assert_eq!(drain(&r), 11);
    assert!(wait(&mut *sel, QUIET_MS).is_empty(), "drained");
}

/// Writability comes back when the peer frees buffer space.
fn writable_again_after_peer_reads(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let chunk = [0u8; 4096];
    let mut filled = 0usize;
    loop {
        match (&a).write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(filled > 0);
    sel.register(a.as_fd(), Token(1), Interest::WRITABLE)
        .unwrap();
    assert!(wait(&mut *sel, QUIET_MS).is_empty(), "send buffer is full");
    let mut buf = vec![0u8; filled];
    b.read_exact(&mut buf).unwrap();
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(raw_writable(&ev) && !ev.is_readable(), "{ev:?}");
}

fn hangup_of_pipe(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    drop(w);
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(ev.is_readable(), "{ev:?}");
    if backend != Backend::Select {
        // select has no hang-up set: it shows as plain readability.
        assert!(ev.is_hup(), "{ev:?}");
    }
    assert_eq!(
        rustix::io::read(&r, &mut [0u8; 8]).unwrap(),
        0,
        "end of file"
    );
}

fn hangup_of_unix_socket(backend: Backend) {
    let mut sel = open(backend);
    let (a, mut b) = UnixStream::pair().unwrap();
    sel.register(a.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    b.write_all(b"last words").unwrap();
    drop(b);
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(ev.is_readable(), "{ev:?}");
    if backend != Backend::Select {
        assert!(ev.is_read_closed(), "{ev:?}");
    }
    let mut got = Vec::new();
    (&a).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");
}

fn tcp_peer_shutdown_is_readable(backend: Backend) {
    let mut sel = open(backend);
    let (client, server) = tcp_pair();
    sel.register(server.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let ev = wait_for(&mut *sel, Token(1));
    assert!(ev.is_readable(), "{ev:?}");
    if matches!(
        backend,
        Backend::Epoll | Backend::EpollEt | Backend::UringPoll
    ) {
        // EPOLLRDHUP / POLLRDHUP: the end of stream is queued.
        assert!(ev.is_read_closed(), "{ev:?}");
    }
    assert_eq!((&server).read(&mut [0u8; 8]).unwrap(), 0);
}

/// `Interest::NONE` still hears of a hang-up where the kernel reports it
/// unasked (poll, epoll); select has no set to ask it in.
fn hangup_without_interest(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(r.as_fd(), Token(1), Interest::NONE).unwrap();
    put(&w, b"data");
    assert!(
        wait(&mut *sel, QUIET_MS).is_empty(),
        "data was not asked for"
    );
    drop(w);
    let events = wait(&mut *sel, QUIET_MS);
    if backend == Backend::Select {
        assert!(events.is_empty(), "{events:?}");
    } else {
        let ev = only(&events, Token(1));
        assert!(
            ev.is_hup() && ev.is_readable() && ev.is_writable(),
            "{ev:?}"
        );
    }
}

fn error_when_pipe_reader_is_gone(backend: Backend) {
    let mut sel = open(backend);
    let (r, w) = pipe();
    sel.register(w.as_fd(), Token(1), Interest::WRITABLE)
        .unwrap();
    drop(r);
    let ev = only(&wait(&mut *sel, 1000), Token(1));
    assert!(ev.is_writable(), "{ev:?}");
    if backend != Backend::Select {
        assert!(ev.is_error(), "{ev:?}");
    }
    assert_eq!(
        rustix::io::write(&w, b"x").unwrap_err(),
        rustix::io::Errno::PIPE
    );
}

/// More ready fds than the buffer holds: the first wait fills it, the next
/// one has twice the room, and every fd is reported in the end.
fn events_buffer_grows(backend: Backend) {
    let mut sel = open(backend);
    let pipes: Vec<_> = (0..5).map(|_| pipe()).collect();
    for (i, (r, w)) in pipes.iter().enumerate() {
        sel.register(r.as_fd(), Token(i as u64), Interest::READABLE)
            .unwrap();
        put(w, b"x");
    }
    let mut events = Events::with_capacity(2);
    let mut seen = BTreeSet::new();
    sel.select(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events.capacity(), 2);
    seen.extend(events.iter().map(|e| e.token.0));
    sel.select(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(events.capacity(), 4, "a full wait doubles the buffer");
    // Level-triggered: all five still ready; edge: the three not yet told.
    let expected = if sel.edge_triggered() { 3 } else { 4 };
    assert_eq!(events.len(), expected);
    seen.extend(events.iter().map(|e| e.token.0));
    for _ in 0..3 {
        if seen.len() == pipes.len() {
            break;
        }
        sel.select(&mut events, Some(Duration::ZERO)).unwrap();
        seen.extend(events.iter().map(|e| e.token.0));
    }
    assert_eq!(seen, (0..5).collect::<BTreeSet<u64>>());
    assert!(events.capacity() <= 8, "grows only when full");
}

#[test]
fn events_buffer_basics() {
    let mut events = Events::with_capacity(0);
    assert_eq!(events.capacity(), 1, "never zero");
    assert!(events.push(Event::new(Token(1), Ready::READABLE)));
    assert!(events.is_full());
    assert!(!events.push(Event::new(Token(2), Ready::READABLE)));
    assert_eq!(events.len(), 1);
    events.grow_if_full();
    assert_eq!(events.capacity(), 2);
    events.clear();
    assert!(events.is_empty());
    events.grow_if_full();
    assert_eq!(events.capacity(), 2, "an empty buffer does not grow");
}

/// fds above FD_SETSIZE (1024), next to a low one: the right token comes
/// back, and select's sets shrink back when the high fd leaves.
fn fd_above_1024(backend: Backend) {
    crate::limits::raise_nofile_limit();
    let mut sel = open(backend);
    let (r, w) = pipe();
    let high = rustix::io::fcntl_dupfd_cloexec(&r, 1500).expect("dup above 1500");
    assert!(high.as_raw_fd() >= 1500);
    let (low_r, low_w) = pipe();
    sel.register(low_r.as_fd(), Token(1), Interest::READABLE)
        .unwrap();
    sel.register(high.as_fd(), Token(1500), Interest::READABLE)
        .unwrap();
    assert!(wait(&mut *sel, 0).is_empty());
    put(&w, b"x");
    let ev = only(&wait(&mut *sel, 1000), Token(1500));
    assert!(raw_readable(&ev));
    put(&low_w, b"y");
    let tokens: BTreeSet<u64> = wait(&mut *sel, 1000).iter().map(|e| e.token.0).collect();
    if sel.edge_triggered() {
        assert_eq!(tokens, BTreeSet::from([1]));
    } else {
        assert_eq!(tokens, BTreeSet::from([1, 1500]));
    }
    sel.deregister(high.as_fd()).unwrap();
    drop(high);
    assert_eq!(drain(&r), 1);
    put(&low_w, b"z");
    only(&wait(&mut *sel, 1000), Token(1));
}

/// Many fds spanning several words of select's sets: only the ready ones
/// are reported, each with its own token.
fn many_fds_only_ready_reported(backend: Backend) {
    crate::limits::raise_nofile_limit();
    let mut sel = open(backend);
    let pipes: Vec<_> = (0..600).map(|_| pipe()).collect();
    for (i, (r, _)) in pipes.iter().enumerate() {
        sel.register(r.as_fd(), Token(i as u64), Interest::READABLE)
            .unwrap();
    }
    let ready: BTreeSet<u64> = (0..600).filter(|i| i % 97 == 5).collect();
    for &i in &ready {
        put(&pipes[i as usize].1, b"x");
    }
    let mut events = Events::with_capacity(1024);
    sel.select(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    let got: BTreeSet<u64> = events.iter().map(|e| e.token.0).collect();
    assert_eq!(got, ready);
    assert_eq!(events.len(), ready.len(), "one event per fd");
    assert!(events.iter().all(raw_readable));
}

// ---- pure tests -------------------------------------------------------------

#[test]
fn timespec_keeps_the_nanoseconds() {
    assert!(timespec(None).is_none());
    let ts = timespec(Some(Duration::from_nanos(1))).unwrap();
    assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 1));
    let ts = timespec(Some(Duration::from_micros(300))).unwrap();
    assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 300_000));
    let ts = timespec(Some(Duration::from_nanos(2_500_000_001))).unwrap();
    assert_eq!((ts.tv_sec, ts.tv_nsec), (2, 500_000_001));
    let ts = timespec(Some(Duration::ZERO)).unwrap();
    assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 0));
    // At most i32::MAX milliseconds, what epoll_wait takes.
    let ts = timespec(Some(Duration::from_secs(u64::MAX))).unwrap();
    assert_eq!((ts.tv_sec, ts.tv_nsec), (2_147_483, 647_000_000));
}

#[test]
fn backend_names_round_trip() {
    for name in Backend::NAMES {
        let backend: Backend = name.parse().unwrap();
        assert_eq!(backend.name(), name);
        assert_eq!(backend.to_string(), name);
    }
    assert_eq!(Backend::ALL.len(), 6);
    assert_eq!(Backend::NAMES.len(), Backend::ALL.len() + 1);
    assert!(Backend::Uring.is_completion() && !Backend::UringPoll.is_completion());
    let err = Backend::Uring
        .open()
        .err()
        .expect("uring is not a selector");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!Backend::ALL.contains(&Backend::Auto));
    assert_eq!(Backend::Auto.resolve(), Backend::Epoll);
    for b in Backend::ALL {
        assert_eq!(b.resolve(), b);
    }
    assert_eq!(Backend::Auto.open().unwrap().name(), "epoll");
}

#[test]
fn unknown_backend_lists_the_valid_names() {
    for bad in ["kqueue", "", "EPOLL", "epoll_et"] {
        let err = bad.parse::<Backend>().unwrap_err();
        assert_eq!(err, UnknownBackend(bad.to_string()));
        let text = err.to_string();
        assert!(text.contains(&format!("'{bad}'")), "{text}");
        for name in Backend::NAMES {
            assert!(text.contains(name), "{text} lacks {name}");
        }
    }
    assert_eq!(
        "io_uring".parse::<Backend>().unwrap_err().to_string(),
        "unknown backend 'io_uring' (valid: auto, select, poll, epoll, epoll-et, uring-poll, uring)"
    );
}

#[test]
fn interest_flags() {
    assert!(!Interest::NONE.is_readable() && !Interest::NONE.is_writable());
    assert!(Interest::READABLE.is_readable() && !Interest::READABLE.is_writable());
    assert!(!Interest::WRITABLE.is_readable() && Interest::WRITABLE.is_writable());
    assert_eq!(Interest::new(true, true), Interest::BOTH);
    assert_eq!(Interest::new(false, false), Interest::NONE);
}

#[test]
fn event_flags_count_errors_as_readable_and_writable() {
    let plain = Event::new(Token(1), Ready::READABLE);
    assert!(plain.is_readable() && !plain.is_writable() && !plain.is_read_closed());
    let err = Event::new(Token(1), Ready::ERROR);
    assert!(err.is_readable() && err.is_writable() && err.is_error() && err.is_read_closed());
    let hup = Event::new(Token(1), Ready::HUP);
    assert!(hup.is_readable() && hup.is_writable() && hup.is_hup());
    let rdhup = Event::new(Token(1), Ready::READ_CLOSED);
    assert!(rdhup.is_readable() && rdhup.is_read_closed() && !rdhup.is_writable());
}

// ---- one #[test] per behaviour and backend -----------------------------------

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        for_each_backend!(@mod select, Select, $($test),*);
        for_each_backend!(@mod poll, Poll, $($test),*);
        for_each_backend!(@mod epoll, Epoll, $($test),*);
        for_each_backend!(@mod epoll_et, EpollEt, $($test),*);
        for_each_backend!(@mod uring_poll, UringPoll, $($test),*);
    };
    (@mod $module:ident, $backend:ident, $($test:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    let backend = super::Backend::$backend;
                    if crate::backend::skip_unavailable(backend, concat!(stringify!($module), "::", stringify!($test))) {
                        return;
                    }
                    super::$test(backend)
                }
            )*
        }
    };
}

for_each_backend!(
    name_and_mode,
    readable_pipe,
    writable_pipe,
    unix_pair_readiness,
    tcp_pair_readiness,
    write_interest_filters_readable,
    read_interest_filters_writable,
    reregister_changes_interest_and_token,
    deregister_stops_events,
    reused_fd_number_gets_the_new_token,
    deregister_drops_readiness_left_from_a_full_wait,
    half_closed_peer_without_read_interest,
    register_twice_is_already_exists,
    unregistered_fd_is_not_found,
    timeout_waits_at_least_the_timeout,
    a_sub_millisecond_wait_is_not_rounded_up_to_a_millisecond,
    ready_fd_ends_the_wait_early,
    level_or_edge_triggered,
    writable_again_after_peer_reads,
    hangup_of_pipe,
    hangup_of_unix_socket,
    tcp_peer_shutdown_is_readable,
    hangup_without_interest,
    error_when_pipe_reader_is_gone,
    events_buffer_grows,
    fd_above_1024,
    many_fds_only_ready_reported,
);
