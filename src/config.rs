//! Server configuration: `witness.toml`, with embedded defaults that need nothing installed
//! (SQLite file and local-filesystem object store under `./data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

/// The pipeline templates folder nobody configured: when it is absent, the shipped templates
/// built into the binary are used.
pub const DEFAULT_PIPELINES_DIR: &str = "./pipelines";
/// The storage policies folder nobody configured: when absent, the shipped policies are used.
pub const DEFAULT_POLICIES_DIR: &str = "./storage-policies";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root for everything the server keeps locally: database, objects, spool, keys.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub store: StoreConfig,
    pub recording: RecordingConfig,
    pub disk: DiskConfig,
    pub workload: WorkloadConfig,
    pub audit: AuditConfig,
    pub identity: IdentityConfig,
    pub retention: RetentionConfig,
    pub cluster: ClusterConfig,
    pub evidence: EvidenceConfig,
    pub signing: SigningConfig,
    pub catalogue: CatalogueConfig,
    pub bookings: BookingsConfig,
}

/// The trading catalogue (`catalogue/`: trading categories and methods, as data).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogueConfig {
    /// Folder with `categories.toml` and `methods.toml`; when it is the default and absent, the
    /// catalogue built into the binary is used.
    pub dir: PathBuf,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        CatalogueConfig {
            dir: PathBuf::from(crate::catalogue::DEFAULT_CATALOGUE_DIR),
        }
    }
}

/// What signs manifests, tag manifests and audit checkpoints besides the Ed25519 key, and the
/// RFC 3161 timestamp authority that timestamps them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Also sign with an SM2 key (GB/T 32918, with SM3), created under `data/keys/` on first
    /// start. Off by default: turning it on adds a key that every verifier's trust file must
    /// pin, or packages are judged UNTRUSTED KEY.
    pub sm2: bool,
    /// An RFC 3161 timestamp authority (`http://` or `https://`, POST
    /// `application/timestamp-query`): every session manifest and audit checkpoint gets a token
    /// from it, in the background (a TSA that is down delays the token, never the recording).
    pub tsa_url: Option<String>,
    /// PEM bundle of the CA certificates the TSA's certificate must chain to; every reply is
    /// checked against it before it is stored. Required with `tsa_url`.
    pub tsa_ca_file: Option<PathBuf>,
    /// The TSA policy OID to ask for (the TSA's default when absent).
    pub tsa_policy: Option<String>,
    /// How long to wait before asking again after the TSA failed or was unreachable.
    pub tsa_retry_seconds: f64,
    /// A token still missing this long after it was first asked for raises the alarm.
    pub tsa_alarm_seconds: f64,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            sm2: false,
            tsa_url: None,
            tsa_ca_file: None,
            tsa_policy: None,
            tsa_retry_seconds: 60.0,
            tsa_alarm_seconds: 600.0,
        }
    }
}

/// Bookings drive recording (`bookings::scheduler`): when a booked room starts recording by
/// itself, and when a booked room that is not recording raises the alarm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BookingsConfig {
    /// A booking's recording starts by itself this long before the booked start.
    pub lead_seconds: f64,
    /// This long after the booked start, a booked room that is not recording raises the alarm.
    pub alarm_after_seconds: f64,
    /// How often the scheduler looks at the bookings.
    pub tick_seconds: f64,
}

impl Default for BookingsConfig {
    fn default() -> Self {
        BookingsConfig {
            lead_seconds: 300.0,
            alarm_after_seconds: 120.0,
            tick_seconds: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// A viewing of evidence (one caller, session, source and reason) ends after this long
    /// without a read; the next read opens, and audits, a new one.
    pub viewing_idle_minutes: f64,
    /// How long an approved grant lets its holder play a confidential (评标) session.
    pub confidential_grant_hours: f64,
    /// Live supervision of a confidential room (the 监督室 beside the evaluation area, 6.2.3.3):
    /// `supervision` (default): regulators and discipline officers may watch it live, each time
    /// with a reason, audited; `none`: nobody watches a confidential room live.
    pub confidential_live: ConfidentialLive,
}

/// Who may watch a confidential (evaluation-area) room live: a per-centre policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConfidentialLive {
    /// Regulators and discipline officers, with a reason, audited.
    #[default]
    Supervision,
    /// Nobody.
    None,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            viewing_idle_minutes: 10.0,
            confidential_grant_hours: 24.0,
            confidential_live: ConfidentialLive::Supervision,
        }
    }
}

