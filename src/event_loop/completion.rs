//! Connection I/O on the completion driver (`--backend uring`): the ring
//! brings received bytes, takes output in sends, hands over accepted
//! sockets. The twin of `conn_io.rs` for readiness backends; what bytes mean
//! is `deliver.rs`'s, as there, and every decision after a write is
//! `after_write`'s, shared by both.

use std::io;
use std::time::Instant;

use super::{EventLoop, Life};
use crate::app::App;
use crate::conn::{Conn, ConnId, Flags, Flush, Phase};
use crate::ctx::CloseReason;
use crate::uring::{Done, Received, RecvState, Ring};

impl<S: Default> EventLoop<S> {
    /// Handles the ring's completions of this turn's wait.
    pub(super) fn complete<A: App<State = S>>(&mut self, app: &mut A) {
        let Some(ring) = self.driver.ring() else {
            return;
        };
        let mut batch = std::mem::take(&mut self.completions);
        ring.take_completions(&mut batch);
        for c in batch.drain(..) {
            let Some(done) = self.driver.ring().and_then(|ring| ring.resolve(c)) else {
                continue;
            };
            match done {
                Done::Received {
                    conn,
                    received,
                    ended,
                } => {
                    // Even for one scheduled to close: its close must not
                    // wait for a receive that is over.
                    if ended
                        && let Some(c) = self.shared.conns.get_mut(conn.index())
                        && c.is(conn)
                    {
                        c.set_recv_state(RecvState::Idle);
                    }
                    self.received(app, conn, received);
                    if ended {
                        self.finish_if_done(conn);
                    }
                }
                Done::Sent {
                    conn,
                    result,
                    buf,
                    off,
                } => self.sent(app, conn, result, buf, off),
                Done::Accepted {
                    listener,
                    result,
                    more,
                } => self.accepted(app, listener, result, more),
            }
            self.reap(app);
        }
        self.completions = batch;
    }

    /// A connection whose close waited for its receive to end (`finish`)
    /// closes (or lingers) now, if it still owes nothing.
    fn finish_if_done(&mut self, id: ConnId) {
        // `finish` waits as `Draining`; a half-closed connection is closed
        // by its flush as on any backend.
        if self
            .shared
            .live(id)
            .is_some_and(|c| c.phase == Phase::Draining && c.owes_nothing())
        {
            let reason = self.take_close_reason(id, CloseReason::App);
            self.finish(id, reason);
        }
    }

    /// Starts a send of `conn`'s pending output unless one is in flight.
    pub(super) fn start_send(ring: &mut Ring, conn: &mut Conn, id: ConnId) -> io::Result<Flush> {
        if conn.send_in_flight().is_some() {
            return Ok(Flush::Sending);
        }
        match conn.take_output() {
            Some((buf, off)) => {
                Self::submit_send(ring, conn, id, buf, off)?;
                Ok(Flush::Sending)
            }
            None => Ok(Flush::Done),
        }
    }

    /// Sends `buf[off..]` (counted in flight by the caller) and notes the
    /// send's key for a close meanwhile.
    fn submit_send(
        ring: &mut Ring,
        conn: &mut Conn,
        id: ConnId,
        buf: Vec<u8>,
        off: usize,
    ) -> io::Result<()> {
        let key = ring.send(id, crate::uring::raw(&conn.stream), buf, off)?;
        if let Some(io) = conn.io_mut() {
            io.send_op = key;
        }
        Ok(())
    }

    fn received<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, received: Received) {
        let now = self.shared.now;
        match received {
            Received::Data { bid, len } => {
                self.shared.stats.bytes_in += len as u64;
                self.take_data(app, id, bid, len, now);
                // Offers what is left, tells a due end of stream, and keeps
                // the receive armed as the connection now wants it.
                self.readable(app, id, false);
            }
            Received::Eof => {
                let Some(conn) = self.shared.live_mut(id) else {
                    return;
                };
                match conn.phase {
                    Phase::Lingering => {
                        let reason = self.take_close_reason(id, CloseReason::PeerClosed);
                        self.shared.schedule_close(id, reason);
                    }
                    Phase::Open => {
                        conn.phase = Phase::EofPending;
                        // Offered once more with `Ctx::input_ended` true.
                        let rest = conn.has_input();
                        conn.set(Flags::REOFFER, rest);
                        self.readable(app, id, true);
                    }
                    // Past listening (draining, half-closed): as on a
                    // readiness backend, which would not have read it.
                    _ => {}
                }
            }
            // The buffers are back by the time the loop flushes: arm again
            // then.
            Received::NoBuffers => {
                log::debug!(target: "iomux::uring", "no provided buffer free; receive re-armed");
                self.shared.mark_dirty(id);
            }
            Received::Cancelled => self.update_interest(id),
            Received::Error(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
        }
    }

    /// Bytes a receive brought: handed to the app straight from the
    /// provided buffer when it may take them, else kept as unconsumed input
    /// (they came before the receive's cancel did); dropped by a lingering
    /// or departing connection. The buffer goes back to the ring at once.
    fn take_data<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        bid: u16,
        len: usize,
        now: Instant,
    ) {
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = self.shared.live_mut(id) else {
            if let Some(ring) = self.driver.ring() {
                ring.give_back(bid);
            }
            return;
        };
        let deliver = conn.may_deliver(max_jobs);
        let keep = matches!(conn.phase, Phase::Open | Phase::EofPending);
        if keep {
            conn.io_or_new(now).last_read = now;
        }
        let Some(mut bufs) = self.driver.ring().and_then(Ring::take_bufs) else {
            return;
        };
        let data = bufs.get(bid, len);
        if deliver {
            self.offer(app, id, data);
        } else if let Some(conn) = self.shared.live_mut(id) {
            if keep {
                conn.io_or_new(now).input.extend_from_slice(data);
            } else if conn.phase != Phase::Lingering {
                conn.set(Flags::DISCARDED, true);
            }
        }
        bufs.give_back(bid);
        if let Some(ring) = self.driver.ring() {
            ring.put_bufs(bufs);
        }
    }

    /// A send completed: count it, send the rest of a short one or the
    /// output queued meanwhile, then decide as after any write.
    fn sent<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        result: io::Result<usize>,
        buf: Vec<u8>,
        off: usize,
    ) {
        let now = self.shared.now;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        let n = match result {
            Ok(0) if off < buf.len() => Err(io::ErrorKind::WriteZero.into()),
            other => other,
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.shared.schedule_close(id, CloseReason::Error(e));
                return;
            }
        };
        conn.sent(n, now);
        let Some(ring) = self.driver.ring() else {
            return;
        };
        let outcome = if off < buf.len() {
            // A short send: the socket is full; the rest goes when the
            // kernel can take it.
            Self::submit_send(ring, conn, id, buf, off).map(|()| Flush::Blocked)
        } else {
            conn.send_done(buf);
            Self::start_send(ring, conn, id)
        };
        match outcome {
            Ok(outcome) => self.after_write(app, id, n, outcome),
            Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
        }
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
                    && let Some((stream, peer)) = self.accepted_stream(index, fd, None)
                {
                    self.admit(app, stream, peer);
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
            if let Some(token) = super::token::listener(index)
                && let Err(e) = self.watch_listener(index, token)
            {
                log::warn!(target: "iomux::accept", "cannot accept again: {e}");
            }
        }
    }
}
