//! A cut-off DP keeps serving its last config: while a running DP can reach no CP (all
//! partitioned away or down), what it serves does not change — not emptied, not rolled
//! back, not replaced. Sampled every check; a second of grace at the start lets messages
//! already on the wire land.

use std::time::Duration;

use tidegate_dp::Current;

pub const NAME: &str = "cut_off";
const GRACE: Duration = Duration::from_secs(1);

struct Window {
    start: Duration,
    incarnation: u64,
    reference: Option<(u64, String, usize)>,
}

pub struct CutOffs {
    open: Vec<Option<Window>>,
    /// Windows that lasted past the grace period, for the report.
    pub checked: usize,
}

impl CutOffs {
    pub fn new(dps: usize) -> Self {
        CutOffs {
            open: (0..dps).map(|_| None).collect(),
            checked: 0,
        }
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
        let (Some(current), true) = (current, cut) else {
            self.open[i] = None;
            return None;
        };
        let seen = (
            current.state.version(),
            current.state.hash().to_string(),
            current.state.len(),
        );
        let window = self.open[i].get_or_insert(Window {
            start: now,
            incarnation,
            reference: None,
        });
        if window.incarnation != incarnation {
            // Restarted while cut off: a new window, from its cache.
            *window = Window {
                start: now,
                incarnation,
                reference: None,
            };
        }
        if now < window.start + GRACE {
            return None;
        }
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
