//! Firing due timers: the loop's own (idle, write and soft-limit checks,
//! lingering give-up, accept back-off, stats) and the app's.

use super::{EventLoop, watch};
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::reason::{CloseReason, Limit};
use crate::shared::TimerKind;

impl<S: Default> EventLoop<S> {
    /// Timers of closed connections are dropped when they come due; with
    /// many short connections and long timeouts they would pile up, so
    /// sweep them once they are a good part of all timers.
    fn sweep_orphan_timers(&mut self) {
        let shared = &mut self.shared;
        if shared.orphan_timers > shared.timers.len() / 2 + 1024 {
            let conns = &shared.conns;
            shared.timers.retain(|kind| {
                kind.owner()
                    .is_none_or(|id| conns.get(id.index()).is_some_and(|c| c.is(id)))
            });
            shared.orphan_timers = 0;
        }
    }

    pub(super) fn fire_timers<A: App<State = S>>(&mut self, app: &mut A) {
        self.sweep_orphan_timers();
        let now = self.shared.now;
        while let Some((timer, kind)) = self.shared.timers.pop_due(now) {
            match kind {
                TimerKind::Idle(id) => self.check_idle(id),
                TimerKind::Write(id) => self.check_write(id),
                TimerKind::SoftLimit(id) => self.check_soft_limit(id),
                TimerKind::Linger(id) => {
                    if self
                        .shared
                        .live(id)
                        .is_some_and(|c| matches!(c.phase, Phase::Lingering | Phase::Draining))
                    {
                        let reason = self.take_close_reason(id, CloseReason::PeerClosed);
                        self.shared.schedule_close(id, reason);
                    }
                }
                TimerKind::Connect(id) => {
                    if self
                        .shared
                        .live(id)
                        .is_some_and(|c| c.phase == Phase::Connecting)
                    {
                        let timed_out =
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                        self.shared
                            .schedule_close(id, CloseReason::Error(timed_out));
                    }
                }
                #[cfg(feature = "tls")]
                TimerKind::Handshake(id) => self.check_handshake(id),
                TimerKind::ResumeAccept => self.resume_accepting(),
                TimerKind::Stats => {
                    self.log_stats();
                    if let Some(every) = self.shared.config.stats_interval {
                        self.shared.add_timer(every, TimerKind::Stats);
                    }
                }
                TimerKind::App(tag) => {
                    watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
                        app.on_timer(ctx, timer.tagged(tag))
                    })
                }
                TimerKind::Conn(id, tag) => {
                    let Some(conn) = self.shared.live_mut(id).filter(|c| c.is_active()) else {
                        continue;
                    };
                    if let Some(io) = conn.io_mut() {
                        io.timers = io.timers.saturating_sub(1);
                    }
                    self.call_for(app, id, watch::Sends::Pushes, |app, ctx, st| {
                        app.on_conn_timer(ctx, id, st, timer.tagged(tag))
                    });
                }
            }
            self.reap(app);
        }
    }

    /// The idle timeout measures the peer's silence: time the loop was not
    /// reading the connection (back-pressure, a pause, its job limit, or it
    /// is past reading), or owed it the result of a job, does not count.
    fn check_idle(&mut self, id: ConnId) {
        let Some(timeout) = self.shared.config.idle_timeout else {
            return;
        };
        let now = self.shared.now;
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        // A peer whose job is still running waits for its reply: closing it
        // would drop the result it is owed (`Ctx::offload` promises the
        // connection stays open until its jobs are done).
        let listening = conn.phase == Phase::Open && conn.may_read(max_jobs) && conn.jobs() == 0;
        if !listening {
            // Not the peer's silence: look again a full timeout from now.
            if let Some(io) = conn.io_mut() {
                io.last_read = now;
            }
            self.shared.add_timer(timeout, TimerKind::Idle(id));
            return;
        }
        // Without buffers the connection never sent a byte: silent since it
        // was accepted, when this timer was first armed.
        let deadline = conn.io().map_or(now, |io| io.last_read + timeout);
        if deadline <= now {
            self.shared.schedule_close(id, CloseReason::Idle);
        } else {
            self.shared.timers.add(deadline, TimerKind::Idle(id));
        }
    }

    /// A connection whose output waits must see the peer take some of it
    /// within the write timeout.
    fn check_write(&mut self, id: ConnId) {
        let Some(timeout) = self.shared.config.write_timeout else {
            return;
        };
        let now = self.shared.now;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.set(Flags::WRITE_TIMER, false);
        let Some(io) = conn.io().filter(|io| io.owes_output()) else {
            return;
        };
        let deadline = io.last_progress + timeout;
        if deadline <= now {
            self.shared.schedule_close(id, CloseReason::NotReading);
        } else {
            conn.set(Flags::WRITE_TIMER, true);
            self.shared.timers.add(deadline, TimerKind::Write(id));
        }
    }

    /// Pushed output over the soft limit for the whole period closes.
    fn check_soft_limit(&mut self, id: ConnId) {
        let Some((max, period)) = self.shared.config.max_output_soft else {
            return;
        };
        let now = self.shared.now;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.set(Flags::SOFT_TIMER, false);
        let Some(since) = conn.io().and_then(|io| io.over_soft_since) else {
            return;
        };
        if since + period <= now {
            self.shared
                .note_limit(id, Limit::OutputSoft { max, period });
        } else {
            conn.set(Flags::SOFT_TIMER, true);
            self.shared
                .timers
                .add(since + period, TimerKind::SoftLimit(id));
        }
    }
}
