//! request-transformer: rewrites what goes upstream, in Kong's order: the path
//! (`replace.uri`), the method (`http_method`; a form body of a GET also goes into the
//! query), the headers, the body, then the query string. Within each, the operations run
//! as Kong runs them: remove, rename, replace, add, append.
//!
//! Differences from Kong, on purpose or for now:
//! - Values are taken literally. Kong renders `$(...)` in them as Lua templates
//!   (`$(headers.host)`, `$(uri_captures.id)`); the model validates such templates but
//!   nothing here evaluates Lua, so they reach the upstream as written (a warning is
//!   logged when an instance is built with one).
//! - `multipart/form-data` bodies are not transformed: they pass through unchanged and a
//!   warning says so.
//! - A transformed body is read whole, up to [`MAX_BODY`]; a larger one declared by
//!   Content-Length passes through untransformed, a larger chunked one is refused with
//!   413 (part of it has been read, so it can no longer be forwarded whole).
//! - Form bodies are re-encoded with their keys sorted (Kong's order is the Lua table's);
//!   JSON bodies keep their key order and are re-encoded compactly.
//!
//! A Host set by `replace.headers` becomes the upstream Host, as in Kong: the proxy
//! sends a Host header a plugin changed.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method};
use serde_json::Value;
use tidegate_model::plugins::request_transformer::{RequestTransformerConfig, Transforms};

use super::util::{
    header_name, header_pairs, header_renames, header_value, names, pairs, percent_decode, split,
    Ops,
};
use crate::body::BodyError;
use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::runtime::Runtime;

/// The largest body this plugin reads to transform it.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// The methods `kong.service.request.set_method` accepts.
const KONG_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "MKCOL",
    "COPY",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
    "TRACE",
];

pub struct RequestTransformer {
    uri: Option<Result<String, Unusable>>,
    method: Option<Result<Method, Unusable>>,
    headers: HeaderOps,
    query: Option<ParamOps>,
    body: Option<ParamOps>,
}

/// A setting Kong accepts but throws on when it applies it (a path without a leading
/// `/`, a method nginx cannot set): the request gets Kong's runtime-error 500.
#[derive(Debug)]
struct Unusable;

#[derive(Default)]
struct HeaderOps {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    /// A `None` value removes the header (Kong sets it to nil).
    replace: Vec<(HeaderName, Option<HeaderValue>)>,
    add: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
}

/// Operations on query or body parameters. The schema requires a value on every entry
/// but `remove`'s.
type ParamOps = Ops<String>;

pub fn build(c: &RequestTransformerConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(RequestTransformer::new(c)?))
}

fn warn_templates(entries: &[&String]) {
    for e in entries {
        if e.contains("$(") {
            tracing::warn!(
                entry = %e,
                "request-transformer: templates are not rendered; the value is sent as written"
            );
        }
    }
}

// === impl RequestTransformer ===

impl RequestTransformer {
    fn new(c: &RequestTransformerConfig) -> Result<Self, String> {
        let all: Vec<&String> = [&c.remove, &c.rename, &c.add, &c.append]
            .into_iter()
            .flat_map(|t| t.headers.iter().chain(&t.querystring).chain(&t.body))
            .chain(c.replace.headers.iter())
            .chain(&c.replace.querystring)
            .chain(&c.replace.body)
            .chain(&c.replace.uri)
            .collect();
        warn_templates(&all);

        let mut headers = HeaderOps::default();
        for e in &c.remove.headers {
            headers.remove.push(header_name(split(e).0)?);
        }
        headers.rename = header_renames(&c.rename.headers)?;
        for e in &c.replace.headers {
            let (n, v) = split(e);
            headers
                .replace
                .push((header_name(n)?, v.map(header_value).transpose()?));
        }
        // An empty value adds nothing (Kong sets a header to nil).
        headers.add = header_pairs(&c.add.headers)?;
        headers.append = header_pairs(&c.append.headers)?;
        let params = |pick: fn(&Transforms) -> &Vec<String>, replace: &[String]| {
            let ops = ParamOps {
                remove: names(pick(&c.remove)),
                rename: pairs(pick(&c.rename)),
                replace: pairs(replace),
                add: pairs(pick(&c.add)),
                append: pairs(pick(&c.append)),
            };
            (!ops.is_empty()).then_some(ops)
        };
        let method = c.http_method.as_deref().map(|m| {
            let m = m.to_ascii_uppercase();
            if KONG_METHODS.contains(&m.as_str()) {
                Method::from_bytes(m.as_bytes()).map_err(|_| Unusable)
            } else {
                tracing::warn!(method = %m, "request-transformer: Kong cannot set this method; requests get a 500, as in Kong");
                Err(Unusable)
            }
        });
        let uri = c.replace.uri.as_ref().map(|u| {
            if u.starts_with('/') {
                Ok(u.clone())
            } else {
                tracing::warn!(uri = %u, "request-transformer: replace.uri does not start with '/'; requests get a 500, as in Kong");
                Err(Unusable)
            }
        });
        Ok(RequestTransformer {
            uri,
            method,
            headers,
            query: params(|t| &t.querystring, &c.replace.querystring),
            body: params(|t| &t.body, &c.replace.body),
        })
    }

