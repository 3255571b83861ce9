//! kill -9 during stores: the cache always loads as a complete config whose hash verifies.
//!
//! The test binary runs itself as the writer (`writer_child`, selected by an env var),
//! which stores ever-growing configs in a loop, announcing each store (then waiting for a
//! go on stdin) and reporting it once durable. The parent SIGKILLs it in a chosen phase
//! of a store, found by watching the files: while encoding, at the first file change,
//! once a complete new file exists (fsync, link, rename), once it is in place (directory
//! fsync). Then it checks what a restarted DP would load.
//!
//! A second writer appends each change to the journal instead (`journal_writer_child`),
//! with a whole store whenever the journal fills; the parent kills it after a varying
//! number of reported changes, so kills land in appends, syncs and rewrites alike.
//!
//! Limit: a window of microseconds (between two syscalls) is rarely hit by a kill; the
//! ordering that makes those safe is argued in `cache.rs`.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use tidegate_dp::{encode_file, Cache, CacheFile, Point, CACHE_FILE};
use tidegate_model::{EntityKind, Fixed};
use tidegate_state::{encode_event, Command, ConfigState, Machine, Op, RequestLog};
use uuid::Uuid;

const WRITER_ENV: &str = "TIDEGATE_TEST_CACHE_WRITER";
const JOURNAL_WRITER_ENV: &str = "TIDEGATE_TEST_JOURNAL_WRITER";
/// Services added per store: each store writes a bigger file than the last.
const PER_STORE: u64 = 150;
/// A bound in case the parent never kills the writer.
const MAX_STORES: u64 = 2_000;
const KILLS: u64 = 24;

/// Adds services `svc-{v}` for the next PER_STORE versions v, in one Command; returns
/// its Events, encoded.
fn grow(m: &mut Machine) -> Vec<Vec<u8>> {
    let from = m.config.version();
    let ops = (from + 1..=from + PER_STORE)
        .map(|v| Op::Create {
            kind: EntityKind::Service,
            body: json!({"name": format!("svc-{v}"), "url": format!("http://backend-{v}.internal:8080/api")})
                .to_string(),
        })
        .collect();
    let c = Command {
        request_id: Uuid::from_u128(from as u128 + 1),
        fixed: Fixed {
            id: Uuid::from_u128(0x1_0000_0000 + from as u128),
            now: 1_700_000_000 + from as i64,
            entropy: from as u128,
        },
        op: Op::Batch { ops },
    };
    let (outcome, events) = m.execute(&c);
    outcome.expect("valid batch");
    assert_eq!(m.config.version(), from + PER_STORE);
    events.iter().map(encode_event).collect()
}

fn resume(cache: &Cache) -> Machine {
    Machine {
        config: cache.load().unwrap().unwrap_or_default(),
        requests: RequestLog::default(),
        data_planes: Default::default(),
    }
}

/// The writer's side; a no-op when the test harness runs it normally.
#[test]
fn writer_child() {
    let Some(prefix) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let mut cache = Cache::open(Path::new(&prefix)).unwrap();
    let mut m = resume(&cache);
    let mut out = std::io::stdout();
    let mut say = |line: String| writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
    let mut go = std::io::stdin().lock().lines();
    for _ in 0..MAX_STORES {
        grow(&mut m);
        // The size tells the parent which file on disk is this store's.
        let size = encode_file(&m.config).len();
        // A closed pipe (the parent gone) ends the writer.
        if !say(format!("@storing {} {size}", m.config.version())) {
            return;
        }
        // Wait for the parent's go, so it sees the files as they were before the store.
        if !matches!(go.next(), Some(Ok(_))) {
            return;
        }
        cache.store(&m.config).unwrap();
        if !say(format!("@stored {}", m.config.version())) {
            return;
        }
    }
}

/// The journal writer: appends change after change, without waiting, until killed; a
/// full journal makes it rewrite the cache now and then.
#[test]
fn journal_writer_child() {
    let Some(prefix) = std::env::var_os(JOURNAL_WRITER_ENV) else {
        return;
    };
    let mut cache = Cache::open(Path::new(&prefix)).unwrap();
    // As a restarted DP does: the appends go on after the records it replayed.
    let mut m = Machine {
        config: cache.resume().unwrap().unwrap_or_default(),
        requests: RequestLog::default(),
        data_planes: Default::default(),
    };
    let mut out = std::io::stdout();
    for _ in 0..MAX_STORES {
        let from = Point::of(&m.config);
        let events = grow(&mut m);
        cache.append(&m.config, from, &events).unwrap();
        if writeln!(out, "@stored {}", m.config.version())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Exactly the config some store wrote: services svc-1..svc-N, one per version, whole
/// batches only, and a hash that matches the content.
fn assert_complete(state: &ConfigState) {
    let v = state.version();
    assert_eq!(v % PER_STORE, 0, "version {v} is not a whole store");
    assert_eq!(
        state.len() as u64,
        v,
        "version {v} holds {} entities",
        state.len()
    );
    for i in 1..=v {
        assert!(
            state
                .get_by_unique(EntityKind::Service, "name", &format!("svc-{i}"))
                .is_some(),
            "svc-{i} missing at version {v}"
        );
    }
    assert_eq!(state.recompute_hash(), state.hash());
}

/// Where in a store the writer is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Right after the store began: encoding and checksumming.
    Encoding,
    /// The first file change: the temp file being written or fsynced.
    TempCreated,
    /// A complete new file exists: fsync, linking the previous version, the rename.
    TempComplete,
    /// The new file is in place: the directory fsync, or the next config being built.
    Renamed,
}

const PHASES: [Phase; 4] = [
    Phase::Encoding,
    Phase::TempCreated,
    Phase::TempComplete,
    Phase::Renamed,
];

/// name → length of every file in `prefix`.
fn listing(prefix: &Path) -> BTreeMap<String, u64> {
    let Ok(dir) = std::fs::read_dir(prefix) else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len()))
    })
    .collect()
}

