//! The server nodes of a run: each a `serve-child` with the cluster flags on a fixed
//! loopback port (so a node started again after a fault is found where it was), and what
//! is measured of each — CPU and memory from `/proc`, connections and messages from its
//! `/metrics` — summed over the node's incarnations, since a restarted process starts its
//! counters from zero.

use std::path::PathBuf;
use std::time::Duration;

use chat_server::store::StoreMemory;

use serde::Serialize;

use super::ClusterError;
use crate::child::{ProcSample, ServeOptions, ServerChild};

/// Counters of one node that add up over incarnations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NodeCounters {
    pub cpu_secs: f64,
    pub messages_stored: u64,
    pub messages_delivered: u64,
}

impl NodeCounters {
    fn plus(self, o: NodeCounters) -> NodeCounters {
        NodeCounters {
            cpu_secs: self.cpu_secs + o.cpu_secs,
            messages_stored: self.messages_stored + o.messages_stored,
            messages_delivered: self.messages_delivered + o.messages_delivered,
        }
    }
}

/// What one scrape of a node's `/metrics` says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scrape {
    pub connections: u64,
    /// Tasks alive on the node's runtime (absent from older servers).
    pub tasks: Option<u64>,
    pub messages_stored: u64,
    pub messages_delivered: u64,
    /// The store's in-memory tables, when it keeps them in the server's process with a
    /// bound (fjall).
    pub store_memory: Option<StoreMemory>,
}

/// Reads the figures a node's Prometheus text holds.
pub fn parse_metrics(text: &str) -> Scrape {
    let mut s = Scrape::default();
    let mut store = (None, None, None);
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let v = v.max(0.0) as u64;
        match name {
            "chat_connections" => s.connections = v,
            "chat_messages_stored_total" => s.messages_stored = v,
            "chat_messages_delivered_total" => s.messages_delivered = v,
            "chat_runtime_tasks" => s.tasks = Some(v),
            "chat_store_memtable_bytes" => store.0 = Some(v),
            "chat_store_memtable_limit_bytes" => store.1 = Some(v),
            "chat_store_cache_capacity_bytes" => store.2 = Some(v),
            _ => {}
        }
    }
    if let (Some(tables_bytes), Some(tables_limit_bytes), Some(cache_capacity_bytes)) = store {
        s.store_memory = Some(StoreMemory {
            tables_bytes,
            tables_limit_bytes,
            cache_capacity_bytes,
        });
    }
    s
}

/// One node.
pub struct Node {
    /// `n1`, `n2` …
    pub name: String,
    pub port: u16,
    opts: ServeOptions,
    dir: PathBuf,
    child: Option<ServerChild>,
    /// Processes started for this node so far.
    pub incarnations: u32,
    /// What earlier incarnations used and counted.
    past: NodeCounters,
    /// The current incarnation's figures at its last sample.
    now: NodeCounters,
    pub connections: u64,
    pub connections_peak: u64,
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    /// The current incarnation's open files, threads and runtime tasks at its last sample.
    pub open_fds: u64,
    pub threads: u64,
    pub tasks: Option<u64>,
    /// Connections the host lets one node process hold.
    pub host_capacity: u64,
}

impl Node {
    /// Starts node `name` on `port` with `opts` (its `extra` holds the cluster flags).
    pub fn start(
        name: String,
        port: u16,
        opts: ServeOptions,
        dir: PathBuf,
    ) -> Result<Node, ClusterError> {
        let mut n = Node {
            name,
            port,
            opts,
            dir,
            child: None,
            incarnations: 0,
            past: NodeCounters::default(),
            now: NodeCounters::default(),
            connections: 0,
            connections_peak: 0,
            rss_bytes: 0,
            rss_peak_bytes: 0,
            open_fds: 0,
            threads: 0,
            tasks: None,
            host_capacity: 0,
        };
        let child = n.spawn()?;
        n.adopt(child);
        Ok(n)
    }

    /// A new process for this node; nothing of `self` changes until [`Node::adopt`], so
    /// the (blocking) start can run without holding the node.
    pub fn spawn_child(
        opts: &ServeOptions,
        dir: &std::path::Path,
        name: &str,
        incarnation: u32,
    ) -> Result<ServerChild, ClusterError> {
        let log = if incarnation == 0 {
            dir.join(format!("server-{name}.log"))
        } else {
            dir.join(format!("server-{name}-{}.log", incarnation + 1))
        };
        ServerChild::spawn(opts.clone(), &log).map_err(|e| ClusterError::Node {
            node: name.to_owned(),
            message: e.to_string(),
        })
    }

