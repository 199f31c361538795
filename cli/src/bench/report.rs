//! The `iomux compare` report: aggregation, Markdown table, SVG plots.

use super::stats::{median, spread};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

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
    }
    out
}

fn rate_text(rate: Option<f64>) -> String {
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

/// The matrix dimension a plot puts on its x axis.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum XAxis {
    Idle,
    Pipeline,
    Size,
    Rate,
}

impl XAxis {
    /// The first dimension with more than one value (idle by default).
    pub fn choose(points: &[Point]) -> XAxis {
        [XAxis::Idle, XAxis::Rate, XAxis::Pipeline, XAxis::Size]
            .into_iter()
            .find(|&x| {
                let mut values: Vec<i64> = points.iter().map(|p| x.value(p)).collect();
                values.sort_unstable();
                values.dedup();
                values.len() > 1
            })
            .unwrap_or(XAxis::Idle)
    }

    pub fn value(self, p: &Point) -> i64 {
        match self {
            XAxis::Idle => p.idle as i64,
            XAxis::Pipeline => p.pipeline as i64,
            XAxis::Size => p.size as i64,
            XAxis::Rate => p.rate.map_or(0, |r| r.round() as i64),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            XAxis::Idle => "idle connections",
            XAxis::Pipeline => "pipeline depth",
            XAxis::Size => "request bytes",
            XAxis::Rate => "asked rate (requests/s, 0 = closed loop)",
        }
    }
}

/// A series' name: the target, plus the dimensions (other than x) that
/// vary between points.
fn series_label(p: &Point, x: XAxis, points: &[Point]) -> String {
    let varies = |f: &dyn Fn(&Point) -> String| {
        let first = f(&points[0]);
        points.iter().any(|q| f(q) != first)
    };
    let mut label = p.target.clone();
    if x != XAxis::Idle && varies(&|q| q.idle.to_string()) {
        let _ = write!(label, " {} idle", p.idle);
    }
    if x != XAxis::Pipeline && varies(&|q| q.pipeline.to_string()) {
        let _ = write!(label, " P{}", p.pipeline);
    }
    if x != XAxis::Size && varies(&|q| q.size.to_string()) {
        let _ = write!(label, " {} B", p.size);
    }
    if x != XAxis::Rate && varies(&|q| rate_text(q.rate)) {
        let _ = write!(label, " rate {}", rate_text(p.rate));
    }
    label
}

