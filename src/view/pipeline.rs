//! The task that runs one materialized view: input → steps → window operator → steps → output.
//!
//! It first *backfills* (reads what its input already holds: committed files, then rows not
//! yet committed; nothing when it resumes from a checkpoint), then follows the input live.
//! Closed windows become *pending* final rows. At a checkpoint's barrier the view writes its
//! open window state, its pending final rows (one Parquet file) and late rows, and reports them
//! with the watermark they reach (`closed_through`); the checkpoint commits them with its input's
//! offsets ([`crate::checkpoint`]). Readers see committed files plus pending rows plus (in live
//! mode) the snapshot of open windows, all under one lock that the commit also holds: never
//! both, never neither. Views reading this view receive its final rows, its output watermark
//! and the barriers through its feed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::late::{LateRow, late_batch, late_rows};
use super::stats::{Status, ViewStats};
use crate::catalog::view::ViewDef;
use crate::checkpoint::{self, Change, Drain, Held, ParticipantId, Report, Request};
use crate::error::{Error, Result};
use crate::storage::{DataFile, Manifest, Storage, ViewCheckpoint};
use crate::stream::Message;
use crate::stream::barrier::Barrier;
use crate::stream::changes::{Changes, Emitted};
use crate::stream::dataflow::{self, Dataflow};
use crate::stream::feed::Feed;
use crate::stream::operator::ViewOperator;
use crate::stream::state_memory::StateMemory;

/// Live results are refreshed at least this often while rows arrive.
const REFRESH_INTERVAL: Duration = Duration::from_millis(500);
/// Live results are refreshed sooner once the input has been quiet this long, as long as
/// refreshing takes at most a fifth of the view's time.
const QUIET: Duration = Duration::from_millis(20);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How often a stalled view looks whether it may go on.
const STALL_RECHECK: Duration = Duration::from_millis(100);
/// How often a view whose joins have a state TTL forgets idle rows while no input comes.
const FORGET_INTERVAL: Duration = Duration::from_secs(1);

/// Where the view's rows come from.
pub enum Input {
    /// A source or another view: what it held when the view subscribed, then its feed.
    Feed {
        files: Vec<DataFile>,
        batches: Vec<RecordBatch>,
        /// An updating input's changes since the checkpoint the view resumes from.
        changes: Option<Changes>,
        watermark: Option<i64>,
        receiver: mpsc::Receiver<Message>,
    },
    /// A table: its committed files after write `read` (what the view read before a
    /// restart), followed through the manifest.
    Table {
        name: String,
        commits: watch::Receiver<Arc<Manifest>>,
        read: u64,
    },
}

pub struct Pipeline {
    pub def: ViewDef,
    /// The view's plan and operators.
    pub flow: Dataflow,
    pub storage: Arc<Storage>,
    pub stats: Arc<ViewStats>,
    pub shared: Arc<tokio::sync::Mutex<Shared>>,
    pub feed: Arc<Feed>,
    /// What an updating view last handed on (its live rows), to hand on only changes.
    pub emitted: Option<Emitted>,
    /// Open groups past which the view takes no more input (back-pressure, never dropping).
    pub max_open_groups: usize,
    /// The open state's share of the memory pool; the view takes no input while it is full.
    pub memory: StateMemory,
    /// Still reading what the input held (the status a stall returns to).
    pub backfilling: bool,
    /// Per input, the largest event time seen (a view derives a table's watermark from it).
    pub max_event_times: Vec<Option<i64>>,
    /// Final rows of a view without window, not yet handed on.
    pub pending_out: Vec<RecordBatch>,
    pub pending_late: Vec<LateRow>,
    /// Each input's watermark; the view's is the least, once every input has one.
    pub input_watermarks: Vec<Option<i64>>,
}

/// What a live input gives: a message of a feed, or a committed file of a table.
enum Item {
    Message(Message),
    File(DataFile),
}

/// The live part of the input, once the backfill is done.
enum Live {
    Feed(mpsc::Receiver<Message>),
    /// A table's files in write order ([`DataFile::seq`]): those after `queued` are new,
    /// those through `read` are in the view. A file compaction merged from writes the view
    /// had read holds no later write, so it is not read again.
    Table {
        name: String,
        commits: watch::Receiver<Arc<Manifest>>,
        read: u64,
        queued: u64,
        queue: VecDeque<DataFile>,
    },
}

