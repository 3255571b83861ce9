//! The invariants, one file each. Running checkers look at each config a DP publishes
//! and at cut-off DPs while the faults go on; the final ones run once every fault healed,
//! over the recorded admin history and a replay of the committed Raft log.

use std::time::Duration;

use crate::sim::Runner;

pub mod acked_writes;
pub mod convergence;
pub mod cut_off;
pub mod cut_off_routes;
pub mod data_planes;
pub mod dp_version;
pub mod incompatible;
pub mod linearizable;
pub mod replay;

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    /// Simulated time when it was found.
    pub at: Duration,
    pub detail: String,
}

/// The checks that need the whole history: acknowledged writes, linearizability, the
/// DPs' versions against the cluster's history.
pub fn check_final(run: &Runner<'_>) -> Vec<(&'static str, String)> {
    let replay = match replay::Replay::of(&run.cps) {
        Ok(r) => r,
        Err(e) => return vec![("acked_writes", e)],
    };
    let mut found = Vec::new();
    found.extend(acked_writes::check(&run.history, &replay, &run.cps));
    found.extend(linearizable::check(&run.history, &replay, &run.cps));
    for d in &run.dps {
        found.extend(dp_version::check_against_history(
            &d.spec.name,
            &d.served(),
            &replay,
        ));
    }
    found
}
