//! TLS on every backend (feature `tls`): the app contract over rustls,
//! against a plain blocking rustls client. Certificates are made here, at
//! test time: a CA, and a certificate for `localhost` it signed.

use crate::common::pki::{client_config, server_config, signed_by, test_ca};
use crate::prelude::*;
use iomux::Origin;
use iomux::net::Listener;
use iomux::rustls;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned};
use std::os::unix::net::UnixStream;

backend_suite! {
    tls_echo_5mb,
    tls_pipelined_requests_with_alpn_and_sni,
    tls_slow_reader_output_bounded,
    tls_pending_output_counts_plaintext,
    tls_half_close_and_close_notify,
    tls_plaintext_client_closed_with_reason,
    tls_garbage_handshake_closed_with_reason,
    tls_untrusted_certificate_closed_with_reason,
    tls_stalled_handshake_closed_by_timeout,
    tls_outbound_connect,
    tls_outbound_connect_refuses_untrusted_server,
    tls_unix_domain,
    tls_shutdown_flushes_then_close_notify,
    tls_output_over_high_water_before_handshake_is_delivered,
    tls_handshake_finishes_while_the_app_pauses_reading,
}

/// The certificates and configs every test shares (made once).
struct Pki {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// Trusts another CA: refuses the server's certificate.
    untrusting: Arc<ClientConfig>,
}

const ALPN: &[u8] = b"iomux-test";

fn pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let (ca, roots) = test_ca();
        let (leaf, key) = signed_by(&ca, &["localhost"]);
        let (_, other_roots) = test_ca();
        Pki {
            server: server_config(&ca, &leaf, &key, &[ALPN, b"http/1.1"]),
            client: client_config(roots, &[ALPN]),
            untrusting: client_config(other_roots, &[ALPN]),
        }
    })
}

/// A blocking rustls client over TCP.
type Client = StreamOwned<ClientConnection, TcpStream>;

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

fn tls_client(addr: SocketAddr, config: &Arc<ClientConfig>) -> Client {
    let tcp = TcpStream::connect(addr).expect("connect to the loop");
    set_timeouts(&tcp, LIVENESS);
    let conn = ClientConnection::new(Arc::clone(config), localhost()).unwrap();
    StreamOwned::new(conn, tcp)
}

/// Sends `close_notify` and shuts the TCP write side.
fn close_notify_and_shut(c: &mut Client) {
    c.conn.send_close_notify();
    c.flush().expect("send close_notify");
    c.sock
        .shutdown(Shutdown::Write)
        .expect("shut the write side");
}

/// Reads to the end of the TLS stream, which must be a `close_notify`
/// (rustls reports a TCP end without one as `UnexpectedEof`).
fn read_to_close_notify(c: &mut Client) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "the stream ended without close_notify ({e}) after {} bytes: {:?}",
                data.len(),
                String::from_utf8_lossy(&data[data.len().saturating_sub(200)..])
            ),
        }
    }
}

/// A TLS server on 127.0.0.1 for `app`.
fn start<A: App + Send + 'static>(backend: &str, config: Config, app: A) -> LoopThread<A> {
    LoopThread::start_with(backend, config, app, |lp| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let addr = listener.local_addr().unwrap();
        lp.listen_tls(listener, Arc::clone(&pki().server))
            .expect("the loop takes the listener");
        vec![addr]
    })
}

/// The test server. Echo mode: every byte back. Line mode: `GET I LEN`
/// answers `LEN` bytes (stopping between requests while the output is
/// full), `BIG N` answers `N` bytes and a newline, `INFO` the ALPN
/// protocol and server name, `QUIT` says `bye` and closes after it. In
/// both modes the peer's end of stream is answered with `bye` and a
/// shut write side.
struct Server {
    rec: Rec,
    echo: bool,
    /// The most pending output seen right after a reply was queued.
    max_pending: Arc<AtomicUsize>,
    /// Requests left for later because the output was full.
    stops: Arc<AtomicUsize>,
}

impl Server {
    fn new(journal: &Journal, echo: bool) -> Server {
        Server {
            rec: Rec::new(journal),
            echo,
            max_pending: Arc::default(),
            stops: Arc::default(),
        }
    }

