//! The report: the `target | measured | met?` table for the terminal with each figure's
//! source under it, and the same as Markdown and JSON for the output directory.

use serde::Serialize;

use crate::host::{self, HostLoad};
use crate::parts::Part;
use crate::verdict::{Row, Status};

/// How one part went.
#[derive(Debug, Clone, Serialize)]
pub struct PartRun {
    pub part: Part,
    /// `ok`, `not run: …` or `failed: …`.
    pub outcome: String,
    pub secs: f64,
}

/// Everything one invocation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub finished_at: String,
    pub quick: bool,
    pub peer_bench: Option<String>,
    /// Other processes' CPU just before the first part (`None`: no `/proc` to read).
    pub host: Option<HostLoad>,
    pub parts: Vec<PartRun>,
    pub rows: Vec<Row>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// The terminal table, then one `source` line per target.
pub fn text(rows: &[Row]) -> String {
    let head = ["target", "measured", "met?"];
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|r| [r.target_text(), r.measured.clone(), r.status.text()])
        .collect();
    let mut w = head.map(width);
    for c in &cells {
        for (w, cell) in w.iter_mut().zip(c) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |c: [&str; 3]| {
        format!("{} | {} | {}", pad(c[0], w[0]), pad(c[1], w[1]), c[2])
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&line(head));
    out.push('\n');
    out.push_str(&format!(
        "{}-|-{}-|-{}\n",
        "-".repeat(w[0]),
        "-".repeat(w[1]),
        "-".repeat(w[2])
    ));
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2]]));
        out.push('\n');
    }
    out.push_str("\nwhere each figure came from:\n");
    for r in rows {
        out.push_str(&format!("  {:<3} {}\n", r.id, r.source));
    }
    out
}

/// Markdown cells may not hold `|` or line breaks.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report: the table with a source column, then how each part went.
pub fn markdown(report: &Report) -> String {
    let mut out = String::from("# Performance targets\n\n");
    out.push_str(&format!(
        "Run {} → {}{}. Each figure is a ratio or a percentile measured in this run.\n\n",
        report.started_at,
        report.finished_at,
        if report.quick {
            " with `--quick` (shorter runs, one repetition)"
        } else {
            ""
        }
    ));
    if let Some(h) = &report.host {
        out.push_str(&host::note(h));
        out.push_str("\n\n");
    }
    out.push_str("| target | measured | met? | source |\n|---|---|---|---|\n");
    for r in &report.rows {
        let met = match &r.status {
            Status::NotMet => "**NOT met**".to_string(),
            s => s.text(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_cell(&r.target_text()),
            md_cell(&r.measured),
            md_cell(&met),
            md_cell(&r.source)
        ));
    }
    out.push_str("\n| part | outcome | seconds |\n|---|---|---:|\n");
    for p in &report.parts {
        out.push_str(&format!(
            "| {} | {} | {:.0} |\n",
            p.part.name(),
            md_cell(&p.outcome),
            p.secs
        ));
    }
    out
}
