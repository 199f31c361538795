//! What both users of io_uring share: setting the ring up (and saying
//! precisely why it cannot be), probing opcodes, queueing a request when
//! the submission queue is full, and the one `io_uring_enter` that submits
//! and waits. The poll selector and the completion driver are built on it.
//!
//! `user_data` bits, one layout for the whole ring:
//! - [`OP_BIT`] set: an operation of the completion driver (`ring.rs`);
//! - [`CANCEL_BIT`] set (and `OP_BIT` clear): the cancel of a poll, whose
//!   result is read (`poll.rs`);
//! - both clear: a poll (fd and registration generation);
//! - [`IGNORED`]: a request whose completion nobody reads.

use std::io;
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use rustix::io::Errno;

/// Submission queue size; a wait with more requests submits in parts.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue size (the kernel keeps any overflow on its own list).
const CQ_ENTRIES: u32 = 8192;

/// `user_data` of requests whose completions nobody looks at.
pub(crate) const IGNORED: u64 = u64::MAX;
/// `user_data` bit of the completion driver's operations.
pub(crate) const OP_BIT: u64 = 1 << 63;
/// `user_data` bit of a poll's cancel (the rest names the poll).
pub(crate) const CANCEL_BIT: u64 = 1 << 62;

/// One completion, copied out of the completion queue.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Cqe {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Cqe {
    /// The request stays armed (a multishot that goes on).
    pub(crate) fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
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

/// The ring itself.
pub(crate) struct Core {
    ring: IoUring,
}

impl Core {
    /// A new ring, after checking that the kernel has what both users
    /// need (Linux 5.13: poll add, async cancel, `EXT_ARG`, multishot
    /// poll). `IOMUX_NO_URING=1` makes it fail as if io_uring were
    /// disabled (to test that path).
    pub(crate) fn new() -> io::Result<Core> {
        if std::env::var_os("IOMUX_NO_URING").is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(unavailable("disabled by IOMUX_NO_URING"));
        }
        // Completions are run only when the loop thread waits (it is the
        // only one to touch the ring), which saves the kernel interrupting
        // it for each (Linux 6.1; `COOP_TASKRUN` on 5.19; neither before).
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
        let core = Core { ring };
        core.require_opcodes(&[
            (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
            (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        ])?;
        Ok(core)
    }

    /// Fails (`Unsupported`, naming the first missing one) unless the
    /// kernel has every opcode of `needed`.
    pub(crate) fn require_opcodes(&self, needed: &[(u8, &str)]) -> io::Result<()> {
        let mut probe = Probe::new();
        self.ring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| unavailable(format!("IORING_REGISTER_PROBE: {e}")))?;
        match needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
            Some((_, name)) => Err(unavailable(format!("the kernel lacks {name}"))),
            None => Ok(()),
        }
    }

    /// The ring, for registrations (provided buffers).
    pub(crate) fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// Puts one request in the submission queue, first handing the queue
    /// to the kernel if it is full. `EBUSY` (the completion queue is full
    /// and the kernel takes no more until it is read) is the caller's to
    /// handle: read completions, then push again.
    ///
    /// # Safety
    ///
    /// Every buffer and file the entry refers to must stay valid until its
    /// last completion has been read.
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: passed on from the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues a cancel of the request with `target` as its `user_data`;
    /// its own completion carries `user_data`.
    pub(crate) fn push_cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancel refers to no memory of ours.
        unsafe { self.push(&entry) }
    }

    /// Submits what is queued and waits for a completion, at most
    /// `timeout` (to the nanosecond; `None`: forever), in
    /// one `io_uring_enter`. `sleep` false: only collects, even if nothing
    /// completed (completions are left over, or a request could not be
    /// queued). Returns true when the time ran out.
    pub(crate) fn enter(&mut self, timeout: Option<Duration>, sleep: bool) -> io::Result<bool> {
        let leftover = !self.ring.completion().is_empty();
        let submitter = self.ring.submitter();
        let result = match timeout {
            None if sleep && !leftover => submitter.submit_and_wait(1),
            // A zero wait, not a bare submit: deferred completions run only
            // in a wait.
            _ if !sleep || leftover => {
                let ts = types::Timespec::new();
                submitter.submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
            }
            timeout => {
                // To the nanosecond (a timer due in 0.3 ms is not waited
                // for a whole millisecond).
                let t = crate::selector::timespec(timeout).unwrap_or_default();
                let ts = types::Timespec::new()
                    .sec(t.tv_sec as u64)
                    .nsec(t.tv_nsec as u32);
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

    /// Submits what is queued and runs the kernel's deferred work without
    /// sleeping: so that a cancel queued now has let go of its file before
    /// the caller closes the descriptor.
    pub(crate) fn release_now(&mut self) -> io::Result<()> {
        match self.enter(Some(Duration::ZERO), false) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other.map(drop),
        }
    }

    /// Copies completions into `out`, until `room` of them are polls'
    /// (each may become an event for the caller's bounded buffer); the
    /// rest stay in the ring for the next wait (which then does not
    /// sleep). Completions of [`IGNORED`] requests are dropped.
    pub(crate) fn harvest(&mut self, out: &mut Vec<Cqe>, room: usize) {
        let mut cq = self.ring.completion();
        let mut polls = 0;
        while polls < room {
            let Some(cqe) = cq.next() else {
                break;
            };
            if cqe.user_data() == IGNORED {
                continue;
            }
            if cqe.user_data() & OP_BIT == 0 {
                polls += 1;
            }
            out.push(Cqe {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
        cq.sync();
    }
}

/// Whether `result` is the error `errno`.
pub(crate) fn is(result: i32, errno: Errno) -> bool {
    result == -errno.raw_os_error()
}
