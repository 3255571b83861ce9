//! A 3-node openraft group on the in-memory store, wired by direct calls (no sockets):
//! writes answer the Machine's outcomes, a crashed node restarts from its storage, and a
//! new learner catches up through a snapshot, keeping request de-duplication.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, SnapshotPolicy};
use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_raft::{
    open_disk, raft_config, seed_thread_rng, MemStorage, NodeId, Raft, StateReader, TypeConfig,
};
use tidegate_state::{Command, Machine, Op, Outcome};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
}

impl Router {
    fn get(&self, id: NodeId) -> Option<Raft> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

struct Conn {
    router: Router,
    target: NodeId,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0} is down")]
struct Down(NodeId);

impl Conn {
    fn peer(&self) -> Result<Raft, Unreachable> {
        self.router
            .get(self.target)
            .ok_or_else(|| Unreachable::new(&Down(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Conn {
        Conn {
            router: self.clone(),
            target,
        }
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let peer = self.peer().map_err(RPCError::Unreachable)?;
        peer.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let peer = self.peer().map_err(RPCError::Unreachable)?;
        peer.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let peer = self.peer().map_err(RPCError::Unreachable)?;
        peer.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn config() -> Arc<Config> {
    // Short timings and frequent snapshots with nothing kept behind them, so that a node
    // that was away must be caught up by a snapshot.
    let c = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..raft_config("test")
    };
    Arc::new(c.validate().unwrap())
}

struct Node {
    raft: Raft,
    reader: StateReader,
}

async fn start(router: &Router, id: NodeId, storage: &MemStorage) -> Node {
    let (log, sm) = storage.open().unwrap();
    let reader = sm.reader();
    let raft = Raft::new(id, config(), router.clone(), log, sm)
        .await
        .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    Node { raft, reader }
}

fn cmd(n: u64) -> Command {
    // Every fourth write collides with the name before it: a rejection in the log.
    let name = match n % 4 {
        0 => format!("u{}", n - 1),
        _ => format!("u{n}"),
    };
    let op = Op::Create {
        kind: EntityKind::Consumer,
        body: json!({ "username": name }).to_string(),
    };
    Command {
        request_id: Uuid::from_u128(n as u128),
        fixed: Fixed {
            id: Uuid::from_u128(0xc000_0000_0000_0000_0000_0000_0000_0000 + n as u128),
            now: 1_700_000_000 + n as i64,
            entropy: n as u128,
        },
        op,
    }
}

async fn wait_applied(reader: &StateReader, index: u64) {
    let mut rx = reader.applied();
    tokio::time::timeout(WAIT, rx.wait_for(|a| a.log_index >= index))
        .await
        .expect("applied in time")
        .expect("state machine alive");
}

async fn find_leader(router: &Router, any: &Raft) -> Raft {
    let m = any
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    router
        .get(m.current_leader.unwrap())
        .expect("the leader is up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_replicates_restarts_and_catches_up_by_snapshot() {
    seed_thread_rng(1);
    let router = Router::default();
    let storages: BTreeMap<NodeId, MemStorage> =
        (1..=4).map(|id| (id, MemStorage::new())).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(&router, id, &storages[&id]).await);
    }
    let members: BTreeMap<NodeId, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("n{id}"))))
        .collect();
    nodes[&1].raft.initialize(members).await.unwrap();

    let mut alone = Machine::new();
    let mut last_index = 0;
    for n in 1..=25 {
        let leader = find_leader(&router, &nodes[&1].raft).await;
        let c = cmd(n);
        let resp = leader.client_write(c.clone()).await.unwrap();
        let expected: Outcome = alone.execute(&c).0;
        assert_eq!(resp.data.outcome, expected, "write {n}");
        assert_eq!(resp.data.config_version, alone.config.version());
        last_index = resp.log_id.index;
    }
    for node in nodes.values() {
        wait_applied(&node.reader, last_index).await;
        assert_eq!(node.reader.read(|m| m.config.hash()), alone.config.hash());
    }

    // Crash node 3 (its storage survives), write on, restart it.
    let down = nodes.remove(&3).unwrap();
    router.nodes.lock().unwrap().remove(&3);
    down.raft.shutdown().await.unwrap();
    drop(down);
    for n in 26..=50 {
        let leader = find_leader(&router, &nodes[&1].raft).await;
        let c = cmd(n);
        let resp = leader.client_write(c.clone()).await.unwrap();
        assert_eq!(resp.data.outcome, alone.execute(&c).0);
        last_index = resp.log_id.index;
    }
    nodes.insert(3, start(&router, 3, &storages[&3]).await);
    wait_applied(&nodes[&3].reader, last_index).await;
    assert_eq!(
        nodes[&3].reader.read(|m| m.config.hash()),
        alone.config.hash()
    );

    // A new learner starts empty; the log behind the leader's snapshot is purged, so it
    // gets the snapshot, and with it the request log.
    nodes.insert(4, start(&router, 4, &storages[&4]).await);
    let leader = find_leader(&router, &nodes[&1].raft).await;
    let purged = leader.metrics().borrow().purged;
    assert!(
        purged.is_some_and(|p| p.index > 10),
        "the leader purged its early log: {purged:?}"
    );
    leader
        .add_learner(4, BasicNode::new("n4"), true)
        .await
        .unwrap();
    let leader = find_leader(&router, &nodes[&1].raft).await;
    let retried = cmd(5);
    let resp = leader.client_write(retried.clone()).await.unwrap();
    let first = alone.execute(&retried).0;
    assert_eq!(resp.data.outcome, first, "a retry gets its first answer");
    assert_eq!(
        resp.data.config_version,
        alone.config.version(),
        "and changes nothing"
    );
    wait_applied(&nodes[&4].reader, resp.log_id.index).await;
    let r4 = &nodes[&4].reader;
    assert_eq!(r4.read(|m| m.config.hash()), alone.config.hash());
    assert!(
        r4.read(|m| m.requests.get(&cmd(1).request_id).is_some()),
        "request log came with the snapshot"
    );

    for node in nodes.values() {
        node.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_node_restarts_from_snapshot_plus_committed_log() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let mut alone = Machine::new();
    let mut last_index = 0;
    {
        let (log, sm) = open_disk(dir.path()).unwrap();
        let raft = Raft::new(1, config(), router.clone(), log, sm)
            .await
            .unwrap();
        router.nodes.lock().unwrap().insert(1, raft.clone());
        raft.initialize(BTreeMap::from([(1, BasicNode::new("n1"))]))
            .await
            .unwrap();
        for n in 1..=15 {
            let leader = find_leader(&router, &raft).await;
            let c = cmd(n);
            let resp = leader.client_write(c.clone()).await.unwrap();
            assert_eq!(resp.data.outcome, alone.execute(&c).0);
            last_index = resp.log_id.index;
        }
        let m = raft
            .wait(Some(WAIT))
            .metrics(|m| m.snapshot.is_some(), "a snapshot")
            .await
            .unwrap();
        assert!(
            m.snapshot.unwrap().index < last_index,
            "entries after the snapshot to replay"
        );
        router.nodes.lock().unwrap().clear();
        raft.shutdown().await.unwrap();
    }

    // openraft's worker tasks drop their store handles shortly after shutdown returns;
    // sled keeps the directory locked until the last one goes.
    let (log, sm) = tokio::time::timeout(WAIT, async {
        loop {
            match open_disk(dir.path()) {
                Ok(opened) => break opened,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the store is released after shutdown");
    // Before any election, the reopened node already holds every committed write.
    let reader = sm.reader();
    assert!(
        reader.applied().borrow().log_index < last_index,
        "the snapshot alone is behind"
    );
    let raft = Raft::new(1, config(), router.clone(), log, sm)
        .await
        .unwrap();
    assert_eq!(reader.applied().borrow().log_index, last_index);
    assert_eq!(reader.read(|m| m.config.hash()), alone.config.hash());
    raft.shutdown().await.unwrap();
}
