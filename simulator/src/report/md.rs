//! `summary.md`, the readable summary. Its content is built once as a list of [`Block`]s,
//! which `html.rs` renders too, so the two never disagree.

use super::json::Summary;
use super::plots::Plot;
use crate::metrics::Latency;

/// A piece of the report.
#[derive(Debug, Clone)]
pub enum Block {
    Title(String),
    Heading(String),
    Para(String),
    List(Vec<String>),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A plot from `plots/`.
    Image {
        file: String,
        title: String,
        caption: String,
    },
}

fn f(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("—".into(), |v| format!("{}{unit}", f(v)))
}

fn bytes(v: f64) -> String {
    estimation::units::format_bytes(v)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// The report's content.
pub fn document(s: &Summary, plots: &[Plot]) -> Vec<Block> {
    let mut d = Vec::new();
    let verdict = if s.passed { "PASSED" } else { "FAILED" };
    d.push(Block::Title(format!(
        "Scenario `{}`: {verdict}",
        s.scenario
    )));
    if !s.description.is_empty() {
        d.push(Block::Para(s.description.clone()));
    }
    if let Some(l) = s.simulator.load_limit.filter(|l| l.limited) {
        d.push(Block::Para(format!("**{}.**", l.describe())));
    }
    d.push(Block::Para(format!(
        "Run from {} to {} ({:.0} s) against {} ({}, store `{}`); scenario file `{}`{}.",
        s.started_at,
        s.finished_at,
        s.wall_secs,
        s.target.url,
        match s.target.kind.as_str() {
            "child" => "the server this run started",
            "cluster" => "the cluster this run started",
            _ => "an external server",
        },
        s.target.store,
        s.scenario_file,
        if s.overrides.is_empty() {
            String::new()
        } else {
            format!(" with `--set {}`", s.overrides.join(" "))
        }
    )));

    d.push(Block::Heading("Gates".into()));
    if s.failures.is_empty() {
        d.push(Block::Para("Every gate passed.".into()));
    } else {
        d.push(Block::List(s.failures.clone()));
    }
    d.push(Block::Table {
        head: row(&["gate", "threshold", "value", "result"]),
        rows: s
            .gates
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    g.threshold.map_or("—".into(), f),
                    g.value.map_or("—".into(), f),
                    if g.passed {
                        "pass".into()
                    } else {
                        "FAIL".into()
                    },
                ]
            })
            .collect(),
    });

    d.push(Block::Heading("Scale: simulated and real-world".into()));
    let sc = &s.scale;
    d.push(Block::Table {
        head: row(&["figure", "value"]),
        rows: vec![
            vec![
                "daily active users (real world)".into(),
                estimation::units::format_count(sc.daily_active_users as f64),
            ],
            vec!["scale factor".into(), format!("{}", sc.scale)],
            vec![
                "users simulated".into(),
                format!("{} (of {} asked)", sc.users_simulated, sc.users_requested),
            ],
            vec!["devices (WebSockets)".into(), sc.devices.to_string()],
            vec![
                "messages per user per simulated day".into(),
                f(sc.messages_per_user_per_day),
            ],
            vec![
                "a simulated day lasts".into(),
                format!(
                    "{} s ({}× compression)",
                    f(sc.day_seconds),
                    f(sc.time_compression)
                ),
            ],
            vec![
                "sends per user per second".into(),
                format!("{:.4}", sc.sends_per_user_per_sec),
            ],
            vec![
                "real-time users with the same message rate".into(),
                estimation::units::format_count(sc.real_world_users_by_message_rate),
            ],
            vec![
                format!(
                    "source-design nodes ({} users each) with that rate",
                    sc.connections_per_node_source
                ),
                f(sc.real_world_nodes_by_message_rate),
            ],
            vec![
                "peak connections as a share of one node's".into(),
                format!("{:.1} %", sc.share_of_node_connections * 100.0),
            ],
        ],
    });
    if let Some(note) = &s.host.cap_note {
        d.push(Block::Para(format!("**Host cap:** {note}.")));
    }

    d.push(Block::Heading("Load and throughput".into()));
    let l = &s.load;
    d.push(Block::Table {
        head: row(&["figure", "value"]),
        rows: vec![
            vec![
                "ramp-up, then full load".into(),
                format!(
                    "{} s, then {} s (load lasted {:.1} s)",
                    l.ramp_up_secs, l.duration_secs, l.load_secs
                ),
            ],
            vec![
                "intended sends per second at full load".into(),
                f(l.intended_sends_per_sec),
            ],
            vec![
                "sends due / written / acknowledged".into(),
                format!(
                    "{} / {} / {}",
                    l.sends_due, l.sends_written, l.messages_acknowledged
                ),
            ],
            vec![
                "messages acknowledged per second (full load)".into(),
                f(l.messages_per_sec),
            ],
            vec![
                "first deliveries to devices".into(),
                format!(
                    "{} ({}/s at full load)",
                    l.deliveries,
                    f(l.deliveries_per_sec)
                ),
            ],
            vec![
                "requests / failed / error rate".into(),
                format!(
                    "{} / {} / {:.4}",
                    l.requests, l.request_errors, l.error_rate
                ),
            ],
            vec!["peak connections".into(), l.connections_peak.to_string()],
            vec![
                "crossing sends (both users at the same instant)".into(),
                s.checks.crossing_sends.to_string(),
            ],
            vec![
                "groups".into(),
                format!(
                    "{} ({} created)",
                    s.features.groups, s.features.groups_created
                ),
            ],
            vec!["presence pulls".into(), s.features.presence.clone()],
        ],
    });

    d.push(Block::Heading("Latency (ms, from intended times)".into()));
    d.push(Block::Table {
        head: row(&["measurement", "count", "p50", "p90", "p99", "p99.9", "max"]),
        rows: Latency::ALL
            .iter()
            .filter_map(|l| {
                let x = s.latency_ms.get(l.key()).copied().flatten()?;
                Some(vec![
                    l.label().to_owned(),
                    x.count.to_string(),
                    f(x.p50_ms),
                    f(x.p90_ms),
                    f(x.p99_ms),
                    f(x.p999_ms),
                    f(x.max_ms),
                ])
            })
            .collect(),
    });
    d.push(Block::Para(
        "Each latency runs from the action's intended time to the answer's arrival: a WebSocket \
         frame's when it reached the simulator's socket (the kernel's receive timestamp), an \
         HTTP answer's when it was read. How late the simulator woke and read a frame is not \
         in them: it is in its own delay after an arrival. Its own delay before a send (its \
         timer and runtime) is in every send's latency, as the open model wants, and shown \
         apart in the last row."
            .into(),
    ));

    d.push(Block::Heading("Checks".into()));
    let c = &s.checks;
    d.push(Block::Para(format!(
        "{} acknowledged messages checked on {} devices ({} inbox entries, {} conversations).",
        c.messages_checked, c.devices_checked, c.entries_checked, c.conversations_checked
    )));
    d.push(Block::Table {
        head: row(&["check", "what it proves", "faults", "result"]),
        rows: c
            .results
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.description.clone(),
                    r.faults.to_string(),
                    match (r.passed, r.gated) {
                        (true, _) => "pass".into(),
                        (false, true) => "FAIL".into(),
                        (false, false) => "fail (not gated)".into(),
                    },
                ]
            })
            .collect(),
    });
    let examples: Vec<String> = c
        .results
        .iter()
        .flat_map(|r| r.examples.iter().map(move |e| format!("{}: {e}", r.name)))
        .collect();
    if !examples.is_empty() {
        d.push(Block::List(examples));
    }
    d.push(Block::Heading("Anomalies".into()));
    d.push(Block::Para(
        "The same faults in Jepsen's terms: what each would be to a user of the history. Each kind is zero or shown with examples.".into(),
    ));
    d.push(Block::Table {
        head: row(&["anomaly", "what it is", "count", "examples"]),
        rows: c
            .anomalies
            .iter()
            .map(|a| {
                vec![
                    a.kind.clone(),
                    a.description.clone(),
                    a.count.to_string(),
                    if a.examples.is_empty() {
                        "—".into()
                    } else {
                        a.examples
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                ]
            })
            .collect(),
    });

    if let Some(c) = &s.cluster {
        d.extend(super::cluster_md::blocks(c));
    }
    d.push(Block::Heading("Storage".into()));
    storage_section(&mut d, &s.storage);

    d.push(Block::Heading("Server and simulator resources".into()));
    let mut res = Vec::new();
    if let Some(sv) = &s.server {
        res.push(vec![
            "server CPU".into(),
            format!(
                "{:.1} s ({:.0} % of one core on average)",
                sv.cpu_secs, sv.cpu_percent_mean
            ),
        ]);
        res.push(vec![
            "server CPU per message".into(),
            opt(sv.cpu_us_per_message, " µs"),
        ]);
        res.push(vec![
            "server memory start / peak / end".into(),
            format!(
                "{} / {} / {}",
                bytes(sv.rss_bytes_start as f64),
                bytes(sv.rss_bytes_peak as f64),
                bytes(sv.rss_bytes_end as f64)
            ),
        ]);
        res.push(vec![
            "server memory per connection (RSS growth / connections)".into(),
            sv.memory_bytes_per_connection.map_or("—".into(), bytes),
        ]);
        if let Some(n) = &sv.node_memory {
            res.push(vec![
                "server memory with the store's memtables at their bound".into(),
                n.describe(),
            ]);
        }
        res.push(vec![
            "server costs fitted to the samples".into(),
            sv.costs.map_or(
                "— (too few samples, no ramp to tell the terms apart, or a fit that found a negative cost)".into(),
                |c| c.describe(),
            ),
        ]);
        if let Some(t) = &sv.trend {
            res.push(vec![
                "server growth over the second half of the steady load".into(),
                format!(
                    "memory {:+.2} MiB/min ({:.0} → {:.0} MiB), open files {:+.1}/min ({} → {}), threads {:+.1}/min ({} → {}), runtime tasks {} — over {:.0} s from {:.0} s",
                    t.rss_mib_per_min,
                    t.rss_mib[0],
                    t.rss_mib[1],
                    t.open_fds_per_min,
                    t.open_fds[0],
                    t.open_fds[1],
                    t.threads_per_min,
                    t.threads[0],
                    t.threads[1],
                    match (t.tasks_per_min, t.tasks) {
                        (Some(v), Some([a, b, _])) => format!("{v:+.1}/min ({a} → {b})"),
                        _ => "not reported".into(),
                    },
                    t.to_secs - t.from_secs,
                    t.from_secs,
                ),
            ]);
        }
    } else {
        res.push(vec![
            "server".into(),
            "not sampled (external target)".into(),
        ]);
    }
    res.push(vec![
        "simulator CPU".into(),
        format!(
            "{:.1} s in {} load process(es)",
            s.simulator.cpu_secs, s.host.load_processes
        ),
    ]);
    res.push(vec![
        "simulator CPU per message".into(),
        match s.simulator.cpu_per_message_vs_server {
            Some(r) => format!(
                "{} ({:.2}× the server's)",
                opt(s.simulator.cpu_us_per_message, " µs"),
                r
            ),
            None => opt(s.simulator.cpu_us_per_message, " µs"),
        },
    ]);
    res.push(vec![
        "load generator the limit?".into(),
        s.simulator.load_limit.map_or(
            "— (too few samples of the full load to tell)".into(),
            |l| l.describe(),
        ),
    ]);
    if !s.close_codes.is_empty() {
        res.push(vec![
            "connections the server closed, by close code".into(),
            s.close_codes
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    d.push(Block::Table {
        head: row(&["figure", "value"]),
        rows: res,
    });

    d.push(Block::Heading(
        "Capacity plan at the source design's scale".into(),
    ));
    d.push(Block::Para(format!(
        "The estimation crate's plan for 500 M daily users with this run's measurements (bytes per message {}, messages/s per node {}, connections per node {}, memory per connection {}, per node apart from its connections {}) in place of the assumptions, beside the source design's own figures. The same numbers: `chat-estimate --calibrate summary.json`.",
        opt(s.calibration.bytes_per_message_on_disk, " B"),
        opt(s.calibration.messages_per_sec_per_node, "")
            .replace('—', "— (not a capacity run)"),
        s.calibration
            .connections_per_node
            .map_or("— (not a capacity run)".into(), |c| c.to_string()),
        s.calibration.memory_bytes_per_connection.map_or("—".into(), bytes),
        s.calibration.memory_bytes_per_node.map_or("—".into(), bytes),
    )));
    plan_blocks(&mut d, &s.capacity_table, &s.capacity_plan, "from this run");

    if let Some(b) = &s.baseline {
        d.push(Block::Heading("Against the baseline".into()));
        d.push(Block::Para(format!(
            "Baseline `{}`, tolerance {:.0} %.",
            b.path,
            b.tolerance * 100.0
        )));
        d.push(Block::List(
            b.results.iter().map(|g| g.detail.clone()).collect(),
        ));
    }

    d.push(Block::Heading("Goose requests".into()));
    d.push(Block::Para(format!(
        "Goose ran the users and kept its own report: {}.",
        if s.goose.report_files.is_empty() {
            "none written".to_owned()
        } else {
            s.goose.report_files.join(", ")
        }
    )));
    d.push(Block::Table {
        head: row(&["request", "ok", "failed", "mean ms", "max ms"]),
        rows: s
            .goose
            .requests
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    g.ok.to_string(),
                    g.failed.to_string(),
                    f(g.mean_ms),
                    f(g.max_ms),
                ]
            })
            .collect(),
    });

    d.push(Block::Heading("Plots".into()));
    for p in plots {
        d.push(Block::Image {
            file: p.file.clone(),
            title: p.title.clone(),
            caption: p.caption.clone(),
        });
    }
    if !s.notes.is_empty() {
        d.push(Block::Heading("Notes".into()));
        d.push(Block::List(s.notes.clone()));
    }
    d
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The capacity plan's table (each figure as the document gives it, the source design's
/// exact value, the measured one and their ratio) and the plan's warnings; `measured` heads
/// the measured column.
pub fn plan_blocks(
    d: &mut Vec<Block>,
    rows: &[super::json::PlanRow],
    plan: &serde_json::Value,
    measured: &str,
) {
    d.push(Block::Table {
        head: row(&[
            "figure",
            "the document says",
            "source design (exact)",
            measured,
            "ratio",
        ]),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.figure.clone(),
                    r.document.clone().unwrap_or_else(|| "—".into()),
                    r.source_design_text.clone(),
                    r.this_run_text.clone(),
                    r.ratio.map_or("—".into(), |x| format!("{x:.2}×")),
                ]
            })
            .collect(),
    });
    if let Some(w) = plan
        .get("warnings")
        .and_then(|w| w.as_array())
        .filter(|w| !w.is_empty())
    {
        d.push(Block::List(
            w.iter()
                .filter_map(|x| x.as_str().map(|x| format!("plan: {x}")))
                .collect(),
        ));
    }
}

