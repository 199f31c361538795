//! Requests out and responses in: when each request is written, and
//! each response checked byte for byte as it arrives.

use super::{LoadGen, LoadPhase, TIMER_RATE};
use crate::bench::schedule::InFlight;
use crate::bench::wire::Step;
use iomux::{ConnId, Ctx};
use std::time::Instant;

impl LoadGen {
    /// Whether one more request may go out, and if it is measured.
    fn take_slot(&mut self) -> Option<bool> {
        match self.phase {
            LoadPhase::Stopped | LoadPhase::Draining => None,
            LoadPhase::Opening | LoadPhase::WarmingUp => Some(false),
            LoadPhase::Measuring => {
                if !self.schedule.take_measured() {
                    return None;
                }
                Some(true)
            }
        }
    }

    /// Closed loop: the next request of `conn`, now.
    pub(super) fn send_request(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        if !self.clients.contains_key(&conn) {
            return;
        }
        let Some(measured) = self.take_slot() else {
            return;
        };
        let now = Instant::now();
        self.transmit(ctx, conn, now, now, measured);
    }

    /// Writes the next request of `conn`, due at `due`.
    fn transmit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, due: Instant, now: Instant, m: bool) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let seq = client.push(due, now, m);
        let request = self.wire.request(client.heavy, seq);
        if m {
            self.record.sent();
        }
        if self.phase == LoadPhase::Measuring {
            self.record.bytes_sent(request.len());
        }
        // A connection that cannot take it is closing, and its close
        // reports why.
        let _ = ctx.send(conn, request);
    }

    /// Open loop: sends what is due on `conn` while its pipeline has room.
    fn pump(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let now = Instant::now();
        loop {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            if client.in_flight.len() >= self.schedule.pipeline {
                return;
            }
            let Some((due, measured)) = client.backlog.pop_front() else {
                return;
            };
            self.transmit(ctx, conn, due, now, measured);
        }
    }

    /// Open loop: makes every request due by now, round robin. The timer
    /// is armed a little before the next due time (the loop's typical
    /// wake-up latency, [`crate::bench::schedule::WakeUp`]); what is left of it is waited out
    /// here, on the CPU, so that a request leaves when it is due rather
    /// than when the kernel got round to waking the loop.
    pub(super) fn on_rate(&mut self, ctx: &mut Ctx<'_>) {
        let woke = Instant::now();
        if let Some(at) = self.rate_armed.take() {
            self.wake.note(woke.saturating_duration_since(at));
        }
        if let (Some(due), Some(step)) = (self.schedule.next_due(), self.schedule.step())
            && due > woke
            && due - woke <= self.wake.margin(step)
        {
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        self.send_due(ctx);
        if let (Some(due), Some(step)) = (self.schedule.next_due(), self.schedule.step())
            && matches!(self.phase, LoadPhase::WarmingUp | LoadPhase::Measuring)
            && !self.schedule.budget_spent()
        {
            // Timers count from the turn's start: from `Instant::now()`,
            // it would fire early by the time this turn has taken.
            let at = due.checked_sub(self.wake.margin(step)).unwrap_or(due);
            let after = at.saturating_duration_since(ctx.now());
            ctx.set_timer(after, TIMER_RATE);
            // Only a timer that had to wait tells of the wake-up latency.
            self.rate_armed = (!after.is_zero()).then_some(ctx.now() + after);
        }
    }

    /// Open loop: sends (or queues) every request due by now. Called from
    /// the rate timer (which the loop keeps to the microsecond) and after
    /// each batch of responses. Returns the `now` it used.
    pub(super) fn send_due(&mut self, ctx: &mut Ctx<'_>) -> Instant {
        let now = Instant::now();
        loop {
            let Some(due) = self.schedule.next_due() else {
                return now;
            };
            if due > now || self.schedule.order().is_empty() {
                return now;
            }
            let Some(measured) = self.take_slot() else {
                // Stopping, or the `--requests` budget is spent.
                return now;
            };
            let Some(conn) = self.schedule.take_due() else {
                return now;
            };
            if self.measuring() {
                self.record.send_lag(now.saturating_duration_since(due));
            }
            if let Some(c) = self.clients.get_mut(&conn) {
                c.backlog.push_back((due, measured));
            }
            self.pump(ctx, conn);
        }
    }

    /// The bytes that arrived on `conn`: checked against the responses it
    /// is owed (byte for byte, or by the reply rule); returns how many were
    /// used.
    pub(super) fn receive(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            let Some(client) = self.clients.get_mut(&conn) else {
                return input.len();
            };
            let heavy = client.heavy;
            if client.in_flight.is_empty() {
                let why = format!(
                    "{} bytes nobody asked for (no request in flight)",
                    input.len() - used
                );
                return self.wrong_reply(ctx, conn, why, input.len());
            }
            let (seq, offset) = (client.oldest_seq(), client.received);
            match self.wire.take(heavy, seq, offset, &input[used..]) {
                Step::Part { used: n } => {
                    used += n;
                    client.received += n;
                }
                Step::Whole { used: n, len } => {
                    used += n;
                    client.received = 0;
                    if let Some(done) = client.in_flight.pop_front() {
                        self.complete(ctx, conn, done, heavy, len);
                    }
                }
                Step::More => {
                    client.received = input.len() - used;
                    break;
                }
                Step::Wrong(why) => return self.wrong_reply(ctx, conn, why, input.len()),
            }
        }
        // Before the load no request is due; once stopped none is sent.
        if self.schedule.is_open_loop()
            && !matches!(self.phase, LoadPhase::Opening | LoadPhase::Stopped)
        {
            self.send_due(ctx);
        }
        used
    }

    /// A reply on `conn` is not what was owed: counted, described, and the
    /// connection closed (what follows on it cannot be trusted). Returns
    /// `input_len`: the rest of the input is dropped with it.
    fn wrong_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        why: String,
        input_len: usize,
    ) -> usize {
        self.record.errors.mismatched += 1;
        self.error(format!("{}: {why}", self.addr));
        ctx.close(conn);
        self.drop_client(ctx, conn);
        input_len
    }

    /// One response of `conn`, `len` bytes, completed.
    fn complete(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        done: InFlight,
        heavy: bool,
        len: usize,
    ) {
        let measuring = self.measuring();
        self.record
            .response(&done, heavy, measuring, len, &self.shared.tally);
        if done.measured {
            self.schedule.answered();
        }
        if self.stopped() {
            return;
        }
        if self.schedule.paces(heavy) {
            self.pump(ctx, conn);
        } else {
            self.send_request(ctx, conn);
        }
        if self.schedule.budget_done() && self.measuring() {
            self.end_window(ctx);
        }
        self.drained(ctx);
    }
}
