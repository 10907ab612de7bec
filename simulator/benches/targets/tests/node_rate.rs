//! Tests of `node_rate.rs`.

use std::path::Path;

use chat_sim::scenario::Scenario;

use crate::node_rate::{NodeCosts, NodeRate, plan};
use crate::peer::parse_results;

fn seed_node(overrides: &[String]) -> Scenario {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-node.toml");
    Scenario::load(&file, overrides).unwrap()
}

/// Two repetitions of each server at 463 msgs/s; the generator at 0.10 and 0.11 of its
/// core.
pub fn node_rate() -> NodeRate {
    let runs = parse_results(
        r#"{"label":"chat-server","store":"fjall","mode":"rate","rep":1,"msgs_per_s":463,"server_cpu_us_per_msg":170,"loadgen_cpu_util":0.1}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"rate","rep":1,"msgs_per_s":463,"server_cpu_us_per_msg":290,"loadgen_cpu_util":0.11}
{"label":"chat-server","store":"fjall","mode":"rate","rep":2,"msgs_per_s":463,"server_cpu_us_per_msg":180,"loadgen_cpu_util":0.1}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"rate","rep":2,"msgs_per_s":463,"server_cpu_us_per_msg":310,"loadgen_cpu_util":0.11}"#,
    )
    .unwrap();
    NodeRate {
        rate: 463.0,
        conns: 10_000,
        runs,
    }
}

#[test]
fn the_load_is_the_scenarios_planned_rate_on_its_connections() {
    let (rate, conns) = plan(&seed_node(&[])).unwrap();
    // 10,000 users × 40 messages a day, the day 864 s long.
    assert!((rate - 10_000.0 * 40.0 / 864.0).abs() < 1e-9, "{rate}");
    assert_eq!(conns, 10_000);
    // Eleven users with one device each: five pairs; with two devices each, eleven.
    let eleven = ["population.scale=2.2e-8".to_string()];
    assert_eq!(plan(&seed_node(&eleven)).unwrap().1, 10);
    let two = [eleven[0].clone(), "population.devices_per_user=2".into()];
    assert_eq!(plan(&seed_node(&two)).unwrap().1, 22);
}

#[test]
fn costs_are_medians_of_the_server_and_the_generator() {
    let n = node_rate();
    let ours = n.costs("ours-fjall").unwrap();
    assert_eq!(ours.server_us, 175.0);
    assert!((ours.generator_us.unwrap() - 0.1e6 / 463.0).abs() < 1e-9);
    assert!((ours.generator_ratio().unwrap() - 0.1e6 / 463.0 / 175.0).abs() < 1e-9);
    assert_eq!(n.costs("cf-history").unwrap().server_us, 300.0);
    assert!(n.costs("ours-memory").is_none());
    let free = NodeCosts {
        server_us: 0.0,
        generator_us: Some(1.0),
    };
    assert_eq!(free.generator_ratio(), None);
}

#[test]
fn the_notes_name_the_load_and_both_servers() {
    let n = node_rate();
    let sat = |c: &str| (c == "ours-fjall").then_some(25.0);
    assert_eq!(
        n.server_note(sat).unwrap(),
        "; peerbench at the same load (463 msgs/s on 10,000 connections; sends, `sent` and `msg` only): \
         ours 175 µs/msg, 7.0× its saturated 25 µs, Centrifugo + history 300 µs/msg"
    );
    assert_eq!(
        n.generator_note().unwrap(),
        "; peerbench, a minimal neutral generator (no acks, pulls or checks), at the same load \
         (463 msgs/s on 10,000 connections): 216 µs/msg, 1.23× ours; 238 µs/msg, 0.79× Centrifugo + history"
    );
}

#[test]
fn without_the_generators_cpu_only_the_servers_are_noted() {
    let mut n = node_rate();
    for r in &mut n.runs {
        r.loadgen_cpu_util = None;
    }
    assert_eq!(n.generator_note(), None);
    assert!(
        n.server_note(|_| None)
            .unwrap()
            .ends_with("ours 175 µs/msg, Centrifugo + history 300 µs/msg")
    );
    for r in &mut n.runs {
        r.server_cpu_us_per_msg = None;
    }
    assert_eq!(n.server_note(|_| None), None);
}
