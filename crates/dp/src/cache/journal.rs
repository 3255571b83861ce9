//! `config.journal`: the Events applied since `config.cache` was written, so that one
//! change costs the DP one small append and one `fdatasync` instead of rewriting the
//! whole config (94 MB at a million entities) and three syncs (file, rename, directory).
//!
//! ```text
//!  header (64) = magic "TIDEGJNL" │ format u16 │ nonce u64 │ base version u64 │ base hash u128
//!                │ first 16 bytes of sha256(all before) │ zero padding
//!  record      = payload length u32 │ payload │ first 16 bytes of sha256(nonce, length, payload)
//!  payload     = from version u64 │ to version u64 │ to hash u128 │ count u32 │ (length u32 │ event)*
//! ```
//!
//! The journal extends exactly one base: the config whose version and hash its header
//! names. Loading replays records while each one checks out and starts at the version
//! reached, and stops at the first that does not: a record torn by a crash, the zeros
//! the file is preallocated with, or a record left from an earlier journal. The nonce is
//! new at every reset and is part of each record's checksum, so a leftover record never
//! passes for one of this journal's, even when two bases have the same version (a CP
//! restored from a backup). Each applied record must reach the version and hash it
//! claims, or replay stops before it.
//!
//! Appends go into bytes already written (zeros at reset, extended a chunk at a time),
//! so `fdatasync` has no file size to commit: one device round trip per change.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tidegate_model::ConfigHash;
use tidegate_state::{decode_event, ConfigState};

use super::CacheError;

pub const JOURNAL_FILE: &str = "config.journal";
const MAGIC: [u8; 8] = *b"TIDEGJNL";
const FORMAT: u16 = 1;
const HEADER_LEN: u64 = 64;
const SUM_LEN: usize = 16;
/// Bytes of zeros written ahead of the appends at a time: small, since the append that
/// lays them down waits for them (see the Raft log's write-ahead log, same reasoning).
const CHUNK: u64 = 64 << 10;
/// The least room a journal gets, however small the cache.
const MIN_LIMIT: u64 = 1 << 20;
/// A journal never grows past this much; the next change rewrites the cache instead.
const MAX_LIMIT: u64 = 64 << 20;
/// The most a load reads: the limit and the zeros past it.
const MAX_FILE: u64 = MAX_LIMIT + CHUNK;
/// Fixed part of a payload: from, to, hash, count.
const PAYLOAD_FIXED: usize = 8 + 8 + 16 + 4;

/// The config a journal extends, or the one its last record reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub version: u64,
    pub hash: ConfigHash,
}

impl Point {
    pub fn of(state: &ConfigState) -> Self {
        Point {
            version: state.version(),
            hash: state.hash(),
        }
    }
}

/// How much of the journal was brought into a loaded config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Records applied.
    pub records: usize,
    /// A record that checked out but could not be applied: the config is the one before
    /// it. `None` when replay ended normally (at the end of what was appended).
    pub refused: Option<String>,
}

/// Where a replay stopped in a journal that extends the loaded config: a restarted DP
/// appends from there (see [`Journal::reopen`]).
#[derive(Debug, Clone, Copy)]
pub struct End {
    nonce: u64,
    at: u64,
    file_len: u64,
}

/// The journal being appended to; only the process that reset or reopened it holds one.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    nonce: u64,
    /// Where the next record goes.
    end: u64,
    /// Bytes of the file already written (zeros past `end`).
    written: u64,
    /// The end is not allowed past this; the cache is rewritten instead.
    limit: u64,
    tail: Point,
}

/// What [`Journal::append`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    Durable,
    /// No room under the limit: nothing was written.
    Full,
}