impl EvidenceConfig {
    pub fn confidential_grant_us(&self) -> i64 {
        (self.confidential_grant_hours * 3600e6) as i64
    }

    pub fn viewing_idle_us(&self) -> i64 {
        (self.viewing_idle_minutes * 60e6) as i64
    }
}

/// How many heavy reads may run at once, per person and in total (`workload`), how long to
/// tell a refused caller to wait, and how long a finished export job (and its scratch files)
/// is kept for download.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadConfig {
    pub exports_per_person: usize,
    pub exports_total: usize,
    pub remuxes_per_person: usize,
    pub remuxes_total: usize,
    pub verifies_per_person: usize,
    pub verifies_total: usize,
    pub retry_after_seconds: u64,
    pub export_job_minutes: f64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            exports_per_person: 2,
            exports_total: 4,
            remuxes_per_person: 1,
            remuxes_total: 2,
            verifies_per_person: 2,
            verifies_total: 4,
            retry_after_seconds: 10,
            export_job_minutes: 60.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name; empty means one generated once and kept in `{data_dir}/node-id`.
    pub node_id: String,
    /// How long a room's lease lasts without renewal: another node takes the room over after.
    pub lease_seconds: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            lease_seconds: 6.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// The legal retention rules (`storage-policies/*.toml`), validated at start-up.
    pub policies_dir: PathBuf,
    /// Where the centre is: `CN` rules always apply, and those of this province (e.g. `CN-ZJ`).
    pub jurisdiction: String,
    /// How often every stored object is re-hashed against its chain entry, and how fast.
    pub fixity_interval_hours: f64,
    pub fixity_mib_per_second: f64,
    /// On Object Lock storage: how often retention and holds are applied to the objects.
    pub worm_sync_seconds: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            policies_dir: PathBuf::from(DEFAULT_POLICIES_DIR),
            jurisdiction: "CN".into(),
            fixity_interval_hours: 24.0,
            fixity_mib_per_second: 50.0,
            worm_sync_seconds: 60.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// A browser session with no request for this long ends.
    pub idle_minutes: f64,
    /// A browser session ends this long after login whatever happens.
    pub session_hours: f64,
    /// Logins are throttled, never locked. Failures (for one account name, or one name from one
    /// address) before attempts must wait; then each further attempt waits
    /// `login_first_delay_seconds`, doubling with every failure, at most
    /// `login_max_delay_seconds`.
    pub login_free_failures: i64,
    /// Failures from one client address (IPv6 by /64), whatever the names, before it waits.
    pub login_address_free_failures: i64,
    pub login_first_delay_seconds: f64,
    pub login_max_delay_seconds: f64,
    /// A counter with no failure for this long starts again from zero.
    pub login_forget_hours: f64,
    /// An address the account logged in from within this many days is its owner's: the
    /// account-wide and address-wide delays do not apply there (only that name from that
    /// address counts), so attackers elsewhere cannot keep the owner out.
    pub login_known_address_days: f64,
    /// At most one audit entry per name and address (checked failures) and per address
    /// (refused unchecked) in this window; the entry counts the attempts it stands for.
    /// 0 writes every attempt.
    pub login_audit_window_seconds: f64,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; 0: half the cores, at least 1.
    /// A login that finds none free within a second is answered 503 `login_busy`.
    pub login_concurrency: usize,
    /// The longest an API token may live.
    pub token_max_days: i64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            idle_minutes: 15.0,
            session_hours: 12.0,
            login_free_failures: 5,
            login_address_free_failures: 20,
            login_first_delay_seconds: 1.0,
            login_max_delay_seconds: 900.0,
            login_forget_hours: 24.0,
            login_known_address_days: 90.0,
            login_audit_window_seconds: 60.0,
            login_concurrency: 0,
            token_max_days: 365,
        }
    }
}

