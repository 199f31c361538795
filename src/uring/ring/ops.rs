//! How the ring names its operations: a receive's `user_data` (the
//! connection's id, nothing stored), the table of the others (sends,
//! accepts, cancels), and the receive's total cap in the submission entry.

use std::os::fd::RawFd;

use io_uring::squeue;

use super::super::core::OP_BIT;
use crate::conn::ConnId;

/// Bytes of one provided buffer (how many: `Config::uring_buffers`).
pub(super) const BUFFER_SIZE: usize = 4096;
/// The one buffer group.
pub(super) const GROUP: u16 = 0;
/// `user_data` bit of a connection's receive (the rest is its id).
pub(super) const RECV_BIT: u64 = 1 << 62;
/// The most one arming of a connection's receive brings (where the kernel
/// caps a multishot receive's total, Linux 6.17): how far a connection
/// that stopped taking input can have received ahead before its cancel
/// lands, as the delivery window, not the whole buffer ring.
pub(super) const RECEIVE_WINDOW: u32 = 64 * 1024;
/// Said once per ring on a kernel without that cap.
pub(super) const NO_RECEIVE_CAP: &str = "this kernel does not cap a multishot receive (Linux 6.17): a connection that stops taking input may have received ahead as far as the buffer ring";
/// The `user_data` of the startup check of that cap: a receive's, with a
/// slot index `recv_user_data` never gives.
pub(super) const CAP_PROBE: u64 = OP_BIT | RECV_BIT | 0x7fff_ffff;
/// Where `optlen` (the total cap of a multishot receive) sits in a
/// submission queue entry (`struct io_uring_sqe`).
pub(super) const SQE_OPTLEN: usize = 44;

const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// `entry` with its `optlen` field set to `value`.
pub(super) fn with_optlen(entry: squeue::Entry, value: u32) -> squeue::Entry {
    // SAFETY: `squeue::Entry` is a `repr(C)` wrapper of the 64-byte
    // `struct io_uring_sqe` (size checked above), made of integers, so any
    // bytes are a valid entry; `SQE_OPTLEN` is checked by a test against
    // the crate's own `optlen` setter.
    let mut bytes = unsafe { std::mem::transmute::<squeue::Entry, [u8; 64]>(entry) };
    bytes[SQE_OPTLEN..SQE_OPTLEN + 4].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}

/// A receive's `user_data`: the connection's id in 62 bits (31 of slot
/// index, 31 of generation); `None` for a slot index past 2^31.
pub(super) fn recv_user_data(id: ConnId) -> Option<u64> {
    let index = id.index() as u64;
    // Below 2^31 - 1: the largest id would make `u64::MAX` (`IGNORED`).
    (index < (1 << 31) - 1).then(|| OP_BIT | RECV_BIT | u64::from(id.generation()) << 31 | index)
}

/// The connection a receive's `user_data` (without [`OP_BIT`]) names.
pub(super) fn recv_conn(op: u64) -> ConnId {
    ConnId::new(
        (op & 0x7fff_ffff) as usize,
        ((op >> 31) & 0x7fff_ffff) as u32,
    )
}

/// An operation in the table, by what it is for.
pub(super) enum Op {
    /// A send of `buf[off..]` on `fd` for `conn`; the buffer is the
    /// operation's until it completes. `parked`: the socket had no room
    /// (`-EAGAIN`); not in the kernel, the loop writes it (see
    /// [`Ring::write_parked`]).
    Send {
        conn: ConnId,
        fd: RawFd,
        buf: Vec<u8>,
        off: usize,
        parked: bool,
    },
    /// Listener `index`'s multishot accept.
    Accept { listener: usize },
    /// A cancel of the request with `user_data` `target`.
    Cancel { target: u64 },
}
