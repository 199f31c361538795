//! The completion driver's kernel side (`--backend uring`): a connection's
//! multishot receive into provided buffers, its sends, a listener's
//! multishot accept, the cancels that retire them; and the poll selector
//! (`poll.rs`) in the same ring for everything else.
//! (Over 600 lines: submitting the operations and retiring them, cancel
//! before close, belong together; completions are read in harvest.rs.)
//!
//! A connection's receive needs no memory of ours: its `user_data` is the
//! connection's id (with [`OP_BIT`] and [`RECV_BIT`]), and whether it is
//! armed is two bits of the connection's flags; so an idle connection costs
//! here what it costs on epoll. Sends, accepts and cancels are kept in a
//! table (`ops`), keyed by their `user_data`, freed only by their last
//! completion. When a connection closes with operations in the kernel,
//! its socket is kept here (*doomed*) and they are cancelled; the socket
//! closes when the last of them completes. So the kernel never reads a
//! freed send buffer, a multishot receive never outlives its connection
//! holding the socket open, and no completion of a closed connection
//! reaches a new one in the same slot (ids carry a generation). A cancel's
//! result is read: one that did not take is queued again.
//!
//! `ops.rs` names the operations (`user_data`, the table's entries),
//! `harvest.rs` turns completions into what they mean for the loop.

use std::collections::HashMap;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};
use rustix::io::Errno;
use slab::Slab;

use super::bufs::BufRing;
use super::core::{Cqe, IGNORED, OP_BIT, is, unavailable};
use super::poll::UringPoll;
use crate::conn::{ConnId, RecvState};
use crate::selector::{Events, Interest, Selector, Token};
use crate::stream::Stream;

mod harvest;
mod ops;
#[cfg(test)]
mod tests;

use ops::*;

/// Where a connection's send is, for what may be written past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// In the kernel (or queued for it): nothing may be written past it.
    InKernel,
    /// Waiting for room in its socket (`-EAGAIN`, see [`Done::Sent`]): not
    /// in the kernel; the caller watches the socket for writability and
    /// writes it with [`Ring::write_parked`].
    Parked,
    /// Completed: its bytes are in the socket, and its completion is on
    /// its way to the loop ([`Done::Sent`]). Newer output may go directly.
    Over,
}

/// A closed connection's socket and the operations it still waits for.
struct Doomed {
    _stream: Stream,
    ops: u8,
}

/// What a receive brought.
pub(crate) enum Received {
    /// `len` bytes in provided buffer `bid` (lent with [`Ring::lend`],
    /// given back with [`Ring::give_back`]).
    Data {
        bid: u16,
        len: usize,
    },
    /// The peer's end of stream.
    Eof,
    /// No provided buffer was free (arm it again once buffers are back).
    NoBuffers,
    /// The receive ended after a cancel.
    Cancelled,
    Error(io::Error),
}

/// A completion, resolved to what it means for the loop.
pub(crate) enum Done {
    /// `ended`: the receive is no longer armed.
    Received {
        conn: ConnId,
        received: Received,
        ended: bool,
    },
    /// A send took `result` bytes (or failed). `buf`: the send is over
    /// and its buffer back; `None`: the rest of a short send went in again,
    /// or (with 0 bytes) it waits for room ([`SendState::Parked`]).
    Sent {
        conn: ConnId,
        result: io::Result<usize>,
        buf: Option<Vec<u8>>,
    },
    /// A multishot accept brought a connection (or an error); `more`: it
    /// stays armed.
    Accepted {
        listener: usize,
        result: io::Result<OwnedFd>,
        more: bool,
    },
}

/// A provided buffer's bytes, lent to the loop while the app reads them
/// (the loop is borrowed then, so they leave the ring meanwhile). Should
/// the app panic, they leak rather than free memory the kernel may still
/// write into.
pub(crate) struct Lent {
    bufs: ManuallyDrop<BufRing>,
    bid: u16,
    len: usize,
}

impl Lent {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bufs.get(self.bid, self.len)
    }
}

