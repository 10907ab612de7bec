//! The server's integration tests: one binary, one module per topic. Every test talks to
//! real things: a real server on 127.0.0.1:0, a real fjall directory, a real child process.

mod browser;
mod child;
mod cluster;
mod durability;
mod errors;
mod groups;
mod hostile;
mod http_api;
mod lifecycle;
mod presence;
mod push;
mod stalls;
mod store_cache;
mod store_cql;
mod store_cql_shared;
mod store_fjall;
mod store_memory;
mod store_postgres;
mod storm;
mod support;
mod web;
mod ws_chat;