/// Markdown text of the report.
pub fn render(s: &Summary, plots: &[Plot]) -> String {
    render_blocks(document(s, plots))
}

/// Markdown text of any document made of blocks (the capacity report's too).
pub fn render_blocks(blocks: Vec<Block>) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => out.push_str(&format!("# {t}\n\n")),
            Block::Heading(h) => out.push_str(&format!("## {h}\n\n")),
            Block::Para(p) => out.push_str(&format!("{p}\n\n")),
            Block::List(items) => {
                for i in items {
                    out.push_str(&format!("- {}\n", i.replace('\n', " ")));
                }
                out.push('\n');
            }
            Block::Table { head, rows } => {
                out.push_str(&format!(
                    "| {} |\n",
                    head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
                ));
                out.push_str(&format!("|{}\n", " --- |".repeat(head.len())));
                for r in rows {
                    out.push_str(&format!(
                        "| {} |\n",
                        r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                    ));
                }
                out.push('\n');
            }
            Block::Image {
                file,
                title,
                caption,
            } => out.push_str(&format!("![{title}](plots/{file})\n\n*{caption}*\n\n")),
        }
    }
    out
}

/// The storage figures: settled (what five years of messages occupy) beside what the run
/// saw while it went on (journal and unflushed memtables), by table.
fn storage_section(d: &mut Vec<Block>, st: &crate::storage::StorageFigures) {
    if st.bytes_per_message.is_none() && st.settled.is_none() {
        d.push(Block::Para(format!(
            "Bytes on disk not measured: {}.",
            st.note.clone().unwrap_or_default()
        )));
        return;
    }
    let per_b = |v: Option<f64>| v.map_or("—".into(), |b| format!("{b:.1} B"));
    let by_table = |f: &Option<crate::storage::TableFigures>, t: &str| {
        per_b(
            f.as_ref()
                .and_then(|f| f.bytes_per_message_by_table.get(t).copied()),
        )
    };
    let (set, tr) = (&st.settled, &st.transient);
    let mut rows = vec![vec![
        "bytes on disk per message (retention; idempotency apart)".into(),
        per_b(set.as_ref().and_then(|f| f.bytes_per_message)),
        per_b(st.bytes_per_message),
        "100 B".into(),
    ]];
    for (t, label) in [
        ("messages", "… messages"),
        ("inbox", "… inbox entries"),
        ("markers", "… markers and counters"),
        ("other", "… groups, push, other"),
        (
            "idempotency",
            "idempotency records per message (kept one window)",
        ),
    ] {
        rows.push(vec![
            label.into(),
            by_table(set, t),
            by_table(tr, t),
            "—".into(),
        ]);
    }
    rows.push(vec![
        "write-ahead journal per message (not data)".into(),
        per_b(set.as_ref().and_then(|f| f.journal_bytes_per_message)),
        per_b(tr.as_ref().and_then(|f| f.journal_bytes_per_message)),
        "—".into(),
    ]);
    rows.push(vec![
        "compression (logical ÷ on disk)".into(),
        opt(set.as_ref().and_then(|f| f.compression_ratio), "×"),
        opt(tr.as_ref().and_then(|f| f.compression_ratio), "×"),
        "—".into(),
    ]);
    rows.push(vec![
        "mean body size".into(),
        opt(st.mean_body_bytes, " B"),
        opt(st.mean_body_bytes, " B"),
        "100 B".into(),
    ]);
    rows.push(vec![
        "disk bytes per body byte (target ≤ 1.5 settled)".into(),
        opt(st.settled_bytes_per_body_byte, ""),
        opt(st.bytes_per_body_byte, ""),
        "1".into(),
    ]);
    rows.push(vec![
        "storage per day at 20 B messages/day".into(),
        st.settled_bytes_per_day.map_or("—".into(), bytes),
        st.measured_bytes_per_day.map_or("—".into(), bytes),
        bytes(st.source_bytes_per_day),
    ]);
    rows.push(vec![
        "storage over 5 years".into(),
        st.settled_bytes_five_years.map_or("—".into(), bytes),
        st.measured_bytes_five_years.map_or("—".into(), bytes),
        bytes(st.source_bytes_five_years),
    ]);
    d.push(Block::Table {
        head: row(&["figure", "settled", "while running", "source design"]),
        rows,
    });
    if let Some(note) = &st.settled_note {
        d.push(Block::Para(format!("Not settled: {note}.")));
    }
    d.push(Block::Para(format!(
        "Settled: the run's data flushed and compacted after the run, journal apart. While \
         running: the store's growth as the run saw it (journal and unflushed memtables \
         included). Idempotency records are kept for one {:.0} h window, so the 5-year \
         figure counts them once, not per message of the retention.",
        st.idempotency_window_secs / 3600.0
    )));
}
