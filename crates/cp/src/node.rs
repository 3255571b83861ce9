//! A control-plane node on Raft: the [`Backend`] the Admin API runs on.
//!
//! The write path: the receiving node fixes the Command's id, time and entropy, proposes
//! it, and — when it is not the leader — forwards it to the leader over the Raft link.
//! Either way it answers only after its *own* state machine applied the entry, so a client
//! behind a TCP proxy reads its own writes on whichever CP it lands on next. Retrying is
//! safe at every step: the request id makes the state machine apply a Command once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tidegate_model::Fixed;
use tidegate_raft::network::{ForwardReply, Network};
use tidegate_raft::{NodeId, Proposer, Raft, StateReader};
use tidegate_state::{Command, Machine, Op};
use tokio::time::{timeout_at, Instant};
use uuid::Uuid;

use crate::backend::{
    Backend, ClusterMember, ClusterStatus, MemberChangeError, NodeInfo, WriteError, WriteOk,
};

/// How long a write may look for a leader that accepts it before the client gets a 503.
pub const DEFAULT_LEADER_WAIT: Duration = Duration::from_secs(3);
/// How long an accepted write may take to commit and apply here before a 504.
pub const DEFAULT_APPLY_WAIT: Duration = Duration::from_secs(10);
/// A leader that has not heard from a quorum for this long refuses writes at once rather
/// than queueing them behind a partition.
pub const STALE_LEADER_MS: u64 = 2_000;
/// Pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Wall-clock time, injected so the simulator can run the same code.
pub trait Clock: Send + Sync + 'static {
    /// Unix seconds.
    fn now_unix(&self) -> i64;
}

/// Randomness for ids, request ids and generated secrets, injected for the same reason.
pub trait Entropy: Send + Sync + 'static {
    fn next_u128(&self) -> u128;
}

pub struct NodeSettings {
    pub node_id: NodeId,
    pub info: NodeInfo,
    pub leader_wait: Duration,
    pub apply_wait: Duration,
}

/// A CP node: the Raft handle, the local state reader and the link to peers.
pub struct RaftNode {
    raft: Raft,
    /// The way into Raft for writes this node leads (group commit).
    proposer: Proposer,
    reader: StateReader,
    network: Network,
    settings: NodeSettings,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    /// The `plugins` setting; None: every bundled plugin.
    enabled_plugins: Option<Vec<String>>,
    /// Held by the one membership change this node runs at a time; another one that
    /// comes meanwhile is refused rather than queued.
    member_change: tokio::sync::Mutex<()>,
}

fn uuid_from(bits: u128) -> Uuid {
    uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
}

// === impl RaftNode ===

impl RaftNode {
    pub fn new(
        proposer: Proposer,
        reader: StateReader,
        network: Network,
        settings: NodeSettings,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        RaftNode {
            raft: proposer.raft().clone(),
            proposer,
            reader,
            network,
            settings,
            clock,
            entropy,
            enabled_plugins: None,
            member_change: tokio::sync::Mutex::new(()),
        }
    }

    /// Narrows the plugins this node's Admin API accepts to `names` (the `plugins`
    /// setting); by default every bundled plugin.
    pub fn with_enabled_plugins(mut self, names: Vec<String>) -> Self {
        self.enabled_plugins = Some(names);
        self
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn reader(&self) -> &StateReader {
        &self.reader
    }

    fn command(&self, op: Op, request_id: Option<Uuid>) -> Command {
        Command {
            request_id: request_id.unwrap_or_else(|| uuid_from(self.entropy.next_u128())),
            fixed: Fixed {
                id: uuid_from(self.entropy.next_u128()),
                now: self.clock.now_unix(),
                entropy: self.entropy.next_u128(),
            },
            op,
        }
    }

    /// Waits until this node's state machine applied `index`.
    async fn applied_here(&self, index: u64, deadline: Instant) -> Result<(), WriteError> {
        let mut rx = self.reader.applied();
        let reached = timeout_at(deadline, rx.wait_for(|a| a.log_index >= index))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(WriteError::ShuttingDown),
            Err(_) => Err(WriteError::Timeout {
                detail: format!(
                    "the leader committed the write at log index {index}, but this node has not \
                     applied it yet; retry with the same X-Request-Id, it will not apply twice"
                ),
            }),
        }
    }

