//! When requests go out, and which of them are measured.
//!
//! - **Closed loop**: each connection keeps `pipeline` requests in flight
//!   and sends the next as soon as a response completes.
//! - **Open loop** (`--rate`): requests fall due at fixed times, round
//!   robin over the light connections, whatever the server does. A due
//!   request waits in its connection's backlog until the pipeline has a
//!   free slot; its latency counts from when it was due. One still
//!   waiting when the window closes is missed: never sent, and counted.
//!
//! Heavy connections (hash mode) are always closed-loop. `--requests`
//! gives the thread a budget of measured requests; once it is spent and
//! each of them is answered, the window may end.

use super::open::Planned;
use iomux::ConnId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A request sent and not yet answered.
pub(crate) struct InFlight {
    /// When it was due: latency is measured from here.
    pub due: Instant,
    /// When it was written (the response timeout runs from here).
    pub sent: Instant,
    /// Sent in the measured window (what `--requests` counts).
    pub measured: bool,
}

/// One loaded connection's requests.
pub(crate) struct Client {
    /// Requests in flight, oldest first.
    pub in_flight: VecDeque<InFlight>,
    /// Open loop: requests due but not sent (the pipeline was full), with
    /// their due time and whether they are measured.
    pub backlog: VecDeque<(Instant, bool)>,
    /// Sequence number of the next request to send.
    next_seq: u64,
    /// Bytes of the oldest in-flight response received so far.
    pub received: usize,
    pub heavy: bool,
    /// What it was opened as (a replacement is opened as the same).
    pub planned: Planned,
}

impl Client {
    pub(crate) fn new(pipeline: usize, planned: Planned) -> Client {
        Client {
            in_flight: VecDeque::with_capacity(pipeline),
            backlog: VecDeque::new(),
            next_seq: 0,
            received: 0,
            heavy: planned.kind == super::open::Kind::Heavy,
            planned,
        }
    }

    /// Puts the next request in flight; returns its sequence number.
    pub(crate) fn push(&mut self, due: Instant, sent: Instant, measured: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(InFlight {
            due,
            sent,
            measured,
        });
        seq
    }

    /// The sequence number of the oldest request in flight (the response
    /// being read).
    pub(crate) fn oldest_seq(&self) -> u64 {
        self.next_seq - self.in_flight.len() as u64
    }

    /// Measured requests in flight or waiting in the backlog.
    pub(crate) fn measured(&self) -> u64 {
        let a = self.in_flight.iter().filter(|f| f.measured).count();
        let b = self.backlog.iter().filter(|(_, m)| *m).count();
        (a + b) as u64
    }
}

/// The open-loop schedule of one thread.
pub(crate) struct Rate {
    /// Time between two due requests (this thread's share of the rate).
    step: f64,
    /// When the schedule started, and how many requests are due so far.
    origin: Instant,
    due: u64,
    /// Round robin over [`Schedule::order`].
    next_conn: usize,
}

impl Rate {
    fn next_due(&self) -> Instant {
        // At most a year ahead: far beyond any window, never an overflow.
        let secs = (self.step * self.due as f64).clamp(0.0, 31_536_000.0);
        self.origin + Duration::from_secs_f64(secs)
    }
}

/// How a thread paces its requests.
enum Pacing {
    Closed,
    Open(Rate),
}

/// One thread's pacing, its light connections in order, and its
/// `--requests` budget.
pub(crate) struct Schedule {
    pub(crate) pipeline: usize,
    pacing: Pacing,
    /// Light connections in the order they were added (open-loop round robin).
    order: Vec<ConnId>,
    /// Measured requests this thread may still send (`--requests`).
    budget: Option<u64>,
    /// Measured requests sent or due and not yet answered.
    outstanding: u64,
}

impl Schedule {
    /// `rate`: this thread's requests per second (open loop), or `None`.
    pub(crate) fn new(pipeline: usize, rate: Option<f64>, budget: Option<u64>) -> Schedule {
        let pacing = match rate.filter(|r| r.is_finite() && *r > 0.0) {
            Some(per_sec) => Pacing::Open(Rate {
                step: 1.0 / per_sec,
                origin: Instant::now(),
                due: 0,
                next_conn: 0,
            }),
            None => Pacing::Closed,
        };
        Schedule {
            pipeline,
            pacing,
            order: Vec::new(),
            budget,
            outstanding: 0,
        }
    }

    /// The load starts: the open-loop schedule counts from `now`.
    pub(crate) fn start(&mut self, now: Instant) {
        if let Pacing::Open(rate) = &mut self.pacing {
            rate.origin = now;
        }
    }

    pub(crate) fn is_open_loop(&self) -> bool {
        matches!(self.pacing, Pacing::Open(_))
    }

    /// Whether a connection's requests go out when due (open loop, light)
    /// rather than when a response completes.
    pub(crate) fn paces(&self, heavy: bool) -> bool {
        self.is_open_loop() && !heavy
    }

    /// A light connection joins the round robin.
    pub(crate) fn add(&mut self, conn: ConnId) {
        self.order.push(conn);
    }

    /// A connection is gone, with `measured` requests it will not answer.
    pub(crate) fn remove(&mut self, conn: ConnId, measured: u64) {
        self.outstanding -= measured.min(self.outstanding);
        self.order.retain(|&c| c != conn);
    }

