//! The rate-limiting windows, aligned as Kong's `kong.tools.timestamp` aligns them: on
//! the UTC calendar (a month window starts on the 1st at 00:00 UTC).

use http::HeaderName;
use tidegate_model::calendar::{civil_from_days, days_from_civil};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

const DAY: i64 = 86_400;

impl Period {
    /// Shortest first, as `RateLimitingConfig::limits` lists them.
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    pub fn from_name(name: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == name)
    }

    /// As in the config and in Kong's redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// Kong's `EXPIRATION`: the window's length as Kong counts it for `RateLimit-Reset`
    /// and the redis keys' TTL (a month is 30 days, a year 365, whatever the calendar
    /// says).
    pub fn expiration(self) -> i64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => DAY,
            Period::Month => 30 * DAY,
            Period::Year => 365 * DAY,
        }
    }

    /// The start (Unix seconds) of the window holding `now` (Unix seconds).
    pub fn start(self, now: i64) -> i64 {
        match self {
            Period::Second => now,
            Period::Minute => now - now.rem_euclid(60),
            Period::Hour => now - now.rem_euclid(3_600),
            Period::Day => now - now.rem_euclid(DAY),
            Period::Month => {
                let (y, m, _) = civil_from_days(now.div_euclid(DAY));
                days_from_civil(y, m, 1) * DAY
            }
            Period::Year => {
                let (y, _, _) = civil_from_days(now.div_euclid(DAY));
                days_from_civil(y, 1, 1) * DAY
            }
        }
    }

    /// When the window that starts at `start` ends: the next window's start.
    pub fn end(self, start: i64) -> i64 {
        match self {
            Period::Month => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
            Period::Year => {
                let (y, _, _) = civil_from_days(start.div_euclid(DAY));
                days_from_civil(y + 1, 1, 1) * DAY
            }
            p => start + p.expiration(),
        }
    }

    pub fn limit_header(self) -> HeaderName {
        HeaderName::from_static(match self {
            Period::Second => "x-ratelimit-limit-second",
            Period::Minute => "x-ratelimit-limit-minute",
            Period::Hour => "x-ratelimit-limit-hour",
            Period::Day => "x-ratelimit-limit-day",
            Period::Month => "x-ratelimit-limit-month",
            Period::Year => "x-ratelimit-limit-year",
        })
    }

    pub fn remaining_header(self) -> HeaderName {
        HeaderName::from_static(match self {
            Period::Second => "x-ratelimit-remaining-second",
            Period::Minute => "x-ratelimit-remaining-minute",
            Period::Hour => "x-ratelimit-remaining-hour",
            Period::Day => "x-ratelimit-remaining-day",
            Period::Month => "x-ratelimit-remaining-month",
            Period::Year => "x-ratelimit-remaining-year",
        })
    }
}
