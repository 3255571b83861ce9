//! Bugs planted on purpose, for the simulator (`simulations/`) to prove it can fail.
//!
//! The switches exist only when the crate is built with the `planted` feature (which only
//! `tidegate-sim` enables), and each is a thread-local that starts off: turmoil runs a
//! whole simulation on one thread, so a test that arms one cannot leak it into another.
//! Without the feature every check below is a constant `false`.

/// The CP pushes config to a DP without checking that the DP has the plugins it uses.
pub(crate) fn skip_plugin_check() -> bool {
    #[cfg(feature = "planted")]
    return switches::SKIP_PLUGIN_CHECK.with(std::cell::Cell::get);
    #[cfg(not(feature = "planted"))]
    false
}

#[cfg(feature = "planted")]
mod switches {
    use std::cell::Cell;
    thread_local! {
        pub(super) static SKIP_PLUGIN_CHECK: Cell<bool> = const { Cell::new(false) };
    }
}

/// Arms (or disarms) [`skip_plugin_check`] on this thread.
#[cfg(feature = "planted")]
pub fn set_skip_plugin_check(on: bool) {
    switches::SKIP_PLUGIN_CHECK.with(|c| c.set(on));
}
