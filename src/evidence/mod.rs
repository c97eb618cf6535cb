//! Evidence out of the ledger: HLS playlists and segments for replay (`replay`), evidence
//! packages (`export`, written by `archive` as tar or zip) and their offline check
//! (`package`), and playable MP4 copies (`remux`, derived, never evidence).

pub mod access;
pub mod archive;
pub mod export;
pub mod grants;
mod hash_lanes;
mod objects;
pub mod package;
pub mod project_catalogue;
pub mod remux;
pub mod replay;
pub mod witness_record;
