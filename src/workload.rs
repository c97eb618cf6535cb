//! Bounds on the heavy reads: package exports, MP4 remuxes and verifications each re-read
//! whole sessions from the store, so a few callers could starve the recorders' disks and the
//! store. Each kind has a limit per person and one in total; past either, the caller is told
//! to come back later (HTTP 429 with `Retry-After`) rather than queued without bound. A permit
//! is held for the whole work (a job, a download streamed) and given back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::WorkloadConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    /// Preparing or downloading an evidence package.
    Export,
    /// A playable MP4 made from stored segments.
    Remux,
    /// A session's objects re-read and checked against their chain.
    Verify,
}

impl Work {
    pub fn as_str(self) -> &'static str {
        match self {
            Work::Export => "exports",
            Work::Remux => "MP4 downloads",
            Work::Verify => "verifications",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "too many {} at once ({running} running{}, at most {limit}); try again in {retry_after_seconds} s",
    work.as_str(),
    if *per_person { " of yours" } else { " on this server" }
)]
pub struct Busy {
    pub work: Work,
    pub running: usize,
    pub limit: usize,
    pub per_person: bool,
    pub retry_after_seconds: u64,
}

impl From<Busy> for crate::error::CoreError {
    fn from(b: Busy) -> Self {
        crate::error::CoreError::Busy {
            message: b.to_string(),
            retry_after_seconds: b.retry_after_seconds,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: HashMap<Work, usize>,
    by_person: HashMap<(Work, String), usize>,
}

/// The running heavy reads of this server process.
#[derive(Debug)]
pub struct Workload {
    limits: WorkloadConfig,
    counts: Arc<Mutex<Counts>>,
}

/// One unit of work admitted; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    work: Work,
    person: String,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("workload lock");
        if let Some(n) = c.total.get_mut(&self.work) {
            *n = n.saturating_sub(1);
        }
        let key = (self.work, std::mem::take(&mut self.person));
        if let Some(n) = c.by_person.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_person.remove(&key);
            }
        }
    }
}

impl Workload {
    pub fn new(limits: WorkloadConfig) -> Workload {
        Workload {
            limits,
            counts: Arc::default(),
        }
    }

    fn limits(&self, work: Work) -> (usize, usize) {
        let l = &self.limits;
        match work {
            Work::Export => (l.exports_per_person, l.exports_total),
            Work::Remux => (l.remuxes_per_person, l.remuxes_total),
            Work::Verify => (l.verifies_per_person, l.verifies_total),
        }
    }

    /// Admits one `work` for `person` (the audit trail's name of the person, tokens included),
    /// or says how long to wait.
    pub fn admit(&self, work: Work, person: &str) -> Result<Permit, Busy> {
        let (per_person, total) = self.limits(work);
        let mut c = self.counts.lock().expect("workload lock");
        let mine = c
            .by_person
            .get(&(work, person.to_string()))
            .copied()
            .unwrap_or(0);
        let all = c.total.get(&work).copied().unwrap_or(0);
        let busy = |running, limit, per_person| Busy {
            work,
            running,
            limit,
            per_person,
            retry_after_seconds: self.limits.retry_after_seconds,
        };
        if mine >= per_person {
            return Err(busy(mine, per_person, true));
        }
        if all >= total {
            return Err(busy(all, total, false));
        }
        *c.total.entry(work).or_default() += 1;
        *c.by_person.entry((work, person.to_string())).or_default() += 1;
        Ok(Permit {
            work,
            person: person.to_string(),
            counts: self.counts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_person_and_in_total_and_permits_come_back() {
        let w = Workload::new(WorkloadConfig {
            exports_per_person: 1,
            exports_total: 2,
            ..WorkloadConfig::default()
        });
        let a = w.admit(Work::Export, "li").unwrap();
        let e = w.admit(Work::Export, "li").unwrap_err();
        assert!(e.per_person && e.limit == 1, "{e}");
        assert!(e.to_string().contains("of yours"), "{e}");
        let b = w.admit(Work::Export, "wang").unwrap();
        let e = w.admit(Work::Export, "zhao").unwrap_err();
        assert!(!e.per_person && e.running == 2, "{e}");
        // Other kinds are counted apart.
        let _v = w.admit(Work::Verify, "zhao").unwrap();
        drop(a);
        let _c = w.admit(Work::Export, "zhao").unwrap();
        drop(b);
        let _d = w.admit(Work::Export, "li").unwrap();
    }
}
