//! Disk pressure: the free space of the filesystems that hold the spool and the local object
//! store, against the thresholds in `[disk]`. Recording comes first: below the warning
//! threshold Witness alarms; below the critical one, sessions already running go on while new
//! sessions and exports are refused; an export never starts if it would eat into the reserve.
//! Nothing here deletes anything: segments not yet stored stay in the spool, however full.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::config::Config;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskState {
    Ok,
    Warning,
    Critical,
}

impl DiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Warning => "warning",
            DiskState::Critical => "critical",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "storage critically low: {free_mib} MiB free on the {what} disk, under the {limit_mib} MiB that running recordings keep for themselves; new sessions and exports wait until space is freed"
    )]
    Critical {
        what: &'static str,
        free_mib: u64,
        limit_mib: u64,
    },
    #[error(
        "this export needs about {needs_mib} MiB and would leave {left_mib} MiB on the spool's disk, under the {reserve_mib} MiB kept for recording"
    )]
    Reserve {
        needs_mib: u64,
        left_mib: u64,
        reserve_mib: u64,
    },
}

impl From<DiskError> for crate::error::CoreError {
    fn from(e: DiskError) -> Self {
        crate::error::CoreError::InsufficientStorage(e.to_string())
    }
}

/// A change of state, for the alarm and the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub from: DiskState,
    pub to: DiskState,
    pub detail: String,
}

/// The watched disks and what was last read of them.
#[derive(Debug)]
pub struct DiskWatch {
    spool: PathBuf,
    /// The local object store's folder; `None` for S3 (its free space is not ours to read).
    objects: Option<PathBuf>,
    warning: u64,
    critical: u64,
    reserve: u64,
    state: AtomicU8,
    spool_free: AtomicU64,
    objects_free: AtomicU64,
}

