//! Reading an untrusted JSON object into a typed entity, the way Kong's schema library
//! does: every field is checked, every failure is recorded with Kong's message, and the
//! caller gets all of them at once.
//!
//! The accessors return `None` both for "absent" and for "invalid"; an invalid value
//! leaves an error behind, so a caller fills defaults freely and [`Reader::finish`]
//! decides whether the record stands.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Errors, FieldError};

/// Strings in Kong's schemas have `len_min = 1` unless a field says otherwise.
const MSG_EMPTY: &str = "length must be at least 1";

/// The largest integer a Kong schema accepts where it sets no bound (Lua number precision).
pub const MAX_SAFE_INT: i64 = 9_007_199_254_740_991;

pub struct Reader<'a> {
    obj: &'a Map<String, Value>,
    seen: BTreeSet<&'a str>,
    errs: Errors,
    /// Field names that are accepted and ignored (e.g. `created_at` in a plugin config).
    ignored: &'static [&'static str],
}

/// The result of reading a nested value: `Err` holds what goes into the parent's `fields`.
pub type Nested<T> = Result<T, FieldError>;

// === impl Reader ===

impl<'a> Reader<'a> {
    /// `Err("expected a record")` when `v` is not an object.
    pub fn new(v: &'a Value) -> Result<Self, FieldError> {
        match v {
            Value::Object(obj) => Ok(Self::of(obj)),
            _ => Err(FieldError::msg("expected a record")),
        }
    }

    pub fn of(obj: &'a Map<String, Value>) -> Self {
        Reader {
            obj,
            seen: BTreeSet::new(),
            errs: Errors::default(),
            ignored: &[],
        }
    }

    pub fn ignoring(mut self, names: &'static [&'static str]) -> Self {
        self.ignored = names;
        self
    }

    pub fn errors_mut(&mut self) -> &mut Errors {
        &mut self.errs
    }

    pub fn has_errors(&self) -> bool {
        !self.errs.is_empty()
    }

    pub fn field_has_error(&self, key: &str) -> bool {
        self.errs.fields.contains_key(key)
    }

    /// The raw value of a field, `None` when absent or JSON `null` (Kong treats an explicit
    /// null on input as "not set").
    pub fn raw(&mut self, key: &'a str) -> Option<&'a Value> {
        let (k, v) = self.obj.get_key_value(key)?;
        self.seen.insert(k.as_str());
        if v.is_null() {
            None
        } else {
            Some(v)
        }
    }

    /// Whether the input names the field at all (null included).
    pub fn present(&self, key: &str) -> bool {
        self.obj.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn error(&mut self, key: &str, msg: impl Into<String>) {
        self.errs.field(key, msg);
    }

    pub fn nested_error(&mut self, key: &str, err: FieldError) {
        self.errs.nested(key, err);
    }

    pub fn entity_error(&mut self, msg: impl Into<String>) {
        self.errs.entity(msg);
    }

    pub fn required<T>(&mut self, key: &str, v: Option<T>) -> Option<T> {
        if v.is_none() && !self.field_has_error(key) {
            self.error(key, "required field missing");
        }
        v
    }

    // --- scalars ---

    pub fn string(&mut self, key: &'a str) -> Option<String> {
        let v = self.raw(key)?;
        match check_string(v) {
            Ok(s) => Some(s),
            Err(e) => {
                self.nested_error(key, e);
                None
            }
        }
    }

    pub fn req_string(&mut self, key: &'a str) -> Option<String> {
        let v = self.string(key);
        self.required(key, v)
    }

    /// A string that must pass `check` (which returns Kong's message on failure).
    pub fn string_with(
        &mut self,
        key: &'a str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let s = self.string(key)?;
        match check(&s) {
            Ok(()) => Some(s),
            Err(m) => {
                self.error(key, m);
                None
            }
        }
    }

    pub fn one_of(&mut self, key: &'a str, allowed: &[&str]) -> Option<String> {
        self.string_with(key, |s| check_one_of(s, allowed))
    }

    pub fn boolean(&mut self, key: &'a str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.error(key, "expected a boolean");
                None
            }
        }
    }

    pub fn integer(&mut self, key: &'a str) -> Option<i64> {
        let v = self.raw(key)?;
        match as_integer(v) {
            Ok(i) => Some(i),
            Err(m) => {
                self.error(key, m);
                None
            }
        }
    }

    /// An integer in `lo..=hi`, with Kong's `value should be between` message.
    pub fn int_between(&mut self, key: &'a str, lo: i64, hi: i64) -> Option<i64> {
        let i = self.integer(key)?;
        match check_between(i as f64, lo as f64, hi as f64) {
            Ok(()) => Some(i),
            Err(m) => {
                self.error(key, m);
                None
            }
        }
    }

    pub fn number(&mut self, key: &'a str) -> Option<f64> {
        match self.raw(key)? {
            Value::Number(n) => n.as_f64(),
            _ => {
                self.error(key, "expected a number");
                None
            }
        }
    }

    pub fn uuid(&mut self, key: &'a str) -> Option<Uuid> {
        let v = self.raw(key)?;
        match v.as_str().map(parse_uuid) {
            Some(Ok(u)) => Some(u),
            Some(Err(m)) => {
                self.error(key, m);
                None
            }
            None => {
                self.error(key, "expected a string");
                None
            }
        }
    }

    // --- collections ---

    /// An array (or set) of strings, each passing `check`; element errors are reported by
    /// position. A set silently drops duplicates, as Kong's sets do.
    pub fn strings(
        &mut self,
        key: &'a str,
        set: bool,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        let v = self.raw(key)?;
        match read_strings(v, set, check) {
            Ok(list) => Some(list),
            Err(e) => {
                self.nested_error(key, e);
                None
            }
        }
    }

    /// An array of integers, each in `lo..=hi`.
    pub fn integers(&mut self, key: &'a str, lo: i64, hi: i64) -> Option<Vec<i64>> {
        let v = self.raw(key)?;
        let Some(items) = as_array(v) else {
            self.error(key, "expected an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut errs = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            match as_integer(item)
                .and_then(|n| check_between(n as f64, lo as f64, hi as f64).map(|_| n))
            {
                Ok(n) => out.push(n),
                Err(m) => {
                    errs.insert(i + 1, FieldError::Msg(m));
                }
            }
        }
        if errs.is_empty() {
            Some(out)
        } else {
            self.nested_error(key, FieldError::Items(errs));
            None
        }
    }

    /// A nested record read by `f`; its errors nest under `key`.
    pub fn record<T>(&mut self, key: &'a str, f: impl FnOnce(&mut Reader<'a>) -> T) -> Option<T> {
        let v = self.raw(key)?;
        match read_record(v, f) {
            Ok(t) => Some(t),
            Err(e) => {
                self.nested_error(key, e);
                None
            }
        }
    }

    /// An array of records, each read by `f`.
    pub fn records<T>(&mut self, key: &'a str, f: impl Fn(&mut Reader<'a>) -> T) -> Option<Vec<T>> {
        let v = self.raw(key)?;
        let Some(items) = as_array(v) else {
            self.error(key, "expected an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut errs = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            match read_record(item, &f) {
                Ok(t) => out.push(t),
                Err(e) => {
                    errs.insert(i + 1, e);
                }
            }
        }
        if errs.is_empty() {
            Some(out)
        } else {
            self.nested_error(key, FieldError::Items(errs));
            None
        }
    }

    /// A map of string keys to values read by `f`.
    pub fn map<T>(
        &mut self,
        key: &'a str,
        f: impl Fn(&str, &Value) -> Result<T, FieldError>,
    ) -> Option<BTreeMap<String, T>> {
        let v = self.raw(key)?;
        let Value::Object(obj) = v else {
            self.error(key, "expected a map");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut errs = Errors::default();
        for (k, item) in obj {
            match f(k, item) {
                Ok(t) => {
                    out.insert(k.clone(), t);
                }
                Err(e) => errs.nested(k.clone(), e),
            }
        }
        if errs.is_empty() {
            Some(out)
        } else {
            self.nested_error(key, FieldError::Record(errs));
            None
        }
    }

    /// Ends the record: every field not read is an `unknown field`.
    pub fn finish(mut self) -> Result<(), Errors> {
        for k in self.obj.keys() {
            if !self.seen.contains(k.as_str()) && !self.ignored.contains(&k.as_str()) {
                self.errs.field(k.clone(), "unknown field");
            }
        }
        if self.errs.is_empty() {
            Ok(())
        } else {
            Err(self.errs)
        }
    }

    /// Like [`Reader::finish`], for a nested record.
    pub fn finish_nested(self) -> Nested<()> {
        self.finish().map_err(FieldError::Record)
    }
}

