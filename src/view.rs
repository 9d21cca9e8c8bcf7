//! Running materialized views: one [`pipeline`] task per view, and what readers see of it.
//!
//! A view subscribes to its input (a source's or view's feed, or a table's commits), resumes
//! from its last checkpoint or else backfills what the input already holds, then follows it. What a query of the view reads — committed
//! files, final rows not yet committed, live results of open windows — is taken under the
//! [`Shared`] lock, the same lock its commit holds.

pub mod late;
pub mod pipeline;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;

use crate::catalog::view::ViewDef;
use crate::checkpoint::{Participant, ParticipantId, Worker};
use crate::error::{Error, Result};
use crate::source::options::SourceSettings;
use crate::source::{Reader, SourceHandle, Sources};
use crate::storage::fold::FoldBy;
use crate::storage::{DataFile, Manifest, Storage, ViewCheckpoint};
use crate::stream::barrier::Barrier;
use crate::stream::changes::Emitted;
use crate::stream::dataflow::Dataflow;
use crate::stream::feed::{Feed, Feeds};
use crate::stream::join::JoinState;
use crate::stream::plan::{InputRelation, RelationKind, ViewPlan};
use crate::stream::state_memory::{StateMemory, StatePools};
use late::LateRow;
use pipeline::{Input, Pipeline};
use stats::ViewStats;

/// What readers of a view see besides its committed files.
#[derive(Debug, Default)]
pub struct Shared {
    /// Final rows (closed windows) not yet committed: a batch per window close.
    pub closed: Vec<RecordBatch>,
    /// Partial results of open windows (live mode).
    pub live: Vec<RecordBatch>,
    pub late: Vec<LateRow>,
    /// The watermark the final rows reach.
    pub closed_through: Option<i64>,
    /// The watermark last handed on, which a view subscribing later starts from (it would
    /// otherwise wait for the next one, and an upstream that read its last rows before the
    /// subscription may not send another for long).
    pub watermark: Option<i64>,
    /// An updating view's rows as of the checkpoint it was restored from, until its next
    /// checkpoint: a view over it resuming from that checkpoint takes the changes since.
    pub restored: Option<Vec<RecordBatch>>,
    /// An updating view's rows as its committed files hold them: each checkpoint writes the
    /// changes from these to its rows as a changelog file.
    pub stored: Option<Emitted>,
    /// `closed` and `live` as one batch, made by the first read after either changed: a read
    /// would otherwise handle every small batch each window close added (hundreds between
    /// checkpoints), which made a dashboard query over a live view cost milliseconds.
    coalesced: Option<Vec<RecordBatch>>,
}

impl Shared {
    /// Adds final rows and, when refreshed, the new live snapshot, in one step.
    pub fn publish(&mut self, rows: &[RecordBatch], live: Option<Vec<RecordBatch>>) {
        self.closed.extend(rows.iter().cloned());
        if let Some(live) = live {
            self.live = live;
        }
        self.coalesced = None;
    }

    /// The pending final rows and the live snapshot, as few batches as possible.
    fn rows(&mut self) -> Vec<RecordBatch> {
        if let Some(rows) = &self.coalesced {
            return rows.clone();
        }
        let all: Vec<RecordBatch> = self.closed.iter().chain(&self.live).cloned().collect();
        let rows = match all.first() {
            Some(first) if all.len() > 1 => {
                datafusion::arrow::compute::concat_batches(&first.schema(), &all)
                    .map_or(all, |one| vec![one])
            }
            _ => all,
        };
        self.coalesced = Some(rows.clone());
        rows
    }
}

/// A running view, as the rest of the database sees it.
#[derive(Debug)]
pub struct ViewHandle {
    pub def: ViewDef,
    pub stats: Arc<ViewStats>,
    /// What kind of relation each input is, and its name.
    inputs: Vec<(RelationKind, String)>,
    /// The view's own readers of sources that keep no events, by input (its index among the
    /// view's inputs).
    readers: Vec<(usize, Arc<SourceHandle>)>,
    shared: Arc<tokio::sync::Mutex<Shared>>,
    feed: Arc<Feed>,
    worker: Worker,
}

impl ViewHandle {
    /// The view's numbers; a failing private reader of a source shows as its last error.
    pub fn snapshot(&self) -> stats::Snapshot {
        let mut snapshot = self.stats.snapshot();
        snapshot.part_of = self.def.part_of.clone();
        for (_, reader) in &self.readers {
            let input = reader.stats.snapshot();
            if snapshot.last_error.is_none()
                && let Some(error) = input.last_error
            {
                snapshot.last_error = Some(format!(
                    "reading source \"{}\" ({}): {error}",
                    reader.name(),
                    input.status.as_str()
                ));
            }
        }
        snapshot
    }

