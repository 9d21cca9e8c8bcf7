//! The life of one running source: takes the connector's chunks in, drops duplicate keys,
//! tracks the watermark, counts, and hands rows to the views reading it.
//!
//! Rows taken in are *pending* until a checkpoint ([`crate::checkpoint`]) names them. At a
//! checkpoint's barrier the runner writes its pending retained rows, rejected records and
//! deduplication keys, reports them with the offsets they reach, and passes the barrier to its
//! views after the rows before it; the checkpoint commits all of it with the views' state, so
//! after a crash the source resumes exactly after the last checkpoint: nothing lost, nothing
//! twice. Readers see committed files plus pending rows under the lock the commit holds.
//!
//! Back-pressure: the channel from the connector is bounded. When the pending rows pass
//! `PENDING_ROWS_MAX` the runner asks for a checkpoint and takes nothing in until one commits,
//! so the connector blocks rather than anything being dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio::sync::{Notify, mpsc};

use super::Surroundings;
use super::changelog;
use super::dedup::{DedupSettings, Deduplicator};
use super::kafka::{KafkaReader, LocalOutput, ResetRequest, ResetTo};
use super::kafka_process::{ReaderProcess, Supervisor};
use super::options::{BadData, Connector, SourceSettings};
use super::stats::SourceStats;
use super::tap::{self, Catching, CatchingUp, Joined, TapPoint};
use super::watermark::WatermarkTracker;
use super::workers::DecodeWorkers;
use super::{Chunk, Event, Rejected};
use crate::catalog::source::SourceDef;
use crate::checkpoint::{
    self, Change, Drain, Held, Participant, ParticipantId, Report, Request, Worker,
};
use crate::error::{Error, Result};
use crate::storage::{DataFile, ReaderPosition, Storage};
use crate::stream::Message;
use crate::stream::barrier::Barrier;
use crate::stream::changes::Changes;
use crate::stream::feed::Feed;
use crate::stream::state_memory::StateMemory;
use crate::table::KeyedTable;

const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);
/// Pending rows (retained events plus rejected records) that force a checkpoint.
const PENDING_ROWS_MAX: usize = 1_000_000;
/// Chunks in flight between connector and runner.
const EVENTS_IN_FLIGHT: usize = 8;
/// How often a source stalled on the memory pool looks whether it may go on.
const STALL_RECHECK: Duration = Duration::from_millis(100);
/// How often a view's reader catching up with its source's looks whether it can join it.
const JOIN_INTERVAL: Duration = Duration::from_millis(100);

/// A rejected record as `sluice_catalog.rejected_rows` shows it.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    pub source: String,
    pub record: Rejected,
    pub received_at_us: i64,
}

/// Rows taken in and not yet committed.
#[derive(Default)]
pub struct Pending {
    batches: Vec<RecordBatch>,
    rows: usize,
    rejected: Vec<RejectedRow>,
    /// Next offset per partition, over everything taken in.
    offsets: BTreeMap<i32, i64>,
    /// Views' readers that take this source's chunks instead of reading the topic.
    joined: Joined,
    /// The partitions assigned to the source's reader.
    assigned: BTreeSet<i32>,
}

impl Pending {
    pub fn rejected(&self) -> &[RejectedRow] {
        &self.rejected
    }

    fn is_full(&self) -> bool {
        self.rows + self.rejected.len() >= PENDING_ROWS_MAX
    }

    /// Joins a view's reader that has taken in up to `mine` to this source, if it has caught up:
    /// what the source takes in from now on, and the partitions assigned to it so far.
    pub(super) fn join(
        &mut self,
        mine: &BTreeMap<i32, i64>,
    ) -> Option<(mpsc::Receiver<Event>, BTreeSet<i32>)> {
        let joined = self.joined.join(&self.offsets, mine)?;
        Some((joined, self.assigned.clone()))
    }
}

/// The pending rows a checkpoint wrote: the first `batches` batches and `rejected` records.
#[derive(Debug, Default)]
pub struct Taken {
    batches: usize,
    rows: usize,
    rejected: usize,
}

/// A source's own runner in checkpoint rounds (a view's reader takes part as the view's).
#[async_trait::async_trait]
impl Participant for SourceHandle {
    fn id(&self) -> ParticipantId {
        ParticipantId::Source(self.name().to_string())
    }

    fn alive(&self) -> bool {
        SourceHandle::alive(self)
    }

