//! How good the plan's model is: from what one load cost the server, predict what a larger
//! load will cost, run it, and compare.
//!
//! Messages, deliveries and disk grow with the messages (a fixed cost per message). CPU and
//! memory use the costs fitted from the first run's samples
//! ([`ServerCosts`](crate::report::costs::ServerCosts)): CPU an idle floor plus a cost per
//! connection opened plus a cost per message, memory a base plus a cost per connection held
//! plus a cost per message written. Where the first run could not be fitted, CPU scales
//! with the messages and memory with the connections, and the validation says so. The
//! prediction takes only the first run's measurements and the second run's offered load
//! (its intended message rate, its devices, its length), never anything the second run
//! measured.

use serde::Serialize;

use super::step::StepFigures;
use crate::report::costs::ServerCosts;

/// The prediction error the issue sets as the target: 15 %.
pub const TARGET_ERROR: f64 = 0.15;

/// One predicted figure beside what the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    /// What the figure is, e.g. `server CPU`.
    pub figure: String,
    pub unit: String,
    pub predicted: f64,
    pub measured: f64,
    /// (measured − predicted) ÷ measured.
    pub error: f64,
    pub within_target: bool,
}

/// A validation: a base load, a larger one, and each figure's prediction error.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The base run's directory and the larger run's, relative to the report.
    pub base_dir: String,
    pub target_dir: String,
    /// Offered messages/s of the larger run over the base's.
    pub message_factor: f64,
    /// Connections of the larger run over the base's.
    pub connection_factor: f64,
    /// How CPU and memory were predicted: `fitted costs` or `proportional` (the first run's
    /// samples could not be fitted).
    pub model: String,
    /// The first run's fitted costs, when it had them.
    pub base_costs: Option<ServerCosts>,
    pub figures: Vec<Predicted>,
    /// The largest error's magnitude.
    pub max_abs_error: Option<f64>,
    pub within_target: bool,
}

