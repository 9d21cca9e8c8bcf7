//! Compaction: runs of small Parquet files of one relation are rewritten as one file and
//! swapped for it in a new manifest.
//!
//! A checkpoint adds a file per relation every interval, so files stay small; queries pay per
//! file. Which files to merge is size-tiered: a run of consecutive small files whose largest is
//! at most a [`FAN_IN`]th of the run, so every rewrite of a row at least quadruples the file it
//! is in and a row is rewritten at most log4(target / file size) times, not once per new file. Runs keep the files' order, since a view backfilling from a
//! source must see its events in the order they came. The replaced files stay on storage
//! until garbage collection deletes them after the grace period, so queries and backfills
//! that listed them finish. A table that a view reads is left alone: the view remembers which
//! of its files it has read, by name.

use std::ops::Range;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::manifest::{CheckpointRecord, DataFile, Manifest};
use super::{Storage, data_file_path, parquet};
use crate::error::{Error, Result};

/// Fewest files one compaction merges.
pub const FAN_IN: usize = 4;
/// Most files one compaction merges (bounds the planning work on a long list of tiny files).
const MAX_RUN_FILES: usize = 1_000;

/// Whose files a compaction rewrites; `id` tells a relation from a later one of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOwner {
    Table { name: String, id: u64 },
    Source { name: String, id: u64 },
    View { name: String, id: u64 },
    RejectedRows,
    LateRows,
}

impl std::fmt::Display for FileOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOwner::Table { name, .. } => write!(f, "table {name}"),
            FileOwner::Source { name, .. } => write!(f, "source {name}"),
            FileOwner::View { name, .. } => write!(f, "materialized view {name}"),
            FileOwner::RejectedRows => f.write_str("sluice_catalog.rejected_rows"),
            FileOwner::LateRows => f.write_str("sluice_catalog.late_rows"),
        }
    }
}

impl FileOwner {
    /// Every owner whose files may be compacted: all but tables that views read.
    pub fn compactable(m: &Manifest) -> Vec<FileOwner> {
        let read_by_view = |table: &str| m.views.values().any(|v| v.def.reads(table));
        Self::all(m)
            .into_iter()
            .filter(|owner| !matches!(owner, FileOwner::Table { name, .. } if read_by_view(name)))
            .collect()
    }

    /// Every owner of data files in `m`.
    pub fn all(m: &Manifest) -> Vec<FileOwner> {
        let tables = m.tables.values().map(|t| FileOwner::Table {
            name: t.def.name.clone(),
            id: t.def.id,
        });
        let sources = m.sources.values().map(|s| FileOwner::Source {
            name: s.def.name.clone(),
            id: s.def.id,
        });
        let views = m.views.values().map(|v| FileOwner::View {
            name: v.def.name.clone(),
            id: v.def.id,
        });
        tables
            .chain(sources)
            .chain(views)
            .chain([FileOwner::RejectedRows, FileOwner::LateRows])
            .collect()
    }