    /// The light connections, in the order they were added.
    pub(crate) fn order(&self) -> &[ConnId] {
        &self.order
    }

    /// Takes one measured request from the budget, if any is left, and
    /// counts it as outstanding.
    pub(crate) fn take_measured(&mut self) -> bool {
        if let Some(left) = &mut self.budget {
            if *left == 0 {
                return false;
            }
            *left -= 1;
        }
        self.outstanding += 1;
        true
    }

    /// `n` measured requests due and never sent are given up.
    pub(crate) fn forget(&mut self, n: u64) {
        self.outstanding -= n.min(self.outstanding);
    }

    /// A measured request was answered.
    pub(crate) fn answered(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// The `--requests` budget is spent.
    pub(crate) fn budget_spent(&self) -> bool {
        self.budget == Some(0)
    }

    /// The budget is spent and every measured request answered.
    pub(crate) fn budget_done(&self) -> bool {
        self.budget_spent() && self.outstanding == 0
    }

    /// Measured requests sent or due and not yet answered.
    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Open loop: the time between two due requests of this thread.
    pub(crate) fn step(&self) -> Option<Duration> {
        match &self.pacing {
            Pacing::Open(rate) => Some(Duration::from_secs_f64(rate.step.min(31_536_000.0))),
            Pacing::Closed => None,
        }
    }

    /// Open loop: when the next request is due (`None` in the closed loop).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        match &self.pacing {
            Pacing::Open(rate) => Some(rate.next_due()),
            Pacing::Closed => None,
        }
    }

    /// Open loop: the next due request is taken off the schedule; returns
    /// the connection it goes to (`None` without one).
    pub(crate) fn take_due(&mut self) -> Option<ConnId> {
        let Pacing::Open(rate) = &mut self.pacing else {
            return None;
        };
        if self.order.is_empty() {
            return None;
        }
        let conn = self.order[rate.next_conn % self.order.len()];
        rate.next_conn = rate.next_conn.wrapping_add(1);
        rate.due += 1;
        Some(conn)
    }
}

/// How late the loop wakes for the rate timer, so that it can be armed
/// that much before a request is due and the rest waited out on the CPU:
/// the wake-up latency of a timer (tens of microseconds on a VM) would
/// otherwise be added to every request at a low rate.
pub(crate) struct WakeUp {
    /// The last [`WakeUp::SAMPLES`] wake-ups' lateness, in nanoseconds.
    late: [u32; WakeUp::SAMPLES],
    seen: usize,
    /// The median of `late`: how early the timer is armed.
    margin: Duration,
}

impl WakeUp {
    const SAMPLES: usize = 32;
    /// The most the bench waits out on the CPU for one request.
    pub(crate) const MAX_MARGIN: Duration = Duration::from_micros(200);

    pub(crate) fn new() -> WakeUp {
        WakeUp {
            late: [0; WakeUp::SAMPLES],
            seen: 0,
            margin: Duration::ZERO,
        }
    }

    /// A timer armed for `at` woke the loop `late` after it.
    pub(crate) fn note(&mut self, late: Duration) {
        let ns = late.min(WakeUp::MAX_MARGIN).as_nanos() as u32;
        self.late[self.seen % WakeUp::SAMPLES] = ns;
        self.seen += 1;
        let n = self.seen.min(WakeUp::SAMPLES);
        let mut sorted = self.late;
        let sorted = &mut sorted[..n];
        sorted.sort_unstable();
        self.margin = Duration::from_nanos(u64::from(sorted[n / 2]));
    }

    /// How long before a due time to arm the timer, at `step` between two
    /// requests: the typical wake-up latency, or nothing when requests are
    /// so close together (under four margins apart) that waiting out the
    /// margins would keep a core busy; they then go out as they fall due,
    /// after each batch of responses.
    pub(crate) fn margin(&self, step: Duration) -> Duration {
        if step > 4 * self.margin {
            self.margin
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_up_margin_is_the_median_lateness_within_bounds() {
        let mut w = WakeUp::new();
        let step = Duration::from_millis(1);
        assert_eq!(w.margin(step), Duration::ZERO, "nothing seen yet");
        for us in [40, 50, 45, 5000, 42] {
            w.note(Duration::from_micros(us));
        }
        // One late wake-up (a busy machine) does not move it much.
        assert_eq!(w.margin(step), Duration::from_micros(45));
        for _ in 0..WakeUp::SAMPLES {
            w.note(Duration::from_secs(1));
        }
        assert_eq!(w.margin(step), WakeUp::MAX_MARGIN, "capped");
        assert_eq!(
            w.margin(Duration::from_micros(500)),
            Duration::ZERO,
            "requests closer than four margins: no waiting on the CPU"
        );
    }

    #[test]
    fn rate_schedule_is_evenly_spaced_from_its_origin() {
        let origin = Instant::now();
        let mut r = Rate {
            step: 0.001,
            origin,
            due: 0,
            next_conn: 0,
        };
        assert_eq!(r.next_due(), origin);
        r.due = 1500;
        assert_eq!(r.next_due() - origin, Duration::from_millis(1500));
    }
}
