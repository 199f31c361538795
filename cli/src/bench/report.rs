//! The `iomux compare` report: samples aggregated into points, warnings,
//! the Markdown table (the plots are `plot.rs`).

use super::stats::{median, spread};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run of one server at one point of the matrix.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub target: String,
    pub idle: usize,
    pub pipeline: usize,
    pub size: usize,
    /// Open-loop rate asked (`None`: closed loop).
    pub rate: Option<f64>,
    pub repeat: usize,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Server user + system CPU per request, in microseconds.
    pub server_cpu_us_per_request: f64,
    /// Server RSS right after start, and with the idle connections open.
    pub rss_empty: u64,
    pub rss_idle: u64,
    /// Share of a core the bench thread(s) used.
    pub bench_cpu: f64,
    /// Cores busy with something other than this server and this bench
    /// during the window (from /proc/stat), e.g. another program.
    pub other_load: f64,
    pub errors: u64,
    /// Open loop: requests due in the window and never sent, and whether
    /// the run kept up with the asked rate (`None` in the closed loop).
    pub missed: u64,
    pub kept_up: Option<bool>,
}

impl Sample {
    /// Bytes of server RSS per idle connection (0 when there are none).
    pub fn rss_per_idle(&self) -> f64 {
        if self.idle == 0 {
            0.0
        } else {
            (self.rss_idle as f64 - self.rss_empty as f64) / self.idle as f64
        }
    }
}

/// The median (and spread) of a target's repeats at one point.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub target: String,
    pub idle: usize,
    pub pipeline: usize,
    pub size: usize,
    pub rate: Option<f64>,
    pub runs: usize,
    pub requests_per_sec: f64,
    /// (max - min) / median; `None` with a single run.
    pub requests_per_sec_spread: Option<f64>,
    pub requests_per_sec_range: [f64; 2],
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_range: [f64; 2],
    pub server_cpu_us_per_request: f64,
    pub server_cpu_spread: Option<f64>,
    pub server_cpu_range: [f64; 2],
    /// Server CPU per request relative to the same target (and the same
    /// pipeline, size and rate) at 0 idle.
    pub cpu_ratio_to_zero_idle: Option<f64>,
    pub rss_idle: f64,
    pub rss_per_idle: f64,
    pub bench_cpu: f64,
    /// The most other load seen in any run (cores).
    pub other_load: f64,
    pub errors: u64,
    /// Open loop: requests missed over all runs, and the runs that did
    /// not keep up with the asked rate.
    pub missed: u64,
    pub behind_runs: usize,
}

/// A spread (range of the runs over their median) above this is flagged;
/// the table shows half of it (±10 %).
pub const SPREAD_WARNING: f64 = 0.20;
/// Other load (cores besides the server and the bench) above this is flagged.
pub const OTHER_LOAD_WARNING: f64 = 0.25;

fn range(values: &[f64]) -> [f64; 2] {
    values
        .iter()
        .fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], &x| {
            [lo.min(x), hi.max(x)]
        })
}

type Key = (usize, usize, usize, usize, u64);

