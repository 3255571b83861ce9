//! The replicated state machine, shared by the sled and the in-memory stores.
//!
//! The state (a [`Machine`], the last applied log id and membership, and a bounded tail of
//! recent Events) lives in memory on every node. What makes it durable is a
//! [`SnapshotStore`]: every snapshot built or installed is persisted before it is
//! reported, and [`StateMachine::open`] starts from the latest one; openraft then re-applies
//! the committed log entries after it. The rest of the CP reads through a [`StateReader`].

use std::collections::VecDeque;
use std::future::Future;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tidegate_state::{
    decode_snapshot, encode_snapshot, Command, ConfigState, DataPlanes, DpReport, Event, Machine,
    Op, Outcome, RequestLog,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// How many recent Events a CP keeps for DP deltas. A DP further behind gets a snapshot.
pub const DEFAULT_EVENT_TAIL: usize = 10_000;

/// The layout of [`SnapshotWire`] this build writes. 2 appended the data-plane rows
/// after the wire struct; format 1 snapshots have none.
const SM_SNAPSHOT_FORMAT: u16 = 2;

/// Published after every apply and snapshot install.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// The last applied log index (0 before anything was applied).
    pub log_index: u64,
    pub config_version: u64,
}

/// A snapshot as it is persisted: openraft's meta plus the bytes of a [`SnapshotWire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// Where the latest snapshot is kept across restarts.
pub trait SnapshotStore: Send + Sync + 'static {
    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError>;
    /// Durable when the future resolves.
    fn save(
        &self,
        snapshot: &StoredSnapshot,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// The bytes of a Raft snapshot (postcard).
#[derive(Serialize, Deserialize)]
struct SnapshotWire {
    format: u16,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// `tidegate_state::encode_snapshot`: the DP-facing encoding, reused.
    config: Vec<u8>,
    request_capacity: u64,
    /// Oldest first, so the rebuilt log evicts in the same order.
    requests: Vec<(Uuid, Outcome)>,
}

#[derive(Debug, thiserror::Error)]
enum SnapshotError {
    #[error("cannot decode raft snapshot: {0}")]
    Malformed(#[from] postcard::Error),
    #[error(
        "raft snapshot format {0} is newer than this build understands ({SM_SNAPSHOT_FORMAT})"
    )]
    TooNew(u16),
    #[error(transparent)]
    Codec(#[from] tidegate_state::CodecError),
    #[error(transparent)]
    State(#[from] tidegate_state::StateError),
    #[error("raft snapshot has a request log of capacity 0")]
    NoRequestCapacity,
    #[error("snapshot meta ({meta}) does not match its content ({content})")]
    MetaMismatch { meta: String, content: String },
}

struct Core {
    machine: Machine,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Every Event with a version in `tail_base + 1 ..= config version`, in order.
    tail: VecDeque<Event>,
    tail_base: u64,
    tail_capacity: usize,
}

impl Core {
    fn new(tail_capacity: usize) -> Self {
        Core {
            machine: Machine::new(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            tail: VecDeque::new(),
            tail_base: 0,
            tail_capacity,
        }
    }

    fn applied(&self) -> Applied {
        Applied {
            log_index: self.last_applied.map_or(0, |l| l.index),
            config_version: self.machine.config.version(),
        }
    }

    fn apply(&mut self, entry: Entry) -> Response {
        self.last_applied = Some(entry.log_id);
        let mut members = Vec::new();
        let outcome = match entry.payload {
            EntryPayload::Normal(Command {
                op: Op::Group { commands },
                ..
            }) => {
                let (outcomes, events) = self.machine.execute_group(&commands);
                self.push_events(events);
                members = outcomes;
                self.nothing()
            }
            EntryPayload::Normal(cmd) => {
                let (outcome, events) = self.machine.execute(&cmd);
                self.push_events(events);
                outcome
            }
            EntryPayload::Membership(m) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                self.nothing()
            }
            EntryPayload::Blank => self.nothing(),
        };
        Response {
            outcome,
            config_version: self.machine.config.version(),
            members,
        }
    }

    fn nothing(&self) -> Outcome {
        Ok(tidegate_state::Applied {
            entity: None,
            version: self.machine.config.version(),
            events: 0,
        })
    }

    fn push_events(&mut self, events: Vec<Event>) {
        self.tail.extend(events);
        while self.tail.len() > self.tail_capacity {
            self.tail.pop_front();
            self.tail_base += 1;
        }
    }

    fn events_since(&self, version: u64) -> Option<Vec<Event>> {
        if version < self.tail_base || version > self.machine.config.version() {
            return None;
        }
        let skip = usize::try_from(version - self.tail_base).ok()?;
        Some(self.tail.iter().skip(skip).cloned().collect())
    }

    fn encode(&self) -> Vec<u8> {
        let wire = SnapshotWire {
            format: SM_SNAPSHOT_FORMAT,
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            config: encode_snapshot(&self.machine.config.snapshot()),
            request_capacity: self.machine.requests.capacity() as u64,
            requests: self
                .machine
                .requests
                .entries()
                .map(|(id, out)| (*id, out.clone()))
                .collect(),
        };
        let mut bytes = postcard::to_stdvec(&wire).expect("snapshots encode infallibly");
        bytes.extend(
            postcard::to_stdvec(&self.machine.data_planes.to_vec())
                .expect("snapshots encode infallibly"),
        );
        bytes
    }

    /// A whole new core from snapshot bytes: nothing of the old state survives, and the
    /// tail starts empty at the snapshot's version.
    fn decode(bytes: &[u8], tail_capacity: usize) -> Result<Self, SnapshotError> {
        let (wire, rest): (SnapshotWire, _) = postcard::take_from_bytes(bytes)?;
        if wire.format > SM_SNAPSHOT_FORMAT {
            return Err(SnapshotError::TooNew(wire.format));
        }
        let data_planes = if wire.format >= 2 {
            DataPlanes::from_rows(postcard::from_bytes::<Vec<DpReport>>(rest)?)
        } else {
            DataPlanes::new()
        };
        let config = ConfigState::from_snapshot(decode_snapshot(&wire.config)?)?;
        let capacity = usize::try_from(wire.request_capacity).unwrap_or(usize::MAX);
        if capacity == 0 {
            return Err(SnapshotError::NoRequestCapacity);
        }
        let mut requests = RequestLog::with_capacity(capacity);
        for (id, outcome) in wire.requests {
            requests.record(id, outcome);
        }
        let version = config.version();
        Ok(Core {
            machine: Machine {
                config,
                requests,
                data_planes,
            },
            last_applied: wire.last_applied,
            last_membership: wire.last_membership,
            tail: VecDeque::new(),
            tail_base: version,
            tail_capacity,
        })
    }

    fn check_meta(&self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        if self.last_applied != meta.last_log_id || self.last_membership != meta.last_membership {
            return Err(SnapshotError::MetaMismatch {
                meta: format!("{:?} {}", meta.last_log_id, meta.last_membership),
                content: format!("{:?} {}", self.last_applied, self.last_membership),
            });
        }
        Ok(())
    }
}

struct Shared {
    core: RwLock<Core>,
    applied: watch::Sender<Applied>,
    /// Makes snapshot ids unique within a process run.
    snapshot_seq: AtomicU64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Core> {
        // A panic inside execute is a bug that already stopped Raft; readers keep serving.
        self.core.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Core>, StorageError> {
        self.core.write().map_err(|_| {
            StorageIOError::write_state_machine(AnyError::error(
                "state machine lock poisoned by an earlier panic",
            ))
            .into()
        })
    }

    fn publish(&self, applied: Applied) {
        self.applied.send_replace(applied);
    }
}

/// A cheap-to-clone read handle on the applied state, for the Admin API and DP sync.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

impl StateReader {
    /// Runs `f` on the current state. Keep `f` short: applies wait for it.
    pub fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.shared.read().machine)
    }

    /// The Events after config version `version`, or None when the tail no longer reaches
    /// back to it (send a snapshot) or `version` is newer than this state (the caller
    /// decides; a snapshot would take that DP backwards).
    pub fn events_since(&self, version: u64) -> Option<Vec<Event>> {
        self.shared.read().events_since(version)
    }

    /// Runs `f` on the state and its Event tail (`tail(v)` is [`Self::events_since`]`(v)`)
    /// under one lock: what a DP is sent is exactly what was checked for it.
    pub fn with_tail<T>(
        &self,
        f: impl FnOnce(&Machine, &dyn Fn(u64) -> Option<Vec<Event>>) -> T,
    ) -> T {
        let core = self.shared.read();
        f(&core.machine, &|v| core.events_since(v))
    }

    /// The newest `limit` Events of the tail, oldest first (fewer right after a restart
    /// or a snapshot install, which start the tail afresh).
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let core = self.shared.read();
        let skip = core.tail.len().saturating_sub(limit);
        core.tail.iter().skip(skip).cloned().collect()
    }

    /// Watches the last applied log index and config version.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    /// The last applied log id and membership, as openraft sees them.
    pub fn last_applied(&self) -> (Option<LogId>, StoredMembership) {
        let core = self.shared.read();
        (core.last_applied, core.last_membership.clone())
    }
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader")
            .field("applied", &self.shared.read().applied())
            .finish()
    }
}

