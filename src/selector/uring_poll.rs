//! `io_uring(7)` as a readiness source: `IORING_OP_POLL_ADD` requests.
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
//!   armed poll) queues an `IORING_OP_POLL_REMOVE` for that `user_data` and
//!   forgets it; a completion that still comes for it (the cancellation's
//!   `-ECANCELED`, or readiness that raced the removal) no longer matches the
//!   fd's current generation and is dropped, even when the fd number was
//!   closed and reused at once.
//! - A poll holds a reference to the *file*, so a deregistered fd that is
//!   closed before the next wait is released by the kernel only when that
//!   wait submits the removal (in practice at the end of the same turn).
//! - Completions beyond the capacity of [`Events`] stay in the ring for the
//!   next wait (which then does not sleep); the kernel keeps overflowing
//!   completions on a list of its own (`IORING_FEAT_NODROP`).
//! - Needs Linux 5.13 (poll add/remove, `EXT_ARG`, multishot poll). Where
//!   io_uring cannot be set up (`kernel.io_uring_disabled`, a seccomp
//!   filter, an old kernel) [`UringPoll::new`] fails with an
//!   `Unsupported` error that names the reason; `IOMUX_NO_URING=1` makes it
//!   fail the same way (to test that path).

use super::{Event, Events, Interest, Selector, Token, already_registered, not_registered};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use rustix::event::PollFlags;
use rustix::io::Errno;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// Submission queue size; a wait with more polls to arm submits in parts.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue size (the kernel keeps any overflow on its own list).
const CQ_ENTRIES: u32 = 8192;
/// Waits one `wait_once` may make when wake-ups report nothing.
const MAX_PASSES: usize = 8;
/// `user_data` of requests whose completions nobody looks at (poll
/// removals, the completion driver's cancels).
pub(crate) const IGNORED: u64 = u64::MAX;
/// `user_data` bit of the completion driver's operations (`crate::uring`);
/// a poll's `user_data` never has it (its generation has 31 bits).
pub(crate) const OP_BIT: u64 = 1 << 63;

/// A completion of one of the completion driver's operations, set aside
/// by the wait for it (see [`UringPoll::take_completions`]).
#[derive(Copy, Clone, Debug)]
pub(crate) struct OpCompletion {
    /// The operation's `user_data` without [`OP_BIT`].
    pub op: u64,
    pub result: i32,
    pub flags: u32,
}

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

/// The io_uring poll selector.
pub struct UringPoll {
    ring: IoUring,
    /// Registration of each fd, indexed by fd.
    regs: Vec<Option<Registration>>,
    /// fds whose poll the next wait arms (an fd may appear twice; its state
    /// says whether it still needs it).
    to_arm: Vec<RawFd>,
    /// `user_data` of polls the next wait cancels.
    to_remove: Vec<u64>,
    next_generation: u32,
    /// Completions of operations (not polls), for the completion driver.
    completions: Vec<OpCompletion>,
}

pub(crate) fn unavailable(reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring unavailable: {reason}"),
    )
}

/// Why `io_uring_setup` failed, as precisely as we can tell.
fn setup_error(e: io::Error) -> io::Error {
    match Errno::from_io_error(&e) {
        Some(Errno::NOSYS) => unavailable("io_uring_setup: ENOSYS (kernel built without io_uring)"),
        Some(Errno::PERM) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
            match sysctl.as_deref().map(str::trim) {
                Ok(v) if v != "0" => unavailable(format!(
                    "io_uring_setup: EPERM (kernel.io_uring_disabled = {v})"
                )),
                _ => unavailable("io_uring_setup: EPERM (refused by a seccomp filter or policy)"),
            }
        }
        // Out of files is the process's state, not the kernel's lack.
        Some(Errno::MFILE | Errno::NFILE) => e,
        _ => unavailable(format!("io_uring_setup: {e}")),
    }
}

/// Fails (`Unsupported`, naming the first missing one) unless the kernel
/// has every opcode of `needed`.
pub(crate) fn require_opcodes(ring: &IoUring, needed: &[(u8, &str)]) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| unavailable(format!("IORING_REGISTER_PROBE: {e}")))?;
    match needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
        Some((_, name)) => Err(unavailable(format!("the kernel lacks {name}"))),
        None => Ok(()),
    }
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
    let readable = read && f.intersects(PollFlags::IN | PollFlags::PRI);
    let writable = interest.is_writable() && f.contains(PollFlags::OUT);
    let error = f.intersects(PollFlags::ERR | PollFlags::NVAL);
    let hup = f.contains(PollFlags::HUP);
    let read_closed = read && f.contains(PollFlags::RDHUP);
    (readable || writable || error || hup || read_closed)
        .then(|| Event::new(token, readable, writable, error, hup).with_read_closed(read_closed))
}

