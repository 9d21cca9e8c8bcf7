//! Running materialized views: one [`pipeline`] task per view, and what readers see of it.
//!
//! A view subscribes to its input (a source's or view's feed, or a table's commits), backfills
//! what the input already holds, then follows it. What a query of the view reads — committed
//! files, final rows not yet committed, live results of open windows — is taken under the
//! [`Shared`] lock, the same lock its commit holds.

pub mod late;
pub mod pipeline;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::catalog::view::ViewDef;
use crate::error::{Error, Result};
use crate::source::options::SourceSettings;
use crate::source::{Reader, SourceHandle, Sources};
use crate::storage::{DataFile, Storage};
use crate::stream::feed::{Feed, Feeds};
use crate::stream::plan::{RelationKind, ViewPlan};
use late::LateRow;
use pipeline::{Input, Pipeline};
use stats::ViewStats;

/// What readers of a view see besides its committed files.
#[derive(Debug, Default)]
pub struct Shared {
    /// Final rows (closed windows) not yet committed.
    pub closed: Vec<RecordBatch>,
    /// Partial results of open windows (live mode).
    pub live: Vec<RecordBatch>,
    pub late: Vec<LateRow>,
    /// The watermark the final rows reach.
    pub closed_through: Option<i64>,
}

pub enum Request {
    Flush(oneshot::Sender<Result<()>>),
    Stop(oneshot::Sender<()>),
}