    async fn inject(
        &self,
        barrier: &Arc<Barrier>,
        _reporting: &std::collections::BTreeSet<ParticipantId>,
    ) -> bool {
        self.barrier(barrier).await
    }

    fn checkpoints_failing(&self, error: Option<&str>) {
        self.stats.checkpoints_failing(error);
    }
}

impl Drain for Pending {
    type Taken = Taken;

    fn drain(&mut self, taken: &Taken) {
        self.batches.drain(..taken.batches);
        self.rows -= taken.rows;
        self.rejected.drain(..taken.rejected);
    }
}

/// A running source, as the rest of the database sees it.
#[derive(Debug)]
pub struct SourceHandle {
    def: SourceDef,
    pub stats: Arc<SourceStats>,
    feed: Arc<Feed>,
    pending: Arc<tokio::sync::Mutex<Pending>>,
    stop: Arc<AtomicBool>,
    /// `ALTER SOURCE … RESET OFFSETS` for the connector's reader.
    reset: ResetRequest,
    worker: Worker,
    /// A keyed source's rows (a table fed by a connector), current as of the pending rows.
    table: Option<Arc<KeyedTable>>,
    /// Views' readers catching up with this one.
    catching: Arc<Mutex<Catching>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pending({} rows, {} rejected)",
            self.rows,
            self.rejected.len()
        )
    }
}

/// Whose reader a running source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// The source's own: its offsets, retained rows and rejected records are the source's.
    Shared,
    /// A materialized view's own reader of a source that keeps no events: starts where the
    /// source's startup mode says (so the view backfills the topic's history) or where the
    /// view's last checkpoint left it; its offsets are part of the view's checkpoint (as its
    /// `input`'s, its index among the view's inputs), and it keeps no rejected records (the
    /// shared reader does). Once caught up with the shared reader it takes that one's rows
    /// instead of reading the topic again ([`super::tap`]).
    Private { view: String, input: usize },
}

impl SourceHandle {
    /// Starts the connector and the runner of a committed source in its `surroundings`.
    pub fn start(
        def: SourceDef,
        storage: Arc<Storage>,
        feed: Arc<Feed>,
        reader: Reader,
        resume: ReaderPosition,
        tap: Option<TapPoint>,
        surroundings: &Surroundings,
    ) -> Arc<Self> {
        let committed = resume.offsets;
        let settings = SourceSettings::from_def(&def);
        let connector = match &settings {
            Ok(s) => match s.connector {
                Connector::Kafka(_) => "kafka",
                Connector::Datagen(_) => "datagen",
            },
            Err(_) => def
                .options
                .get("connector")
                .map_or("unknown", String::as_str),
        };
        let stats = Arc::new(SourceStats::new(&def.name, connector));
        let catching = Arc::new(Mutex::new(Catching::default()));
        let (events, events_rx) = mpsc::channel(EVENTS_IN_FLIGHT);
        let stop = Arc::new(AtomicBool::new(false));
        let reset = ResetRequest::default();
        let pending = Arc::new(tokio::sync::Mutex::new(Pending {
            offsets: committed.clone(),
            ..Pending::default()
        }));
        // Until the runner has replayed a keyed source's files, nobody reads its rows.
        let replaying = match def.keyed() {
            true => Arc::clone(&pending).try_lock_owned().ok(),
            false => None,
        };
        let table = match def.keyed() {
            true => match KeyedTable::for_source(&def, &surroundings.memory) {
                Ok(table) => Some(Arc::new(table)),
                Err(e) => {
                    stats.failed(&e.to_string());
                    None
                }
            },
            false => None,
        };
        let settings = match settings {
            Ok(settings) => Some(settings),
            Err(e) => {
                tracing::error!(source = %def.name, error = %e, "source cannot start");
                stats.failed(&e.to_string());
                None
            }
        };
        if let Some(settings) = &settings {
            let control = Control {
                stop: Arc::clone(&stop),
                reset: Arc::clone(&reset),
            };
            let kafka_reader = surroundings.kafka_reader.as_ref();
            spawn_connector(
                &def,
                settings,
                &committed,
                events,
                &stats,
                control,
                kafka_reader,
            );
        }
        let runner = Runner {
            tracker: WatermarkTracker::new(
                def.watermark.as_ref().map_or(0, |w| w.delay_ms),
                settings.as_ref().map_or(Duration::MAX, |s| s.idle_timeout),
                settings
                    .as_ref()
                    .map_or(Duration::MAX, |s| s.max_future_skew),
            ),
            event_time: def
                .watermark
                .as_ref()
                .and_then(|w| def.columns.iter().position(|c| c.name == w.column)),
            retain: reader == Reader::Shared && settings.as_ref().is_some_and(|s| s.retain),
            dedup: settings
                .as_ref()
                .and_then(|s| s.dedup.clone())
                .map(|d| (d, resume.dedup)),
            deduplicator: None,
            memory: StateMemory::new(
                &surroundings.memory,
                format!("source {} (deduplication keys)", def.name),
            ),
            requested: Arc::clone(&surroundings.checkpoint_requested),
            full: false,
            reader,
            fail_on_bad_data: settings
                .as_ref()
                .is_some_and(|s| s.bad_data == BadData::Fail),
            def: def.clone(),
            storage,
            stats: Arc::clone(&stats),
            pending: Arc::clone(&pending),
            feed: Arc::clone(&feed),
            published_watermark: None,
            table: table.clone(),
            table_full: false,
            catching: Arc::clone(&catching),
            followed: false,
            catching_up: tap.map(TapPoint::catch_up),
            joined: None,
            connector_stop: Arc::clone(&stop),
        };
        let worker = Worker::spawn(|requests| runner.run(events_rx, requests, replaying));
        Arc::new(SourceHandle {
            def,
            stats,
            feed,
            pending,
            stop,
            reset,
            worker,
            table,
            catching,
        })
    }

