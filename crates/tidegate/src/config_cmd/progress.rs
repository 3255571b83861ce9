//! Progress of long `config` commands, on stderr so that stdout stays the result scripts
//! read: one line per stage, and a meter for transfers that redraws one line on a
//! terminal and otherwise prints a bounded number of plain lines (a log or a CI job
//! must not get one line per chunk).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Least time between two redraws of a meter on a terminal.
const TTY_REDRAW: Duration = Duration::from_millis(100);
/// Least time between two plain meter lines, which also come only at 10% steps.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Progress {
    tty: bool,
    started: Instant,
}

impl Progress {
    // The binary owns the real clock.
    #[allow(clippy::disallowed_methods)]
    pub fn stderr() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    /// Since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn line(&self, text: &str) {
        eprintln!("{text}");
    }

    /// A meter of `total` bytes, labelled `what` (`uploading to …`).
    #[allow(clippy::disallowed_methods)]
    pub fn meter(&self, what: String, total: u64) -> Meter {
        let now = Instant::now();
        Meter {
            what,
            total,
            tty: self.tty,
            started: now,
            last_shown: now,
            last_percent: 0,
            drawn: false,
        }
    }
}

pub(crate) struct Meter {
    what: String,
    total: u64,
    tty: bool,
    started: Instant,
    last_shown: Instant,
    last_percent: u8,
    /// A terminal line is drawn and must be cleared before the next stage line.
    drawn: bool,
}

impl Meter {
    /// `done` of the total bytes are through.
    #[allow(clippy::disallowed_methods)]
    pub fn advance(&mut self, done: u64) {
        let percent = percent(done, self.total);
        let now = Instant::now();
        if !due(self.tty, percent, self.last_percent, now - self.last_shown) {
            return;
        }
        self.last_percent = percent;
        self.last_shown = now;
        let text = format!(
            "{}: {percent}% ({} of {})",
            self.what,
            bytes(done),
            bytes(self.total)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    /// Clears a terminal meter; returns how long the transfer took.
    pub fn finish(self) -> Duration {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.started.elapsed()
    }
}

fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    (done.min(total) * 100 / total) as u8
}

/// Whether a meter at `percent`, last shown at `last` percent `since` ago, shows again.
/// A plain meter never shows 100%: the stage line that follows says it.
pub(super) fn due(tty: bool, percent: u8, last: u8, since: Duration) -> bool {
    if tty {
        percent != last && (since >= TTY_REDRAW || percent == 100)
    } else {
        percent < 100 && percent / 10 > last / 10 && since >= PLAIN_EVERY
    }
}

/// `12.3 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `850ms`, `3.2s`.
pub(crate) fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
