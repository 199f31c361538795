//! The `iomux compare` report: aggregation, Markdown table, SVG plots.

use super::stats::{median, spread};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One run of one server at one idle count.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub target: String,
    pub idle: usize,
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

/// The median (and spread) of a target's repeats at one idle count.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub target: String,
    pub idle: usize,
    pub runs: usize,
    pub requests_per_sec: f64,
    pub requests_per_sec_spread: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_request: f64,
    pub server_cpu_spread: f64,
    /// Server CPU per request relative to the same target at 0 idle.
    pub cpu_ratio_to_zero_idle: Option<f64>,
    pub rss_idle: f64,
    pub rss_per_idle: f64,
    pub bench_cpu: f64,
    pub errors: u64,
}

/// Groups samples by (target, idle) in first-seen target order.
pub fn aggregate(samples: &[Sample]) -> Vec<Point> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<(usize, usize), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let t = match order.iter().position(|&t| t == s.target) {
            Some(t) => t,
            None => {
                order.push(&s.target);
                order.len() - 1
            }
        };
        groups.entry((t, s.idle)).or_default().push(s);
    }
    let mut points: Vec<Point> = groups
        .into_iter()
        .map(|((t, idle), group)| {
            let col = |f: fn(&Sample) -> f64| group.iter().map(|s| f(s)).collect::<Vec<f64>>();
            let rps = col(|s| s.requests_per_sec);
            let cpu = col(|s| s.server_cpu_us_per_request);
            Point {
                target: order[t].to_string(),
                idle,
                runs: group.len(),
                requests_per_sec: median(&rps),
                requests_per_sec_spread: spread(&rps),
                p50_us: median(&col(|s| s.p50_us)),
                p99_us: median(&col(|s| s.p99_us)),
                server_cpu_us_per_request: median(&cpu),
                server_cpu_spread: spread(&cpu),
                cpu_ratio_to_zero_idle: None,
                rss_idle: median(&col(|s| s.rss_idle as f64)),
                rss_per_idle: median(&col(Sample::rss_per_idle)),
                bench_cpu: median(&col(|s| s.bench_cpu)),
                errors: group.iter().map(|s| s.errors).sum(),
            }
        })
        .collect();
    let base: BTreeMap<String, f64> = points
        .iter()
        .filter(|p| p.idle == 0)
        .map(|p| (p.target.clone(), p.server_cpu_us_per_request))
        .collect();
    for p in &mut points {
        p.cpu_ratio_to_zero_idle = base
            .get(&p.target)
            .filter(|&&b| b > 0.0)
            .map(|b| p.server_cpu_us_per_request / b);
    }
    points
}

/// The Markdown table of the report.
pub fn markdown(points: &[Point], title: &str, command: &str) -> String {
    let mut s = format!("# {title}\n\nCommand: `{command}`\n\n");
    s += "| server | idle | req/s (spread) | p50 | p99 | server CPU µs/req (spread) | vs 0 idle | RSS | RSS/idle conn | bench CPU | errors |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
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
            s,
            "| {} | {} | {:.0} (±{:.0}%) | {:.0} µs | {:.0} µs | {:.2} (±{:.0}%) | {} | {:.1} MiB | {} | {:.0}% | {} |",
            p.target,
            p.idle,
            p.requests_per_sec,
            p.requests_per_sec_spread * 50.0,
            p.p50_us,
            p.p99_us,
            p.server_cpu_us_per_request,
            p.server_cpu_spread * 50.0,
            ratio,
            p.rss_idle / (1024.0 * 1024.0),
            per_idle,
            p.bench_cpu * 100.0,
            p.errors
        );
    }
    s += "\nMedians of the repeats; spread is ±half the range over the median. \
          Server CPU is user + system time from /proc/PID/stat over the measured window.\n";
    s
}

/// Draws one line chart: `metric` against idle connections, a line per target.
pub fn plot(
    points: &[Point],
    path: &Path,
    title: &str,
    y_label: &str,
    metric: fn(&Point) -> f64,
) -> Result<(), String> {
    let mut targets: Vec<&str> = Vec::new();
    for p in points {
        if !targets.contains(&p.target.as_str()) {
            targets.push(&p.target);
        }
    }
    let x_max = points.iter().map(|p| p.idle).max().unwrap_or(0).max(1) as f64;
    let y_max = points
        .iter()
        .map(metric)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.02, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("idle connections")
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, target) in targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.target == *target)
            .map(|p| (p.idle as f64, metric(p)))
            .collect();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*target)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                series
                    .into_iter()
                    .map(|(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
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
            repeat,
            requests_per_sec: rps,
            p50_us: 100.0,
            p99_us: 300.0,
            server_cpu_us_per_request: cpu,
            rss_empty: 1_000_000,
            rss_idle: 1_000_000 + 200 * idle as u64,
            bench_cpu: 0.5,
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
        assert!((e0.server_cpu_us_per_request - 4.2).abs() < 1e-9);
        let e1 = &points[1];
        assert_eq!(e1.idle, 1000);
        assert!((e1.cpu_ratio_to_zero_idle.unwrap() - 2.0).abs() < 1e-9);
        assert!((e1.rss_per_idle - 200.0).abs() < 1e-9);
        assert_eq!(points[2].target, "poll");
    }

    #[test]
    fn markdown_and_plot_are_written() {
        let samples = vec![
            sample("epoll", 0, 0, 100.0, 4.0),
            sample("epoll", 1000, 0, 100.0, 4.1),
            sample("select", 0, 0, 90.0, 5.0),
            sample("select", 1000, 0, 60.0, 9.0),
        ];
        let points = aggregate(&samples);
        let md = markdown(&points, "t", "iomux compare");
        assert!(md.contains("| select | 1000 | 60 (±0%)"), "{md}");
        assert!(md.contains("1.80x"), "{md}");
        let dir = std::env::temp_dir().join(format!("iomux-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cpu.svg");
        plot(&points, &path, "CPU", "µs", |p| {
            p.server_cpu_us_per_request
        })
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("select") && svg.contains("<polyline"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
