//! A buffered, back-pressured connection.
//!
//! Buffers are allocated when a connection first needs them. Input is
//! freed as soon as the app has consumed it; output over 16 KiB is freed
//! when it drains, smaller output buffers are kept for the next reply (no
//! allocation per request). A connection that has been idle since it was
//! accepted costs only this struct.

use crate::selector::Interest;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// Identifies a connection for its whole life; never reused (it carries a
/// generation), so a stale id or event for a closed connection is harmless.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(index: usize, generation: u32) -> ConnId {
        ConnId((generation as u64) << 32 | index as u64)
    }
    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    /// A number for logs and maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Output buffers above this capacity are freed when they drain, so one
/// burst does not pin memory for the rest of a connection's life.
const KEEP_CAPACITY: usize = 16 * 1024;

pub(crate) struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub id: ConnId,
    /// Input the app has not consumed yet (usually empty: no allocation).
    pub input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    /// What the selector has for this fd now.
    pub registered: Interest,
    /// The peer shut down its write side (read returned 0).
    pub read_closed: bool,
    /// Reading stopped because too much output is pending.
    pub read_paused: bool,
    /// Close once the output is flushed.
    pub close_when_flushed: bool,
    /// Owes nothing more and its write side is shut; input is read and
    /// discarded until the peer closes (see `EventLoop::finish`).
    pub lingering: bool,
    /// Scheduled for close; events for it are ignored.
    pub closing: bool,
    /// Listed for the end-of-turn flush.
    pub dirty: bool,
    pub last_read: Instant,
    /// Offloaded jobs not yet back; the connection is owed their replies.
    pub jobs: u32,
    /// Offer the unconsumed `input` to the app again before reading more.
    pub redeliver: bool,
}

/// Outcome of a flush.
pub(crate) enum Flush {
    /// Everything was written.
    Done,
    /// The socket is full; the rest waits for writability.
    Blocked,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, id: ConnId, now: Instant) -> Conn {
        Conn {
            stream,
            peer,
            id,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            registered: Interest::NONE,
            read_closed: false,
            read_paused: false,
            close_when_flushed: false,
            lingering: false,
            closing: false,
            dirty: false,
            last_read: now,
            jobs: 0,
            redeliver: false,
        }
    }

    /// Nothing more is owed: no output pending, no job in flight.
    pub fn owes_nothing(&self) -> bool {
        self.pending() == 0 && self.jobs == 0
    }

    /// Bytes queued but not yet written to the socket.
    pub fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Queues bytes for the peer.
    pub fn queue(&mut self, data: &[u8]) {
        if self.written > 0 && self.written >= self.output.len() / 2 {
            // Reclaim the written prefix before it dominates the buffer.
            self.output.drain(..self.written);
            self.written = 0;
        }
        self.output.extend_from_slice(data);
    }

    /// Writes pending output until done or the socket would block.
    /// Returns the bytes written alongside the outcome.
    pub fn flush(&mut self) -> io::Result<(usize, Flush)> {
        let mut total = 0;
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((total, Flush::Blocked));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.written = 0;
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::new();
        }
        Ok((total, Flush::Done))
    }

    /// One read into `buf`, retrying `EINTR`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// The interest a level-triggered selector should have for this
    /// connection: read unless paused or at end of stream, write only while
    /// output is pending (a writable interest left on would spin).
    pub fn level_interest(&self) -> Interest {
        Interest::new(!self.read_paused && !self.read_closed, self.pending() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (
            Conn::new(server, peer, ConnId::new(3, 7), Instant::now()),
            client,
        )
    }

    #[test]
    fn conn_id_packs_index_and_generation() {
        let id = ConnId::new(12345, 99);
        assert_eq!(id.index(), 12345);
        assert_ne!(id, ConnId::new(12345, 100));
    }

    #[test]
    fn interest_follows_pending_output_and_pause() {
        let (mut c, _peer) = pair();
        assert_eq!(c.level_interest(), Interest::READABLE);
        c.queue(b"abc");
        assert_eq!(c.level_interest(), Interest::BOTH);
        c.read_paused = true;
        assert_eq!(c.level_interest(), Interest::WRITABLE);
        assert!(matches!(c.flush().unwrap(), (3, Flush::Done)));
        c.read_paused = false;
        c.read_closed = true;
        assert_eq!(c.level_interest(), Interest::NONE);
    }

    #[test]
    fn flush_keeps_what_the_socket_refuses_and_frees_big_buffers() {
        let (mut c, mut peer) = pair();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..16 {
            c.queue(&chunk);
        }
        let (_, outcome) = c.flush().unwrap();
        assert!(
            matches!(outcome, Flush::Blocked),
            "16 MiB must not fit a socket buffer"
        );
        let left = c.pending();
        assert!(left > 0 && left < 16 << 20);
        // Drain the peer and finish.
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while c.pending() > 0 {
            got += peer.read(&mut buf).unwrap();
            c.flush().unwrap();
        }
        while got < 16 << 20 {
            got += peer.read(&mut buf).unwrap();
        }
        assert_eq!(got, 16 << 20);
        assert_eq!(c.output.capacity(), 0, "a drained big buffer is released");
    }
}
