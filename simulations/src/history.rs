//! The admin history as the clients saw it: for each logical operation (one request id),
//! when it was first invoked, every attempt and every answer.

use std::time::Duration;

use tidegate_state::{Op, Outcome};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Operation {
    pub request_id: Uuid,
    pub op: Op,
    pub label: String,
    /// When the client first sent it.
    pub invoked: Duration,
    /// Answers received (a duplicate delivery after success gets a second one), with
    /// when each was seen.
    pub acks: Vec<(Duration, Outcome)>,
    /// Attempts that ended without an answer (error, timeout, CP crashed).
    pub unconfirmed: u32,
    /// The client gave up or the run ended before an answer.
    pub open: bool,
}

impl Operation {
    /// The first answer's time: after it, the operation is complete.
    pub fn completed(&self) -> Option<Duration> {
        self.acks.first().map(|(t, _)| *t)
    }
}

#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Operation>,
}