fn read_record<'a, T>(v: &'a Value, f: impl FnOnce(&mut Reader<'a>) -> T) -> Nested<T> {
    let mut r = Reader::new(v)?;
    let t = f(&mut r);
    r.finish_nested()?;
    Ok(t)
}

/// Kong's sets and arrays also accept an empty JSON object (`{}`), which is how an empty
/// Lua table is encoded by some clients.
fn as_array(v: &Value) -> Option<&[Value]> {
    static EMPTY: [Value; 0] = [];
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) if o.is_empty() => Some(&EMPTY),
        _ => None,
    }
}

pub fn read_strings(
    v: &Value,
    set: bool,
    check: impl Fn(&str) -> Result<(), String>,
) -> Nested<Vec<String>> {
    let Some(items) = as_array(v) else {
        return Err(FieldError::msg(if set {
            "expected a set"
        } else {
            "expected an array"
        }));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut errs = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let res = check_string(item).and_then(|s| match check(&s) {
            Ok(()) => Ok(s),
            Err(m) => Err(FieldError::Msg(m)),
        });
        match res {
            Ok(s) => {
                if !(set && out.contains(&s)) {
                    out.push(s);
                }
            }
            Err(e) => {
                errs.insert(i + 1, e);
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(FieldError::Items(errs))
    }
}

pub fn check_string(v: &Value) -> Nested<String> {
    match v {
        Value::String(s) if s.is_empty() => Err(FieldError::msg(MSG_EMPTY)),
        Value::String(s) => Ok(s.clone()),
        _ => Err(FieldError::msg("expected a string")),
    }
}

pub fn as_integer(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INT as f64 => Ok(f as i64),
                    _ => Err("expected an integer".into()),
                }
            }
        }
        _ => Err("expected an integer".into()),
    }
}

pub fn check_between(v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v < lo || v > hi {
        Err(format!("value should be between {lo} and {hi}"))
    } else {
        Ok(())
    }
}

pub fn check_one_of(s: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(format!("expected one of: {}", allowed.join(", ")))
    }
}

pub fn parse_uuid(s: &str) -> Result<Uuid, String> {
    // Kong accepts only the canonical hyphenated form.
    if s.len() == 36 {
        if let Ok(u) = Uuid::parse_str(s) {
            return Ok(u);
        }
    }
    Err("expected a valid UUID".into())
}

#[cfg(test)]
mod tests;
