//! The `iomux compare` plots: one chart per metric against the matrix
//! dimension that varies, a series per server (and per other varying
//! dimension), written twice: an SVG and a PNG beside it.
//!
//! Each chart says what it measured: a caption under the title gives the
//! workload (connections, idle connections, request size, pipeline depth,
//! rate, event loops per server, bench threads, measured time and
//! warm-up) and what the marks are: a marker is the median of a point's
//! repeats, its bar the minimum to the maximum of those repeats, and a
//! hollow marker a point whose numbers are not clean (see [`not_clean`]).
//!
//! **The x axis is categorical.** The matrix measures a handful of chosen
//! values (0, 1,000, 5,000, 10,000 idle connections; sizes 64 and 16,384),
//! so the axis spaces the measured values evenly, ticks only those, and
//! nothing is drawn between them but a thin, pale line that joins a
//! series' markers so the eye can follow it: a reader sees the order of
//! the measured values, not a slope between them that suggests values
//! never measured. (A linear axis would squeeze 0 and 1,000 together
//! beside 10,000, and a log axis cannot show 0 or a closed loop.) At one
//! x the series are dodged, a few pixels apart, so their error bars never
//! cover each other.
//!
//! The legend sits under the chart in as many columns as fit, never over
//! a data point. Numbers have thousands separators (350,000).
//!
//! Text is drawn in DejaVu Sans, bundled with the binary
//! (`cli/assets/fonts/`, its licence beside it) and registered with
//! plotters' `ab_glyph` renderer: the PNG renders the same on a machine
//! without any font installed, and the SVG names the same family (with
//! `sans-serif` as fallback) and is laid out with the same metrics.

use super::report::{OTHER_LOAD_WARNING, Point, SPREAD_WARNING};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The font family of every text of a plot; the SVG's `font-family`.
pub const FONT: &str = "DejaVu Sans, sans-serif";

/// DejaVu Sans 2.37 (Bitstream Vera licence, DejaVu changes public
/// domain: `cli/assets/fonts/DejaVuSans-LICENSE`).
static FONT_DATA: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font under [`FONT`] (once per process).
fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_DATA).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the bundled font (DejaVu Sans) does not parse".into())
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
            .find(|&x| distinct(points, |p| x.value(p)).len() > 1)
            .unwrap_or(XAxis::Idle)
    }

    /// The point's value on this axis (a closed loop's rate is 0).
    pub fn value(self, p: &Point) -> i64 {
        match self {
            XAxis::Idle => p.idle as i64,
            XAxis::Pipeline => p.pipeline as i64,
            XAxis::Size => p.size as i64,
            XAxis::Rate => p.rate.map_or(0, |r| r.round() as i64),
        }
    }

    /// A tick's text for one of [`XAxis::value`]'s values.
    fn tick(self, v: i64) -> String {
        match self {
            XAxis::Rate if v == 0 => "closed".into(),
            _ => thousands(v),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            XAxis::Idle => "idle connections",
            XAxis::Pipeline => "pipeline depth",
            XAxis::Size => "request bytes",
            XAxis::Rate => "asked rate (requests/s; closed = closed loop)",
        }
    }
}

