//! The files of a comparison: `compare.json`, `compare.md`, bar charts in `plots/` and a
//! self-contained `compare.html` (plots embedded as base64, as a run's `report.html`), so
//! the comparison can be mailed or archived as one file.
//!
//! The charts reuse the run report's font, colours and tick labels (`report::plots`), so
//! both kinds of report look alike and render the same on a machine without fonts.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::table::{Comparison, rows};
use crate::report::html::escape;
use crate::report::plots::{
    COLORS, Draw, FAMILY, SIZE, draw_legend, err, on_axes, register_font, tick,
};
use crate::storage::SOURCE_BYTES_PER_MESSAGE;

/// A chart of the comparison.
struct Chart {
    file: &'static str,
    title: &'static str,
    caption: &'static str,
}

const CHARTS: [Chart; 3] = [
    Chart {
        file: "throughput.png",
        title: "Throughput",
        caption: "messages delivered to devices and acknowledged to senders per second at full load",
    },
    Chart {
        file: "latency.png",
        title: "Latency",
        caption: "p50 and p99 of send → sent and send → first live delivery, from intended send times (log scale)",
    },
    Chart {
        file: "bytes_per_message.png",
        title: "Bytes on disk per message",
        caption: "bytes on disk per stored message, settled after the run and as the run saw it (journal included), against the 100 B of the source design (none for the memory store)",
    },
];

/// One bar per backend: a legend label, a colour and a value per backend.
type Bars = (String, RGBColor, Vec<Option<f64>>);

/// The bars of one chart, with the reference line and the axis labels.
struct BarGroups<'a> {
    y_desc: &'a str,
    series: &'a [Bars],
    reference: Option<(&'a str, f64)>,
    log_y: bool,
    /// Groups (backends), the width of one bar, and the bars' foot.
    n: usize,
    width: f64,
    y0: f64,
    label: &'a dyn Fn(&f64) -> String,
}

impl Draw for BarGroups<'_> {
    fn draw<'a, 'b: 'a, Y>(
        &self,
        mut chart: ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    ) -> std::io::Result<()>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let (n, width, y0, log_y) = (self.n, self.width, self.y0, self.log_y);
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .max_light_lines(2)
            .x_labels(2 * n + 2)
            .x_label_formatter(self.label)
            .y_desc(self.y_desc)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 14));
        if !log_y {
            mesh.y_label_formatter(&tick);
        }
        mesh.draw().map_err(err)?;
        for (j, (name, color, values)) in self.series.iter().enumerate() {
            let color = *color;
            let bars: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.filter(|v| v.is_finite() && (!log_y || *v > 0.0))
                        .map(|v| (i as f64 - 0.4 + width * j as f64, v))
                })
                .collect();
            chart
                .draw_series(
                    bars.iter()
                        .map(|&(x, v)| Rectangle::new([(x, y0), (x + width, v)], color.filled())),
                )
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    EmptyElement::at((x + width / 2.0, v))
                        + Text::new(tick(&v), (-12, -16), (FAMILY, 12).into_font())
                }))
                .map_err(err)?;
        }
        if let Some((name, v)) = self.reference {
            let grey = COLORS[5];
            chart
                .draw_series(DashedLineSeries::new(
                    [(-0.5, v), (n as f64 - 0.5, v)],
                    8,
                    6,
                    grey.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], grey.stroke_width(2))
                });
        }
        draw_legend(&mut chart)
    }
}

/// Grouped bars: one group per backend, one bar per series, the value over each bar; an
/// optional dashed reference line (the source design's figure). A log scale keeps a
/// store that is ten times slower from flattening the others' bars to nothing.
fn bar_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Bars],
    reference: Option<(&str, f64)>,
    log_y: bool,
) -> std::io::Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = groups.len().max(1);
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .copied()
        .chain(reference.map(|r| r.1))
        .filter(|v| v.is_finite() && (!log_y || *v > 0.0))
        .collect();
    let hi = values.iter().copied().fold(0.0f64, f64::max);
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    // Room above the bars for their values and the legend.
    let (y0, y1) = if log_y {
        let lo = if lo < f64::MAX { lo / 2.0 } else { 0.1 };
        let hi = if hi > 0.0 { hi * 12.0 } else { 10.0 };
        (lo.max(1e-3), hi.max(lo * 100.0))
    } else {
        (0.0, if hi > 0.0 { hi * 1.45 } else { 1.0 })
    };
    let names = groups.to_vec();
    let label = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    let x_range = -0.5f64..(n as f64 - 0.5);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    let bars = BarGroups {
        y_desc,
        series,
        reference,
        log_y,
        n,
        width,
        y0,
        label: &label,
    };
    on_axes(&mut builder, x_range, y0..y1, log_y, &bars)?;
    root.present().map_err(err)
}