    /// Asks the reader to read its stopped partitions again from `to`; the partitions'
    /// `stopped` clears once it has.
    pub fn reset_offsets(&self, to: ResetTo) {
        *self.reset.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Whether the runner still runs (it ends when stopped, dropped, or its source vanished).
    pub fn alive(&self) -> bool {
        self.worker.alive()
    }

    /// Hands a checkpoint's barrier to the runner; false if the runner no longer runs.
    pub async fn barrier(&self, barrier: &Arc<Barrier>) -> bool {
        self.worker.barrier(barrier).await
    }

    /// Stops taking input (the last checkpoint was taken before).
    pub async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.stop().await;
    }

    /// Stops at once, committing nothing more (the source was dropped).
    pub fn abandon(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.abort();
    }

    /// The committed files of the retained events and the pending rows, as of one instant; a
    /// keyed source's current rows instead.
    pub async fn retained(&self, storage: &Storage) -> Result<(Vec<DataFile>, Vec<RecordBatch>)> {
        let pending = self.pending.lock().await;
        match &self.table {
            Some(table) => Ok((Vec::new(), vec![table.snapshot()?])),
            None => Ok((self.committed_files(storage), pending.batches.clone())),
        }
    }

    fn committed_files(&self, storage: &Storage) -> Vec<DataFile> {
        storage
            .manifest()
            .source(&self.def.name)
            .map(|s| s.files.clone())
            .unwrap_or_default()
    }

    /// A subscription for a view: the events retained so far (committed files and pending
    /// rows), the watermark, and a receiver of everything taken in after them, all as of one
    /// instant (under the lock the runner takes rows in with), so no row is missed or doubled.
    /// A keyed source's committed files and pending rows are changelogs.
    pub async fn subscribe(&self, storage: &Storage) -> Subscription {
        let pending = self.pending.lock().await;
        Subscription {
            files: self.committed_files(storage),
            batches: pending.batches.clone(),
            watermark: self.stats.snapshot().watermark_us,
            receiver: self.feed.subscribe(),
        }
    }

    /// Where a view's own reader of this source joins it once caught up: for a source of JSON
    /// events (whose chunks carry their rows' offsets) that keeps none.
    pub fn tap_point(&self) -> Option<TapPoint> {
        let settings = SourceSettings::from_def(&self.def).ok()?;
        let tappable = !settings.retain
            && settings.format == super::options::Format::Json
            && matches!(settings.connector, Connector::Kafka(_));
        tappable.then(|| TapPoint {
            pending: Arc::clone(&self.pending),
            catching: Arc::clone(&self.catching),
        })
    }

