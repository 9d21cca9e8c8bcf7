//! Decode workers: a Kafka source decodes its partitions on several threads, so one source can
//! use every core. A partition always goes to the same worker, which keeps its chunks in offset
//! order; each worker has its own decoder and sends its chunks straight to the runner. The job
//! queues are short and bounded, so a busy worker slows the consumer down rather than records
//! piling up.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use tokio::sync::mpsc;

use super::changelog::ChangelogDecoder;
use super::decode::{Decoded, JsonDecoder, Record};
use super::options::{Format, SourceSettings};
use super::{Chunk, Event, Rejected};
use crate::catalog::source::SourceDef;
use crate::error::Result;

/// Jobs waiting per worker.
const JOBS_IN_FLIGHT: usize = 2;

/// Records of one partition, in offset order, to decode.
pub struct Job {
    pub partition: i32,
    pub records: Vec<OwnedRecord>,
    pub next_offset: i64,
}

/// A record copied out of librdkafka's buffer.
pub struct OwnedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

pub struct DecodeWorkers {
    queues: Vec<SyncSender<Job>>,
}

impl DecodeWorkers {
    /// Starts one worker per core (at least one).
    pub fn start(source: &SourceDef, events: &mpsc::Sender<Event>) -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut queues = Vec::with_capacity(workers);
        for n in 0..workers {
            let (queue, jobs) = sync_channel::<Job>(JOBS_IN_FLIGHT);
            let mut decoder = Decoder::new(source).map_err(std::io::Error::other)?;
            let events = events.clone();
            std::thread::Builder::new()
                .name(format!("decode-{}-{n}", source.name))
                .spawn(move || {
                    for job in jobs {
                        if events.blocking_send(decode(&mut decoder, job)).is_err() {
                            return;
                        }
                    }
                })?;
            queues.push(queue);
        }
        Ok(DecodeWorkers { queues })
    }

    /// Hands a partition's records to its worker, waiting for room. False once the workers
    /// are gone (the runner stopped).
    pub fn submit(&self, job: Job) -> bool {
        let worker = job.partition.unsigned_abs() as usize % self.queues.len();
        self.queues[worker].send(job).is_ok()
    }
}

/// A source's records as events, or a keyed source's as writes.
enum Decoder {
    Events(Box<JsonDecoder>),
    Changes(Box<ChangelogDecoder>),
}

impl Decoder {
    fn new(source: &SourceDef) -> Result<Self> {
        match SourceSettings::from_def(source)?.format {
            Format::Json => Ok(Decoder::Events(Box::new(JsonDecoder::new(source)))),
            format => Ok(Decoder::Changes(Box::new(ChangelogDecoder::new(
                source, format,
            )?))),
        }
    }

    fn decode(&mut self, partition: i32, records: &[Record<'_>]) -> Result<Decoded> {
        match self {
            Decoder::Events(d) => d.decode(partition, records),
            Decoder::Changes(d) => d.decode(partition, records),
        }
    }
}

fn decode(decoder: &mut Decoder, job: Job) -> Event {
    let records: Vec<Record<'_>> = job
        .records
        .iter()
        .map(|r| Record {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            payload: r.payload.as_deref(),
        })
        .collect();
    let bytes = records
        .iter()
        .map(|r| r.payload.map_or(0, <[u8]>::len) as u64)
        .sum();
    match decoder.decode(job.partition, &records) {
        Ok(decoded) => Event::Chunk(Chunk {
            partition: job.partition,
            row_offsets: match decoder {
                Decoder::Events(_) => Some(row_offsets(&records, &decoded.rejected))
                    .filter(|offsets| offsets.len() == decoded.batch.num_rows()),
                Decoder::Changes(_) => None,
            },
            batch: decoded.batch,
            rejected: decoded.rejected,
            next_offset: job.next_offset,
            records: records.len() as u64,
            bytes,
        }),
        Err(e) => Event::Failed(format!("cannot decode partition {}: {e}", job.partition)),
    }
}

/// The offsets of the records that became rows: all but the rejected ones (both in offset
/// order), as an event decoder makes one row or one rejection of each record.
fn row_offsets(records: &[Record<'_>], rejected: &[Rejected]) -> Arc<[i64]> {
    let mut rejected = rejected.iter().map(|r| r.offset).peekable();
    records
        .iter()
        .map(|r| r.offset)
        .filter(|&offset| {
            let bad = rejected.next_if_eq(&offset).is_some();
            !bad
        })
        .collect()
}