/// The completion driver: the ring, its operations and provided buffers.
pub(crate) struct Ring {
    /// First field: dropped first, so the kernel is done with every buffer
    /// below before they are freed.
    polls: UringPoll,
    ops: Slab<Op>,
    /// By listener index: its accept.
    accepts: Vec<Option<usize>>,
    doomed: HashMap<ConnId, Doomed>,
    /// Out only while the app reads one of them (see [`Ring::lend`]).
    bufs: Option<BufRing>,
    /// Receives armed whose last completion has not come (so the ring
    /// knows, when it is dropped, whether the kernel may still write).
    armed_recvs: usize,
    /// Connections whose receive ended in the last wait's completions,
    /// until the loop has seen them (the next wait): a connection retired
    /// meanwhile still counts its receive as armed, but nothing more of it
    /// will come, so its socket must not wait for it.
    recv_ended: Vec<ConnId>,
    /// `RECEIVE_WINDOW` where the kernel caps a receive's total; without
    /// it a receive runs ahead as far as the buffer ring allows.
    receive_cap: Option<u32>,
    /// Cancels to queue before the next wait: ones that found the
    /// submission queue unusable, or that did not take; a lost cancel
    /// would leave a receive running or a doomed socket open.
    pending_cancels: Vec<u64>,
    /// This wait's completions of operations, as the kernel gave them.
    cqes: Vec<Cqe>,
    /// ... and resolved, for the loop.
    done: Vec<Done>,
    /// Injected faults (feature `faults`), and the completions they hold
    /// back to a later turn.
    #[cfg(feature = "faults")]
    faults: Option<(crate::faults::Faults, Vec<Cqe>)>,
}

