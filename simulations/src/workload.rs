//! The admin operations a seed issues: every `Op` kind over a small name space, so that
//! operations collide (unique keys, foreign keys, cascades) and the config starts and
//! stops using plugins that some DPs lack.
//!
//! Created entities carry a tag naming the request, so an entity created twice by one
//! request (a retry applied twice) can be told from two requests.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use tidegate_model::declarative::{parse_value, ParseOptions};
use tidegate_model::EntityKind;
use tidegate_state::{EntityRef, Op};
use uuid::Uuid;

use crate::scenario::WORKLOAD_PLUGINS;

const SERVICES: usize = 5;
const ROUTES: usize = 6;
const CONSUMERS: usize = 4;
const PLUGIN_IDS: usize = 6;

fn svc(rng: &mut SmallRng) -> String {
    format!("svc-{}", rng.gen_range(0..SERVICES))
}

fn plugin_id(i: usize) -> Uuid {
    Uuid::from_u128(0x9106_0000_0000_0000_0000_0000_0000_0000 + i as u128)
}

/// The tag that marks what one request created.
pub fn request_tag(rid: Uuid) -> String {
    format!("rq-{}", &rid.simple().to_string()[..12])
}

fn plugin_body(rng: &mut SmallRng, name: &str, tag: &str) -> Value {
    let mut body = json!({"name": name, "tags": [tag]});
    match name {
        "rate-limiting" => body["config"] = json!({"minute": rng.gen_range(1..100)}),
        "request-size-limiting" => {
            body["config"] = json!({"allowed_payload_size": rng.gen_range(1..200)})
        }
        _ => {}
    }
    if rng.gen_bool(0.6) {
        body["service"] = json!({"name": svc(rng)});
    }
    if rng.gen_bool(0.2) {
        body["enabled"] = json!(false);
    }
    body
}

fn service_body(rng: &mut SmallRng, tag: &str) -> Value {
    json!({
        "url": format!("http://up-{}.internal:{}/p", rng.gen_range(0..3), 8000 + rng.gen_range(0..3)),
        "retries": rng.gen_range(0..10),
        "tags": [tag],
    })
}

fn route_body(rng: &mut SmallRng, tag: &str) -> Value {
    json!({
        "paths": [format!("/r{}", rng.gen_range(0..8))],
        "service": {"name": svc(rng)},
        "tags": [tag],
    })
}

