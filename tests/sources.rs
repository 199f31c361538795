//! Any descriptor in the loop, on every backend: a pipe and a UDP socket
//! watched next to TCP connections, read through `Ctx::source`, and
//! handed back deregistered by `EventLoop::unwatch`.

#[macro_use]
mod common;

#[path = "../examples/lines.rs"]
mod lines;

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, LIVENESS, LoopThread};
use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Interest, Readiness, SourceId};

backend_suite! {
    a_pipe_feeds_tcp_clients,
    a_udp_socket_answers_datagrams,
    unwatch_hands_the_descriptor_back,
    the_lines_example_reads_stdin_and_udp,
}

fn nonblocking(fd: impl AsFd) {
    rustix::io::ioctl_fionbio(fd, true).expect("non-blocking");
}

/// Reads a non-blocking `T` until `WouldBlock` (as an edge-triggered
/// backend requires); the bytes and whether it reached end of stream.
fn drain<T>(reader: &T) -> (Vec<u8>, bool)
where
    for<'a> &'a T: Read,
{
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut r = reader;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (got, false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}

/// Relays what a pipe says to every TCP client; unwatches the pipe at its
/// end of stream.
struct PipeRelay {
    pipe: Option<io::PipeReader>,
    source: Option<SourceId>,
    ended: Arc<AtomicBool>,
}

impl App for PipeRelay {
    type State = ();
    fn name(&self) -> &'static str {
        "pipe-relay"
    }
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let pipe = self.pipe.take().expect("the pipe");
        self.source = Some(ctx.watch(pipe, Interest::READABLE).expect("watch the pipe"));
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_ready(&mut self, ctx: &mut Ctx<'_>, source: SourceId, ready: Readiness) {
        assert_eq!(Some(source), self.source, "readiness for an unknown source");
        assert!(ready.readable);
        let Some(pipe) = ctx.source::<io::PipeReader>(source) else {
            return;
        };
        let (bytes, ended) = drain(pipe);
        ctx.broadcast(&bytes, None);
        if ended {
            assert!(
                ctx.unwatch::<io::PipeWriter>(source).is_none(),
                "a source is handed back only as the type it was given as"
            );
            assert!(
                ctx.source::<io::PipeReader>(source).is_some(),
                "still watched"
            );
            let pipe: io::PipeReader = ctx.unwatch(source).expect("unwatch a live source");
            drop(pipe);
            assert!(ctx.source::<io::PipeReader>(source).is_none());
            self.ended.store(true, Ordering::SeqCst);
        }
    }
}

/// Answers each datagram with it upper-cased, to its sender.
struct Shout {
    socket: Option<UdpSocket>,
}

impl App for Shout {
    type State = ();
    fn name(&self) -> &'static str {
        "shout"
    }
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let socket = self.socket.take().expect("the socket");
        ctx.watch(socket, Interest::READABLE)
            .expect("watch the socket");
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_ready(&mut self, ctx: &mut Ctx<'_>, source: SourceId, _: Readiness) {
        let Some(socket) = ctx.source::<UdpSocket>(source) else {
            return;
        };
        let mut buf = [0u8; 2048];
        // Until WouldBlock: one event may stand for many datagrams.
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n].to_ascii_uppercase(), from);
        }
    }
}

