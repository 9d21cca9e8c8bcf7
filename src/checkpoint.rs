//! Checkpoints: one consistent cut through every source and view, committed in one manifest.
//!
//! Every `checkpoint_interval`, on `FLUSH`, when a source holds too many pending rows and at
//! shutdown, [`Checkpoints::checkpoint`] runs one round (DESIGN.md §5):
//!
//! 1. A [`Barrier`] goes to every source runner (and every view's own topic reader, and every
//!    view over a table). A runner takes in what it has already received, writes its pending
//!    retained rows, rejected records and deduplication keys, reports them with its offsets,
//!    and passes the barrier to the views reading it, after the rows before it.
//! 2. A view meeting the barrier has applied exactly the rows before it. It writes its open
//!    window state (Arrow IPC, [`crate::stream::state`]), its pending closed windows and late
//!    rows, reports them, and passes the barrier on to the views reading it.
//! 3. Once every participant reported, one manifest commit names all of it. Only then do
//!    participants forget the pending rows they wrote (under the locks readers take, so a
//!    reader sees each row once). A round that fails or times out commits nothing: the
//!    previous checkpoint stays in force, the files it wrote are never named, and the next
//!    round writes the pending rows again.
//!
//! Recovery (`Database::open`) starts sources at the committed offsets and views from their
//! committed state, so a crash at any moment changes no result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::source::Sources;
use crate::source::runner::Pending;
use crate::storage::{CheckpointRecord, DataFile, Manifest, Storage, ViewCheckpoint};
use crate::stream::barrier::Barrier;
use crate::stream::plan::RelationKind;
use crate::view::{Shared, Views};

/// What the database asks of a source runner or a view pipeline.
pub enum Request {
    /// A checkpoint's barrier (to source runners and views over tables; other views get it
    /// from their input's feed).
    Barrier(Arc<Barrier>),
    /// Stop after the rows taken in so far; answered once stopped.
    Stop(oneshot::Sender<()>),
}

/// A source runner's or a view pipeline's task and the channel of its requests.
#[derive(Debug)]
pub struct Worker {
    requests: mpsc::Sender<Request>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Spawns `run` with the receiving end of a new request channel.
    pub fn spawn<F>(run: impl FnOnce(mpsc::Receiver<Request>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (requests, receiver) = mpsc::channel(4);
        Worker {
            requests,
            task: Mutex::new(Some(tokio::spawn(run(receiver)))),
        }
    }

    /// A worker that never ran (a view that failed to start).
    pub fn idle() -> Self {
        Worker {
            requests: mpsc::channel(1).0,
            task: Mutex::new(None),
        }
    }

    /// Whether the task still runs (it ends when stopped, dropped or failed).
    pub fn alive(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Hands a checkpoint's barrier to the task; false if it no longer runs.
    pub async fn barrier(&self, barrier: &Arc<Barrier>) -> bool {
        self.alive()
            && self
                .requests
                .send(Request::Barrier(Arc::clone(barrier)))
                .await
                .is_ok()
    }

    /// Asks the task to stop and waits until it has.
    pub async fn stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.requests.send(Request::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Ends the task at once.
    pub fn abort(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// A round gives up when a participant has not reported for this long.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Failed rounds `sluice_catalog.checkpoints` remembers.
const FAILURES_KEPT: usize = 20;

/// Who takes part in a round.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Participant {
    /// A source's own reader.
    Source(String),
    /// A view's own reader of a source's topic.
    Reader(String),
    View(String),
}

impl std::fmt::Display for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Participant::Source(name) => write!(f, "source \"{name}\""),
            Participant::Reader(view) => write!(f, "the topic reader of view \"{view}\""),
            Participant::View(name) => write!(f, "materialized view \"{name}\""),
        }
    }
}

/// Where a round's reports go: the round's handle in its barrier.
struct Reports(mpsc::UnboundedSender<(Participant, Result<Report>)>);

/// Reports `participant`'s part of the round `barrier` cuts.
pub fn report(barrier: &Barrier, participant: Participant, report: Result<Report>) {
    // A closed channel means the round was given up; its files are never named.
    if let Some(Reports(reports)) = barrier.round::<Reports>() {
        let _ = reports.send((participant, report));
    }
}

/// Pending state that a committed round makes durable: what a participant wrote is
/// forgotten (drained) under the lock its readers take.
pub trait Drain {
    type Taken: Send;
    fn drain(&mut self, taken: &Self::Taken);
}

/// A participant's pending state and what of it a round wrote.
pub struct Held<T: Drain> {
    pub state: Arc<tokio::sync::Mutex<T>>,
    pub taken: T::Taken,
}

impl<T: Drain> Held<T> {
    async fn lock(self) -> Locked<T> {
        Locked {
            guard: self.state.lock_owned().await,
            taken: self.taken,
        }
    }
}

struct Locked<T: Drain> {
    guard: tokio::sync::OwnedMutexGuard<T>,
    taken: T::Taken,
}

impl<T: Drain> Locked<T> {
    fn drain(mut self) {
        self.guard.drain(&self.taken);
    }
}

/// What one participant wrote for a round, and the manifest change naming it.
pub enum Report {
    Source {
        source_id: u64,
        offsets: BTreeMap<i32, i64>,
        data_file: Option<DataFile>,
        rejected_file: Option<DataFile>,
        dedup: Option<DataFile>,
        release: Held<Pending>,
    },
    View {
        view_id: u64,
        checkpoint: ViewCheckpoint,
        closed_through: Option<i64>,
        data_file: Option<DataFile>,
        late_file: Option<DataFile>,
        release: Held<Shared>,
    },
}

impl Report {
    fn files(&self) -> Vec<&DataFile> {
        match self {
            Report::Source {
                data_file,
                rejected_file,
                dedup,
                ..
            } => data_file.iter().chain(rejected_file).chain(dedup).collect(),
            Report::View {
                checkpoint,
                data_file,
                late_file,
                ..
            } => data_file
                .iter()
                .chain(late_file)
                .chain(&checkpoint.state)
                .collect(),
        }
    }

