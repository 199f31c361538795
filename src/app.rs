//! Applications: what a server does with the bytes.
//!
//! An app never touches a file descriptor. The loop calls it with bytes
//! that arrived; it answers through [`Ctx`] (send, broadcast, close,
//! timers). Input it does not consume stays buffered and is offered again,
//! so framing (lines, length prefixes) is the app's own business.
//!
//! # The contract
//! - **Input** is handed to [`App::on_data`] only while the connection's
//!   output has room (pending output at or below the high-water mark).
//!   What the app does not consume is offered again *without new bytes*
//!   when the call consumed something, when output drains below the
//!   low-water mark, when reading resumes, when a job comes back, and once
//!   more at end of stream (with [`Ctx::input_ended`] true) before
//!   [`App::on_eof`]. An app that answers one request per call, or stops
//!   when [`Ctx::output_full`] says so, never strands a request.
//! - **Output** sent to a connection from its own callbacks is a reply,
//!   bounded by that flow control; output pushed from elsewhere (a
//!   broadcast) is bounded by the output limits.
//! - **Limits** ([`Limit`]) are told to [`App::on_limit`] first: it may
//!   queue a last reply (an error), which is written before the close.
//! - **State**: each connection has an [`App::State`], made with `Default`
//!   when it opens, handed to its callbacks, and given back by value to
//!   [`App::on_close`].

use crate::conn::{ConnId, Origin};
use crate::ctx::Ctx;
use crate::pool::{JobId, JobResult};
use crate::reason::{CloseReason, Limit};
use crate::timer::TimerId;

/// The callbacks of a protocol. All run on the loop thread: keep them short.
pub trait App {
    /// Per-connection state, kept by the loop next to the connection
    /// (`()` for none).
    type State: Default;

    /// Name for logs; the type's name unless the app gives one.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The loop's first turn begins (before any connection opens): set
    /// timers, watch descriptors.
    fn on_start(&mut self, _ctx: &mut Ctx<'_>) {}

    /// A connection opened: accepted, established after a connect (with
    /// the connection that asked for it), or adopted.
    fn on_open(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _state: &mut Self::State,
        _origin: Origin,
    ) {
    }

    /// Bytes arrived. `input` is what earlier calls left unconsumed followed
    /// by any new bytes. Return how many bytes were consumed; the rest is
    /// offered again (see [the contract](crate::app#the-contract)).
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        state: &mut Self::State,
        input: &[u8],
    ) -> usize;

    /// The peer shut down its write side, and all it sent was offered. The
    /// connection closes once its pending output is written.
    fn on_eof(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _state: &mut Self::State) {}

    /// The connection was full ([`Ctx::output_full`]) and its output is now
    /// written down to the low-water mark.
    fn on_drain(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _state: &mut Self::State) {}

    /// `conn` went over `limit` and is about to be closed. Output sent now
    /// (an error reply) is written before the close; without it the
    /// connection is closed at once.
    fn on_limit(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _state: &mut Self::State,
        _limit: Limit,
    ) {
    }

    /// The connection closed, for `reason`; its id is now dead (but
    /// [`Ctx::peer`] and [`Ctx::origin`] still answer for it during this
    /// call).
    fn on_close(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _state: Self::State,
        _reason: &CloseReason,
    ) {
    }

