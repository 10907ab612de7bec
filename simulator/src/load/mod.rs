//! Making load: the open-model schedule, message bodies, the Goose users and the shard
//! that runs them.

pub mod body;
pub mod groups;
pub mod recorder;
pub mod schedule;
pub mod setup;
pub mod shard;
pub mod user;
