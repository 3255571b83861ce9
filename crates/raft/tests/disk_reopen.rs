//! The disk store (write-ahead log + sled) keeps what openraft relies on across a close
//! and reopen, and takes over a log an older tidegate kept in sled.

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader, RaftSnapshotBuilder};
use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_raft::{open_disk, Entry, LogId, Vote, WalLogStore};
use tidegate_state::{Command, Op};
use uuid::Uuid;

fn lid(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(2, 1), index)
}

fn consumer(n: u64) -> Entry {
    Entry {
        log_id: lid(n),
        payload: EntryPayload::Normal(Command {
            request_id: Uuid::from_u128(n as u128),
            fixed: Fixed {
                id: Uuid::from_u128(0xb000_0000_0000_0000_0000_0000_0000_0000 + n as u128),
                now: 1_700_000_000,
                entropy: n as u128,
            },
            op: Op::Create {
                kind: EntityKind::Consumer,
                body: json!({"username": format!("u{n}")}).to_string(),
            },
        }),
    }
}

async fn append(log: &mut WalLogStore, entries: Vec<Entry>) {
    openraft::storage::RaftLogStorageExt::blocking_append(log, entries)
        .await
        .unwrap();
}

#[tokio::test]
async fn reopen_keeps_vote_log_committed_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(2, 1);
    let (snapshot_meta, hash, version) = {
        let (mut log, mut sm) = open_disk(dir.path()).unwrap();
        log.save_vote(&vote).await.unwrap();
        append(&mut log, (1..=10).map(consumer).collect()).await;
        log.save_committed(Some(lid(8))).await.unwrap();
        sm.apply((1..=6).map(consumer)).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(lid(3)).await.unwrap();
        log.truncate(lid(10)).await.unwrap();
        let (hash, version) = sm.reader().read(|m| (m.config.hash(), m.config.version()));
        (snap.meta, hash, version)
    };

    let (mut log, mut sm) = open_disk(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(8)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(3)));
    assert_eq!(state.last_log_id, Some(lid(9)));
    let got = log.try_get_log_entries(0..100).await.unwrap();
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (4..=9).collect::<Vec<_>>());
    assert_eq!(got[0], consumer(4));

    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot kept");
    assert_eq!(current.meta, snapshot_meta);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(lid(6)));
    assert_eq!(
        sm.reader().read(|m| (m.config.hash(), m.config.version())),
        (hash, version)
    );
    let mut fresh = tidegate_raft::MemStorage::new().open().unwrap().1;
    fresh
        .install_snapshot(&current.meta, current.snapshot)
        .await
        .unwrap();
    assert_eq!(fresh.reader().read(|m| m.config.hash()), hash);
}

/// A store an older tidegate wrote kept the log in sled (trees `log` and `raft_meta`);
/// the first open moves it into the write-ahead log, and sled's copy goes.
#[tokio::test]
async fn a_log_kept_in_sled_moves_to_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(2, 1);
    {
        let db = sled::open(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let meta = db.open_tree("raft_meta").unwrap();
        // 1..=3 were purged, but a crash left 2 and 3 behind the marker.
        for n in 2u64..=9 {
            log.insert(n.to_be_bytes(), postcard::to_stdvec(&consumer(n)).unwrap())
                .unwrap();
        }
        meta.insert("vote", postcard::to_stdvec(&vote).unwrap())
            .unwrap();
        meta.insert("committed", postcard::to_stdvec(&Some(lid(7))).unwrap())
            .unwrap();
        meta.insert("last_purged", postcard::to_stdvec(&lid(3)).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    for open in 0..2 {
        let (mut log, _sm) = open_disk(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote), "open {open}");
        assert_eq!(log.read_committed().await.unwrap(), Some(lid(7)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(lid(3)));
        assert_eq!(state.last_log_id, Some(lid(9)));
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, (4..=9).map(consumer).collect::<Vec<_>>());
        // New entries go to the write-ahead log.
        if open == 0 {
            append(&mut log, vec![consumer(10)]).await;
            log.truncate(lid(10)).await.unwrap();
        }
    }
    let db = sled::open(dir.path()).unwrap();
    assert!(db.open_tree("log").unwrap().is_empty());
    assert!(db.open_tree("raft_meta").unwrap().is_empty());
    assert!(dir.path().join(tidegate_raft::WAL_DIR).is_dir());
}
