use super::*;

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, EntryPayload};

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Blank,
    }
}

/// A store whose segments rotate after `segment_bytes`.
fn open(dir: &Path, segment_bytes: u64) -> WalLogStore {
    WalLogStore::open_sized(dir, segment_bytes, || Ok(None)).unwrap()
}

async fn append(log: &mut WalLogStore, entries: impl IntoIterator<Item = Entry>) {
    log.blocking_append(entries.into_iter().collect::<Vec<_>>())
        .await
        .unwrap();
}

async fn ids(log: &mut WalLogStore) -> Vec<(u64, u64)> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join(WAL_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Byte offset of each record in a segment, by walking the lengths.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while let Some(h) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes(h.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push(at);
        at += HEADER + len;
    }
    out
}

#[tokio::test]
async fn a_torn_last_record_ends_the_log_and_the_next_append_goes_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), SEGMENT_BYTES);
        append(&mut log, (1..=5).map(|i| blank(1, i))).await;
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let last = *record_offsets(&bytes).last().unwrap();
    bytes[last + HEADER + 2] ^= 0x55;
    fs::write(&seg, &bytes).unwrap();

    let mut log = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(
        ids(&mut log).await,
        (1..=4).map(|i| (1, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(lid(1, 4))
    );
    // A new leader's entry 5 replaces the torn one, and 6 follows it.
    append(&mut log, [blank(2, 5), blank(2, 6)]).await;
    drop(log);
    let mut log = open(dir.path(), SEGMENT_BYTES);
    let mut want: Vec<(u64, u64)> = (1..=4).map(|i| (1, i)).collect();
    want.extend([(2, 5), (2, 6)]);
    assert_eq!(ids(&mut log).await, want);
}

#[tokio::test]
async fn vote_committed_truncate_and_purge_survive_rotation_and_segment_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 1);
    {
        // Tiny segments: every few entries start a new one.
        let mut log = open(dir.path(), 128);
        log.save_vote(&vote).await.unwrap();
        for i in 1..=40 {
            append(&mut log, [blank(3, i)]).await;
        }
        log.save_committed(Some(lid(3, 30))).await.unwrap();
        log.truncate(lid(3, 36)).await.unwrap();
        assert!(segments(dir.path()).len() > 5, "{:?}", segments(dir.path()));
        let before = segments(dir.path()).len();
        log.purge(lid(3, 25)).await.unwrap();
        // Segments wholly below the purge point are gone; the vote lived in the first.
        assert!(segments(dir.path()).len() < before);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(lid(3, 25)));
        assert_eq!(state.last_log_id, Some(lid(3, 35)));
    }
    let mut log = open(dir.path(), 128);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(3, 30)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(3, 25)));
    assert_eq!(state.last_log_id, Some(lid(3, 35)));
    assert_eq!(
        ids(&mut log).await,
        (26..=35).map(|i| (3, i)).collect::<Vec<_>>()
    );
    // Purging everything leaves an empty log that still knows where it is.
    log.purge(lid(3, 35)).await.unwrap();
    drop(log);
    let mut log = open(dir.path(), 128);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(3, 35)));
    assert_eq!(state.last_log_id, Some(lid(3, 35)));
    assert!(ids(&mut log).await.is_empty());
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
}

#[tokio::test]
async fn a_deleted_segment_that_comes_back_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), 256);
        for i in 1..=30 {
            append(&mut log, [blank(1, i)]).await;
        }
    }
    let first = segments(dir.path())[0].clone();
    let kept = fs::read(&first).unwrap();
    {
        let mut log = open(dir.path(), 256);
        log.purge(lid(1, 20)).await.unwrap();
    }
    assert!(!first.exists());
    // The unlink did not survive the crash.
    fs::write(&first, &kept).unwrap();
    let mut log = open(dir.path(), 256);
    assert_eq!(
        ids(&mut log).await,
        (21..=30).map(|i| (1, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        log.get_log_state().await.unwrap().last_purged_log_id,
        Some(lid(1, 20))
    );
}

#[tokio::test]
async fn a_segment_whose_creation_was_cut_short_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(2, 1);
    {
        let mut log = open(dir.path(), SEGMENT_BYTES);
        log.save_vote(&vote).await.unwrap();
        append(&mut log, (1..=3).map(|i| blank(2, i))).await;
    }
    // The next segment's file exists, but its checkpoint never reached the disk.
    let next = dir.path().join(WAL_DIR).join(segment_name(2));
    fs::write(&next, vec![0u8; 4096]).unwrap();
    let mut log = open(dir.path(), SEGMENT_BYTES);
    assert!(!next.exists());
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    append(&mut log, [blank(2, 4)]).await;
    drop(log);
    let mut log = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(
        ids(&mut log).await,
        (1..=4).map(|i| (2, i)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn damage_before_the_last_segment_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), 256);
        for i in 1..=30 {
            append(&mut log, [blank(1, i)]).await;
        }
    }
    let first = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let second = record_offsets(&bytes)[1];
    bytes[second + HEADER + 1] ^= 0xff;
    fs::write(&first, &bytes).unwrap();
    let err = WalLogStore::open_sized(dir.path(), 256, || Ok(None)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&first.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("record at byte {second}")), "{msg}");
    assert!(
        msg.contains("restore the CP's prefix from a backup"),
        "{msg}"
    );
}

