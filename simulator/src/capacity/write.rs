//! The capacity report's files: `capacity.json` (its shape fixed by
//! `simulator/schema/capacity.schema.json`; its `scenario` and `calibration` are what
//! `chat-estimate --calibrate` reads), `capacity.md` with the knee plots, and
//! `validation.json` / `validation.md` for `chat-sim validate`.

use std::path::Path;

use crate::report::md::{Block, plan_blocks, render_blocks};

use super::validate::{TARGET_ERROR, Validation};
use super::{CapacityReport, level_text, plot};

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}{unit}"))
}

fn bytes(v: f64) -> String {
    estimation::units::format_bytes(v)
}

fn json(dir: &Path, file: &str, value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(file), text + "\n")
}

/// Writes `capacity.json`, the plots and `capacity.md`.
pub fn capacity(dir: &Path, r: &CapacityReport) -> std::io::Result<()> {
    json(dir, "capacity.json", r)?;
    let plots = plot::knees(&dir.join("plots"), r)?;
    let mut d = vec![Block::Title(format!(
        "Capacity of one node: `{}`",
        r.scenario
    ))];
    d.push(Block::Para(format!(
        "{} search(es), {} steps of {} s at full load each, {} → {}; host: {} CPUs, open files {}. {}",
        r.searches.len(),
        r.steps.len(),
        r.hold_secs,
        r.started_at,
        r.finished_at,
        r.host_cpus,
        r.open_files_limit.map_or("—".into(), |n| n.to_string()),
        if r.passed {
            "PASSED.".to_owned()
        } else {
            format!("FAILED: {}", r.failures.join("; "))
        }
    )));
    d.push(Block::Heading("What one node sustains".into()));
    d.push(Block::Table {
        head: [
            "search",
            "highest passing",
            "first failing",
            "messages/s",
            "connections",
            "limited by",
        ]
        .map(String::from)
        .to_vec(),
        rows: r
            .searches
            .iter()
            .map(|s| {
                vec![
                    format!("{} (from {}, +{})", s.grow.name(), s.start, s.step),
                    s.highest_passing_level.map_or("none".into(), |l| {
                        format!("{} {}", level_text(s.grow, l), s.unit)
                    }),
                    s.lowest_failing_level.map_or("—".into(), |l| {
                        format!("{} {}", level_text(s.grow, l), s.unit)
                    }),
                    opt(s.messages_per_sec, 0, ""),
                    s.connections.map_or("—".into(), |c| c.to_string()),
                    s.limited_by.key().to_owned(),
                ]
            })
            .collect(),
    });
    d.push(Block::List(
        r.searches
            .iter()
            .map(|s| format!("{}: {}", s.grow.name(), s.limit_detail))
            .collect(),
    ));
    let c = &r.calibration;
    d.push(Block::Para(format!(
        "Calibration (`chat-estimate --calibrate capacity.json`): {} messages/s per node, {} connections per node, {} per connection, {} per node apart from its connections, {} µs of server CPU per message, settled {} per message{}.",
        opt(c.messages_per_sec_per_node, 0, ""),
        c.connections_per_node.map_or("—".into(), |n| n.to_string()),
        c.memory_bytes_per_connection.map_or("—".into(), bytes),
        c.memory_bytes_per_node.map_or("—".into(), bytes),
        opt(c.cpu_us_per_message, 1, ""),
        c.settled_bytes_per_message.map_or("—".into(), bytes),
        c.capacity_limited_by
            .map_or(String::new(), |l| format!("; limited by {}", l.key())),
    )));
    for p in &plots {
        d.push(Block::Image {
            file: p.file.clone(),
            title: p.title.clone(),
            caption: p.caption.clone(),
        });
    }
    d.push(Block::Heading("Steps".into()));
    d.push(Block::Table {
        head: [
            "step",
            "level",
            "conns",
            "msg/s",
            "p99 delivery",
            "server CPU",
            "load CPU",
            "host CPU",
            "RSS peak",
            "verdict",
            "run",
        ]
        .map(String::from)
        .to_vec(),
        rows: r
            .steps
            .iter()
            .map(|s| {
                let f = s.figures.as_ref();
                vec![
                    format!(
                        "{} {}{}",
                        s.grow.name(),
                        s.index,
                        if s.refinement { " (refine)" } else { "" }
                    ),
                    format!("{} {}", level_text(s.grow, s.level), s.grow.unit()),
                    f.map_or("—".into(), |f| f.connections_peak.to_string()),
                    f.map_or("—".into(), |f| format!("{:.0}", f.messages_per_sec)),
                    opt(f.and_then(|f| f.p99_send_to_delivery_ms), 1, " ms"),
                    opt(f.and_then(|f| f.server_cpu_percent), 0, " %"),
                    f.map_or("—".into(), |f| format!("{:.0} %", f.load_cpu_percent)),
                    opt(f.and_then(|f| f.host_cpu_percent), 0, " %"),
                    f.and_then(|f| f.server_rss_peak_bytes)
                        .map_or("—".into(), |b| bytes(b as f64)),
                    match (s.passed, s.limit) {
                        (true, None) if !s.earlier_attempts.is_empty() => format!(
                            "passed at attempt {} (before: {})",
                            s.earlier_attempts.len() + 1,
                            s.earlier_attempts
                                .iter()
                                .flat_map(|a| &a.failures)
                                .map(|f| f.trim_start_matches("GATE FAILED: "))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        (true, None) => "passed".into(),
                        (true, Some(l)) => format!("passed, {}", l.key()),
                        (false, l) => format!(
                            "failed ({}): {}",
                            l.map_or("—", |l| l.key()),
                            s.failures
                                .iter()
                                .map(|f| f.trim_start_matches("GATE FAILED: "))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    },
                    format!("[{}]({}/summary.md)", s.dir, s.dir),
                ]
            })
            .collect(),
    });
    for v in &r.validations {
        validation_blocks(&mut d, v);
    }
    d.push(Block::Heading(
        "Capacity plan at the source design's scale".into(),
    ));
    plan_blocks(
        &mut d,
        &r.capacity_table,
        &r.capacity_plan,
        "from this search",
    );
    d.push(Block::Heading("Notes".into()));
    d.push(Block::List(r.notes.clone()));
    std::fs::write(dir.join("capacity.md"), render_blocks(d))
}

fn validation_blocks(d: &mut Vec<Block>, v: &Validation) {
    d.push(Block::Heading(format!(
        "Validation: `{}` predicted from `{}`",
        v.target_dir, v.base_dir
    )));
    let model = match &v.base_costs {
        Some(c) => format!(
            "CPU and memory from the costs fitted to the smaller run's {} sample intervals: {}.",
            c.intervals,
            c.describe()
        ),
        None => "CPU in proportion to the messages and memory as the resident memory before the load plus a cost per connection: the smaller run's samples could not be fitted.".into(),
    };
    d.push(Block::Para(format!(
        "{:.2}× the offered messages/s and {:.2}× the connections, predicted from the smaller run only. Deliveries and disk per message; {model} Target: every error within ±{:.0} %: {}.",
        v.message_factor,
        v.connection_factor,
        TARGET_ERROR * 100.0,
        if v.within_target { "met" } else { "NOT met" }
    )));
    d.push(Block::Table {
        head: ["figure", "predicted", "measured", "error"]
            .map(String::from)
            .to_vec(),
        rows: v
            .figures
            .iter()
            .map(|f| {
                let show = |x: f64| {
                    if f.unit == "bytes" {
                        bytes(x)
                    } else {
                        format!("{x:.1} {}", f.unit)
                    }
                };
                vec![
                    f.figure.clone(),
                    show(f.predicted),
                    show(f.measured),
                    format!(
                        "{:+.1} %{}",
                        f.error * 100.0,
                        if f.within_target { "" } else { " ✗" }
                    ),
                ]
            })
            .collect(),
    });
}

/// Writes `validation.json` and `validation.md` of `chat-sim validate`.
pub fn validation(
    dir: &Path,
    scenario: &str,
    v: &Validation,
    passed: [bool; 2],
) -> std::io::Result<()> {
    json(dir, "validation.json", v)?;
    let mut d = vec![Block::Title(format!(
        "Validation of the plan's model: `{scenario}`"
    ))];
    if !passed.iter().all(|p| *p) {
        d.push(Block::Para(format!(
            "Gates: the base run {}, the larger run {} (see their summary.md): a run outside its gates is not a sustained load, so its figures say less.",
            if passed[0] { "passed" } else { "FAILED" },
            if passed[1] { "passed" } else { "FAILED" },
        )));
    }
    validation_blocks(&mut d, v);
    std::fs::write(dir.join("validation.md"), render_blocks(d))
}
