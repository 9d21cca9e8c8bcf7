//! Compaction: runs of small Parquet files of one relation are rewritten as one file and
//! swapped for it in a new manifest.
//!
//! A checkpoint adds a file per relation every interval, so files stay small; queries pay per
//! file. Which files to merge is size-tiered: a run of consecutive small files whose largest is
//! at most a [`FAN_IN`]th of the run, so every rewrite of a row at least quadruples the file it
//! is in and a row is rewritten at most log4(target / file size) times, not once per new file. Runs keep the files' order, since a view backfilling from a
//! source must see its events in the order they came. The replaced files stay on storage
//! until garbage collection deletes them after the grace period, so queries and backfills
//! that listed them finish. A keyed relation's files, and an updating view's, are changelogs:
//! a run of them is folded ([`super::fold`]), so its files grow with its rows, not its
//! history. A table's files are merged only as far as every view reading it has read at its
//! last checkpoint: a view remembers the last write it read ([`DataFile::seq`]), and a merged
//! file ends with the last write of its run.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::fold::{Fold, FoldBy};
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

    /// How many of the owner's first files compaction may merge: a table's files that every
    /// view reading it had read at its last checkpoint (a view resuming from there, or
    /// reading on, skips a merged file holding only writes it read, but would read all of one
    /// that it had only partly read); all of anyone else's.
    fn settled(&self, m: &Manifest, files: &[DataFile]) -> usize {
        let FileOwner::Table { name, .. } = self else {
            return files.len();
        };
        let read = m
            .views
            .values()
            .flat_map(|v| {
                let checkpoint = v.checkpoint.as_ref();
                v.def
                    .inputs()
                    .into_iter()
                    .enumerate()
                    .filter(|(_, input)| input == name)
                    .map(move |(i, _)| {
                        checkpoint
                            .and_then(|c| c.tables_read.get(&i).copied())
                            .unwrap_or(0)
                    })
            })
            .min();
        match read {
            None => files.len(),
            Some(read) => files
                .iter()
                .take_while(|f| f.seq.is_some_and(|s| s <= read))
                .count(),
        }
    }

    /// How the owner's files fold when they are changelogs: a keyed table's or keyed
    /// source's by the primary key, an updating view's by row.
    fn fold_by(&self, m: &Manifest) -> Result<Option<FoldBy>> {
        match self {
            FileOwner::Table { name, id } => match m.tables.get(name) {
                Some(t) if t.def.id == *id && t.def.keyed() => {
                    Ok(Some(FoldBy::Key(t.def.key_columns()?)))
                }
                _ => Ok(None),
            },
            FileOwner::Source { name, id } => match m.sources.get(name) {
                Some(s) if s.def.id == *id && s.def.keyed() => {
                    Ok(Some(FoldBy::Key(s.def.as_table().key_columns()?)))
                }
                _ => Ok(None),
            },
            FileOwner::View { name, id } => match m.views.get(name) {
                Some(v) if v.def.id == *id && v.def.updating => Ok(Some(FoldBy::Row)),
                _ => Ok(None),
            },
            FileOwner::RejectedRows | FileOwner::LateRows => Ok(None),
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

    /// Replaces `run` (still consecutive in the owner's files) by `merged` (by nothing when
    /// it folded away); `false` when the owner or the run is gone (dropped, or changed by
    /// retention meanwhile) or a view reading the table has not read all of it.
    fn replace(&self, m: &mut Manifest, run: &[DataFile], merged: Option<DataFile>) -> bool {
        let Some(files) = self.files(m) else {
            return false;
        };
        let same = |window: &[DataFile]| window.iter().zip(run).all(|(a, b)| a.path == b.path);
        let Some(at) = files.windows(run.len()).position(same) else {
            return false;
        };
        // A view created, or rebuilt, over the table since the run was planned.
        if at + run.len() > self.settled(m, files) {
            return false;
        }
        let Some(files) = self.files_mut(m) else {
            return false;
        };
        files.splice(at..at + run.len(), merged);
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
        let fold_by = owner.fold_by(&manifest)?;
        let settled = &files[..owner.settled(&manifest, files)];
        for range in plan(settled, target) {
            let from_start = range.start == 0;
            let run = &files[range];
            let started_at_ms = chrono::Utc::now().timestamp_millis();
            let started = std::time::Instant::now();
            let merged = match &fold_by {
                Some(by) => self.fold(owner, run, by, from_start).await?,
                None => self.merge(owner, run).await?,
            };
            crate::failpoint::crash_point("compaction.written");
            let record = CheckpointRecord {
                id: manifest.checkpoint_id(),
                kind: "compaction".into(),
                reason: owner.to_string(),
                started_at_ms,
                duration_ms: started.elapsed().as_millis() as u64,
                size_bytes: merged.as_ref().map_or(0, |f| f.size_bytes),
                state_bytes: 0,
                files: run.len() as u64,
            };
            let mut changed = false;
            let committed = self
                .commit(|m| {
                    if !owner.replace(m, run, merged.clone()) {
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

    /// Writes the rows of `run`, in order, as one new file (not committed); `None` when the
    /// run holds no rows.
    async fn merge(&self, owner: &FileOwner, run: &[DataFile]) -> Result<Option<DataFile>> {
        self.rewrite(owner, run, Ok).await
    }

    /// Writes the fold of the changelog `run` ([`super::fold`]) as one new file (not
    /// committed); `None` when nothing is left of it.
    async fn fold(
        &self,
        owner: &FileOwner,
        run: &[DataFile],
        by: &FoldBy,
        from_start: bool,
    ) -> Result<Option<DataFile>> {
        let mut fold = None;
        for file in run {
            for batch in self.read_file(file).await? {
                let fold = match &mut fold {
                    Some(fold) => fold,
                    None => fold.insert(Fold::new(&batch, by, from_start)?),
                };
                fold.scan(&batch)?;
            }
        }
        let Some(fold) = fold else {
            return Err(Error::Internal(format!(
                "data file {} read as empty",
                run[0].path
            )));
        };
        let mut kept = fold.finish();
        self.rewrite(owner, run, move |batch| kept.filter(&batch))
            .await
    }

    /// Writes the rows of `run`, in order and each batch through `keep`, as one new file.
    async fn rewrite(
        &self,
        owner: &FileOwner,
        run: &[DataFile],
        mut keep: impl FnMut(RecordBatch) -> Result<RecordBatch> + Send + 'static,
    ) -> Result<Option<DataFile>> {
        let first = self.read_file(&run[0]).await?;
        // No file is written empty: one read as empty must not make its run vanish.
        let Some(schema) = first.first().map(|b| b.schema()) else {
            return Err(Error::Internal(format!(
                "data file {} read as empty",
                run[0].path
            )));
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
            .map(move |batch| batch.and_then(&mut keep))
            .map_err(|e: Error| DataFusionError::External(Box::new(e)));
        let input = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), batches));
        let path = owner.new_path(self.new_file_id());
        let written = parquet::write_file(Arc::clone(&self.store), path, schema, input).await?;
        Ok(written.map(|file| DataFile {
            windows_end: run.iter().filter_map(|f| f.windows_end).max(),
            seq: run.last().and_then(|f| f.seq),
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
                seq: None,
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
                seq: None,
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
                    seq: None,
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
