//! Session lifecycle: start a room's recording (one recorder and one chain writer per source),
//! stop it once every last segment is stored and indexed, sign the manifest, and on start-up
//! replay the spool and resume sessions the last process left running.

pub mod checkpoints;
mod resume;
mod rooms;
mod start;
pub mod status;
mod stop;
pub mod timestamps;
pub mod verification;
mod view;
pub mod witness_record;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::capture::credentials::CredentialKey;
use crate::capture::recorder::Stop;
use crate::capture::template::Templates;
use crate::catalogue::rooms::Catalogue;
use crate::config::RecordingConfig;
use crate::db::Pool;
use crate::disk::DiskWatch;
use crate::ledger::manifest::Signer;
use crate::ledger::tsa::Timestamps;
use crate::metrics::Metrics;
use crate::retention::policy::Policies;
use crate::store::Store;
use crate::workload::Workload;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub project_code: String,
    pub session_code: String,
    pub kind: String,
    #[serde(default)]
    pub note: String,
    /// Trading category (交易类别), one of `TRADING_CATEGORIES`; `other` when not given.
    #[serde(default = "other_category")]
    pub category: String,
    /// Why the room records outside any booking (required then: `bookings::start_room`);
    /// kept in the `room_start` audit entry.
    #[serde(default)]
    pub reason: String,
    /// The booking this session records; set by the domain (`bookings`), never by a client.
    #[serde(skip)]
    pub booking_id: Option<String>,
    /// The session's witness when not the one who starts it: the staff member who booked a
    /// booking's recording, which the scheduler starts. Set by the domain, never by a client.
    #[serde(skip)]
    pub witness: Option<String>,
}

fn other_category() -> String {
    "other".into()
}

struct LiveSession {
    stop: watch::Sender<Stop>,
    tasks: Vec<JoinHandle<()>>,
    recording_ids: Vec<String>,
}

/// The recording core as the rest of the server sees it.
pub struct Core {
    pub pool: Pool,
    pub store: Store,
    pub config: RecordingConfig,
    pub templates: Templates,
    pub signer: Signer,
    /// Seals and opens camera credentials (`data/keys/credentials.key`).
    pub credentials: CredentialKey,
    pub metrics: Arc<Metrics>,
    /// The retention rules in force, stamped on every session at its start.
    pub policies: Arc<Policies>,
    /// Room kinds (with their default area) and booking activities.
    pub catalogue: Arc<Catalogue>,
    live: Mutex<HashMap<String, LiveSession>>,
    /// Sessions whose stop is under way, so a second stop is refused rather than run twice.
    stopping: Mutex<std::collections::HashSet<String>>,
    /// This node, and how long its room leases last: each room is recorded by one node.
    pub node_id: String,
    lease_ttl_us: i64,
    /// Free space of the spool's and the store's disks: new sessions wait when it is critical.
    pub disk: Arc<DiskWatch>,
    /// Heavy reads running (exports, remuxes, verifications), bounded per person and in total.
    pub workload: Arc<Workload>,
    /// The timestamp authority (`[signing] tsa_url`) and the state of its tokens.
    pub timestamps: Arc<Timestamps>,
}

/// What a `Core` is made of, opened by `services::open_core`.
pub struct Parts {
    pub pool: Pool,
    pub store: Store,
    pub config: RecordingConfig,
    pub templates: Templates,
    pub signer: Signer,
    pub credentials: CredentialKey,
    pub policies: Arc<Policies>,
    pub catalogue: Arc<Catalogue>,
    pub node_id: String,
    pub lease_ttl: std::time::Duration,
    pub disk: Arc<DiskWatch>,
    pub workload: Arc<Workload>,
    pub timestamps: Arc<Timestamps>,
}

impl Core {
    pub fn new(p: Parts) -> Core {
        Core {
            pool: p.pool,
            store: p.store,
            config: p.config,
            templates: p.templates,
            signer: p.signer,
            credentials: p.credentials,
            metrics: Arc::new(Metrics::default()),
            policies: p.policies,
            catalogue: p.catalogue,
            live: Mutex::new(HashMap::new()),
            stopping: Mutex::new(Default::default()),
            node_id: p.node_id,
            lease_ttl_us: p.lease_ttl.as_micros() as i64,
            disk: p.disk,
            workload: p.workload,
            timestamps: p.timestamps,
        }
    }
}
