//! The Machine: turns Commands into Events against the current state, de-duplicating by
//! request id. This is what a CP's Raft state machine runs at every committed entry.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tidegate_model::error::LuaValue;
use tidegate_model::kind::OnDelete;
use tidegate_model::{Ctx, Entity, EntityKind, Errors, Fixed, KongError, Lookup};
use uuid::Uuid;

use crate::command::{Command, EntityRef, Op, MAX_BATCH_OPS, MAX_GROUP_COMMANDS};
use crate::data_planes::{DataPlanes, DpReport, MAX_REPORTS_PER_BATCH};
use crate::event::{Change, Event};
use crate::requests::RequestLog;
use crate::state::ConfigState;

/// What an accepted Command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The entity created, replaced or changed (none for delete and import).
    pub entity: Option<(EntityKind, Uuid)>,
    /// The config version after the Command. Equal to the version before when the
    /// Command changed nothing (deleting what is absent, importing the same config).
    pub version: u64,
    /// How many Events it produced.
    pub events: u64,
}

/// A Command's answer: what it did, or Kong's error body.
pub type Outcome = Result<Applied, KongError>;

/// The replicated state of a CP: the config plus the request-id log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Machine {
    pub config: ConfigState,
    pub requests: RequestLog,
    pub data_planes: DataPlanes,
}

// === impl Machine ===

impl Machine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a Command: the same request id is applied once, and its first outcome is
    /// returned to every retry. A rejected Command changes nothing but the request log.
    pub fn execute(&mut self, cmd: &Command) -> (Outcome, Vec<Event>) {
        if let Op::DataPlanes {
            reports,
            purge_before,
        } = &cmd.op
        {
            return (self.record_data_planes(reports, *purge_before), Vec::new());
        }
        if let Op::Group { .. } = &cmd.op {
            // Only a log entry is a group (see `execute_group`); a member never is.
            return (
                Err(KongError::operation_unsupported(
                    "a group of commands cannot be nested",
                )),
                Vec::new(),
            );
        }
        if let Some(previous) = self
            .requests
            .get(&cmd.request_id)
            .filter(|_| !crate::planted::forget_request_ids())
        {
            return (previous.clone(), Vec::new());
        }
        let (outcome, events) = match self.apply_op(&cmd.op, cmd.fixed) {
            Ok((entity, events)) => {
                let applied = Applied {
                    entity,
                    version: self.config.version(),
                    events: events.len() as u64,
                };
                (Ok(applied), events)
            }
            Err(e) => (Err(e), Vec::new()),
        };
        self.requests.record(cmd.request_id, outcome.clone());
        (outcome, events)
    }
}

impl Machine {
    /// Applies the members of an [`Op::Group`] log entry in order, each on its own as
    /// [`Machine::execute`] would: one member refused leaves the others applied. Returns
    /// one outcome per member and their events in order.
    pub fn execute_group(&mut self, commands: &[Command]) -> (Vec<Outcome>, Vec<Event>) {
        if commands.len() > MAX_GROUP_COMMANDS {
            let refused = KongError::operation_unsupported(format!(
                "a group carries at most {MAX_GROUP_COMMANDS} commands"
            ));
            return (vec![Err(refused); commands.len()], Vec::new());
        }
        let mut events = Vec::new();
        let outcomes = commands
            .iter()
            .map(|c| {
                let (outcome, ev) = self.execute(c);
                events.extend(ev);
                outcome
            })
            .collect();
        (outcomes, events)
    }

    fn record_data_planes(&mut self, reports: &[DpReport], purge_before: i64) -> Outcome {
        if reports.len() > MAX_REPORTS_PER_BATCH {
            return Err(KongError::operation_unsupported(format!(
                "a data-plane status batch holds at most {MAX_REPORTS_PER_BATCH} reports"
            )));
        }
        self.data_planes.apply(reports, purge_before);
        Ok(Applied {
            entity: None,
            version: self.config.version(),
            events: 0,
        })
    }
}

/// The entity a Command is about, if any.
type Subject = Option<(EntityKind, Uuid)>;
type Plan = (Subject, Vec<Change>);

