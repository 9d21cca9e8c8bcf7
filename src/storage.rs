//! Durable state on a local folder or S3: the only module that touches `object_store`.
//!
//! Layout under the storage root (DESIGN.md §5):
//! ```text
//! manifests/<epoch:020>.json                  catalog + the data files of every table and source
//! tables/<table>/<table id>/part-<file id:020>.parquet
//! sources/<source>/<source id>/part-<file id:020>.parquet   retained raw events
//! views/<view>/<view id>/part-<file id:020>.parquet         closed windows of a view
//! system/rejected_rows/part-<file id:020>.parquet           records no source could decode
//! system/late_rows/part-<file id:020>.parquet               rows that came after their window
//! state/<checkpoint:020>/<owner>-<file id:020>.arrow        operator state at a checkpoint (Arrow IPC)
//! ```
//! Writers first write their Parquet file, then [`Storage::commit`] publishes it in the next
//! manifest. Commits are serialised in-process by a lock and across processes by
//! `PutMode::Create`, so a reader sees a file only once a committed manifest names it.

pub mod compaction;
pub mod fold;
pub mod manifest;
pub mod parquet;
pub mod store;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, DefaultParquetFileReaderFactory,
};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::catalog::source::SourceDef;
use crate::catalog::table::TableDef;
use crate::catalog::view::ViewDef;
use crate::config::Config;
use crate::error::{Error, Result};
pub use manifest::{
    CheckpointRecord, DataFile, Manifest, ReaderPosition, SourceState, TableState, ViewCheckpoint,
    ViewState,
};

/// Runs `attempt` until it succeeds or fails for good: transient storage failures (a store
/// that does not answer) are retried with backoff (0.5 s, doubling to 5 s), for at most
/// `patience` if given.
async fn patiently<T, F, Fut>(
    what: &str,
    patience: Option<std::time::Duration>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match attempt().await {
            Err(
                e @ Error::Storage {
                    retryable: true, ..
                },
            ) if patience.is_none_or(|p| started.elapsed() < p) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "storage does not answer while {what}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The URL under which DataFusion finds our store.
const STORE_URL: &str = "sluice://storage/";
/// Every folder holding data files; anything in them no manifest names is garbage.
const DATA_DIRS: [&str; 5] = ["tables", "sources", "views", "system", "state"];

/// The committed state and the means to change it.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
    current: RwLock<Arc<Manifest>>,
    /// Held while a manifest is written, so commits apply in order on the newest state.
    commit_lock: tokio::sync::Mutex<()>,
    next_file_id: AtomicU64,
    manifests_retained: usize,
    /// The newest manifest, for readers that follow commits (views over tables).
    commits: tokio::sync::watch::Sender<Arc<Manifest>>,
    /// Files table writes are writing and have not committed yet: not garbage, however old.
    writing: std::sync::Mutex<HashSet<String>>,
    /// When garbage collection first saw each file no manifest names.
    unnamed_since: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The runtime's cache of Parquet footers, once registered with it (see [`Self::scan`]).
    footers: std::sync::OnceLock<Arc<FileMetadataCache>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("store", &self.store.to_string())
            .finish()
    }
}

impl Storage {
    /// Opens the configured store, checks it honours conditional create, loads the newest
    /// manifest and deletes data files that no manifest names (leftovers of failed writes).
    pub async fn open(config: &Config) -> Result<Self> {
        let store = store::open_store(&config.storage, &config.s3)?;
        // An object store that does not answer at startup (S3 restarting, a network blip) is
        // waited for, with backoff, rather than ending the server at once.
        let manifest = patiently(
            "opening storage",
            Some(config.storage_startup_timeout),
            || {
                let store = Arc::clone(&store);
                async move {
                    // A fresh probe object each attempt: an attempt cut off midway may have
                    // created its object without being able to delete it.
                    let nonce = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    match store::probe_conditional_create(store.as_ref(), nonce).await {
                        // Only a local folder fills up, and it honours conditional create:
                        // start, serve reads, and refuse writes until there is room.
                        Err(e @ Error::DiskFull { .. }) => tracing::warn!(
                            error = %e,
                            "the disk is full: reads are served, writes fail with 53100 until \
                             there is room"
                        ),
                        other => other?,
                    }
                    manifest::read_latest(store.as_ref()).await
                }
            },
        )
        .await?;
        tracing::info!(
            epoch = manifest.epoch,
            tables = manifest.tables.len(),
            store = %store,
            "storage opened"
        );
        let manifest = Arc::new(manifest);
        let storage = Storage {
            url: ObjectStoreUrl::parse(STORE_URL).map_err(Error::from)?,
            next_file_id: AtomicU64::new(manifest.next_file_id),
            commits: tokio::sync::watch::Sender::new(Arc::clone(&manifest)),
            current: RwLock::new(manifest),
            commit_lock: tokio::sync::Mutex::new(()),
            manifests_retained: config.manifests_retained,
            writing: std::sync::Mutex::new(HashSet::new()),
            unnamed_since: std::sync::Mutex::default(),
            footers: std::sync::OnceLock::new(),
            store,
        };
        // Nothing is in flight yet: every file no manifest names is garbage.
        storage.collect_garbage(std::time::Duration::ZERO).await;
        Ok(storage)
    }