    fn line(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["GET", i, len] => {
                let (Ok(i), Ok(len)) = (i.parse::<usize>(), len.parse::<usize>()) else {
                    return ctx.close_because(conn, "bad GET");
                };
                let _ = ctx.send(conn, &crate::pipelining::value(i, len));
                self.max_pending
                    .fetch_max(ctx.pending_output(conn), Ordering::Relaxed);
            }
            ["SMALL", n] => {
                // `n` sends of 10 bytes, in one callback: how much output
                // the app is told is pending after them.
                let Ok(n) = n.parse::<usize>() else {
                    return ctx.close_because(conn, "bad SMALL");
                };
                for _ in 0..n {
                    let _ = ctx.send(conn, b"123456789\n");
                }
                let pending = ctx.pending_output(conn);
                self.rec
                    .note(ctx, conn, Ev::Note(format!("pending {pending}")));
            }
            ["BIG", n] => {
                let Ok(n) = n.parse::<usize>() else {
                    return ctx.close_because(conn, "bad BIG");
                };
                let mut reply = vec![b'x'; n];
                reply.push(b'\n');
                let _ = ctx.send(conn, &reply);
                self.rec.note(ctx, conn, Ev::Note("big".into()));
            }
            ["INFO"] => {
                let alpn = ctx
                    .tls_alpn(conn)
                    .map(|a| String::from_utf8_lossy(a).into_owned());
                let reply = format!(
                    "tls={} alpn={} sni={}\n",
                    ctx.is_tls(conn),
                    alpn.as_deref().unwrap_or("-"),
                    ctx.tls_server_name(conn).unwrap_or("-")
                );
                let _ = ctx.send(conn, reply.as_bytes());
            }
            ["QUIT"] => {
                let _ = ctx.send(conn, b"bye\n");
                ctx.close_after_flush(conn);
            }
            _ => ctx.close_because(conn, format!("unknown request {line:?}")),
        }
    }
}

impl App for Server {
    type State = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), origin: Origin) {
        self.rec.open(ctx, conn);
        if let Origin::Connected { .. } = origin {
            // Before the handshake: sent once it is done.
            let _ = ctx.send(conn, b"ping\n");
        }
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        assert!(!ctx.tls_handshaking(conn), "plaintext before the handshake");
        if let Some(Origin::Connected { .. }) = ctx.origin(conn) {
            // The outbound side: its echo came back.
            self.rec.note(ctx, conn, Ev::Data(input.to_vec()));
            ctx.close_after_flush(conn);
            return input.len();
        }
        if self.echo {
            let _ = ctx.send(conn, input);
            return input.len();
        }
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if ctx.output_full(conn) {
                self.stops.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let line = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            used += end + 1;
            self.line(ctx, conn, &line);
        }
        used
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
        let _ = ctx.send(conn, b"bye\n");
        ctx.shutdown_after_flush(conn);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A close reason the TLS layer gave, as the journal shows it.
fn is_tls_reason(reason: &Reason, what: &str) -> bool {
    matches!(reason, Reason::Other(text) if text.starts_with("Tls(") && text.contains(what))
}

/// 5 MB through the echo server in 64 KiB round trips, byte for byte;
/// then the client's `close_notify` is the end of stream the app is told.
fn tls_echo_5mb(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, true));
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let mut rng = crate::common::Rng::new(crate::common::seed("tls_echo_5mb", backend));
    let data = rng.bytes(5 << 20);
    let mut back = vec![0u8; 64 * 1024];
    for chunk in data.chunks(64 * 1024) {
        c.write_all(chunk).expect("send a chunk");
        c.read_exact(&mut back[..chunk.len()])
            .unwrap_or_else(|e| panic!("echo: {e}: {:?}", journal.of(peer)));
        assert!(back[..chunk.len()] == *chunk, "the echo differs");
    }
    close_notify_and_shut(&mut c);
    assert_eq!(read_to_close_notify(&mut c), b"bye\n");
    let (_, reason) = journal.wait_closed(peer);
    assert_eq!(reason, Reason::PeerClosed);
    assert_eq!(
        journal.of(peer).iter().filter(|e| **e == Ev::Eof).count(),
        1
    );
    lp.stop(LIVENESS);
}