    fn state_bytes(&self) -> u64 {
        match self {
            Report::Source { dedup, .. } => dedup.iter().map(|f| f.size_bytes).sum(),
            Report::View { checkpoint, .. } => checkpoint.state.iter().map(|f| f.size_bytes).sum(),
        }
    }
}

/// A failed round, as `sluice_catalog.checkpoints` shows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub record: CheckpointRecord,
    pub error: String,
}

/// Runs checkpoint rounds, one at a time.
pub struct Checkpoints {
    storage: Arc<Storage>,
    sources: Arc<Sources>,
    views: Arc<Views>,
    interval: Duration,
    round: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    /// Signalled by a source whose pending rows are full.
    requested: Arc<Notify>,
    failures: Mutex<Vec<Failure>>,
    /// The recovery this process made, committed with the next checkpoint.
    recovery: Mutex<Option<CheckpointRecord>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("interval", &self.interval)
            .finish()
    }
}

impl Checkpoints {
    pub fn new(
        storage: Arc<Storage>,
        sources: Arc<Sources>,
        views: Arc<Views>,
        interval: Duration,
        requested: Arc<Notify>,
    ) -> Self {
        let next_id = storage.manifest().checkpoint_id() + 1;
        Checkpoints {
            storage,
            sources,
            views,
            interval,
            round: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(next_id),
            requested,
            failures: Mutex::new(Vec::new()),
            recovery: Mutex::new(None),
        }
    }

