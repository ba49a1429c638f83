//! Huawei Cloud KooGallery (华为云云商店) "License authorization-code" (License 2.0) protocol, for sellers.
//!
//! - [`callback`]: the callbacks KooGallery sends (`refreshLicenseCode`, `updateLicenseCodeStatus`,
//!   `releaseLicenseCode`), validated field by field, and the `resultCode` answer.
//! - [`signature`]: verifying and producing the HMAC-SHA256 callback signature.
//! - [`openapi`], [`classify`], [`client`]: the activate and heartbeat APIs the seller calls, what
//!   each answer means, and an HTTP client for them.
//! - [`apig`]: the API Gateway `SDK-HMAC-SHA256` AK/SK signer (and verifier).
//! - [`market_time`]: the marketplace's time formats.
//!
//! The crate knows nothing about storage or queues. Secrets are wrapped in [`Secret`], whose
//! `Debug` is redacted.

pub mod apig;
pub mod callback;
pub mod classify;
pub mod client;
pub mod market_time;
pub mod openapi;
pub mod probe;
mod secret;
pub mod sender;
pub mod signature;

pub use secret::Secret;
