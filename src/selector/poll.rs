//! `poll(2)` backend.
//!
//! Notes on this API:
//! - The kernel takes the whole pollfd array on every call and scans it:
//!   O(registered) per wait, like select, but without a ceiling on fd values.
//! - The array is kept in step with registrations; removal is O(1) by
//!   swap-remove plus an fd -> position map.
//! - `POLLERR`, `POLLHUP` and `POLLNVAL` come back even when not asked for.
//! - Changing interest is a write to our own array: no system call.

use super::{
    Event, Events, Interest, Ready, Selector, Token, already_registered, not_registered, timespec,
};
use rustix::event::{PollFd, PollFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

const NONE: usize = usize::MAX;

/// The `poll(2)` selector.
#[derive(Default)]
pub struct Poll {
    fds: Vec<PollFd<'static>>,
    /// Token of `fds[i]`.
    tokens: Vec<Token>,
    /// Position in `fds` of each fd, or `NONE`; indexed by fd.
    position: Vec<usize>,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll")
            .field("watched", &self.fds.len())
            .finish_non_exhaustive()
    }
}

impl Poll {
    /// An empty selector.
    pub fn new() -> Poll {
        Poll::default()
    }

    fn position_of(&self, fd: RawFd) -> io::Result<usize> {
        match self.position.get(fd as usize) {
            Some(&p) if p != NONE => Ok(p),
            _ => Err(not_registered(fd)),
        }
    }
}

fn flags(interest: Interest) -> PollFlags {
    let mut flags = PollFlags::empty();
    if interest.is_readable() {
        flags |= PollFlags::IN;
    }
    if interest.is_writable() {
        flags |= PollFlags::OUT;
    }
    flags
}

/// A `'static` borrow of a registered fd.
fn borrow_static(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the pollfd array only carries the fd number to the kernel. If
    // the caller closed the fd without deregistering (breaking the
    // selector's contract), poll reports POLLNVAL for it: no memory is
    // touched through it, so the borrow cannot cause undefined behaviour.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Selector for Poll {
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let index = fd as usize;
        if self.position.len() <= index {
            self.position.resize(index + 1, NONE);
        }
        if self.position[index] != NONE {
            return Err(already_registered(fd));
        }
        self.position[index] = self.fds.len();
        self.fds
            .push(PollFd::from_borrowed_fd(borrow_static(fd), flags(interest)));
        self.tokens.push(token);
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let p = self.position_of(fd)?;
        self.fds[p] = PollFd::from_borrowed_fd(borrow_static(fd), flags(interest));
        self.tokens[p] = token;
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let p = self.position_of(fd)?;
        self.fds.swap_remove(p);
        self.tokens.swap_remove(p);
        self.position[fd as usize] = NONE;
        if let Some(moved) = self.fds.get(p) {
            self.position[moved.as_fd().as_raw_fd() as usize] = p;
        }
        Ok(())
    }

    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ts = timespec(timeout);
        let mut n = rustix::event::poll(&mut self.fds, ts.as_ref())?;
        for (pfd, &token) in self.fds.iter().zip(&self.tokens) {
            if n == 0 || events.is_full() {
                break;
            }
            let r = pfd.revents();
            if r.is_empty() {
                continue;
            }
            n -= 1;
            let mut ready = Ready::EMPTY;
            ready.set(
                Ready::READABLE,
                r.intersects(PollFlags::IN | PollFlags::PRI),
            );
            ready.set(Ready::WRITABLE, r.contains(PollFlags::OUT));
            ready.set(Ready::ERROR, r.intersects(PollFlags::ERR | PollFlags::NVAL));
            ready.set(Ready::HUP, r.contains(PollFlags::HUP));
            events.push(Event::new(token, ready));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "poll"
    }
}
