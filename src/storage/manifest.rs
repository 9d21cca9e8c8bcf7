//! The manifest: one JSON object per committed epoch, the only record of what is visible.
//!
//! `manifests/<epoch:020>.json` holds the whole catalog and, per table and source, the Parquet
//! files that make up its rows (and per source the offsets those rows reach). A commit writes the next epoch's manifest with `PutMode::Create`; if the name
//! is taken, another writer committed first and ours fails whole. Readers take the highest epoch.
//! A data file that no committed manifest names is never read, and is deleted at startup.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::catalog::roles::{Acl, RoleDef};
use crate::catalog::source::SourceDef;
use crate::catalog::table::TableDef;
use crate::catalog::view::ViewDef;
use crate::error::{Error, Result};

const MANIFEST_DIR: &str = "manifests";
const FORMAT_VERSION: u32 = 1;

/// One committed state of the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub epoch: u64,
    pub committed_at_ms: i64,
    /// Identifiers handed out so far; never reused, so paths never collide.
    pub next_table_id: u64,
    pub next_file_id: u64,
    pub tables: BTreeMap<String, TableState>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceState>,
    /// Files of `sluice_catalog.rejected_rows`: records no source could decode.
    #[serde(default)]
    pub rejected_rows: Vec<DataFile>,
    #[serde(default)]
    pub views: BTreeMap<String, ViewState>,
    /// Files of `sluice_catalog.late_rows`: rows that came after their window closed.
    #[serde(default)]
    pub late_rows: Vec<DataFile>,
    /// The newest checkpoints, recoveries and compactions, oldest first (at most
    /// [`CHECKPOINTS_KEPT`]).
    #[serde(default)]
    pub checkpoints: Vec<CheckpointRecord>,
    /// The number of the newest committed checkpoint, kept apart from the records, which
    /// compactions may push out.
    #[serde(default)]
    pub last_checkpoint: u64,
    /// Roles made with `CREATE ROLE`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleDef>,
    /// Owners and grants of tables, sources and views, by relation name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privileges: BTreeMap<String, Acl>,
}

/// Checkpoint records a manifest keeps.
pub const CHECKPOINTS_KEPT: usize = 100;

/// One committed checkpoint, one recovery from a checkpoint, or one compaction or retention
/// pass, as `sluice_catalog.checkpoints` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointRecord {
    /// The checkpoint's number; for a recovery, the checkpoint recovered from.
    pub id: u64,
    /// `checkpoint`, `recovery`, `compaction` or `retention`.
    pub kind: String,
    /// What started it: `interval`, `flush`, `shutdown`, `pending_rows`; `restart` for a
    /// recovery; for a compaction or retention, the relation whose files it rewrote or dropped.
    pub reason: String,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// Bytes written (state and data files); for retention, bytes dropped.
    pub size_bytes: u64,
    pub state_bytes: u64,
    /// Files written; for a compaction or retention, files replaced or dropped.
    pub files: u64,
}

/// A materialized view's definition, the files of its closed windows, and the watermark they
/// reach: every window ending at or before `closed_through` is in `files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewState {
    pub def: ViewDef,
    pub files: Vec<DataFile>,
    pub closed_through: Option<i64>,
    /// Where the view stood at the last checkpoint; `None` until its first one.
    #[serde(default)]
    pub checkpoint: Option<ViewCheckpoint>,
}

