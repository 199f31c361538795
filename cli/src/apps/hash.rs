//! `hash`: real, verifiable CPU work per request, to show (and cure) the
//! slow-handler problem.
//!
//! Protocol, one request per line: `hash N TEXT\n` → the lower-case hex of
//! SHA-256 iterated N times (round 1 over TEXT's bytes, each next round
//! over the previous 32-byte digest) and `\n`. TEXT is everything after the
//! second space, verbatim. Anything else gets `error: REASON\n` and the
//! connection stays usable; so does a line over `max_line`, which gets one
//! `error: line too long\n` while the rest of it is skipped.
//!
//! Requests with `N >= offload_above` go to the offload pool when there is
//! one; replies still leave in request order (a per-connection queue of
//! ready and awaited replies). Cheap requests run inline, within a budget
//! per read: a burst of thousands of cheap lines in one read would hold the
//! loop as long as one heavy request, so past the budget (or behind a reply
//! that is already awaited, which they must wait for anyway) they go to the
//! pool too. Jobs count against the loop's per-connection job limit, which
//! pauses reading: a client that pipelines without end cannot grow memory.

use iomux::App;
use iomux::ConnId;
use iomux::Ctx;
use iomux::app::{Frame, LineFramer};
use iomux::pool::{JobId, JobResult};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// Largest accepted N.
pub const MAX_ITERATIONS: u64 = 10_000_000;

/// SHA-256 of `text`, iterated `n` times (n >= 1), as lower-case hex.
pub fn iterated_sha256_hex(text: &[u8], n: u64) -> String {
    let mut digest = Sha256::digest(text);
    for _ in 1..n {
        digest = Sha256::digest(digest);
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub iterations: u64,
    pub text: &'a [u8],
}

/// Parses `hash N TEXT`; the error is the REASON of `error: REASON`.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, String> {
    let (command, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if command != b"hash" {
        if command.is_empty() {
            return Err("empty request (expected: hash N TEXT)".into());
        }
        return Err(format!(
            "unknown command '{}' (expected: hash N TEXT)",
            String::from_utf8_lossy(&command[..command.len().min(32)])
        ));
    }
    let rest = rest.ok_or("missing N and TEXT (expected: hash N TEXT)")?;
    let space = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or("missing TEXT (expected: hash N TEXT)")?;
    let (number, text) = (&rest[..space], &rest[space + 1..]);
    let iterations = std::str::from_utf8(number)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| (1..=MAX_ITERATIONS).contains(n))
        .ok_or_else(|| format!("N must be a whole number from 1 to {MAX_ITERATIONS}"))?;
    Ok(Request { iterations, text })
}

enum Reply {
    Ready(Vec<u8>),
    Awaiting(JobId),
}

/// A connection's replies in request order, ready or awaited.
#[derive(Default)]
pub struct ConnState {
    replies: VecDeque<Reply>,
    /// Over-long lines get an error and their rest is skipped.
    framer: LineFramer,
}

/// The hash app.
pub struct Hash {
    max_line: usize,
    offload_above: u64,
    /// Iterations run inline in the current `on_data` call.
    spent: u64,
}

/// Inline iterations allowed per read, in units of `offload_above`.
const INLINE_BUDGET: u64 = 8;

impl Hash {
    /// Lines over `max_line` bytes are refused; requests with at least
    /// `offload_above` iterations run on the pool when there is one.
    pub fn new(max_line: usize, offload_above: u64) -> Hash {
        Hash {
            max_line,
            offload_above,
            spent: 0,
        }
    }

