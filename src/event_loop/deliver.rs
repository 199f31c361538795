//! Handing input to the app, with flow control, whatever brought the
//! bytes (a read, or a receive of the completion driver): the unconsumed
//! rest is kept and offered again, input received ahead is offered a
//! window at a time, the end of stream is told after everything before
//! it, limits are told before they close.

use super::{EventLoop, READ_CHUNK, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::reason::{CloseReason, Limit};
use crate::selector::Token;
use crate::shared::TimerKind;

/// Offers of unconsumed input (without new bytes) per connection per
/// event, before others get a go.
const REOFFER_BUDGET: usize = 64;

impl<S: Default> EventLoop<S> {
    /// Bytes taken from the kernel for `id`: offered to the app if it may
    /// take them now, else kept to offer later (the completion driver
    /// receives ahead of a connection that went full or paused);
    /// dropped by a lingering connection; dropped but remembered by one
    /// past listening, whose close must then linger as if they were still
    /// unread in the socket.
    pub(super) fn input_arrived<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        bytes: &[u8],
    ) {
        let now = self.shared.now;
        let max_jobs = self.shared.config.max_jobs_per_conn;
        self.shared.stats.bytes_in += bytes.len() as u64;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        #[cfg(feature = "tls")]
        if conn.tls().is_some() {
            match conn.phase {
                Phase::Open | Phase::Stopping => return self.tls_arrived(app, id, bytes),
                // Read only to finish the handshake.
                Phase::Draining
                    if conn
                        .tls()
                        .is_some_and(crate::tls::Tls::owes_after_handshake) =>
                {
                    return self.tls_arrived(app, id, bytes);
                }
                // After `close_notify` (or the peer's end), nothing counts.
                Phase::EofPending => return,
                _ => {}
            }
        }
        match conn.phase {
            Phase::Lingering => {}
            Phase::Open | Phase::EofPending | Phase::Stopping => {
                conn.io_or_new(now).last_read = now;
                if conn.may_deliver(max_jobs) {
                    self.offer(app, id, bytes);
                } else {
                    conn.io_or_new(now).input.extend_from_slice(bytes);
                }
            }
            _ => conn.set(Flags::DISCARDED, true),
        }
    }

    /// The peer ended its stream (a read or a receive of no bytes).
    pub(super) fn peer_ended(&mut self, id: ConnId) {
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        #[cfg(feature = "tls")]
        if conn.phase != Phase::Lingering && conn.tls().is_some_and(crate::tls::Tls::handshaking) {
            // A session rustls gave up on keeps its own reason.
            let eof = CloseReason::Tls(crate::tls::TlsError::HandshakeEof);
            let reason = self.take_close_reason(id, eof);
            self.shared.schedule_close(id, reason);
            return;
        }
        match conn.phase {
            Phase::Lingering => {
                let reason = self.take_close_reason(id, CloseReason::PeerClosed);
                self.shared.schedule_close(id, reason);
            }
            Phase::Open | Phase::Stopping => {
                conn.phase = Phase::EofPending;
                // Offered once more, now with `Ctx::input_ended` true, so
                // the app can take a final unterminated request.
                let rest = conn.has_input();
                conn.set(Flags::REOFFER, rest);
            }
            // Past listening (draining, half-closed): not read on a
            // readiness backend either.
            _ => {}
        }
    }

    /// Offers input the connection holds (what the app left after making
    /// progress, input received ahead), at most `REOFFER_BUDGET` offers
    /// counted in `offers`, and tells a due end of stream. True when
    /// nothing waits to be offered, so reading may go on.
    pub(super) fn serve_pending<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        offers: &mut usize,
    ) -> bool {
        let max_jobs = self.shared.config.max_jobs_per_conn;
        if self
            .shared
            .live(id)
            .is_some_and(|c| c.phase == Phase::Stopping)
        {
            // It may owe nothing more after these offers: the flush before
            // the loop sleeps decides.
            self.shared.mark_dirty(id);
        }
        loop {
            let Some(conn) = self.shared.live_mut(id) else {
                return false;
            };
            if conn.has(Flags::REOFFER) {
                if !conn.may_deliver(max_jobs) {
                    // Offered again once there is room (drain, resume, job).
                    self.update_interest(id);
                    return false;
                }
                if *offers == REOFFER_BUDGET {
                    self.shared.unfinished.push(Token(id.0));
                    // No receiving ahead of a backlog (the completion
                    // driver's receive is cancelled while input waits).
                    self.update_interest(id);
                    return false;
                }
                *offers += 1;
                self.offer(app, id, &[]);
                continue;
            }
            if conn.phase == Phase::EofPending {
                if (conn.has_input() && !conn.may_deliver(max_jobs)) || conn.has(Flags::APP_PAUSED)
                {
                    // Requests wait for room (a drain, a job back); the end
                    // of stream is told after them.
                    return false;
                }
                self.tell_eof(app, id);
                return false;
            }
            return true;
        }
    }

    /// Offers the connection's unconsumed input followed by `fresh` (just
    /// read, or a provided buffer the ring filled) to the app, and keeps
    /// what it leaves.
    pub(super) fn offer<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, fresh: &[u8]) {
        let n = fresh.len();
        let now = self.shared.now;
        let max_input = self.shared.config.max_input;
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.set(Flags::REOFFER, false);
        let io = conn.io_or_new(now);
        let state = Self::state_slot(&mut self.states, id.index());
        // `refused`: what the app was offered and left (input it was not
        // offered yet is not its doing).
        let (used, left, refused) = if io.input.is_empty() {
            // The common case: the bytes are offered straight from the
            // read buffer, and only an unconsumed tail is copied.
            let used = watch::call_conn(
                &mut self.shared,
                &mut self.driver,
                state,
                app,
                id,
                watch::Sends::Replies,
                |app, ctx, st| app.on_data(ctx, id, st, fresh),
            )
            .min(n);
            let tail = &fresh[used..];
            if !tail.is_empty()
                && let Some(c) = self.shared.live_mut(id)
            {
                c.io_or_new(now).input.extend_from_slice(tail);
            }
            (used, tail.len(), tail.len())
        } else {
            let mut input = std::mem::take(&mut io.input);
            input.extend_from_slice(fresh);
            // A backlog (input kept while the connection could not take it;
            // the completion driver receives ahead) is offered a window at
            // a time, so what an app forwards of it stays within a window
            // past the high-water mark. An app that needs more (it took
            // nothing) gets the window doubled at once. `Ctx::input_ended`
            // is true only for an offer of everything that is left.
            let mut window = READ_CHUNK;
            let (used, end) = loop {
                let end = input.len().min(window);
                self.shared.partial_offer = end < input.len();
                let used = watch::call_conn(
                    &mut self.shared,
                    &mut self.driver,
                    &mut *state,
                    app,
                    id,
                    watch::Sends::Replies,
                    |app, ctx, st| app.on_data(ctx, id, st, &input[..end]),
                )
                .min(end);
                self.shared.partial_offer = false;
                let go_on = self
                    .shared
                    .live(id)
                    .is_some_and(|c| c.may_deliver(max_jobs));
                if used > 0 || end == input.len() || !go_on {
                    break (used, end);
                }
                window = window.saturating_mul(2);
            };
            input.drain(..used);
            let left = input.len();
            if left > 0
                && let Some(c) = self.shared.live_mut(id)
            {
                c.io_or_new(now).input = input;
            }
            (used, left, end - used)
        };
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if refused > max_input {
            self.shared.note_limit(id, Limit::Input { max: max_input });
        } else if used > 0 && left > 0 {
            // Progress with input left: maybe more requests are complete.
            conn.set(Flags::REOFFER, true);
        }
    }

    /// All the peer sent before its end of stream was offered: tell the
    /// app, then close once nothing more is owed.
    pub(super) fn tell_eof<A: App<State = S>>(&mut self, app: &mut A, id: ConnId) {
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.phase = Phase::ReadClosed;
        self.call_for(app, id, watch::Sends::Replies, |app, ctx, st| {
            app.on_eof(ctx, id, st)
        });
        self.shared.mark_dirty(id);
    }

    /// Tells the app `id` went over `limit`. If it queues a last reply, the
    /// connection closes once that is written (or the grace period ends);
    /// otherwise at once.
    pub(super) fn tell_limit<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, limit: Limit) {
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        let before = conn.pending();
        if let (Limit::Input { .. }, Some(io)) = (limit, conn.io_mut()) {
            io.input = Vec::new();
        }
        self.call_for(app, id, watch::Sends::Replies, |app, ctx, st| {
            app.on_limit(ctx, id, st, limit)
        });
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if conn.pending() > before {
            conn.phase = Phase::Draining;
            self.shared.note_close_reason(id, CloseReason::Limit(limit));
            let grace = self.shared.config.shutdown_grace;
            self.shared.add_timer(grace, TimerKind::Linger(id));
            self.shared.mark_dirty(id);
        } else {
            self.shared.schedule_close(id, CloseReason::Limit(limit));
        }
    }
}
