//! Applications: what a server does with the bytes.
//!
//! An app never touches a file descriptor. The loop calls it with bytes
//! that arrived; it answers through [`Ctx`] (send, broadcast, close,
//! timers). Input it does not consume stays buffered for the next call,
//! so framing (lines, length prefixes) is the app's own business.

use crate::conn::ConnId;
use crate::event_loop::{CloseReason, Ctx};
use crate::pool::{JobId, JobResult};

mod ack;
mod chat;
mod echo;
#[cfg(feature = "hash")]
mod hash;

pub use ack::Ack;
pub use chat::Chat;
pub use echo::Echo;
#[cfg(feature = "hash")]
pub use hash::{Hash, MAX_ITERATIONS, iterated_sha256_hex, parse_request};

/// The callbacks of a protocol. All run on the loop thread: keep them short.
pub trait App {
    /// Name for logs.
    fn name(&self) -> &'static str;

    /// A connection opened.
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId) {}

    /// Bytes arrived. `input` is what earlier calls left unconsumed followed
    /// by the new bytes. Return how many bytes were consumed; the rest is
    /// offered again, with more, next time.
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, input: &[u8]) -> usize;

    /// The peer shut down its write side. The connection closes once its
    /// pending output is written.
    fn on_eof(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId) {}

    /// The connection closed, for `reason`; its id is now dead.
    fn on_close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _reason: &CloseReason) {}

    /// A timer set with [`Ctx::set_timer`] expired.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>, _timer: u64) {}

    /// The loop's [`crate::Waker`] rang.
    fn on_wake(&mut self, _ctx: &mut Ctx<'_>) {}

    /// A job given to [`Ctx::offload`] for `conn` finished (`conn` may have
    /// closed meanwhile). A job that panicked returns
    /// [`crate::pool::JobPanicked`].
    fn on_job_done(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _job: JobId, _result: JobResult) {}
}

/// The shipped apps, by name.
pub const NAMES: [&str; 4] = ["ack", "echo", "chat", "hash"];

/// Splits complete `\n`-terminated lines off the front of `input`. Returns
/// the lines (without `\n`, nor a `\r` before it) and the bytes they used.
pub fn split_lines(input: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut lines = Vec::new();
    let mut used = 0;
    while let Some(pos) = input[used..].iter().position(|&b| b == b'\n') {
        let line = &input[used..used + pos];
        lines.push(line.strip_suffix(b"\r").unwrap_or(line));
        used += pos + 1;
    }
    (lines, used)
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn split_lines_keeps_the_partial_tail() {
        let (lines, used) = split_lines(b"a\nbc\r\n\nrest");
        assert_eq!(lines, vec![&b"a"[..], b"bc", b""]);
        assert_eq!(used, 7);
        let (lines, used) = split_lines(b"no newline");
        assert!(lines.is_empty());
        assert_eq!(used, 0);
    }
}
