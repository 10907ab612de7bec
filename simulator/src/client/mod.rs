//! The client side of the wire contract: WebSocket devices and HTTP calls.

pub mod events;
pub mod frames;
pub mod http;
pub mod stamped;
pub mod ws;
