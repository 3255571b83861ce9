//! The request-id log: a retried Command (same request id) is answered from here instead
//! of being applied twice.

use std::collections::{BTreeMap, VecDeque};

use uuid::Uuid;

use crate::machine::Outcome;

/// How many recent request ids are remembered. A client retry arrives within seconds;
/// this covers minutes of sustained writes.
pub const DEFAULT_REQUEST_LOG_CAPACITY: usize = 65_536;

/// Bounded, evicting oldest first. Part of the replicated state, so eviction depends only
/// on the order of Commands, never on time.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLog {
    capacity: usize,
    order: VecDeque<Uuid>,
    outcomes: BTreeMap<Uuid, Outcome>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_REQUEST_LOG_CAPACITY)
    }
}

impl RequestLog {
    pub fn with_capacity(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a request log must remember at least one request"
        );
        RequestLog {
            capacity,
            order: VecDeque::new(),
            outcomes: BTreeMap::new(),
        }
    }

    pub fn get(&self, request_id: &Uuid) -> Option<&Outcome> {
        self.outcomes.get(request_id)
    }

    pub fn record(&mut self, request_id: Uuid, outcome: Outcome) {
        if self.outcomes.insert(request_id, outcome).is_some() {
            return;
        }
        self.order.push_back(request_id);
        while self.order.len() > self.capacity {
            let old = self.order.pop_front().expect("len > capacity > 0");
            self.outcomes.remove(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Oldest first, for snapshots.
    pub fn entries(&self) -> impl Iterator<Item = (&Uuid, &Outcome)> {
        self.order.iter().map(|id| (id, &self.outcomes[id]))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
