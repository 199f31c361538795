//! Any file descriptor in the loop: a pipe to a child, a UDP socket,
//! stdin, a timerfd, next to the connections.
//!
//! The loop takes *ownership* of what it watches (anything that is
//! [`AsFd`]), so the descriptor cannot be closed while it is registered:
//! [`crate::EventLoop::unwatch`] deregisters first and then hands it back,
//! [`crate::Ctx::unwatch`] deregisters and then drops it. The app reads and
//! writes it through [`crate::Ctx::source`], on readiness told to
//! [`crate::App::on_ready`].
//!
//! Readiness follows the backend: level-triggered backends report a source
//! while it is ready; on `epoll-et` it is reported once per change, so the
//! app must read (or write) until `WouldBlock`, as with any edge-triggered
//! API. Errors and hang-ups are reported as readable and writable: the next
//! read or write says what happened.
//!
//! On the completion driver (`uring`) the kernel does the I/O of the
//! loop's connections, but not of a source: what a source is and how to
//! read it is the app's business. A source is watched there by io_uring
//! poll requests in the same ring, re-armed after each report, so it is
//! level-triggered exactly as on `uring-poll`: reported while it stays
//! ready, reading until `WouldBlock` is allowed but not required.

use std::any::Any;
use std::os::fd::{AsFd, BorrowedFd};

use slab::Slab;

use crate::selector::Interest;

/// Names a watched descriptor for its whole life (it carries a
/// generation, like a connection id).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(pub(crate) u64);

impl SourceId {
    fn new(index: usize, generation: u32) -> SourceId {
        SourceId((generation as u64) << 32 | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What a source is ready for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// A read would not block (or would report end of stream or an error).
    pub readable: bool,
    /// A write would not block (or would report an error).
    pub writable: bool,
}

/// What the loop holds for a watched descriptor: the owner, kept as `Any`
/// so the app can have its own type back.
pub(crate) trait Owned: Any {
    fn fd(&self) -> BorrowedFd<'_>;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: AsFd + Any> Owned for T {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

pub(crate) struct Entry {
    pub owner: Box<dyn Owned>,
    generation: u32,
    pub interest: Interest,
}

/// The watched descriptors.
#[derive(Default)]
pub(crate) struct Sources {
    entries: Slab<Entry>,
    generation: u32,
}

impl Sources {
    /// Adds `owner` (not yet registered).
    pub(crate) fn insert(&mut self, owner: Box<dyn Owned>, interest: Interest) -> SourceId {
        self.generation = (self.generation + 1) & 0x1fff_ffff;
        let entry = self.entries.vacant_entry();
        let id = SourceId::new(entry.key(), self.generation);
        entry.insert(Entry {
            owner,
            generation: self.generation,
            interest,
        });
        id
    }

    pub(crate) fn get(&self, id: SourceId) -> Option<&Entry> {
        self.entries
            .get(id.index())
            .filter(|e| e.generation == id.generation())
    }

    pub(crate) fn get_mut(&mut self, id: SourceId) -> Option<&mut Entry> {
        self.entries
            .get_mut(id.index())
            .filter(|e| e.generation == id.generation())
    }

    pub(crate) fn remove(&mut self, id: SourceId) -> Option<Entry> {
        self.get(id)?;
        Some(self.entries.remove(id.index()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_id_finds_nothing_after_reuse() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (c, _d) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut s = Sources::default();
        let first = s.insert(Box::new(a), Interest::READABLE);
        assert!(s.remove(first).is_some());
        let second = s.insert(Box::new(c), Interest::READABLE);
        assert_eq!(first.index(), second.index(), "the slot is reused");
        assert!(s.get(first).is_none() && s.remove(first).is_none());
        assert!(s.get(second).is_some());
        let owner = s.remove(second).unwrap().owner.into_any();
        assert!(owner.downcast::<std::os::unix::net::UnixStream>().is_ok());
    }
}