impl Ring {
    /// A ring with a group of `buffers` provided buffers, after checking
    /// that the kernel has what the driver needs (Linux 6.0: multishot
    /// receive).
    pub(crate) fn new(buffers: u16) -> io::Result<Ring> {
        let polls = UringPoll::new()?;
        polls.core.require_opcodes(&[
            (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
            (opcode::Recv::CODE, "IORING_OP_RECV"),
            (opcode::Send::CODE, "IORING_OP_SEND"),
            // Multishot receive came with Linux 6.0, as did zero-copy
            // send, which has an opcode to probe for.
            (opcode::SendZc::CODE, "multishot receive (Linux 6.0)"),
        ])?;
        let bufs = BufRing::new(polls.core.ring(), buffers, BUFFER_SIZE, GROUP)
            .map_err(|e| unavailable(format!("IORING_REGISTER_PBUF_RING: {e}")))?;
        let mut ring = Ring {
            polls,
            ops: Slab::new(),
            accepts: Vec::new(),
            doomed: HashMap::new(),
            bufs: Some(bufs),
            armed_recvs: 0,
            recv_ended: Vec::new(),
            receive_cap: None,
            pending_cancels: Vec::new(),
            cqes: Vec::new(),
            done: Vec::new(),
            #[cfg(feature = "faults")]
            faults: None,
        };
        if ring.kernel_caps_receives()? {
            ring.receive_cap = Some(RECEIVE_WINDOW);
        } else {
            log::info!(target: "iomux::uring", "{NO_RECEIVE_CAP}");
        }
        Ok(ring)
    }

    /// Whether the kernel honours a multishot receive's total cap: one
    /// capped at 1 byte on a socket pair with 2 waiting must end after its
    /// first completion (a kernel without the cap refuses the field with
    /// `EINVAL`).
    fn kernel_caps_receives(&mut self) -> io::Result<bool> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        (&theirs).write_all(b"ok")?;
        let entry = with_optlen(
            opcode::RecvMulti::new(types::Fd(ours.as_raw_fd()), GROUP).build(),
            1,
        );
        // SAFETY: `ours` outlives the receive: it ends by its cap, its
        // error, or (below) at the end of stream, all waited for here.
        unsafe { self.polls.core.push(&entry.user_data(CAP_PROBE))? };
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut events = Events::with_capacity(4);
        let mut cqes = Vec::new();
        let mut capped = None;
        let mut ended = false;
        while !ended && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.polls.wait(&mut events, Some(left), |c| cqes.push(c))?;
            for c in cqes.drain(..).filter(|c| c.user_data == CAP_PROBE) {
                if let Some(bid) = io_uring::cqueue::buffer_select(c.flags) {
                    self.give_back(bid);
                }
                ended = !c.more();
                capped.get_or_insert(c.result > 0 && ended);
                if !ended {
                    // The cap was not honoured: end it with the stream.
                    theirs.shutdown(std::net::Shutdown::Write)?;
                }
            }
        }
        if !ended {
            return Err(unavailable(
                "a receive on a socket pair did not end within 1 s",
            ));
        }
        Ok(capped.unwrap_or(false))
    }

    /// Whether the driver can run here (an `Unsupported` error says why).
    pub(crate) fn probe() -> io::Result<()> {
        Ring::new(crate::Config::default().uring_buffers).map(drop)
    }

    /// Queues `entry` with `user_data`.
    ///
    /// # Safety
    ///
    /// What the entry points to must stay valid until the operation's last
    /// completion: a socket kept by its connection or doomed here, a
    /// buffer owned by the operation.
    unsafe fn submit(&mut self, user_data: u64, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: passed on from the caller.
        unsafe { self.polls.core.push(&entry.user_data(user_data)) }
    }

    /// Queues table operation `key` (already in the table).
    ///
    /// # Safety
    ///
    /// As for [`Ring::submit`].
    unsafe fn submit_key(&mut self, key: usize) -> io::Result<()> {
        let entry = match &self.ops[key] {
            Op::Send { fd, buf, off, .. } => {
                let bytes = &buf[*off..];
                #[cfg(feature = "faults")]
                let bytes = match &mut self.faults {
                    // A short send: the rest follows its completion.
                    Some((faults, _)) => &bytes[..faults.send_len(bytes.len())],
                    None => bytes,
                };
                let len = bytes.len().min(u32::MAX as usize) as u32;
                opcode::Send::new(types::Fd(*fd), bytes.as_ptr(), len)
                    .flags(send_flags().bits() as i32)
                    .build()
            }
            Op::Accept { .. } => unreachable!("accepts are queued by `accept`"),
            Op::Cancel { target } => opcode::AsyncCancel::new(*target).build(),
        };
        // SAFETY: passed on from the caller.
        unsafe { self.submit(key as u64 | OP_BIT, entry) }
    }

    /// Cancels the request with `user_data` `target`; the cancel's result
    /// is read, and it is queued again if it did not take.
    fn cancel(&mut self, target: u64) {
        let key = self.ops.insert(Op::Cancel { target });
        // SAFETY: a cancel refers to no memory of ours.
        if let Err(e) = unsafe { self.submit_key(key) } {
            self.ops.remove(key);
            log::debug!(target: "iomux::uring", "cancel queued for later: {e}");
            self.pending_cancels.push(target);
        }
    }

    /// Before the loop waits: queues the cancels that are due again.
    fn queue_pending(&mut self) {
        for target in std::mem::take(&mut self.pending_cancels) {
            self.cancel(target);
        }
    }

    /// Whether the kernel may still use memory or sockets of ours.
    fn busy(&self) -> bool {
        self.ops_in_kernel() || !self.doomed.is_empty() || self.armed_recvs > 0
    }

    /// Whether an operation of the table is in the kernel (a parked send
    /// is not).
    fn ops_in_kernel(&self) -> bool {
        self.ops
            .iter()
            .any(|(_, op)| !matches!(op, Op::Send { parked: true, .. }))
    }

    /// Arms connection `id`'s multishot receive on its socket.
    pub(crate) fn arm_recv(&mut self, id: ConnId, fd: BorrowedFd<'_>) -> io::Result<()> {
        let user_data = recv_user_data(id)
            .ok_or_else(|| io::Error::other("connection table past 2^31 slots"))?;
        let mut entry = opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), GROUP).build();
        if let Some(cap) = self.receive_cap {
            // Ends (armed again if still wanted) after this many bytes.
            entry = with_optlen(entry, cap);
        }
        // SAFETY: the socket stays open while the receive is armed (its
        // connection holds it, then `retire` dooms it); the buffers are
        // the ring's, which outlive it (see `Drop`).
        unsafe { self.submit(user_data, entry)? };
        self.armed_recvs += 1;
        self.recv_ended.retain(|c| *c != id); // armed anew
        Ok(())
    }

    /// Cancels connection `id`'s receive; its end comes back as
    /// [`Received::Cancelled`] (or whatever it ended with first).
    pub(crate) fn cancel_recv(&mut self, id: ConnId) {
        if let Some(user_data) = recv_user_data(id) {
            self.cancel(user_data);
        }
    }

    /// Sends `buf[off..]` on connection `id`'s socket; the buffer comes
    /// back with the send's last completion ([`Done::Sent`]). Returns the
    /// send's key (for [`Ring::retire`]).
    pub(crate) fn send(
        &mut self,
        id: ConnId,
        fd: BorrowedFd<'_>,
        buf: Vec<u8>,
        off: usize,
    ) -> io::Result<u32> {
        let key = u32::try_from(self.ops.vacant_key())
            .map_err(|_| io::Error::other("more than 2^32 operations in flight"))?;
        let op = Op::Send {
            conn: id,
            fd: fd.as_raw_fd(),
            buf,
            off,
            parked: false,
        };
        let inserted = self.ops.insert(op);
        debug_assert_eq!(inserted, key as usize);
        // SAFETY: the bytes are the operation's own buffer (moved into the
        // table; a Vec's heap memory does not move with it), kept until its
        // last completion; the socket as for `arm_recv`.
        if let Err(e) = unsafe { self.submit_key(inserted) } {
            self.ops.remove(inserted);
            return Err(e);
        }
        Ok(key)
    }

    /// Where connection `id`'s send `key` is: see [`SendState`].
    pub(crate) fn send_state(&self, key: u32, id: ConnId) -> SendState {
        match self.ops.get(key as usize) {
            Some(Op::Send { conn, parked, .. }) if *conn == id => {
                if *parked {
                    SendState::Parked
                } else {
                    SendState::InKernel
                }
            }
            // Its last completion is among those the loop has not seen yet
            // (the key may already serve another operation).
            _ => SendState::Over,
        }
    }

    /// Writes what parked send `key` holds straight to `fd`, its socket,
    /// as far as the socket takes it: the operation is not in the kernel,
    /// so nothing can overtake it or be overtaken. Returns the bytes taken,
    /// and the buffer once all of it went (the send is over then).
    pub(crate) fn write_parked(
        &mut self,
        key: u32,
        fd: BorrowedFd<'_>,
    ) -> io::Result<(usize, Option<Vec<u8>>)> {
        let key = key as usize;
        let Some(Op::Send {
            buf,
            off,
            parked: true,
            ..
        }) = self.ops.get_mut(key)
        else {
            return Ok((0, None));
        };
        let mut taken = 0;
        while *off < buf.len() {
            match rustix::net::send(fd, &buf[*off..], send_flags()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *off += n;
                    taken += n;
                }
                Err(Errno::AGAIN) => return Ok((taken, None)),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let Op::Send { buf, .. } = self.ops.remove(key) else {
            unreachable!("matched as a send above")
        };
        Ok((taken, Some(buf)))
    }

    /// Arms listener `index`'s multishot accept on its socket.
    pub(crate) fn accept(&mut self, index: usize, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.accepts.len() <= index {
            self.accepts.resize(index + 1, None);
        }
        if self.accepts[index].is_some() {
            return Ok(());
        }
        let key = self.ops.insert(Op::Accept { listener: index });
        let entry = opcode::AcceptMulti::new(types::Fd(fd.as_raw_fd()))
            .flags(sock_flags())
            .build();
        // SAFETY: the listener stays open while it is armed (the loop
        // cancels the accept and submits that before it drops the
        // listener, and a late connection is closed); no memory of ours
        // is involved.
        if let Err(e) = unsafe { self.submit(key as u64 | OP_BIT, entry) } {
            self.ops.remove(key);
            return Err(e);
        }
        self.accepts[index] = Some(key);
        Ok(())
    }

    /// Hands what is queued to the kernel now (before closing descriptors
    /// the queued requests name).
    pub(crate) fn submit_now(&mut self) {
        self.queue_pending();
        if let Err(e) = self.polls.core.ring().submit() {
            log::debug!(target: "iomux::uring", "submit: {e}");
        }
    }

    /// Cancels listener `index`'s accept (pausing or closing it).
    pub(crate) fn stop_accepting(&mut self, index: usize) {
        if let Some(key) = self.accepts.get_mut(index).and_then(Option::take) {
            self.cancel(key as u64 | OP_BIT);
        }
    }

    /// Connection `id` closed: cancels what it has in the kernel (its
    /// receive as `recv` says, its send `send`) and keeps its socket until
    /// that is over (closed at once if nothing is).
    pub(crate) fn retire(
        &mut self,
        id: ConnId,
        stream: Stream,
        recv: RecvState,
        send: Option<u32>,
    ) {
        let mut ops = 0;
        // Its end may be among the completions the loop has not seen yet.
        let over = self.recv_ended.contains(&id);
        match recv {
            _ if over => {}
            RecvState::Idle => {}
            RecvState::Armed => {
                self.cancel_recv(id);
                ops += 1;
            }
            RecvState::Cancelling => ops += 1,
        }
        if let Some(key) = send {
            match self.send_state(key, id) {
                // Not in the kernel: its buffer is simply dropped.
                SendState::Parked => drop(self.ops.remove(key as usize)),
                // A send to a peer that stopped reading might never end.
                SendState::InKernel => {
                    self.cancel(u64::from(key) | OP_BIT);
                    ops += 1;
                }
                SendState::Over => {}
            }
        }
        if ops > 0 {
            self.doomed.insert(
                id,
                Doomed {
                    _stream: stream,
                    ops,
                },
            );
        } // else dropping the stream closes it
    }

    /// Injects `faults` from now on (short sends, completions held back
    /// and reordered, refused submissions).
    #[cfg(feature = "faults")]
    pub(crate) fn inject(&mut self, faults: crate::faults::Faults) {
        self.faults = Some((faults, Vec::new()));
    }

    /// Faults the ring injected so far.
    #[cfg(feature = "faults")]
    pub(crate) fn faults_injected(&self) -> u64 {
        self.faults.as_ref().map_or(0, |(f, _)| f.injected)
    }

    /// Runs the ring until every doomed socket is closed and every
    /// operation is over (within `within`): when the loop stops, no later
    /// turn would submit the cancels. What completes meanwhile is dropped
    /// (an accepted socket is closed). Submits at least once.
    pub(crate) fn settle(&mut self, within: Duration) {
        self.run_until(within, |ring| {
            ring.doomed.is_empty() && !ring.ops_in_kernel()
        });
    }

    /// Waits on the ring, dropping what completes (buffers given back,
    /// accepted sockets closed), until `quiet` holds or `within` passes;
    /// submits at least once.
    fn run_until(&mut self, within: Duration, quiet: impl Fn(&Ring) -> bool) {
        let deadline = Instant::now() + within;
        let mut events = Events::with_capacity(64);
        let mut batch = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if quiet(self) { Duration::ZERO } else { left };
            if self.wait_once(&mut events, Some(wait)).is_err() {
                return;
            }
            self.take_done(&mut batch);
            for done in batch.drain(..) {
                if let Done::Received {
                    received: Received::Data { bid, .. },
                    ..
                } = done
                {
                    self.give_back(bid);
                }
            }
            if quiet(self) || left.is_zero() {
                return;
            }
        }
    }
}

