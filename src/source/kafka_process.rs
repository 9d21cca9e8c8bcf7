//! A Kafka source's reader in a process of its own (`sluicedb kafka-reader`), supervised by
//! the server.
//!
//! librdkafka is C, and a crash in it ends the process it runs in: tansu's answer to a fetch
//! of a deleted topic (a zero topic id with a current leader) made librdkafka dereference a
//! NULL topic name, and the whole server died with SIGSEGV — every view, every connection. In
//! a process of its own the reader takes only itself down: its source shows `retrying` with
//! the reason, and the supervisor starts a new reader at the offsets the source has taken in,
//! so nothing is lost or read twice (the reader skips what it already handed over, as after
//! any reconnect).
//!
//! The reader is [`KafkaReader`] as on a thread, with a [`ReaderOutput`] that writes to the
//! pipe. The pipe carries frames: a tag byte, a little-endian u32 length, a body — records in
//! a compact binary form ([`encode_records`]), everything else JSON. The server writes the
//! start (source, settings, offsets) and later resets to the reader's stdin; closing stdin
//! stops it. The reader logs to the server's stderr.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kafka::{
    KafkaReader, LocalOutput, ReaderEvent, ReaderOutput, ResetRequest, ResetTo, StatusChange,
};
use super::options::KafkaSettings;
use super::stats::SourceStats;
use super::workers::{Job, OwnedRecord};

const TAG_START: u8 = 1;
const TAG_RESET: u8 = 2;
const TAG_RECORDS: u8 = 3;
const TAG_EVENT: u8 = 4;
const TAG_STATUS: u8 = 5;
/// Larger than any chunk of records (4 096 records of at most librdkafka's message size).
const FRAME_MAX: usize = 1 << 31;
/// How often the supervisor looks at the stop flag and for resets while the reader is quiet.
const TICK: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How the server runs reader processes: its own binary, and the log filter they use.
#[derive(Debug, Clone)]
pub struct ReaderProcess {
    pub binary: PathBuf,
    pub log: String,
}

/// What a reader process is started with.
#[derive(Debug, Serialize, Deserialize)]
struct Start {
    source: String,
    settings: KafkaSettings,
    committed: BTreeMap<i32, i64>,
    log: String,
}

fn write_frame(out: &mut impl Write, tag: u8, body: &[u8]) -> io::Result<()> {
    let length = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&[tag])?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// The next frame; `None` when the other side closed the pipe.
fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    Ok(Some((header[0], body)))
}

fn json_frame(out: &mut impl Write, tag: u8, value: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(out, tag, &body)
}

/// A partition's records: partition, next offset, count, then per record its offset, timestamp
/// and key and payload (each absent, or a length and bytes).
fn encode_records(job: &Job) -> Vec<u8> {
    let size: usize = job
        .records
        .iter()
        .map(|r| 30 + r.key.as_ref().map_or(0, Vec::len) + r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(16 + size);
    out.extend_from_slice(&job.partition.to_le_bytes());
    out.extend_from_slice(&job.next_offset.to_le_bytes());
    out.extend_from_slice(&(job.records.len() as u32).to_le_bytes());
    let bytes = |out: &mut Vec<u8>, value: &Option<Vec<u8>>| match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    };
    for record in &job.records {
        out.extend_from_slice(&record.offset.to_le_bytes());
        match record.timestamp_ms {
            None => out.push(0),
            Some(ms) => {
                out.push(1);
                out.extend_from_slice(&ms.to_le_bytes());
            }
        }
        bytes(&mut out, &record.key);
        bytes(&mut out, &record.payload);
    }
    out
}

/// The job [`encode_records`] wrote; `None` for a malformed body.
fn decode_records(body: &[u8]) -> Option<Job> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    let partition = i32::from_le_bytes(take(4)?.try_into().ok()?);
    let next_offset = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut records = Vec::with_capacity(count.min(body.len() / 10));
    for _ in 0..count {
        let offset = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let timestamp_ms = match take(1)?[0] {
            0 => None,
            _ => Some(i64::from_le_bytes(take(8)?.try_into().ok()?)),
        };
        let mut bytes = || -> Option<Option<Vec<u8>>> {
            match take(1)?[0] {
                0 => Some(None),
                _ => {
                    let length = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                    Some(Some(take(length)?.to_vec()))
                }
            }
        };
        let key = bytes()?;
        let payload = bytes()?;
        records.push(OwnedRecord {
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
        });
    }
    (at == body.len()).then_some(Job {
        partition,
        records,
        next_offset,
    })
}