impl Machine {
    /// Plans and applies one op; a batch applies its ops one after the other and, when
    /// one is refused, undoes the ones before it so that nothing changed.
    fn apply_op(&mut self, op: &Op, fixed: Fixed) -> Result<(Subject, Vec<Event>), KongError> {
        let Op::Batch { ops } = op else {
            let (entity, changes) = plan(&self.config, op, fixed)?;
            let events = self.commit(changes);
            return Ok((entity, events));
        };
        if ops.len() > MAX_BATCH_OPS {
            return Err(KongError::operation_unsupported(format!(
                "a batch holds at most {MAX_BATCH_OPS} operations"
            )));
        }
        if ops.iter().any(|o| matches!(o, Op::Batch { .. })) {
            return Err(KongError::operation_unsupported("batches cannot be nested"));
        }
        let start = self.config.version();
        let mut undo: Vec<(EntityKind, Uuid, Option<Entity>)> = Vec::new();
        let mut events = Vec::new();
        let mut first = None;
        for (i, sub) in ops.iter().enumerate() {
            match plan(&self.config, sub, batch_fixed(fixed, i)) {
                Ok((entity, changes)) => {
                    for c in &changes {
                        undo.push((c.kind(), c.id(), self.config.get(c.kind(), c.id()).cloned()));
                    }
                    events.extend(self.commit(changes));
                    if i == 0 {
                        first = entity;
                    }
                }
                Err(e) => {
                    for (kind, id, previous) in undo.into_iter().rev() {
                        self.config.restore(kind, id, previous, start);
                    }
                    debug_assert_eq!(self.config.recompute_hash(), self.config.hash());
                    return Err(e);
                }
            }
        }
        Ok((first, events))
    }

    /// Numbers planned changes with the next versions and applies them.
    fn commit(&mut self, changes: Vec<Change>) -> Vec<Event> {
        let base = self.config.version();
        let events: Vec<Event> = changes
            .into_iter()
            .enumerate()
            .map(|(i, change)| Event {
                version: base + 1 + i as u64,
                change,
            })
            .collect();
        for e in &events {
            self.config
                .apply(e)
                .expect("planned events follow the current version");
        }
        events
    }
}

/// Op `i` of a batch: its own id and entropy, the same time.
fn batch_fixed(fixed: Fixed, i: usize) -> Fixed {
    Fixed {
        id: Uuid::new_v5(&fixed.id, &(i as u64).to_be_bytes()),
        now: fixed.now,
        entropy: fixed.entropy
            ^ (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
    }
}

/// Decides what an op does, without changing anything.
fn plan(state: &ConfigState, op: &Op, fixed: Fixed) -> Result<Plan, KongError> {
    match op {
        Op::Create { kind, body } => {
            let v = parse_body(body)?;
            let ctx = ctx(state, fixed, None, true);
            let entity = Entity::from_json(*kind, &v, &ctx)?;
            if state.exists(*kind, entity.id()) {
                return Err(KongError::primary_key_violation(&entity.id().to_string()));
            }
            check_unique(state, &entity)?;
            Ok((Some((*kind, entity.id())), vec![Change::Put(entity)]))
        }
        Op::Upsert { kind, key, body } => {
            let mut v = parse_body(body)?;
            let existing = resolve(state, *kind, key);
            if let (EntityRef::Key(k), Some(field), Value::Object(obj)) =
                (key, kind.endpoint_key(), &mut v)
            {
                obj.insert(field.to_string(), Value::String(k.clone()));
            }
            let id = match key {
                EntityRef::Id(id) => *id,
                EntityRef::Key(_) => existing.map(|e| e.id()).unwrap_or(fixed.id),
            };
            if let (Some(old), Value::Object(obj)) = (existing, &mut v) {
                obj.entry("created_at")
                    .or_insert_with(|| Value::from(old.created_at()));
            }
            let ctx = ctx(state, fixed, Some(id), true);
            let entity = Entity::from_json(*kind, &v, &ctx)?;
            check_unique(state, &entity)?;
            Ok((Some((*kind, id)), vec![Change::Put(entity)]))
        }
        Op::Patch { kind, key, body } => {
            let patch = parse_body(body)?;
            let Some(existing) = resolve(state, *kind, key) else {
                return Err(not_found(key));
            };
            let mut current = existing.to_json();
            if let (Value::Object(cur), Value::Object(p)) = (&mut current, &patch) {
                // `url` is a shorthand for these four: it replaces them wholesale.
                if *kind == EntityKind::Service && p.contains_key("url") {
                    for f in ["protocol", "host", "port", "path"] {
                        cur.remove(f);
                    }
                }
                cur.remove("updated_at");
            }
            merge(&mut current, &patch);
            // A stored basic-auth password is already hashed; only a new one is hashed.
            let transform = patch.get("password").is_some();
            let ctx = ctx(state, fixed, Some(existing.id()), transform);
            let entity = Entity::from_json(*kind, &current, &ctx)?;
            check_unique(state, &entity)?;
            Ok((Some((*kind, entity.id())), vec![Change::Put(entity)]))
        }
        Op::Delete { kind, key } => {
            let Some(existing) = resolve(state, *kind, key) else {
                // Kong answers 204 for a delete of something absent.
                return Ok((None, Vec::new()));
            };
            let mut order = Vec::new();
            collect_cascade(
                state,
                *kind,
                existing.id(),
                &mut order,
                &mut BTreeSet::new(),
            )?;
            let changes = order
                .into_iter()
                .map(|(kind, id)| Change::Delete { kind, id })
                .collect();
            Ok((None, changes))
        }
        Op::Import { entities } => {
            check_import(entities)?;
            Ok((None, import_changes(state, entities)))
        }
        Op::Batch { .. } => unreachable!("Machine::apply_op handles batches"),
        Op::DataPlanes { .. } => Err(KongError::operation_unsupported(
            "data-plane status cannot be part of a batch",
        )),
        Op::Group { .. } => Err(KongError::operation_unsupported(
            "a group of commands cannot be part of a batch",
        )),
    }
}

fn ctx(state: &ConfigState, fixed: Fixed, force_id: Option<Uuid>, transform: bool) -> Ctx<'_> {
    Ctx {
        fixed,
        lookup: state,
        force_id,
        transform,
    }
}

