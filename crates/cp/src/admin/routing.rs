//! Which handler answers a path and method. Paths follow Kong's generated endpoints:
//! `/{e}`, `/{e}/{x}`, `/{parent}/{p}/{e}`, `/{parent}/{p}/{e}/{x}` and `/{e}/{x}/{fk}`,
//! derived from the relations declared in `tidegate_model::kind` for the kinds served.

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
use super::{cluster, info};
use crate::backend::Backend;

/// The entity kinds the Admin API serves so far. Paths of the other kinds answer 404.
pub(super) const SERVED: &[EntityKind] = &[EntityKind::Service, EntityKind::Route];

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
    ControlPlanes,
    ControlPlane(String),
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
            ["clustering", "control-planes"] => Target::ControlPlanes,
            ["clustering", "control-planes", id] => Target::ControlPlane(id.to_string()),
            [e] => Target::Collection(served(e)?),
            [e, x] => Target::Entity(served(e)?, x.to_string()),
            [e, x, sub] => {
                let kind = served(e)?;
                if let Some((child, field)) = child_of(kind, sub) {
                    Target::NestedCollection {
                        parent: kind,
                        parent_key: x.to_string(),
                        kind: child,
                        field,
                    }
                } else {
                    let rel = kind
                        .relations()
                        .iter()
                        .find(|r| r.field == *sub && SERVED.contains(&r.parent))?;
                    Target::ForeignEntity {
                        kind,
                        key: x.to_string(),
                        field: rel.field,
                        parent: rel.parent,
                    }
                }
            }
            [e, p, sub, x] => {
                let parent = served(e)?;
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

/// The served kind whose URL name is `name`.
fn served(name: &str) -> Option<EntityKind> {
    SERVED.iter().copied().find(|k| k.table() == name)
}

/// The served kind named `name` that references `parent`, and its foreign-key field.
fn child_of(parent: EntityKind, name: &str) -> Option<(EntityKind, &'static str)> {
    let child = served(name)?;
    let rel = child.relations().iter().find(|r| r.parent == parent)?;
    Some((child, rel.field))
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
        (Target::ControlPlanes, Method::GET) => Ok(cluster::list(ctx).await),
        (Target::ControlPlanes, Method::POST) => cluster::add(ctx, req).await,
        (Target::ControlPlane(id), Method::DELETE) => cluster::remove(ctx, &id).await,

        (Target::Collection(kind), Method::GET) => {
            let path = format!("/{}", kind.table());
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
                let path = format!("/{}/{}/{}", parent.table(), raw[1], kind.table());
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