impl UringPoll {
    /// A new ring, after checking that the kernel has what this needs.
    pub fn new() -> io::Result<UringPoll> {
        if std::env::var_os("IOMUX_NO_URING").is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(unavailable("disabled by IOMUX_NO_URING"));
        }
        // Completions are run only when the loop thread waits (it is the
        // only one to touch the ring: a `Box<dyn Selector>` is not `Send`),
        // which saves the kernel interrupting it for each (Linux 6.1;
        // `COOP_TASKRUN` on 5.19; neither before).
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .setup_coop_taskrun()
                    .build(SQ_ENTRIES)
            })
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(setup_error)?;
        let params = ring.params();
        if !params.is_feature_ext_arg() {
            return Err(unavailable("no IORING_FEAT_EXT_ARG (needs Linux 5.11)"));
        }
        if !params.is_feature_resource_tagging() {
            // Multishot poll came in the same release (5.13) and has no
            // feature bit of its own.
            return Err(unavailable("no multishot poll (needs Linux 5.13)"));
        }
        require_opcodes(
            &ring,
            &[
                (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
                (opcode::PollRemove::CODE, "IORING_OP_POLL_REMOVE"),
            ],
        )?;
        Ok(UringPoll {
            ring,
            regs: Vec::new(),
            to_arm: Vec::new(),
            to_remove: Vec::new(),
            next_generation: 0,
            completions: Vec::new(),
        })
    }

    /// The next registration generation: 31 bits, so that a poll's
    /// `user_data` never has [`OP_BIT`].
    fn generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1) & 0x7fff_ffff;
        self.next_generation
    }

    /// The ring, for the completion driver's registrations.
    pub(crate) fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// Queues an operation of the completion driver; its completion comes
    /// back through [`UringPoll::take_completions`] with `op` (which must
    /// not have [`OP_BIT`]), or not at all if its `user_data` is
    /// [`IGNORED`].
    ///
    /// # Safety
    ///
    /// Every buffer and file the entry refers to must stay valid until its
    /// last completion has been taken.
    pub(crate) unsafe fn push_op(&mut self, entry: squeue::Entry) -> io::Result<()> {
        self.push(entry)
    }

    /// Moves the operation completions of the last wait into `out`.
    pub(crate) fn take_completions(&mut self, out: &mut Vec<OpCompletion>) {
        out.append(&mut self.completions);
    }

    fn registration(&mut self, fd: RawFd) -> io::Result<&mut Registration> {
        match self.regs.get_mut(fd as usize) {
            Some(Some(reg)) => Ok(reg),
            _ => Err(not_registered(fd)),
        }
    }

    /// Puts one request in the submission queue, first handing the queue to
    /// the kernel if it is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the requests built here (poll add, poll remove) carry
            // only an fd number, a mask and a `user_data`; no buffer or
            // other memory of ours is handed to the kernel, so nothing has
            // to outlive the operation. (The completion driver's operations
            // come through `push_op`, whose caller vouches for theirs.) An fd closed without deregistering
            // (breaking the contract) makes the kernel fail the poll with
            // `EBADF`; it takes its own reference on the file otherwise.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            // `EBUSY`: the completion ring is full and the kernel takes no
            // more until it is read (the caller does, then retries).
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues the removals and polls noted since the last wait.
    fn queue_requests(&mut self) -> io::Result<()> {
        while let Some(&user_data) = self.to_remove.last() {
            self.push(
                opcode::PollRemove::new(user_data)
                    .build()
                    .user_data(IGNORED),
            )?;
            self.to_remove.pop();
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
            if let Err(e) = self.push(entry) {
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

    /// Submits what is queued and waits (at most `timeout`, rounded up to
    /// whole milliseconds) for a completion, in one `io_uring_enter`.
    /// Returns true when the time ran out.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        // A full completion ring (`EBUSY`) is emptied by the harvest; what
        // could not be queued is queued next time.
        let queued = match self.queue_requests() {
            Ok(()) => true,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::BUSY) => false,
            Err(e) => return Err(e),
        };
        let leftover = !self.ring.completion().is_empty();
        let submitter = self.ring.submitter();
        let result = match super::timeout_ms(timeout) {
            -1 if queued && !leftover => submitter.submit_and_wait(1),
            // Completions left over from the last wait: collect them, do
            // not sleep (a zero wait, not a bare submit: deferred
            // completions run only in a wait).
            _ if !queued || leftover => {
                let ts = types::Timespec::new();
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
            }
            ms => {
                let ms = ms as u64;
                let ts = types::Timespec::new()
                    .sec(ms / 1000)
                    .nsec((ms % 1000) as u32 * 1_000_000);
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
            }
        };
        match result {
            Ok(_) => Ok(false),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::TIME) => Ok(true),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::BUSY) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued (the removals first) and runs completions
    /// without sleeping.
    fn release_now(&mut self) -> io::Result<()> {
        match self.queue_requests() {
            Ok(()) => {}
            // A full completion ring: the removal goes in with the next wait.
            Err(e) if Errno::from_io_error(&e) == Some(Errno::BUSY) => return Ok(()),
            Err(e) => return Err(e),
        }
        let ts = types::Timespec::new();
        match self
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    Errno::from_io_error(&e),
                    Some(Errno::TIME | Errno::BUSY | Errno::INTR)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Turns completions into events, at most `events.capacity()`; the rest
    /// stay in the ring.
    fn harvest(&mut self, events: &mut Events) {
        let mut cq = self.ring.completion();
        while !events.is_full() {
            let Some(cqe) = cq.next() else {
                break;
            };
            let user_data = cqe.user_data();
            if user_data == IGNORED {
                continue;
            }
            if user_data & OP_BIT != 0 {
                self.completions.push(OpCompletion {
                    op: user_data & !OP_BIT,
                    result: cqe.result(),
                    flags: cqe.flags(),
                });
                continue;
            }
            let fd = user_data as u32 as RawFd;
            let generation = (user_data >> 32) as u32;
            let Some(Some(reg)) = self.regs.get_mut(fd as usize) else {
                continue;
            };
            if reg.generation != generation {
                // A poll cancelled by deregister or reregister.
                continue;
            }
            let res = cqe.result();
            let still_armed = reg.state == State::Parked && cqueue::more(cqe.flags());
            let report = if res == -Errno::CANCELED.raw_os_error() {
                // The kernel dropped it (ours have old generations): armed
                // again as if quiet; a multishot poll reports at once if the
                // fd is ready.
                None
            } else if res < 0 {
                if !still_armed {
                    reg.state = State::Failed;
                }
                events.push(Event::new(reg.token, false, false, true, false));
                continue;
            } else {
                event(reg.token, reg.interest, res as u32)
            };
            match (reg.state, report) {
                (State::Armed, Some(ev)) => {
                    events.push(ev);
                    reg.state = State::Queued { parked: false };
                }
                (State::Armed, None) => reg.state = State::Queued { parked: true },
                (State::Parked, None) if still_armed => continue,
                (State::Parked, None) => reg.state = State::Queued { parked: true },
                (State::Parked, Some(ev)) => {
                    events.push(ev);
                    // Back to level-triggered one-shot polls, under a new
                    // generation so that the multishot's end is dropped.
                    if still_armed {
                        self.to_remove.push(user_data);
                        self.next_generation = self.next_generation.wrapping_add(1) & 0x7fff_ffff;
                        reg.generation = self.next_generation;
                    }
                    reg.state = State::Queued { parked: false };
                }
                // No poll of this generation is in the kernel.
                (State::Queued { .. } | State::Failed, _) => continue,
            }
            self.to_arm.push(fd);
        }
        cq.sync();
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
            self.to_remove.push(old);
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
            self.to_remove.push(key(fd, reg.generation));
            // An armed poll holds a reference to the file: until it is
            // removed, closing the fd does not close the socket (the peer
            // would see no end of stream). So remove it now, and run the
            // removal's completion (deferred task work runs only in a wait
            // for events): one `io_uring_enter` per close, as epoll's
            // `EPOLL_CTL_DEL`. Its completions are stale and dropped later.
            self.release_now()?;
        }
        Ok(())
    }

    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // A wake-up may bring only completions that report nothing (stale,
        // or a poll parked): then wait on for the time that is left.
        for _ in 0..MAX_PASSES {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let timed_out = self.enter(left)?;
            self.harvest(events);
            if !events.is_empty() || !self.completions.is_empty() || timed_out {
                break;
            }
            if left == Some(Duration::ZERO) && self.to_arm.is_empty() {
                break;
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "uring-poll"
    }
}
