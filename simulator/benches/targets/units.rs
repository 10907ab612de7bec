//! The targets bench's pure parts under the test harness: parsing peerbench's results,
//! summaries, the delivery bench's JSON and `/proc`'s CPU lines, medians, ratios, met or
//! not, the table. The bench itself runs without a harness (`harness = false`), which
//! never runs `#[test]` functions, so the tests live in `tests/` and run from here:
//! `cargo test -p simulator --bench targets-units`.

// The modules are the bench's own; the runners that call the rest are not built here.
#![allow(dead_code)]

#[path = "figures.rs"]
mod figures;
#[path = "host.rs"]
mod host;
#[path = "node_rate.rs"]
mod node_rate;
#[path = "parts.rs"]
mod parts;
#[path = "peer.rs"]
mod peer;
#[path = "render.rs"]
mod render;
#[path = "verdict.rs"]
mod verdict;

#[path = "tests/figures.rs"]
mod figures_tests;
#[path = "tests/host.rs"]
mod host_tests;
#[path = "tests/node_rate.rs"]
mod node_rate_tests;
#[path = "tests/parts.rs"]
mod parts_tests;
#[path = "tests/peer.rs"]
mod peer_tests;
#[path = "tests/render.rs"]
mod render_tests;
#[path = "tests/verdict.rs"]
mod verdict_tests;
