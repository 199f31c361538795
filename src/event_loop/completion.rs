//! What the completion driver reports (`--backend uring`): bytes a
//! receive brought, sends that completed, sockets a multishot accept
//! brought. Each goes to the step every driver shares: received bytes to
//! delivery (`input_arrived`, `peer_ended`, `serve_pending`), a finished
//! send to the next write and `after_write`, an accepted socket to
//! `admit`.

use std::io;

use super::{EventLoop, Life};
use crate::app::App;
use crate::conn::{ConnId, Flush, RecvState};
use crate::driver::{Done, Received};
use crate::reason::CloseReason;
use crate::shared::live_in;

impl<S: Default> EventLoop<S> {
    /// Handles the completions of this turn's wait.
    pub(super) fn complete<A: App<State = S>>(&mut self, app: &mut A) {
        let mut batch = std::mem::take(&mut self.done);
        for done in batch.drain(..) {
            match done {
                Done::Received {
                    conn,
                    received,
                    ended,
                } => {
                    if ended {
                        self.receive_ended(conn);
                    }
                    self.received(app, conn, received);
                }
                Done::Sent { conn, result, buf } => self.sent(app, conn, result, buf),
                Done::Accepted {
                    listener,
                    result,
                    more,
                } => self.accepted(app, listener, result, more),
            }
            self.reap(app);
        }
        self.done = batch;
    }

    /// `id`'s receive is no longer armed: noted even on a connection
    /// scheduled to close (its close must not wait for it), and one whose
    /// close waited for it (`finish`) decides at the flush.
    fn receive_ended(&mut self, id: ConnId) {
        if let Some(c) = self.shared.conns.get_mut(id.index())
            && c.is(id)
        {
            c.set_recv_state(RecvState::Idle);
        }
        self.shared.mark_dirty(id);
    }

    fn received<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, received: Received) {
        match received {
            Received::Data { bid, len } => {
                // Straight from the provided buffer, which goes back to
                // the kernel at once.
                if let Some(lent) = self.driver.lend(bid, len) {
                    self.input_arrived(app, id, lent.bytes());
                    self.driver.give_back(lent);
                }
            }
            Received::Eof => self.peer_ended(id),
            // The buffers are back by the time the loop flushes: armed
            // again then.
            Received::NoBuffers => {
                log::debug!(target: "iomux::uring", "no provided buffer free; receive re-armed");
                self.shared.mark_dirty(id);
                return;
            }
            Received::Cancelled => {}
            Received::Error(e) => {
                self.shared.schedule_close(id, CloseReason::Error(e));
                return;
            }
        }
        // Offers what is left, tells a due end of stream, and keeps the
        // receive armed as the connection now wants it.
        if self.serve_pending(app, id, &mut 0) {
            self.update_interest(id);
        }
    }

    /// A send completed with `result` bytes taken (the rest of a short one
    /// went in again, or with `buf` back it is over): the next one starts,
    /// then the same decisions as after any write.
    fn sent<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        result: io::Result<usize>,
        buf: Option<Vec<u8>>,
    ) {
        let now = self.shared.now;
        let Some(conn) = live_in(&mut self.shared.conns, id) else {
            return;
        };
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                self.shared.schedule_close(id, CloseReason::Error(e));
                return;
            }
        };
        conn.sent(n, now);
        let outcome = match buf {
            // A short send: the socket is full; the rest goes when the
            // kernel can take it.
            None => Flush::Blocked,
            Some(buf) => {
                conn.send_done(buf);
                if !conn.owes_output() {
                    Flush::Done
                } else {
                    // The next send starts at this turn's flush, not now:
                    // until then no send holds output, so output pushed
                    // over a limit later in this turn is offered to the
                    // socket at once (`Driver::offer_now`), as on the
                    // readiness backends.
                    self.shared.mark_dirty(id);
                    Flush::Sending
                }
            }
        };
        self.after_write(app, id, n, outcome);
    }

    /// A multishot accept brought a socket, or ended.
    fn accepted<A: App<State = S>>(
        &mut self,
        app: &mut A,
        index: usize,
        result: io::Result<std::os::fd::OwnedFd>,
        more: bool,
    ) {
        match result {
            Ok(fd) => {
                self.emfile_logged = false;
                // After the shutdown began, or for a listener gone, a late
                // connection is closed (dropping it).
                if self.life == Life::Running
                    && let Some((stream, peer, tls)) = self.accepted_stream(index, fd, None)
                {
                    self.admit(app, stream, peer, tls);
                }
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CANCELED.raw_os_error()) => {
                return; // paused or closed: nothing to arm again
            }
            Err(e) => {
                let errno = rustix::io::Errno::from_io_error(&e);
                if !errno.is_some_and(super::accept::is_per_connection) {
                    // Out of descriptors or worse: back off, logged once.
                    self.pause_accepting(e);
                    return;
                }
            }
        }
        if !more
            && self.life == Life::Running
            && let Some(l) = self.listeners.get_mut(index)
            && l.registered
        {
            // The kernel ended the multishot accept: arm it again.
            l.registered = false;
            if let Err(e) = self.watch_listener(index) {
                log::warn!(target: "iomux::accept", "cannot accept again: {e}");
            }
        }
    }
}
