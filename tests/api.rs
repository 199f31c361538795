//! What the app is told about its connections, on every backend: how each
//! came to be (accepted, connected and for whom, adopted), still known with
//! its peer when it closes; why a send was refused; a connect closed before
//! it is established.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;

use common::{IO_TIMEOUT, LIVENESS};
use iomux::{Addr, App, Backend, CloseReason, Config, ConnId, Ctx, EventLoop, Origin, SendError};

backend_suite! {
    origins_are_told_at_open_and_known_at_close,
    send_says_why_it_refused,
    a_connect_closed_before_it_is_up,
    a_shutdown_delivers_output_to_a_peer_still_sending,
    a_client_over_max_clients_is_told_why,
}

/// Echoes what it gets.
struct Echo;

impl App for Echo {
    type State = ();
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let _ = ctx.send(conn, input);
        input.len()
    }
}

/// Past `max_clients`, a client gets `max_clients_reply` and its end of
/// stream; the client within the limit is still served.
fn a_client_over_max_clients_is_told_why(backend: &str) {
    const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";
    let mut config = Config::default();
    config.max_clients = 1;
    config.max_clients_reply = Some(REFUSAL.to_vec());
    let lp = common::LoopThread::start(backend, config, Echo);
    let mut admitted = TcpStream::connect(lp.addr).expect("connect");
    admitted
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    let mut echo = [0u8; 2];
    admitted.write_all(b"hi").expect("send");
    admitted
        .read_exact(&mut echo)
        .expect("the first client is served");
    let mut refused = TcpStream::connect(lp.addr).expect("the kernel accepts it");
    refused.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut told = Vec::new();
    refused
        .read_to_end(&mut told)
        .expect("the refusal, then end of stream");
    assert_eq!(told, REFUSAL);
    admitted.write_all(b"again").expect("send");
    let mut again = [0u8; 5];
    admitted.read_exact(&mut again).expect("still served");
    assert_eq!(&again, b"again");
    drop(admitted);
    let _ = lp.stop(LIVENESS);
}

/// Records every open and close; connects upstream for each accepted
/// client; stops once `expect` connections have closed.
struct Origins {
    upstream: SocketAddr,
    expect: usize,
    opened: HashMap<ConnId, Origin>,
    /// At the close: (origin, peer) as `Ctx` still tells them.
    closed: HashMap<ConnId, (Option<Origin>, Option<Addr>)>,
}

impl App for Origins {
    type State = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), origin: Origin) {
        assert_eq!(
            ctx.origin(conn),
            Some(origin),
            "Ctx::origin agrees with on_open"
        );
        self.opened.insert(conn, origin);
        if origin == Origin::Accepted {
            ctx.connect(self.upstream).expect("a connect starts");
        }
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), _: &CloseReason) {
        self.closed.insert(conn, (ctx.origin(conn), ctx.peer(conn)));
        if self.closed.len() == self.expect {
            ctx.stop();
        }
    }
}

