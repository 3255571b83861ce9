//! `/clustering/control-planes`: Raft membership. Ours, not Kong's (Kong has no CP
//! cluster); the shapes are `ClusterStatus` as serialised.
//! `/clustering/data-planes`: Kong's shape, from the status every CP replicates.

use hyper::StatusCode;
use serde_json::{json, Value};
use tidegate_state::DpReport;

use super::reply::{Handled, Reply};
use super::request::AdminRequest;
use super::routing::Ctx;
use crate::backend::{Backend, ClusterStatus};

pub(super) async fn list<B: Backend>(ctx: &Ctx<B>) -> Reply {
    status_reply(StatusCode::OK, &ctx.backend.cluster_status().await)
}

/// `POST {"id": <u64>, "address": "host:port"}`.
pub(super) async fn add<B: Backend>(ctx: &Ctx<B>, req: &mut AdminRequest) -> Handled {
    let body = req.json_body().await?;
    let (id, address) = parse_member(&body).map_err(Reply::bad_request)?;
    match ctx.backend.add_member(id, address).await {
        Ok(status) => Ok(status_reply(StatusCode::CREATED, &status)),
        Err(e) => Err(Reply::member_change_error(&e)),
    }
}

pub(super) async fn remove<B: Backend>(ctx: &Ctx<B>, id: &str) -> Handled {
    let id: u64 = id.parse().map_err(|_| {
        Reply::bad_request(format!(
            "control plane id must be an unsigned integer (its raft_node_id), got '{id}'"
        ))
    })?;
    match ctx.backend.remove_member(id).await {
        Ok(status) => Ok(status_reply(StatusCode::OK, &status)),
        Err(e) => Err(Reply::member_change_error(&e)),
    }
}

pub(super) fn parse_member(body: &Value) -> Result<(u64, String), String> {
    let Value::Object(obj) = body else {
        return Err(
            "expected a JSON object {\"id\": <raft_node_id>, \"address\": \"host:port\"}".into(),
        );
    };
    if let Some(k) = obj.keys().find(|k| *k != "id" && *k != "address") {
        return Err(format!(
            "unknown field '{k}': expected only 'id' and 'address'"
        ));
    }
    let id = obj
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("'id' is required: the new control plane's raft_node_id, an unsigned integer")?;
    let address = obj
        .get("address")
        .and_then(Value::as_str)
        .ok_or("'address' is required: the new control plane's raft address, as host:port")?;
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("'address' must be host:port, got '{address}'"));
    }
    Ok((id, address.to_string()))
}

fn status_reply(code: StatusCode, status: &ClusterStatus) -> Reply {
    let body = serde_json::to_value(status).expect("cluster status serialises to JSON");
    Reply::json(code, body)
}

/// Every DP any CP has recorded, in id order. `connected` is true only while the CP
/// holding the stream keeps refreshing the row: a row whose CP died with it goes stale
/// and reads as disconnected.
pub(super) fn data_planes<B: Backend>(ctx: &Ctx<B>) -> Reply {
    let now = ctx.backend.now_unix();
    let data: Vec<Value> = ctx
        .backend
        .read(|m| m.data_planes.iter().map(|r| data_plane(r, now)).collect());
    Reply::json(StatusCode::OK, json!({ "data": data, "next": null }))
}

/// Connected as the status endpoint shows it: connected when it last reported, and
/// that report is recent.
pub(crate) fn is_connected(r: &DpReport, now: i64) -> bool {
    r.connected && now - r.last_seen <= crate::sync::STALE_AFTER.as_secs() as i64
}

pub(crate) fn data_plane(r: &DpReport, now: i64) -> Value {
    json!({
        "id": r.id,
        "ip": r.ip,
        "hostname": r.hostname,
        "version": r.version,
        "sync_status": r.sync_status,
        "config_hash": if r.config_hash.is_empty() { Value::Null } else { Value::from(r.config_hash.clone()) },
        "last_seen": r.last_seen,
        "labels": r.labels,
        "cert_details": { "expiry_timestamp": r.cert_expiry },
        "connected": is_connected(r, now),
        "config_version": r.config_version,
        "control_plane": r.control_plane,
        "plugins": r.plugins.iter().map(|(n, v)| json!({"name": n, "version": v})).collect::<Vec<_>>(),
        "sent": { "snapshots": r.sent.snapshots, "events": r.sent.events, "bytes": r.sent.bytes },
    })
}
