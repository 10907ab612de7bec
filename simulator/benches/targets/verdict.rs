//! Each performance target against its measurement: the figure compared, the raw
//! figures behind it, met or not — or not run, and why — and where the figure came from.

use serde::Serialize;

use crate::figures::{DelayFigures, DeliveryFigures, SimSummary};
use crate::node_rate::NodeRate;
use crate::peer::{
    GeneratorReach, PeerRun, faults, faults_note, generator_reach, idle_median, median_of,
    rep_ratios,
};

/// How a figure is held against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    AtLeast,
    AtMost,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "why", rename_all = "snake_case")]
pub enum Status {
    Met,
    NotMet,
    /// Not measured: the part was not chosen, needs a flag, or failed (the reason says).
    NotRun(String),
}

impl Status {
    pub fn text(&self) -> String {
        match self {
            Status::Met => "met".into(),
            Status::NotMet => "NOT met".into(),
            Status::NotRun(why) => format!("not run ({why})"),
        }
    }
}

/// One target's line.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `1a`, `2b`, …: the target's number and which of its figures.
    pub id: &'static str,
    pub target: String,
    /// The figure held against the limit (a ratio, milliseconds, KiB, percent).
    pub value: Option<f64>,
    pub cmp: Cmp,
    pub limit: f64,
    /// The figure as printed, with the raw figures it came from.
    pub measured: String,
    pub status: Status,
    pub source: String,
}

/// Whether `value` keeps to the limit; a figure that is not a number is not a measurement.
pub fn judge(value: f64, cmp: Cmp, limit: f64) -> Status {
    if !value.is_finite() {
        return Status::NotRun("no finite figure".into());
    }
    let ok = match cmp {
        Cmp::AtLeast => value >= limit,
        Cmp::AtMost => value <= limit,
    };
    if ok { Status::Met } else { Status::NotMet }
}

/// a / b, when both are figures and b is above zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

/// Thousands with separators: 23598.4 → "23,598".
pub fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Milliseconds with sensible precision.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// A target not yet measured; `measure` or `missing` finishes it.
struct Spec {
    id: &'static str,
    target: String,
    cmp: Cmp,
    limit: f64,
}

fn spec(id: &'static str, target: impl Into<String>, cmp: Cmp, limit: f64) -> Spec {
    Spec {
        id,
        target: target.into(),
        cmp,
        limit,
    }
}

impl Spec {
    fn measure(self, value: f64, measured: String, source: impl Into<String>) -> Row {
        Row {
            id: self.id,
            status: judge(value, self.cmp, self.limit),
            value: Some(value),
            target: self.target,
            cmp: self.cmp,
            limit: self.limit,
            measured,
            source: source.into(),
        }
    }

    fn missing(self, why: impl Into<String>, source: impl Into<String>) -> Row {
        Row {
            id: self.id,
            status: Status::NotRun(why.into()),
            value: None,
            target: self.target,
            cmp: self.cmp,
            limit: self.limit,
            measured: "-".into(),
            source: source.into(),
        }
    }

    /// `measure` with the value when there is one, `missing` with `why` otherwise.
    fn maybe(self, v: Option<(f64, String)>, why: &str, source: impl Into<String>) -> Row {
        match v {
            Some((value, text)) => self.measure(value, text, source),
            None => self.missing(why, source),
        }
    }
}

/// A measurement's outcome: its figures, or why there are none (not chosen, no
/// `--peer-bench`, or the error it failed with).
pub type Outcome<T> = Result<T, String>;

/// Everything the parts measured.
pub struct Figures {
    pub sat: Outcome<Vec<PeerRun>>,
    pub rate: Outcome<Vec<PeerRun>>,
    pub idle: Outcome<Vec<PeerRun>>,
    pub fjall_latency: Outcome<DeliveryFigures>,
    /// peerbench `rate` at target 2b's rate, ours-fjall and cf-history with the server
    /// pinned to one core: what either server does at that rate, beside target 2b.
    pub fjall_rate: Outcome<Vec<PeerRun>>,
    pub seed_node: Outcome<SimSummary>,
    /// peerbench `rate` at seed-node's load, ours-fjall and cf-history: what a well-known
    /// server and a minimal generator cost there, beside targets 3 and 5.
    pub node_rate: Outcome<NodeRate>,
    pub smoke: Outcome<SimSummary>,
    pub delay: Outcome<DelayFigures>,
    /// Repetitions peerbench ran per configuration (for the source column).
    pub reps: u32,
}