/// Four connections, one of each kind: adopted, connected before the loop
/// ran (`by: None`), accepted, and connected from the accepted one's
/// `on_open` (`by` names it). Each is told once, and at its close its
/// origin and peer are still there.
fn origins_are_told_at_open_and_known_at_close(backend: &str) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let backend: Backend = backend.parse().unwrap();
    let (tx, rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let mut lp = EventLoop::new(backend, Config::default()).expect("the loop");
        lp.listen(listener).unwrap();
        let adopted = lp.adopt(ours).unwrap();
        let connected = lp.connect(up_addr).unwrap();
        let mut app = Origins {
            upstream: up_addr,
            expect: 4,
            opened: HashMap::new(),
            closed: HashMap::new(),
        };
        lp.run(&mut app).expect("the loop ran");
        let _ = tx.send((adopted, connected, app));
    });
    let client = TcpStream::connect(addr).unwrap();
    let client_addr = client.local_addr().unwrap();
    upstream.set_nonblocking(false).unwrap();
    let up_a = upstream.accept().unwrap().0;
    let up_b = upstream.accept().unwrap().0;
    drop((client, up_a, up_b, theirs));
    let (adopted, connected, app) = rx.recv_timeout(LIVENESS).expect("the loop stopped");
    server.join().unwrap();
    assert_eq!(app.opened.len(), 4, "{:?}", app.opened);
    assert_eq!(app.opened[&adopted], Origin::Adopted);
    assert_eq!(app.opened[&connected], Origin::Connected { by: None });
    let accepted: Vec<ConnId> = app
        .opened
        .iter()
        .filter(|(_, o)| **o == Origin::Accepted)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(accepted.len(), 1, "{:?}", app.opened);
    let by_client = Origin::Connected {
        by: Some(accepted[0]),
    };
    assert_eq!(
        app.opened.values().filter(|o| **o == by_client).count(),
        1,
        "{:?}",
        app.opened
    );
    for (id, origin) in &app.opened {
        let (at_close, peer) = &app.closed[id];
        assert_eq!(
            at_close.as_ref(),
            Some(origin),
            "origin of {id:?} at its close"
        );
        let peer = peer.clone().expect("the peer is known at the close");
        match origin {
            Origin::Accepted => assert_eq!(peer, Addr::Tcp(client_addr)),
            Origin::Connected { .. } => assert_eq!(peer, Addr::Tcp(up_addr)),
            Origin::Adopted => assert!(matches!(peer, Addr::UnnamedUnix(_)), "{peer}"),
        }
    }
}

/// The first three clients are targets; the fourth says `go`, and its
/// callback tries each refusal on them. A send to a closed connection (in
/// its own `on_close`) is `Gone`.
struct Refusals {
    targets: Vec<ConnId>,
    gone: Vec<Result<(), SendError>>,
    over_limit_closed: bool,
}

impl App for Refusals {
    type State = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: Origin) {
        if self.targets.len() < 3 {
            self.targets.push(conn);
        }
        let _ = ctx.send(conn, b"hi\n");
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        if input != b"go\n" || self.targets.contains(&conn) {
            return input.len();
        }
        let [shut, closing, slow] = self.targets[..] else {
            panic!("three targets first");
        };
        ctx.shutdown_after_flush(shut);
        let a = ctx.send(shut, b"x");
        ctx.close_after_flush(closing);
        let b = ctx.send(closing, b"x");
        // Far more than the socket takes, pushed to a peer that reads
        // nothing.
        let c = ctx.send(slow, &vec![b'z'; 16 << 20]);
        let _ = ctx.send(conn, format!("{a:?} {b:?} {c:?}\n").as_bytes());
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), why: &CloseReason) {
        self.gone.push(ctx.send(conn, b"late"));
        if Some(&conn) == self.targets.get(2) {
            self.over_limit_closed = matches!(why, CloseReason::Limit(iomux::Limit::Output { .. }));
        }
    }
}

fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => panic!("no whole line: {other:?} after {line:?}"),
        }
    }
    String::from_utf8(line).unwrap()
}

fn send_says_why_it_refused(backend: &str) {
    let mut config = Config::default();
    config.max_output = 64 * 1024;
    let app = Refusals {
        targets: Vec::new(),
        gone: Vec::new(),
        over_limit_closed: false,
    };
    let lp = common::LoopThread::start(backend, config, app);
    let mut targets: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut t = lp.connect();
            assert_eq!(read_line(&mut t), "hi\n");
            t
        })
        .collect();
    let mut ctl = lp.connect();
    assert_eq!(read_line(&mut ctl), "hi\n");
    ctl.write_all(b"go\n").unwrap();
    assert_eq!(
        read_line(&mut ctl),
        "Err(WriteShut) Err(Closing) Err(OverLimit)\n"
    );
    // The closing target gets end of stream; so does the one over its
    // limit (it is closed).
    targets[1].set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (_, _) = common::read_to_end(&mut targets[1]);
    drop(targets.drain(..));
    drop(ctl);
    let app = lp.stop(LIVENESS);
    assert!(!app.gone.is_empty());
    assert!(
        app.gone.iter().all(|r| *r == Err(SendError::Gone)),
        "{:?}",
        app.gone
    );
    assert!(
        app.over_limit_closed,
        "the slow target closed over its limit"
    );
}

