//! Cross-thread wake-up, and stop-on-signal, as plain registered fds.
//!
//! Both are "doorbells": they say *that* something happened, never *what*.
//! The what lives beside them (a flag, a queue), read by the loop once the
//! bell rang. Being ordinary fds, they work with every backend.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{EventfdFlags, eventfd};

/// Wakes the loop from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Waker {
    inner: Arc<Bell>,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("fd", &self.inner.fd)
            .finish_non_exhaustive()
    }
}

struct Bell {
    fd: OwnedFd,
    /// Rung by a user's [`Waker::wake`] (not by the pool or a stop), so
    /// `App::on_wake` runs only for those.
    by_user: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Waker {
            inner: Arc::new(Bell {
                fd,
                by_user: AtomicBool::new(false),
            }),
        })
    }

    /// Makes the loop's next wait return (or the current one) and calls
    /// [`crate::App::on_wake`] there.
    ///
    /// # Errors
    /// Writing the eventfd failed (it does not, short of a closed loop's
    /// descriptor being reused).
    pub fn wake(&self) -> io::Result<()> {
        self.inner.by_user.store(true, Ordering::SeqCst);
        self.ring()
    }

    /// Makes the loop's wait return, for the loop's own reasons (job
    /// results, a stop request).
    pub(crate) fn ring(&self) -> io::Result<()> {
        match rustix::io::write(&self.inner.fd, &1u64.to_ne_bytes()) {
            // The counter is full: the loop has plenty of wake-ups pending.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Resets the counter; called by the loop when the fd is readable.
    /// True if a user's `wake` rang since the last call.
    pub(crate) fn drain(&self) -> bool {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.inner.fd, &mut buf);
        self.inner.by_user.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

/// Signals delivered as bytes on a socket pair (the self-pipe trick; the
/// async-signal-safe handlers come from `signal-hook`): one byte per
/// delivery, and a flag per signal that says which came.
pub(crate) struct SignalPipe {
    read: UnixStream,
    arrived: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<signal_hook::SigId>,
}

/// What arrived since the last [`SignalPipe::drain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arrived {
    /// One of the signals that came.
    pub(crate) signal: i32,
    /// Deliveries (two or more: it was sent again).
    pub(crate) times: usize,
}

impl SignalPipe {
    pub(crate) fn new(signals: &[i32]) -> io::Result<SignalPipe> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut ids = Vec::new();
        let mut arrived = Vec::new();
        for &signal in signals {
            let flag = Arc::new(AtomicBool::new(false));
            // The flag first: set by the time the byte wakes the loop.
            ids.push(signal_hook::flag::register(signal, flag.clone())?);
            ids.push(signal_hook::low_level::pipe::register(
                signal,
                write.try_clone()?,
            )?);
            arrived.push((signal, flag));
        }
        Ok(SignalPipe { read, arrived, ids })
    }

    /// What arrived since the last call, if anything.
    pub(crate) fn drain(&mut self) -> Option<Arrived> {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut times = 0;
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n == 0 {
                break;
            }
            times += n;
        }
        let mut signal = None;
        for (sig, flag) in &self.arrived {
            if flag.swap(false, Ordering::SeqCst) {
                signal = signal.or(Some(*sig));
            }
        }
        (times > 0).then(|| Arrived {
            signal: signal.unwrap_or(self.arrived.first().map_or(0, |(s, _)| *s)),
            times,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

/// A signal's name for logs (`SIGTERM`), or its number.
pub(crate) fn signal_name(signal: i32) -> String {
    use signal_hook::consts::*;
    let name = match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        SIGQUIT => "SIGQUIT",
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
