//! Bugs planted on purpose, for the simulator (`simulations/`) to prove it can fail.
//!
//! The switches exist only when the crate is built with the `planted` feature (which only
//! `tidegate-sim` enables), and each is a thread-local that starts off: turmoil runs a
//! whole simulation on one thread, so a test that arms one cannot leak it into another.
//! Without the feature every check below is a constant `false`.

/// The DP serves (publishes) a config before its store is durable, so a crash right
/// after can bring it back on an older config than it served.
pub(crate) fn publish_before_store() -> bool {
    #[cfg(feature = "planted")]
    return switches::PUBLISH_BEFORE_STORE.with(std::cell::Cell::get);
    #[cfg(not(feature = "planted"))]
    false
}

#[cfg(feature = "planted")]
mod switches {
    use std::cell::Cell;
    thread_local! {
        pub(super) static PUBLISH_BEFORE_STORE: Cell<bool> = const { Cell::new(false) };
    }
}

/// Arms (or disarms) [`publish_before_store`] on this thread.
#[cfg(feature = "planted")]
pub fn set_publish_before_store(on: bool) {
    switches::PUBLISH_BEFORE_STORE.with(|c| c.set(on));
}