/// Groups samples by (target, idle, pipeline, size, rate) in first-seen
/// target order.
pub fn aggregate(samples: &[Sample]) -> Vec<Point> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let t = match order.iter().position(|&t| t == s.target) {
            Some(t) => t,
            None => {
                order.push(&s.target);
                order.len() - 1
            }
        };
        let rate = s.rate.map_or(0, f64::to_bits);
        groups
            .entry((t, s.idle, s.pipeline, s.size, rate))
            .or_default()
            .push(s);
    }
    let mut points: Vec<Point> = groups
        .into_values()
        .map(|group| {
            let first = group[0];
            let col = |f: fn(&Sample) -> f64| group.iter().map(|s| f(s)).collect::<Vec<f64>>();
            let rps = col(|s| s.requests_per_sec);
            let cpu = col(|s| s.server_cpu_us_per_request);
            let p99 = col(|s| s.p99_us);
            let several = group.len() > 1;
            Point {
                target: first.target.clone(),
                idle: first.idle,
                pipeline: first.pipeline,
                size: first.size,
                rate: first.rate,
                runs: group.len(),
                requests_per_sec: median(&rps),
                requests_per_sec_spread: several.then(|| spread(&rps)),
                requests_per_sec_range: range(&rps),
                p50_us: median(&col(|s| s.p50_us)),
                p99_us: median(&p99),
                p99_range: range(&p99),
                server_cpu_us_per_request: median(&cpu),
                server_cpu_spread: several.then(|| spread(&cpu)),
                server_cpu_range: range(&cpu),
                cpu_ratio_to_zero_idle: None,
                rss_idle: median(&col(|s| s.rss_idle as f64)),
                rss_per_idle: median(&col(Sample::rss_per_idle)),
                bench_cpu: median(&col(|s| s.bench_cpu)),
                other_load: col(|s| s.other_load).into_iter().fold(0.0, f64::max),
                errors: group.iter().map(|s| s.errors).sum(),
                missed: group.iter().map(|s| s.missed).sum(),
                behind_runs: group.iter().filter(|s| s.kept_up == Some(false)).count(),
            }
        })
        .collect();
    let same = |a: &Point, b: &Point| {
        a.target == b.target && a.pipeline == b.pipeline && a.size == b.size && a.rate == b.rate
    };
    let bases: Vec<(usize, f64)> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.idle == 0)
        .map(|(i, p)| (i, p.server_cpu_us_per_request))
        .collect();
    for i in 0..points.len() {
        let ratio = bases
            .iter()
            .find(|&&(b, _)| same(&points[b], &points[i]))
            .filter(|&&(_, cpu)| cpu > 0.0)
            .map(|&(_, cpu)| points[i].server_cpu_us_per_request / cpu);
        points[i].cpu_ratio_to_zero_idle = ratio;
    }
    points
}

/// Warnings about the trust one can put in `points`: other load on the
/// machine, and spreads over [`SPREAD_WARNING`].
pub fn warnings(points: &[Point]) -> Vec<String> {
    let mut out = Vec::new();
    let loaded: Vec<&Point> = points
        .iter()
        .filter(|p| p.other_load > OTHER_LOAD_WARNING)
        .collect();
    if !loaded.is_empty() {
        let worst = loaded.iter().map(|p| p.other_load).fold(0.0, f64::max);
        out.push(format!(
            "other load: {} of {} points ran while something besides the server and the bench \
             used CPU (up to {worst:.2} cores, from /proc/stat); their numbers are not clean",
            loaded.len(),
            points.len()
        ));
    }
    for p in points {
        for (what, s) in [
            ("req/s", p.requests_per_sec_spread),
            ("server CPU/req", p.server_cpu_spread),
        ] {
            if let Some(s) = s
                && s > SPREAD_WARNING
            {
                out.push(format!(
                    "spread over {:.0} %: {} ({what}: the {} runs range over {:.0} % of the median, ±{:.0}%)",
                    SPREAD_WARNING * 100.0,
                    label(p),
                    p.runs,
                    s * 100.0,
                    s * 50.0
                ));
            }
        }
        if p.behind_runs > 0 {
            out.push(format!(
                "behind the asked rate: {} did not keep up in {} of {} runs ({} requests \
                 missed); its requests/s is what was achieved, not the rate asked",
                label(p),
                p.behind_runs,
                p.runs,
                p.missed
            ));
        }
    }
    out
}

pub(crate) fn rate_text(rate: Option<f64>) -> String {
    rate.map_or("closed".to_string(), |r| format!("{r}"))
}

/// A point's name in a warning: `epoll at 1000 idle, pipeline 1, 64 B, closed`.
fn label(p: &Point) -> String {
    format!(
        "{} at {} idle, pipeline {}, {} B, rate {}",
        p.target,
        p.idle,
        p.pipeline,
        p.size,
        rate_text(p.rate)
    )
}

fn spread_text(s: Option<f64>) -> String {
    // ± half the range, over the median.
    s.map_or("n/a".to_string(), |s| format!("±{:.0}%", s * 50.0))
}

/// The Markdown report: title, command, warnings, the table.
pub fn markdown(points: &[Point], title: &str, command: &str, notes: &[String]) -> String {
    let mut s = format!("# {title}\n\nCommand (re-runnable):\n\n```sh\n{command}\n```\n\n");
    let warnings = warnings(points);
    for w in &warnings {
        let _ = writeln!(s, "> **Warning:** {w}\n");
    }
    for n in notes {
        let _ = writeln!(s, "> {n}\n");
    }
    for model in [Model::Readiness, Model::Completion, Model::Peer] {
        let group: Vec<&Point> = points
            .iter()
            .filter(|p| Model::of(&p.target) == model)
            .collect();
        if !group.is_empty() {
            let _ = writeln!(s, "**{}**\n", model.heading());
            table(&mut s, &group);
            s += "\n";
        }
    }
    s += "Medians of the repeats; spread is ±half the range over the median (n/a with one run). \
          Server CPU is user + system time from /proc/PID/stat over the measured window. \
          Other load is the CPU (in cores) the machine spent on anything but this server and \
          this bench in the window, from /proc/stat; the most of any run. With an open-loop \
          rate, latency is from each request's due time.\n";
    s
}

