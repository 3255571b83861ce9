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
    let available: Map<String, Value> = enabled(ctx)
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

/// `GET /plugins/enabled`: the plugins this node's `plugins` setting enables, sorted by
/// name.
pub(super) fn plugins_enabled<B: Backend>(ctx: &Ctx<B>) -> Reply {
    let mut names: Vec<&str> = enabled(ctx).iter().map(|p| p.name).collect();
    names.sort_unstable();
    Reply::ok(json!({ "enabled_plugins": names }))
}

/// The bundled plugins this node's `plugins` setting enables.
pub(super) fn enabled<B: Backend>(ctx: &Ctx<B>) -> Vec<plugins::PluginInfo> {
    let names = ctx.backend.enabled_plugins();
    plugins::installed()
        .into_iter()
        .filter(|p| names.as_ref().is_none_or(|n| n.iter().any(|m| m == p.name)))
        .collect()
}

/// Kong's refusal of a plugin the node does not enable, checked by the node that takes
/// the write (the replicated log accepts any bundled plugin, as Kong's database does).
pub(super) fn check_enabled<B: Backend>(ctx: &Ctx<B>, name: &str) -> Result<(), Reply> {
    let Some(names) = ctx.backend.enabled_plugins() else {
        return Ok(());
    };
    if names.iter().any(|n| n == name) || plugins::info(name).is_none() {
        // An unknown name gets the same message from the schema, with the rest of the
        // entity's errors.
        return Ok(());
    }
    let mut errors = tidegate_model::error::Errors::default();
    errors.field("name", tidegate_model::entities::not_enabled(name));
    Err(Reply::kong(
        &tidegate_model::error::KongError::schema_violation(&errors),
    ))
}