    /// Runs a round every interval, or sooner when a source asks; stops with the database.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let interval = self.interval;
        let requested = Arc::clone(&self.requested);
        tokio::spawn(async move {
            loop {
                let reason = tokio::select! {
                    _ = tokio::time::sleep(interval) => "interval",
                    _ = requested.notified() => "pending_rows",
                };
                let Some(checkpoints) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = checkpoints.checkpoint(reason).await {
                    tracing::warn!(error = %e, "checkpoint failed; the previous one stays in force, the next retries");
                }
            }
        })
    }

    /// Runs `work` while no round is in flight, so it never sees a round's files half-written.
    pub async fn between_rounds<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let _round = self.round.lock().await;
        work.await
    }

    /// Notes how long recovery took; it is committed with the next checkpoint.
    pub fn recovered(&self, record: CheckpointRecord) {
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    /// Committed checkpoints and recoveries, a recovery not yet committed, and failed rounds.
    pub fn history(&self) -> Vec<(CheckpointRecord, &'static str, Option<String>)> {
        let mut rows: Vec<_> = self
            .storage
            .manifest()
            .checkpoints
            .iter()
            .map(|r| (r.clone(), "committed", None))
            .collect();
        let recovery = self.recovery.lock().unwrap_or_else(|e| e.into_inner());
        rows.extend(recovery.iter().map(|r| (r.clone(), "committed", None)));
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        rows.extend(
            failures
                .iter()
                .map(|f| (f.record.clone(), "failed", Some(f.error.clone()))),
        );
        rows.sort_by_key(|(r, _, _)| r.started_at_ms);
        rows
    }

    /// Runs one round and commits it; returns its record.
    pub async fn checkpoint(&self, reason: &str) -> Result<CheckpointRecord> {
        let _round = self.round.lock().await;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let mut record = CheckpointRecord {
            id,
            kind: "checkpoint".into(),
            reason: reason.into(),
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            duration_ms: 0,
            size_bytes: 0,
            state_bytes: 0,
            files: 0,
        };
        match self.round(id, &mut record, started).await {
            Ok(()) => {
                self.show_failing(None);
                crate::metrics::CHECKPOINTS_COMMITTED.add(1);
                crate::metrics::CHECKPOINTS_FAILING.set(0);
                crate::metrics::CHECKPOINT_COMMITTED_AT.set(chrono::Utc::now().timestamp());
                tracing::debug!(
                    checkpoint = id,
                    ms = record.duration_ms,
                    bytes = record.size_bytes,
                    "checkpoint committed"
                );
                Ok(record)
            }
            Err(e) => {
                self.show_failing(Some(&format!(
                    "checkpoints fail, so nothing read since the last one is durable: {e}"
                )));
                crate::metrics::CHECKPOINTS_FAILED.add(1);
                crate::metrics::CHECKPOINTS_FAILING.add(1);
                record.duration_ms = started.elapsed().as_millis() as u64;
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                failures.push(Failure {
                    record,
                    error: e.to_string(),
                });
                let excess = failures.len().saturating_sub(FAILURES_KEPT);
                failures.drain(..excess);
                Err(e)
            }
        }
    }

    /// Shows every source and view as `retrying` with `error` while rounds fail (one look at
    /// `sluice_catalog` says what is wrong), or as they are once one commits.
    fn show_failing(&self, error: Option<&str>) {
        for source in self.sources.all() {
            source.stats.checkpoints_failing(error);
        }
        for view in self.views.all() {
            view.stats.checkpoints_failing(error);
        }
    }

    async fn round(&self, id: u64, record: &mut CheckpointRecord, started: Instant) -> Result<()> {
        let (sender, mut reports) = mpsc::unbounded_channel();
        let barrier = Arc::new(Barrier::new(id, Arc::new(Reports(sender))));
        let mut expected = self.inject(&barrier).await;
        drop(barrier);
        let mut received: BTreeMap<Participant, Report> = BTreeMap::new();
        let deadline = Instant::now() + ROUND_TIMEOUT;
        while expected.iter().any(|p| !received.contains_key(p)) {
            let wait = tokio::time::timeout(Duration::from_secs(1), reports.recv()).await;
            match wait {
                Ok(Some((participant, Ok(report)))) => {
                    received.insert(participant, report);
                }
                // A store that did not answer stays a storage error (58030, retryable), and a
                // full disk 53100, so FLUSH says what the client can do about it.
                Ok(Some((participant, Err(e)))) => {
                    let message =
                        format!("checkpoint {id}: {participant} could not write its state: {e}");
                    return Err(match e {
                        Error::Storage { retryable, .. } => Error::Storage { message, retryable },
                        e @ Error::DiskFull { .. } => e,
                        _ => Error::Internal(message),
                    });
                }
                Ok(None) => break,
                Err(_) => {
                    // A participant that stopped (failed, dropped) will never report.
                    expected.retain(|p| self.alive(p) || received.contains_key(p));
                    if Instant::now() > deadline {
                        let missing: Vec<String> = expected
                            .iter()
                            .filter(|p| !received.contains_key(p))
                            .map(ToString::to_string)
                            .collect();
                        return Err(Error::NotReady(format!(
                            "checkpoint {id} timed out after {}s waiting for {} (a view stalled at its state limit holds checkpoints back)",
                            ROUND_TIMEOUT.as_secs(),
                            missing.join(", ")
                        )));
                    }
                }
            }
        }
        // Reports of participants that joined after the barrier went out are not part of it.
        received.retain(|p, _| expected.contains(p));
        self.commit(id, received, record, started).await
    }

    /// Sends the barrier to every reader and to views over tables; returns who will report.
    async fn inject(&self, barrier: &Arc<Barrier>) -> BTreeSet<Participant> {
        let mut expected = BTreeSet::new();
        for source in self.sources.all() {
            if source.barrier(barrier).await {
                expected.insert(Participant::Source(source.name().to_string()));
            }
        }
        for view in self.views.in_dependency_order() {
            let name = view.def.name.clone();
            if !view.alive() {
                continue;
            }
            let reached = match view.reader() {
                Some(reader) => {
                    let delivered = reader.barrier(barrier).await;
                    if delivered {
                        expected.insert(Participant::Reader(name.clone()));
                    }
                    delivered
                }
                // Every input must reach the view: feeds pass the barrier on, and a view over
                // tables is sent it once its other inputs will bring theirs.
                None => {
                    let fed = view.inputs().iter().all(|(kind, input)| match kind {
                        RelationKind::Source => {
                            expected.contains(&Participant::Source(input.clone()))
                        }
                        RelationKind::View => expected.contains(&Participant::View(input.clone())),
                        RelationKind::Table => true,
                        RelationKind::Union => false,
                    });
                    let tables = view
                        .inputs()
                        .iter()
                        .any(|(kind, _)| *kind == RelationKind::Table);
                    match (fed, tables) {
                        (true, true) => view.barrier(barrier).await,
                        (fed, false) => fed,
                        (false, true) => false,
                    }
                }
            };
            if reached {
                expected.insert(Participant::View(name));
            }
        }
        expected
    }

    fn alive(&self, participant: &Participant) -> bool {
        match participant {
            Participant::Source(name) => self.sources.get(name).is_some_and(|s| s.alive()),
            Participant::Reader(view) => self
                .views
                .get(view)
                .and_then(|v| v.reader().cloned())
                .is_some_and(|r| r.alive()),
            Participant::View(name) => self.views.get(name).is_some_and(|v| v.alive()),
        }
    }

    /// Commits every report in one manifest, then lets participants forget what it names.
    async fn commit(
        &self,
        id: u64,
        reports: BTreeMap<Participant, Report>,
        record: &mut CheckpointRecord,
        started: Instant,
    ) -> Result<()> {
        let files: Vec<&DataFile> = reports.values().flat_map(Report::files).collect();
        record.files = files.len() as u64;
        record.size_bytes = files.iter().map(|f| f.size_bytes).sum();
        record.state_bytes = reports.values().map(Report::state_bytes).sum();
        let mut changes = Changes::default();
        let mut sources = Vec::new();
        let mut views = Vec::new();
        for (participant, report) in reports {
            match report {
                Report::Source {
                    source_id,
                    offsets,
                    data_file,
                    rejected_file,
                    dedup,
                    release,
                } => {
                    sources.push(release);
                    match participant {
                        Participant::Reader(view) => {
                            changes.readers.insert(view, (offsets, dedup));
                        }
                        Participant::Source(name) => {
                            changes.rejected.extend(rejected_file);
                            changes.sources.push(SourceChange {
                                name,
                                id: source_id,
                                offsets,
                                data_file,
                                dedup,
                            });
                        }
                        Participant::View(_) => {}
                    }
                }
                Report::View {
                    view_id,
                    checkpoint,
                    closed_through,
                    data_file,
                    late_file,
                    release,
                } => {
                    views.push(release);
                    changes.late.extend(late_file);
                    if let Participant::View(name) = participant {
                        changes.views.push(ViewChange {
                            name,
                            id: view_id,
                            checkpoint,
                            closed_through,
                            data_file,
                        });
                    }
                }
            }
        }
        // Readers see committed files plus pending rows under these locks: holding them over
        // the commit and the drain, they never see a row twice or not at all.
        let mut locked_sources = Vec::with_capacity(sources.len());
        for held in sources {
            locked_sources.push(held.lock().await);
        }
        let mut locked_views = Vec::with_capacity(views.len());
        for held in views {
            locked_views.push(held.lock().await);
        }
        let recovery = self
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut superseded: Vec<DataFile> = Vec::new();
        crate::failpoint::crash_point("checkpoint.written");
        record.duration_ms = started.elapsed().as_millis() as u64;
        let committed = record.clone();
        self.storage
            .commit(|m| {
                superseded = changes.apply(m);
                m.record(committed);
                if let Some(recovery) = recovery {
                    m.record(recovery);
                }
                Ok(())
            })
            .await?;
        crate::failpoint::crash_point("checkpoint.committed");
        for locked in locked_sources {
            locked.drain();
        }
        for locked in locked_views {
            locked.drain();
        }
        self.recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // State files of the previous checkpoint: nothing reads them any more.
        self.storage.delete_files(&superseded).await;
        tracing::debug!(checkpoint = id, "checkpoint applied");
        Ok(())
    }
}

