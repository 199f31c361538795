//! What the bench writes and what it must read back: request `k` of a
//! connection, and the exact bytes of its response, for each of the
//! bench's own [`Mode`]s; or, for any other protocol ([`Mode::Framed`]),
//! one fixed request and a rule that finds where each reply ends.
//!
//! In the bench's own modes every request of a connection differs (its
//! sequence number is mixed into it), so a response to the wrong request
//! is caught byte for byte. A framed protocol's replies are only framed:
//! the bench cannot know what a server should answer.

use super::protocol::{self, ReplyRule};
use std::io::Write;

/// What a request and its response look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The response is the request's bytes, echoed.
    Echo,
    /// The response is this fixed text (the `ack` app's reply).
    Ack(Vec<u8>),
    /// `hash N TEXT` lines (the `hash` app): light connections ask N = 1,
    /// `heavy` further connections ask N = `heavy_iters`.
    Hash { heavy: usize, heavy_iters: u64 },
    /// Any protocol: the same `request` every time (`--request`, or a
    /// keep-alive `GET /` with `--mode http`), each reply found by `reply`.
    Framed { request: Vec<u8>, reply: ReplyRule },
}

impl Mode {
    /// The mode's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Ack(_) => "ack",
            Mode::Hash { .. } => "hash",
            Mode::Framed {
                reply: ReplyRule::Http,
                ..
            } => "http",
            Mode::Framed { .. } => "request",
        }
    }

    /// The mode as the report names it, with a framed protocol's reply
    /// rule: `echo`, `request (replies until '\n')`, `http`.
    pub fn describe(&self) -> String {
        match self {
            Mode::Framed {
                reply: reply @ (ReplyRule::Until(_) | ReplyRule::Len(_)),
                ..
            } => format!("request (replies {reply})"),
            other => other.name().to_string(),
        }
    }

    /// The request a framed mode sends, and its reply rule.
    pub fn framed(&self) -> Option<(&[u8], &ReplyRule)> {
        match self {
            Mode::Framed { request, reply } => Some((request, reply)),
            _ => None,
        }
    }

    /// `--mode http`'s request when `--request` is not given: a keep-alive
    /// `GET /` naming `target` (`HOST:PORT`, as the user gave it) in its
    /// `Host` field, which HTTP/1.1 requires; a Unix-domain server is
    /// `localhost`.
    pub fn http_get(target: &str) -> Vec<u8> {
        let host = if target.starts_with("unix:") {
            "localhost"
        } else {
            target
        };
        format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
    }
}

/// What a run of bytes from the server came to, for the response being
/// read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The first `used` bytes are the next part of it; more is owed.
    Part { used: usize },
    /// It is complete after the first `used` bytes; it was `len` bytes.
    Whole { used: usize, len: usize },
    /// A framed reply not complete yet: nothing is used until more arrives
    /// (the loop keeps the bytes and offers them again).
    More,
    /// The bytes are not what was owed, and why.
    Wrong(String),
}

/// Request `seq` of a connection: `base` with the sequence number mixed
/// into its first bytes, so a response from the wrong request is caught.
pub fn build_request(base: &[u8], seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    for (b, s) in out.iter_mut().zip(seq.to_le_bytes()) {
        *b ^= s;
    }
}

/// The `hash` app's reply to TEXT with N iterations.
pub fn hash_reply(text: &[u8], n: u64) -> Vec<u8> {
    let mut reply = crate::apps::iterated_sha256_hex(text, n).into_bytes();
    reply.push(b'\n');
    reply
}

/// The reply to the one heavy request (`hash N heavy BASE`).
fn heavy_reply(base: &[u8], iters: u64) -> Vec<u8> {
    let mut text = b"heavy ".to_vec();
    text.extend_from_slice(base);
    hash_reply(&text, iters)
}

const PAYLOAD_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A printable pseudo-random payload of `size` bytes.
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// One thread's requests and expected responses, built into a scratch
/// buffer so that a request costs no allocation.
pub(crate) struct Wire {
    mode: Mode,
    size: usize,
    /// Bytes of request 0; request k differs in its first 8 bytes.
    base: Vec<u8>,
    /// Scratch for building a request or an expected response.
    scratch: Vec<u8>,
    /// The one heavy request's expected reply, computed once.
    heavy_reply: Option<Vec<u8>>,
}

