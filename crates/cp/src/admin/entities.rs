//! Entity endpoints, after Kong's `kong/api/endpoints.lua`: lists, create, and
//! get/put/patch/delete at top level, nested under a parent, and through a foreign key.
//!
//! Reads come from this node's applied state; every change is one `Op` through
//! `Backend::write`, and its answer is read back from the state the write produced.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tidegate_model::{Entity, EntityKind, Lookup};
use tidegate_state::{Applied, ConfigState, EntityRef, Op};
use uuid::Uuid;

use super::pagination::PageParams;
use super::reply::{Handled, Reply};
use super::request::{AdminRequest, Query};
use super::routing::Ctx;
use crate::backend::{Backend, WriteOk};

/// A parent named in the URL: `/services/{parent_key}/routes…`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope<'a> {
    pub parent: EntityKind,
    pub parent_key: &'a str,
    /// The child's foreign-key field that points at the parent.
    pub field: &'static str,
}

/// `GET /{e}` and `GET /{parent}/{p}/{e}`.
pub(super) fn list<B: Backend>(
    ctx: &Ctx<B>,
    kind: EntityKind,
    scope: Option<Scope<'_>>,
    query: &Query,
    path: &str,
) -> Handled {
    let params = PageParams::parse(query);
    let page = ctx.backend.read(|m| {
        let config = &m.config;
        // Kong looks the parent up before it reads any list argument.
        let Some(scope) = scope else {
            let params = params.as_ref().map_err(Reply::kong)?;
            return Ok(params.page(config.iter_kind(kind)));
        };
        let parent = resolve(config, scope.parent, scope.parent_key)
            .ok_or_else(Reply::not_found)?
            .id();
        let params = params.as_ref().map_err(Reply::kong)?;
        let children = config
            .children_of(scope.parent, parent)
            .filter(|(k, _)| *k == kind)
            .filter_map(|(k, id)| config.get(k, id))
            .filter(|e| foreign_key(e, scope.field) == Some(parent));
        Ok(params.page(children))
    })?;
    let params = params.map_err(|e| Reply::kong(&e))?;
    Ok(Reply::ok(params.body(page, path)))
}

/// `POST /{e}` and `POST /{parent}/{p}/{e}` (the parent is injected into the body).
pub(super) async fn create<B: Backend>(
    ctx: &Ctx<B>,
    req: &mut AdminRequest,
    kind: EntityKind,
    scope: Option<Scope<'_>>,
) -> Handled {
    let mut body = req.json_body().await?;
    let request_id = req.request_id()?;
    if let Some(scope) = scope {
        let parent = ctx
            .backend
            .read(|m| resolve(&m.config, scope.parent, scope.parent_key).map(Entity::id))
            .ok_or_else(Reply::not_found)?;
        set_field(&mut body, scope.field, parent);
    }
    let op = Op::Create {
        kind,
        body: body.to_string(),
    };
    let applied = write(ctx, op, request_id).await?;
    Ok(render(ctx, &applied, StatusCode::CREATED))
}

/// `/{e}/{x}`: GET, PUT (upsert), PATCH, DELETE (204 even when absent, as in Kong).
pub(super) async fn entity<B: Backend>(
    ctx: &Ctx<B>,
    req: &mut AdminRequest,
    method: Method,
    kind: EntityKind,
    key: &str,
) -> Handled {
    let op = match method {
        Method::GET => {
            return ctx
                .backend
                .read(|m| resolve(&m.config, kind, key).map(Entity::to_json))
                .map(Reply::ok)
                .ok_or_else(Reply::not_found);
        }
        Method::PUT => Op::Upsert {
            kind,
            key: EntityRef::parse(key),
            body: req.json_body().await?.to_string(),
        },
        Method::PATCH => Op::Patch {
            kind,
            key: EntityRef::parse(key),
            body: req.json_body().await?.to_string(),
        },
        _ => Op::Delete {
            kind,
            key: EntityRef::parse(key),
        },
    };
    let applied = write(ctx, op, req.request_id()?).await?;
    Ok(render(ctx, &applied, StatusCode::OK))
}

/// `/{parent}/{p}/{e}/{x}`: the child must exist and belong to the parent, except for
/// PUT, which (as in Kong) upserts the child under the parent whatever it pointed at.
pub(super) async fn nested_entity<B: Backend>(
    ctx: &Ctx<B>,
    req: &mut AdminRequest,
    method: Method,
    scope: Scope<'_>,
    kind: EntityKind,
    key: &str,
) -> Handled {
    let mut body = match method {
        Method::PUT | Method::PATCH => Some(req.json_body().await?),
        _ => None,
    };
    let found = ctx.backend.read(|m| {
        let config = &m.config;
        let parent = resolve(config, scope.parent, scope.parent_key)?.id();
        let child = resolve(config, kind, key);
        Some((
            parent,
            child.map(|c| (c.id(), foreign_key(c, scope.field), c.to_json())),
        ))
    });
    let Some((parent, child)) = found else {
        return Err(Reply::not_found());
    };
    if method == Method::PUT {
        let mut body = body.take().unwrap_or_else(|| json!({}));
        set_field(&mut body, scope.field, parent);
        let op = Op::Upsert {
            kind,
            key: EntityRef::parse(key),
            body: body.to_string(),
        };
        let applied = write(ctx, op, req.request_id()?).await?;
        return Ok(render(ctx, &applied, StatusCode::OK));
    }
    let (child, _, json) = child
        .filter(|(_, fk, _)| *fk == Some(parent))
        .ok_or_else(Reply::not_found)?;
    let op = match method {
        Method::GET => return Ok(Reply::ok(json)),
        Method::PATCH => {
            let mut body = body.take().unwrap_or_else(|| json!({}));
            // Kong keeps a foreign key the body names (even `null`), else pins the parent.
            if let Value::Object(obj) = &mut body {
                if !obj.contains_key(scope.field) {
                    set_field(&mut body, scope.field, parent);
                }
            }
            Op::Patch {
                kind,
                key: EntityRef::Id(child),
                body: body.to_string(),
            }
        }
        _ => Op::Delete {
            kind,
            key: EntityRef::Id(child),
        },
    };
    let applied = write(ctx, op, req.request_id()?).await?;
    Ok(render(ctx, &applied, StatusCode::OK))
}

