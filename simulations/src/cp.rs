//! A simulated CP host: the real Raft node (openraft + the state machine + the Raft link
//! over mutual TLS), the real DP sync service, and an admin endpoint that the simulated
//! admin clients and the operator reach through an in-process queue (the write path is
//! the real `Backend::write`, membership changes the real `Backend::add_member` and
//! `remove_member`; the Admin API's HTTP layer is tested elsewhere).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tidegate_cp::node::{
    initial_members, initialize_if_first, Clock, Entropy, NodeSettings, RaftNode,
};
use tidegate_cp::sync::{SyncService, SyncSettings};
use tidegate_cp::{Backend, NodeInfo};
use tidegate_raft::network::Network;
use tidegate_raft::{MemStorage, Proposer, Raft, StateReader};
use tidegate_state::{Op, Outcome};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::scenario::{cp_name, cp_plugins, CP_VERSION};

pub const RAFT_PORT: u16 = 7000;
pub const CLUSTER_PORT: u16 = 8005;
/// Unix seconds at simulated time zero.
pub const EPOCH: u64 = 1_700_000_000;

/// One admin request attempt, handed to a CP.
pub struct Attempt {
    pub id: u64,
    pub op: Op,
    pub request_id: Uuid,
}

/// What an attempt got: the outcome, or why it was not confirmed.
pub type AttemptResult = Result<Outcome, String>;

/// A membership change the operator asks a CP for, through the calls behind
/// `/clustering/control-planes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Add { node: u64, address: String },
    Remove { node: u64 },
}

/// One call of the operator, handed to a CP.
pub struct MemberCall {
    pub id: u64,
    pub change: MemberChange,
}

/// What a member call got: the voters the answer lists, or the error.
pub type MemberResult = Result<Vec<u64>, String>;

/// What the orchestrator hands a CP.
pub enum Request {
    Write(Attempt),
    Member(MemberCall),
}

