//! Background upkeep of storage: retention drops views' old windows, compaction merges small
//! files, garbage collection deletes files no manifest names once the grace period is over.
//!
//! Each change is a manifest commit of its own, applied to the newest manifest, so it
//! interleaves safely with checkpoints: a compaction whose files changed meanwhile is skipped.
//! Nothing is deleted when it stops being named — queries and backfills that listed a file
//! finish reading it — but after `--gc-grace`, between checkpoint rounds.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::Checkpoints;
use crate::config::Config;
use crate::storage::compaction::FileOwner;
use crate::storage::{CheckpointRecord, Storage};

pub struct Maintenance {
    storage: Arc<Storage>,
    checkpoints: Arc<Checkpoints>,
    interval: Duration,
    target_bytes: u64,
    gc_grace: Duration,
}

impl Maintenance {
    pub fn new(storage: Arc<Storage>, checkpoints: Arc<Checkpoints>, config: &Config) -> Self {
        Maintenance {
            storage,
            checkpoints,
            interval: config.compaction_interval,
            target_bytes: config.compaction_target_bytes,
            gc_grace: config.gc_grace,
        }
    }

    /// Runs [`Maintenance::run`] every interval; stops with the database.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(self.interval).await;
                self.run().await;
            }
        })
    }

    /// One pass: retention, compaction, garbage collection. Failures are logged; the next
    /// pass tries again.
    pub async fn run(&self) {
        if let Err(e) = self.apply_retention().await {
            tracing::warn!(error = %e, "retention failed; the next pass retries");
        }
        for owner in FileOwner::all(&self.storage.manifest()) {
            if let Err(e) = self.storage.compact(&owner, self.target_bytes).await {
                tracing::warn!(relation = %owner, error = %e, "compaction failed; the next pass retries");
            }
        }
        self.checkpoints
            .between_rounds(self.storage.collect_garbage(self.gc_grace))
            .await;
    }

    /// Drops the files of every view with a retention whose windows all ended longer ago.
    async fn apply_retention(&self) -> crate::error::Result<()> {
        let now = chrono::Utc::now();
        let expired = |file_end: Option<i64>, retention: Duration| {
            let cutoff =
                now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
            file_end.is_some_and(|end| end <= cutoff.timestamp_micros())
        };
        let manifest = self.storage.manifest();
        let due = manifest.views.values().any(|v| {
            v.def
                .retention()
                .is_some_and(|r| v.files.iter().any(|f| expired(f.windows_end, r)))
        });
        if !due {
            return Ok(());
        }
        let mut dropped = Vec::new();
        self.storage
            .commit(|m| {
                let checkpoint = m.checkpoint_id();
                for state in m.views.values_mut() {
                    let Some(retention) = state.def.retention() else {
                        continue;
                    };
                    let (old, kept) = std::mem::take(&mut state.files)
                        .into_iter()
                        .partition::<Vec<_>, _>(|f| expired(f.windows_end, retention));
                    state.files = kept;
                    if !old.is_empty() {
                        dropped.push(CheckpointRecord {
                            id: checkpoint,
                            kind: "retention".into(),
                            reason: format!("materialized view {}", state.def.name),
                            started_at_ms: now.timestamp_millis(),
                            duration_ms: 0,
                            size_bytes: old.iter().map(|f| f.size_bytes).sum(),
                            state_bytes: 0,
                            files: old.len() as u64,
                        });
                    }
                }
                for record in &dropped {
                    m.record(record.clone());
                }
                Ok(())
            })
            .await?;
        for record in dropped {
            tracing::info!(relation = %record.reason, files = record.files, bytes = record.size_bytes, "dropped files past the view's retention");
        }
        Ok(())
    }
}
