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
//!
//! The coordinator knows its participants only as [`Participant`]s (a source runner, a view's
//! topic reader, a view; a sink later), each reporting a [`Change`] to the manifest and a
//! [`Release`] of what the change makes durable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::storage::{
    CheckpointRecord, DataFile, Manifest, ReaderPosition, Storage, ViewCheckpoint,
};
use crate::stream::barrier::Barrier;

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
pub enum ParticipantId {
    /// A source's own reader.
    Source(String),
    /// A view's own reader of the topic of a source it reads (at `input`, its index among
    /// the view's inputs).
    Reader {
        view: String,
        input: usize,
    },
    View(String),
}

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParticipantId::Source(name) => write!(f, "source \"{name}\""),
            ParticipantId::Reader { view, input } => {
                write!(f, "the topic reader of input {input} of view \"{view}\"")
            }
            ParticipantId::View(name) => write!(f, "materialized view \"{name}\""),
        }
    }
}

/// One party to checkpoint rounds, as the coordinator sees it.
#[async_trait::async_trait]
pub trait Participant: Send + Sync {
    fn id(&self) -> ParticipantId;

    /// Whether it still runs: one that stopped will never report.
    fn alive(&self) -> bool;

    /// Hands it a round's barrier, given who reports in the round so far (participants come
    /// upstream first); whether it will report. One fed by its inputs gets the barrier from
    /// them, and reports if they do.
    async fn inject(&self, barrier: &Arc<Barrier>, reporting: &BTreeSet<ParticipantId>) -> bool;

    /// Shows that rounds fail, and why (`None`: one committed).
    fn checkpoints_failing(&self, error: Option<&str>);
}

/// Everyone who takes part in rounds, upstream first.
pub trait Participants: Send + Sync {
    fn in_dependency_order(&self) -> Vec<Arc<dyn Participant>>;
}

/// Where a round's reports go: the round's handle in its barrier.
struct Reports(mpsc::UnboundedSender<(ParticipantId, Result<Report>)>);

/// Reports `participant`'s part of the round `barrier` cuts.
pub fn report(barrier: &Barrier, participant: ParticipantId, report: Result<Report>) {
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

/// What a committed round lets a participant forget, whatever its state is.
#[async_trait::async_trait]
pub trait Release: Send {
    /// Takes the lock its readers take (held over the manifest commit).
    async fn lock(self: Box<Self>) -> Box<dyn Forget>;
}

/// A participant's pending state, locked: forgetting drains what the round wrote.
pub trait Forget: Send {
    fn forget(self: Box<Self>);
}

/// A participant's pending state and what of it a round wrote.
pub struct Held<T: Drain> {
    state: Arc<tokio::sync::Mutex<T>>,
    taken: T::Taken,
}

impl<T: Drain + Send + 'static> Held<T> {
    pub fn release(state: &Arc<tokio::sync::Mutex<T>>, taken: T::Taken) -> Box<dyn Release> {
        Box::new(Held {
            state: Arc::clone(state),
            taken,
        })
    }
}

#[async_trait::async_trait]
impl<T: Drain + Send + 'static> Release for Held<T> {
    async fn lock(self: Box<Self>) -> Box<dyn Forget> {
        Box::new(Locked {
            guard: self.state.lock_owned().await,
            taken: self.taken,
        })
    }
}

struct Locked<T: Drain> {
    guard: tokio::sync::OwnedMutexGuard<T>,
    taken: T::Taken,
}

impl<T: Drain + Send + 'static> Forget for Locked<T> {
    fn forget(mut self: Box<Self>) {
        let Locked { guard, taken } = &mut *self;
        guard.drain(taken);
    }
}

/// What one participant wrote for a round: the manifest change naming it, and the release of
/// the pending state it made durable.
pub struct Report {
    pub change: Change,
    pub release: Box<dyn Release>,
}

/// A participant's part of a round's manifest commit.
pub enum Change {
    Source {
        source_id: u64,
        offsets: BTreeMap<i32, i64>,
        data_file: Option<DataFile>,
        rejected_file: Option<DataFile>,
        dedup: Option<DataFile>,
    },
    View {
        view_id: u64,
        checkpoint: Box<ViewCheckpoint>,
        closed_through: Option<i64>,
        data_file: Option<DataFile>,
        late_file: Option<DataFile>,
    },
}

