//! kill -9 of a process appending to the CP's disk store: what it reported durable is
//! there after a reopen, and the log is an unbroken run of the entries it wrote.
//!
//! The test binary runs itself as the writer (`wal_writer_child`, selected by an env
//! var): it appends batches of entries without pause, saves the committed id now and
//! then, purges now and then, and reports each batch once `append`'s callback said it is
//! durable. The parent kills it after a varying number of reports, reopens the store and
//! checks it, then lets a new writer go on from what is there.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use tidegate_model::{EntityKind, Fixed};
use tidegate_raft::{open_disk, Entry, LogId, Vote};
use tidegate_state::{Command, Op};
use uuid::Uuid;

const WRITER_ENV: &str = "TIDEGATE_TEST_WAL_WRITER";
const KILLS: u64 = 16;
/// A bound in case the parent never kills the writer.
const MAX_BATCHES: u64 = 20_000;

fn lid(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// Entry `i`, the same in every process: its size varies so records straddle pages.
fn entry(i: u64) -> Entry {
    Entry {
        log_id: lid(i),
        payload: EntryPayload::Normal(Command {
            request_id: Uuid::from_u128(i as u128),
            fixed: Fixed {
                id: Uuid::from_u128(0xa000 + i as u128),
                now: 1_700_000_000,
                entropy: i as u128,
            },
            op: Op::Create {
                kind: EntityKind::Service,
                body: format!(
                    "{{\"name\":\"svc-{i}\",\"url\":\"http://up:80/{}\"}}",
                    "p".repeat((i % 97) as usize * 7)
                ),
            },
        }),
    }
}

#[tokio::test]
async fn wal_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let (mut log, _sm) = open_disk(Path::new(&dir)).unwrap();
    let state = log.get_log_state().await.unwrap();
    let mut next = state.last_log_id.map_or(1, |l| l.index + 1);
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    let mut out = std::io::stdout();
    for batch in 0..MAX_BATCHES {
        let n = 1 + batch % 5;
        log.blocking_append((next..next + n).map(entry).collect::<Vec<_>>())
            .await
            .unwrap();
        next += n;
        if batch % 3 == 0 {
            log.save_committed(Some(lid(next - 1))).await.unwrap();
        }
        if batch % 50 == 49 {
            log.purge(lid(next - 40)).await.unwrap();
        }
        if writeln!(out, "@durable {}", next - 1)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn a_kill_at_any_moment_keeps_every_acknowledged_entry() {
    if std::env::var_os(WRITER_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable = 0;
    for round in 0..KILLS {
        let mut child = Process::new(&exe)
            .args([
                "wal_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // 1..=40 reports, then a kill while the writer is in its next write.
        let wanted = 1 + (round * 7) % 40;
        let mut seen = 0;
        while seen < wanted {
            let line = lines
                .next()
                .expect("the writer exited before it was killed")
                .unwrap();
            if let Some(at) = line.find("@durable ") {
                durable = line[at + 9..].trim().parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");

        // sled's lock goes with the process; the reopen is immediate.
        let (mut log, _sm) = open_disk(dir.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        let last = state.last_log_id.expect("entries").index;
        assert!(
            last >= durable,
            "round {round}: last {last} < durable {durable}"
        );
        let first = state.last_purged_log_id.map_or(1, |p| p.index + 1);
        let got = log.try_get_log_entries(first..=last).await.unwrap();
        assert_eq!(got.len() as u64, last - first + 1, "round {round}: a hole");
        for e in &got {
            assert_eq!(*e, entry(e.log_id.index), "round {round}");
        }
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 1))
        );
        let committed = log.read_committed().await.unwrap();
        assert!(
            committed.is_none_or(|c| c.index <= last),
            "round {round}: committed {committed:?} beyond the log's end {last}"
        );
    }
    assert!(durable > KILLS * 5, "only reached {durable}");
}
