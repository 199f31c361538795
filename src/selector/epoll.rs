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

use super::{Event, Events, Interest, Ready, Selector, Token, timespec};
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

/// The `epoll(7)` selector.
pub struct Epoll {
    epoll: OwnedFd,
    edge: bool,
    native: Vec<epoll::Event>,
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
        })
    }

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
        // Ask for no more than `events` holds: with edge triggering an event
        // the kernel handed over and we dropped would never come back.
        let capacity = events.capacity();
        self.native.clear();
        self.native.reserve(capacity);
        let buffer = &mut self.native.spare_capacity_mut()[..capacity];
        let ts = timespec(timeout);
        let (ready, _) = epoll::wait(&self.epoll, buffer, ts.as_ref())?;
        for ev in ready.iter() {
            let f = ev.flags;
            let mut ready = Ready::EMPTY;
            ready.set(
                Ready::READABLE,
                f.intersects(EventFlags::IN | EventFlags::PRI),
            );
            ready.set(Ready::WRITABLE, f.contains(EventFlags::OUT));
            ready.set(Ready::ERROR, f.contains(EventFlags::ERR));
            ready.set(Ready::HUP, f.contains(EventFlags::HUP));
            ready.set(Ready::READ_CLOSED, f.contains(EventFlags::RDHUP));
            events.push(Event::new(Token(ev.data.u64()), ready));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        if self.edge { "epoll-et" } else { "epoll" }
    }

    fn edge_triggered(&self) -> bool {
        self.edge
    }
}
