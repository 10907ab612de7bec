//! `chat-sim compare`: the same scenario against several storage backends, one after
//! another, and one side-by-side report.
//!
//! Each backend is a normal `chat-sim run` (its own directory, report and gates) with
//! `server.store` overridden. The runs go one after another, never in parallel: on a small
//! host they would share the CPUs and measure each other. Every database backend gets a
//! fresh namespace (a PostgreSQL schema, a Cassandra keyspace) so bytes on disk per message
//! are measured from empty rather than on top of an earlier run's data.
//!
//! | file | holds |
//! |---|---|
//! | this one | the backend list, namespaces, the runs one by one |
//! | [`table`] | the figures of each backend, taken from its run's summary |
//! | [`render`] | `compare.json`, `compare.md`, the bar charts, `compare.html` |

pub mod render;
pub mod table;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::clock::{unix_ms, utc_string};
use crate::namespace::{compact_stamp, fresh_keyspace, label_of, scheme, set_query};
use crate::run::{self, RunOptions};
use crate::scenario::{Scenario, ScenarioError};

use self::table::{BackendFigures, Comparison};

/// The backends compared when `--stores` is not given: the two in-process stores and the
/// local services that `scripts/postgres.sh` and `scripts/cassandra.sh` start.
pub const DEFAULT_STORES: &str =
    "memory,fjall,postgres://chat:chat@127.0.0.1:5433/chat,cql://127.0.0.1:9042/chat_compare";

/// What `chat-sim compare` was asked.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub scenario: PathBuf,
    /// `--store` strings as given (before namespaces are added).
    pub stores: Vec<String>,
    pub out_dir: PathBuf,
    pub overrides: Vec<String>,
    pub progress: bool,
    /// Keep each database backend's schema or keyspace after its run (by default they are
    /// dropped: every comparison makes new ones, which would otherwise pile up).
    pub keep_data: bool,
}

/// Why no comparison could be written. A backend that fails to run is not an error: it is
/// recorded in the comparison.
#[derive(Debug, Error)]
pub enum CompareError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("--stores names no store")]
    NoStores,
    #[error("cannot write the comparison in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A finished comparison.
#[derive(Debug)]
pub struct CompareOutcome {
    pub dir: PathBuf,
    pub comparison: Comparison,
}

impl CompareOutcome {
    /// One line per backend that failed to run and per failed gate of a run.
    pub fn failures(&self) -> &[String] {
        &self.comparison.failures
    }
}

/// One backend to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Column name and directory: `memory`, `fjall`, `postgres`, `cql`, or the scheme.
    pub label: String,
    /// The `--store` string the run uses, fresh namespace included.
    pub spec: String,
}

/// Splits a `--stores` list at commas, keeping the host list of a
/// `cql://H1:P,H2:P/KEYSPACE` spec together.
pub fn split_stores(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in list.split(',').map(str::trim) {
        let continues = out.last().is_some_and(|prev: &String| {
            prev.strip_prefix("cql://")
                .is_some_and(|hosts| !hosts.contains('/'))
        });
        if continues {
            let prev = out.last_mut().expect("checked above");
            prev.push(',');
            prev.push_str(piece);
        } else if !piece.is_empty() {
            out.push(piece.to_owned());
        }
    }
    out
}

/// The backends of a comparison: unique labels and a fresh namespace for each database.
pub fn plan(stores: &[String], started_ms: u64) -> Vec<Backend> {
    let stamp = compact_stamp(started_ms);
    let mut out: Vec<Backend> = Vec::new();
    for (i, spec) in stores.iter().enumerate() {
        let n = i + 1;
        let base = label_of(spec);
        let mut label = base.clone();
        let mut k = 2;
        while out.iter().any(|b| b.label == label) {
            label = format!("{base}-{k}");
            k += 1;
        }
        let spec = match scheme(spec) {
            "postgres" | "postgresql" if spec.contains("://") => {
                set_query(spec, "schema", &format!("cmp_{stamp}_{n}"))
            }
            "cql" if spec.contains("://") => {
                let same = out.iter().filter(|b| scheme(&b.spec) == "cql").count();
                let suffix = if same == 0 {
                    stamp.clone()
                } else {
                    format!("{stamp}_{n}")
                };
                fresh_keyspace(spec, &suffix)
            }
            _ => spec.clone(),
        };
        out.push(Backend { label, spec });
    }
    out
}

/// A store string fit to print: the password of a URL's user and any `password=` option
/// removed.
pub fn redact(spec: &str) -> String {
    let mut s = spec.to_owned();
    if let Some(start) = s.find("://").map(|i| i + 3) {
        let end = s[start..].find(['/', '?']).map_or(s.len(), |i| start + i);
        if let Some(at) = s[start..end].rfind('@').map(|i| start + i)
            && let Some(colon) = s[start..at].find(':').map(|i| start + i)
        {
            s.replace_range(colon..at, "");
        }
    }
    if let Some((base, query)) = s.split_once('?') {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("password="))
            .collect();
        s = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
    }
    s
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CompareError + '_ {
    move |source| CompareError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `DIR/compare-<scenario>-<UTC time>/`, with `-2`, `-3` … if that exists already.
fn make_dir(out: &Path, name: &str, ms: u64) -> Result<PathBuf, CompareError> {
    run::stamped_dir(out, &format!("compare-{name}"), ms)
        .map_err(|(path, source)| CompareError::Io { path, source })
}

