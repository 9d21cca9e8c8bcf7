//! `connector = 'kafka'`: reads every partition of a topic with rdkafka and hands decoded chunks
//! to the source's runner.
//!
//! Partitions are assigned explicitly (no consumer group, no group commits): the source tracks
//! its own next offset per partition, which it commits with its data (and, later, in
//! checkpoints), so a restart resumes exactly where the committed state ends. The topic's
//! metadata is re-read periodically to follow partitions added later; those are read from their
//! beginning, since all their records are newer than the source.
//!
//! The consumer runs on its own thread with librdkafka's blocking poll. A full channel to the
//! runner blocks the thread, librdkafka's fetch queue fills and fetching pauses: back-pressure
//! reaches the broker and nothing is dropped. Broker failures are retried by librdkafka; the
//! source shows them as `retrying` with the error, and a record delivered twice (offset already
//! taken) is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::Event;
use super::options::{KafkaSettings, StartupMode};
use super::stats::SourceStats;
use super::workers::{DecodeWorkers, Job, OwnedRecord};
use crate::error::{Error, Result};

/// Most records taken into one chunk.
const CHUNK_RECORDS_MAX: usize = 4_096;
/// Longest a record waits in a forming chunk.
const CHUNK_LINGER: Duration = Duration::from_millis(50);
const POLL_IDLE: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_REFRESH: Duration = Duration::from_secs(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Receives librdkafka's statistics (high watermarks from fetch responses) and errors.
struct SourceContext {
    topic: String,
    stats: Arc<SourceStats>,
    source: String,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (id, partition) in &topic.partitions {
            if *id >= 0 && partition.hi_offset >= 0 {
                self.stats
                    .partition(*id, |p| p.high_watermark = Some(partition.hi_offset));
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        if self.stats.retrying(&message) {
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
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "1000");
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

fn consumer(
    source: &str,
    settings: &KafkaSettings,
    stats: Arc<SourceStats>,
) -> Result<SourceConsumer> {
    let context = SourceContext {
        topic: settings.topic.clone(),
        stats,
        source: source.to_string(),
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
        let stats = Arc::new(SourceStats::new(&source, "kafka"));
        let consumer = consumer(&source, &settings, stats)?;
        partitions(&consumer, &settings).map(|_| ())
    })
    .await
    .map_err(|e| Error::Internal(format!("topic check did not finish: {e}")))?
}

/// The consumer thread of one source.
pub struct KafkaReader {
    pub source: String,
    pub settings: KafkaSettings,
    /// Decode threads; partitions are decoded in parallel.
    pub workers: DecodeWorkers,
    /// Next offsets committed by the source: where to resume.
    pub committed: BTreeMap<i32, i64>,
    pub events: mpsc::Sender<Event>,
    pub stats: Arc<SourceStats>,
    pub stop: Arc<AtomicBool>,
}

impl KafkaReader {
    /// Runs until `stop` is set or the runner goes away.
    pub fn run(mut self) {
        let consumer = match consumer(&self.source, &self.settings, Arc::clone(&self.stats)) {
            Ok(consumer) => consumer,
            Err(e) => {
                let _ = self.events.blocking_send(Event::Failed(e.to_string()));
                return;
            }
        };
        let mut backoff = Duration::from_millis(500);
        // Where each assigned partition is read next: its start (the startup mode, resolved
        // where possible) until a record arrives, then the offset after the last one.
        let mut positions: BTreeMap<i32, Offset> = BTreeMap::new();
        let mut initial = true;
        let mut next_refresh = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_refresh {
                match self.assign_new_partitions(&consumer, &mut positions, initial) {
                    Ok(()) => {
                        initial = false;
                        backoff = Duration::from_millis(500);
                        next_refresh = Instant::now() + METADATA_REFRESH;
                    }
                    Err(e) => {
                        if self.stats.retrying(&e.to_string()) {
                            tracing::warn!(source = %self.source, error = %e, "cannot assign kafka partitions; retrying");
                        }
                        next_refresh = Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
            }
            let records = self.poll_chunk(&consumer);
            if !records.is_empty() && !self.hand_over(records, &mut positions) {
                return;
            }
        }
    }

    /// Assigns partitions not yet read: from the committed offset if there is one, else from
    /// the startup mode (first time) or the beginning (partitions added later).
    fn assign_new_partitions(
        &self,
        consumer: &SourceConsumer,
        positions: &mut BTreeMap<i32, Offset>,
        initial: bool,
    ) -> Result<()> {
        let all = partitions(consumer, &self.settings)?;
        let new: Vec<i32> = all
            .into_iter()
            .filter(|p| !positions.contains_key(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
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
        // `assign` replaces the assignment: partitions already read resume at our position.
        let mut assignment = TopicPartitionList::new();
        for (&p, &offset) in positions.iter().chain(&start) {
            assignment
                .add_partition_offset(topic, p, offset)
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
        for (&p, &offset) in &start {
            positions.insert(p, offset);
            tracing::info!(source = %self.source, partition = p, start = ?offset, "reading kafka partition");
            let start = match offset {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let assigned = Event::Assigned {
                partition: p,
                start,
            };
            if self.events.blocking_send(assigned).is_err() {
                return Ok(());
            }
        }
        self.stats.running();
        Ok(())
    }

    /// Polls until a chunk is full, has lingered long enough, or nothing more is queued.
    fn poll_chunk(&self, consumer: &SourceConsumer) -> Vec<OwnedRecord> {
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
                Some(Err(e)) => {
                    let message = e.to_string();
                    if self.stats.retrying(&message) {
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
            self.stats.running();
        }
        records
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
            if !self.workers.submit(job) {
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