/// A view's state at a checkpoint: with it, the view resumes exactly where the checkpoint
/// left its input, without reading anything twice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ViewCheckpoint {
    /// The checkpoint that wrote it.
    pub id: u64,
    /// The window operator's open state (Arrow IPC); `None` when nothing is open.
    pub state: Option<DataFile>,
    /// A view over joins: each join side's rows (Arrow IPC), two per join (`None` for an
    /// empty side), in the order [`crate::stream::join::Join::checkpoint`] gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<Option<DataFile>>,
    /// Each join side's watermark as far as the join took it, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join_watermarks: Vec<Option<i64>>,
    /// The watermark the operator closed windows at.
    pub watermark: Option<i64>,
    /// The input watermark last seen.
    pub input_watermark: Option<i64>,
    /// The largest event time seen (a view over a table keeps its own watermark).
    pub max_event_time: Option<i64>,
    /// A view over tables: per input (its index among the view's inputs) that is a table,
    /// the number of the last write of the table it has read ([`DataFile::seq`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables_read: BTreeMap<usize, u64>,
    /// What manifests before write numbers kept instead: the table files read, by name
    /// ([`Manifest::upgrade`] turns them into `tables_read`).
    #[serde(default, skip_serializing)]
    pub table_files: Vec<String>,
    /// A view reading sources' topics itself: per input (its index among the view's inputs)
    /// that is such a source, where its own reader stands.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub readers: BTreeMap<usize, ReaderPosition>,
    /// What manifests before views read several topics kept instead: the one reader's
    /// position ([`Manifest::upgrade`] makes it input 0's).
    #[serde(default, skip_serializing)]
    pub offsets: BTreeMap<i32, i64>,
    #[serde(default, skip_serializing)]
    pub dedup: Option<DataFile>,
}

/// Where a view's own reader of a source's topic stands: the next offset per partition, and
/// its deduplication state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ReaderPosition {
    pub offsets: BTreeMap<i32, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DataFile>,
}

impl ViewCheckpoint {
    /// The state files it names: the operator's, its joins' and its readers' deduplication
    /// keys.
    pub fn state_files(&self) -> impl Iterator<Item = &DataFile> {
        self.state
            .iter()
            .chain(self.joins.iter().flatten())
            .chain(self.readers.values().flat_map(|r| &r.dedup))
    }
}

/// A source's definition, the files of its retained events, and the offsets they reach: the
/// next offset to read per partition, committed together with the rows before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    pub def: SourceDef,
    pub files: Vec<DataFile>,
    pub offsets: BTreeMap<i32, i64>,
    /// The keys seen within `dedup.ttl` (Arrow IPC), when the source deduplicates.
    #[serde(default)]
    pub dedup: Option<DataFile>,
}

/// A table's definition and the files holding its rows, in write order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableState {
    pub def: TableDef,
    pub files: Vec<DataFile>,
    /// The writes committed so far: each adds one file, numbered ([`DataFile::seq`]) in commit
    /// order from 1.
    #[serde(default)]
    pub writes: u64,
}

impl TableState {
    /// Adds the file of the table's next write, numbering it.
    pub fn push_write(&mut self, file: DataFile) {
        self.writes += 1;
        self.files.push(DataFile {
            seq: Some(self.writes),
            ..file
        });
    }
}