/// A thousand requests in one write, the replies in order; the app reads
/// ALPN and SNI; `close_after_flush` ends with `close_notify`.
fn tls_pipelined_requests_with_alpn_and_sni(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, false));
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let count = 1000;
    let len = 100;
    let mut requests: String = "INFO\n".into();
    requests.extend((0..count).map(|i| format!("GET {i} {len}\n")));
    requests.push_str("QUIT\n");
    c.write_all(requests.as_bytes()).expect("send the requests");
    let got = read_to_close_notify(&mut c);
    let mut expected = b"tls=true alpn=iomux-test sni=localhost\n".to_vec();
    for i in 0..count {
        expected.extend_from_slice(&crate::pipelining::value(i, len));
    }
    expected.extend_from_slice(b"bye\n");
    assert!(
        got == expected,
        "{} bytes back, {} expected; first 100: {:?}",
        got.len(),
        expected.len(),
        String::from_utf8_lossy(&got[..got.len().min(100)])
    );
    // The server may linger for the client's close (its last bytes not
    // yet acknowledged): the client closes as a client would.
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::App);
    lp.stop(LIVENESS);
}

/// A client that pipelines 6 MB of replies and does not read: the app is
/// held off between requests (`output_full`), with its pending output
/// (ciphertext) about the high-water mark; then everything arrives.
fn tls_slow_reader_output_bounded(backend: &str) {
    let journal = Journal::default();
    let app = Server::new(&journal, false);
    let (max_pending, stops) = (app.max_pending.clone(), app.stops.clone());
    let config = Config::default();
    let high_water = config.high_water;
    let lp = start(backend, config, app);
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let (count, len) = (400, 16 * 1024);
    let requests: String = (0..count).map(|i| format!("GET {i} {len}\n")).collect();
    c.write_all(requests.as_bytes()).expect("send the requests");
    let deadline = Instant::now() + LIVENESS;
    while stops.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the app was never held off: {:?}",
            journal.of(peer)
        );
        thread::sleep(Duration::from_millis(5));
    }
    // One reply past the mark: plaintext, as on a plain connection.
    let bound = high_water + len;
    let seen = max_pending.load(Ordering::Relaxed);
    assert!(
        seen <= bound,
        "pending output reached {seen} (bound {bound})"
    );
    let mut got = vec![0u8; len];
    for i in 0..count {
        c.read_exact(&mut got).expect("a reply");
        assert!(got == crate::pipelining::value(i, len), "reply {i} differs");
    }
    let seen = max_pending.load(Ordering::Relaxed);
    assert!(
        seen <= bound,
        "pending output reached {seen} (bound {bound})"
    );
    close_notify_and_shut(&mut c);
    assert_eq!(read_to_close_notify(&mut c), b"bye\n");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    lp.stop(LIVENESS);
}

/// Pending output is the app's plaintext: 500 sends of 10 bytes are
/// 5,000 bytes pending, not their records' framing (22 bytes each in TLS
/// 1.3) on top; then they all arrive.
fn tls_pending_output_counts_plaintext(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, false));
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    c.write_all(b"SMALL 500\n").expect("send");
    let mut got = vec![0u8; 5000];
    c.read_exact(&mut got).expect("the replies");
    assert!(
        got.chunks(10).all(|r| r == b"123456789\n"),
        "replies differ"
    );
    journal.wait("the pending output noted", |es| {
        es.iter().any(|e| {
            e.peer == Some(peer) && matches!(&e.ev, Ev::Note(n) if n.starts_with("pending"))
        })
    });
    let noted: Vec<Ev> = journal
        .of(peer)
        .into_iter()
        .filter(|e| matches!(e, Ev::Note(_)))
        .collect();
    assert_eq!(noted, [Ev::Note("pending 5000".into())]);
    close_notify_and_shut(&mut c);
    assert_eq!(read_to_close_notify(&mut c), b"bye\n");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    lp.stop(LIVENESS);
}

