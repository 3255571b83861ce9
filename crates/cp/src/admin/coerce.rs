//! Kong's type inference for form bodies (`arguments.infer`): a form carries strings,
//! and a field the schema types as a number, a boolean or an array takes that type.
//!
//! We ask the model which types it expects instead of keeping a second schema: the body
//! is read as the entity, and each "expected an integer / a number / a boolean / an
//! array / a set" error on a string is answered by converting that string the way Kong
//! would (Lua's `tonumber`, `"true"`/`"false"`, a one-item array). This repeats until no
//! error names a value it can convert; whatever stays wrong is left for the real write
//! to report.

use serde_json::{Map, Number, Value};
use tidegate_model::{Ctx, Entity, EntityKind, ErrorCode, Fixed, Lookup};
use uuid::Uuid;

use super::pagination::lua_tonumber;

/// Each pass fixes every error the reader reported; a field reports one error at a time,
/// so a few passes settle any body.
const MAX_PASSES: usize = 8;

/// Foreign keys resolve and exist, so that only the body's own shape is judged.
pub(super) struct AnyParent;

impl Lookup for AnyParent {
    fn find_by_key(&self, _: EntityKind, _: &str) -> Option<Uuid> {
        Some(Uuid::nil())
    }
    fn exists(&self, _: EntityKind, _: Uuid) -> bool {
        true
    }
}

/// A context for reading an input only to learn about its schema: every parent exists,
/// and ids, time and entropy do not matter.
pub(super) fn probe_ctx() -> Ctx<'static> {
    Ctx {
        fixed: Fixed {
            id: Uuid::nil(),
            now: 0,
            entropy: 0,
        },
        lookup: &AnyParent,
        force_id: None,
        transform: true,
    }
}

/// The `fields` tree of a schema violation for `input` read as `kind`, if any.
pub(super) fn schema_errors(kind: EntityKind, input: &Value) -> Option<Value> {
    match Entity::from_json(kind, input, &probe_ctx()) {
        Err(e) if e.code == ErrorCode::SchemaViolation => e.fields_json(),
        _ => None,
    }
}

/// Coerces the strings of a form `body` for `kind`. `base` is the stored entity a PATCH
/// applies to: the body is judged merged into it, since a partial body may lack what
/// selects its schema (a plugin's `name`).
pub(super) fn coerce(kind: EntityKind, body: &mut Value, base: Option<&Value>) {
    for _ in 0..MAX_PASSES {
        let probe = match base {
            Some(b) => merged(b, body),
            None => body.clone(),
        };
        let Some(errors) = schema_errors(kind, &probe) else {
            return;
        };
        if !fix(body, &errors) {
            return;
        }
    }
}

/// `body` merged into `base` the way the state machine merges a PATCH.
fn merged(base: &Value, body: &Value) -> Value {
    let mut out = base.clone();
    merge(&mut out, body);
    out
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Converts the values of `body` that `errors` (the same shape) says have the wrong
/// type. Whether anything changed.
fn fix(body: &mut Value, errors: &Value) -> bool {
    match (body, errors) {
        (Value::Object(obj), Value::Object(errs)) => fix_record(obj, errs),
        (Value::Array(items), Value::Array(errs)) => {
            let mut changed = false;
            for (item, err) in items.iter_mut().zip(errs) {
                changed |= fix_value(item, err);
            }
            changed
        }
        _ => false,
    }
}

fn fix_record(obj: &mut Map<String, Value>, errs: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, err) in errs {
        if let Some(v) = obj.get_mut(k) {
            changed |= fix_value(v, err);
        }
    }
    changed
}

fn fix_value(v: &mut Value, err: &Value) -> bool {
    let Value::String(msg) = err else {
        return fix(v, err);
    };
    match convert(v, msg) {
        Some(new) => {
            *v = new;
            true
        }
        None => false,
    }
}

/// What Kong's `infer_value` makes of `v` where the schema said `msg`.
fn convert(v: &Value, msg: &str) -> Option<Value> {
    match (msg, v) {
        ("expected an integer" | "expected a number", Value::String(s)) => {
            let n = lua_tonumber(s)?;
            Some(number(n))
        }
        ("expected a boolean", Value::String(s)) => match s.as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ("expected an array" | "expected a set", Value::String(_) | Value::Number(_)) => {
            Some(Value::Array(vec![v.clone()]))
        }
        _ => None,
    }
}

/// An integral value as a JSON integer (`5`, not `5.0`), as Lua prints it.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::from(n as i64)
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}
