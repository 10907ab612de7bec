//! The printed results: one table per store, with the targets met or not.

use crate::common::human_bytes;

use crate::*;

pub(crate) fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) fn print_table(store: StoreKind, results: &[PhaseResult], timeline: bool) {
    println!();
    println!("== store: {} ==", store.name());
    println!(
        "{:<16} {:>5} {:>5} {:>9} {:>9} {:>9} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>9} {:>10} | {:>8} {:>8}",
        "phase",
        "pairs",
        "dur s",
        "sent",
        "delivered",
        "msg/s",
        "d p50",
        "d p90",
        "d p99",
        "d max",
        "s p50",
        "s p99",
        "srv µs/msg",
        "srv maxRSS",
        "srv CPU",
        "cli CPU"
    );
    for r in results {
        let h = &r.send_to_delivery;
        let s = &r.send_to_sent;
        let secs = r.window_secs();
        println!(
            "{:<16} {:>5} {:>5.1} {:>9} {:>9} {:>9.0} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>9.1} {:>10} | {:>7.0}% {:>7.0}%",
            r.spec.label(),
            r.spec.pairs,
            secs,
            r.sent_in_window,
            r.delivered_in_window,
            r.rate(),
            fmt_ms(PhaseResult::p_ms(h, 0.50)),
            fmt_ms(PhaseResult::p_ms(h, 0.90)),
            fmt_ms(PhaseResult::p_ms(h, 0.99)),
            fmt_ms(if h.is_empty() {
                f64::NAN
            } else {
                h.max() as f64 / 1000.0
            }),
            fmt_ms(PhaseResult::p_ms(s, 0.50)),
            fmt_ms(PhaseResult::p_ms(s, 0.99)),
            r.server_cpu_us_per_msg(),
            human_bytes(r.server_max_rss as f64),
            100.0 * r.server_cpu_s / secs,
            100.0 * r.client_cpu_s / secs,
        );
    }
    println!(
        "(latencies in ms: d = send→delivery, s = send→sent; sent/delivered/msg/s count the \
         measurement window; CPU in % of one core over the window)"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for r in results {
        let label = r.spec.label();
        println!(
            "[{label}] totals: {} sends made, {} answered sent, {} errors, {} unanswered at the end, \
             {} delivered; client max RSS {}; server {}",
            r.attempted,
            r.acked,
            r.errors,
            r.unacked,
            r.delivered,
            human_bytes(r.client_max_rss as f64),
            r.server_exit
        );
        let threads: Vec<String> = r
            .server_threads
            .iter()
            .map(|(n, t)| format!("{n} {:.0}%", 100.0 * t / r.window_secs()))
            .collect();
        println!(
            "[{label}] server CPU by thread (% of one core, summed by name): {}",
            threads.join(", ")
        );
        if r.spec.rate > 0.0 {
            println!(
                "[{label}] open model: send lag (actual - scheduled send, incl. the client timer's \
                 1 ms granularity) p50/p99/max {}/{}/{} ms; \
                 send→delivery from the actual send p50/p99/max {}/{}/{} ms",
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 0.5)),
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 0.99)),
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 1.0)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 0.5)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 0.99)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 1.0)),
            );
        }
        if timeline {
            println!(
                "[{label}] timeline (by scheduled send second; window is {:.0}..{:.0} s):",
                r.spec.warmup.as_secs_f64(),
                (r.spec.warmup + r.spec.duration).as_secs_f64()
            );
            for (i, b) in r.timeline.iter().enumerate() {
                println!(
                    "    {i:>3} s: {:>8} delivered, {:>6.2}% over {TIMELINE_MARK_MS} ms, max {} ms",
                    b.delivered,
                    100.0 * b.over_target as f64 / b.delivered.max(1) as f64,
                    fmt_ms(b.max_us as f64 / 1000.0)
                );
            }
        }
        if r.behind > 0 {
            println!(
                "[{label}] the load fell behind its schedule: {} scheduled sends never made",
                r.behind
            );
        }
        let others =
            (r.machine_busy_s - r.server_cpu_s - r.client_cpu_s).max(0.0) / r.window_secs();
        println!(
            "[{label}] machine: {:.0}% busy of {cores} cores ({:.0}% iowait); other processes \
             and the kernel's own threads {:.0}%{}",
            100.0 * r.machine_busy_s / r.window_secs(),
            100.0 * r.machine_iowait_s / r.window_secs(),
            100.0 * others,
            if others > 0.25 {
                ": something else loaded the machine, the figures are disturbed"
            } else {
                ""
            }
        );
        let busy = (r.server_cpu_s + r.client_cpu_s) / r.window_secs();
        if busy >= 0.9 * cores {
            println!(
                "[{label}] note: server + client used {:.0}% of {} cores: the load generator \
                 competes with the server for CPU, so the rate is a lower bound",
                100.0 * busy,
                cores
            );
        }
        if r.violations.count == 0 && r.lost == 0 {
            println!(
                "[{label}] correctness: OK: every message delivered exactly once, in order, \
                 seq and useq +1"
            );
        } else {
            println!(
                "[{label}] correctness: {} VIOLATIONS ({} messages lost); first:",
                r.violations.count, r.lost
            );
            for v in &r.violations.first {
                println!("    {v}");
            }
        }
        for p in r.problems.iter().take(5) {
            println!("[{label}] problem: {p}");
        }
        if r.problems.len() > 5 {
            println!("[{label}] ... {} more problems", r.problems.len() - 5);
        }
    }
}