/// The client says something, sends `close_notify` and shuts its write
/// side: the app gets the bytes, then its end of stream, and its answer
/// after it arrives before the server's `close_notify`.
fn tls_half_close_and_close_notify(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, true));
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    c.write_all(b"hello\n").expect("send");
    close_notify_and_shut(&mut c);
    assert_eq!(read_to_close_notify(&mut c), b"hello\nbye\n");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    assert_eq!(journal.of(peer).first(), Some(&Ev::Open));
    assert!(journal.of(peer).contains(&Ev::Eof));
    lp.stop(LIVENESS);
}

/// A client that sends `bytes` in place of a handshake is closed with a
/// TLS reason (logged), within the liveness bound, its socket gone.
fn refused(backend: &str, bytes: &[u8], what: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, true));
    let mut c = lp.connect();
    let peer = peer_of(&c);
    c.write_all(bytes).expect("send");
    // An alert may come first; then the end (or a reset).
    let (_, error) = read_to_end(&mut c);
    if let Some(e) = error {
        assert!(
            matches!(e.kind(), io::ErrorKind::ConnectionReset),
            "expected an end or a reset, got {e}"
        );
    }
    let (_, reason) = journal.wait_closed(peer);
    assert!(is_tls_reason(&reason, what), "closed with {reason:?}");
    let prefix = format!("{peer}: TLS: ");
    let logged = CAPTURED.lock().unwrap_or_else(|e| e.into_inner())[mark..]
        .iter()
        .any(|(target, line)| target == "iomux::conn" && line.starts_with(&prefix));
    assert!(logged, "no TLS reason logged: {:?}", conn_lines(peer));
    wait_no_server_sockets(lp.addr.port());
    lp.stop(LIVENESS);
}

fn tls_plaintext_client_closed_with_reason(backend: &str) {
    refused(
        backend,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "Protocol",
    );
}

fn tls_garbage_handshake_closed_with_reason(backend: &str) {
    // A handshake record of eight bytes that are no handshake message.
    let garbage = [0x16, 0x03, 0x01, 0x00, 0x08, 0xff, 0, 0, 4, 1, 2, 3, 4];
    refused(backend, &garbage, "Protocol");
}

/// The client refuses the server's certificate: both ends give up, the
/// server with the alert it got as its reason.
fn tls_untrusted_certificate_closed_with_reason(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, true));
    let mut c = tls_client(lp.addr, &pki().untrusting);
    let peer = c.sock.local_addr().unwrap();
    let refused = c.write_all(b"hello\n").and_then(|()| c.flush());
    let e = refused.expect_err("the client refuses the certificate");
    assert!(
        e.to_string().contains("certificate"),
        "the client's error: {e}"
    );
    let (_, reason) = journal.wait_closed(peer);
    assert!(
        is_tls_reason(&reason, "AlertReceived"),
        "closed with {reason:?}"
    );
    drop(c);
    wait_no_server_sockets(lp.addr.port());
    lp.stop(LIVENESS);
}

/// A client that starts a handshake and stalls (half a ClientHello), and
/// one that says nothing: both closed by the handshake timeout, no sooner.
fn tls_stalled_handshake_closed_by_timeout(backend: &str) {
    let journal = Journal::default();
    let mut config = Config::default();
    let timeout = Duration::from_millis(300);
    config.tls_handshake_timeout = timeout;
    let lp = start(backend, config, Server::new(&journal, true));
    let mut hello = Vec::new();
    let mut session = ClientConnection::new(Arc::clone(&pki().client), localhost()).unwrap();
    session.write_tls(&mut hello).unwrap();
    let mut stalled = lp.connect();
    stalled.write_all(&hello[..hello.len() / 2]).expect("send");
    let mut silent = lp.connect();
    for c in [&mut stalled, &mut silent] {
        let peer = peer_of(c);
        let (closed, reason) = journal.wait_closed(peer);
        assert!(
            matches!(&reason, Reason::Other(t) if t.contains("HandshakeTimeout")),
            "closed with {reason:?}"
        );
        let (opened, _) = journal.timed(peer)[0];
        assert!(
            closed.duration_since(opened) >= timeout,
            "closed after {:?}",
            closed.duration_since(opened)
        );
        let (data, _) = read_to_end(c);
        assert!(data.is_empty(), "got {data:?}");
    }
    wait_no_server_sockets(lp.addr.port());
    lp.stop(LIVENESS);
}