/// How a server of the report does its I/O: the table groups by it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Model {
    Readiness,
    Completion,
    /// Another program (`--peer`).
    Peer,
}

impl Model {
    /// From a point's label: an iomux backend (`epoll`, `uring/t2`) or a
    /// peer's label.
    fn of(target: &str) -> Model {
        let backend = target.split('/').next().unwrap_or(target);
        match backend.parse::<iomux::Backend>() {
            Ok(b) if b.is_completion() => Model::Completion,
            Ok(_) => Model::Readiness,
            Err(_) => Model::Peer,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Model::Readiness => {
                "Readiness: the kernel says which sockets are ready, the loop makes the recv and send calls"
            }
            Model::Completion => {
                "Completion: the loop hands the kernel the receives and sends, one io_uring_enter a turn for all"
            }
            Model::Peer => "Peers",
        }
    }
}

fn table(s: &mut String, points: &[&Point]) {
    *s += "| server | idle | pipeline | size | rate | req/s (spread) | p50 | p99 | server CPU µs/req (spread) | vs 0 idle | RSS | RSS/idle conn | bench CPU | other load | errors |\n";
    *s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for p in points {
        let ratio = p
            .cpu_ratio_to_zero_idle
            .map_or("–".to_string(), |r| format!("{r:.2}x"));
        let per_idle = if p.idle == 0 {
            "–".to_string()
        } else {
            format!("{:.0} B", p.rss_per_idle)
        };
        let _ = writeln!(
            *s,
            "| {} | {} | {} | {} | {} | {:.0} ({}) | {:.0} µs | {:.0} µs | {:.2} ({}) | {} | {:.1} MiB | {} | {:.0}% | {:.2} | {} |",
            p.target,
            p.idle,
            p.pipeline,
            p.size,
            rate_text(p.rate),
            p.requests_per_sec,
            spread_text(p.requests_per_sec_spread),
            p.p50_us,
            p.p99_us,
            p.server_cpu_us_per_request,
            spread_text(p.server_cpu_spread),
            ratio,
            p.rss_idle / (1024.0 * 1024.0),
            per_idle,
            p.bench_cpu * 100.0,
            p.other_load,
            p.errors
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(target: &str, idle: usize, repeat: usize, rps: f64, cpu: f64) -> Sample {
        Sample {
            target: target.into(),
            idle,
            pipeline: 1,
            size: 64,
            rate: None,
            repeat,
            requests_per_sec: rps,
            p50_us: 100.0,
            p99_us: 300.0,
            server_cpu_us_per_request: cpu,
            rss_empty: 1_000_000,
            rss_idle: 1_000_000 + 200 * idle as u64,
            bench_cpu: 0.5,
            other_load: 0.0,
            errors: 0,
            missed: 0,
            kept_up: None,
        }
    }

    #[test]
    fn aggregate_takes_medians_and_ratios_to_zero_idle() {
        let samples = vec![
            sample("epoll", 0, 0, 100.0, 4.0),
            sample("poll", 0, 0, 90.0, 5.0),
            sample("epoll", 0, 1, 120.0, 4.4),
            sample("epoll", 0, 2, 110.0, 4.2),
            sample("epoll", 1000, 0, 100.0, 8.4),
        ];
        let points = aggregate(&samples);
        assert_eq!(points.len(), 3);
        let e0 = &points[0];
        assert_eq!((e0.target.as_str(), e0.idle, e0.runs), ("epoll", 0, 3));
        assert_eq!(e0.requests_per_sec, 110.0);
        assert_eq!(e0.requests_per_sec_range, [100.0, 120.0]);
        assert!((e0.server_cpu_us_per_request - 4.2).abs() < 1e-9);
        assert!(e0.requests_per_sec_spread.is_some());
        let e1 = &points[1];
        assert_eq!(e1.idle, 1000);
        assert!((e1.cpu_ratio_to_zero_idle.unwrap() - 2.0).abs() < 1e-9);
        assert!((e1.rss_per_idle - 200.0).abs() < 1e-9);
        assert_eq!(e1.requests_per_sec_spread, None, "one run: no spread");
        assert_eq!(points[2].target, "poll");
    }

    #[test]
    fn open_loop_runs_behind_the_rate_warn_and_are_not_clean() {
        let at = |repeat, missed, kept_up| Sample {
            rate: Some(5000.0),
            missed,
            kept_up: Some(kept_up),
            ..sample("epoll", 0, repeat, 4000.0, 4.0)
        };
        let kept = aggregate(&[at(0, 0, true), at(1, 0, true)]);
        assert!(warnings(&kept).is_empty());
        assert!(!crate::bench::plot::not_clean(&kept[0]));
        let behind = aggregate(&[at(0, 0, true), at(1, 120, false)]);
        assert_eq!((behind[0].behind_runs, behind[0].missed), (1, 120));
        let w = warnings(&behind);
        assert!(
            w.len() == 1 && w[0].contains("did not keep up in 1 of 2 runs (120 requests missed)"),
            "{w:?}"
        );
        assert!(crate::bench::plot::not_clean(&behind[0]));
    }

    #[test]
    fn one_run_spreads_are_na_and_wide_spreads_warn() {
        let points = aggregate(&[sample("epoll", 0, 0, 100.0, 4.0)]);
        let md = markdown(&points, "t", "iomux compare", &[]);
        assert!(
            md.contains("100 (n/a)") && md.contains("4.00 (n/a)"),
            "{md}"
        );
        assert!(warnings(&points).is_empty());
        let noisy = aggregate(&[
            sample("epoll", 0, 0, 100.0, 4.0),
            sample("epoll", 0, 1, 150.0, 4.0),
        ]);
        let w = warnings(&noisy);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("spread over 20 %") && w[0].contains("req/s"),
            "{w:?}"
        );
        let mut busy = sample("epoll", 0, 0, 100.0, 4.0);
        busy.other_load = 0.9;
        let w = warnings(&aggregate(&[busy]));
        assert!(
            w[0].starts_with("other load") && w[0].contains("0.90 cores"),
            "{w:?}"
        );
        let md = markdown(&aggregate(&[sample("epoll", 0, 0, 1.0, 1.0)]), "t", "c", &w);
        assert!(md.contains("> other load"), "{md}");
    }

    #[test]
    fn the_table_groups_servers_by_model() {
        assert_eq!(Model::of("epoll"), Model::Readiness);
        assert_eq!(Model::of("uring-poll/t2"), Model::Readiness);
        assert_eq!(Model::of("uring"), Model::Completion);
        assert_eq!(Model::of("uring/t2"), Model::Completion);
        assert_eq!(Model::of("tokio"), Model::Peer);
        let samples = vec![
            sample("uring", 0, 0, 100.0, 3.0),
            sample("tokio", 0, 0, 100.0, 4.0),
            sample("epoll", 0, 0, 100.0, 4.0),
        ];
        let md = markdown(&aggregate(&samples), "t", "c", &[]);
        let at = |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle}: {md}"));
        assert!(at("**Readiness") < at("| epoll |"));
        assert!(at("| epoll |") < at("**Completion"));
        assert!(at("**Completion") < at("| uring |"));
        assert!(at("| uring |") < at("**Peers"));
        assert!(at("**Peers") < at("| tokio |"));
        let only_readiness = markdown(&aggregate(&samples[2..]), "t", "c", &[]);
        assert!(!only_readiness.contains("**Completion"), "{only_readiness}");
    }

    /// Two servers at 0 and 1000 idle connections, one point run twice.
    pub(crate) fn two_servers_at_two_idle_counts() -> Vec<Sample> {
        vec![
            sample("epoll", 0, 0, 100.0, 4.0),
            sample("epoll", 1000, 0, 100.0, 4.1),
            sample("epoll", 1000, 1, 100.0, 4.5),
            sample("select", 0, 0, 90.0, 5.0),
            sample("select", 1000, 0, 60.0, 9.0),
        ]
    }

    #[test]
    fn markdown_is_written() {
        let points = aggregate(&two_servers_at_two_idle_counts());
        let md = markdown(&points, "t", "iomux compare --idle '0,1000'", &[]);
        assert!(
            md.contains("| select | 1000 | 1 | 64 | closed | 60 (n/a)"),
            "{md}"
        );
        assert!(md.contains("1.80x"), "{md}");
        assert!(md.contains("iomux compare --idle '0,1000'"), "{md}");
    }
}
