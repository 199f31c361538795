//! What a run's numbers say about it: whether an open-loop run kept up
//! with the rate asked and, if not, which side fell behind; and where the
//! bench's own lag behind its schedule came from. Each answer rests on
//! what was measured: the requests missed, the rate achieved over the real
//! window, the bench threads' CPU time and the time they waited for a CPU
//! (the scheduler's run delay).

use super::{BenchResult, stats};
use serde::Serialize;

/// An open-loop run kept up when nothing was missed and it achieved at
/// least this share of the asked rate.
pub const KEPT_UP: f64 = 0.95;
/// A bench thread that waited for a CPU this share of the window or more
/// was short of one: the machine's cores were busy.
pub const CPU_WAIT: f64 = 0.2;
/// A bench thread busy this share of a core or more was late to its
/// schedule because its loop had other work (responses) to finish first.
const BUSY: f64 = 0.5;

/// The side that could not keep up with the asked rate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Requests waited for the server's answers.
    Server,
    /// The bench used all of its CPU.
    Bench,
    /// The bench waited for a CPU: the cores were shared out (with the
    /// server, or other programs).
    Machine,
}

/// Why an open-loop run did not keep up.
#[derive(Clone, Debug, PartialEq)]
pub struct Behind {
    pub side: Side,
    pub why: String,
}

/// Where the bench's lag behind its schedule came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagCause {
    /// The kernel's wake-up latency for the loop's timer: what is left
    /// once the bench waits out the last microseconds itself.
    WakeUp,
    /// The bench's loop had other work (responses) to finish first.
    Busy,
    /// The bench's threads used all of their CPU.
    BenchCpu,
    /// The bench's threads waited for a CPU.
    CpuWait,
}

impl LagCause {
    pub fn describe(self) -> &'static str {
        match self {
            LagCause::WakeUp => "the kernel's wake-up latency",
            LagCause::Busy => "the bench's loop busy with responses",
            LagCause::BenchCpu => "the bench short of CPU (saturated)",
            LagCause::CpuWait => "the bench waiting for a CPU (the cores busy)",
        }
    }
}

/// Open loop: whether the run kept up with `asked` requests per second
/// (`None` in the closed loop, or when nothing was measured).
pub fn kept_up(r: &BenchResult, asked: Option<f64>) -> Option<bool> {
    let asked = asked?;
    if r.window.is_zero() {
        return None;
    }
    Some(r.missed == 0 && r.requests_per_sec() >= KEPT_UP * asked)
}

/// Open loop: which side fell behind `asked` and why, or `None` if the run
/// kept up (or is closed-loop). `conns` and `pipeline` are the run's.
///
/// The bench is the limit when its threads used a whole core each; the
/// machine, when they had work for a whole core but spent part of it
/// waiting for a CPU (the cores were shared out with the server or other
/// programs); otherwise the server, which left every pipeline slot
/// waiting for its answers (or answered late, after the window) while the
/// bench had time to spare.
pub fn behind(
    r: &BenchResult,
    asked: Option<f64>,
    conns: usize,
    pipeline: usize,
) -> Option<Behind> {
    if kept_up(r, asked)? {
        return None;
    }
    let asked = asked?;
    let (cpu, wait) = (r.cpu_per_thread(), r.cpu_wait_per_thread());
    let shortfall = format!(
        "could not keep up with {asked:.0}/s: {:.0}/s achieved, {} due requests never sent",
        r.requests_per_sec(),
        r.missed
    );
    let (side, why) = if cpu >= BenchResult::SATURATED {
        (
            Side::Bench,
            format!(
                "the bench {shortfall}: its thread(s) used {:.0}% of a core each (saturated); \
                 try --threads, on cores the server does not use",
                cpu * 100.0
            ),
        )
    } else if cpu + wait >= BenchResult::SATURATED {
        (
            Side::Machine,
            format!(
                "the machine {shortfall}: the bench's thread(s) waited for a CPU {:.0}% of the \
                 window (and ran {:.0}%); the cores were busy (the server, other programs), so \
                 the two did not each have one",
                wait * 100.0,
                cpu * 100.0
            ),
        )
    } else if r.missed > 0 {
        (
            Side::Server,
            format!(
                "the server {shortfall}: they found every pipeline slot ({conns} conns x \
                 {pipeline}) waiting for an answer"
            ),
        )
    } else {
        (
            Side::Server,
            format!(
                "the server {shortfall}: {} of {} requests sent were answered, the last {} \
                 after the window closed",
                r.requests,
                r.sent,
                stats::format_secs(r.drain)
            ),
        )
    };
    let why = match in_flight_ceiling(r, conns, pipeline) {
        Some(ceiling) if ceiling < asked => format!(
            "{why}; besides, {conns} conns x {pipeline} in flight at a mean {} from send allow \
             at most {ceiling:.0}/s (Little's law): raise --conns or --pipeline to ask for more",
            stats::format_us(r.from_send.mean() / 1000.0)
        ),
        _ => why,
    };
    Some(Behind { side, why })
}

