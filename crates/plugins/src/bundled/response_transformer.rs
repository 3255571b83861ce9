//! response-transformer: rewrites the response headers, then the top-level properties
//! of a JSON object body, each in Kong's order: remove, rename, replace, add, append.
//! `json_types` turns `replace`, `add` and `append` values into numbers or booleans.
//!
//! The body is only touched when the response's Content-Type is `application/json`
//! (parameters allowed) and some `json` operation is configured; a body that is not
//! JSON is left as it came (Kong logs the same). Differences from Kong: a JSON body that
//! is valid but not an object passes unchanged (Kong re-encodes it), and a transformed
//! object keeps its key order and is written by serde_json (Kong's cjson orders keys by
//! its hash table and escapes `/`).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tidegate_model::plugins::response_transformer::{JsonTransforms, ResponseTransformerConfig};

use super::request_size_limiting::lua_number;
use super::util::{header_name, header_pairs, header_renames, names, pairs, split, Ops};
use crate::context::Ctx;
use crate::phase::Plugin;
use crate::runtime::Runtime;

pub struct ResponseTransformer {
    headers: HeaderOps,
    json: Option<JsonOps>,
}

#[derive(Default)]
struct HeaderOps {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    replace: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
    /// Kong looks headers up in a copy taken before its first change. That copy is
    /// only needed when a step looks up a header an earlier step changed; otherwise the
    /// live headers give the same answers and nothing is copied.
    snapshot: bool,
}

/// Values are rendered (and typed) once, when the instance is built.
type JsonOps = Ops<Value>;

pub fn build(c: &ResponseTransformerConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(ResponseTransformer::new(c)?))
}

/// Kong's `json_value`: the value as cjson encodes a string, without the quotes and
/// with `\"` and `\/` turned back (so other escapes, such as a doubled backslash,
/// stay), then cast to `json_type`. A missing value encodes as `null`. `None` when a
/// number does not parse, which Kong skips.
fn json_value(value: Option<&str>, json_type: Option<&str>) -> Option<Value> {
    let v = match value {
        None => "null".to_string(),
        Some(s) => {
            let mut enc = String::with_capacity(s.len());
            for ch in s.chars() {
                match ch {
                    '"' => enc.push_str("\\\""),
                    '\\' => enc.push_str("\\\\"),
                    '/' => enc.push_str("\\/"),
                    '\u{8}' => enc.push_str("\\b"),
                    '\u{c}' => enc.push_str("\\f"),
                    '\n' => enc.push_str("\\n"),
                    '\r' => enc.push_str("\\r"),
                    '\t' => enc.push_str("\\t"),
                    c if (c as u32) < 0x20 || c == '\u{7f}' => {
                        enc.push_str(&format!("\\u{:04x}", c as u32));
                    }
                    c => enc.push(c),
                }
            }
            enc.replace("\\\"", "\"").replace("\\/", "/")
        }
    };
    match json_type {
        Some("number") => {
            let n = lua_number(&v)?;
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Some(Value::from(n as i64))
            } else {
                serde_json::Number::from_f64(n).map(Value::Number)
            }
        }
        Some("boolean") => Some(Value::Bool(v == "true")),
        _ => Some(Value::String(v)),
    }
}

fn json_values(t: &JsonTransforms) -> Vec<(String, Value)> {
    t.json
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let (name, value) = split(e);
            let ty = t.json_types.get(i).map(String::as_str);
            Some((name.to_string(), json_value(value, ty)?))
        })
        .collect()
}

/// `header_transformer.is_json_body`: some comma-separated media type parses as
/// exactly `application/json`, with or without parameters.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    ct.split(',')
        .any(|mt| media_type(mt.trim()) == Some(("application", "json")))
}

