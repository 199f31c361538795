//! io_uring, both ways: as a readiness source ([`UringPoll`],
//! `--backend uring-poll`) and as the completion driver's kernel side
//! (`--backend uring`).
//!
//! On the readiness backends the loop asks "which sockets are ready?" and
//! then makes a `recv` and a `send` system call per request. Here it asks
//! the kernel to do the I/O: a multishot accept per listener, a multishot
//! receive per connection into a shared ring of provided buffers, a send
//! per batch of output; every request of a turn goes in with the one
//! `io_uring_enter` that also waits for the turn's completions.
//!
//! What is not a connection's data (the waker, the signal pipe, the app's
//! own descriptors, an outbound connect in progress) still goes through
//! poll requests in the same ring: the ring is a selector for those.
//!
//! Files: `core.rs` (setup, probe, submission, the one enter, the
//! `user_data` bits), `poll.rs` (poll requests, the `uring-poll`
//! selector), `ring.rs` (the completion driver's operations), `bufs.rs`
//! (the provided-buffer ring).

mod bufs;
mod core;
mod poll;
mod ring;

pub use poll::UringPoll;
pub(crate) use ring::{Done, Lent, Received, Ring, SendState};
