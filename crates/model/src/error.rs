//! Kong's error bodies: the codes of `kong/db/errors.lua`, the `fields` tree that mirrors
//! the input, and the one-line message Kong derives from it.
//!
//! Every admin client that speaks Kong (decK, client libraries, UIs) keys on `code` and
//! parses `fields`, so the shapes here are part of the public contract.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Kong's error codes (`kong/db/errors.lua`). The numbers are the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidPrimaryKey,
    SchemaViolation,
    PrimaryKeyViolation,
    ForeignKeyViolation,
    UniqueViolation,
    NotFound,
    InvalidOffset,
    DatabaseError,
    InvalidSize,
    InvalidUnique,
    InvalidOptions,
    OperationUnsupported,
    ForeignKeysUnresolved,
    DeclarativeConfig,
}

impl ErrorCode {
    pub fn number(self) -> u16 {
        match self {
            ErrorCode::InvalidPrimaryKey => 1,
            ErrorCode::SchemaViolation => 2,
            ErrorCode::PrimaryKeyViolation => 3,
            ErrorCode::ForeignKeyViolation => 4,
            ErrorCode::UniqueViolation => 5,
            ErrorCode::NotFound => 6,
            ErrorCode::InvalidOffset => 7,
            ErrorCode::DatabaseError => 8,
            ErrorCode::InvalidSize => 9,
            ErrorCode::InvalidUnique => 10,
            ErrorCode::InvalidOptions => 11,
            ErrorCode::OperationUnsupported => 12,
            ErrorCode::ForeignKeysUnresolved => 13,
            ErrorCode::DeclarativeConfig => 14,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidPrimaryKey => "invalid primary key",
            ErrorCode::SchemaViolation => "schema violation",
            ErrorCode::PrimaryKeyViolation => "primary key violation",
            ErrorCode::ForeignKeyViolation => "foreign key violation",
            ErrorCode::UniqueViolation => "unique constraint violation",
            ErrorCode::NotFound => "not found",
            ErrorCode::InvalidOffset => "invalid offset",
            ErrorCode::DatabaseError => "database error",
            ErrorCode::InvalidSize => "invalid size",
            ErrorCode::InvalidUnique => "invalid unique",
            ErrorCode::InvalidOptions => "invalid options",
            ErrorCode::OperationUnsupported => "operation unsupported",
            ErrorCode::ForeignKeysUnresolved => "foreign keys unresolved",
            ErrorCode::DeclarativeConfig => "invalid declarative configuration",
        }
    }

    /// The HTTP status Kong's Admin API answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::UniqueViolation => 409,
            ErrorCode::NotFound => 404,
            ErrorCode::OperationUnsupported => 405,
            ErrorCode::DatabaseError => 500,
            _ => 400,
        }
    }
}

/// One node of the `fields` tree of a schema violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldError {
    Msg(String),
    /// Errors inside a record (nested `fields`, possibly with its own `@entity`).
    Record(Errors),
    /// Errors of array elements by 1-based position, as Lua indexes them.
    Items(BTreeMap<usize, FieldError>),
}

/// The `fields` of a schema violation: `@entity` messages plus errors by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub entity: Vec<String>,
    pub fields: BTreeMap<String, FieldError>,
}

// === impl Errors ===

impl Errors {
    pub fn is_empty(&self) -> bool {
        self.entity.is_empty() && self.fields.is_empty()
    }

    /// Records `msg` for `field` unless that field already has an error: Kong reports the
    /// first failure of a field, not every one.
    pub fn field(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.fields
            .entry(field.into())
            .or_insert_with(|| FieldError::Msg(msg.into()));
    }

    pub fn nested(&mut self, field: impl Into<String>, err: FieldError) {
        self.fields.entry(field.into()).or_insert(err);
    }

