//! The running system for black-box tests: a fresh database, a random RabbitMQ prefix, the real
//! `licensing-ingress` and `licensing-processor` binaries, and a client that signs callbacks.

// Each test binary uses a part of this module: what it leaves unused is not dead.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use koogallery::signature::{AccessKey, signed_query};
use licensing_store::testing::TestDatabase;
use licensing_store::{RecordedEvent, Store};
use serde_json::Value;

mod clock;
mod console;
mod fixtures;
mod measure;
mod net;
mod services;
mod simulator;
mod stack;
mod tools;
mod wait;
pub mod webdriver;

pub use clock::*;
pub use console::*;
pub use fixtures::*;
pub use measure::*;
pub use net::*;
pub use services::*;
pub use simulator::*;
pub use stack::*;
pub use tools::*;
pub use wait::*;

/// The callback key of the tests (`LICENSING_CALLBACK_KEYS`).
pub const KEY: &str = "systemTestAccessKey0123456789";
/// The API token of the tests (`LICENSING_API_TOKENS`).
pub const TOKEN: &str = "system-test-token-0123456789";

/// The console's session key in the tests (`LICENSING_CONSOLE_SECRET`).
pub const CONSOLE_KEY: &str = "system-test-console-key-0123456789";
