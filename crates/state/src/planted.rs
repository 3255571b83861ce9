//! Bugs planted on purpose, for the simulator (`simulations/`) to prove it can fail.
//!
//! The switches exist only when the crate is built with the `planted` feature (which only
//! `tidegate-sim` enables), and each is a thread-local that starts off: turmoil runs a
//! whole simulation on one thread, so a test that arms one cannot leak it into another.
//! Without the feature every check below is a constant `false`.

/// The state machine forgets request-id de-duplication: a retried Command applies again.
pub(crate) fn forget_request_ids() -> bool {
    #[cfg(feature = "planted")]
    return switches::FORGET_REQUEST_IDS.with(std::cell::Cell::get);
    #[cfg(not(feature = "planted"))]
    false
}

#[cfg(feature = "planted")]
mod switches {
    use std::cell::Cell;
    thread_local! {
        pub(super) static FORGET_REQUEST_IDS: Cell<bool> = const { Cell::new(false) };
    }
}

/// Arms (or disarms) [`forget_request_ids`] on this thread.
#[cfg(feature = "planted")]
pub fn set_forget_request_ids(on: bool) {
    switches::FORGET_REQUEST_IDS.with(|c| c.set(on));
}
