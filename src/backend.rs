//! The backends by name: which mechanism, whether it can run here, which
//! I/O model it is. Above both kinds of kernel interface: it opens a
//! readiness [`Selector`] (the selector module, io_uring poll requests) and
//! probes the completion driver's ring.

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::selector::{Epoll, Poll, Select, Selector};
use crate::uring::{Ring, UringPoll};

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

    /// Whether this backend can run here.
    ///
    /// ```
    /// use iomux::Backend;
    ///
    /// assert!(Backend::Poll.check().is_ok()); // poll(2) is everywhere
    /// match Backend::Uring.check() {
    ///     Ok(()) => println!("io_uring is here"),
    ///     Err(why) => println!("no uring: {why}"),
    /// }
    /// ```
    ///
    /// # Errors
    /// `Unsupported`, naming what is missing (io_uring disabled by
    /// `kernel.io_uring_disabled` or a sandbox, a kernel too old for the
    /// operations used); what opening the backend says otherwise.
    pub fn check(self) -> io::Result<()> {
        match self.resolve() {
            Backend::Uring => Ring::probe(),
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
    ///
    /// # Errors
    /// The variable names no backend ([`UnknownBackend`] lists them).
    pub fn from_env() -> Result<Backend, UnknownBackend> {
        match std::env::var("IOMUX_BACKEND") {
            Ok(name) if !name.is_empty() => name.parse(),
            _ => Ok(Backend::Auto),
        }
    }
    /// Creates the selector, to use on its own (see [`Selector`]).
    ///
    /// # Errors
    /// `UringPoll` fails with an `Unsupported` error saying why where
    /// io_uring is unavailable; `Uring` is not a selector (an
    /// `InvalidInput` error); epoll fails if no descriptor is left.
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