impl Live {
    /// The next message or file; `None` once the input is gone (dropped).
    async fn next(&mut self) -> Option<Item> {
        match self {
            Live::Feed(receiver) => receiver.recv().await.map(Item::Message),
            Live::Table {
                name,
                commits,
                read,
                queued,
                queue,
            } => loop {
                if let Some(file) = queue.pop_front() {
                    *read = file.seq.unwrap_or(*read);
                    return Some(Item::File(file));
                }
                commits.changed().await.ok()?;
                let manifest = commits.borrow_and_update().clone();
                let table = manifest.table(name)?;
                queue.extend(new_files(&table.files, queued));
            },
        }
    }

    /// A message or file already waiting, without blocking (for `FLUSH`).
    fn try_next(&mut self, storage: &Storage) -> Option<Item> {
        match self {
            Live::Feed(receiver) => receiver.try_recv().ok().map(Item::Message),
            Live::Table {
                name,
                read,
                queued,
                queue,
                ..
            } => {
                if queue.is_empty()
                    && let Some(table) = storage.manifest().table(name)
                {
                    queue.extend(new_files(&table.files, queued));
                }
                let file = queue.pop_front()?;
                *read = file.seq.unwrap_or(*read);
                Some(Item::File(file))
            }
        }
    }

    /// The last write read of a table input (for a checkpoint); `None` for other inputs.
    fn table_read(&self) -> Option<u64> {
        match self {
            Live::Feed(_) => None,
            Live::Table { read, .. } => Some(*read),
        }
    }
}

/// The files of `files` holding writes after `queued`, which moves to the last of them.
fn new_files(files: &[DataFile], queued: &mut u64) -> Vec<DataFile> {
    let after = *queued;
    let new: Vec<DataFile> = files
        .iter()
        .filter(|f| f.seq.is_some_and(|seq| seq > after))
        .cloned()
        .collect();
    *queued = new.iter().filter_map(|f| f.seq).fold(after, u64::max);
    new
}