    fn transform_headers(&self, h: &mut http::HeaderMap) {
        let ops = &self.headers;
        // Kong takes Host out of the headers it works on: only `replace` may set it.
        for name in &ops.remove {
            if *name != HOST {
                h.remove(name);
            }
        }
        for (old, new) in &ops.rename {
            if *old == HOST {
                continue;
            }
            let values: Vec<HeaderValue> = h.get_all(old).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            // Kong sets the new name, then clears the old one: `a:a` removes `a`.
            h.remove(new);
            for v in values {
                h.append(new.clone(), v);
            }
            h.remove(old);
        }
        for (name, value) in &ops.replace {
            if h.contains_key(name) || *name == HOST {
                match value {
                    Some(v) => {
                        h.insert(name.clone(), v.clone());
                    }
                    None => {
                        h.remove(name);
                    }
                }
            }
        }
        for (name, value) in &ops.add {
            if *name != HOST && !h.contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        for (name, value) in &ops.append {
            if *name != HOST {
                h.append(name.clone(), value.clone());
            }
        }
    }

    /// Kong's `transform_method`: a form body of a GET, HEAD or TRACE also goes into the
    /// query string (the body itself is still sent).
    fn method_moves_form_to_query(&self) -> bool {
        matches!(&self.method, Some(Ok(m)) if *m == Method::GET || *m == Method::HEAD || *m == Method::TRACE)
    }

    /// The path and the method: what needs no body.
    fn start(&self, req: &mut Req) -> Flow {
        match &self.uri {
            Some(Ok(u)) => req.upstream_path = Some(u.clone()),
            Some(Err(Unusable)) => {
                return Flow::Exit(Exit::error(500, "An unexpected error occurred"))
            }
            None => {}
        }
        match &self.method {
            Some(Ok(m)) => req.method = m.clone(),
            Some(Err(Unusable)) => {
                return Flow::Exit(Exit::error(500, "An unexpected error occurred"))
            }
            None => {}
        }
        Flow::Continue
    }

    fn transform_query(&self, req: &mut Req) {
        if let Some(ops) = &self.query {
            let mut args = Args::decode(req.query.as_deref().unwrap_or(""));
            ops.apply_args(&mut args, true);
            req.query = Some(args.encode());
        }
    }

    /// Every step, for a request whose body is read.
    async fn transform(&self, req: &mut Req) -> Flow {
        if let Flow::Exit(e) = self.start(req) {
            return Flow::Exit(e);
        }
        if self.method_moves_form_to_query() && body_kind(req) == Some(BodyKind::Form) {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(flow) => return flow,
            };
            if let Some(body) = body {
                let form = Args::decode(&String::from_utf8_lossy(&body));
                if !form.0.is_empty() {
                    let mut query = Args::decode(req.query.as_deref().unwrap_or(""));
                    for (name, value) in form.0 {
                        query.merge(name, value);
                    }
                    req.query = Some(query.encode());
                }
            }
        }
        self.transform_headers(&mut req.headers);
        if let Some(ops) = &self.body {
            if let Flow::Exit(e) = transform_body(ops, req).await {
                return Flow::Exit(e);
            }
        }
        self.transform_query(req);
        Flow::Continue
    }
}

