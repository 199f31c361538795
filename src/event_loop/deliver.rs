//! Handing input to the app, with flow control, whatever brought the
//! bytes: the unconsumed rest is kept and offered again, the end of stream
//! is told after everything before it, limits are told before they close.

use super::{EventLoop, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::ctx::{CloseReason, Limit};
use crate::shared::TimerKind;

impl<S: Default> EventLoop<S> {
    /// Offers the connection's unconsumed input followed by
    /// `scratch[..n]` to the app, and keeps what it leaves.
    pub(super) fn offer<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, n: usize) {
        let now = self.shared.now;
        let max_input = self.shared.config.max_input;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.set(Flags::REOFFER, false);
        let io = conn.io_or_new(now);
        let fresh = &self.scratch[..n];
        let state = Self::state_slot(&mut self.states, id.index());
        let (used, left) = if io.input.is_empty() {
            // The common case: the bytes are offered straight from the
            // read buffer, and only an unconsumed tail is copied.
            let used = watch::call_conn(
                &mut self.shared,
                &mut *self.selector,
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
            (used, tail.len())
        } else {
            let mut input = std::mem::take(&mut io.input);
            input.extend_from_slice(fresh);
            let used = watch::call_conn(
                &mut self.shared,
                &mut *self.selector,
                state,
                app,
                id,
                watch::Sends::Replies,
                |app, ctx, st| app.on_data(ctx, id, st, &input),
            )
            .min(input.len());
            input.drain(..used);
            let left = input.len();
            if left > 0
                && let Some(c) = self.shared.live_mut(id)
            {
                c.io_or_new(now).input = input;
            }
            (used, left)
        };
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        if left > max_input {
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
