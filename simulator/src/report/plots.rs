//! PNG plots, drawn with plotters' bitmap backend and the bundled DejaVu Sans font, so
//! they render the same on a machine without any system font.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::Row;
use super::json::Summary;
use crate::metrics::Latency;
use crate::records::RunData;

/// The bundled font (DejaVu Sans; its license is beside it in `simulator/assets/`).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
pub(crate) const FAMILY: &str = "sans-serif";
pub(crate) const SIZE: (u32, u32) = (960, 440);

/// A rendered plot.
#[derive(Debug, Clone)]
pub struct Plot {
    /// File name inside `plots/`.
    pub file: String,
    pub title: String,
    pub caption: String,
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; a failure would be a broken build, and plots then
        // fail with an error rather than a panic.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> std::io::Error {
    std::io::Error::other(format!("plot: {e:?}"))
}

type Series = (String, RGBColor, Vec<(f64, f64)>);

/// A fault on a time axis: from, to (equal for an instant) and its label.
pub type Mark = (f64, f64, String);

/// The faults of a cluster run as marks for the time plots.
fn fault_marks(summary: &Summary) -> Vec<Mark> {
    summary.cluster.as_ref().map_or_else(Vec::new, |c| {
        c.faults
            .iter()
            .map(|f| {
                let e = &f.event;
                let label = match &e.node {
                    Some(n) => format!("{} {n}", e.kind),
                    None => e.kind.clone(),
                };
                (e.at_secs, e.until_secs.unwrap_or(e.at_secs), label)
            })
            .collect()
    })
}

pub(crate) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(120, 120, 120),
];

/// A tick label without needless decimals.
pub(crate) fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 100.0 || (a - a.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn bounds(series: &[Series], log_y: bool) -> (f64, f64, f64, f64) {
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if !(x.is_finite() && y.is_finite()) || (log_y && y <= 0.0) {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0, 1.0, if log_y { 0.1 } else { 0.0 }, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if log_y {
        y0 = (y0 / 1.5).max(1e-3);
        y1 = (y1 * 1.5).max(y0 * 10.0);
    } else {
        y0 = y0.min(0.0);
        y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.08 };
    }
    (x0, x1, y0, y1)
}

/// What a chart draws once its axes exist. [`on_axes`] builds them with a linear or a
/// logarithmic y axis, whose coordinate types differ, so the drawing is generic over it.
pub(crate) trait Draw {
    fn draw<'a, 'b: 'a, Y>(
        &self,
        chart: ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    ) -> std::io::Result<()>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>;
}

/// Builds a chart's axes over `x` and `y`, the y axis logarithmic when `log_y`, and draws
/// `d` on them. Every chart of the run and compare reports goes through here.
pub(crate) fn on_axes(
    builder: &mut ChartBuilder<'_, '_, BitMapBackend<'_>>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    log_y: bool,
    d: &impl Draw,
) -> std::io::Result<()> {
    if log_y {
        d.draw(builder.build_cartesian_2d(x, y.log_scale()).map_err(err)?)
    } else {
        d.draw(builder.build_cartesian_2d(x, y).map_err(err)?)
    }
}

/// The legend every chart has: upper left, on a translucent white box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::io::Result<()> {
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

/// The lines of one plot, with its axis descriptions and labels.
struct Lines<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    log_y: bool,
    x_fmt: Option<&'a dyn Fn(&f64) -> String>,
    x_labels: usize,
    empty: bool,
    /// Faults to mark on the time axis.
    marks: &'a [Mark],
}

impl Draw for Lines<'_> {
    fn draw<'a, 'b: 'a, Y>(
        &self,
        mut chart: ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    ) -> std::io::Result<()>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let log_y = self.log_y;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14));
        mesh.x_labels(self.x_labels);
        match self.x_fmt {
            Some(f) => {
                mesh.x_label_formatter(f);
            }
            None => {
                mesh.x_label_formatter(&tick);
            }
        }
        if !log_y {
            mesh.y_label_formatter(&tick);
        }
        mesh.draw().map_err(err)?;
        let (yr, xr) = (chart.y_range(), chart.x_range());
        let fault = RGBColor(200, 0, 0);
        for (from, to, label) in self.marks {
            if *from < xr.start || *from > xr.end {
                continue;
            }
            let to = to.min(xr.end);
            if to > *from {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(*from, yr.start), (to, yr.end)],
                        fault.mix(0.10).filled(),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*from, yr.start), (*from, yr.end)],
                    fault.stroke_width(1),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*from, yr.end),
                    (FAMILY, 12).into_font().color(&fault),
                )))
                .map_err(err)?;
        }
        for (label, color, pts) in self.series {
            let color = *color;
            let pts: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        if !self.empty {
            draw_legend(&mut chart)?;
        }
        Ok(())
    }
}

