//! The projector: follows the event store to keep the license views and the calls owed to the
//! marketplace, runs the outbound worker that makes those calls (their outcomes go back to the
//! processor as commands), and serves the query API and the operator console.
//!
//! Its rooms, and the one way their imports run (checked by `tests/tests/architecture.rs`):
//! `startup` builds and runs everything; the two front ends, `api` and `console` (which shows
//! the API's own answers), and the `workers` read through `evidence` and the `read_model`; the
//! `read_model` holds the tables and the followers that write them, with no HTTP and no broker.
//! `config`, `metrics` and `commands` are shared by all of them and import no room.

mod api;
mod commands;
mod config;
mod console;
mod evidence;
mod metrics;
mod read_model;
mod startup;
mod workers;

pub use config::ProjectorConfig;
pub use config::network::Network;
pub use config::probe::{ProbeSchedule, ProbeSettings};
pub use evidence::pack::evidence_pack;
pub use evidence::{GatherError, Window};
pub use read_model::fold::replay;
pub use read_model::rebuild::{RebuildReport, rebuild};
pub use read_model::views::Views;
pub use read_model::{ReadModelError, ensure_schema};
pub use startup::{OPENAPI, Projector};
pub use workers::publisher::{EVENT_ENVELOPE_VERSION, envelope};
pub use workers::schedule::{Schedule, ScheduleError, TAKE_DUE, take_due};
