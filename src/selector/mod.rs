//! The selector interface: watch file descriptors, learn which are ready.
//!
//! One trait, [`Selector`], with one implementation per kernel mechanism
//! (`select`, `poll`, `epoll` level- and edge-triggered, io_uring poll
//! requests), chosen at run time
//! by [`Backend`]. The contract follows Python's `selectors` and mio's `Poll`:
//!
//! - `register` an fd with a [`Token`] and an [`Interest`]; registering the
//!   same fd twice is an error; `reregister` changes the interest (select
//!   and poll in user space; epoll needs an `epoll_ctl`, so callers should
//!   reregister only on real changes); `deregister` forgets the fd and
//!   must be called *before* the fd is closed.
//! - `select` waits (at least `timeout`, rounded up to whole milliseconds, or
//!   forever with `None`) and writes ready fds into [`Events`]. `EINTR` is
//!   retried with the time that is left.
//! - Readiness is a hint: spurious events are allowed, so I/O must be
//!   non-blocking and `WouldBlock` is normal. Error and hang-up are reported
//!   even when not asked for; treat them as "readable and writable", the next
//!   read or write surfaces the real error.
//! - With an edge-triggered backend ([`Selector::edge_triggered`]) an fd is
//!   reported once per change of state: the caller must drain it (read or
//!   write until `WouldBlock`) or remember that it is unfinished.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

mod epoll;
mod poll;
mod select;
pub(crate) mod uring_poll;

pub use self::epoll::Epoll;
pub use self::poll::Poll;
pub use self::select::Select;
pub use self::uring_poll::UringPoll;

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
}

/// One readiness report.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The registration's token.
    pub token: Token,
    flags: u8,
}

impl Event {
    const READABLE: u8 = 1;
    const WRITABLE: u8 = 2;
    const ERROR: u8 = 4;
    const HUP: u8 = 8;
    const READ_CLOSED: u8 = 16;

    /// Builds an event; used by the backends and by tests.
    pub fn new(token: Token, readable: bool, writable: bool, error: bool, hup: bool) -> Event {
        let bit = |on: bool, flag: u8| if on { flag } else { 0 };
        let flags = bit(readable, Self::READABLE)
            | bit(writable, Self::WRITABLE)
            | bit(error, Self::ERROR)
            | bit(hup, Self::HUP);
        Event { token, flags }
    }
    pub(crate) fn with_read_closed(mut self, read_closed: bool) -> Event {
        if read_closed {
            self.flags |= Self::READ_CLOSED;
        }
        self
    }
    /// A read would not block (data, end of stream or an error is waiting).
    pub fn is_readable(&self) -> bool {
        self.flags & (Self::READABLE | Self::ERROR | Self::HUP | Self::READ_CLOSED) != 0
    }
    /// A write would not block (space, or an error is waiting).
    pub fn is_writable(&self) -> bool {
        self.flags & (Self::WRITABLE | Self::ERROR | Self::HUP) != 0
    }
    /// The kernel flagged an error condition on the fd.
    pub fn is_error(&self) -> bool {
        self.flags & Self::ERROR != 0
    }
    /// The fd hung up (both directions closed).
    pub fn is_hup(&self) -> bool {
        self.flags & Self::HUP != 0
    }
    /// The peer is known to have closed its write side, so a short read does
    /// not prove the socket is drained: the end of stream is still queued.
    /// Only epoll (`EPOLLRDHUP`) and uring-poll (`POLLRDHUP`) tell this;
    /// others report plain readability.
    pub fn is_read_closed(&self) -> bool {
        self.flags & (Self::READ_CLOSED | Self::HUP | Self::ERROR) != 0
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
    /// The backend's name, as accepted by [`Backend::from_str`].
    fn name(&self) -> &'static str;
    /// True when readiness is reported once per change (epoll `EPOLLET`).
    fn edge_triggered(&self) -> bool {
        false
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

/// A timeout in milliseconds for the kernel, rounded *up* so that a wait of
/// 0.3 ms is not turned into a busy poll of 0 ms. `None` is "forever".
pub fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// The same rounding, as the `Timespec` rustix takes.
fn timespec(timeout: Option<Duration>) -> Option<rustix::event::Timespec> {
    match timeout_ms(timeout) {
        -1 => None,
        ms => Some(rustix::event::Timespec {
            tv_sec: (ms / 1000).into(),
            tv_nsec: ((ms % 1000) * 1_000_000).into(),
        }),
    }
}

/// Errors for misuse of a registration, shared by the fd-table backends.
fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("fd {fd} is not registered"),
    )
}
fn already_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("fd {fd} is already registered"),
    )
}

