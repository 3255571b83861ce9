//! `GET /tags` and `GET /tags/{tag}`: one row per (entity, tag), as Kong's `tags` table
//! lists them: `{"entity_name":"services","entity_id":"…","tag":"…"}`, paged with
//! `size` and an opaque `offset`, ordered by entity id.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use tidegate_model::{EntityKind, KongError};
use uuid::Uuid;

use super::pagination::parse_size;
use super::reply::{Handled, Reply};
use super::request::{escape_uri, Query};
use super::routing::Ctx;
use super::DEFAULT_PAGE_SIZE;
use crate::backend::Backend;

/// A row's place in the listing: (entity id, entity name, tag).
type RowKey = (Uuid, &'static str, String);

/// `tag` is the tag and the path segment as sent, for `next`.
pub(super) fn list<B: Backend>(ctx: &Ctx<B>, tag: Option<(&str, &str)>, query: &Query) -> Handled {
    let size = match query.all("size").count() {
        0 => DEFAULT_PAGE_SIZE,
        1 => parse_size(query.first("size").unwrap_or("")).map_err(|e| Reply::kong(&e))?,
        _ => {
            return Err(Reply::kong(&KongError::invalid_size(
                "size must be a number",
            )))
        }
    };
    let after = query
        .first("offset")
        .map(decode_offset)
        .transpose()
        .map_err(|e| Reply::kong(&e))?;
    let (rows, more) = ctx.backend.read(|m| {
        let mut rows: Vec<RowKey> = m
            .config
            .iter()
            .flat_map(|e| {
                let (id, kind) = (e.id(), e.kind());
                e.tags()
                    .unwrap_or(&[])
                    .iter()
                    .filter(|t| tag.is_none_or(|(want, _)| want == t.as_str()))
                    .map(move |t| (id, kind.table(), t.clone()))
                    .collect::<Vec<_>>()
            })
            .filter(|row| after.as_ref().is_none_or(|a| row > a))
            .collect();
        rows.sort();
        let more = rows.len() > size;
        rows.truncate(size);
        (rows, more)
    });
    let mut body = Map::new();
    let data: Vec<Value> = rows
        .iter()
        .map(|(id, name, t)| json!({ "entity_name": name, "entity_id": id, "tag": t }))
        .collect();
    body.insert("data".into(), Value::Array(data));
    match rows.last().filter(|_| more) {
        Some(last) => {
            let offset = encode_offset(last);
            let path = match tag {
                Some((_, raw)) => format!("/tags/{raw}"),
                None => "/tags".to_string(),
            };
            let mut next = format!("{path}?offset={}", escape_uri(&offset));
            if let Some(s) = query.first("size") {
                next.push_str(&format!("&size={}", escape_uri(s)));
            }
            body.insert("offset".into(), Value::String(offset));
            body.insert("next".into(), Value::String(next));
        }
        None => {
            body.insert("next".into(), Value::Null);
        }
    }
    Ok(Reply::ok(Value::Object(body)))
}

fn encode_offset((id, name, tag): &RowKey) -> String {
    STANDARD.encode(json!([id, name, tag]).to_string())
}

fn decode_offset(token: &str) -> Result<RowKey, KongError> {
    let json = super::pagination::decode_token(token)?;
    let not_ours = || KongError::invalid_offset(token, "not an offset of this listing");
    match json.as_array().map(Vec::as_slice) {
        Some([Value::String(id), Value::String(name), Value::String(tag)]) => {
            let id = tidegate_model::input::parse_uuid(id).map_err(|_| not_ours())?;
            let kind = EntityKind::from_table(name).ok_or_else(not_ours)?;
            Ok((id, kind.table(), tag.clone()))
        }
        _ => Err(not_ours()),
    }
}