impl IdentityConfig {
    pub fn idle_us(&self) -> i64 {
        (self.idle_minutes * 60e6) as i64
    }
    pub fn session_us(&self) -> i64 {
        (self.session_hours * 3600e6) as i64
    }
    /// The wait before the next attempt after `failures` failures, with `free` of them free.
    pub fn login_delay_us(&self, failures: i64, free: i64) -> i64 {
        if failures < free {
            return 0;
        }
        let first = self.login_first_delay_seconds * 1e6;
        let max = self.login_max_delay_seconds * 1e6;
        let doublings = (failures - free).min(62) as i32;
        (first * 2f64.powi(doublings)).min(max) as i64
    }
    pub fn login_forget_us(&self) -> i64 {
        (self.login_forget_hours * 3600e6) as i64
    }
    pub fn login_known_address_us(&self) -> i64 {
        (self.login_known_address_days * 86_400e6) as i64
    }
    pub fn login_audit_window_us(&self) -> i64 {
        (self.login_audit_window_seconds * 1e6) as i64
    }
    /// Password hashes computed at once (`login_concurrency`, or half the cores).
    pub fn login_permits(&self) -> usize {
        if self.login_concurrency > 0 {
            return self.login_concurrency;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores / 2).max(1)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How often the head of the audit chain is signed (and at every shutdown).
    pub checkpoint_minutes: f64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_minutes: 10.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: HTTPS (rustls). Without them the server speaks
    /// plain HTTP, which is allowed only on a loopback address.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A connection must send a whole request head (request line and headers) within this
    /// long after it opens or after its previous request; otherwise it is closed.
    pub header_timeout_seconds: f64,
    /// A request's body must have arrived within this long after its head; otherwise the
    /// request is refused (408 `request_timeout`). Answers are not cut: a download streams
    /// for as long as it takes.
    pub request_timeout_seconds: f64,
    /// Open connections at most, per listener; beyond it new connections are closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; empty means `sqlite://{data_dir}/witness.db`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    /// Local filesystem; empty path means `{data_dir}/objects`.
    Local {
        #[serde(default)]
        path: PathBuf,
    },
    /// Any S3-compatible server.
    S3 {
        bucket: String,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        access_key_id: String,
        secret_access_key: String,
        #[serde(default = "default_true")]
        path_style: bool,
        /// The bucket has S3 Object Lock (`witness store init` makes one): every object's
        /// retention and legal holds are then enforced by the server, and deletion is only
        /// ever a versioned delete by lawful destruction.
        #[serde(default)]
        object_lock: bool,
    },
}

/// Free-space thresholds of the disks that hold the spool and the local object store: below
/// `warning_free_mib` an alarm; below `critical_free_mib` running sessions go on but new
/// sessions and exports are refused; an export never starts if it would leave less than
/// `export_reserve_mib` free, because recording comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    pub warning_free_mib: u64,
    pub critical_free_mib: u64,
    pub export_reserve_mib: u64,
    pub check_seconds: f64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            warning_free_mib: 2048,
            critical_free_mib: 512,
            export_reserve_mib: 1024,
            check_seconds: 5.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Target segment length; segments close on the first keyframe after it.
    pub segment_seconds: f64,
    /// No buffer of an expected stream (video or audio) reaching the segment files for this
    /// long means the camera is gone or stalled: rebuild the pipeline.
    pub watchdog_seconds: f64,
    /// Coverage tolerance: how far apart one chain entry's end and the next one's start may
    /// be before a gap entry covers the difference (at most 500 ms).
    pub coverage_tolerance_ms: u64,
    /// How far the camera's clock (RTCP) may be from this server's before the server's is used.
    pub camera_clock_max_offset_seconds: f64,
    pub reconnect_min_seconds: f64,
    pub reconnect_max_seconds: f64,
    /// Which graph receives the cameras: `direct` (the RTSP client `retina` straight into the
    /// segment writer, where the template allows; GStreamer's graph otherwise) or `gstreamer`
    /// (GStreamer's `rtspsrc` graph for every source).
    pub receiver: Receiver,
    /// How often each chain's head is signed and stored beside its segments while recording
    /// (`ledger::checkpoint`): a rewrite of the chain after a checkpoint is caught.
    pub checkpoint_seconds: f64,
    /// Where pipeline templates live.
    pub pipelines_dir: PathBuf,
    /// Local spool for segments not yet stored and indexed; empty means `{data_dir}/spool`.
    pub spool_dir: PathBuf,
    /// Scratch space for the derived MP4s of evidence packages; empty means `{data_dir}/exports`.
    pub export_scratch_dir: PathBuf,
}