/// A loop connects to its own TLS listener: the outbound side's greeting,
/// sent before the handshake, comes back echoed; then both close.
fn tls_outbound_connect(backend: &str) {
    let journal = Journal::default();
    let lp = outbound(backend, &journal, &pki().client);
    // The outbound side's peer is the listener.
    journal.wait("the echo back", |es| {
        es.iter()
            .any(|e| e.peer == Some(lp.addr) && e.ev == Ev::Data(b"ping\n".to_vec()))
    });
    assert_eq!(journal.wait_closed(lp.addr).1, Reason::App);
    journal.wait("both sides closed", |es| {
        es.iter().filter(|e| matches!(e.ev, Ev::Close(_))).count() == 2
    });
    let accepted: Vec<Reason> = journal
        .lock()
        .iter()
        .filter(|e| e.peer != Some(lp.addr))
        .filter_map(|e| match &e.ev {
            Ev::Close(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, [Reason::PeerClosed]);
    lp.stop(LIVENESS);
}

/// An outbound connect that does not trust the server closes with a TLS
/// reason; so does the server's side, told by the alert.
fn tls_outbound_connect_refuses_untrusted_server(backend: &str) {
    let journal = Journal::default();
    let lp = outbound(backend, &journal, &pki().untrusting);
    let (_, reason) = journal.wait_closed(lp.addr);
    assert!(
        is_tls_reason(&reason, "InvalidCertificate"),
        "closed with {reason:?}"
    );
    journal.wait("both sides closed", |es| {
        es.iter().filter(|e| matches!(e.ev, Ev::Close(_))).count() == 2
    });
    assert!(
        !journal.lock().iter().any(|e| matches!(e.ev, Ev::Data(_))),
        "no plaintext passed"
    );
    lp.stop(LIVENESS);
}

/// A loop with a TLS listener that connects to it with `client`. Its
/// grace period is longer than the test waits: every close must come of
/// itself, none by the grace period's end (a failed handshake's held
/// greeting is owed to nobody).
fn outbound(backend: &str, journal: &Journal, client: &Arc<ClientConfig>) -> LoopThread<Server> {
    let client = Arc::clone(client);
    let mut config = Config::default();
    config.shutdown_grace = Duration::from_secs(60);
    LoopThread::start_with(backend, config, Server::new(journal, true), move |lp| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let addr = listener.local_addr().unwrap();
        lp.listen_tls(listener, Arc::clone(&pki().server))
            .expect("the loop takes the listener");
        lp.connect_tls(addr, client, localhost())
            .expect("a connect starts");
        vec![addr]
    })
}

/// An echo app for Unix-domain peers (no TCP address for the journal).
struct UnixEcho(Journal);

impl App for UnixEcho {
    type State = ();
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let _ = ctx.send(conn, input);
        input.len()
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        ctx.shutdown_after_flush(conn);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, _: ConnId, _: (), reason: &CloseReason) {
        self.0
            .push(None, ctx.now(), Ev::Close(Reason::from(reason)));
    }
}

/// TLS over a Unix-domain socket (abstract namespace).
fn tls_unix_domain(backend: &str) {
    use std::os::linux::net::SocketAddrExt;
    let journal = Journal::default();
    let name = format!("iomux-tls-test-{}-{backend}", std::process::id());
    let addr: iomux::Addr = format!("unix:@{name}").parse().unwrap();
    let lp = LoopThread::start_with(
        backend,
        Config::default(),
        UnixEcho(journal.clone()),
        move |lp| {
            lp.listen_tls(
                Listener::bind(&addr).expect("bind"),
                Arc::clone(&pki().server),
            )
            .expect("the loop takes the listener");
            Vec::from(["127.0.0.1:0".parse().unwrap()])
        },
    );
    let sockaddr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let unix = UnixStream::connect_addr(&sockaddr).expect("connect");
    unix.set_read_timeout(Some(LIVENESS)).unwrap();
    let session = ClientConnection::new(Arc::clone(&pki().client), localhost()).unwrap();
    let mut c = StreamOwned::new(session, unix);
    c.write_all(b"over a unix socket\n").expect("send");
    c.conn.send_close_notify();
    c.flush().expect("send close_notify");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("ended without close_notify: {e}"),
        }
    }
    assert_eq!(got, b"over a unix socket\n");
    journal.wait("the close", |es| {
        es.iter().any(|e| e.ev == Ev::Close(Reason::PeerClosed))
    });
    lp.stop(LIVENESS);
}

