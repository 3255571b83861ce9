//! Entity endpoints, after Kong's `kong/api/endpoints.lua`: lists, create, and
//! get/put/patch/delete at top level, nested under a parent, and through a foreign key.
//!
//! Reads come from this node's applied state; every change is one `Op` through
//! `Backend::write` (a certificate with its SNIs is one `Op::Batch`), and its answer is
//! read back from the state the write produced.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tidegate_model::entities::normalize_target;
use tidegate_model::{Entity, EntityKind};
use tidegate_state::{Applied, ConfigState, EntityRef, Op};
use uuid::Uuid;

use super::certificates;
use super::coerce;
use super::pagination::PageParams;
use super::reply::{Handled, Reply};
use super::request::{AdminRequest, Body, Query};
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

/// What a write does with its body.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Write {
    Create,
    Upsert(EntityRef),
    Patch(EntityRef),
}

impl Write {
    pub fn op(&self, kind: EntityKind, body: &Value) -> Op {
        let body = body.to_string();
        match self {
            Write::Create => Op::Create { kind, body },
            Write::Upsert(key) => Op::Upsert {
                kind,
                key: key.clone(),
                body,
            },
            Write::Patch(key) => Op::Patch {
                kind,
                key: key.clone(),
                body,
            },
        }
    }
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
        let render = |e: &Entity| entity_json(config, e);
        // Kong looks the parent up before it reads any list argument.
        let Some(scope) = scope else {
            let params = params.as_ref().map_err(Reply::kong)?;
            return Ok(params.page(config.iter_kind(kind), render));
        };
        let parent = resolve(config, scope.parent, scope.parent_key)
            .ok_or_else(Reply::not_found)?
            .id();
        let params = params.as_ref().map_err(Reply::kong)?;
        Ok(params.page(children(config, kind, scope, parent), render))
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
    let mut body = read_body(req, kind, None).await?;
    let request_id = req.request_id()?;
    if let Some(scope) = scope {
        let parent = ctx
            .backend
            .read(|m| resolve(&m.config, scope.parent, scope.parent_key).map(Entity::id))
            .ok_or_else(Reply::not_found)?;
        set_field(&mut body, scope.field, parent);
    }
    let op = build_op(ctx, kind, Write::Create, body, request_id)?;
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
    let mut key = EntityRef::parse(key);
    // Kong's `/certificates/{sni name}` stands for the certificate the SNI belongs to.
    let mut new_sni = None;
    if let (EntityKind::Certificate, EntityRef::Key(name)) = (kind, &key) {
        match ctx.backend.read(|m| certificates::by_sni(&m.config, name)) {
            Some(id) => key = EntityRef::Id(id),
            None if method == Method::PUT => new_sni = Some(name.clone()),
            None => return Err(Reply::message(StatusCode::NOT_FOUND, "SNI not found")),
        }
    }
    let write_kind = match method {
        Method::GET => {
            return ctx
                .backend
                .read(|m| resolve_ref(&m.config, kind, &key).map(|e| entity_json(&m.config, e)))
                .map(Reply::ok)
                .ok_or_else(Reply::not_found);
        }
        Method::DELETE => {
            let op = Op::Delete { kind, key };
            let applied = write(ctx, op, req.request_id()?).await?;
            return Ok(render(ctx, &applied, StatusCode::OK));
        }
        Method::PUT => Write::Upsert(key.clone()),
        _ => Write::Patch(key.clone()),
    };
    let base = match write_kind {
        Write::Patch(_) => ctx
            .backend
            .read(|m| resolve_ref(&m.config, kind, &key).map(Entity::to_json)),
        _ => None,
    };
    let mut body = read_body(req, kind, base.as_ref()).await?;
    let write_kind = match new_sni {
        Some(name) => {
            certificates::add_sni(&mut body, &name);
            Write::Create
        }
        None => write_kind,
    };
    let request_id = req.request_id()?;
    let op = build_op(ctx, kind, write_kind, body, request_id)?;
    let applied = write(ctx, op, request_id).await?;
    Ok(render(ctx, &applied, StatusCode::OK))
}

