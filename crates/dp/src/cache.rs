//! The DP's config cache in `prefix`: what it serves when it starts with no CP in reach.
//!
//! `config.cache` holds a whole config, in the portable format of
//! `tidegate config export-cache`:
//!
//! ```text
//!  magic "TIDEGCFG" (8) │ format u16 LE │ body length u64 LE │ body │ sha256 of all before (32)
//!  body = tidegate_state::encode_snapshot (carries version and config hash)
//! ```
//!
//! Crash safety: a store writes `config.cache.tmp`, fsyncs it, renames it over
//! `config.cache` and fsyncs the directory, so a kill at any instant leaves the old or the
//! new complete file. Loading checks the length, the checksum and the config hash (by
//! rebuilding the state); a damaged `config.cache` falls back to `config.cache.prev`, the
//! version stored before it. A missing `config.cache` means "no cache" even when a
//! `.prev` exists: removing the cache is how an operator makes a DP start from
//! `declarative_config`, as in Kong.
//!
//! Changes from the CP go to `config.journal` (see [`journal`]) as the Events that made
//! them, appended and synced; a load replays them over `config.cache`. The cache is
//! rewritten whole, and the journal restarted over it, for a snapshot and when the
//! journal is full. A restarted DP loads with [`Cache::resume`] and appends after the
//! records it replayed.
//!
//! One writer per prefix: [`Cache::store`] takes `&mut self` and the temp names are fixed.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tidegate_state::{
    decode_state, encode_state, CodecError, ConfigState, SnapshotError, StateError,
};
use uuid::Uuid;

use journal::{Appended, Journal};
pub use journal::{Point, Replay, JOURNAL_FILE};

mod journal;

pub const CACHE_FILE: &str = "config.cache";
pub const PREVIOUS_FILE: &str = "config.cache.prev";
pub const NODE_ID_FILE: &str = "node_id";
pub const MAGIC: [u8; 8] = *b"TIDEGCFG";
/// The file layout this build writes and reads.
pub const FILE_FORMAT: u16 = 1;
/// Above `cluster_max_payload`'s default (16 MiB) with room, so any config a CP can send
/// fits; a file claiming more is refused before it is read into memory.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

const HEADER_LEN: usize = MAGIC.len() + 2 + 8;
const CHECKSUM_LEN: usize = 32;
const MAX_NODE_ID_BYTES: u64 = 256;

/// Why a cache file's bytes cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Corruption {
    #[error("not a tidegate config cache (bad magic bytes)")]
    BadMagic,
    #[error("file format {0}; this build reads format {FILE_FORMAT} (written by a newer tidegate, or damaged)")]
    Format(u16),
    #[error("torn file: {0} bytes, shorter than the header")]
    TruncatedHeader(u64),
    #[error("torn file: {actual} bytes where the header says {expected}")]
    Length { expected: u64, actual: u64 },
    #[error("checksum mismatch")]
    Checksum,
    #[error("{0}")]
    Decode(CodecError),
    #[error("{0}")]
    Hash(StateError),
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: {size} bytes is more than the limit of {limit} bytes", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}: cannot use the config cache: {problem}; remove it to start from declarative_config or the CP", path.display())]
    Corrupt { path: PathBuf, problem: Corruption },
    #[error("{}: no config cache to export", path.display())]
    Missing { path: PathBuf },
    #[error("{}: invalid node id ({reason}); remove the file to get a new id", path.display())]
    NodeId { path: PathBuf, reason: String },
}

impl CacheError {
    fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> CacheError + 'a {
        move |source| CacheError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, CacheError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Which file a load came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFile {
    Current,
    /// `config.cache` was unusable; this is the version stored before it.
    Previous,
}

#[derive(Debug)]
pub struct Loaded {
    pub state: ConfigState,
    pub from: CacheFile,
    /// Why `config.cache` was passed over, when it was.
    pub skipped: Option<CacheError>,
    /// What the journal added to `config.cache` (nothing to `config.cache.prev`).
    pub journal: Replay,
}

/// The cache files in one `prefix`.
#[derive(Debug)]
pub struct Cache {
    prefix: PathBuf,
    max_bytes: u64,
    /// Open for appends since the last whole store of this process.
    journal: Option<Journal>,
}

// === impl Cache ===

impl Cache {
    /// Opens (and creates, if needed) `prefix`. Reads nothing yet.
    pub fn open(prefix: &Path) -> Result<Self, CacheError> {
        fs::create_dir_all(prefix).map_err(CacheError::io(prefix, "create directory"))?;
        Ok(Cache {
            prefix: prefix.to_path_buf(),
            max_bytes: DEFAULT_MAX_BYTES,
            journal: None,
        })
    }

