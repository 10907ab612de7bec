//! kill -9 of a real server process on a fjall directory, under load, repeatedly: every
//! acknowledged message survives with its seq, sequences stay gap-free, retries of
//! unacknowledged ids are idempotent, and the next message continues the sequence.

use crate::child::kill9_rounds;

/// Three rounds of kill -9 under load on one fjall directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    kill9_rounds(&format!("fjall:{}", dir.path().display()), 3, "warn").await;
}