/// The loop stops while a client has not read a 2 MB reply: the graceful
/// shutdown writes all of it, then `close_notify`.
fn tls_shutdown_flushes_then_close_notify(backend: &str) {
    let journal = Journal::default();
    let lp = start(backend, Config::default(), Server::new(&journal, false));
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let n = 2_000_000;
    c.write_all(format!("BIG {n}\n").as_bytes()).expect("send");
    journal.wait("the reply queued", |es| {
        es.iter()
            .any(|e| e.peer == Some(peer) && e.ev == Ev::Note("big".into()))
    });
    lp.stop.stop();
    let got = read_to_close_notify(&mut c);
    assert_eq!(got.len(), n + 1);
    assert!(got[..n].iter().all(|&b| b == b'x') && got[n] == b'\n');
    // The server waits for the client's close (a lingering close: its
    // last bytes may still be unacknowledged).
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::Shutdown);
    lp.stop(LIVENESS);
}

/// Greets each connection, in `on_open` (before the handshake), with
/// `size` bytes (filling the output, unless `pause`: then it pauses
/// reading first); answers the peer's end with its own.
struct Greeter {
    rec: Rec,
    size: usize,
    pause: bool,
}

impl App for Greeter {
    type State = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: Origin) {
        self.rec.open(ctx, conn);
        if self.pause {
            ctx.pause_reading(conn);
        }
        let greeting: Vec<u8> = (0..self.size).map(|k| (k % 251) as u8).collect();
        let _ = ctx.send(conn, &greeting);
        assert!(
            self.pause || ctx.output_full(conn),
            "the greeting fills the output"
        );
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        ctx.shutdown_after_flush(conn);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// An app that sends more than the high-water mark before the handshake
/// is done (a greeting, output pushed from elsewhere) fills the output
/// with plaintext that waits for the handshake: the connection still
/// reads the rest of the handshake, rather than stalling until the
/// handshake timeout, and the peer gets all of it.
fn tls_output_over_high_water_before_handshake_is_delivered(backend: &str) {
    let journal = Journal::default();
    let mut config = Config::default();
    config.tls_handshake_timeout = Duration::from_secs(3);
    let size = 2 * config.high_water;
    let app = Greeter {
        rec: Rec::new(&journal),
        size,
        pause: false,
    };
    let lp = start(backend, config, app);
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let mut got = vec![0u8; size];
    c.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("the greeting: {e}: {:?}", journal.of(peer)));
    assert!(
        got.iter().enumerate().all(|(k, &b)| b == (k % 251) as u8),
        "the greeting differs"
    );
    close_notify_and_shut(&mut c);
    assert_eq!(read_to_close_notify(&mut c), b"");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    lp.stop(LIVENESS);
}

/// An app that pauses reading in `on_open` takes no input, but the
/// handshake is not input: it still finishes (the greeting reaches the
/// peer) rather than waiting out the handshake timeout, and the shutdown
/// closes the paused connection with close_notify.
fn tls_handshake_finishes_while_the_app_pauses_reading(backend: &str) {
    let journal = Journal::default();
    let mut config = Config::default();
    config.tls_handshake_timeout = Duration::from_secs(3);
    let app = Greeter {
        rec: Rec::new(&journal),
        size: 5,
        pause: true,
    };
    let lp = start(backend, config, app);
    let mut c = tls_client(lp.addr, &pki().client);
    let peer = c.sock.local_addr().unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("the greeting: {e}: {:?}", journal.of(peer)));
    assert_eq!(got, [0, 1, 2, 3, 4]);
    lp.stop.stop();
    assert_eq!(read_to_close_notify(&mut c), b"");
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::Shutdown);
    lp.stop(LIVENESS);
}
