//! `POST /config` and `GET /config`: Kong's DB-less endpoint, here a replicated write.
//!
//! The receiving node parses the file (fixing the load time and entropy once, so every
//! replica gets the same entities) and proposes one `Op::Import`: the whole config is
//! replaced, all or nothing, in one Raft entry. The answer is Kong's: 201 with the
//! flattened entities keyed by kind then id, or code 14 mirroring the file.
//!
//! `?check_hash=1` answers 304 when the import would change nothing. Kong compares the
//! md5 of the file text with the last one loaded; we compare what the file produces
//! with the config, ignoring `created_at`/`updated_at` as `Op::Import` does, so a file
//! reformatted or reordered without a change in meaning is also "the same".

use hyper::StatusCode;
use serde_json::{json, Map, Value};
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_model::{Entity, EntityKind};
use tidegate_state::{ConfigState, Op};

use super::entities::write;
use super::form;
use super::reply::{Handled, Reply};
use super::request::{is_form, is_json, is_multipart, AdminRequest};
use super::routing::Ctx;
use super::MAX_CONFIG_BODY_BYTES;
use crate::backend::Backend;

/// What the request carried: a parsed document, or text to parse.
enum Source {
    Document(Value),
    Text(String),
}

/// `GET /config`: the config as a 3.0 declarative file.
pub(super) fn export<B: Backend>(ctx: &Ctx<B>) -> Reply {
    let yaml = ctx
        .backend
        .read(|m| declarative::export_yaml(m.config.iter()));
    Reply::ok(json!({ "config": yaml }))
}

/// `POST /config`: `{"config": "<yaml or json>"}`, the document itself as JSON, a raw
/// YAML/JSON body, or a form field `config`.
pub(super) async fn import<B: Backend>(ctx: &Ctx<B>, req: &mut AdminRequest) -> Handled {
    let bytes = req.bytes(MAX_CONFIG_BODY_BYTES).await?;
    let source = source(&bytes, req.content_type().as_deref())?;
    let request_id = req.request_id()?;
    let opts = ParseOptions {
        now: ctx.backend.now_unix(),
        entropy: ctx.backend.entropy(),
    };
    let parsed = match source {
        Source::Document(doc) => declarative::parse_value(doc, opts),
        Source::Text(text) => declarative::parse(&text, opts),
    }
    .map_err(|e| Reply::kong(&e))?;
    let entities = parsed.entities;
    for e in &entities {
        if let tidegate_model::Entity::Plugin(p) = e {
            super::info::check_enabled(ctx, &p.name)?;
        }
    }
    let check_hash = req.query.first("check_hash") == Some("1");
    if check_hash && ctx.backend.read(|m| unchanged(&m.config, &entities)) {
        return Ok(Reply {
            status: StatusCode::NOT_MODIFIED,
            body: None,
        });
    }
    let keys: Vec<(EntityKind, uuid::Uuid)> = entities.iter().map(|e| (e.kind(), e.id())).collect();
    write(
        ctx,
        Op::Import {
            entities: entities.clone(),
        },
        request_id,
    )
    .await?;
    // What the config holds now: an unchanged entity keeps its stored timestamps.
    let body = ctx.backend.read(|m| {
        let mut out: Map<String, Value> = Map::new();
        for ((kind, id), parsed) in keys.iter().zip(&entities) {
            let json = m.config.get(*kind, *id).unwrap_or(parsed).to_json();
            let slot = out
                .entry(kind.table().to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(by_id) = slot {
                by_id.insert(id.to_string(), json);
            }
        }
        Value::Object(out)
    });
    Ok(Reply::json(StatusCode::CREATED, body))
}

fn source(bytes: &[u8], content_type: Option<&str>) -> Result<Source, Reply> {
    let nothing = || Reply::bad_request("expected a declarative configuration");
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(nothing());
    }
    if let Some(ct) = content_type {
        if is_form(ct) || is_multipart(ct) {
            let pairs = if is_form(ct) {
                form::urlencoded(bytes)
            } else {
                form::multipart(bytes, ct).map_err(|why| {
                    Reply::bad_request(format!("Cannot parse multipart/form-data body: {why}"))
                })?
            };
            return match form::decode(pairs).get("config") {
                Some(Value::String(text)) => Ok(Source::Text(text.clone())),
                _ => Err(nothing()),
            };
        }
    }
    let json_declared = content_type.is_some_and(is_json);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) if json_declared => return Err(Reply::bad_request("Cannot parse JSON body")),
        Err(_) => {
            return Err(Reply::kong(&tidegate_model::KongError::declarative(
                &json!({"error": "failed parsing declarative configuration: the file is not UTF-8 text"}),
            )))
        }
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => {
            // A JSON body is either the document or `{"config": "<text>"}`.
            if obj.contains_key("_format_version") {
                return Ok(Source::Document(Value::Object(obj)));
            }
            match obj.get("config") {
                Some(Value::String(t)) => Ok(Source::Text(t.clone())),
                Some(doc @ Value::Object(_)) => Ok(Source::Document(doc.clone())),
                _ => Ok(Source::Document(Value::Object(obj))),
            }
        }
        Ok(other) => Ok(Source::Document(other)),
        Err(_) if json_declared => Err(Reply::bad_request("Cannot parse JSON body")),
        // YAML, or JSON the declarative parser explains better.
        Err(_) => Ok(Source::Text(text.to_string())),
    }
}

/// Whether importing `entities` would produce no Events.
fn unchanged(config: &ConfigState, entities: &[Entity]) -> bool {
    tidegate_state::import_changes(config, entities).is_empty()
}
