//! Connection I/O on a readiness backend: read what the socket has, write
//! what the connection owes, keep the selector's interest in step, and
//! close without destroying output in flight.
//!
//! This file is the seam to the kernel for connections. What bytes mean
//! (offering them to the app, flow control, limits) is in `deliver.rs`,
//! which does not care how the bytes arrived; the completion driver
//! (`completion.rs`) feeds the same `offer` and ends in the same
//! `after_write`, and `update_interest` arms or cancels its receive.

use std::io;
use std::os::fd::AsFd;

use super::{EventLoop, READ_CHUNK, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Flush, Phase};
use crate::ctx::CloseReason;
use crate::selector::{Event, Interest, Selector, Token};
use crate::shared::TimerKind;
use crate::uring::RecvState;

/// Offers of unconsumed input (without new bytes) per connection per
/// event, before others get a go.
const REOFFER_BUDGET: usize = 64;

impl<S: Default> EventLoop<S> {
    pub(super) fn conn_event<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, event: Event) {
        if self
            .shared
            .live(id)
            .is_some_and(|c| c.phase == Phase::Connecting)
        {
            if event.is_writable() || event.is_error() || event.is_hup() {
                self.complete_connect(app, id);
            }
            return;
        }
        if event.is_readable() {
            self.readable(app, id, event.is_read_closed());
        }
        if event.is_writable() && self.shared.live(id).is_some_and(|c| c.pending() > 0) {
            self.flush(app, id);
        }
        // An error or hang-up on a connection that is neither reading nor
        // writing (half-closed, waiting for a job, paused) would be
        // reported again on every wait: close it now.
        let max_jobs = self.shared.config.max_jobs_per_conn;
        if (event.is_error() || event.is_hup())
            && let Some(c) = self.shared.live(id)
            && c.pending() == 0
            && !c.may_read(max_jobs)
        {
            let reason = match c.stream.take_error().ok().flatten() {
                Some(error) => CloseReason::Error(error),
                // A peer that ended its stream and then closed (a Unix
                // socket reports that as a hang-up) left cleanly.
                None if matches!(c.phase, Phase::ReadClosed | Phase::EofPending) => {
                    CloseReason::PeerClosed
                }
                None => CloseReason::Error(io::ErrorKind::ConnectionReset.into()),
            };
            self.shared.schedule_close(id, reason);
        }
    }

    /// An outbound connect's socket turned writable: established, or the
    /// error it failed with.
    fn complete_connect<A: App<State = S>>(&mut self, app: &mut A, id: ConnId) {
        let completion = self.shared.completion;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(None) => match conn.stream.is_connected() {
                Ok(true) => None,
                Ok(false) => return, // not yet: a spurious wake-up
                Err(e) => Some(e),
            },
            Ok(Some(e)) | Err(e) => Some(e),
        };
        if let Some(e) = failed {
            self.shared.schedule_close(id, CloseReason::Error(e));
            return;
        }
        conn.phase = Phase::Open;
        if completion {
            // From now on the ring does its I/O (`update_interest` arms the
            // receive); the poll that waited for the connect goes.
            let _ = self.driver.selector().deregister(conn.stream.as_fd());
            conn.registered = crate::selector::Interest::NONE;
        }
        log::info!(target: "iomux::conn", "connected {}", conn.peer());
        self.open(app, id);
        // Queued output goes out; the reply may already be waiting (and on
        // an edge-triggered backend its edge came with this event).
        self.shared.mark_dirty(id);
        self.shared.unfinished.push(Token(id.0));
    }

    /// Offers what the connection holds, tells of the peer's end when it
    /// is due, and (on a readiness backend) reads and offers input until
    /// the socket is drained, the budget is spent, or the connection may
    /// not take more. On the completion driver the ring brings the bytes
    /// (`completion.rs`); this only keeps its receive armed as wanted.
    pub(super) fn readable<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, peer_shut: bool) {
        // Out of `self` while the app runs: `offer` borrows the loop.
        let mut scratch = std::mem::take(&mut self.scratch);
        self.read_loop(app, id, peer_shut, &mut scratch);
        self.scratch = scratch;
    }

    fn read_loop<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        peer_shut: bool,
        scratch: &mut [u8],
    ) {
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let mut budget = self.shared.config.read_budget;
        let completion = self.shared.completion;
        let mut offers = 0;
        let now = self.shared.now;
        loop {
            let Some(conn) = self.shared.live_mut(id) else {
                return;
            };
            if conn.has(Flags::REOFFER) {
                if !conn.may_deliver(max_jobs) {
                    // Offered again once there is room (drain, resume, job).
                    self.update_interest(id);
                    return;
                }
                if offers == REOFFER_BUDGET {
                    self.shared.unfinished.push(Token(id.0));
                    if completion {
                        // No receiving ahead of a backlog (it cancels the
                        // receive while input waits to be offered).
                        self.update_interest(id);
                    }
                    return;
                }
                offers += 1;
                self.offer(app, id, &[]);
                continue;
            }
            if conn.phase == Phase::EofPending {
                if (conn.has_input() && !conn.may_deliver(max_jobs)) || conn.has(Flags::APP_PAUSED)
                {
                    // Requests wait for room (a drain, a job back); the end
                    // of stream is told after them.
                    return;
                }
                self.tell_eof(app, id);
                return;
            }
            if !conn.may_read(max_jobs) || completion {
                self.update_interest(id);
                return;
            }
            let lingering = conn.phase == Phase::Lingering;
            match conn.read(scratch) {
                Ok(0) if lingering => {
                    let reason = self.take_close_reason(id, CloseReason::PeerClosed);
                    self.shared.schedule_close(id, reason);
                    return;
                }
                Ok(0) => {
                    conn.phase = Phase::EofPending;
                    // Offered once more, now with `Ctx::input_ended` true,
                    // so the app can take a final unterminated request.
                    let rest = conn.has_input();
                    conn.set(Flags::REOFFER, rest);
                }
                Ok(n) => {
                    if !lingering {
                        conn.io_or_new(now).last_read = now;
                    }
                    self.shared.stats.bytes_in += n as u64;
                    if !lingering {
                        self.offer(app, id, &scratch[..n]);
                    }
                    budget = budget.saturating_sub(n);
                    // On a stream socket a short read means the receive queue
                    // is empty now, unless the peer's end of stream is queued
                    // behind it (then read on to see it; no edge would come).
                    let drained = n < READ_CHUNK && !peer_shut;
                    if !drained && budget == 0 {
                        // Edge-triggered, the socket may hold more and no
                        // new edge comes. On any backend, input the app left
                        // for a re-offer is no longer in the socket (which
                        // this read may have emptied), so no event would
                        // bring it back: serve both next turn.
                        let reoffer = self.shared.live(id).is_some_and(|c| c.has(Flags::REOFFER));
                        if self.edge || reoffer {
                            self.shared.unfinished.push(Token(id.0));
                        }
                        return;
                    }
                    if drained && !self.shared.live(id).is_some_and(|c| c.has(Flags::REOFFER)) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.shared.schedule_close(id, CloseReason::Error(e));
                    return;
                }
            }
        }
    }

    /// Writes what the socket takes; then decides what the connection
    /// waits for next (or closes it when it owes nothing more).
    pub(super) fn flush<A: App<State = S>>(&mut self, app: &mut A, id: ConnId) {
        let now = self.shared.now;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.set(Flags::DIRTY, false);
        if conn.phase == Phase::Connecting {
            return; // output waits for the connect
        }
        let flushed = match self.driver.ring() {
            Some(ring) => Self::start_send(ring, conn, id).map(|sending| (0, sending)),
            None => conn.flush(now),
        };
        match flushed {
            Ok((written, outcome)) => self.after_write(app, id, written, outcome),
            Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
        }
    }

    /// After `written` bytes left (or a send was queued): the water marks,
    /// the write timer, a shut write side, and what the connection waits
    /// for next (or its close when it owes nothing more).
    pub(super) fn after_write<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        written: usize,
        outcome: Flush,
    ) {
        let config = &self.shared.config;
        let (low_water, write_timeout, soft) = (
            config.low_water,
            config.write_timeout,
            config.max_output_soft.map(|(s, _)| s),
        );
        let now = self.shared.now;
        let edge = self.edge;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if let (Some(soft), Some(io)) = (soft, conn.io_mut())
            && io.pending() <= soft
        {
            io.over_soft_since = None;
        }
        // Output waiting on the socket: blocked, or a send in the kernel
        // (the completion driver's may wait there for a peer that stopped
        // reading without ever coming back short).
        let waiting = matches!(outcome, Flush::Blocked | Flush::Sending);
        let arm_write_timer = waiting && write_timeout.is_some() && conn.raise(Flags::WRITE_TIMER);
        let drained = conn.after_write(low_water).below_low_water;
        if drained && let Some(io) = conn.io_mut() {
            // The peer could not be heard while its output was full: its
            // silence starts now (else the idle check, which skipped the
            // full time, could close it at once and drop what is left).
            io.last_read = now;
        }
        if drained && conn.has_input() {
            conn.set(Flags::REOFFER, true);
        }
        // The data that made us pause raised its edge long ago, and input
        // the app left for later is not in the socket at all: serve both
        // without waiting for a new event.
        let serve_again = drained && (edge || conn.has(Flags::REOFFER));
        let tell_drain = drained && conn.is_active();
        self.shared.stats.bytes_out += written as u64;
        if let (true, Some(timeout)) = (arm_write_timer, write_timeout) {
            self.shared.add_timer(timeout, TimerKind::Write(id));
        }
        if serve_again {
            self.shared.unfinished.push(Token(id.0));
        }
        if tell_drain {
            self.call_for(app, id, watch::Sends::Replies, |app, ctx, st| {
                app.on_drain(ctx, id, st)
            });
        }
        if outcome == Flush::Done
            && let Some(conn) = self.shared.live_mut(id)
            && conn.has(Flags::SHUT_AFTER_FLUSH)
            && conn.raise(Flags::WRITE_SHUT)
            && let Err(e) = conn.stream.shutdown_write()
        {
            self.shared.schedule_close(id, CloseReason::Error(e));
            return;
        }
        let Some(conn) = self.shared.live(id) else {
            return;
        };
        // Offloaded jobs still owe replies: a half-closed or draining
        // connection stays open until they are back (`collect_jobs` marks
        // it dirty again).
        if conn.owes_nothing() && conn.finished_when_flushed() {
            let reason = match conn.phase {
                Phase::ReadClosed => CloseReason::PeerClosed,
                _ => CloseReason::App,
            };
            let reason = self.take_close_reason(id, reason);
            self.finish(id, reason);
            return;
        }
        self.update_interest(id);
    }

    /// Closes a connection that owes nothing more, unless input is waiting
    /// unread (reading was paused, or it just arrived): closing then makes
    /// the kernel answer with a reset, which also throws away the output
    /// still queued in the kernel for the peer. So shut the write side
    /// instead (the peer gets all its output, then end of stream) and read,
    /// discarding, until the peer closes too (a "lingering close"). The
    /// grace period bounds the wait.
    pub(super) fn finish(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if conn.phase == Phase::Lingering {
            return;
        }
        let peer_done = matches!(conn.phase, Phase::ReadClosed | Phase::EofPending);
        if !peer_done && conn.recv_state() != RecvState::Idle {
            // The completion driver: bytes may be on their way in a
            // receive, unseen by FIONREAD. Stop it, and decide once it is
            // over (`completion.rs` calls this again).
            conn.phase = Phase::Draining;
            self.shared.note_close_reason(id, reason);
            self.update_interest(id);
            return;
        }
        let unread = !peer_done
            && (conn.has(Flags::DISCARDED)
                || rustix::io::ioctl_fionread(&conn.stream).is_ok_and(|n| n > 0));
        if !unread {
            self.shared.schedule_close(id, reason);
            return;
        }
        if let Err(e) = conn.stream.shutdown_write() {
            self.shared.schedule_close(id, CloseReason::Error(e));
            return;
        }
        conn.phase = Phase::Lingering;
        conn.set(Flags::REOFFER, false);
        if let Some(io) = conn.io_mut() {
            io.input = Vec::new();
        }
        self.shared.note_close_reason(id, reason);
        let grace = self.shared.config.shutdown_grace;
        self.shared.add_timer(grace, TimerKind::Linger(id));
        if self.edge {
            // The waiting input raised its edge long ago.
            self.shared.unfinished.push(Token(id.0));
        }
        self.update_interest(id);
    }

    /// The reason recorded for a connection closing later than it was
    /// decided (a lingering close, a limit's last reply), or `default`.
    pub(super) fn take_close_reason(&mut self, id: ConnId, default: CloseReason) -> CloseReason {
        self.shared.close_reasons.remove(&id).unwrap_or(default)
    }

    /// Level-triggered backends are told only of real changes (trap: an
    /// `epoll_ctl` per request). Edge-triggered ones keep both interests.
    /// On the completion driver, a receive is armed exactly while the
    /// connection may read.
    pub(super) fn update_interest(&mut self, id: ConnId) {
        if self.edge {
            return;
        }
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if let Some(ring) = self.driver.ring() {
            if conn.phase == Phase::Connecting {
                return; // its poll waits for the connect
            }
            // Input still to offer comes first: receiving ahead of it would
            // let a backlog grow with every pause.
            let want = conn.may_read(max_jobs) && !conn.has(Flags::REOFFER);
            match (conn.recv_state(), want) {
                (RecvState::Idle, true) => {
                    if let Err(e) = ring.arm_recv(id, crate::uring::raw(&conn.stream)) {
                        self.shared.schedule_close(id, CloseReason::Error(e));
                        return;
                    }
                    conn.set_recv_state(RecvState::Armed);
                }
                (RecvState::Armed, false) => {
                    ring.cancel_recv(id);
                    conn.set_recv_state(RecvState::Cancelling);
                }
                // A receive being cancelled is armed again once its end
                // is back (`Received::Cancelled`).
                _ => {}
            }
            // Nothing armed to read: a poll with no interest still hears an
            // error or a hang-up (a peer that reset), as a readiness
            // backend's registration does; `conn_event` closes it then.
            if want != conn.has(Flags::HUP_WATCH) {
                return;
            }
            let fd = conn.stream.as_fd();
            let watched = if want {
                ring.poll.deregister(fd)
            } else {
                ring.poll.register(fd, Token(id.0), Interest::NONE)
            };
            match watched {
                Ok(()) => conn.set(Flags::HUP_WATCH, !want),
                Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
            }
            return;
        }
        let wanted = conn.level_interest(max_jobs);
        if wanted != conn.registered {
            match self
                .driver
                .selector()
                .reregister(conn.stream.as_fd(), Token(id.0), wanted)
            {
                Ok(()) => conn.registered = wanted,
                Err(e) => self.shared.schedule_close(id, CloseReason::Error(e)),
            }
        }
    }
}
