//! `connector = 'kafka'`: reads every partition of a topic with rdkafka and hands decoded chunks
//! to the source's runner.
//!
//! Partitions are assigned explicitly (no consumer group, no group commits): the source tracks
//! its own next offset per partition, which it commits with its data (and, later, in
//! checkpoints), so a restart resumes exactly where the committed state ends. The topic's
//! metadata is re-read periodically to follow partitions added later; those are read from their
//! beginning, since all their records are newer than the source.
//!
//! The reader runs with librdkafka's blocking poll, in a process of its own
//! ([`super::kafka_process`]; on a thread when SluiceDB is used as a library), and hands what
//! it reads to a [`ReaderOutput`]. A source that takes nothing in blocks the reader,
//! librdkafka's fetch queue fills and fetching pauses: back-pressure reaches the broker and
//! nothing is dropped. Broker failures are retried by librdkafka; the
//! source shows them as `retrying` with the error, and a record delivered twice (offset already
//! taken) is skipped.
//!
//! An offset out of the broker's range (the topic was re-created or restored with fewer records
//! than the source read, or records expired before they were read) is never silently skipped
//! or re-read: librdkafka is told to report it (`auto.offset.reset = error`), and the partition
//! stops, with its reason in `sluice_catalog.sources`, until `ALTER SOURCE … RESET OFFSETS TO
//! EARLIEST | LATEST` says where to go on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::mpsc;

use super::Event;
use super::options::{KafkaSettings, StartupMode};
use super::stats::SourceStats;
use super::workers::{DecodeWorkers, Job, OwnedRecord};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most records taken into one chunk.
const CHUNK_RECORDS_MAX: usize = 4_096;
/// Longest a record waits in a forming chunk.
const CHUNK_LINGER: Duration = Duration::from_millis(50);
const POLL_IDLE: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_REFRESH: Duration = Duration::from_secs(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often positions are checked against the watermarks of the last fetches.
const RANGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where a partition's first and next offsets are read for a range check.
#[derive(Debug, Clone, Copy)]
enum Watermarks {
    /// Asked of the broker (ListOffsets).
    Broker,
    /// As the last fetch responses gave them (no request; unknown before the first fetch).
    LastFetch,
}

/// A partition leader that has sent nothing for this long is frozen or cut off: a healthy one
/// answers every fetch within `fetch.wait.max.ms` (500 ms by default), data or not.
const LEADER_SILENCE_US: i64 = 5_000_000;

/// Receives librdkafka's statistics (high watermarks from fetch responses, how long each
/// broker has been silent) and errors.
struct SourceContext {
    topic: String,
    out: Arc<dyn ReaderOutput>,
    source: String,
    /// The `retrying` error this context set for a silent leader, to clear when it answers.
    silent: Mutex<Option<String>>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut leaders = BTreeSet::new();
        let now_us = chrono::Utc::now().timestamp_micros();
        for (id, partition) in &topic.partitions {
            if *id >= 0 && partition.hi_offset >= 0 {
                self.out.status(StatusChange::HighWatermark {
                    partition: *id,
                    offset: partition.hi_offset,
                });
            }
            if *id >= 0 {
                leaders.insert(partition.leader);
                // rxidle: microseconds since the leader's connection last received (-1: never).
                let leader = statistics
                    .brokers
                    .values()
                    .find(|b| b.nodeid == partition.leader);
                if let Some(idle) = leader.map(|b| b.rxidle).filter(|idle| *idle >= 0) {
                    self.out.status(StatusChange::LastFetch {
                        partition: *id,
                        at_us: now_us - idle,
                    });
                }
            }
        }
        let silent = statistics
            .brokers
            .values()
            .find(|b| leaders.contains(&b.nodeid) && b.rxidle > LEADER_SILENCE_US)
            .map(|b| {
                format!(
                    "kafka broker {} has not answered for over {} s (frozen, overloaded or \
                     cut off); retrying",
                    b.nodename,
                    LEADER_SILENCE_US / 1_000_000
                )
            });
        let mut set = self.silent.lock().unwrap_or_else(|e| e.into_inner());
        match silent {
            Some(message) => {
                if self.out.status(StatusChange::Retrying(message.clone())) {
                    tracing::warn!(source = %self.source, error = %message, "kafka broker silent");
                }
                *set = Some(message);
            }
            None => {
                if let Some(message) = set.take() {
                    self.out.status(StatusChange::Recovered(message));
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        if self.out.status(StatusChange::Retrying(message.clone())) {
            tracing::warn!(source = %self.source, error = %message, "kafka error; retrying");
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::debug!(source = %self.source, facility, message, "librdkafka")
            }
            _ => tracing::trace!(source = %self.source, facility, message, "librdkafka"),
        }
    }
}

impl ConsumerContext for SourceContext {}

type SourceConsumer = BaseConsumer<SourceContext>;

fn client_config(source: &str, settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", format!("sluicedb-{source}"))
        .set("client.id", "sluicedb")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never jump silently: an offset out of range stops its partition (see the module doc).
        .set("auto.offset.reset", "error")
        .set("statistics.interval.ms", "1000");
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

fn consumer(
    source: &str,
    settings: &KafkaSettings,
    out: Arc<dyn ReaderOutput>,
) -> Result<SourceConsumer> {
    let context = SourceContext {
        topic: settings.topic.clone(),
        out,
        source: source.to_string(),
        silent: Mutex::new(None),
    };
    client_config(source, settings)
        .create_with_context(context)
        .map_err(|e| Error::Connector {
            message: format!("cannot create a kafka client: {e}"),
            hint: Some("Check the properties.* options of the source.".into()),
        })
}

/// The partitions of the topic, or why they cannot be read.
fn partitions(consumer: &SourceConsumer, settings: &KafkaSettings) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(&settings.topic), METADATA_TIMEOUT)
        .map_err(|e| Error::Connector {
            message: format!(
                "cannot read topic metadata from kafka at {}: {e}",
                settings.bootstrap_servers
            ),
            hint: Some(
                "Check that the broker is up and properties.bootstrap.server is right.".into(),
            ),
        })?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == settings.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty());
    match topic {
        Some(topic) => Ok(topic.partitions().iter().map(|p| p.id()).collect()),
        None => Err(Error::UndefinedRelation {
            kind: "kafka topic",
            name: settings.topic.clone(),
        }),
    }
}