    /// The largest file this cache writes or reads.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `prefix/config.cache`.
    pub fn path(&self) -> PathBuf {
        self.prefix.join(CACHE_FILE)
    }

    fn previous_path(&self) -> PathBuf {
        self.prefix.join(PREVIOUS_FILE)
    }

    fn journal_path(&self) -> PathBuf {
        self.prefix.join(JOURNAL_FILE)
    }

    /// The cached config, verified; `None` when there is no `config.cache`. Falls back
    /// to the previous version (with a warning) when the current file is unusable, and
    /// fails only when neither is usable.
    pub fn load(&self) -> Result<Option<ConfigState>, CacheError> {
        Ok(self.load_detailed()?.map(said))
    }

    /// [`Self::load`] by the DP that goes on to store into this cache: it keeps
    /// appending to the journal it replayed, so its first change after a restart is
    /// an append too, not a rewrite of the whole config.
    pub fn resume(&mut self) -> Result<Option<ConfigState>, CacheError> {
        self.journal = None;
        let Some((loaded, end)) = self.load_with_end()? else {
            return Ok(None);
        };
        if let Some(end) = end {
            let base_len = fs::metadata(self.path()).map(|m| m.len());
            let journal = base_len.and_then(|len| {
                Journal::reopen(&self.journal_path(), end, Point::of(&loaded.state), len)
                    .map_err(io::Error::other)
            });
            match journal {
                Ok(j) => self.journal = Some(j),
                // Not fatal: the first store rewrites the cache and starts a journal.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot continue the config journal; the next change rewrites the cache")
                }
            }
        }
        Ok(Some(said(loaded)))
    }

    /// [`Self::load`], saying which file was used and why the current one was not.
    pub fn load_detailed(&self) -> Result<Option<Loaded>, CacheError> {
        Ok(self.load_with_end()?.map(|(loaded, _)| loaded))
    }

    /// The loaded config, and where the journal's records ended when it extends it.
    fn load_with_end(&self) -> Result<Option<(Loaded, Option<journal::End>)>, CacheError> {
        let current = match read_file(&self.path(), self.max_bytes) {
            Ok(mut state) => {
                let (journal, end) = journal::replay(&self.journal_path(), &mut state)?;
                let loaded = Loaded {
                    state,
                    from: CacheFile::Current,
                    skipped: None,
                    journal,
                };
                return Ok(Some((loaded, end)));
            }
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => e,
        };
        match read_file(&self.previous_path(), self.max_bytes) {
            Ok(state) => Ok(Some((
                Loaded {
                    state,
                    from: CacheFile::Previous,
                    skipped: Some(current),
                    journal: Replay::default(),
                },
                None,
            ))),
            Err(_) => Err(current),
        }
    }

    /// Stores `state` whole and durably, keeping the version it replaces as
    /// `config.cache.prev`, and starts a new journal over it.
    pub fn store(&mut self, state: &ConfigState) -> Result<(), CacheError> {
        self.journal = None;
        let path = self.path();
        let journal_path = self.journal_path();
        let base = Point::of(state);
        let body = encode_state(state);
        let (header, sum) = frame(&body);
        let len = file_len(&body);
        check_size(&path, len, self.max_bytes)?;
        // The old journal stops counting once the new cache is in place: its header
        // names another config. Unless it names this very one (a snapshot equal to the
        // old cache, after a CP restore): its records would then replay over the new
        // cache, so it is voided first. A crash in between loads the old cache, which
        // is this config.
        if journal::base_of(&journal_path)? == Some(base) {
            journal::invalidate(&journal_path)?;
        }
        write_atomic(&path, &[&header, &body, &sum], Some(&self.previous_path()))?;
        drop(body);
        self.journal = Some(Journal::reset(&journal_path, base, len)?);
        Ok(())
    }

