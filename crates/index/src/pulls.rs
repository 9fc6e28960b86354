//! Pull records, batched: a pull adds to a map in memory and a task writes the map every few
//! seconds in one transaction, so no pull waits on the database. Records of a process that is
//! killed before its next flush are lost; they are times of last use, not data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::{Index, PullRecord};

/// Most distinct manifests remembered between two flushes; pulls beyond are dropped (and
/// logged once per flush) rather than growing memory without bound.
const MAX_PENDING: usize = 100_000;

/// The batcher of pull records.
#[derive(Clone)]
pub struct PullRecorder {
    pending: Arc<Mutex<HashMap<PullRecord, SystemTime>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl PullRecorder {
    /// Starts a recorder whose task writes to `index` every `every` (needs a Tokio runtime).
    pub fn spawn(index: Index, every: Duration) -> PullRecorder {
        let r = PullRecorder {
            pending: Arc::default(),
            dropped: Arc::default(),
        };
        let task = r.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                task.flush(&index).await;
            }
        });
        r
    }

    /// Notes a pull (never waits on the database).
    pub fn record(&self, repository: &str, digest: &berth_oci::Digest) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = PullRecord {
            repository: repository.to_owned(),
            digest: digest.clone(),
        };
        if p.len() >= MAX_PENDING && !p.contains_key(&key) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        p.insert(key, SystemTime::now());
    }

    /// Writes what is pending; on failure the records go back to be tried on the next flush.
    pub async fn flush(&self, index: &Index) {
        let batch: Vec<(PullRecord, SystemTime)> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *p).into_iter().collect()
        };
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "pull records dropped: more distinct manifests pulled between two flushes than the recorder holds"
            );
        }
        if batch.is_empty() {
            return;
        }
        if let Err(e) = index.record_pulls(&batch).await {
            tracing::warn!(error = %e, records = batch.len(), "cannot record pulls in the index; retrying at the next flush");
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, t) in batch {
                if p.len() >= MAX_PENDING {
                    break;
                }
                let e = p.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
        }
    }
}