async fn transform_body(ops: &ParamOps, req: &mut Req) -> Flow {
    let Some(kind) = body_kind(req) else {
        return Flow::Continue;
    };
    if kind == BodyKind::Multipart {
        tracing::warn!("request-transformer: multipart/form-data bodies are not supported; the body is sent unchanged");
        return Flow::Continue;
    }
    let body = match read_body(req).await {
        Ok(Some(b)) => b,
        Ok(None) => return Flow::Continue,
        Err(flow) => return flow,
    };
    let out = match kind {
        BodyKind::Json => ops.apply_json(&body),
        BodyKind::Form => {
            let mut args = Args::decode(&String::from_utf8_lossy(&body));
            ops.apply_args(&mut args, !body.is_empty())
                .then(|| args.encode().into_bytes())
        }
        BodyKind::Multipart => None,
    };
    if let Some(out) = out {
        req.headers
            .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
        req.body.replace(Bytes::from(out));
    }
    Flow::Continue
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum BodyKind {
    Json,
    Form,
    Multipart,
}

/// Kong's `get_content_type`: a substring test on the lowercased Content-Type.
fn body_kind(req: &Req) -> Option<BodyKind> {
    let ct = req
        .headers
        .get(CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    if ct.contains("application/json") {
        Some(BodyKind::Json)
    } else if ct.contains("multipart/form-data") {
        Some(BodyKind::Multipart)
    } else if ct.contains("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else {
        None
    }
}

/// The whole body, or `None` when it is declared larger than [`MAX_BODY`] (it then
/// streams through untouched). A chunked body over the limit, or one that cannot be
/// read, cannot be forwarded any more and ends the request.
async fn read_body(req: &mut Req) -> Result<Option<Bytes>, Flow> {
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        tracing::warn!(
            limit = MAX_BODY,
            "request-transformer: body larger than the limit; sent untransformed"
        );
        return Ok(None);
    }
    match req.body.read(MAX_BODY).await {
        Ok(b) => Ok(Some(b.clone())),
        Err(BodyError::TooLarge { .. }) => Err(Flow::Exit(Exit::error(413, "Payload too large"))),
        Err(BodyError::Read(e)) => {
            tracing::debug!(error = %e, "request-transformer: reading the body failed");
            Err(Flow::Exit(Exit::error(400, "Bad request")))
        }
    }
}

impl Plugin for RequestTransformer {
    fn access<'a>(&'a self, _cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        // Body operations wait for the body whatever the Content-Type now: a header
        // operation may still change it to one that is transformed.
        let reads_body = self.body.is_some()
            || (self.method_moves_form_to_query() && body_kind(req) == Some(BodyKind::Form));
        if reads_body {
            return Access::Pending(Box::pin(self.transform(req)));
        }
        if let Flow::Exit(e) = self.start(req) {
            return Access::exit(e);
        }
        self.transform_headers(&mut req.headers);
        self.transform_query(req);
        Access::CONTINUE
    }
}

// === impl ParamOps ===

impl ParamOps {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// On query or form parameters. `has_content` gates remove, rename and replace, as
    /// Kong does for bodies (the query always has content). Returns whether Kong would
    /// count the parameters as changed (it re-encodes a body only then).
    fn apply_args(&self, args: &mut Args, has_content: bool) -> bool {
        let mut changed = false;
        if has_content {
            for name in &self.remove {
                args.remove(name);
                changed = true;
            }
            for (old, new) in &self.rename {
                // Kong moves even a missing value (which removes `new`), then clears
                // `old`: `a:a` removes `a`.
                match args.get(old).cloned() {
                    Some(v) => args.set(new, v),
                    None => {
                        args.remove(new);
                    }
                }
                args.remove(old);
                changed = true;
            }
            for (name, value) in &self.replace {
                if args.get(name).is_some() {
                    args.set(name, Arg::Text(value.clone()));
                    changed = true;
                }
            }
        }
        for (name, value) in &self.add {
            if args.get(name).is_none() {
                args.set(name, Arg::Text(value.clone()));
                changed = true;
            }
        }
        for (name, value) in &self.append {
            let current = args.remove(name);
            args.set(name, append_arg(current, value));
            changed = true;
        }
        changed
    }

