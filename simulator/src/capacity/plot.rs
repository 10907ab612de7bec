//! The knee plots: for each search, p99 send → delivery latency and CPU (the server's and
//! the load generator's) against the offered load, every step a point (green passed, red
//! failed), the highest passing level marked.

use std::path::Path;

use plotters::prelude::*;

use crate::report::plots::{COLORS, FAMILY, Plot, draw_legend, err, register_font, tick};

use super::step::Step;
use super::{CapacityReport, level_text};

const SIZE: (u32, u32) = (960, 720);
const PASS: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);

/// One PNG per search in `plots_dir`.
pub fn knees(plots_dir: &Path, r: &CapacityReport) -> std::io::Result<Vec<Plot>> {
    std::fs::create_dir_all(plots_dir)?;
    register_font();
    let mut out = Vec::new();
    for (k, s) in r.searches.iter().enumerate() {
        let mut steps: Vec<&Step> = r
            .steps
            .iter()
            .filter(|x| x.search == k && x.figures.is_some())
            .collect();
        steps.sort_by(|a, b| a.level.total_cmp(&b.level));
        let file = format!("knee-{}-{}.png", k + 1, s.grow.name());
        let x_desc = format!("offered load ({})", s.unit);
        draw(
            &plots_dir.join(&file),
            &steps,
            s.highest_passing_level,
            &x_desc,
        )?;
        out.push(Plot {
            file,
            title: format!("{} search: latency and CPU against load", s.grow.name()),
            caption: format!(
                "Each point a step (green passed its gates, red failed); the dashed line is the highest passing level{}. Limited by: {}.",
                s.highest_passing_level
                    .map_or(String::new(), |l| format!(", {} {}", level_text(s.grow, l), s.unit)),
                s.limited_by.key()
            ),
        });
    }
    Ok(out)
}

type Pts = Vec<(f64, f64, bool)>;

fn draw(path: &Path, steps: &[&Step], knee: Option<f64>, x_desc: &str) -> std::io::Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let fig = |pick: fn(&Step) -> Option<f64>| -> Pts {
        steps
            .iter()
            .filter_map(|s| pick(s).map(|v| (s.level, v, s.passed)))
            .filter(|(x, y, _)| x.is_finite() && y.is_finite())
            .collect()
    };
    let latency = fig(|s| s.figures.as_ref()?.p99_send_to_delivery_ms);
    let server = fig(|s| s.figures.as_ref()?.server_cpu_percent);
    let load = fig(|s| s.figures.as_ref().map(|f| f.load_cpu_percent));
    let x_max = steps.iter().map(|s| s.level).fold(1.0_f64, f64::max) * 1.08;
    panel(
        &top,
        "p99 send → delivery",
        x_desc,
        "milliseconds",
        x_max,
        &[("p99 send → delivery", COLORS[0], &latency)],
        knee,
    )?;
    panel(
        &bottom,
        "CPU",
        x_desc,
        "% of one core",
        x_max,
        &[
            ("server", COLORS[0], &server),
            ("load generator", COLORS[3], &load),
        ],
        knee,
    )?;
    root.present().map_err(err)
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_max: f64,
    series: &[(&str, RGBColor, &Pts)],
    knee: Option<f64>,
) -> std::io::Result<()> {
    let y_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(err)?;
    if let Some(k) = knee {
        chart
            .draw_series(DashedLineSeries::new(
                [(k, 0.0), (k, y_max)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("highest passing: {}", tick(&k)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
    }
    for (label, color, pts) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 5, if p.2 { PASS } else { FAIL }.filled())),
            )
            .map_err(err)?;
    }
    draw_legend(&mut chart)
}