/// Predicts `target` from `base` and compares. Figures either run did not measure are left
/// out.
pub fn validate(
    base: &StepFigures,
    base_dir: &str,
    target: &StepFigures,
    target_dir: &str,
) -> Validation {
    let fm = if base.intended_messages_per_sec > 0.0 {
        target.intended_messages_per_sec / base.intended_messages_per_sec
    } else {
        f64::NAN
    };
    let fc = if base.devices > 0 {
        target.devices as f64 / base.devices as f64
    } else {
        f64::NAN
    };
    let mut figures = Vec::new();
    let mut add = |figure: &str, unit: &str, predicted: Option<f64>, measured: Option<f64>| {
        if let (Some(p), Some(m)) = (predicted, measured)
            && p.is_finite()
            && m.is_finite()
            && m > 0.0
        {
            let error = (m - p) / m;
            figures.push(Predicted {
                figure: figure.into(),
                unit: unit.into(),
                predicted: p,
                measured: m,
                error,
                within_target: error.abs() <= TARGET_ERROR,
            });
        }
    };
    add(
        "messages accepted per second",
        "messages/s",
        Some(base.messages_per_sec * fm),
        Some(target.messages_per_sec),
    );
    add(
        "deliveries per second",
        "deliveries/s",
        Some(base.deliveries_per_sec * fm),
        Some(target.deliveries_per_sec),
    );
    let per_message = |bytes: Option<u64>| {
        bytes
            .filter(|_| base.messages_acknowledged > 0)
            .map(|b| b as f64 / base.messages_acknowledged as f64)
    };
    // What grows with the rate over the whole load: the rate factor times the ratio of the
    // load's lengths.
    let over_load = fm * target.load_secs / base.load_secs.max(1e-9);
    // The larger run's messages as offered.
    let messages = base.messages_acknowledged as f64 * over_load;
    let costs = base.server_costs;
    // Connects: every device once, reconnects (churn per device per day) with the rate.
    let connects =
        target.devices as f64 + base.connects.saturating_sub(base.devices) as f64 * over_load;
    let cpu = match costs {
        Some(c) => Some(c.cpu_percent(target.load_secs, connects, messages)),
        None => base.server_cpu_percent.map(|c| c * fm),
    };
    add(
        "server CPU (mean over the load)",
        "% of a core",
        cpu,
        target.server_cpu_percent,
    );
    let rss = match (
        costs,
        base.server_rss_start_bytes,
        base.server_rss_peak_bytes,
        base.memory_bytes_per_connection,
    ) {
        (Some(c), ..) => Some(c.rss_bytes(target.devices as f64, messages)),
        (None, Some(start), _, Some(per_conn)) => {
            Some(start as f64 + per_conn * target.devices as f64)
        }
        (None, Some(start), Some(peak), None) => {
            Some(start as f64 + (peak.saturating_sub(start)) as f64 * fc)
        }
        _ => None,
    };
    add(
        "server resident memory at its peak",
        "bytes",
        rss,
        target.server_rss_peak_bytes.map(|b| b as f64),
    );
    add(
        "store size settled",
        "bytes",
        per_message(base.settled_disk_bytes).map(|b| b * messages),
        target.settled_disk_bytes.map(|b| b as f64),
    );
    add(
        "store growth while running (journal included)",
        "bytes",
        per_message(base.transient_disk_bytes).map(|b| b * messages),
        target.transient_disk_bytes.map(|b| b as f64),
    );
    let max_abs_error = figures
        .iter()
        .map(|f| f.error.abs())
        .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    Validation {
        base_dir: base_dir.into(),
        target_dir: target_dir.into(),
        message_factor: fm,
        connection_factor: fc,
        model: if costs.is_some() {
            "fitted costs"
        } else {
            "proportional"
        }
        .into(),
        base_costs: costs,
        within_target: !figures.is_empty() && figures.iter().all(|f| f.within_target),
        figures,
        max_abs_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(users: u64, rate: f64, cpu: f64, rss: u64, settled: u64) -> StepFigures {
        StepFigures {
            users,
            devices: users,
            intended_messages_per_sec: rate,
            messages_per_sec: rate,
            messages_acknowledged: (rate * 10.0) as u64,
            deliveries_per_sec: rate,
            connections_peak: users as i64,
            server_cpu_secs: Some(cpu / 10.0),
            server_cpu_percent: Some(cpu),
            server_rss_start_bytes: Some(10_000_000),
            server_rss_peak_bytes: Some(rss),
            memory_bytes_per_connection: Some((rss - 10_000_000) as f64 / users as f64),
            transient_disk_bytes: Some(settled * 4),
            settled_disk_bytes: Some(settled),
            ..StepFigures::example()
        }
    }

    #[test]
    fn a_linear_server_is_predicted_exactly() {
        let a = run(100, 50.0, 20.0, 12_000_000, 60_000);
        let b = run(200, 100.0, 40.0, 14_000_000, 120_000);
        let v = validate(&a, "a", &b, "b");
        assert_eq!(v.figures.len(), 6);
        assert!(v.within_target);
        assert!(v.max_abs_error.unwrap() < 1e-9, "{v:?}");
        assert_eq!(v.message_factor, 2.0);
    }

    #[test]
    fn fitted_costs_predict_a_server_with_an_idle_floor_that_proportion_misses() {
        let costs = ServerCosts {
            idle_cpu_percent: 10.0,
            cpu_us_per_connect: 0.0,
            cpu_us_per_message: 1000.0,
            cpu_fit_r2: 1.0,
            rss_base_bytes: 10_000_000.0,
            rss_bytes_per_connection: 10_000.0,
            rss_bytes_per_message: 0.0,
            rss_fit_r2: 1.0,
            intervals: 10,
        };
        // 10 % idle + 5 % for 50 msg/s; twice the load: 10 % + 10 %.
        let a = StepFigures {
            server_costs: Some(costs),
            ..run(100, 50.0, 15.0, 11_000_000, 60_000)
        };
        let b = run(200, 100.0, 20.0, 12_000_000, 120_000);
        let v = validate(&a, "a", &b, "b");
        assert_eq!(v.model, "fitted costs");
        let cpu = v.figures.iter().find(|f| f.figure.contains("CPU")).unwrap();
        assert!((cpu.predicted - 20.0).abs() < 1e-9, "{cpu:?}");
        assert!(v.within_target, "{v:?}");
        // Without the fit, twice the 15 % is predicted: 50 % too high.
        let v = validate(&run(100, 50.0, 15.0, 11_000_000, 60_000), "a", &b, "b");
        assert_eq!(v.model, "proportional");
        assert!(!v.within_target);
    }

    #[test]
    fn a_server_that_costs_more_than_linearly_misses_the_target() {
        let a = run(100, 50.0, 20.0, 12_000_000, 60_000);
        // Twice the load, three times the CPU: 40 % predicted, 60 % measured.
        let b = run(200, 100.0, 60.0, 14_000_000, 120_000);
        let v = validate(&a, "a", &b, "b");
        let cpu = v.figures.iter().find(|f| f.figure.contains("CPU")).unwrap();
        assert!((cpu.predicted - 40.0).abs() < 1e-9);
        assert!((cpu.error - 1.0 / 3.0).abs() < 1e-9);
        assert!(!cpu.within_target);
        assert!(!v.within_target);
    }
}
