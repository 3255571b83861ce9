//! A DP's version never goes backwards and never skips: each config it serves from the
//! cluster is one the cluster had at that version (same hash as the committed history
//! at that version), and it never serves a lower version than it served before — across
//! its own restarts too (it restarts from its cache).

use super::replay::Replay;
use crate::dp::Served;
use crate::scenario::DpSpec;

pub const NAME: &str = "dp_version";

pub fn on_served(
    spec: &DpSpec,
    prev: Option<&Served>,
    new: &Served,
) -> Vec<(&'static str, String)> {
    let Some(prev) = prev else { return Vec::new() };
    if prev.from_cluster && new.version < prev.version {
        return vec![(
            NAME,
            format!(
                "{} went back from v{} (incarnation {}) to v{} (incarnation {}, cluster config: {})",
                spec.name, prev.version, prev.incarnation, new.version, new.incarnation, new.from_cluster
            ),
        )];
    }
    Vec::new()
}

/// Every cluster config served matches the cluster's history at its version.
pub fn check_against_history(
    name: &str,
    served: &[Served],
    replay: &Replay,
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for s in served.iter().filter(|s| s.from_cluster) {
        match replay.hashes.get(s.version as usize) {
            Some(h) if *h == s.hash => {}
            Some(h) => found.push((
                NAME,
                format!(
                    "{name} served v{} with hash {} at {:?}; the cluster's v{} has hash {h}",
                    s.version, s.hash, s.at, s.version
                ),
            )),
            None => found.push((
                NAME,
                format!(
                    "{name} served v{} at {:?}, a version the committed history never reached (it ends at v{})",
                    s.version,
                    s.at,
                    replay.hashes.len() - 1
                ),
            )),
        }
    }
    found
}