/// Draws the three charts into `dir`.
fn plots(dir: &Path, c: &Comparison) -> std::io::Result<()> {
    register_font();
    std::fs::create_dir_all(dir)?;
    let groups: Vec<String> = c.backends.iter().map(|b| b.label.clone()).collect();
    let col = |f: fn(&super::table::BackendFigures) -> Option<f64>| -> Vec<Option<f64>> {
        c.backends.iter().map(f).collect()
    };
    bar_chart(
        &dir.join(CHARTS[0].file),
        "Messages per second at full load",
        "per second",
        &groups,
        &[
            (
                "delivered/s".into(),
                COLORS[2],
                col(|b| b.delivered_per_sec),
            ),
            (
                "acknowledged/s".into(),
                COLORS[0],
                col(|b| b.acknowledged_per_sec),
            ),
        ],
        None,
        false,
    )?;
    bar_chart(
        &dir.join(CHARTS[1].file),
        "Latency percentiles",
        "milliseconds (log)",
        &groups,
        &[
            (
                "p50 send → sent".into(),
                COLORS[0],
                col(|b| b.send_to_sent_p50_ms),
            ),
            (
                "p99 send → sent".into(),
                COLORS[4],
                col(|b| b.send_to_sent_p99_ms),
            ),
            (
                "p50 send → delivery".into(),
                COLORS[2],
                col(|b| b.send_to_delivery_p50_ms),
            ),
            (
                "p99 send → delivery".into(),
                COLORS[1],
                col(|b| b.send_to_delivery_p99_ms),
            ),
        ],
        None,
        true,
    )?;
    bar_chart(
        &dir.join(CHARTS[2].file),
        "Bytes on disk per message",
        "bytes",
        &groups,
        &[
            (
                "settled".into(),
                COLORS[2],
                col(|b| b.settled_bytes_per_message),
            ),
            (
                "while running".into(),
                COLORS[3],
                col(|b| b.bytes_per_message),
            ),
        ],
        Some(("100 B (source design)", SOURCE_BYTES_PER_MESSAGE)),
        false,
    )?;
    Ok(())
}

