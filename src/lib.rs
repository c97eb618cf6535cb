//! Witness: records the rooms of public-resource trading centres as tamper-evident evidence.
//!
//! A segment's path reads down the folders: `capture` (camera → segment files), `ledger` (hash,
//! chain, store, index), `sessions` (start, stop, resume), `evidence` (replay, export, offline
//! verification); `audit`, `identity` and `retention` beside them, `http` on top. Shared parts
//! (`config`, `db`, `store`, `disk`, `time`, …) sit below. See docs/ARCHITECTURE.md.

pub mod audit;
pub mod bookings;
pub mod capture;
pub mod catalogue;
pub mod config;
pub mod db;
pub mod disk;
pub mod error;
pub mod evidence;
pub mod http;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod project_archive;
pub mod projects;
pub mod retention;
pub mod services;
pub mod sessions;
pub mod simulator;
pub mod store;
pub mod time;
pub mod workload;
pub mod worm;