/// The fixed rate of target 2 with the memory store, msgs/s.
pub const FIXED_RATE: f64 = 11_500.0;
/// The idle step of target 4, connections.
pub const IDLE_CONNS: u64 = 10_000;

/// Every target's row, in the order.
pub fn rows(f: &Figures) -> Vec<Row> {
    let mut out = Vec::new();
    throughput(f, &mut out);
    latency(f, &mut out);
    cpu_at_seed_node(f, &mut out);
    memory(f, &mut out);
    load_generator_cpu(f, &mut out);
    delay(f, &mut out);
    out
}

fn sat_source(f: &Figures, ours: &str, theirs: &str) -> String {
    format!(
        "peerbench sat, {ours} vs {theirs}, medians of {} (server pinned to one core)",
        f.reps
    )
}

/// Target 1: delivered msgs/s per core against Centrifugo's.
fn throughput(f: &Figures, out: &mut Vec<Row>) {
    for (id, ours, theirs, limit, what) in [
        (
            "1a",
            "ours-fjall",
            "cf-history",
            1.0,
            "fjall msgs/s per core ≥ 1.0× Centrifugo with history",
        ),
        (
            "1b",
            "ours-memory",
            "cf-memory",
            2.0,
            "memory msgs/s per core ≥ 2.0× Centrifugo memory engine",
        ),
    ] {
        let s = spec(id, what, Cmp::AtLeast, limit);
        let source = sat_source(f, ours, theirs);
        let runs = match &f.sat {
            Ok(r) => r,
            Err(why) => {
                out.push(s.missing(why.clone(), source));
                continue;
            }
        };
        let a = median_of(runs, ours, "sat", |r| r.msgs_per_s);
        let b = median_of(runs, theirs, "sat", |r| r.msgs_per_s);
        let v = match (a, b) {
            (Some(a), Some(b)) => ratio(a.value, b.value).map(|r| {
                let util = generator_reach(runs, ours, "sat")
                    .map_or(String::new(), |g| reach_note(g, b.value, limit));
                let per_rep = rep_ratios(runs, ours, theirs, "sat", |r| r.msgs_per_s);
                let spread = if per_rep.len() > 1 {
                    let list: Vec<String> = per_rep.iter().map(|x| format!("{x:.2}×")).collect();
                    format!("; by repetition {}", list.join(", "))
                } else {
                    String::new()
                };
                (
                    r,
                    format!(
                        "{r:.2}× ({} vs {} msgs/s{spread}){util}{}{}",
                        thousands(a.value),
                        thousands(b.value),
                        faults_note(runs, ours, "sat"),
                        faults_note(runs, theirs, "sat"),
                    ),
                )
            }),
            _ => None,
        };
        out.push(s.maybe(v, "no saturation figure in the results", source));
    }
}

/// Where the neutral load generator bounds a saturation figure: said when its core was
/// at least 90 % busy, or when even a server that cost nothing could not have shown
/// `limit` × `theirs` with it (its core full at [`GeneratorReach::ceiling`] msgs/s).
/// The measured ratio is still the row's figure; this says how much of it the generator
/// could have shown.
fn reach_note(g: GeneratorReach, theirs: f64, limit: f64) -> String {
    let most = ratio(g.ceiling(), theirs);
    let out_of_reach = most.is_some_and(|m| m < limit);
    if g.util < 0.9 && !out_of_reach {
        return String::new();
    }
    let mut note = format!(
        "; load generator at {:.0}% of its core ({:.1} µs per message): at most {} msgs/s",
        100.0 * g.util,
        g.us_per_msg,
        thousands(g.ceiling()),
    );
    if let Some(m) = most {
        note.push_str(&format!(", {m:.2}×"));
    }
    note.push_str(if out_of_reach {
        ", so this machine cannot show the target"
    } else {
        ": a lower bound"
    });
    note
}

