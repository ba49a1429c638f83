//! The event store against the real PostgreSQL, each test on a database of its own.

mod append;
mod cli;
mod evidence;
mod follower;
mod gap_safety;
mod inbox;
mod leases;
mod outage;

#[path = "../support/mod.rs"]
mod support;

pub use support::{event, eventually};
