//! Reading a process's CPU time and memory from `/proc`.

use std::time::Duration;

/// User + system CPU time of a process, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&text)?;
    Some(ticks_to_duration(ticks))
}

/// Resident set size in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss(&text)
}

/// CPU time of the calling thread (exact, from the scheduler).
pub fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time the calling thread spent runnable but waiting for a CPU (the
/// scheduler's run delay, field 2 of `/proc/thread-self/schedstat`);
/// `None` where the kernel does not keep it.
pub fn thread_cpu_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat_wait(&text)
}

/// The run delay (second field, nanoseconds) of a `schedstat` line.
pub fn parse_schedstat_wait(schedstat: &str) -> Option<Duration> {
    let ns: u64 = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces, so fields
/// are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time the whole machine spent busy (every state but idle and
/// iowait, steal included: a neighbour VM's use counts as load), from the
/// `cpu` line of `/proc/stat`.
pub fn machine_busy() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat_busy(&text).map(ticks_to_duration)
}

/// Busy ticks of the `cpu` line of a `/proc/stat` text: user, nice,
/// system, irq, softirq and steal (guest time is already in user).
pub fn parse_proc_stat_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn loadavg() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // USER_HZ is 100 on every Linux ABI (the kernel converts for /proc).
    Duration::from_millis(ticks * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn schedstat_run_delay() {
        let d = parse_schedstat_wait("123456 7890000 42\n");
        assert_eq!(d, Some(Duration::from_nanos(7_890_000)));
        assert_eq!(parse_schedstat_wait("1\n"), None);
        assert_eq!(parse_schedstat_wait("a b c"), None);
    }

    #[test]
    fn status_rss_in_bytes() {
        let status = "Name:\tiomux\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn proc_stat_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 40 3 7 11 0 0\ncpu0 50 2 25 500 20 1 3 5 0 0\n";
        assert_eq!(parse_proc_stat_busy(stat), Some(100 + 5 + 50 + 3 + 7 + 11));
        assert_eq!(parse_proc_stat_busy("intr 1 2 3\n"), None);
        assert!(machine_busy().is_some());
        assert!(loadavg().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
