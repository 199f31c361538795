//! `epoll(7)` backend, level-triggered or edge-triggered (`EPOLLET`).
//!
//! Notes on this API:
//! - The interest list lives in the kernel; a wait returns only ready fds,
//!   so its cost follows the number of ready fds, not of watched ones.
//! - epoll watches open file *descriptions*, not fd numbers: an fd closed
//!   while a `dup` of it lives stays registered. Deregister before close.
//! - Every interest change is an `epoll_ctl` system call; callers should
//!   only reregister when the interest really changes.
//! - Edge-triggered: an fd is reported when its state changes (data arrives,
//!   buffer space frees up), not while it stays ready. The caller drains it
//!   or keeps its own list of unfinished fds.
//! - `EPOLLRDHUP` is always asked with readability: it tells a reader that
//!   the end of stream is queued behind the data, so with edge triggering a
//!   short read is not taken as "drained" when the peer has already shut
//!   down (no further edge would come for that end of stream).
//! - `epoll_wait` takes its timeout in whole milliseconds, so a timer due
//!   in 0.3 ms would be waited for a full millisecond. `epoll_pwait2`
//!   (Linux 5.11) takes nanoseconds: it is used for timed waits, and if
//!   the kernel (or a seccomp filter) refuses it, `epoll_wait` takes over
//!   for good, its timeouts rounded up.

use super::{Event, Events, Interest, Ready, Selector, Token, timespec};
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Whether the kernel takes `epoll_pwait2`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Pwait2 {
    /// No timed wait yet.
    Untried,
    Works,
    /// Refused (`ENOSYS`: before Linux 5.11; `EPERM`: a seccomp filter).
    Missing,
}

/// The `epoll(7)` selector.
pub struct Epoll {
    epoll: OwnedFd,
    edge: bool,
    native: Vec<epoll::Event>,
    pwait2: Pwait2,
    /// `epoll_pwait2`'s buffer.
    raw: Vec<libc::epoll_event>,
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll")
            .field("fd", &self.epoll)
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}

impl Epoll {
    /// A new epoll instance; `edge` adds `EPOLLET` to every registration.
    ///
    /// # Errors
    /// `epoll_create1` failed (no descriptors left).
    pub fn new(edge: bool) -> io::Result<Epoll> {
        Ok(Epoll {
            epoll: epoll::create(CreateFlags::CLOEXEC)?,
            edge,
            native: Vec::new(),
            pwait2: Pwait2::Untried,
            raw: Vec::new(),
        })
    }

    /// One `epoll_pwait2` with `timeout` to the nanosecond.
    fn wait_precise(&mut self, events: &mut Events, timeout: Duration) -> io::Result<()> {
        let capacity = events.capacity();
        // Zeroed once, not per wait: the kernel writes what it returns.
        if self.raw.len() != capacity {
            self.raw
                .resize(capacity, libc::epoll_event { events: 0, u64: 0 });
        }
        let ts = timespec(Some(timeout)).map(|t| libc::timespec {
            tv_sec: t.tv_sec as libc::time_t,
            tv_nsec: t.tv_nsec as libc::c_long,
        });
        let ts = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `raw` holds `capacity` initialised events, as many as the
        // kernel is told it may write; `ts` points to a timespec that lives
        // across the call; a null signal mask leaves the mask alone.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epoll.as_raw_fd(),
                self.raw.as_mut_ptr(),
                capacity as libc::c_int,
                ts,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for ev in &self.raw[..n as usize] {
            // Copied out of the packed struct before use.
            let (flags, data) = (ev.events, ev.u64);
            events.push(Event::new(
                Token(data),
                ready_of(EventFlags::from_bits_retain(flags)),
            ));
        }
        Ok(())
    }
}

fn ready_of(f: EventFlags) -> Ready {
    let mut ready = Ready::EMPTY;
    ready.set(
        Ready::READABLE,
        f.intersects(EventFlags::IN | EventFlags::PRI),
    );
    ready.set(Ready::WRITABLE, f.contains(EventFlags::OUT));
    ready.set(Ready::ERROR, f.contains(EventFlags::ERR));
    ready.set(Ready::HUP, f.contains(EventFlags::HUP));
    ready.set(Ready::READ_CLOSED, f.contains(EventFlags::RDHUP));
    ready
}

impl Epoll {
    fn flags(&self, interest: Interest) -> EventFlags {
        let mut flags = EventFlags::empty();
        if interest.is_readable() {
            flags |= EventFlags::IN | EventFlags::RDHUP;
        }
        if interest.is_writable() {
            flags |= EventFlags::OUT;
        }
        if self.edge {
            flags |= EventFlags::ET;
        }
        flags
    }
}

impl Selector for Epoll {
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        let flags = self.flags(interest);
        Ok(epoll::add(
            &self.epoll,
            fd,
            EventData::new_u64(token.0),
            flags,
        )?)
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let flags = self.flags(interest);
        Ok(epoll::modify(
            &self.epoll,
            fd,
            EventData::new_u64(token.0),
            flags,
        )?)
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, fd)?)
    }

    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        if let Some(t) = timeout
            && self.pwait2 != Pwait2::Missing
        {
            match self.wait_precise(events, t) {
                Err(e)
                    if self.pwait2 == Pwait2::Untried
                        && matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) =>
                {
                    log::debug!(
                        "epoll_pwait2 refused ({e}): epoll timeouts are rounded up to whole \
                         milliseconds"
                    );
                    self.pwait2 = Pwait2::Missing;
                }
                other => {
                    self.pwait2 = Pwait2::Works;
                    return other;
                }
            }
        }
        // Ask for no more than `events` holds: with edge triggering an event
        // the kernel handed over and we dropped would never come back.
        let capacity = events.capacity();
        self.native.clear();
        self.native.reserve(capacity);
        let buffer = &mut self.native.spare_capacity_mut()[..capacity];
        // Without epoll_pwait2, rustix rounds the timeout up to whole
        // milliseconds for epoll_wait.
        let ts = timespec(timeout);
        let (ready, _) = epoll::wait(&self.epoll, buffer, ts.as_ref())?;
        for ev in ready.iter() {
            events.push(Event::new(Token(ev.data.u64()), ready_of(ev.flags)));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        if self.edge { "epoll-et" } else { "epoll" }
    }

    fn edge_triggered(&self) -> bool {
        self.edge
    }

    fn sub_millisecond_timeouts(&self) -> bool {
        self.pwait2 != Pwait2::Missing
    }
}
