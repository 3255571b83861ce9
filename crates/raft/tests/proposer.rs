//! Group commit on a real single-node group over sled: concurrent writes share entries,
//! each keeps its own outcome, and everything acknowledged is there after a reopen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ServerState};
use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_raft::network::Network;
use tidegate_raft::{open_disk, raft_config, Proposer, Raft, StateReader};
use tidegate_state::{Command, Op};
use uuid::Uuid;

fn create_consumer(n: u128, username: &str) -> Command {
    Command {
        request_id: Uuid::from_u128(n),
        fixed: Fixed {
            id: Uuid::from_u128(0xc000_0000_0000_0000_0000_0000_0000_0000 + n),
            now: 1_700_000_000,
            entropy: n,
        },
        op: Op::Create {
            kind: EntityKind::Consumer,
            body: json!({ "username": username }).to_string(),
        },
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path, init: bool) -> (Raft, StateReader) {
    // sled keeps the directory locked until openraft's tasks of a previous run in this
    // process have dropped their handles.
    let (log, sm) = tokio::time::timeout(WAIT, async {
        loop {
            match open_disk(dir) {
                Ok(opened) => break opened,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the store is released after shutdown");
    let reader = sm.reader();
    let raft = Raft::new(
        1,
        Arc::new(raft_config("proposer-test")),
        Network::new(None),
        log,
        sm,
    )
    .await
    .unwrap();
    if init {
        let members = BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]);
        raft.initialize(members).await.unwrap();
    }
    raft.wait(Some(WAIT))
        .state(ServerState::Leader, "the only node leads")
        .await
        .unwrap();
    (raft, reader)
}

#[tokio::test]
async fn concurrent_writes_share_entries_and_keep_their_own_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, reader) = start(dir.path(), true).await;
    let proposer = Proposer::new(raft.clone());
    let index_before = reader.applied().borrow().log_index;

    let mut cmds: Vec<Command> = (0..64u128)
        .map(|n| create_consumer(n + 1, &format!("user-{n}")))
        .collect();
    // A second consumer named user-5: refused on its own, nobody else affected.
    cmds.push(create_consumer(1_000, "user-5"));
    // A retry of request 8 while the first attempt is in flight: applied once.
    cmds.push(create_consumer(8, "user-7"));
    // Spawned together, they are all queued before the proposer picks a group.
    let tasks: Vec<_> = cmds
        .iter()
        .cloned()
        .map(|c| {
            let p = proposer.clone();
            tokio::spawn(async move { p.write(c).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }

    let mut indexes = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let w = r
            .as_ref()
            .unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        indexes.push(w.log_index);
        match i {
            64 => assert_eq!(w.response.outcome.as_ref().unwrap_err().status(), 409),
            65 => assert_eq!(
                w.response.outcome,
                results[7].as_ref().unwrap().response.outcome
            ),
            _ => assert!(
                w.response.outcome.is_ok(),
                "write {i}: {:?}",
                w.response.outcome
            ),
        }
    }
    indexes.sort_unstable();
    indexes.dedup();
    // 66 writes in far fewer entries: they were grouped.
    assert!(
        indexes.len() <= 8,
        "66 concurrent writes took {} entries",
        indexes.len()
    );
    let index_after = reader.applied().borrow().log_index;
    assert!(index_after - index_before <= 8);
    let consumers = reader.read(|m| m.config.count(EntityKind::Consumer));
    assert_eq!(consumers, 64);
    let (hash, version) = reader.read(|m| (m.config.hash(), m.config.version()));
    assert_eq!(version, 64);

    // A lone write after that is an entry of its own, as before grouping existed.
    let lone = proposer
        .write(create_consumer(2_000, "lone"))
        .await
        .unwrap();
    assert_eq!(lone.log_index, index_after + 1);
    let hash_with_lone = reader.read(|m| m.config.hash());
    assert_ne!(hash_with_lone, hash);

    drop(proposer);
    raft.shutdown().await.unwrap();
    drop((raft, reader));

    // Everything acknowledged comes back, group entries included.
    let (raft, reader) = start(dir.path(), false).await;
    let mut applied = reader.applied();
    tokio::time::timeout(WAIT, applied.wait_for(|a| a.config_version == 65))
        .await
        .expect("the reopened node re-applies every acknowledged write")
        .unwrap();
    assert_eq!(reader.read(|m| m.config.hash()), hash_with_lone);
    raft.shutdown().await.unwrap();
}
