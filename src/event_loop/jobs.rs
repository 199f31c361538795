//! Results of offloaded jobs, back on the loop thread.

use super::{EventLoop, watch};
use crate::app::App;
use crate::conn::Flags;
use crate::selector::Token;

impl<S: Default> EventLoop<S> {
    /// Hands finished jobs to the app; results for connections that closed
    /// meanwhile are dropped.
    pub(super) fn collect_jobs<A: App<State = S>>(&mut self, app: &mut A) {
        let Some(pool) = &self.shared.pool else {
            return;
        };
        let now = self.shared.now;
        for (job, id, result) in pool.take_done() {
            let Some(conn) = self.shared.live_mut(id) else {
                continue;
            };
            if let Some(io) = conn.io_mut() {
                io.jobs = io.jobs.saturating_sub(1);
                // Its peer was waiting for this result, not silent: the
                // idle clock starts again now.
                io.last_read = now;
            }
            let has_input = conn.has_input();
            if has_input {
                // Input left for later at the job limit can go on now.
                conn.set(Flags::REOFFER, true);
            }
            let active = conn.is_active();
            if has_input {
                self.shared.unfinished.push(Token(id.0));
            }
            if active {
                let state = Self::state_slot(&mut self.states, id.index());
                watch::call_conn(&mut self.shared, state, app, id, true, |app, ctx, st| {
                    app.on_job_done(ctx, id, st, job, result)
                });
            }
            // It may now owe nothing more (half-closed, shutting down).
            self.shared.mark_dirty(id);
            self.reap(app);
        }
    }
}
