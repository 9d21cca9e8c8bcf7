//! Taps: a view's own reader of a source that keeps no events stops reading the topic a second
//! time once it has caught up with the source's reader.
//!
//! A view over such a source reads the topic itself, from its startup position or its last
//! checkpoint, so it can backfill the topic's history; the source's reader reads the same topic
//! for the source (status, lag, rejected records). Read twice, the topic costs the broker and
//! the decoders twice. So once the view's reader has taken in, for every partition the source's
//! reader has taken in, at least as far, it *joins*: under the source's pending lock (the one
//! the source takes chunks in under) it subscribes to every chunk the source takes in from then
//! on, stops its own Kafka reader and takes those chunks instead. Each of them starts at or
//! before where the view's reader stands, and it drops the rows it already has by their offsets
//! ([`Chunk::row_offsets`]): nothing is missed or taken twice. Chunks reach it as decoded,
//! before the source's deduplication, and so do the partitions assigned to the source (they
//! hold its watermark back until they show data, as they hold the source's). It deduplicates,
//! tracks watermarks and checkpoints its offsets as before, so after a restart it reads from
//! its own offsets and joins again.
//!
//! While a view's reader catches up and nothing else follows the source's reader, the source's
//! reader waits (for at most [`HOLD_MAX`]), so that the topic is read once, not twice, while
//! the view backfills. A joined reader is followed like any view of a source: a slow one slows
//! the source down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::runner::Pending;
use super::{Chunk, Event};

/// The longest a source's reader waits for a view's reader to catch up.
pub const HOLD_MAX: Duration = Duration::from_secs(60);
/// Chunks in flight to a joined reader.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The source's side: the readers that joined, kept with its pending rows (under their lock).
#[derive(Debug, Default)]
pub struct Joined(Vec<mpsc::Sender<Event>>);

impl Joined {
    /// Joins a reader that has taken in up to `mine` (next offsets by partition) to a source
    /// that has taken in up to `source`, if it stands at least as far in every partition.
    pub fn join(
        &mut self,
        source: &BTreeMap<i32, i64>,
        mine: &BTreeMap<i32, i64>,
    ) -> Option<mpsc::Receiver<Event>> {
        let caught_up = source
            .iter()
            .all(|(partition, next)| mine.get(partition).is_some_and(|m| m >= next));
        if !caught_up {
            return None;
        }
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        self.0.push(sender);
        Some(receiver)
    }

    /// The joined readers still there.
    pub fn recipients(&mut self) -> Vec<mpsc::Sender<Event>> {
        self.0.retain(|s| !s.is_closed());
        self.0.clone()
    }
}

/// The views' readers catching up with one source's reader.
#[derive(Debug, Default)]
pub struct Catching {
    readers: usize,
    hold_until: Option<Instant>,
}

/// Where a view's reader joins a source's reader.
#[derive(Debug, Clone)]
pub struct TapPoint {
    pub(super) pending: Arc<tokio::sync::Mutex<Pending>>,
    pub(super) catching: Arc<Mutex<Catching>>,
}

/// Whether the source's reader waits for views' readers catching up.
pub fn holds_back(catching: &Mutex<Catching>, now: Instant) -> bool {
    let catching = catching.lock().unwrap_or_else(|e| e.into_inner());
    catching.readers > 0 && catching.hold_until.is_some_and(|until| now < until)
}

impl TapPoint {
    /// Counts a view's reader as catching up until it joins or goes away.
    pub fn catch_up(self) -> CatchingUp {
        {
            let mut catching = self.catching.lock().unwrap_or_else(|e| e.into_inner());
            catching.readers += 1;
            catching.hold_until = Some(Instant::now() + HOLD_MAX);
        }
        CatchingUp { point: self }
    }
}

/// A view's reader catching up with its source's.
#[derive(Debug)]
pub struct CatchingUp {
    point: TapPoint,
}