/// `/{parent}/{p}/{e}/{x}`: the child must exist and belong to the parent, except for
/// PUT, which (as in Kong) upserts the child under the parent whatever it pointed at.
/// A non-UUID `x` is the child's endpoint key among the parent's children (an ACL's
/// group, a target's `host:port`), as Kong looks them up.
pub(super) async fn nested_entity<B: Backend>(
    ctx: &Ctx<B>,
    req: &mut AdminRequest,
    method: Method,
    scope: Scope<'_>,
    kind: EntityKind,
    key: &str,
) -> Handled {
    let found = ctx.backend.read(|m| {
        let config = &m.config;
        let parent = resolve(config, scope.parent, scope.parent_key)?.id();
        let child = scoped_child(config, kind, key, scope, parent);
        Some((
            parent,
            child.map(|c| (c.id(), c.to_json(), entity_json(config, c))),
        ))
    });
    let Some((parent, child)) = found else {
        return Err(Reply::not_found());
    };
    if method == Method::PUT {
        let mut body = read_body(req, kind, None).await?;
        set_field(&mut body, scope.field, parent);
        let key = match &child {
            Some((id, _, _)) => {
                // The URL names it by its key: that key wins over the body's.
                if let (EntityRef::Key(k), Some(field), Value::Object(obj)) =
                    (EntityRef::parse(key), kind.endpoint_key(), &mut body)
                {
                    obj.insert(field.to_string(), Value::String(k));
                }
                EntityRef::Id(*id)
            }
            None => EntityRef::parse(key),
        };
        let request_id = req.request_id()?;
        let op = build_op(ctx, kind, Write::Upsert(key), body, request_id)?;
        let applied = write(ctx, op, request_id).await?;
        return Ok(render(ctx, &applied, StatusCode::OK));
    }
    let (child, stored, shown) = child.ok_or_else(Reply::not_found)?;
    let op = match method {
        Method::GET => return Ok(Reply::ok(shown)),
        Method::PATCH => {
            let mut body = read_body(req, kind, Some(&stored)).await?;
            // Kong keeps a foreign key the body names (even `null`), else pins the parent.
            if let Value::Object(obj) = &mut body {
                if !obj.contains_key(scope.field) {
                    set_field(&mut body, scope.field, parent);
                }
            }
            let request_id = req.request_id()?;
            build_op(
                ctx,
                kind,
                Write::Patch(EntityRef::Id(child)),
                body,
                request_id,
            )?
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
    let (child, target) = ctx
        .backend
        .read(|m| {
            let child = resolve(&m.config, kind, key)?;
            let target = foreign_key(child, field);
            let found = target.and_then(|id| m.config.get(parent, id));
            let json = found.map(|p| (p.to_json(), entity_json(&m.config, p)));
            Some((child.id(), target.map(|id| (id, json))))
        })
        .ok_or_else(Reply::not_found)?;
    let mut body = match method {
        Method::PUT | Method::PATCH => {
            let base = match (&method, &target) {
                (&Method::PATCH, Some((_, Some((stored, _))))) => Some(stored.clone()),
                _ => None,
            };
            Some(read_body(req, parent, base.as_ref()).await?)
        }
        _ => None,
    };
    let request_id = match method {
        Method::GET | Method::DELETE => None,
        _ => req.request_id()?,
    };
    match (method, target) {
        (Method::GET, Some((_, Some((_, shown))))) => Ok(Reply::ok(shown)),
        (Method::DELETE, Some(_)) => Err(Reply::method_not_allowed()),
        (Method::PATCH, Some((id, _))) => {
            let body = body.take().unwrap_or_else(|| json!({}));
            let op = build_op(
                ctx,
                parent,
                Write::Patch(EntityRef::Id(id)),
                body,
                request_id,
            )?;
            let applied = write(ctx, op, request_id).await?;
            Ok(render(ctx, &applied, StatusCode::OK))
        }
        (Method::PUT, Some((id, _))) => {
            let body = body.take().unwrap_or_else(|| json!({}));
            let op = build_op(
                ctx,
                parent,
                Write::Upsert(EntityRef::Id(id)),
                body,
                request_id,
            )?;
            let applied = write(ctx, op, request_id).await?;
            Ok(render(ctx, &applied, StatusCode::OK))
        }
        (Method::PUT, None) => {
            let mut body = body.take().unwrap_or_else(|| json!({}));
            // Kong upserts under a fresh id, whatever id the body names.
            if let Value::Object(obj) = &mut body {
                obj.remove("id");
            }
            let op = build_op(ctx, parent, Write::Create, body, request_id)?;
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

/// The request body for an entity of `kind`: JSON as sent, a form coerced to the types
/// the schema expects (judged against `base` for a PATCH).
pub(super) async fn read_body(
    req: &mut AdminRequest,
    kind: EntityKind,
    base: Option<&Value>,
) -> Result<Value, Reply> {
    match req.body().await? {
        Body::Json(v) => Ok(v),
        Body::Form(mut v) => {
            coerce::coerce(kind, &mut v, base);
            Ok(v)
        }
    }
}

/// The `Op` for a write; a certificate whose body lists `snis` becomes a batch that
/// writes its SNI rows with it.
fn build_op<B: Backend>(
    ctx: &Ctx<B>,
    kind: EntityKind,
    write: Write,
    body: Value,
    request_id: Option<Uuid>,
) -> Result<Op, Reply> {
    if kind == EntityKind::Certificate {
        return certificates::op(ctx, write, body, request_id);
    }
    if kind == EntityKind::Plugin {
        if let Some(name) = body.get("name").and_then(Value::as_str) {
            super::info::check_enabled(ctx, name)?;
        }
    }
    Ok(write.op(kind, &body))
}

/// Proposes `op`; a rejection becomes Kong's error body, an undecided write a 5xx.
pub(super) async fn write<B: Backend>(
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
        .read(|m| m.config.get(kind, id).map(|e| entity_json(&m.config, e)))
        .unwrap_or_else(|| json!({ "id": id }));
    Reply::json(status, body)
}

/// An entity as the Admin API shows it: Kong's JSON, plus a certificate's `snis`.
pub(super) fn entity_json(config: &ConfigState, e: &Entity) -> Value {
    let mut v = e.to_json();
    if e.kind() == EntityKind::Certificate {
        if let Value::Object(obj) = &mut v {
            obj.insert(
                "snis".into(),
                json!(certificates::sni_names(config, e.id())),
            );
        }
    }
    v
}

/// A URL segment as Kong reads it: a UUID is an id, anything else the endpoint key (for
/// certificates, the name of one of their SNIs).
pub(super) fn resolve<'a>(
    config: &'a ConfigState,
    kind: EntityKind,
    segment: &str,
) -> Option<&'a Entity> {
    resolve_ref(config, kind, &EntityRef::parse(segment))
}

fn resolve_ref<'a>(
    config: &'a ConfigState,
    kind: EntityKind,
    key: &EntityRef,
) -> Option<&'a Entity> {
    match key {
        EntityRef::Key(k) if kind == EntityKind::Certificate => {
            certificates::by_sni(config, k).and_then(|id| config.get(kind, id))
        }
        _ => tidegate_state::resolve(config, kind, key),
    }
}

/// The children of `kind` that hang off `parent` through the scope's field.
fn children<'a>(
    config: &'a ConfigState,
    kind: EntityKind,
    scope: Scope<'_>,
    parent: Uuid,
) -> impl Iterator<Item = &'a Entity> + 'a {
    let field = scope.field;
    config
        .children_of(scope.parent, parent)
        .filter(move |(k, _)| *k == kind)
        .filter_map(|(k, id)| config.get(k, id))
        .filter(move |e| foreign_key(e, field) == Some(parent))
}

/// `x` in `/{parent}/{p}/{e}/{x}`: by id, or by endpoint key among the parent's children.
fn scoped_child<'a>(
    config: &'a ConfigState,
    kind: EntityKind,
    key: &str,
    scope: Scope<'_>,
    parent: Uuid,
) -> Option<&'a Entity> {
    match EntityRef::parse(key) {
        EntityRef::Id(id) => config
            .get(kind, id)
            .filter(|e| foreign_key(e, scope.field) == Some(parent)),
        EntityRef::Key(k) => {
            // Kong stores targets normalised (`a` is `a:8000`); either form finds one.
            let normalized = (kind == EntityKind::Target)
                .then(|| normalize_target(&k).ok())
                .flatten();
            children(config, kind, scope, parent).find(|e| {
                let ek = e.endpoint_key();
                ek.as_deref() == Some(k.as_str()) || (normalized.is_some() && ek == normalized)
            })
        }
    }
}

/// The value of `entity`'s foreign key `field`.
pub(super) fn foreign_key(entity: &Entity, field: &str) -> Option<Uuid> {
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