#[tokio::test]
async fn readers_see_entries_once_appended_and_large_entries_get_their_own_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 4096);
    let mut reader = log.get_log_reader().await;
    append(&mut log, (1..=3).map(|i| blank(1, i))).await;
    assert_eq!(reader.try_get_log_entries(2..=3).await.unwrap().len(), 2);
    // An entry larger than a segment and larger than a chunk of zeros.
    let big = Entry {
        log_id: lid(1, 4),
        payload: EntryPayload::Normal(tidegate_state::Command {
            request_id: uuid::Uuid::from_u128(1),
            fixed: tidegate_model::Fixed {
                id: uuid::Uuid::from_u128(2),
                now: 1_700_000_000,
                entropy: 3,
            },
            op: tidegate_state::Op::Create {
                kind: tidegate_model::EntityKind::Service,
                body: "x".repeat(3 << 20),
            },
        }),
    };
    append(&mut log, [big.clone(), blank(1, 5)]).await;
    drop(log);
    let mut log = open(dir.path(), 4096);
    let got = log.try_get_log_entries(4..=5).await.unwrap();
    assert_eq!(got[0], big);
    assert_eq!(got[1], blank(1, 5));
}

/// One append's records can reach the disk out of order: the second whole, the first
/// torn. The second must never come back after a new record that ends where it starts.
#[tokio::test]
async fn records_after_a_torn_one_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), SEGMENT_BYTES);
        append(&mut log, (1..=3).map(|i| blank(1, i))).await;
        append(&mut log, [blank(1, 4), blank(1, 5)]).await;
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    // Checkpoint, 1, 2, 3, 4, 5: tear 4, keep 5.
    let (r4, r5) = (offsets[4], offsets[5]);
    bytes[r4 + HEADER + 1] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();

    let mut log = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(
        ids(&mut log).await,
        (1..=3).map(|i| (1, i)).collect::<Vec<_>>()
    );
    let now = fs::read(&seg).unwrap();
    assert!(now[r4..].iter().all(|&b| b == 0), "the tail was zeroed");
    // (2, 4) encodes to the length of (1, 4): it ends exactly where (1, 5) was.
    append(&mut log, [blank(2, 4)]).await;
    let now = fs::read(&seg).unwrap();
    assert_eq!(record_offsets(&now).last(), Some(&r4));
    let new_len = HEADER + u32::from_le_bytes(now[r4..r4 + 4].try_into().unwrap()) as usize;
    assert_eq!(r4 + new_len, r5, "the old record 5 would be next");
    drop(log);
    let mut log = open(dir.path(), SEGMENT_BYTES);
    let mut want: Vec<(u64, u64)> = (1..=3).map(|i| (1, i)).collect();
    want.push((2, 4));
    assert_eq!(ids(&mut log).await, want);
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(lid(2, 4))
    );
}

/// Unlinks are not synced: after a crash any subset of the deleted segments may be
/// back. One below a gap is stale (the segment after it, which overrode it, is gone).
#[tokio::test]
async fn a_deleted_segment_back_below_a_gap_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), 128);
        for i in 1..=20 {
            append(&mut log, [blank(1, i)]).await;
        }
        // Entries 6 and up go: in the surviving history they are replaced by term 2's.
        log.truncate(lid(1, 6)).await.unwrap();
        for i in 6..=30 {
            append(&mut log, [blank(2, i)]).await;
        }
    }
    let all = segments(dir.path());
    assert!(all.len() >= 5, "{all:?}");
    let first = fs::read(&all[0]).unwrap();
    {
        let mut log = open(dir.path(), 128);
        log.purge(lid(2, 25)).await.unwrap();
    }
    assert!(!all[0].exists() && !all[1].exists());
    // Only the first came back: its term-1 entries must not reappear.
    fs::write(&all[0], &first).unwrap();
    let mut log = open(dir.path(), 128);
    assert!(!all[0].exists());
    assert_eq!(
        ids(&mut log).await,
        (26..=30).map(|i| (2, i)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_lone_segment_without_its_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), SEGMENT_BYTES));
    let seg = segments(dir.path()).pop().unwrap();
    fs::write(&seg, vec![0u8; 4096]).unwrap();
    let err = WalLogStore::open_sized(dir.path(), SEGMENT_BYTES, || Ok(None)).unwrap_err();
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}
