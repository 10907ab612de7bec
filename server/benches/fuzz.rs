//! Fuzzes the server's hostile-input paths on stable Rust: the WebSocket frame decoder,
//! the JSON frame parser, the identity parsers, the token check and the HTTP bodies,
//! each with at least a million generated inputs.
//!
//! The generators and targets are the property tests' (`tests/it/hostile/`): hostile
//! JSON (nesting thousands deep, `1e400`, `18446744073709551616`, lone surrogates, NUL,
//! absurd lengths), valid frames with one field made hostile, raw WebSocket frames
//! (64 KiB and more, binary, not UTF-8, absurd declared lengths, protocol violations)
//! and tokens (`alg: none`, wrong keys, expired, `sub` of 0, negative, past u64, …).
//! Every input runs under `catch_unwind`. Per target it prints the cases, what the server
//! answered (accepted, each error code, each close code), the panics and the cases per
//! second; it exits non-zero if any input panicked or got an answer outside the contract
//! (`internal`, a close code the contract does not give, a token accepted that must not
//! be, …), printing the first few such inputs.
//!
//! `cargo bench -p chat-server --bench fuzz -- [TARGET…]`, with `FUZZ_CASES` (default
//! 1 000 000 per target) and `FUZZ_SEED` (a number; default fixed, so runs repeat).

#[path = "../tests/it/hostile/inputs.rs"]
mod inputs;
#[path = "../tests/it/hostile/targets.rs"]
mod targets;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chat_server::auth::{Auth, now_secs};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use self::targets::{Checked, Outcome};

const SECRET: &str = "fuzz-secret";
/// Failing inputs printed per target at most.
const SHOW: usize = 3;

/// What one target's run found.
struct Report {
    name: &'static str,
    cases: u64,
    outcomes: BTreeMap<Outcome, u64>,
    panics: u64,
    violations: u64,
    /// Time spent in the target alone, and in all (generation included).
    in_target: Duration,
    total: Duration,
}

fn runner(seed: u64, salt: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&salt.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn shown<T: Debug>(input: &T) -> String {
    let s = format!("{input:?}");
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}… ({} characters)", &s[..cut], s.len())
    } else {
        s
    }
}

fn run<S: Strategy>(
    name: &'static str,
    salt: u64,
    cases: u64,
    seed: u64,
    strategy: S,
    target: impl Fn(&S::Value) -> Checked,
) -> Report {
    let mut runner = runner(seed, salt);
    let mut report = Report {
        name,
        cases: 0,
        outcomes: BTreeMap::new(),
        panics: 0,
        violations: 0,
        in_target: Duration::ZERO,
        total: Duration::ZERO,
    };
    let start = Instant::now();
    let mut shown_failures = 0;
    let step = (cases / 10).max(1);
    for i in 0..cases {
        let input = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(e) => {
                eprintln!("{name}: the generator gave up: {e}");
                report.violations += 1;
                break;
            }
        };
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| target(&input)));
        report.in_target += t.elapsed();
        report.cases += 1;
        let failure = match result {
            Ok(Ok(outcome)) => {
                *report.outcomes.entry(outcome).or_default() += 1;
                None
            }
            Ok(Err(violation)) => {
                report.violations += 1;
                Some(format!("outside the contract: {violation}"))
            }
            Err(panic) => {
                report.panics += 1;
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Some(format!("panicked: {msg}"))
            }
        };
        if let Some(f) = failure
            && shown_failures < SHOW
        {
            shown_failures += 1;
            eprintln!("{name} case {i}: {f}\n  input: {}", shown(&input));
        }
        if (i + 1) % step == 0 {
            eprint!("\r{name}: {} / {cases}", i + 1);
        }
    }
    eprintln!();
    report.total = start.elapsed();
    report
}

fn main() -> ExitCode {
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    // Panics are counted and the first few shown with their input; the default hook
    // would print a million of them.
    std::panic::set_hook(Box::new(|_| {}));
    println!("fuzz: {cases} cases per target, seed {seed}");

    let auth = Auth::new(SECRET).expect("a usable secret");
    let now = now_secs();
    let mut reports = Vec::new();
    if wanted("ws_frames") {
        reports.push(run("ws_frames", 1, cases, seed, inputs::ws_stream(), |b| {
            targets::ws_frames(b)
        }));
    }
    if wanted("client_frame") {
        reports.push(run(
            "client_frame",
            2,
            cases,
            seed,
            inputs::frame_text(),
            |t| targets::client_frame(t),
        ));
    }
    if wanted("identity") {
        reports.push(run(
            "identity",
            3,
            cases,
            seed,
            inputs::id_case(),
            |(k, t)| targets::identity(*k, t),
        ));
    }
    if wanted("token") {
        reports.push(run(
            "token",
            4,
            cases,
            seed,
            inputs::token(SECRET, now),
            |c| targets::token(&auth, c),
        ));
    }
    if wanted("http_body") {
        reports.push(run("http_body", 5, cases, seed, inputs::body_case(), |c| {
            targets::http_body(c)
        }));
    }
    print_table(&reports);
    let bad: u64 = reports.iter().map(|r| r.panics + r.violations).sum();
    if bad > 0 {
        println!("FAILED: {bad} inputs panicked or got an answer outside the contract");
        ExitCode::FAILURE
    } else {
        println!("ok: no panics, every rejection a contract code");
        ExitCode::SUCCESS
    }
}

fn print_table(reports: &[Report]) {
    println!(
        "\n{:<13} {:>10} {:>7} {:>10} {:>12} {:>14}  answers",
        "target", "cases", "panics", "outside", "cases/s", "target-only/s"
    );
    for r in reports {
        let rate = |d: Duration| r.cases as f64 / d.as_secs_f64().max(1e-9);
        let answers: Vec<String> = r
            .outcomes
            .iter()
            .map(|(o, n)| {
                format!(
                    "{} {n} ({:.1}%)",
                    o.label(),
                    100.0 * *n as f64 / r.cases as f64
                )
            })
            .collect();
        println!(
            "{:<13} {:>10} {:>7} {:>10} {:>12.0} {:>14.0}  {}",
            r.name,
            r.cases,
            r.panics,
            r.violations,
            rate(r.total),
            rate(r.in_target),
            answers.join(", ")
        );
    }
}
