//! Handing input to the app, with flow control, whatever brought the
//! bytes: the unconsumed rest is kept and offered again, the end of stream
//! is told after everything before it, limits are told before they close.

use super::{EventLoop, READ_CHUNK, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::ctx::{CloseReason, Limit};
use crate::shared::TimerKind;

impl<S: Default> EventLoop<S> {
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
                self.driver.selector(),
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
                    self.driver.selector(),
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