/// Draws `lines` (its `x_labels` and `empty` are worked out here) under `title`.
fn draw_lines(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    mut lines: Lines<'_>,
) -> std::io::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (mut x0, mut x1, y0, y1) = bounds(lines.series, lines.log_y);
    // A percentile axis gets one label per decade: 0 %, 90 %, 99 %, …
    lines.x_labels = if lines.x_fmt.is_some() {
        x0 = 0.0;
        x1 = x1.ceil().max(1.0);
        x1 as usize + 1
    } else {
        10
    };
    lines.empty = lines.series.iter().all(|s| s.2.is_empty());
    let caption = if lines.empty {
        format!("{title} (nothing measured)")
    } else {
        title.to_owned()
    };
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    on_axes(&mut builder, x0..x1, y0..y1, lines.log_y, &lines)?;
    root.present().map_err(err)
}

/// Writes one line plot to `path`.
fn write_lines(path: &Path, title: &str, lines: Lines<'_>) -> std::io::Result<PathBuf> {
    {
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        draw_lines(&root, title, lines)?;
    }
    Ok(path.to_owned())
}

fn plot_file(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_y: bool,
    x_fmt: Option<&dyn Fn(&f64) -> String>,
) -> std::io::Result<PathBuf> {
    let mut lines = time_lines(x_desc, y_desc, series, log_y);
    lines.x_fmt = x_fmt;
    write_lines(path, title, lines)
}

/// A plot over the run's time with its faults marked.
fn plot_marked(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log_y: bool,
    marks: &[Mark],
) -> std::io::Result<PathBuf> {
    let mut lines = time_lines(x_desc, y_desc, series, log_y);
    lines.marks = marks;
    write_lines(path, title, lines)
}

/// Lines with a plain x axis and no marks.
fn time_lines<'a>(
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    log_y: bool,
) -> Lines<'a> {
    Lines {
        x_desc,
        y_desc,
        series,
        log_y,
        x_fmt: None,
        x_labels: 10,
        empty: false,
        marks: &[],
    }
}

/// Quantiles for the distribution plot, as −log10(1 − q).
const QUANTILES: [f64; 14] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999,
];

fn percent_label(x: &f64) -> String {
    let q = 1.0 - 10f64.powf(-*x);
    let p = q * 100.0;
    if p < 99.0 {
        format!("{p:.0}%")
    } else {
        let digits = (*x - 2.0).ceil().max(0.0) as usize;
        format!("{p:.digits$}%")
    }
}

