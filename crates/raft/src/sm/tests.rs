use super::*;

use openraft::{CommittedLeaderId, Membership};
use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_state::{Command, EntityRef, Op};

use crate::mem::{MemStateMachine, MemStorage};

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn cmd(n: u128, op: Op) -> Command {
    Command {
        request_id: Uuid::from_u128(n),
        fixed: Fixed {
            id: Uuid::from_u128(0xa000_0000_0000_0000_0000_0000_0000_0000 + n),
            now: 1_700_000_000 + n as i64,
            entropy: n * 7919,
        },
        op,
    }
}

fn create(kind: EntityKind, body: serde_json::Value) -> Op {
    Op::Create {
        kind,
        body: body.to_string(),
    }
}

/// A deterministic mix of accepted, rejected, cascading and no-op Commands.
fn workload(n: u128) -> Vec<Command> {
    let mut out = Vec::new();
    for i in 1..=n {
        let op = match i % 7 {
            0 => create(
                EntityKind::Service,
                json!({"name": format!("s{}", i - 1), "host": "dup.com"}),
            ),
            3 => create(
                EntityKind::Route,
                json!({"name": format!("r{i}"), "paths": ["/"], "service": {"name": format!("s{}", i - 1)}}),
            ),
            5 => Op::Delete {
                kind: EntityKind::Service,
                key: EntityRef::Key(format!("s{}", i - 4)),
            },
            _ => create(
                EntityKind::Service,
                json!({"name": format!("s{i}"), "host": "a.com"}),
            ),
        };
        out.push(cmd(i, op));
    }
    out
}

fn normal(index: u64, c: &Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(c.clone()),
    }
}

fn entries(cmds: &[Command], first_index: u64) -> Vec<Entry> {
    cmds.iter()
        .enumerate()
        .map(|(i, c)| normal(first_index + i as u64, c))
        .collect()
}

fn open_mem(tail: usize) -> MemStateMachine {
    MemStorage::new().open_with_event_tail(tail).unwrap().1
}

fn hash_and_version(r: &StateReader) -> (tidegate_model::ConfigHash, u64) {
    r.read(|m| (m.config.hash(), m.config.version()))
}

#[tokio::test]
async fn applying_through_raft_matches_the_machine_alone() {
    let cmds = workload(60);
    let mut alone = Machine::new();
    let expected: Vec<Outcome> = cmds.iter().map(|c| alone.execute(c).0).collect();
    assert!(
        expected.iter().any(|o| o.is_err()),
        "the workload exercises rejections"
    );

    let mut sm = open_mem(DEFAULT_EVENT_TAIL);
    let mut responses = Vec::new();
    // In uneven batches, as openraft hands them over.
    for (chunk_no, chunk) in cmds.chunks(7).enumerate() {
        let first = 1 + (chunk_no * 7) as u64;
        responses.extend(sm.apply(entries(chunk, first)).await.unwrap());
    }
    let outcomes: Vec<Outcome> = responses.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(outcomes, expected);
    assert_eq!(
        responses.last().unwrap().config_version,
        alone.config.version()
    );

    let r = sm.reader();
    assert_eq!(
        hash_and_version(&r),
        (alone.config.hash(), alone.config.version())
    );
    assert_eq!(r.read(|m| m.config.recompute_hash()), alone.config.hash());
    assert_eq!(
        *r.applied().borrow(),
        Applied {
            log_index: 60,
            config_version: alone.config.version()
        }
    );
}

#[tokio::test]
async fn blank_and_membership_entries_change_no_config() {
    let mut sm = open_mem(DEFAULT_EVENT_TAIL);
    let membership = Membership::new(
        vec![[1, 2, 3].into()],
        [
            (1, openraft::BasicNode::new("a:1")),
            (2, openraft::BasicNode::new("b:1")),
            (3, openraft::BasicNode::new("c:1")),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let out = sm
        .apply([
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Membership(membership.clone()),
            },
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    for r in &out {
        assert_eq!(r.config_version, 0);
        assert_eq!(r.outcome.as_ref().unwrap().events, 0);
    }
    let (last, m) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(2)));
    assert_eq!(m, StoredMembership::new(Some(log_id(2)), membership));
}

#[tokio::test]
async fn an_installed_snapshot_replaces_the_whole_state() {
    let cmds = workload(30);
    let mut leader = open_mem(DEFAULT_EVENT_TAIL);
    leader.apply(entries(&cmds, 1)).await.unwrap();
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(30)));

    // A follower with a diverging state of its own, which must not survive.
    let mut follower = open_mem(DEFAULT_EVENT_TAIL);
    let stray = cmd(
        10_000,
        create(EntityKind::Consumer, json!({"username": "stray"})),
    );
    follower.apply([normal(1, &stray)]).await.unwrap();

    let mut rx = follower.reader().applied();
    let mut data = follower.begin_receiving_snapshot().await.unwrap();
    *data = *snap.snapshot;
    follower.install_snapshot(&snap.meta, data).await.unwrap();

    let (l, f) = (leader.reader(), follower.reader());
    assert_eq!(hash_and_version(&f), hash_and_version(&l));
    assert_eq!(
        f.read(|m| m.config.count(EntityKind::Consumer)),
        0,
        "no merge"
    );
    assert_eq!(
        f.read(|m| m.requests.clone()),
        l.read(|m| m.requests.clone())
    );
    assert!(f.read(|m| m.requests.get(&stray.request_id).is_none()));
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().log_index, 30);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        leader.applied_state().await.unwrap()
    );

    // A client retry of an already applied request is still answered, not re-applied.
    let retried = &cmds[0];
    let version = f.read(|m| m.config.version());
    let again = follower.apply([normal(31, retried)]).await.unwrap();
    let first = l
        .read(|m| m.requests.get(&retried.request_id).cloned())
        .unwrap();
    assert_eq!(again[0].outcome, first);
    assert_eq!(f.read(|m| m.config.version()), version);

    // The tail restarts at the snapshot: older DPs get a snapshot.
    assert_eq!(f.events_since(version), Some(Vec::new()));
    assert_eq!(f.events_since(version - 1), None);
}

