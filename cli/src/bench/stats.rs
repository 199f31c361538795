//! Small statistics used by the bench and the report.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles, in microseconds; `None` (JSON `null`, printed
/// `n/a`) when nothing was measured: an empty histogram has no p50, and a
/// 0 would read as a very fast server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
}

/// Percentiles of a histogram recorded in nanoseconds.
pub fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let us = |ns: u64| Some(ns as f64 / 1000.0);
    Latency {
        p50_us: us(h.value_at_quantile(0.50)),
        p90_us: us(h.value_at_quantile(0.90)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Spread of `values` around their median, as (max - min) / median.
pub fn spread(values: &[f64]) -> f64 {
    let m = median(values);
    if values.is_empty() || m == 0.0 {
        return 0.0;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    (hi - lo) / m.abs()
}

/// The percentile distribution of a histogram recorded in nanoseconds, in
/// milliseconds, in the text format of HdrHistogram's
/// `outputPercentileDistribution` (what wrk2 prints with `--latency`), so
/// HdrHistogram's plotter can read it.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let ms = |ns: f64| ns / 1e6;
    let mut s = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = ms(h.highest_equivalent(v.value_iterated_to()) as f64);
            if q < 1.0 {
                s += &format!(
                    "{value:12.3} {q:14.12} {total:10} {:14.2}\n",
                    1.0 / (1.0 - q)
                );
            } else {
                s += &format!("{value:12.3} {q:14.12} {total:10}\n");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (ms(h.mean()), ms(h.stdev()), ms(h.max() as f64))
    };
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2();
    s += &format!("#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]\n");
    s += &format!("#[Max     = {max:12.3}, Total count    = {:12}]\n", h.len());
    s += &format!(
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]\n",
        h.buckets()
    );
    s
}

/// A duration with as many digits as it deserves: `5.00 s`, `42.3 ms`,
/// `250 µs`; a window of a few milliseconds (a fast `--requests` run) is
/// never rounded to `0.0 s`.
pub fn format_secs(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 100.0 {
        format!("{secs:.0} s")
    } else if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

/// A duration in microseconds, printed with a sensible unit; `n/a` for
/// none (a percentile of nothing measured).
pub fn format_us(us: impl Into<Option<f64>>) -> String {
    let Some(us) = us.into() else {
        return "n/a".to_string();
    };
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let l = latency(&h);
        // HDR keeps 3 significant digits: within 0.1 %.
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= 1.0);
        assert!(near(l.p50_us, 500.0), "{l:?}");
        assert!(near(l.p90_us, 900.0), "{l:?}");
        assert!(near(l.p99_us, 990.0), "{l:?}");
        assert!(near(l.max_us, 1000.0), "{l:?}");
        let none = latency(&Histogram::<u64>::new(3).unwrap());
        assert_eq!(none, Latency::default());
        assert_eq!(none.p50_us, None);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!((spread(&[90.0, 100.0, 110.0]) - 0.2).abs() < 1e-12);
        assert_eq!(spread(&[5.0]), 0.0);
    }

    #[test]
    fn percentile_distribution_is_hdr_text() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000).unwrap();
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        // First row: the smallest value at percentile 0.
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first[1], "0.000000000000", "{text}");
        assert!(
            (first[0].parse::<f64>().unwrap() - 1.0).abs() < 0.01,
            "{text}"
        );
        // The last data row reaches percentile 1 and the whole count.
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        let last: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!((last[1], last[2]), ("1.000000000000", "100"), "{text}");
        assert!(
            (last[0].parse::<f64>().unwrap() - 100.0).abs() < 0.1,
            "{text}"
        );
        assert!(text.contains("Total count    =          100]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        // Percentiles never go down.
        let qs: Vec<f64> = lines[2..]
            .iter()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{text}");
        let empty = percentile_distribution(&Histogram::<u64>::new(3).unwrap());
        assert!(empty.contains("Total count    =            0]"), "{empty}");
    }

    #[test]
    fn units() {
        assert_eq!(format_us(12.34), "12.3 µs");
        assert_eq!(format_us(1500.0), "1.50 ms");
        assert_eq!(format_us(2_500_000.0), "2.50 s");
        assert_eq!(format_us(None), "n/a");
        use std::time::Duration;
        assert_eq!(format_secs(Duration::from_secs(5)), "5.00 s");
        assert_eq!(format_secs(Duration::from_secs(300)), "300 s");
        assert_eq!(format_secs(Duration::from_micros(42_340)), "42.3 ms");
        assert_eq!(format_secs(Duration::from_micros(250)), "250 µs");
        assert_eq!(format_secs(Duration::ZERO), "0 µs");
    }
}
