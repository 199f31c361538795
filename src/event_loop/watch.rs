//! Calling the app, with the stall watchdog; the stats line.

use std::time::{Duration, Instant};

use super::EventLoop;
use crate::app::App;
use crate::conn::ConnId;
use crate::ctx::{Ctx, Shared};
use crate::pool::Pool;
use crate::stats::TurnTimes;

/// The coarse monotonic clock (a few ms resolution, and cheaper than
/// `Instant::now`): enough to see a handler that holds the loop for tens of
/// milliseconds, cheap enough to read around every handler call.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `call`, timing it when the stall watchdog is on: the seed's
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
    app: &mut A,
    f: impl FnOnce(&mut A, &mut Ctx<'_>) -> R,
) -> R {
    let name = app.name();
    timed(shared, name, None, |shared| f(app, &mut Ctx { shared }))
}

/// Calls a handler of connection `id` with its state. With `reply`, what
/// the handler sends to `id` counts as a reply (flow-controlled), not as
/// pushed output.
pub(super) fn call_conn<A: App, R>(
    shared: &mut Shared,
    state: &mut A::State,
    app: &mut A,
    id: ConnId,
    reply: bool,
    f: impl FnOnce(&mut A, &mut Ctx<'_>, &mut A::State) -> R,
) -> R {
    let name = app.name();
    let outer = shared.serving;
    shared.serving = reply.then_some(id);
    let result = timed(shared, name, Some(id), |shared| {
        f(app, &mut Ctx { shared }, state)
    });
    shared.serving = outer;
    result
}

impl<S: Default> EventLoop<S> {
    /// The state slot of connection index `index`, grown on demand.
    pub(super) fn state_slot(states: &mut Vec<S>, index: usize) -> &mut S {
        if states.len() <= index {
            states.resize_with(index + 1, S::default);
        }
        &mut states[index]
    }

    /// One `stats` line: rates over the interval since the last.
    pub(super) fn log_stats(&mut self) {
        let now = Instant::now();
        let (then, before) = self.last_stats;
        let secs = (now - then).as_secs_f64().max(1e-9);
        let s = self.shared.stats;
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let pending: usize = self.shared.conns.iter().map(|(_, c)| c.pending()).sum();
        let queued = self.shared.pool.as_ref().map_or(0, Pool::queued);
        log::info!(
            target: "iomux::stats",
            "clients={} accepted={} closed={} req_s={:.0} in_bytes_s={:.0} out_bytes_s={:.0} \
             turns_s={:.0} turn_p99_us={} pending_out={} pool_queue={} stalls={}",
            self.shared.conns.len(),
            s.accepted,
            s.closed,
            rate(s.requests, before.requests),
            rate(s.bytes_in, before.bytes_in),
            rate(s.bytes_out, before.bytes_out),
            rate(s.turns, before.turns),
            self.turn_times.p99_us(),
            pending,
            queued,
            s.stalls
        );
        self.turn_times = TurnTimes::default();
        self.last_stats = (now, s);
    }
}
