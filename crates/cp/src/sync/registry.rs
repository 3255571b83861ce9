//! The DPs this CP holds streams for, and the task that records their status in Raft.
//!
//! Each session updates its row here (cheap, local); the flusher proposes the rows that
//! changed, plus a slow refresh of `last_seen` for the quiet ones, as one
//! `Op::DataPlanes` batch per interval. Status therefore costs a Raft write per second at
//! most, however many DPs report, and never touches the config version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tidegate_state::{DpReport, Op, MAX_REPORTS_PER_BATCH};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::backend::Backend;
use crate::node::Clock;

struct Tracked {
    report: DpReport,
    /// Changed since it was last recorded in Raft.
    dirty: bool,
    /// `last_seen` as last recorded, for the slow refresh.
    recorded_seen: Option<i64>,
    /// Which session owns the row: a DP that reconnects gets a new one, and the old
    /// session's goodbye must not mark the new connection disconnected.
    session: u64,
}

#[derive(Default)]
struct Rows {
    rows: BTreeMap<Uuid, Tracked>,
    next_session: u64,
}

/// Shared by the sessions (writers of their own row) and the flusher.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<Rows>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open streams.
    pub(crate) fn connected(&self) -> usize {
        self.lock()
            .rows
            .values()
            .filter(|t| t.report.connected)
            .count()
    }

    /// Takes the row for a newly connected DP; returns the session number.
    pub(crate) fn open(&self, report: DpReport) -> u64 {
        let mut rows = self.lock();
        rows.next_session += 1;
        let session = rows.next_session;
        let recorded_seen = rows.rows.get(&report.id).and_then(|t| t.recorded_seen);
        rows.rows.insert(
            report.id,
            Tracked {
                report,
                dirty: true,
                recorded_seen,
                session,
            },
        );
        session
    }

    /// Updates the row if `session` still owns it. `f` returns whether anything an
    /// operator would see changed (a bare heartbeat only moves `last_seen`).
    pub(crate) fn update(&self, id: Uuid, session: u64, f: impl FnOnce(&mut DpReport) -> bool) {
        let mut rows = self.lock();
        if let Some(t) = rows.rows.get_mut(&id).filter(|t| t.session == session) {
            if f(&mut t.report) {
                t.dirty = true;
            }
        }
    }

    /// Records one report outside any session (a DP refused at Hello).
    pub(crate) fn record_once(&self, report: DpReport) {
        let session = self.open(report.clone());
        self.close(report.id, session, report.last_seen);
    }

    pub(crate) fn close(&self, id: Uuid, session: u64, now: i64) {
        self.update(id, session, |r| {
            r.connected = false;
            r.last_seen = r.last_seen.max(now);
            true
        });
    }

    /// The rows to record now: changed ones, and connected ones whose recorded
    /// `last_seen` is older than `refresh`.
    fn due(&self, refresh: i64) -> Vec<(DpReport, u64)> {
        let rows = self.lock();
        rows.rows
            .values()
            .filter(|t| {
                t.dirty
                    || (t.report.connected
                        && t.recorded_seen
                            .is_none_or(|seen| t.report.last_seen - seen >= refresh))
            })
            .map(|t| (t.report.clone(), t.session))
            .collect()
    }

    /// After a successful write: rows recorded as written are clean, and disconnected
    /// rows leave the registry (Raft keeps them until the purge delay).
    fn recorded(&self, written: &[(DpReport, u64)]) {
        let mut rows = self.lock();
        for (report, session) in written {
            let Some(t) = rows.rows.get_mut(&report.id) else {
                continue;
            };
            if t.session != *session {
                continue;
            }
            t.recorded_seen = Some(report.last_seen);
            if t.report == *report {
                t.dirty = false;
                if !t.report.connected {
                    rows.rows.remove(&report.id);
                }
            }
        }
    }
}

/// How the flusher runs.
#[derive(Debug, Clone)]
pub struct FlushSettings {
    /// How often changed rows are proposed.
    pub interval: Duration,
    /// How stale a connected DP's recorded `last_seen` may get before it is re-recorded.
    pub refresh: Duration,
    /// `cluster_data_plane_purge_delay`.
    pub purge_delay: Duration,
}

/// Records due rows every interval until `shutdown`. A failed write (no leader) is
/// retried at the next interval with whatever is due then; nothing is lost, rows stay
/// dirty until a write succeeds.
pub(crate) async fn flush_loop<B: Backend>(
    registry: Registry,
    backend: Arc<B>,
    clock: Arc<dyn Clock>,
    settings: FlushSettings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                // Last words: the sessions marked themselves disconnected on the way out.
                flush_once(&registry, backend.as_ref(), clock.as_ref(), &settings, &mut failing).await;
                return;
            }
        }
        flush_once(
            &registry,
            backend.as_ref(),
            clock.as_ref(),
            &settings,
            &mut failing,
        )
        .await;
    }
}

