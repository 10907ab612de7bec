//! The source design's inputs.
//!
//! The source document is the classic "design Facebook Messenger"
//! back-of-the-envelope estimate. Its inputs are reproduced exactly by
//! [`Inputs::source_design`](crate::Inputs::source_design); the figures it
//! states are in [`document`](crate::document).

/// The source design's daily active users: 500 million.
pub const DAILY_ACTIVE_USERS: u64 = 500_000_000;
/// The source design's messages per user per day.
pub const MESSAGES_PER_USER_PER_DAY: f64 = 40.0;
/// The source design's average message size in bytes.
pub const MESSAGE_SIZE_BYTES: f64 = 100.0;
/// The source design's retention in years.
pub const RETENTION_YEARS: f64 = 5.0;
/// The source design's connections per chat server: 50 thousand.
pub const CONNECTIONS_PER_SERVER: u64 = 50_000;
/// The source design's shard size: 4 TB.
pub const SHARD_SIZE_BYTES: f64 = 4e12;