    fn quorum_detail(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        format!(
            "node {} sees no leader among voters {:?} (term {}); a majority of them must be up and \
             connected for writes; reads keep working",
            m.id, voters, m.current_term
        )
    }
}

impl Backend for RaftNode {
    async fn write(&self, op: Op, request_id: Option<Uuid>) -> Result<WriteOk, WriteError> {
        let cmd = self.command(op, request_id);
        let leader_deadline = Instant::now() + self.settings.leader_wait;
        // Why the last attempt to reach the leader failed, for the operator.
        let mut last_failure: Option<String> = None;
        loop {
            self.health()
                .map_err(|detail| WriteError::Storage { detail })?;
            let metrics = self.raft.metrics().borrow().clone();
            let leads = metrics.state == ServerState::Leader;
            if leads
                && metrics
                    .millis_since_quorum_ack
                    .is_some_and(|ms| ms > STALE_LEADER_MS)
            {
                return Err(WriteError::NoLeader {
                    detail: self.quorum_detail(),
                });
            }
            let leader = metrics.current_leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| (id, n.addr.clone()))
            });
            let apply_deadline = Instant::now() + self.settings.apply_wait;
            match leader {
                Some((id, _)) if id == self.settings.node_id => {
                    match timeout_at(apply_deadline, self.proposer.write(cmd.clone())).await {
                        Ok(Ok(written)) => {
                            self.applied_here(written.log_index, apply_deadline).await?;
                            return Ok(WriteOk {
                                outcome: written.response.outcome,
                            });
                        }
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                            ForwardToLeader { .. },
                        )))) => {}
                        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                            return Err(WriteError::NoLeader {
                                detail: e.to_string(),
                            })
                        }
                        Ok(Err(RaftError::Fatal(f))) => {
                            return Err(WriteError::Storage {
                                detail: format!("{f}; check the node's disk and logs, then restart it"),
                            })
                        }
                        Err(_) => {
                            return Err(WriteError::Timeout {
                                detail: "the leader accepted the write but could not commit it in time \
                                         (is a majority of control planes reachable?); retry with the \
                                         same X-Request-Id, it will not apply twice"
                                    .into(),
                            })
                        }
                    }
                }
                Some((_, addr)) => {
                    let remaining = apply_deadline.saturating_duration_since(Instant::now());
                    match self.network.forward(&addr, &cmd, remaining).await {
                        Ok(ForwardReply::Applied {
                            response,
                            log_index,
                        }) => {
                            self.applied_here(log_index, apply_deadline).await?;
                            return Ok(WriteOk {
                                outcome: response.outcome,
                            });
                        }
                        // Stale view of the leader, or it lost quorum: look again.
                        Ok(ForwardReply::NotLeader { .. }) => {
                            last_failure = Some(format!("{addr} is no longer the leader"));
                        }
                        Ok(ForwardReply::Failed { reason }) => last_failure = Some(reason),
                        Err(e) => last_failure = Some(e),
                    }
                }
                None => {}
            }
            if Instant::now() + RETRY_PAUSE > leader_deadline {
                let mut detail = self.quorum_detail();
                if let Some(f) = last_failure {
                    detail.push_str(&format!(" (last attempt: {f})"));
                }
                return Err(WriteError::NoLeader { detail });
            }
            // An election takes a few hundred milliseconds: wait for a change in the
            // leader rather than spinning, up to a short pause.
            let mut metrics_rx = self.raft.metrics();
            let current = metrics.current_leader;
            let _ = tokio::time::timeout(
                RETRY_PAUSE,
                metrics_rx.wait_for(|m| m.current_leader != current),
            )
            .await;
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        self.reader.read(f)
    }

    fn node_info(&self) -> NodeInfo {
        self.settings.info.clone()
    }

    fn enabled_plugins(&self) -> Option<Vec<String>> {
        self.enabled_plugins.clone()
    }

    fn now_unix(&self) -> i64 {
        self.clock.now_unix()
    }

    fn entropy(&self) -> u128 {
        self.entropy.next_u128()
    }

    fn health(&self) -> Result<(), String> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) => Ok(()),
            Err(fatal) => Err(format!(
                "raft stopped: {fatal}; check the disk under the node's prefix and its logs, then restart it"
            )),
        }
    }

    async fn cluster_status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let leads = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = replication.get(id).cloned().flatten().map(|l| l.index);
                ClusterMember {
                    id: *id,
                    address: node.addr.clone(),
                    kind: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    leader: m.current_leader == Some(*id),
                    reachable: if leads {
                        Some(*id == m.id || matched.is_some())
                    } else {
                        None
                    },
                    matched_index: if leads { matched } else { None },
                }
            })
            .collect();
        let (version, hash) = self
            .reader
            .read(|mach| (mach.config.version(), mach.config.hash().to_hex()));
        ClusterStatus {
            node_id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            config_version: version,
            config_hash: hash,
            members,
        }
    }

    async fn add_member(
        &self,
        id: u64,
        address: String,
    ) -> Result<ClusterStatus, MemberChangeError> {
        let _one = self.one_member_change()?;
        self.require_leader()?;
        if address.rsplit_once(':').is_none() {
            return Err(MemberChangeError::Invalid(format!(
                "address '{address}' must be host:port of the new node's raft_listen"
            )));
        }
        self.raft
            .add_learner(id, BasicNode::new(address), true)
            .await
            .map_err(|e| membership_error(e.to_string()))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| membership_error(e.to_string()))?;
        Ok(self.cluster_status().await)
    }

    async fn remove_member(&self, id: u64) -> Result<ClusterStatus, MemberChangeError> {
        let _one = self.one_member_change()?;
        self.require_leader()?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(MemberChangeError::Invalid(format!(
                "node {id} is not a member of this cluster"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(MemberChangeError::Invalid(
                    "cannot remove the last voter of the cluster".into(),
                ));
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| membership_error(e.to_string()))?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(|e| membership_error(e.to_string()))?;
        }
        Ok(self.cluster_status().await)
    }
}