/// Checks at `CREATE SOURCE` that the broker answers and the topic exists.
pub async fn check_topic(source: &str, settings: &KafkaSettings) -> Result<()> {
    let source = source.to_string();
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        let stats: Arc<dyn ReaderOutput> = Arc::new(SourceStats::new(&source, "kafka"));
        let consumer = consumer(&source, &settings, stats)?;
        partitions(&consumer, &settings).map(|_| ())
    })
    .await
    .map_err(|e| Error::Internal(format!("topic check did not finish: {e}")))?
}

/// Where `ALTER SOURCE … RESET OFFSETS` moves a source's stopped partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTo {
    Earliest,
    Latest,
}

/// A reset asked of a running reader, taken at its next turn.
pub type ResetRequest = Arc<Mutex<Option<ResetTo>>>;

/// What a reader tells its source, besides records: serializable, as a reader process sends
/// it over its pipe.
#[derive(Debug, Serialize, Deserialize)]
pub enum ReaderEvent {
    Assigned { partition: i32, start: Option<i64> },
    Repositioned { partition: i32, next: i64 },
    Failed(String),
}

impl From<ReaderEvent> for Event {
    fn from(event: ReaderEvent) -> Self {
        match event {
            ReaderEvent::Assigned { partition, start } => Event::Assigned { partition, start },
            ReaderEvent::Repositioned { partition, next } => {
                Event::Repositioned { partition, next }
            }
            ReaderEvent::Failed(message) => Event::Failed(message),
        }
    }
}

/// A change a reader makes to its source's numbers and status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StatusChange {
    /// A transient error; see [`SourceStats::retrying`].
    Retrying(String),
    /// Records arrive: clears a retrying state.
    Running,
    /// The cause of this error is gone.
    Recovered(String),
    HighWatermark {
        partition: i32,
        offset: i64,
    },
    /// The partition's leader last answered at this time, epoch µs.
    LastFetch {
        partition: i32,
        at_us: i64,
    },
    /// The partition is not read until a reset, for this reason.
    Stopped {
        partition: i32,
        reason: String,
    },
}

impl StatusChange {
    /// Applies the change; whether it is news (a new retrying cause, a change of state).
    pub fn apply(self, stats: &SourceStats) -> bool {
        match self {
            StatusChange::Retrying(error) => stats.retrying(&error),
            StatusChange::Running => {
                let before = stats.status();
                stats.running();
                stats.status() != before
            }
            StatusChange::Recovered(error) => {
                let before = stats.status();
                stats.recovered(&error);
                stats.status() != before
            }
            StatusChange::HighWatermark { partition, offset } => {
                let mut changed = false;
                stats.partition(partition, |p| {
                    changed = p.high_watermark != Some(offset);
                    p.high_watermark = Some(offset);
                });
                changed
            }
            StatusChange::LastFetch { partition, at_us } => {
                stats.partition(partition, |p| p.last_fetch_us = Some(at_us));
                true
            }
            StatusChange::Stopped { partition, reason } => {
                stats.partition(partition, |p| p.stopped = Some(reason));
                true
            }
        }
    }
}

