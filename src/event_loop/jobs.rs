//! What other threads hand the loop: results of offloaded jobs, and
//! messages from the other loops of its group.

use std::sync::Arc;

use super::{EventLoop, watch};
use crate::app::App;
use crate::conn::Flags;
use crate::mailbox::Group;
use crate::selector::Token;

impl<S: Default> EventLoop<S> {
    /// Hands finished jobs to the app; results for connections that closed
    /// meanwhile are dropped.
    pub(super) fn collect_jobs<A: App<State = S>>(&mut self, app: &mut A) {
        let Some(pool) = &self.shared.pool else {
            return;
        };
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let now = self.shared.now;
        for (job, id, result) in pool.take_done() {
            let Some(conn) = self.shared.live_mut(id) else {
                continue;
            };
            let at_limit = conn.jobs() >= max_jobs;
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
            // Reading stopped at the limit: an edge-triggered backend will
            // not report the bytes still waiting in the socket.
            if has_input || (at_limit && self.driver.edge_triggered()) {
                self.shared.unfinished.push(Token(id.0));
            }
            if active {
                self.call_for(app, id, watch::Sends::Replies, |app, ctx, st| {
                    app.on_job_done(ctx, id, st, job, result)
                });
            }
            // It may now owe nothing more (half-closed, shutting down).
            self.shared.mark_dirty(id);
            self.reap(app);
        }
    }
}

impl<S: Default> EventLoop<S> {
    /// Makes this loop member `index` of `group`: it receives the group's
    /// messages for it, and counts its clients against the group's total.
    pub(crate) fn join_group(&mut self, group: Arc<Group>, index: usize) {
        // One flag for the group: stopping it (or any loop) stops all.
        self.stop_flag = group.stop.clone();
        group.set_waker(index, self.waker.clone());
        self.shared.group = Some((group, index));
    }

    /// Hands the messages other loops posted to the app, in order.
    pub(super) fn collect_messages<A: App<State = S>>(&mut self, app: &mut A) {
        let Some((group, index)) = &self.shared.group else {
            return;
        };
        group.take(*index, &mut self.inbox);
        let mut inbox = std::mem::take(&mut self.inbox);
        for message in inbox.drain(..) {
            watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
                app.on_message(ctx, message)
            });
            self.reap(app);
        }
        self.inbox = inbox;
    }
}
