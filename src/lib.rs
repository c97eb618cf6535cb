//! Witness: records the rooms of public-resource trading centres as tamper-evident evidence.
//!
//! Shared parts (`config`, `db`, `store`, `http`) sit beside the modules that use them; the
//! recording core (`recording`) is one such module, and the platform modules will be siblings.
//! See docs/ARCHITECTURE.md.

pub mod audit;
pub mod capture;
pub mod config;
pub mod db;
pub mod error;
pub mod evidence;
pub mod http;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod retention;
pub mod services;
pub mod sessions;
pub mod simulator;
pub mod store;
pub mod time;
pub mod worm;