/// Runs the scenario once per backend, one after another, and writes the comparison.
pub async fn compare(opts: CompareOptions) -> Result<CompareOutcome, CompareError> {
    // A bad scenario or override is an error of the whole command, found before any run.
    let scenario = Scenario::load(&opts.scenario, &opts.overrides)?;
    let stores: Vec<String> = opts.stores.iter().flat_map(|s| split_stores(s)).collect();
    if stores.is_empty() {
        return Err(CompareError::NoStores);
    }
    let started_ms = unix_ms();
    let dir = make_dir(&opts.out_dir, &scenario.name, started_ms)?;
    let backends = plan(&stores, started_ms);
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let shown = redact(&b.spec);
        println!(
            "compare [{}/{}]: {} ({shown})",
            i + 1,
            backends.len(),
            b.label
        );
        let mut overrides = opts.overrides.clone();
        overrides.push(format!("server.store={}", b.spec));
        let result = run::run(RunOptions {
            scenario: opts.scenario.clone(),
            out_dir: dir.join(&b.label),
            target: None,
            jwt_secret: None,
            baseline: None,
            overrides,
            progress: opts.progress,
            dir_name: None,
            dashboard: None,
        })
        .await;
        let f = match result {
            Ok(outcome) => {
                for line in outcome.failures() {
                    failures.push(format!("{}: {line}", b.label));
                }
                let rel = outcome
                    .dir
                    .strip_prefix(&dir)
                    .unwrap_or(&outcome.dir)
                    .to_path_buf();
                BackendFigures::of_run(&b.label, &shown, &rel, &outcome.summary)
            }
            Err(e) => {
                // One line: a child server's log can span several.
                let message = e
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ");
                let message = message.replace(&b.spec, &shown);
                failures.push(format!(
                    "BACKEND FAILED: {} ({shown}) did not run: {message}",
                    b.label
                ));
                BackendFigures::failed(&b.label, &shown, &message)
            }
        };
        figures.push(f);
        if !opts.keep_data {
            drop_namespace(&b.spec, &shown).await;
        }
    }
    let comparison = Comparison {
        schema_version: table::SCHEMA_VERSION,
        tool: format!("chat-sim {}", env!("CARGO_PKG_VERSION")),
        scenario: scenario.name.clone(),
        scenario_file: opts.scenario.display().to_string(),
        overrides: opts.overrides.iter().map(|o| redact(o)).collect(),
        started_at: utc_string(started_ms),
        finished_at: utc_string(unix_ms()),
        passed: failures.is_empty(),
        failures,
        backends: figures,
    };
    render::write_all(&dir, &comparison).map_err(io_err(&dir))?;
    Ok(CompareOutcome { dir, comparison })
}

/// Drops the schema or keyspace a backend's run used. A namespace that cannot be dropped
/// costs disk, not correctness: it is said on standard error and the comparison goes on.
async fn drop_namespace(spec: &str, shown: &str) {
    match chat_server::store::drop_namespace(spec).await {
        Ok(Some(name)) => tracing::info!(store = shown, name, "dropped the run's namespace"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("warning: could not drop the namespace of {shown} (drop it by hand): {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lists_keep_cql_host_lists_together() {
        assert_eq!(
            split_stores("memory, fjall,cql://a:1,b:2/ks?rf=1,postgres://u@h/db"),
            vec![
                "memory",
                "fjall",
                "cql://a:1,b:2/ks?rf=1",
                "postgres://u@h/db"
            ]
        );
    }

    #[test]
    fn databases_get_fresh_namespaces() {
        let stores: Vec<String> = split_stores(DEFAULT_STORES);
        let b = plan(&stores, 1_700_000_000_000);
        let labels: Vec<&str> = b.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["memory", "fjall", "postgres", "cql"]);
        assert_eq!(b[0].spec, "memory");
        assert_eq!(
            b[2].spec,
            "postgres://chat:chat@127.0.0.1:5433/chat?schema=cmp_20231114_221320_3"
        );
        assert_eq!(
            b[3].spec,
            "cql://127.0.0.1:9042/chat_compare_20231114_221320"
        );
        let p = plan(
            &[
                "postgres://h/db?schema=old&pool_size=4".into(),
                "cql://h:1/A_Very_Long_Keyspace_Name_That_Goes_On_And_On?rf=1".into(),
                "cql://h:1/x".into(),
                "memory".into(),
            ],
            0,
        );
        assert_eq!(
            p[0].spec,
            "postgres://h/db?pool_size=4&schema=cmp_19700101_000000_1"
        );
        let ks = p[1]
            .spec
            .split('/')
            .nth(3)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        assert!(ks.len() <= 48 && ks.ends_with("_19700101_000000"), "{ks}");
        assert!(ks.starts_with("a_very_long"), "{ks}");
        assert!(p[1].spec.ends_with("?rf=1"));
        assert_eq!(p[2].spec, "cql://h:1/x_19700101_000000_3");
        assert_eq!(p[2].label, "cql-2");
    }

    #[test]
    fn passwords_are_removed() {
        assert_eq!(
            redact("postgres://chat:secret@127.0.0.1:5433/chat?schema=x&password=p"),
            "postgres://chat@127.0.0.1:5433/chat?schema=x"
        );
        assert_eq!(redact("cql://h:9042/ks"), "cql://h:9042/ks");
        assert_eq!(redact("memory"), "memory");
        assert_eq!(
            redact("server.store=postgres://a:b@h/d"),
            "server.store=postgres://a@h/d"
        );
    }
}