fn parse_body(body: &str) -> Result<Value, KongError> {
    serde_json::from_str(body).map_err(|_| {
        let mut e = Errors::default();
        e.entity("expected a record");
        KongError::schema_violation(&e)
    })
}

/// The entity a URL names: by id, or by its endpoint key.
pub fn resolve<'a>(
    state: &'a ConfigState,
    kind: EntityKind,
    key: &EntityRef,
) -> Option<&'a Entity> {
    match key {
        EntityRef::Id(id) => state.get(kind, *id),
        EntityRef::Key(k) => state
            .find_by_key(kind, k)
            .and_then(|id| state.get(kind, id)),
    }
}

fn not_found(key: &EntityRef) -> KongError {
    match key {
        EntityRef::Id(id) => KongError::not_found(&[("id", LuaValue::Str(id.to_string()))]),
        EntityRef::Key(k) => KongError::not_found(&[("id", LuaValue::Str(k.clone()))]),
    }
}

/// RFC 7396-style merge as Kong's PATCH does it: records merge field by field, arrays
/// and scalars are replaced, `null` clears.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    merge(t.get_mut(k).expect("checked above"), v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The fields that make up a unique index, for Kong's `UNIQUE violation detected on` body.
fn unique_fields(kind: EntityKind, index: &'static str) -> &'static [&'static str] {
    match (kind, index) {
        (EntityKind::Plugin, "cache_key") => &["consumer", "name", "route", "service"],
        (EntityKind::Target, _) => &["target", "upstream"],
        (EntityKind::Acl, _) => &["consumer", "group"],
        (_, "name") => &["name"],
        (_, "username") => &["username"],
        (_, "custom_id") => &["custom_id"],
        (_, "instance_name") => &["instance_name"],
        (_, "key") => &["key"],
        (_, "cert_digest") => &["cert_digest"],
        _ => &[],
    }
}

fn lua_value(v: &Value) -> LuaValue {
    match v {
        Value::String(s) => LuaValue::Str(s.clone()),
        Value::Number(n) => LuaValue::Int(n.as_i64().unwrap_or_default()),
        Value::Object(o) => {
            LuaValue::Table(o.iter().map(|(k, v)| (k.clone(), lua_value(v))).collect())
        }
        _ => LuaValue::Null,
    }
}

fn check_unique(state: &ConfigState, entity: &Entity) -> Result<(), KongError> {
    let kind = entity.kind();
    for (index, key) in entity.unique_keys() {
        if let Some(other) = state.get_by_unique(kind, index, &key) {
            if other.id() != entity.id() {
                let json = entity.to_json();
                let pairs: Vec<(&str, LuaValue)> = unique_fields(kind, index)
                    .iter()
                    .map(|f| (*f, json.get(*f).map(lua_value).unwrap_or(LuaValue::Null)))
                    .collect();
                return Err(KongError::unique_violation(&pairs));
            }
        }
    }
    Ok(())
}

/// Children first, each entity once; a restricting child refuses the whole delete.
fn collect_cascade(
    state: &ConfigState,
    kind: EntityKind,
    id: Uuid,
    order: &mut Vec<(EntityKind, Uuid)>,
    seen: &mut BTreeSet<(EntityKind, Uuid)>,
) -> Result<(), KongError> {
    if !seen.insert((kind, id)) {
        return Ok(());
    }
    let children: Vec<(EntityKind, Uuid)> = state.children_of(kind, id).collect();
    for (ck, cid) in children {
        let child = state
            .get(ck, cid)
            .expect("the children index follows the entities");
        // Which relation links them decides: a plugin cascades with its route.
        let fks = child.foreign_keys();
        let relation = ck
            .relations()
            .iter()
            .zip(fks)
            .find(|(r, fk)| r.parent == kind && *fk == Some(id))
            .map(|(r, _)| r)
            .expect("the children index follows the foreign keys");
        match relation.on_delete {
            OnDelete::Restrict => {
                return Err(KongError::foreign_key_restricted(kind.table(), ck.table()))
            }
            OnDelete::Cascade => collect_cascade(state, ck, cid, order, seen)?,
        }
    }
    order.push((kind, id));
    Ok(())
}

/// Checks that an import is a consistent config on its own: no duplicate ids, no
/// duplicate unique keys, every foreign key pointing inside the set.
fn check_import(entities: &[Entity]) -> Result<(), KongError> {
    let mut ids: BTreeSet<(EntityKind, Uuid)> = BTreeSet::new();
    let mut errors = Map::new();
    for e in entities {
        if !ids.insert((e.kind(), e.id())) {
            push_error(
                &mut errors,
                e.kind(),
                format!("uniqueness violation: '{}' entity with primary key set to '{}' already declared", e.kind().table(), e.id()),
            );
        }
    }
    let mut unique: BTreeMap<(EntityKind, &'static str, String), Uuid> = BTreeMap::new();
    for e in entities {
        for (index, key) in e.unique_keys() {
            if let Some(other) = unique.insert((e.kind(), index, key.clone()), e.id()) {
                if other != e.id() {
                    push_error(
                        &mut errors,
                        e.kind(),
                        format!("uniqueness violation: '{}' entity with {index} set to '{key}' already declared", e.kind().table()),
                    );
                }
            }
        }
        for (rel, fk) in e.kind().relations().iter().zip(e.foreign_keys()) {
            if let Some(parent) = fk {
                if !ids.contains(&(rel.parent, parent)) {
                    push_error(
                        &mut errors,
                        e.kind(),
                        format!(
                            "invalid reference '{}: {parent}' (no such entry in '{}')",
                            rel.field,
                            rel.parent.table()
                        ),
                    );
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(KongError::declarative(&Value::Object(errors)))
    }
}

fn push_error(errors: &mut Map<String, Value>, kind: EntityKind, msg: String) {
    let slot = errors
        .entry(kind.table().to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = slot {
        list.push(Value::String(msg));
    }
}

/// The changes that turn `state` into exactly `entities`: deletes first (children before
/// parents), then puts of what is new or changed (parents before children). Empty when
/// an import of `entities` would change nothing — what `POST /config?check_hash=1` asks.
pub fn import_changes(state: &ConfigState, entities: &[Entity]) -> Vec<Change> {
    let wanted: BTreeMap<(EntityKind, Uuid), &Entity> =
        entities.iter().map(|e| ((e.kind(), e.id()), e)).collect();
    let mut changes = Vec::new();
    for kind in EntityKind::ALL.iter().rev() {
        for e in state.iter_kind(*kind) {
            if !wanted.contains_key(&(*kind, e.id())) {
                changes.push(Change::Delete {
                    kind: *kind,
                    id: e.id(),
                });
            }
        }
    }
    for ((kind, id), e) in &wanted {
        match state.get(*kind, *id) {
            Some(old) if old == *e || same_but_timestamps(old, e) => {}
            _ => changes.push(Change::Put((*e).clone())),
        }
    }
    changes
}

/// Re-importing the file a config came from changes nothing, even though a file without
/// timestamps gets new ones at each load.
fn same_but_timestamps(a: &Entity, b: &Entity) -> bool {
    let strip = |e: &Entity| {
        let mut v = e.to_json();
        if let Value::Object(o) = &mut v {
            o.remove("created_at");
            o.remove("updated_at");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests;
