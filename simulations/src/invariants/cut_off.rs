//! A cut-off DP keeps serving its last config: while a running DP can reach no CP (all
//! partitioned away or down), what it serves does not change — not emptied, not rolled
//! back, not replaced. Sampled every check; a window ends wherever the DP could reach a
//! CP, also between two checks, and a second of grace at its start lets messages already
//! on the wire land.

use std::time::Duration;

use tidegate_dp::Current;

pub const NAME: &str = "cut_off";
/// Messages already on the wire when a cut begins may still land.
pub const GRACE: Duration = Duration::from_secs(1);

/// One DP's cut-off window and what it served when the grace ran out (`R`).
pub struct Window<R> {
    pub start: Duration,
    incarnation: u64,
    pub reference: Option<R>,
}

/// The cut-off windows of every DP: opened when a running DP reaches no CP, opened
/// afresh when it restarts while cut off (it serves from its cache then), closed when it
/// is reachable again or not running, also for a moment between two samples (`close`).
/// Shared by the invariants that compare a cut-off DP with itself.
pub struct Windows<R> {
    open: Vec<Option<Window<R>>>,
}

impl<R> Windows<R> {
    pub fn new(dps: usize) -> Self {
        Windows {
            open: (0..dps).map(|_| None).collect(),
        }
    }

    /// Ends DP `i`'s window: it could reach a CP at some moment since the last sample.
    pub fn close(&mut self, i: usize) {
        self.open[i] = None;
    }

    /// One sample of DP `i`: its window once past the grace, else None.
    pub fn sample(
        &mut self,
        i: usize,
        cut: bool,
        now: Duration,
        incarnation: u64,
        running: bool,
    ) -> Option<&mut Window<R>> {
        if !(cut && running) {
            self.open[i] = None;
            return None;
        }
        let fresh = || Window {
            start: now,
            incarnation,
            reference: None,
        };
        let window = self.open[i].get_or_insert_with(fresh);
        if window.incarnation != incarnation {
            *window = fresh();
        }
        (now >= window.start + GRACE).then_some(window)
    }
}

pub struct CutOffs {
    windows: Windows<(u64, String, usize)>,
    /// Windows that lasted past the grace period, for the report.
    pub checked: usize,
}

impl CutOffs {
    pub fn new(dps: usize) -> Self {
        CutOffs {
            windows: Windows::new(dps),
            checked: 0,
        }
    }

    /// Ends DP `i`'s window (see [`Windows::close`]).
    pub fn close(&mut self, i: usize) {
        self.windows.close(i);
    }

    /// One sample of DP `i`: whether it is cut off now and what it serves.
    pub fn observe(
        &mut self,
        i: usize,
        cut: bool,
        now: Duration,
        incarnation: u64,
        current: Option<&Current>,
    ) -> Option<String> {
        let window = self
            .windows
            .sample(i, cut, now, incarnation, current.is_some())?;
        let current = current?;
        let seen = (
            current.state.version(),
            current.state.hash().to_string(),
            current.state.len(),
        );
        match &window.reference {
            None => {
                window.reference = Some(seen);
                self.checked += 1;
                None
            }
            Some(r) if *r == seen => None,
            Some(r) => {
                let detail = format!(
                    "dp{} is cut off from every CP since {:?} and served v{} {} ({} entities), but now serves v{} {} ({} entities)",
                    i + 1,
                    window.start,
                    r.0,
                    r.1,
                    r.2,
                    seen.0,
                    seen.1,
                    seen.2
                );
                window.reference = Some(seen);
                Some(detail)
            }
        }
    }
}
