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
    if due.is_empty() {
        return;
    }
    let purge_before = clock
        .now_unix()
        .saturating_sub(settings.purge_delay.as_secs() as i64);
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