/// Whether the store of a `size`-byte file has reached `phase` on disk, judged only by
/// what any store must do (so a store that wrote in place would be caught too): files
/// only grow from store to store, so a size identifies the store.
fn reached(phase: Phase, prefix: &Path, before: &BTreeMap<String, u64>, size: u64) -> bool {
    let now = listing(prefix);
    match phase {
        Phase::Encoding => true,
        Phase::TempCreated => &now != before,
        Phase::TempComplete => now.values().any(|&len| len == size),
        Phase::Renamed => now.get(CACHE_FILE) == Some(&size),
    }
}

/// The writer's report `@{what}…` in a line; the harness may have printed
/// `test writer_child ... ` before it on the same line.
fn report<'a>(line: &'a str, what: &str) -> Option<&'a str> {
    let at = line.find('@')?;
    line[at + 1..].strip_prefix(what)
}

#[test]
fn a_kill_at_any_moment_leaves_a_complete_config() {
    if std::env::var_os(WRITER_ENV).is_some() || std::env::var_os(JOURNAL_WRITER_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let exe = std::env::current_exe().unwrap();
    let mut durable = 0; // the newest version the writer reported stored
    let mut loaded_versions = Vec::new();
    // Rounds whose store finished before the poll saw the phase: the kill lands just
    // after it, still a valid moment, but most rounds must hit their phase.
    let mut late = 0;
    for round in 0..KILLS {
        let phase = PHASES[(round % 4) as usize];
        // Vary how long each writer lives, so the file sizes and history vary too.
        let skip = (round / 4) % 3;
        let mut child = Process::new(&exe)
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, &prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Lines arrive on a channel so the files can be watched meanwhile.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // A guard against a hung writer, not a condition: it reports within milliseconds.
        let next = || {
            rx.recv_timeout(Duration::from_secs(120))
                .expect("the writer exited or hung before it was killed")
        };
        let mut stdin = child.stdin.take().unwrap();
        let mut announced = 0;
        'kill: loop {
            let line = next();
            if let Some(v) = report(&line, "stored ") {
                durable = v.parse().unwrap();
                continue;
            }
            let Some(rest) = report(&line, "storing ") else {
                continue; // the test harness's own output
            };
            announced += 1;
            if announced <= skip {
                writeln!(stdin, "go").unwrap();
                continue;
            }
            let size: u64 = rest.split(' ').nth(1).unwrap().parse().unwrap();
            let before = listing(&prefix);
            writeln!(stdin, "go").unwrap();
            // Poll the files until the phase shows; a report that the store finished
            // first means the poll missed it.
            loop {
                if reached(phase, &prefix, &before, size) {
                    break 'kill;
                }
                match rx.try_recv() {
                    Ok(line) => {
                        if let Some(v) = report(&line, "stored ") {
                            durable = v.parse().unwrap();
                            late += 1;
                            break 'kill;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        panic!("the writer exited before it was killed")
                    }
                }
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");
        drop(rx);
        reader.join().unwrap();

        match Cache::open(&prefix).unwrap().load_detailed().unwrap() {
            None => assert_eq!(durable, 0, "round {round}: a stored config vanished"),
            Some(loaded) => {
                // Never a torn current file, so never a fallback.
                assert_eq!(
                    loaded.from,
                    CacheFile::Current,
                    "round {round} ({phase:?}): {:?}",
                    loaded.skipped
                );
                assert_complete(&loaded.state);
                assert!(
                    loaded.state.version() >= durable,
                    "round {round}: loaded {} after {durable} was reported stored",
                    loaded.state.version()
                );
                loaded_versions.push(loaded.state.version());
            }
        }
    }
    assert!(
        late <= KILLS / 2,
        "{late} of {KILLS} kills missed their phase"
    );
    // Every writer resumed from the cache and made progress.
    assert!(
        durable >= PER_STORE * KILLS / 2,
        "only reached version {durable}"
    );
    assert!(loaded_versions.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_kill_during_journal_appends_leaves_a_complete_config() {
    if std::env::var_os(WRITER_ENV).is_some() || std::env::var_os(JOURNAL_WRITER_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let exe = std::env::current_exe().unwrap();
    let mut durable = 0;
    let mut replayed = 0;
    for round in 0..KILLS {
        let mut child = Process::new(&exe)
            .args([
                "journal_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(JOURNAL_WRITER_ENV, &prefix)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // 1..=7 changes reported, then a kill while the writer is into the next one.
        let wanted = 1 + round % 7;
        let mut seen = 0;
        while seen < wanted {
            let line = lines
                .next()
                .expect("the writer exited before it was killed")
                .unwrap();
            if let Some(v) = report(&line, "stored ") {
                durable = v.parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: {status}");

        let loaded = Cache::open(&prefix)
            .unwrap()
            .load_detailed()
            .unwrap()
            .expect("a cache after the first reported change");
        assert_eq!(loaded.from, CacheFile::Current, "round {round}");
        assert_eq!(loaded.journal.refused, None, "round {round}");
        assert_complete(&loaded.state);
        assert!(
            loaded.state.version() >= durable,
            "round {round}: loaded {} after {durable} was reported stored",
            loaded.state.version()
        );
        replayed += loaded.journal.records;
    }
    // Most changes went to the journal, not to whole rewrites.
    assert!(
        replayed >= KILLS as usize,
        "only {replayed} journal records replayed"
    );
}
