//! openraft's async runtime: tokio, except that the RNG (election timeouts) is a
//! thread-local seeded `SmallRng`, so a simulated host replays the same elections for the
//! same seed.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_entropy());
}

/// Re-seeds this thread's Raft RNG. The simulator calls it on each simulated host's
/// thread before starting that host's Raft.
pub fn seed_thread_rng(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = SmallRng::seed_from_u64(seed));
}

/// Tokio with a seedable RNG.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct SeededRuntime;

/// A handle on this thread's seeded RNG. Not `Send`: it reads the thread-local of the
/// thread it was made on, like `rand::rngs::ThreadRng`.
#[derive(Debug, Clone)]
pub struct SeededRng {
    _not_send: PhantomData<*const ()>,
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        RNG.with(|r| r.borrow_mut().next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        RNG.with(|r| r.borrow_mut().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        RNG.with(|r| r.borrow_mut().fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        RNG.with(|r| r.borrow_mut().try_fill_bytes(dest))
    }
}

/// openraft's oneshot sender wrapper, for our runtime.
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OneshotSender").finish()
    }
}

impl<T: OptionalSend> AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

impl AsyncRuntime for SeededRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = SeededRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SeededRng {
            _not_send: PhantomData,
        }
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_timeouts() {
        let draw = || -> Vec<u64> {
            let mut rng = SeededRuntime::thread_rng();
            (0..8).map(|_| rng.gen_range(800..1600)).collect()
        };
        seed_thread_rng(42);
        let a = draw();
        seed_thread_rng(42);
        let b = draw();
        seed_thread_rng(43);
        let c = draw();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_raft_config_draws_from_the_seeded_rng() {
        let cfg = crate::raft_config("t");
        seed_thread_rng(7);
        let a = cfg.new_rand_election_timeout::<SeededRuntime>();
        seed_thread_rng(7);
        let b = cfg.new_rand_election_timeout::<SeededRuntime>();
        assert_eq!(a, b);
        assert!((800..1600).contains(&a));
    }
}