impl Journal {
    /// Starts a new, empty journal over `base` (already durable as `config.cache`, whose
    /// file is `base_len` bytes). Anything in the file before is dead from here on.
    pub fn reset(path: &Path, base: Point, base_len: u64) -> Result<Journal, CacheError> {
        let nonce: u64 = rand::random();
        let limit = limit(base_len);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(CacheError::io(path, "open"))?;
        let len = file.metadata().map_err(CacheError::io(path, "stat"))?.len();
        let header = header(nonce, base);
        let written = if len < CHUNK {
            // A new file: the header and zeros for the first appends, in one write.
            let mut bytes = vec![0u8; CHUNK as usize];
            bytes[..header.len()].copy_from_slice(&header);
            file.write_all_at(&bytes, 0)
                .map_err(CacheError::io(path, "write"))?;
            CHUNK
        } else {
            file.write_all_at(&header, 0)
                .map_err(CacheError::io(path, "write"))?;
            len
        };
        file.sync_data().map_err(CacheError::io(path, "sync"))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            nonce,
            end: HEADER_LEN,
            written,
            limit,
            tail: base,
        })
    }

    /// Continues the journal a load replayed, after its last record, which reached
    /// `tail`. What lies past that point (a record torn by the crash, zeros) is
    /// overwritten by the next append; a leftover of a torn record after a shorter new
    /// one never passes the checksum.
    pub fn reopen(
        path: &Path,
        end: End,
        tail: Point,
        base_len: u64,
    ) -> Result<Journal, CacheError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(CacheError::io(path, "open"))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            nonce: end.nonce,
            end: end.at,
            written: end.file_len,
            limit: limit(base_len),
            tail,
        })
    }

    /// The config the last record reached (the base when there is none).
    pub fn tail(&self) -> Point {
        self.tail
    }

    /// Appends the Events (encoded, in order) that took the config from [`Self::tail`]
    /// to `to`, durably.
    pub fn append(&mut self, to: Point, events: &[Vec<u8>]) -> Result<Appended, CacheError> {
        let record = record(self.nonce, self.tail, to, events);
        let end = self.end + record.len() as u64;
        if end > self.limit {
            return Ok(Appended::Full);
        }
        let path = &self.path;
        if end > self.written {
            // Zeros first, in the same write: the file grows now, not at every append.
            let grown = (end + CHUNK).min(self.limit.max(end));
            let mut bytes = vec![0u8; (grown - self.end) as usize];
            bytes[..record.len()].copy_from_slice(&record);
            self.file
                .write_all_at(&bytes, self.end)
                .map_err(CacheError::io(path, "write"))?;
            self.written = grown;
        } else {
            self.file
                .write_all_at(&record, self.end)
                .map_err(CacheError::io(path, "write"))?;
        }
        self.file
            .sync_data()
            .map_err(CacheError::io(path, "sync"))?;
        self.end = end;
        self.tail = to;
        Ok(Appended::Durable)
    }
}

/// The most a journal over a `base_len`-byte cache may hold: half of it, so a replay
/// never costs more than about half a snapshot's decode.
fn limit(base_len: u64) -> u64 {
    (base_len / 2).clamp(MIN_LIMIT, MAX_LIMIT)
}

/// The base named by the journal's header, if it has a valid one.
pub fn base_of(path: &Path) -> Result<Option<Point>, CacheError> {
    let mut bytes = Vec::with_capacity(HEADER_LEN as usize);
    match File::open(path) {
        Ok(f) => f
            .take(HEADER_LEN)
            .read_to_end(&mut bytes)
            .map_err(CacheError::io(path, "read"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::io(path, "open")(e)),
    };
    Ok(parse_header(&bytes).map(|(_, base)| base))
}

/// Makes the journal extend nothing, durably: its header is zeroed.
pub fn invalidate(path: &Path) -> Result<(), CacheError> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CacheError::io(path, "open")(e)),
    };
    file.write_all_at(&[0u8; HEADER_LEN as usize], 0)
        .and_then(|()| file.sync_data())
        .map_err(CacheError::io(path, "invalidate"))
}

/// Applies to `state` the records of the journal at `path` that extend it. A missing
/// journal, or one over another base, replays nothing. Returns where the records ended
/// when the journal extends `state` and every record checked out up to there.
pub fn replay(path: &Path, state: &mut ConfigState) -> Result<(Replay, Option<End>), CacheError> {
    let bytes = match super::read_limited(path, MAX_FILE) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok((Replay::default(), None)),
        Err(e) => return Err(e),
    };
    Ok(replay_bytes(&bytes, state))
}

fn replay_bytes(bytes: &[u8], state: &mut ConfigState) -> (Replay, Option<End>) {
    let mut replay = Replay::default();
    let Some((nonce, base)) = parse_header(bytes) else {
        return (replay, None);
    };
    if base != Point::of(state) {
        return (replay, None);
    }
    let mut at = HEADER_LEN as usize;
    while let Some((payload, next)) = next_record(bytes, at, nonce) {
        match apply_record(payload, state) {
            Ok(true) => replay.records += 1,
            Ok(false) => break,
            Err(why) => {
                replay.refused = Some(format!(
                    "journal record {} at byte {at}: {why}",
                    replay.records + 1
                ));
                break;
            }
        }
        at = next;
    }
    // After a refused record the journal is not continued: the next store is whole.
    let end = replay.refused.is_none().then_some(End {
        nonce,
        at: at as u64,
        file_len: bytes.len() as u64,
    });
    (replay, end)
}

