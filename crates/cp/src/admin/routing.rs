//! Which handler answers a path and method. Paths follow Kong's generated endpoints:
//! `/{e}`, `/{e}/{x}`, `/{parent}/{p}/{e}`, `/{parent}/{p}/{e}/{x}` and `/{e}/{x}/{fk}`,
//! derived from the relations declared in `tidegate_model::kind`, with Kong's URL names
//! for credentials (`/key-auths`, `/consumers/{c}/key-auth`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use tidegate_model::EntityKind;
use tracing::{debug, Instrument};

use super::entities::{self, Scope};
use super::reply::{Handled, Reply};
use super::request::AdminRequest;
use super::{cluster, config, info, schemas, tags};
use crate::backend::Backend;

/// What every request handler shares.
pub(super) struct Ctx<B> {
    pub backend: Arc<B>,
    pub counters: Counters,
    server: HeaderValue,
}

/// Server counters for `GET /status`, as far as we can count them honestly.
#[derive(Debug, Default)]
pub(super) struct Counters {
    accepted: AtomicU64,
    closed: AtomicU64,
    requests: AtomicU64,
}

/// A path the Admin API knows, with its URL segments (percent-decoded).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    Root,
    Status,
    Endpoints,
    PluginsEnabled,
    /// `/schemas/{entity}`
    Schema(String),
    /// `/schemas/plugins/{name}`
    PluginSchema(String),
    /// `/schemas/{entity}/validate`
    SchemaValidate(String),
    /// `/schemas/plugins/validate`
    PluginSchemaValidate,
    Tags,
    Tag(String),
    Config,
    ControlPlanes,
    ControlPlane(String),
    DataPlanes,
    /// `/upstreams/{u}/health`
    UpstreamHealth(String),
    /// `/services`
    Collection(EntityKind),
    /// `/services/{x}`
    Entity(EntityKind, String),
    /// `/services/{s}/routes`
    NestedCollection {
        parent: EntityKind,
        parent_key: String,
        kind: EntityKind,
        field: &'static str,
    },
    /// `/services/{s}/routes/{r}`
    NestedEntity {
        parent: EntityKind,
        parent_key: String,
        kind: EntityKind,
        key: String,
        field: &'static str,
    },
    /// `/routes/{r}/service`
    ForeignEntity {
        kind: EntityKind,
        key: String,
        field: &'static str,
        parent: EntityKind,
    },
}

// === impl Ctx ===

impl<B: Backend> Ctx<B> {
    pub fn new(backend: Arc<B>) -> Self {
        let version = backend.node_info().tidegate_version;
        let server = HeaderValue::from_str(&format!("tidegate/{version}"))
            .unwrap_or_else(|_| HeaderValue::from_static("tidegate"));
        Ctx {
            backend,
            counters: Counters::default(),
            server,
        }
    }
}

// === impl Counters ===