impl Change {
    fn files(&self) -> Vec<&DataFile> {
        match self {
            Change::Source {
                data_file,
                rejected_file,
                dedup,
                ..
            } => data_file.iter().chain(rejected_file).chain(dedup).collect(),
            Change::View {
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
            Change::Source { dedup, .. } => dedup.iter().map(|f| f.size_bytes).sum(),
            Change::View { checkpoint, .. } => checkpoint.state.iter().map(|f| f.size_bytes).sum(),
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
    participants: Arc<dyn Participants>,
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
        participants: Arc<dyn Participants>,
        interval: Duration,
        requested: Arc<Notify>,
    ) -> Self {
        let next_id = storage.manifest().checkpoint_id() + 1;
        Checkpoints {
            storage,
            participants,
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
        for participant in self.participants.in_dependency_order() {
            participant.checkpoints_failing(error);
        }
    }

    async fn round(&self, id: u64, record: &mut CheckpointRecord, started: Instant) -> Result<()> {
        let (sender, mut reports) = mpsc::unbounded_channel();
        let barrier = Arc::new(Barrier::new(id, Arc::new(Reports(sender))));
        let (mut expected, participants) = self.inject(&barrier).await;
        drop(barrier);
        let alive = |p: &ParticipantId| participants.get(p).is_some_and(|p| p.alive());
        let mut received: BTreeMap<ParticipantId, Report> = BTreeMap::new();
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
                    expected.retain(|p| alive(p) || received.contains_key(p));
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

    /// Sends the barrier in, upstream first; returns who will report, and everyone asked.
    async fn inject(
        &self,
        barrier: &Arc<Barrier>,
    ) -> (
        BTreeSet<ParticipantId>,
        BTreeMap<ParticipantId, Arc<dyn Participant>>,
    ) {
        let mut expected = BTreeSet::new();
        let mut asked = BTreeMap::new();
        for participant in self.participants.in_dependency_order() {
            let id = participant.id();
            if participant.inject(barrier, &expected).await {
                expected.insert(id.clone());
            }
            asked.insert(id, participant);
        }
        (expected, asked)
    }

    /// Commits every report in one manifest, then lets participants forget what it names.
    async fn commit(
        &self,
        id: u64,
        reports: BTreeMap<ParticipantId, Report>,
        record: &mut CheckpointRecord,
        started: Instant,
    ) -> Result<()> {
        let files: Vec<&DataFile> = reports.values().flat_map(|r| r.change.files()).collect();
        record.files = files.len() as u64;
        record.size_bytes = files.iter().map(|f| f.size_bytes).sum();
        record.state_bytes = reports.values().map(|r| r.change.state_bytes()).sum();
        let mut changes = Changes::default();
        // In participant order: sources and readers before views, the order readers lock in.
        let mut releases = Vec::new();
        for (participant, report) in reports {
            releases.push(report.release);
            match report.change {
                Change::Source {
                    source_id,
                    offsets,
                    data_file,
                    rejected_file,
                    dedup,
                } => match participant {
                    ParticipantId::Reader { view, input } => {
                        let position = ReaderPosition { offsets, dedup };
                        changes
                            .readers
                            .entry(view)
                            .or_default()
                            .insert(input, position);
                    }
                    ParticipantId::Source(name) => {
                        changes.rejected.extend(rejected_file);
                        changes.sources.push(SourceChange {
                            name,
                            id: source_id,
                            offsets,
                            data_file,
                            dedup,
                        });
                    }
                    ParticipantId::View(_) => {}
                },
                Change::View {
                    view_id,
                    checkpoint,
                    closed_through,
                    data_file,
                    late_file,
                } => {
                    changes.late.extend(late_file);
                    if let ParticipantId::View(name) = participant {
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
        let mut locked = Vec::with_capacity(releases.len());
        for release in releases {
            locked.push(release.lock().await);
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
        for locked in locked {
            locked.forget();
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
    checkpoint: Box<ViewCheckpoint>,
    closed_through: Option<i64>,
    data_file: Option<DataFile>,
}

/// A round's changes to the manifest.
#[derive(Default)]
struct Changes {
    sources: Vec<SourceChange>,
    views: Vec<ViewChange>,
    /// Per view with its own topic readers: where each stands, by input.
    readers: BTreeMap<String, BTreeMap<usize, ReaderPosition>>,
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
            let mut checkpoint = ViewCheckpoint::clone(&change.checkpoint);
            if let Some(readers) = self.readers.get(&change.name) {
                checkpoint.readers = readers.clone();
            }
            if let Some(old) = state.checkpoint.replace(checkpoint) {
                superseded.extend(old.state_files().cloned());
            }
        }
        m.rejected_rows.extend(self.rejected.iter().cloned());
        m.late_rows.extend(self.late.iter().cloned());
        superseded
    }
}

#[cfg(test)]
mod tests {
    /// The coordinator knows its participants only as [`super::Participant`]s and their
    /// reports: no source, view or table type appears in it.
    #[test]
    fn the_coordinator_names_no_participant_type() {
        let text = include_str!("checkpoint.rs");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let found: Vec<&str> = code
            .lines()
            .filter(|line| {
                let code = line.split("//").next().unwrap_or_default();
                [
                    "crate::source",
                    "crate::view",
                    "crate::table",
                    "crate::database",
                ]
                .iter()
                .any(|m| code.contains(m))
            })
            .collect();
        assert!(found.is_empty(), "{found:?}");
    }
}