/// Free bytes for unprivileged writers on the filesystem holding `path` (its nearest existing
/// ancestor, for a folder not made yet).
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(std::path::Path::new("/"));
    }
    let st = rustix::fs::statvfs(p)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl DiskWatch {
    pub fn new(config: &Config) -> DiskWatch {
        let objects = match &config.store {
            crate::config::StoreConfig::Local { path } => Some(path.clone()),
            _ => None,
        };
        let w = DiskWatch {
            spool: config.recording.spool_dir.clone(),
            objects,
            warning: config.disk.warning_free_mib * MIB,
            critical: config.disk.critical_free_mib * MIB,
            reserve: config.disk.export_reserve_mib * MIB,
            state: AtomicU8::new(0),
            spool_free: AtomicU64::new(u64::MAX),
            objects_free: AtomicU64::new(u64::MAX),
        };
        let _ = w.check();
        w
    }

    pub fn state(&self) -> DiskState {
        match self.state.load(Ordering::Relaxed) {
            0 => DiskState::Ok,
            1 => DiskState::Warning,
            _ => DiskState::Critical,
        }
    }

    /// Reads the disks again; returns the change of state, if any. A disk that cannot be read
    /// counts as full: a guard that fails open would let exports eat the recordings' space.
    pub fn check(&self) -> Option<Change> {
        let spool = free_bytes(&self.spool).unwrap_or(0);
        let objects = self.objects.as_deref().map(|p| free_bytes(p).unwrap_or(0));
        self.spool_free.store(spool, Ordering::Relaxed);
        self.objects_free
            .store(objects.unwrap_or(u64::MAX), Ordering::Relaxed);
        let least = spool.min(objects.unwrap_or(u64::MAX));
        let to = if least < self.critical {
            DiskState::Critical
        } else if least < self.warning {
            DiskState::Warning
        } else {
            DiskState::Ok
        };
        let from = self.state();
        self.state.store(to as u8, Ordering::Relaxed);
        (from != to).then(|| Change {
            from,
            to,
            detail: self.describe(),
        })
    }

    /// The free space, in words.
    pub fn describe(&self) -> String {
        let spool = self.spool_free.load(Ordering::Relaxed) / MIB;
        let mut s = format!("{spool} MiB free on the spool's disk");
        let objects = self.objects_free.load(Ordering::Relaxed);
        if objects != u64::MAX {
            s.push_str(&format!(", {} MiB on the object store's", objects / MIB));
        }
        s.push_str(&format!(
            " (warning under {} MiB, critical under {} MiB)",
            self.warning / MIB,
            self.critical / MIB
        ));
        s
    }

    /// What to show beside the rooms: `None` when all is well.
    pub fn problem(&self) -> Option<String> {
        match self.state() {
            DiskState::Ok => None,
            DiskState::Warning => Some(format!("storage low: {}", self.describe())),
            DiskState::Critical => Some(format!(
                "storage critically low, new sessions and exports refused: {}",
                self.describe()
            )),
        }
    }

    fn critical_error(&self) -> Option<DiskError> {
        let spool = self.spool_free.load(Ordering::Relaxed);
        let objects = self.objects_free.load(Ordering::Relaxed);
        let (what, free) = if spool <= objects {
            ("spool", spool)
        } else {
            ("object store", objects)
        };
        (free < self.critical).then_some(DiskError::Critical {
            what,
            free_mib: free / MIB,
            limit_mib: self.critical / MIB,
        })
    }

    /// May a new session start? Read fresh: not when a disk is critically low.
    pub fn admit_session(&self) -> Result<(), DiskError> {
        let _ = self.check();
        self.critical_error().map_or(Ok(()), Err)
    }

    /// May an export that writes about `bytes` to the spool's disk start? Not when a disk is
    /// critically low, nor when it would leave less than the reserve.
    pub fn admit_export(&self, bytes: u64) -> Result<(), DiskError> {
        let _ = self.check();
        if let Some(e) = self.critical_error() {
            return Err(e);
        }
        let free = self.spool_free.load(Ordering::Relaxed);
        if free.saturating_sub(bytes) < self.reserve {
            return Err(DiskError::Reserve {
                needs_mib: bytes.div_ceil(MIB),
                left_mib: free.saturating_sub(bytes) / MIB,
                reserve_mib: self.reserve / MIB,
            });
        }
        Ok(())
    }

    /// Prometheus lines: free bytes per disk and the state.
    pub fn render_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP witness_disk_free_bytes Free bytes on the disk that holds the spool or the local object store.\n# TYPE witness_disk_free_bytes gauge\n",
        );
        out.push_str(&format!(
            "witness_disk_free_bytes{{disk=\"spool\"}} {}\n",
            self.spool_free.load(Ordering::Relaxed)
        ));
        let objects = self.objects_free.load(Ordering::Relaxed);
        if objects != u64::MAX {
            out.push_str(&format!(
                "witness_disk_free_bytes{{disk=\"objects\"}} {objects}\n"
            ));
        }
        out.push_str("# HELP witness_disk_state 0 ok, 1 warning (storage low), 2 critical (new sessions and exports refused).\n# TYPE witness_disk_state gauge\n");
        out.push_str(&format!("witness_disk_state {}\n", self.state() as u8));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_the_state_and_what_is_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap() / MIB;
        let mut config = Config::default();
        config.recording.spool_dir = dir.path().join("spool-not-made-yet");
        config.store = crate::config::StoreConfig::Local {
            path: dir.path().join("objects"),
        };
        let at = |warning: u64, critical: u64, reserve: u64| {
            let mut c = config.clone();
            c.disk.warning_free_mib = warning;
            c.disk.critical_free_mib = critical;
            c.disk.export_reserve_mib = reserve;
            DiskWatch::new(&c)
        };
        let ok = at(1, 1, 1);
        assert_eq!(ok.state(), DiskState::Ok);
        assert!(ok.admit_session().is_ok() && ok.admit_export(MIB).is_ok());
        assert!(matches!(
            ok.admit_export(free * MIB * 2),
            Err(DiskError::Reserve { .. })
        ));
        let warn = at(free + 1024, 1, 1);
        assert_eq!(warn.state(), DiskState::Warning);
        assert!(warn.problem().unwrap().starts_with("storage low"));
        assert!(warn.admit_session().is_ok());
        let crit = at(free + 2048, free + 1024, 1);
        assert_eq!(crit.state(), DiskState::Critical);
        let e = crit.admit_session().unwrap_err().to_string();
        assert!(e.contains("MiB free on the spool disk"), "{e}");
        assert!(crit.admit_export(0).is_err());
        assert!(crit.render_metrics().contains("witness_disk_state 2"));
    }
}
