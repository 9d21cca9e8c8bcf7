//! Sources: streams of events from Kafka or the built-in generator, decoded into Arrow batches
//! of the source's schema, with event-time watermarks, counted rejections and late rows.
//!
//! ```text
//! kafka.rs (thread: rdkafka poll) → workers.rs ─┐  Event::Chunk       runner.rs (task)
//!   (decode.rs on one thread per core)         │
//!                                              ├──────────────────►  watermark.rs, stats.rs,
//! datagen.rs (task: seeded Arrow batches) ─────┘  bounded channel     pending rows → storage
//! ```
//! A connector produces [`Chunk`]s of one partition in offset order; the runner drops duplicate
//! keys ([`dedup`]), tracks the watermark, counts, keeps retained rows and rejected records
//! pending, and writes them with the offsets they reach at each checkpoint (see [`runner`],
//! [`crate::checkpoint`]). [`Sources`] owns the running sources.

pub mod changelog;
pub mod datagen;
pub mod decode;
pub mod dedup;
mod flat_json;
pub mod json_members;
pub mod kafka;
pub mod kafka_process;
pub mod kafka_properties;
pub mod options;
pub mod runner;
pub mod stats;
pub mod tap;
pub mod watermark;
pub mod workers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;

use crate::catalog::source::SourceDef;
use tokio::sync::Notify;

use crate::storage::{ReaderPosition, Storage};
use crate::stream::feed::{Feed, Feeds};
use crate::stream::state_memory::StatePools;
pub use runner::{Reader, SourceHandle};

/// A record that could not be decoded, kept whole.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub partition: i32,
    pub offset: i64,
    pub raw: Vec<u8>,
    pub error: String,
}

/// Decoded rows of one partition, in offset order, and the records that failed.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub partition: i32,
    pub batch: RecordBatch,
    pub rejected: Vec<Rejected>,
    /// The offset after the last record of the chunk.
    pub next_offset: i64,
    /// Each row's record offset, where a record is one row or one rejection (JSON events):
    /// what lets a view's reader that joins the source's take only rows it has not read.
    pub row_offsets: Option<Arc<[i64]>>,
    /// Records read, decoded or not.
    pub records: u64,
    pub bytes: u64,
}

/// What a connector tells the runner.
#[derive(Debug)]
pub enum Event {
    /// A partition is being read, from `start` when that is a known offset; it holds the
    /// watermark until it shows data or idles.
    Assigned {
        partition: i32,
        start: Option<i64>,
    },
    Chunk(Chunk),
    /// A stopped partition is read again from `next`, as `ALTER SOURCE … RESET OFFSETS` said.
    Repositioned {
        partition: i32,
        next: i64,
    },
    /// A bounded source read everything.
    Finished,
    /// The connector cannot go on.
    Failed(String),
}

/// The running sources, by name.
#[derive(Debug)]
pub struct Sources {
    storage: Arc<Storage>,
    feeds: Arc<Feeds>,
    surroundings: Surroundings,
    running: Mutex<BTreeMap<String, Arc<SourceHandle>>>,
}

/// What the database gives every source's runner.
#[derive(Debug, Clone)]
pub struct Surroundings {
    /// Signalled by a runner whose pending rows are full, to ask for a checkpoint.
    pub checkpoint_requested: Arc<Notify>,
    /// Where deduplication keys are held (the queries' pool).
    pub memory: StatePools,
    /// How Kafka readers run: each in a process of its own, or (`None`, SluiceDB used as a
    /// library) on a thread of this one.
    pub kafka_reader: Option<kafka_process::ReaderProcess>,
}

impl Sources {
    pub fn new(storage: Arc<Storage>, feeds: Arc<Feeds>, surroundings: Surroundings) -> Self {
        Sources {
            storage,
            feeds,
            surroundings,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts a reader of `def` on behalf of something other than the source itself.
    pub fn start_reader(
        &self,
        def: SourceDef,
        feed: Arc<Feed>,
        reader: Reader,
        resume: ReaderPosition,
        tap: Option<tap::TapPoint>,
    ) -> Arc<SourceHandle> {
        SourceHandle::start(
            def,
            Arc::clone(&self.storage),
            feed,
            reader,
            resume,
            tap,
            &self.surroundings,
        )
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<SourceHandle>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every source of the committed catalog, resuming at its committed offsets. A
    /// source that cannot start is logged and shown as failed; the others run.
    pub fn start_all(&self) {
        for state in self.storage.manifest().sources.values() {
            self.start(state.def.clone());
        }
    }

    /// Starts one source (already committed to the catalog) where its last checkpoint left it.
    pub fn start(&self, def: SourceDef) {
        let name = def.name.clone();
        let feed = self.feeds.get(&name);
        let resume = self
            .storage
            .manifest()
            .source(&name)
            .map(|s| ReaderPosition {
                offsets: s.offsets.clone(),
                dedup: s.dedup.clone(),
            })
            .unwrap_or_default();
        let handle = self.start_reader(def, feed, Reader::Shared, resume, None);
        if let Some(old) = self.running().insert(name, handle) {
            old.abandon();
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<SourceHandle>> {
        self.running().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<SourceHandle>> {
        self.running().values().cloned().collect()
    }

    /// Stops a dropped source without committing anything more.
    pub fn remove(&self, name: &str) {
        if let Some(handle) = self.running().remove(name) {
            handle.abandon();
        }
    }

    /// Stops every source (the last checkpoint was taken before).
    pub async fn shutdown(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.running()).into_values().collect();
        for handle in handles {
            handle.stop().await;
        }
    }
}
