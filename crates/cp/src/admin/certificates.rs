//! Kong's `snis` pseudo-attribute of certificates (`kong/db/dao/certificates.lua`): a
//! certificate written with `"snis": [names]` gets one SNI row per name, in the same
//! write; its responses list the names, sorted. Here the certificate and its SNI rows
//! are one `Op::Batch`, so a refused name leaves no certificate behind.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tidegate_model::{Entity, EntityKind, Errors, FieldError, KongError};
use tidegate_state::{ConfigState, EntityRef, Op};
use uuid::Uuid;

use super::entities::Write;
use super::reply::Reply;
use super::routing::Ctx;
use crate::backend::Backend;

/// The certificate an SNI name belongs to.
pub(super) fn by_sni(config: &ConfigState, name: &str) -> Option<Uuid> {
    match config.get_by_unique(EntityKind::Sni, "name", name)? {
        Entity::Sni(s) => s.certificate.map(|c| c.id),
        _ => None,
    }
}

/// The names of a certificate's SNIs, sorted (Kong's `list_for_certificate`).
pub(super) fn sni_names(config: &ConfigState, cert: Uuid) -> Vec<String> {
    let mut names: Vec<String> = config
        .children_of(EntityKind::Certificate, cert)
        .filter_map(|(k, id)| config.get(k, id))
        .filter_map(|e| match e {
            Entity::Sni(s) => Some(s.name.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// `PUT /certificates/{name}` for a name no SNI has: the new certificate gets it.
pub(super) fn add_sni(body: &mut Value, name: &str) {
    let Value::Object(obj) = body else { return };
    let mut names: Vec<Value> = match obj.get("snis") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if !names.iter().any(|n| n.as_str() == Some(name)) {
        names.push(Value::String(name.to_string()));
    }
    obj.insert("snis".into(), Value::Array(names));
}

/// The `snis` a body asks for: `None` when it names none (absent, or not a list, which
/// Kong ignores), the empty list for `null`; sorted, duplicates refused.
fn requested(body: &Value) -> Result<Option<Vec<String>>, KongError> {
    let items = match body.get("snis") {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => return Ok(None),
    };
    let mut names = Vec::with_capacity(items.len());
    let mut bad = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(s) => names.push(s.to_string()),
            None => {
                bad.insert(i + 1, FieldError::msg("expected a string"));
            }
        }
    }
    if !bad.is_empty() {
        let mut e = Errors::default();
        e.nested("snis", FieldError::Items(bad));
        return Err(KongError::schema_violation(&e));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(snis_error(format!("{n} is duplicated")));
        }
    }
    names.sort();
    Ok(Some(names))
}

fn snis_error(msg: String) -> KongError {
    let mut e = Errors::default();
    e.field("snis", msg);
    KongError::schema_violation(&e)
}

/// The `Op` for a certificate write. Without `snis` it is the plain write (a PUT or
/// PATCH keeps the SNIs the certificate has); with them, a batch: the certificate, then
/// the names it gains, then the removal of the names it loses.
pub(super) fn op<B: Backend>(
    ctx: &Ctx<B>,
    write: Write,
    mut body: Value,
    request_id: Option<Uuid>,
) -> Result<Op, Reply> {
    let names = requested(&body).map_err(|e| Reply::kong(&e))?;
    let Some(names) = names else {
        return Ok(write.op(EntityKind::Certificate, &body));
    };
    let cert = match &write {
        Write::Upsert(EntityRef::Id(id)) | Write::Patch(EntityRef::Id(id)) => *id,
        Write::Create => {
            // The SNI rows need the certificate's id before it exists.
            let given = body
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| tidegate_model::input::parse_uuid(s).ok());
            // A retry must name the same certificate, or its SNIs look taken by the
            // first attempt's: derive the id from the request id when there is one.
            let id = given
                .or_else(|| request_id.map(|r| Uuid::new_v5(&r, b"tidegate/admin/certificate")))
                .unwrap_or_else(|| {
                    uuid::Builder::from_random_bytes(ctx.backend.entropy().to_be_bytes())
                        .into_uuid()
                });
            if let Value::Object(obj) = &mut body {
                obj.insert("id".into(), json!(id));
            }
            id
        }
        // Certificates have no endpoint key: callers resolve names to ids first.
        Write::Upsert(EntityRef::Key(_)) | Write::Patch(EntityRef::Key(_)) => {
            return Ok(write.op(EntityKind::Certificate, &body));
        }
    };
    let (current, taken) = ctx.backend.read(|m| {
        let config = &m.config;
        let current: Vec<(String, Uuid)> = config
            .children_of(EntityKind::Certificate, cert)
            .filter_map(|(k, id)| config.get(k, id))
            .filter_map(|e| match e {
                Entity::Sni(s) => Some((s.name.clone(), s.id)),
                _ => None,
            })
            .collect();
        // Kong's `check_list_is_new`: the first name (sorted) held by another certificate.
        let taken = names.iter().find_map(|n| {
            by_sni(config, n)
                .filter(|owner| *owner != cert)
                .map(|owner| (n.clone(), owner))
        });
        (current, taken)
    });
    if let Some((name, owner)) = taken {
        let msg = format!("{name} already associated with existing certificate '{owner}'");
        return Err(Reply::kong(&snis_error(msg)));
    }
    let mut ops = vec![write.op(EntityKind::Certificate, &body)];
    for name in &names {
        if !current.iter().any(|(n, _)| n == name) {
            ops.push(Op::Create {
                kind: EntityKind::Sni,
                body: json!({ "name": name, "certificate": { "id": cert } }).to_string(),
            });
        }
    }
    for (name, id) in &current {
        if !names.contains(name) {
            ops.push(Op::Delete {
                kind: EntityKind::Sni,
                key: EntityRef::Id(*id),
            });
        }
    }
    Ok(Op::Batch { ops })
}