/// The ring's poll requests are the selector for what is not a
/// connection's data: the waker, the signal pipe, sources, connects in
/// progress, and a connection's hang-up watch while no receive is armed.
impl Selector for Ring {
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        self.polls.register(fd, token, interest)
    }
    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.polls.reregister(fd, token, interest)
    }
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.polls.deregister(fd)
    }
    /// Submits this turn's requests and waits, in one `io_uring_enter`;
    /// the operations' completions are resolved for [`Ring::take_done`].
    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.queue_pending();
        self.recv_ended.clear(); // the loop has seen them
        #[cfg(feature = "faults")]
        if let Some((faults, _)) = &mut self.faults
            && faults.busy()
        {
            return Ok(()); // as if the kernel said EBUSY, with nothing to harvest
        }
        // Completions held back are posted "later": by the next wait, not
        // after a sleep nothing else would end.
        #[cfg(feature = "faults")]
        let timeout = match &self.faults {
            Some((_, held)) if !held.is_empty() => Some(Duration::ZERO),
            _ => timeout,
        };
        let mut cqes = std::mem::take(&mut self.cqes);
        let waited = self.polls.wait(events, timeout, |c| cqes.push(c));
        #[cfg(feature = "faults")]
        if let Some((faults, held)) = &mut self.faults {
            faults.reorder(&mut cqes, held, |c| c.user_data);
        }
        for c in cqes.drain(..) {
            if let Some(done) = self.resolve(c) {
                self.done.push(done);
            }
        }
        self.cqes = cqes;
        waited
    }
    fn name(&self) -> &'static str {
        "uring"
    }
}

