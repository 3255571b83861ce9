//! `GET /schemas/{entity}`, `GET /schemas/plugins/{name}` and their `validate`
//! siblings.
//!
//! Kong serves its schema tables; we have typed readers instead, so the `fields` array
//! is derived from them by asking: the field list and defaults come from a minimal valid
//! entity, each field's type from the error the reader gives a `true` in its place
//! ("expected an integer" → integer, no error → boolean), `one_of`/`between` from the
//! error an out-of-range value gets, `required` from the error its absence gets. What a
//! reader cannot tell this way is left out rather than guessed: Kong's `entity_checks`,
//! validators other than `one_of`/`between`, the element types of maps, the fields of
//! records that default to `null`.

use serde_json::{json, Map, Value};
use tidegate_model::entities::{CaCertificate, Certificate};
use tidegate_model::{plugins, Ctx, Entity, EntityKind, ErrorCode, Fixed};
use uuid::Uuid;

use super::coerce::{schema_errors, AnyParent};
use super::entities::read_body;
use super::reply::{Handled, Reply};
use super::request::AdminRequest;
use super::routing::Ctx as AdminCtx;
use crate::backend::Backend;

/// A string no `one_of` lists and no number reads as.
const ODD_STRING: &str = "\u{1}";
/// A number below every range a schema sets.
const ODD_NUMBER: i64 = -987_654_321;

/// `GET /schemas/{entity}`.
pub(super) fn entity(name: &str) -> Handled {
    let kind = EntityKind::from_table(name).ok_or_else(|| no_entity(name))?;
    Ok(Reply::ok(json!({ "fields": entity_fields(kind) })))
}

/// `GET /schemas/plugins/{name}`: the plugin's fields, `config` with its own.
pub(super) fn plugin(name: &str) -> Handled {
    if plugins::info(name).is_none() {
        return Err(Reply::message(
            hyper::StatusCode::NOT_FOUND,
            format!("No plugin named '{name}'"),
        ));
    }
    let base = json!({ "name": name, "config": minimal_config(name) });
    Ok(Reply::ok(
        json!({ "fields": fields(EntityKind::Plugin, &[base], &[]) }),
    ))
}

/// `POST /schemas/{entity}/validate` and `POST /schemas/plugins/validate`: the body read
/// as a new entity, nothing written. Only the schema is judged (foreign keys are not
/// looked up), as in Kong.
pub(super) async fn validate<B: Backend>(
    ctx: &AdminCtx<B>,
    req: &mut AdminRequest,
    name: &str,
) -> Handled {
    let kind = EntityKind::from_table(name).ok_or_else(|| no_entity(name))?;
    let body = read_body(req, kind, None).await?;
    let ctx = Ctx {
        fixed: Fixed {
            id: Uuid::nil(),
            now: ctx.backend.now_unix(),
            entropy: 0,
        },
        lookup: &AnyParent,
        force_id: None,
        transform: true,
    };
    match Entity::from_json(kind, &body, &ctx) {
        Err(e) if e.code == ErrorCode::SchemaViolation => Err(Reply::kong(&e)),
        _ => Ok(Reply::ok(
            json!({ "message": "schema validation successful" }),
        )),
    }
}

fn no_entity(name: &str) -> Reply {
    Reply::message(
        hyper::StatusCode::NOT_FOUND,
        format!("No entity named '{name}'"),
    )
}

/// The fields of `kind`; for `plugins`, the shared ones with `config` abstract.
pub(super) fn entity_fields(kind: EntityKind) -> Vec<Value> {
    if kind == EntityKind::Plugin {
        let base = json!({ "name": "correlation-id" });
        let mut out = fields(kind, &[base], &[]);
        for f in &mut out {
            if let Some(config) = f.get_mut("config") {
                *config = json!({ "type": "record", "abstract": true, "required": true });
            }
        }
        return out;
    }
    let mut bases = vec![minimal(kind)];
    bases.extend(other_bases(kind));
    fields(kind, &bases, &[])
}

/// Valid inputs in which fields the minimal one forbids may be set: a service's TLS
/// fields need `https`, a route's `sources` a stream protocol.
fn other_bases(kind: EntityKind) -> Vec<Value> {
    match kind {
        EntityKind::Service => vec![json!({ "host": "example.com", "protocol": "https" })],
        EntityKind::Route => vec![
            json!({ "protocols": ["tcp"], "sources": [{ "ip": "10.0.0.1" }] }),
            json!({ "protocols": ["https"], "paths": ["/"] }),
        ],
        _ => Vec::new(),
    }
}

