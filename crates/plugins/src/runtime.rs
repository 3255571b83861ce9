//! What outlives a config version: state plugins share across versions and requests
//! (rate-limit counters, redis connections), kept by the proxy for its whole life.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One shared value per type, created on first use. Plugins take their `Arc` when an
/// instance is built, so the request path never touches this map's lock.
#[derive(Default)]
pub struct Runtime {
    shared: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Runtime {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let any = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        any.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("the map is keyed by the value's own type"))
    }
}