    /// The pending rows, locked: nothing of this source commits while the guard lives, so a
    /// reader can pair them with the manifest it reads meanwhile.
    pub async fn lock_pending(&self) -> tokio::sync::OwnedMutexGuard<Pending> {
        Arc::clone(&self.pending).lock_owned().await
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the rest of the database tells a running connector.
struct Control {
    stop: Arc<AtomicBool>,
    reset: ResetRequest,
}

fn spawn_connector(
    def: &SourceDef,
    settings: &SourceSettings,
    committed: &BTreeMap<i32, i64>,
    events: mpsc::Sender<Event>,
    stats: &Arc<SourceStats>,
    control: Control,
    kafka_reader: Option<&ReaderProcess>,
) {
    match &settings.connector {
        Connector::Kafka(kafka) => {
            let workers = match DecodeWorkers::start(def, &events) {
                Ok(workers) => workers,
                Err(e) => {
                    stats.failed(&format!("cannot start the decode threads: {e}"));
                    return;
                }
            };
            let local = LocalOutput {
                workers,
                events,
                stats: Arc::clone(stats),
            };
            let run: Box<dyn FnOnce() + Send> = match kafka_reader {
                Some(process) => {
                    let supervisor = Supervisor {
                        process: process.clone(),
                        source: def.name.clone(),
                        settings: kafka.clone(),
                        committed: committed.clone(),
                        local,
                        stop: control.stop,
                        reset: control.reset,
                    };
                    Box::new(move || supervisor.run())
                }
                None => {
                    let reader = KafkaReader {
                        source: def.name.clone(),
                        settings: kafka.clone(),
                        committed: committed.clone(),
                        out: Arc::new(local),
                        stop: control.stop,
                        reset: control.reset,
                    };
                    Box::new(move || reader.run())
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("kafka-{}", def.name))
                .spawn(run);
            if let Err(e) = spawned {
                stats.failed(&format!("cannot start the consumer thread: {e}"));
            }
        }
        Connector::Datagen(datagen) => {
            let start = committed.get(&0).copied().unwrap_or(0).max(0) as u64;
            tokio::spawn(super::datagen::run(
                datagen.clone(),
                start,
                events,
                control.stop,
            ));
        }
    }
}

/// What a view reading a source starts from, and what follows.
pub struct Subscription {
    pub files: Vec<DataFile>,
    pub batches: Vec<RecordBatch>,
    pub watermark: Option<i64>,
    pub receiver: mpsc::Receiver<Message>,
}

struct Runner {
    def: SourceDef,
    storage: Arc<Storage>,
    stats: Arc<SourceStats>,
    pending: Arc<tokio::sync::Mutex<Pending>>,
    /// Views reading this source.
    feed: Arc<Feed>,
    reader: Reader,
    published_watermark: Option<i64>,
    tracker: WatermarkTracker,
    event_time: Option<usize>,
    retain: bool,
    fail_on_bad_data: bool,
    /// `dedup.key`/`dedup.ttl` and the keys of the last checkpoint, loaded when the runner starts.
    dedup: Option<(DedupSettings, Option<DataFile>)>,
    deduplicator: Option<Deduplicator>,
    /// The deduplication keys' share of the memory pool; nothing is taken in while it is full.
    memory: StateMemory,
    /// Signalled when the pending rows are full.
    requested: Arc<Notify>,
    /// The pending rows are full: nothing is taken in until a checkpoint drains them.
    full: bool,
    /// A keyed source's rows, which its records change.
    table: Option<Arc<KeyedTable>>,
    /// The table's rows fill its share of the memory pool: nothing is taken in.
    table_full: bool,
    /// Views' readers catching up with this source's (which waits for them, see [`tap`]).
    catching: Arc<Mutex<Catching>>,
    /// Views' readers took this source's last chunk.
    followed: bool,
    /// A view's reader catching up with its source's, until it joins.
    catching_up: Option<CatchingUp>,
    /// A view's reader that joined: what the source takes in.
    joined: Option<mpsc::Receiver<Event>>,
    /// Stops the connector (a joined reader needs its own no more).
    connector_stop: Arc<AtomicBool>,
}

impl Runner {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut requests: mpsc::Receiver<Request>,
        replaying: Option<tokio::sync::OwnedMutexGuard<Pending>>,
    ) {
        let loaded = async {
            self.load_dedup().await?;
            self.replay_table().await
        };
        let loaded = loaded.await;
        drop(replaying);
        if let Err(e) = loaded {
            tracing::error!(source = %self.def.name, error = %e, "source cannot start");
            self.stats.failed(&e.to_string());
            return;
        }
        let mut watermark_tick = tokio::time::interval(WATERMARK_INTERVAL);
        let mut recheck = tokio::time::interval(STALL_RECHECK);
        let mut join_tick = tokio::time::interval(JOIN_INTERVAL);
        let mut connected = true;
        loop {
            let stalled = self.stalled().await;
            let held = self.held_back();
            tokio::select! {
                event = events.recv(), if connected && !self.full && !stalled && !held => {
                    connected = match event {
                        Some(event) => self.handle(event).await,
                        None => false,
                    };
                    if !connected {
                        // Unblocks and ends a connector still sending (e.g. after a failure).
                        events.close();
                    }
                }
                request = requests.recv() => match request {
                    Some(Request::Barrier(barrier)) => {
                        // What the connector already delivered is taken in before the barrier.
                        while connected && let Ok(event) = events.try_recv() {
                            connected = self.handle(event).await;
                        }
                        if !connected {
                            events.close();
                        }
                        self.checkpoint(&barrier).await;
                    }
                    Some(Request::Stop(ack)) => {
                        let _ = ack.send(());
                        return;
                    }
                    None => return,
                },
                _ = watermark_tick.tick() => {
                    self.update_watermark().await;
                    self.full = self.pending.lock().await.is_full();
                }
                event = next_joined(&mut self.joined), if !self.full && !stalled => match event {
                    Some(event) => self.take_joined(event).await,
                    None => self.source_reader_gone(),
                },
                _ = join_tick.tick(), if self.catching_up.is_some() => self.try_join().await,
                // Nothing else wakes a source stalled on the memory pool when queries free it,
                // or one waiting for views' readers when they join.
                _ = recheck.tick(), if stalled || held => {}
            }
        }
    }

    /// Whether this source's reader waits for views' readers catching up with it: while none
    /// joined yet and no view follows it otherwise.
    fn held_back(&self) -> bool {
        self.reader == Reader::Shared
            && !self.followed
            && tap::holds_back(&self.catching, Instant::now())
            && self.feed.recipients().is_empty()
    }

    /// Joins this view's reader to its source's if it has caught up, and stops its own.
    async fn try_join(&mut self) {
        let Some(catching_up) = &self.catching_up else {
            return;
        };
        let mine = self.pending.lock().await.offsets.clone();
        if let Some((chunks, assigned)) = catching_up.join(&mine).await {
            // The source's partitions hold the watermark here too, as they do there.
            for partition in assigned {
                self.tracker.assign(partition, Instant::now());
            }
            tracing::info!(source = %self.def.name, reader = ?self.reader,
                "a view's reader caught up with the source's: it takes the source's rows now");
            self.joined = Some(chunks);
            self.catching_up = None;
            self.connector_stop.store(true, Ordering::Relaxed);
        }
    }

    /// A joined view's reader whose source's reader ended takes nothing more.
    fn source_reader_gone(&mut self) {
        self.joined = None;
        // The source says why (it failed, or the server is stopping).
        let message = "the source's reader stopped, and this view's reader with it";
        tracing::info!(source = %self.def.name, reader = ?self.reader, "{message}");
        self.stats.failed(message);
    }

    /// Whether the deduplication keys (or a keyed source's rows) have no room in the memory
    /// pool; moves the status in and out of `stalled`.
    async fn stalled(&mut self) -> bool {
        if self.table_full
            && let Some(table) = &self.table
        {
            self.table_full = table.account().await;
        }
        let stalled = self.memory.exhausted() || self.table_full;
        if stalled != (self.stats.status() == super::stats::Status::Stalled) {
            let reason = match (stalled, &self.table) {
                (false, _) => None,
                (true, Some(table)) if self.table_full => Some(table.stall_message().await),
                (true, _) => Some(self.memory.stall_message(
                    "the deduplication keys",
                    "source",
                    "Raise --memory-limit or shorten dedup.ttl.",
                )),
            };
            if self.stats.stalled(reason.as_deref())
                && let Some(reason) = &reason
            {
                tracing::warn!(source = %self.def.name, "{reason}");
            }
        }
        stalled
    }

    /// Builds the deduplicator from the last checkpoint's keys.
    async fn load_dedup(&mut self) -> Result<()> {
        let Some((settings, file)) = self.dedup.take() else {
            return Ok(());
        };
        let column = self
            .def
            .columns
            .iter()
            .position(|c| c.name == settings.key)
            .ok_or_else(|| Error::UndefinedColumn {
                name: settings.key.clone(),
            })?;
        let mut deduplicator = Deduplicator::new(column, self.event_time, settings.ttl);
        if let Some(file) = file {
            let owner = format!("source \"{}\" (deduplication keys)", self.def.name);
            let hint = Some(format!(
                "Drop and re-create the source, or restore the file; the source reads nothing until then ({}).",
                file.path
            ));
            let batch = self.storage.read_state_file(&file, &owner, hint).await?;
            deduplicator.restore(&batch)?;
        }
        self.memory.hold(deduplicator.size());
        self.stats.set_state_bytes(deduplicator.size());
        self.deduplicator = Some(deduplicator);
        Ok(())
    }

    /// Rebuilds a keyed source's rows from its committed changelog files.
    async fn replay_table(&mut self) -> Result<()> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        let files = self
            .storage
            .manifest()
            .source(&self.def.name)
            .filter(|s| s.def.id == self.def.id)
            .map(|s| s.files.clone())
            .unwrap_or_default();
        table.replay(&self.storage, &files).await?;
        self.table_full = table.account().await;
        Ok(())
    }

    /// The runner's part of a checkpoint: writes the pending rows, rejected records and
    /// deduplication keys, reports them with the offsets they reach, then passes the barrier to
    /// the views reading this source.
    async fn checkpoint(&mut self, barrier: &Arc<Barrier>) {
        let participant = match &self.reader {
            Reader::Shared => ParticipantId::Source(self.def.name.clone()),
            Reader::Private { view, input } => ParticipantId::Reader {
                view: view.clone(),
                input: *input,
            },
        };
        let (batches, rejected, offsets) = {
            let pending = self.pending.lock().await;
            (
                pending.batches.clone(),
                pending.rejected.clone(),
                pending.offsets.clone(),
            )
        };
        let taken = Taken {
            batches: batches.len(),
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            rejected: rejected.len(),
        };
        let written = async {
            let data_file = self.storage.write_source_file(&self.def, batches).await?;
            let rejected_file = match rejected.is_empty() {
                true => None,
                false => {
                    self.storage
                        .write_rejected_file(rejected_batch(&rejected)?)
                        .await?
                }
            };
            let dedup = match &self.deduplicator {
                Some(d) => {
                    let owner = match &self.reader {
                        Reader::Shared => format!("source-{}-dedup", self.def.name),
                        Reader::Private { view, input } => format!("view-{view}-{input}-dedup"),
                    };
                    Some(
                        self.storage
                            .write_state_file(barrier.id, &owner, &d.to_batch()?)
                            .await?,
                    )
                }
                None => None,
            };
            Ok(Report {
                change: Change::Source {
                    source_id: self.def.id,
                    offsets,
                    data_file,
                    rejected_file,
                    dedup,
                },
                release: Held::release(&self.pending, taken),
            })
        }
        .await;
        let ok = written.is_ok();
        // Reported before the views see the barrier, so a view's report never precedes it.
        checkpoint::report(barrier, participant, written);
        if ok {
            self.feed
                .publish(Message::Barrier(Arc::clone(barrier)))
                .await;
        }
    }

    /// Takes one event in. Returns false once the connector is done.
    async fn handle(&mut self, event: Event) -> bool {
        if self.joined.is_some() {
            // A joined reader's own connector is stopping; what it still sends is not needed.
            return true;
        }
        match event {
            Event::Assigned { partition, start } => {
                self.assigned(partition, start).await;
                true
            }
            Event::Repositioned { partition, next } => {
                self.pending.lock().await.offsets.insert(partition, next);
                self.stats.partition(partition, |p| {
                    p.next_offset = Some(next);
                    p.stopped = None;
                });
                true
            }
            Event::Chunk(chunk) => {
                if self.fail_on_bad_data
                    && let Some(bad) = chunk.rejected.first()
                {
                    let message = format!(
                        "source stopped by bad_data = 'fail': record at partition {}, offset {}: {}",
                        bad.partition, bad.offset, bad.error
                    );
                    tracing::error!(source = %self.def.name, error = %message, "source failed");
                    self.stats.failed(&message);
                    return false;
                }
                self.take(chunk).await
            }
            Event::Finished => {
                tracing::info!(source = %self.def.name, "source read all its rows");
                self.stats.finished();
                false
            }
            Event::Failed(message) => {
                tracing::error!(source = %self.def.name, error = %message, "source failed");
                self.stats.failed(&message);
                false
            }
        }
    }

    /// A partition is read from `start` (when that is a known offset): it holds the watermark
    /// until it shows data or idles. Joined views' readers are told too.
    async fn assigned(&mut self, partition: i32, start: Option<i64>) {
        self.tracker.assign(partition, Instant::now());
        // A resolved start ("latest", a time) is committed like a read offset, so a restart
        // does not resolve it again and skip what arrived meanwhile.
        let (next, taps) = {
            let mut pending = self.pending.lock().await;
            pending.assigned.insert(partition);
            let next = match (pending.offsets.get(&partition), start) {
                (Some(&next), _) => Some(next),
                (None, Some(start)) => {
                    pending.offsets.insert(partition, start);
                    Some(start)
                }
                (None, None) => None,
            };
            (next, pending.joined.recipients())
        };
        self.stats
            .partition(partition, |p| p.next_offset = p.next_offset.or(next));
        for tap in taps {
            let _ = tap.send(Event::Assigned { partition, start }).await;
        }
    }

    /// Takes in what the source a view's reader joined took in.
    async fn take_joined(&mut self, event: Event) {
        match event {
            Event::Chunk(chunk) => {
                let next = self
                    .pending
                    .lock()
                    .await
                    .offsets
                    .get(&chunk.partition)
                    .copied();
                if let Some(chunk) = tap::unread(chunk, next) {
                    self.take(chunk).await;
                }
            }
            Event::Assigned { partition, start } => self.assigned(partition, start).await,
            _ => {}
        }
    }

    /// Takes a chunk in; false if the source cannot go on.
    async fn take(&mut self, mut chunk: Chunk) -> bool {
        self.stats.running();
        // Joined views' readers take the chunk as decoded: they deduplicate it themselves.
        let tapped = match self.reader {
            Reader::Shared => Some(Chunk {
                rejected: Vec::new(),
                row_offsets: chunk.row_offsets.clone(),
                batch: chunk.batch.clone(),
                ..chunk
            }),
            Reader::Private { .. } => None,
        };
        let duplicates = match &mut self.deduplicator {
            Some(d) => match d.filter(&chunk.batch) {
                Ok((kept, dropped)) => {
                    chunk.batch = kept;
                    self.memory.hold(d.size());
                    self.stats.set_state_bytes(d.size());
                    dropped
                }
                // Rows whose keys were not checked could be duplicates: none is taken in, and
                // the source stops where its last checkpoint left it (nothing past it commits).
                Err(e) => {
                    let message = format!("deduplication failed: {e}");
                    tracing::error!(source = %self.def.name, error = %message, "source failed");
                    self.stats.failed(&message);
                    return false;
                }
            },
            None => 0,
        };
        let rows = chunk.batch.num_rows();
        let mut changes = None;
        if let Some(table) = &self.table {
            match self.apply_writes(table, &mut chunk) {
                Ok(applied) => changes = Some(applied),
                Err(e) => {
                    let message = format!(
                        "cannot apply the changes of partition {}: {e}",
                        chunk.partition
                    );
                    tracing::error!(source = %self.def.name, error = %message, "source failed");
                    self.stats.failed(&message);
                    return false;
                }
            }
            self.table_full = table.account().await;
        }
        let now = Instant::now();
        let event_times = self.event_time.and_then(|c| {
            chunk
                .batch
                .column(c)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| a.iter().flatten().collect::<Vec<i64>>())
        });
        let observed = self.tracker.observe(
            chunk.partition,
            event_times.unwrap_or_default(),
            now,
            chrono::Utc::now().timestamp_micros(),
        );
        let (watermark, idle) = self.tracker.partition(chunk.partition, now);
        self.stats.partition(chunk.partition, |p| {
            p.rows_in += rows as u64;
            p.bytes_in += chunk.bytes;
            p.rejected += chunk.rejected.len() as u64;
            p.duplicates += duplicates as u64;
            p.late += observed.late;
            p.next_offset = Some(chunk.next_offset);
            p.watermark_us = watermark;
            p.idle = idle;
        });
        self.stats.set_watermark(self.tracker.advance(now));
        let received_at_us = chrono::Utc::now().timestamp_micros();
        let published = match changes {
            Some(changes) => (changes.num_rows() > 0).then_some(Message::Changes(changes)),
            None => (rows > 0).then(|| Message::Batch(chunk.batch.clone())),
        };
        let (full, recipients) = {
            let mut pending = self.pending.lock().await;
            if self.retain && chunk.batch.num_rows() > 0 {
                pending.rows += chunk.batch.num_rows();
                pending.batches.push(chunk.batch);
            }
            let rejected = match self.reader {
                Reader::Shared => chunk.rejected,
                Reader::Private { .. } => Vec::new(),
            };
            pending
                .rejected
                .extend(rejected.into_iter().map(|record| RejectedRow {
                    source: self.def.name.clone(),
                    record,
                    received_at_us,
                }));
            pending.offsets.insert(chunk.partition, chunk.next_offset);
            if tapped.as_ref().is_some_and(|c| c.row_offsets.is_none()) {
                // Without its rows' offsets a chunk cannot be taken by a reader that has read
                // part of it: the joined readers are let go (and say so) rather than miscount.
                pending.joined = Joined::default();
            }
            let taps = pending.joined.recipients();
            (pending.is_full(), (self.feed.recipients(), taps))
        };
        let (recipients, taps) = recipients;
        if let Some(message) = published
            && !recipients.is_empty()
        {
            recipients.send(message).await;
        }
        self.followed = !taps.is_empty();
        if let Some(tapped) = tapped {
            for tap in &taps {
                // A closed tap is a view gone; the next chunk forgets it.
                let _ = tap.send(Event::Chunk(tapped.clone())).await;
            }
        }
        self.publish_watermark().await;
        if full {
            self.full = true;
            self.requested.notify_one();
        }
        true
    }

