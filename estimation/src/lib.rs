//! Capacity estimation for the chat server.
//!
//! The chat server follows the classic "design Facebook Messenger" system
//! design, whose back-of-the-envelope estimate sizes the whole system from a
//! handful of assumptions. This crate turns those assumptions into a
//! capacity plan, reproduces the document's figures exactly, shows where the
//! document rounded, and replaces assumptions with what a simulator run
//! measured ([`mod@calibrate`]).
//!
//! All byte units are decimal: 1 TB = 10^12 B. A year is 365 days.
//!
//! # The source design
//!
//! | input | value |
//! | --- | --- |
//! | daily active users | 500 M |
//! | messages per user per day | 40 |
//! | average message size | 100 B |
//! | retention | 5 years |
//! | connections per chat server | 50 K |
//! | shard size | 4 TB |
//! | replication, storage overhead, peak-to-average, fan-out | 1 |
//!
//! | figure | exact | the document says |
//! | --- | --- | --- |
//! | messages per day | 20 billion | 20 billion |
//! | storage per day | 2 TB | 2 TB |
//! | storage over 5 years | 3.65 PB | 3.6 PB |
//! | bandwidth, each way | 23.1 MB/s | 25 MB/s |
//! | chat servers | 10,000 | 10 K |
//! | shards | 913 | 900, then 1 K |
//!
//! ```
//! use estimation::{Inputs, units::{PB, TB}};
//!
//! let plan = Inputs::source_design().plan()?;
//! assert_eq!(plan.messages_per_day, 20e9);
//! assert_eq!(plan.storage_bytes_per_day, 2.0 * TB);
//! assert_eq!(plan.storage_bytes_total, 3.65 * PB);
//! assert_eq!(format!("{:.1}", plan.bandwidth_in_bytes_per_sec / 1e6), "23.1");
//! assert_eq!(plan.servers, 10_000);
//! assert_eq!(plan.shards, 913);
//!
//! // Change any assumption by name.
//! let replicated = Inputs { replication_factor: 3, ..Inputs::source_design() }.plan()?;
//! assert_eq!(replicated.db_servers, 3 * 913);
//! # Ok::<(), estimation::InputError>(())
//! ```
//!
//! # Calibration from a simulator run
//!
//! The simulator writes a `summary.json` whose `"calibration"` object holds
//! what one node sustained: bytes on disk per message, messages per second
//! and connections inside the latency gates, and memory per connection. The
//! fields are defined and documented in [`mod@calibrate`]; a simulator that
//! depends on this crate writes them by serializing [`Summary`].
//!
//! # Modules
//!
//! * [`model`]: the inputs, the plan and the arithmetic;
//! * [`units`]: decimal units, conversions, formatting and parsing;
//! * [`source`]: the source document's stated figures and rounding;
//! * [`figures`]: the catalogue of plan figures shared by tables and JSON;
//! * [`mod@calibrate`]: `summary.json` fields and the measured plan;
//! * [`report`]: tables and JSON output.

pub mod calibrate;
pub mod document;
pub mod figures;
pub mod model;
pub mod report;
pub mod source;
pub mod units;

pub use calibrate::{
    CALIBRATION_VERSION, CalibratedPlan, Calibration, CalibrationError, CapacityLimit, Summary,
    calibrate,
};
pub use figures::Figure;
pub use model::{InputError, Inputs, Plan, ServerBound};