/// The reader process's side of the pipe. Status changes are applied to numbers of its own
/// first, and only news is sent.
struct PipeOutput {
    pipe: Mutex<BufWriter<io::Stdout>>,
    stats: SourceStats,
}

impl PipeOutput {
    fn send(&self, write: impl FnOnce(&mut BufWriter<io::Stdout>) -> io::Result<()>) -> bool {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        write(&mut pipe).is_ok()
    }
}

impl ReaderOutput for PipeOutput {
    fn records(&self, job: Job) -> bool {
        let body = encode_records(&job);
        self.send(|pipe| write_frame(pipe, TAG_RECORDS, &body))
    }

    fn event(&self, event: ReaderEvent) -> bool {
        self.send(|pipe| json_frame(pipe, TAG_EVENT, &event))
    }

    fn status(&self, change: StatusChange) -> bool {
        let news = change.clone().apply(&self.stats);
        if news {
            self.send(|pipe| json_frame(pipe, TAG_STATUS, &change));
        }
        news
    }
}

/// The `sluicedb kafka-reader` process: reads its start from stdin, then reads the topic
/// until stdin closes.
pub fn serve_reader() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let start: Start = match read_frame(&mut stdin)? {
        Some((TAG_START, body)) => serde_json::from_slice(&body).map_err(io::Error::other)?,
        _ => {
            return Err(io::Error::other(
                "a kafka reader must be started by sluicedb",
            ));
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&start.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(io::stderr)
        .try_init();
    drop(stdin);
    let stop = Arc::new(AtomicBool::new(false));
    let reset = ResetRequest::default();
    {
        let (stop, reset) = (Arc::clone(&stop), Arc::clone(&reset));
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            while let Ok(Some((tag, body))) = read_frame(&mut stdin) {
                if tag == TAG_RESET
                    && let Ok(to) = serde_json::from_slice::<ResetTo>(&body)
                {
                    *reset.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let out = Arc::new(PipeOutput {
        pipe: Mutex::new(BufWriter::new(io::stdout())),
        stats: SourceStats::new(&start.source, "kafka"),
    });
    KafkaReader {
        source: start.source,
        settings: start.settings,
        committed: start.committed,
        out,
        stop,
        reset,
    }
    .run();
    Ok(())
}

/// The server's side: runs a reader process for a source and starts a new one when it ends
/// by itself, from the offsets handed over so far.
pub struct Supervisor {
    pub process: ReaderProcess,
    pub source: String,
    pub settings: KafkaSettings,
    /// Next offsets committed by the source; then, per partition, the next offset after what
    /// readers handed over.
    pub committed: BTreeMap<i32, i64>,
    pub local: LocalOutput,
    pub stop: Arc<AtomicBool>,
    pub reset: ResetRequest,
}

/// Why a reader process ended.
enum Ended {
    /// The source stopped, or is gone: no new reader.
    Stopped,
    /// The reader reported the source failed for good.
    Failed,
    /// By itself (a crash): a new one starts.
    Exited(String),
}

impl Supervisor {
    /// Runs until the source stops or fails.
    pub fn run(mut self) {
        let mut backoff = RESTART_BACKOFF_MIN;
        while !self.stop.load(Ordering::Relaxed) {
            let started = std::time::Instant::now();
            let ended = match self.spawn() {
                Ok((child, stdin)) => self.supervise(child, stdin),
                Err(e) => Ended::Exited(format!("cannot start its kafka reader process: {e}")),
            };
            let reason = match ended {
                Ended::Stopped | Ended::Failed => return,
                Ended::Exited(reason) => reason,
            };
            // A reader that ran a good while before it ended starts again soon.
            if started.elapsed() > RESTART_BACKOFF_MAX {
                backoff = RESTART_BACKOFF_MIN;
            }
            let message = format!("the kafka reader of this source {reason}; starting it again");
            if self.local.stats.retrying(&message) {
                tracing::error!(source = %self.source, "{message}");
            }
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(TICK);
            }
            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        }
    }

    fn spawn(&self) -> io::Result<(Child, BufWriter<ChildStdin>)> {
        let mut child = Command::new(&self.process.binary)
            .args([
                "kafka-reader",
                "source",
                &self.source,
                "topic",
                &self.settings.topic,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut stdin = BufWriter::new(
            child
                .stdin
                .take()
                .ok_or_else(|| io::Error::other("no stdin"))?,
        );
        let start = Start {
            source: self.source.clone(),
            settings: self.settings.clone(),
            committed: self.committed.clone(),
            log: self.process.log.clone(),
        };
        if let Err(e) = json_frame(&mut stdin, TAG_START, &start) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok((child, stdin))
    }

    /// Passes what the reader sends on to the source until the reader ends.
    fn supervise(&mut self, mut child: Child, mut stdin: BufWriter<ChildStdin>) -> Ended {
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Ended::Exited("has no pipe".into());
        };
        // A frame or two in flight: a source that takes nothing in holds the reader back.
        let (frames, received) = sync_channel(2);
        std::thread::spawn(move || {
            let mut stdout = BufReader::with_capacity(1 << 20, stdout);
            while let Ok(Some(frame)) = read_frame(&mut stdout) {
                if frames.send(frame).is_err() {
                    return;
                }
            }
        });
        let mut failed = false;
        let outcome = loop {
            match received.recv_timeout(TICK) {
                Ok((tag, body)) => {
                    if !self.pass_on(tag, &body, &mut failed) {
                        break Ended::Stopped;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.stop.load(Ordering::Relaxed) {
                        break Ended::Stopped;
                    }
                    let reset = self.reset.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(to) = reset {
                        let _ = json_frame(&mut stdin, TAG_RESET, &to);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break Ended::Exited(String::new()),
            }
        };
        drop(stdin);
        if !matches!(outcome, Ended::Exited(_)) {
            let _ = child.kill();
        }
        let status = child.wait();
        match (outcome, failed) {
            (Ended::Stopped, _) => Ended::Stopped,
            (_, true) => Ended::Failed,
            _ => Ended::Exited(match status {
                Ok(status) => format!("ended ({status})"),
                Err(e) => format!("ended ({e})"),
            }),
        }
    }

    /// Hands one frame to the source; false once the source is gone.
    fn pass_on(&mut self, tag: u8, body: &[u8], failed: &mut bool) -> bool {
        match tag {
            TAG_RECORDS => match decode_records(body) {
                Some(job) => {
                    self.committed.insert(job.partition, job.next_offset);
                    self.local.records(job)
                }
                None => {
                    tracing::error!(source = %self.source, "kafka reader sent malformed records");
                    true
                }
            },
            TAG_EVENT => match serde_json::from_slice::<ReaderEvent>(body) {
                Ok(event) => {
                    match &event {
                        ReaderEvent::Assigned {
                            partition,
                            start: Some(start),
                        } => {
                            self.committed.entry(*partition).or_insert(*start);
                        }
                        ReaderEvent::Repositioned { partition, next } => {
                            self.committed.insert(*partition, *next);
                        }
                        ReaderEvent::Failed(_) => *failed = true,
                        ReaderEvent::Assigned { .. } => {}
                    }
                    self.local.event(event)
                }
                Err(e) => {
                    tracing::error!(source = %self.source, error = %e, "kafka reader sent a malformed event");
                    true
                }
            },
            TAG_STATUS => {
                if let Ok(change) = serde_json::from_slice::<StatusChange>(body) {
                    self.local.status(change);
                }
                true
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_pipe_and_malformed_ones_are_refused() {
        let job = Job {
            partition: 3,
            next_offset: 12,
            records: vec![
                OwnedRecord {
                    partition: 3,
                    offset: 10,
                    timestamp_ms: Some(1_767_225_600_000),
                    key: None,
                    payload: Some(br#"{"id": 1}"#.to_vec()),
                },
                OwnedRecord {
                    partition: 3,
                    offset: 11,
                    timestamp_ms: None,
                    key: Some(b"k".to_vec()),
                    payload: None,
                },
            ],
        };
        let body = encode_records(&job);
        let back = decode_records(&body).unwrap();
        assert_eq!((back.partition, back.next_offset), (3, 12));
        assert_eq!(back.records.len(), 2);
        assert_eq!(back.records[0].payload, job.records[0].payload);
        assert_eq!(back.records[0].timestamp_ms, job.records[0].timestamp_ms);
        assert_eq!(back.records[1].key, job.records[1].key);
        assert_eq!(back.records[1].payload, None);
        for cut in 0..body.len() {
            assert!(decode_records(&body[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_records(&longer).is_none());

        let mut pipe = Vec::new();
        write_frame(&mut pipe, TAG_RECORDS, &body).unwrap();
        let (tag, read) = read_frame(&mut pipe.as_slice()).unwrap().unwrap();
        assert_eq!((tag, read), (TAG_RECORDS, body));
        assert!(read_frame(&mut [].as_slice()).unwrap().is_none());
    }
}
