//! A buffered, flow-controlled connection and its life as a state machine.
//!
//! Memory: an idle connection is only the slot below (about 40 bytes:
//! socket, generation, peer address, phase, flags, one pointer). Buffers,
//! clocks and counters live in [`ConnIo`], allocated on the connection's
//! first data. Input is freed as soon as the app has consumed it; output
//! over 16 KiB is freed when it drains, smaller output buffers are kept for
//! the next reply (no allocation per request).
//!
//! Flow control: a connection is *full* while its pending output is above
//! the high-water mark; then nothing more is read from it nor handed to the
//! app, until the output is written down to the low-water mark (and
//! [`crate::App::on_drain`] runs).

use crate::selector::Interest;
use crate::stream::{Peer, Stream};
use crate::tls::Tls;
use std::io;
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
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// A number for logs and maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// How a connection came to be: told to [`crate::App::on_open`], and
/// asked any time of its life (its close included) with
/// [`crate::Ctx::origin`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Accepted from one of the loop's listeners.
    Accepted,
    /// Made by [`crate::Ctx::connect`] (or [`crate::EventLoop::connect`]).
    Connected {
        /// The connection whose callback asked for it: a proxy pairs its
        /// two sides with this. `None` when a loop-wide callback (a timer,
        /// `on_start`) or the code around the loop asked.
        by: Option<ConnId>,
    },
    /// Handed to [`crate::EventLoop::adopt`].
    Adopted,
}

/// Where a connection is in its life. Events for a `Closing` connection
/// are ignored; every other phase is served.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// An outbound connect in progress: output waits, nothing is read.
    Connecting,
    /// Reading and writing.
    Open,
    /// The peer shut its write side; input it sent before is still being
    /// handed to the app, then [`crate::App::on_eof`] runs.
    EofPending,
    /// The peer shut its write side and the app was told; closes once it
    /// owes nothing (output written, jobs back).
    ReadClosed,
    /// Closes once its output is written (asked by the app, or a limit);
    /// nothing more is read, nor offered.
    Draining,
    /// The loop is shutting down gracefully: nothing more is read from the
    /// socket, but input already taken from the kernel is still offered
    /// (with flow control, as always); closes once it owes nothing and no
    /// such input waits that the app could still take.
    Stopping,
    /// Owed nothing and had unread input, so its write side was shut
    /// instead of closing (a close would reset and destroy the output still
    /// in flight); input is read and dropped until the peer closes.
    Lingering,
    /// Scheduled for close.
    Closing,
}

/// Where a connection's receive is on the completion driver (two bits of
/// its flags; always `Idle` on a readiness backend).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecvState {
    Idle,
    Armed,
    /// Cancelled; its last completion has not come yet.
    Cancelling,
}

/// Bits of a connection that are not its phase.
#[derive(Copy, Clone, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    /// Listed for the end-of-turn flush.
    pub(crate) const DIRTY: Flags = Flags(1);
    /// Output went over the high-water mark and has not drained to the
    /// low-water mark since.
    pub(crate) const FULL: Flags = Flags(2);
    /// The app paused reading.
    pub(crate) const APP_PAUSED: Flags = Flags(4);
    /// The app consumed part of its input on the last offer: offer the rest
    /// again without waiting for new bytes.
    pub(crate) const REOFFER: Flags = Flags(8);
    /// A write-timeout timer is armed.
    pub(crate) const WRITE_TIMER: Flags = Flags(16);
    /// A soft output limit timer is armed.
    pub(crate) const SOFT_TIMER: Flags = Flags(32);
    /// Stays open after the peer's end of stream (until the app closes it
    /// or its write side is shut).
    pub(crate) const KEEP_OPEN: Flags = Flags(64);
    /// Shut the write side once the pending output is written.
    pub(crate) const SHUT_AFTER_FLUSH: Flags = Flags(128);
    /// The write side is shut: the peer has seen our end of stream.
    pub(crate) const WRITE_SHUT: Flags = Flags(256);
    /// Input came that nobody will read (the completion driver received it
    /// after the connection stopped listening): closing must linger as if
    /// it were still unread in the socket.
    pub(crate) const DISCARDED: Flags = Flags(512);
    /// The completion driver's receive is armed (see [`Conn::recv_state`]).
    pub(crate) const RECV_ARMED: Flags = Flags(1024);
    /// The completion driver's receive is being cancelled.
    pub(crate) const RECV_CANCELLING: Flags = Flags(2048);
    /// On the completion driver, the ring's polls watch the socket (its
    /// interest in `Conn::registered`): for room while a send waits for it,
    /// and with no interest while no receive is armed, so a reset peer is
    /// still heard.
    pub(crate) const POLLED: Flags = Flags(4096);
    /// Made by a connect ([`Origin::Connected`]).
    pub(crate) const CONNECTED: Flags = Flags(8192);
    /// Adopted ([`Origin::Adopted`]).
    pub(crate) const ADOPTED: Flags = Flags(16384);
    /// Asked to close after its output while its connect was in progress:
    /// it drains once connected.
    pub(crate) const DRAIN_WHEN_CONNECTED: Flags = Flags(32768);
}

