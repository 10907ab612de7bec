//! Rendering plans for people (aligned plain-text tables) and for programs
//! (JSON with raw numbers).
//!
//! Tables use decimal units and say so in their heading; JSON carries bytes
//! and per-second values as plain numbers, with a `units` note, so that
//! nothing has to be parsed back out of a string. The JSON forms are structs
//! rather than `serde_json::Value`s so that fields print in a fixed,
//! readable order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::calibrate::CalibratedPlan;
use crate::document::document_figure;
use crate::figures::{Figure, Quantity};
use crate::model::Plan;
use crate::units::{UNITS_NOTE, format_bytes, format_count, group_thousands, years_to_days};

/// A plain-text table whose columns are padded to their widest cell.
#[derive(Debug, Default)]
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn with_header(header: &[&str]) -> Self {
        let mut table = Self::default();
        table.row(header.iter().map(|h| (*h).to_owned()).collect());
        table.rows.push(Vec::new()); // Marks the rule under the header.
        table
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let cells: Vec<String> = if row.is_empty() {
                widths.iter().map(|w| "-".repeat(*w)).collect()
            } else {
                row.iter()
                    .zip(&widths)
                    .map(|(cell, width)| {
                        let pad = width - cell.chars().count();
                        format!("{cell}{}", " ".repeat(pad))
                    })
                    .collect()
            };
            let line = cells.join("  ");
            let _ = writeln!(out, "  {}", line.trim_end());
        }
    }
}

/// The inputs of `plan` as rows of (input, value), in words.
fn input_rows(plan: &Plan) -> Vec<Vec<String>> {
    let inputs = &plan.inputs;
    let optional = |value: Option<String>, absent: &str| value.unwrap_or_else(|| absent.to_owned());
    vec![
        vec![
            "daily active users".to_owned(),
            format!(
                "{} ({})",
                format_count(inputs.daily_active_users as f64),
                group_thousands(inputs.daily_active_users)
            ),
        ],
        vec![
            "messages per user per day".to_owned(),
            format_count(inputs.messages_per_user_per_day),
        ],
        vec![
            "average message size".to_owned(),
            format_bytes(inputs.message_size_bytes),
        ],
        vec![
            "retention".to_owned(),
            format!(
                "{} years ({} days)",
                inputs.retention_years,
                format_count(years_to_days(inputs.retention_years))
            ),
        ],
        vec![
            "connections per chat server".to_owned(),
            format_count(inputs.connections_per_server as f64),
        ],
        vec![
            "share of daily users connected at peak".to_owned(),
            format!("{}%", format_count(inputs.concurrent_fraction * 100.0)),
        ],
        vec![
            "messages per second per chat server".to_owned(),
            optional(
                inputs
                    .messages_per_sec_per_server
                    .map(|rate| Quantity::CountPerSec.format(rate)),
                "not set (not a constraint)",
            ),
        ],
        vec![
            "memory per connection".to_owned(),
            optional(
                inputs.memory_bytes_per_connection.map(format_bytes),
                "not set (memory not estimated)",
            ),
        ],
        vec![
            "memory per chat server apart from its connections".to_owned(),
            optional(
                inputs.memory_bytes_per_node.map(format_bytes),
                "not set (not counted)",
            ),
        ],
        vec![
            "shard size".to_owned(),
            format_bytes(inputs.shard_size_bytes),
        ],
        vec![
            "database server capacity".to_owned(),
            optional(
                inputs.db_server_capacity_bytes.map(format_bytes),
                "one shard per server",
            ),
        ],
        vec![
            "replication factor".to_owned(),
            inputs.replication_factor.to_string(),
        ],
        vec![
            "storage overhead factor".to_owned(),
            inputs.storage_overhead_factor.to_string(),
        ],
        vec![
            "peak-to-average ratio".to_owned(),
            inputs.peak_to_average.to_string(),
        ],
        vec!["fan-out".to_owned(), inputs.fan_out.to_string()],
    ]
}

