//! `io_uring(7)` as a readiness source: `IORING_OP_POLL_ADD` requests, and
//! the [`Selector`] built on them (`uring-poll`; the completion driver uses
//! the same polls for what is not a connection's data).
//!
//! Notes on this API:
//! - A poll request is a one-shot `poll(2)` of one fd that completes in the
//!   completion ring. Re-armed after each completion it is level-triggered:
//!   a poll armed on an fd that is still ready completes at once, inline in
//!   the `io_uring_enter` that submits it. That is the mode used here, so
//!   [`Selector::edge_triggered`] is false and the loop runs as on epoll.
//! - Arming is lazy and batched: `register` and `reregister` only note the
//!   fd; the next wait builds one poll per noted fd with the interest it has
//!   *then* and submits them all in the same `io_uring_enter` that waits
//!   (with the timeout as `IORING_ENTER_EXT_ARG`, no timeout request). So a
//!   request costs no system call of its own, and an interest changed twice
//!   between waits reaches the kernel once.
//! - The kernel always adds `POLLERR | POLLHUP | POLLNVAL | POLLRDHUP` to a
//!   poll's mask. `POLLRDHUP` stays set once the peer shut its write side, so
//!   a one-shot poll that did not ask for reading would complete at once on
//!   every re-arm, reporting nothing we may report: a spin. Such a
//!   registration is *parked* on a multishot poll (`IORING_POLL_ADD_MULTI`),
//!   which completes only on the fd's next wake-up (`IORING_CQE_F_MORE` says
//!   it stays armed; without it the kernel dropped it and it is re-armed).
//!   The first completion worth reporting takes it back to one-shot polls.
//! - Cancellation is by `user_data`: every poll carries the fd and a
//!   registration generation. Deregistering (or changing the interest of an
//!   armed poll) queues an `IORING_OP_ASYNC_CANCEL` for that `user_data` and
//!   forgets the poll; a completion that still comes for it (the
//!   cancellation's `-ECANCELED`, or readiness that raced it) no longer
//!   matches the fd's current generation and is dropped, even when the fd
//!   number was closed and reused at once.
//! - Not `IORING_OP_POLL_REMOVE`: it must take the poll from under its
//!   wake-up, and when that wake-up's work is still pending (with
//!   `DEFER_TASKRUN` it runs only inside `io_uring_enter`) it answers
//!   `-EALREADY` and removes nothing, so a multishot poll survives its
//!   removal, holding the file of a descriptor the loop has closed: the
//!   socket never closes (no FIN; CLOSE-WAIT with no owner). A cancel marks
//!   the poll and lets its own wake-up work end it. Its result is read all
//!   the same, and a cancel that did not take (`-EALREADY`) is queued again.
//! - A poll holds a reference to the *file*: deregistering runs the cancel
//!   at once (one `io_uring_enter`, as epoll's `EPOLL_CTL_DEL` is one
//!   `epoll_ctl`), so that closing the descriptor right after closes the
//!   socket.
//! - Completions beyond the capacity of [`Events`] stay in the ring for the
//!   next wait (which then does not sleep); the kernel keeps overflowing
//!   completions on a list of its own (`IORING_FEAT_NODROP`).
//! - Needs Linux 5.13 (poll add, async cancel, `EXT_ARG`, multishot poll). Where
//!   io_uring cannot be set up (`kernel.io_uring_disabled`, a seccomp
//!   filter, an old kernel) [`UringPoll::new`] fails with an
//!   `Unsupported` error that names the reason; `IOMUX_NO_URING=1` makes it
//!   fail the same way (to test that path).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use rustix::event::PollFlags;
use rustix::io::Errno;

use super::core::{CANCEL_BIT, Core, Cqe, OP_BIT, is};
use crate::selector::{
    Event, Events, Interest, Ready, Selector, Token, already_registered, not_registered,
};

/// Waits one `wait_once` may make when wake-ups report nothing.
const MAX_PASSES: usize = 8;
/// Registration generations have 30 bits, so a poll's `user_data` never
/// has [`OP_BIT`] or [`CANCEL_BIT`].
const GENERATION_MASK: u32 = 0x3fff_ffff;

/// Where a registration's poll is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// No poll in the kernel; the next wait arms one (the fd is in
    /// `to_arm`), multishot if `parked`.
    Queued { parked: bool },
    /// A one-shot poll is in the kernel (or in the submission queue).
    Armed,
    /// A multishot poll is in the kernel (see "parked" above).
    Parked,
    /// The kernel refused the poll (reported as an error); nothing is
    /// armed until the interest is set again.
    Failed,
}

#[derive(Copy, Clone, Debug)]
struct Registration {
    token: Token,
    interest: Interest,
    generation: u32,
    state: State,
}

/// `user_data` of a poll: the fd and its registration's generation.
fn key(fd: RawFd, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(fd as u32)
}