impl Pipeline {
    pub async fn run(mut self, inputs: Vec<Input>, mut requests: mpsc::Receiver<Request>) {
        // A view resumed from a checkpoint holds its restored state before any input.
        self.account();
        let mut lives = match self.backfill(inputs, &mut requests).await {
            Ok(Some(lives)) => lives,
            Ok(None) => return,
            Err(e) => return self.fail(e),
        };
        self.backfilling = false;
        if self.stats.status() == Status::Backfilling {
            self.stats.update(|s| s.status = Status::Running);
        }
        let mut refreshes = Refreshes::new();
        let mut recheck = tokio::time::interval(STALL_RECHECK);
        let mut forget_tick = tokio::time::interval(FORGET_INTERVAL);
        let forgets = self.flow.plan.forgets_idle();
        let mut dirty = false;
        let mut align = Alignment::new(&lives);
        loop {
            let stalled = self.stalled();
            let readable = align.readable();
            let step = tokio::select! {
                (branch, message) = next_message(&mut lives, &readable), if !stalled => match message {
                    Some(Item::Message(Message::Barrier(barrier))) => {
                        align.delivered(branch, barrier);
                        self.complete(&mut align, &lives).await
                    }
                    Some(item) => {
                        dirty = true;
                        refreshes.input();
                        self.take(branch, item).await
                    }
                    None => {
                        align.closed(branch);
                        self.complete(&mut align, &lives).await
                    }
                },
                request = requests.recv() => match request {
                    // A view over tables: the barrier comes here; it takes in the tables'
                    // commits it has not read yet, then waits for its other inputs' barriers.
                    Some(Request::Barrier(barrier)) => {
                        let mut read = Ok(());
                        let tables = lives
                            .iter_mut()
                            .enumerate()
                            .filter(|(_, live)| matches!(live, Live::Table { .. }));
                        for (branch, live) in tables {
                            while read.is_ok()
                                && !self.stalled()
                                && let Some(message) = live.try_next(&self.storage)
                            {
                                read = self.take(branch, message).await;
                            }
                        }
                        align.requested(barrier);
                        match read {
                            Ok(()) => self.complete(&mut align, &lives).await,
                            Err(e) => Err(e),
                        }
                    }
                    Some(Request::Stop(ack)) => {
                        let _ = ack.send(());
                        return;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(refreshes.due()), if dirty => {
                    dirty = false;
                    let started = Instant::now();
                    let refreshed = self.refresh().await;
                    refreshes.done(started);
                    refreshed
                }
                // Nothing else wakes a view stalled on the memory pool when queries free it.
                _ = recheck.tick(), if stalled => Ok(()),
                _ = forget_tick.tick(), if forgets => {
                    self.forget_idle();
                    Ok(())
                }
            };
            if let Err(e) = step {
                return self.fail(e);
            }
        }
    }

    /// Checkpoints once every input has reached the barrier being aligned.
    async fn complete(&mut self, align: &mut Alignment, lives: &[Live]) -> Result<()> {
        let Some(barrier) = align.complete() else {
            return Ok(());
        };
        let tables_read = lives
            .iter()
            .enumerate()
            .filter_map(|(input, live)| Some((input, live.table_read()?)))
            .collect();
        self.checkpoint(&barrier, tables_read).await
    }

    /// Whether the open state reached its limit (open groups, or no room in the memory pool);
    /// moves the status in and out of `stalled`.
    fn stalled(&mut self) -> bool {
        let groups = self.flow.operator().map_or(0, ViewOperator::open_groups);
        let at_group_limit = groups >= self.max_open_groups;
        let stalled = at_group_limit || self.memory.exhausted();
        match (stalled, self.stats.status()) {
            (true, Status::Running | Status::Backfilling) => {
                let message = match at_group_limit {
                    true => format!(
                        "{groups} open groups reached view_max_open_groups ({}); the view takes \
                         no input until windows close. Raise the limit or use shorter windows.",
                        self.max_open_groups
                    ),
                    false => self.memory.stall_message(
                        "the view's open state",
                        "view",
                        "Raise --memory-limit, or use shorter windows or fewer keys.",
                    ),
                };
                tracing::warn!(view = %self.def.name, "{message}");
                self.stats.update(|s| {
                    s.status = Status::Stalled;
                    s.last_error = Some(message);
                });
            }
            (false, Status::Stalled) => {
                let status = match self.backfilling {
                    true => Status::Backfilling,
                    false => Status::Running,
                };
                self.stats.update(|s| {
                    s.status = status;
                    s.last_error = None;
                });
            }
            _ => {}
        }
        stalled
    }

    /// Waits while the view is stalled during its backfill. A stop request ends the wait
    /// (`false`); a table's checkpoint barrier fails, since the view cannot yet say which
    /// files it has read.
    async fn wait_for_room(&mut self, requests: &mut mpsc::Receiver<Request>) -> bool {
        while self.stalled() {
            tokio::select! {
                _ = tokio::time::sleep(STALL_RECHECK) => {}
                request = requests.recv() => match request {
                    Some(Request::Barrier(barrier)) => checkpoint::report(
                        &barrier,
                        ParticipantId::View(self.def.name.clone()),
                        Err(Error::Internal(format!(
                            "view \"{}\" is stalled in its backfill",
                            self.def.name
                        ))),
                    ),
                    Some(Request::Stop(ack)) => {
                        let _ = ack.send(());
                        return false;
                    }
                    None => return false,
                },
            }
        }
        true
    }

    /// Lets the joins forget the rows their state TTL lets go, as of now.
    fn forget_idle(&mut self) {
        self.flow.forget_idle(chrono::Utc::now().timestamp_micros());
        self.account();
    }

    /// Brings the open-state numbers and the state's share of the memory pool up to date.
    fn account(&mut self) {
        let groups = self.flow.operator().map_or(0, ViewOperator::open_groups);
        let bytes = self.flow.state_bytes();
        let (join_rows, join_bytes) = self
            .flow
            .join()
            .map_or((0, 0), |j| (j.rows(), j.state_bytes()));
        self.memory.hold(bytes);
        self.stats.update(|s| {
            s.open_groups = groups as u64;
            s.state_bytes = bytes as u64;
            s.join_rows = join_rows as u64;
            s.join_state_bytes = join_bytes as u64;
        });
    }

    fn fail(&self, error: Error) {
        tracing::error!(view = %self.def.name, error = %error, "materialized view stopped");
        self.stats.failed(&error.to_string());
    }

    /// Reads what the inputs held when the view subscribed; returns the live inputs, or
    /// `None` when asked to stop while stalled.
    async fn backfill(
        &mut self,
        inputs: Vec<Input>,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Result<Option<Vec<Live>>> {
        let mut held = Vec::new();
        let mut lives = Vec::new();
        for input in inputs {
            let (files, batches, changes, watermark, live) = match input {
                Input::Feed {
                    files,
                    batches,
                    changes,
                    watermark,
                    receiver,
                } => (files, batches, changes, watermark, Live::Feed(receiver)),
                Input::Table {
                    name,
                    commits,
                    read,
                } => {
                    let mut queued = read;
                    let files = commits
                        .borrow()
                        .table(&name)
                        .map(|t| new_files(&t.files, &mut queued))
                        .unwrap_or_default();
                    // The backfill reads them all before the first barrier can come.
                    let live = Live::Table {
                        name,
                        commits,
                        read: queued,
                        queued,
                        queue: VecDeque::new(),
                    };
                    (files, Vec::new(), None, None, live)
                }
            };
            held.push((files, batches, changes, watermark));
            lives.push(live);
        }
        let total: u64 = held
            .iter()
            .map(|(files, batches, _, _)| {
                files.iter().map(|f| f.rows).sum::<u64>()
                    + batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
            })
            .sum();
        self.stats.update(|s| s.backfill_rows_total = total);
        if total > 0 {
            tracing::info!(view = %self.def.name, input = %self.def.input, rows = total, "view backfill started");
        }
        let started = Instant::now();
        let mut reported = Instant::now();
        let mut done = 0u64;
        let mut progress = |stats: &ViewStats, rows: usize| {
            done += rows as u64;
            stats.update(|s| s.backfill_rows_done = done);
            if reported.elapsed() >= PROGRESS_INTERVAL {
                reported = Instant::now();
                tracing::info!(view = %stats.snapshot().view, rows_done = done, rows_total = total, "view backfill progress");
            }
        };
        // A lookup join's dimension first: the rows held join it as it is now.
        let mut held: Vec<_> = held.into_iter().enumerate().collect();
        held.sort_by_key(|(branch, _)| self.flow.plan.timed(*branch));
        for (branch, (files, batches, changes, watermark)) in held {
            if let Some(changes) = changes {
                self.take_changes(branch, &changes)?;
            }
            for file in files {
                for batch in self.storage.read_file(&file).await? {
                    if !self.wait_for_room(requests).await {
                        return Ok(None);
                    }
                    progress(&self.stats, batch.num_rows());
                    self.take_stored(branch, &batch)?;
                }
                self.table_watermark(branch).await?;
            }
            for batch in batches {
                if !self.wait_for_room(requests).await {
                    return Ok(None);
                }
                progress(&self.stats, batch.num_rows());
                self.take_stored(branch, &batch)?;
            }
            if let Some(watermark) = watermark {
                self.input_watermark(branch, watermark).await?;
            }
        }
        self.refresh().await?;
        if total > 0 {
            tracing::info!(view = %self.def.name, rows = total, seconds = started.elapsed().as_secs_f64(), "view backfill done");
        }
        Ok(Some(lives))
    }

    /// Takes a message or file of input `branch` (barriers are aligned by the caller).
    async fn take(&mut self, branch: usize, item: Item) -> Result<()> {
        if self.flow.plan.forgets_idle() {
            self.forget_idle();
        }
        let message = match item {
            Item::File(file) => {
                for batch in self.storage.read_file(&file).await? {
                    self.take_stored(branch, &batch)?;
                }
                return self.table_watermark(branch).await;
            }
            Item::Message(message) => message,
        };
        match message {
            Message::Batch(batch) => self.take_rows(branch, &batch),
            Message::Changes(changes) => self.take_changes(branch, &changes),
            Message::Watermark(watermark) => self.input_watermark(branch, watermark).await,
            Message::Barrier(_) => Err(Error::Internal("a barrier reached a view's steps".into())),
        }
    }

    /// Input `branch` is past `watermark`: the view advances to the watermark of what its
    /// inputs make (the least of theirs, or a join's).
    async fn input_watermark(&mut self, branch: usize, watermark: i64) -> Result<()> {
        if let Some(slot) = self.input_watermarks.get_mut(branch) {
            *slot = Some(slot.map_or(watermark, |w| w.max(watermark)));
        }
        let combined = self.flow.watermark(&self.input_watermarks);
        // A join may have dropped rows the watermark says can no longer match.
        if self.flow.join().is_some() {
            self.account();
        }
        match combined {
            Some(combined) => self.advance(combined).await,
            None => Ok(()),
        }
    }

    /// A table's watermark, which the view derives from the largest event time it read.
    async fn table_watermark(&mut self, branch: usize) -> Result<()> {
        let input = self.flow.plan.inputs()[branch];
        let delay = input.delay_us;
        match self.max_event_times[branch] {
            Some(max) if input.kind == crate::stream::plan::RelationKind::Table => {
                self.input_watermark(branch, max - delay).await
            }
            _ => Ok(()),
        }
    }

    /// Runs rows through the view's operators (or, with none, straight to the output).
    fn take_rows(&mut self, branch: usize, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut taken = self.flow.take_rows(branch, batch)?;
        self.pending_out.append(&mut taken.output);
        self.took(branch, rows, &taken)
    }

    /// After a batch of input `branch`: the latest event time (a view over a table derives
    /// the table's watermark from it), late rows, counts and memory.
    fn took(&mut self, branch: usize, rows: usize, taken: &dataflow::Taken) -> Result<()> {
        if let Some(batch_max) = taken.max_event_time {
            let max = &mut self.max_event_times[branch];
            *max = Some(max.map_or(batch_max, |m| m.max(batch_max)));
        }
        self.keep_late(&taken.current, &taken.late)?;
        for late in &taken.late_joined {
            let rows = late_rows(
                &self.def.name,
                &self.flow.plan.inputs()[late.branch].name,
                &late.rows,
                &(0..late.rows.num_rows() as u32).collect::<Vec<_>>(),
                Some(late.time_column),
                late.watermark,
            )?;
            self.stats.update(|s| s.rows_late += rows.len() as u64);
            self.pending_late.extend(rows);
        }
        self.stats.update(|s| s.rows_in += rows as u64);
        self.account();
        Ok(())
    }

    /// Counts and keeps the rows at `late` of `current`, which came after their window closed.
    fn keep_late(&mut self, current: &RecordBatch, late: &[u32]) -> Result<()> {
        if late.is_empty() {
            return Ok(());
        }
        let watermark = self.flow.operator().map_or(i64::MIN, |o| o.watermark());
        let rows = late_rows(
            &self.def.name,
            &self.def.input,
            current,
            late,
            self.flow.plan.window.as_ref().and_then(|w| w.time_column),
            watermark,
        )?;
        self.stats.update(|s| s.rows_late += rows.len() as u64);
        self.pending_late.extend(rows);
        Ok(())
    }

    /// Takes a batch the input keeps (committed or pending): rows, or the changelog of a
    /// keyed table or keyed source.
    fn take_stored(&mut self, branch: usize, batch: &RecordBatch) -> Result<()> {
        use crate::stream::plan::RelationKind;
        let input = self.flow.plan.inputs()[branch];
        match (input.kind, input.updating) {
            (RelationKind::Table | RelationKind::Source, true) => {
                let changes = crate::table::changes_of(batch, &input.schema)?;
                self.take_changes(branch, &changes)
            }
            _ => self.take_rows(branch, batch),
        }
    }

    /// Runs inserts and deletes through the view's operators.
    fn take_changes(&mut self, branch: usize, changes: &Changes) -> Result<()> {
        let taken = self.flow.take_changes(branch, changes)?;
        self.took(branch, changes.num_rows(), &taken)
    }

    /// Closes the windows the watermark passed and hands their rows to readers and to the
    /// views reading this one.
    /// The input's watermark is on another column than the view's windows when the view
    /// does not `close`: it then closes nothing (and the view's windows stay live).
    async fn advance(&mut self, watermark: i64) -> Result<()> {
        self.stats.update(|s| s.watermark_us = Some(watermark));
        let mut closed = std::mem::take(&mut self.pending_out);
        if !self.flow.plan.closes {
            self.publish(closed, None, None, None).await;
            return Ok(());
        }
        let windows = self.flow.advance(watermark)?;
        let output_watermark = match self.flow.operator() {
            Some(operator) => operator.output_watermark(),
            None => Some(watermark),
        };
        // The windows that closed are still in the live snapshot: readers must see them in
        // one place only, so the snapshot is replaced in the same instant as they turn final.
        let live = match &windows {
            Some(_) => Some(self.live_rows()?),
            None => None,
        };
        if let Some(windows) = windows {
            closed.extend(windows);
            self.account();
        }
        self.publish(closed, Some(watermark), live, None).await;
        if let Some(w) = output_watermark {
            let recipients = {
                let mut shared = self.shared.lock().await;
                shared.watermark = Some(shared.watermark.map_or(w, |s| s.max(w)));
                self.feed.recipients()
            };
            recipients.send(Message::Watermark(w)).await;
        }
        Ok(())
    }

    /// Adds final rows to the pending output (and, if given, replaces the live snapshot) in
    /// one step under the readers' lock, then sends the final rows and an updating view's
    /// changes on: a view subscribing meanwhile got either the old snapshot and these
    /// changes, or the new snapshot and not them.
    async fn publish(
        &mut self,
        rows: Vec<RecordBatch>,
        closed_through: Option<i64>,
        live: Option<Vec<RecordBatch>>,
        changes: Option<Changes>,
    ) {
        let count: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let refreshed = live.is_some();
        let recipients = {
            let mut shared = self.shared.lock().await;
            shared.publish(&rows, live);
            if let Some(w) = closed_through {
                shared.closed_through = Some(shared.closed_through.map_or(w, |c| c.max(w)));
            }
            self.feed.recipients()
        };
        self.stats.update(|s| {
            s.rows_out += count as u64;
            if let Some(w) = closed_through {
                s.closed_through_us = Some(w);
            }
            if refreshed {
                s.refreshed_at_us = Some(chrono::Utc::now().timestamp_micros());
            }
        });
        for batch in rows {
            recipients.send(Message::Batch(batch)).await;
        }
        if let Some(changes) = changes {
            recipients.send(Message::Changes(changes)).await;
        }
    }

    /// The live results of open windows (none when the view emits on close).
    fn live_rows(&mut self) -> Result<Vec<RecordBatch>> {
        match self.def.emit_on_close {
            true => Ok(Vec::new()),
            false => self.flow.live(),
        }
    }

    /// Recomputes the live results of open windows, and hands on final rows of a view
    /// without window (or an updating view's changes), together.
    async fn refresh(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending_out);
        let live = self.live_rows()?;
        let changes = match &mut self.emitted {
            Some(emitted) => emitted.diff(&live)?,
            None => None,
        };
        self.publish(pending, None, Some(live), changes).await;
        Ok(())
    }

    /// An updating view's rows as it starts (restored, or empty but for the one row of an
    /// aggregate without GROUP BY), as handed on already: views over it hold them as of the
    /// same checkpoint, or take them when they subscribe. Runs before the pipeline's task, so
    /// no view subscribes earlier.
    pub fn baseline(&mut self) -> Result<()> {
        if !self.flow.plan.updating {
            return Ok(());
        }
        let live = self.live_rows()?;
        let mut emitted = Emitted::new(self.flow.plan.schema());
        emitted.reset(&live)?;
        // The committed files hold the restored rows, unless there are none: a view
        // checkpointed before updating views kept files writes all its rows at its next one.
        let mut stored = Emitted::new(self.flow.plan.schema());
        let files = self
            .storage
            .manifest()
            .view(&self.def.name)
            .map(|v| v.files.len());
        if files.unwrap_or(0) > 0 {
            stored.reset(&live)?;
        }
        self.emitted = Some(emitted);
        match self.shared.try_lock() {
            Ok(mut shared) => {
                shared.restored = Some(live.clone());
                shared.stored = Some(stored);
                shared.publish(&[], Some(live));
            }
            Err(_) => return Err(Error::Internal("a starting view's state is locked".into())),
        }
        Ok(())
    }

    /// The view's part of a checkpoint: writes its open state, pending final rows and late
    /// rows, reports them, and passes the barrier to the views reading this one. A failed
    /// write fails the checkpoint, not the view: the next checkpoint writes it all again.
    async fn checkpoint(
        &mut self,
        barrier: &Arc<Barrier>,
        tables_read: BTreeMap<usize, u64>,
    ) -> Result<()> {
        self.refresh().await?;
        let pending_late = std::mem::take(&mut self.pending_late);
        let (closed, late, closed_through, stored) = {
            let mut shared = self.shared.lock().await;
            shared.late.extend(pending_late);
            // Views over this one resume from this checkpoint from now on, if it commits.
            shared.restored = None;
            // An updating view's changes since its files' rows (stored once they commit).
            let stored = match shared.stored.clone() {
                Some(mut stored) => {
                    let changes = stored.diff(&shared.live)?;
                    Some((changes, stored))
                }
                None => None,
            };
            (
                shared.closed.clone(),
                shared.late.clone(),
                shared.closed_through,
                stored,
            )
        };
        let (changes, stored) = stored.unzip();
        let taken = Taken {
            closed: closed.len(),
            late: late.len(),
            stored,
        };
        let participant = ParticipantId::View(self.def.name.clone());
        let written = async {
            let (state, watermark) = match self.flow.operator_mut() {
                Some(operator) => {
                    let batch = operator.checkpoint()?;
                    let watermark = operator.watermark();
                    let owner = format!("view-{}", self.def.name);
                    let state = write_state(&self.storage, barrier.id, &owner, batch).await?;
                    (state, (watermark != i64::MIN).then_some(watermark))
                }
                None => (None, None),
            };
            let (mut joins, mut join_watermarks) = (Vec::new(), Vec::new());
            if let Some(join) = self.flow.join() {
                let state = join.checkpoint()?;
                join_watermarks = state.watermarks;
                let owner = format!("view-{}-join", self.def.name);
                for side in state.sides {
                    joins.push(write_state(&self.storage, barrier.id, &owner, side).await?);
                }
            }
            let data_file = match changes.flatten() {
                Some(changes) => {
                    let batch = crate::table::changelog_batch(&changes)?;
                    self.storage
                        .write_view_changelog(&self.def, vec![batch])
                        .await?
                }
                // Every window in the file ended by `closed_through`: retention goes by that.
                None => self
                    .storage
                    .write_view_file(&self.def, closed)
                    .await?
                    .map(|file| DataFile {
                        windows_end: closed_through,
                        ..file
                    }),
            };
            let late_file = match late.is_empty() {
                true => None,
                false => self.storage.write_late_file(late_batch(&late)?).await?,
            };
            Ok(Report {
                change: Change::View {
                    view_id: self.def.id,
                    checkpoint: Box::new(ViewCheckpoint {
                        id: barrier.id,
                        state,
                        joins,
                        join_watermarks,
                        watermark,
                        input_watermark: self.stats.snapshot().watermark_us,
                        // A view's own (the first input's; a join keeps its inputs' watermarks).
                        max_event_time: self.max_event_times.first().copied().flatten(),
                        tables_read,
                        ..ViewCheckpoint::default()
                    }),
                    closed_through,
                    data_file,
                    late_file,
                },
                release: Held::release(&self.shared, taken),
            })
        }
        .await;
        checkpoint::report(barrier, participant, written);
        self.feed
            .publish(Message::Barrier(Arc::clone(barrier)))
            .await;
        Ok(())
    }
}

/// The pending final rows and late rows a checkpoint wrote (the first `closed` and `late`),
/// and the rows an updating view's files hold with what it wrote.
#[derive(Debug, Default)]
pub struct Taken {
    closed: usize,
    late: usize,
    stored: Option<Emitted>,
}

impl Drain for Shared {
    type Taken = Taken;

    fn drain(&mut self, taken: &Taken) {
        self.closed.drain(..taken.closed);
        self.late.drain(..taken.late);
        if let Some(stored) = &taken.stored {
            self.stored = Some(stored.clone());
        }
        self.coalesced = None;
    }
}

/// The next message of any readable input, with the input's position. Never resolves when
/// none is readable.
async fn next_message(lives: &mut [Live], readable: &[bool]) -> (usize, Option<Item>) {
    if let [live] = lives {
        return match readable.first() {
            Some(true) => (0, live.next().await),
            _ => std::future::pending().await,
        };
    }
    let waiting: Vec<_> = lives
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| readable.get(*i).copied().unwrap_or(false))
        .map(|(i, live)| Box::pin(async move { (i, live.next().await) }))
        .collect();
    if waiting.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waiting).await.0
}

