//! What a load thread measures: the window's edges and CPU time, the
//! counters, the latency histograms (nanoseconds), the errors and the
//! `--interval` lines; and the [`Tally`] every thread of a run adds to.

use super::schedule::InFlight;
use super::{BenchResult, Errors, Interval, proc, stats};
use hdrhistogram::Histogram;
use iomux::Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// A duration in nanoseconds, at least 1 (a histogram's lowest value).
fn nanos(d: Duration) -> u64 {
    (d.as_nanos().min(u64::MAX as u128) as u64).max(1)
}

/// Unwraps a lock even if a panicking thread held it: the counts it holds
/// are still the best there are.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every thread of one run adds to, for the lines printed while it
/// runs and for its first error.
pub(crate) struct Tally {
    /// Responses completed (warm-up included), for the progress line.
    completed: AtomicU64,
    /// Errors so far, for the progress and interval lines.
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The current interval's latencies, merged from every thread.
    interval: Mutex<(Histogram<u64>, u64)>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            interval: Mutex::new((new_histogram(), 0)),
        }
    }

    /// Counts an error, and keeps `message` if it is the run's first.
    pub(crate) fn note_error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_error).get_or_insert(message);
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    fn add_completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The `--interval` lines.
struct Intervals {
    every: Option<Duration>,
    /// This thread's latencies since it last merged them into the tally.
    hist: Histogram<u64>,
    requests: u64,
    /// Leader: the last interval's end and the run's error count then.
    last: (Instant, u64),
    lines: Vec<Interval>,
}

/// One thread's measurements of the window.
pub(crate) struct Recording {
    /// `--requests` and open loop: the requests due (sent) in the window
    /// are measured, however late they are answered; otherwise the
    /// responses that complete in the window are.
    count_sent: bool,
    /// Open loop: latency from the send time is kept too.
    open_loop: bool,
    window_start: Option<Instant>,
    /// When the window closed: no request falls due after it.
    window_end: Option<Instant>,
    /// When the run ended: open loop, after the responses to the requests
    /// due in the window came in (or stopped being waited for).
    run_end: Option<Instant>,
    cpu_start: Duration,
    cpu_end: Duration,
    /// Time this thread waited for a CPU (the scheduler's run delay).
    cpu_wait_start: Duration,
    cpu_wait_end: Duration,
    requests: u64,
    /// Open loop: requests due in the window but never sent.
    missed: u64,
    sent: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
    heavy_latency: Histogram<u64>,
    heavy_requests: u64,
    /// Open loop: how late the bench took each request off its schedule
    /// (its own lateness: timer resolution, CPU; not the time a request
    /// then waits for a free pipeline slot, which is the server's).
    send_lag: Histogram<u64>,
    /// Open loop: latency from the real send time (what a closed loop
    /// would report; wrk2's "uncorrected" latency).
    from_send: Histogram<u64>,
    pub(crate) errors: Errors,
    /// Connections opened in place of ones closed after a timeout.
    pub(crate) reconnects: u64,
    /// The run was cancelled.
    pub(crate) interrupted: bool,
    intervals: Intervals,
}

impl Recording {
    pub(crate) fn new(count_sent: bool, open_loop: bool, interval: Option<Duration>) -> Recording {
        Recording {
            count_sent,
            open_loop,
            window_start: None,
            window_end: None,
            run_end: None,
            cpu_start: Duration::ZERO,
            cpu_end: Duration::ZERO,
            cpu_wait_start: Duration::ZERO,
            cpu_wait_end: Duration::ZERO,
            requests: 0,
            missed: 0,
            sent: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            heavy_latency: new_histogram(),
            heavy_requests: 0,
            send_lag: new_histogram(),
            from_send: new_histogram(),
            errors: Errors::default(),
            reconnects: 0,
            interrupted: false,
            intervals: Intervals {
                every: interval,
                hist: new_histogram(),
                requests: 0,
                last: (Instant::now(), 0),
                lines: Vec::new(),
            },
        }
    }

    pub(crate) fn start_window(&mut self, tally: &Tally) {
        let now = Instant::now();
        self.window_start = Some(now);
        self.intervals.last = (now, tally.errors());
        self.cpu_start = proc::thread_cpu_time();
        self.cpu_wait_start = proc::thread_cpu_wait().unwrap_or_default();
    }

    /// Ends the window (one that never started is empty): no request falls
    /// due after it. The run itself ends with [`Recording::end_run`].
    pub(crate) fn close_window(&mut self) {
        if self.window_start.is_none() {
            self.start_window_quietly();
        }
        self.window_end = Some(Instant::now());
    }

    fn start_window_quietly(&mut self) {
        self.window_start = Some(Instant::now());
        self.cpu_start = proc::thread_cpu_time();
        self.cpu_wait_start = proc::thread_cpu_wait().unwrap_or_default();
    }