    /// The owner's files in `m`, if it still exists there.
    pub fn files<'m>(&self, m: &'m Manifest) -> Option<&'m Vec<DataFile>> {
        match self {
            FileOwner::Table { name, id } => m
                .tables
                .get(name)
                .filter(|t| t.def.id == *id)
                .map(|t| &t.files),
            FileOwner::Source { name, id } => m
                .sources
                .get(name)
                .filter(|s| s.def.id == *id)
                .map(|s| &s.files),
            FileOwner::View { name, id } => m
                .views
                .get(name)
                .filter(|v| v.def.id == *id)
                .map(|v| &v.files),
            FileOwner::RejectedRows => Some(&m.rejected_rows),
            FileOwner::LateRows => Some(&m.late_rows),
        }
    }

    fn files_mut<'m>(&self, m: &'m mut Manifest) -> Option<&'m mut Vec<DataFile>> {
        match self {
            FileOwner::Table { name, id } => m
                .tables
                .get_mut(name)
                .filter(|t| t.def.id == *id)
                .map(|t| &mut t.files),
            FileOwner::Source { name, id } => m
                .sources
                .get_mut(name)
                .filter(|s| s.def.id == *id)
                .map(|s| &mut s.files),
            FileOwner::View { name, id } => m
                .views
                .get_mut(name)
                .filter(|v| v.def.id == *id)
                .map(|v| &mut v.files),
            FileOwner::RejectedRows => Some(&mut m.rejected_rows),
            FileOwner::LateRows => Some(&mut m.late_rows),
        }
    }

    fn new_path(&self, file_id: u64) -> Path {
        match self {
            FileOwner::Table { name, id } => data_file_path("tables", name, *id, file_id),
            FileOwner::Source { name, id } => data_file_path("sources", name, *id, file_id),
            FileOwner::View { name, id } => data_file_path("views", name, *id, file_id),
            FileOwner::RejectedRows => system_file_path("rejected_rows", file_id),
            FileOwner::LateRows => system_file_path("late_rows", file_id),
        }
    }

    /// Replaces `run` (still consecutive in the owner's files) by `merged`; `false` when the
    /// owner or the run is gone (dropped, or changed by retention meanwhile) or the owner is a
    /// table a view now reads.
    fn replace(&self, m: &mut Manifest, run: &[DataFile], merged: DataFile) -> bool {
        // A view created over the table since the run was planned reads its files by name.
        if let FileOwner::Table { name, .. } = self
            && m.views.values().any(|v| v.def.reads(name))
        {
            return false;
        }
        let Some(files) = self.files_mut(m) else {
            return false;
        };
        let same = |window: &[DataFile]| window.iter().zip(run).all(|(a, b)| a.path == b.path);
        let Some(at) = files.windows(run.len()).position(same) else {
            return false;
        };
        files.splice(at..at + run.len(), [merged]);
        true
    }
}

pub(super) fn system_file_path(table: &str, file_id: u64) -> Path {
    Path::from(format!("system/{table}/part-{file_id:020}.parquet"))
}

/// The runs of `files` worth merging, in order; files of `target / 2` bytes or more stay.
pub fn plan(files: &[DataFile], target: u64) -> Vec<Range<usize>> {
    let small = |f: &DataFile| f.size_bytes < target / 2;
    let mut runs = Vec::new();
    let mut start = 0;
    while start < files.len() {
        // The longest run of small files from `start`, within the target size and
        // [`MAX_RUN_FILES`], whose largest file is at most a FAN_INth of it.
        let (mut bytes, mut largest, mut best) = (0, 0, None);
        for (end, file) in files.iter().enumerate().skip(start).take(MAX_RUN_FILES) {
            if !small(file) || bytes + file.size_bytes > target {
                break;
            }
            bytes += file.size_bytes;
            largest = largest.max(file.size_bytes);
            if end + 1 - start >= FAN_IN && largest * FAN_IN as u64 <= bytes {
                best = Some(end + 1);
            }
        }
        match best {
            Some(end) => {
                runs.push(start..end);
                start = end;
            }
            None => start += 1,
        }
    }
    runs
}

