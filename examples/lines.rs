//! Two kinds of input in one loop, neither of them an accepted TCP
//! connection: lines typed on stdin and datagrams on a UDP socket. Each is
//! printed with where it came from; a datagram is answered with `ok N`.
//!
//! ```sh
//! cargo run --example lines 127.0.0.1:9999
//! echo hello | nc -u -w1 127.0.0.1 9999     # from another terminal
//! ```
//!
//! Both descriptors are handed to the loop with `Ctx::watch`, which owns
//! them from then on (so neither can be closed while registered), and are
//! read in `on_ready` until `WouldBlock`, which is what an edge-triggered
//! backend (`IOMUX_BACKEND=epoll-et`) requires. End of input on stdin
//! stops the loop.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Interest, Readiness, SourceId};

#[path = "common/logger.rs"]
mod logger;

/// Standard input, duplicated so the loop may own (and close) its copy.
pub struct Stdin(pub OwnedFd);

impl AsFd for Stdin {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The app: what it watches, the unfinished line, and what it prints to.
pub struct Lines<W> {
    pending: Option<(Stdin, UdpSocket)>,
    stdin: Option<SourceId>,
    partial: Vec<u8>,
    datagrams: u64,
    /// Where lines go (stdout in `main`, a buffer in the tests).
    pub out: W,
}

impl<W: Write> Lines<W> {
    pub fn new(stdin: Stdin, udp: UdpSocket, out: W) -> Lines<W> {
        Lines {
            pending: Some((stdin, udp)),
            stdin: None,
            partial: Vec::new(),
            datagrams: 0,
            out,
        }
    }

    fn print(&mut self, from: &str, line: &[u8]) {
        let _ = writeln!(
            self.out,
            "{from}: {}",
            String::from_utf8_lossy(line).trim_end()
        );
    }

    /// Reads stdin until `WouldBlock`; prints whole lines; at its end, the
    /// rest and a stop.
    fn read_stdin(&mut self, ctx: &mut Ctx<'_>, id: SourceId) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(stdin) = ctx.source::<Stdin>(id) else {
                return;
            };
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) => {
                    let rest = std::mem::take(&mut self.partial);
                    if !rest.is_empty() {
                        self.print("stdin", &rest);
                    }
                    drop(ctx.unwatch::<Stdin>(id)); // deregistered, then closed
                    ctx.stop();
                    return;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        self.print("stdin", &line);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    drop(ctx.unwatch::<Stdin>(id));
                    return;
                }
            }
        }
    }

    /// Takes every datagram waiting; answers each.
    fn read_udp(&mut self, ctx: &mut Ctx<'_>, id: SourceId) {
        let mut buf = [0u8; 65536];
        while let Some(socket) = ctx.source::<UdpSocket>(id) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return; // WouldBlock (or an ICMP error): wait for the next
            };
            self.datagrams += 1;
            let _ = socket.send_to(format!("ok {}\n", self.datagrams).as_bytes(), from);
            let text = buf[..n].to_vec();
            self.print(&format!("udp {from}"), &text);
        }
    }
}

impl<W: Write> App for Lines<W> {
    type State = ();

    fn name(&self) -> &'static str {
        "lines"
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let Some((stdin, udp)) = self.pending.take() else {
            return;
        };
        match ctx.watch(stdin, Interest::READABLE) {
            Ok(id) => self.stdin = Some(id),
            Err(e) => log::warn!("cannot watch stdin: {e}"),
        }
        if let Err(e) = ctx.watch(udp, Interest::READABLE) {
            log::warn!("cannot watch the UDP socket: {e}");
        }
    }

    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len() // no connections here
    }

    fn on_ready(&mut self, ctx: &mut Ctx<'_>, source: SourceId, _: Readiness) {
        if Some(source) == self.stdin {
            self.read_stdin(ctx, source);
        } else {
            self.read_udp(ctx, source);
        }
    }
}

/// A non-blocking duplicate of stdin.
pub fn stdin() -> io::Result<Stdin> {
    let fd = rustix::io::dup(io::stdin().as_fd())?;
    rustix::io::ioctl_fionbio(&fd, true)?;
    Ok(Stdin(fd))
}

#[allow(dead_code)] // the tests include this file for `Lines`, not `main`
fn main() -> io::Result<()> {
    logger::install();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9999".into());
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!(
            "usage: lines [UDP_ADDR]   (backend from $IOMUX_BACKEND, log level from $RUST_LOG)"
        );
        std::process::exit(2);
    };
    let udp = UdpSocket::bind(addr)?;
    udp.set_nonblocking(true)?;
    let backend = Backend::from_env().map_err(io::Error::other)?;
    let mut lp: EventLoop = EventLoop::new(backend, Config::default())?;
    eprintln!(
        "lines: stdin and udp {addr} (backend {})",
        lp.backend_name()
    );
    let mut app = Lines::new(stdin()?, udp, io::stdout());
    lp.run(&mut app)
}
