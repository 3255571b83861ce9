//! openraft's storage conformance suite against both stores.

use std::time::{Duration, Instant};

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use tidegate_raft::{
    open_disk, MemLogStore, MemStateMachine, MemStorage, SledStateMachine, StorageError,
    TypeConfig, WalLogStore,
};

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, MemStateMachine> for MemBuilder {
    async fn build(&self) -> Result<((), MemLogStore, MemStateMachine), StorageError> {
        let (log, sm) = MemStorage::new().open()?;
        Ok(((), log, sm))
    }
}

/// The simulator's disk: writes durable after an fsync delay (zero here: the suite runs
/// on real time), lost by a crash before.
struct MemFsyncBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, MemStateMachine> for MemFsyncBuilder {
    async fn build(&self) -> Result<((), MemLogStore, MemStateMachine), StorageError> {
        let (log, sm) = MemStorage::with_fsync(Duration::ZERO).open()?;
        Ok(((), log, sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, WalLogStore, SledStateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, WalLogStore, SledStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open_disk(dir.path())?;
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // wall time of a real-disk test, printed only
fn memory_store_passes_the_openraft_suite() {
    let start = Instant::now();
    Suite::test_all(MemBuilder).unwrap();
    eprintln!("memory store suite: {:?}", start.elapsed());
}

#[test]
fn memory_store_with_fsync_delay_passes_the_openraft_suite() {
    Suite::test_all(MemFsyncBuilder).unwrap();
}

#[test]
#[allow(clippy::disallowed_methods)] // wall time of a real-disk test, printed only
fn sled_store_passes_the_openraft_suite() {
    let start = Instant::now();
    Suite::test_all(SledBuilder).unwrap();
    eprintln!("sled store suite: {:?}", start.elapsed());
}
