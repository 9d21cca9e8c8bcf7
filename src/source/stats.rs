//! What a running source reports: per-partition counters, offsets, lag, watermarks, status and
//! the last error. Read by `sluice_catalog.sources` and `/metrics`; written by the source's
//! runner and connector.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    /// The connector hit an error (broker down, …) and is retrying; see `last_error`.
    Retrying,
    /// Its deduplication keys do not fit the memory pool: takes no input until the pool has
    /// room; see `last_error`.
    Stalled,
    /// A bounded source read everything.
    Finished,
    /// Stopped for good, e.g. by `bad_data = 'fail'`; see `last_error`.
    Failed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Starting,
        Status::Running,
        Status::Retrying,
        Status::Stalled,
        Status::Finished,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Retrying => "retrying",
            Status::Stalled => "stalled",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionStats {
    pub rows_in: u64,
    pub bytes_in: u64,
    pub rejected: u64,
    pub late: u64,
    /// Rows dropped by `dedup.key` as repeats of a key seen within `dedup.ttl`.
    pub duplicates: u64,
    /// The next offset the source will read (one past the last record taken in).
    pub next_offset: Option<i64>,
    /// The broker's high watermark: the offset the next produced record will get.
    pub high_watermark: Option<i64>,
    /// This partition's event-time watermark, epoch microseconds.
    pub watermark_us: Option<i64>,
    pub idle: bool,
    /// Why the partition is not read (its offset is out of the broker's range), until
    /// `ALTER SOURCE … RESET OFFSETS`.
    pub stopped: Option<String>,
    /// When the partition's leader last answered (Kafka), epoch microseconds.
    pub last_fetch_us: Option<i64>,
}

impl PartitionStats {
    /// Records the broker has that the source has not read yet; negative when the broker holds
    /// fewer than the source has read (the topic was re-created or restored).
    pub fn lag(&self) -> Option<i64> {
        Some(self.high_watermark? - self.next_offset.unwrap_or(0))
    }
}

/// A consistent copy of a source's numbers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub source: String,
    pub connector: String,
    pub status: Status,
    pub last_error: Option<String>,
    pub watermark_us: Option<i64>,
    /// Bytes its deduplication keys hold.
    pub state_bytes: u64,
    pub partitions: BTreeMap<i32, PartitionStats>,
    /// Errors it hit: each new cause of `retrying`, and failing (`sluicedb_source_errors_total`).
    pub errors: u64,
    /// Why checkpoints fail, while they do: what the source reads is not durable.
    checkpoint_error: Option<String>,
}

#[derive(Debug)]
pub struct SourceStats {
    inner: Mutex<Snapshot>,
}

impl SourceStats {
    pub fn new(source: &str, connector: &str) -> Self {
        SourceStats {
            inner: Mutex::new(Snapshot {
                source: source.to_string(),
                connector: connector.to_string(),
                status: Status::Starting,
                last_error: None,
                watermark_us: None,
                state_bytes: 0,
                partitions: BTreeMap::new(),
                errors: 0,
                checkpoint_error: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Its numbers; while checkpoints fail, a running source shows as `retrying` with their
    /// error (its own status and error come back when they commit).
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.with(|s| s.clone());
        if let Some(error) = snapshot.checkpoint_error.take()
            && matches!(snapshot.status, Status::Starting | Status::Running)
        {
            snapshot.status = Status::Retrying;
            snapshot.last_error = Some(error);
        }
        snapshot
    }

    /// Checkpoints fail with `error`, or (`None`) commit again.
    pub fn checkpoints_failing(&self, error: Option<&str>) {
        self.with(|s| {
            s.errors += u64::from(s.checkpoint_error.is_none() && error.is_some());
            s.checkpoint_error = error.map(str::to_string);
        });
    }

    pub fn status(&self) -> Status {
        self.with(|s| s.status)
    }

    /// Changes one partition's numbers.
    pub fn partition(&self, partition: i32, f: impl FnOnce(&mut PartitionStats)) {
        self.with(|s| f(s.partitions.entry(partition).or_default()))
    }

    pub fn set_watermark(&self, watermark_us: Option<i64>) {
        self.with(|s| s.watermark_us = watermark_us);
    }

    pub fn set_state_bytes(&self, bytes: usize) {
        self.with(|s| s.state_bytes = bytes as u64);
    }

    /// Moves in or out of `stalled` (a failed or finished source stays as it is). Returns
    /// whether it moved.
    pub fn stalled(&self, reason: Option<&str>) -> bool {
        self.with(|s| match (reason, s.status) {
            (Some(reason), Status::Starting | Status::Running | Status::Retrying) => {
                s.status = Status::Stalled;
                s.last_error = Some(reason.to_string());
                true
            }
            (None, Status::Stalled) => {
                s.status = Status::Running;
                s.last_error = None;
                true
            }
            _ => false,
        })
    }

    /// The connector works (again): clears a retrying state and its error.
    pub fn running(&self) {
        self.with(|s| {
            if matches!(s.status, Status::Starting | Status::Retrying) {
                s.status = Status::Running;
                s.last_error = None;
            }
        });
    }

    /// The cause of `error` is gone: back to `running` unless another error came since.
    pub fn recovered(&self, error: &str) {
        self.with(|s| {
            if s.status == Status::Retrying && s.last_error.as_deref() == Some(error) {
                s.status = Status::Running;
                s.last_error = None;
            }
        });
    }

    /// A transient error; the connector retries. Returns whether it is new (worth a log line).
    pub fn retrying(&self, error: &str) -> bool {
        self.with(|s| {
            if s.status == Status::Failed {
                return false;
            }
            let new = s.status != Status::Retrying || s.last_error.as_deref() != Some(error);
            s.status = Status::Retrying;
            s.last_error = Some(error.to_string());
            s.errors += u64::from(new);
            new
        })
    }

    pub fn failed(&self, error: &str) {
        self.with(|s| {
            s.status = Status::Failed;
            s.last_error = Some(error.to_string());
            s.errors += 1;
        });
    }

    pub fn finished(&self) {
        self.with(|s| {
            if s.status != Status::Failed {
                s.status = Status::Finished;
            }
        });
    }
}