struct SourceChange {
    name: String,
    id: u64,
    offsets: BTreeMap<i32, i64>,
    data_file: Option<DataFile>,
    dedup: Option<DataFile>,
}

struct ViewChange {
    name: String,
    id: u64,
    checkpoint: ViewCheckpoint,
    closed_through: Option<i64>,
    data_file: Option<DataFile>,
}

/// A round's changes to the manifest.
#[derive(Default)]
struct Changes {
    sources: Vec<SourceChange>,
    views: Vec<ViewChange>,
    /// Per view with its own topic reader: offsets and deduplication state.
    readers: BTreeMap<String, (BTreeMap<i32, i64>, Option<DataFile>)>,
    rejected: Vec<DataFile>,
    late: Vec<DataFile>,
}

impl Changes {
    /// Applies the changes to relations that still exist (one dropped meanwhile is skipped);
    /// returns the state files they replace.
    fn apply(&self, m: &mut Manifest) -> Vec<DataFile> {
        let mut superseded = Vec::new();
        for change in &self.sources {
            let Some(state) = m
                .sources
                .get_mut(&change.name)
                .filter(|s| s.def.id == change.id)
            else {
                continue;
            };
            state.files.extend(change.data_file.clone());
            state.offsets.extend(&change.offsets);
            superseded.extend(std::mem::replace(&mut state.dedup, change.dedup.clone()));
        }
        for change in &self.views {
            let Some(state) = m
                .views
                .get_mut(&change.name)
                .filter(|v| v.def.id == change.id)
            else {
                continue;
            };
            state.files.extend(change.data_file.clone());
            state.closed_through = change.closed_through.or(state.closed_through);
            let mut checkpoint = change.checkpoint.clone();
            if let Some((offsets, dedup)) = self.readers.get(&change.name) {
                checkpoint.offsets = offsets.clone();
                checkpoint.dedup = dedup.clone();
            }
            if let Some(old) = state.checkpoint.replace(checkpoint) {
                superseded.extend(old.state);
                superseded.extend(old.dedup);
            }
        }
        m.rejected_rows.extend(self.rejected.iter().cloned());
        m.late_rows.extend(self.late.iter().cloned());
        superseded
    }
}