/// Renders a plan as a readable table, with the source document's stated
/// figures and rounding notes in the last column.
///
/// ```
/// let plan = estimation::Inputs::source_design().plan().unwrap();
/// let table = estimation::report::render_plan(&plan);
/// assert!(table.contains("3.65 PB"));
/// assert!(table.contains("3.6 PB (rounded down from 3.65 PB)"));
/// assert!(table.contains("1 TB = 10^12 B"));
/// ```
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    let which = if plan.inputs.is_source_design() {
        "the source design's inputs"
    } else {
        "custom inputs"
    };
    let _ = writeln!(out, "Chat capacity plan from {which}");
    let _ = writeln!(out, "({UNITS_NOTE})");
    let _ = writeln!(out);

    let _ = writeln!(out, "Inputs");
    let mut inputs = Table::with_header(&["input", "value"]);
    for row in input_rows(plan) {
        inputs.row(row);
    }
    inputs.render(&mut out);
    let _ = writeln!(out);

    let _ = writeln!(out, "Plan");
    let mut figures = Table::with_header(&["figure", "value", "source document"]);
    for figure in Figure::ALL {
        let stated = document_figure(figure)
            .map(|stated| stated.describe())
            .unwrap_or_default();
        figures.row(vec![figure.label(plan), figure.display(plan), stated]);
    }
    figures.render(&mut out);

    if !plan.inputs.is_source_design() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "The inputs differ from the source design: the source document column shows \
             the document's figures for its own inputs, for comparison."
        );
    }
    out
}

/// Renders a calibrated plan: what the run measured in place of which
/// assumption, then each figure from the assumed and the measured plan with
/// their ratio, then the caveats.
pub fn render_calibrated(calibrated: &CalibratedPlan) -> String {
    let mut out = String::new();
    let scenario = calibrated
        .scenario
        .as_deref()
        .map(|name| format!(" of scenario \"{name}\""))
        .unwrap_or_default();
    let gates = match calibrated.gates_passed {
        Some(true) => "latency gates passed",
        Some(false) => "latency gates FAILED",
        None => "latency gates not reported",
    };
    let _ = writeln!(
        out,
        "Capacity plan calibrated by a simulator run{scenario} ({gates})"
    );
    let _ = writeln!(out, "({UNITS_NOTE})");
    let _ = writeln!(out);

    let assumed_name = if calibrated.assumed_is_source_design {
        "source document"
    } else {
        "assumed"
    };

    let _ = writeln!(out, "Measured in place of assumptions");
    let mut replaced = Table::with_header(&["assumption", assumed_name, "measured"]);
    for replacement in &calibrated.replacements {
        let format = |value: Option<f64>, absent: &str| match value {
            Some(value) => replacement.quantity.format(value),
            None => absent.to_owned(),
        };
        replaced.row(vec![
            replacement.label.to_owned(),
            format(replacement.assumed, "not set"),
            format(replacement.measured, "not measured: assumption kept"),
        ]);
    }
    replaced.render(&mut out);
    let _ = writeln!(out);

    let _ = writeln!(out, "Plan");
    let ratio_header = format!("ratio (measured / {assumed_name})");
    let mut figures = Table::with_header(&["figure", assumed_name, "measured", &ratio_header]);
    for figure in Figure::ALL {
        let ratio = calibrated
            .ratio(figure)
            .map(format_ratio)
            .unwrap_or_default();
        figures.row(vec![
            figure.name().to_owned(),
            figure.display(&calibrated.assumed),
            figure.display(&calibrated.measured),
            ratio,
        ]);
    }
    figures.render(&mut out);

    if !calibrated.warnings.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Caveats");
        for warning in &calibrated.warnings {
            let _ = writeln!(out, "  - {warning}");
        }
    }
    out
}

/// Formats a ratio with enough digits to tell 1.00 from 1.004.
fn format_ratio(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("×{ratio:.0}")
    } else {
        format!("×{ratio:.2}")
    }
}

