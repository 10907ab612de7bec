//! Integration tests of `chat-sim`: one binary, one module per topic.

mod cli;
mod compare;
mod end_to_end;
mod faults;
mod support;