/// `/{e}/{x}/{fk}`, e.g. `/routes/{r}/service`: the entity the foreign key points at.
/// DELETE is 405 (Kong will not delete a parent through its child); PUT on a child without
/// the foreign key creates the parent and attaches the child to it, in two writes as Kong
/// does.
pub(super) async fn foreign_entity<B: Backend>(
    ctx: &Ctx<B>,
    req: &mut AdminRequest,
    method: Method,
    kind: EntityKind,
    key: &str,
    field: &'static str,
    parent: EntityKind,
) -> Handled {
    let mut body = match method {
        Method::PUT | Method::PATCH => Some(req.json_body().await?),
        _ => None,
    };
    let (child, target) = ctx
        .backend
        .read(|m| {
            let child = resolve(&m.config, kind, key)?;
            let target = foreign_key(child, field);
            let json = target.and_then(|id| m.config.get(parent, id).map(Entity::to_json));
            Some((child.id(), target.map(|id| (id, json))))
        })
        .ok_or_else(Reply::not_found)?;
    let request_id = match method {
        Method::GET | Method::DELETE => None,
        _ => req.request_id()?,
    };
    match (method, target) {
        (Method::GET, Some((_, Some(json)))) => Ok(Reply::ok(json)),
        (Method::DELETE, Some(_)) => Err(Reply::method_not_allowed()),
        (Method::PATCH, Some((id, _))) => {
            let op = Op::Patch {
                kind: parent,
                key: EntityRef::Id(id),
                body: body.take().unwrap_or_else(|| json!({})).to_string(),
            };
            let applied = write(ctx, op, request_id).await?;
            Ok(render(ctx, &applied, StatusCode::OK))
        }
        (Method::PUT, Some((id, _))) => {
            let op = Op::Upsert {
                kind: parent,
                key: EntityRef::Id(id),
                body: body.take().unwrap_or_else(|| json!({})).to_string(),
            };
            let applied = write(ctx, op, request_id).await?;
            Ok(render(ctx, &applied, StatusCode::OK))
        }
        (Method::PUT, None) => {
            let mut body = body.take().unwrap_or_else(|| json!({}));
            // Kong upserts under a fresh id, whatever id the body names.
            if let Value::Object(obj) = &mut body {
                obj.remove("id");
            }
            let op = Op::Create {
                kind: parent,
                body: body.to_string(),
            };
            let created = write(ctx, op, request_id).await?;
            let Some((_, new_id)) = created.entity else {
                return Err(Reply::not_found());
            };
            let mut link = json!({});
            set_field(&mut link, field, new_id);
            let op = Op::Patch {
                kind,
                key: EntityRef::Id(child),
                body: link.to_string(),
            };
            // A retry of the pair must replay both writes, so the second id is derived.
            let link_id = request_id.map(|r| Uuid::new_v5(&r, b"tidegate/admin/associate"));
            write(ctx, op, link_id).await?;
            Ok(render(ctx, &created, StatusCode::OK))
        }
        _ => Err(Reply::not_found()),
    }
}

/// Proposes `op`; a rejection becomes Kong's error body, an undecided write a 5xx.
async fn write<B: Backend>(
    ctx: &Ctx<B>,
    op: Op,
    request_id: Option<Uuid>,
) -> Result<Applied, Reply> {
    match ctx.backend.write(op, request_id).await {
        Ok(WriteOk {
            outcome: Ok(applied),
        }) => Ok(applied),
        Ok(WriteOk { outcome: Err(e) }) => Err(Reply::kong(&e)),
        Err(e) => Err(Reply::write_error(&e)),
    }
}

/// The entity a write produced, as it is now; 204 for writes that produce none (delete).
fn render<B: Backend>(ctx: &Ctx<B>, applied: &Applied, status: StatusCode) -> Reply {
    let Some((kind, id)) = applied.entity else {
        return Reply::no_content();
    };
    // A later write may have deleted it already; the write did apply, so say which entity.
    let body = ctx
        .backend
        .read(|m| m.config.get(kind, id).map(Entity::to_json))
        .unwrap_or_else(|| json!({ "id": id }));
    Reply::json(status, body)
}

/// A URL segment as Kong reads it: a UUID is an id, anything else the endpoint key.
pub(super) fn resolve<'a>(
    config: &'a ConfigState,
    kind: EntityKind,
    segment: &str,
) -> Option<&'a Entity> {
    match EntityRef::parse(segment) {
        EntityRef::Id(id) => config.get(kind, id),
        EntityRef::Key(k) => config
            .find_by_key(kind, &k)
            .and_then(|id| config.get(kind, id)),
    }
}

/// The value of `entity`'s foreign key `field`.
fn foreign_key(entity: &Entity, field: &str) -> Option<Uuid> {
    entity
        .kind()
        .relations()
        .iter()
        .zip(entity.foreign_keys())
        .find(|(r, _)| r.field == field)
        .and_then(|(_, fk)| fk)
}

/// Sets `field` to `{"id": id}` in an object body; other bodies are left for the
/// schema to refuse.
fn set_field(body: &mut Value, field: &str, id: Uuid) {
    if let Value::Object(obj) = body {
        obj.insert(field.to_string(), json!({ "id": id }));
    }
}
