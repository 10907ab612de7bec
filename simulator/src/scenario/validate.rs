//! The checks that turn a bad scenario value into an error naming the file and the field,
//! instead of a panic or a silently odd run. They run after the file and every override
//! are read, on the scenario as it will run.

use std::path::Path;

use super::format::*;
use super::{Scenario, ScenarioError};

impl Scenario {
    /// Checks every value; the error names the field.
    pub fn validate(&self, path: &Path) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| {
            Err(ScenarioError::Field {
                path: path.to_owned(),
                field: field.to_owned(),
                message,
            })
        };
        let finite_at_least = |field: &str, v: f64, min: f64| {
            if v.is_finite() && v >= min {
                Ok(())
            } else {
                bad(
                    field,
                    format!("must be a finite number of at least {min}, got {v}"),
                )
            }
        };
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                bad(field, format!("must be between 0 and 1, got {v}"))
            }
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "name",
                format!(
                    "must be 1-64 letters, digits, `-` or `_` (it names the report directory), got {:?}",
                    self.name
                ),
            );
        }
        let p = &self.population;
        if p.daily_active_users == 0 {
            return bad("population.daily_active_users", "must be at least 1".into());
        }
        if !(p.scale.is_finite() && p.scale > 0.0 && p.scale <= 1.0) {
            return bad(
                "population.scale",
                format!("must be more than 0 and at most 1, got {}", p.scale),
            );
        }
        let users = self.users();
        if users < 2 {
            return bad(
                "population.scale",
                format!("daily_active_users × scale gives {users} users; at least 2 are needed"),
            );
        }
        if users > 10_000_000 {
            return bad(
                "population.scale",
                format!("{users} simulated users is more than this tool drives (10 M)"),
            );
        }
        if !(p.devices_per_user.is_finite() && (1.0..=16.0).contains(&p.devices_per_user)) {
            return bad(
                "population.devices_per_user",
                format!("must be between 1 and 16, got {}", p.devices_per_user),
            );
        }
        if p.device_kinds.is_empty() {
            return bad(
                "population.device_kinds",
                "must list at least one kind".into(),
            );
        }
        let mut total_share = 0.0;
        for (i, k) in p.device_kinds.iter().enumerate() {
            let f = |name: &str| format!("population.device_kinds[{i}].{name}");
            if k.name.is_empty()
                || k.name.len() > 16
                || !k
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(
                    &f("name"),
                    format!("must be 1-16 letters, digits, `-` or `_`, got {:?}", k.name),
                );
            }
            finite_at_least(&f("share"), k.share, 0.0)?;
            total_share += k.share;
            finite_at_least(&f("history_reads_per_day"), k.history_reads_per_day, 0.0)?;
            if !(1..=200).contains(&k.history_page_size) {
                return bad(
                    &f("history_page_size"),
                    format!("must be between 1 and 200, got {}", k.history_page_size),
                );
            }
        }
        if total_share <= 0.0 {
            return bad("population.device_kinds", "the shares add up to 0".into());
        }
        let t = &self.traffic;
        finite_at_least(
            "traffic.messages_per_user_per_day",
            t.messages_per_user_per_day,
            0.0,
        )?;
        if !(t.day_seconds.is_finite() && t.day_seconds > 0.0) {
            return bad(
                "traffic.day_seconds",
                format!(
                    "must be a positive number of seconds, got {}",
                    t.day_seconds
                ),
            );
        }
        finite_at_least(
            "traffic.presence_pulls_per_user_per_day",
            t.presence_pulls_per_user_per_day,
            0.0,
        )?;
        let m = &t.message_size;
        if m.min_bytes == 0 || m.min_bytes > m.max_bytes {
            return bad(
                "traffic.message_size.min_bytes",
                format!(
                    "must be at least 1 and at most max_bytes ({}), got {}",
                    m.max_bytes, m.min_bytes
                ),
            );
        }
        if m.max_bytes > 65_000 {
            return bad(
                "traffic.message_size.max_bytes",
                format!(
                    "must be at most 65000 (a WebSocket frame is at most 64 KiB), got {}",
                    m.max_bytes
                ),
            );
        }
        if !(m.mean_bytes.is_finite()
            && m.mean_bytes >= f64::from(m.min_bytes)
            && m.mean_bytes <= f64::from(m.max_bytes))
        {
            return bad(
                "traffic.message_size.mean_bytes",
                format!(
                    "must be between min_bytes ({}) and max_bytes ({}), got {}",
                    m.min_bytes, m.max_bytes, m.mean_bytes
                ),
            );
        }
        if !(m.sigma.is_finite() && (0.0..=3.0).contains(&m.sigma)) {
            return bad(
                "traffic.message_size.sigma",
                format!("must be between 0 and 3, got {}", m.sigma),
            );
        }
        let c = &self.contacts;
        if c.contacts_per_user == 0 || u64::from(c.contacts_per_user) >= users {
            return bad(
                "contacts.contacts_per_user",
                format!(
                    "must be at least 1 and less than the {users} simulated users, got {}",
                    c.contacts_per_user
                ),
            );
        }
        finite_at_least("contacts.zipf_exponent", c.zipf_exponent, 0.0)?;
        finite_at_least("contacts.popularity_exponent", c.popularity_exponent, 0.0)?;
        share("contacts.crossing_share", c.crossing_share)?;
        let g = &self.groups;
        share("groups.share", g.share)?;
        finite_at_least("groups.groups_per_user", g.groups_per_user, 0.0)?;
        if g.min_size < 2 || g.min_size > g.max_size {
            return bad(
                "groups.min_size",
                format!(
                    "must be at least 2 and at most max_size ({}), got {}",
                    g.max_size, g.min_size
                ),
            );
        }
        if g.max_size > 256 || u64::from(g.max_size) > users {
            return bad(
                "groups.max_size",
                format!(
                    "must be at most 256 (the protocol's default group limit) and at most the {users} users, got {}",
                    g.max_size
                ),
            );
        }
        let ch = &self.churn;
        finite_at_least(
            "churn.disconnects_per_device_per_day",
            ch.disconnects_per_device_per_day,
            0.0,
        )?;
        finite_at_least("churn.offline_secs_min", ch.offline_secs_min, 0.0)?;
        if !(ch.offline_secs_max.is_finite() && ch.offline_secs_max >= ch.offline_secs_min) {
            return bad(
                "churn.offline_secs_max",
                format!(
                    "must be at least offline_secs_min ({}), got {}",
                    ch.offline_secs_min, ch.offline_secs_max
                ),
            );
        }
        for (i, s) in ch.storms.iter().enumerate() {
            finite_at_least(&format!("churn.storms[{i}].at_secs"), s.at_secs, 0.0)?;
            share(&format!("churn.storms[{i}].share"), s.share)?;
            finite_at_least(
                &format!("churn.storms[{i}].offline_secs"),
                s.offline_secs,
                0.0,
            )?;
        }
        let r = &self.run;
        if r.duration_secs == 0 {
            return bad("run.duration_secs", "must be at least 1".into());
        }
        if r.duration_secs + r.ramp_up_secs > 7 * 86_400 {
            return bad(
                "run.duration_secs",
                "the run may last at most a week".into(),
            );
        }
        if !(r.sample_interval_secs.is_finite() && (0.1..=3600.0).contains(&r.sample_interval_secs))
        {
            return bad(
                "run.sample_interval_secs",
                format!(
                    "must be between 0.1 and 3600, got {}",
                    r.sample_interval_secs
                ),
            );
        }
        finite_at_least("run.drain_secs", r.drain_secs, 0.0)?;
        if r.max_devices_per_process < 10 {
            return bad("run.max_devices_per_process", "must be at least 10".into());
        }
        if r.workers > 64 {
            return bad(
                "run.workers",
                format!("must be at most 64, got {}", r.workers),
            );
        }
        if !(r.request_timeout_secs.is_finite() && r.request_timeout_secs > 0.0) {
            return bad(
                "run.request_timeout_secs",
                format!(
                    "must be a positive number of seconds, got {}",
                    r.request_timeout_secs
                ),
            );
        }
        let s = &self.server;
        if s.store.is_empty() {
            return bad(
                "server.store",
                "must name a store: fjall, memory or a --store string".into(),
            );
        }
        if s.connections_per_node == 0 {
            return bad("server.connections_per_node", "must be at least 1".into());
        }
        if s.device_queue == 0 {
            return bad("server.device_queue", "must be at least 1".into());
        }
        let gates = &self.gates;
        for (field, v) in [
            ("gates.p50_send_to_sent_ms", gates.p50_send_to_sent_ms),
            ("gates.p99_send_to_sent_ms", gates.p99_send_to_sent_ms),
            (
                "gates.p50_send_to_delivery_ms",
                gates.p50_send_to_delivery_ms,
            ),
            (
                "gates.p99_send_to_delivery_ms",
                gates.p99_send_to_delivery_ms,
            ),
            (
                "gates.p999_send_to_delivery_ms",
                gates.p999_send_to_delivery_ms,
            ),
            (
                "gates.p99_send_to_delivered_ms",
                gates.p99_send_to_delivered_ms,
            ),
            ("gates.p99_history_ms", gates.p99_history_ms),
            ("gates.p99_reconnect_ms", gates.p99_reconnect_ms),
            ("gates.max_bytes_per_message", gates.max_bytes_per_message),
            ("gates.max_server_cpu_percent", gates.max_server_cpu_percent),
            ("gates.max_server_rss_mib", gates.max_server_rss_mib),
            ("gates.max_fault_recovery_ms", gates.max_fault_recovery_ms),
            (
                "gates.max_rss_growth_mib_per_min",
                gates.max_rss_growth_mib_per_min,
            ),
            ("gates.max_fds_growth_per_min", gates.max_fds_growth_per_min),
            (
                "gates.max_tasks_growth_per_min",
                gates.max_tasks_growth_per_min,
            ),
            (
                "capacity.min_messages_per_sec",
                self.capacity.min_messages_per_sec,
            ),
        ] {
            if let Some(v) = v {
                finite_at_least(field, v, 0.0)?;
            }
        }
        if let Some(v) = gates.max_error_rate {
            share("gates.max_error_rate", v)?;
        }
        if let Some(v) = gates.min_sent_ratio {
            share("gates.min_sent_ratio", v)?;
        }
        finite_at_least("gates.baseline_tolerance", gates.baseline_tolerance, 0.0)?;
        let c = &self.capacity;
        if !(c.max_host_cpu_percent.is_finite()
            && c.max_host_cpu_percent > 0.0
            && c.max_host_cpu_percent <= 100.0)
        {
            return bad(
                "capacity.max_host_cpu_percent",
                format!(
                    "must be above 0 and at most 100 (percent of all cores), got {}",
                    c.max_host_cpu_percent
                ),
            );
        }
        if c.confirm > 5 {
            return bad(
                "capacity.confirm",
                format!("must be at most 5 reruns, got {}", c.confirm),
            );
        }
        if c.refine > 10 {
            return bad(
                "capacity.refine",
                format!("must be at most 10 bisections, got {}", c.refine),
            );
        }
        for (k, search) in c.search.iter().enumerate() {
            finite_at_least(&format!("capacity.search.{k}.start"), search.start, 0.0)?;
            finite_at_least(&format!("capacity.search.{k}.step"), search.step, 0.0)?;
            if !(1..=100).contains(&search.max_steps) {
                return bad(
                    &format!("capacity.search.{k}.max_steps"),
                    format!("must be between 1 and 100, got {}", search.max_steps),
                );
            }
        }
        match &gates.checks {
            CheckSelection::Word(w) if w == "all" || w == "none" => {}
            CheckSelection::Word(w) => {
                return bad(
                    "gates.checks",
                    format!("must be \"all\", \"none\" or a list of {CHECK_NAMES:?}, got {w:?}"),
                );
            }
            CheckSelection::List(list) => {
                for n in list {
                    if !CHECK_NAMES.contains(&n.as_str()) {
                        return bad(
                            "gates.checks",
                            format!("unknown check {n:?}; the checks are {CHECK_NAMES:?}"),
                        );
                    }
                }
            }
        }
        super::cluster::validate(&self.cluster, &self.faults, &self.server.store, path)?;
        Ok(())
    }
}