    /// On a JSON body: `None` leaves the body as it is (not JSON, or not an object).
    fn apply_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let has_content = !body.is_empty();
        let mut obj = if has_content {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(o)) => o,
                _ => return None,
            }
        } else {
            serde_json::Map::new()
        };
        let mut changed = false;
        if has_content {
            for name in &self.remove {
                obj.shift_remove(name);
                changed = true;
            }
            for (old, new) in &self.rename {
                match obj.get(old).cloned() {
                    Some(v) => {
                        obj.insert(new.clone(), v);
                    }
                    None => {
                        obj.shift_remove(new);
                    }
                }
                obj.shift_remove(old);
                changed = true;
            }
            for (name, value) in &self.replace {
                if truthy(obj.get(name)) {
                    obj.insert(name.clone(), Value::String(value.clone()));
                    changed = true;
                }
            }
        }
        for (name, value) in &self.add {
            if !truthy(obj.get(name)) {
                obj.insert(name.clone(), Value::String(value.clone()));
                changed = true;
            }
        }
        for (name, value) in &self.append {
            let value = Value::String(value.clone());
            match obj.get_mut(name) {
                Some(slot) => *slot = append_json(Some(slot.take()), value),
                None => {
                    obj.insert(name.clone(), append_json(None, value));
                }
            }
            changed = true;
        }
        changed.then(|| serde_json::to_vec(&Value::Object(obj)).unwrap_or_default())
    }
}

/// Lua truthiness of a decoded JSON value (`null` decodes to a truthy sentinel).
fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Bool(false)))
}

/// Kong's `append_value` on JSON: a string becomes a pair, an array grows, anything else
/// is replaced by a one-element array. An object is a Lua table too, so `table.insert`
/// gives it the key "1".
fn append_json(current: Option<Value>, value: Value) -> Value {
    match current {
        Some(Value::String(s)) => Value::Array(vec![Value::String(s), value]),
        Some(Value::Array(mut a)) => {
            a.push(value);
            Value::Array(a)
        }
        Some(Value::Object(mut o)) => {
            o.insert("1".into(), value);
            Value::Object(o)
        }
        _ => Value::Array(vec![value]),
    }
}

// === query and form parameters ===

/// One parameter's value as `ngx.decode_args` gives it.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// A name without `=`: Lua `true`.
    Flag,
    Text(String),
    /// A name given several times, or appended to.
    List(Vec<Arg>),
}

/// Parameters in first-seen order, each name once.
#[derive(Debug, Default, PartialEq)]
struct Args(Vec<(String, Arg)>);

fn append_arg(current: Option<Arg>, value: &str) -> Arg {
    let value = Arg::Text(value.to_string());
    match current {
        Some(Arg::Text(s)) => Arg::List(vec![Arg::Text(s), value]),
        Some(Arg::List(mut l)) => {
            l.push(value);
            Arg::List(l)
        }
        // Lua's `true` is neither a string nor a table: replaced.
        Some(Arg::Flag) | None => Arg::List(vec![value]),
    }
}