    /// Makes the store readable by DataFusion scans.
    pub fn register(&self, runtime: &RuntimeEnv) {
        runtime.register_object_store(self.url.as_ref(), Arc::clone(&self.store));
        let _ = self
            .footers
            .set(runtime.cache_manager.get_file_metadata_cache());
    }

    pub fn object_store_url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// The newest committed manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `change` to the newest manifest and commits it as the next epoch. On error
    /// nothing changes: the in-memory state moves only after the manifest is durable.
    pub async fn commit(
        &self,
        change: impl FnOnce(&mut Manifest) -> Result<()>,
    ) -> Result<Arc<Manifest>> {
        let _guard = self.commit_lock.lock().await;
        let mut next = Manifest::clone(&self.manifest());
        change(&mut next)?;
        next.epoch += 1;
        next.committed_at_ms = chrono::Utc::now().timestamp_millis();
        next.next_file_id = next
            .next_file_id
            .max(self.next_file_id.load(Ordering::SeqCst));
        manifest::write_new(self.store.as_ref(), &next).await?;
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&next);
        self.commits.send_replace(Arc::clone(&next));
        tracing::debug!(epoch = next.epoch, "manifest committed");
        if next.epoch.is_multiple_of(16) {
            manifest::prune(self.store.as_ref(), self.manifests_retained).await;
        }
        Ok(next)
    }

    /// Follows commits: the receiver sees every newest manifest.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Arc<Manifest>> {
        self.commits.subscribe()
    }

    /// Waits until every commit that had started has finished.
    pub async fn flush(&self) -> u64 {
        let _guard = self.commit_lock.lock().await;
        self.manifest().epoch
    }

    /// Writes `input` as a new file of `table` and commits it. Returns the rows written.
    /// Fails with "does not exist" if the table was dropped (or dropped and re-created) meanwhile.
    pub async fn append(&self, table: &TableDef, input: SendableRecordBatchStream) -> Result<u64> {
        self.append_changelog(table, table.schema(), input).await
    }

    /// Writes a file of `schema` to `table` and commits it, as [`Storage::append`]; a keyed
    /// table's files are changelogs (its columns and an op column, [`crate::table`]).
    pub async fn append_changelog(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        input: SendableRecordBatchStream,
    ) -> Result<u64> {
        let path = data_file_path("tables", &table.name, table.id, self.new_file_id());
        let _writing = Writing::new(&self.writing, path.to_string());
        let written = parquet::write_file(Arc::clone(&self.store), path, schema, input).await?;
        let Some(file) = written else { return Ok(0) };
        let rows = file.rows;
        self.commit(|m| match m.tables.get_mut(&table.name) {
            Some(state) if state.def.id == table.id => {
                state.push_write(file);
                Ok(())
            }
            _ => Err(Error::UndefinedRelation {
                kind: "table",
                name: table.name.clone(),
            }),
        })
        .await?;
        crate::metrics::TABLE_ROWS_WRITTEN.add(rows);
        Ok(rows)
    }

    fn new_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Writes retained events of a source as a new, not yet committed file.
    pub async fn write_source_file(
        &self,
        source: &SourceDef,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<DataFile>> {
        let path = data_file_path("sources", &source.name, source.id, self.new_file_id());
        self.write_batches(path, source.stored_schema(), batches)
            .await
    }

    /// Writes closed windows of a view as a new, not yet committed file.
    pub async fn write_view_file(
        &self,
        view: &ViewDef,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<DataFile>> {
        let path = data_file_path("views", &view.name, view.id, self.new_file_id());
        self.write_batches(path, view.schema(), batches).await
    }

    /// The rows the changelog `files` leave, read in order and folded `by`.
    pub async fn changelog_rows(
        &self,
        files: &[DataFile],
        by: &fold::FoldBy,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        for file in files {
            batches.extend(self.read_file(file).await?);
        }
        fold::rows_left(&batches, by)
    }

    /// Writes an updating view's changes as a new changelog file, not yet committed.
    pub async fn write_view_changelog(
        &self,
        view: &ViewDef,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<DataFile>> {
        let path = data_file_path("views", &view.name, view.id, self.new_file_id());
        let schema = crate::table::with_op_column(&view.schema());
        self.write_batches(path, schema, batches).await
    }

    /// Writes rejected records as a new, not yet committed file.
    pub async fn write_rejected_file(&self, batch: RecordBatch) -> Result<Option<DataFile>> {
        self.write_system_file("rejected_rows", batch).await
    }

    /// Writes late rows as a new, not yet committed file.
    pub async fn write_late_file(&self, batch: RecordBatch) -> Result<Option<DataFile>> {
        self.write_system_file("late_rows", batch).await
    }

    async fn write_system_file(&self, table: &str, batch: RecordBatch) -> Result<Option<DataFile>> {
        let path = compaction::system_file_path(table, self.new_file_id());
        self.write_batches(path, batch.schema(), vec![batch]).await
    }

    /// Writes the state of `owner` (a view's window operator, a source's deduplication keys)
    /// at checkpoint `checkpoint` as an Arrow IPC file, not yet committed.
    pub async fn write_state_file(
        &self,
        checkpoint: u64,
        owner: &str,
        batch: &RecordBatch,
    ) -> Result<DataFile> {
        let mut bytes = Vec::new();
        {
            let mut writer = FileWriter::try_new(&mut bytes, &batch.schema())?;
            writer.write(batch)?;
            writer.finish()?;
        }
        let path = Path::from(format!(
            "state/{checkpoint:020}/{}-{:020}.arrow",
            file_name(owner),
            self.new_file_id()
        ));
        let size_bytes = bytes.len() as u64;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(Error::storage)?;
        Ok(DataFile {
            path: path.to_string(),
            size_bytes,
            rows: batch.num_rows() as u64,
            windows_end: None,
            seq: None,
        })
    }

    /// Reads a state file back. A missing or damaged file is a [`Error::CorruptState`] naming
    /// it; `owner` says whose state it is, `hint` how to recover.
    pub async fn read_state_file(
        &self,
        file: &DataFile,
        owner: &str,
        hint: Option<String>,
    ) -> Result<RecordBatch> {
        let corrupt = |reason: String| Error::CorruptState {
            path: file.path.clone(),
            owner: owner.to_string(),
            reason,
            hint: hint.clone(),
        };
        // State is needed to go on: a store that does not answer is waited for, however long.
        let path = Path::from(file.path.as_str());
        let bytes = patiently("reading a state file", None, || async {
            match self.store.get(&path).await {
                Ok(got) => got.bytes().await.map_err(Error::storage),
                Err(object_store::Error::NotFound { .. }) => {
                    Err(corrupt("the file does not exist".into()))
                }
                Err(e) => Err(Error::storage(e)),
            }
        })
        .await?;
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| corrupt(e.to_string()))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        let batch = concat_batches(&schema, &batches).map_err(|e| corrupt(e.to_string()))?;
        if batch.num_rows() as u64 != file.rows {
            return Err(corrupt(format!(
                "it holds {} rows, the manifest says {}",
                batch.num_rows(),
                file.rows
            )));
        }
        Ok(batch)
    }

    /// Every row of a committed file.
    pub async fn read_file(&self, file: &DataFile) -> Result<Vec<RecordBatch>> {
        parquet::read_file(Arc::clone(&self.store), file).await
    }

    async fn write_batches(
        &self,
        path: Path,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<DataFile>> {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        let input = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), stream));
        parquet::write_file(Arc::clone(&self.store), path, schema, input).await
    }

    /// A scan of a table's committed files (see [`parquet::scan`]). Files never change once
    /// written (each has a new name), so their footers are read once and kept in DataFusion's
    /// metadata cache (bounded, least recently used first): a dashboard query over a view of
    /// a dozen files otherwise read a dozen footers every time it ran.
    pub fn scan(
        &self,
        schema: &SchemaRef,
        files: &[DataFile],
        projection: Option<&Vec<usize>>,
        predicate: Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
        limit: Option<usize>,
        partitions: usize,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let reader: Arc<dyn ParquetFileReaderFactory> = match self.footers.get() {
            Some(cache) => Arc::new(CachedParquetFileReaderFactory::new(
                Arc::clone(&self.store),
                Arc::clone(cache),
            )),
            None => Arc::new(DefaultParquetFileReaderFactory::new(Arc::clone(
                &self.store,
            ))),
        };
        let at = parquet::Files {
            url: &self.url,
            reader,
        };
        parquet::scan(at, schema, files, projection, predicate, limit, partitions)
    }

    /// Deletes the files under the data folders that the current manifest does not name:
    /// files of dropped relations, files replaced by compaction or retention, files of writes
    /// that never committed. A file goes once it has been unnamed for `grace` (as far as this
    /// process saw) and was written longer than `grace` ago, so queries and backfills that
    /// listed it finish; files a table write has in flight are spared whatever their age;
    /// checkpoint files are protected by the caller, which runs this between checkpoints.
    /// With a zero grace (at startup, before any reader) every unnamed file goes. Failures only
    /// cost space and are logged. Returns the number of files deleted.
    pub async fn collect_garbage(&self, grace: std::time::Duration) -> usize {
        let manifest = self.manifest();
        let live: HashSet<&str> = manifest.files().map(|f| f.path.as_str()).collect();
        let mut objects = Vec::new();
        for dir in DATA_DIRS {
            let listed: Result<Vec<_>, _> =
                self.store.list(Some(&Path::from(dir))).try_collect().await;
            match listed {
                Ok(listed) => objects.extend(listed),
                Err(e) => {
                    tracing::warn!(error = %e, "could not list data files for garbage collection");
                    return 0;
                }
            }
        }
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let writing = self
            .writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = std::time::Instant::now();
        let expired: Vec<&object_store::ObjectMeta> = {
            let mut unnamed_since = self.unnamed_since.lock().unwrap_or_else(|e| e.into_inner());
            let unnamed: Vec<&object_store::ObjectMeta> = objects
                .iter()
                .filter(|m| !live.contains(m.location.as_ref()))
                .collect();
            // Forget files that are gone (or named again); note the newly unnamed ones.
            let current: HashSet<&str> = unnamed.iter().map(|m| m.location.as_ref()).collect();
            unnamed_since.retain(|path, _| current.contains(path.as_str()));
            unnamed
                .into_iter()
                .filter(|m| {
                    let path = m.location.as_ref();
                    let since = *unnamed_since.entry(path.to_string()).or_insert(now);
                    now.duration_since(since) >= grace
                        && m.last_modified <= cutoff
                        && !writing.contains(path)
                })
                .collect()
        };
        let mut deleted = 0usize;
        for meta in expired {
            match self.store.delete(&meta.location).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(error = %e, path = %meta.location, "could not delete"),
            }
        }
        if deleted > 0 {
            tracing::info!(files = deleted, "deleted data files no manifest names");
        }
        deleted
    }

    /// Deletes files no manifest names and no reader needs: state files a newer checkpoint
    /// replaced (state is read only at startup).
    pub async fn delete_files(&self, files: &[DataFile]) {
        for file in files {
            if let Err(e) = self.store.delete(&Path::from(file.path.as_str())).await {
                tracing::warn!(error = %e, path = %file.path, "could not delete a replaced file");
            }
        }
    }
}