/// The sorted distinct values of `f` over `points`.
fn distinct(points: &[Point], f: impl Fn(&Point) -> i64) -> Vec<i64> {
    let mut values: Vec<i64> = points.iter().map(f).collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// `v` with a comma every three digits: `350,000`, `-1,024`.
pub fn thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

/// A rate as a label shows it: `closed` or `20,000/s`.
fn rate_label(rate: Option<f64>) -> String {
    rate.map_or("closed".into(), |r| format!("{}/s", number(r)))
}

/// A number as a tick or a caption shows it: thousands separators, no
/// trailing `.0`, a few decimals only for small values (`350,000`, `2`,
/// `0.5`, `1.25`).
fn number(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        thousands(v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The longest series label the legend shows; longer ones end in `…`.
const LABEL_CHARS: usize = 32;

/// A series' name: the target, plus the dimensions (other than x) that
/// vary between points, shortened to [`LABEL_CHARS`].
fn series_label(p: &Point, x: XAxis, points: &[Point]) -> String {
    let varies = |f: &dyn Fn(&Point) -> String| {
        let first = f(&points[0]);
        points.iter().any(|q| f(q) != first)
    };
    let mut parts = vec![p.target.clone()];
    if x != XAxis::Idle && varies(&|q| q.idle.to_string()) {
        parts.push(format!("{} idle", thousands(p.idle as i64)));
    }
    if x != XAxis::Pipeline && varies(&|q| q.pipeline.to_string()) {
        parts.push(format!("P{}", p.pipeline));
    }
    if x != XAxis::Size && varies(&|q| q.size.to_string()) {
        parts.push(format!("{} B", thousands(p.size as i64)));
    }
    if x != XAxis::Rate && varies(&|q| rate_label(q.rate)) {
        parts.push(rate_label(p.rate));
    }
    let label = parts.join(" ");
    if label.chars().count() > LABEL_CHARS {
        let cut: String = label.chars().take(LABEL_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        label
    }
}

/// Whether a point's numbers are not clean, as the report warns of them:
/// something besides the server and the bench used more than
/// [`OTHER_LOAD_WARNING`] cores in a run, its requests/s or server CPU
/// repeats range over more than [`SPREAD_WARNING`] of their median, it
/// had errors, or an open-loop run fell behind its asked rate. Its marker
/// is drawn hollow.
pub fn not_clean(p: &Point) -> bool {
    p.other_load > OTHER_LOAD_WARNING
        || p.errors > 0
        || p.behind_runs > 0
        || [p.requests_per_sec_spread, p.server_cpu_spread]
            .into_iter()
            .flatten()
            .any(|s| s > SPREAD_WARNING)
}

/// What the points do not hold about the load: the run's own flags.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Active connections.
    pub conns: u64,
    /// Load-generator threads.
    pub bench_threads: u64,
    /// Event loops of each iomux server (`serve --threads`).
    pub server_threads: Vec<u64>,
    /// Time measured per run, and its warm-up.
    pub duration: Duration,
    pub warmup: Duration,
}

fn seconds(d: Duration) -> String {
    format!("{} s", number(d.as_secs_f64()))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(n as i64),
        if n == 1 { one } else { many }
    )
}

/// A list of values: `64 B` or `64, 1,024 B`.
fn list(values: &[i64], unit: &str) -> String {
    let v: Vec<String> = values.iter().map(|&v| thousands(v)).collect();
    format!("{}{unit}", v.join(", "))
}

/// The caption's first line, in parts: the workload.
fn workload_parts(points: &[Point], w: &Workload, x: XAxis) -> Vec<String> {
    let mut parts = Vec::new();
    let idle = distinct(points, |p| p.idle as i64);
    let conns = plural(w.conns, "connection", "connections");
    parts.push(match (x, idle.as_slice()) {
        (XAxis::Idle, _) => format!("{conns} + idle ones (x axis)"),
        (_, [0]) => format!("{conns}, none idle"),
        (_, [n]) => format!("{conns} + {} idle", thousands(*n)),
        _ => format!("{conns} + {} idle", list(&idle, "")),
    });
    parts.push(format!(
        "{} requests",
        list(&distinct(points, |p| p.size as i64), " B")
    ));
    parts.push(format!(
        "pipeline {}",
        list(&distinct(points, |p| p.pipeline as i64), "")
    ));
    let rates = distinct(points, |p| XAxis::Rate.value(p));
    parts.push(match rates.as_slice() {
        [0] => "closed loop".into(),
        [r] => format!("open loop at {}/s", thousands(*r)),
        _ => {
            let r: Vec<String> = points_rates(points);
            format!("rates {}", r.join(", "))
        }
    });
    let loops: Vec<i64> = w.server_threads.iter().map(|&t| t as i64).collect();
    parts.push(match loops.as_slice() {
        [n] => format!(
            "{} per iomux server",
            plural(*n as u64, "event loop", "event loops")
        ),
        _ => format!("{} event loops per iomux server (/tN)", list(&loops, "")),
    });
    parts.push(format!(
        "bench: {}",
        plural(w.bench_threads, "thread", "threads")
    ));
    parts.push(format!(
        "{} measured after {} warm-up",
        seconds(w.duration),
        seconds(w.warmup)
    ));
    parts
}

/// The distinct rates of `points` as labels (`closed`, `20,000/s`).
fn points_rates(points: &[Point]) -> Vec<String> {
    distinct(points, |p| XAxis::Rate.value(p))
        .into_iter()
        .map(|r| rate_label((r != 0).then_some(r as f64)))
        .collect()
}

/// The caption's second line: what a marker and a bar are.
fn marks_text(points: &[Point]) -> String {
    let lo = points.iter().map(|p| p.runs).min().unwrap_or(0);
    let hi = points.iter().map(|p| p.runs).max().unwrap_or(0);
    if hi <= 1 {
        "markers: one run per point (no error bars)".into()
    } else if lo == hi {
        format!("markers: median of {hi} repeats; bars: min–max of the {hi} repeats")
    } else {
        format!(
            "markers: median of {lo}–{hi} repeats; bars: min–max of the repeats (none with one)"
        )
    }
}

/// The text explaining hollow markers (drawn only when a point is not clean).
pub fn not_clean_text() -> String {
    format!(
        "not clean: other load over {} cores, repeats over {:.0} % apart, errors, or behind the rate",
        number(OTHER_LOAD_WARNING),
        SPREAD_WARNING * 100.0
    )
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

/// (median, min, max) of a point's metric.
pub type Metric = fn(&Point) -> [f64; 3];

/// The image's width; its height grows with the caption and legend.
const WIDTH: u32 = 1080;
/// The chart's height (axes and their labels included).
const CHART_HEIGHT: u32 = 440;
const TITLE_SIZE: f64 = 22.0;
const CAPTION_SIZE: f64 = 15.0;
const CAPTION_LINE: i32 = 20;
const TICK_SIZE: f64 = 16.0;
const AXIS_SIZE: f64 = 17.0;
const LEGEND_SIZE: f64 = 16.0;
const LEGEND_ROW: i32 = 24;
const MARGIN: i32 = 16;
/// How far apart (pixels) the series' error bars at one x are, at most.
const DODGE: f64 = 14.0;
const CAPTION_COLOR: RGBColor = RGBColor(60, 60, 60);

/// The width in pixels of `text` in [`FONT`] at `size`.
fn text_width(text: &str, size: f64) -> i32 {
    FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Normal)
        .box_size(text)
        .map_or(
            (text.chars().count() as f64 * size * 0.6) as i32,
            |(w, _)| w as i32,
        )
}

/// `parts` joined with ` · `, in lines no wider than `width`.
fn wrap(parts: &[String], size: f64, width: i32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line} · {part}"), size) <= width => {
                *line = format!("{line} · {part}");
            }
            _ => lines.push(part.clone()),
        }
    }
    lines
}