    /// Answers one request line. False when it should go to the pool but
    /// the connection is at its job limit: the line is left unconsumed and
    /// offered again once a job comes back.
    fn answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        replies: &mut VecDeque<Reply>,
        line: &[u8],
    ) -> bool {
        let reply = match parse_request(line) {
            Err(reason) => Reply::Ready(format!("error: {reason}\n").into_bytes()),
            Ok(req) => {
                let offload = ctx.workers() > 0 && self.should_offload(replies, req.iterations);
                if offload && !ctx.can_offload(conn) {
                    return false;
                }
                let (text, n) = (req.text.to_vec(), req.iterations);
                let job = offload
                    .then(|| {
                        ctx.offload(conn, move || {
                            Box::new(format!("{}\n", iterated_sha256_hex(&text, n))) as JobResult
                        })
                    })
                    .flatten();
                match job {
                    Some(job) => Reply::Awaiting(job),
                    None => {
                        self.spent += req.iterations;
                        let digest = iterated_sha256_hex(req.text, req.iterations);
                        Reply::Ready(format!("{digest}\n").into_bytes())
                    }
                }
            }
        };
        ctx.record_request();
        replies.push_back(reply);
        true
    }

    fn should_offload(&self, replies: &VecDeque<Reply>, iterations: u64) -> bool {
        // Ready replies are sent as soon as they reach the front, so a
        // queue that starts with an awaited one is the only way to wait.
        let awaiting = matches!(replies.front(), Some(Reply::Awaiting(_)));
        iterations >= self.offload_above
            || awaiting
            || self.spent + iterations > self.offload_above.saturating_mul(INLINE_BUDGET)
    }
}

/// Sends the replies at the front of the queue that are ready.
fn send_ready(ctx: &mut Ctx<'_>, conn: ConnId, replies: &mut VecDeque<Reply>) {
    while let Some(Reply::Ready(_)) = replies.front() {
        if let Some(Reply::Ready(bytes)) = replies.pop_front()
            && ctx.send(conn, &bytes).is_err()
        {
            return; // closing: the rest has nowhere to go
        }
    }
}

impl App for Hash {
    type State = ConnState;

    fn name(&self) -> &'static str {
        "hash"
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        state: &mut ConnState,
        input: &[u8],
    ) -> usize {
        self.spent = 0;
        let mut frames = state.framer.frames(input, self.max_line);
        loop {
            let before = frames.consumed();
            if ctx.output_full(conn) {
                // Stop between requests; the rest comes back after a drain.
                send_ready(ctx, conn, &mut state.replies);
                return before;
            }
            match frames.next() {
                None => break,
                Some(Frame::TooLong) => state
                    .replies
                    .push_back(Reply::Ready(b"error: line too long\n".to_vec())),
                Some(Frame::Line(line)) => {
                    if !self.answer(ctx, conn, &mut state.replies, line) {
                        send_ready(ctx, conn, &mut state.replies);
                        return before;
                    }
                }
            }
            send_ready(ctx, conn, &mut state.replies);
        }
        frames.consumed()
    }

    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        state: &mut ConnState,
        job: JobId,
        result: JobResult,
    ) {
        let bytes = match result.downcast::<String>() {
            Ok(text) => text.into_bytes(),
            Err(_) => b"error: internal error\n".to_vec(),
        };
        for reply in state.replies.iter_mut() {
            if matches!(reply, Reply::Awaiting(j) if *j == job) {
                *reply = Reply::Ready(bytes);
                break;
            }
        }
        send_ready(ctx, conn, &mut state.replies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sha256_vectors() {
        // FIPS 180-2 / common test vectors.
        assert_eq!(
            iterated_sha256_hex(b"abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            iterated_sha256_hex(b"", 1),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Two rounds = SHA-256 over the 32 raw bytes of the first digest.
        let first = Sha256::digest(b"abc");
        let second: String = Sha256::digest(first)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(iterated_sha256_hex(b"abc", 2), second);
    }

    #[test]
    fn parses_requests_with_spaces_in_text() {
        assert_eq!(
            parse_request(b"hash 3 hello  world "),
            Ok(Request {
                iterations: 3,
                text: b"hello  world "
            })
        );
        assert_eq!(parse_request(b"hash 1 ").unwrap().text, b"");
    }

    #[test]
    fn refuses_bad_requests_with_a_reason() {
        for (line, reason) in [
            (&b"hash 0 x"[..], "N must be"),
            (b"hash 10000001 x", "N must be"),
            (b"hash -1 x", "N must be"),
            (b"hash 1e3 x", "N must be"),
            (b"hash  x", "N must be"),
            (b"hash 5", "missing TEXT"),
            (b"hash", "missing N"),
            (b"sha 1 x", "unknown command 'sha'"),
            (b"", "empty request"),
        ] {
            let err = parse_request(line).unwrap_err();
            assert!(
                err.contains(reason),
                "{:?}: {err}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
