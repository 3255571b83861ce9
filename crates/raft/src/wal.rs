//! The Raft log of a CP: an append-only write-ahead log in `<store>/wal/`, one
//! `fdatasync` per append.
//!
//! sled needed two device round trips per write: its flush ends in `sync_file_range`
//! (data to the disk, not its cache), and an `fdatasync` after it for the disk's cache
//! and the file's growing size. Here an append is one `pwrite` into bytes already
//! written (zeros laid down a chunk ahead) and one `fdatasync`: the disk's cache is
//! flushed and no size has to be committed, as etcd's WAL does.
//!
//! ```text
//!  wal/0000000000000001.seg, 0000000000000002.seg, …   (replayed in name order)
//!  segment = Checkpoint record, then records, then zeros
//!  record  = length u32 LE (of kind + body) │ crc32 of kind + body │ kind u8 │ body (postcard)
//!  kinds   = Checkpoint{vote, committed, purged} │ Entry │ Vote │ Committed │ Truncate{from} │ Purge{upto}
//! ```
//!
//! A replay applies the records in order and stops at the first that does not check out:
//! in the last segment that is the end of what was written (a record torn by a crash, or
//! the zeros ahead), and everything after it is zeroed before the log is used; in any
//! earlier one a zero length ends the segment and anything else is damage, refused with
//! the file and offset. (Damage in the last segment cannot be told from a torn write: it
//! ends the log there, as in etcd's WAL without its torn-write check.) A segment is only left for the next once
//! everything in it is durable, and each begins with a checkpoint of the vote, committed
//! id and purge point, so whole segments below the purge point can be deleted.
//!
//! Durability is what openraft relies on: `append` calls back after the `fdatasync`,
//! `save_vote`, `truncate` and `purge` return after theirs. `save_committed` is written
//! without one (openraft treats it as optional); it rides the next sync and, the log
//! being replayed as a prefix, is never read ahead of the entries it covers.
//!
//! One writer: openraft calls the `&mut self` methods one at a time. Readers (clones)
//! see an entry once it is durable, and read it with `pread`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::encode;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

pub const WAL_DIR: &str = "wal";
/// A new segment is started once the current one holds this much.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Zeros written ahead of the appends at a time. Small: the append that lays them down
/// waits for them and for the file's new size (64 KiB cost 0.34 ms here against 0.14 ms
/// for an append in place; 1 MiB cost 1.4–5.6 ms, which showed in the p99).
const CHUNK: u64 = 64 << 10;
/// The largest record read back: far above any entry the Admin API accepts.
const MAX_RECORD: u64 = 1 << 30;
const HEADER: usize = 4 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Checkpoint = 1,
    Entry = 2,
    Vote = 3,
    Committed = 4,
    Truncate = 5,
    Purge = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Checkpoint,
            2 => Kind::Entry,
            3 => Kind::Vote,
            4 => Kind::Committed,
            5 => Kind::Truncate,
            6 => Kind::Purge,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    log_id: LogId,
    segment: u64,
    /// Offset of the record's body.
    offset: u64,
    len: u32,
}

/// What one record does to the log's state: the same whether it is being written now or
/// replayed at start-up, so the two cannot drift apart.
enum Effect {
    Checkpoint(Checkpoint),
    Entry(Loc),
    Vote(Vote),
    Committed(Option<LogId>),
    Truncate { from: u64 },
    Purge(LogId),
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file written so far (records, then zeros).
    written: u64,
}

/// What a replay rebuilt, and the log being written.
struct Wal {
    dir: PathBuf,
    /// Every segment on disk, by number; the last is written to.
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Loc>,
    meta: Checkpoint,
    /// [`SEGMENT_BYTES`]; smaller in tests, to see rotation.
    segment_bytes: u64,
}

/// The Raft log, vote and committed id in a write-ahead log; clones share it (and are
/// its log readers).
#[derive(Clone)]
pub struct WalLogStore {
    wal: Arc<Mutex<Wal>>,
}