/// Checkpoint barriers aligned across a view's inputs: an input that delivered the barrier (a
/// feed) or was cut by it (the tables, when the barrier came as a request) is not read again
/// until every input has, so the checkpoint holds exactly the rows before the barrier of each.
/// A closed input counts as there. A newer barrier replaces one that cannot complete (its round
/// was abandoned).
struct Alignment {
    tables: Vec<bool>,
    closed: Vec<bool>,
    delivered: Vec<bool>,
    barrier: Option<Arc<Barrier>>,
    requested: bool,
}

impl Alignment {
    fn new(lives: &[Live]) -> Self {
        let tables: Vec<bool> = lives
            .iter()
            .map(|l| matches!(l, Live::Table { .. }))
            .collect();
        Alignment {
            closed: vec![false; tables.len()],
            delivered: vec![false; tables.len()],
            tables,
            barrier: None,
            requested: false,
        }
    }

    /// Aligns on `barrier` if it is newer than the one under way; false for an older one.
    fn start(&mut self, barrier: &Arc<Barrier>) -> bool {
        match &self.barrier {
            Some(current) if current.id > barrier.id => false,
            Some(current) if current.id == barrier.id => true,
            _ => {
                self.barrier = Some(Arc::clone(barrier));
                self.delivered.fill(false);
                self.requested = false;
                true
            }
        }
    }