    /// The relations the view reads, with their kinds.
    pub fn inputs(&self) -> &[(RelationKind, String)] {
        &self.inputs
    }

    /// The view's own readers of its sources' topics, by input.
    pub fn readers(&self) -> &[(usize, Arc<SourceHandle>)] {
        &self.readers
    }

    /// Whether the view's pipeline still runs (it ends when the view fails or is dropped).
    pub fn alive(&self) -> bool {
        self.worker.alive()
    }

    /// Hands a checkpoint's barrier to a view over a table; false if the view does not run.
    pub async fn barrier(&self, barrier: &Arc<Barrier>) -> bool {
        self.worker.barrier(barrier).await
    }

    /// Stops (the last checkpoint was taken before).
    pub async fn stop(&self) {
        for (_, reader) in &self.readers {
            reader.stop().await;
        }
        self.worker.stop().await;
    }

    /// Stops at once, committing nothing more (the view was dropped).
    pub fn abandon(&self) {
        for (_, reader) in &self.readers {
            reader.abandon();
        }
        self.worker.abort();
    }

    /// The committed files and the rows a query of the view sees besides them, as of one
    /// instant: final rows not yet committed and, in live mode, the open windows.
    pub async fn read(&self, storage: &Storage) -> Result<(Vec<DataFile>, Vec<RecordBatch>)> {
        let mut shared = self.shared.lock().await;
        // An updating view that never started (it failed to): its rows as of its last
        // checkpoint, which its files hold as a changelog.
        if self.def.updating && shared.stored.is_none() {
            drop(shared);
            let files = storage
                .manifest()
                .view(&self.def.name)
                .map(|v| v.files.clone())
                .unwrap_or_default();
            return Ok((
                Vec::new(),
                storage.changelog_rows(&files, &FoldBy::Row).await?,
            ));
        }
        let rows = shared.rows();
        Ok((self.committed_files(storage), rows))
    }

    /// The files of final rows; none for an updating view, whose live rows are all of them
    /// (its files are the changelog of its rows, for when it does not run).
    fn committed_files(&self, storage: &Storage) -> Vec<DataFile> {
        if self.def.updating {
            return Vec::new();
        }
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
    /// pending rows), then everything emitted later. For an updating view: the rows it handed
    /// on last, then its changes — or, for a view `resumed` from the checkpoint this one was
    /// restored from (whose state holds the rows as of then), the changes since.
    async fn subscribe(&self, storage: &Storage, resumed: bool) -> Result<Input> {
        let shared = self.shared.lock().await;
        let (batches, changes) = match (self.def.updating, resumed) {
            (false, _) => (shared.closed.clone(), None),
            (true, false) => (shared.live.clone(), None),
            (true, true) => {
                let restored = shared.restored.as_ref().ok_or_else(|| {
                    Error::Internal(format!(
                        "view \"{}\" moved past the checkpoint its readers resume from",
                        self.def.name
                    ))
                })?;
                let mut emitted = Emitted::new(self.def.schema());
                emitted.reset(restored)?;
                (Vec::new(), emitted.diff(&shared.live)?)
            }
        };
        Ok(Input::Feed {
            files: self.committed_files(storage),
            batches,
            changes,
            watermark: shared.watermark,
            receiver: self.feed.subscribe(),
        })
    }
}

/// Where a view without a checkpoint starts reading a topic it reads itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// At the source's `scan.startup.mode`, as a new view does.
    Default,
    /// At the earliest offset the topic still holds, as a rebuild does.
    Earliest,
}

/// The running views, by name.
#[derive(Debug)]
pub struct Views {
    storage: Arc<Storage>,
    feeds: Arc<Feeds>,
    sources: Arc<Sources>,
    max_open_groups: usize,
    /// Where views' open state is held (the queries' pool).
    memory: StatePools,
    running: Mutex<BTreeMap<String, Arc<ViewHandle>>>,
}

