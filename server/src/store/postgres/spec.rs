//! The `postgres://` spec: what tokio-postgres accepts in a URL plus the store's own
//! parameters (`schema=`, `pool_size=`), and the session settings the store insists on.

use std::time::Duration;

use super::{CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, IDLE_IN_TRANSACTION_TIMEOUT, STATEMENT_TIMEOUT};
use crate::store::StoreError;

/// What a `postgres://` spec says, once the store's own parameters are taken out.
pub(super) struct Spec {
    pub(super) pg: tokio_postgres::Config,
    pub(super) schema: Option<String>,
    pub(super) pool_size: usize,
}

impl Spec {
    pub(super) fn parse(spec: &str) -> Result<Spec, StoreError> {
        let (base, query) = match spec.split_once('?') {
            Some((b, q)) => (b, q),
            None => (spec, ""),
        };
        let mut kept = Vec::new();
        let mut schema = None;
        let mut pool_size = DEFAULT_POOL_SIZE;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", name)) => {
                    let plain = (1..=63).contains(&name.len())
                        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !plain {
                        return Err(StoreError::Spec(format!(
                            "schema={name:?}: expected 1-63 characters of [a-z0-9_], not starting with a digit"
                        )));
                    }
                    schema = Some(name.to_owned());
                }
                Some(("pool_size", n)) => {
                    pool_size = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            StoreError::Spec(format!("pool_size={n:?}: expected 1 to 1000"))
                        })?;
                }
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Spec(format!("invalid PostgreSQL URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("chat-server");
        }
        // Notice a peer that vanished without closing (a crashed host, a cut network) in
        // about a minute rather than the kernel's two hours.
        pg.keepalives_idle(Duration::from_secs(30));
        // The store's settings come last, so they win over the URL's `options`: the
        // durability contract (`sent` only after a flushed COMMIT) is not negotiable.
        let mut options = pg.get_options().map(str::to_owned).unwrap_or_default();
        options.push_str(&format!(
            " -c synchronous_commit=on -c statement_timeout={} \
             -c idle_in_transaction_session_timeout={}",
            STATEMENT_TIMEOUT.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        ));
        if let Some(schema) = &schema {
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(options.trim_start());
        Ok(Spec {
            pg,
            schema,
            pool_size,
        })
    }
}
