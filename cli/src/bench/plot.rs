//! The `iomux compare` plots: one SVG chart per metric against the matrix
//! dimension that varies, a series per server (and per other varying
//! dimension), error bars for the spread of the repeats.

use super::report::{Point, rate_text};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

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
    use crate::bench::report::aggregate;
    use crate::bench::report::tests::{sample, two_servers_at_two_idle_counts};

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
    fn plot_is_written() {
        let points = aggregate(&two_servers_at_two_idle_counts());
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
