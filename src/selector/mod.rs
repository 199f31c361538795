//! The selector interface: watch file descriptors, learn which are ready.
//!
//! One trait, [`Selector`], with one implementation per kernel mechanism
//! (`select`, `poll`, `epoll` level- and edge-triggered here; io_uring poll
//! requests in [`crate::uring`]), chosen at run time by
//! [`crate::Backend`]. The contract follows Python's `selectors` and mio's `Poll`:
//!
//! - `register` an fd with a [`Token`] and an [`Interest`]; registering the
//!   same fd twice is an error; `reregister` changes the interest (select
//!   and poll in user space; epoll needs an `epoll_ctl`, so callers should
//!   reregister only on real changes); `deregister` forgets the fd and
//!   must be called *before* the fd is closed.
//! - `select` waits (at least `timeout`, to the nanosecond, or forever with
//!   `None`) and writes ready fds into [`Events`]. `EINTR` is retried with
//!   the time that is left. Only epoll on a kernel without `epoll_pwait2`
//!   (before Linux 5.11) rounds a timeout up to whole milliseconds
//!   ([`Selector::sub_millisecond_timeouts`]).
//! - Readiness is a hint: spurious events are allowed, so I/O must be
//!   non-blocking and `WouldBlock` is normal. Error and hang-up are reported
//!   even when not asked for; treat them as "readable and writable", the next
//!   read or write surfaces the real error.
//! - With an edge-triggered backend ([`Selector::edge_triggered`]) an fd is
//!   reported once per change of state: the caller must drain it (read or
//!   write until `WouldBlock`) or remember that it is unfinished.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

mod epoll;
mod poll;
mod select;

pub use self::epoll::Epoll;
pub use self::poll::Poll;
pub use self::select::Select;

/// Caller-chosen value that comes back with every event of a registration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// Which readiness a registration asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    bits: u8,
}

impl Interest {
    /// Nothing asked for; poll and epoll still report errors and hang-ups
    /// (select cannot: the fd is in none of its sets).
    pub const NONE: Interest = Interest { bits: 0 };
    /// Wake when a read would not block.
    pub const READABLE: Interest = Interest { bits: 1 };
    /// Wake when a write would not block.
    pub const WRITABLE: Interest = Interest { bits: 2 };
    /// Both.
    pub const BOTH: Interest = Interest { bits: 3 };

    /// Builds an interest from two flags.
    pub const fn new(readable: bool, writable: bool) -> Interest {
        Interest {
            bits: readable as u8 | (writable as u8) << 1,
        }
    }
    /// Asks for readability.
    pub const fn is_readable(self) -> bool {
        self.bits & 1 != 0
    }
    /// Asks for writability.
    pub const fn is_writable(self) -> bool {
        self.bits & 2 != 0
    }
    /// Everything `self` or `other` asks for.
    pub const fn with(self, other: Interest) -> Interest {
        Interest {
            bits: self.bits | other.bits,
        }
    }
}

/// `Interest::READABLE | Interest::WRITABLE` is [`Interest::BOTH`].
///
/// ```
/// use iomux::Interest;
///
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert_eq!(both, Interest::BOTH);
/// assert!(both.is_readable() && both.is_writable());
/// ```
impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        self.with(other)
    }
}

impl std::ops::BitOrAssign for Interest {
    fn bitor_assign(&mut self, other: Interest) {
        *self = self.with(other);
    }
}

/// What an event reports, for building one ([`Event::new`]; a backend of
/// your own, or a test). Combine with `|`.
///
/// ```
/// use iomux::{Event, Ready, Token};
///
/// let e = Event::new(Token(7), Ready::READABLE | Ready::READ_CLOSED);
/// assert!(e.is_readable() && e.is_read_closed() && !e.is_writable());
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ready(u8);

impl Ready {
    /// Nothing.
    pub const EMPTY: Ready = Ready(0);
    /// A read would not block.
    pub const READABLE: Ready = Ready(1);
    /// A write would not block.
    pub const WRITABLE: Ready = Ready(2);
    /// An error condition is pending on the fd.
    pub const ERROR: Ready = Ready(4);
    /// The fd hung up (both directions closed).
    pub const HUP: Ready = Ready(8);
    /// The peer shut its write side (`EPOLLRDHUP`, `POLLRDHUP`).
    pub const READ_CLOSED: Ready = Ready(16);

    /// Whether every flag of `flag` is set.
    pub const fn contains(self, flag: Ready) -> bool {
        self.0 & flag.0 == flag.0
    }

    /// Sets (or clears) `flag`.
    pub fn set(&mut self, flag: Ready, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }

    const fn any(self, flags: Ready) -> bool {
        self.0 & flags.0 != 0
    }
}

impl std::ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, other: Ready) -> Ready {
        Ready(self.0 | other.0)
    }
}

impl std::ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, other: Ready) {
        self.0 |= other.0;
    }
}

/// One readiness report.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The registration's token.
    pub token: Token,
    ready: Ready,
}