async fn flush_once<B: Backend>(
    registry: &Registry,
    backend: &B,
    clock: &dyn Clock,
    settings: &FlushSettings,
    failing: &mut bool,
) {
    let due = registry.due(settings.refresh.as_secs() as i64);
    let purge_before = clock
        .now_unix()
        .saturating_sub(settings.purge_delay.as_secs() as i64);
    if due.is_empty() {
        // Nothing to report, but rows of DPs gone for longer than the purge delay still
        // have to go when no DP is left to carry the purge time in a report.
        let stale = backend.read(|m| m.data_planes.iter().any(|r| r.last_seen < purge_before));
        if stale {
            let op = Op::DataPlanes {
                reports: Vec::new(),
                purge_before,
            };
            if let Err(e) = backend.write(op, None).await {
                debug!(error = %e, "cannot purge data plane rows yet");
            }
        }
        return;
    }
    for chunk in due.chunks(MAX_REPORTS_PER_BATCH) {
        let op = Op::DataPlanes {
            reports: chunk.iter().map(|(r, _)| r.clone()).collect(),
            purge_before,
        };
        match backend.write(op, None).await {
            Ok(_) => {
                if *failing {
                    warn!("data plane status is recorded again");
                    *failing = false;
                }
                debug!(rows = chunk.len(), "recorded data plane status");
                registry.recorded(chunk);
            }
            Err(e) => {
                if !*failing {
                    warn!(error = %e, "cannot record data plane status; retrying every interval (status on other control planes is stale meanwhile, config sync is unaffected)");
                    *failing = true;
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_state::SentCounters;

    fn report(n: u128, last_seen: i64) -> DpReport {
        DpReport {
            id: Uuid::from_u128(n),
            ip: "127.0.0.1".into(),
            hostname: format!("dp-{n}"),
            version: "0.1.0".into(),
            sync_status: "normal".into(),
            config_hash: String::new(),
            config_version: None,
            last_seen,
            labels: BTreeMap::new(),
            cert_expiry: None,
            connected: true,
            control_plane: 1,
            plugins: Vec::new(),
            sent: SentCounters::default(),
        }
    }

    #[test]
    fn a_reconnected_dp_is_not_closed_by_its_old_session() {
        let r = Registry::default();
        let old = r.open(report(1, 10));
        let new = r.open(report(1, 11));
        r.close(Uuid::from_u128(1), old, 12);
        let due = r.due(30);
        assert_eq!(due.len(), 1);
        assert!(due[0].0.connected, "the old session's goodbye must not win");
        assert_eq!(due[0].1, new);
        r.close(Uuid::from_u128(1), new, 13);
        assert!(!r.due(30)[0].0.connected);
    }

    #[test]
    fn heartbeats_are_recorded_only_on_the_slow_refresh() {
        let r = Registry::default();
        let s = r.open(report(1, 100));
        let due = r.due(30);
        r.recorded(&due);
        assert!(r.due(30).is_empty());
        // A heartbeat moves last_seen without a visible change: not due yet…
        r.update(Uuid::from_u128(1), s, |row| {
            row.last_seen = 120;
            false
        });
        assert!(r.due(30).is_empty());
        // …until the recorded last_seen is a refresh interval old.
        r.update(Uuid::from_u128(1), s, |row| {
            row.last_seen = 130;
            false
        });
        assert_eq!(r.due(30).len(), 1);
        // A visible change is due at once.
        let due = r.due(30);
        r.recorded(&due);
        r.update(Uuid::from_u128(1), s, |row| {
            row.sync_status = "plugin_set_incompatible".into();
            true
        });
        assert_eq!(r.due(30).len(), 1);
    }

    #[test]
    fn recorded_disconnected_rows_leave_the_registry() {
        let r = Registry::default();
        r.record_once(DpReport {
            connected: false,
            ..report(1, 10)
        });
        assert_eq!(r.connected(), 0);
        let due = r.due(30);
        assert_eq!(due.len(), 1);
        r.recorded(&due);
        assert!(r.due(30).is_empty());
        assert!(r.lock().rows.is_empty());
    }

    #[test]
    fn a_change_during_the_write_stays_due() {
        let r = Registry::default();
        let s = r.open(report(1, 10));
        let due = r.due(30);
        // The row changes while the write is in flight.
        r.update(Uuid::from_u128(1), s, |row| {
            row.config_hash = "new".into();
            true
        });
        r.recorded(&due);
        assert_eq!(
            r.due(30).len(),
            1,
            "the newer state still has to be recorded"
        );
    }
}