/// Which graph receives a source (`[recording] receiver`; `capture::graph`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Receiver {
    /// `retina` into our writer where the template and transport allow, else GStreamer.
    #[default]
    Direct,
    /// GStreamer's graph for every source (to compare the two, or as a way back should a
    /// camera need it).
    Gstreamer,
}

impl Receiver {
    /// The configured receiver, unless the environment names one (`WITNESS_RECEIVER`, so that
    /// a whole test run can be made on either graph).
    pub fn or_from_env(self) -> Receiver {
        match std::env::var("WITNESS_RECEIVER").as_deref() {
            Ok("gstreamer") => Receiver::Gstreamer,
            Ok("direct") => Receiver::Direct,
            _ => self,
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http: HttpConfig::default(),
            audit: AuditConfig::default(),
            identity: IdentityConfig::default(),
            retention: RetentionConfig::default(),
            cluster: ClusterConfig::default(),
            evidence: EvidenceConfig::default(),
            signing: SigningConfig::default(),
            catalogue: CatalogueConfig::default(),
            bookings: BookingsConfig::default(),
            database: DatabaseConfig::default(),
            disk: DiskConfig::default(),
            workload: WorkloadConfig::default(),
            store: StoreConfig::Local {
                path: PathBuf::new(),
            },
            recording: RecordingConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            tls_cert: None,
            tls_key: None,
            header_timeout_seconds: 10.0,
            request_timeout_seconds: 60.0,
            max_connections: 1024,
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            segment_seconds: 2.0,
            watchdog_seconds: 4.0,
            coverage_tolerance_ms: 250,
            camera_clock_max_offset_seconds: 2.0,
            reconnect_min_seconds: 0.5,
            reconnect_max_seconds: 2.0,
            receiver: Default::default(),
            checkpoint_seconds: 60.0,
            pipelines_dir: PathBuf::from(DEFAULT_PIPELINES_DIR),
            spool_dir: PathBuf::new(),
            export_scratch_dir: PathBuf::new(),
        }
    }
}