/// The payload of the record at `at` and where the next one starts, if the record is
/// whole and this journal's.
fn next_record(bytes: &[u8], at: usize, nonce: u64) -> Option<(&[u8], usize)> {
    let len_bytes: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len < PAYLOAD_FIXED {
        return None;
    }
    let payload = bytes.get(at + 4..at + 4 + len)?;
    let sum = bytes.get(at + 4 + len..at + 4 + len + SUM_LEN)?;
    if record_sum(nonce, &len_bytes, payload) != sum {
        return None;
    }
    Some((payload, at + 4 + len + SUM_LEN))
}

/// Applies one record's Events to `state` on a copy; `Ok(false)` when the record does not
/// start where `state` is (it is not next in this journal).
fn apply_record(payload: &[u8], state: &mut ConfigState) -> Result<bool, String> {
    let (fixed, mut rest) = payload.split_at(PAYLOAD_FIXED);
    let from = u64::from_le_bytes(fixed[0..8].try_into().expect("8 bytes"));
    let to = Point {
        version: u64::from_le_bytes(fixed[8..16].try_into().expect("8 bytes")),
        hash: ConfigHash(u128::from_le_bytes(
            fixed[16..32].try_into().expect("16 bytes"),
        )),
    };
    let count = u32::from_le_bytes(fixed[32..36].try_into().expect("4 bytes"));
    if from != state.version() {
        return Ok(false);
    }
    let mut next = state.clone();
    for i in 0..count {
        let event = take_event(&mut rest)
            .ok_or_else(|| format!("event {} of {count} is cut short", i + 1))?;
        let event = decode_event(event).map_err(|e| format!("event {} of {count}: {e}", i + 1))?;
        next.apply(&event)
            .map_err(|e| format!("event {} of {count}: {e}", i + 1))?;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last event", rest.len()));
    }
    if Point::of(&next) != to {
        return Err(format!(
            "reaches version {} hash {}, the record says version {} hash {}",
            next.version(),
            next.hash(),
            to.version,
            to.hash
        ));
    }
    *state = next;
    Ok(true)
}

fn take_event<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let event = rest.get(4..4 + len)?;
    *rest = &rest[4 + len..];
    Some(event)
}

fn header(nonce: u64, base: Point) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT.to_le_bytes());
    h[10..18].copy_from_slice(&nonce.to_le_bytes());
    h[18..26].copy_from_slice(&base.version.to_le_bytes());
    h[26..42].copy_from_slice(&base.hash.0.to_le_bytes());
    let sum = Sha256::digest(&h[..42]);
    h[42..58].copy_from_slice(&sum[..16]);
    h
}

fn parse_header(bytes: &[u8]) -> Option<(u64, Point)> {
    let h = bytes.get(..58)?;
    if h[0..8] != MAGIC || h[8..10] != FORMAT.to_le_bytes() {
        return None;
    }
    if Sha256::digest(&h[..42])[..16] != h[42..58] {
        return None;
    }
    let nonce = u64::from_le_bytes(h[10..18].try_into().ok()?);
    let base = Point {
        version: u64::from_le_bytes(h[18..26].try_into().ok()?),
        hash: ConfigHash(u128::from_le_bytes(h[26..42].try_into().ok()?)),
    };
    Some((nonce, base))
}

fn record(nonce: u64, from: Point, to: Point, events: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = events.iter().map(|e| 4 + e.len()).sum();
    let len = PAYLOAD_FIXED + body;
    let mut r = Vec::with_capacity(4 + len + SUM_LEN);
    r.extend_from_slice(&(len as u32).to_le_bytes());
    r.extend_from_slice(&from.version.to_le_bytes());
    r.extend_from_slice(&to.version.to_le_bytes());
    r.extend_from_slice(&to.hash.0.to_le_bytes());
    r.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        r.extend_from_slice(&(e.len() as u32).to_le_bytes());
        r.extend_from_slice(e);
    }
    let sum = record_sum(nonce, &r[..4], &r[4..]);
    r.extend_from_slice(&sum);
    r
}

fn record_sum(nonce: u64, len: &[u8], payload: &[u8]) -> [u8; SUM_LEN] {
    let mut h = Sha256::new();
    h.update(nonce.to_le_bytes());
    h.update(len);
    h.update(payload);
    let mut sum = [0u8; SUM_LEN];
    sum.copy_from_slice(&h.finalize()[..SUM_LEN]);
    sum
}

#[cfg(test)]
mod tests;