impl RaftNode {
    /// Membership changes run one at a time on a node: two at once on the leader could
    /// each pass [`Self::require_leader`] before the other's change lands.
    fn one_member_change(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, MemberChangeError> {
        self.member_change.try_lock().map_err(|_| {
            MemberChangeError::Busy(
                "another membership change is running on this node; retry once it has finished"
                    .into(),
            )
        })
    }

    /// Membership changes run on the leader; elsewhere the answer names it.
    fn require_leader(&self) -> Result<(), MemberChangeError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            // A leader whose own removal is in the log leads on until it steps down, but
            // it is no member: openraft must not append another membership on it (a
            // debug assertion in openraft fires; the simulator found it, seed 4309).
            if m.membership_config.membership().get_node(&m.id).is_none() {
                return Err(membership_error(format!(
                    "node {} still leads the group but a membership change removed it; it \
                     steps down once that change commits",
                    m.id
                )));
            }
            return Ok(());
        }
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| format!("node {id} (raft address {})", n.addr))
        });
        Err(MemberChangeError::Invalid(match leader {
            Some(l) => format!(
                "membership changes go to the leader: send this request to the Admin API of {l}"
            ),
            None => "no leader right now; retry when the cluster has elected one".into(),
        }))
    }
}

fn membership_error(detail: String) -> MemberChangeError {
    MemberChangeError::Write(WriteError::NoLeader { detail })
}

/// The initial membership from `raft_peers`, or this node alone.
pub fn initial_members(
    node_id: NodeId,
    advertise: &str,
    peers: &[(NodeId, String)],
) -> BTreeMap<NodeId, BasicNode> {
    if peers.is_empty() {
        return BTreeMap::from([(node_id, BasicNode::new(advertise))]);
    }
    peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect()
}

/// Forms the group on first start: only the lowest id in the initial membership
/// initializes it, and only when its log is empty, so restarts just rejoin.
pub async fn initialize_if_first(
    raft: &Raft,
    node_id: NodeId,
    members: BTreeMap<NodeId, BasicNode>,
) -> Result<bool, String> {
    let first = members.keys().next().copied();
    if first != Some(node_id) {
        return Ok(false);
    }
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        return Ok(false);
    }
    raft.initialize(members).await.map_err(|e| e.to_string())?;
    Ok(true)
}