/// RFC 2045 `type "/" subtype *(";" parameter)`, as Kong's `parse_mime_type` reads it:
/// the whole string must parse.
fn media_type(s: &str) -> Option<(&str, &str)> {
    fn token_len(s: &str) -> usize {
        s.bytes()
            .take_while(|&b| b > 0x20 && b < 0x7f && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            .count()
    }
    let t = token_len(s);
    if t == 0 || s.as_bytes().get(t) != Some(&b'/') {
        return None;
    }
    let rest = &s[t + 1..];
    let st = token_len(rest);
    if st == 0 {
        return None;
    }
    let (ty, subtype) = (&s[..t], &rest[..st]);
    let mut p = &rest[st..];
    let spacing = |p: &str| p.trim_start_matches([' ', '\t']).len();
    while !p.is_empty() {
        p = &p[p.len() - spacing(p)..];
        p = p.strip_prefix(';')?;
        p = &p[p.len() - spacing(p)..];
        let a = token_len(p);
        if a == 0 {
            return None;
        }
        p = p[a..].strip_prefix('=')?;
        if let Some(q) = p.strip_prefix('"') {
            let b = q.as_bytes();
            let mut i = 0;
            loop {
                match b.get(i)? {
                    b'"' => break,
                    b'\\' if i + 1 < b.len() && b[i + 1] < 0x80 => i += 2,
                    &c if c < 0x20 || c == 0x7f => return None,
                    _ => i += 1,
                }
            }
            p = &q[i + 1..];
        } else {
            let v = token_len(p);
            if v == 0 {
                return None;
            }
            p = &p[v..];
        }
    }
    Some((ty, subtype))
}

/// Lua truthiness of a decoded JSON value (`null` decodes to a truthy sentinel).
fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Bool(false)))
}

// === impl ResponseTransformer ===

impl ResponseTransformer {
    fn new(c: &ResponseTransformerConfig) -> Result<Self, String> {
        let mut headers = HeaderOps {
            remove: c
                .remove
                .headers
                .iter()
                .map(|e| header_name(split(e).0))
                .collect::<Result<_, _>>()?,
            replace: header_pairs(&c.replace.headers)?,
            add: header_pairs(&c.add.headers)?,
            append: header_pairs(&c.append.headers)?,
            // Checked last, so the first bad entry reported stays the same.
            rename: header_renames(&c.rename.headers)?,
            ..Default::default()
        };
        let json = JsonOps {
            remove: names(&c.remove.json),
            rename: pairs(&c.rename.json),
            replace: json_values(&c.replace),
            add: json_values(&c.add),
            append: json_values(&c.append),
        };
        // Kong decides on the configured lists, before any entry is skipped.
        let json_set = [
            &c.remove.json,
            &c.rename.json,
            &c.replace.json,
            &c.add.json,
            &c.append.json,
        ]
        .iter()
        .any(|l| !l.is_empty());
        headers.snapshot = headers.lookups_see_changes(json_set);
        Ok(ResponseTransformer {
            headers,
            json: json_set.then_some(json),
        })
    }
}

impl HeaderOps {
    /// Whether some lookup, in Kong's order, is of a header an earlier step changed.
    fn lookups_see_changes(&self, checks_content_type: bool) -> bool {
        let mut written: HashSet<&HeaderName> = HashSet::new();
        written.extend(&self.remove);
        for (old, new) in &self.rename {
            if written.contains(old) {
                return true;
            }
            written.insert(new);
            written.insert(old);
        }
        for (name, _) in self.replace.iter().chain(&self.add) {
            if written.contains(name) {
                return true;
            }
            written.insert(name);
        }
        written.extend(self.append.iter().map(|(n, _)| n));
        checks_content_type && written.contains(&CONTENT_TYPE)
    }

    fn apply(&self, h: &mut HeaderMap, json_set: bool) {
        let before = self.snapshot.then(|| h.clone());
        for name in &self.remove {
            h.remove(name);
        }
        for (old, new) in &self.rename {
            let values: Vec<HeaderValue> = before
                .as_ref()
                .unwrap_or(&*h)
                .get_all(old)
                .iter()
                .cloned()
                .collect();
            if values.is_empty() {
                continue;
            }
            // Set the new name, then clear the old: `a:a` removes `a`, as in Kong.
            h.remove(new);
            for v in values {
                h.append(new.clone(), v);
            }
            h.remove(old);
        }
        for (name, value) in &self.replace {
            if before.as_ref().unwrap_or(&*h).contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.add {
            if !before.as_ref().unwrap_or(&*h).contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.append {
            h.append(name.clone(), value.clone());
        }
        // The body is going to change.
        if json_set && is_json(before.as_ref().unwrap_or(&*h).get(CONTENT_TYPE)) {
            h.remove(CONTENT_LENGTH);
        }
    }
}

impl JsonOps {
    /// `None` when the body is left as it came.
    fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut obj: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "response-transformer: body transform failed: failed parsing json body");
                return None;
            }
        };
        for name in &self.remove {
            obj.shift_remove(name);
        }
        for (old, new) in &self.rename {
            if let Some(v) = obj.get(old).cloned() {
                obj.insert(new.clone(), v);
                obj.shift_remove(old);
            }
        }
        for (name, v) in &self.replace {
            if truthy(obj.get(name)) {
                obj.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.add {
            if !truthy(obj.get(name)) {
                obj.insert(name.clone(), v.clone());
            }
        }
        for (name, v) in &self.append {
            match obj.get_mut(name) {
                Some(slot) => *slot = append_value(slot.take(), v.clone()),
                None => {
                    obj.insert(name.clone(), Value::Array(vec![v.clone()]));
                }
            }
        }
        serde_json::to_vec(&Value::Object(obj)).ok()
    }
}

