//! How a PostgreSQL call fails: a driver error classified once into the store's
//! [`StoreError`], so a send can tell a race it should run again from a real failure.

use super::StoreError;

/// What a store call failed with inside: a PostgreSQL error (classified once, at the end,
/// so a send can tell a race it should run again from a real failure) or a decided
/// [`StoreError`].
pub(super) enum Failure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Pg(e) => pg_error(e),
            Failure::Store(e) => e,
        }
    }
}

impl Failure {
    /// Whether the transaction was rolled back by a race that running it again resolves:
    /// the idempotency record of a concurrent copy of the same send, a deadlock broken by
    /// the server, or a serialization failure.
    pub(super) fn is_race(&self) -> bool {
        let Failure::Pg(e) = self else {
            return false;
        };
        let Some(db) = e.as_db_error() else {
            return false;
        };
        match db.code().code() {
            "40P01" | "40001" => true,
            "23505" => db.constraint() == Some("idem_pkey"),
            _ => false,
        }
    }
}

/// Classifies a PostgreSQL error. Data exceptions, integrity violations the store does not
/// expect, SQL the schema does not accept and internal errors mean a bug or a damaged
/// store (`Corrupt`); everything else (no connection, the server shutting down, out of
/// resources, a timeout, a broken deadlock) is `Unavailable`: the transaction did not
/// commit, and a retry may succeed.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return StoreError::Unavailable(format!("PostgreSQL: {}", with_causes(&e)));
    };
    let code = db.code().code();
    let text = format!("PostgreSQL {code}: {}", db.message());
    match code.get(..2) {
        Some("22" | "23" | "42" | "XX") => StoreError::Corrupt(text),
        _ => StoreError::Unavailable(text),
    }
}

/// An error with the chain of its causes ("error connecting to server: Connection
/// refused"), which its own text leaves out.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

pub(super) fn corrupt(what: impl Into<String>) -> Failure {
    Failure::Store(StoreError::Corrupt(what.into()))
}