/// The categorical x axis: `n` measured values at 0, 1, … `n - 1`, half
/// a category of room on either side, a tick at each value and nowhere
/// else.
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, (from, to): (i32, i32)) -> i32 {
        let share = (value + 0.5) / self.0.max(1) as f64;
        from + (f64::from(to - from) * share).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.0).map(|i| i as f64).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.0 as f64 - 0.5
    }
}

/// One series: its label, and its points in x order.
struct Series<'a> {
    label: String,
    points: Vec<&'a Point>,
}

/// Everything one chart draws, laid out once for both images.
struct Chart<'a> {
    title: &'a str,
    y_label: &'a str,
    metric: Metric,
    x_axis: XAxis,
    /// The measured x values, in order: category `i` is drawn at `i`.
    categories: Vec<i64>,
    series: Vec<Series<'a>>,
    y_max: f64,
    caption: Vec<String>,
    /// Whether any point is not clean (the legend then explains hollow
    /// markers).
    any_not_clean: bool,
    chart_top: i32,
    legend_top: i32,
    legend_columns: usize,
    legend_column_width: i32,
    height: u32,
}

impl<'a> Chart<'a> {
    fn new(
        points: &'a [Point],
        title: &'a str,
        y_label: &'a str,
        metric: Metric,
        workload: &Workload,
    ) -> Chart<'a> {
        let x_axis = XAxis::choose(points);
        let categories = distinct(points, |p| x_axis.value(p));
        let mut series: Vec<Series<'a>> = Vec::new();
        for p in points {
            let label = series_label(p, x_axis, points);
            match series.iter_mut().find(|s| s.label == label) {
                Some(s) => s.points.push(p),
                None => series.push(Series {
                    label,
                    points: vec![p],
                }),
            }
        }
        for s in &mut series {
            s.points.sort_by_key(|p| x_axis.value(p));
        }
        let y_max = points
            .iter()
            .flat_map(metric)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let width = WIDTH as i32 - 2 * MARGIN;
        let mut caption = wrap(
            &workload_parts(points, workload, x_axis),
            CAPTION_SIZE,
            width,
        );
        caption.push(marks_text(points));
        let chart_top = 14 + TITLE_SIZE as i32 + 8 + CAPTION_LINE * caption.len() as i32;
        let legend_column_width = series
            .iter()
            .map(|s| text_width(&s.label, LEGEND_SIZE))
            .max()
            .unwrap_or(0)
            + 56;
        let legend_columns = ((width / legend_column_width).max(1) as usize).min(series.len());
        let any_not_clean = points.iter().any(not_clean);
        let legend_rows = series.len().div_ceil(legend_columns.max(1)) + usize::from(any_not_clean);
        let legend_top = chart_top + CHART_HEIGHT as i32 + 4;
        let height = (legend_top + LEGEND_ROW * legend_rows as i32 + 8) as u32;
        Chart {
            title,
            y_label,
            metric,
            x_axis,
            categories,
            series,
            y_max,
            caption,
            any_not_clean,
            chart_top,
            legend_top,
            legend_columns,
            legend_column_width,
            height,
        }
    }

    fn category(&self, p: &Point) -> f64 {
        let v = self.x_axis.value(p);
        self.categories.iter().position(|&c| c == v).unwrap_or(0) as f64
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let centred = |size: f64, color: RGBColor| {
            (FONT, size)
                .into_font()
                .color(&color)
                .pos(Pos::new(HPos::Center, VPos::Top))
        };
        let middle = WIDTH as i32 / 2;
        root.draw(&Text::new(
            self.title.to_string(),
            (middle, 14),
            centred(TITLE_SIZE, BLACK),
        ))?;
        for (i, line) in self.caption.iter().enumerate() {
            let y = 14 + TITLE_SIZE as i32 + 6 + CAPTION_LINE * i as i32;
            root.draw(&Text::new(
                line.clone(),
                (middle, y),
                centred(CAPTION_SIZE, CAPTION_COLOR),
            ))?;
        }
        let area = root
            .clone()
            .shrink((0, self.chart_top), (WIDTH, CHART_HEIGHT));
        let k = self.categories.len();
        let mut chart = ChartBuilder::on(&area)
            .margin_left(MARGIN as u32)
            .margin_right(28)
            .margin_top(6)
            .x_label_area_size(48)
            .y_label_area_size(96)
            .build_cartesian_2d(Categories(k), 0.0..self.y_max)?;
        let x_tick = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            self.categories
                .get(i as usize)
                .map_or(String::new(), |&v| self.x_axis.tick(v))
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .x_label_formatter(&x_tick)
            .y_label_formatter(&|y| number(*y))
            .label_style((FONT, TICK_SIZE))
            .axis_desc_style((FONT, AXIS_SIZE))
            .x_desc(self.x_axis.description())
            .y_desc(self.y_label)
            .draw()?;
        // Pixels: dodge the series apart at one x, never past 60 % of a
        // category's width.
        let x_pixels = chart.plotting_area().get_pixel_range().0;
        let category_width = (x_pixels.end - x_pixels.start) as f64 / k.max(1) as f64;
        let n = self.series.len();
        let step = DODGE.min(0.6 * category_width / n.max(1) as f64);
        let at = |i: usize, p: &Point, y: f64| {
            let (x, y) = chart.backend_coord(&(self.category(p), y));
            let offset = (i as f64 - (n as f64 - 1.0) / 2.0) * step;
            (x + offset.round() as i32, y)
        };
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            // The thin, pale join: only to follow a series.
            let join: Vec<(i32, i32)> = s
                .points
                .iter()
                .map(|p| at(i, p, (self.metric)(p)[0]))
                .collect();
            root.draw(&PathElement::new(join, color.mix(0.45).stroke_width(1)))?;
            for p in &s.points {
                let [_, lo, hi] = (self.metric)(p);
                if hi > lo {
                    let (x, top) = at(i, p, hi);
                    let (_, bottom) = at(i, p, lo);
                    let bar = color.stroke_width(1);
                    root.draw(&PathElement::new(vec![(x, top), (x, bottom)], bar))?;
                    for y in [top, bottom] {
                        root.draw(&PathElement::new(vec![(x - 4, y), (x + 4, y)], bar))?;
                    }
                }
            }
            for p in &s.points {
                let xy = at(i, p, (self.metric)(p)[0]);
                marker(root, xy, i / PALETTE.len(), color, !not_clean(p))?;
            }
        }
        self.legend(root)
    }

    /// Under the chart, in columns: a short line and the marker, the
    /// label; then what a hollow marker means, when one is drawn.
    fn legend<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let style = (FONT, LEGEND_SIZE)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let columns = self.legend_columns.max(1);
        let used = self.legend_column_width * columns.min(self.series.len()) as i32;
        let left = ((WIDTH as i32 - used) / 2).max(MARGIN);
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = left + self.legend_column_width * (i % columns) as i32;
            let y = self.legend_top + LEGEND_ROW * (i / columns) as i32 + LEGEND_ROW / 2;
            root.draw(&PathElement::new(
                vec![(x, y), (x + 32, y)],
                color.mix(0.45).stroke_width(1),
            ))?;
            marker(root, (x + 16, y), i / PALETTE.len(), color, true)?;
            root.draw(&Text::new(s.label.clone(), (x + 42, y), style.clone()))?;
        }
        if self.any_not_clean {
            let rows = self.series.len().div_ceil(columns) as i32;
            let y = self.legend_top + LEGEND_ROW * rows + LEGEND_ROW / 2;
            marker(root, (left + 16, y), 0, BLACK, false)?;
            root.draw(&Text::new(not_clean_text(), (left + 42, y), style))?;
        }
        Ok(())
    }
}