/// Where a reader's records, events and status changes go: to the source in this process
/// ([`LocalOutput`]), or over the pipe of a reader process.
pub trait ReaderOutput: Send + Sync {
    /// Hands a partition's records over; false once the source is gone.
    fn records(&self, job: Job) -> bool;
    /// False once the source is gone.
    fn event(&self, event: ReaderEvent) -> bool;
    /// Whether the change is news (worth a log line).
    fn status(&self, change: StatusChange) -> bool;
}

/// The source's own decode threads, runner and numbers.
pub struct LocalOutput {
    pub workers: DecodeWorkers,
    pub events: mpsc::Sender<Event>,
    pub stats: Arc<SourceStats>,
}

impl ReaderOutput for LocalOutput {
    fn records(&self, job: Job) -> bool {
        self.workers.submit(job)
    }

    fn event(&self, event: ReaderEvent) -> bool {
        self.events.blocking_send(event.into()).is_ok()
    }

    fn status(&self, change: StatusChange) -> bool {
        change.apply(&self.stats)
    }
}

/// Numbers only (the topic check at CREATE SOURCE reads no records).
impl ReaderOutput for SourceStats {
    fn records(&self, _job: Job) -> bool {
        false
    }

    fn event(&self, _event: ReaderEvent) -> bool {
        false
    }

    fn status(&self, change: StatusChange) -> bool {
        change.apply(self)
    }
}

/// The consumer thread of one source.
pub struct KafkaReader {
    pub source: String,
    pub settings: KafkaSettings,
    /// Next offsets committed by the source: where to resume.
    pub committed: BTreeMap<i32, i64>,
    pub out: Arc<dyn ReaderOutput>,
    pub stop: Arc<AtomicBool>,
    pub reset: ResetRequest,
}

