//! Calling the app, with the stall watchdog; the stats line.

use std::time::{Duration, Instant};

use super::EventLoop;
use crate::app::App;
use crate::conn::ConnId;
use crate::ctx::Ctx;
use crate::driver::Driver;
use crate::mailbox::LoopSnapshot;
use crate::pool::Pool;
use crate::shared::Shared;
use crate::stats::TurnTimes;

/// The coarse monotonic clock (a few ms resolution, and cheaper than
/// `Instant::now`): enough to see a handler that holds the loop for tens of
/// milliseconds, cheap enough to read around every handler call.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `call`, timing it when the stall watchdog is on: the model's
/// weakness made visible — while a handler runs, nobody else is served.
fn timed<R>(
    shared: &mut Shared,
    app_name: &'static str,
    conn: Option<ConnId>,
    call: impl FnOnce(&mut Shared) -> R,
) -> R {
    let Some(limit) = shared.config.stall_threshold else {
        return call(shared);
    };
    let start = coarse_now();
    let result = call(shared);
    let took = coarse_now().saturating_sub(start);
    if took > limit {
        shared.stats.stalls += 1;
        let peer = conn
            .and_then(|id| shared.conns.get(id.index()).filter(|c| c.is(id)))
            .map_or_else(|| "-".to_string(), |c| c.peer().to_string());
        log::warn!(
            target: "iomux::stall",
            "{app_name} handler for {peer} ran {} ms on the loop thread (backend {})",
            took.as_millis(),
            shared.backend
        );
    }
    result
}

/// Calls a loop-wide handler (a timer, a wake-up).
pub(super) fn call<A: App, R>(
    shared: &mut Shared,
    driver: &mut Driver,
    app: &mut A,
    f: impl FnOnce(&mut A, &mut Ctx<'_>) -> R,
) -> R {
    let name = app.name();
    timed(shared, name, None, |shared| {
        f(app, &mut Ctx { shared, driver })
    })
}

/// Calls a handler of connection `id` with its state; `sends` says whether
/// what it sends to `id` is a reply (flow-controlled) or pushed output.
pub(super) fn call_conn<A: App, R>(
    shared: &mut Shared,
    driver: &mut Driver,
    state: &mut A::State,
    app: &mut A,
    id: ConnId,
    sends: Sends,
    f: impl FnOnce(&mut A, &mut Ctx<'_>, &mut A::State) -> R,
) -> R {
    let name = app.name();
    let outer = (shared.serving, shared.current);
    shared.serving = (sends == Sends::Replies).then_some(id);
    shared.current = Some(id);
    let result = timed(shared, name, Some(id), |shared| {
        f(app, &mut Ctx { shared, driver }, state)
    });
    (shared.serving, shared.current) = outer;
    result
}

/// Who a connection's handler is speaking for: what it sends to its own
/// connection is a reply (flow-controlled) or pushed output.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(super) enum Sends {
    Replies,
    Pushes,
}

impl<S: Default> EventLoop<S> {
    /// Calls a handler of connection `id` with its state (see
    /// [`call_conn`]); for handlers that need nothing else of the loop.
    pub(super) fn call_for<A: App<State = S>, R>(
        &mut self,
        app: &mut A,
        id: ConnId,
        sends: Sends,
        f: impl FnOnce(&mut A, &mut Ctx<'_>, &mut S) -> R,
    ) -> R {
        let state = Self::state_slot(&mut self.states, id.index());
        call_conn(&mut self.shared, &mut self.driver, state, app, id, sends, f)
    }

    /// The state slot of connection index `index`, grown on demand.
    pub(super) fn state_slot(states: &mut Vec<S>, index: usize) -> &mut S {
        if states.len() <= index {
            states.resize_with(index + 1, S::default);
        }
        &mut states[index]
    }

    /// This loop's part of a group's stats line.
    fn snapshot(&self, pending: usize) -> LoopSnapshot {
        LoopSnapshot {
            stats: self.shared.stats,
            clients: self.shared.conns.len(),
            turn_p99_us: self.turn_times.p99_us(),
            pending,
        }
    }

    /// In a group with a stats line, publishes this loop's counters (a few
    /// relaxed stores per turn; pending output as of the last tick) for
    /// loop 0 to add up.
    pub(super) fn publish_stats(&self) {
        if let Some((group, index)) = &self.shared.group
            && self.shared.config.stats_interval.is_some()
        {
            group.publish(*index, &self.snapshot(self.pending_at_tick));
        }
    }

    /// One `stats` line: rates over the interval since the last. In a
    /// group, every loop publishes its counters each turn and loop 0 logs
    /// the totals, with each loop's client count in `loops=`.
    pub(super) fn log_stats(&mut self) {
        let now = Instant::now();
        let (then, before) = self.last_stats;
        let secs = (now - then).as_secs_f64().max(1e-9);
        // Summed over the connections once per tick, not per turn.
        self.pending_at_tick = self.shared.conns.iter().map(|(_, c)| c.pending()).sum();
        let queued = self.shared.pool.as_ref().map_or(0, Pool::queued);
        let mut total = self.snapshot(self.pending_at_tick);
        let mut per_loop = String::new();
        if let Some((group, index)) = &self.shared.group {
            group.publish(*index, &total);
            if *index != 0 {
                self.turn_times = TurnTimes::default();
                return;
            }
            let all = group.published();
            total = LoopSnapshot::default();
            for part in &all {
                total.stats += &part.stats;
                total.clients += part.clients;
                total.pending += part.pending;
                total.turn_p99_us = total.turn_p99_us.max(part.turn_p99_us);
            }
            let counts: Vec<String> = all.iter().map(|p| p.clients.to_string()).collect();
            per_loop = format!(" loops={}", counts.join("/"));
        }
        let (s, clients, p99, pending) =
            (total.stats, total.clients, total.turn_p99_us, total.pending);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        log::info!(
            target: "iomux::stats",
            "clients={} accepted={} closed={} req_s={:.0} in_bytes_s={:.0} out_bytes_s={:.0} \
             turns_s={:.0} turn_p99_us={} pending_out={} pool_queue={} stalls={}{per_loop}",
            clients,
            s.accepted,
            s.closed,
            rate(s.requests, before.requests),
            rate(s.bytes_in, before.bytes_in),
            rate(s.bytes_out, before.bytes_out),
            rate(s.turns, before.turns),
            p99,
            pending,
            queued,
            s.stalls
        );
        self.turn_times = TurnTimes::default();
        self.last_stats = (now, s);
    }
}
