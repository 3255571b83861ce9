//! The [`Entity`] enum over every kind, and the context an input is read in: the values
//! fixed by the proposing node (id, time, entropy) and a lookup of existing entities for
//! foreign keys given by name.
//!
//! Reading is deterministic: given the same input, context and lookup, every node builds
//! the same entity. That is what lets the state machine validate inside Raft's `apply`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entities::{
    Acl, BasicauthCredential, CaCertificate, Certificate, Consumer, KeyauthCredential, Plugin,
    Route, Service, Sni, Target, Upstream,
};
use crate::error::{Errors, FieldError, KongError};
use crate::input::{parse_uuid, Reader};
use crate::kind::EntityKind;
use crate::typedefs;

/// A foreign key as Kong shows it: `{"id": "…"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fk {
    pub id: Uuid,
}

/// Finds existing entities, for foreign keys and for lookups by endpoint key.
pub trait Lookup {
    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<Uuid>;
    fn exists(&self, kind: EntityKind, id: Uuid) -> bool;
}

/// A lookup that knows nothing: every reference fails.
pub struct NoLookup;

impl Lookup for NoLookup {
    fn find_by_key(&self, _: EntityKind, _: &str) -> Option<Uuid> {
        None
    }
    fn exists(&self, _: EntityKind, _: Uuid) -> bool {
        false
    }
}

/// The values an input does not carry and the proposing node fixes once, so that every
/// replica builds the same entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixed {
    /// The id of a new entity when the input names none.
    pub id: Uuid,
    /// Unix seconds: `created_at` of new entities, `updated_at` of changed ones, and the
    /// time certificates are checked against.
    pub now: i64,
    /// Randomness for generated secrets (e.g. a key-auth key when none is given).
    pub entropy: u128,
}

pub struct Ctx<'a> {
    pub fixed: Fixed,
    pub lookup: &'a dyn Lookup,
    /// When set, the id in the input is ignored and this one is used (PUT: the URL wins).
    pub force_id: Option<Uuid>,
    /// Kong's `_transform`: when false, values arrive already transformed (hashed
    /// basic-auth passwords in an exported file).
    pub transform: bool,
}

/// A foreign key that has not been checked against the lookup yet.
#[derive(Debug, Clone)]
enum PendingFk {
    ById {
        field: &'static str,
        parent: EntityKind,
        id: Uuid,
    },
    Unresolved {
        field: &'static str,
        parent: EntityKind,
        key_name: &'static str,
        value: String,
    },
}

/// State threaded through the reading of one entity.
pub struct Cx<'c, 'l> {
    pub ctx: &'c Ctx<'l>,
    pending: Vec<PendingFk>,
}

// === impl Cx ===

impl<'c, 'l> Cx<'c, 'l> {
    pub fn new(ctx: &'c Ctx<'l>) -> Self {
        Cx {
            ctx,
            pending: Vec::new(),
        }
    }

    pub fn now(&self) -> i64 {
        self.ctx.fixed.now
    }