    /// Stores `state`, reached by `events` (encoded, in order) from the config at `from`:
    /// one append to the journal when it continues from `from` and has room, else a
    /// whole [`Self::store`].
    pub fn append(
        &mut self,
        state: &ConfigState,
        from: Point,
        events: &[Vec<u8>],
    ) -> Result<(), CacheError> {
        if let Some(journal) = self.journal.as_mut().filter(|j| j.tail() == from) {
            match journal.append(Point::of(state), events) {
                Ok(Appended::Durable) => return Ok(()),
                Ok(Appended::Full) => {}
                Err(e) => {
                    // Whatever half a record reached the disk fails its checksum; the
                    // next store starts over whole.
                    self.journal = None;
                    return Err(e);
                }
            }
        }
        self.store(state)
    }

    /// Writes the cached config to `dest` in the same format, for provisioning another
    /// DP while the CPs are down. Returns what was exported.
    pub fn export(&self, dest: &Path) -> Result<ConfigState, CacheError> {
        let state = self
            .load()?
            .ok_or_else(|| CacheError::Missing { path: self.path() })?;
        write_file(dest, &state, self.max_bytes)?;
        Ok(state)
    }

    /// Verifies an exported file and stores it as this cache. The cache is unchanged
    /// when the file is unusable.
    pub fn import(&mut self, src: &Path) -> Result<ConfigState, CacheError> {
        let state = read_file(src, self.max_bytes)?;
        self.store(&state)?;
        Ok(state)
    }

    /// The DP's node id from `prefix/node_id`, generated from `random` and stored on
    /// first use. A damaged file is an error rather than a new id: a silently changed id
    /// would show the DP twice in /clustering/data-planes.
    pub fn node_id(&self, random: impl FnOnce() -> [u8; 16]) -> Result<Uuid, CacheError> {
        let path = self.prefix.join(NODE_ID_FILE);
        let bad = |reason: String| CacheError::NodeId {
            path: path.clone(),
            reason,
        };
        match read_limited(&path, MAX_NODE_ID_BYTES) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
                let id = Uuid::try_parse(text.trim()).map_err(|e| bad(e.to_string()))?;
                if id.is_nil() {
                    return Err(bad("nil UUID".into()));
                }
                Ok(id)
            }
            Err(e) if e.is_not_found() => {
                let id = uuid::Builder::from_random_bytes(random()).into_uuid();
                write_atomic(&path, &[format!("{id}\n").as_bytes()], None)?;
                Ok(id)
            }
            Err(e) => Err(e),
        }
    }
}

/// The loaded config, once what was passed over on the way is logged.
fn said(loaded: Loaded) -> ConfigState {
    if let Some(why) = &loaded.journal.refused {
        tracing::warn!(
            error = %why,
            version = loaded.state.version(),
            "config journal record refused, starting from the config before it"
        );
    }
    if let Some(e) = &loaded.skipped {
        tracing::warn!(
            error = %e,
            version = loaded.state.version(),
            "config cache unusable, starting from the previous cached version"
        );
    }
    loaded.state
}

/// The file bytes for `state`: header, snapshot, checksum.
pub fn encode_file(state: &ConfigState) -> Vec<u8> {
    encode_body(&encode_state(state))
}

fn encode_body(body: &[u8]) -> Vec<u8> {
    let (header, sum) = frame(body);
    [&header[..], body, &sum].concat()
}

/// The header and checksum around `body`. Kept apart from it so that a store writes the
/// body it encoded without copying it (at a million entities, a second 90 MB buffer).
fn frame(body: &[u8]) -> ([u8; HEADER_LEN], [u8; CHECKSUM_LEN]) {
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&FILE_FORMAT.to_le_bytes());
    header[MAGIC.len() + 2..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = Sha256::new();
    h.update(header);
    h.update(body);
    (header, h.finalize().into())
}

