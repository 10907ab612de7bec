//! Tests of `verdict.rs`.

use crate::figures::{DelayFigures, DeliveryFigures, SimSummary};
use crate::peer::{PeerRun, parse_results};
use crate::verdict::*;

fn sat_runs() -> Vec<PeerRun> {
    parse_results(
        r#"{"label":"chat-server","store":"fjall","mode":"sat","msgs_per_s":9000,"server_cpu_us_per_msg":100}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","msgs_per_s":24000}
{"label":"chat-server","store":"memory","mode":"sat","msgs_per_s":60000,"server_cpu_us_per_msg":20}
{"label":"centrifugo-v6.9.1","store":"memory engine","mode":"sat","msgs_per_s":27000}"#,
    )
    .unwrap()
}

fn nothing() -> Figures {
    fn no<T>() -> Outcome<T> {
        Err("not chosen".into())
    }
    Figures {
        sat: no(),
        rate: no(),
        idle: no(),
        fjall_latency: no(),
        fjall_rate: no(),
        seed_node: no(),
        node_rate: no(),
        smoke: no(),
        delay: no(),
        reps: 3,
    }
}

/// A seed-node summary with the server's CPU per message and the simulator's (a JSON
/// number or `null`), and nothing else measured.
fn bare_seed_node(server_us: u32, sim_us: &str) -> Outcome<SimSummary> {
    SimSummary::parse(&format!(
        r#"{{"scenario":"seed-node","passed":true,"load":{{"messages_per_sec":463,"messages_acknowledged":1}},
            "latency_ms":{{}},"server":{{"cpu_us_per_message":{server_us},"memory_bytes_per_connection":null,
            "connections_peak":10000,"costs":null}},"simulator":{{"cpu_us_per_message":{sim_us}}}}}"#
    ))
}

fn row<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    rows.iter().find(|r| r.id == id).unwrap()
}

#[test]
fn judging_respects_the_direction_and_the_boundary() {
    assert_eq!(judge(1.0, Cmp::AtLeast, 1.0), Status::Met);
    assert_eq!(judge(0.99, Cmp::AtLeast, 1.0), Status::NotMet);
    assert_eq!(judge(5.0, Cmp::AtMost, 5.0), Status::Met);
    assert_eq!(judge(5.01, Cmp::AtMost, 5.0), Status::NotMet);
    assert!(matches!(
        judge(f64::NAN, Cmp::AtMost, 5.0),
        Status::NotRun(_)
    ));
}

#[test]
fn ratios_need_a_positive_denominator() {
    assert_eq!(ratio(1.0, 4.0), Some(0.25));
    assert_eq!(ratio(1.0, 0.0), None);
    assert_eq!(ratio(f64::NAN, 1.0), None);
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(23598.4), "23,598");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(1_000_000.0), "1,000,000");
    assert_eq!(thousands(-1234.0), "-1,234");
}

#[test]
fn throughput_ratios_from_the_sat_medians() {
    let mut f = nothing();
    f.sat = Ok(sat_runs());
    let rows = rows(&f);
    let fjall = row(&rows, "1a");
    assert_eq!(fjall.value, Some(9000.0 / 24000.0));
    assert_eq!(fjall.status, Status::NotMet);
    assert!(
        fjall.measured.contains("9,000 vs 24,000"),
        "{}",
        fjall.measured
    );
    let mem = row(&rows, "1b");
    assert_eq!(mem.status, Status::Met, "60000/27000 ≥ 2");
}

