//! The ledger: what makes a recording evidence. A closed segment is fsynced and hashed
//! (`spool`), put in the store and linked into its recording's hash chain (`writer`, `chain`),
//! with the coverage rule enforced on every entry (`coverage`, `clock`), indexed in SQL (`index`),
//! its head signed every minute while recording (`checkpoint`) and, at stop, summed up in a signed manifest (`manifest`). `verify` checks it all again;
//! `lease` says which node may write a recording.
//!
//! Invariant: the ledger knows nothing of GStreamer, HTTP or the audit trail.

pub mod chain;
pub mod checkpoint;
pub mod clock;
pub mod coverage;
pub mod decision;
pub mod index;
pub mod keys;
pub mod late;
pub mod lease;
pub mod manifest;
pub mod session_check;
pub mod spool;
pub mod timestamp;
pub mod tsa;
pub mod values;
pub mod verify;
pub mod views;
pub mod witness_record;
pub mod writer;
