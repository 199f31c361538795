//! Durations on the command line, one parser for every flag that takes
//! one (`bench`, `compare` and `serve` alike), so `-d 3s`, `--timeout
//! 500ms` and `--idle-timeout 1m` mean the same everywhere: a number with
//! an optional unit, as wrk and curl take them. A plain number is seconds,
//! as these flags have always been, so `2` and `0.5` still work.

use std::time::Duration;

/// The units a duration may end in, longest first so that `ms` is not read
/// as `m` followed by junk.
const UNITS: [(&str, f64); 7] = [
    ("ms", 1e-3),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("", 1.0),
];

/// The longest duration a flag takes unless it says otherwise: a day.
pub const DAY: Duration = Duration::from_secs(86_400);

/// A flag's duration from 0 to a day: `3s`, `1m`, `500ms`, `250us`, or
/// plain seconds (`2`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_up_to(s, DAY)
}

/// A flag's duration from 0 to `max` (see [`parse_duration`]).
pub fn parse_duration_up_to(s: &str, max: Duration) -> Result<Duration, String> {
    let text = s.trim();
    let expected = || {
        format!(
            "expected a duration such as 3s, 500ms, 250us, 1m or plain seconds (2, 0.5), got '{s}'"
        )
    };
    let (number, scale) = UNITS
        .iter()
        .find_map(|&(unit, scale)| {
            let number = text.strip_suffix(unit)?.trim_end();
            // The number must be all digits, a dot or an exponent: `f64`
            // would also take `inf` and `nan`, which are not durations.
            let plain = !number.is_empty()
                && number
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
            plain.then_some((number, scale))
        })
        .ok_or_else(expected)?;
    let value: f64 = number.parse().map_err(|_| expected())?;
    let secs = value * scale;
    let too_long = || format!("must be from 0 to {}, got '{s}'", describe(max));
    if !secs.is_finite() || secs < 0.0 || secs > max.as_secs_f64() {
        return Err(too_long());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| too_long())
}

/// A duration as a person would write it: `86400 s` is `1 day`, and so on.
pub fn describe(d: Duration) -> String {
    let secs = d.as_secs_f64();
    match secs {
        s if s >= 86_400.0 && s % 86_400.0 == 0.0 => plural(s / 86_400.0, "day"),
        s if s >= 3600.0 && s % 3600.0 == 0.0 => plural(s / 3600.0, "hour"),
        s if s >= 1.0 => format!("{s} s"),
        s => format!("{} ms", s * 1e3),
    }
}

fn plural(n: f64, unit: &str) -> String {
    if n == 1.0 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("3s"), Duration::from_secs(3));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("1.5m"), Duration::from_secs(90));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("250µs"), Duration::from_micros(250));
        assert_eq!(ok("2"), Duration::from_secs(2));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok(" 0.25 s "), Duration::from_millis(250));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0ms"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("1e3ms"), Duration::from_secs(1));
        assert_eq!(ok("24h"), DAY);
    }

    #[test]
    fn nonsense_is_refused_with_a_message() {
        for bad in [
            "", "s", "ms", "x", "3x", "3 sec", "1m30s", "inf", "nan", "infs", "1..2", "--1", "3ss",
            "m3", "1d",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(
                e.contains("expected a duration") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        for out in ["-1", "-1ms", "25h", "1e9", "86401", "1e400"] {
            let e = parse_duration(out).expect_err(out);
            assert!(e.contains("from 0 to 1 day"), "{out}: {e}");
        }
        let year = Duration::from_secs(31_536_000);
        assert_eq!(
            parse_duration_up_to("100000", year),
            Ok(Duration::from_secs(100_000))
        );
        assert!(parse_duration_up_to("2s", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(describe(DAY), "1 day");
        assert_eq!(describe(Duration::from_secs(31_536_000)), "365 days");
        assert_eq!(describe(Duration::from_secs(7200)), "2 hours");
        assert_eq!(describe(Duration::from_secs(5)), "5 s");
        assert_eq!(describe(Duration::from_millis(10)), "10 ms");
    }
}
