//! The data plane. For now the piece it starts from: the crash-safe config cache and the
//! node id kept in `prefix` (DESIGN.md §5). The sync client and the proxy come next.
//!
//! ```text
//!  start ──▶ Cache::load ──▶ Some(config, hash verified) ──▶ serve it
//!                 └──────▶ None ──▶ declarative_config, else empty
//!  applied Events / Snapshot ──▶ Cache::store (temp, fsync, rename, fsync dir)
//! ```

pub mod cache;

pub use cache::{
    decode_file, encode_file, read_file, write_file, Cache, CacheError, CacheFile, Corruption,
    Loaded, CACHE_FILE, DEFAULT_MAX_BYTES, FILE_FORMAT, MAGIC, NODE_ID_FILE, PREVIOUS_FILE,
};
