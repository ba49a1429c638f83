//! Shared helpers for the system tests live in the test files themselves; this library is empty on purpose.