/// The Okabe–Ito colour-blind-safe palette, without its yellow (too pale
/// on white).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// A tick label: no trailing `.0`, a few decimals only for small values.
pub fn tick_label(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// (median, min, max) of a point's metric.
pub type Metric = fn(&Point) -> [f64; 3];

/// Draws one chart: `metric` against the matrix dimension that varies, a
/// line per series, error bars for the range of the repeats, the legend
/// to the right of the plot.
pub fn plot(
    points: &[Point],
    path: &Path,
    title: &str,
    y_label: &str,
    metric: Metric,
) -> Result<(), String> {
    let x_axis = XAxis::choose(points);
    let mut series: Vec<(String, Vec<&Point>)> = Vec::new();
    for p in points {
        let label = series_label(p, x_axis, points);
        match series.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(p),
            None => series.push((label, vec![p])),
        }
    }
    let xs: Vec<i64> = points.iter().map(|p| x_axis.value(p)).collect();
    let (x_min, x_max) = (
        xs.iter().copied().min().unwrap_or(0),
        xs.iter().copied().max().unwrap_or(0),
    );
    let pad = if x_min == x_max {
        (x_max / 10).max(1)
    } else {
        ((x_max - x_min) / 25).max(1)
    };
    let y_max = points
        .iter()
        .flat_map(metric)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let root = SVGBackend::new(path, (1080, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(740);
    let mut chart = ChartBuilder::on(&left)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d((x_min - pad)..(x_max + pad), 0.0..y_max)
        .map_err(|e| err(&e))?;
    let single = x_min == x_max;
    let x_label = |x: &i64| {
        // One value: only its own tick; never a tick left of 0.
        if (single && *x != x_min) || *x < 0 {
            String::new()
        } else {
            x.to_string()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(if single { 3 } else { 10 })
        .x_label_formatter(&x_label)
        .y_label_formatter(&|y| tick_label(*y))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 17))
        .x_desc(x_axis.description())
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (_, members)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let line: Vec<(i64, f64)> = members
            .iter()
            .map(|p| (x_axis.value(p), metric(p)[0]))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(members.iter().filter_map(|p| {
                let [mid, lo, hi] = metric(p);
                (hi > lo).then(|| {
                    ErrorBar::new_vertical(x_axis.value(p), lo, mid, hi, color.stroke_width(1), 10)
                })
            }))
            .map_err(|e| err(&e))?;
        let marker = i / PALETTE.len() % 2;
        chart
            .draw_series(line.into_iter().map(|(x, y)| -> DynElement<'_, _, _> {
                if marker == 0 {
                    Circle::new((x, y), 4, color.filled()).into_dyn()
                } else {
                    TriangleMarker::new((x, y), 5, color.filled()).into_dyn()
                }
            }))
            .map_err(|e| err(&e))?;
    }
    // The legend, beside the plot: never over a data point.
    for (i, (label, _)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = 40 + 24 * i as i32;
        right
            .draw(&PathElement::new(
                vec![(8, y), (36, y)],
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if (i / PALETTE.len()).is_multiple_of(2) {
            right.draw(&Circle::new((22, y), 4, color.filled()))
        } else {
            right.draw(&TriangleMarker::new((22, y), 5, color.filled()))
        }
        .map_err(|e| err(&e))?;
        right
            .draw(&Text::new(
                label.clone(),
                (44, y - 7),
                ("sans-serif", 17).into_font().color(&BLACK),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: &str, idle: usize, repeat: usize, rps: f64, cpu: f64) -> Sample {
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
    fn matrix_dimensions_are_separate_points() {
        let mut a = sample("epoll", 0, 0, 100.0, 4.0);
        let mut b = a.clone();
        b.pipeline = 8;
        let mut c = a.clone();
        c.rate = Some(5000.0);
        a.size = 64;
        let points = aggregate(&[a, b, c]);
        assert_eq!(points.len(), 3);
        assert_eq!(XAxis::choose(&points), XAxis::Rate);
        assert_eq!(series_label(&points[0], XAxis::Rate, &points), "epoll P1");
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
    fn tick_labels_have_no_trailing_zero() {
        assert_eq!(tick_label(120000.0), "120000");
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(1.25), "1.25");
        assert_eq!(tick_label(150.4), "150");
    }

    /// The (x, text) of every text element of an SVG.
    fn texts(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let x = t.split("x=\"").nth(1)?.split('"').next()?.parse().ok()?;
                let body = t.split_once('>')?.1.split("</text>").next()?;
                Some((x, body.trim().to_string()))
            })
            .collect()
    }

    fn svg_for(points: &[Point], name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("iomux-plot-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cpu.svg");
        plot(points, &path, "CPU", "µs", |p| {
            let [lo, hi] = p.server_cpu_range;
            [p.server_cpu_us_per_request, lo, hi]
        })
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        svg
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

    #[test]
    fn markdown_and_plot_are_written() {
        let samples = vec![
            sample("epoll", 0, 0, 100.0, 4.0),
            sample("epoll", 1000, 0, 100.0, 4.1),
            sample("epoll", 1000, 1, 100.0, 4.5),
            sample("select", 0, 0, 90.0, 5.0),
            sample("select", 1000, 0, 60.0, 9.0),
        ];
        let points = aggregate(&samples);
        let md = markdown(&points, "t", "iomux compare --idle '0,1000'", &[]);
        assert!(
            md.contains("| select | 1000 | 1 | 64 | closed | 60 (n/a)"),
            "{md}"
        );
        assert!(md.contains("1.80x"), "{md}");
        assert!(md.contains("iomux compare --idle '0,1000'"), "{md}");
        let svg = svg_for(&points, "many");
        assert!(svg.starts_with("<svg") && svg.contains("select") && svg.contains("<polyline"));
        let texts = texts(&svg);
        // Integer ticks, no `.0`.
        assert!(texts.iter().any(|(_, t)| t == "1000"), "{texts:?}");
        assert!(!texts.iter().any(|(_, t)| t.ends_with(".0")), "{texts:?}");
        // Okabe-Ito blue and vermillion, not Palette99's yellow.
        assert!(svg.contains("#0072B2") && svg.contains("#D55E00"), "{svg}");
        // The legend sits right of the plot area (x > 740).
        let legend = texts.iter().find(|(_, t)| t == "select").expect("legend");
        assert!(legend.0 > 740.0, "{legend:?}");
    }

    #[test]
    fn a_single_point_gets_one_clean_tick() {
        let points = aggregate(&[sample("epoll", 0, 0, 100.0, 4.0)]);
        let svg = svg_for(&points, "single");
        let texts = texts(&svg);
        assert!(texts.iter().any(|(_, t)| t == "0"), "{texts:?}");
        let bad = |t: &str| t == "-1" || t.ends_with(".0");
        assert!(!texts.iter().any(|(_, t)| bad(t)), "{texts:?}");
    }
}