/// Persists snapshots newest-wins: a slow build of an older snapshot must not overwrite a
/// newer one that was installed meanwhile (the log behind the newer one may be purged).
struct Persister<S> {
    store: S,
    saved: tokio::sync::Mutex<Option<LogId>>,
}

impl<S: SnapshotStore> Persister<S> {
    async fn persist(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let mut saved = self.saved.lock().await;
        if snapshot.meta.last_log_id < *saved {
            return Ok(());
        }
        self.store.save(snapshot).await?;
        *saved = snapshot.meta.last_log_id;
        Ok(())
    }
}

/// openraft's state machine over a [`SnapshotStore`].
pub struct StateMachine<S> {
    shared: Arc<Shared>,
    persister: Arc<Persister<S>>,
}

impl<S: SnapshotStore> StateMachine<S> {
    /// Starts from the latest persisted snapshot, if any; openraft re-applies the committed
    /// entries after it.
    pub fn open(store: S, event_tail: usize) -> Result<Self, StorageError> {
        let stored = store.load()?;
        let core = match &stored {
            None => Core::new(event_tail),
            Some(s) => {
                let sig = Some(s.meta.signature());
                let core = Core::decode(&s.data, event_tail)
                    .map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
                core.check_meta(&s.meta)
                    .map_err(|e| StorageIOError::read_snapshot(sig, &e))?;
                core
            }
        };
        let (applied, _) = watch::channel(core.applied());
        Ok(StateMachine {
            shared: Arc::new(Shared {
                core: RwLock::new(core),
                applied,
                snapshot_seq: AtomicU64::new(0),
            }),
            persister: Arc::new(Persister {
                store,
                saved: tokio::sync::Mutex::new(stored.and_then(|s| s.meta.last_log_id)),
            }),
        })
    }

    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }
}

