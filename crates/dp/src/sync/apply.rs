//! The one owner of the DP's config while it syncs: what it serves (`current`), the
//! changes received since (`working`, off to the side), and the cache on disk.
//!
//! Messages are applied to `working`; [`Applier::commit`] persists it, then publishes it
//! as the new `current`. A message that cannot be applied discards `working` entirely, so
//! what is published is always a state reached at the end of a message the CP sent whole,
//! never a torn one, and never older than before (except from a snapshot: see
//! [`Applier::snapshot`]).

use std::sync::Arc;
use std::time::Duration;

use tidegate_proto::cluster as pb;
use tidegate_proto::cluster::snapshot_request::Reason;
use tidegate_state::{decode_event, decode_state, ConfigState};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Current;
use crate::cache::Point;
use crate::store::{ConfigStore, Delta};

/// The most a SnapshotRequest's `detail` carries.
pub const MAX_DETAIL: usize = 1024;

/// Why the DP cannot continue from what it holds; becomes a SnapshotRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

/// Why a message was not applied.
#[derive(Debug)]
pub enum Problem {
    /// Ask the CP for a snapshot.
    Refused(Refusal),
    /// The CP sent something this build does not understand (a compression it does not
    /// know); asking again would get the same, so the stream is dropped instead.
    NotUnderstood(String),
}

pub struct Applier {
    current: Arc<Current>,
    /// Changes since `current`; `None` when there are none.
    working: Option<ConfigState>,
    /// The Events that took `current` to `working`, encoded, for the store to append;
    /// `None` when `working` holds a snapshot (stored whole).
    applied: Option<Vec<Vec<u8>>>,
    /// Where each config is persisted before it is served.
    store: Arc<dyn ConfigStore>,
    /// `current` came from the CP but its store failed: the disk lags behind.
    unsaved: bool,
    publish: watch::Sender<Arc<Current>>,
    /// How the snapshot in `working` arrived, for the one line logged when it is stored.
    snapshot_stats: Option<SnapshotStats>,
}

/// The stages of taking a snapshot, for the log: a large config spends seconds in them.
struct SnapshotStats {
    received: Instant,
    bytes: usize,
    decode: Duration,
    build: Duration,
}

// === impl Applier ===