impl Counters {
    pub fn connection_opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// (accepted, active, total requests)
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let closed = self.closed.load(Ordering::Relaxed);
        (
            accepted,
            accepted.saturating_sub(closed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

// === impl Target ===

impl Target {
    pub fn parse(segments: &[String]) -> Option<Target> {
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match seg.as_slice() {
            [] => Target::Root,
            ["status"] => Target::Status,
            ["endpoints"] => Target::Endpoints,
            ["config"] => Target::Config,
            ["tags"] => Target::Tags,
            ["tags", t] => Target::Tag(t.to_string()),
            ["plugins", "enabled"] => Target::PluginsEnabled,
            ["schemas", "plugins", "validate"] => Target::PluginSchemaValidate,
            ["schemas", "plugins", name] => Target::PluginSchema(name.to_string()),
            ["schemas", e] => Target::Schema(e.to_string()),
            ["schemas", e, "validate"] => Target::SchemaValidate(e.to_string()),
            ["clustering", "control-planes"] => Target::ControlPlanes,
            ["clustering", "data-planes"] => Target::DataPlanes,
            ["clustering", "control-planes", id] => Target::ControlPlane(id.to_string()),
            ["upstreams", u, "health"] => Target::UpstreamHealth(u.to_string()),
            [e] => Target::Collection(top_level(e)?),
            [e, x] => Target::Entity(top_level(e)?, x.to_string()),
            [e, x, sub] => {
                let kind = top_level(e)?;
                if let Some((child, field)) = child_of(kind, sub) {
                    Target::NestedCollection {
                        parent: kind,
                        parent_key: x.to_string(),
                        kind: child,
                        field,
                    }
                } else {
                    let rel = kind.relations().iter().find(|r| r.field == *sub)?;
                    Target::ForeignEntity {
                        kind,
                        key: x.to_string(),
                        field: rel.field,
                        parent: rel.parent,
                    }
                }
            }
            [e, p, sub, x] => {
                let parent = top_level(e)?;
                let (kind, field) = child_of(parent, sub)?;
                Target::NestedEntity {
                    parent,
                    parent_key: p.to_string(),
                    kind,
                    key: x.to_string(),
                    field,
                }
            }
            _ => return None,
        })
    }
}

/// A kind's top-level URL name (Kong's `admin_api_name`); `None` for targets, which
/// Kong serves only under their upstream.
pub(super) fn top_level_name(kind: EntityKind) -> Option<&'static str> {
    match kind {
        EntityKind::Target => None,
        EntityKind::KeyauthCredential => Some("key-auths"),
        EntityKind::BasicauthCredential => Some("basic-auths"),
        k => Some(k.table()),
    }
}

/// A kind's URL name under its parent (Kong's `admin_api_nested_name`).
pub(super) fn nested_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::KeyauthCredential => "key-auth",
        EntityKind::BasicauthCredential => "basic-auth",
        k => k.table(),
    }
}

/// The kind whose top-level URL name is `name`.
fn top_level(name: &str) -> Option<EntityKind> {
    EntityKind::ALL
        .into_iter()
        .find(|k| top_level_name(*k) == Some(name))
}

/// The kind nested under `parent` as `name`, and its foreign-key field.
fn child_of(parent: EntityKind, name: &str) -> Option<(EntityKind, &'static str)> {
    parent
        .children()
        .find(|(child, _)| nested_name(*child) == name)
        .map(|(child, rel)| (child, rel.field))
}