    pub fn entity(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if !self.entity.contains(&msg) {
            self.entity.push(msg);
        }
    }

    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if !self.entity.is_empty() {
            map.insert(
                "@entity".into(),
                Value::Array(self.entity.iter().cloned().map(Value::String).collect()),
            );
        }
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.to_json());
        }
        Value::Object(map)
    }

    /// Kong's one-line summary (`schema_violation` in errors.lua): `@entity` messages first,
    /// then fields in sorted order; one level of nesting is spelled `a.b: msg`, deeper
    /// levels are printed as Lua tables.
    pub fn summary_parts(&self) -> Vec<String> {
        let mut out: Vec<String> = self.entity.clone();
        for (name, err) in &self.fields {
            match err {
                FieldError::Msg(m) => out.push(format!("{name}: {m}")),
                FieldError::Record(inner) => {
                    for (sub, v) in inner.sorted_children() {
                        out.push(format!("{name}.{sub}: {}", v.lua_pretty()));
                    }
                }
                FieldError::Items(items) => {
                    for (i, v) in items {
                        out.push(format!("{name}.{i}: {}", v.lua_pretty()));
                    }
                }
            }
        }
        out
    }

    /// The children of a record in Lua's sorted-key order; `@entity` sorts first.
    fn sorted_children(&self) -> Vec<(String, FieldError)> {
        let mut out = Vec::new();
        if !self.entity.is_empty() {
            let items = self
                .entity
                .iter()
                .enumerate()
                .map(|(i, m)| (i + 1, FieldError::Msg(m.clone())))
                .collect();
            out.push(("@entity".to_string(), FieldError::Items(items)));
        }
        for (k, v) in &self.fields {
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// The record as `pl.pretty.write(t)` prints it: one entry per line, two spaces a
    /// level, keys sorted, strings quoted.
    fn lua_pretty(&self, level: usize) -> String {
        let entries: Vec<String> = self
            .sorted_children()
            .into_iter()
            .map(|(k, v)| format!("{} = {}", lua_key(&k), v.lua_pretty_value(level + 1)))
            .collect();
        lua_block(entries, level)
    }
}

impl FieldError {
    pub fn msg(m: impl Into<String>) -> Self {
        FieldError::Msg(m.into())
    }

    pub fn to_json(&self) -> Value {
        match self {
            FieldError::Msg(m) => Value::String(m.clone()),
            FieldError::Record(e) => e.to_json(),
            FieldError::Items(items) => {
                let len = items.keys().copied().max().unwrap_or(0);
                let mut arr = vec![Value::Null; len];
                for (i, v) in items {
                    arr[i - 1] = v.to_json();
                }
                Value::Array(arr)
            }
        }
    }

    /// How a nested error reads in the one-line summary: a message as it is, a table
    /// in `pl.pretty` form.
    fn lua_pretty(&self) -> String {
        match self {
            FieldError::Msg(m) => m.clone(),
            other => other.lua_pretty_value(0),
        }
    }

    fn lua_pretty_value(&self, level: usize) -> String {
        match self {
            FieldError::Msg(m) => lua_string(m),
            FieldError::Record(e) => e.lua_pretty(level),
            FieldError::Items(items) => {
                // Penlight prints the sequence 1..n bare, then the rest as `[i] = v`.
                let mut dense = 0;
                while items.contains_key(&(dense + 1)) {
                    dense += 1;
                }
                let entries = items
                    .iter()
                    .map(|(i, v)| {
                        let val = v.lua_pretty_value(level + 1);
                        if *i <= dense {
                            val
                        } else {
                            format!("[{i}] = {val}")
                        }
                    })
                    .collect();
                lua_block(entries, level)
            }
        }
    }
}

fn lua_block(entries: Vec<String>, level: usize) -> String {
    if entries.is_empty() {
        return "{}".to_string();
    }
    let inner = "  ".repeat(level + 1);
    let outer = "  ".repeat(level);
    let body: Vec<String> = entries.into_iter().map(|e| format!("{inner}{e}")).collect();
    format!("{{\n{}\n{outer}}}", body.join(",\n"))
}

fn lua_key(k: &str) -> String {
    let ident = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if ident {
        k.to_string()
    } else {
        format!("[{}]", lua_string(k))
    }
}

/// A string as `pl.pretty` writes it: double-quoted unless it holds a double quote.
pub fn lua_string(s: &str) -> String {
    if s.contains('"') && !s.contains('\'') {
        format!("'{s}'")
    } else {
        format!("\"{}\"", s.replace('"', "\\\""))
    }
}

/// A value in the flat Lua-table notation Kong prints in messages, e.g. `{name="x"}`.
pub fn lua_table(pairs: &[(&str, LuaValue)]) -> String {
    let mut sorted: Vec<&(&str, LuaValue)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", lua_key(k), v.render()))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// The values that appear inside Kong's messages about keys.
#[derive(Debug, Clone)]
pub enum LuaValue {
    Str(String),
    Int(i64),
    Null,
    Table(Vec<(String, LuaValue)>),
}

impl LuaValue {
    fn render(&self) -> String {
        match self {
            LuaValue::Str(s) => lua_string(s),
            LuaValue::Int(i) => i.to_string(),
            LuaValue::Null => "null".to_string(),
            LuaValue::Table(pairs) => {
                let refs: Vec<(&str, LuaValue)> =
                    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                lua_table(&refs)
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            LuaValue::Str(s) => Value::String(s.clone()),
            LuaValue::Int(i) => Value::from(*i),
            LuaValue::Null => Value::Null,
            LuaValue::Table(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A complete Kong error body: `{"code":N,"name":"…","message":"…","fields":{…}}`.
///
/// `fields` is kept as JSON text so that rejections can be stored in the replicated
/// request log (postcard cannot carry a self-describing JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KongError {
    pub code: ErrorCode,
    pub message: String,
    /// `fields` (or `options` for code 11) as compact JSON text.
    pub fields: Option<String>,
}

// === impl KongError ===

impl KongError {
    fn new(code: ErrorCode, message: impl Into<String>, fields: Option<Value>) -> Self {
        KongError {
            code,
            message: message.into(),
            fields: fields.map(|f| f.to_string()),
        }
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn fields_json(&self) -> Option<Value> {
        self.fields
            .as_deref()
            .map(|f| serde_json::from_str(f).expect("fields were produced by serde_json"))
    }

    /// The body an Admin API client receives.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("code".into(), Value::from(self.code.number()));
        map.insert("name".into(), Value::from(self.code.name()));
        map.insert("message".into(), Value::from(self.message.clone()));
        if let Some(f) = self.fields_json() {
            let key = if self.code == ErrorCode::InvalidOptions {
                "options"
            } else {
                "fields"
            };
            map.insert(key.into(), f);
        }
        Value::Object(map)
    }

    pub fn schema_violation(errors: &Errors) -> Self {
        let parts = errors.summary_parts();
        let message = if parts.len() == 1 {
            format!("schema violation ({})", parts[0])
        } else {
            format!("{} schema violations ({})", parts.len(), parts.join("; "))
        };
        Self::new(ErrorCode::SchemaViolation, message, Some(errors.to_json()))
    }

    /// `UNIQUE violation detected on '{name="x"}'`.
    pub fn unique_violation(key: &[(&str, LuaValue)]) -> Self {
        let message = format!("UNIQUE violation detected on '{}'", lua_table(key));
        Self::new(ErrorCode::UniqueViolation, message, Some(lua_json(key)))
    }

    pub fn primary_key_violation(id: &str) -> Self {
        let key = [("id", LuaValue::Str(id.to_string()))];
        let message = format!("primary key violation on key '{}'", lua_table(&key));
        Self::new(
            ErrorCode::PrimaryKeyViolation,
            message,
            Some(lua_json(&key)),
        )
    }

    pub fn invalid_primary_key(key: &[(&str, LuaValue)]) -> Self {
        let message = format!("invalid primary key: '{}'", lua_table(key));
        Self::new(ErrorCode::InvalidPrimaryKey, message, Some(lua_json(key)))
    }

    /// A foreign key given by id that names no entity.
    pub fn foreign_key_violation(field: &str, id: &str, parent: &str) -> Self {
        let key = [("id", LuaValue::Str(id.to_string()))];
        let message = format!(
            "the foreign key '{}' does not reference an existing '{parent}' entity.",
            lua_table(&key)
        );
        let mut fields = Map::new();
        fields.insert(field.to_string(), lua_json(&key));
        Self::new(
            ErrorCode::ForeignKeyViolation,
            message,
            Some(Value::Object(fields)),
        )
    }

    /// Deleting a parent that a child still references (`on_delete = restrict`).
    pub fn foreign_key_restricted(parent: &str, child: &str) -> Self {
        let message = format!("an existing '{child}' entity references this '{parent}' entity");
        let mut fields = Map::new();
        fields.insert("@referenced_by".into(), Value::from(child));
        Self::new(
            ErrorCode::ForeignKeyViolation,
            message,
            Some(Value::Object(fields)),
        )
    }

    /// A foreign key given by endpoint key (e.g. `{"name":"x"}`) that resolves to nothing.
    pub fn foreign_key_unresolved(field: &str, key_name: &str, value: &str, parent: &str) -> Self {
        let detail = format!(
            "the foreign key cannot be resolved with '{}' for an existing '{parent}' entity",
            lua_table(&[(key_name, LuaValue::Str(value.to_string()))])
        );
        let message = format!("foreign key unresolved ({field}.{key_name}: {detail})");
        let mut inner = Map::new();
        inner.insert(key_name.to_string(), Value::from(detail));
        let mut fields = Map::new();
        fields.insert(field.to_string(), Value::Object(inner));
        Self::new(
            ErrorCode::ForeignKeysUnresolved,
            message,
            Some(Value::Object(fields)),
        )
    }

    pub fn not_found(key: &[(&str, LuaValue)]) -> Self {
        let message = format!(
            "could not find the entity with primary key '{}'",
            lua_table(key)
        );
        Self::new(ErrorCode::NotFound, message, Some(lua_json(key)))
    }

    pub fn invalid_offset(offset: &str, why: &str) -> Self {
        Self::new(
            ErrorCode::InvalidOffset,
            format!("'{offset}' is not a valid offset: {why}"),
            None,
        )
    }

    pub fn invalid_size(why: &str) -> Self {
        Self::new(ErrorCode::InvalidSize, why, None)
    }

    pub fn invalid_options(options: &BTreeMap<String, String>) -> Self {
        let parts: Vec<String> = options.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let message = if parts.len() == 1 {
            format!("invalid option ({})", parts[0])
        } else {
            format!("{} option violations ({})", parts.len(), parts.join("; "))
        };
        let json = options
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        Self::new(
            ErrorCode::InvalidOptions,
            message,
            Some(Value::Object(json)),
        )
    }

    pub fn operation_unsupported(why: impl Into<String>) -> Self {
        Self::new(ErrorCode::OperationUnsupported, why, None)
    }

    /// Code 14: errors that mirror the structure of a declarative file.
    pub fn declarative(errors: &Value) -> Self {
        let message = format!("declarative config is invalid: {}", json_as_lua(errors));
        Self::new(ErrorCode::DeclarativeConfig, message, Some(errors.clone()))
    }
}

impl fmt::Display for KongError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KongError {}

fn lua_json(pairs: &[(&str, LuaValue)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect(),
    )
}

/// A JSON error tree in the Lua-table notation of `pl.pretty.write(t, "")`.
pub fn json_as_lua(v: &Value) -> String {
    match v {
        Value::String(s) => lua_string(s),
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let dense = items.iter().all(|i| !i.is_null());
            let parts: Vec<String> = items
                .iter()
                .enumerate()
                .filter(|(_, i)| !i.is_null())
                .map(|(i, item)| {
                    if dense {
                        json_as_lua(item)
                    } else {
                        format!("[{}]={}", i + 1, json_as_lua(item))
                    }
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}={}", lua_key(k), json_as_lua(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests;
