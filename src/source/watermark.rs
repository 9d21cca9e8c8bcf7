//! Event time of a source: per-partition watermarks, their minimum, idle partitions, events
//! from the future, and late rows (DESIGN.md §3).
//!
//! A partition's watermark is the largest event time it has shown minus the declared delay. The
//! source's watermark is the minimum over its active partitions; a partition that has shown
//! nothing for `idle_timeout` stops holding it back until it shows something again. An event
//! more than `max_future_skew` ahead of the wall clock does not move any watermark, so one bad
//! clock cannot close every window. The source watermark never goes back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Watermark state of one source. Times are epoch microseconds.
#[derive(Debug)]
pub struct WatermarkTracker {
    delay_us: i64,
    idle_timeout: Duration,
    max_future_skew_us: i64,
    partitions: BTreeMap<i32, PartitionClock>,
    current: Option<i64>,
}

#[derive(Debug, Clone)]
struct PartitionClock {
    max_event: Option<i64>,
    last_active: Instant,
}

/// What one chunk of rows did to the watermark.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Rows whose event time was already behind the source watermark when they arrived.
    pub late: u64,
    /// Rows too far in the future to move the watermark.
    pub future: u64,
}

impl WatermarkTracker {
    pub fn new(delay_ms: i64, idle_timeout: Duration, max_future_skew: Duration) -> Self {
        WatermarkTracker {
            delay_us: delay_ms.saturating_mul(1_000),
            idle_timeout,
            max_future_skew_us: i64::try_from(max_future_skew.as_micros()).unwrap_or(i64::MAX),
            partitions: BTreeMap::new(),
            current: None,
        }
    }

    /// A partition being read: until it shows an event or idles out, it holds the watermark.
    pub fn assign(&mut self, partition: i32, now: Instant) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            max_event: None,
            last_active: now,
        });
    }

    /// Takes in the event times of one chunk of `partition`'s rows.
    pub fn observe(
        &mut self,
        partition: i32,
        event_times: impl IntoIterator<Item = i64>,
        now: Instant,
        wall_clock_us: i64,
    ) -> Observed {
        let horizon = wall_clock_us.saturating_add(self.max_future_skew_us);
        let watermark = self.current;
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event: None,
            last_active: now,
        });
        clock.last_active = now;
        let mut observed = Observed::default();
        for t in event_times {
            if watermark.is_some_and(|w| t < w) {
                observed.late += 1;
            }
            if t > horizon {
                observed.future += 1;
                continue;
            }
            clock.max_event = Some(clock.max_event.map_or(t, |m| m.max(t)));
        }
        observed
    }

    /// Recomputes the source watermark as of `now` and returns it.
    ///
    /// Once every partition is idle, the watermark is the one of the instant before the last
    /// of them went quiet, when only the partitions active last still held it. So the result
    /// does not depend on whether this was called inside that instant: a partition that never
    /// showed anything idles out before the one that did, and must not take its events' watermark
    /// along just because nobody looked in between.
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        let idle =
            |clock: &PartitionClock| now.duration_since(clock.last_active) >= self.idle_timeout;
        let active: Vec<&PartitionClock> = if self.partitions.values().all(idle) {
            let last = self.partitions.values().map(|c| c.last_active).max();
            self.partitions
                .values()
                .filter(|c| Some(c.last_active) == last)
                .collect()
        } else {
            self.partitions.values().filter(|c| !idle(c)).collect()
        };
        let mut min: Option<i64> = None;
        for clock in active {
            let Some(max_event) = clock.max_event else {
                // Active but silent so far: nothing may pass it yet.
                return self.current;
            };
            let w = max_event.saturating_sub(self.delay_us);
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        if let Some(candidate) = min {
            self.current = Some(self.current.map_or(candidate, |c| c.max(candidate)));
        }
        self.current
    }

    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// A partition's own watermark and whether it is idle, for `sluice_catalog.sources`.
    pub fn partition(&self, partition: i32, now: Instant) -> (Option<i64>, bool) {
        match self.partitions.get(&partition) {
            Some(clock) => (
                clock.max_event.map(|m| m.saturating_sub(self.delay_us)),
                now.duration_since(clock.last_active) >= self.idle_timeout,
            ),
            None => (None, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn tracker() -> (WatermarkTracker, Instant) {
        (
            WatermarkTracker::new(5_000, Duration::from_secs(30), Duration::from_secs(600)),
            Instant::now(),
        )
    }

    #[test]
    fn minimum_over_partitions_and_never_backwards() {
        let (mut t, now) = tracker();
        t.assign(0, now);
        t.assign(1, now);
        t.observe(0, [100 * S], now, 100 * S);
        assert_eq!(t.advance(now), None, "partition 1 has shown nothing yet");
        t.observe(1, [50 * S, 60 * S], now, 100 * S);
        assert_eq!(t.advance(now), Some(55 * S));
        t.observe(1, [200 * S], now, 200 * S);
        assert_eq!(t.advance(now), Some(95 * S));
        // Late: behind the watermark when it arrives; does not move anything back.
        let seen = t.observe(0, [10 * S, 96 * S], now, 200 * S);
        assert_eq!(seen, Observed { late: 1, future: 0 });
        assert_eq!(t.advance(now), Some(95 * S));
    }

    #[test]
    fn idle_partitions_stop_holding_the_watermark() {
        let (mut t, start) = tracker();
        t.assign(0, start);
        t.assign(1, start);
        t.observe(0, [100 * S], start, 100 * S);
        assert_eq!(t.advance(start + Duration::from_secs(29)), None);
        let later = start + Duration::from_secs(31);
        t.observe(0, [120 * S], later, 120 * S);
        assert_eq!(t.advance(later), Some(115 * S));
        assert_eq!(t.partition(1, later), (None, true));
        // Back from idle with old events: it holds the watermark again, which stays put.
        t.observe(1, [90 * S], later, 120 * S);
        assert_eq!(t.advance(later), Some(115 * S));
        t.observe(0, [130 * S], later, 130 * S);
        t.observe(1, [140 * S], later, 140 * S);
        assert_eq!(t.advance(later), Some(125 * S));
    }

    #[test]
    fn a_source_gone_all_idle_keeps_the_watermark_of_its_last_active_partitions() {
        // Partition 1 never shows anything and idles out just before partition 0, whose events
        // came right after the assignment. Nobody looks until both are idle: the watermark is
        // still partition 0's, as it would have been for a look in between.
        let (mut t, start) = tracker();
        t.assign(0, start);
        t.assign(1, start);
        let shown = start + Duration::from_millis(10);
        t.observe(0, [100 * S], shown, 100 * S);
        assert_eq!(t.advance(start + Duration::from_secs(60)), Some(95 * S));
        // Both silent from the start: nothing passes.
        let (mut silent, start) = tracker();
        silent.assign(0, start);
        silent.assign(1, start);
        assert_eq!(silent.advance(start + Duration::from_secs(60)), None);
    }

    #[test]
    fn events_from_the_future_do_not_move_the_watermark() {
        let (mut t, now) = tracker();
        t.assign(0, now);
        let wall = 1_000 * S;
        let seen = t.observe(0, [wall, wall + 3_600 * S], now, wall);
        assert_eq!(seen.future, 1);
        assert_eq!(t.advance(now), Some(wall - 5 * S));
    }
}