/// A Parquet file named by the manifest; `path` is relative to the storage root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataFile {
    pub path: String,
    pub size_bytes: u64,
    pub rows: u64,
    /// For a view's file, the end of the latest window it holds (µs since the epoch), by which
    /// retention drops whole files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_end: Option<i64>,
    /// For a table's file, the number of the last write it holds: one write, or a run of them
    /// that compaction merged. Views over the table remember how far they read by it, so a
    /// merged run they have read is not read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Manifest {
    /// The state of a store no one has written to yet.
    pub fn empty() -> Self {
        Manifest {
            format_version: FORMAT_VERSION,
            epoch: 0,
            committed_at_ms: 0,
            next_table_id: 1,
            next_file_id: 1,
            tables: BTreeMap::new(),
            sources: BTreeMap::new(),
            rejected_rows: Vec::new(),
            views: BTreeMap::new(),
            late_rows: Vec::new(),
            checkpoints: Vec::new(),
            last_checkpoint: 0,
            roles: BTreeMap::new(),
            privileges: BTreeMap::new(),
        }
    }

    /// The number of the newest committed checkpoint (0: none yet).
    pub fn checkpoint_id(&self) -> u64 {
        self.last_checkpoint
    }

    /// Adds a checkpoint or recovery record, forgetting the oldest beyond [`CHECKPOINTS_KEPT`].
    pub fn record(&mut self, record: CheckpointRecord) {
        if record.kind == "checkpoint" {
            self.last_checkpoint = self.last_checkpoint.max(record.id);
        }
        self.checkpoints.push(record);
        let excess = self.checkpoints.len().saturating_sub(CHECKPOINTS_KEPT);
        self.checkpoints.drain(..excess);
    }

    /// Every file the manifest names: data, state and deduplication files.
    pub fn files(&self) -> impl Iterator<Item = &DataFile> {
        self.tables
            .values()
            .flat_map(|t| &t.files)
            .chain(
                self.sources
                    .values()
                    .flat_map(|s| s.files.iter().chain(&s.dedup)),
            )
            .chain(self.views.values().flat_map(|v| {
                let checkpoint = v.checkpoint.iter().flat_map(ViewCheckpoint::state_files);
                v.files.iter().chain(checkpoint)
            }))
            .chain(&self.rejected_rows)
            .chain(&self.late_rows)
    }

    pub fn table(&self, name: &str) -> Option<&TableState> {
        self.tables.get(name)
    }

    pub fn source(&self, name: &str) -> Option<&SourceState> {
        self.sources.get(name)
    }

    pub fn view(&self, name: &str) -> Option<&ViewState> {
        self.views.get(name)
    }

    /// Whether a table, source or view has this name (they share the `public` schema).
    pub fn has_relation(&self, name: &str) -> bool {
        self.tables.contains_key(name)
            || self.sources.contains_key(name)
            || self.views.contains_key(name)
    }

    /// The kind of relation `name` is, as Postgres' messages name it; `None` if there is none.
    pub fn relation_kind(&self, name: &str) -> Option<&'static str> {
        if self.tables.contains_key(name) || self.source(name).is_some_and(|s| s.def.keyed()) {
            Some("table")
        } else if self.sources.contains_key(name) {
            Some("source")
        } else if self.views.contains_key(name) {
            Some("materialized view")
        } else {
            None
        }
    }

    /// Brings a manifest written before tables numbered their writes, and before views read
    /// several topics, up to date: tables' files are numbered in order; each view's list of
    /// table files read becomes, per table input, the number of the last of them (a view reads
    /// a table's files in order); a view's one topic reader's position becomes its input 0's.
    fn upgrade(&mut self) {
        for table in self.tables.values_mut() {
            for file in table.files.iter_mut().filter(|f| f.seq.is_none()) {
                table.writes += 1;
                file.seq = Some(table.writes);
            }
        }
        for view in self.views.values_mut() {
            let Some(checkpoint) = view.checkpoint.as_mut() else {
                continue;
            };
            let (offsets, dedup) = (
                std::mem::take(&mut checkpoint.offsets),
                checkpoint.dedup.take(),
            );
            if !offsets.is_empty() || dedup.is_some() {
                checkpoint
                    .readers
                    .insert(0, ReaderPosition { offsets, dedup });
            }
            let read = std::mem::take(&mut checkpoint.table_files);
            for (input, name) in view.def.inputs().into_iter().enumerate() {
                let Some(table) = self.tables.get(name) else {
                    continue;
                };
                let last = table
                    .files
                    .iter()
                    .filter(|f| read.contains(&f.path))
                    .filter_map(|f| f.seq)
                    .max();
                if let Some(last) = last {
                    checkpoint.tables_read.insert(input, last);
                }
            }
        }
    }

    /// The views reading `name`.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        self.views
            .values()
            .filter(|v| v.def.reads(name))
            .map(|v| v.def.name.clone())
            .collect()
    }
}

pub fn manifest_path(epoch: u64) -> Path {
    Path::from(format!("{MANIFEST_DIR}/{epoch:020}.json"))
}

