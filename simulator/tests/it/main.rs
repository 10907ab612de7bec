//! Integration tests of `chat-sim`: one binary, one module per topic.

mod capacity;
mod cli;
mod cluster;
mod compare;
mod crashloop;
mod dashboard;
mod end_to_end;
mod faults;
mod support;