    /// Applies a keyed source's decoded writes to its rows: the chunk's batch becomes the
    /// changelog they made, writes the rows reject join the chunk's rejected records.
    fn apply_writes(&self, table: &KeyedTable, chunk: &mut Chunk) -> Result<Changes> {
        let applied = table.apply_writes(&chunk.batch)?;
        let raw = chunk
            .batch
            .column_by_name(changelog::RAW_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>().cloned());
        let offsets = chunk
            .batch
            .column_by_name(changelog::OFFSET_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
        for (row, error) in applied.rejected {
            chunk.rejected.push(super::Rejected {
                partition: chunk.partition,
                offset: offsets.as_ref().map_or(-1, |o| o.value(row)),
                raw: raw
                    .as_ref()
                    .filter(|r| r.is_valid(row))
                    .map(|r| r.value(row).to_vec())
                    .unwrap_or_default(),
                error,
            });
        }
        chunk.rejected.sort_by_key(|r| r.offset);
        let changes = crate::table::changes_of(&applied.changes, &table.schema())?;
        chunk.batch = applied.changes;
        Ok(changes)
    }

    /// Tells the views reading this source how far event time has come.
    async fn publish_watermark(&mut self) {
        let current = self.tracker.current();
        if current > self.published_watermark
            && let Some(watermark) = current
        {
            self.published_watermark = current;
            self.feed.publish(Message::Watermark(watermark)).await;
        }
    }

    async fn update_watermark(&mut self) {
        let now = Instant::now();
        self.stats.set_watermark(self.tracker.advance(now));
        self.publish_watermark().await;
        for partition in self.stats.snapshot().partitions.keys() {
            let (watermark, idle) = self.tracker.partition(*partition, now);
            self.stats.partition(*partition, |p| {
                p.watermark_us = watermark;
                p.idle = idle;
            });
        }
    }
}

/// The schema of `sluice_catalog.rejected_rows`.
pub fn rejected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, false),
        Field::new("raw_text", DataType::Utf8, false),
        Field::new(
            "received_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

pub fn rejected_batch(rows: &[RejectedRow]) -> Result<RecordBatch> {
    let columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.source),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.record.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.record.offset),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.record.error),
        )),
        Arc::new(BinaryArray::from_iter_values(
            rows.iter().map(|r| &r.record.raw),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| String::from_utf8_lossy(&r.record.raw)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.received_at_us))
                .with_timezone("+00:00"),
        ),
    ];
    Ok(RecordBatch::try_new(rejected_schema(), columns)?)
}

/// The next chunk from the source a view's reader joined; pending while it has not.
async fn next_joined(joined: &mut Option<mpsc::Receiver<Event>>) -> Option<Event> {
    match joined {
        Some(chunks) => chunks.recv().await,
        None => std::future::pending().await,
    }
}