impl KafkaReader {
    /// Runs until `stop` is set or the runner goes away.
    pub fn run(mut self) {
        let consumer = match consumer(&self.source, &self.settings, Arc::clone(&self.out)) {
            Ok(consumer) => consumer,
            Err(e) => {
                self.out.event(ReaderEvent::Failed(e.to_string()));
                return;
            }
        };
        let mut backoff = Duration::from_millis(500);
        // Where each assigned partition is read next: its start (the startup mode, resolved
        // where possible) until a record arrives, then the offset after the last one.
        let mut positions: BTreeMap<i32, Offset> = BTreeMap::new();
        // Partitions whose offset is out of the broker's range, not read until a reset.
        let mut stopped: BTreeSet<i32> = BTreeSet::new();
        let mut initial = true;
        let mut next_refresh = Instant::now();
        let mut next_range_check = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let reset = self.reset.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(to) = reset
                && let Err(e) = self.reposition(&consumer, &mut positions, &mut stopped, to)
            {
                // Asked again by the statement that waits for it, or by the user.
                tracing::warn!(source = %self.source, error = %e, "cannot reset offsets");
            }
            if Instant::now() >= next_refresh {
                match self.refresh_partitions(&consumer, &mut positions, &stopped, initial) {
                    Ok(()) => {
                        initial = false;
                        backoff = Duration::from_millis(500);
                        next_refresh = Instant::now() + METADATA_REFRESH;
                    }
                    Err(e) => {
                        if self.out.status(StatusChange::Retrying(e.to_string())) {
                            tracing::warn!(source = %self.source, error = %e, "cannot assign kafka partitions; retrying");
                        }
                        next_refresh = Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
            }
            let (records, out_of_range) = self.poll_chunk(&consumer);
            if !records.is_empty() && !self.hand_over(records, &mut positions) {
                return;
            }
            // librdkafka's report is checked against the broker's offsets (and re-assigning
            // restarts the fetch of partitions it stopped that are in range); otherwise the
            // watermarks of the last fetches are checked every second, since a broker may answer
            // a fetch out of range with no records and no error (tansu does).
            let checked = if out_of_range {
                self.stop_out_of_range(&consumer, &positions, &mut stopped, Watermarks::Broker)
                    .map(|_| true)
            } else if Instant::now() >= next_range_check {
                next_range_check = Instant::now() + RANGE_CHECK_INTERVAL;
                self.stop_out_of_range(&consumer, &positions, &mut stopped, Watermarks::LastFetch)
            } else {
                Ok(false)
            };
            let checked = match checked {
                Ok(true) => self.assign(&consumer, &positions, &stopped),
                other => other.map(|_| ()),
            };
            if let Err(e) = checked
                && self.out.status(StatusChange::Retrying(e.to_string()))
            {
                tracing::warn!(source = %self.source, error = %e, "cannot check kafka offsets; retrying");
            }
        }
    }

    /// Assigns partitions not yet read: from the committed offset if there is one, else from
    /// the startup mode (first time) or the beginning (partitions added later).
    fn refresh_partitions(
        &self,
        consumer: &SourceConsumer,
        positions: &mut BTreeMap<i32, Offset>,
        stopped: &BTreeSet<i32>,
        initial: bool,
    ) -> Result<()> {
        let all = partitions(consumer, &self.settings)?;
        let new: Vec<i32> = all
            .into_iter()
            .filter(|p| !positions.contains_key(p))
            .collect();
        let topic = &self.settings.topic;
        let mut start: BTreeMap<i32, Offset> = BTreeMap::new();
        let mut by_time = TopicPartitionList::new();
        for &p in &new {
            let offset = match (self.committed.get(&p), initial, self.settings.startup) {
                (Some(&next), _, _) => Offset::Offset(next),
                (None, false, _) | (None, true, StartupMode::Earliest) => Offset::Beginning,
                // Resolved now, so "latest" means the end at the moment the source starts.
                (None, true, StartupMode::Latest) => {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                        .map_err(kafka_error)?;
                    Offset::Offset(high)
                }
                (None, true, StartupMode::Timestamp(ms)) => {
                    by_time
                        .add_partition_offset(topic, p, Offset::Offset(ms))
                        .map_err(kafka_error)?;
                    continue;
                }
            };
            start.insert(p, offset);
        }
        if by_time.count() > 0 {
            let found = consumer
                .offsets_for_times(by_time, METADATA_TIMEOUT)
                .map_err(kafka_error)?;
            for element in found.elements() {
                element.error().map_err(kafka_error)?;
                let offset = match element.offset() {
                    // No record at or after the time: start at the end.
                    Offset::End | Offset::Offset(-1) => Offset::End,
                    Offset::Offset(o) => Offset::Offset(o),
                    other => {
                        return Err(Error::Connector {
                            message: format!(
                                "kafka answered no offset for the time of partition {}: {other:?}",
                                element.partition()
                            ),
                            hint: None,
                        });
                    }
                };
                start.insert(element.partition(), offset);
            }
        }
        for (&p, &offset) in &start {
            positions.insert(p, offset);
        }
        if start.is_empty() {
            return Ok(());
        }
        self.assign(consumer, positions, stopped)?;
        for (&p, &offset) in &start {
            tracing::info!(source = %self.source, partition = p, start = ?offset, "reading kafka partition");
            let start = match offset {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let assigned = ReaderEvent::Assigned {
                partition: p,
                start,
            };
            if !self.out.event(assigned) {
                return Ok(());
            }
        }
        self.out.status(StatusChange::Running);
        Ok(())
    }

    /// Reads every partition but the stopped ones, each from its position. (`assign` replaces
    /// the assignment: partitions already read resume at our position.)
    fn assign(
        &self,
        consumer: &SourceConsumer,
        positions: &BTreeMap<i32, Offset>,
        stopped: &BTreeSet<i32>,
    ) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for (&p, &offset) in positions.iter().filter(|(p, _)| !stopped.contains(p)) {
            assignment
                .add_partition_offset(&self.settings.topic, p, offset)
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)
    }

    /// Stops each partition whose position the broker does not hold (the caller re-assigns);
    /// whether any stopped.
    fn stop_out_of_range(
        &self,
        consumer: &SourceConsumer,
        positions: &BTreeMap<i32, Offset>,
        stopped: &mut BTreeSet<i32>,
        watermarks: Watermarks,
    ) -> Result<bool> {
        let mut any = false;
        for (&p, offset) in positions.iter() {
            let Offset::Offset(next) = *offset else {
                continue;
            };
            if stopped.contains(&p) {
                continue;
            }
            let (low, high) = match watermarks {
                Watermarks::Broker => consumer
                    .fetch_watermarks(&self.settings.topic, p, METADATA_TIMEOUT)
                    .map_err(kafka_error)?,
                Watermarks::LastFetch => match self.last_fetched_watermarks(consumer, p) {
                    Some(known) => known,
                    None => continue,
                },
            };
            self.out.status(StatusChange::HighWatermark {
                partition: p,
                offset: high,
            });
            if (low..=high).contains(&next) {
                continue;
            }
            let what = match next > high {
                true => format!(
                    "the broker holds offsets up to {high} of partition {p}, but the source \
                     has read up to {next}: the topic was re-created or restored"
                ),
                false => format!(
                    "offsets {next} to {low} of partition {p} are gone from the broker (expired \
                     or deleted) before the source read them"
                ),
            };
            let message = format!(
                "{what}. The partition is not read until ALTER SOURCE {} RESET OFFSETS TO \
                 EARLIEST | LATEST.",
                self.source
            );
            tracing::error!(source = %self.source, partition = p, "{message}");
            self.out.status(StatusChange::Stopped {
                partition: p,
                reason: message,
            });
            stopped.insert(p);
            any = true;
        }
        Ok(any)
    }

    /// A partition's first and next offsets as librdkafka last learnt them (the next offset
    /// from each fetch response); `None` before it knows both.
    fn last_fetched_watermarks(
        &self,
        consumer: &SourceConsumer,
        partition: i32,
    ) -> Option<(i64, i64)> {
        let topic = std::ffi::CString::new(self.settings.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client lives as long as `consumer`; `topic` is a valid C string for the
        // call, and librdkafka writes the two offsets through the pointers, nothing else.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        let known = err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            && low >= 0
            && high >= 0;
        known.then_some((low, high))
    }

    /// Moves the stopped partitions to the broker's first or next offset and reads them again.
    fn reposition(
        &self,
        consumer: &SourceConsumer,
        positions: &mut BTreeMap<i32, Offset>,
        stopped: &mut BTreeSet<i32>,
        to: ResetTo,
    ) -> Result<()> {
        while let Some(&p) = stopped.first() {
            let (low, high) = consumer
                .fetch_watermarks(&self.settings.topic, p, METADATA_TIMEOUT)
                .map_err(kafka_error)?;
            let next = match to {
                ResetTo::Earliest => low,
                ResetTo::Latest => high,
            };
            tracing::info!(source = %self.source, partition = p, next, "offsets reset");
            positions.insert(p, Offset::Offset(next));
            stopped.remove(&p);
            if !self
                .out
                .event(ReaderEvent::Repositioned { partition: p, next })
            {
                return Ok(());
            }
        }
        self.assign(consumer, positions, stopped)
    }

    /// Polls until a chunk is full, has lingered long enough, or nothing more is queued; and
    /// whether librdkafka reported an offset out of range.
    fn poll_chunk(&self, consumer: &SourceConsumer) -> (Vec<OwnedRecord>, bool) {
        let mut records = Vec::new();
        let mut deadline: Option<Instant> = None;
        while records.len() < CHUNK_RECORDS_MAX {
            let timeout = match deadline {
                None => POLL_IDLE,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => {
                    deadline.get_or_insert_with(|| Instant::now() + CHUNK_LINGER);
                    records.push(OwnedRecord {
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                    });
                }
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                        )
                    ) =>
                {
                    return (records, true);
                }
                Some(Err(e)) => {
                    let message = e.to_string();
                    if self.out.status(StatusChange::Retrying(message.clone())) {
                        tracing::warn!(source = %self.source, error = %message, "kafka consumer error; retrying");
                    }
                    break;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        if !records.is_empty() {
            self.out.status(StatusChange::Running);
        }
        (records, false)
    }

    /// Splits the chunk by partition and hands each part to its decode worker. False when
    /// the runner is gone.
    fn hand_over(
        &mut self,
        records: Vec<OwnedRecord>,
        positions: &mut BTreeMap<i32, Offset>,
    ) -> bool {
        let mut by_partition: BTreeMap<i32, Vec<OwnedRecord>> = BTreeMap::new();
        for record in records {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        for (partition, mut records) in by_partition {
            // Skip records already taken in (redelivered after a reconnect or reassignment).
            let first_new = match positions.get(&partition) {
                Some(Offset::Offset(next)) => *next,
                _ => i64::MIN,
            };
            records.retain(|r| r.offset >= first_new);
            let Some(last) = records.last() else { continue };
            let next_offset = last.offset + 1;
            positions.insert(partition, Offset::Offset(next_offset));
            let job = Job {
                partition,
                records,
                next_offset,
            };
            if !self.out.records(job) {
                return false;
            }
        }
        true
    }
}

fn kafka_error(error: KafkaError) -> Error {
    Error::Connector {
        message: format!("kafka: {error}"),
        hint: None,
    }
}
