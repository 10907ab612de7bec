//! Property tests: the plan only grows with load and only shrinks with
//! capacity, its figures agree with each other, and unit conversions and
//! formatting round-trip.

use estimation::figures::Figure;
use estimation::units::{
    self, format_bytes, format_count, parse_bytes, parse_count, per_day_to_per_sec,
    per_sec_to_per_day,
};
use estimation::{Inputs, Plan};
use proptest::prelude::*;

/// Valid inputs across and beyond any realistic range.
fn inputs() -> impl Strategy<Value = Inputs> {
    (
        (
            1u64..=10_000_000_000,
            0.01f64..10_000.0,
            1.0f64..1e6,
            0.01f64..100.0,
            1u64..=10_000_000,
            0.001f64..=1.0,
            proptest::option::of(1.0f64..1e7),
        ),
        (
            proptest::option::of(1.0f64..1e9),
            1e6f64..1e15,
            proptest::option::of(1.0f64..100.0),
            1u32..=5,
            0.1f64..10.0,
            1.0f64..10.0,
            1.0f64..100.0,
        ),
    )
        .prop_map(
            |(
                (dau, messages, size, years, connections, fraction, rate),
                (memory, shard, capacity_in_shards, replication, overhead, peak, fan_out),
            )| Inputs {
                daily_active_users: dau,
                messages_per_user_per_day: messages,
                message_size_bytes: size,
                retention_years: years,
                connections_per_server: connections,
                concurrent_fraction: fraction,
                messages_per_sec_per_server: rate,
                memory_bytes_per_connection: memory,
                // A server's own memory, about that of 30,000 connections.
                memory_bytes_per_node: memory.map(|m| m * 3e4),
                shard_size_bytes: shard,
                db_server_capacity_bytes: capacity_in_shards.map(|n| n * shard),
                replication_factor: replication,
                storage_overhead_factor: overhead,
                peak_to_average: peak,
                fan_out,
            },
        )
}

/// Figures that must not fall when load rises. Memory per server is left
/// out on purpose: one more connection can add a server and so spread the
/// same connections thinner.
fn load_figures() -> impl Iterator<Item = Figure> {
    Figure::ALL
        .into_iter()
        .filter(|f| *f != Figure::MemoryBytesPerServer)
}

fn assert_not_lower(smaller: &Plan, larger: &Plan, figures: impl Iterator<Item = Figure>) {
    for figure in figures {
        if let (Some(a), Some(b)) = (figure.value(smaller), figure.value(larger)) {
            assert!(a <= b, "{figure:?} fell from {a} to {b}");
        }
    }
}

