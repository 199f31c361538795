//! Counters a loop keeps, and the turn-time histogram of its stats line.

use std::time::Duration;

/// Counters since the loop was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections admitted (accepted under the limit, or adopted).
    pub accepted: u64,
    /// Connections accepted and closed at once (over `max_clients`).
    pub rejected: u64,
    /// Connections closed.
    pub closed: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Turns of the loop.
    pub turns: u64,
    /// Requests served, as counted by apps ([`crate::Ctx::record_request`]).
    pub requests: u64,
    /// Handler calls that ran over the stall threshold.
    pub stalls: u64,
}

impl std::ops::AddAssign<&Stats> for Stats {
    /// Adds another loop's counters (a group's totals).
    fn add_assign(&mut self, o: &Stats) {
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.closed += o.closed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.turns += o.turns;
        self.requests += o.requests;
        self.stalls += o.stalls;
    }
}

/// Loop-turn durations in power-of-two microsecond buckets: enough for a
/// p99 in a stats line, at no allocation and one add per turn.
#[derive(Default)]
pub(crate) struct TurnTimes {
    buckets: [u64; 32],
}

impl TurnTimes {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let bucket = (64 - us.leading_zeros()) as usize;
        self.buckets[bucket.min(self.buckets.len() - 1)] += 1;
    }

    /// Upper bound of the bucket holding the 99th percentile, in µs.
    pub(crate) fn p99_us(&self) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = total - total / 100;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1u64 << i;
            }
        }
        1u64 << (self.buckets.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_times_p99_is_a_bucket_bound() {
        let mut t = TurnTimes::default();
        assert_eq!(t.p99_us(), 0);
        for _ in 0..990 {
            t.record(Duration::from_micros(3));
        }
        for _ in 0..10 {
            t.record(Duration::from_millis(5));
        }
        // 99 % of turns took 3 µs: the p99 is the bound of their bucket.
        assert_eq!(t.p99_us(), 4);
        t.record(Duration::from_millis(5));
        assert_eq!(t.p99_us(), 8192, "1 % + 1 slow turns move the p99");
    }
}
