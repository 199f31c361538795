//! A connection's I/O, whatever the driver: readiness events, pulling
//! input, handing output to the driver, what follows a write, and a close
//! that does not destroy output in flight. The kernel side of each step is
//! the driver's (`crate::driver`); what bytes mean (offering them to the
//! app, flow control, the end of stream, limits) is `deliver.rs`'s. The
//! completion driver's reports (`completion.rs`) end in the same
//! `after_write` and `finish`.

use std::io;

use super::{EventLoop, READ_CHUNK, watch};
use crate::app::App;
use crate::conn::{Conn, ConnId, Flags, Flush, Phase};
use crate::reason::CloseReason;
use crate::selector::{Event, Token};
use crate::shared::{TimerKind, live_in};

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
        if event.is_writable() && self.shared.live(id).is_some_and(Conn::owes_output) {
            self.flush(app, id);
        }
        // An error or hang-up on a connection that is neither reading nor
        // writing (half-closed, waiting for a job, paused) would be
        // reported again on every wait: close it now.
        let max_jobs = self.shared.config.max_jobs_per_conn;
        if (event.is_error() || event.is_hup())
            && let Some(c) = self.shared.live(id)
            && !c.owes_output()
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
        #[cfg(feature = "faults")]
        let failed = failed.or_else(|| self.driver.fail_connect());
        if let Some(e) = failed {
            self.shared.schedule_close(id, CloseReason::Error(e));
            return;
        }
        conn.phase = Phase::Open;
        self.driver.connected(conn);
        log::info!(target: "iomux::conn", "connected {}", conn.peer());
        self.open(app, id);
        // Asked to close after its output while connecting: now it drains.
        if let Some(c) = self.shared.live_mut(id)
            && c.has(Flags::DRAIN_WHEN_CONNECTED)
            && c.phase == Phase::Open
        {
            c.phase = Phase::Draining;
        }
        // Queued output goes out; the reply may already be waiting (and on
        // an edge-triggered backend its edge came with this event).
        self.shared.mark_dirty(id);
        self.shared.unfinished.push(Token(id.0));
    }

    /// Serves a connection that is readable (or left unfinished): offers
    /// what it holds and tells of the peer's end when due (`deliver.rs`),
    /// then pulls what the driver has (readiness: the socket, until it is
    /// drained, the budget is spent, or the connection may not take more;
    /// completion: nothing to pull, the ring brings bytes by itself).
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
        let mut offers = 0;
        loop {
            if !self.serve_pending(app, id, &mut offers) {
                return;
            }
            let Some(conn) = live_in(&mut self.shared.conns, id) else {
                return;
            };
            if !conn.may_read(max_jobs) {
                self.update_interest(id);
                return;
            }
            match self.driver.read(conn, id, scratch) {
                Ok(0) => self.peer_ended(id),
                Ok(n) => {
                    self.input_arrived(app, id, &scratch[..n]);
                    budget = budget.saturating_sub(n);
                    // On a stream socket a short read means the receive queue
                    // is empty now, unless the peer's end of stream is queued
                    // behind it (then read on to see it; no edge would come).
                    let drained = n < READ_CHUNK && !peer_shut;
                    let reoffer = self.shared.live(id).is_some_and(|c| c.has(Flags::REOFFER));
                    if !drained && budget == 0 {
                        // Edge-triggered, the socket may hold more and no
                        // new edge comes. On any backend, input the app left
                        // for a re-offer is no longer in the socket (which
                        // this read may have emptied), so no event would
                        // bring it back: serve both next turn.
                        if self.driver.edge_triggered() || reoffer {
                            self.shared.unfinished.push(Token(id.0));
                        }
                        return;
                    }
                    if drained && !reoffer {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to pull: the completion driver arms its
                    // receive here if the connection wants one.
                    self.update_interest(id);
                    return;
                }
                Err(e) => {
                    self.shared.schedule_close(id, CloseReason::Error(e));
                    return;
                }
            }
        }
    }

    /// Hands what the connection owes to the driver (written, or a send
    /// started); then decides what the connection waits for next (or
    /// closes it when it owes nothing more).
    pub(super) fn flush<A: App<State = S>>(&mut self, app: &mut A, id: ConnId) {
        let now = self.shared.now;
        let Some(conn) = live_in(&mut self.shared.conns, id) else {
            return;
        };
        conn.set(Flags::DIRTY, false);
        if conn.phase == Phase::Connecting {
            return; // output waits for the connect
        }
        match self.driver.write(conn, id, now) {
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
        let edge = self.driver.edge_triggered();
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
            && !conn.has(Flags::WRITE_SHUT)
            && !conn.owes_output()
        {
            // TLS: the peer learns of the end from `close_notify`, which
            // goes out first.
            if conn.close_notify() {
                return self.flush(app, id);
            }
            conn.set(Flags::WRITE_SHUT, true);
            if let Err(e) = conn.stream.shutdown_write() {
                self.shared.schedule_close(id, CloseReason::Error(e));
                return;
            }
        }
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        // Offloaded jobs still owe replies: a half-closed or draining
        // connection stays open until they are back (`collect_jobs` marks
        // it dirty again).
        if conn.owes_nothing() && conn.finished_when_flushed() {
            // A graceful TLS close ends with `close_notify`.
            if conn.close_notify() {
                return self.flush(app, id);
            }
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
        let Some(conn) = live_in(&mut self.shared.conns, id) else {
            return;
        };
        if conn.phase == Phase::Lingering {
            return;
        }
        let peer_done = matches!(conn.phase, Phase::ReadClosed | Phase::EofPending);
        // A TCP peer that may still send: what it sends after the close
        // would be answered with a reset, which destroys output of ours
        // still on its way. Linger then too.
        let in_flight = || {
            conn.stream
                .tcp()
                .is_some_and(|s| crate::net::unacked_output(s).is_ok_and(|n| n > 0))
        };
        let unread = match self.driver.unread_input(conn) {
            _ if peer_done => false,
            Some(in_socket) => in_socket || conn.has(Flags::DISCARDED) || in_flight(),
            None => {
                // Bytes may be on their way in a receive. Stop it, and
                // decide once it is over (its end marks this dirty).
                self.shared.note_close_reason(id, reason);
                self.update_interest(id);
                return;
            }
        };
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
        if self.driver.edge_triggered() {
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

    /// Puts what the driver watches for `id` in step with what it may do
    /// now (see [`crate::driver::Driver::update_interest`]).
    pub(super) fn update_interest(&mut self, id: ConnId) {
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = live_in(&mut self.shared.conns, id) else {
            return;
        };
        if let Err(e) = self.driver.update_interest(conn, id, max_jobs) {
            self.shared.schedule_close(id, CloseReason::Error(e));
        }
    }
}