/// Closes its connect in the callback that started it: with nothing to
/// send it closes at once (never opened); with a greeting queued it opens,
/// sends it, then closes.
struct Hasty {
    target: SocketAddr,
    greet: bool,
    opened: usize,
    closed: Vec<String>,
}

impl App for Hasty {
    type State = ();
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let id = ctx.connect(self.target).expect("a connect starts");
        if self.greet {
            ctx.send(id, b"hello\n").expect("queued until connected");
        }
        ctx.close_after_flush(id);
    }
    fn on_open(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), _: Origin) {
        self.opened += 1;
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, _: ConnId, _: (), why: &CloseReason) {
        self.closed.push(format!("{why:?}"));
        ctx.stop();
    }
}

fn a_connect_closed_before_it_is_up(backend: &str) {
    let backend: Backend = backend.parse().unwrap();
    for greet in [false, true] {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut app = Hasty {
            target: server.local_addr().unwrap(),
            greet,
            opened: 0,
            closed: Vec::new(),
        };
        let done = thread::spawn(move || {
            let mut lp: EventLoop = EventLoop::new(backend, Config::default()).unwrap();
            lp.run(&mut app).unwrap();
            app
        });
        let (mut peer, _) = server.accept().unwrap();
        peer.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut got = Vec::new();
        let _ = peer.read_to_end(&mut got);
        let app = done.join().unwrap();
        assert_eq!(app.closed.len(), 1, "{:?}", app.closed);
        if greet {
            assert_eq!(got, b"hello\n", "the greeting went out before the close");
            assert_eq!(app.opened, 1, "it opened to send");
        } else {
            assert_eq!(got, b"", "nothing was sent");
            assert_eq!(app.opened, 0, "closed before it was up: never opened");
            assert_eq!(app.closed, ["App"]);
        }
    }
}

/// Answers `big` with a megabyte.
struct Big;

impl App for Big {
    type State = ();
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        if input.ends_with(b"big\n") {
            let _ = ctx.send(conn, &vec![b'b'; 1 << 20]);
        }
        input.len()
    }
}

/// The TCP state of the socket at `local` talking to `remote`, from
/// /proc/net/tcp (`01` established, `04` fin-wait-1, ...).
fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 3 && f[1] == l && f[2] == r).then(|| f[3].to_string())
    })
}

/// A graceful shutdown finds a reply written to the kernel but not yet
/// taken by the peer, which then sends more: the loop must not close in
/// a way that answers those bytes with a reset (it would destroy the reply
/// on its way); the peer gets all of it.
fn a_shutdown_delivers_output_to_a_peer_still_sending(backend: &str) {
    let lp = common::LoopThread::start(backend, Config::default(), Big);
    let mut peer = lp.connect();
    peer.write_all(b"big\n").unwrap();
    let mut first = [0u8; 1];
    peer.read_exact(&mut first).unwrap(); // the reply is on its way
    let (local, server) = (peer.local_addr().unwrap(), peer.peer_addr().unwrap());
    lp.stop.stop();
    // Wait until the loop is done writing: its side leaves "established".
    let deadline = std::time::Instant::now() + LIVENESS;
    while tcp_state(server, local).as_deref() == Some("01") {
        assert!(
            std::time::Instant::now() < deadline,
            "the loop never ended the connection"
        );
        thread::sleep(std::time::Duration::from_millis(1));
    }
    // Either may fail if the loop answered with a reset; the reads say.
    let _ = peer.write_all(b"more\n");
    let _ = peer.shutdown(std::net::Shutdown::Write);
    let (rest, error) = common::read_to_end(&mut peer);
    assert_eq!(
        error.map(|e| e.kind()),
        None,
        "the reply was cut by a reset"
    );
    assert_eq!(1 + rest.len(), 1 << 20);
    let Big = lp.stop(LIVENESS);
}