/// One operation, as the admin client would send it.
pub fn next_op(rng: &mut SmallRng, rid: Uuid, now: i64) -> Op {
    let tag = request_tag(rid);
    let tag = tag.as_str();
    match rng.gen_range(0..100) {
        // Create: named services (collide), unnamed services (never collide: a retry
        // applied twice shows as two entities with one tag), routes, consumers.
        0..=9 => {
            let mut body = service_body(rng, tag);
            body["name"] = json!(svc(rng));
            Op::Create {
                kind: EntityKind::Service,
                body: body.to_string(),
            }
        }
        10..=15 => Op::Create {
            kind: EntityKind::Service,
            body: service_body(rng, tag).to_string(),
        },
        16..=23 => {
            let mut body = route_body(rng, tag);
            body["name"] = json!(format!("r-{}", rng.gen_range(0..ROUTES)));
            Op::Create {
                kind: EntityKind::Route,
                body: body.to_string(),
            }
        }
        24..=27 => Op::Create {
            kind: EntityKind::Consumer,
            body: json!({"username": format!("c-{}", rng.gen_range(0..CONSUMERS)), "tags": [tag]})
                .to_string(),
        },
        // Upsert by name and by id (plugins: start using a plugin).
        28..=37 => Op::Upsert {
            kind: EntityKind::Service,
            key: EntityRef::Key(svc(rng)),
            body: service_body(rng, tag).to_string(),
        },
        38..=51 => {
            let name = WORKLOAD_PLUGINS.choose(rng).expect("non-empty");
            Op::Upsert {
                kind: EntityKind::Plugin,
                key: EntityRef::Id(plugin_id(rng.gen_range(0..PLUGIN_IDS))),
                body: plugin_body(rng, name, tag).to_string(),
            }
        }
        // Patch.
        52..=57 => Op::Patch {
            kind: EntityKind::Service,
            key: EntityRef::Key(svc(rng)),
            body: json!({"retries": rng.gen_range(0..10)}).to_string(),
        },
        58..=61 => Op::Patch {
            kind: EntityKind::Route,
            key: EntityRef::Key(format!("r-{}", rng.gen_range(0..ROUTES))),
            body: json!({"paths": [format!("/p{}", rng.gen_range(0..8))]}).to_string(),
        },
        62..=65 => Op::Patch {
            kind: EntityKind::Plugin,
            key: EntityRef::Id(plugin_id(rng.gen_range(0..PLUGIN_IDS))),
            body: json!({"enabled": rng.gen_bool(0.5)}).to_string(),
        },
        // Delete: stop using a plugin; cascades from services.
        66..=75 => Op::Delete {
            kind: EntityKind::Plugin,
            key: EntityRef::Id(plugin_id(rng.gen_range(0..PLUGIN_IDS))),
        },
        76..=81 => Op::Delete {
            kind: EntityKind::Service,
            key: EntityRef::Key(svc(rng)),
        },
        82..=84 => Op::Delete {
            kind: EntityKind::Route,
            key: EntityRef::Key(format!("r-{}", rng.gen_range(0..ROUTES))),
        },
        // Batch: a service with its route, all or nothing.
        85..=91 => {
            let name = svc(rng);
            let mut s = service_body(rng, tag);
            s["name"] = json!(name);
            let mut r = route_body(rng, tag);
            r["service"] = json!({"name": name});
            Op::Batch {
                ops: vec![
                    Op::Create {
                        kind: EntityKind::Service,
                        body: s.to_string(),
                    },
                    Op::Create {
                        kind: EntityKind::Route,
                        body: r.to_string(),
                    },
                ],
            }
        }
        // Declarative import of a whole config.
        _ => import(rng, tag, now),
    }
}

fn import(rng: &mut SmallRng, tag: &str, now: i64) -> Op {
    let services: Vec<Value> = (0..rng.gen_range(1..=SERVICES))
        .map(|i| {
            let mut s = service_body(rng, tag);
            s["name"] = json!(format!("svc-{i}"));
            if rng.gen_bool(0.5) {
                s["routes"] = json!([{"name": format!("r-{i}"), "paths": [format!("/i{i}")]}]);
            }
            s
        })
        .collect();
    let chosen: Vec<&str> = WORKLOAD_PLUGINS
        .iter()
        .copied()
        .filter(|_| rng.gen_bool(0.3))
        .collect();
    let plugins: Vec<Value> = chosen
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let mut p = plugin_body(rng, name, tag);
            p["id"] = json!(plugin_id(i).to_string());
            if p.get("service").is_some() {
                p["service"] = json!("svc-0");
            }
            p
        })
        .collect();
    let doc = json!({"_format_version": "3.0", "services": services, "plugins": plugins});
    let opts = ParseOptions {
        now,
        entropy: rng.gen(),
    };
    match parse_value(doc, opts) {
        Ok(parsed) => Op::Import {
            entities: parsed.entities,
        },
        // A file this generator got wrong still makes a valid (empty) import.
        Err(_) => Op::Import {
            entities: Vec::new(),
        },
    }
}

/// A short label for traces.
pub fn describe(op: &Op) -> String {
    match op {
        Op::Create { kind, .. } => format!("create {}", kind.table()),
        Op::Upsert { kind, key, .. } => format!("upsert {} {}", kind.table(), key_str(key)),
        Op::Patch { kind, key, .. } => format!("patch {} {}", kind.table(), key_str(key)),
        Op::Delete { kind, key } => format!("delete {} {}", kind.table(), key_str(key)),
        Op::Import { entities } => format!("import {} entities", entities.len()),
        Op::Batch { ops } => format!("batch of {}", ops.len()),
        Op::DataPlanes { .. } => "data planes".into(),
        Op::Group { commands } => format!("group of {}", commands.len()),
    }
}

fn key_str(k: &EntityRef) -> String {
    match k {
        EntityRef::Id(id) => id.to_string()[..8].to_string(),
        EntityRef::Key(k) => k.clone(),
    }
}
