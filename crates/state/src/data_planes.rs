//! Data-plane status as every CP sees it (DESIGN.md §3, "DP status is replicated too").
//!
//! The CP a DP is connected to proposes batches of [`DpReport`]s through Raft; every CP
//! applies them here, so `GET /clustering/data-planes` on any CP lists every DP. Status
//! lives next to the config, never inside it: applying reports changes no config version
//! and no config hash.
//!
//! Merging is last-writer-wins by `last_seen`, so a retried or reordered batch, or two CPs
//! that briefly both think they hold a DP's stream, cannot take a row backwards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The most reports one batch may carry; a CP splits larger flushes.
pub const MAX_REPORTS_PER_BATCH: usize = 1_000;
/// The most rows kept. A DP beyond it is not recorded (and the CP says so in its log):
/// a runaway fleet of ids must not grow every CP's memory without bound.
pub const MAX_DATA_PLANES: usize = 100_000;

/// One DP's row, with Kong's fields plus ours. Field order is part of the Raft log
/// encoding: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpReport {
    pub id: Uuid,
    pub ip: String,
    pub hostname: String,
    pub version: String,
    /// Kong's sync_status name (`normal`, `plugin_set_incompatible`, …).
    pub sync_status: String,
    /// The hash the DP reported, 32 lowercase hex digits; empty before its first report.
    pub config_hash: String,
    /// The config version the DP reported, if it reported one.
    pub config_version: Option<u64>,
    /// Unix seconds of the last message from the DP, by the recording CP's clock.
    pub last_seen: i64,
    pub labels: BTreeMap<String, String>,
    /// `notAfter` of the DP's client certificate, Unix seconds.
    pub cert_expiry: Option<i64>,
    /// Whether the recording CP holds an open stream from the DP.
    pub connected: bool,
    /// The Raft id of the CP holding (or last holding) the DP's stream.
    pub control_plane: u64,
    /// Installed plugins with versions, as the DP announced them.
    pub plugins: Vec<(String, String)>,
    /// What the recording CP has pushed since the DP connected to it.
    pub sent: SentCounters,
}

/// Pushed to one DP over its current stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCounters {
    pub snapshots: u64,
    pub events: u64,
    /// Encoded bytes of the config messages (Snapshot and Events), as on the wire.
    pub bytes: u64,
}

/// Every DP's row, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlanes {
    rows: BTreeMap<Uuid, DpReport>,
}

impl DataPlanes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, id: &Uuid) -> Option<&DpReport> {
        self.rows.get(id)
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = &DpReport> {
        self.rows.values()
    }

    /// Records `reports` (newest `last_seen` wins, ties go to the later report) and drops
    /// the rows last seen before `purge_before`. Returns how many reports were refused
    /// because the table is full.
    pub fn apply(&mut self, reports: &[DpReport], purge_before: i64) -> usize {
        let mut refused = 0;
        for r in reports {
            let full = self.rows.len() >= MAX_DATA_PLANES;
            match self.rows.get_mut(&r.id) {
                Some(row) if row.last_seen > r.last_seen => {}
                Some(row) => *row = r.clone(),
                None if full => refused += 1,
                None => {
                    self.rows.insert(r.id, r.clone());
                }
            }
        }
        self.rows.retain(|_, row| row.last_seen >= purge_before);
        refused
    }

    /// Rows in id order, for snapshots.
    pub fn to_vec(&self) -> Vec<DpReport> {
        self.rows.values().cloned().collect()
    }

    pub fn from_rows(rows: Vec<DpReport>) -> Self {
        DataPlanes {
            rows: rows.into_iter().map(|r| (r.id, r)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: u128, last_seen: i64, hash: &str) -> DpReport {
        DpReport {
            id: Uuid::from_u128(n),
            ip: "127.0.0.1".into(),
            hostname: format!("dp-{n}"),
            version: "0.1.0".into(),
            sync_status: "normal".into(),
            config_hash: hash.into(),
            config_version: Some(1),
            last_seen,
            labels: BTreeMap::new(),
            cert_expiry: None,
            connected: true,
            control_plane: 1,
            plugins: vec![],
            sent: SentCounters::default(),
        }
    }

    #[test]
    fn newest_report_wins_whatever_the_order() {
        let mut a = DataPlanes::new();
        let mut b = DataPlanes::new();
        let old = report(1, 10, "a");
        let new = report(1, 20, "b");
        a.apply(std::slice::from_ref(&old), 0);
        a.apply(std::slice::from_ref(&new), 0);
        b.apply(std::slice::from_ref(&new), 0);
        b.apply(&[old], 0);
        assert_eq!(a, b);
        assert_eq!(a.get(&Uuid::from_u128(1)).unwrap().config_hash, "b");
    }

    #[test]
    fn equal_last_seen_takes_the_later_report() {
        let mut d = DataPlanes::new();
        d.apply(&[report(1, 10, "a"), report(1, 10, "b")], 0);
        assert_eq!(d.get(&Uuid::from_u128(1)).unwrap().config_hash, "b");
    }

    #[test]
    fn rows_last_seen_before_the_purge_time_go() {
        let mut d = DataPlanes::new();
        d.apply(&[report(1, 10, "a"), report(2, 50, "a")], 0);
        d.apply(&[], 20);
        assert!(d.get(&Uuid::from_u128(1)).is_none());
        assert!(d.get(&Uuid::from_u128(2)).is_some());
        // A late report older than the purge horizon does not resurrect a row.
        d.apply(&[report(1, 15, "a")], 20);
        assert!(d.get(&Uuid::from_u128(1)).is_none());
    }

    #[test]
    fn a_full_table_refuses_new_rows_but_updates_known_ones() {
        let mut d = DataPlanes::from_rows(
            (0..MAX_DATA_PLANES as u128)
                .map(|n| report(n, 10, "a"))
                .collect(),
        );
        let refused = d.apply(&[report(u128::MAX, 10, "a"), report(3, 11, "z")], 0);
        assert_eq!(refused, 1);
        assert_eq!(d.len(), MAX_DATA_PLANES);
        assert_eq!(d.get(&Uuid::from_u128(3)).unwrap().config_hash, "z");
    }
}
