//! Fresh namespaces in a shared database: a run that writes into PostgreSQL or Cassandra
//! gets a schema or keyspace of its own, so its bytes on disk are its own and two runs
//! never share users; the run drops it afterwards.

use crate::clock::utc_string;

/// `20261202_015516`: a UTC time that fits schema and keyspace names.
pub fn compact_stamp(ms: u64) -> String {
    utc_string(ms)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '_' } else { c })
        .collect()
}

/// The scheme of a `--store` spec: `postgres`, `cql`, `fjall`, `memory` ….
pub fn scheme(spec: &str) -> &str {
    spec.split(':').next().unwrap_or(spec)
}

/// The column name of a store: its kind, so reports line up across comparisons.
pub fn label_of(spec: &str) -> String {
    match scheme(spec) {
        "postgres" | "postgresql" => "postgres".into(),
        s => {
            let l: String = s
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if l.is_empty() { "store".into() } else { l }
        }
    }
}

/// Sets `key=value` in a URL's query string, replacing any earlier value of `key`.
pub fn set_query(spec: &str, key: &str, value: &str) -> String {
    let (base, query) = spec.split_once('?').unwrap_or((spec, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(key))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("{key}={value}"));
    format!("{base}?{}", pairs.join("&"))
}

/// Replaces the keyspace of a `cql://HOSTS/KEYSPACE[?OPTIONS]` spec with
/// `<keyspace>_<suffix>`: lowercase letters, digits and `_`, at most 48 characters.
pub fn fresh_keyspace(spec: &str, suffix: &str) -> String {
    let (base, query) = match spec.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (spec, None),
    };
    let (hosts, ks) = base.rsplit_once('/').unwrap_or((base, "chat"));
    let mut ks: String = ks
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !ks.starts_with(|c: char| c.is_ascii_alphabetic()) {
        ks.insert(0, 'k');
    }
    ks.truncate(48 - 1 - suffix.len());
    let ks = format!("{ks}_{suffix}");
    match query {
        Some(q) => format!("{hosts}/{ks}?{q}"),
        None => format!("{hosts}/{ks}"),
    }
}

/// `spec` with a namespace of its own (`schema=<suffix>` for PostgreSQL, the keyspace
/// with `_<suffix>` for CQL); `None` for a store without namespaces.
pub fn fresh_namespace(spec: &str, suffix: &str) -> Option<String> {
    match scheme(spec) {
        "postgres" | "postgresql" if spec.contains("://") => {
            Some(set_query(spec, "schema", suffix))
        }
        "cql" if spec.contains("://") => Some(fresh_keyspace(spec, suffix)),
        _ => None,
    }
}