/// Target 2: p99 at the fixed rate (memory), and at half of fjall's saturation.
fn latency(f: &Figures, out: &mut Vec<Row>) {
    let s = spec(
        "2a",
        "memory p99 send→delivery at 11,500 msgs/s ≤ 5 ms",
        Cmp::AtMost,
        5.0,
    );
    let source = format!(
        "peerbench rate -rate 11500, ours-memory (cf-memory beside it), medians of {}",
        f.reps
    );
    match &f.rate {
        Err(why) => out.push(s.missing(why.clone(), source)),
        Ok(runs) => {
            let v = median_of(runs, "ours-memory", "rate", |r| r.p99_ms).map(|m| {
                let cf = median_of(runs, "cf-memory", "rate", |r| r.p99_ms)
                    .map_or(String::new(), |c| {
                        format!(" (Centrifugo memory engine: {})", ms(c.value))
                    });
                (
                    m.value,
                    format!(
                        "{}{cf}{}",
                        ms(m.value),
                        faults_note(runs, "ours-memory", "rate")
                    ),
                )
            });
            out.push(s.maybe(v, "no rate figure in the results", source));
        }
    }

    let p99 = spec(
        "2b",
        "fjall p99 send→delivery at half its saturation ≤ 10 ms",
        Cmp::AtMost,
        10.0,
    );
    let worst = spec(
        "2c",
        "fjall at half its saturation: no second over 50 ms",
        Cmp::AtMost,
        50.0,
    );
    let base = match &f.sat {
        Ok(_) => {
            "delivery bench --stores fjall --rate (half the peerbench fjall sat median) --timeline"
        }
        Err(_) => {
            "delivery bench --stores fjall --timeline: its own closed loop, then half that rate"
        }
    };
    let source = match &f.fjall_rate {
        Ok(_) => format!(
            "{base}; beside it peerbench rate at that rate, ours-fjall and cf-history, medians of {}",
            f.reps
        ),
        Err(_) => base.to_string(),
    };
    match &f.fjall_latency {
        Err(why) => {
            out.push(p99.missing(why.clone(), source));
            out.push(worst.missing(why.clone(), base));
        }
        Ok(d) => {
            let faults = if d.lost + d.violations + d.behind > 0 {
                format!(
                    "; {} lost, {} violations, {} sends behind schedule",
                    d.lost, d.violations, d.behind
                )
            } else {
                String::new()
            };
            let beside = open_loop_beside(f);
            let v = d.p99_ms.map(|p| {
                (
                    p,
                    format!("{} at {} msgs/s{faults}{beside}", ms(p), thousands(d.rate)),
                )
            });
            out.push(p99.maybe(v, "no latency measured", source));
            let v = d.worst_second.map(|(sec, m)| {
                (
                    m,
                    format!("worst of {} s: {} (second {sec})", d.window_seconds, ms(m)),
                )
            });
            out.push(worst.maybe(v, "no second measured", base));
        }
    }
}

/// What peerbench measured at target 2b's rate for either server, each pinned to one
/// core: their p99 and how busy the core was. At a rate a server cannot carry in an open
/// model its latency is its queue's, whatever its closed-loop figure said, and this shows
/// whether the rate is beyond the peer as well. Empty when peerbench did not run.
fn open_loop_beside(f: &Figures) -> String {
    let Ok(runs) = &f.fjall_rate else {
        return String::new();
    };
    let one = |config: &str, name: &str| {
        let p99 = median_of(runs, config, "rate", |r| r.p99_ms)?;
        let util = median_of(runs, config, "rate", |r| r.server_cpu_util)
            .map_or(String::new(), |u| {
                format!(", its core {:.0} % busy", 100.0 * u.value)
            });
        let faults = faults(runs, config, "rate").map_or(String::new(), |f| format!(" ({f})"));
        Some(format!("{name} {}{util}{faults}", ms(p99.value)))
    };
    let found: Vec<String> = [
        ("ours-fjall", "ours"),
        ("cf-history", "Centrifugo with history"),
    ]
    .iter()
    .filter_map(|(c, n)| one(c, n))
    .collect();
    if found.is_empty() {
        String::new()
    } else {
        format!(
            "; peerbench p99 at that rate, server pinned to one core: {}",
            found.join("; ")
        )
    }
}

/// The saturated fjall CPU per message, and where it came from.
fn saturated_us(f: &Figures) -> Result<(f64, String), String> {
    match &f.sat {
        Ok(runs) => median_of(runs, "ours-fjall", "sat", |r| r.server_cpu_us_per_msg)
            .map(|m| {
                (
                    m.value,
                    format!("peerbench sat ours-fjall median of {}", m.runs),
                )
            })
            .ok_or_else(|| "no fjall saturation CPU figure".into()),
        Err(why) => match &f.fjall_latency {
            Ok(DeliveryFigures {
                closed: Some((_, Some(us))),
                ..
            }) => Ok((*us, "delivery bench fjall closed loop".into())),
            _ => Err(format!("saturation: {why}")),
        },
    }
}

/// A configuration's saturated CPU per message (peerbench `sat` median), for the notes
/// that set a figure at seed-node's load beside it.
fn saturated_config_us(f: &Figures, config: &str) -> Option<f64> {
    let runs = f.sat.as_ref().ok()?;
    median_of(runs, config, "sat", |r| r.server_cpu_us_per_msg).map(|m| m.value)
}