    fn spawn(&self) -> Result<ServerChild, ClusterError> {
        Self::spawn_child(&self.opts, &self.dir, &self.name, self.incarnations)
    }

    /// What a restart needs: the options, the directory and the incarnation number.
    pub fn restart_plan(&self) -> (ServeOptions, PathBuf, String, u32) {
        (
            self.opts.clone(),
            self.dir.clone(),
            self.name.clone(),
            self.incarnations,
        )
    }

    /// Takes a started process as this node's current incarnation.
    pub fn adopt(&mut self, child: ServerChild) {
        self.host_capacity = child.host_capacity;
        self.child = Some(child);
        self.incarnations += 1;
        self.now = NodeCounters::default();
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Takes a `/proc` sample and (when given) a scrape of the current incarnation.
    pub fn record(&mut self, incarnation: u32, proc: Option<ProcSample>, scrape: Option<Scrape>) {
        if incarnation != self.incarnations || self.child.is_none() {
            return;
        }
        if let Some(p) = proc {
            self.now.cpu_secs = self.now.cpu_secs.max(p.cpu_secs);
            self.rss_bytes = p.rss_bytes;
            self.rss_peak_bytes = self.rss_peak_bytes.max(p.rss_bytes);
            self.open_fds = p.open_fds;
            self.threads = p.threads;
        }
        if let Some(s) = scrape {
            self.now.messages_stored = self.now.messages_stored.max(s.messages_stored);
            self.now.messages_delivered = self.now.messages_delivered.max(s.messages_delivered);
            self.connections = s.connections;
            self.connections_peak = self.connections_peak.max(s.connections);
            self.tasks = s.tasks;
        }
    }

    /// Samples `/proc` now.
    pub fn sample_proc(&self) -> Option<ProcSample> {
        self.child.as_ref().and_then(ServerChild::sample)
    }

    /// Ends the current incarnation: its figures join the past ones, and its process is
    /// handed over to be stopped.
    pub fn retire(&mut self) -> Option<ServerChild> {
        let child = self.child.take()?;
        self.past = self.past.plus(self.now);
        self.now = NodeCounters::default();
        self.connections = 0;
        self.rss_bytes = 0;
        self.open_fds = 0;
        self.threads = 0;
        self.tasks = None;
        Some(child)
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.retire() {
            c.kill9();
        }
    }

    /// A graceful stop at the end of the run (its input closes).
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut c) = self.retire() {
            c.stop(grace);
        }
    }

    /// Everything this node used and counted, every incarnation.
    pub fn totals(&self) -> NodeCounters {
        self.past.plus(self.now)
    }

    /// The last disk figure the current incarnation reported.
    pub fn disk_bytes(&self) -> Option<u64> {
        self.child.as_ref().and_then(ServerChild::disk_bytes)
    }

    /// Waits for a fresh disk report of the current incarnation.
    pub fn fresh_disk_bytes(&self, limit: Duration) -> Option<u64> {
        self.child.as_ref().and_then(|c| c.fresh_disk_bytes(limit))
    }

    /// Whether the current process has died by itself.
    pub fn check_exited(&mut self) -> bool {
        let dead = self.child.as_mut().is_some_and(ServerChild::exited);
        if dead {
            self.retire();
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read() {
        let text = "# HELP chat_connections Open WebSocket connections\n\
                    # TYPE chat_connections gauge\n\
                    chat_connections 12\n\
                    chat_messages_stored_total 340\n\
                    chat_messages_delivered_total 1000\n\
                    chat_runtime_tasks 57\n\
                    chat_store_op_seconds_bucket{op=\"append\",le=\"0.1\"} 5\n\
                    # EOF\n";
        assert_eq!(
            parse_metrics(text),
            Scrape {
                connections: 12,
                tasks: Some(57),
                messages_stored: 340,
                messages_delivered: 1000,
                store_memory: None,
            }
        );
        let fjall = format!(
            "{text}chat_store_memtable_bytes 75\n\
             chat_store_memtable_limit_bytes 134217728\n\
             chat_store_cache_capacity_bytes 33554432\n"
        );
        assert_eq!(
            parse_metrics(&fjall).store_memory,
            Some(StoreMemory {
                tables_bytes: 75,
                tables_limit_bytes: 128 << 20,
                cache_capacity_bytes: 32 << 20,
            })
        );
    }
}
