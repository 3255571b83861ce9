//! Kong's declarative config format: YAML or JSON, `_format_version` 3.0, 2.1 and 1.1,
//! nested and flat forms, references by name or id, deterministic UUIDv5 ids, errors that
//! mirror the file (code 14), and export back to a 3.0 file.
//!
//! Parsing goes in Kong's order: schema errors are reported alone; then duplicate keys and
//! dangling references together; then duplicates of other unique fields.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::{Ctx, Entity, Fixed, Lookup};
use crate::error::KongError;
use crate::kind::EntityKind;

mod locate;
mod migrate;

pub use locate::{locate, locate_fields, Located, Position};

/// The largest declarative file we read: 64 MiB, several times a 100k-entity config.
pub const MAX_DECLARATIVE_BYTES: usize = 64 << 20;
/// The deepest nesting of JSON/YAML we accept; Kong's own nesting is at most four deep.
const MAX_DEPTH: usize = 32;

/// Kong's namespace for declarative ids.
const NS_ROOT: Uuid = Uuid::from_u128(0xfd02801f_0957_4a15_a55a_c8d9606f30b5);

/// A parsed and validated declarative config.
#[derive(Debug, Clone, PartialEq)]
pub struct Declarative {
    /// Always "3.0" after parsing: older formats are migrated.
    pub format_version: String,
    pub transform: bool,
    /// Every entity, flat, in load order (parents' kinds first), then in the order Kong
    /// walks the file (nested items before top-level ones).
    pub entities: Vec<Entity>,
}

/// What parsing needs from outside: the load time (for entities that carry no
/// timestamps) and entropy (for key-auth keys the file leaves out).
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    pub now: i64,
    pub entropy: u128,
}

/// One step of a path into the file, for errors that mirror its structure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    /// 0-based position in an array.
    Idx(usize),
}

/// An entity as found in the file, before validation.
struct Item {
    kind: EntityKind,
    path: Vec<Seg>,
    /// The item's fields without nested children, `_comment` or `_ignore`.
    body: Map<String, Value>,
    id: Uuid,
    /// Set for nested items.
    parent: Option<Parent>,
}

