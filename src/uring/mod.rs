//! The io_uring completion driver's kernel side (`--backend uring`).
//!
//! On the readiness backends the loop asks "which sockets are ready?" and
//! then makes a `recv` and a `send` system call per request. Here it asks
//! the kernel to do the I/O: a multishot accept per listener, a multishot
//! receive per connection into a shared ring of provided buffers, a send
//! per batch of output; every request of a turn goes in with the one
//! `io_uring_enter` that also waits for the turn's completions.
//!
//! What is not a connection's data (the waker, the signal pipe, the app's
//! own descriptors, an outbound connect in progress) still goes through
//! poll requests in the same ring: [`Ring::poll`] is a [`UringPoll`]
//! selector, and the loop uses it as it uses any other.
//!
//! Operations are kept in a table ([`Ring`]'s `ops`); an operation's key is
//! its `user_data` (with [`OP_BIT`]) and is freed only by its last
//! completion, so a completion always finds the operation it belongs to.
//! When a connection closes with operations in the kernel, its socket is
//! kept here (*doomed*) and they are cancelled; the socket closes when the
//! last of them completes. So the kernel never reads a freed send buffer,
//! a multishot receive never outlives its connection holding the socket
//! open, and no completion of a closed connection reaches a new one in the
//! same slot.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{Probe, cqueue, opcode, types};
use rustix::io::Errno;
use slab::Slab;

use crate::conn::ConnId;
use crate::selector::uring_poll::{IGNORED, OP_BIT, OpCompletion};
use crate::selector::{Events, Selector, UringPoll};
use crate::stream::Stream;

mod bufs;

pub(crate) use bufs::BufRing;

/// Provided buffers: shared by all connections of a loop.
const BUFFERS: u16 = 512;
const BUFFER_SIZE: usize = 4096;
/// The one buffer group.
const GROUP: u16 = 0;

/// Who an operation works for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Owner {
    Conn(ConnId),
    Listener(usize),
    /// A closed connection's socket, kept until its operations are done.
    Doomed(usize),
}

enum Kind {
    /// A multishot receive.
    Recv,
    /// A send of `buf[off..]`; the buffer is the operation's until it
    /// completes.
    Send { buf: Vec<u8>, off: usize },
    /// A multishot accept.
    Accept,
}

struct Op {
    owner: Owner,
    kind: Kind,
}

/// A closed connection's socket and the operations it still waits for.
struct Doomed {
    _stream: Stream,
    ops: u8,
}

/// A connection's receive.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum Recv {
    #[default]
    Idle,
    Armed(usize),
    /// Cancelled; its last completion has not come yet.
    Cancelling(usize),
}

/// A connection slot's operations (for the connection now in the slot).
#[derive(Copy, Clone, Debug, Default)]
struct Slot {
    recv: Recv,
    send: Option<usize>,
}

/// What a receive brought.
pub(crate) enum Received {
    /// `len` bytes in provided buffer `bid` (given back by the loop with
    /// [`Ring::give_back`] once handed on).
    Data {
        bid: u16,
        len: usize,
    },
    /// The peer's end of stream (the receive ended).
    Eof,
    /// No provided buffer was free (the receive ended; arm it again once
    /// buffers are back).
    NoBuffers,
    /// The receive ended after a cancel.
    Cancelled,
    Error(io::Error),
}

/// A completion, resolved to what it means for the loop.
pub(crate) enum Done {
    Received(ConnId, Received),
    /// A send took `result` bytes (or failed); `buf[off..]` is what is left
    /// of it (`off` already moved past what was taken).
    Sent {
        conn: ConnId,
        result: io::Result<usize>,
        buf: Vec<u8>,
        off: usize,
    },
    /// A multishot accept brought a connection (or an error); `more`: it
    /// stays armed.
    Accepted {
        listener: usize,
        result: io::Result<OwnedFd>,
        more: bool,
    },
}