    fn delivered(&mut self, branch: usize, barrier: Arc<Barrier>) {
        if self.start(&barrier) {
            self.delivered[branch] = true;
        }
    }

    fn requested(&mut self, barrier: Arc<Barrier>) {
        if self.start(&barrier) {
            self.requested = true;
        }
    }

    fn closed(&mut self, branch: usize) {
        self.closed[branch] = true;
    }

    /// Whether input `i` reached the barrier under way (a table: whether the request came).
    fn there(&self, i: usize) -> bool {
        match self.tables[i] {
            true => self.requested,
            false => self.delivered[i],
        }
    }

    /// Which inputs may be read now.
    fn readable(&self) -> Vec<bool> {
        (0..self.tables.len())
            .map(|i| !(self.closed[i] || (self.barrier.is_some() && self.there(i))))
            .collect()
    }

    /// The barrier, once every input is there; alignment starts over.
    fn complete(&mut self) -> Option<Arc<Barrier>> {
        self.barrier.as_ref()?;
        let there = (0..self.tables.len()).all(|i| self.closed[i] || self.there(i));
        if !there {
            return None;
        }
        self.delivered.fill(false);
        self.requested = false;
        self.barrier.take()
    }
}

/// Writes a state batch (if any) as a state file of checkpoint `checkpoint`.
async fn write_state(
    storage: &Storage,
    checkpoint: u64,
    owner: &str,
    batch: Option<RecordBatch>,
) -> Result<Option<DataFile>> {
    match batch {
        Some(batch) => Ok(Some(
            storage.write_state_file(checkpoint, owner, &batch).await?,
        )),
        None => Ok(None),
    }
}

/// When a view next refreshes its live results: at most `REFRESH_INTERVAL` after the last
/// refresh, and sooner once the input has been `QUIET` — but no sooner than four times the
/// last refresh took after it, so a large state is not refreshed over and over while rows
/// trickle in.
struct Refreshes {
    last: Instant,
    took: Duration,
    quiet_at: Instant,
}

impl Refreshes {
    fn new() -> Self {
        let now = Instant::now();
        Refreshes {
            last: now,
            took: Duration::ZERO,
            quiet_at: now,
        }
    }

    /// Input arrived.
    fn input(&mut self) {
        self.quiet_at = Instant::now() + QUIET;
    }

    fn due(&self) -> tokio::time::Instant {
        let soonest = self.quiet_at.max(self.last + self.took * 4);
        soonest.min(self.last + REFRESH_INTERVAL).into()
    }

    /// A refresh that started at `started` is done.
    fn done(&mut self, started: Instant) {
        self.last = Instant::now();
        self.took = self.last - started;
    }
}