    /// The run is over (the last response measured is in, or no longer
    /// waited for): the real end of the window, for its rates and its CPU.
    pub(crate) fn end_run(&mut self) {
        if self.window_start.is_none() || self.run_end.is_some() {
            return;
        }
        let now = Instant::now();
        self.window_end.get_or_insert(now);
        self.run_end = Some(now);
        self.cpu_end = proc::thread_cpu_time();
        self.cpu_wait_end = proc::thread_cpu_wait().unwrap_or(self.cpu_wait_start);
    }

    /// No connection survived until the start: an empty window.
    pub(crate) fn empty_window(&mut self) {
        let now = Instant::now();
        self.window_start = Some(now);
        self.window_end = Some(now);
        self.run_end = Some(now);
    }

    /// Open loop: `n` requests due in the window were never sent.
    pub(crate) fn missed(&mut self, n: u64) {
        self.missed += n;
    }

    /// A measured request went out.
    pub(crate) fn sent(&mut self) {
        self.sent += 1;
    }

    /// Request bytes written in the window.
    pub(crate) fn bytes_sent(&mut self, n: usize) {
        self.bytes_sent += n as u64;
    }

    /// Open loop: a request taken off the schedule `lag` after it was due.
    pub(crate) fn send_lag(&mut self, lag: Duration) {
        let _ = self.send_lag.record(nanos(lag));
    }

    /// A response of `response_len` bytes completed; `measuring`: in the
    /// window. Counts in the tally's progress either way.
    pub(crate) fn response(
        &mut self,
        done: &InFlight,
        heavy: bool,
        measuring: bool,
        response_len: usize,
        tally: &Tally,
    ) {
        let counted = if self.count_sent {
            done.measured
        } else {
            measuring
        };
        if counted {
            let ns = nanos(done.due.elapsed());
            if heavy {
                let _ = self.heavy_latency.record(ns);
                self.heavy_requests += 1;
            } else {
                let _ = self.latency.record(ns);
                self.requests += 1;
                if self.open_loop {
                    let _ = self.from_send.record(nanos(done.sent.elapsed()));
                }
                if self.intervals.every.is_some() {
                    let _ = self.intervals.hist.record(ns);
                    self.intervals.requests += 1;
                }
            }
            self.bytes_received += response_len as u64;
        }
        tally.add_completed();
    }

    /// `--interval`, if asked.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.intervals.every
    }

    /// Time since the last interval line ended (or the window started).
    pub(crate) fn since_last_interval(&self) -> Duration {
        self.intervals.last.0.elapsed()
    }

    /// Adds this thread's latencies since the last merge to the tally's
    /// current interval.
    pub(crate) fn merge_interval(&mut self, tally: &Tally) {
        let i = &mut self.intervals;
        if i.every.is_none() || i.requests == 0 {
            return;
        }
        let mut acc = lock(&tally.interval);
        let _ = acc.0.add(&i.hist);
        acc.1 += i.requests;
        i.hist.reset();
        i.requests = 0;
    }

    /// Leader: one interval line from every thread's latencies; kept for
    /// the result and returned.
    pub(crate) fn report_interval(&mut self, tally: &Tally) -> Interval {
        self.merge_interval(tally);
        let now = Instant::now();
        let (then, errors_then) = self.intervals.last;
        let errors_now = tally.errors();
        self.intervals.last = (now, errors_now);
        let (hist, requests) = {
            let mut acc = lock(&tally.interval);
            let out = (acc.0.clone(), acc.1);
            acc.0.reset();
            acc.1 = 0;
            out
        };
        let secs = (now - then).as_secs_f64();
        let l = stats::latency(&hist);
        let line = Interval {
            elapsed_secs: self.window_start.map_or(0.0, |s| (now - s).as_secs_f64()),
            secs,
            requests,
            requests_per_sec: requests as f64 / secs.max(1e-9),
            p50_us: l.p50_us,
            p90_us: l.p90_us,
            p99_us: l.p99_us,
            max_us: l.max_us,
            errors: errors_now - errors_then,
        };
        self.intervals.lines.push(line);
        line
    }

    /// This thread's part of the result.
    pub(crate) fn finish(self, addr: Addr) -> BenchResult {
        let (window, drain) = match self.window_start {
            Some(start) => {
                let end = self.run_end.unwrap_or_else(Instant::now);
                let closed = self.window_end.unwrap_or(end).min(end);
                (end - start, end - closed)
            }
            None => (Duration::ZERO, Duration::ZERO),
        };
        BenchResult {
            addr,
            requests: self.requests,
            sent: self.sent,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            window,
            drain,
            latency: self.latency,
            heavy_latency: self.heavy_latency,
            heavy_requests: self.heavy_requests,
            send_lag: self.send_lag,
            from_send: self.from_send,
            errors: self.errors,
            reconnects: self.reconnects,
            first_error: None,
            cpu: self.cpu_end.saturating_sub(self.cpu_start),
            cpu_wait: self.cpu_wait_end.saturating_sub(self.cpu_wait_start),
            threads: 1,
            connect_time: Duration::ZERO,
            interrupted: self.interrupted,
            missed: self.missed,
            intervals: self.intervals.lines,
        }
    }
}
