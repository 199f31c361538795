//! Why a connection closed, and which limit it met: told to the app
//! ([`crate::App::on_limit`], [`crate::App::on_close`]) and logged.

use std::io;
use std::time::Duration;

/// A limit a connection went over; told to [`crate::App::on_limit`] before
/// the loop closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Unconsumed input passed [`crate::Config::max_input`] bytes (a request too
    /// large for the app to take).
    Input {
        /// The limit, in bytes.
        max: usize,
    },
    /// Output pushed to the connection passed [`crate::Config::max_output`] bytes
    /// (it does not read what it is sent).
    Output {
        /// The limit, in bytes.
        max: usize,
    },
    /// Pushed output stayed over the soft limit for its whole period.
    OutputSoft {
        /// The soft limit, in bytes.
        max: usize,
        /// How long it was exceeded.
        period: Duration,
    },
}

/// Why a connection was closed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side and everything owed was sent.
    PeerClosed,
    /// The app closed it.
    App,
    /// The app closed it, and said why ([`crate::Ctx::close_because`]).
    AppError(String),
    /// Silent for longer than the idle timeout.
    Idle,
    /// Output was pending and the peer took none of it for the write
    /// timeout (it stopped reading).
    NotReading,
    /// A limit was exceeded.
    Limit(Limit),
    /// The loop is shutting down.
    Shutdown,
    /// The graceful shutdown ended (its grace period ran out, or a stop
    /// signal came again) with output still owed to the connection.
    ShutdownCut {
        /// Bytes it was owed and did not get.
        unsent: usize,
    },
    /// A read or write failed (reset, broken pipe, ...).
    Error(io::Error),
    /// TLS failed: the handshake (refused, timed out, cut short) or a
    /// record the peer sent (feature `tls`).
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsError),
}

impl CloseReason {
    /// Short text for logs; `None` for the ordinary end of a connection.
    pub fn describe(&self) -> Option<String> {
        match self {
            CloseReason::PeerClosed | CloseReason::App | CloseReason::Shutdown => None,
            CloseReason::AppError(why) => Some(why.clone()),
            CloseReason::Idle => Some("idle timeout".into()),
            CloseReason::NotReading => Some("write timeout (client not reading)".into()),
            CloseReason::Limit(Limit::Input { max }) => {
                Some(format!("input limit exceeded ({max} bytes unconsumed)"))
            }
            CloseReason::Limit(Limit::Output { max }) => Some(format!(
                "output limit exceeded (client not reading): hard limit {max} bytes"
            )),
            CloseReason::Limit(Limit::OutputSoft { max, period }) => Some(format!(
                "output limit exceeded (client not reading): soft limit {max} bytes for {period:?}"
            )),
            CloseReason::ShutdownCut { unsent } => Some(format!(
                "shutdown: closed with {unsent} bytes unsent (the grace period is over)"
            )),
            CloseReason::Error(e) => Some(e.to_string()),
            #[cfg(feature = "tls")]
            CloseReason::Tls(e) => Some(e.to_string()),
        }
    }
}

/// Why [`crate::Ctx::send`] did not queue data (or queued it and the
/// connection is now over its limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No such connection: it closed (or the id is stale).
    Gone,
    /// The connection is closing: the app closed it, it is draining its
    /// last reply, or it is shutting down with the loop; only its own
    /// callbacks may still add to a last reply.
    Closing,
    /// Its write side is shut, or will be once its output is written
    /// ([`crate::Ctx::shutdown_after_flush`]).
    WriteShut,
    /// This data was queued, and took the pushed output over the
    /// connection's limit: it will be closed (the app hears of it in
    /// [`crate::App::on_limit`]).
    OverLimit,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Gone => "the connection is gone",
            SendError::Closing => "the connection is closing",
            SendError::WriteShut => "the connection's write side is shut",
            SendError::OverLimit => "the connection went over its output limit",
        })
    }
}

impl std::error::Error for SendError {}