/// The mechanisms, by name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best for this platform: epoll (level-triggered) on Linux.
    Auto,
    /// `select(2)` with fd sets sized at run time (fds >= 1024 work).
    Select,
    /// `poll(2)` over a pollfd array.
    Poll,
    /// `epoll(7)`, level-triggered.
    Epoll,
    /// `epoll(7)`, edge-triggered (`EPOLLET`).
    EpollEt,
    /// `io_uring(7)` poll requests, level-triggered (re-armed one-shot
    /// polls); fails to open where io_uring is unavailable.
    UringPoll,
    /// `io_uring(7)` as a completion engine: the kernel does the
    /// connections' I/O (multishot accept and receive, sends), one
    /// `io_uring_enter` per turn. Not a [`Selector`]: only
    /// [`crate::EventLoop::new`] runs it (its [`Backend::open`] fails).
    Uring,
}

impl Backend {
    /// Every name [`Backend::from_str`] accepts.
    pub const NAMES: [&'static str; 7] = [
        "auto",
        "select",
        "poll",
        "epoll",
        "epoll-et",
        "uring-poll",
        "uring",
    ];
    /// Every concrete backend (no `Auto`), for tests and reports: the
    /// readiness ones, then the completion driver.
    pub const ALL: [Backend; 6] = [
        Backend::Select,
        Backend::Poll,
        Backend::Epoll,
        Backend::EpollEt,
        Backend::UringPoll,
        Backend::Uring,
    ];

    /// The name of this backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Select => "select",
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
            Backend::EpollEt => "epoll-et",
            Backend::UringPoll => "uring-poll",
            Backend::Uring => "uring",
        }
    }

    /// Whether the kernel does the I/O (completion) rather than saying
    /// what is ready (readiness).
    pub fn is_completion(self) -> bool {
        self == Backend::Uring
    }

    /// Whether this backend can run here: an `Unsupported` error names
    /// what is missing (io_uring disabled, an old kernel).
    pub fn check(self) -> io::Result<()> {
        match self.resolve() {
            Backend::Uring => crate::uring::Ring::probe(),
            other => other.open().map(drop),
        }
    }
    /// What `Auto` stands for here; other backends are themselves.
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto => Backend::Epoll,
            other => other,
        }
    }
    /// Reads `IOMUX_BACKEND`; `Auto` when unset.
    pub fn from_env() -> Result<Backend, UnknownBackend> {
        match std::env::var("IOMUX_BACKEND") {
            Ok(name) if !name.is_empty() => name.parse(),
            _ => Ok(Backend::Auto),
        }
    }
    /// Creates the selector. `UringPoll` fails with an `Unsupported` error
    /// saying why where io_uring is unavailable; `Uring` is not a selector
    /// (an `InvalidInput` error).
    pub fn open(self) -> io::Result<Box<dyn Selector>> {
        Ok(match self.resolve() {
            Backend::Uring => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the uring backend is a completion driver, not a selector: run it with EventLoop::new",
                ));
            }
            Backend::Select => Box::new(Select::new()),
            Backend::Poll => Box::new(Poll::new()),
            Backend::EpollEt => Box::new(Epoll::new(true)?),
            Backend::UringPoll => Box::new(UringPoll::new()?),
            Backend::Epoll | Backend::Auto => Box::new(Epoll::new(false)?),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not one of [`Backend::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBackend(pub String);

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown backend '{}' (valid: {})",
            self.0,
            Backend::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownBackend {}

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        Ok(match s {
            "auto" => Backend::Auto,
            "select" => Backend::Select,
            "poll" => Backend::Poll,
            "epoll" => Backend::Epoll,
            "epoll-et" => Backend::EpollEt,
            "uring-poll" => Backend::UringPoll,
            "uring" => Backend::Uring,
            _ => return Err(UnknownBackend(s.to_string())),
        })
    }
}

/// True (after saying so on the terminal) when `backend` cannot run here:
/// io_uring unavailable. The message goes straight to stderr, past the test
/// harness's capture, so a skipped case is visible in every run; with
/// `IOMUX_REQUIRE_URING=1` (CI) it is a failure instead. One `write` per
/// line, so that lines of tests running in parallel do not interleave.
#[cfg(test)]
pub(crate) fn skip_unavailable(backend: Backend, test: &str) -> bool {
    if !matches!(backend, Backend::UringPoll | Backend::Uring) {
        return false;
    }
    match backend.check() {
        Ok(()) => false,
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            use std::io::Write;
            if std::env::var_os("IOMUX_REQUIRE_URING").is_some_and(|v| v != "0") {
                panic!("{test}: IOMUX_REQUIRE_URING is set but {e}");
            }
            let line = format!("{test}: skipped: {e}\n");
            let _ = io::stderr().write_all(line.as_bytes());
            true
        }
        Err(e) => panic!("{test}: opening {backend}: {e}"),
    }
}

#[cfg(test)]
mod tests;
