//! The TCP→TCP proxy example on every backend: bytes both ways, a
//! half-close passed through, a slow reader on either side (nothing lost,
//! the proxy's output bounded), and an upstream that refuses.

#[macro_use]
mod common;

#[path = "../examples/proxy.rs"]
mod proxy;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, LIVENESS, LoopThread};
use iomux::{App, CloseReason, Config, ConnId, Ctx};

backend_suite! {
    proxy_copies_both_ways,
    proxy_passes_a_half_close_through,
    proxy_slow_client_reader,
    proxy_slow_upstream_reader,
    proxy_upstream_refused,
}

/// The proxy, recording the most output ever pending on any connection.
struct Watched {
    inner: proxy::Proxy,
    max_pending: Arc<AtomicUsize>,
}

impl App for Watched {
    type State = proxy::Side;
    fn name(&self) -> &'static str {
        "proxy"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side, o: iomux::Origin) {
        self.inner.on_open(ctx, c, s, o)
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        c: ConnId,
        s: &mut proxy::Side,
        input: &[u8],
    ) -> usize {
        let used = self.inner.on_data(ctx, c, s, input);
        if let Some(other) = s.other {
            self.max_pending
                .fetch_max(ctx.pending_output(other), Ordering::SeqCst);
        }
        used
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side) {
        self.inner.on_drain(ctx, c, s)
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: &mut proxy::Side) {
        self.inner.on_eof(ctx, c, s)
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, c: ConnId, s: proxy::Side, why: &CloseReason) {
        self.inner.on_close(ctx, c, s, why)
    }
}

/// A proxy loop in a thread in front of `upstream`.
fn start(backend: &str, upstream: SocketAddr) -> LoopThread<Watched> {
    let app = Watched {
        inner: proxy::Proxy::new(upstream),
        max_pending: Arc::new(AtomicUsize::new(0)),
    };
    LoopThread::start(backend, Config::default(), app)
}

/// Stops the proxy; the most output it ever had pending.
fn stop(p: LoopThread<Watched>) -> usize {
    p.stop(LIVENESS).max_pending.load(Ordering::SeqCst)
}

/// An upstream that accepts one connection and hands it to `serve`.
fn upstream<F: FnOnce(TcpStream) + Send + 'static>(
    serve: F,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (s, _) = listener.accept().expect("the proxy connects");
        common::set_timeouts(&s, IO_TIMEOUT);
        serve(s)
    });
    (addr, t)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads `n` bytes in small pieces with pauses (a slow reader).
fn read_slowly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + 6 * LIVENESS;
    let mut got = Vec::with_capacity(n);
    let mut buf = [0u8; 8192];
    let mut reads = 0u32;
    while got.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} bytes", got.len());
        let k = match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other.expect("data, not a reset"),
        };
        assert!(k > 0, "closed after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
        reads += 1;
        if reads.is_multiple_of(16) && got.len() < n / 2 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

/// 4 MiB through an echoing upstream and back, whole and in order.
fn proxy_copies_both_ways(backend: &str) {
    let (up, t) = upstream(|mut s| {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => return,
                Ok(n) => s.write_all(&buf[..n]).expect("echo"),
            }
        }
    });
    let p = start(backend, up);
    let mut c = p.connect();
    let data = pattern(4 << 20);
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || w.write_all(&sent).unwrap());
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data, "the echo through the proxy differs");
    drop(c);
    t.join().unwrap();
    stop(p);
}

/// The client sends a request and half-closes; the upstream sees end of
/// stream, answers, and closes; the client gets the answer, then end of
/// stream.
fn proxy_passes_a_half_close_through(backend: &str) {
    let (up, t) = upstream(|mut s| {
        let mut request = Vec::new();
        s.read_to_end(&mut request)
            .expect("end of stream from the proxy");
        assert_eq!(request, b"question");
        s.write_all(b"answer").unwrap();
    });
    let p = start(backend, up);
    let mut c = p.connect();
    c.write_all(b"question").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply)
        .expect("the answer, then end of stream");
    assert_eq!(reply, b"answer");
    t.join().unwrap();
    stop(p);
}

/// The upstream sends 16 MiB to a client that reads slowly: all of it
/// arrives and the proxy never holds much more than a high-water mark.
fn proxy_slow_client_reader(backend: &str) {
    const N: usize = 16 << 20;
    let (up, t) = upstream(|mut s| s.write_all(&pattern(N)).expect("the download"));
    let p = start(backend, up);
    let mut c = p.connect();
    let got = read_slowly(&mut c, N);
    assert!(got == pattern(N), "the download differs");
    drop(c);
    t.join().unwrap();
    let peak = stop(p);
    let bound = Config::default().high_water + 64 * 1024;
    assert!(peak <= bound, "{peak} bytes pending (bound {bound})");
}

/// A client uploads 16 MiB to an upstream that reads slowly: all of it
/// arrives, the proxy's output stays bounded.
fn proxy_slow_upstream_reader(backend: &str) {
    const N: usize = 16 << 20;
    let (tx, rx) = mpsc::channel();
    let (up, t) = upstream(move |mut s| {
        let got = read_slowly(&mut s, N);
        let _ = tx.send(got == pattern(N));
    });
    let p = start(backend, up);
    let c = p.connect();
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&pattern(N)).expect("the upload"));
    assert!(
        rx.recv_timeout(6 * LIVENESS)
            .expect("the upstream read it all"),
        "the upload differs"
    );
    writer.join().unwrap();
    drop(c);
    t.join().unwrap();
    let peak = stop(p);
    let bound = Config::default().high_water + 64 * 1024;
    assert!(peak <= bound, "{peak} bytes pending (bound {bound})");
}

/// Nothing listens upstream: the client is closed (end of stream, no
/// data), and the proxy goes on.
fn proxy_upstream_refused(backend: &str) {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = start(backend, dead);
    let mut c = p.connect();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty());
    stop(p);
}