/// Renders every plot into `dir`.
pub fn render_all(
    dir: &Path,
    summary: &Summary,
    data: &RunData,
    rows: &[Row],
) -> std::io::Result<Vec<Plot>> {
    register_font();
    std::fs::create_dir_all(dir)?;
    let mut plots = Vec::new();
    let marks = fault_marks(summary);
    let t = |r: &Row| r.elapsed_s;

    let p50: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.delivery_p50_ms.map(|v| (t(r), v)))
        .collect();
    let p99: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.delivery_p99_ms.map(|v| (t(r), v)))
        .collect();
    plot_marked(
        &dir.join("latency_over_time.png"),
        "Send → delivery latency per interval",
        "seconds since start",
        "milliseconds (log)",
        &[
            ("p50".into(), COLORS[0], p50),
            ("p99".into(), COLORS[1], p99),
        ],
        true,
        &marks,
    )?;
    plots.push(Plot {
        file: "latency_over_time.png".into(),
        title: "Latency percentiles over time".into(),
        caption: "p50 and p99 of send → first live delivery, per sample interval, from intended send times".into(),
    });

    let mut dist = Vec::new();
    for (i, l) in [
        Latency::SendToSent,
        Latency::SendToDelivery,
        Latency::SendToDelivered,
        Latency::History,
        Latency::Reconnect,
    ]
    .into_iter()
    .enumerate()
    {
        let Some(h) = data.latency.get(l).filter(|h| !h.is_empty()) else {
            continue;
        };
        let max_q = 1.0 - 1.0 / h.len() as f64;
        let pts: Vec<(f64, f64)> = QUANTILES
            .iter()
            .filter(|&&q| q <= max_q.max(0.5))
            .map(|&q| (-(1.0 - q).log10(), h.value_at_quantile(q) as f64 / 1000.0))
            .collect();
        dist.push((l.label().to_owned(), COLORS[i % COLORS.len()], pts));
    }
    plot_file(
        &dir.join("latency_distribution.png"),
        "Latency distribution",
        "percentile",
        "milliseconds (log)",
        &dist,
        true,
        Some(&percent_label),
    )?;
    plots.push(Plot {
        file: "latency_distribution.png".into(),
        title: "Latency distribution".into(),
        caption: "latency at each percentile over the whole run, every measurement from its intended time".into(),
    });

    let acked: Vec<(f64, f64)> = rows.iter().map(|r| (t(r), r.acked_per_sec)).collect();
    let deliv: Vec<(f64, f64)> = rows.iter().map(|r| (t(r), r.deliveries_per_sec)).collect();
    let errs: Vec<(f64, f64)> = rows.iter().map(|r| (t(r), r.errors_per_sec)).collect();
    plot_marked(
        &dir.join("throughput.png"),
        "Throughput",
        "seconds since start",
        "per second",
        &[
            ("messages acknowledged/s".into(), COLORS[0], acked),
            ("deliveries/s".into(), COLORS[2], deliv),
            ("errors/s".into(), COLORS[1], errs),
        ],
        false,
        &marks,
    )?;
    plots.push(Plot {
        file: "throughput.png".into(),
        title: "Throughput".into(),
        caption: "messages acknowledged (`sent`), first deliveries to devices and failed requests per second".into(),
    });

    let conns: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.connected.map(|c| (t(r), c as f64)))
        .collect();
    plot_marked(
        &dir.join("connections.png"),
        "Connected devices",
        "seconds since start",
        "WebSockets",
        &[("connected devices".into(), COLORS[0], conns)],
        false,
        &marks,
    )?;
    plots.push(Plot {
        file: "connections.png".into(),
        title: "Connections".into(),
        caption: "WebSockets open from the simulated devices".into(),
    });
    if !data.node_connections.is_empty() {
        let series: Vec<Series> = data
            .node_connections
            .iter()
            .enumerate()
            .map(|(k, (name, pts))| (name.clone(), COLORS[k % COLORS.len()], pts.clone()))
            .collect();
        plot_marked(
            &dir.join("node_connections.png"),
            "Connections per node",
            "seconds since start",
            "WebSockets",
            &series,
            false,
            &marks,
        )?;
        plots.push(Plot {
            file: "node_connections.png".into(),
            title: "Connections per node".into(),
            caption: "open WebSockets on each node (its /metrics), faults shaded: a node's users move to the others when it goes and come back as they reconnect".into(),
        });
    }

    let rss: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.server_rss_bytes.map(|b| (t(r), b as f64 / 1e6)))
        .collect();
    let cpu: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.server_cpu_percent.map(|c| (t(r), c)))
        .collect();
    plot_marked(
        &dir.join("server_memory.png"),
        "Server memory and CPU",
        "seconds since start",
        "MB resident / % of one core",
        &[
            ("resident memory (MB)".into(), COLORS[4], rss),
            ("CPU (% of one core)".into(), COLORS[3], cpu),
        ],
        false,
        &marks,
    )?;
    plots.push(Plot {
        file: "server_memory.png".into(),
        title: "Server memory".into(),
        caption: match &summary.server {
            Some(s) => match s.pid {
                Some(pid) => {
                    format!("resident memory and CPU of the server process (pid {pid}), from /proc")
                }
                None => "resident memory and CPU of every node added up, from /proc".into(),
            },
            None => "the target is not this run's server, so its memory was not sampled".into(),
        },
    });

    let measured: Vec<(f64, f64)> = data
        .samples
        .iter()
        .filter_map(|s| s.disk_bytes.map(|b| (s.acked as f64, b as f64 / 1e6)))
        .collect();
    let estimate: Vec<(f64, f64)> = match (data.disk_start, measured.last()) {
        (Some(start), Some(&(n, _))) => vec![
            (0.0, start as f64 / 1e6),
            (n, (start as f64 + n * data.source_bytes_per_message) / 1e6),
        ],
        _ => Vec::new(),
    };
    plot_file(
        &dir.join("storage_growth.png"),
        "Storage growth against the source design's estimate",
        "messages stored",
        "MB on disk",
        &[
            ("bytes on disk (measured)".into(), COLORS[0], measured),
            (
                "100 B per message (source design)".into(),
                COLORS[5],
                estimate,
            ),
        ],
        false,
        None,
    )?;
    plots.push(Plot {
        file: "storage_growth.png".into(),
        title: "Storage growth".into(),
        caption: match summary.storage.bytes_per_message {
            Some(b) => format!(
                "bytes on disk against messages stored: {b:.0} B per message measured, 100 B assumed by the source design"
            ),
            None => format!(
                "not measured: {}",
                summary.storage.note.clone().unwrap_or_default()
            ),
        },
    });
    if let Some(p) = super::storage_plot::render(dir, &summary.storage)? {
        plots.push(p);
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percent_label(&0.0), "0%");
        assert_eq!(percent_label(&1.0), "90%");
        assert_eq!(percent_label(&2.0), "99%");
        assert_eq!(percent_label(&3.0), "99.9%");
        assert_eq!(percent_label(&4.0), "99.99%");
    }

    #[test]
    fn draws_with_the_bundled_font() {
        register_font();
        let dir = tempfile::tempdir().unwrap();
        let pts = vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)];
        let p = plot_file(
            &dir.path().join("t.png"),
            "Title ≤ → µs",
            "x",
            "y",
            &[("a".into(), COLORS[0], pts)],
            true,
            None,
        )
        .unwrap();
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // An empty plot still renders.
        plot_file(
            &dir.path().join("e.png"),
            "Empty",
            "x",
            "y",
            &[],
            false,
            None,
        )
        .unwrap();
    }
}
