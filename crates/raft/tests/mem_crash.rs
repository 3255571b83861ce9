//! The in-memory store with an fsync delay keeps exactly what became durable across a
//! crash: what the simulator relies on to find stores that acknowledge too early.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use tidegate_raft::{Entry, LogId, MemStorage, Vote};

fn lid(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: lid(index),
        payload: EntryPayload::Blank,
    }
}

/// Polls `fut` once: it has made its write visible and waits for the fsync.
async fn start<F: Future>(fut: &mut std::pin::Pin<Box<F>>) {
    let pending = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await;
    assert!(pending, "the write completed before its fsync delay");
}

#[tokio::test]
async fn a_crash_loses_an_append_that_was_not_durable_yet() {
    // The fsync never completes by itself within the test: only the crash decides.
    let disk = MemStorage::with_fsync(Duration::from_secs(3600));
    let (mut log, _sm) = disk.open().unwrap();
    let mut write = Box::pin(log.blocking_append([blank(1), blank(2)]));
    start(&mut write).await;
    // Visible to the running node, as a page-cache write is.
    assert_eq!(disk.log_entries().len(), 2);
    disk.crash();
    drop(write);

    let (mut log, _sm) = disk.open().unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, None);
    assert!(log.try_get_log_entries(0..10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_keeps_what_was_durable_and_drops_the_rest() {
    let disk = MemStorage::with_fsync(Duration::from_millis(1));
    let (mut log, _sm) = disk.open().unwrap();
    let vote = Vote::new(3, 2);
    log.save_vote(&vote).await.unwrap();
    log.blocking_append([blank(1), blank(2), blank(3)])
        .await
        .unwrap();

    // A truncation and a newer vote still waiting for their fsync when the power goes.
    let mut truncate = Box::pin(log.truncate(lid(2)));
    start(&mut truncate).await;
    drop(truncate);
    let newer_vote = Vote::new(4, 1);
    let mut newer = Box::pin(log.save_vote(&newer_vote));
    start(&mut newer).await;
    drop(newer);
    assert_eq!(disk.log_entries().len(), 1);
    disk.crash();

    let (mut log, _sm) = disk.open().unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(lid(3)),
        "the truncation was not durable"
    );
}

#[tokio::test]
async fn a_store_without_fsync_delay_loses_nothing() {
    let disk = MemStorage::new();
    let (mut log, _sm) = disk.open().unwrap();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    log.blocking_append([blank(1), blank(2)]).await.unwrap();
    log.purge(lid(1)).await.unwrap();
    disk.crash();
    let (mut log, _sm) = disk.open().unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(
        (state.last_purged_log_id, state.last_log_id),
        (Some(lid(1)), Some(lid(2)))
    );
    assert_eq!(disk.last_purged(), Some(lid(1)));
}
