//! `GET /api/cluster`: what this CP knows about the cluster, as the page renders it.
//!
//! Everything comes from state the node already keeps: Raft's metrics (via
//! [`Backend::cluster_status`] for the membership and the leader's replication view),
//! the replicated DP table (rows shaped as `/clustering/data-planes` shapes them), the
//! config state's counts and the state machine's tail of recent Events.

use openraft::ServerState;
use serde_json::{json, Value};
use tidegate_model::{Entity, EntityKind};
use tidegate_state::{Change, Event};

use crate::backend::{Backend, ClusterStatus};
use crate::node::RaftNode;

/// How often the page asks again.
pub const REFRESH_MS: u64 = 2_000;
/// A CP may hold 100,000 DP rows; the page lists the first ones by id and summarises
/// all of them, so one poll stays small.
pub const MAX_DATA_PLANE_ROWS: usize = 200;
/// Recent changes shown, newest first.
pub const RECENT_CHANGES: usize = 25;

/// The console's JSON for `node`.
pub(crate) async fn cluster(node: &RaftNode) -> Value {
    let status = node.cluster_status().await;
    let metrics = node.raft().metrics().borrow().clone();
    let raft = RaftFacts {
        state: state_name(metrics.state),
        last_log_index: metrics.last_log_index,
        millis_since_quorum_ack: metrics.millis_since_quorum_ack,
    };
    let recent = node.reader().recent_events(RECENT_CHANGES);
    render(node, &status, &raft, &recent)
}

/// What [`ClusterStatus`] leaves out of this node's Raft metrics.
pub(crate) struct RaftFacts {
    pub state: &'static str,
    pub last_log_index: Option<u64>,
    pub millis_since_quorum_ack: Option<u64>,
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

pub(crate) fn render(
    node: &RaftNode,
    status: &ClusterStatus,
    raft: &RaftFacts,
    recent: &[Event],
) -> Value {
    let info = node.node_info();
    let now = node.now_unix();
    let leads = status.leader == Some(status.node_id) && raft.state == "leader";
    let control_planes: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            // Only the leader tracks followers; its own log is the reference.
            let lag = if leads {
                if m.id == status.node_id {
                    Some(0)
                } else {
                    m.matched_index
                        .zip(raft.last_log_index)
                        .map(|(matched, last)| last.saturating_sub(matched))
                }
            } else {
                None
            };
            json!({
                "id": m.id,
                "address": m.address,
                "kind": m.kind,
                "leader": m.leader,
                "this_node": m.id == status.node_id,
                "reachable": m.reachable,
                "matched_index": m.matched_index,
                "lag": lag,
            })
        })
        .collect();

    let (data_planes, entities) = node.read(|m| {
        let mut total = 0usize;
        let mut connected = 0usize;
        let mut in_sync = 0usize;
        let mut rows = Vec::new();
        for r in m.data_planes.iter() {
            total += 1;
            let up = crate::admin::cluster::is_connected(r, now);
            connected += usize::from(up);
            in_sync += usize::from(up && r.config_hash == status.config_hash);
            // Rows past the shown ones are only counted: no JSON built for them.
            if rows.len() < MAX_DATA_PLANE_ROWS {
                let mut row = crate::admin::cluster::data_plane(r, now);
                if let Some(obj) = row.as_object_mut() {
                    // Up to 512 per DP, and not what the console is for.
                    obj.remove("plugins");
                    let lag = r
                        .config_version
                        .map(|v| i128::from(status.config_version) - i128::from(v));
                    obj.insert("lag".into(), json!(lag));
                }
                rows.push(row);
            }
        }
        let entities: Vec<Value> = EntityKind::ALL
            .iter()
            .map(|k| json!({ "kind": k.table(), "count": m.config.count(*k) }))
            .collect();
        (
            json!({
                "total": total,
                "connected": connected,
                "in_sync": in_sync,
                "rows": rows,
                "max_rows": MAX_DATA_PLANE_ROWS,
            }),
            entities,
        )
    });

    let recent_changes: Vec<Value> = recent.iter().rev().map(change).collect();

    json!({
        "refresh_ms": REFRESH_MS,
        "now": now,
        "node": {
            "raft_id": status.node_id,
            "node_id": info.node_id,
            "hostname": info.hostname,
            "role": info.role,
            "version": info.tidegate_version,
            "health": node.health().err(),
        },
        "raft": {
            "state": raft.state,
            "term": status.term,
            "leader": status.leader,
            "last_log_index": raft.last_log_index,
            "last_applied": status.last_applied,
            "millis_since_quorum_ack": raft.millis_since_quorum_ack,
        },
        "control_planes": control_planes,
        "config": { "version": status.config_version, "hash": status.config_hash },
        "data_planes": data_planes,
        "entities": entities,
        "recent_changes": recent_changes,
    })
}

fn change(e: &Event) -> Value {
    let (op, name) = match &e.change {
        Change::Put(entity) => ("put", display_name(entity)),
        Change::Delete { .. } => ("delete", None),
    };
    json!({
        "version": e.version,
        "op": op,
        "kind": e.change.kind().table(),
        "id": e.change.id(),
        "name": name,
    })
}

/// What an operator calls the entity, never a secret.
fn display_name(entity: &Entity) -> Option<String> {
    match entity {
        Entity::Plugin(p) => Some(p.instance_name.clone().unwrap_or_else(|| p.name.clone())),
        // A key-auth credential's endpoint key is the key itself.
        Entity::KeyauthCredential(_) => None,
        other => other.endpoint_key(),
    }
}