/// The smallest valid input of each kind (foreign keys resolve to anything here).
fn minimal(kind: EntityKind) -> Value {
    let any = json!({ "id": Uuid::nil() });
    match kind {
        EntityKind::Service => json!({ "host": "example.com" }),
        EntityKind::Route => json!({ "paths": ["/"] }),
        EntityKind::Consumer => json!({ "username": "u" }),
        EntityKind::Plugin => json!({ "name": "correlation-id" }),
        EntityKind::Upstream => json!({ "name": "u" }),
        EntityKind::Target => json!({ "target": "t", "upstream": any }),
        EntityKind::Sni => json!({ "name": "a.example", "certificate": any }),
        EntityKind::KeyauthCredential => json!({ "consumer": any }),
        EntityKind::BasicauthCredential => {
            json!({ "consumer": any, "username": "u", "password": "p" })
        }
        EntityKind::Acl => json!({ "consumer": any, "group": "g" }),
        // No valid PEM to hand: their fields have no defaults to learn anyway.
        EntityKind::Certificate | EntityKind::CaCertificate => json!({}),
    }
}

/// The smallest valid config of each bundled plugin.
fn minimal_config(name: &str) -> Value {
    match name {
        "acl" => json!({ "allow": ["g"] }),
        "ip-restriction" => json!({ "allow": ["127.0.0.1"] }),
        "rate-limiting" => json!({ "minute": 1 }),
        _ => json!({}),
    }
}

/// `kind` read from `base`, as JSON: the field list and the defaults.
fn defaults(kind: EntityKind, base: &Value) -> Value {
    match Entity::from_json(kind, base, &super::coerce::probe_ctx()) {
        Ok(e) => e.to_json(),
        // The field list of the kinds `minimal` cannot build.
        Err(_) => match kind {
            EntityKind::Certificate => blank(Entity::Certificate(Box::new(Certificate {
                id: Uuid::nil(),
                created_at: 0,
                updated_at: 0,
                cert: String::new(),
                key: String::new(),
                cert_alt: None,
                key_alt: None,
                tags: None,
            }))),
            EntityKind::CaCertificate => blank(Entity::CaCertificate(Box::new(CaCertificate {
                id: Uuid::nil(),
                created_at: 0,
                updated_at: 0,
                cert: String::new(),
                cert_digest: String::new(),
                tags: None,
            }))),
            _ => json!({}),
        },
    }
}

/// An entity's field names with no values.
fn blank(e: Entity) -> Value {
    match e.to_json() {
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, _)| (k, Value::Null)).collect()),
        v => v,
    }
}

/// Fields whose value the node fills in: never a default.
fn auto(kind: EntityKind, name: &str) -> bool {
    matches!(name, "id" | "created_at" | "updated_at")
        || matches!(
            (kind, name),
            (EntityKind::KeyauthCredential, "key") | (EntityKind::CaCertificate, "cert_digest")
        )
}

/// The fields of the record at `path` in `kind`, derived against `bases` (the first
/// gives the field list and defaults; the others help tell types).
fn fields(kind: EntityKind, bases: &[Value], path: &[String]) -> Vec<Value> {
    let base = &bases[0];
    let built = defaults(kind, base);
    let Some(Value::Object(record)) = at(&built, path) else {
        return Vec::new();
    };
    let given = at(base, path);
    record
        .iter()
        .map(|(name, default)| {
            let mut p = path.to_vec();
            p.push(name.clone());
            let in_input = given.and_then(|g| g.get(name)).is_some();
            let field = describe(kind, bases, &p, default, in_input);
            json!({ name.clone(): field })
        })
        .collect()
}

fn describe(
    kind: EntityKind,
    bases: &[Value],
    path: &[String],
    default: &Value,
    in_input: bool,
) -> Value {
    let name = path.last().map(String::as_str).unwrap_or("");
    let top = path.len() == 1;
    let is_auto = top && auto(kind, name);
    let mut out = Map::new();
    if top {
        if let Some(rel) = kind.relations().iter().find(|r| r.field == name) {
            out.insert("type".into(), json!("foreign"));
            out.insert("reference".into(), json!(rel.parent.table()));
            if required(kind, &bases[0], path) {
                out.insert("required".into(), json!(true));
            }
            return Value::Object(out);
        }
    }
    // The first base in which the field may hold a value tells its type.
    let typed = bases
        .iter()
        .find_map(|b| probe_type(kind, b, path).map(|t| (t, b)));
    let Some((ty, base)) = typed else {
        return Value::Object(out);
    };
    out.insert("type".into(), json!(ty));
    if top {
        match name {
            "id" => {
                out.insert("uuid".into(), json!(true));
            }
            "created_at" | "updated_at" => {
                out.insert("timestamp".into(), json!(true));
            }
            _ => {}
        }
    }
    if is_auto {
        out.insert("auto".into(), json!(true));
    }
    if required(kind, &bases[0], path) {
        out.insert("required".into(), json!(true));
    }
    match ty {
        "string" if !is_auto => {
            let err = error_with(kind, base, path, json!(ODD_STRING));
            add_range(&mut out, err.as_ref());
        }
        "integer" | "number" if !is_auto => {
            let err = error_with(kind, base, path, json!(ODD_NUMBER));
            add_range(&mut out, err.as_ref());
        }
        "array" | "set" => {
            out.insert("elements".into(), elements(kind, base, path, default));
        }
        "record" => {
            // The reader fills a record it is not given, so the base already shows its
            // defaults.
            if default.is_object() {
                out.insert("fields".into(), Value::Array(fields(kind, bases, path)));
            }
            return Value::Object(out);
        }
        _ => {}
    }
    if !default.is_null() && !in_input && !is_auto {
        out.insert("default".into(), default.clone());
    }
    Value::Object(out)
}