impl Config {
    /// Reads `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
        };
        config.fill_defaults();
        config.validate()?;
        // Every process validates trading categories and methods against the same catalogue.
        let catalogue = crate::catalogue::Catalogue::load_or_shipped(&config.catalogue.dir)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        crate::catalogue::install(catalogue);
        Ok(config)
    }

    fn fill_defaults(&mut self) {
        if self.database.url.is_empty() {
            self.database.url = format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("witness.db").display()
            );
        }
        if let StoreConfig::Local { path } = &mut self.store
            && path.as_os_str().is_empty()
        {
            *path = self.data_dir.join("objects");
        }
        if self.recording.spool_dir.as_os_str().is_empty() {
            self.recording.spool_dir = self.data_dir.join("spool");
        }
        if self.recording.export_scratch_dir.as_os_str().is_empty() {
            self.recording.export_scratch_dir = self.data_dir.join("exports");
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.bookings;
        if !(0.0..=86400.0).contains(&b.lead_seconds)
            || !(1.0..=86400.0).contains(&b.alarm_after_seconds)
            || !(0.1..=60.0).contains(&b.tick_seconds)
        {
            return Err(ConfigError::Invalid(format!(
                "bookings: lead_seconds ({}) must be 0 to 86400, alarm_after_seconds ({}) 1 to 86400 and tick_seconds ({}) 0.1 to 60",
                b.lead_seconds, b.alarm_after_seconds, b.tick_seconds
            )));
        }
        let w = &self.workload;
        if [
            w.exports_per_person,
            w.exports_total,
            w.remuxes_per_person,
            w.remuxes_total,
            w.verifies_per_person,
            w.verifies_total,
        ]
        .contains(&0)
            || !(0.01..=10080.0).contains(&w.export_job_minutes)
        {
            return Err(ConfigError::Invalid(
                "workload: every limit must be at least 1, and export_job_minutes 0.01 to 10080"
                    .into(),
            ));
        }
        let d = &self.disk;
        if d.critical_free_mib > d.warning_free_mib || !(0.1..=3600.0).contains(&d.check_seconds) {
            return Err(ConfigError::Invalid(format!(
                "disk: critical_free_mib ({}) must not exceed warning_free_mib ({}), and check_seconds ({}) must be 0.1 to 3600",
                d.critical_free_mib, d.warning_free_mib, d.check_seconds
            )));
        }
        if !(1.0..=300.0).contains(&self.cluster.lease_seconds) {
            return Err(ConfigError::Invalid(format!(
                "cluster.lease_seconds = {}: expected 1 to 300",
                self.cluster.lease_seconds
            )));
        }
        let r = &self.retention;
        if !(0.1..=86_400.0).contains(&r.worm_sync_seconds) {
            return Err(ConfigError::Invalid(
                "retention.worm_sync_seconds: 0.1 to 86400".into(),
            ));
        }
        if !(0.001..=8760.0).contains(&r.fixity_interval_hours)
            || !(0.1..=100_000.0).contains(&r.fixity_mib_per_second)
        {
            return Err(ConfigError::Invalid(
                "retention: fixity_interval_hours 0.001–8760, fixity_mib_per_second 0.1–100000"
                    .into(),
            ));
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "http.tls_cert and http.tls_key go together".into(),
                ));
            }
            (None, None) if !self.http.listen.ip().is_loopback() => {
                return Err(ConfigError::Invalid(format!(
                    "http.listen = {}: plain HTTP is allowed only on a loopback address; set http.tls_cert and http.tls_key for HTTPS",
                    self.http.listen
                )));
            }
            _ => {}
        }
        let h = &self.http;
        if !(0.1..=3600.0).contains(&h.header_timeout_seconds)
            || !(0.1..=86_400.0).contains(&h.request_timeout_seconds)
            || !(1..=1_000_000).contains(&h.max_connections)
        {
            return Err(ConfigError::Invalid(
                "http: header_timeout_seconds 0.1–3600, request_timeout_seconds 0.1–86400, max_connections 1–1000000".into(),
            ));
        }
        let i = &self.identity;
        if !(0.05..=480.0).contains(&i.idle_minutes)
            || !(0.01..=168.0).contains(&i.session_hours)
            || !(1..=1000).contains(&i.login_free_failures)
            || !(1..=100_000).contains(&i.login_address_free_failures)
            || !(0.001..=3600.0).contains(&i.login_first_delay_seconds)
            || !(i.login_first_delay_seconds..=86_400.0).contains(&i.login_max_delay_seconds)
            || !(0.001..=8760.0).contains(&i.login_forget_hours)
            || i.login_forget_hours * 3600.0 < i.login_max_delay_seconds
            || !(0.0..=3650.0).contains(&i.login_known_address_days)
            || !(0.0..=3600.0).contains(&i.login_audit_window_seconds)
            || i.login_concurrency > 1024
            || !(1..=3650).contains(&i.token_max_days)
        {
            return Err(ConfigError::Invalid(
                "identity: idle_minutes 0.05–480, session_hours 0.01–168, login_free_failures 1–1000, login_address_free_failures 1–100000, login_first_delay_seconds 0.001–3600, login_max_delay_seconds from login_first_delay_seconds to 86400, login_forget_hours 0.001–8760 and not under login_max_delay_seconds, login_known_address_days 0–3650, login_audit_window_seconds 0–3600, login_concurrency 0–1024, token_max_days 1–3650".into(),
            ));
        }
        if !(0.01..=1440.0).contains(&self.evidence.viewing_idle_minutes) {
            return Err(ConfigError::Invalid(format!(
                "evidence.viewing_idle_minutes = {}: expected 0.01 to 1440",
                self.evidence.viewing_idle_minutes
            )));
        }
        let sg = &self.signing;
        if let Some(url) = &sg.tsa_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "signing.tsa_url {url:?}: expected http://… or https://…"
                )));
            }
            if sg.tsa_ca_file.is_none() {
                return Err(ConfigError::Invalid(
                    "signing.tsa_url needs signing.tsa_ca_file: the PEM bundle of the CA certificates the TSA's certificate chains to".into(),
                ));
            }
        }
        if !(0.1..=86_400.0).contains(&sg.tsa_retry_seconds)
            || !(0.0..=604_800.0).contains(&sg.tsa_alarm_seconds)
        {
            return Err(ConfigError::Invalid(
                "signing: tsa_retry_seconds 0.1–86400, tsa_alarm_seconds 0–604800".into(),
            ));
        }
        if !(0.001..=720.0).contains(&self.evidence.confidential_grant_hours) {
            return Err(ConfigError::Invalid(format!(
                "evidence.confidential_grant_hours = {}: expected 0.001 to 720",
                self.evidence.confidential_grant_hours
            )));
        }
        if !(0.001..=1440.0).contains(&self.audit.checkpoint_minutes) {
            return Err(ConfigError::Invalid(format!(
                "audit.checkpoint_minutes = {}: expected 0.001 to 1440",
                self.audit.checkpoint_minutes
            )));
        }
        let r = &self.recording;
        if !(0.5..=60.0).contains(&r.segment_seconds) {
            return Err(ConfigError::Invalid(format!(
                "recording.segment_seconds = {}: expected 0.5 to 60",
                r.segment_seconds
            )));
        }
        if !(1.0..=120.0).contains(&r.watchdog_seconds) {
            return Err(ConfigError::Invalid(format!(
                "recording.watchdog_seconds = {}: expected 1 to 120",
                r.watchdog_seconds
            )));
        }
        if !(1..=500).contains(&r.coverage_tolerance_ms) {
            return Err(ConfigError::Invalid(format!(
                "recording.coverage_tolerance_ms = {}: expected 1 to 500",
                r.coverage_tolerance_ms
            )));
        }
        if !(0.01..=3600.0).contains(&r.camera_clock_max_offset_seconds) {
            return Err(ConfigError::Invalid(format!(
                "recording.camera_clock_max_offset_seconds = {}: expected 0.01 to 3600",
                r.camera_clock_max_offset_seconds
            )));
        }
        if r.reconnect_min_seconds <= 0.0 || r.reconnect_max_seconds < r.reconnect_min_seconds {
            return Err(ConfigError::Invalid(
                "recording.reconnect_min_seconds must be > 0 and <= reconnect_max_seconds".into(),
            ));
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return Err(ConfigError::Invalid(format!(
                "database.url {:?}: expected sqlite://… or postgres://…",
                self.database.url
            )));
        }
        Ok(())
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }
}

impl RecordingConfig {
    pub fn segment_duration(&self) -> Duration {
        Duration::from_secs_f64(self.segment_seconds)
    }
    pub fn watchdog(&self) -> Duration {
        Duration::from_secs_f64(self.watchdog_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_service_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/witness.toml");
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/witness"));
        assert_eq!(
            c.database.url,
            "sqlite:///var/lib/witness/witness.db?mode=rwc"
        );
    }

    #[test]
    fn defaults_point_under_data() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.database.url, "sqlite://./data/witness.db?mode=rwc");
        assert!(
            matches!(&c.store, StoreConfig::Local { path } if path == Path::new("./data/objects"))
        );
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn a_configured_catalogue_folder_that_is_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, "[catalogue]\ndir = \"/nonexistent/catalogue\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/catalogue/categories.toml"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[http]\nlisten = \"127.0.0.1:1\"\nport = 3\n");
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("unknown field `port`")
        );
    }

    #[test]
    fn s3_store_parses() {
        let c: Config = toml::from_str(
            "[store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n",
        )
        .unwrap();
        assert!(matches!(
            c.store,
            StoreConfig::S3 {
                path_style: true,
                ..
            }
        ));
    }
}
