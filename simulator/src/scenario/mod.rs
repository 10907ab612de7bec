//! Scenario files: the TOML people edit and CI runs, how `--set key=value` overrides a
//! field by its dotted path, and the checks that turn a bad value into an error naming the
//! file and the field instead of a panic or a silently odd run.
//!
//! A scenario scales the source design down to one machine: `population` says how many of
//! the design's daily active users are simulated and with which devices, `traffic` how
//! often they write (per *simulated* day, with a day compressed into `day_seconds` real
//! seconds), `contacts` who writes to whom, `groups`, `churn`, `run`, `server` and `gates`
//! the rest. Every field has a default except `name`; `scenarios/README.md` documents
//! them all.
//!
//! | file | holds |
//! |---|---|
//! | [`format`](mod@format) | the file's sections and fields |
//! | `defaults` | every field's value when the file leaves it out |
//! | `overrides` | `--set` by dotted path |
//! | [`cluster`] | the `[cluster]` section and `[[faults]]` |
//! | `validate` | the checks of every value |

pub mod cluster;
mod defaults;
pub mod format;
mod overrides;
mod validate;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use self::format::*;
use self::overrides::apply_override;

/// Why a scenario could not be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: field `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
}

impl Scenario {
    /// Reads a scenario file and applies `--set` overrides (`key=value`, dotted keys).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path, overrides)
    }

    /// Parses scenario text; `path` only names the source in errors.
    pub fn from_toml_str(
        text: &str,
        path: &Path,
        overrides: &[String],
    ) -> Result<Scenario, ScenarioError> {
        let parse_err = |message: String| ScenarioError::Parse {
            path: path.to_owned(),
            message,
        };
        // The file alone first, so its errors point at its own lines and fields.
        let scenario: Scenario = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if overrides.is_empty() {
            scenario.validate(path)?;
            return Ok(scenario);
        }
        // Overrides apply to the scenario with every default filled in, so a list the
        // file left out (e.g. `population.device_kinds.0.share`) can be indexed too.
        let mut table = match toml::Value::try_from(&scenario) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::from_str(text).map_err(|e| parse_err(e.to_string()))?,
        };
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        let de = toml::Value::Table(table);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            // Name the override that touched the failing field, if one did.
            let assignment = overrides
                .iter()
                .find(|a| {
                    a.split_once('=').is_some_and(|(k, _)| {
                        field.starts_with(k.trim()) || k.trim().starts_with(&field)
                    })
                })
                .cloned()
                .unwrap_or_else(|| overrides.join(" "));
            ScenarioError::Override {
                assignment,
                message: format!("field `{field}`: {message}"),
            }
        })?;
        scenario.validate(path)?;
        Ok(scenario)
    }

    /// Simulated users: round(DAU × scale).
    pub fn users(&self) -> u64 {
        (self.population.daily_active_users as f64 * self.population.scale).round() as u64
    }

    /// Sends per user per real second.
    pub fn sends_per_user_per_sec(&self) -> f64 {
        self.traffic.messages_per_user_per_day / self.traffic.day_seconds
    }

    /// Converts a per-simulated-day rate into a per-real-second rate.
    pub fn per_sec(&self, per_day: f64) -> f64 {
        per_day / self.traffic.day_seconds
    }

    /// Time compression: simulated seconds per real second.
    pub fn compression(&self) -> f64 {
        86_400.0 / self.traffic.day_seconds
    }

    /// Whether the named check must pass.
    pub fn check_gated(&self, name: &str) -> bool {
        match &self.gates.checks {
            CheckSelection::Word(w) => w == "all",
            CheckSelection::List(l) => l.iter().any(|n| n == name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, overrides: &[&str]) -> Result<Scenario, ScenarioError> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Scenario::from_toml_str(text, Path::new("test.toml"), &o)
    }

    #[test]
    fn minimal_scenario_takes_defaults() {
        let s = parse("name = \"x\"", &[]).unwrap();
        assert_eq!(s.users(), 100);
        assert_eq!(s.traffic.messages_per_user_per_day, 40.0);
        assert_eq!(s.traffic.message_size.mean_bytes, 100.0);
        assert!(s.check_gated("order"));
    }

    #[test]
    fn overrides_set_fields_by_dotted_path() {
        let s = parse(
            "name = \"x\"\n[run]\nduration_secs = 5\n",
            &[
                "run.duration_secs=9",
                "server.store=memory",
                "gates.p99_send_to_sent_ms=12.5",
                "population.device_kinds.0.share=2",
                "gates.checks=[\"order\", \"gaps\"]",
            ],
        )
        .unwrap();
        assert_eq!(s.run.duration_secs, 9);
        assert_eq!(s.server.store, "memory");
        assert_eq!(s.gates.p99_send_to_sent_ms, Some(12.5));
        assert_eq!(s.population.device_kinds[0].share, 2.0);
        assert!(s.check_gated("gaps"));
        assert!(!s.check_gated("consistency"));
    }

    #[test]
    fn unknown_keys_are_clear_errors() {
        let e = parse("name = \"x\"", &["run.durashun=3"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--set run.durashun=3") && e.contains("durashun"),
            "{e}"
        );
        let e = parse("name = \"x\"\n[run]\nfoo = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.toml") && e.contains("foo"), "{e}");
        let e = parse("name = \"x\"", &["novalue"]).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = parse("name = \"x\"", &["run.duration_secs=soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.duration_secs"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("name = \"a b\"", "name"),
            (
                "name = \"x\"\n[population]\nscale = 2.0",
                "population.scale",
            ),
            (
                "name = \"x\"\n[population]\nscale = 1e-9",
                "population.scale",
            ),
            (
                "name = \"x\"\n[traffic]\nday_seconds = 0",
                "traffic.day_seconds",
            ),
            (
                "name = \"x\"\n[traffic.message_size]\nmean_bytes = 5000",
                "traffic.message_size.mean_bytes",
            ),
            (
                "name = \"x\"\n[groups]\nmin_size = 9\nmax_size = 4",
                "groups.min_size",
            ),
            ("name = \"x\"\n[gates]\nchecks = \"some\"", "gates.checks"),
            ("name = \"x\"\n[gates]\nchecks = [\"orde\"]", "gates.checks"),
            (
                "name = \"x\"\n[run]\nduration_secs = 0",
                "run.duration_secs",
            ),
            (
                "name = \"x\"\n[[population.device_kinds]]\nname = \"p\"\nhistory_page_size = 0",
                "history_page_size",
            ),
        ];
        for (text, field) in cases {
            let e = parse(text, &[]).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?}: {e}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = parse("name = ", &[]).unwrap_err().to_string();
        assert!(e.starts_with("test.toml"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 5, "expected the five shipped scenarios, found {n}");
    }
}