    /// The entity's id: the forced one, the input's, or the fixed one.
    pub fn id<'a>(&self, r: &mut Reader<'a>) -> Uuid {
        let given = r.uuid("id");
        self.ctx.force_id.or(given).unwrap_or(self.ctx.fixed.id)
    }

    pub fn created_at<'a>(&self, r: &mut Reader<'a>) -> i64 {
        r.int_between("created_at", 0, crate::input::MAX_SAFE_INT)
            .unwrap_or(self.ctx.fixed.now)
    }

    pub fn updated_at<'a>(&self, r: &mut Reader<'a>) -> i64 {
        r.int_between("updated_at", 0, crate::input::MAX_SAFE_INT)
            .unwrap_or(self.ctx.fixed.now)
    }

    pub fn tags<'a>(&self, r: &mut Reader<'a>) -> Option<Vec<String>> {
        let tags = r.strings("tags", true, typedefs::tag)?;
        if tags.len() > typedefs::MAX_TAGS {
            r.error(
                "tags",
                format!("length must be at most {}", typedefs::MAX_TAGS),
            );
            return None;
        }
        Some(tags)
    }

    /// A foreign key: `{"id": "…"}` or `{"<endpoint key>": "…"}`; checked against the
    /// lookup once the schema itself is valid.
    pub fn foreign<'a>(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
        parent: EntityKind,
    ) -> Option<Fk> {
        let v = r.raw(field)?;
        let Value::Object(obj) = v else {
            r.error(field, "expected a record");
            return None;
        };
        let key_name = parent.endpoint_key();
        let mut errs = Errors::default();
        let mut result = None;
        for (k, val) in obj {
            if k == "id" {
                match val.as_str().map(parse_uuid) {
                    Some(Ok(id)) => result = Some(Ok(id)),
                    Some(Err(m)) => errs.field("id", m),
                    None if val.is_null() => {}
                    None => errs.field("id", "expected a string"),
                }
            } else if Some(k.as_str()) == key_name {
                match val.as_str() {
                    Some(s) if !s.is_empty() => {
                        if result.is_none() {
                            result = Some(Err(s.to_string()));
                        }
                    }
                    Some(_) => errs.field(k.clone(), "length must be at least 1"),
                    None if val.is_null() => {}
                    None => errs.field(k.clone(), "expected a string"),
                }
            } else {
                errs.field(k.clone(), "unknown field");
            }
        }
        if !errs.is_empty() {
            r.nested_error(field, FieldError::Record(errs));
            return None;
        }
        match result {
            Some(Ok(id)) => {
                self.pending.push(PendingFk::ById { field, parent, id });
                Some(Fk { id })
            }
            Some(Err(value)) => match self.ctx.lookup.find_by_key(parent, &value) {
                Some(id) => Some(Fk { id }),
                None => {
                    self.pending.push(PendingFk::Unresolved {
                        field,
                        parent,
                        key_name: key_name.expect("matched an endpoint key above"),
                        value,
                    });
                    // A placeholder so the schema pass can go on; the entity is rejected
                    // below before anyone sees it.
                    Some(Fk { id: Uuid::nil() })
                }
            },
            None => {
                r.nested_error(field, FieldError::msg("required field missing"));
                None
            }
        }
    }

    /// Schema errors first (code 2), then names that resolve to nothing (code 13), then
    /// ids that reference nothing (code 4) — the order Kong reports them in.
    pub fn finish<T>(self, r: Reader<'_>, value: T) -> Result<T, KongError> {
        if let Err(errs) = r.finish() {
            return Err(KongError::schema_violation(&errs));
        }
        for p in &self.pending {
            if let PendingFk::Unresolved {
                field,
                parent,
                key_name,
                value,
            } = p
            {
                return Err(KongError::foreign_key_unresolved(
                    field,
                    key_name,
                    value,
                    parent.table(),
                ));
            }
        }
        for p in &self.pending {
            if let PendingFk::ById { field, parent, id } = p {
                if !self.ctx.lookup.exists(*parent, *id) {
                    return Err(KongError::foreign_key_violation(
                        field,
                        &id.to_string(),
                        parent.table(),
                    ));
                }
            }
        }
        Ok(value)
    }
}

/// Any entity. The variant order is part of the postcard encoding: append only. Boxed
/// so that an `Entity` is a pointer wide whatever the largest kind (`Box` is transparent
/// to serde: the encoding is the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entity {
    Certificate(Box<Certificate>),
    CaCertificate(Box<CaCertificate>),
    Service(Box<Service>),
    Route(Box<Route>),
    Consumer(Box<Consumer>),
    Upstream(Box<Upstream>),
    Target(Box<Target>),
    Sni(Box<Sni>),
    Plugin(Box<Plugin>),
    KeyauthCredential(Box<KeyauthCredential>),
    BasicauthCredential(Box<BasicauthCredential>),
    Acl(Box<Acl>),
}