fn poll_mask(interest: Interest) -> u32 {
    let mut flags = PollFlags::empty();
    if interest.is_readable() {
        flags |= PollFlags::IN;
    }
    if interest.is_writable() {
        flags |= PollFlags::OUT;
    }
    u32::from(flags.bits())
}

/// What a completion's mask tells the caller, filtered to the interest
/// (the kernel adds `POLLRDHUP` unasked); `None` if nothing.
fn event(token: Token, interest: Interest, mask: u32) -> Option<Event> {
    let f = PollFlags::from_bits_truncate(mask as u16);
    let read = interest.is_readable();
    let mut ready = Ready::EMPTY;
    ready.set(
        Ready::READABLE,
        read && f.intersects(PollFlags::IN | PollFlags::PRI),
    );
    ready.set(
        Ready::WRITABLE,
        interest.is_writable() && f.contains(PollFlags::OUT),
    );
    ready.set(Ready::ERROR, f.intersects(PollFlags::ERR | PollFlags::NVAL));
    ready.set(Ready::HUP, f.contains(PollFlags::HUP));
    ready.set(Ready::READ_CLOSED, read && f.contains(PollFlags::RDHUP));
    (ready != Ready::EMPTY).then(|| Event::new(token, ready))
}

/// The io_uring poll selector (`uring-poll`): a ring and its poll
/// registrations. The completion driver keeps one for the loop's own
/// descriptors, and takes the completions of its own operations from it.
pub struct UringPoll {
    pub(crate) core: Core,
    /// Registration of each fd, indexed by fd.
    regs: Vec<Option<Registration>>,
    /// fds whose poll the next wait arms (an fd may appear twice; its state
    /// says whether it still needs it).
    to_arm: Vec<RawFd>,
    /// `user_data` of polls the next wait cancels.
    to_cancel: Vec<u64>,
    next_generation: u32,
    /// This wait's completions (reused, no allocation).
    cqes: Vec<Cqe>,
}

