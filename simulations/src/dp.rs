//! A simulated DP host: the real sync client (`DpSync`) over simulated TCP, persisting to
//! a simulated disk that keeps only what was stored before a crash. A watcher records
//! every config the DP publishes (what its proxy would serve) for the checkers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tidegate_dp::{Current, DpSync, HelloInfo, SyncSettings, SyncStatus};
use tidegate_model::{Entity, EntityKind};
use tidegate_state::ConfigState;
use tokio::sync::watch;
use uuid::Uuid;

use crate::scenario::DpSpec;
use crate::store::DpDisk;

/// One config the DP served, as its proxy would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub at: Duration,
    pub incarnation: u64,
    pub version: u64,
    pub hash: String,
    pub from_cluster: bool,
    pub plugins: BTreeSet<String>,
    pub entities: usize,
}

impl Served {
    pub fn of(current: &Current, at: Duration, incarnation: u64) -> Self {
        Served {
            at,
            incarnation,
            version: current.state.version(),
            hash: current.state.hash().to_string(),
            from_cluster: current.from_cluster,
            plugins: plugins_used(&current.state),
            entities: current.state.len(),
        }
    }
}

pub fn plugins_used(state: &ConfigState) -> BTreeSet<String> {
    state
        .iter_kind(EntityKind::Plugin)
        .filter_map(|e| match e {
            Entity::Plugin(p) => Some(p.name.clone()),
            _ => None,
        })
        .collect()
}

pub struct DpCtx {
    pub index: usize,
    pub seed: u64,
    pub spec: DpSpec,
    pub node_id: Uuid,
    pub disk: DpDisk,
    pub incarnation: Mutex<u64>,
    /// Every publish seen, in order, across restarts.
    pub served: Mutex<Vec<Served>>,
    pub config: Mutex<Option<watch::Receiver<Arc<Current>>>>,
    pub status: Mutex<Option<watch::Receiver<SyncStatus>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DpCtx {
    /// What it serves now, if it runs.
    pub fn current(&self) -> Option<Arc<Current>> {
        lock(&self.config).as_ref().map(|rx| rx.borrow().clone())
    }

    pub fn crashed(&self) {
        *lock(&self.config) = None;
        *lock(&self.status) = None;
    }

    pub fn served(&self) -> Vec<Served> {
        lock(&self.served).clone()
    }
}

pub async fn run(ctx: Arc<DpCtx>) -> turmoil::Result {
    let incarnation = {
        let mut i = lock(&ctx.incarnation);
        *i += 1;
        *i
    };
    let initial = match ctx.disk.load() {
        Some(state) => Current::from_cache((*state).clone()),
        None => Current::local(ConfigState::new()),
    };
    let hello = HelloInfo {
        node_id: ctx.node_id,
        hostname: ctx.spec.name.clone(),
        version: ctx.spec.version.clone(),
        plugins: ctx
            .spec
            .plugins
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        labels: BTreeMap::from([("sim".to_string(), ctx.spec.name.clone())]),
    };
    let mut settings = SyncSettings::new(
        ctx.spec.addresses.clone(),
        hello,
        ctx.seed ^ ((ctx.index as u64 + 1) << 32) ^ incarnation,
    );
    settings.heartbeat = Duration::from_secs(5);
    settings.backoff_cap = Duration::from_secs(5);
    settings.handshake_timeout = Duration::from_secs(5);
    let sync = DpSync::with_store(
        settings,
        Arc::new(ctx.disk.clone()),
        initial,
        crate::net::dp_connect(),
    );
    let mut config = sync.config();
    *lock(&ctx.config) = Some(config.clone());
    *lock(&ctx.status) = Some(sync.status());
    {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let current = config.borrow_and_update().clone();
                let at = turmoil::sim_elapsed().unwrap_or_default();
                lock(&ctx.served).push(Served::of(&current, at, incarnation));
                if config.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    sync.run(std::future::pending()).await;
    Ok(())
}