/// Every path served, Kong-style (`/services/{services}`), for `GET /endpoints`.
pub(super) fn endpoints() -> Vec<String> {
    let mut out: Vec<String> = [
        "/",
        "/status",
        "/endpoints",
        "/config",
        "/tags",
        "/tags/{tags}",
        "/plugins/enabled",
        "/schemas/{name}",
        "/schemas/{db_entity_name}/validate",
        "/schemas/plugins/{name}",
        "/schemas/plugins/validate",
        "/clustering/control-planes",
        "/clustering/control-planes/{id}",
        "/clustering/data-planes",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    for kind in EntityKind::ALL {
        let t = kind.table();
        if let Some(name) = top_level_name(kind) {
            out.push(format!("/{name}"));
            out.push(format!("/{name}/{{{t}}}"));
            for rel in kind.relations() {
                out.push(format!("/{name}/{{{t}}}/{}", rel.field));
            }
        }
        for (child, _) in kind.children() {
            let (Some(name), c) = (top_level_name(kind), child.table()) else {
                continue;
            };
            let nested = nested_name(child);
            out.push(format!("/{name}/{{{t}}}/{nested}"));
            out.push(format!("/{name}/{{{t}}}/{nested}/{{{c}}}"));
        }
    }
    // Kong sorts with `/` below every other character, so segments sort as a whole.
    out.sort_by_key(|p| p.replace('/', "\0"));
    out.dedup();
    out
}

/// Answers one request. Never fails: every error is a response.
pub(super) async fn handle<B: Backend>(
    req: Request<Incoming>,
    ctx: &Ctx<B>,
) -> Response<Full<Bytes>> {
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    let span =
        tracing::debug_span!("admin_request", method = %req.method(), path = %req.uri().path());
    async move {
        let mut req = AdminRequest::new(req);
        let reply = dispatch(&mut req, ctx).await.unwrap_or_else(|r| r);
        debug!(status = reply.status.as_u16(), "answered");
        reply.into_response(&ctx.server)
    }
    .instrument(span)
    .await
}

async fn dispatch<B: Backend>(req: &mut AdminRequest, ctx: &Ctx<B>) -> Handled {
    let target = req
        .segments
        .as_deref()
        .and_then(Target::parse)
        .ok_or_else(Reply::not_found)?;
    let method = req.method.clone();
    let raw = req.raw_segments.clone();
    match (target, method) {
        (Target::Root, Method::GET) => Ok(info::root(ctx)),
        (Target::Status, Method::GET) => Ok(info::status(ctx)),
        (Target::Endpoints, Method::GET) => Ok(info::endpoints()),
        (Target::PluginsEnabled, Method::GET) => Ok(info::plugins_enabled(ctx)),
        (Target::Schema(name), Method::GET) => schemas::entity(&name),
        (Target::PluginSchema(name), Method::GET) => schemas::plugin(&name),
        (Target::SchemaValidate(name), Method::POST) => schemas::validate(ctx, req, &name).await,
        (Target::PluginSchemaValidate, Method::POST) => {
            schemas::validate(ctx, req, "plugins").await
        }
        (Target::Tags, Method::GET) => tags::list(ctx, None, &req.query),
        (Target::Tag(tag), Method::GET) => {
            // The tag as the client sent it, as in Kong's `next`.
            tags::list(ctx, Some((&tag, &raw[1])), &req.query)
        }
        (Target::Config, Method::GET) => Ok(config::export(ctx)),
        (Target::Config, Method::POST) => config::import(ctx, req).await,
        (Target::ControlPlanes, Method::GET) => Ok(cluster::list(ctx).await),
        (Target::DataPlanes, Method::GET) => Ok(cluster::data_planes(ctx)),
        (Target::ControlPlanes, Method::POST) => cluster::add(ctx, req).await,
        (Target::ControlPlane(id), Method::DELETE) => cluster::remove(ctx, &id).await,
        (Target::UpstreamHealth(u), Method::GET) => {
            let exists = ctx
                .backend
                .read(|m| entities::resolve(&m.config, EntityKind::Upstream, &u).is_some());
            if !exists {
                return Ok(Reply::not_found());
            }
            // Target health is observed by data planes; until they report it there is
            // nothing true to say, so say that rather than guess.
            Ok(Reply::message(
                hyper::StatusCode::NOT_IMPLEMENTED,
                "upstream health is not supported yet: it is reported by data planes, which \
                 tidegate does not have yet (see the README)",
            ))
        }

        (Target::Collection(kind), Method::GET) => {
            let path = format!("/{}", raw[0]);
            entities::list(ctx, kind, None, &req.query, &path)
        }
        (Target::Collection(kind), Method::POST) => entities::create(ctx, req, kind, None).await,
        (Target::Entity(kind, key), m) if is_entity_method(&m) => {
            entities::entity(ctx, req, m, kind, &key).await
        }

        (
            Target::NestedCollection {
                parent,
                parent_key,
                kind,
                field,
            },
            m,
        ) if m == Method::GET || m == Method::POST => {
            let scope = Scope {
                parent,
                parent_key: &parent_key,
                field,
            };
            if m == Method::GET {
                // The parent key as the client sent it, as in Kong's `next`.
                let path = format!("/{}/{}/{}", raw[0], raw[1], raw[2]);
                entities::list(ctx, kind, Some(scope), &req.query, &path)
            } else {
                entities::create(ctx, req, kind, Some(scope)).await
            }
        }
        (
            Target::NestedEntity {
                parent,
                parent_key,
                kind,
                key,
                field,
            },
            m,
        ) if is_entity_method(&m) => {
            let scope = Scope {
                parent,
                parent_key: &parent_key,
                field,
            };
            entities::nested_entity(ctx, req, m, scope, kind, &key).await
        }
        (
            Target::ForeignEntity {
                kind,
                key,
                field,
                parent,
            },
            m,
        ) if is_entity_method(&m) => {
            entities::foreign_entity(ctx, req, m, kind, &key, field, parent).await
        }

        _ => Err(Reply::method_not_allowed()),
    }
}

fn is_entity_method(m: &Method) -> bool {
    [Method::GET, Method::PUT, Method::PATCH, Method::DELETE].contains(m)
}
