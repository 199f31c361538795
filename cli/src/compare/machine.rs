//! Facts about the machine a comparison ran on (cores, kernel, CPU model,
//! the date) for the report's title and captions, and the CPU readings at
//! the window's edges that tell the server's share from everything else.

use crate::bench::proc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cores this process may run on, if known.
pub fn cores() -> Option<usize> {
    std::thread::available_parallelism().ok().map(|n| n.get())
}

/// "N cores, Linux KERNEL, CPU MODEL".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{}, {cpu}", machine_short())
}

/// "N cores, Linux KERNEL": short enough for a plot's caption.
pub fn machine_short() -> String {
    format!("{} cores, Linux {}", cores().unwrap_or(0), kernel())
}

fn kernel() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release.trim().to_string()
}

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days algorithm.
pub fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    civil_date(days)
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CPU time read from /proc at one edge of the window: the server's,
/// this process's (the bench) and the whole machine's.
#[derive(Default, Clone, Copy)]
pub struct Reading {
    at: Option<Instant>,
    server_cpu: Duration,
    own_cpu: Duration,
    machine_busy: Duration,
}

impl Reading {
    pub fn now(server: u32) -> Reading {
        Reading {
            at: Some(Instant::now()),
            server_cpu: proc::cpu_time(server).unwrap_or_default(),
            own_cpu: proc::cpu_time(std::process::id()).unwrap_or_default(),
            machine_busy: proc::machine_busy().unwrap_or_default(),
        }
    }

    /// The server's CPU time from this reading to `later`.
    pub fn server_cpu_until(&self, later: &Reading) -> Duration {
        later.server_cpu.saturating_sub(self.server_cpu)
    }

    /// Seconds from this reading to `later`, if both were taken.
    pub fn secs_until(&self, later: &Reading) -> Option<f64> {
        Some((later.at? - self.at?).as_secs_f64())
    }

    /// Cores busy with something other than the server and the bench,
    /// from this reading to `later`, `window` seconds apart.
    pub fn other_load_until(&self, later: &Reading, window: f64) -> f64 {
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let ours = self.server_cpu_until(later).as_secs_f64()
            + later.own_cpu.saturating_sub(self.own_cpu).as_secs_f64();
        ((busy.as_secs_f64() - ours) / window).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_783), "2026-11-26");
    }
}