/// The epochs of all manifests present, ascending.
pub async fn list_epochs(store: &dyn ObjectStore) -> Result<Vec<u64>> {
    let prefix = Path::from(MANIFEST_DIR);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut epochs: Vec<u64> = objects
        .iter()
        .filter_map(|meta| {
            meta.location
                .filename()?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// Reads the manifest with the highest epoch, or an empty one for a new store.
pub async fn read_latest(store: &dyn ObjectStore) -> Result<Manifest> {
    let Some(epoch) = list_epochs(store).await?.pop() else {
        return Ok(Manifest::empty());
    };
    let bytes = store.get(&manifest_path(epoch)).await?.bytes().await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("manifest of epoch {epoch} is not valid: {e}")))?;
    if manifest.format_version != FORMAT_VERSION || manifest.epoch != epoch {
        return Err(Error::Internal(format!(
            "manifest of epoch {epoch} has format {} and epoch {}; this build reads format {FORMAT_VERSION}",
            manifest.format_version, manifest.epoch
        )));
    }
    let mut manifest = manifest;
    manifest.upgrade();
    Ok(manifest)
}

/// Writes `manifest` under its epoch unless that name already exists.
pub async fn write_new(store: &dyn ObjectStore, manifest: &Manifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::Internal(format!("cannot encode manifest: {e}")))?;
    let options = PutOptions::from(PutMode::Create);
    match store
        .put_opts(
            &manifest_path(manifest.epoch),
            PutPayload::from(bytes),
            options,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Err(Error::Storage {
            message: format!(
                "manifest epoch {} was committed by another writer; is a second sluicedb \
                     using the same storage?",
                manifest.epoch
            ),
            retryable: false,
        }),
        Err(e) => Err(Error::storage(e)),
    }
}

/// Deletes manifests older than the newest `retained` ones. Failures only cost space.
pub async fn prune(store: &dyn ObjectStore, retained: usize) {
    let epochs = match list_epochs(store).await {
        Ok(epochs) => epochs,
        Err(e) => {
            tracing::warn!(error = %e, "could not list manifests to prune");
            return;
        }
    };
    let excess = epochs.len().saturating_sub(retained);
    for epoch in &epochs[..excess] {
        if let Err(e) = store.delete(&manifest_path(*epoch)).await {
            tracing::warn!(error = %e, epoch, "could not delete an old manifest");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_from_before_write_numbers_and_topic_readers_keeps_where_views_read() {
        let file = |path: &str| serde_json::json!({"path": path, "size_bytes": 10, "rows": 1});
        let table = |name: &str, files: Vec<serde_json::Value>| {
            serde_json::json!({
                "def": {"id": 1, "name": name, "columns": [], "watermark": null,
                        "append_only": false, "primary_key": []},
                "files": files,
            })
        };
        let legacy = serde_json::json!({
            "format_version": 1, "epoch": 3, "committed_at_ms": 0,
            "next_table_id": 4, "next_file_id": 9,
            "tables": {
                "a": table("a", vec![file("a1"), file("a2"), file("a3")]),
                "b": table("b", vec![file("b1")]),
            },
            "views": {"v": {
                "def": {"id": 3, "name": "v", "query": "", "emit_on_close": false, "input": "a",
                        "union": ["a", "b", "a"], "columns": [], "time_columns": [],
                        "created_at_ms": 0},
                "files": [], "closed_through": null,
                "checkpoint": {"id": 2, "state": null, "watermark": null,
                               "input_watermark": null, "max_event_time": null,
                               "table_files": ["a1", "a2"], "offsets": {"0": 7},
                               "dedup": {"path": "state/d", "size_bytes": 1, "rows": 1}},
            }},
        });
        let mut manifest: Manifest = serde_json::from_value(legacy).unwrap();
        manifest.upgrade();
        let seqs = |m: &Manifest, t: &str| -> Vec<Option<u64>> {
            m.tables[t].files.iter().map(|f| f.seq).collect()
        };
        assert_eq!(seqs(&manifest, "a"), [Some(1), Some(2), Some(3)]);
        assert_eq!(seqs(&manifest, "b"), [Some(1)]);
        assert_eq!(manifest.tables["a"].writes, 3);
        let checkpoint = manifest.views["v"].checkpoint.clone().unwrap();
        // Both inputs over `a` had read its first two writes; nothing of `b`.
        assert_eq!(checkpoint.tables_read, BTreeMap::from([(0, 2), (2, 2)]));
        assert!(checkpoint.table_files.is_empty());
        // Its one topic reader's position is now that of input 0.
        assert_eq!(checkpoint.readers[&0].offsets, BTreeMap::from([(0, 7)]));
        assert_eq!(checkpoint.state_files().count(), 1);
        // And the next write of `a` is its fourth.
        manifest.tables.get_mut("a").unwrap().push_write(DataFile {
            path: "a4".into(),
            size_bytes: 1,
            rows: 1,
            windows_end: None,
            seq: None,
        });
        assert_eq!(seqs(&manifest, "a").last(), Some(&Some(4)));
    }
}