/// What an array's items are: their type, and their `one_of`/`between`.
/// A probe item goes after the default's first item, if any: a route's first protocol
/// selects its schema, and only the items after it are judged one by one.
fn elements(kind: EntityKind, base: &Value, path: &[String], default: &Value) -> Value {
    let lead: Vec<Value> = default
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .into_iter()
        .collect();
    let item_error = |v: Value| -> Result<Option<String>, ()> {
        let mut items = lead.clone();
        items.push(v);
        match error_with(kind, base, path, Value::Array(items)) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(items
                .get(lead.len())
                .and_then(Value::as_str)
                .map(str::to_string)),
            // An error about the array as a whole says nothing of its items.
            Some(_) => Err(()),
        }
    };
    let mut out = Map::new();
    let ty = match item_error(json!(true)) {
        Ok(Some(m)) => type_of(&m),
        // Only a boolean item takes `true`; make sure a string is refused as one.
        Ok(None) => match item_error(json!(ODD_STRING)) {
            Ok(Some(m)) if m == "expected a boolean" => Some("boolean"),
            _ => None,
        },
        // An item that is not even a string upset the whole array: a string one may
        // still be told its allowed values.
        Err(()) => match item_error(json!(ODD_STRING)) {
            Ok(Some(m)) if m.starts_with("expected one of: ") => Some("string"),
            _ => None,
        },
    };
    let Some(ty) = ty else {
        return Value::Object(out);
    };
    out.insert("type".into(), json!(ty));
    let odd = match ty {
        "string" => Some(json!(ODD_STRING)),
        "integer" | "number" => Some(json!(ODD_NUMBER)),
        _ => None,
    };
    if let Some(Ok(Some(msg))) = odd.map(item_error) {
        add_range(&mut out, Some(&Value::String(msg)));
    }
    Value::Object(out)
}

/// The type a reader asks for, from its message.
fn type_of(msg: &str) -> Option<&'static str> {
    Some(match msg {
        "expected a string" => "string",
        "expected an integer" => "integer",
        "expected a number" => "number",
        "expected a boolean" => "boolean",
        "expected an array" => "array",
        "expected a set" => "set",
        "expected a map" => "map",
        "expected a record" => "record",
        _ => return None,
    })
}

/// The field's type, from what a `true` in its place is told; `None` when that says
/// nothing about the type (a conditional forbids the field in this base).
fn probe_type(kind: EntityKind, base: &Value, path: &[String]) -> Option<&'static str> {
    match error_with(kind, base, path, json!(true)) {
        // Only a boolean takes `true`; make sure a string is refused as one.
        None => match error_with(kind, base, path, json!(ODD_STRING)) {
            Some(Value::String(m)) if m == "expected a boolean" => Some("boolean"),
            _ => None,
        },
        Some(Value::String(m)) => type_of(&m),
        Some(_) => None,
    }
}

/// `one_of` or `between` from the message an out-of-range value gets.
fn add_range(out: &mut Map<String, Value>, err: Option<&Value>) {
    let Some(msg) = err.and_then(Value::as_str) else {
        return;
    };
    if let Some(list) = msg.strip_prefix("expected one of: ") {
        let items: Vec<Value> = list
            .split(", ")
            .map(|s| s.parse::<i64>().map_or_else(|_| json!(s), |n| json!(n)))
            .collect();
        out.insert("one_of".into(), Value::Array(items));
    } else if let Some(range) = msg.strip_prefix("value should be between ") {
        if let Some((lo, hi)) = range.split_once(" and ") {
            let num = |s: &str| {
                s.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| s.parse::<f64>().map(Value::from))
                    .unwrap_or(Value::Null)
            };
            out.insert("between".into(), json!([num(lo), num(hi)]));
        }
    }
}

/// Whether leaving the field out is an error.
fn required(kind: EntityKind, base: &Value, path: &[String]) -> bool {
    let mut b = base.clone();
    remove_at(&mut b, path);
    let errs = schema_errors(kind, &b);
    errs.as_ref()
        .and_then(|e| at(e, path))
        .and_then(Value::as_str)
        == Some("required field missing")
}

/// The error at `path` when the field holds `v`.
fn error_with(kind: EntityKind, base: &Value, path: &[String], v: Value) -> Option<Value> {
    let mut b = base.clone();
    set_at(&mut b, path, v);
    let errs = schema_errors(kind, &b)?;
    at(&errs, path).cloned()
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn set_at(v: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = new;
        return;
    };
    let mut cur = v;
    for k in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(k.clone())
            .or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    if let Value::Object(o) = cur {
        o.insert(last.clone(), new);
    }
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(o) = cur {
        o.remove(last);
    }
}