/// Table cells for Markdown: no pipes or line breaks inside a cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `compare.md`.
pub fn markdown(c: &Comparison) -> String {
    let mut out = format!(
        "# Store comparison: `{}` ({})\n\n{} backends run one after another from `{}`, started {}, finished {}.\n",
        c.scenario,
        if c.passed { "pass" } else { "FAIL" },
        c.backends.len(),
        c.scenario_file,
        c.started_at,
        c.finished_at
    );
    if !c.overrides.is_empty() {
        out.push_str(&format!(
            "Overrides: {}.\n",
            c.overrides
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("\n| figure |");
    for b in &c.backends {
        out.push_str(&format!(" {} |", md_cell(&b.label)));
    }
    out.push_str("\n| --- |");
    for _ in &c.backends {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for (name, cells) in rows(c) {
        out.push_str(&format!("| {name} |"));
        for cell in cells {
            out.push_str(&format!(" {} |", md_cell(&cell)));
        }
        out.push('\n');
    }
    out.push_str("\n## Runs\n\n");
    for b in &c.backends {
        match (&b.run_dir, &b.error) {
            (Some(d), _) => out.push_str(&format!(
                "- {}: [{d}/summary.md]({d}/summary.md) ({})\n",
                b.label,
                b.status()
            )),
            (None, e) => out.push_str(&format!(
                "- {}: did not run: {}\n",
                b.label,
                md_cell(e.as_deref().unwrap_or("unknown error"))
            )),
        }
    }
    if !c.failures.is_empty() {
        out.push_str("\n## Failures\n\n");
        for f in &c.failures {
            out.push_str(&format!("- {}\n", md_cell(f)));
        }
    }
    out.push_str("\n## Plots\n\n");
    for ch in &CHARTS {
        out.push_str(&format!(
            "![{}](plots/{})\n\n{}\n\n",
            ch.title, ch.file, ch.caption
        ));
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .25em}\
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}\
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}";

fn html_cell(s: &str) -> String {
    match s {
        "pass" => "<span class=\"pass\">pass</span>".into(),
        "FAIL" | "did not run" => format!("<span class=\"fail\">{s}</span>"),
        other => match other.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
            Some(code) => format!("<code>{}</code>", escape(code)),
            None => escape(other),
        },
    }
}

/// `compare.html`, with the plots read from `plots_dir` and embedded.
pub fn html(c: &Comparison, plots_dir: &Path) -> std::io::Result<String> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>chat-sim compare: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&c.scenario)
    );
    out.push_str(&format!(
        "<h1 class=\"{}\">Store comparison: <code>{}</code> ({})</h1>\n<p>{} backends run one after another from <code>{}</code>, started {}, finished {}.</p>\n",
        if c.passed { "pass" } else { "fail" },
        escape(&c.scenario),
        if c.passed { "pass" } else { "FAIL" },
        c.backends.len(),
        escape(&c.scenario_file),
        escape(&c.started_at),
        escape(&c.finished_at)
    ));
    out.push_str("<table><thead><tr><th>figure</th>");
    for b in &c.backends {
        out.push_str(&format!("<th>{}</th>", escape(&b.label)));
    }
    out.push_str("</tr></thead><tbody>");
    for (name, cells) in rows(c) {
        out.push_str(&format!("<tr><td>{}</td>", escape(&name)));
        for cell in cells {
            out.push_str(&format!("<td>{}</td>", html_cell(&cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n<h2>Runs</h2><ul>");
    for b in &c.backends {
        match &b.run_dir {
            Some(d) => out.push_str(&format!(
                "<li>{}: <a href=\"{}/report.html\">{}/report.html</a> ({})</li>",
                escape(&b.label),
                escape(d),
                escape(d),
                html_cell(b.status())
            )),
            None => out.push_str(&format!(
                "<li>{}: <span class=\"fail\">did not run</span>: {}</li>",
                escape(&b.label),
                escape(b.error.as_deref().unwrap_or("unknown error"))
            )),
        }
    }
    out.push_str("</ul>\n");
    if !c.failures.is_empty() {
        out.push_str("<h2>Failures</h2><ul>");
        for f in &c.failures {
            out.push_str(&format!("<li>{}</li>", escape(f)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Plots</h2>\n");
    for ch in &CHARTS {
        let bytes = std::fs::read(plots_dir.join(ch.file))?;
        out.push_str(&format!(
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
            escape(ch.title),
            B64.encode(bytes),
            escape(ch.caption)
        ));
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// Writes `compare.json`, the plots, `compare.md` and `compare.html` into `dir`.
pub fn write_all(dir: &Path, c: &Comparison) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(c).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("compare.json"), json + "\n")?;
    let plots_dir = dir.join("plots");
    plots(&plots_dir, c)?;
    std::fs::write(dir.join("compare.md"), markdown(c))?;
    std::fs::write(dir.join("compare.html"), html(c, &plots_dir)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::table::{BackendFigures, SCHEMA_VERSION};

    #[test]
    fn renders_every_file_with_a_backend_that_did_not_run() {
        let ran = BackendFigures {
            label: "fjall".into(),
            store: "fjall".into(),
            ran: true,
            passed: true,
            run_dir: Some("fjall/x".into()),
            delivered_per_sec: Some(380.0),
            acknowledged_per_sec: Some(190.0),
            send_to_sent_p50_ms: Some(1.5),
            send_to_sent_p99_ms: Some(4.0),
            send_to_delivery_p50_ms: Some(1.6),
            send_to_delivery_p99_ms: Some(800.0),
            bytes_per_message: Some(525.0),
            ..BackendFigures::default()
        };
        let c = Comparison {
            schema_version: SCHEMA_VERSION,
            tool: "t".into(),
            scenario: "s".into(),
            scenario_file: "s.toml".into(),
            overrides: vec![],
            started_at: String::new(),
            finished_at: String::new(),
            passed: false,
            failures: vec!["BACKEND FAILED: x".into()],
            backends: vec![
                ran,
                BackendFigures::failed("cql", "cql://h/k", "down <now>"),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &c).unwrap();
        let md = std::fs::read_to_string(dir.path().join("compare.md")).unwrap();
        assert!(md.contains("| figure | fjall | cql |"), "{md}");
        assert!(
            md.contains("[fjall/x/summary.md](fjall/x/summary.md)"),
            "{md}"
        );
        let html = std::fs::read_to_string(dir.path().join("compare.html")).unwrap();
        assert!(html.contains("down &lt;now&gt;"));
        assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    }
}
