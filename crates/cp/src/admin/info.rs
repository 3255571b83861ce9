//! `GET /`, `GET /status`, `GET /endpoints` and `GET /plugins/enabled`: what clients read
//! to learn which Kong API they talk to.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use tidegate_model::{plugins, Entity, EntityKind, KONG_COMPAT_VERSION};

use super::reply::Reply;
use super::routing::Ctx;
use crate::backend::Backend;

const TAGLINE: &str = "Welcome to tidegate";

/// `version` is the Kong version whose API we implement: decK and other clients gate
/// features on it. Our own version has a field of its own.
pub(super) fn root<B: Backend>(ctx: &Ctx<B>) -> Reply {
    let node = ctx.backend.node_info();
    let available: Map<String, Value> = plugins::bundled()
        .into_iter()
        .map(|p| {
            (
                p.name.to_string(),
                json!({ "version": p.version, "priority": p.priority }),
            )
        })
        .collect();
    let enabled: BTreeSet<String> = ctx.backend.read(|m| {
        m.config
            .iter_kind(EntityKind::Plugin)
            .filter_map(|e| match e {
                Entity::Plugin(p) => Some(p.name.clone()),
                _ => None,
            })
            .collect()
    });
    Reply::ok(json!({
        "version": KONG_COMPAT_VERSION,
        "tidegate_version": node.tidegate_version,
        "edition": "community",
        "tagline": TAGLINE,
        "node_id": node.node_id,
        "hostname": node.hostname,
        "configuration": {
            "role": node.role,
            // Not "off": decK treats that as DB-less Kong and refuses `sync`. Every write
            // here goes through the replicated log, which is our database.
            "database": "raft",
            "admin_listen": node.admin_listen,
        },
        "plugins": {
            "available_on_server": available,
            "enabled_in_cluster": enabled.into_iter().collect::<Vec<_>>(),
        },
    }))
}

/// Kong's `/status` minus `memory` (no Lua VMs here) and the nginx connection states we
/// cannot observe through hyper.
pub(super) fn status<B: Backend>(ctx: &Ctx<B>) -> Reply {
    let hash = ctx.backend.read(|m| m.config.hash().to_hex());
    let (accepted, active, requests) = ctx.counters.snapshot();
    // The replicated store stands in for Kong's database: when it failed, say so with a
    // 503 so that load balancers and operators see a red node.
    let health = ctx.backend.health();
    let body = json!({
        "database": { "reachable": health.is_ok() },
        "server": {
            "connections_accepted": accepted,
            // Nothing is ever dropped before being handled.
            "connections_handled": accepted,
            "connections_active": active,
            "total_requests": requests,
        },
        "configuration_hash": hash,
    });
    match health {
        Ok(()) => Reply::ok(body),
        Err(why) => {
            let mut body = body;
            body["message"] = json!(why);
            Reply::json(hyper::StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

/// `GET /endpoints`: Kong's list of the paths this Admin API serves.
pub(super) fn endpoints() -> Reply {
    Reply::ok(json!({ "data": super::routing::endpoints() }))
}

/// `GET /plugins/enabled`: every bundled plugin can be enabled (there is no `plugins`
/// setting to narrow them), sorted by name.
pub(super) fn plugins_enabled() -> Reply {
    let mut names: Vec<&str> = plugins::bundled().iter().map(|p| p.name).collect();
    names.sort_unstable();
    Reply::ok(json!({ "enabled_plugins": names }))
}
