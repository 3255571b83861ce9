//! Group commit for client writes.
//!
//! openraft 0.9 appends and flushes one entry per `client_write`, one after the other
//! inside its core task, so concurrent admin writes queue behind each other's flush: 16
//! clients got no more writes per second than one. The proposer packs the Commands that
//! arrived while earlier entries were in flight into one [`Op::Group`] entry — one
//! append, one flush and one commit for all of them, as etcd's WAL sync covers a batch
//! of puts. The state machine still applies each member on its own (its request id, its
//! outcome, its events), so grouping changes how many flushes there are, not what a
//! write does.
//!
//! A lone write (the sequential case) is proposed as itself, not as a group of one.
//! Imports and data-plane status always travel alone: they are large or frequent and
//! would hold small writes back.

use std::sync::Arc;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::BasicNode;
use tidegate_state::{Command, Op, MAX_GROUP_COMMANDS};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::types::{NodeId, Raft, Response};

/// Writes waiting for a slot; a full queue makes callers wait (their own deadline
/// bounds that wait).
const QUEUE: usize = 4_096;
/// Entries proposed and not yet answered. Two keep the disk busy: one flushes while the
/// next one fills up.
const IN_FLIGHT: usize = 2;
/// A group stops growing at this many bytes of request bodies, so one entry stays far
/// below the Raft message limit and a follower's append stays short.
const MAX_GROUP_BYTES: usize = 1 << 20;

pub type ProposeError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// What the leader answered for one Command.
#[derive(Debug, Clone)]
pub struct Written {
    /// This Command's outcome (for a group member, its own, not the group's).
    pub response: Response,
    /// The log index of the entry that carried it.
    pub log_index: u64,
}

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Result<Written, ProposeError>>,
}

/// The leader's way into Raft for client writes; clones share one queue.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the proposing task on the current runtime; it ends when the last clone is
    /// dropped.
    pub fn new(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft.clone(), rx));
        Proposer { raft, tx }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes `cmd` and waits for its outcome. Errors are openraft's, as
    /// `Raft::client_write` returns them (e.g. `ForwardToLeader` when this node does not
    /// lead); a group's error is every member's.
    pub async fn write(&self, cmd: Command) -> Result<Written, ProposeError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Pending { cmd, reply }).await.is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        answer
            .await
            .unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

/// Bytes a Command adds to a group, or None when it must travel alone.
fn group_weight(op: &Op) -> Option<usize> {
    match op {
        Op::Create { body, .. } | Op::Upsert { body, .. } | Op::Patch { body, .. } => {
            Some(body.len() + 64)
        }
        Op::Delete { .. } => Some(64),
        Op::Batch { ops } => ops
            .iter()
            .try_fold(0usize, |sum, op| Some(sum + group_weight(op)?)),
        Op::Import { .. } | Op::DataPlanes { .. } | Op::Group { .. } => None,
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A Command that could not join the group being built starts the next one.
    let mut carried: Option<Pending> = None;
    loop {
        // Waiting for a slot first is what makes groups: writes arriving meanwhile queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut group = vec![first];
        if let Some(mut bytes) = group_weight(&group[0].cmd.op) {
            while group.len() < MAX_GROUP_COMMANDS {
                let Ok(next) = rx.try_recv() else { break };
                match group_weight(&next.cmd.op) {
                    Some(w) if bytes + w <= MAX_GROUP_BYTES => {
                        bytes += w;
                        group.push(next);
                    }
                    _ => {
                        carried = Some(next);
                        break;
                    }
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, group).await;
            drop(slot);
        });
    }
}

async fn propose(raft: &Raft, mut group: Vec<Pending>) {
    if group.len() == 1 {
        let Pending { cmd, reply } = group.pop().expect("one member");
        let written = raft.client_write(cmd).await.map(|r| Written {
            response: r.data,
            log_index: r.log_id.index,
        });
        let _ = reply.send(written);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    // The carrier is never recorded or de-duplicated; its fields only fill the shape.
    let carrier = Command {
        request_id: uuid::Uuid::nil(),
        fixed: commands[0].fixed,
        op: Op::Group { commands },
    };
    match raft.client_write(carrier).await {
        Ok(r) => {
            let mut members = r.data.members.into_iter();
            for reply in replies {
                // The local state machine answers one outcome per member; anything else
                // is a bug, reported to the caller rather than answered wrongly.
                let answer = match members.next() {
                    Some(outcome) => Ok(Written {
                        response: Response {
                            outcome,
                            config_version: r.data.config_version,
                            members: Vec::new(),
                        },
                        log_index: r.log_id.index,
                    }),
                    None => Err(RaftError::Fatal(Fatal::Panicked)),
                };
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
