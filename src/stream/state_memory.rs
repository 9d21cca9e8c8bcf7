//! Streaming state held in the one memory pool queries draw from (`--memory-limit`).
//!
//! A view's open windows and a source's deduplication keys live as long as the stream does,
//! so they cannot spill or fail the way a query does. They reserve what they hold in the same
//! DataFusion pool, so that one budget covers the process: a big query squeezes state, state
//! squeezes queries (which spill, or fail with 53200 naming the largest holders), and neither
//! grows the process until the kernel kills every pipeline. State together may take at most
//! [`STATE_SHARE_PERCENT`] of the pool, so that a dashboard can still read a view whose state
//! filled its share. When the pool has no room for what the state grew to, its owner takes no
//! more input (its source waits) until there is room again: back-pressure, never a dropped
//! row. The reservations always say what the state really holds, beyond the limit too (by at
//! most the batch that crossed it), so the pool's numbers stay true.

use std::sync::Arc;

use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The share of the pool streaming state may hold together; queries always keep the rest.
pub const STATE_SHARE_PERCENT: u64 = 75;

/// The share of a pool that must be free again before a stalled owner goes on, so that it
/// does not flap between taking one batch and stalling.
const RESUME_HEADROOM_DIVISOR: usize = 64;

/// The pools state is held in: its own share, within the pool queries draw from.
#[derive(Debug, Clone)]
pub struct StatePools {
    state: Arc<dyn MemoryPool>,
    shared: Arc<dyn MemoryPool>,
}

impl StatePools {
    pub fn new(shared: &Arc<dyn MemoryPool>) -> Self {
        let limit = match shared.memory_limit() {
            MemoryLimit::Finite(limit) => state_limit(limit as u64) as usize,
            _ => usize::MAX,
        };
        StatePools {
            state: Arc::new(GreedyMemoryPool::new(limit)),
            shared: Arc::clone(shared),
        }
    }
}

/// What streaming state may hold together of a pool of `limit` bytes.
pub fn state_limit(limit: u64) -> u64 {
    limit / 100 * STATE_SHARE_PERCENT
}

/// What one stream's state holds.
#[derive(Debug)]
pub struct StateMemory {
    /// In the state's share, then in the pool queries draw from.
    reservations: [(MemoryReservation, Arc<dyn MemoryPool>); 2],
    /// The last [`StateMemory::exhausted`] said to wait.
    waiting: bool,
}

impl StateMemory {
    /// Registers `owner` (e.g. `view clicks_per_minute`, as 53200 messages name it).
    pub fn new(pools: &StatePools, owner: String) -> Self {
        let reserve = |pool: &Arc<dyn MemoryPool>| {
            let consumer = MemoryConsumer::new(owner.clone()).with_can_spill(false);
            (consumer.register(pool), Arc::clone(pool))
        };
        StateMemory {
            reservations: [reserve(&pools.state), reserve(&pools.shared)],
            waiting: false,
        }
    }

    /// Records that the state now holds `bytes`, within the pools' limits or not.
    pub fn hold(&mut self, bytes: usize) {
        for (reservation, _) in &self.reservations {
            if reservation.try_resize(bytes).is_err() {
                reservation.resize(bytes);
            }
        }
    }

    /// Whether the owner must wait: a pool holds more than its limit (once waiting, until a
    /// little headroom is free again).
    pub fn exhausted(&mut self) -> bool {
        let waiting = self.waiting;
        self.waiting = self
            .reservations
            .iter()
            .any(|(_, pool)| match pool.memory_limit() {
                MemoryLimit::Finite(limit) => {
                    let headroom = if waiting {
                        limit / RESUME_HEADROOM_DIVISOR
                    } else {
                        0
                    };
                    pool.reserved() + headroom > limit
                }
                _ => false,
            });
        self.waiting
    }

    /// Why `owner` waits, for its `last_error` and the log.
    pub fn stall_message(&self, state: &str, owner: &str, remedy: &str) -> String {
        let mib = |bytes: usize| format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64);
        format!(
            "{state} ({}) and what other streams and queries hold do not fit the memory pool \
             (streaming state's share of --memory-limit: {}); the {owner} takes no input until \
             the pool has room. {remedy}",
            mib(self.reservations[0].0.size()),
            mib(self.limit()),
        )
    }

    fn limit(&self) -> usize {
        match self.reservations[0].1.memory_limit() {
            MemoryLimit::Finite(limit) => limit,
            _ => usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::FairSpillPool;

    const MIB: usize = 1 << 20;

    #[test]
    fn waits_while_a_pool_is_full_and_goes_on_once_it_has_room() {
        let pool: Arc<dyn MemoryPool> = Arc::new(FairSpillPool::new(4 * MIB));
        let pools = StatePools::new(&pool);
        let mut state = StateMemory::new(&pools, "view v".into());
        state.hold(2 * MIB);
        assert!(!state.exhausted());
        // A query takes most of what is left: the state cannot grow.
        let query = MemoryConsumer::new("query").register(&pool);
        query.grow(MIB + MIB / 2);
        state.hold(3 * MIB - MIB / 4);
        // The reservation says what the state holds, beyond the limit too.
        assert_eq!(pool.reserved(), 4 * MIB + MIB / 4);
        assert!(state.exhausted());
        drop(query);
        assert!(!state.exhausted());
        // Past its own share (3 of 4 MiB) the state waits, though queries leave room.
        state.hold(3 * MIB + MIB / 2);
        assert!(state.exhausted());
        assert_eq!(state.limit(), state_limit(4 * MIB as u64) as usize);
        state.hold(0);
        assert!(!state.exhausted());
        assert_eq!(pool.reserved(), 0);
    }
}