/// The row gives each repetition's ratio beside the ratio of the medians: here the
/// medians say 1.0× (met) while one repetition of three read 0.80×.
#[test]
fn throughput_rows_give_the_ratio_of_each_repetition() {
    let mut f = nothing();
    f.sat = Ok(parse_results(
        r#"{"label":"chat-server","store":"fjall","mode":"sat","rep":1,"msgs_per_s":40000}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","rep":1,"msgs_per_s":50000}
{"label":"chat-server","store":"fjall","mode":"sat","rep":2,"msgs_per_s":50000}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","rep":2,"msgs_per_s":40000}
{"label":"chat-server","store":"fjall","mode":"sat","rep":3,"msgs_per_s":45000}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","rep":3,"msgs_per_s":45000}
{"label":"chat-server","store":"memory","mode":"sat","rep":1,"msgs_per_s":60000}"#,
    )
    .unwrap());
    // Runs without repetition numbers (or one repetition of a pair): no list.
    let mut plain = nothing();
    plain.sat = Ok(sat_runs());
    let plain = rows(&plain);
    assert!(!row(&plain, "1a").measured.contains("by repetition"));
    let rows = rows(&f);
    let fjall = row(&rows, "1a");
    assert_eq!(fjall.value, Some(1.0));
    assert_eq!(fjall.status, Status::Met);
    assert_eq!(
        fjall.measured,
        "1.00× (45,000 vs 45,000 msgs/s; by repetition 0.80×, 1.25×, 1.00×)"
    );
    assert!(!row(&rows, "1b").measured.contains("by repetition"));
}

#[test]
fn every_target_has_a_row_and_says_why_when_not_run() {
    let rows = rows(&nothing());
    let ids: Vec<&str> = rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "1a", "1b", "2a", "2b", "2c", "3a", "3b", "4a", "4b", "4c", "4d", "5a", "5b", "6"
        ]
    );
    for r in &rows {
        assert!(
            matches!(&r.status, Status::NotRun(why) if why.contains("not chosen")),
            "{}: {:?}",
            r.id,
            r.status
        );
    }
    assert_eq!(
        row(&rows, "3a").status,
        Status::NotRun("saturation: not chosen".into())
    );
}

#[test]
fn seed_node_cpu_against_the_saturated_figure() {
    let mut f = nothing();
    f.sat = Ok(sat_runs());
    f.seed_node = SimSummary::parse(
        r#"{"scenario":"seed-node","passed":true,"load":{"messages_per_sec":463,"messages_acknowledged":1},
            "latency_ms":{},"server":{"cpu_us_per_message":250,"memory_bytes_per_connection":9216,
            "connections_peak":10000,"costs":{"cpu_us_per_message":150,"cpu_fit_r2":0.9,
            "rss_bytes_per_connection":4096,"rss_fit_r2":0.99},
            "node_memory":{"bytes_per_connection":4096,"node_bytes":262144000,"tables_peak_bytes":41943040}},
            "simulator":{"cpu_us_per_message":100}}"#,
    );
    let rows = rows(&f);
    assert_eq!(row(&rows, "3a").value, Some(2.5));
    assert!(
        row(&rows, "4c").measured.ends_with(
            "the 40.0 MiB the run's messages filled in the memtables: the plan counts 4.00 KiB a connection + 250 MiB per node with the memtables at their bound"
        ),
        "{}",
        row(&rows, "4c").measured
    );
    assert_eq!(row(&rows, "3a").status, Status::NotMet);
    assert_eq!(row(&rows, "3b").value, Some(1.5));
    assert_eq!(row(&rows, "3b").status, Status::Met);
    assert_eq!(row(&rows, "4c").value, Some(9.0));
    assert_eq!(row(&rows, "4c").status, Status::NotMet);
    assert_eq!(row(&rows, "4d").value, Some(4.0));
    assert_eq!(row(&rows, "5a").value, Some(0.4));
    assert_eq!(row(&rows, "5a").status, Status::Met);
}