impl CatchingUp {
    /// What the source takes in from now on (its chunks and newly assigned partitions) and
    /// the partitions assigned to it so far, if the reader (having taken in up to `mine`) has
    /// caught up.
    pub async fn join(
        &self,
        mine: &BTreeMap<i32, i64>,
    ) -> Option<(mpsc::Receiver<Event>, BTreeSet<i32>)> {
        self.point.pending.lock().await.join(mine)
    }
}

impl Drop for CatchingUp {
    fn drop(&mut self) {
        let mut catching = self
            .point
            .catching
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        catching.readers -= 1;
    }
}

/// The rows of a chunk from the source at or after `next` (the reader's next offset in the
/// chunk's partition); `None` if it has them all.
pub fn unread(mut chunk: Chunk, next: Option<i64>) -> Option<Chunk> {
    let Some(next) = next else {
        return Some(chunk);
    };
    if chunk.next_offset <= next {
        return None;
    }
    let offsets = chunk.row_offsets.as_ref()?;
    let first = offsets.partition_point(|&offset| offset < next);
    if first > 0 {
        chunk.batch = chunk.batch.slice(first, offsets.len() - first);
        chunk.row_offsets = Some(offsets[first..].into());
    }
    Some(chunk)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};

    use super::*;

    fn chunk(offsets: &[i64], next_offset: i64) -> Chunk {
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(offsets.to_vec())) as _)])
                .unwrap();
        Chunk {
            partition: 0,
            batch,
            rejected: Vec::new(),
            next_offset,
            row_offsets: Some(offsets.into()),
            records: offsets.len() as u64,
            bytes: 0,
        }
    }

    fn rows(chunk: &Chunk) -> Vec<i64> {
        let column = chunk.batch.column(0).as_any().downcast_ref::<Int64Array>();
        column.unwrap().values().to_vec()
    }

    #[test]
    fn a_joined_reader_takes_only_rows_it_has_not_read() {
        // Offsets 12 and 15 were rejected records: no rows.
        let offsets = [10, 11, 13, 14, 16];
        assert_eq!(rows(&unread(chunk(&offsets, 17), None).unwrap()), offsets);
        assert_eq!(
            rows(&unread(chunk(&offsets, 17), Some(10)).unwrap()),
            offsets
        );
        assert_eq!(
            rows(&unread(chunk(&offsets, 17), Some(12)).unwrap()),
            [13, 14, 16]
        );
        assert_eq!(rows(&unread(chunk(&offsets, 17), Some(16)).unwrap()), [16]);
        assert!(unread(chunk(&offsets, 17), Some(17)).is_none());
        assert!(unread(chunk(&offsets, 17), Some(40)).is_none());
        // A chunk ending in rejected records still moves the reader's offset on.
        let tail = unread(chunk(&offsets, 20), Some(17)).unwrap();
        assert_eq!((tail.batch.num_rows(), tail.next_offset), (0, 20));
        // Past a gap (the source's offsets were reset ahead), the source's rows are taken.
        assert_eq!(
            rows(&unread(chunk(&offsets, 17), Some(3)).unwrap()),
            offsets
        );
    }

    #[test]
    fn a_reader_joins_only_once_it_stands_as_far_as_the_source() {
        let mut joined = Joined::default();
        let source = BTreeMap::from([(0, 100), (1, 50)]);
        let behind = BTreeMap::from([(0, 120), (1, 49)]);
        assert!(joined.join(&source, &behind).is_none());
        let partition_unseen = BTreeMap::from([(0, 120)]);
        assert!(joined.join(&source, &partition_unseen).is_none());
        let ahead = BTreeMap::from([(0, 100), (1, 70), (2, 5)]);
        let receiver = joined.join(&source, &ahead);
        assert!(receiver.is_some());
        assert_eq!(joined.recipients().len(), 1);
        drop(receiver);
        assert!(joined.recipients().is_empty());
    }
}