impl Event {
    /// An event for `token` reporting `ready`.
    pub const fn new(token: Token, ready: Ready) -> Event {
        Event { token, ready }
    }
    /// What the event reports, as the backend built it.
    pub const fn ready(&self) -> Ready {
        self.ready
    }
    /// A read would not block (data, end of stream or an error is waiting).
    pub const fn is_readable(&self) -> bool {
        self.ready.any(Ready(
            Ready::READABLE.0 | Ready::ERROR.0 | Ready::HUP.0 | Ready::READ_CLOSED.0,
        ))
    }
    /// A write would not block (space, or an error is waiting).
    pub const fn is_writable(&self) -> bool {
        self.ready
            .any(Ready(Ready::WRITABLE.0 | Ready::ERROR.0 | Ready::HUP.0))
    }
    /// The kernel flagged an error condition on the fd.
    pub const fn is_error(&self) -> bool {
        self.ready.any(Ready::ERROR)
    }
    /// The fd hung up (both directions closed).
    pub const fn is_hup(&self) -> bool {
        self.ready.any(Ready::HUP)
    }
    /// The peer is known to have closed its write side, so a short read does
    /// not prove the socket is drained: the end of stream is still queued.
    /// Only epoll (`EPOLLRDHUP`) and uring-poll (`POLLRDHUP`) tell this;
    /// others report plain readability.
    pub const fn is_read_closed(&self) -> bool {
        self.ready
            .any(Ready(Ready::READ_CLOSED.0 | Ready::HUP.0 | Ready::ERROR.0))
    }
}

/// A reusable buffer of events, filled by [`Selector::select`].
///
/// It starts with a capacity and doubles (up to a bound) whenever a wait
/// fills it, so a busy server does not leave ready fds waiting a turn.
pub struct Events {
    list: Vec<Event>,
    capacity: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("events", &self.list)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Events {
    /// Largest the buffer grows to on its own.
    pub const MAX_CAPACITY: usize = 1 << 16;

    /// An empty buffer that holds `capacity` events per wait at first.
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = capacity.max(1);
        Events {
            list: Vec::with_capacity(capacity),
            capacity,
        }
    }
    /// How many events one wait may return.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// The events of the last wait.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }
    /// Number of events of the last wait.
    pub fn len(&self) -> usize {
        self.list.len()
    }
    /// No event in the last wait.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// Event `i` of the last wait.
    pub fn get(&self, i: usize) -> Option<Event> {
        self.list.get(i).copied()
    }
    /// Removes the events (keeps the capacity).
    pub fn clear(&mut self) {
        self.list.clear();
    }
    /// Adds an event; returns false (dropping it) when the buffer is full.
    pub fn push(&mut self, event: Event) -> bool {
        if self.list.len() >= self.capacity {
            return false;
        }
        self.list.push(event);
        true
    }
    /// True when no more events fit.
    pub fn is_full(&self) -> bool {
        self.list.len() >= self.capacity
    }
    fn grow_if_full(&mut self) {
        if self.is_full() && self.capacity < Self::MAX_CAPACITY {
            self.capacity = (self.capacity * 2).min(Self::MAX_CAPACITY);
            self.list.reserve(self.capacity - self.list.len());
        }
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// A readiness mechanism. See the module docs for the contract.
///
/// Use one directly, as Python's `selectors` or mio's `Poll`:
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
/// use iomux::{Backend, Events, Interest, Token};
///
/// let mut selector = Backend::Epoll.open()?;
/// let (ours, mut theirs) = UnixStream::pair()?;
/// selector.register(ours.as_fd(), Token(1), Interest::READABLE)?;
/// theirs.write_all(b"ping")?;
/// let mut events = Events::with_capacity(16);
/// selector.select(&mut events, Some(Duration::from_secs(5)))?;
/// let ready: Vec<Token> = events.iter().map(|e| e.token).collect();
/// assert_eq!(ready, [Token(1)]);
/// selector.deregister(ours.as_fd())?; // before `ours` is closed
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// Every method returns the backend's system call error as it is, except
/// that `register` of a watched fd is `AlreadyExists` and `reregister` or
/// `deregister` of an unwatched one `NotFound` on every backend, and
/// select refuses fds at or above `FD_SETSIZE` (`InvalidInput`).
pub trait Selector {
    /// Starts watching `fd`. Fails with `AlreadyExists` if it is watched.
    fn register(&mut self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()>;
    /// Changes the token or interest of a watched `fd`.
    fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;
    /// Stops watching `fd`. Call it before closing the fd.
    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// One wait: the backend's system call, without the `EINTR` retry.
    /// `events` is empty on entry; fill at most `events.capacity()`.
    fn wait_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()>;
    /// The backend's name, as accepted by [`crate::Backend`]'s `FromStr`.
    fn name(&self) -> &'static str;
    /// True when readiness is reported once per change (epoll `EPOLLET`).
    fn edge_triggered(&self) -> bool {
        false
    }
    /// True when a timeout is kept to the nanosecond; false when the
    /// kernel rounds it up to whole milliseconds (epoll without
    /// `epoll_pwait2`, before Linux 5.11, known after the first timed
    /// wait).
    fn sub_millisecond_timeouts(&self) -> bool {
        true
    }

    /// Waits for events, retrying `EINTR` with the remaining time.
    /// When the wait filled `events`, its capacity grows for the next one.
    fn select(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        events.grow_if_full();
        loop {
            events.clear();
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self.wait_once(events, left) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// The longest wait handed to the kernel in one call, `i32::MAX`
/// milliseconds (about 24.8 days, what `epoll_wait` takes): a longer
/// timeout ends there, and the caller waits again.
const MAX_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// A timeout to the nanosecond, as the `Timespec` rustix takes (at most
/// [`MAX_WAIT`]): a timer due in 0.3 ms is waited for 0.3 ms, not a whole
/// millisecond. `None` is "forever".
pub(crate) fn timespec(timeout: Option<Duration>) -> Option<rustix::event::Timespec> {
    let t = timeout?.min(MAX_WAIT);
    Some(rustix::event::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos().into(),
    })
}

/// Errors for misuse of a registration, shared by the fd-table backends.
pub(crate) fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("fd {fd} is not registered"),
    )
}
pub(crate) fn already_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("fd {fd} is already registered"),
    )
}

// The contract, run on every backend (opened through `crate::Backend`).
#[cfg(test)]
mod tests;