impl Applier {
    pub fn new(initial: Current, store: Arc<dyn ConfigStore>) -> Self {
        let current = Arc::new(initial);
        Applier {
            publish: watch::Sender::new(current.clone()),
            current,
            working: None,
            applied: None,
            store,
            unsaved: false,
            snapshot_stats: None,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Current>> {
        self.publish.subscribe()
    }

    pub fn current(&self) -> &Arc<Current> {
        &self.current
    }

    /// The Status reporting what the DP serves.
    pub fn status(&self) -> pb::Status {
        let state = &self.current.state;
        pb::Status {
            version: state.version(),
            hash: state.hash().to_string(),
        }
    }

    /// Takes a snapshot as the new working state. A snapshot replaces whatever the DP
    /// holds even when its version is lower: the CP is the authority (this DP's cache may
    /// come from another cluster, or the CPs were restored from a backup), and refusing it
    /// would leave the DP stuck.
    pub fn snapshot(&mut self, msg: pb::Snapshot) -> Result<(), Problem> {
        if pb::Compression::try_from(msg.compression) != Ok(pb::Compression::None) {
            return Err(Problem::NotUnderstood(format!(
                "snapshot compression {} is unknown to this data plane",
                msg.compression
            )));
        }
        self.working = None;
        self.applied = None;
        self.snapshot_stats = None;
        let received = Instant::now();
        let bytes = msg.body.len();
        let (state, decode) = verified_snapshot(msg).map_err(Problem::Refused)?;
        self.snapshot_stats = Some(SnapshotStats {
            received,
            bytes,
            decode,
            build: received.elapsed().saturating_sub(decode),
        });
        if state.version() < self.current.state.version() {
            tracing::warn!(
                from = self.current.state.version(),
                to = state.version(),
                "the control plane sent an older config version than this data plane held; taking it"
            );
        }
        self.working = Some(state);
        Ok(())
    }

    /// Applies Events to the working state. Versions at or below it are duplicates (a
    /// resend after a reconnect) and skipped; any other break in the sequence is a gap.
    pub fn events(&mut self, msg: pb::Events) -> Result<(), Refusal> {
        if msg.events.is_empty() {
            return Ok(());
        }
        // On an early return the partially applied copy is dropped: discarded.
        let (mut working, mut applied) = match self.working.take() {
            Some(w) => (w, self.applied.take()),
            None if !self.current.from_cluster => {
                // A declarative or empty config is no base for the CP's Events: its
                // version numbers mean nothing in the cluster's history.
                return Err(refusal(
                    Reason::VersionGap,
                    "events before any snapshot: this data plane holds no config from the control plane".into(),
                ));
            }
            None => ((*self.current.state).clone(), Some(Vec::new())),
        };
        let total = msg.events.len();
        for (i, bytes) in msg.events.into_iter().enumerate() {
            let event = decode_event(&bytes).map_err(|e| {
                refusal(
                    Reason::ApplyFailed,
                    format!("event {} of {total}: {e}", i + 1),
                )
            })?;
            if event.version <= working.version() {
                continue;
            }
            if event.version != working.version() + 1 {
                return Err(refusal(
                    Reason::VersionGap,
                    format!(
                        "event version {} does not follow version {}",
                        event.version,
                        working.version()
                    ),
                ));
            }
            working
                .apply(&event)
                .map_err(|e| refusal(Reason::ApplyFailed, e.to_string()))?;
            if let Some(applied) = &mut applied {
                applied.push(bytes);
            }
        }
        self.working = Some(working);
        self.applied = applied;
        Ok(())
    }

    /// Persists and publishes the working state, if it changes anything. Returns the
    /// Status to report, and the cache error if the store failed: the new config is
    /// served anyway (it is verified, and the CP is waiting for it to be), and the store
    /// is retried by [`Self::retry_store`] and at the next commit.
    pub async fn commit(&mut self) -> Option<(pb::Status, Result<(), String>)> {
        let stats = self.snapshot_stats.take();
        let applied = self.applied.take();
        let working = self.working.take()?;
        let held = &self.current;
        if held.from_cluster
            && working.version() == held.state.version()
            && working.hash() == held.state.hash()
        {
            if let Some(st) = stats {
                tracing::info!(
                    version = working.version(),
                    bytes = st.bytes,
                    decode_ms = st.decode.as_millis() as u64,
                    build_ms = st.build.as_millis() as u64,
                    "received a snapshot of the config already served; nothing to store"
                );
            }
            return None;
        }
        let delta = match applied {
            // The journal continues from what was stored, which is `current` unless
            // its store failed (then the retry stores whole).
            Some(events) if held.from_cluster && !self.unsaved => Delta::Events {
                from: Point::of(&held.state),
                events,
            },
            _ => Delta::Whole,
        };
        let state = Arc::new(working);
        if crate::planted::publish_before_store() {
            // Planted bug (simulator only): serve first, persist after.
            self.current = Arc::new(Current {
                state: state.clone(),
                from_cluster: true,
            });
            self.publish.send_replace(self.current.clone());
        }
        let storing = Instant::now();
        let stored = self.store.store(state.clone(), delta).await;
        if let Some(st) = stats {
            tracing::info!(
                version = state.version(),
                entities = state.len(),
                bytes = st.bytes,
                decode_ms = st.decode.as_millis() as u64,
                build_ms = st.build.as_millis() as u64,
                store_ms = storing.elapsed().as_millis() as u64,
                total_ms = st.received.elapsed().as_millis() as u64,
                "applied a snapshot from the control plane (decode: entities decoded into the indexes, hash check included; build: the rest of the checks; store: cache write and fsync)"
            );
        }
        self.unsaved = stored.is_err();
        self.current = Arc::new(Current {
            state,
            from_cluster: true,
        });
        self.publish.send_replace(self.current.clone());
        Some((self.status(), stored))
    }

    /// Stores the served config again if its last store failed.
    pub async fn retry_store(&mut self) -> Option<Result<(), String>> {
        if !self.unsaved {
            return None;
        }
        let stored = self
            .store
            .store(self.current.state.clone(), Delta::Whole)
            .await;
        self.unsaved = stored.is_err();
        Some(stored)
    }
}

/// Decodes a snapshot message and checks it against the version and hash it announces;
/// returns it with the time the decoding took.
fn verified_snapshot(msg: pb::Snapshot) -> Result<(ConfigState, Duration), Refusal> {
    let failed = |detail: String| refusal(Reason::ApplyFailed, detail);
    let decoding = Instant::now();
    // Verifies the body against the hash inside it.
    let state = decode_state(&msg.body).map_err(|e| failed(e.to_string()))?;
    let decode = decoding.elapsed();
    // The body is the size of the config: not held while the state is stored and served.
    drop(msg.body);
    let hash = state.hash().to_string();
    if hash != msg.hash {
        return Err(refusal(
            Reason::HashMismatch,
            format!(
                "snapshot announced hash {:?}, its content hashes to {hash}",
                msg.hash
            ),
        ));
    }
    if state.version() != msg.version {
        return Err(failed(format!(
            "snapshot announced version {}, its content is version {}",
            msg.version,
            state.version()
        )));
    }
    Ok((state, decode))
}

fn refusal(reason: Reason, detail: String) -> Refusal {
    Refusal {
        reason,
        detail: truncated(detail, MAX_DETAIL),
    }
}

/// `s` cut to at most `max` bytes on a char boundary, marked when cut.
pub fn truncated(mut s: String, max: usize) -> String {
    const MARK: &str = "...";
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(MARK);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_text_and_cuts_on_char_boundaries() {
        assert_eq!(truncated("short".into(), 10), "short");
        assert_eq!(truncated("x".repeat(10), 10), "x".repeat(10));
        let cut = truncated("é".repeat(1000), MAX_DETAIL);
        assert!(cut.len() <= MAX_DETAIL, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert!(cut.len() >= MAX_DETAIL - 4);
    }

    #[test]
    fn a_snapshot_body_that_does_not_decode_is_refused() {
        let msg = pb::Snapshot {
            version: 1,
            hash: "0".repeat(32),
            compression: pb::Compression::None as i32,
            body: vec![0xff; 8],
        };
        let r = verified_snapshot(msg).unwrap_err();
        assert_eq!(r.reason, Reason::ApplyFailed);
    }
}