/// Parses a YAML or JSON document into a JSON value, with Kong's messages on failure.
pub fn parse_document(text: &str) -> Result<Value, KongError> {
    if text.len() > MAX_DECLARATIVE_BYTES {
        return Err(top_error(format!(
            "failed parsing declarative configuration: file is larger than {} bytes",
            MAX_DECLARATIVE_BYTES
        )));
    }
    let failed = |e: &dyn std::fmt::Display| {
        top_error(format!("failed parsing declarative configuration: {e}"))
    };
    // JSON first, then YAML, as Kong tries them: `{a: 1}` is YAML, not JSON.
    let trimmed = text.trim_start();
    let json = (trimmed.starts_with('{') || trimmed.starts_with('['))
        .then(|| serde_json::from_str::<Value>(text));
    let value: Value = match json {
        Some(Ok(v)) => v,
        Some(Err(json_err)) => match serde_yaml::from_str(text) {
            Ok(v) => v,
            // The JSON parser's message says more about a file meant as JSON.
            Err(_) => return Err(failed(&json_err)),
        },
        None => serde_yaml::from_str(text).map_err(|e| failed(&e))?,
    };
    if depth(&value) > MAX_DEPTH {
        return Err(top_error(format!(
            "failed parsing declarative configuration: nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if !value.is_object() {
        return Err(top_error(
            "failed parsing declarative configuration: expected an object",
        ));
    }
    Ok(value)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn top_error(msg: impl Into<String>) -> KongError {
    let mut m = Map::new();
    m.insert("error".into(), Value::String(msg.into()));
    KongError::declarative(&Value::Object(m))
}

/// Parses a declarative file's text.
pub fn parse(text: &str, opts: ParseOptions) -> Result<Declarative, KongError> {
    parse_value(parse_document(text)?, opts)
}

/// How many entities of each kind a document holds, nested ones included, as the file
/// writes them (before any validation): cheap enough to report on a file that a CP is
/// about to check.
pub fn count_entities(doc: &Value) -> BTreeMap<EntityKind, usize> {
    fn list(kind: EntityKind, v: &Value, counts: &mut BTreeMap<EntityKind, usize>) {
        for obj in v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            *counts.entry(kind).or_default() += 1;
            for (k, val) in obj {
                let child = EntityKind::from_table(k)
                    .filter(|ck| ck.relations().iter().any(|r| r.parent == kind))
                    .filter(|_| !own_field(kind, k));
                if let Some(ck) = child {
                    list(ck, val, counts);
                }
            }
        }
    }
    let mut counts = BTreeMap::new();
    for (k, v) in doc.as_object().into_iter().flatten() {
        if let Some(kind) = EntityKind::from_table(k) {
            list(kind, v, &mut counts);
        }
    }
    counts
}

/// Kong's entity order (`schema_topological_sort` over the 3.x core and bundled plugin
/// entities). Top-level collections and nested children are walked in it whatever the
/// file's order, which decides which of two duplicates is the one reported.
const KONG_ORDER: [EntityKind; 12] = [
    EntityKind::CaCertificate,
    EntityKind::Certificate,
    EntityKind::Consumer,
    EntityKind::Service,
    EntityKind::Route,
    EntityKind::Plugin,
    EntityKind::Sni,
    EntityKind::Upstream,
    EntityKind::Target,
    EntityKind::Acl,
    EntityKind::BasicauthCredential,
    EntityKind::KeyauthCredential,
];

const META_KEYS: [&str; 4] = ["_format_version", "_transform", "_comment", "_ignore"];

/// Parses an already-decoded declarative document.
pub fn parse_value(mut doc: Value, opts: ParseOptions) -> Result<Declarative, KongError> {
    let Some(top) = doc.as_object_mut() else {
        return Err(top_error(
            "failed parsing declarative configuration: expected an object",
        ));
    };
    let mut errs = Value::Object(Map::new());

    // Meta keys.
    match top.get("_format_version") {
        None | Some(Value::Null) => set_err(
            &mut errs,
            &[key("_format_version")],
            "required field missing",
        ),
        Some(Value::String(v)) if ["1.1", "2.1", "3.0"].contains(&v.as_str()) => {}
        Some(Value::String(_)) => set_err(
            &mut errs,
            &[key("_format_version")],
            "expected one of: 1.1, 2.1, 3.0",
        ),
        Some(_) => set_err(&mut errs, &[key("_format_version")], "expected a string"),
    }
    let transform = match top.get("_transform") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            set_err(&mut errs, &[key("_transform")], "expected a boolean");
            true
        }
    };
    check_meta(top, &[], &mut errs);
    // Before validation, as Kong does: the migrated paths are what gets validated.
    if matches!(top.get("_format_version"), Some(Value::String(v)) if v == "1.1" || v == "2.1") {
        migrate::route_paths(top);
    }
    for k in top.keys() {
        if !META_KEYS.contains(&k.as_str()) && EntityKind::from_table(k).is_none() {
            set_err(&mut errs, &[key(k)], "unknown field");
        }
    }

    // Collect items, depth first in Kong's order, generating ids where the file has none.
    let mut walk = Walker {
        opts,
        items: Vec::new(),
        errs: &mut errs,
        seen: BTreeMap::new(),
    };
    for kind in KONG_ORDER {
        if let Some(v) = top.get(kind.table()) {
            walk.collect(kind, v, vec![key(kind.table())], None);
        }
    }
    let items = walk.items;

    // References: top-level foreign keys name their parent by endpoint key or id.
    let index = Index::build(&items);
    let mut ref_errs = Value::Object(Map::new());
    let mut dup_errs = Value::Object(Map::new());
    index.duplicates(&items, &mut dup_errs);
    let mut resolved = Vec::with_capacity(items.len());
    for item in &items {
        resolved.push(resolve_refs(item, &index, &mut ref_errs, &mut errs));
    }

    // Schema validation of every item; all schema errors are reported together.
    let lookup = Resolved(&index);
    let mut entities = Vec::with_capacity(items.len());
    for (i, (item, body)) in items.iter().zip(resolved).enumerate() {
        let fixed = Fixed {
            id: item.id,
            now: opts.now,
            entropy: mix(opts.entropy, i as u64),
        };
        let ctx = Ctx {
            fixed,
            lookup: &lookup,
            force_id: None,
            transform,
        };
        match Entity::from_json(item.kind, &Value::Object(body), &ctx) {
            Ok(e) => entities.push(e),
            Err(e) => match e.fields_json() {
                Some(fields) if e.code == crate::ErrorCode::SchemaViolation => {
                    merge_err(&mut errs, &item.path, fields)
                }
                _ => merge_err(&mut errs, &item.path, Value::String(e.message)),
            },
        }
    }
    if !is_empty(&errs) {
        return Err(KongError::declarative(&errs));
    }
    merge_into(&mut dup_errs, ref_errs);
    if !is_empty(&dup_errs) {
        return Err(KongError::declarative(&dup_errs));
    }
    unique_fields(&entities)?;

    // Load order: parents' kinds first; within a kind, Kong's walk order.
    entities.sort_by_key(|e| e.kind());
    Ok(Declarative {
        format_version: "3.0".into(),
        transform,
        entities,
    })
}

/// Duplicates of unique fields other than the ones already checked by key (custom_id,
/// instance_name, cert_digest, …), keyed as Kong keys them: by the entity's endpoint key
/// or id. Kong resets a kind's errors on each hit, so only the last one per kind is
/// reported. Composite keys (a plugin's name and scope, a target within its upstream,
/// an ACL group within its consumer) are not checked by Kong's loader; we reject them
/// because the store allows each key once.
fn unique_fields(entities: &[Entity]) -> Result<(), KongError> {
    let mut seen: BTreeMap<(EntityKind, &'static str, String), Uuid> = BTreeMap::new();
    let mut errs = Map::new();
    for e in entities {
        for (field, value) in e.unique_keys() {
            let Some(other) = seen.insert((e.kind(), field, value.clone()), e.id()) else {
                continue;
            };
            if other == e.id() {
                continue;
            }
            let at = e.endpoint_key().unwrap_or_else(|| e.id().to_string());
            let (name, shown) = display_unique(field, &value);
            let mut m = Map::new();
            m.insert(
                at,
                Value::String(uniqueness_msg(e.kind().table(), name, &shown)),
            );
            errs.insert(e.kind().table().to_string(), Value::Object(m));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(KongError::declarative(&Value::Object(errs)))
    }
}

/// How a composite unique key is named in the message.
fn display_unique(field: &'static str, value: &str) -> (&'static str, String) {
    match field {
        "cache_key" => ("name", value.split(':').next().unwrap_or(value).to_string()),
        "upstream_target" => (
            "target",
            value
                .split_once(':')
                .map(|x| x.1)
                .unwrap_or(value)
                .to_string(),
        ),
        "consumer_group" => (
            "group",
            value
                .split_once(':')
                .map(|x| x.1)
                .unwrap_or(value)
                .to_string(),
        ),
        f => (f, value.to_string()),
    }
}

fn uniqueness_msg(entity: &str, key: &str, value: &str) -> String {
    format!("uniqueness violation: '{entity}' entity with {key} set to '{value}' already declared")
}

fn mix(entropy: u128, i: u64) -> u128 {
    let mut h = Sha256::new();
    h.update(entropy.to_be_bytes());
    h.update(i.to_be_bytes());
    let out = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    u128::from_be_bytes(b)
}

fn key(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// `_comment` must be a string and `_ignore` an array, wherever they appear.
fn check_meta(obj: &Map<String, Value>, path: &[Seg], errs: &mut Value) {
    if let Some(c) = obj.get("_comment") {
        if !c.is_string() && !c.is_null() {
            let mut p = path.to_vec();
            p.push(key("_comment"));
            set_err(errs, &p, "expected a string");
        }
    }
    if let Some(c) = obj.get("_ignore") {
        if !c.is_array() && !c.is_null() {
            let mut p = path.to_vec();
            p.push(key("_ignore"));
            set_err(errs, &p, "expected an array");
        }
    }
}

/// A nested item's foreign-key field and its parent's id.
type Parent = (&'static str, Uuid);

/// The walk over the file's entities.
struct Walker<'e> {
    opts: ParseOptions,
    items: Vec<Item>,
    errs: &'e mut Value,
    /// How many items so far had a given fallback key, so identical items differ.
    seen: BTreeMap<String, usize>,
}

impl Walker<'_> {
    /// Walks one collection (`services: […]`), recursing into nested children.
    fn collect(&mut self, kind: EntityKind, v: &Value, path: Vec<Seg>, parent: Option<Parent>) {
        let list = match v {
            Value::Null => return,
            Value::Array(a) => a,
            _ => {
                set_err(self.errs, &path, "expected an array");
                return;
            }
        };
        for (i, raw) in list.iter().enumerate() {
            let mut ipath = path.clone();
            ipath.push(Seg::Idx(i));
            let Value::Object(obj) = raw else {
                set_err(self.errs, &ipath, "expected a record");
                continue;
            };
            check_meta(obj, &ipath, self.errs);
            let mut body = Map::new();
            let mut nested: Vec<(EntityKind, &'static str, &Value)> = Vec::new();
            for (k, val) in obj {
                if k == "_comment" || k == "_ignore" {
                    continue;
                }
                let child = EntityKind::from_table(k).and_then(|ck| {
                    ck.relations()
                        .iter()
                        .find(|r| r.parent == kind)
                        .map(|r| (ck, r.field))
                });
                // A parent's own field wins over a nested collection of the same name
                // (services.ca_certificates is a list of ids, not nested entities).
                match child {
                    Some((ck, field)) if !own_field(kind, k) => nested.push((ck, field, val)),
                    _ => {
                        body.insert(k.clone(), val.clone());
                    }
                }
            }
            if parent.is_some() {
                // A nested child gets its parent filled in and may set no foreign key.
                for rel in kind.relations() {
                    if body.get(rel.field).is_some_and(|v| !v.is_null()) {
                        let mut p = ipath.clone();
                        p.push(key(rel.field));
                        set_err(self.errs, &p, "value must be null");
                        body.remove(rel.field);
                    }
                }
            }
            let id = match body.get("id") {
                // An explicit id is kept as it is; an invalid one is reported by schema
                // validation, and any id keeps the walk going.
                Some(Value::String(s)) => match crate::input::parse_uuid(s) {
                    Ok(id) => id,
                    Err(_) => self.fallback_id(kind, &body, parent),
                },
                _ => match id_key(kind, &body, parent) {
                    Some(k) => derived_id(kind, &k),
                    None => self.fallback_id(kind, &body, parent),
                },
            };
            if let Some((field, pid)) = parent {
                body.insert(
                    field.to_string(),
                    serde_json::json!({ "id": pid.to_string() }),
                );
            }
            self.items.push(Item {
                kind,
                path: ipath.clone(),
                body,
                id,
                parent,
            });
            nested.sort_by_key(|(ck, _, _)| KONG_ORDER.iter().position(|k| k == ck));
            for (ck, field, val) in nested {
                let mut cpath = ipath.clone();
                cpath.push(key(ck.table()));
                self.collect(ck, val, cpath, Some((field, id)));
            }
        }
    }

    /// Where Kong would use a random id (certificates, unnamed services, consumers with
    /// only a custom_id, key-auth credentials, …) we derive one from the item's content
    /// and parent, so that loading the same file twice gives the same ids. Identical
    /// items under the same parent are told apart by their rank.
    fn fallback_id(
        &mut self,
        kind: EntityKind,
        body: &Map<String, Value>,
        parent: Option<Parent>,
    ) -> Uuid {
        let mut h = Sha256::new();
        h.update(canonical(&Value::Object(body.clone())).as_bytes());
        let digest = hex::encode(&h.finalize()[..16]);
        let parent = parent.map(|(_, id)| id.to_string()).unwrap_or_default();
        let base = format!("tidegate:{}:{parent}:{digest}", kind.table());
        let n = self.seen.entry(base.clone()).or_insert(0);
        let mut k = format!("{base}:{n}");
        *n += 1;
        // A generated key-auth key comes from the entropy; so does its id.
        if kind == EntityKind::KeyauthCredential {
            k = format!("{k}:{:032x}", self.opts.entropy);
        }
        derived_id(kind, &k)
    }
}

/// JSON with object keys sorted, so that key order does not change a derived id.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&o[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Fields of an entity that share a name with a child collection.
fn own_field(kind: EntityKind, name: &str) -> bool {
    matches!((kind, name), (EntityKind::Service, "ca_certificates"))
}

/// `uuidv5(uuidv5(NS_ROOT, <table>), key)`, Kong's `generate_uuid`.
fn derived_id(kind: EntityKind, key: &str) -> Uuid {
    let ns = Uuid::new_v5(&NS_ROOT, kind.table().as_bytes());
    Uuid::new_v5(&ns, key.as_bytes())
}

/// The string Kong hashes into an entity's id (`get_key_for_uuid_gen`, latest 3.x: the
/// cache key when the kind has one, else the endpoint key), or `None` where Kong would
/// pick a random id. `parent` is the nested item's foreign-key field and parent id.
fn id_key(kind: EntityKind, body: &Map<String, Value>, parent: Option<Parent>) -> Option<String> {
    let cache_key: Option<&[&str]> = match kind {
        EntityKind::Plugin => Some(&["name", "route", "service", "consumer"]),
        EntityKind::Target => Some(&["upstream", "target"]),
        EntityKind::Acl => Some(&["consumer", "group"]),
        EntityKind::BasicauthCredential => Some(&["username"]),
        // Kong's cache key here is the `auto` field `key`, so its latest code picks a
        // random id; we hash the key when the file gives one, so that a reload of the
        // same file keeps the credential's id (an intentional deviation).
        EntityKind::KeyauthCredential => {
            return match body.get("key") {
                Some(Value::String(k)) => Some(format!("keyauth_credentials:*:{k}")),
                _ => None,
            };
        }
        _ => None,
    };
    if let Some(fields) = cache_key {
        let mut ck = vec![kind.table().to_string(), "*".to_string()];
        for f in fields {
            match body.get(*f) {
                Some(Value::String(s)) => ck.push(s.clone()),
                // Kong appends nothing for a table or null value.
                Some(_) => {}
                None => match parent {
                    Some((field, pid)) if field == *f => ck.push(pid.to_string()),
                    // Every cache-key field is required except a plugin's scope.
                    _ if kind != EntityKind::Plugin || *f == "name" => return None,
                    _ => ck.push(String::new()),
                },
            }
        }
        return Some(ck.join(":"));
    }
    let endpoint = match kind {
        EntityKind::Service | EntityKind::Route | EntityKind::Upstream | EntityKind::Sni => "name",
        EntityKind::Consumer => "username",
        _ => return None,
    };
    match body.get(endpoint) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The file's own entities by id and by endpoint key.
struct Index {
    by_id: BTreeMap<(EntityKind, Uuid), usize>,
    by_key: BTreeMap<(EntityKind, String), Uuid>,
}

impl Index {
    fn build(items: &[Item]) -> Self {
        let mut by_id = BTreeMap::new();
        let mut by_key = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            by_id.entry((item.kind, item.id)).or_insert(i);
            if let Some(k) = referable_key(item) {
                by_key.entry((item.kind, k)).or_insert(item.id);
            }
        }
        Index { by_id, by_key }
    }

    /// Duplicate ids and endpoint keys, in Kong's shapes.
    fn duplicates(&self, items: &[Item], errs: &mut Value) {
        let mut ids: BTreeMap<(EntityKind, Uuid), ()> = BTreeMap::new();
        let mut keys: BTreeMap<(EntityKind, String), ()> = BTreeMap::new();
        for item in items {
            let table = item.kind.table();
            let idx = match item.path.last() {
                Some(Seg::Idx(i)) => *i,
                _ => 0,
            };
            let mut failed = false;
            if let Some(k) = referable_key(item) {
                if keys.insert((item.kind, k.clone()), ()).is_some() {
                    let field = item
                        .kind
                        .endpoint_key()
                        .expect("referable keys are endpoint keys");
                    // At its index in its own list, even when nested: Kong's shape.
                    set_err(
                        errs,
                        &[key(table), Seg::Idx(idx)],
                        &uniqueness_msg(table, field, &k),
                    );
                    failed = true;
                }
            }
            if ids.insert((item.kind, item.id), ()).is_some() && !failed {
                let msg = uniqueness_msg(table, "primary key", &item.id.to_string());
                // Nested duplicates are reported one level down, under their parent.
                let n = item.path.len();
                let at: Vec<Seg> = if n >= 4 {
                    item.path[n - 4..].to_vec()
                } else {
                    vec![key(table), Seg::Idx(idx)]
                };
                set_err(errs, &at, &msg);
            }
        }
    }
}

/// The endpoint key an item can be referenced by, for kinds where it is unique.
fn referable_key(item: &Item) -> Option<String> {
    let field = match item.kind {
        EntityKind::Service | EntityKind::Route | EntityKind::Upstream | EntityKind::Sni => "name",
        EntityKind::Consumer | EntityKind::BasicauthCredential => "username",
        EntityKind::Plugin => "instance_name",
        EntityKind::KeyauthCredential => "key",
        _ => return None,
    };
    item.body
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl Lookup for Index {
    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<Uuid> {
        self.by_key.get(&(kind, key.to_string())).copied()
    }
    fn exists(&self, kind: EntityKind, id: Uuid) -> bool {
        self.by_id.contains_key(&(kind, id))
    }
}

/// The lookup entities are read with once references are resolved: a dangling one has
/// been reported already and carries a placeholder that must not fail again.
struct Resolved<'a>(&'a Index);

impl Lookup for Resolved<'_> {
    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<Uuid> {
        self.0.find_by_key(kind, key)
    }
    fn exists(&self, _: EntityKind, _: Uuid) -> bool {
        true
    }
}

/// Turns top-level references (an endpoint key or id string, or `{"id": …}`) into
/// `{"id": …}`. A reference to nothing is reported under the referencing item's endpoint
/// key (or id), as Kong does; a reference of the wrong type is a schema error.
fn resolve_refs(
    item: &Item,
    index: &Index,
    ref_errs: &mut Value,
    schema_errs: &mut Value,
) -> Map<String, Value> {
    let mut body = item.body.clone();
    for rel in item.kind.relations() {
        if item.parent.is_some_and(|(f, _)| f == rel.field) {
            continue;
        }
        let Some(v) = body.get(rel.field).cloned() else {
            continue;
        };
        let by_id = |s: &str| {
            crate::input::parse_uuid(s)
                .ok()
                .filter(|id| index.exists(rel.parent, *id))
        };
        let target = match &v {
            Value::Null => continue,
            // Kong's `find_entity`: the endpoint key first, then the id.
            Value::String(s) => index.find_by_key(rel.parent, s).or_else(|| by_id(s)),
            Value::Object(o) => match o.get("id") {
                Some(Value::String(s)) if o.len() == 1 && crate::input::parse_uuid(s).is_ok() => {
                    by_id(s)
                }
                // Let the entity's schema report the shape.
                _ => continue,
            },
            _ => {
                let mut p = item.path.clone();
                p.push(key(rel.field));
                set_err(schema_errs, &p, "expected a string");
                body.remove(rel.field);
                continue;
            }
        };
        match target {
            Some(id) => {
                body.insert(
                    rel.field.to_string(),
                    serde_json::json!({ "id": id.to_string() }),
                );
            }
            None => {
                let shown = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let at = referable_key(item).unwrap_or_else(|| item.id.to_string());
                let msg = format!(
                    "invalid reference '{}: {shown}' (no such entry in '{}')",
                    rel.field,
                    rel.parent.table()
                );
                push_err(ref_errs, &[key(item.kind.table()), key(&at)], msg);
                // A placeholder, so that the rest of the item is still validated.
                body.insert(
                    rel.field.to_string(),
                    serde_json::json!({ "id": item.id.to_string() }),
                );
            }
        }
    }
    body
}

// --- error trees -------------------------------------------------------------------------

fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Object(o) if o.is_empty())
}

/// The node at `path`, creating objects and null-padded arrays on the way.
fn node_at<'a>(root: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    let mut cur = root;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                cur.as_object_mut()
                    .expect("made an object above")
                    .entry(k.clone())
                    .or_insert(Value::Null)
            }
            Seg::Idx(i) => {
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let arr = cur.as_array_mut().expect("made an array above");
                if arr.len() <= *i {
                    arr.resize(*i + 1, Value::Null);
                }
                &mut arr[*i]
            }
        };
    }
    cur
}

