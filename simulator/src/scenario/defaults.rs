//! What every field of a scenario is when the file leaves it out: a file need only say
//! its `name`. Kept together so the defaults read as one scenario and are easy to keep in
//! step with `scenarios/README.md`.

use super::format::*;

impl Default for Population {
    fn default() -> Self {
        Population {
            daily_active_users: 500_000_000,
            scale: 2e-7,
            devices_per_user: 1.0,
            device_kinds: vec![DeviceKind::default()],
        }
    }
}

impl Default for DeviceKind {
    fn default() -> Self {
        DeviceKind {
            name: "phone".into(),
            share: 1.0,
            history_reads_per_day: 10.0,
            history_page_size: 50,
        }
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            messages_per_user_per_day: 40.0,
            day_seconds: 60.0,
            presence_pulls_per_user_per_day: 0.0,
            message_size: MessageSize::default(),
        }
    }
}

impl Default for MessageSize {
    fn default() -> Self {
        MessageSize {
            distribution: SizeDistribution::Lognormal,
            mean_bytes: 100.0,
            sigma: 0.5,
            min_bytes: 8,
            max_bytes: 4096,
        }
    }
}

impl Default for Contacts {
    fn default() -> Self {
        Contacts {
            contacts_per_user: 8,
            zipf_exponent: 1.1,
            popularity_exponent: 0.6,
            crossing_share: 0.0,
        }
    }
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            share: 0.0,
            groups_per_user: 1.0,
            min_size: 3,
            max_size: 8,
            required: false,
        }
    }
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            disconnects_per_device_per_day: 0.0,
            offline_secs_min: 1.0,
            offline_secs_max: 5.0,
            storms: Vec::new(),
        }
    }
}

impl Default for Run {
    fn default() -> Self {
        Run {
            duration_secs: 20,
            ramp_up_secs: 3,
            sample_interval_secs: 1.0,
            drain_secs: 10.0,
            seed: 1,
            workers: 0,
            max_devices_per_process: 18_000,
            request_timeout_secs: 10.0,
            user_id_base: None,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            store: "fjall".into(),
            connections_per_node: 50_000,
            max_connections: 0,
            send_rate: 0,
            send_burst: 0,
            device_queue: 1024,
            workers: 1,
            capacity_run: false,
        }
    }
}

impl Default for CheckSelection {
    fn default() -> Self {
        CheckSelection::Word("all".into())
    }
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            p50_send_to_sent_ms: None,
            p99_send_to_sent_ms: None,
            p50_send_to_delivery_ms: None,
            p99_send_to_delivery_ms: None,
            p999_send_to_delivery_ms: None,
            p99_send_to_delivered_ms: None,
            p99_history_ms: None,
            p99_reconnect_ms: None,
            max_error_rate: Some(0.001),
            min_sent_ratio: None,
            max_bytes_per_message: None,
            max_server_cpu_percent: None,
            max_server_rss_mib: None,
            max_fault_recovery_ms: None,
            max_rss_growth_mib_per_min: None,
            max_fds_growth_per_min: None,
            max_tasks_growth_per_min: None,
            checks: CheckSelection::default(),
            baseline_tolerance: 0.2,
        }
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            hold_secs: 0,
            ramp_up_secs: None,
            refine: 2,
            confirm: 1,
            max_host_cpu_percent: 90.0,
            search: Vec::new(),
            min_messages_per_sec: None,
            min_connections: None,
        }
    }
}

impl Default for CapacitySearch {
    fn default() -> Self {
        CapacitySearch {
            grow: Grow::Users,
            start: 0.0,
            step: 0.0,
            max_steps: 8,
        }
    }
}

impl Capacity {
    /// The searches to run: the file's, or one growing users.
    pub fn searches(&self) -> Vec<CapacitySearch> {
        if self.search.is_empty() {
            vec![CapacitySearch::default()]
        } else {
            self.search.clone()
        }
    }
}