/// `note` of the `node-rate` part's figures, empty without them.
fn node_rate_note(f: &Figures, note: impl Fn(&NodeRate) -> Option<String>) -> String {
    f.node_rate.as_ref().ok().and_then(note).unwrap_or_default()
}

/// The `node-rate` part in a row's source, when it measured.
fn node_rate_source(f: &Figures) -> &'static str {
    match &f.node_rate {
        Ok(_) => "; peerbench rate at seed-node's load, medians",
        Err(_) => "",
    }
}

/// Target 3: server CPU per message at seed-node's load against saturation.
fn cpu_at_seed_node(f: &Figures, out: &mut Vec<Row>) {
    let raw = spec(
        "3a",
        "seed-node server CPU/msg ≤ 2× saturated (fjall)",
        Cmp::AtMost,
        2.0,
    );
    let fit = spec(
        "3b",
        "seed-node fitted CPU/msg term ≤ 2× saturated (fjall)",
        Cmp::AtMost,
        2.0,
    );
    let sat = saturated_us(f);
    let seed = f.seed_node.as_ref();
    let both = match (&sat, seed) {
        (Ok(s), Ok(seed)) => Ok((s, seed)),
        (Err(why), _) | (_, Err(why)) => Err(why.clone()),
    };
    let src = |what: &str| match &sat {
        Ok((_, from)) => format!("seed-node summary.json {what} / {from}"),
        Err(_) => format!("seed-node summary.json {what} / peerbench sat ours-fjall"),
    };
    match both {
        Err(why) => {
            out.push(raw.missing(why.clone(), src("server.cpu_us_per_message")));
            out.push(fit.missing(why, src("server.costs.cpu_us_per_message")));
        }
        Ok(((sat_us, _), seed)) => {
            let server = seed.server.as_ref();
            let note = seed.gates_note();
            let peers = node_rate_note(f, |n| n.server_note(|c| saturated_config_us(f, c)));
            let v = server.and_then(|s| s.cpu_us_per_message).and_then(|us| {
                ratio(us, *sat_us).map(|r| {
                    (
                        r,
                        format!(
                            "{r:.2}× ({us:.0} vs {sat_us:.0} µs/msg at {:.0} msgs/s){note}{peers}",
                            seed.load.messages_per_sec
                        ),
                    )
                })
            });
            out.push(raw.maybe(
                v,
                "the run has no server CPU figure",
                src("server.cpu_us_per_message") + node_rate_source(f),
            ));
            let v = server.and_then(|s| s.costs).and_then(|c| {
                ratio(c.cpu_us_per_message, *sat_us).map(|r| {
                    (
                        r,
                        format!(
                            "{r:.2}× ({:.0} vs {sat_us:.0} µs/msg, fit R² {:.2})",
                            c.cpu_us_per_message, c.cpu_fit_r2
                        ),
                    )
                })
            });
            out.push(fit.maybe(
                v,
                "the run fitted no costs",
                src("server.costs.cpu_us_per_message"),
            ));
        }
    }
}

/// Target 4: idle connections, and connections under seed-node's load.
fn memory(f: &Figures, out: &mut Vec<Row>) {
    for (id, config, what) in [
        (
            "4a",
            "ours-memory",
            "idle WebSocket ≤ 5 KiB at 10 K (memory store)",
        ),
        (
            "4b",
            "ours-fjall",
            "idle WebSocket ≤ 5 KiB at 10 K (fjall store)",
        ),
    ] {
        let s = spec(id, what, Cmp::AtMost, 5.0);
        let source = format!(
            "peerbench idle {config}, RSS growth / connections at the {IDLE_CONNS} step, median of {}",
            f.reps
        );
        match &f.idle {
            Err(why) => out.push(s.missing(why.clone(), source)),
            Ok(runs) => {
                let v = idle_median(runs, config, IDLE_CONNS)
                    .map(|m| (m.value, format!("{:.2} KiB", m.value)));
                out.push(s.maybe(v, "no 10,000 step in the results", source));
            }
        }
    }
    let raw = spec(
        "4c",
        "memory per connection under seed-node load ≤ 8 KiB",
        Cmp::AtMost,
        8.0,
    );
    let fit = spec(
        "4d",
        "fitted memory per connection held (seed-node) ≤ 8 KiB",
        Cmp::AtMost,
        8.0,
    );
    let raw_src =
        "seed-node summary.json server.memory_bytes_per_connection (RSS growth / connections held)";
    let fit_src = "seed-node summary.json server.costs.rss_bytes_per_connection";
    match &f.seed_node {
        Err(why) => {
            out.push(raw.missing(why.clone(), raw_src));
            out.push(fit.missing(why.clone(), fit_src));
        }
        Ok(seed) => {
            let server = seed.server.as_ref();
            // The run's memtables are part of the RSS growth: say how much, and what the
            // capacity plan counts instead.
            let split = server.and_then(|s| s.node_memory).map_or(String::new(), |n| {
                format!(
                    "; it carries the {:.1} MiB the run's messages filled in the memtables: the plan counts {:.2} KiB a connection + {:.0} MiB per node with the memtables at their bound",
                    n.tables_peak_bytes as f64 / 1048576.0,
                    n.bytes_per_connection / 1024.0,
                    n.node_bytes / 1048576.0
                )
            });
            let v = server.and_then(|s| s.memory_bytes_per_connection).map(|b| {
                let kib = b / 1024.0;
                (
                    kib,
                    format!(
                        "{kib:.2} KiB at {} connections{split}",
                        thousands(server.map_or(0, |s| s.connections_peak) as f64)
                    ),
                )
            });
            out.push(raw.maybe(v, "the run has no memory figure", raw_src));
            let v = server.and_then(|s| s.costs).map(|c| {
                let kib = c.rss_bytes_per_connection / 1024.0;
                (kib, format!("{kib:.2} KiB (fit R² {:.2})", c.rss_fit_r2))
            });
            out.push(fit.maybe(v, "the run fitted no costs", fit_src));
        }
    }
}

