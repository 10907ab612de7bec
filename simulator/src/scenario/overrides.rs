//! `--set key=value`: how an override reaches a field of the scenario by its dotted path
//! (`run.seed=7`, `population.device_kinds.0.share=0.5`), and how its text becomes a TOML
//! value without quoting.

use super::ScenarioError;

/// Sets one dotted key in the TOML table. Intermediate tables are created; a number
/// segment indexes an array (`population.device_kinds.0.share=0.5`).
pub(super) fn apply_override(
    table: &mut toml::Table,
    assignment: &str,
) -> Result<(), ScenarioError> {
    let err = |message: String| ScenarioError::Override {
        assignment: assignment.to_owned(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| err("expected key=value, e.g. run.duration_secs=10".into()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(
            "the key must be a dotted path such as load.users".into()
        ));
    }
    let value = parse_value(raw.trim());
    let segments: Vec<&str> = key.split('.').collect();
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &segments, value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result.map_err(err)
}

/// Puts `value` at `segments` below `root`, creating missing tables on the way.
fn set_path(root: &mut toml::Value, segments: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("empty key")?;
    let mut cursor = root;
    for seg in parents {
        cursor = step(cursor, seg)?;
    }
    match cursor {
        toml::Value::Table(t) => {
            t.insert((*last).to_owned(), value);
            Ok(())
        }
        toml::Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("`{last}` indexes a list: use a number"))?;
            let len = a.len();
            let slot = a
                .get_mut(i)
                .ok_or_else(|| format!("the list has {len} entries, no index {i}"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!("`{last}` goes inside a value that is not a table")),
    }
}

fn step<'a>(v: &'a mut toml::Value, seg: &str) -> Result<&'a mut toml::Value, String> {
    match v {
        toml::Value::Table(t) => {
            if !t.contains_key(seg) {
                t.insert(seg.to_owned(), toml::Value::Table(toml::Table::new()));
            }
            t.get_mut(seg).ok_or_else(|| format!("no field `{seg}`"))
        }
        toml::Value::Array(a) => {
            let i: usize = seg
                .parse()
                .map_err(|_| format!("`{seg}` indexes a list: use a number"))?;
            let len = a.len();
            a.get_mut(i)
                .ok_or_else(|| format!("the list has {len} entries, no index {i}"))
        }
        _ => Err(format!("`{seg}` goes inside a value that is not a table")),
    }
}

/// A TOML value when the text is one (`10`, `0.5`, `true`, `"x"`, `[1, 2]`), else the
/// text as a string, so `--set server.store=memory` needs no quotes.
fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}
