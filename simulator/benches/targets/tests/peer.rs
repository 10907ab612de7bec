//! Tests of `peer.rs`.

use crate::peer::*;

const LINES: &str = r#"
{"label":"chat-server","store":"fjall","mode":"sat","rep":1,"msgs_per_s":9000,"server_cpu_us_per_msg":100.5,"p50_ms":1.2,"p99_ms":-1,"lost":0}
{"label":"centrifugo-v6.9.1","store":"memory engine + history","mode":"sat","rep":1,"msgs_per_s":24000,"lost":0}
{"label":"chat-server","store":"fjall","mode":"sat","rep":2,"msgs_per_s":9500,"server_cpu_us_per_msg":99.5,"lost":2}
{"label":"chat-server","store":"fjall","mode":"sat","rep":3,"msgs_per_s":8000,"server_cpu_us_per_msg":120,"steps":null}

{"label":"chat-server","store":"memory","mode":"idle","rep":1,"rss0_kb":9000,"steps":[{"conns":5000,"rss_per_conn_kb":8.5},{"conns":10000,"rss_per_conn_kb":7.75}]}
{"label":"chat-server","store":"memory","mode":"idle","rep":2,"steps":[{"conns":10000,"rss_per_conn_kb":4.25}]}
"#;

#[test]
fn medians_per_config_and_mode() {
    let runs = parse_results(LINES).unwrap();
    assert_eq!(runs.len(), 6);
    let m = median_of(&runs, "ours-fjall", "sat", |r| r.msgs_per_s).unwrap();
    assert_eq!((m.value, m.runs), (9000.0, 3));
    let cf = median_of(&runs, "cf-history", "sat", |r| r.msgs_per_s).unwrap();
    assert_eq!((cf.value, cf.runs), (24000.0, 1));
    assert!(median_of(&runs, "cf-memory", "sat", |r| r.msgs_per_s).is_none());
    assert!(median_of(&runs, "ours-fjall", "rate", |r| r.msgs_per_s).is_none());
}

#[test]
fn minus_one_means_not_measured() {
    let runs = parse_results(LINES).unwrap();
    assert!(median_of(&runs, "ours-fjall", "sat", |r| r.p99_ms).is_none());
    let p50 = median_of(&runs, "ours-fjall", "sat", |r| r.p50_ms).unwrap();
    assert_eq!(p50.runs, 1);
}

#[test]
fn idle_median_at_one_step() {
    let runs = parse_results(LINES).unwrap();
    let m = idle_median(&runs, "ours-memory", 10_000).unwrap();
    assert_eq!((m.value, m.runs), (6.0, 2));
    assert_eq!(idle_median(&runs, "ours-memory", 5_000).unwrap().value, 8.5);
    assert!(idle_median(&runs, "ours-fjall", 10_000).is_none());
}

#[test]
fn even_and_odd_medians() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&[]), None);
}

#[test]
fn faults_are_summed_into_a_note() {
    let runs = parse_results(LINES).unwrap();
    assert_eq!(
        faults_note(&runs, "ours-fjall", "sat"),
        "; ours-fjall: 2 lost, 0 out of order, 0 refused"
    );
    assert_eq!(faults_note(&runs, "cf-history", "sat"), "");
}

#[test]
fn a_bad_line_is_an_error_that_names_it() {
    let e = parse_results("\n{\"label\":\"x\"}\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(parse_results("not json").is_err());
}

#[test]
fn unknown_labels_have_no_config() {
    let runs =
        parse_results(r#"{"label":"other","store":"memory","mode":"sat","msgs_per_s":1}"#).unwrap();
    assert_eq!(runs[0].config(), None);
}
