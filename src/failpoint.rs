//! Crash points for crash tests: with `SLUICEDB_CRASH_AT=<point>:<n>` the process aborts — as
//! abruptly as `kill -9` — the `n`th time it reaches `<point>`. Unset, a check costs one
//! `OnceLock` read. The points sit where a crash is hardest to survive:
//!
//! - `checkpoint.written`: every participant wrote its files, the manifest is not committed;
//! - `checkpoint.committed`: the manifest is committed, participants still hold the rows;
//! - `compaction.written`: a compacted file is written, the manifest naming it is not;
//! - `compaction.committed`: the manifest naming it is committed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Aborts the process if this is the configured crash point and its configured hit.
pub fn crash_point(point: &str) {
    let target = TARGET.get_or_init(|| {
        let text = std::env::var("SLUICEDB_CRASH_AT").ok()?;
        let (name, n) = text.rsplit_once(':').unwrap_or((text.as_str(), "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    });
    if let Some((name, n)) = target
        && name == point
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("SLUICEDB_CRASH_AT: crashing at {point} (hit {n})");
        std::process::abort();
    }
}