/// What the orchestrator and a CP host share; survives the host's crashes.
pub struct CpCtx {
    pub index: usize,
    pub node_id: u64,
    /// Size of the initial group (`raft_peers`: cp1..cpN). A spare's index is N: it is
    /// not in its own peer list, so it joins only when added.
    pub cps: usize,
    pub seed: u64,
    pub skew: i64,
    pub disk: MemStorage,
    /// Bumped at each (re)start.
    pub incarnation: Mutex<u64>,
    /// Set by the running incarnation.
    pub inbox: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    pub outbox: Mutex<Vec<(u64, AttemptResult)>>,
    pub member_outbox: Mutex<Vec<(u64, MemberResult)>>,
    pub raft: Mutex<Option<Raft>>,
    pub reader: Mutex<Option<StateReader>>,
    pub failures: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CpCtx {
    /// Hands a request to the running incarnation; Err: connection refused (it is down).
    pub fn send(&self, request: Request) -> Result<(), Request> {
        match lock(&self.inbox).as_ref() {
            Some(tx) => tx.send(request).map_err(|e| e.0),
            None => Err(request),
        }
    }

    pub fn take_results(&self) -> Vec<(u64, AttemptResult)> {
        std::mem::take(&mut *lock(&self.outbox))
    }

    pub fn take_member_results(&self) -> Vec<(u64, MemberResult)> {
        std::mem::take(&mut *lock(&self.member_outbox))
    }

    /// This CP's Raft address, as the operator names it to the cluster API.
    pub fn raft_address(&self) -> String {
        format!("{}:{RAFT_PORT}", cp_name(self.index))
    }

    pub fn raft(&self) -> Option<Raft> {
        lock(&self.raft).clone()
    }

    pub fn reader(&self) -> Option<StateReader> {
        lock(&self.reader).clone()
    }

    /// Called by the orchestrator when it crashes the host.
    pub fn crashed(&self) {
        *lock(&self.inbox) = None;
        *lock(&self.raft) = None;
        *lock(&self.reader) = None;
        self.disk.crash();
    }
}

/// Simulated wall clock, skewed per CP.
struct SimClock {
    skew: i64,
}

impl Clock for SimClock {
    fn now_unix(&self) -> i64 {
        let since = turmoil::sim_elapsed().unwrap_or_default();
        EPOCH as i64 + since.as_secs() as i64 + self.skew
    }
}

struct SimEntropy(Mutex<SmallRng>);

impl Entropy for SimEntropy {
    fn next_u128(&self) -> u128 {
        lock(&self.0).gen()
    }
}

/// The host's software; run again at each restart.
pub async fn run(ctx: Arc<CpCtx>) -> turmoil::Result {
    let incarnation = {
        let mut i = lock(&ctx.incarnation);
        *i += 1;
        *i
    };
    let tls = crate::tls::raft_tls();
    let (log, sm) = ctx.disk.open()?;
    let reader = sm.reader();
    let network = Network::with_connect(Some(tls.clone()), crate::net::raft_connect());
    let config = Arc::new(tidegate_raft::raft_config("sim"));
    let raft = Raft::new(ctx.node_id, config, network.clone(), log, sm).await?;

    let proposer = Proposer::new(raft.clone());
    let incoming = crate::net::incoming(RAFT_PORT).await?;
    {
        let proposer = proposer.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = tidegate_raft::network::serve_incoming(
                incoming,
                proposer,
                tls,
                std::future::pending(),
            )
            .await;
        });
    }
    let peers: Vec<(u64, String)> = (0..ctx.cps)
        .map(|i| (i as u64 + 1, format!("{}:{RAFT_PORT}", cp_name(i))))
        .collect();
    let members = initial_members(ctx.node_id, &ctx.raft_address(), &peers);
    initialize_if_first(&raft, ctx.node_id, members)
        .await
        .map_err(|e| format!("initialize: {e}"))?;

    let clock: Arc<dyn Clock> = Arc::new(SimClock { skew: ctx.skew });
    let entropy = SimEntropy(Mutex::new(SmallRng::seed_from_u64(
        ctx.seed ^ (ctx.node_id << 40) ^ (incarnation << 20),
    )));
    let node = Arc::new(RaftNode::new(
        proposer,
        reader.clone(),
        network,
        NodeSettings {
            node_id: ctx.node_id,
            info: NodeInfo {
                node_id: Uuid::from_u128(0xc9_0000 + u128::from(ctx.node_id)),
                hostname: cp_name(ctx.index),
                role: "control_plane".into(),
                tidegate_version: CP_VERSION.into(),
                admin_listen: Vec::new(),
            },
            leader_wait: Duration::from_secs(3),
            apply_wait: Duration::from_secs(5),
        },
        clock.clone(),
        Arc::new(entropy),
    ));

    let plugins = cp_plugins()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                semver::Version::parse(&v).expect("bundled versions are semver"),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let settings = SyncSettings::new(
        ctx.node_id,
        semver::Version::parse(CP_VERSION).expect("semver"),
        plugins,
    );
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = SyncService::new(settings, reader.clone(), node.clone(), clock, stop_rx);
    let incoming = crate::net::incoming(CLUSTER_PORT).await?;
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(service.into_server())
            .serve_with_incoming(incoming)
            .await;
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    *lock(&ctx.inbox) = Some(tx);
    *lock(&ctx.raft) = Some(raft.clone());
    *lock(&ctx.reader) = Some(reader);

    // A fatal Raft error is a finding, not something to wait out.
    {
        let ctx = ctx.clone();
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            if metrics.wait_for(|m| m.running_state.is_err()).await.is_ok() {
                let state = format!("{:?}", metrics.borrow().running_state);
                lock(&ctx.failures).push(format!(
                    "{} (incarnation {incarnation}): raft stopped: {state}",
                    cp_name(ctx.index)
                ));
            }
        });
    }

    while let Some(request) = rx.recv().await {
        let node = node.clone();
        let ctx = ctx.clone();
        match request {
            Request::Write(attempt) => {
                tokio::spawn(async move {
                    let result = match node.write(attempt.op, Some(attempt.request_id)).await {
                        Ok(ok) => Ok(ok.outcome),
                        Err(e) => Err(e.to_string()),
                    };
                    lock(&ctx.outbox).push((attempt.id, result));
                });
            }
            Request::Member(call) => {
                tokio::spawn(async move {
                    let result = match call.change {
                        MemberChange::Add { node: id, address } => {
                            node.add_member(id, address).await
                        }
                        MemberChange::Remove { node: id } => node.remove_member(id).await,
                    };
                    let result = result
                        .map(|status| {
                            status
                                .members
                                .iter()
                                .filter(|m| m.kind == "voter")
                                .map(|m| m.id)
                                .collect()
                        })
                        .map_err(|e| e.to_string());
                    lock(&ctx.member_outbox).push((call.id, result));
                });
            }
        }
    }
    let _keep = _stop_tx;
    Ok(())
}
