//! `select(2)` backend.
//!
//! Notes on this API:
//! - `select` overwrites the sets it is given, so we keep master sets and
//!   copy them into scratch sets before each call.
//! - The libc `fd_set` is a fixed 1024-bit array: `FD_SET(1500)` writes past
//!   its end. rustix's `select` takes bit vectors of any length instead, so
//!   our sets grow with the highest registered fd and large fds are safe.
//! - Cost is O(highest fd) per call, in the kernel and here: select is for
//!   small or teaching setups; the point of this backend is to show that.
//! - Error conditions show up as readable/writable; `exceptfds` is for
//!   out-of-band data and is not used.

use super::{
    Event, Events, Interest, Ready, Selector, Token, already_registered, not_registered, timespec,
};
use rustix::event::{FdSetElement, FdSetIter, fd_set_insert, fd_set_num_elements, fd_set_remove};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

#[derive(Copy, Clone)]
struct Slot {
    token: Token,
    interest: Interest,
    /// Scratch for one wait: bit 0 readable, bit 1 writable.
    ready: u8,
}

/// The `select(2)` selector.
#[derive(Default)]
pub struct Select {
    /// Indexed by fd.
    slots: Vec<Option<Slot>>,
    read_master: Vec<FdSetElement>,
    write_master: Vec<FdSetElement>,
    read_work: Vec<FdSetElement>,
    write_work: Vec<FdSetElement>,
    /// Highest registered fd + 1.
    nfds: RawFd,
    /// Fds seen ready in the current wait, in report order.
    touched: Vec<RawFd>,
}

impl std::fmt::Debug for Select {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("watched", &self.slots.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

impl Select {
    /// An empty selector.
    pub fn new() -> Select {
        Select::default()
    }

    fn apply_interest(&mut self, fd: RawFd, interest: Interest) {
        let words = fd_set_num_elements(0, fd + 1);
        if self.read_master.len() < words {
            self.read_master.resize(words, FdSetElement::default());
            self.write_master.resize(words, FdSetElement::default());
        }
        set_bit(&mut self.read_master, fd, interest.is_readable());
        set_bit(&mut self.write_master, fd, interest.is_writable());
    }

    fn slot_mut(&mut self, fd: RawFd) -> io::Result<&mut Slot> {
        self.slots
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| not_registered(fd))
    }
}

fn set_bit(set: &mut [FdSetElement], fd: RawFd, on: bool) {
    if on {
        fd_set_insert(set, fd);
    } else {
        fd_set_remove(set, fd);
    }
}

impl Selector for Select {
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let index = fd as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        if self.slots[index].is_some() {
            return Err(already_registered(fd));
        }
        self.slots[index] = Some(Slot {
            token,
            interest,
            ready: 0,
        });
        self.apply_interest(fd, interest);
        self.nfds = self.nfds.max(fd + 1);
        Ok(())
    }

    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let slot = self.slot_mut(fd)?;
        slot.token = token;
        if slot.interest != interest {
            slot.interest = interest;
            self.apply_interest(fd, interest);
        }
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        self.slot_mut(fd)?;
        self.slots[fd as usize] = None;
        self.apply_interest(fd, Interest::NONE);
        if fd + 1 == self.nfds {
            // Shrink to the next registered fd below.
            let mut n = fd;
            while n > 0 && self.slots[n as usize - 1].is_none() {
                n -= 1;
            }
            self.nfds = n;
        }
        Ok(())
    }

    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let words = fd_set_num_elements(0, self.nfds);
        self.read_work.clear();
        self.read_work.extend_from_slice(&self.read_master[..words]);
        self.write_work.clear();
        self.write_work
            .extend_from_slice(&self.write_master[..words]);
        let ts = timespec(timeout);
        // SAFETY: every fd in the sets is registered, and the selector's
        // contract is that fds are deregistered before they are closed, so
        // all are open. The sets hold `words` elements, enough for `nfds`
        // bits, as rustix requires.
        let n = unsafe {
            rustix::event::select(
                self.nfds,
                Some(&mut self.read_work),
                Some(&mut self.write_work),
                None,
                ts.as_ref(),
            )?
        };
        if n == 0 {
            return Ok(());
        }
        self.touched.clear();
        for (set, bit) in [(&self.read_work, 1u8), (&self.write_work, 2u8)] {
            for fd in FdSetIter::new(set) {
                if let Some(slot) = self.slots[fd as usize].as_mut() {
                    if slot.ready == 0 {
                        self.touched.push(fd);
                    }
                    slot.ready |= bit;
                }
            }
        }
        for &fd in &self.touched {
            if let Some(slot) = self.slots[fd as usize].as_mut() {
                let ready = std::mem::take(&mut slot.ready);
                // A full buffer drops the rest: they stay ready (level
                // triggered) and come back next wait, with a bigger buffer.
                let mut report = Ready::EMPTY;
                report.set(Ready::READABLE, ready & 1 != 0);
                report.set(Ready::WRITABLE, ready & 2 != 0);
                events.push(Event::new(slot.token, report));
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "select"
    }
}