#[tokio::test]
async fn a_corrupt_snapshot_is_refused_and_changes_nothing() {
    let mut sm = open_mem(DEFAULT_EVENT_TAIL);
    sm.apply(entries(&workload(5), 1)).await.unwrap();
    let before = hash_and_version(&sm.reader());
    let good = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let mut other = open_mem(DEFAULT_EVENT_TAIL);
    let mut bytes = good.snapshot.into_inner();
    bytes.truncate(bytes.len() / 2);
    let err = other
        .install_snapshot(&good.meta, Box::new(Cursor::new(bytes)))
        .await;
    assert!(err.is_err());
    assert_eq!(other.applied_state().await.unwrap().0, None);

    // Meta that disagrees with the content is refused too.
    let mut lying = good.meta.clone();
    lying.last_log_id = Some(log_id(99));
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert!(other.install_snapshot(&lying, snap.snapshot).await.is_err());
    assert_eq!(hash_and_version(&other.reader()).1, 0);
    assert_eq!(hash_and_version(&sm.reader()), before);
}

#[tokio::test]
async fn events_since_returns_exactly_the_missing_events() {
    let mut sm = open_mem(3);
    let r = sm.reader();
    assert_eq!(r.events_since(0), Some(Vec::new()));
    let cmds: Vec<Command> = (1..=5)
        .map(|i| {
            cmd(
                i,
                create(EntityKind::Consumer, json!({"username": format!("u{i}")})),
            )
        })
        .collect();
    sm.apply(entries(&cmds, 1)).await.unwrap();
    let versions = |v: u64| {
        r.events_since(v)
            .map(|es| es.iter().map(|e| e.version).collect::<Vec<_>>())
    };
    assert_eq!(versions(5), Some(vec![]));
    assert_eq!(versions(4), Some(vec![5]));
    assert_eq!(versions(2), Some(vec![3, 4, 5]));
    assert_eq!(versions(1), None, "beyond the tail");
    assert_eq!(versions(0), None);
    assert_eq!(versions(6), None, "newer than this state");

    // The events are the ones the machine produced.
    let mut alone = Machine::new();
    let all: Vec<Event> = cmds.iter().flat_map(|c| alone.execute(c).1).collect();
    assert_eq!(r.events_since(2).unwrap(), all[2..].to_vec());
}

#[tokio::test]
async fn a_restart_resumes_from_the_persisted_snapshot() {
    let storage = MemStorage::new();
    let (_log, mut sm) = storage.open().unwrap();
    let cmds = workload(20);
    sm.apply(entries(&cmds[..12], 1)).await.unwrap();
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    sm.apply(entries(&cmds[12..], 13)).await.unwrap();
    let at_snapshot = {
        let mut m = Machine::new();
        cmds[..12].iter().for_each(|c| drop(m.execute(c)));
        (m.config.hash(), m.config.version())
    };
    drop(sm);

    let (_log, mut sm) = storage.open().unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(12)));
    assert_eq!(hash_and_version(&sm.reader()), at_snapshot);
    assert_eq!(
        *sm.reader().applied().borrow(),
        Applied {
            log_index: 12,
            config_version: at_snapshot.1
        }
    );
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
}

#[tokio::test]
async fn an_older_build_never_overwrites_a_newer_snapshot() {
    let storage = MemStorage::new();
    let (_log, mut sm) = storage.open().unwrap();
    sm.apply(entries(&workload(4), 1)).await.unwrap();
    let old = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    sm.apply(entries(&workload(8)[4..], 5)).await.unwrap();
    let new = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    // Replay the old one's save as if its build had been slow.
    sm.persister
        .persist(&StoredSnapshot {
            meta: old.meta.clone(),
            data: old.snapshot.into_inner(),
        })
        .await
        .unwrap();
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, new.meta);
}