/// The completion driver: the ring, its operations and provided buffers.
pub(crate) struct Ring {
    /// First field: dropped first, so the kernel is done with every buffer
    /// below before they are freed.
    pub poll: UringPoll,
    ops: Slab<Op>,
    /// By connection slot index.
    slots: Vec<Slot>,
    /// By listener index: its accept.
    accepts: Vec<Option<usize>>,
    doomed: Slab<Doomed>,
    /// Out only while the app reads one of them (see [`Ring::take_bufs`]).
    bufs: Option<BufRing>,
    /// Completions taken from the last wait.
    completions: Vec<OpCompletion>,
}

fn unavailable(reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring completion driver unavailable: {reason}"),
    )
}

impl Ring {
    /// A ring with a provided-buffer group, after checking that the kernel
    /// has what the driver needs (Linux 6.0: multishot receive).
    pub fn new() -> io::Result<Ring> {
        let poll = UringPoll::new()?;
        let mut probe = Probe::new();
        poll.ring()
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| unavailable(format!("IORING_REGISTER_PROBE: {e}")))?;
        for (code, name) in [
            (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
            (opcode::Recv::CODE, "IORING_OP_RECV"),
            (opcode::Send::CODE, "IORING_OP_SEND"),
            (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
            // Multishot receive came with Linux 6.0, as did zero-copy
            // send, which has an opcode to probe for.
            (opcode::SendZc::CODE, "multishot receive (Linux 6.0)"),
        ] {
            if !probe.is_supported(code) {
                return Err(unavailable(format!("the kernel lacks {name}")));
            }
        }
        let bufs = BufRing::new(poll.ring(), BUFFERS, BUFFER_SIZE, GROUP)
            .map_err(|e| unavailable(format!("IORING_REGISTER_PBUF_RING: {e}")))?;
        Ok(Ring {
            poll,
            ops: Slab::new(),
            slots: Vec::new(),
            accepts: Vec::new(),
            doomed: Slab::new(),
            bufs: Some(bufs),
            completions: Vec::new(),
        })
    }

    /// Whether the driver can run here (an `Unsupported` error says why).
    pub fn probe() -> io::Result<()> {
        Ring::new().map(drop)
    }

    fn slot(&mut self, id: ConnId) -> &mut Slot {
        let index = id.index();
        if self.slots.len() <= index {
            self.slots.resize(index + 1, Slot::default());
        }
        &mut self.slots[index]
    }

    /// Queues `entry` for operation `key`.
    ///
    /// # Safety
    ///
    /// What the entry points to must stay valid until the operation's last
    /// completion: a socket kept by its connection or doomed here, a
    /// buffer owned by the operation.
    unsafe fn submit(&mut self, key: usize, entry: io_uring::squeue::Entry) -> io::Result<()> {
        let entry = entry.user_data(key as u64 | OP_BIT);
        // SAFETY: passed on from the caller.
        let pushed = unsafe { self.poll.push_op(entry) };
        if pushed.is_err() {
            self.ops.remove(key);
        }
        pushed
    }

    fn cancel(&mut self, key: usize) {
        let entry = opcode::AsyncCancel::new(key as u64 | OP_BIT)
            .build()
            .user_data(IGNORED);
        // SAFETY: a cancel refers to no memory of ours.
        if let Err(e) = unsafe { self.poll.push_op(entry) } {
            log::warn!(target: "iomux::uring", "cannot cancel an operation: {e}");
        }
    }

    /// Arms or cancels connection `id`'s receive (on socket `fd`) as the
    /// loop wants it. A receive being cancelled is armed again only after
    /// its end came back ([`Received::Cancelled`]).
    pub fn want_recv(&mut self, id: ConnId, fd: RawFd, want: bool) -> io::Result<()> {
        match (self.slot(id).recv, want) {
            (Recv::Idle, true) => {
                let key = self.ops.insert(Op {
                    owner: Owner::Conn(id),
                    kind: Kind::Recv,
                });
                let entry = opcode::RecvMulti::new(types::Fd(fd), GROUP).build();
                // SAFETY: the socket stays open while the operation lives
                // (its connection holds it, then `retire` dooms it); the
                // buffers are the ring's, which outlive it.
                unsafe { self.submit(key, entry)? };
                self.slot(id).recv = Recv::Armed(key);
            }
            (Recv::Armed(key), false) => {
                self.cancel(key);
                self.slot(id).recv = Recv::Cancelling(key);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a send of connection `id` is in the kernel.
    pub fn sending(&self, id: ConnId) -> bool {
        self.slots.get(id.index()).is_some_and(|s| s.send.is_some())
    }

    /// Sends `buf[off..]` on connection `id`'s socket `fd`; the buffer
    /// comes back with its completion ([`Done::Sent`]).
    pub fn send(&mut self, id: ConnId, fd: RawFd, buf: Vec<u8>, off: usize) -> io::Result<()> {
        let len = (buf.len() - off).min(u32::MAX as usize) as u32;
        let ptr = buf[off..].as_ptr();
        let key = self.ops.insert(Op {
            owner: Owner::Conn(id),
            kind: Kind::Send { buf, off },
        });
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc_msg_nosignal())
            .build();
        // SAFETY: the bytes are the operation's own buffer (moved into the
        // table above; a Vec's heap memory does not move with it), kept
        // until its completion; the socket as for `want_recv`.
        unsafe { self.submit(key, entry)? };
        self.slot(id).send = Some(key);
        Ok(())
    }

    /// Arms listener `index`'s multishot accept on socket `fd`.
    pub fn accept(&mut self, index: usize, fd: RawFd) -> io::Result<()> {
        if self.accepts.len() <= index {
            self.accepts.resize(index + 1, None);
        }
        if self.accepts[index].is_some() {
            return Ok(());
        }
        let key = self.ops.insert(Op {
            owner: Owner::Listener(index),
            kind: Kind::Accept,
        });
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc_sock_flags())
            .build();
        // SAFETY: the listener stays open while it is armed (the loop
        // cancels the accept before it drops the listener, and a late
        // connection is closed); no memory of ours is involved.
        unsafe { self.submit(key, entry)? };
        self.accepts[index] = Some(key);
        Ok(())
    }

    /// Cancels listener `index`'s accept (pausing or closing it).
    pub fn stop_accepting(&mut self, index: usize) {
        if let Some(key) = self.accepts.get_mut(index).and_then(Option::take) {
            self.cancel(key);
        }
    }

    /// A connection closed: cancels what it has in the kernel and keeps its
    /// socket until that is over (closed at once if nothing is).
    pub fn retire(&mut self, id: ConnId, stream: Stream) {
        let slot = std::mem::take(self.slot(id));
        let recv = match slot.recv {
            Recv::Idle => None,
            Recv::Armed(key) => {
                self.cancel(key);
                Some(key)
            }
            Recv::Cancelling(key) => Some(key),
        };
        if let Some(key) = slot.send {
            // A send to a peer that stopped reading would never end.
            self.cancel(key);
        }
        let keys = [recv, slot.send];
        let ops = keys.iter().flatten().count() as u8;
        if ops == 0 {
            return; // dropping the stream closes it
        }
        let doomed = self.doomed.insert(Doomed {
            _stream: stream,
            ops,
        });
        for key in keys.into_iter().flatten() {
            if let Some(op) = self.ops.get_mut(key) {
                op.owner = Owner::Doomed(doomed);
            }
        }
    }

    /// Takes the completions of the last wait into `out` (to be resolved
    /// one by one with [`Ring::resolve`]).
    pub fn take_completions(&mut self, out: &mut Vec<OpCompletion>) {
        self.poll.take_completions(&mut self.completions);
        out.append(&mut self.completions);
    }

    /// What completion `c` means; `None` when it concerns nobody any more
    /// (a doomed socket's operation, a stale accept).
    pub fn resolve(&mut self, c: OpCompletion) -> Option<Done> {
        let key = c.op as usize;
        let last = !cqueue::more(c.flags);
        let op = self.ops.get(key)?;
        let owner = op.owner;
        let buffer = cqueue::buffer_select(c.flags);
        let op = if last {
            self.ops.remove(key)
        } else {
            // A multishot operation goes on: its entry stays.
            Op {
                owner,
                kind: match op.kind {
                    Kind::Recv => Kind::Recv,
                    Kind::Accept => Kind::Accept,
                    Kind::Send { .. } => return None, // sends are one-shot
                },
            }
        };
        let result = c.result;
        match (owner, op.kind) {
            (Owner::Doomed(d), kind) => {
                if let Some(bid) = buffer {
                    self.give_back(bid);
                }
                drop(kind); // a send's buffer is free now
                if last && let Some(doomed) = self.doomed.get_mut(d) {
                    doomed.ops -= 1;
                    if doomed.ops == 0 {
                        self.doomed.remove(d); // closes the socket
                    }
                }
                None
            }
            (Owner::Conn(id), Kind::Recv) => {
                if last {
                    self.slot(id).recv = Recv::Idle;
                }
                let received = match (result, buffer) {
                    (n, Some(bid)) if n > 0 => Received::Data {
                        bid,
                        len: n as usize,
                    },
                    (0, _) => Received::Eof,
                    (n, _) if n == -Errno::NOBUFS.raw_os_error() => Received::NoBuffers,
                    (n, _) if n == -Errno::CANCELED.raw_os_error() => Received::Cancelled,
                    (n, _) if n < 0 => Received::Error(io::Error::from_raw_os_error(-n)),
                    _ => Received::Error(io::Error::other(
                        "a receive completed without a provided buffer",
                    )),
                };
                Some(Done::Received(id, received))
            }
            (Owner::Conn(id), Kind::Send { buf, off }) => {
                self.slot(id).send = None;
                let result = if result >= 0 {
                    Ok(result as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-result))
                };
                let off = off + *result.as_ref().unwrap_or(&0);
                Some(Done::Sent {
                    conn: id,
                    result,
                    off: off.min(buf.len()),
                    buf,
                })
            }
            (Owner::Listener(index), Kind::Accept) => {
                if last
                    && let Some(slot) = self.accepts.get_mut(index)
                    && *slot == Some(key)
                {
                    *slot = None;
                }
                let result = if result >= 0 {
                    // SAFETY: a successful accept's result is a new
                    // descriptor that nothing else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(result) })
                } else {
                    Err(io::Error::from_raw_os_error(-result))
                };
                Some(Done::Accepted {
                    listener: index,
                    result,
                    more: !last,
                })
            }
            // Every kind has one owner kind.
            (Owner::Conn(_), Kind::Accept) | (Owner::Listener(_), _) => None,
        }
    }

    /// The provided buffers, out of the ring while the app reads one (the
    /// loop is borrowed then). Should the app panic meanwhile they leak,
    /// rather than free memory the kernel may still write into.
    pub fn take_bufs(&mut self) -> Option<ManuallyDrop<BufRing>> {
        self.bufs.take().map(ManuallyDrop::new)
    }

    pub fn put_bufs(&mut self, bufs: ManuallyDrop<BufRing>) {
        self.bufs = Some(ManuallyDrop::into_inner(bufs));
    }

    /// Lends a provided buffer to the kernel again.
    pub fn give_back(&mut self, bid: u16) {
        if let Some(bufs) = &mut self.bufs {
            bufs.give_back(bid);
        }
    }

    /// Runs the ring until every doomed socket is closed (within
    /// `within`): when the loop stops, no later turn would. What completes
    /// meanwhile is dropped (an accepted socket is closed).
    pub fn settle(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut events = Events::with_capacity(64);
        let mut batch = Vec::new();
        while !self.doomed.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.poll.select(&mut events, Some(left)).is_err() {
                return;
            }
            self.take_completions(&mut batch);
            for c in batch.drain(..) {
                if let Some(Done::Received(_, Received::Data { bid, .. })) = self.resolve(c) {
                    self.give_back(bid);
                }
            }
        }
    }
}

/// `MSG_NOSIGNAL`: a send to a closed peer fails with `EPIPE` instead of
/// raising `SIGPIPE`.
fn libc_msg_nosignal() -> i32 {
    rustix::net::SendFlags::NOSIGNAL.bits() as i32
}

/// Accepted sockets are non-blocking (the loop's sync paths, such as a
/// lingering close's `shutdown`, must never block) and close-on-exec.
fn libc_sock_flags() -> i32 {
    (rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC).bits() as i32
}

/// The raw descriptor of a connection's socket.
pub(crate) fn raw(stream: &Stream) -> RawFd {
    use std::os::fd::AsFd;
    stream.as_fd().as_raw_fd()
}
