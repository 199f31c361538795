//! The one seam between the loop and the kernel: the two I/O models behind
//! one type, with one method per real difference between them.
//!
//! - **Readiness** (select, poll, epoll, epoll-et, uring-poll): a
//!   [`Selector`] says which descriptors are ready; the loop then pulls
//!   bytes ([`Driver::read`]) and pushes output ([`Driver::write`]) with
//!   system calls of its own, and keeps the selector's interest in step.
//! - **Completion** (uring): the kernel does a connection's I/O. A
//!   multishot receive brings bytes by itself ([`Done::Received`]),
//!   [`Driver::write`] hands output to a send that owns it until it
//!   completes ([`Done::Sent`]), a listener's multishot accept brings
//!   sockets ([`Done::Accepted`]). Its poll requests are the selector for
//!   everything else.
//!
//! Everything the loop does with a connection's bytes (offering them,
//! flow control, the end of stream, what follows a write, the close) is
//! the same for both and lives in `event_loop/`; nothing there asks which
//! model is running. The rules each side keeps are stated where they are
//! kept: nothing is written past a send in flight; no operation of the
//! ring outlives its connection (cancel before close, the socket kept
//! until the kernel let go); a level-triggered selector is told only of
//! real interest changes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::config::Config;
use crate::conn::{Conn, ConnId, Flags, Flush, Phase, RecvState};
use crate::selector::{Events, Interest, Selector, Token};
use crate::stream::Peer;
use crate::uring::{Lent, Ring, SendState};

/// What the completion driver reports, besides readiness.
pub(crate) use crate::uring::{Done, Received};

/// How the loop talks to the kernel: the model, and (with the `faults`
/// feature) what perturbs it.
pub(crate) struct Driver {
    model: Model,
    #[cfg(feature = "faults")]
    faults: Option<crate::faults::Faults>,
}

/// The two I/O models.
enum Model {
    Readiness {
        selector: Box<dyn Selector>,
        /// Asked once, used on every event.
        edge: bool,
    },
    Completion(Box<Ring>),
}

impl Driver {
    pub(crate) fn open(backend: Backend, config: &Config) -> io::Result<Driver> {
        let model = match backend.resolve() {
            Backend::Uring => Model::Completion(Box::new(Ring::new(config.uring_buffers)?)),
            other => {
                let selector = other.open()?;
                let edge = selector.edge_triggered();
                Model::Readiness { selector, edge }
            }
        };
        #[cfg(feature = "faults")]
        let faults = crate::faults::Faults::for_loop(config.faults);
        #[cfg(feature = "faults")]
        let mut model = model;
        #[cfg(feature = "faults")]
        if let (Some(faults), Model::Completion(ring)) = (&faults, &mut model) {
            ring.inject(crate::faults::Faults::new(faults.plan(), 1));
        }
        Ok(Driver {
            model,
            #[cfg(feature = "faults")]
            faults,
        })
    }