/// Kong's `append_value`: a string becomes a pair, an array grows, an object (a Lua
/// table too) gets the key "1", anything else is replaced by a one-element array.
fn append_value(current: Value, v: Value) -> Value {
    match current {
        Value::String(s) => Value::Array(vec![Value::String(s), v]),
        Value::Array(mut a) => {
            a.push(v);
            Value::Array(a)
        }
        Value::Object(mut o) => {
            o.insert("1".into(), v);
            Value::Object(o)
        }
        _ => Value::Array(vec![v]),
    }
}

impl Plugin for ResponseTransformer {
    fn response_headers(&self, _cx: &mut Ctx<'_>, resp: &mut http::response::Parts) {
        self.headers.apply(&mut resp.headers, self.json.is_some());
    }

    fn wants_response_body(&self, _cx: &Ctx<'_>, resp: &http::response::Parts) -> bool {
        self.json.is_some() && is_json(resp.headers.get(CONTENT_TYPE))
    }

    fn response_body(&self, _cx: &mut Ctx<'_>, _resp: &http::response::Parts, body: &mut Bytes) {
        if let Some(out) = self.json.as_ref().and_then(|ops| ops.apply(body)) {
            *body = Bytes::from(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bundled::testing::{self, values};
    use crate::consumers::Consumers;

    fn plugin(config: serde_json::Value) -> ResponseTransformer {
        ResponseTransformer::new(&testing::typed_config!(
            ResponseTransformer,
            "response-transformer",
            config
        ))
        .expect("builds")
    }

    /// Runs both response phases over a response with `headers` and `body`.
    fn respond(
        p: &ResponseTransformer,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (HeaderMap, String) {
        let consumers = Consumers::default();
        let mut cx = testing::cx(&consumers);
        let mut parts = testing::response_parts(headers);
        p.response_headers(&mut cx, &mut parts);
        let mut bytes = Bytes::from(body.to_string());
        if p.wants_response_body(&cx, &parts) {
            p.response_body(&mut cx, &parts, &mut bytes);
        }
        (parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn headers_in_kongs_order() {
        let p = plugin(json!({
            "remove": {"headers": ["x-remove"]},
            "rename": {"headers": ["x-old:x-new"]},
            "replace": {"headers": ["x-replace:new", "x-absent:no"]},
            "add": {"headers": ["x-add:added", "x-present:no"]},
            "append": {"headers": ["x-present:second", "x-fresh:1"]},
        }));
        assert!(!p.headers.snapshot, "no lookup sees a change");
        let (h, _) = respond(
            &p,
            &[
                ("x-remove", "1"),
                ("x-remove", "2"),
                ("x-old", "a"),
                ("x-old", "b"),
                ("x-replace", "old"),
                ("x-present", "first"),
            ],
            "",
        );
        assert!(values(&h, "x-remove").is_empty());
        assert!(values(&h, "x-old").is_empty());
        assert_eq!(values(&h, "x-new"), ["a", "b"]);
        assert_eq!(values(&h, "x-replace"), ["new"]);
        assert!(values(&h, "x-absent").is_empty());
        assert_eq!(values(&h, "x-add"), ["added"]);
        assert_eq!(values(&h, "x-present"), ["first", "second"]);
        assert_eq!(values(&h, "x-fresh"), ["1"]);
    }

    #[test]
    fn lookups_see_the_headers_as_they_came() {
        // Kong checks a copy taken before any change: a removed header still counts
        // as present for rename, replace and add.
        let p = plugin(json!({
            "remove": {"headers": ["x-a", "x-b"]},
            "rename": {"headers": ["x-a:x-renamed"]},
            "add": {"headers": ["x-b:added", "x-c:one", "x-c:two"]},
        }));
        assert!(p.headers.snapshot);
        let (h, _) = respond(&p, &[("x-a", "1"), ("x-b", "2")], "");
        assert_eq!(values(&h, "x-renamed"), ["1"]);
        assert!(
            values(&h, "x-b").is_empty(),
            "not added: it was there before"
        );
        assert_eq!(values(&h, "x-c"), ["two"], "each add sees x-c absent");
    }

    #[test]
    fn json_body() {
        let p = plugin(json!({
            "remove": {"json": ["secret"]},
            "rename": {"json": ["old:new"]},
            "replace": {"json": ["rep:1", "off:x", "missing:x"], "json_types": ["number"]},
            "add": {"json": ["flag:true", "n:2.5", "s:a/b\"c", "off:added"], "json_types": ["boolean", "number"]},
            "append": {"json": ["list:z", "str:b", "num:1"], "json_types": ["string", "string", "number"]},
        }));
        let (h, body) = respond(
            &p,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("content-length", "99"),
            ],
            r#"{"secret":1,"old":[1],"rep":"r","off":false,"list":["y"],"str":"a","num":3}"#,
        );
        assert!(h.get(CONTENT_LENGTH).is_none(), "the body changes");
        let got: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            got,
            json!({
                "rep": 1,
                "off": "added",
                "list": ["y", "z"],
                "str": ["a", "b"],
                "num": [1],
                "new": [1],
                "flag": true,
                "n": 2.5,
                "s": "a/b\"c",
            })
        );
    }

    #[test]
    fn only_json_bodies_are_touched() {
        let p = plugin(json!({"add": {"json": ["a:1"]}}));
        for (ct, touched) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("text/plain, application/json", true),
            ("application/json;", false),
            ("application/problem+json", false),
            ("Application/JSON", false),
            ("text/html", false),
        ] {
            let (h, body) = respond(&p, &[("content-type", ct), ("content-length", "2")], "{}");
            assert_eq!(body == r#"{"a":"1"}"#, touched, "{ct}");
            assert_eq!(h.get(CONTENT_LENGTH).is_none(), touched, "{ct}");
        }
        // Not JSON after all, or not an object: as it came.
        for raw in ["not json", "[1, 2]"] {
            let (_, body) = respond(&p, &[("content-type", "application/json")], raw);
            assert_eq!(body, raw);
        }
        // No json operations: neither the body nor Content-Length.
        let p = plugin(json!({"add": {"headers": ["x:1"]}}));
        let (h, body) = respond(
            &p,
            &[
                ("content-type", "application/json"),
                ("content-length", "2"),
            ],
            "{}",
        );
        assert_eq!(body, "{}");
        assert!(h.get(CONTENT_LENGTH).is_some());
    }

    #[test]
    fn json_values_like_kong() {
        assert_eq!(json_value(Some("a/b"), None), Some(json!("a/b")));
        assert_eq!(json_value(Some("a\\b"), None), Some(json!("a\\\\b")));
        assert_eq!(json_value(Some("x\ny"), None), Some(json!("x\\ny")));
        assert_eq!(json_value(None, None), Some(json!("null")));
        assert_eq!(json_value(Some("12"), Some("number")), Some(json!(12)));
        assert_eq!(json_value(Some("0x10"), Some("number")), Some(json!(16)));
        assert_eq!(json_value(Some("1.5e1"), Some("number")), Some(json!(15)));
        assert_eq!(json_value(Some("abc"), Some("number")), None);
        assert_eq!(json_value(Some("true"), Some("boolean")), Some(json!(true)));
        assert_eq!(json_value(Some("yes"), Some("boolean")), Some(json!(false)));
        assert_eq!(json_value(Some("5"), Some("string")), Some(json!("5")));
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type("application/json"),
            Some(("application", "json"))
        );
        assert_eq!(
            media_type("application/json; charset=\"utf-8\"; q=1"),
            Some(("application", "json"))
        );
        assert_eq!(
            media_type("application/json ; a=b"),
            Some(("application", "json"))
        );
        assert_eq!(media_type("application/json;"), None);
        assert_eq!(media_type("application/"), None);
        assert_eq!(media_type("json"), None);
        assert_eq!(media_type("application/json; a"), None);
    }
}