#[test]
fn peerbench_at_seed_nodes_load_is_noted_beside_targets_3_and_5() {
    let mut f = nothing();
    f.sat = Ok(sat_runs());
    f.seed_node = bare_seed_node(350, "280");
    f.smoke = f.seed_node.clone();
    let before = rows(&f);
    f.node_rate = Ok(crate::node_rate_tests::node_rate());
    let after = rows(&f);
    for id in ["3a", "5a", "5b"] {
        // A note, never a different figure or verdict.
        assert_eq!(row(&before, id).value, row(&after, id).value, "{id}");
        assert_eq!(row(&before, id).status, row(&after, id).status, "{id}");
    }
    let cpu = row(&after, "3a");
    assert!(
        cpu.measured.ends_with(
            "; peerbench at the same load (463 msgs/s on 10,000 connections; sends, `sent` and `msg` only): \
             ours 175 µs/msg, 1.8× its saturated 100 µs, Centrifugo + history 300 µs/msg"
        ),
        "{}",
        cpu.measured
    );
    assert!(
        cpu.source
            .ends_with("peerbench rate at seed-node's load, medians")
    );
    let sim = row(&after, "5a");
    assert!(
        sim.measured
            .starts_with("0.80× (280 vs 350 µs/msg); peerbench, a minimal neutral generator"),
        "{}",
        sim.measured
    );
    assert!(
        sim.measured.ends_with("0.79× Centrifugo + history"),
        "{}",
        sim.measured
    );
    assert!(
        sim.source
            .ends_with("peerbench rate at seed-node's load, medians")
    );
    // Smoke is another load: no note there.
    assert_eq!(row(&after, "5b").measured, row(&before, "5b").measured);
    assert_eq!(row(&after, "5b").source, row(&before, "5b").source);
}

#[test]
fn without_sat_the_delivery_bench_closed_loop_is_the_saturated_figure() {
    let mut f = nothing();
    f.fjall_latency = Ok(DeliveryFigures {
        rate: 4000.0,
        p99_ms: Some(12.0),
        worst_second: Some((3, 49.0)),
        window_seconds: 10,
        closed: Some((8000.0, Some(200.0))),
        lost: 0,
        violations: 0,
        behind: 0,
    });
    f.seed_node = bare_seed_node(300, "null");
    let rows = rows(&f);
    assert_eq!(row(&rows, "2b").status, Status::NotMet);
    assert_eq!(row(&rows, "2c").status, Status::Met);
    let cpu = row(&rows, "3a");
    assert_eq!(cpu.value, Some(1.5));
    assert!(cpu.source.contains("closed loop"), "{}", cpu.source);
    assert!(matches!(row(&rows, "3b").status, Status::NotRun(_)));
    assert!(matches!(row(&rows, "5a").status, Status::NotRun(_)));
}

