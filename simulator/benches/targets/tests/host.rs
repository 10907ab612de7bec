use crate::host::*;

#[test]
fn the_machine_line_gives_busy_and_total_ticks() {
    let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1\n";
    assert_eq!(machine_ticks(stat), Some((160, 1000)));
    assert_eq!(machine_ticks("cpu0 1 2 3 4 5\n"), None);
    assert_eq!(machine_ticks("cpu  1 x 3 4 5\n"), None);
}

/// A name may hold spaces and parentheses: the fields count from the last `)`.
#[test]
fn a_process_line_gives_its_name_and_cpu_ticks() {
    let stat = "4242 (java (cass) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 35 0 0 20 0 80 0";
    assert_eq!(
        process_ticks(stat),
        Some(("java (cass) x".to_string(), 735))
    );
    assert_eq!(process_ticks("4242 (short) S 1 2"), None);
}

#[test]
fn the_top_names_sum_their_processes_and_the_note_names_them() {
    let used = vec![
        ("postgres".to_string(), 3),
        ("java".to_string(), 14),
        ("postgres".to_string(), 3),
        ("bash".to_string(), 2),
        ("sshd".to_string(), 0),
        ("cron".to_string(), 1),
    ];
    // 2 cores, 200 ticks per core over the window.
    let h = load(2, 0.11, used, 200.0);
    assert_eq!(
        h.top,
        vec![
            ("java".to_string(), 0.07),
            ("postgres".to_string(), 0.03),
            ("bash".to_string(), 0.01)
        ]
    );
    assert_eq!(
        note(&h),
        "**The host was busy before the run**: 0.11 of 2 cores in use by other processes (java 0.07, postgres 0.03, bash 0.01). Every figure is CPU: stop them and run again before trusting a ratio."
    );
    let quiet = load(2, 0.01, Vec::new(), 200.0);
    assert_eq!(
        note(&quiet),
        "The host was quiet before the run: 0.01 of 2 cores busy."
    );
}

/// On this machine the sample reads something sane.
#[test]
fn a_sample_of_this_host_is_within_its_cores() {
    let h = sample(std::time::Duration::from_millis(200)).expect("/proc is readable here");
    assert!(h.cores >= 1);
    assert!(
        (0.0..=h.cores as f64 + 0.01).contains(&h.busy_cores),
        "{h:?}"
    );
    assert!(h.top.len() <= 3);
}