impl Storage {
    /// Compacts the files of `owner` as [`plan`] says, one commit per run, each recorded in
    /// the manifest. A run that changed meanwhile is left as it is, committing nothing.
    pub async fn compact(&self, owner: &FileOwner, target: u64) -> Result<()> {
        let manifest = self.manifest();
        let Some(files) = owner.files(&manifest) else {
            return Ok(());
        };
        for range in plan(files, target) {
            let run = &files[range];
            let started_at_ms = chrono::Utc::now().timestamp_millis();
            let started = std::time::Instant::now();
            let Some(merged) = self.merge(owner, run).await? else {
                continue;
            };
            crate::failpoint::crash_point("compaction.written");
            let record = CheckpointRecord {
                id: manifest.checkpoint_id(),
                kind: "compaction".into(),
                reason: owner.to_string(),
                started_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                size_bytes: merged.size_bytes,
                state_bytes: 0,
                files: run.len() as u64,
            };
            let mut changed = false;
            let committed = self
                .commit(|m| {
                    if !owner.replace(m, run, merged) {
                        changed = true;
                        return Err(Error::Internal("the run changed meanwhile".into()));
                    }
                    m.record(record.clone());
                    Ok(())
                })
                .await;
            crate::failpoint::crash_point("compaction.committed");
            match committed {
                Ok(_) => {
                    tracing::info!(relation = %owner, files = run.len(), bytes = record.size_bytes, "compacted small files");
                }
                Err(_) if changed => {
                    tracing::debug!(relation = %owner, "compaction skipped: its files changed meanwhile");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes the rows of `run`, in order, as one new file (not committed).
    async fn merge(&self, owner: &FileOwner, run: &[DataFile]) -> Result<Option<DataFile>> {
        let first = self.read_file(&run[0]).await?;
        let Some(schema) = first.first().map(|b| b.schema()) else {
            return Ok(None);
        };
        let store = Arc::clone(&self.store);
        let rest = futures::stream::iter(run[1..].to_vec())
            .then(move |file| {
                let store = Arc::clone(&store);
                async move { parquet::read_file(store, &file).await }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        let batches = futures::stream::iter(first.into_iter().map(Ok))
            .chain(rest)
            .map_err(|e: Error| DataFusionError::External(Box::new(e)));
        let input = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), batches));
        let path = owner.new_path(self.new_file_id());
        let written = parquet::write_file(Arc::clone(&self.store), path, schema, input).await?;
        Ok(written.map(|file| DataFile {
            windows_end: run.iter().filter_map(|f| f.windows_end).max(),
            ..file
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<DataFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size_bytes)| DataFile {
                path: format!("f{i}"),
                size_bytes,
                rows: 1,
                windows_end: None,
            })
            .collect()
    }

    #[test]
    fn merges_runs_of_small_files_and_leaves_big_ones() {
        // Target 100: files of 50 or more stay; runs stop at them and at the target.
        assert_eq!(
            plan(&files(&[10, 10, 10, 10, 60, 10, 10, 10]), 100),
            vec![0..4]
        );
        assert_eq!(plan(&files(&[10; 12]), 100), vec![0..10]);
        assert_eq!(plan(&files(&[10; 3]), 100), Vec::<Range<usize>>::new());
        // A bigger file after small ones ends their run rather than blocking it.
        assert_eq!(plan(&files(&[10, 10, 10, 10, 45]), 100), vec![0..4]);
        assert_eq!(plan(&files(&[30, 10, 10, 10, 10, 45]), 100), vec![1..5]);
    }

    #[test]
    fn a_merged_file_waits_for_peers_of_its_size() {
        // 40 is more than a quarter of 40 + 10 + 10 + 10 + 10: merging it now would rewrite
        // it for little; the four after it go first.
        assert_eq!(plan(&files(&[40, 10, 10, 10, 10]), 1000), vec![1..5]);
        assert_eq!(plan(&files(&[40, 40, 40, 40]), 1000), vec![0..4]);
    }

    #[test]
    fn every_row_is_rewritten_a_logarithmic_number_of_times() {
        // One small file per checkpoint, compacting after each: count bytes rewritten.
        let target = 1 << 30;
        let mut current: Vec<DataFile> = Vec::new();
        let (mut written, mut rewritten) = (0u64, 0u64);
        for i in 0..4096 {
            current.push(DataFile {
                path: format!("new{i}"),
                size_bytes: 1000,
                rows: 1,
                windows_end: None,
            });
            written += 1000;
            while let Some(range) = plan(&current, target).into_iter().next() {
                let bytes: u64 = current[range.clone()].iter().map(|f| f.size_bytes).sum();
                rewritten += bytes;
                let merged = DataFile {
                    path: format!("m{i}-{}", range.start),
                    size_bytes: bytes,
                    rows: 1,
                    windows_end: None,
                };
                current.splice(range, [merged]);
            }
        }
        // log4(4096) = 6 levels.
        assert!(
            rewritten <= 6 * written,
            "{rewritten} bytes rewritten for {written}"
        );
        assert!(current.len() <= 4 * 6, "{} files left", current.len());
    }
}