/// Lines written into a pipe reach a TCP client through the loop; the
/// pipe's end of stream is seen and the pipe unwatched.
fn a_pipe_feeds_tcp_clients(backend: &str) {
    let (reader, mut writer) = io::pipe().expect("a pipe");
    nonblocking(&reader);
    let ended = Arc::new(AtomicBool::new(false));
    let app = PipeRelay {
        pipe: Some(reader),
        source: None,
        ended: ended.clone(),
    };
    let server = LoopThread::start(backend, Config::default(), app);
    let mut client = server.connect();
    // The loop may take a moment to accept; a line written before that
    // goes to nobody, so repeat until one arrives.
    let deadline = Instant::now() + LIVENESS;
    let mut got = [0u8; 6];
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    loop {
        assert!(Instant::now() < deadline, "no line came through the pipe");
        writer.write_all(b"hello\n").unwrap();
        if client.read_exact(&mut got).is_ok() {
            break;
        }
    }
    assert_eq!(&got, b"hello\n");
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // From now on the client is known to the loop: lines arrive in order.
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    writer.write_all(lines.as_bytes()).unwrap();
    drop(writer);
    let mut rest = vec![0u8; lines.len()];
    client.read_exact(&mut rest).unwrap();
    // Lines of the first loop may still be on their way: skip them.
    let text = String::from_utf8_lossy(&rest).into_owned();
    let mut all = text.clone();
    while !all.ends_with("line 99\n") {
        let mut more = [0u8; 64];
        let n = client.read(&mut more).expect("more lines");
        assert!(n > 0, "closed early");
        all.push_str(&String::from_utf8_lossy(&more[..n]));
    }
    let tail = &all[all.find("line 0\n").expect("line 0")..];
    assert_eq!(tail, lines, "lines in order");
    let deadline = Instant::now() + LIVENESS;
    while !ended.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the pipe's end was not seen");
        thread::sleep(Duration::from_millis(2));
    }
    drop(client);
    server.stop(LIVENESS);
}

/// A UDP socket in the loop answers a burst of datagrams (drained per
/// event, as an edge-triggered backend needs).
fn a_udp_socket_answers_datagrams(backend: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.set_nonblocking(true).unwrap();
    let server_addr = socket.local_addr().unwrap();
    let app = Shout {
        socket: Some(socket),
    };
    let server = LoopThread::start(backend, Config::default(), app);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for i in 0..50 {
        client
            .send_to(format!("hi {i}").as_bytes(), server_addr)
            .unwrap();
    }
    let mut got: Vec<String> = (0..50)
        .map(|_| {
            let mut buf = [0u8; 64];
            let (n, _) = client.recv_from(&mut buf).expect("an answer");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("HI {i}")).collect();
    want.sort();
    assert_eq!(got, want);
    server.stop(LIVENESS);
}

/// `EventLoop::unwatch` gives the descriptor back, deregistered, as the
/// type it was watched as; another type or a stale id gets nothing.
fn unwatch_hands_the_descriptor_back(backend: &str) {
    let backend: Backend = backend.parse().unwrap();
    let mut lp: EventLoop = EventLoop::new(backend, Config::default()).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let id = lp.watch(socket, Interest::READABLE).unwrap();
    assert!(lp.unwatch::<TcpStream>(id).is_none(), "not a TcpStream");
    let back: UdpSocket = lp.unwatch(id).expect("the socket back");
    assert_eq!(back.local_addr().unwrap(), addr);
    assert!(lp.unwatch::<UdpSocket>(id).is_none(), "a stale id");
    // Watched again after being handed back: a fresh registration.
    let again = lp.watch(back, Interest::READABLE).unwrap();
    assert_ne!(again, id);
}

/// The `lines` example: a pipe standing in for stdin and a UDP socket in
/// one loop; every line and datagram is printed with its source, each
/// datagram answered, and stdin's end stops the loop.
fn the_lines_example_reads_stdin_and_udp(backend: &str) {
    let (reader, mut writer) = io::pipe().expect("a pipe");
    nonblocking(&reader);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let app = lines::Lines::new(lines::Stdin(reader.into()), udp, Vec::new());
    let server = LoopThread::start(backend, Config::default(), app);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for i in 1..=3 {
        client
            .send_to(format!("datagram {i}").as_bytes(), udp_addr)
            .unwrap();
        let mut buf = [0u8; 32];
        let (n, _) = client.recv_from(&mut buf).expect("an answer");
        assert_eq!(&buf[..n], format!("ok {i}\n").as_bytes());
    }
    writer.write_all(b"first line\nsecond ").unwrap();
    writer.write_all(b"line\nno newline at the end").unwrap();
    drop(writer);
    let out = String::from_utf8(server.stop(LIVENESS).out).unwrap();
    let from = client.local_addr().unwrap();
    let want = format!(
        "udp {from}: datagram 1\nudp {from}: datagram 2\nudp {from}: datagram 3\n\
         stdin: first line\nstdin: second line\nstdin: no newline at the end\n"
    );
    assert_eq!(out, want);
}