    /// A timer set with [`Ctx::set_timer`] expired; `timer` is the id it
    /// returned.
    fn on_timer(&mut self, _ctx: &mut Ctx<'_>, _timer: TimerId) {}

    /// A timer set with [`Ctx::set_conn_timer`] expired (never after the
    /// connection closed).
    fn on_conn_timer(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _state: &mut Self::State,
        _timer: TimerId,
    ) {
    }

    /// The loop's [`crate::Waker`] rang.
    fn on_wake(&mut self, _ctx: &mut Ctx<'_>) {}

    /// A descriptor watched with [`Ctx::watch`] (or
    /// [`crate::EventLoop::watch`]) is ready; read or write it through
    /// [`Ctx::source`] (until `WouldBlock` on an edge-triggered backend).
    fn on_ready(&mut self, _ctx: &mut Ctx<'_>, _source: crate::SourceId, _ready: crate::Readiness) {
    }

    /// Another loop of the group posted `message` ([`Ctx::post`]);
    /// downcast it to the type that was posted.
    fn on_message(&mut self, _ctx: &mut Ctx<'_>, _message: crate::mailbox::Message) {}

    /// A job given to [`Ctx::offload`] for `conn` finished. Results for a
    /// connection that closed meanwhile are dropped. A job that panicked
    /// returns [`crate::pool::JobPanicked`].
    fn on_job_done(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _state: &mut Self::State,
        _job: JobId,
        _result: JobResult,
    ) {
    }
}

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

/// Whether an unfinished line (no `\n` yet) is already over `max` bytes.
/// A trailing `\r` may be the first half of the line's `\r\n`, so it does
/// not count: a line of exactly `max` bytes is accepted however its
/// terminator arrives.
fn line_too_long(tail: &[u8], max: usize) -> bool {
    tail.strip_suffix(b"\r").unwrap_or(tail).len() > max
}

/// One frame of a line protocol, from [`LineFramer::frames`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` (nor a `\r` before it).
    Line(&'a [u8]),
    /// A line over the limit, told once; its bytes are dropped up to the
    /// next `\n`, however many reads that takes.
    TooLong,
}

/// Where a [`LineFramer`] is between calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum FramerState {
    /// At the start of a line, or inside one that is within the limit.
    #[default]
    InLine,
    /// Inside a line already reported [`Frame::TooLong`]: drop its rest.
    Skipping,
}

/// Cuts `\n`-terminated lines with a length limit, whatever way the bytes
/// are cut into reads. Keep one per connection (in [`App::State`]): an
/// over-long line is reported once, as soon as it passes the limit, and
/// its rest is skipped without being buffered, so a client cannot grow the
/// server's memory with a line that never ends.
///
/// ```
/// use iomux::app::{Frame, LineFramer};
///
/// let mut framer = LineFramer::default(); // one per connection
/// let input = b"ping\r\ntoo long\nok\npart";
/// let mut frames = framer.frames(input, 4);
/// assert_eq!(frames.next(), Some(Frame::Line(b"ping")));
/// assert_eq!(frames.next(), Some(Frame::TooLong));
/// assert_eq!(frames.next(), Some(Frame::Line(b"ok")));
/// assert_eq!(frames.next(), None);
/// // What `on_data` returns: "part" is offered again with the next bytes.
/// assert_eq!(frames.consumed(), input.len() - 4);
/// ```
#[derive(Clone, Debug, Default)]
pub struct LineFramer {
    state: FramerState,
}

impl LineFramer {
    /// The frames at the front of `input` (what `on_data` was given):
    /// lines longer than `max` bytes (the `\n` and a `\r` before it not
    /// counted) are [`Frame::TooLong`]. The
    /// rest of a line being skipped is consumed at once; every frame is
    /// consumed when it is returned. To leave a [`Frame::Line`] for later
    /// (output is full, say), return [`Frames::consumed`] as it was before
    /// the `next` that gave it.
    pub fn frames<'a>(&'a mut self, input: &'a [u8], max: usize) -> Frames<'a> {
        let mut at = 0;
        if self.state == FramerState::Skipping {
            match input.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    at = end + 1;
                    self.state = FramerState::InLine;
                }
                None => at = input.len(),
            }
        }
        Frames {
            framer: self,
            input,
            at,
            max,
        }
    }
}

/// The frames of one input, from [`LineFramer::frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    framer: &'a mut LineFramer,
    input: &'a [u8],
    at: usize,
    max: usize,
}

impl Frames<'_> {
    /// The bytes used so far: every frame returned, and skipped bytes.
    pub fn consumed(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        let rest = &self.input[self.at..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.at += end + 1;
                let line = &rest[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Some(if line.len() > self.max {
                    Frame::TooLong
                } else {
                    Frame::Line(line)
                })
            }
            None if self.framer.state == FramerState::InLine && line_too_long(rest, self.max) => {
                self.at = self.input.len();
                self.framer.state = FramerState::Skipping;
                Some(Frame::TooLong)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Frame, LineFramer, line_too_long, split_lines};

    #[test]
    fn a_line_of_exactly_the_limit_passes_whichever_way_its_crlf_arrives() {
        assert!(!line_too_long(b"abcd", 4));
        assert!(!line_too_long(b"abcd\r", 4), "CR first, LF still to come");
        assert!(line_too_long(b"abcde", 4));
        assert!(line_too_long(b"abcde\r", 4));
        assert!(!line_too_long(b"", 0));
    }

    #[test]
    fn split_lines_keeps_the_partial_tail() {
        let (lines, used) = split_lines(b"a\nbc\r\n\nrest");
        assert_eq!(lines, vec![&b"a"[..], b"bc", b""]);
        assert_eq!(used, 7);
        let (lines, used) = split_lines(b"no newline");
        assert!(lines.is_empty());
        assert_eq!(used, 0);
    }

    #[test]
    fn an_over_long_line_is_told_once_and_its_rest_skipped_across_reads() {
        let mut framer = LineFramer::default();
        let mut frames = framer.frames(b"abcdef", 3);
        assert_eq!(frames.next(), Some(Frame::TooLong));
        assert_eq!((frames.next(), frames.consumed()), (None, 6));
        let mut frames = framer.frames(b"ghi", 3);
        assert_eq!(
            (frames.next(), frames.consumed()),
            (None, 3),
            "still skipping"
        );
        let mut frames = framer.frames(b"jk\nxy\r\n", 3);
        assert_eq!(frames.next(), Some(Frame::Line(b"xy")));
        assert_eq!(frames.consumed(), 7);
    }
}
