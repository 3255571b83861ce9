//! Reconnect delays: exponential in the number of failures, capped, with "equal jitter"
//! (half the delay fixed, half random) so that DPs cut off together do not come back
//! together. The randomness is a seeded [`SmallRng`] so a simulation replays exactly.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: SmallRng,
}

// === impl Backoff ===

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The most the next delay can be: `base · 2^failures`, at most `cap`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delay before the next attempt, in `[ceiling/2, ceiling]`; counts one more
    /// failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + self.random_up_to(ceiling - half)
    }

    /// After a connection that worked: the next delay starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// After a rejection: retrying soon would be rejected again, so the next delays are
    /// at the cap.
    pub fn max_out(&mut self) {
        self.failures = u32::MAX;
    }

    fn random_up_to(&mut self, span: Duration) -> Duration {
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.gen_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(seed: u64) -> Backoff {
        Backoff::new(250 * MS, 10_000 * MS, seed)
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let mut b = backoff(1);
        let mut ceilings = Vec::new();
        for _ in 0..40 {
            ceilings.push(b.ceiling());
            b.next_delay();
        }
        assert_eq!(
            &ceilings[..8],
            &[250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000].map(|m| m * MS)
        );
        assert!(ceilings.windows(2).all(|w| w[0] <= w[1]), "{ceilings:?}");
        assert!(ceilings.iter().all(|c| *c <= 10_000 * MS));
        // Far past the point where 2^n overflows: still the cap.
        assert_eq!(ceilings[39], 10_000 * MS);
    }

    #[test]
    fn delays_are_jittered_within_half_to_all_of_the_ceiling() {
        let mut b = backoff(7);
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            distinct.insert(d);
        }
        // 190-odd of those are at the cap: jitter must spread them.
        assert!(distinct.len() > 100, "{} distinct delays", distinct.len());
    }

    #[test]
    fn a_seed_determines_the_sequence() {
        let run = |seed| {
            let mut b = backoff(seed);
            (0..20).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn reset_and_max_out() {
        let mut b = backoff(3);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), 250 * MS);
        let d = b.next_delay();
        assert!(d >= 125 * MS && d <= 250 * MS, "{d:?}");
        b.max_out();
        assert_eq!(b.ceiling(), 10_000 * MS);
        let d = b.next_delay();
        assert!(d >= 5_000 * MS, "{d:?}");
        assert_eq!(b.ceiling(), 10_000 * MS);
    }

    #[test]
    fn degenerate_settings_do_not_panic() {
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(zero.next_delay(), Duration::ZERO);
        // A base above the cap is cut to the cap.
        let mut inverted = Backoff::new(20 * MS, 5 * MS, 0);
        assert_eq!(inverted.ceiling(), 5 * MS);
        assert!(inverted.next_delay() <= 5 * MS);
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX, 0);
        huge.next_delay();
        assert_eq!(huge.ceiling(), Duration::MAX);
    }
}