/// A marker at pixel `(x, y)`: a circle, a triangle or a square (the
/// shape changes each time the palette's colours come round again),
/// filled, or hollow for a point that is not clean.
fn marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    shape: usize,
    color: RGBColor,
    clean: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let fill = if clean {
        color.filled()
    } else {
        WHITE.filled()
    };
    let outline = color.stroke_width(2);
    match shape % 3 {
        0 => {
            root.draw(&Circle::new((x, y), 5, fill))?;
            if !clean {
                root.draw(&Circle::new((x, y), 5, outline))?;
            }
        }
        1 => {
            let corners = vec![(x, y - 6), (x + 6, y + 5), (x - 6, y + 5)];
            root.draw(&Polygon::new(corners.clone(), fill))?;
            if !clean {
                let mut closed = corners.clone();
                closed.push(corners[0]);
                root.draw(&PathElement::new(closed, outline))?;
            }
        }
        _ => {
            root.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], fill))?;
            if !clean {
                root.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], outline))?;
            }
        }
    }
    Ok(())
}

/// Draws one chart of `metric` against the matrix dimension that varies
/// into `path` (an SVG) and the same chart into a PNG beside it (`path`
/// with the extension `png`). `title` heads it; the caption under it
/// comes from `points` and `workload`.
pub fn plot(
    points: &[Point],
    path: &Path,
    title: &str,
    y_label: &str,
    metric: Metric,
    workload: &Workload,
) -> Result<(), String> {
    if points.is_empty() {
        return Err(format!("{}: no point to plot", path.display()));
    }
    register_font()?;
    let chart = Chart::new(points, title, y_label, metric, workload);
    let size = (WIDTH, chart.height);
    let svg = SVGBackend::new(path, size).into_drawing_area();
    chart
        .draw(&svg)
        .and_then(|()| svg.present())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let png_path = path.with_extension("png");
    let png = BitMapBackend::new(&png_path, size).into_drawing_area();
    chart
        .draw(&png)
        .and_then(|()| png.present())
        .map_err(|e| format!("{}: {e}", png_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::{sample, two_servers_at_two_idle_counts};
    use crate::bench::report::{Sample, aggregate};
    use std::path::PathBuf;

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
        assert_eq!(XAxis::Rate.tick(0), "closed");
        assert_eq!(XAxis::Rate.tick(5000), "5,000");
    }

    #[test]
    fn numbers_have_thousands_separators_and_no_trailing_zero() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(350_000), "350,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(number(120000.0), "120,000");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.25), "1.25");
        assert_eq!(number(150.4), "150");
    }

    #[test]
    fn long_series_labels_are_shortened() {
        let mut a = sample("a-peer-with-a-rather-long-label-indeed", 0, 0, 1.0, 1.0);
        a.rate = Some(20_000.0);
        let mut b = a.clone();
        b.rate = None;
        b.idle = 1000;
        let points = aggregate(&[a, b]);
        let label = series_label(&points[0], XAxis::Idle, &points);
        assert_eq!(label.chars().count(), LABEL_CHARS, "{label}");
        assert!(label.ends_with('…'), "{label}");
        let mut c = sample("epoll", 0, 0, 1.0, 1.0);
        c.rate = Some(20_000.0);
        let d = sample("epoll", 1000, 0, 1.0, 1.0);
        let points = aggregate(&[c, d]);
        assert_eq!(
            series_label(&points[0], XAxis::Idle, &points),
            "epoll 20,000/s"
        );
    }

    /// An attribute of an SVG element's text (`<circle cx="3" …`).
    fn attr(element: &str, name: &str) -> Option<f64> {
        element
            .split(&format!(" {name}=\""))
            .nth(1)?
            .split('"')
            .next()?
            .parse()
            .ok()
    }

    /// The (x, y, text) of every text element of an SVG.
    fn texts(svg: &str) -> Vec<(f64, f64, String)> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = t.split_once('>')?.1.split("</text>").next()?;
                Some((attr(t, "x")?, attr(t, "y")?, body.trim().to_string()))
            })
            .collect()
    }

    fn workload() -> Workload {
        Workload {
            conns: 100,
            bench_threads: 1,
            server_threads: vec![1],
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
        }
    }

    /// Where a test's plots go: a fresh directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("iomux-plot-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn throughput(p: &Point) -> [f64; 3] {
        let [lo, hi] = p.requests_per_sec_range;
        [p.requests_per_sec, lo, hi]
    }

    fn cpu(p: &Point) -> [f64; 3] {
        let [lo, hi] = p.server_cpu_range;
        [p.server_cpu_us_per_request, lo, hi]
    }

    /// Renders `points`; the SVG's text, and the PNG's (width, height, RGB
    /// pixels).
    fn render(points: &[Point], name: &str, metric: Metric) -> (String, (u32, u32, Vec<u8>)) {
        let dir = Dir::new(name);
        let path = dir.0.join("chart.svg");
        plot(points, &path, "a title", "µs", metric, &workload()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let png = std::fs::read(dir.0.join("chart.png")).unwrap();
        (svg, decode_png(&png))
    }

    /// Checks the PNG's signature and header, then decodes it.
    fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert!(bytes.len() > 1000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        let (width, height) = (be(16), be(20));
        let mut reader = png::Decoder::new(bytes).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((frame.width, frame.height), (width, height));
        assert_eq!(frame.color_type, png::ColorType::Rgb);
        pixels.truncate(frame.buffer_size());
        (width, height, pixels)
    }

    /// Samples of two servers at 0 and 1,000 idle connections, about
    /// 350,000 requests/s, three repeats each.
    fn fast_samples() -> Vec<Sample> {
        let mut samples = Vec::new();
        for (target, rps) in [("epoll", 350_000.0), ("uring", 340_000.0)] {
            for idle in [0, 1000] {
                for repeat in 0..3 {
                    let rps = rps + 5_000.0 * repeat as f64;
                    samples.push(sample(target, idle, repeat, rps, 2.0));
                }
            }
        }
        samples
    }

    #[test]
    fn both_images_are_written_with_caption_separators_and_legend() {
        let points = aggregate(&fast_samples());
        let (svg, (width, height, pixels)) = render(&points, "both", throughput);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        assert_eq!(
            attr(svg.split('>').next().unwrap(), "width"),
            Some(width as f64)
        );
        assert_eq!(
            attr(svg.split('>').next().unwrap(), "height"),
            Some(height as f64)
        );
        assert_eq!(width, WIDTH);
        assert!(svg.contains(&format!("font-family=\"{FONT}\"")), "{svg}");
        let texts = texts(&svg);
        let all: Vec<&str> = texts.iter().map(|t| t.2.as_str()).collect();
        let has = |s: &str| all.iter().any(|t| t.contains(s));
        // The caption: the workload and what the marks are.
        assert!(has("100 connections + idle ones (x axis)"), "{all:?}");
        assert!(
            has("64 B requests") && has("pipeline 1") && has("closed loop"),
            "{all:?}"
        );
        assert!(
            has("1 event loop per iomux server") && has("bench: 1 thread"),
            "{all:?}"
        );
        assert!(has("5 s measured after 1 s warm-up"), "{all:?}");
        assert!(
            has("markers: median of 3 repeats; bars: min–max of the 3 repeats"),
            "{all:?}"
        );
        // Separators on the axes: the y ticks and the idle count.
        assert!(all.contains(&"1,000"), "{all:?}");
        assert!(
            all.iter()
                .any(|t| t.len() > 4 && t.contains(',') && t.ends_with("000")),
            "{all:?}"
        );
        assert!(!all.iter().any(|t| t.ends_with(".0")), "{all:?}");
        // Only measured x values are ticked: 0 and 1,000, nothing between.
        assert!(!all.contains(&"500"), "{all:?}");
        // Okabe-Ito blue and vermillion.
        assert!(svg.contains("#0072B2") && svg.contains("#D55E00"), "{svg}");
        // The legend: under the chart, side by side in one row.
        let legend: Vec<&(f64, f64, String)> = texts
            .iter()
            .filter(|t| t.2 == "epoll" || t.2 == "uring")
            .collect();
        assert_eq!(legend.len(), 2, "{legend:?}");
        assert_eq!(legend[0].1, legend[1].1, "{legend:?}");
        let bottom_tick = texts.iter().find(|t| t.2 == "1,000").unwrap();
        assert!(legend[0].1 > bottom_tick.1, "{legend:?} {bottom_tick:?}");
        // All clean: no hollow marker and no note about one.
        assert!(!has("not clean"), "{all:?}");
        assert!(!svg.contains("fill=\"none\" stroke=\"#0072B2\""), "{svg}");
        // The PNG has text: dark pixels where the title is (rows 14 to 36
        // around the middle), with no system font needed.
        let dark_in_title = (14..36)
            .flat_map(|y| (440..640).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let i = 3 * (y * width as usize + x);
                pixels[i..i + 3].iter().all(|&c| c < 100)
            })
            .count();
        assert!(
            dark_in_title > 50,
            "{dark_in_title} dark pixels in the title"
        );
    }

    #[test]
    fn points_not_clean_are_hollow_and_explained() {
        let mut samples = fast_samples();
        samples[0].other_load = 0.9;
        let points = aggregate(&samples);
        assert!(not_clean(&points[0]) && !not_clean(&points[1]));
        let (svg, _) = render(&points, "unclean", throughput);
        assert!(
            svg.contains("fill=\"none\" stroke=\"#0072B2\" stroke-width=\"2\""),
            "{svg}"
        );
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t.2 == not_clean_text()), "{texts:?}");
        assert!(not_clean_text().contains("0.25 cores") && not_clean_text().contains("20 %"));
        // A spread over 20 % or an error is not clean either.
        let mut noisy = fast_samples();
        noisy[0].requests_per_sec = 500_000.0;
        assert!(not_clean(&aggregate(&noisy)[0]));
        let mut failed = fast_samples();
        failed[0].errors = 1;
        assert!(not_clean(&aggregate(&failed)[0]));
    }

    /// The centres of the filled circles of a colour (the markers).
    fn marker_xs(svg: &str, color: &str) -> Vec<f64> {
        svg.split("<circle")
            .skip(1)
            .filter(|c| c.contains(&format!("fill=\"{color}\"")))
            .filter_map(|c| attr(c, "cx"))
            .collect()
    }

    #[test]
    fn series_at_one_x_are_dodged() {
        let points = aggregate(&fast_samples());
        let (svg, _) = render(&points, "dodge", throughput);
        let (blue, red) = (marker_xs(&svg, "#0072B2"), marker_xs(&svg, "#D55E00"));
        // Two in the chart, then one in the legend.
        assert_eq!((blue.len(), red.len()), (3, 3), "{svg}");
        for (b, r) in blue.iter().zip(&red).take(2) {
            let gap = r - b;
            assert!((8.0..=DODGE + 1.0).contains(&gap), "{blue:?} {red:?}");
        }
    }

    #[test]
    fn one_run_has_no_bars_and_says_so() {
        let points = aggregate(&two_servers_at_two_idle_counts());
        let (svg, _) = render(&points, "mixed", cpu);
        let mixed = texts(&svg);
        assert!(
            mixed
                .iter()
                .any(|t| t.2.starts_with("markers: median of 1–2 repeats")),
            "{mixed:?}"
        );
        let points = aggregate(&[sample("epoll", 0, 0, 100.0, 4.0)]);
        let (svg, _) = render(&points, "single", cpu);
        let single = texts(&svg);
        assert!(
            single
                .iter()
                .any(|t| t.2 == "markers: one run per point (no error bars)"),
            "{single:?}"
        );
        // One x value: its own tick only, never -1 or a fraction.
        assert!(single.iter().any(|t| t.2 == "0"), "{single:?}");
        let bad = |t: &str| t.starts_with('-') || t.ends_with(".0");
        assert!(!single.iter().any(|t| bad(&t.2)), "{single:?}");
    }

    #[test]
    fn the_caption_names_fixed_and_varying_dimensions() {
        let mut a = sample("epoll", 1000, 0, 1.0, 1.0);
        a.rate = Some(20_000.0);
        let mut b = a.clone();
        b.rate = Some(50_000.0);
        b.size = 1024;
        let points = aggregate(&[a, b]);
        let w = Workload {
            server_threads: vec![1, 2],
            bench_threads: 2,
            duration: Duration::from_millis(500),
            ..workload()
        };
        let parts = workload_parts(&points, &w, XAxis::choose(&points));
        assert_eq!(
            parts,
            [
                "100 connections + 1,000 idle",
                "64, 1,024 B requests",
                "pipeline 1",
                "rates 20,000/s, 50,000/s",
                "1, 2 event loops per iomux server (/tN)",
                "bench: 2 threads",
                "0.5 s measured after 1 s warm-up",
            ]
        );
        let lines = wrap(&parts, CAPTION_SIZE, 400);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(
            lines.iter().all(|l| text_width(l, CAPTION_SIZE) <= 400),
            "{lines:?}"
        );
    }
}
