//! Closing connections, and the graceful shutdown.

use std::time::Instant;

use super::{EventLoop, Life, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::reason::CloseReason;
use crate::selector::Token;
use crate::waker::{Arrived, signal_name};

impl<S: Default> EventLoop<S> {
    /// Tells the app of limits, then closes everything scheduled for
    /// closing; until neither list has more.
    pub(super) fn reap<A: App<State = S>>(&mut self, app: &mut A) {
        loop {
            if let Some((id, limit)) = self.shared.over_limit.pop() {
                self.tell_limit(app, id, limit);
            } else if let Some((id, reason)) = self.shared.closing.pop() {
                self.close_now(app, id, reason);
            } else {
                return;
            }
        }
    }

    fn close_now<A: App<State = S>>(&mut self, app: &mut A, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.shared.conns.get(id.index()).filter(|c| c.is(id)) else {
            return;
        };
        // A reason recorded for a later close is moot now (an error came
        // first): drop it, or it would stay for ever.
        self.shared.close_reasons.remove(&id);
        if conn.jobs() > 0
            && let Some(pool) = &self.shared.pool
        {
            pool.cancel(id);
        }
        // Timers it leaves armed are swept once they add up.
        let timers = conn.io().map_or(0, |io| io.timers as usize)
            + usize::from(conn.has(Flags::WRITE_TIMER))
            + usize::from(conn.has(Flags::SOFT_TIMER))
            + usize::from(self.shared.config.idle_timeout.is_some())
            + usize::from(conn.tls().is_some());
        self.shared.orphan_timers += timers;
        // Closed before it is logged: a reader of the log sees the fd gone
        // (or, on the completion driver, on its way out once the ring let
        // go of it).
        let conn = self.shared.conns.remove(id.index());
        let origin = conn.origin();
        let peer = self.driver.retire(conn, id);
        self.shared.stats.closed += 1;
        if let Some((group, _)) = &self.shared.group {
            group
                .clients
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(why) = reason.describe() {
            log::info!(target: "iomux::conn", "{peer}: {why}");
        }
        log::info!(target: "iomux::conn", "disconnect {peer}");
        let state = std::mem::take(Self::state_slot(&mut self.states, id.index()));
        // Its peer and origin stay readable through `Ctx` for the call.
        self.shared.closed = Some(crate::shared::Closed { id, peer, origin });
        watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
            app.on_close(ctx, id, state, &reason)
        });
        self.shared.closed = None;
    }

    /// Stop accepting and reading. Every connection gets until the grace
    /// deadline to be offered the input the loop already took from the
    /// kernel and to receive what it is owed; one that owes nothing and
    /// holds no such input closes at the flush that follows.
    pub(super) fn begin_shutdown<A: App<State = S>>(&mut self, app: &mut A) {
        self.life = Life::ShuttingDown {
            deadline: Instant::now() + self.shared.config.shutdown_grace,
        };
        self.close_listeners();
        let ids: Vec<ConnId> = self.shared.conns.iter().map(|(i, c)| c.id(i)).collect();
        for id in ids {
            let Some(conn) = self.shared.live_mut(id) else {
                continue;
            };
            match conn.phase {
                Phase::Open => {
                    conn.phase = Phase::Stopping;
                    if conn.has_input() {
                        conn.set(Flags::REOFFER, true);
                        self.shared.unfinished.push(Token(id.0));
                    }
                }
                // It closes once it told the app of the end and owes
                // nothing; not kept open for more output.
                Phase::EofPending => conn.set(Flags::KEEP_OPEN, false),
                Phase::ReadClosed => conn.phase = Phase::Draining,
                Phase::Connecting => {
                    self.shared.schedule_close(id, CloseReason::Shutdown);
                    continue;
                }
                Phase::Stopping | Phase::Draining | Phase::Lingering | Phase::Closing => {}
            }
            self.shared.note_close_reason(id, CloseReason::Shutdown);
            self.shared.mark_dirty(id);
            self.update_interest(id);
        }
        self.reap(app);
    }

    /// A stop signal: the first starts the graceful shutdown, another (or
    /// two at once) ends its grace period now.
    pub(super) fn signalled(&mut self, arrived: Arrived) {
        let name = signal_name(arrived.signal);
        let hurry = arrived.times > 1 || matches!(self.life, Life::ShuttingDown { .. });
        if !hurry {
            log::info!(
                target: "iomux::loop",
                "{name}: shutting down gracefully (up to {:?}; send it again to close at once)",
                self.shared.config.shutdown_grace
            );
            self.shared.stop_requested = true;
            return;
        }
        log::warn!(
            target: "iomux::loop",
            "{name} again: closing {} connections now",
            self.shared.conns.len()
        );
        self.shared.stop_requested = true;
        self.hurry = true;
    }

    /// The end of the graceful shutdown: what is still open closes now,
    /// saying what it was still owed.
    pub(super) fn close_all<A: App<State = S>>(&mut self, app: &mut A) {
        let ids: Vec<ConnId> = self.shared.conns.iter().map(|(i, c)| c.id(i)).collect();
        for id in ids {
            let unsent = self.shared.live(id).map_or(0, |c| c.pending());
            let reason = if unsent > 0 {
                CloseReason::ShutdownCut { unsent }
            } else {
                CloseReason::Shutdown
            };
            self.shared.schedule_close(id, reason);
        }
        self.reap(app);
    }
}