/// Marks a file as being written until dropped, so garbage collection spares it.
struct Writing<'a> {
    set: &'a std::sync::Mutex<HashSet<String>>,
    path: String,
}

impl<'a> Writing<'a> {
    fn new(set: &'a std::sync::Mutex<HashSet<String>>, path: String) -> Self {
        set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.clone());
        Writing { set, path }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.path);
    }
}

fn data_file_path(dir: &str, name: &str, id: u64, file_id: u64) -> Path {
    Path::from(format!(
        "{dir}/{}/{id}/part-{file_id:020}.parquet",
        file_name(name)
    ))
}

/// A relation's name as a path segment: lowercase ASCII letters, digits and `_`.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AwsEnv, ServeArgs};

    #[tokio::test]
    async fn a_file_goes_only_once_it_has_been_unnamed_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            storage: Some(dir.path().to_str().unwrap().to_string()),
            ..Default::default()
        };
        let storage = Storage::open(&args.resolve(AwsEnv::default()).unwrap())
            .await
            .unwrap();
        let grace = std::time::Duration::from_millis(300);
        // Written long before it stops being named, as a file compaction replaces.
        let path = Path::from("tables/t/1/part-00000000000000000001.parquet");
        storage
            .store
            .put(&path, PutPayload::from("x"))
            .await
            .unwrap();
        tokio::time::sleep(grace * 2).await;
        assert_eq!(
            storage.collect_garbage(grace).await,
            0,
            "first seen unnamed now"
        );
        tokio::time::sleep(grace / 2).await;
        assert_eq!(
            storage.collect_garbage(grace).await,
            0,
            "unnamed for half the grace"
        );
        tokio::time::sleep(grace).await;
        assert_eq!(storage.collect_garbage(grace).await, 1);
        assert!(storage.store.head(&path).await.is_err());
    }
}