/// Output buffers above this capacity are freed when they drain, so one
/// burst does not pin memory for the rest of a connection's life.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What a connection holds once it has seen data.
pub(crate) struct ConnIo {
    /// Input the app has not consumed yet (usually empty).
    pub input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    /// Bytes handed to the kernel in a send that has not completed (the
    /// completion driver; the send owns them meanwhile).
    in_flight: usize,
    /// An empty buffer kept for the next send's swap (completion driver),
    /// so a request costs no allocation.
    spare: Vec<u8>,
    /// The ring's key of the send in flight (while `in_flight > 0`).
    pub send_op: u32,
    /// When the peer last sent bytes (for the idle timeout).
    pub last_read: Instant,
    /// When the socket last took output, or output became pending (for
    /// the write timeout).
    pub last_progress: Instant,
    /// Since when pushed output has been over the soft limit.
    pub over_soft_since: Option<Instant>,
    /// Offloaded jobs not yet back; the connection is owed their replies.
    pub jobs: u32,
    /// App timers armed for this connection.
    pub timers: u32,
    /// For a connect: the connection whose callback asked for it.
    pub opened_by: Option<ConnId>,
    /// The TLS session, on a TLS connection: `output` holds ciphertext,
    /// `input` plaintext (see `crate::tls`).
    pub tls: Option<Box<Tls>>,
}

impl ConnIo {
    fn new(now: Instant) -> ConnIo {
        ConnIo {
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            in_flight: 0,
            spare: Vec::new(),
            send_op: 0,
            last_read: now,
            last_progress: now,
            over_soft_since: None,
            jobs: 0,
            timers: 0,
            opened_by: None,
            tls: None,
        }
    }

    /// The app's bytes queued but not yet written to the socket (a send
    /// in flight counts until it completes): what flow control and the
    /// output limits count. On a TLS connection, its plaintext (see
    /// `crate::tls`).
    pub(crate) fn pending(&self) -> usize {
        match &self.tls {
            Some(tls) => tls.plain_pending(self.for_socket()),
            None => self.for_socket(),
        }
    }

    /// Whether anything is still owed to the socket: bytes for it (on a
    /// TLS connection ciphertext, its handshake and alerts too), or
    /// plaintext waiting for the handshake.
    pub(crate) fn owes_output(&self) -> bool {
        self.for_socket() > 0 || self.pending() > 0
    }

    /// Bytes for the socket: queued and not yet written, or in a send
    /// (without plaintext a TLS session holds for its handshake).
    fn for_socket(&self) -> usize {
        self.output.len() - self.written + self.in_flight
    }
}

/// Outcome of a flush.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Everything was written.
    Done,
    /// The socket is full; the rest waits for writability.
    Blocked,
    /// A send is in the kernel (completion driver); its completion goes on.
    Sending,
}

/// One connection's slot in the loop's table.
pub(crate) struct Conn {
    pub stream: Stream,
    generation: u32,
    peer: Peer,
    pub phase: Phase,
    /// What the selector has for this fd now.
    pub registered: Interest,
    flags: Flags,
    io: Option<Box<ConnIo>>,
}

/// What the water marks say after output was written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    /// The connection was full and is now at or below the low-water mark.
    pub below_low_water: bool,
}

impl Conn {
    pub(crate) fn new(stream: Stream, peer: Peer, id: ConnId) -> Conn {
        Conn {
            stream,
            generation: id.generation(),
            peer,
            phase: Phase::Open,
            registered: Interest::NONE,
            flags: Flags::default(),
            io: None,
        }
    }