impl Args {
    /// `ngx.decode_args`: `&`-separated, `+` is a space, `%XX` decoded; empty names are
    /// skipped.
    fn decode(s: &str) -> Args {
        let mut args = Args::default();
        for part in s.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (unescape(k), Arg::Text(unescape(v))),
                None => (unescape(part), Arg::Flag),
            };
            if k.is_empty() {
                continue;
            }
            args.merge(k, v);
        }
        args
    }

    /// Adds a value the way a repeated name decodes: a second value makes a list.
    fn merge(&mut self, name: String, value: Arg) {
        let flatten = |v: Arg| match v {
            Arg::List(l) => l,
            other => vec![other],
        };
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, cur)) => {
                let mut l = flatten(std::mem::replace(cur, Arg::Flag));
                l.extend(flatten(value));
                *cur = Arg::List(l);
            }
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn remove(&mut self, name: &str) -> Option<Arg> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    fn set(&mut self, name: &str, value: Arg) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, cur)) => *cur = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// `kong.service.request.set_query`: each name encoded with its values in order,
    /// the pieces sorted.
    fn encode(&self) -> String {
        let mut pieces: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                let k = escape(k);
                let mut out = String::new();
                let mut one = |a: &Arg| {
                    if !out.is_empty() {
                        out.push('&');
                    }
                    out.push_str(&k);
                    if let Arg::Text(t) = a {
                        out.push('=');
                        out.push_str(&escape(t));
                    }
                };
                match v {
                    Arg::List(l) => l.iter().for_each(&mut one),
                    a => one(a),
                }
                out
            })
            .collect();
        pieces.sort();
        pieces.join("&")
    }
}

