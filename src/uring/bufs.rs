//! A ring of provided buffers (`IORING_REGISTER_PBUF_RING`, Linux 5.19):
//! the kernel picks a free buffer for each multishot receive completion,
//! the loop hands the bytes to the app straight from it and gives the
//! buffer back at once. One ring is shared by every connection of a loop,
//! so an idle connection costs no buffer at all.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The layout of a ring entry (`struct io_uring_buf`), to write its
/// fields one by one; `resv` of entry 0 is the ring's tail.
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawEntry>() == std::mem::size_of::<BufRingEntry>());

/// The buffers of one buffer group, and the ring that lends them.
pub(crate) struct BufRing {
    /// `count` ring entries, page-aligned (the kernel maps them).
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// `count * size` bytes of buffers.
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    size: usize,
    /// Our copy of the ring's tail (entries published so far).
    tail: u16,
}

impl BufRing {
    /// `count` (a power of two, at most 32768) buffers of `size` bytes,
    /// registered with `ring` as buffer group `group`.
    pub(super) fn new(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a buffer ring needs a power-of-two count up to 32768 and a size below 4 GiB",
            ));
        }
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        let memory_layout =
            Layout::from_size_align(usize::from(count) * size, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count and size are
        // non-zero); a null result is handled.
        let (entries, memory) = unsafe {
            (
                NonNull::new(alloc_zeroed(entries_layout).cast::<BufRingEntry>()),
                NonNull::new(alloc_zeroed(memory_layout)),
            )
        };
        let (Some(entries), Some(memory)) = (entries, memory) else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut bufs = BufRing {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            bufs.give_back(bid);
        }
        // SAFETY: the entries stay allocated (and the buffers they point
        // to) until this value is dropped, which the ring's owner does only
        // once the kernel is done with them (`Ring`'s `Drop` waits for its
        // operations, or leaks this).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        Ok(bufs)
    }

    /// The first `len` bytes of buffer `bid`, which a completion just
    /// handed us.
    pub(super) fn get(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.count);
        let len = len.min(self.size);
        // SAFETY: buffer `bid` lies inside `memory`; the kernel wrote it
        // before posting the completion that named it and does not touch
        // it again until `give_back` publishes it.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr().add(bid * self.size), len) }
    }

    /// Lends buffer `bid` to the kernel again.
    pub(super) fn give_back(&mut self, bid: u16) {
        let bid = bid % self.count;
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, inside the entries allocation; the kernel
        // reads only entries between its head and the published tail, and
        // this one is past the tail until the store below. The fields are
        // written through raw pointers, never a `&mut` to the entry: entry
        // 0's last field is the tail, which the kernel reads meanwhile.
        unsafe {
            let entry = self.entries.as_ptr().add(index).cast::<RawEntry>();
            let addr = self.memory.as_ptr().add(usize::from(bid) * self.size) as u64;
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.size as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the `resv` field of entry 0, a u16 inside the
        // page-aligned allocation shared with the kernel, which reads it
        // with acquire ordering; the release store publishes the entry.
        unsafe {
            AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()).cast_mut())
                .store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that used
        // them is gone (see `new`).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
