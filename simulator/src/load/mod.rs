//! Making load: the shard's fixed setup, the open-model schedule and each user's session,
//! message bodies, where devices connect, the Goose users, the groups registry, the records the devices report
//! to, and the shard that runs them all.

pub mod body;
pub mod groups;
pub mod pacer;
pub mod recorder;
pub mod route;
pub mod schedule;
mod session;
pub mod setup;
pub mod shard;
pub mod stop;
pub mod user;