/// Target 5: the simulator's CPU per message against the server's.
fn load_generator_cpu(f: &Figures, out: &mut Vec<Row>) {
    for (id, run, name) in [("5a", &f.seed_node, "seed-node"), ("5b", &f.smoke, "smoke")] {
        let s = spec(
            id,
            format!("{name}: simulator CPU/msg ≤ 0.5× the server's"),
            Cmp::AtMost,
            0.5,
        );
        let mut source =
            format!("{name} summary.json simulator.cpu_us_per_message / server.cpu_us_per_message");
        // peerbench ran at seed-node's load only.
        let peers = if id == "5a" {
            source.push_str(node_rate_source(f));
            node_rate_note(f, NodeRate::generator_note)
        } else {
            String::new()
        };
        match run {
            Err(why) => out.push(s.missing(why.clone(), source)),
            Ok(sum) => {
                let server = sum.server.as_ref().and_then(|s| s.cpu_us_per_message);
                let v = match (sum.simulator.cpu_us_per_message, server) {
                    (Some(sim), Some(srv)) => ratio(sim, srv).map(|r| {
                        (
                            r,
                            format!(
                                "{r:.2}× ({sim:.0} vs {srv:.0} µs/msg){}{peers}",
                                sum.gates_note()
                            ),
                        )
                    }),
                    _ => None,
                };
                out.push(s.maybe(v, "the run has no CPU per message", source));
            }
        }
    }
}

/// Target 6: the simulator's p50 against peerbench's, same server, same time.
fn delay(f: &Figures, out: &mut Vec<Row>) {
    let s = spec(
        "6",
        "simulator p50 send→delivery within 10 % of peerbench's",
        Cmp::AtMost,
        10.0,
    );
    let source = "chat-sim run smoke.toml --target and peerbench -mode rate -rate 200, one fjall server, at the same time";
    match &f.delay {
        Err(why) => out.push(s.missing(why.clone(), source)),
        Ok(d) => {
            let mut own = d.sim_own_p50_ms.map_or(String::new(), |own| {
                format!(
                    "; the simulator's own delay after the arrival it times (socket arrival → recorded), p50 {}",
                    ms(own)
                )
            });
            if let Some(late) = d.sim_send_late_p50_ms {
                own.push_str(&format!(
                    "; its own lateness before a send (in its figure), p50 {}",
                    ms(late)
                ));
            }
            let v = ratio(d.sim_p50_ms - d.peer_p50_ms, d.peer_p50_ms).map(|r| {
                let pct = 100.0 * r;
                (
                    pct.abs(),
                    format!(
                        "{pct:+.1} % ({} at {:.0}/s vs {} at {:.0}/s{own})",
                        ms(d.sim_p50_ms),
                        d.sim_rate,
                        ms(d.peer_p50_ms),
                        d.peer_rate
                    ),
                )
            });
            out.push(s.maybe(v, "peerbench measured no latency", source));
        }
    }
}

impl Row {
    /// The target with its limit, as the table prints it.
    pub fn target_text(&self) -> String {
        format!("{} {}", self.id, self.target)
    }
}