/// A running view, as the rest of the database sees it.
#[derive(Debug)]
pub struct ViewHandle {
    pub def: ViewDef,
    pub stats: Arc<ViewStats>,
    /// The view's own reader of a source that keeps no events.
    reader: Option<Arc<SourceHandle>>,
    shared: Arc<tokio::sync::Mutex<Shared>>,
    feed: Arc<Feed>,
    requests: mpsc::Sender<Request>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ViewHandle {
    /// The view's numbers; a failing private reader of its source shows as its last error.
    pub fn snapshot(&self) -> stats::Snapshot {
        let mut snapshot = self.stats.snapshot();
        if let Some(reader) = &self.reader {
            let input = reader.stats.snapshot();
            if snapshot.last_error.is_none()
                && let Some(error) = input.last_error
            {
                snapshot.last_error = Some(format!(
                    "reading source \"{}\" ({}): {error}",
                    snapshot.input,
                    input.status.as_str()
                ));
            }
        }
        snapshot
    }

    /// Commits what the view has taken in so far.
    pub async fn flush(&self) -> Result<()> {
        if let Some(reader) = &self.reader {
            reader.flush().await?;
        }
        let (ack, done) = oneshot::channel();
        if self.requests.send(Request::Flush(ack)).await.is_err() {
            return Ok(());
        }
        done.await.unwrap_or(Ok(()))
    }

    /// Commits and stops.
    pub async fn stop(&self) {
        if let Some(reader) = &self.reader {
            reader.stop().await;
        }
        let (ack, done) = oneshot::channel();
        if self.requests.send(Request::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Stops at once, committing nothing more (the view was dropped).
    pub fn abandon(&self) {
        if let Some(reader) = &self.reader {
            reader.abandon();
        }
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    /// The committed files and the rows a query of the view sees besides them, as of one
    /// instant: final rows not yet committed and, in live mode, the open windows.
    pub async fn read(&self, storage: &Storage) -> (Vec<DataFile>, Vec<RecordBatch>) {
        let shared = self.shared.lock().await;
        let mut rows = shared.closed.clone();
        rows.extend(shared.live.iter().cloned());
        (self.committed_files(storage), rows)
    }

    fn committed_files(&self, storage: &Storage) -> Vec<DataFile> {
        storage
            .manifest()
            .view(&self.def.name)
            .map(|v| v.files.clone())
            .unwrap_or_default()
    }

    /// The view's pending state, locked: nothing of this view commits while the guard lives,
    /// so a reader can pair its late rows with the manifest it reads meanwhile.
    pub async fn lock_shared(&self) -> tokio::sync::OwnedMutexGuard<Shared> {
        Arc::clone(&self.shared).lock_owned().await
    }

    /// A subscription for a view over this view: final rows so far (committed files and
    /// pending rows), then everything emitted later.
    async fn subscribe(&self, storage: &Storage) -> Input {
        let shared = self.shared.lock().await;
        Input::Feed {
            files: self.committed_files(storage),
            batches: shared.closed.clone(),
            watermark: None,
            receiver: self.feed.subscribe(),
        }
    }
}

/// The running views, by name.
#[derive(Debug)]
pub struct Views {
    storage: Arc<Storage>,
    feeds: Arc<Feeds>,
    sources: Arc<Sources>,
    max_open_groups: usize,
    running: Mutex<BTreeMap<String, Arc<ViewHandle>>>,
}

impl Views {
    pub fn new(
        storage: Arc<Storage>,
        feeds: Arc<Feeds>,
        sources: Arc<Sources>,
        max_open_groups: usize,
    ) -> Self {
        Views {
            storage,
            feeds,
            sources,
            max_open_groups,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ViewHandle>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<ViewHandle>> {
        self.running().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ViewHandle>> {
        self.running().values().cloned().collect()
    }

    /// Starts a committed view: subscribes to its input and spawns its pipeline.
    pub async fn start(&self, def: ViewDef, plan: ViewPlan) -> Result<()> {
        let mut reader = None;
        let input = match plan.input.kind {
            RelationKind::Source => {
                let source = self
                    .storage
                    .manifest()
                    .source(&def.input)
                    .map(|s| s.def.clone())
                    .ok_or_else(|| Error::UndefinedRelation {
                        kind: "source",
                        name: def.input.clone(),
                    })?;
                let retains = SourceSettings::from_def(&source).is_ok_and(|s| s.retain);
                match retains {
                    // What the source kept, then what it takes in next.
                    true => {
                        let handle = self.sources.get(&def.input).ok_or_else(|| {
                            Error::Internal(format!("source \"{}\" is not running", def.input))
                        })?;
                        let sub = handle.subscribe(&self.storage).await;
                        Input::Feed {
                            files: sub.files,
                            batches: sub.batches,
                            watermark: sub.watermark,
                            receiver: sub.receiver,
                        }
                    }
                    // The topic from the source's startup position, read by the view itself.
                    false => {
                        let feed = Arc::new(Feed::default());
                        let receiver = feed.subscribe();
                        reader = Some(SourceHandle::start(
                            source,
                            Arc::clone(&self.storage),
                            feed,
                            Reader::Private,
                        ));
                        Input::Feed {
                            files: Vec::new(),
                            batches: Vec::new(),
                            watermark: None,
                            receiver,
                        }
                    }
                }
            }
            RelationKind::View => {
                let upstream = self.get(&def.input).ok_or_else(|| {
                    Error::Internal(format!("view \"{}\" is not running", def.input))
                })?;
                upstream.subscribe(&self.storage).await
            }
            RelationKind::Table => Input::Table {
                name: def.input.clone(),
                commits: self.storage.watch(),
            },
        };
        let resumed_at = self
            .storage
            .manifest()
            .view(&def.name)
            .and_then(|v| v.closed_through);
        let stats = Arc::new(ViewStats::new(&def.name, &def.input, def.emit_on_close));
        stats.update(|s| s.closed_through_us = resumed_at);
        let shared = Arc::new(tokio::sync::Mutex::new(Shared {
            closed_through: resumed_at,
            ..Shared::default()
        }));
        let feed = self.feeds.get(&def.name);
        let mut operator = plan.window.as_ref().map(|w| w.operator()).transpose()?;
        if let (Some(operator), Some(at)) = (&mut operator, resumed_at) {
            operator.resume_at(at);
        }
        let (requests, requests_rx) = mpsc::channel(4);
        let pipeline = Pipeline {
            def: def.clone(),
            plan,
            storage: Arc::clone(&self.storage),
            stats: Arc::clone(&stats),
            shared: Arc::clone(&shared),
            feed: Arc::clone(&feed),
            operator,
            max_open_groups: self.max_open_groups,
            resumed_at,
            max_event_time: None,
            pending_out: Vec::new(),
            pending_late: Vec::new(),
        };
        let task = tokio::spawn(pipeline.run(input, requests_rx));
        let handle = Arc::new(ViewHandle {
            def,
            stats,
            reader,
            shared,
            feed,
            requests,
            task: Mutex::new(Some(task)),
        });
        if let Some(old) = self.running().insert(handle.def.name.clone(), handle) {
            old.abandon();
        }
        Ok(())
    }

    /// Registers a view that cannot run (its query no longer plans), so it shows as failed.
    pub fn failed(&self, def: ViewDef, error: &Error) {
        let stats = Arc::new(ViewStats::new(&def.name, &def.input, def.emit_on_close));
        stats.failed(&error.to_string());
        let (requests, _) = mpsc::channel(1);
        let handle = Arc::new(ViewHandle {
            feed: self.feeds.get(&def.name),
            reader: None,
            def,
            stats,
            shared: Arc::default(),
            requests,
            task: Mutex::new(None),
        });
        self.running().insert(handle.def.name.clone(), handle);
    }

    /// Stops a dropped view without committing anything more.
    pub fn remove(&self, name: &str) {
        if let Some(handle) = self.running().remove(name) {
            handle.abandon();
        }
        self.feeds.remove(name);
    }

    /// Commits everything every view has taken in, upstream views first so their output
    /// reaches the views reading them before those flush.
    pub async fn flush(&self) -> Result<()> {
        for handle in self.in_dependency_order() {
            handle.flush().await?;
        }
        Ok(())
    }

    /// Stops every view after committing, upstream views first.
    pub async fn shutdown(&self) {
        for handle in self.in_dependency_order() {
            handle.stop().await;
        }
        self.running().clear();
    }

    fn in_dependency_order(&self) -> Vec<Arc<ViewHandle>> {
        dependency_order(self.all(), |v| &v.def)
    }
}

/// Views ordered so that a view comes after the view it reads.
pub fn dependency_order<T>(items: Vec<T>, def: impl Fn(&T) -> &ViewDef) -> Vec<T> {
    let names: std::collections::HashSet<String> =
        items.iter().map(|v| def(v).name.clone()).collect();
    let mut placed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut ordered = Vec::with_capacity(items.len());
    let mut remaining = items;
    while !remaining.is_empty() {
        let (ready, waiting): (Vec<T>, Vec<T>) = remaining.into_iter().partition(|v| {
            let input = &def(v).input;
            !names.contains(input) || placed.contains(input)
        });
        if ready.is_empty() {
            ordered.extend(waiting);
            break;
        }
        placed.extend(ready.iter().map(|v| def(v).name.clone()));
        ordered.extend(ready);
        remaining = waiting;
    }
    ordered
}