/// Builds a snapshot of the state at the time `build_snapshot` runs.
pub struct SnapshotBuilder<S> {
    shared: Arc<Shared>,
    persister: Arc<Persister<S>>,
}

impl<S: SnapshotStore> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, last_membership) = {
            let core = self.shared.read();
            (
                core.encode(),
                core.last_applied,
                core.last_membership.clone(),
            )
        };
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{seq}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            data,
        };
        self.persister.persist(&stored).await?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl<S: SnapshotStore> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let core = self.shared.read();
        Ok((core.last_applied, core.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (responses, applied) = {
            let mut core = self.shared.write()?;
            let responses: Vec<Response> = entries.into_iter().map(|e| core.apply(e)).collect();
            (responses, core.applied())
        };
        self.shared.publish(applied);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            persister: self.persister.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sig = Some(meta.signature());
        let tail_capacity = self.shared.read().tail_capacity;
        // Validate fully before touching anything: a bad snapshot leaves the old state.
        let core = Core::decode(&data, tail_capacity)
            .map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        core.check_meta(meta)
            .map_err(|e| StorageIOError::read_snapshot(sig, &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persister.persist(&stored).await?;
        let applied = {
            let mut current = self.shared.write()?;
            *current = core;
            current.applied()
        };
        self.shared.publish(applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.persister.store.load()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests;