impl std::fmt::Debug for UringPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringPoll")
            .field("watched", &self.regs.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

impl UringPoll {
    /// A new ring, after checking that the kernel has what this needs.
    ///
    /// # Errors
    /// `Unsupported`, saying why, where io_uring is unavailable or lacks
    /// the operations used (Linux 5.13); what `io_uring_setup` says.
    pub fn new() -> io::Result<UringPoll> {
        Ok(UringPoll {
            core: Core::new()?,
            regs: Vec::new(),
            to_arm: Vec::new(),
            to_cancel: Vec::new(),
            next_generation: 0,
            cqes: Vec::new(),
        })
    }

    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        self.next_generation
    }

    fn registration(&mut self, fd: RawFd) -> io::Result<&mut Registration> {
        match self.regs.get_mut(fd as usize) {
            Some(Some(reg)) => Ok(reg),
            _ => Err(not_registered(fd)),
        }
    }

    /// Queues the cancels and polls noted since the last wait.
    fn queue_requests(&mut self) -> io::Result<()> {
        while let Some(&target) = self.to_cancel.last() {
            self.core.push_cancel(target, CANCEL_BIT | target)?;
            self.to_cancel.pop();
        }
        let mut i = 0;
        while i < self.to_arm.len() {
            let fd = self.to_arm[i];
            i += 1;
            let Some(Some(reg)) = self.regs.get(fd as usize).copied() else {
                continue;
            };
            let State::Queued { parked } = reg.state else {
                continue;
            };
            let entry = opcode::PollAdd::new(types::Fd(fd), poll_mask(reg.interest))
                .multi(parked)
                .build()
                .user_data(key(fd, reg.generation));
            // SAFETY: a poll carries only an fd number, a mask and a
            // `user_data`: no memory of ours reaches the kernel. An fd
            // closed without deregistering (breaking the contract) makes
            // the kernel fail the poll with `EBADF`; otherwise it holds its
            // own reference on the file until the poll ends.
            if let Err(e) = unsafe { self.core.push(&entry) } {
                self.to_arm.drain(..i - 1);
                return Err(e);
            }
            if let Some(Some(reg)) = self.regs.get_mut(fd as usize) {
                reg.state = if parked { State::Parked } else { State::Armed };
            }
        }
        self.to_arm.clear();
        Ok(())
    }

    /// Queues what is noted; false if the completion queue is full
    /// (`EBUSY`: the rest is queued after the next harvest).
    fn queue(&mut self) -> io::Result<bool> {
        match self.queue_requests() {
            Ok(()) => Ok(true),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::BUSY) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One poll's completion: an event for `events`, or nothing.
    fn poll_done(&mut self, c: Cqe, events: &mut Events) {
        if c.user_data & CANCEL_BIT != 0 {
            // A cancel's result: 0 (the poll ends with `-ECANCELED`) or
            // `-ENOENT` (it had ended). Anything else did not take.
            if !is(c.result, Errno::NOENT) && c.result != 0 {
                log::debug!(target: "iomux::uring", "poll cancel: errno {}; again", -c.result);
                self.to_cancel.push(c.user_data & !CANCEL_BIT);
            }
            return;
        }
        let fd = c.user_data as u32 as RawFd;
        let generation = (c.user_data >> 32) as u32;
        let Some(Some(reg)) = self.regs.get_mut(fd as usize) else {
            return;
        };
        if reg.generation != generation {
            // A poll cancelled by deregister or reregister.
            return;
        }
        let still_armed = reg.state == State::Parked && c.more();
        let report = if is(c.result, Errno::CANCELED) {
            // The kernel dropped it (ours have old generations): armed
            // again as if quiet; a multishot poll reports at once if the
            // fd is ready.
            None
        } else if c.result < 0 {
            if !still_armed {
                reg.state = State::Failed;
            }
            events.push(Event::new(reg.token, Ready::ERROR));
            return;
        } else {
            event(reg.token, reg.interest, c.result as u32)
        };
        match (reg.state, report) {
            (State::Armed, Some(ev)) => {
                events.push(ev);
                reg.state = State::Queued { parked: false };
            }
            (State::Armed, None) => reg.state = State::Queued { parked: true },
            (State::Parked, None) if still_armed => return,
            (State::Parked, None) => reg.state = State::Queued { parked: true },
            (State::Parked, Some(ev)) => {
                events.push(ev);
                // Back to level-triggered one-shot polls, under a new
                // generation so that the multishot's end is dropped.
                if still_armed {
                    self.to_cancel.push(c.user_data);
                    self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
                    reg.generation = self.next_generation;
                }
                reg.state = State::Queued { parked: false };
            }
            // No poll of this generation is in the kernel.
            (State::Queued { .. } | State::Failed, _) => return,
        }
        self.to_arm.push(fd);
    }

    /// Submits what is queued and waits (at most `timeout`) until a poll
    /// reports an event or another request completes; those completions
    /// go to `op`. A wake-up that brings only completions that report
    /// nothing (stale, or a poll parked) waits on for the time left.
    pub(crate) fn wait(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
        mut op: impl FnMut(Cqe),
    ) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut cqes = std::mem::take(&mut self.cqes);
        let mut result = Ok(());
        for _ in 0..MAX_PASSES {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let timed_out = match self
                .queue()
                .and_then(|queued| self.core.enter(left, queued))
            {
                Ok(timed_out) => timed_out,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let room = events.capacity() - events.len();
            self.core.harvest(&mut cqes, room);
            let mut ops = 0;
            for c in cqes.drain(..) {
                if c.user_data & OP_BIT != 0 {
                    ops += 1;
                    op(c);
                } else {
                    self.poll_done(c, events);
                }
            }
            if !events.is_empty() || ops > 0 || timed_out {
                break;
            }
            if left == Some(Duration::ZERO) && self.to_arm.is_empty() {
                break;
            }
        }
        self.cqes = cqes;
        result
    }

    /// Submits what is queued (the cancels first) and runs the kernel's
    /// deferred work without sleeping.
    pub(crate) fn release_now(&mut self) -> io::Result<()> {
        if self.queue()? {
            self.core.release_now()?;
        }
        Ok(())
    }
}

impl Selector for UringPoll {
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let index = fd as usize;
        if self.regs.len() <= index {
            self.regs.resize(index + 1, None);
        }
        if self.regs[index].is_some() {
            return Err(already_registered(fd));
        }
        let generation = self.generation();
        self.regs[index] = Some(Registration {
            token,
            interest,
            generation,
            state: State::Queued { parked: false },
        });
        self.to_arm.push(fd);
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let generation = self.generation();
        let reg = self.registration(fd)?;
        reg.token = token;
        if reg.interest == interest && reg.state == State::Armed {
            // The armed poll asks for the same; the token is looked up when
            // it completes.
            return Ok(());
        }
        reg.interest = interest;
        let old = match reg.state {
            State::Armed | State::Parked => Some(key(fd, reg.generation)),
            State::Queued { .. } | State::Failed => None,
        };
        let queued = matches!(reg.state, State::Queued { .. });
        reg.state = State::Queued { parked: false };
        if let Some(old) = old {
            reg.generation = generation;
            self.to_cancel.push(old);
        }
        if !queued {
            self.to_arm.push(fd);
        }
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let reg = *self.registration(fd)?;
        self.regs[fd as usize] = None;
        if matches!(reg.state, State::Armed | State::Parked) {
            self.to_cancel.push(key(fd, reg.generation));
        }
        if !self.to_cancel.is_empty() {
            // A poll holds the file (this one, or an older one of the same
            // fd whose cancel is still queued): cancel them now, so that
            // the caller's close closes the socket. Their completions are
            // stale.
            self.release_now()?;
        }
        Ok(())
    }

    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.wait(events, timeout, |_| {})
    }

    fn name(&self) -> &'static str {
        "uring-poll"
    }
}