/// `ngx.escape_uri` for a component: everything but `A-Za-z0-9-._~`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;
    use crate::body::RequestBody;
    use crate::bundled::testing::{self, values};
    use crate::consumers::Consumers;

    fn plugin(config: serde_json::Value) -> RequestTransformer {
        RequestTransformer::new(&testing::typed_config!(
            RequestTransformer,
            "request-transformer",
            config
        ))
        .expect("builds")
    }

    fn req(method: Method, query: Option<&str>, headers: &[(&str, &str)], body: &str) -> Req {
        testing::req(method, "/p", query, headers, testing::buffered(body))
    }

    async fn run(p: &RequestTransformer, r: &mut Req) -> Option<(u16, String)> {
        let consumers = Consumers::default();
        let mut cx = testing::cx(&consumers);
        testing::error_exit(testing::access(p, &mut cx, r).await)
    }

    fn body(r: &Req) -> &str {
        std::str::from_utf8(r.body.buffered().expect("buffered")).unwrap()
    }

    #[test]
    fn split_like_lua() {
        assert_eq!(split("a:b"), ("a", Some("b")));
        assert_eq!(split("a:::b:c"), ("a", Some("b:c")));
        assert_eq!(split("a:"), ("a", None));
        assert_eq!(split("a"), ("a", None));
    }

    #[test]
    fn args_decode_and_encode_like_nginx() {
        let a = Args::decode("b=2&a=x+y%21&flag&a=3&=skipped&&c=");
        assert_eq!(
            a,
            Args(vec![
                ("b".into(), Arg::Text("2".into())),
                (
                    "a".into(),
                    Arg::List(vec![Arg::Text("x y!".into()), Arg::Text("3".into())])
                ),
                ("flag".into(), Arg::Flag),
                ("c".into(), Arg::Text("".into())),
            ])
        );
        // Sorted by piece, values of one name in order, everything but unreserved
        // characters escaped.
        assert_eq!(a.encode(), "a=x%20y%21&a=3&b=2&c=&flag");
        assert_eq!(escape("a b/c~d_e.f-g"), "a%20b%2Fc~d_e.f-g");
        assert_eq!(unescape("%4a%zz%"), "J%zz%");
    }

    #[tokio::test]
    async fn headers_in_kongs_order() {
        let p = plugin(json!({
            "remove": {"headers": ["x-remove", "host"]},
            "rename": {"headers": ["x-old:x-new", "x-self:x-self", "x-missing:x-other"]},
            "replace": {"headers": ["x-replace:new", "x-absent:ignored", "x-clear:"]},
            "add": {"headers": ["x-add:added", "x-keep:not-used", "host:ignored"]},
            "append": {"headers": ["x-keep:second", "x-fresh:1"]},
        }));
        let mut r = req(
            Method::GET,
            None,
            &[
                ("host", "client.test"),
                ("x-remove", "1"),
                ("x-old", "a"),
                ("x-old", "b"),
                ("x-new", "overwritten"),
                ("x-self", "1"),
                ("x-other", "stays"),
                ("x-replace", "old"),
                ("x-replace", "old2"),
                ("x-clear", "1"),
                ("x-keep", "first"),
            ],
            "",
        );
        assert_eq!(run(&p, &mut r).await, None);
        let h = &r.headers;
        assert_eq!(
            values(h, "host"),
            ["client.test"],
            "remove and add skip Host"
        );
        assert!(values(h, "x-remove").is_empty());
        assert!(values(h, "x-old").is_empty());
        assert_eq!(values(h, "x-new"), ["a", "b"]);
        assert!(
            values(h, "x-self").is_empty(),
            "renamed onto itself, then cleared"
        );
        assert_eq!(values(h, "x-other"), ["stays"]);
        assert_eq!(values(h, "x-replace"), ["new"]);
        assert!(values(h, "x-absent").is_empty());
        assert!(values(h, "x-clear").is_empty(), "replaced with nothing");
        assert_eq!(values(h, "x-add"), ["added"]);
        assert_eq!(values(h, "x-keep"), ["first", "second"]);
        assert_eq!(values(h, "x-fresh"), ["1"]);
    }

    #[tokio::test]
    async fn replace_sets_host() {
        let p = plugin(json!({"replace": {"headers": ["host:upstream.test"]}}));
        let mut r = req(Method::GET, None, &[], "");
        run(&p, &mut r).await;
        assert_eq!(values(&r.headers, "host"), ["upstream.test"]);
    }

    #[tokio::test]
    async fn query_string() {
        let p = plugin(json!({
            "remove": {"querystring": ["drop"]},
            "rename": {"querystring": ["old:new", "gone:q"]},
            "replace": {"querystring": ["rep:yes", "nothere:no"]},
            "add": {"querystring": ["add:a b", "keep:ignored"]},
            "append": {"querystring": ["keep:2", "flag:x", "list:3"]},
        }));
        let mut r = req(
            Method::GET,
            Some("drop=1&old=o&q=lost&rep=no&keep=1&flag&list=1&list=2&untouched=%41"),
            &[],
            "",
        );
        assert_eq!(run(&p, &mut r).await, None);
        assert_eq!(
            r.query.as_deref(),
            Some("add=a%20b&flag=x&keep=1&keep=2&list=1&list=2&list=3&new=o&rep=yes&untouched=A")
        );
        // Without query operations the query is left byte for byte.
        let p = plugin(json!({"add": {"headers": ["x:1"]}}));
        let mut r = req(Method::GET, Some("b=1&a=%41+"), &[], "");
        run(&p, &mut r).await;
        assert_eq!(r.query.as_deref(), Some("b=1&a=%41+"));
    }

    #[tokio::test]
    async fn json_body() {
        let p = plugin(json!({
            "remove": {"body": ["secret"]},
            "rename": {"body": ["old:new"]},
            "replace": {"body": ["rep:replaced", "off:on", "nul:set"]},
            "add": {"body": ["added:1", "rep:not-used", "off:added"]},
            "append": {"body": ["s:2", "arr:c", "num:x"]},
        }));
        let mut r = req(
            Method::POST,
            None,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("content-length", "200"),
            ],
            r#"{"secret":1,"old":{"k":true},"rep":"r","off":false,"nul":null,"s":"1","arr":["a","b"],"num":5}"#,
        );
        assert_eq!(run(&p, &mut r).await, None);
        let got: Value = serde_json::from_str(body(&r)).unwrap();
        assert_eq!(
            got,
            json!({
                "rep": "replaced",
                "off": "added",
                "nul": "set",
                "s": ["1", "2"],
                "arr": ["a", "b", "c"],
                "num": ["x"],
                "new": {"k": true},
                "added": "1",
            })
        );
        assert_eq!(
            values(&r.headers, "content-length"),
            [body(&r).len().to_string().as_str()]
        );
    }

    #[tokio::test]
    async fn json_body_edge_cases() {
        let p = plugin(json!({"add": {"body": ["a:1"]}}));
        // An empty body becomes an object.
        let mut r = req(
            Method::POST,
            None,
            &[("content-type", "application/json")],
            "",
        );
        run(&p, &mut r).await;
        assert_eq!(body(&r), r#"{"a":"1"}"#);
        // Not JSON, or not an object: left alone.
        for raw in ["{oops", "[1,2]", "\"s\"", "3"] {
            let mut r = req(
                Method::POST,
                None,
                &[("content-type", "application/json")],
                raw,
            );
            run(&p, &mut r).await;
            assert_eq!(body(&r), raw);
        }
        // Nothing to do for the body: not re-encoded.
        let p = plugin(json!({"replace": {"body": ["missing:1"]}}));
        let raw = r#"{ "b": 1,  "a": 2 }"#;
        let mut r = req(
            Method::POST,
            None,
            &[("content-type", "application/json")],
            raw,
        );
        run(&p, &mut r).await;
        assert_eq!(body(&r), raw);
    }

    #[tokio::test]
    async fn form_body() {
        let p = plugin(json!({
            "remove": {"body": ["drop"]},
            "rename": {"body": ["old:new"]},
            "add": {"body": ["add:x y"]},
            "append": {"body": ["keep:2"]},
        }));
        let mut r = req(
            Method::POST,
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
            "keep=1&drop=1&old=o+o",
        );
        run(&p, &mut r).await;
        assert_eq!(body(&r), "add=x%20y&keep=1&keep=2&new=o%20o");
        // On an empty body only add and append act.
        let mut r = req(
            Method::POST,
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
            "",
        );
        run(&p, &mut r).await;
        assert_eq!(body(&r), "add=x%20y&keep=2");
    }

    #[tokio::test]
    async fn multipart_passes_through() {
        let p = plugin(json!({"add": {"body": ["a:1"]}}));
        let raw = "--b\r\ncontent-disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
        let mut r = req(
            Method::POST,
            None,
            &[("content-type", "multipart/form-data; boundary=b")],
            raw,
        );
        assert_eq!(run(&p, &mut r).await, None);
        assert_eq!(body(&r), raw);
    }

    #[tokio::test]
    async fn method_uri_and_form_into_query() {
        let p = plugin(json!({"http_method": "GET", "replace": {"uri": "/new/path"}}));
        let mut r = req(
            Method::POST,
            Some("a=1"),
            &[("content-type", "application/x-www-form-urlencoded")],
            "a=2&b=3",
        );
        assert_eq!(run(&p, &mut r).await, None);
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.upstream_path.as_deref(), Some("/new/path"));
        assert_eq!(r.query.as_deref(), Some("a=1&a=2&b=3"));
        assert_eq!(body(&r), "a=2&b=3", "the body is still sent");

        let p = plugin(json!({"http_method": "POST"}));
        let mut r = req(
            Method::GET,
            Some("a=1"),
            &[("content-type", "application/x-www-form-urlencoded")],
            "b=3",
        );
        run(&p, &mut r).await;
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.query.as_deref(), Some("a=1"));
    }

    #[tokio::test]
    async fn what_kong_cannot_do_is_a_500() {
        let p = plugin(json!({"replace": {"uri": "no-slash"}}));
        let mut r = req(Method::GET, None, &[], "");
        assert_eq!(
            run(&p, &mut r).await,
            Some((500, "An unexpected error occurred".into()))
        );
        let p = plugin(json!({"http_method": "CONNECT"}));
        let mut r = req(Method::GET, None, &[], "");
        assert_eq!(
            run(&p, &mut r).await,
            Some((500, "An unexpected error occurred".into()))
        );
    }

    #[tokio::test]
    async fn a_body_declared_over_the_limit_streams_through() {
        let p = plugin(json!({"add": {"body": ["a:1"]}}));
        let mut r = req(
            Method::POST,
            None,
            &[
                ("content-type", "application/json"),
                ("content-length", &(MAX_BODY + 1).to_string()),
            ],
            "",
        );
        r.body = RequestBody::stream(
            http_body_util::Empty::new()
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        assert_eq!(run(&p, &mut r).await, None);
        assert!(matches!(r.body, RequestBody::Stream(_)));
    }
}