/// Scales a load input up by `factor` (> 1) and checks no figure falls.
fn check_load_growth(base: &Inputs, grown: Inputs) {
    let before = base.plan().expect("valid inputs");
    let after = grown.plan().expect("valid inputs");
    assert_not_lower(&before, &after, load_figures());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_valid_input_gives_a_plan(inputs in inputs()) {
        let plan = inputs.plan().expect("valid inputs");
        for figure in Figure::ALL {
            if let Some(value) = figure.value(&plan) {
                prop_assert!(value.is_finite() && value >= 0.0, "{figure:?} = {value}");
            }
        }
    }

    #[test]
    fn figures_agree_with_each_other(inputs in inputs()) {
        let plan = inputs.plan().expect("valid inputs");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
        prop_assert!(close(plan.messages_per_sec_avg * 86_400.0, plan.messages_per_day));
        prop_assert!(close(plan.bandwidth_in_bytes_per_sec * 86_400.0, plan.storage_bytes_per_day));
        prop_assert!(close(
            plan.storage_bytes_total,
            plan.storage_bytes_per_day * 365.0 * inputs.retention_years
        ));
        prop_assert!(plan.bandwidth_out_bytes_per_sec >= plan.bandwidth_in_bytes_per_sec);
        prop_assert!(plan.messages_per_sec_peak >= plan.messages_per_sec_avg);
        prop_assert_eq!(
            plan.servers,
            plan.servers_by_connections.max(plan.servers_by_message_rate.unwrap_or(0))
        );
        // Enough chat servers for the connections and the peak rate.
        prop_assert!(
            (plan.servers as f64) * inputs.connections_per_server as f64
                >= plan.concurrent_connections as f64 * (1.0 - 1e-9)
        );
        if let Some(rate) = inputs.messages_per_sec_per_server {
            prop_assert!(plan.servers as f64 * rate >= plan.messages_per_sec_peak * (1.0 - 1e-9));
        }
        // Enough shards for the data and enough database servers for the replicas.
        prop_assert!(
            plan.shards as f64 * inputs.shard_size_bytes
                >= plan.storage_bytes_total * inputs.storage_overhead_factor * (1.0 - 1e-9)
        );
        prop_assert!(
            plan.db_servers * plan.shards_per_db_server
                >= plan.shards * u64::from(inputs.replication_factor)
        );
    }

    #[test]
    fn more_load_never_lowers_a_figure(base in inputs(), factor in 1.0f64..10.0) {
        check_load_growth(&base, Inputs {
            daily_active_users: (base.daily_active_users as f64 * factor) as u64,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            messages_per_user_per_day: base.messages_per_user_per_day * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            message_size_bytes: base.message_size_bytes * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            retention_years: base.retention_years * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            concurrent_fraction: (base.concurrent_fraction * factor).min(1.0),
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            storage_overhead_factor: base.storage_overhead_factor * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            replication_factor: base.replication_factor + 1,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            peak_to_average: base.peak_to_average * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            fan_out: base.fan_out * factor,
            ..base.clone()
        });
        check_load_growth(&base, Inputs {
            memory_bytes_per_connection: base.memory_bytes_per_connection.map(|m| m * factor),
            ..base.clone()
        });
    }

    #[test]
    fn more_capacity_never_raises_a_server_count(base in inputs(), factor in 1.0f64..10.0) {
        let counts = [Figure::ServersByConnections, Figure::ServersByMessageRate,
                      Figure::Servers, Figure::Shards, Figure::DbServers];
        let before = base.plan().expect("valid inputs");
        let grown = [
            Inputs {
                connections_per_server: (base.connections_per_server as f64 * factor) as u64,
                ..base.clone()
            },
            Inputs {
                messages_per_sec_per_server: base.messages_per_sec_per_server.map(|r| r * factor),
                ..base.clone()
            },
            Inputs {
                db_server_capacity_bytes: base.db_server_capacity_bytes.map(|c| c * factor),
                ..base.clone()
            },
            // Bigger shards with one shard per database server. (With a fixed
            // server capacity, bigger shards can fit worse, so that case is
            // not monotone and is not claimed.)
            Inputs {
                shard_size_bytes: base.shard_size_bytes * factor,
                db_server_capacity_bytes: None,
                ..base.clone()
            },
        ];
        for inputs in grown {
            let after = inputs.plan().expect("valid inputs");
            let before = if inputs.db_server_capacity_bytes.is_none() {
                Inputs { db_server_capacity_bytes: None, ..base.clone() }.plan().expect("valid")
            } else {
                before.clone()
            };
            assert_not_lower(&after, &before, counts.into_iter());
        }
    }

    #[test]
    fn byte_units_are_powers_of_ten(value in 0.0f64..1e6) {
        let bytes = parse_bytes(&value.to_string()).unwrap();
        prop_assert_eq!(bytes, value);
        for (unit, size) in [("kB", units::KB), ("MB", units::MB), ("GB", units::GB),
                             ("TB", units::TB), ("PB", units::PB)] {
            prop_assert_eq!(parse_bytes(&format!("{value}{unit}")).unwrap(), value * size);
            prop_assert_eq!(parse_bytes(&format!("{value} {}", unit.to_lowercase())).unwrap(), value * size);
        }
        prop_assert_eq!(parse_bytes(&format!("{value}KiB")).unwrap(), value * 1024.0);
    }

    #[test]
    fn formatted_bytes_read_back_within_rounding(value in 1e-3f64..1e20) {
        let text = format_bytes(value);
        let back = parse_bytes(&text).unwrap();
        // Three significant digits: at most half a unit in the third digit.
        prop_assert!((back - value).abs() <= value * 0.005 + 1e-12, "{value} → {text} → {back}");
    }

    #[test]
    fn formatted_counts_read_back_within_rounding(value in 1e-3f64..1e17) {
        let text = format_count(value);
        let back = parse_count(&text).unwrap();
        prop_assert!((back - value).abs() <= value * 0.005 + 0.5, "{value} → {text} → {back}");
    }

    #[test]
    fn per_day_and_per_second_are_inverse(value in 0.0f64..1e20) {
        let back = per_sec_to_per_day(per_day_to_per_sec(value));
        prop_assert!((back - value).abs() <= value * 1e-15);
        prop_assert!(per_day_to_per_sec(value) <= value);
    }
}

#[test]
fn source_design_is_the_default() {
    assert_eq!(Inputs::default(), Inputs::source_design());
}