/// Open loop: the most requests per second `conns` x `pipeline` slots
/// can carry at the mean latency measured from the real send (Little's
/// law: throughput = requests in flight / time each is in flight).
fn in_flight_ceiling(r: &BenchResult, conns: usize, pipeline: usize) -> Option<f64> {
    let mean_secs = r.from_send.mean() / 1e9;
    (!r.from_send.is_empty() && mean_secs > 0.0).then(|| (conns * pipeline) as f64 / mean_secs)
}

/// Open loop: where the bench's lag came from (`None` without any).
pub fn lag_cause(r: &BenchResult) -> Option<LagCause> {
    if r.send_lag.is_empty() {
        return None;
    }
    let (cpu, wait) = (r.cpu_per_thread(), r.cpu_wait_per_thread());
    Some(if cpu >= BenchResult::SATURATED {
        LagCause::BenchCpu
    } else if wait >= CPU_WAIT {
        LagCause::CpuWait
    } else if cpu >= BUSY {
        LagCause::Busy
    } else {
        LagCause::WakeUp
    })
}

/// Open loop: a warning when much of the latency's tail is the bench's own
/// lateness, naming its cause and what would help.
pub fn lag_warning(r: &BenchResult) -> Option<String> {
    let lag = stats::latency(&r.send_lag).p99_us?;
    let p99 = stats::latency(&r.latency).p99_us?;
    // Up to a couple of milliseconds is a busy turn, not a starved bench.
    if lag <= 2000.0 || lag <= 0.5 * p99 {
        return None;
    }
    let advice = match lag_cause(r)? {
        LagCause::BenchCpu => {
            "try --threads (on cores the server does not use) or a lower --rate".to_string()
        }
        LagCause::CpuWait => format!(
            "its thread(s) waited for a CPU {:.0}% of the window: the cores are busy (the \
             server, other programs), and more --threads would not help",
            r.cpu_wait_per_thread() * 100.0
        ),
        LagCause::Busy => format!(
            "its loop used {:.0}% of a core; --threads helps if there are cores to spare",
            r.cpu_per_thread() * 100.0
        ),
        LagCause::WakeUp => {
            "the host is slow to wake a sleeping thread (busy, or virtual); more --threads \
             would not help"
                .to_string()
        }
    };
    Some(format!(
        "much of the tail is the bench's own lateness (bench lag p99 {}): {}; {advice}",
        stats::format_us(lag),
        lag_cause(r)?.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iomux::Addr;
    use std::time::Duration;

    fn open_loop_run(requests: u64, missed: u64, cpu: f64, wait: f64) -> BenchResult {
        let mut r = BenchResult::nothing(Addr::Tcp(([127, 0, 0, 1], 1).into()));
        r.window = Duration::from_secs(2);
        r.requests = requests;
        r.sent = requests;
        r.missed = missed;
        r.threads = 1;
        r.cpu = Duration::from_secs_f64(2.0 * cpu);
        r.cpu_wait = Duration::from_secs_f64(2.0 * wait);
        for _ in 0..100 {
            let _ = r.send_lag.record(50_000);
            let _ = r.latency.record(100_000);
        }
        r
    }

    #[test]
    fn a_run_that_missed_nothing_at_the_rate_kept_up() {
        let r = open_loop_run(2000, 0, 0.05, 0.0);
        assert_eq!(kept_up(&r, Some(1000.0)), Some(true));
        assert_eq!(behind(&r, Some(1000.0), 10, 1), None);
        assert_eq!(kept_up(&r, None), None, "closed loop: not asked");
        let nothing = BenchResult::nothing(r.addr.clone());
        assert_eq!(kept_up(&nothing, Some(1000.0)), None);
        assert_eq!(lag_cause(&r), Some(LagCause::WakeUp));
        assert_eq!(lag_warning(&r), None);
    }

    #[test]
    fn missed_requests_name_the_server_unless_the_bench_was_short_of_cpu() {
        let slow = open_loop_run(1000, 1000, 0.1, 0.0);
        assert_eq!(kept_up(&slow, Some(1000.0)), Some(false));
        let b = behind(&slow, Some(1000.0), 10, 1).unwrap();
        assert_eq!(b.side, Side::Server);
        assert!(
            b.why.contains("1000 due requests") && b.why.contains("10 conns x 1"),
            "{b:?}"
        );
        let saturated = open_loop_run(1000, 1000, 0.99, 0.0);
        let b = behind(&saturated, Some(1000.0), 10, 1).unwrap();
        assert_eq!(b.side, Side::Bench);
        assert!(b.why.contains("99%"), "{b:?}");
        // Busy the whole window, a third of it waiting for a CPU.
        let starved = open_loop_run(1000, 1000, 0.65, 0.33);
        let b = behind(&starved, Some(1000.0), 10, 1).unwrap();
        assert_eq!(b.side, Side::Machine);
        assert!(b.why.contains("waited for a CPU 33%"), "{b:?}");
        // Waiting for a CPU at times, but with time to spare: the server.
        let waited = open_loop_run(1000, 1000, 0.1, 0.4);
        assert_eq!(
            behind(&waited, Some(1000.0), 10, 1).unwrap().side,
            Side::Server
        );
        // Nothing missed, but far short of the rate: late answers.
        let late = open_loop_run(1000, 0, 0.1, 0.0);
        let b = behind(&late, Some(1000.0), 10, 1).unwrap();
        assert_eq!(b.side, Side::Server);
        assert!(b.why.contains("after the window closed"), "{b:?}");
    }

    #[test]
    fn too_few_slots_for_the_rate_are_named() {
        // 10 slots at 100 µs each carry at most 100k/s: 600k/s cannot be had.
        let mut r = open_loop_run(200_000, 1_000_000, 0.1, 0.0);
        for _ in 0..100 {
            let _ = r.from_send.record(100_000);
        }
        let b = behind(&r, Some(600_000.0), 10, 1).unwrap();
        assert!(
            b.why.contains("at most 100") && b.why.contains("raise --conns or --pipeline"),
            "{b:?}"
        );
        // Enough slots for the rate: no such advice.
        let b = behind(&r, Some(600_000.0), 100, 1).unwrap();
        assert!(!b.why.contains("Little"), "{b:?}");
    }

    #[test]
    fn the_lag_names_its_cause() {
        let mut r = open_loop_run(2000, 0, 0.6, 0.0);
        assert_eq!(lag_cause(&r), Some(LagCause::Busy));
        for _ in 0..100 {
            let _ = r.send_lag.record(5_000_000);
        }
        let w = lag_warning(&r).unwrap();
        assert!(
            w.contains("busy with responses") && w.contains("60% of a core"),
            "{w}"
        );
        r.cpu_wait = Duration::from_secs(1);
        let w = lag_warning(&r).unwrap();
        assert!(
            w.contains("waited for a CPU 50%") && w.contains("would not help"),
            "{w}"
        );
        r.cpu = Duration::from_secs(2);
        assert_eq!(lag_cause(&r), Some(LagCause::BenchCpu));
        let closed = BenchResult::nothing(r.addr.clone());
        assert_eq!(lag_cause(&closed), None);
    }
}
