//! What every session of one CP would otherwise compute for itself at each config
//! version: the plugins the config uses (for the compatibility check), the encoded
//! Events from a DP's version to this one, and the encoded snapshot. The first session
//! to need one computes it under the state lock (so it is exactly what that state
//! holds); the others, woken by the same apply, take the shared result. A new config
//! version (or another config at the same version) starts afresh.
//!
//! ```text
//!  apply v ─▶ sessions wake ─▶ Fanout::at(config v) ─▶ Arc<AtVersion> (one per version)
//!               first one: plugins_used, encode Events since its version ─▶ cached
//!               the rest:  Arc clone ─▶ copy of the message bytes outside the lock
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use semver::Version;
use tidegate_model::ConfigHash;
use tidegate_proto::cluster::CpMessage;
use tidegate_state::ConfigState;

use crate::compat::{cp_plugin_versions, plugins_used};

/// Distinct "Events since version x" kept per config version: sessions that are behind
/// by different amounts (a DP that reconnected) each start one.
const MAX_EVENT_STARTS: usize = 16;

/// Messages ready to send, shared by every session that needs them.
#[derive(Debug)]
pub(crate) enum Encoded {
    Messages {
        messages: Vec<CpMessage>,
        /// Events in them.
        events: u64,
        /// Their encoded size.
        bytes: u64,
    },
    /// One body (an Event, or the snapshot message) exceeds the payload limit.
    TooBig { bytes: usize },
}

/// The snapshot of one version, encoded once.
#[derive(Debug)]
pub(crate) struct EncodedSnapshot {
    pub(crate) encoded: Arc<Encoded>,
    pub(crate) entities: usize,
    /// How long taking and encoding it took (by the session that did).
    pub(crate) encode: std::time::Duration,
}

/// The shared results for one config (version and hash).
#[derive(Debug)]
pub(crate) struct AtVersion {
    pub(crate) version: u64,
    pub(crate) hash: ConfigHash,
    /// The used plugins at the CP's versions: `check_plugins`' first argument.
    pub(crate) used: BTreeMap<String, Version>,
    /// from version → the Events from it to `version` (None: the tail does not reach).
    events: Mutex<Vec<(u64, Option<Arc<Encoded>>)>>,
    snapshot: OnceLock<Arc<EncodedSnapshot>>,
}

impl AtVersion {
    /// The Events from `from` to this version, encoded by `encode` on first use.
    /// `encode` returns None when the tail does not reach back to `from`.
    pub(crate) fn events_since(
        &self,
        from: u64,
        encode: impl FnOnce() -> Option<Encoded>,
    ) -> Option<Arc<Encoded>> {
        let mut starts = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, e)) = starts.iter().find(|(f, _)| *f == from) {
            return e.clone();
        }
        let encoded = encode().map(Arc::new);
        if starts.len() >= MAX_EVENT_STARTS {
            starts.remove(0);
        }
        starts.push((from, encoded.clone()));
        encoded
    }

    /// This version's snapshot, encoded by `encode` on first use.
    pub(crate) fn snapshot(
        &self,
        encode: impl FnOnce() -> EncodedSnapshot,
    ) -> Arc<EncodedSnapshot> {
        self.snapshot.get_or_init(|| Arc::new(encode())).clone()
    }
}

/// One per CP: the current version's [`AtVersion`].
#[derive(Default)]
pub(crate) struct Fanout {
    current: Mutex<Option<Arc<AtVersion>>>,
}

impl Fanout {
    /// The shared results for `config`; call it under the state lock that `config` is
    /// read from, and `cp_plugins` must be the same on every call.
    pub(crate) fn at(
        &self,
        config: &ConfigState,
        cp_plugins: &BTreeMap<String, Version>,
    ) -> Arc<AtVersion> {
        let (version, hash) = (config.version(), config.hash());
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = current.as_ref() {
            if at.version == version && at.hash == hash {
                return at.clone();
            }
        }
        let at = Arc::new(AtVersion {
            version,
            hash,
            used: cp_plugin_versions(&plugins_used(config), cp_plugins),
            events: Mutex::new(Vec::new()),
            snapshot: OnceLock::new(),
        });
        *current = Some(at.clone());
        at
    }
}