/// A plan as JSON: a `units` note, every [`Plan`] field (raw numbers, bytes
/// and per-second values) with the inputs under `inputs`, and the document's
/// stated figures under `source_document`. Serialize it with `serde_json`;
/// fields keep this order.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// Which units the numbers are in.
    pub units: &'static str,
    /// The plan's fields, at the top level.
    #[serde(flatten)]
    pub plan: &'a Plan,
    /// What the source document states, by figure name.
    pub source_document: BTreeMap<&'static str, StatedJson>,
}

/// One figure as the source document states it.
#[derive(Debug, Serialize)]
pub struct StatedJson {
    /// As written, e.g. `"3.6 PB"`.
    pub stated: &'static str,
    /// As a number in the figure's unit.
    pub stated_value: f64,
    /// How it was rounded, if it was.
    pub note: Option<&'static str>,
}

/// The JSON form of `plan`; see [`PlanJson`].
///
/// ```
/// let plan = estimation::Inputs::source_design().plan().unwrap();
/// let json = serde_json::to_value(estimation::report::plan_json(&plan)).unwrap();
/// assert_eq!(json["shards"], 913);
/// assert_eq!(json["storage_bytes_total"], 3.65e15);
/// assert_eq!(json["source_document"]["storage_bytes_total"]["stated"], "3.6 PB");
/// ```
pub fn plan_json(plan: &Plan) -> PlanJson<'_> {
    let source_document = Figure::ALL
        .iter()
        .filter_map(|&figure| {
            let stated = document_figure(figure)?;
            Some((
                figure.key(),
                StatedJson {
                    stated: stated.stated,
                    stated_value: stated.stated_value,
                    note: stated.note,
                },
            ))
        })
        .collect();
    PlanJson {
        units: UNITS_NOTE,
        plan,
        source_document,
    }
}

/// A calibrated plan as JSON: a `units` note, then the [`CalibratedPlan`]
/// fields: both plans in full under `assumed` and `measured`, `ratios` by
/// figure name, `replacements` and `warnings`.
#[derive(Debug, Serialize)]
pub struct CalibratedJson<'a> {
    /// Which units the numbers are in.
    pub units: &'static str,
    /// The calibrated plan's fields, at the top level.
    #[serde(flatten)]
    pub calibrated: &'a CalibratedPlan,
}

/// The JSON form of `calibrated`; see [`CalibratedJson`].
pub fn calibrated_json(calibrated: &CalibratedPlan) -> CalibratedJson<'_> {
    CalibratedJson {
        units: UNITS_NOTE,
        calibrated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inputs;

    #[test]
    fn table_is_aligned() {
        let mut table = Table::with_header(&["a", "bb"]);
        table.row(vec!["ccc".to_owned(), "d".to_owned()]);
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(out, "  a    bb\n  ---  --\n  ccc  d\n");
    }

    #[test]
    fn source_plan_table_shows_every_document_figure_and_rounding() {
        let table = render_plan(&Inputs::source_design().plan().unwrap());
        for expected in [
            "20 billion",
            "2 TB",
            "3.65 PB",
            "3.6 PB (rounded down from 3.65 PB)",
            "23.1 MB/s",
            "25 MB/s (rounded up from 23.1 MB/s)",
            "10,000 (bound by connections)",
            "913",
            "900, then 1 K",
            "decimal units",
        ] {
            assert!(table.contains(expected), "missing {expected:?} in\n{table}");
        }
        assert!(!table.contains("differ from the source design"));
    }

    #[test]
    fn custom_inputs_are_flagged() {
        let inputs = Inputs {
            daily_active_users: 1_000,
            ..Inputs::source_design()
        };
        let table = render_plan(&inputs.plan().unwrap());
        assert!(table.contains("custom inputs"));
        assert!(table.contains("differ from the source design"));
    }

    #[test]
    fn ratios_are_readable() {
        assert_eq!(format_ratio(1.0), "×1.00");
        assert_eq!(format_ratio(2.5), "×2.50");
        assert_eq!(format_ratio(250.4), "×250");
    }
}