impl Wire {
    pub(crate) fn new(mode: &Mode, size: usize) -> Wire {
        let base = payload(size, PAYLOAD_SEED);
        Wire {
            mode: mode.clone(),
            size,
            // Computed before the run: it costs as much as a heavy request.
            heavy_reply: match *mode {
                Mode::Hash { heavy, heavy_iters } if heavy > 0 => {
                    Some(heavy_reply(&base, heavy_iters))
                }
                _ => None,
            },
            base,
            scratch: Vec::with_capacity(size),
        }
    }

    /// Request `seq` of a (heavy or light) connection.
    pub(crate) fn request(&mut self, heavy: bool, seq: u64) -> &[u8] {
        match &self.mode {
            Mode::Framed { request, .. } => return request,
            Mode::Echo | Mode::Ack(_) => build_request(&self.base, seq, &mut self.scratch),
            &Mode::Hash { heavy_iters, .. } => {
                // Light texts vary with seq; the heavy text is fixed, so its
                // (expensive) expected digest is computed once.
                self.scratch.clear();
                if heavy {
                    let _ = write!(self.scratch, "hash {heavy_iters} heavy ");
                } else {
                    let _ = write!(self.scratch, "hash 1 {seq} ");
                }
                self.scratch.extend_from_slice(&self.base);
                self.scratch.push(b'\n');
            }
        }
        &self.scratch
    }

    /// What `input` (bytes from the server, `offset` bytes into response
    /// `seq` of a heavy or light connection) comes to.
    pub(crate) fn take(&mut self, heavy: bool, seq: u64, offset: usize, input: &[u8]) -> Step {
        if let Mode::Framed { reply, .. } = &self.mode {
            // The loop keeps a reply's first bytes until it is whole, so
            // the rule always sees it from its start.
            return match protocol::reply_len(reply, input) {
                Ok(Some(len)) => Step::Whole { used: len, len },
                Ok(None) => Step::More,
                Err(why) => Step::Wrong(format!("response {seq} is malformed: {why}")),
            };
        }
        let len = self.response_len();
        let take = len.saturating_sub(offset).min(input.len());
        let name = self.mode.name();
        let expected = self.expected(heavy, seq);
        let (want, got) = (
            expected.get(offset..offset + take).unwrap_or_default(),
            &input[..take],
        );
        if want != got {
            let at = offset + want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
            return Step::Wrong(format!(
                "response {seq} differs from what {name} mode expects at byte {at}"
            ));
        }
        if offset + take == len {
            Step::Whole { used: take, len }
        } else {
            Step::Part { used: take }
        }
    }

    /// How much of the response being read has arrived, for a message.
    pub(crate) fn progress(&self, received: usize) -> String {
        match &self.mode {
            Mode::Framed { .. } => format!("{received} bytes of an unfinished reply"),
            _ => format!(
                "{received} of {} bytes of the response",
                self.response_len()
            ),
        }
    }

    /// The bytes response `seq` of a (heavy or light) connection must have
    /// (none in framed mode: its replies are only framed).
    fn expected(&mut self, heavy: bool, seq: u64) -> &[u8] {
        match &self.mode {
            Mode::Framed { .. } => &[],
            Mode::Echo => {
                build_request(&self.base, seq, &mut self.scratch);
                &self.scratch
            }
            Mode::Ack(reply) => reply,
            Mode::Hash { heavy_iters, .. } if heavy => {
                let (base, n) = (&self.base, *heavy_iters);
                self.heavy_reply.get_or_insert_with(|| heavy_reply(base, n))
            }
            Mode::Hash { .. } => {
                let mut text = format!("{seq} ").into_bytes();
                text.extend_from_slice(&self.base);
                self.scratch = hash_reply(&text, 1);
                &self.scratch
            }
        }
    }

    /// The length of every response in the bench's own modes (framed
    /// replies have a length of their own each).
    fn response_len(&self) -> usize {
        match &self.mode {
            Mode::Echo => self.size,
            Mode::Ack(reply) => reply.len(),
            Mode::Hash { .. } => 65,
            Mode::Framed { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_differ_by_sequence_and_keep_their_size() {
        let base = payload(64, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        build_request(&base, 0, &mut a);
        build_request(&base, 1, &mut b);
        assert_eq!(a, base);
        assert_eq!(b.len(), 64);
        assert_ne!(a, b);
        let mut tiny = Vec::new();
        build_request(&base[..3], 0x0102_0304, &mut tiny);
        assert_eq!(tiny.len(), 3);
    }

    #[test]
    fn payload_is_printable_and_deterministic() {
        let p = payload(100, 7);
        assert!(p.iter().all(|b| b.is_ascii_lowercase()));
        assert_eq!(p, payload(100, 7));
        assert_ne!(p, payload(100, 8));
    }
}