#[test]
fn delay_is_the_relative_difference_of_the_medians() {
    let mut f = nothing();
    f.delay = Ok(DelayFigures {
        sim_p50_ms: 1.2,
        sim_own_p50_ms: Some(0.087),
        sim_send_late_p50_ms: Some(0.021),
        peer_p50_ms: 1.0,
        sim_rate: 200.0,
        peer_rate: 200.0,
    });
    let r = rows(&f);
    let d = row(&r, "6");
    assert!((d.value.unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(d.status, Status::NotMet);
    assert!(d.measured.starts_with("+20.0 %"), "{}", d.measured);
    assert!(
        d.measured
            .contains("(socket arrival → recorded), p50 0.09 ms"),
        "{}",
        d.measured
    );
    assert!(
        d.measured
            .contains("before a send (in its figure), p50 0.02 ms"),
        "{}",
        d.measured
    );
    f.delay = Ok(DelayFigures {
        sim_p50_ms: 0.95,
        sim_own_p50_ms: None,
        sim_send_late_p50_ms: None,
        peer_p50_ms: 1.0,
        sim_rate: 200.0,
        peer_rate: 200.0,
    });
    assert_eq!(row(&rows(&f), "6").status, Status::Met);
}

#[test]
fn idle_memory_per_connection_at_ten_thousand() {
    let mut f = nothing();
    f.idle = Ok(parse_results(
        r#"{"label":"chat-server","store":"memory","mode":"idle","steps":[{"conns":5000,"rss_per_conn_kb":9},{"conns":10000,"rss_per_conn_kb":4.9}]}
{"label":"chat-server","store":"fjall","mode":"idle","steps":[{"conns":10000,"rss_per_conn_kb":5.1}]}"#,
    )
    .unwrap());
    let rows = rows(&f);
    assert_eq!(row(&rows, "4a").status, Status::Met);
    assert_eq!(row(&rows, "4b").status, Status::NotMet);
}

#[test]
fn target_2b_shows_both_servers_at_its_rate_beside_it() {
    let mut f = nothing();
    f.fjall_latency = Ok(DeliveryFigures {
        rate: 25_000.0,
        p99_ms: Some(75.0),
        worst_second: Some((8, 110.0)),
        window_seconds: 10,
        closed: None,
        lost: 0,
        violations: 0,
        behind: 0,
    });
    let alone = row(&rows(&f), "2b").measured.clone();
    assert!(!alone.contains("peerbench"), "{alone}");
    f.fjall_rate = Ok(parse_results(
        r#"{"label":"chat-server","store":"fjall","mode":"rate","p99_ms":70,"server_cpu_util":0.95}
{"label":"chat-server","store":"fjall","mode":"rate","p99_ms":130,"server_cpu_util":0.99}
{"label":"chat-server","store":"fjall","mode":"rate","p99_ms":90,"server_cpu_util":0.97,"lost":2}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"rate","p99_ms":101,"server_cpu_util":0.98}"#,
    )
    .unwrap());
    let r = rows(&f);
    let b = row(&r, "2b");
    assert_eq!(b.value, Some(75.0), "the delivery bench's figure is judged");
    assert_eq!(b.status, Status::NotMet);
    assert!(
        b.measured.contains(
            "ours 90.0 ms, its core 97 % busy (ours-fjall: 2 lost, 0 out of order, 0 refused)"
        ) && b
            .measured
            .contains("; Centrifugo with history 101.0 ms, its core 98 % busy"),
        "{}",
        b.measured
    );
}

/// A saturation row says how far the load generator could have driven the server.
/// First its core was 95 % busy at 80,000 msgs/s (11.9 µs per message), so it could not
/// have driven more than 84,211 msgs/s, 1.68× Centrifugo's 50,000: target 1b (2.0×) is
/// beyond what it can show, whatever the server does. Then a busy generator whose ceiling
/// reaches the limit makes the figure a lower bound. At 50 % busy the row says nothing.
#[test]
fn throughput_rows_say_where_the_load_generator_bounds_them() {
    let sat = |lines: &str| {
        let mut f = nothing();
        f.sat = Ok(parse_results(lines).unwrap());
        rows(&f)
    };
    let bound = sat(
        r#"{"label":"chat-server","store":"memory","mode":"sat","rep":1,"msgs_per_s":80000,"loadgen_cpu_util":0.95}
{"label":"centrifugo-v6.9.1","store":"memory engine","mode":"sat","rep":1,"msgs_per_s":50000,"loadgen_cpu_util":0.7}
{"label":"chat-server","store":"fjall","mode":"sat","rep":1,"msgs_per_s":30000,"loadgen_cpu_util":0.5}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","rep":1,"msgs_per_s":40000,"loadgen_cpu_util":0.6}"#,
    );
    let lower = sat(
        r#"{"label":"chat-server","store":"memory","mode":"sat","rep":1,"msgs_per_s":90000,"loadgen_cpu_util":0.92}
{"label":"centrifugo-v6.9.1","store":"memory engine","mode":"sat","rep":1,"msgs_per_s":40000}"#,
    );
    for (rows, id, status, ending) in [
        (
            &bound,
            "1b",
            Status::NotMet,
            "; load generator at 95% of its core (11.9 µs per message): at most 84,211 msgs/s, 1.68×, so this machine cannot show the target",
        ),
        (&bound, "1a", Status::NotMet, "(30,000 vs 40,000 msgs/s)"),
        (
            &lower,
            "1b",
            Status::Met,
            "at most 97,826 msgs/s, 2.45×: a lower bound",
        ),
    ] {
        let r = row(rows, id);
        assert_eq!(r.status, status, "{id}");
        assert!(r.measured.ends_with(ending), "{}", r.measured);
    }
}