fn set_err(root: &mut Value, path: &[Seg], msg: &str) {
    let slot = node_at(root, path);
    if slot.is_null() {
        *slot = Value::String(msg.to_string());
    }
}

fn push_err(root: &mut Value, path: &[Seg], msg: String) {
    let slot = node_at(root, path);
    match slot {
        Value::Array(a) => a.push(Value::String(msg)),
        _ => *slot = Value::Array(vec![Value::String(msg)]),
    }
}

fn merge_err(root: &mut Value, path: &[Seg], err: Value) {
    let slot = node_at(root, path);
    if slot.is_null() {
        *slot = err;
    } else {
        merge_into(slot, err);
    }
}

fn merge_into(target: &mut Value, other: Value) {
    match (target, other) {
        (Value::Object(t), Value::Object(o)) => {
            for (k, v) in o {
                match t.get_mut(&k) {
                    Some(existing) => merge_into(existing, v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, o) => {
            if t.is_null() {
                *t = o;
            }
        }
    }
}

// --- export ------------------------------------------------------------------------------

/// A 3.0 declarative document of `entities`: flat, foreign keys as id strings, every field
/// present, `_transform: false` so already-transformed values (hashed passwords) load
/// as they are.
pub fn export<'a>(entities: impl IntoIterator<Item = &'a Entity>) -> Value {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), Value::String("3.0".into()));
    doc.insert("_transform".into(), Value::Bool(false));
    let mut by_kind: BTreeMap<EntityKind, Vec<Value>> = BTreeMap::new();
    for e in entities {
        let mut json = e.to_json();
        if let Value::Object(obj) = &mut json {
            for rel in e.kind().relations() {
                if let Some(Value::Object(fk)) = obj.get(rel.field) {
                    let id = fk.get("id").cloned().unwrap_or(Value::Null);
                    obj.insert(rel.field.to_string(), id);
                }
            }
        }
        by_kind.entry(e.kind()).or_default().push(json);
    }
    for (kind, list) in by_kind {
        doc.insert(kind.table().to_string(), Value::Array(list));
    }
    Value::Object(doc)
}

/// [`export`] as YAML text.
pub fn export_yaml<'a>(entities: impl IntoIterator<Item = &'a Entity>) -> String {
    serde_yaml::to_string(&export(entities)).expect("JSON values serialise to YAML")
}

#[cfg(test)]
mod tests;