    /// The backend's name.
    pub(crate) fn name(&self) -> &'static str {
        match &self.model {
            Model::Readiness { selector, .. } => selector.name(),
            Model::Completion(_) => Backend::Uring.name(),
        }
    }

    /// Readiness is reported once per change (epoll-et): what the loop
    /// leaves unfinished it must remember, no event will say it again.
    pub(crate) fn edge_triggered(&self) -> bool {
        matches!(self.model, Model::Readiness { edge: true, .. })
    }

    /// The selector for what is not a connection's data: the waker, the
    /// signal pipe, the app's sources, listeners on a readiness backend.
    pub(crate) fn selector(&mut self) -> &mut dyn Selector {
        match &mut self.model {
            Model::Readiness { selector, .. } => &mut **selector,
            Model::Completion(ring) => &mut **ring,
        }
    }

    /// One wait (at most `timeout`): readiness into `events`; on the
    /// completion driver the same `io_uring_enter` submits this turn's
    /// operations and brings their completions into `done`.
    pub(crate) fn wait(
        &mut self,
        events: &mut Events,
        done: &mut Vec<Done>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        #[cfg(feature = "faults")]
        let timeout = match &mut self.faults {
            Some(faults) => faults.wait_timeout(timeout),
            None => timeout,
        };
        match &mut self.model {
            Model::Readiness { selector, .. } => selector.select(events, timeout)?,
            Model::Completion(ring) => {
                ring.select(events, timeout)?;
                ring.take_done(done);
            }
        }
        #[cfg(feature = "faults")]
        if let Some(faults) = &mut self.faults {
            faults.after_wait(events);
        }
        Ok(())
    }

    /// Watches a new connection (`Open`, or `Connecting`: its connect
    /// completes when the socket turns writable). On the completion driver
    /// an open connection's receive is armed by its first flush.
    pub(crate) fn add_conn(&mut self, conn: &mut Conn, id: ConnId) -> io::Result<()> {
        let connecting = conn.phase == Phase::Connecting;
        let interest = match &mut self.model {
            Model::Completion(_) if !connecting => return Ok(()),
            // Registered once for both: no epoll_ctl per state change.
            Model::Readiness { edge: true, .. } => Interest::BOTH,
            _ if connecting => Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        self.selector()
            .register(conn.stream.as_fd(), Token(id.0), interest)?;
        conn.registered = interest;
        Ok(())
    }

    /// An outbound connect is established: on the completion driver the
    /// ring does its I/O from now on, and the poll that waited goes.
    pub(crate) fn connected(&mut self, conn: &mut Conn) {
        if let Model::Completion(ring) = &mut self.model {
            let _ = ring.deregister(conn.stream.as_fd());
            conn.registered = Interest::NONE;
        }
    }

    /// Puts what the kernel watches for `conn` in step with what it may
    /// do now. Level-triggered selectors are told only of real changes
    /// (trap: an `epoll_ctl` per request); edge-triggered ones keep both
    /// interests; on the completion driver a receive is armed exactly
    /// while the connection may read and no input waits to be offered
    /// again.
    pub(crate) fn update_interest(
        &mut self,
        conn: &mut Conn,
        id: ConnId,
        max_jobs: u32,
    ) -> io::Result<()> {
        match &mut self.model {
            Model::Readiness { edge: true, .. } => Ok(()),
            Model::Readiness { selector, .. } => {
                let wanted = conn.level_interest(max_jobs);
                if wanted != conn.registered {
                    selector.reregister(conn.stream.as_fd(), Token(id.0), wanted)?;
                    conn.registered = wanted;
                }
                Ok(())
            }
            Model::Completion(ring) => update_receive(ring, conn, id, max_jobs),
        }
    }

    /// Bytes the socket has now, into `buf` (readiness). The completion
    /// driver's bytes come by themselves ([`Done::Received`]): nothing to
    /// pull, `WouldBlock`.
    pub(crate) fn read(
        &mut self,
        conn: &mut Conn,
        id: ConnId,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        match &mut self.model {
            Model::Readiness { edge, .. } => {
                #[cfg(feature = "faults")]
                if let Some(faults) = &mut self.faults {
                    let len = faults.read(Token(id.0), buf.len(), *edge)?;
                    return conn.read(&mut buf[..len]);
                }
                let _ = (id, edge);
                conn.read(buf)
            }
            Model::Completion(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Writes what `conn`'s socket takes now (readiness), within what the
    /// fault layer lets through.
    fn flush(&mut self, conn: &mut Conn, id: ConnId, now: Instant) -> io::Result<(usize, Flush)> {
        #[cfg(feature = "faults")]
        if let Some(faults) = &mut self.faults {
            let edge = matches!(self.model, Model::Readiness { edge: true, .. });
            let limit = faults.write(Token(id.0), conn.unwritten(), edge)?;
            return conn.flush_at_most(now, limit);
        }
        let _ = id;
        conn.flush(now)
    }

    /// Starts or continues `conn`'s output; the one way bytes reach a
    /// connection's socket. Readiness: writes what the socket takes now.
    /// Completion: hands the pending output to a send, unless one is in
    /// flight (nothing is written past it; its completion goes on); a send
    /// parked by a full socket is written here, straight.
    /// Returns the bytes written now and what the output waits for.
    pub(crate) fn write(
        &mut self,
        conn: &mut Conn,
        id: ConnId,
        now: Instant,
    ) -> io::Result<(usize, Flush)> {
        conn.seal_output();
        match &mut self.model {
            Model::Readiness { .. } => self.flush(conn, id, now),
            Model::Completion(ring) => {
                let mut written = 0;
                if let Some(key) = conn.send_in_flight() {
                    if ring.send_state(key, id) != SendState::Parked {
                        // One at a time (a send over is told by its
                        // completion, which comes in this turn).
                        return Ok((0, Flush::Sending));
                    }
                    let (n, over) = write_parked(ring, conn, key, now)?;
                    if !over {
                        return Ok((n, Flush::Blocked));
                    }
                    written = n;
                }
                let Some((buf, off)) = conn.take_output() else {
                    return Ok((written, Flush::Done));
                };
                let key = ring.send(id, conn.stream.as_fd(), buf, off)?;
                if let Some(io) = conn.io_mut() {
                    io.send_op = key;
                }
                Ok((written, Flush::Sending))
            }
        }
    }

    /// Offers `conn`'s pending output to its socket now, as far as it
    /// takes it, and returns the bytes it took: pushed output over a limit
    /// is judged after this (the limit is for output the peer does not
    /// take, not for a burst it reads promptly). On the completion driver
    /// this writes directly while no operation of the ring holds output
    /// (none in flight, or one parked by a full socket, written first):
    /// nothing overtakes a send in the kernel.
    pub(crate) fn offer_now(
        &mut self,
        conn: &mut Conn,
        id: ConnId,
        now: Instant,
    ) -> io::Result<usize> {
        let mut taken = 0;
        conn.seal_output();
        if let Model::Completion(ring) = &mut self.model
            && let Some(key) = conn.send_in_flight()
        {
            match ring.send_state(key, id) {
                SendState::InKernel => return Ok(0),
                SendState::Parked => {
                    let (n, over) = write_parked(ring, conn, key, now)?;
                    if !over {
                        return Ok(n);
                    }
                    taken = n;
                }
                // Its bytes are in the socket already: newer ones follow.
                SendState::Over => {}
            }
        }
        Ok(taken + conn.flush(now)?.0)
    }

    /// Whether input may be waiting unread for `conn` (closing then would
    /// reset the connection and destroy output still in flight): in the
    /// socket, or on its way in a receive. `None` while a receive is armed
    /// or being cancelled: decide once it ended.
    pub(crate) fn unread_input(&self, conn: &Conn) -> Option<bool> {
        if conn.recv_state() != RecvState::Idle {
            return None;
        }
        Some(rustix::io::ioctl_fionread(&conn.stream).is_ok_and(|n| n > 0))
    }

    /// `conn` closes; nothing of the kernel may outlive it. Readiness: it
    /// is deregistered before its descriptor closes (epoll watches
    /// descriptions). Completion: its polls, receive and send are
    /// cancelled, and its socket is kept until the kernel let go of it.
    /// Returns the peer's name, for the log.
    pub(crate) fn retire(&mut self, conn: Conn, id: ConnId) -> Peer {
        match &mut self.model {
            Model::Readiness { selector, .. } => {
                let _ = selector.deregister(conn.stream.as_fd());
                conn.into_parts().1
            }
            Model::Completion(ring) => {
                if conn.registered != Interest::NONE || conn.has(Flags::POLLED) {
                    let _ = ring.deregister(conn.stream.as_fd());
                }
                let (recv, send) = (conn.recv_state(), conn.send_in_flight());
                let (stream, peer) = conn.into_parts();
                ring.retire(id, stream, recv, send);
                peer
            }
        }
    }

    /// Received bytes in provided buffer `bid`, lent while the app reads
    /// them (completion driver).
    pub(crate) fn lend(&mut self, bid: u16, len: usize) -> Option<Lent> {
        match &mut self.model {
            Model::Completion(ring) => ring.lend(bid, len),
            Model::Readiness { .. } => None,
        }
    }

    /// Gives lent bytes back; their buffer goes to the kernel again.
    pub(crate) fn give_back(&mut self, lent: Lent) {
        if let Model::Completion(ring) = &mut self.model {
            ring.give_back_lent(lent);
        }
    }

    /// Accepts from listener `index` (`token`, socket `fd`): its readiness,
    /// or a multishot accept.
    pub(crate) fn watch_listener(
        &mut self,
        index: usize,
        token: Token,
        fd: BorrowedFd<'_>,
    ) -> io::Result<()> {
        match &mut self.model {
            Model::Readiness { selector, .. } => selector.register(fd, token, Interest::READABLE),
            Model::Completion(ring) => ring.accept(index, fd),
        }
    }

    /// One connection from a listener a readiness backend said is
    /// readable (non-blocking and close-on-exec, with its peer's address).
    pub(crate) fn accept(
        &mut self,
        listener: &crate::net::Listener,
    ) -> rustix::io::Result<(std::os::fd::OwnedFd, Option<rustix::net::SocketAddrAny>)> {
        #[cfg(feature = "faults")]
        if let Some(faults) = &mut self.faults
            && let Some(e) = faults.accept()
        {
            return Err(e);
        }
        use rustix::net::SocketFlags;
        rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
    }

    /// Faults injected so far, by the driver and the ring.
    #[cfg(feature = "faults")]
    pub(crate) fn faults_injected(&self) -> u64 {
        let ring = match &self.model {
            Model::Completion(ring) => ring.faults_injected(),
            Model::Readiness { .. } => 0,
        };
        self.faults.as_ref().map_or(0, |f| f.injected) + ring
    }

    /// A connect the fault layer refuses at once (feature `faults`).
    #[cfg(feature = "faults")]
    pub(crate) fn refuse_connect(&mut self) -> Option<io::Error> {
        self.faults.as_mut()?.connect()
    }

    /// A connect under way that the fault layer fails (feature `faults`).
    #[cfg(feature = "faults")]
    pub(crate) fn fail_connect(&mut self) -> Option<io::Error> {
        self.faults.as_mut()?.connect_outcome()
    }

    /// Stops accepting from listener `index` (a pause, or for good).
    pub(crate) fn unwatch_listener(&mut self, index: usize, fd: BorrowedFd<'_>) {
        match &mut self.model {
            Model::Readiness { selector, .. } => {
                let _ = selector.deregister(fd);
            }
            Model::Completion(ring) => ring.stop_accepting(index),
        }
    }

    /// The listeners are about to close: what names them must reach the
    /// kernel first (a queued accept names the fd number).
    pub(crate) fn before_listeners_close(&mut self) {
        if let Model::Completion(ring) = &mut self.model {
            ring.submit_now();
        }
    }

    /// The loop stops: closed sockets whose operations the ring still
    /// cancels close now (no later turn would submit the cancels).
    pub(crate) fn settle(&mut self) {
        if let Model::Completion(ring) = &mut self.model {
            ring.settle(Duration::from_secs(1));
        }
    }
}

/// Writes `conn`'s send `key`, parked by a full socket, as far as the
/// socket takes it: not in the kernel, so the loop writes it itself, as a
/// readiness backend would. Returns the bytes taken, and whether the send
/// is over (its buffer back with the connection).
fn write_parked(
    ring: &mut Ring,
    conn: &mut Conn,
    key: u32,
    now: Instant,
) -> io::Result<(usize, bool)> {
    let (n, over) = ring.write_parked(key, conn.stream.as_fd())?;
    conn.sent(n, now);
    let over = over.map(|buf| conn.send_done(buf)).is_some();
    Ok((n, over))
}

/// The completion driver's reading: a receive armed exactly while
/// wanted. And its poll of the socket: for room while a send is parked by
/// a full socket; with no interest while no receive is armed, so that an
/// error or a hang-up (a peer that reset) is still heard, as a readiness
/// backend's registration hears it; none otherwise.
fn update_receive(ring: &mut Ring, conn: &mut Conn, id: ConnId, max_jobs: u32) -> io::Result<()> {
    if conn.phase == Phase::Connecting {
        return Ok(()); // its poll waits for the connect
    }
    // Input still to offer comes first: receiving ahead of it would let
    // a backlog grow with every pause.
    let want = conn.may_read(max_jobs) && !conn.has(Flags::REOFFER);
    match (conn.recv_state(), want) {
        (RecvState::Idle, true) => {
            ring.arm_recv(id, conn.stream.as_fd())?;
            conn.set_recv_state(RecvState::Armed);
        }
        (RecvState::Armed, false) => {
            ring.cancel_recv(id);
            conn.set_recv_state(RecvState::Cancelling);
        }
        // A receive being cancelled is armed again once its end is back
        // (`Received::Cancelled`).
        _ => {}
    }
    let parked = conn
        .send_in_flight()
        .is_some_and(|key| ring.send_state(key, id) == SendState::Parked);
    let poll = match (parked, want) {
        (true, _) => Some(Interest::WRITABLE),
        (false, false) => Some(Interest::NONE),
        (false, true) => None,
    };
    let fd = conn.stream.as_fd();
    match (conn.has(Flags::POLLED), poll) {
        (false, Some(interest)) => ring.register(fd, Token(id.0), interest)?,
        (true, Some(interest)) if interest != conn.registered => {
            ring.reregister(fd, Token(id.0), interest)?
        }
        (true, None) => ring.deregister(fd)?,
        _ => return Ok(()),
    }
    conn.set(Flags::POLLED, poll.is_some());
    conn.registered = poll.unwrap_or(Interest::NONE);
    Ok(())
}