impl Views {
    pub fn new(
        storage: Arc<Storage>,
        feeds: Arc<Feeds>,
        sources: Arc<Sources>,
        max_open_groups: usize,
        memory: StatePools,
    ) -> Self {
        Views {
            storage,
            feeds,
            sources,
            max_open_groups,
            memory,
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

    /// Starts a committed view: restores its last checkpoint (if any), subscribes to its
    /// input and spawns its pipeline. A view resuming from a checkpoint reads only what came
    /// after it; a new one (or one without a checkpoint yet) backfills everything.
    pub async fn start(&self, def: ViewDef, plan: ViewPlan, replay: Replay) -> Result<()> {
        let manifest = self.storage.manifest();
        let state = manifest.view(&def.name).filter(|v| v.def.id == def.id);
        let checkpoint = state.and_then(|v| v.checkpoint.clone());
        let closed_through = state.and_then(|v| v.closed_through);
        let mut flow = Dataflow::new(plan)?;
        if let Some(checkpoint) = &checkpoint {
            for input in flow.plan.inputs() {
                self.check_current(&def, input, checkpoint.id, &manifest)?;
            }
            if let Some(operator) = flow.operator_mut() {
                let batch = self
                    .state_file(&def.name, checkpoint.state.as_ref())
                    .await?;
                operator.restore(batch.as_ref(), checkpoint.watermark)?;
            }
            if let Some(join) = flow.join_mut() {
                let mut sides = Vec::with_capacity(checkpoint.joins.len());
                for file in &checkpoint.joins {
                    sides.push(self.state_file(&def.name, file.as_ref()).await?);
                }
                join.restore(&JoinState {
                    sides,
                    watermarks: checkpoint.join_watermarks.clone(),
                })?;
            }
        }
        let resumed = checkpoint.is_some();
        let mut readers = Vec::new();
        let mut inputs = Vec::new();
        for (index, input) in flow.plan.inputs().into_iter().enumerate() {
            let (mut subscribed, own) = self
                .subscribe(&def, (index, input), checkpoint.as_ref(), replay, &manifest)
                .await?;
            // The input's committed files are what the checkpointed state already holds; the
            // rows it took in since the restart (not committed yet) are new.
            if resumed && let Input::Feed { files, .. } = &mut subscribed {
                files.clear();
            }
            readers.extend(own.map(|reader| (index, reader)));
            inputs.push(subscribed);
        }
        let stats = Arc::new(ViewStats::new(&def.name, &def.input, def.emit_on_close));
        stats.update(|s| {
            s.closed_through_us = closed_through;
            s.watermark_us = checkpoint.as_ref().and_then(|c| c.input_watermark);
        });
        let shared = Arc::new(tokio::sync::Mutex::new(Shared {
            closed_through,
            ..Shared::default()
        }));
        let feed = self.feeds.get(&def.name);
        let input_kinds: Vec<(RelationKind, String)> = flow
            .plan
            .inputs()
            .iter()
            .map(|i| (i.kind, i.name.clone()))
            .collect();
        // A lookup join's dimension is not waited for: its watermark says nothing of the rows.
        let input_watermarks = (0..input_kinds.len())
            .map(|branch| (!flow.plan.timed(branch)).then_some(i64::MAX))
            .collect();
        let mut pipeline = Pipeline {
            def: def.clone(),
            flow,
            storage: Arc::clone(&self.storage),
            stats: Arc::clone(&stats),
            shared: Arc::clone(&shared),
            feed: Arc::clone(&feed),
            max_open_groups: self.max_open_groups,
            memory: StateMemory::new(&self.memory, format!("view {}", def.name)),
            backfilling: true,
            max_event_times: (0..input_kinds.len())
                .map(|i| match i {
                    0 => checkpoint.as_ref().and_then(|c| c.max_event_time),
                    _ => None,
                })
                .collect(),
            pending_out: Vec::new(),
            pending_late: Vec::new(),
            emitted: None,
            input_watermarks,
        };
        pipeline.baseline()?;
        // A panic in the pipeline is a bug: the view shows it as failed, the server goes on.
        let panicked = Arc::clone(&stats);
        let worker = Worker::spawn(|requests| async move {
            let run = std::panic::AssertUnwindSafe(pipeline.run(inputs, requests));
            if let Err(panic) = futures::FutureExt::catch_unwind(run).await {
                let message = crate::error::panic_message(panic.as_ref());
                tracing::error!(view = %panicked.snapshot().view, message, "materialized view panicked");
                panicked.failed(&format!(
                    "internal error: the view's task panicked: {message}"
                ));
            }
        });
        let handle = Arc::new(ViewHandle {
            def,
            stats,
            inputs: input_kinds,
            readers,
            shared,
            feed,
            worker,
        });
        if let Some(old) = self.running().insert(handle.def.name.clone(), handle) {
            old.abandon();
        }
        Ok(())
    }

    /// Subscribes a view to one of its inputs (and its index among them): what it holds, then
    /// what follows; for a source that keeps no events, the view's own reader of its topic
    /// (returned too).
    async fn subscribe(
        &self,
        def: &ViewDef,
        (index, input): (usize, &InputRelation),
        checkpoint: Option<&ViewCheckpoint>,
        replay: Replay,
        manifest: &Manifest,
    ) -> Result<(Input, Option<Arc<SourceHandle>>)> {
        let name = &input.name;
        let subscribed = match input.kind {
            RelationKind::Source => {
                let source = manifest
                    .source(name)
                    .map(|s| s.def.clone())
                    .ok_or_else(|| Error::UndefinedRelation {
                        kind: "source",
                        name: name.clone(),
                    })?;
                let retains = SourceSettings::from_def(&source).is_ok_and(|s| s.retain);
                if retains {
                    // What the source kept, then what it takes in next.
                    let handle = self.sources.get(name).ok_or_else(|| {
                        Error::Internal(format!("source \"{name}\" is not running"))
                    })?;
                    let sub = handle.subscribe(&self.storage).await;
                    Input::Feed {
                        files: sub.files,
                        batches: sub.batches,
                        changes: None,
                        watermark: sub.watermark,
                        receiver: sub.receiver,
                    }
                } else {
                    // The topic, read by the view itself from the source's startup position
                    // or from where the view's checkpoint left it.
                    let feed = Arc::new(Feed::default());
                    let receiver = feed.subscribe();
                    let resume = checkpoint
                        .and_then(|c| c.readers.get(&index).cloned())
                        .unwrap_or_default();
                    let mut source = source;
                    if replay == Replay::Earliest {
                        source
                            .options
                            .insert("scan.startup.mode".into(), "earliest".into());
                    }
                    // It reads the topic until it has caught up with the source's reader.
                    let tap = self.sources.get(name).and_then(|s| s.tap_point());
                    let reader = self.sources.start_reader(
                        source,
                        feed,
                        Reader::Private {
                            view: def.name.clone(),
                            input: index,
                        },
                        resume,
                        tap,
                    );
                    let input = Input::Feed {
                        files: Vec::new(),
                        batches: Vec::new(),
                        changes: None,
                        watermark: None,
                        receiver,
                    };
                    return Ok((input, Some(reader)));
                }
            }
            RelationKind::View => {
                let upstream = self
                    .get(name)
                    .ok_or_else(|| Error::Internal(format!("view \"{name}\" is not running")))?;
                upstream
                    .subscribe(&self.storage, checkpoint.is_some())
                    .await?
            }
            RelationKind::Table => Input::Table {
                name: name.clone(),
                commits: self.storage.watch(),
                read: checkpoint
                    .and_then(|c| c.tables_read.get(&index).copied())
                    .unwrap_or(0),
            },
            RelationKind::Union | RelationKind::Join => {
                return Err(Error::Internal(
                    "a union or join is not an input of its own".into(),
                ));
            }
        };
        Ok((subscribed, None))
    }

    /// A state file of view `view`'s checkpoint, read back (`None` when there is none).
    async fn state_file(&self, view: &str, file: Option<&DataFile>) -> Result<Option<RecordBatch>> {
        match file {
            Some(file) => self
                .storage
                .read_state_file(
                    file,
                    &format!("materialized view \"{view}\""),
                    Some(rebuild_hint(view)),
                )
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// A view over a retained source or another view resumes by position in that input's
    /// stream, which only the newest checkpoint records: a view that missed checkpoints (it
    /// had failed) cannot resume.
    fn check_current(
        &self,
        def: &ViewDef,
        input: &InputRelation,
        id: u64,
        manifest: &Manifest,
    ) -> Result<()> {
        let newest = manifest.checkpoint_id();
        let positional = match input.kind {
            RelationKind::View => true,
            RelationKind::Source => manifest
                .source(&input.name)
                .and_then(|s| SourceSettings::from_def(&s.def).ok())
                .is_some_and(|s| s.retain),
            RelationKind::Table | RelationKind::Union | RelationKind::Join => false,
        };
        if positional && id != newest {
            return Err(Error::CorruptState {
                path: format!("manifests (view state of checkpoint {id})"),
                owner: format!("materialized view \"{}\"", def.name),
                reason: format!(
                    "the view's state is from checkpoint {id} but its input \"{}\" moved on to checkpoint {newest} without it",
                    input.name
                ),
                hint: Some(rebuild_hint(&def.name)),
            });
        }
        Ok(())
    }

    /// Registers a view that cannot run (its query no longer plans), so it shows as failed.
    pub fn failed(&self, def: ViewDef, error: &Error) {
        let stats = Arc::new(ViewStats::new(&def.name, &def.input, def.emit_on_close));
        stats.failed(&error.to_string());
        let handle = Arc::new(ViewHandle {
            feed: self.feeds.get(&def.name),
            inputs: def
                .inputs()
                .iter()
                .map(|i| (RelationKind::Table, i.to_string()))
                .collect(),
            readers: Vec::new(),
            def,
            stats,
            shared: Arc::default(),
            worker: Worker::idle(),
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

    /// Stops every view (the last checkpoint was taken before), upstream views first.
    pub async fn shutdown(&self) {
        for handle in self.in_dependency_order() {
            handle.stop().await;
        }
        self.running().clear();
    }

    /// The running views, each after the view it reads.
    pub fn in_dependency_order(&self) -> Vec<Arc<ViewHandle>> {
        dependency_order(self.all(), |v| &v.def)
    }
}

/// A view in checkpoint rounds: fed the barrier by its inputs (or its own topic reader), and
/// sent it once they will bring theirs when it also reads tables.
#[async_trait::async_trait]
impl Participant for ViewHandle {
    fn id(&self) -> ParticipantId {
        ParticipantId::View(self.def.name.clone())
    }

    fn alive(&self) -> bool {
        ViewHandle::alive(self)
    }

    async fn inject(
        &self,
        barrier: &Arc<Barrier>,
        reporting: &std::collections::BTreeSet<ParticipantId>,
    ) -> bool {
        if !self.alive() {
            return false;
        }
        let own_reader = |index: usize| self.readers.iter().any(|(i, _)| *i == index);
        let fed = self
            .inputs
            .iter()
            .enumerate()
            .all(|(index, (kind, input))| match kind {
                RelationKind::Source if own_reader(index) => {
                    reporting.contains(&ParticipantId::Reader {
                        view: self.def.name.clone(),
                        input: index,
                    })
                }
                RelationKind::Source => reporting.contains(&ParticipantId::Source(input.clone())),
                RelationKind::View => reporting.contains(&ParticipantId::View(input.clone())),
                RelationKind::Table => true,
                RelationKind::Union | RelationKind::Join => false,
            });
        let tables = self
            .inputs
            .iter()
            .any(|(kind, _)| *kind == RelationKind::Table);
        match (fed, tables) {
            (true, true) => self.barrier(barrier).await,
            (fed, false) => fed,
            (false, true) => false,
        }
    }

    fn checkpoints_failing(&self, error: Option<&str>) {
        self.stats.checkpoints_failing(error);
    }
}

/// A view's own reader of a source's topic (the view and the input it is), in checkpoint
/// rounds (before the view).
pub struct TopicReader(pub Arc<ViewHandle>, pub usize);

impl TopicReader {
    fn reader(&self) -> Option<&Arc<SourceHandle>> {
        let TopicReader(view, input) = self;
        view.readers
            .iter()
            .find(|(i, _)| i == input)
            .map(|(_, reader)| reader)
    }
}

#[async_trait::async_trait]
impl Participant for TopicReader {
    fn id(&self) -> ParticipantId {
        ParticipantId::Reader {
            view: self.0.def.name.clone(),
            input: self.1,
        }
    }

    fn alive(&self) -> bool {
        self.reader().is_some_and(|r| r.alive())
    }

    async fn inject(
        &self,
        barrier: &Arc<Barrier>,
        _reporting: &std::collections::BTreeSet<ParticipantId>,
    ) -> bool {
        match self.reader() {
            Some(reader) => self.0.alive() && reader.barrier(barrier).await,
            None => false,
        }
    }

    /// The view shows its readers' state.
    fn checkpoints_failing(&self, _error: Option<&str>) {}
}

fn rebuild_hint(view: &str) -> String {
    format!(
        "ALTER MATERIALIZED VIEW {view} REBUILD computes it again from its input; the other \
         views keep running."
    )
}

/// Views ordered so that a view comes after every view it reads.
pub fn dependency_order<T>(items: Vec<T>, def: impl Fn(&T) -> &ViewDef) -> Vec<T> {
    let names: std::collections::HashSet<String> =
        items.iter().map(|v| def(v).name.clone()).collect();
    let mut placed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut ordered = Vec::with_capacity(items.len());
    let mut remaining = items;
    while !remaining.is_empty() {
        let (ready, waiting): (Vec<T>, Vec<T>) = remaining.into_iter().partition(|v| {
            def(v)
                .inputs()
                .iter()
                .all(|input| !names.contains(*input) || placed.contains(*input))
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