macro_rules! each_entity {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            Entity::Certificate(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::CaCertificate(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Service(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Route(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Consumer(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Upstream(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Target(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Sni(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Plugin(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::KeyauthCredential(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::BasicauthCredential(boxed) => {
                let $e = &**boxed;
                $body
            }
            Entity::Acl(boxed) => {
                let $e = &**boxed;
                $body
            }
        }
    };
}

/// The accessors every entity struct has in the same shape (`id`, `created_at`, `tags`
/// fields), for use inside an `impl EntityKindImpl`.
macro_rules! entity_fields {
    () => {
        fn id(&self) -> uuid::Uuid {
            self.id
        }
        fn created_at(&self) -> i64 {
            self.created_at
        }
        fn tags(&self) -> Option<&[String]> {
            self.tags.as_deref()
        }
    };
}
pub(crate) use entity_fields;

/// What every entity kind provides.
pub trait EntityKindImpl: Sized {
    const KIND: EntityKind;
    fn id(&self) -> Uuid;
    fn created_at(&self) -> i64;
    /// Reads and validates an input object.
    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self;
    /// The value of each foreign key, in the order of [`EntityKind::relations`].
    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        Vec::new()
    }
    /// Unique keys other than the id: (index name, key). Two entities of a kind may not
    /// share a key under the same index name.
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The value of the endpoint key, when set.
    fn endpoint_key(&self) -> Option<String> {
        None
    }
    fn tags(&self) -> Option<&[String]> {
        None
    }
}

// === impl Entity ===

impl Entity {
    /// Reads `v` as an entity of `kind` and checks its foreign keys against the lookup.
    pub fn from_json(kind: EntityKind, v: &Value, ctx: &Ctx<'_>) -> Result<Entity, KongError> {
        fn read<T: EntityKindImpl>(v: &Value, ctx: &Ctx<'_>) -> Result<T, KongError> {
            let mut r = match Reader::new(v) {
                Ok(r) => r,
                Err(_) => {
                    let mut e = Errors::default();
                    e.entity("expected a record");
                    return Err(KongError::schema_violation(&e));
                }
            };
            let mut cx = Cx::new(ctx);
            let t = T::read(&mut r, &mut cx);
            cx.finish(r, t)
        }
        Ok(match kind {
            EntityKind::Certificate => Entity::Certificate(Box::new(read(v, ctx)?)),
            EntityKind::CaCertificate => Entity::CaCertificate(Box::new(read(v, ctx)?)),
            EntityKind::Service => Entity::Service(Box::new(read(v, ctx)?)),
            EntityKind::Route => Entity::Route(Box::new(read(v, ctx)?)),
            EntityKind::Consumer => Entity::Consumer(Box::new(read(v, ctx)?)),
            EntityKind::Upstream => Entity::Upstream(Box::new(read(v, ctx)?)),
            EntityKind::Target => Entity::Target(Box::new(read(v, ctx)?)),
            EntityKind::Sni => Entity::Sni(Box::new(read(v, ctx)?)),
            EntityKind::Plugin => Entity::Plugin(Box::new(read(v, ctx)?)),
            EntityKind::KeyauthCredential => Entity::KeyauthCredential(Box::new(read(v, ctx)?)),
            EntityKind::BasicauthCredential => Entity::BasicauthCredential(Box::new(read(v, ctx)?)),
            EntityKind::Acl => Entity::Acl(Box::new(read(v, ctx)?)),
        })
    }

    pub fn kind(&self) -> EntityKind {
        fn k<T: EntityKindImpl>(_: &T) -> EntityKind {
            T::KIND
        }
        each_entity!(self, e => k(e))
    }

    pub fn id(&self) -> Uuid {
        each_entity!(self, e => e.id())
    }

    pub fn created_at(&self) -> i64 {
        each_entity!(self, e => e.created_at())
    }

    pub fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        each_entity!(self, e => e.foreign_keys())
    }

    pub fn unique_keys(&self) -> Vec<(&'static str, String)> {
        each_entity!(self, e => e.unique_keys())
    }

    pub fn endpoint_key(&self) -> Option<String> {
        each_entity!(self, e => e.endpoint_key())
    }

    pub fn tags(&self) -> Option<&[String]> {
        each_entity!(self, e => e.tags())
    }

    /// The entity in Kong's JSON shape: every field present, unset ones `null`.
    pub fn to_json(&self) -> Value {
        each_entity!(self, e => serde_json::to_value(e).expect("entities serialise to JSON"))
    }
}