    /// Whether this slot holds the connection `id` names (and not a newer
    /// one in the same slot).
    pub(crate) fn is(&self, id: ConnId) -> bool {
        self.generation == id.generation()
    }

    pub(crate) fn id(&self, index: usize) -> ConnId {
        ConnId::new(index, self.generation)
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    pub(crate) fn origin(&self) -> Origin {
        if self.has(Flags::CONNECTED) {
            Origin::Connected {
                by: self.io().and_then(|io| io.opened_by),
            }
        } else if self.has(Flags::ADOPTED) {
            Origin::Adopted
        } else {
            Origin::Accepted
        }
    }

    /// The socket and the peer's name (the buffers are dropped).
    pub(crate) fn into_parts(self) -> (Stream, Peer) {
        (self.stream, self.peer)
    }

    pub(crate) fn has(&self, flag: Flags) -> bool {
        self.flags.0 & flag.0 != 0
    }

    pub(crate) fn set(&mut self, flag: Flags, on: bool) {
        if on {
            self.flags.0 |= flag.0;
        } else {
            self.flags.0 &= !flag.0;
        }
    }

    /// Sets `flag`; true if it was clear.
    pub(crate) fn raise(&mut self, flag: Flags) -> bool {
        let was = self.has(flag);
        self.set(flag, true);
        !was
    }

    pub(crate) fn io(&self) -> Option<&ConnIo> {
        self.io.as_deref()
    }

    pub(crate) fn io_mut(&mut self) -> Option<&mut ConnIo> {
        self.io.as_deref_mut()
    }

    /// The buffers, made on first use.
    pub(crate) fn io_or_new(&mut self, now: Instant) -> &mut ConnIo {
        self.io.get_or_insert_with(|| Box::new(ConnIo::new(now)))
    }

    /// Bytes of the output buffer not yet written (none of them in a send).
    #[cfg(feature = "faults")]
    pub(crate) fn unwritten(&self) -> usize {
        self.io().map_or(0, |io| io.output.len() - io.written)
    }

    /// The app's bytes queued but not yet written to the socket (see
    /// [`ConnIo::pending`]).
    pub(crate) fn pending(&self) -> usize {
        self.io().map_or(0, ConnIo::pending)
    }

    /// Whether anything is still owed to the socket (see
    /// [`ConnIo::owes_output`]).
    pub(crate) fn owes_output(&self) -> bool {
        self.io().is_some_and(ConnIo::owes_output)
    }

    pub(crate) fn jobs(&self) -> u32 {
        self.io().map_or(0, |io| io.jobs)
    }

    pub(crate) fn has_input(&self) -> bool {
        self.io().is_some_and(|io| !io.input.is_empty())
    }

    /// Nothing more is owed: no output pending, no job in flight.
    pub(crate) fn owes_nothing(&self) -> bool {
        !self.owes_output() && self.jobs() == 0
    }

    /// Served at all (not scheduled for close).
    pub(crate) fn is_live(&self) -> bool {
        self.phase != Phase::Closing
    }

    /// Takes part in the protocol: the app may send to it and is called
    /// for it (not closing, not lingering).
    pub(crate) fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Closing | Phase::Lingering)
    }

    /// Whether the app may be handed input now: the protocol is still
    /// listening, output has room, the app did not pause it, and its jobs
    /// are under the limit.
    pub(crate) fn may_deliver(&self, max_jobs: u32) -> bool {
        matches!(
            self.phase,
            Phase::Open | Phase::EofPending | Phase::Stopping
        ) && !self.has(Flags::FULL)
            && !self.has(Flags::APP_PAUSED)
            && self.jobs() < max_jobs
    }

    /// Whether to read from the socket now. A lingering connection reads
    /// (and drops) whatever comes until the peer closes.
    pub(crate) fn may_read(&self, max_jobs: u32) -> bool {
        match self.phase {
            Phase::Lingering => true,
            // A TLS handshake carries no input for the app: it is read
            // whatever the app's flow control says, or plaintext sent
            // before it is done (over the high-water mark) would wait for
            // a handshake that waits for it. Plaintext that comes with its
            // end is kept, as any input the app may not take yet.
            Phase::Open => {
                self.may_deliver(max_jobs) || self.tls().is_some_and(Tls::handshake_pending)
            }
            // A TLS connection closing after its output, or with the loop,
            // may owe output that waits for its handshake: read on until
            // the handshake is done (its timeout bounds that), unless
            // rustls gave up on it.
            Phase::Draining | Phase::Stopping => self.tls().is_some_and(Tls::owes_after_handshake),
            _ => false,
        }
    }

    /// Closes once nothing more is owed: the peer finished and was told
    /// (unless the app keeps it open for more output, and its write side
    /// is still open), the connection is draining, or it is stopping and
    /// holds no input the app could still take (input the app left on
    /// its last offer waits for bytes that will not come; paused input
    /// waits for the app to resume, within the shutdown's grace period).
    pub(crate) fn finished_when_flushed(&self) -> bool {
        match self.phase {
            Phase::Draining => true,
            Phase::Stopping => {
                !self.has_input() || !(self.has(Flags::REOFFER) || self.has(Flags::APP_PAUSED))
            }
            Phase::ReadClosed => !self.has(Flags::KEEP_OPEN) || self.has(Flags::WRITE_SHUT),
            _ => false,
        }
    }

    /// Queues bytes for the peer; marks the connection full when the
    /// pending output passes `high_water`.
    pub(crate) fn queue(&mut self, data: &[u8], high_water: usize, now: Instant) {
        let io = self.io_or_new(now);
        if !io.owes_output() {
            io.last_progress = now;
        }
        if io.written > 0 && io.written >= io.output.len() / 2 {
            // Reclaim the written prefix before it dominates the buffer.
            io.output.drain(..io.written);
            io.written = 0;
        }
        match io.tls.as_deref_mut() {
            Some(tls) => tls.seal(data),
            None => io.output.extend_from_slice(data),
        }
        if io.pending() > high_water {
            self.set(Flags::FULL, true);
        }
    }

    /// On a TLS connection, seals the plaintext the app sent since the
    /// last write into the output (see `crate::tls`), settling what the
    /// socket took; nothing on a plain connection. The driver calls it
    /// before each write.
    pub(crate) fn seal_output(&mut self) {
        let Some(io) = self.io.as_deref_mut() else {
            return;
        };
        let for_socket = io.for_socket();
        if let Some(tls) = io.tls.as_deref_mut() {
            tls.settle(for_socket);
            tls.seal_held(&mut io.output);
        }
    }

    /// Writes pending output until done or the socket would block.
    /// Returns the bytes written alongside the outcome.
    pub(crate) fn flush(&mut self, now: Instant) -> io::Result<(usize, Flush)> {
        self.flush_at_most(now, usize::MAX)
    }

    /// [`Conn::flush`] of at most `limit` bytes: past them the socket
    /// counts as full (`Flush::Blocked`).
    pub(crate) fn flush_at_most(
        &mut self,
        now: Instant,
        limit: usize,
    ) -> io::Result<(usize, Flush)> {
        let Some(io) = self.io.as_deref_mut() else {
            return Ok((0, Flush::Done));
        };
        let mut total = 0;
        while io.written < io.output.len() {
            if total >= limit {
                return Ok((total, Flush::Blocked));
            }
            let end = io
                .output
                .len()
                .min(io.written.saturating_add(limit - total));
            match self.stream.write(&io.output[io.written..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    io.written += n;
                    total += n;
                    io.last_progress = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((total, Flush::Blocked));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        io.output.clear();
        io.written = 0;
        if io.output.capacity() > KEEP_CAPACITY {
            io.output = Vec::new();
        }
        Ok((total, Flush::Done))
    }

    /// Takes the pending output for a send (completion driver): the bytes
    /// and where they start. The connection's output buffer becomes the
    /// spare one, so what the app queues meanwhile never moves what the
    /// kernel reads. `None` when nothing is pending or a send is in flight.
    pub(crate) fn take_output(&mut self) -> Option<(Vec<u8>, usize)> {
        let io = self.io.as_deref_mut()?;
        if io.in_flight > 0 || io.written == io.output.len() {
            return None;
        }
        let mut buf = std::mem::take(&mut io.spare);
        std::mem::swap(&mut buf, &mut io.output);
        let off = std::mem::take(&mut io.written);
        io.in_flight = buf.len() - off;
        Some((buf, off))
    }

    /// Where the completion driver's receive is.
    pub(crate) fn recv_state(&self) -> RecvState {
        if self.has(Flags::RECV_CANCELLING) {
            RecvState::Cancelling
        } else if self.has(Flags::RECV_ARMED) {
            RecvState::Armed
        } else {
            RecvState::Idle
        }
    }

    pub(crate) fn set_recv_state(&mut self, state: RecvState) {
        self.set(Flags::RECV_ARMED, state == RecvState::Armed);
        self.set(Flags::RECV_CANCELLING, state == RecvState::Cancelling);
    }

    /// The key of the completion driver's send in flight, if one is.
    pub(crate) fn send_in_flight(&self) -> Option<u32> {
        self.io().filter(|io| io.in_flight > 0).map(|io| io.send_op)
    }

    /// A send completed with `n` bytes taken.
    pub(crate) fn sent(&mut self, n: usize, now: Instant) {
        if let Some(io) = self.io.as_deref_mut() {
            io.in_flight = io.in_flight.saturating_sub(n);
            if n > 0 {
                io.last_progress = now;
            }
        }
    }

    /// A send's buffer is back and fully sent (`sent` counted its bytes):
    /// kept for the next send unless it grew big.
    pub(crate) fn send_done(&mut self, mut buf: Vec<u8>) {
        if let Some(io) = self.io.as_deref_mut() {
            debug_assert_eq!(io.in_flight, 0, "a finished send leaves nothing in flight");
            buf.clear();
            if buf.capacity() <= KEEP_CAPACITY && io.spare.capacity() == 0 {
                io.spare = buf;
            }
        }
    }

    /// After output was written: a full connection that is down to the
    /// low-water mark has room again.
    pub(crate) fn after_write(&mut self, low_water: usize) -> Drained {
        if let Some(io) = self.io.as_deref_mut() {
            let for_socket = io.for_socket();
            if let Some(tls) = io.tls.as_deref_mut() {
                tls.settle(for_socket);
            }
        }
        let below = self.has(Flags::FULL) && self.pending() <= low_water;
        if below {
            self.set(Flags::FULL, false);
        }
        Drained {
            below_low_water: below,
        }
    }

    /// One read into `buf`, retrying `EINTR`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// The interest a level-triggered selector should have for this
    /// connection: read while reading is allowed, write only while output
    /// is pending (a writable interest left on would spin).
    pub(crate) fn level_interest(&self, max_jobs: u32) -> Interest {
        if self.phase == Phase::Connecting {
            return Interest::WRITABLE; // the connect's outcome
        }
        let for_socket = self.io().is_some_and(|io| {
            io.for_socket() > 0 || io.tls.as_deref().is_some_and(Tls::has_sealable)
        });
        Interest::new(self.may_read(max_jobs), for_socket)
    }

    /// The connection's TLS session, if it is a TLS connection.
    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.io()?.tls.as_deref()
    }

    /// Makes this a TLS connection; what its session sends first (a
    /// client's hello) is queued.
    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&mut self, mut tls: Box<Tls>, now: Instant) {
        let io = self.io_or_new(now);
        tls.drain(&mut io.output);
        io.tls = Some(tls);
    }

    /// Opens the ciphertext `cipher` of this TLS connection (see
    /// [`Tls::open`]): plaintext into `plain`, rustls's answers queued.
    /// `None` on a plain connection; else the outcome, and whether output
    /// was queued.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_open(
        &mut self,
        cipher: &[u8],
        plain: &mut Vec<u8>,
    ) -> Option<(Result<crate::tls::Opened, rustls::Error>, bool)> {
        let io = self.io.as_deref_mut()?;
        let tls = io.tls.as_deref_mut()?;
        let before = io.output.len();
        let result = tls.open(cipher, &mut io.output, plain);
        Some((result, io.output.len() != before))
    }

    /// Whether nothing more may be sent: its write side is shut (or will
    /// be), or its TLS session sent `close_notify`.
    pub(crate) fn write_closed(&self) -> bool {
        self.has(Flags::SHUT_AFTER_FLUSH) || self.tls().is_some_and(Tls::write_closed)
    }

    /// On a TLS connection whose close is decided, queues `close_notify`
    /// (once): true if it did, so there is output to write first.
    pub(crate) fn close_notify(&mut self) -> bool {
        let Some(io) = self.io.as_deref_mut() else {
            return false;
        };
        match io.tls.as_deref_mut() {
            Some(tls) => tls.close_notify(&mut io.output),
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