impl Drop for Ring {
    /// Cancels everything in the kernel and waits (a little) for it to
    /// end, so the buffers the fields below hold are freed only once the
    /// kernel is done with them; if it is not done in time, they are
    /// leaked rather than freed under it.
    fn drop(&mut self) {
        if self.busy() {
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            // SAFETY: a cancel refers to no memory of ours.
            let _ = unsafe { self.submit(IGNORED, entry) };
            self.run_until(Duration::from_secs(1), |ring| !ring.busy());
        }
        if self.busy() {
            log::warn!(target: "iomux::uring", "the ring did not settle: its buffers are leaked");
            std::mem::forget(self.bufs.take());
            for op in self.ops.drain() {
                std::mem::forget(op);
            }
        }
    }
}

/// `MSG_NOSIGNAL`: a send to a closed peer fails with `EPIPE` instead of
/// raising `SIGPIPE`; `MSG_DONTWAIT`: a full socket fails it with
/// `EAGAIN` (see `resolve`) rather than leaving it to the kernel.
fn send_flags() -> rustix::net::SendFlags {
    rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT
}

/// Accepted sockets are non-blocking (the loop's sync paths, such as a
/// lingering close's `shutdown`, must never block) and close-on-exec.
fn sock_flags() -> i32 {
    (rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC).bits() as i32
}
