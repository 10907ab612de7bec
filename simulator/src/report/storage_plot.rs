//! The stacked storage chart: bytes on disk per stored message by table, settled beside
//! what the run saw while it went on, with the source design's 100 B as a line.

use std::path::Path;

use plotters::prelude::*;

use super::plots::{COLORS, FAMILY, Plot, SIZE, draw_legend, err, register_font, tick};
use crate::storage::{SOURCE_BYTES_PER_MESSAGE, StorageFigures, TableFigures};

/// The segments of a bar, bottom up: the tables, then the journal (not data).
const SEGMENTS: [(&str, &str); 6] = [
    ("messages", "messages"),
    ("inbox", "inbox entries"),
    ("markers", "markers, counters"),
    ("other", "groups, push, other"),
    ("idempotency", "idempotency (one window)"),
    ("journal", "write-ahead journal"),
];

/// The bar of the settled store.
const SETTLED: &str = "settled (journal apart)";

/// Bytes per message of one segment of a bar. The settled bar leaves the journal out:
/// it is reported apart, not data (fjall keeps its active journal until it fills).
fn segment(f: &TableFigures, key: &str, settled: bool) -> f64 {
    if key == "journal" {
        if settled {
            0.0
        } else {
            f.journal_bytes_per_message.unwrap_or(0.0)
        }
    } else {
        f.bytes_per_message_by_table
            .get(key)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Draws `storage_by_table.png` into `dir` when the run measured the store by table.
pub fn render(dir: &Path, st: &StorageFigures) -> std::io::Result<Option<Plot>> {
    let bars: Vec<(&str, &TableFigures)> =
        [("settled", &st.settled), ("while running", &st.transient)]
            .into_iter()
            .filter_map(|(name, f)| f.as_ref().map(|f| (name, f)))
            .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    register_font();
    let file = "storage_by_table.png";
    let path = dir.join(file);
    let root = BitMapBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let top = bars
        .iter()
        .map(|(n, f)| {
            SEGMENTS
                .iter()
                .map(|(k, _)| segment(f, k, *n == SETTLED))
                .sum::<f64>()
        })
        .fold(SOURCE_BYTES_PER_MESSAGE, f64::max)
        * 1.35;
    let mut chart = ChartBuilder::on(&root)
        .caption("Bytes on disk per stored message, by table", (FAMILY, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)
        .map_err(err)?;
    let names: Vec<String> = bars.iter().map(|(n, _)| (*n).to_owned()).collect();
    let label = move |x: &f64| {
        let i = x.floor() as usize;
        if (x - i as f64 - 0.5).abs() < 0.01 {
            names.get(i).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&tick)
        .y_desc("bytes per message")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (s, (key, name)) in SEGMENTS.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, (n, f))| {
                let settled = *n == SETTLED;
                let below: f64 = SEGMENTS[..s]
                    .iter()
                    .map(|(k, _)| segment(f, k, settled))
                    .sum();
                let v = segment(f, key, settled);
                (v > 0.0).then(|| {
                    let x = i as f64;
                    Rectangle::new([(x + 0.25, below), (x + 0.75, below + v)], color.filled())
                })
            })
            .collect();
        if rects.is_empty() {
            continue;
        }
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            [
                (0.0, SOURCE_BYTES_PER_MESSAGE),
                (bars.len() as f64, SOURCE_BYTES_PER_MESSAGE),
            ],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("100 B (source design)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
    draw_legend(&mut chart)?;
    root.present().map_err(err)?;
    let caption = match (&st.settled, st.settled_bytes_per_body_byte) {
        (Some(f), Some(r)) => format!(
            "settled: {:.0} B per message for the retention ({r:.2}× the mean body), plus \
             {:.0} B of idempotency records kept one window; while running the store also \
             held its journal",
            f.bytes_per_message.unwrap_or(0.0),
            f.idempotency_bytes_per_message.unwrap_or(0.0)
        ),
        _ => format!(
            "only as the run left it: {}",
            st.settled_note
                .clone()
                .unwrap_or_else(|| "not settled".into())
        ),
    };
    Ok(Some(Plot {
        file: file.into(),
        title: "Storage by table".into(),
        caption,
    }))
}
