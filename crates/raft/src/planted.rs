//! Bugs planted on purpose, for the simulator (`simulations/`) to prove it can fail.
//!
//! The switches exist only when the crate is built with the `planted` feature (which only
//! `tidegate-sim` enables), and each is a thread-local that starts off: turmoil runs a
//! whole simulation on one thread, so a test that arms one cannot leak it into another.
//! Without the feature every check below is a constant `false`.

/// The in-memory log store with an fsync delay ([`crate::MemStorage::with_fsync`])
/// acknowledges an append (openraft's `LogFlushed`) before it is durable, so a crash
/// right after loses entries a quorum counted as stored.
pub(crate) fn early_ack() -> bool {
    #[cfg(feature = "planted")]
    return switches::EARLY_ACK.with(std::cell::Cell::get);
    #[cfg(not(feature = "planted"))]
    false
}

#[cfg(feature = "planted")]
mod switches {
    use std::cell::Cell;
    thread_local! {
        pub(super) static EARLY_ACK: Cell<bool> = const { Cell::new(false) };
    }
}

/// Arms (or disarms) [`early_ack`] on this thread.
#[cfg(feature = "planted")]
pub fn set_early_ack(on: bool) {
    switches::EARLY_ACK.with(|c| c.set(on));
}