fn file_len(body: &[u8]) -> u64 {
    (HEADER_LEN + body.len() + CHECKSUM_LEN) as u64
}

/// Checks a file's framing and checksum, then rebuilds the state, which verifies the
/// config hash the snapshot claims.
pub fn decode_file(bytes: &[u8]) -> Result<ConfigState, Corruption> {
    let len = bytes.len() as u64;
    if bytes.len() < MAGIC.len() {
        // A prefix of the magic is a file torn at its very start.
        return Err(if MAGIC.starts_with(bytes) {
            Corruption::TruncatedHeader(len)
        } else {
            Corruption::BadMagic
        });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(Corruption::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(Corruption::TruncatedHeader(len));
    }
    let format = u16::from_le_bytes([bytes[8], bytes[9]]);
    if format != FILE_FORMAT {
        return Err(Corruption::Format(format));
    }
    let body_len = u64::from_le_bytes(bytes[10..HEADER_LEN].try_into().expect("8 bytes"));
    let expected = body_len.saturating_add((HEADER_LEN + CHECKSUM_LEN) as u64);
    if len != expected {
        return Err(Corruption::Length {
            expected,
            actual: len,
        });
    }
    let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::digest(content).as_slice() != sum {
        return Err(Corruption::Checksum);
    }
    decode_state(&content[HEADER_LEN..]).map_err(|e| match e {
        SnapshotError::Codec(e) => Corruption::Decode(e),
        SnapshotError::State(e) => Corruption::Hash(e),
    })
}

/// Reads and verifies a cache-format file of at most `max_bytes`.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<ConfigState, CacheError> {
    let bytes = read_limited(path, max_bytes)?;
    decode_file(&bytes).map_err(|problem| CacheError::Corrupt {
        path: path.to_path_buf(),
        problem,
    })
}

/// Writes `state` to `path` in the cache format, atomically (temp file, fsync, rename,
/// fsync of the directory).
pub fn write_file(path: &Path, state: &ConfigState, max_bytes: u64) -> Result<(), CacheError> {
    let body = encode_state(state);
    let (header, sum) = frame(&body);
    check_size(path, file_len(&body), max_bytes)?;
    write_atomic(path, &[&header, &body, &sum], None)
}

fn check_size(path: &Path, size: u64, limit: u64) -> Result<(), CacheError> {
    if size > limit {
        return Err(CacheError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    Ok(())
}

fn read_limited(path: &Path, max_bytes: u64) -> Result<Vec<u8>, CacheError> {
    let file = File::open(path).map_err(CacheError::io(path, "open"))?;
    let size = file.metadata().map_err(CacheError::io(path, "stat"))?.len();
    check_size(path, size, max_bytes)?;
    let mut bytes = Vec::with_capacity(size as usize);
    // `take`: the file may have grown since the stat.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(CacheError::io(path, "read"))?;
    check_size(path, bytes.len() as u64, max_bytes)?;
    Ok(bytes)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Replaces `path` with the concatenation of `parts` so that a crash at any instant
/// leaves the old or the new complete file. With `previous`, the replaced file is kept
/// there; it is linked rather than renamed away so that `path` exists at every instant
/// (a missing cache would mean "start from declarative_config").
fn write_atomic(path: &Path, parts: &[&[u8]], previous: Option<&Path>) -> Result<(), CacheError> {
    let tmp = sibling(path, ".tmp");
    let written = File::create(&tmp)
        .and_then(|mut f| {
            for part in parts {
                f.write_all(part)?;
            }
            f.sync_all()
        })
        .map_err(CacheError::io(&tmp, "write"));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(prev) = previous {
        let prev_tmp = sibling(prev, ".tmp");
        match fs::remove_file(&prev_tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io(&prev_tmp, "remove")(e)),
        }
        match fs::hard_link(path, &prev_tmp) {
            Ok(()) => fs::rename(&prev_tmp, prev).map_err(CacheError::io(prev, "rename"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io(&prev_tmp, "link")(e)),
        }
    }
    fs::rename(&tmp, path).map_err(CacheError::io(path, "rename"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CacheError::io(dir, "sync directory"))
}

#[cfg(test)]
mod tests;