impl Debug for WalLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wal = self.lock();
        f.debug_struct("WalLogStore")
            .field("dir", &wal.dir)
            .field("segments", &wal.segments.len())
            .field("entries", &wal.entries.len())
            .finish()
    }
}

/// What a store moved over from sled's log trees, when it had any.
pub(crate) struct Migrated {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
    pub entries: Vec<Entry>,
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn segment_name(n: u64) -> String {
    format!("{n:016}.seg")
}

/// One record's bytes.
fn record(kind: Kind, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(1 + body.len()).expect("a record under 4 GiB");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind as u8]);
    crc.update(body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
}

/// A log that cannot be used as it is, and what the operator can do about it.
fn damaged(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {why}; the Raft log is damaged: restore the CP's prefix from a backup, or remove it to rejoin the group empty",
            path.display()
        ),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl WalLogStore {
    /// Opens the log in `<store>/wal`, replaying it. When there is none yet, `migrate`
    /// gives what an older store kept elsewhere (sled), written as the new log's start.
    pub(crate) fn open(
        store: &Path,
        migrate: impl FnOnce() -> io::Result<Option<Migrated>>,
    ) -> io::Result<WalLogStore> {
        Self::open_sized(store, SEGMENT_BYTES, migrate)
    }

    fn open_sized(
        store: &Path,
        segment_bytes: u64,
        migrate: impl FnOnce() -> io::Result<Option<Migrated>>,
    ) -> io::Result<WalLogStore> {
        let dir = store.join(WAL_DIR);
        if !dir.is_dir() {
            create(store, &dir, migrate()?)?;
        }
        let wal = replay(&dir, segment_bytes)?;
        Ok(WalLogStore {
            wal: Arc::new(Mutex::new(wal)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Wal> {
        // A panic under the lock leaves at most an index not updated: the disk is the
        // truth and a restart replays it.
        self.wal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `records` (whole records) at the end of the current segment, starting a
    /// new one first when it is full, and syncs them if `sync`. Returns where the bytes
    /// went. Runs on the blocking pool (it waits for the disk) and without the lock while
    /// it waits, so readers (replication, apply) are not held behind the sync.
    async fn write(&self, records: Vec<u8>, sync: bool) -> io::Result<(u64, u64)> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let place = this.lock().reserve(records.len() as u64)?;
            place.write(&records, sync)?;
            Ok((place.segment, place.at))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Writes one record of `kind` and, once it is written (and synced, if `sync`),
    /// applies its `effect`.
    async fn put(&self, kind: Kind, body: &[u8], sync: bool, effect: Effect) -> io::Result<()> {
        let mut bytes = Vec::new();
        record(kind, body, &mut bytes);
        self.write(bytes, sync).await?;
        self.lock().apply(effect);
        Ok(())
    }
}

/// Bytes reserved at the end of a segment for one write.
struct Place {
    segment: u64,
    file: Arc<File>,
    path: PathBuf,
    at: u64,
    /// Zeros to write after the records, to keep ahead of the appends.
    zeros: u64,
}

impl Place {
    fn write(&self, records: &[u8], sync: bool) -> io::Result<()> {
        let failed = |op: &str| io_err(format!("{}: {op}", self.path.display()));
        if self.zeros > 0 {
            // The zeros in the same write: the file grows once per chunk, and an
            // append's fdatasync has no size to commit.
            let mut bytes = vec![0u8; records.len() + self.zeros as usize];
            bytes[..records.len()].copy_from_slice(records);
            self.file
                .write_all_at(&bytes, self.at)
                .map_err(failed("write"))?;
        } else {
            self.file
                .write_all_at(records, self.at)
                .map_err(failed("write"))?;
        }
        if sync {
            self.file.sync_data().map_err(failed("sync"))?;
        }
        Ok(())
    }
}

impl Wal {
    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Checkpoint(c) => {
                if let Some(p) = c.purged {
                    // Entries of a deleted segment that came back after a crash.
                    self.entries = self.entries.split_off(&(p.index + 1));
                }
                self.meta = c;
            }
            Effect::Entry(loc) => {
                // An entry replaces any at or after its index: after a conflict the
                // leader's entries overwrite the tail.
                self.entries.split_off(&loc.log_id.index);
                self.entries.insert(loc.log_id.index, loc);
            }
            Effect::Vote(v) => self.meta.vote = Some(v),
            Effect::Committed(c) => self.meta.committed = c,
            Effect::Truncate { from } => {
                self.entries.split_off(&from);
            }
            Effect::Purge(upto) => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                self.meta.purged = Some(upto);
            }
        }
    }

    fn current(&mut self) -> (&u64, &mut Segment) {
        self.segments
            .iter_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Reserves `len` bytes at the end of the log for the one writer.
    fn reserve(&mut self, len: u64) -> io::Result<Place> {
        let (_, seg) = self.current();
        if seg.end > 0 && seg.end + len > self.segment_bytes {
            self.rotate()?;
        }
        let (&segment, seg) = self.current();
        let at = seg.end;
        let end = at + len;
        let zeros = if end > seg.written { CHUNK } else { 0 };
        seg.end = end;
        seg.written = seg.written.max(end + zeros);
        Ok(Place {
            segment,
            file: seg.file.clone(),
            path: seg.path.clone(),
            at,
            zeros,
        })
    }

    /// Closes the current segment (synced whole) and starts the next with a checkpoint.
    fn rotate(&mut self) -> io::Result<()> {
        let (&n, seg) = self.current();
        seg.file
            .sync_data()
            .map_err(io_err(format!("{}: sync", seg.path.display())))?;
        let next = n + 1;
        let path = self.dir.join(segment_name(next));
        let mut bytes = Vec::new();
        record(Kind::Checkpoint, &encode(&self.meta), &mut bytes);
        let end = bytes.len() as u64;
        bytes.resize(CHUNK as usize, 0);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(format!("{}: create", path.display())))?;
        file.write_all_at(&bytes, 0)
            .and_then(|()| file.sync_all())
            .map_err(io_err(format!("{}: write", path.display())))?;
        sync_dir(&self.dir).map_err(io_err(format!("{}: sync", self.dir.display())))?;
        self.segments.insert(
            next,
            Segment {
                file: Arc::new(file),
                path,
                end,
                written: CHUNK,
            },
        );
        Ok(())
    }

    /// Deletes the segments that hold nothing the log still needs: every entry in them
    /// is purged, and a later segment's checkpoint carries the vote and ids past them.
    fn drop_purged_segments(&mut self) {
        let first_kept = self.entries.first_key_value().map(|(_, loc)| loc.segment);
        let current = *self.current().0;
        let keep_from = first_kept.unwrap_or(current).min(current);
        let dead: Vec<u64> = self.segments.range(..keep_from).map(|(&n, _)| n).collect();
        for n in dead {
            if let Some(seg) = self.segments.remove(&n) {
                // The unlink is not synced: a file that comes back after a crash is
                // dropped again at replay, or overridden by the later segments'
                // records (see `replay`).
                if let Err(e) = fs::remove_file(&seg.path) {
                    tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete a purged Raft log segment");
                }
            }
        }
    }
}

/// Creates the log: the first segment (with what `migrated` brings) is written and
/// synced in `wal.tmp`, then renamed into place.
fn create(store: &Path, dir: &Path, migrated: Option<Migrated>) -> io::Result<()> {
    let tmp = store.join(format!("{WAL_DIR}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(format!("{}: remove", tmp.display())))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(format!("{}: create", tmp.display())))?;
    let mut bytes = Vec::new();
    let meta = match &migrated {
        Some(m) => Checkpoint {
            vote: m.vote,
            committed: m.committed,
            purged: m.purged,
        },
        None => Checkpoint::default(),
    };
    record(Kind::Checkpoint, &encode(&meta), &mut bytes);
    for e in migrated.iter().flat_map(|m| &m.entries) {
        record(Kind::Entry, &encode(e), &mut bytes);
    }
    let len = (bytes.len() as u64 + CHUNK).div_ceil(CHUNK) * CHUNK;
    bytes.resize(len as usize, 0);
    let path = tmp.join(segment_name(1));
    let file = File::create(&path).map_err(io_err(format!("{}: create", path.display())))?;
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("{}: write", path.display())))?;
    sync_dir(&tmp).map_err(io_err(format!("{}: sync", tmp.display())))?;
    fs::rename(&tmp, dir).map_err(io_err(format!("{}: rename", dir.display())))?;
    sync_dir(store).map_err(io_err(format!("{}: sync", store.display())))
}

/// Reads every segment of `dir` back into a [`Wal`], positioned after the last record.
fn replay(dir: &Path, segment_bytes: u64) -> io::Result<Wal> {
    let mut numbers = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err(format!("{}: read", dir.display())))? {
        let item = item?;
        let name = item.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".seg"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        numbers.push(n);
    }
    numbers.sort_unstable();
    // Segments are deleted from the lowest up, so the live ones are one unbroken run
    // ending at the newest. Anything below a gap is a deleted segment that came back
    // after a crash (the unlinks are not synced), possibly without the later ones that
    // overrode it: it goes again.
    let live_from = (1..numbers.len())
        .rev()
        .find(|&i| numbers[i - 1] + 1 != numbers[i])
        .unwrap_or(0);
    let mut removed = live_from > 0;
    for &n in &numbers[..live_from] {
        let path = dir.join(segment_name(n));
        fs::remove_file(&path).map_err(io_err(format!("{}: remove", path.display())))?;
    }
    numbers.drain(..live_from);
    if numbers.is_empty() {
        return Err(damaged(dir, "no segment"));
    }
    let mut wal = Wal {
        dir: dir.to_path_buf(),
        segments: BTreeMap::new(),
        entries: BTreeMap::new(),
        meta: Checkpoint::default(),
        segment_bytes,
    };
    let last = *numbers.last().expect("not empty");
    // Whether anything but zeros follows a segment's records.
    let mut dirty_tails = BTreeMap::new();
    for n in numbers {
        let path = dir.join(segment_name(n));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("{}: open", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_err(format!("{}: read", path.display())))?;
        let end =
            replay_segment(&mut wal, n, &bytes, n == last).map_err(|why| damaged(&path, &why))?;
        dirty_tails.insert(n, bytes[end as usize..].iter().any(|&b| b != 0));
        wal.segments.insert(
            n,
            Segment {
                file: Arc::new(file),
                path,
                end,
                written: bytes.len() as u64,
            },
        );
    }
    // A segment whose creation a crash cut short has no checkpoint: it goes, and the one
    // before it is written to again. A lone segment always has one (it is written whole
    // before the log exists), so without it the log is damaged.
    let (&n, seg) = wal.segments.iter().next_back().expect("one segment");
    if seg.end == 0 {
        if wal.segments.len() == 1 {
            return Err(damaged(
                &seg.path,
                "no checkpoint at the start of the only segment",
            ));
        }
        let seg = wal.segments.remove(&n).expect("present");
        fs::remove_file(&seg.path).map_err(io_err(format!("{}: remove", seg.path.display())))?;
        removed = true;
    }
    // Past the last good record: a torn record, or records of a write cut short whose
    // first record tore. Zeroed before anything is appended, so that a later replay
    // never reads them after a new record that happens to end where one of them starts.
    // (A clean shutdown leaves only zeros there: nothing to write.)
    let (n, seg) = wal.current();
    if dirty_tails.get(n) == Some(&true) {
        let zeros = vec![0u8; (seg.written - seg.end) as usize];
        seg.file
            .write_all_at(&zeros, seg.end)
            .and_then(|()| seg.file.sync_data())
            .map_err(io_err(format!("{}: write", seg.path.display())))?;
    }
    if removed {
        sync_dir(dir).map_err(io_err(format!("{}: sync", dir.display())))?;
    }
    Ok(wal)
}

/// Applies one segment's records to `wal`; returns where its records end.
fn replay_segment(wal: &mut Wal, n: u64, bytes: &[u8], last: bool) -> Result<u64, String> {
    let mut at = 0usize;
    loop {
        let Some(head) = bytes.get(at..at + HEADER) else {
            return Ok(at as u64);
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Ok(at as u64);
        }
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let body = match bytes.get(at + HEADER..at + HEADER + len) {
            Some(b) if len as u64 <= MAX_RECORD && crc32fast::hash(b) == crc => b,
            // The end of what a crash let through: the next append goes here.
            _ if last => return Ok(at as u64),
            _ => return Err(format!("record at byte {at} is damaged")),
        };
        let payload = &body[1..];
        let bad = |e: postcard::Error| format!("record at byte {at}: {e}");
        let effect = match Kind::from_u8(body[0]) {
            Some(Kind::Checkpoint) => {
                Effect::Checkpoint(postcard::from_bytes(payload).map_err(bad)?)
            }
            Some(Kind::Entry) => {
                let e: Entry = postcard::from_bytes(payload).map_err(bad)?;
                Effect::Entry(Loc {
                    log_id: e.log_id,
                    segment: n,
                    offset: (at + HEADER) as u64,
                    len: len as u32,
                })
            }
            Some(Kind::Vote) => Effect::Vote(postcard::from_bytes(payload).map_err(bad)?),
            Some(Kind::Committed) => Effect::Committed(postcard::from_bytes(payload).map_err(bad)?),
            Some(Kind::Truncate) => Effect::Truncate {
                from: postcard::from_bytes(payload).map_err(bad)?,
            },
            Some(Kind::Purge) => Effect::Purge(postcard::from_bytes(payload).map_err(bad)?),
            None => return Err(format!("record at byte {at} has unknown kind {}", body[0])),
        };
        wal.apply(effect);
        at += HEADER + len;
    }
}

/// An entry's record read back; its body is the kind byte and the postcard entry.
fn read_entry(file: &File, loc: Loc) -> io::Result<Entry> {
    let mut body = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut body, loc.offset)?;
    if body.first() != Some(&(Kind::Entry as u8)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an entry record",
        ));
    }
    postcard::from_bytes(&body[1..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl RaftLogReader<TypeConfig> for WalLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((lo, hi)) = crate::index_bounds(&range) else {
            return Ok(Vec::new());
        };
        let wanted: Vec<(u64, Loc, Arc<File>)> = {
            let wal = self.lock();
            wal.entries
                .range(lo..=hi)
                .filter_map(|(&i, &loc)| {
                    let file = wal.segments.get(&loc.segment)?.file.clone();
                    Some((i, loc, file))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (index, loc, file) in wanted {
            let entry =
                read_entry(&file, loc).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for WalLogStore {
    type LogReader = WalLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let wal = self.lock();
        let purged = wal.meta.purged;
        let last = wal.entries.last_key_value().map(|(_, loc)| loc.log_id);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put(Kind::Vote, &encode(vote), true, Effect::Vote(*vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: see the module comment.
        let effect = Effect::Committed(committed);
        self.put(Kind::Committed, &encode(&committed), false, effect)
            .await
            .map_err(|e| StorageIOError::<u64>::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for e in entries {
            let start = bytes.len();
            record(Kind::Entry, &encode(&e), &mut bytes);
            spans.push((e.log_id, start, bytes.len() - start));
        }
        if spans.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        match self.write(bytes, true).await {
            Ok((segment, at)) => {
                let mut wal = self.lock();
                for (log_id, start, len) in spans {
                    wal.apply(Effect::Entry(Loc {
                        log_id,
                        segment,
                        offset: at + (start + HEADER) as u64,
                        len: (len - HEADER) as u32,
                    }));
                }
                drop(wal);
                // Acknowledged only once on disk: openraft counts this node then.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.put(
            Kind::Truncate,
            &encode(&from),
            true,
            Effect::Truncate { from },
        )
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put(Kind::Purge, &encode(&log_id), true, Effect::Purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.lock().drop_purged_segments();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
