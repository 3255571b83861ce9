//! key-auth: authenticates a consumer by an API key found under one of `key_names` in a
//! header, the query string or (when asked) the body.
//!
//! Also home of what the auth plugins share: the consumer headers the upstream gets and
//! the fall back to the `anonymous` consumer (Kong repeats both in every auth plugin).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tidegate_model::plugins::key_auth::KeyAuthConfig;

use super::util::percent_decode;
use crate::body::BodyError;
use crate::consumers::ConsumerInfo;
use crate::context::{Credential, Ctx, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::runtime::Runtime;

/// The most of a body read to find a key in it. A larger body cannot be forwarded
/// afterwards (it was consumed), so the request is refused.
pub const BODY_LIMIT: usize = 8 << 20;

const ERR_DUPLICATE_API_KEY: &str = "Duplicate API key found";
const ERR_NO_API_KEY: &str = "No API key found in request";
const ERR_INVALID_AUTH_CRED: &str = "Unauthorized";
const ERR_UNEXPECTED: &str = "An unexpected error occurred";

pub struct KeyAuth {
    names: Box<[KeyName]>,
    hide_credentials: bool,
    anonymous: Option<String>,
    in_header: bool,
    in_query: bool,
    in_body: bool,
    run_on_preflight: bool,
    www_authenticate: HeaderValue,
}

struct KeyName {
    name: String,
    /// The header looked up for `name`: Kong reads headers through nginx's table, which
    /// lower-cases the name and turns `_` into `-`. `None` when that is no header name.
    header: Option<HeaderName>,
}

pub fn build(c: &KeyAuthConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    let www_authenticate = match &c.realm {
        Some(r) => HeaderValue::from_str(&format!("Key realm=\"{r}\""))
            .map_err(|_| format!("realm '{r}' is not a valid header value"))?,
        None => HeaderValue::from_static("Key"),
    };
    let names = c
        .key_names
        .iter()
        .map(|n| KeyName {
            name: n.clone(),
            header: HeaderName::from_bytes(n.to_ascii_lowercase().replace('_', "-").as_bytes())
                .ok(),
        })
        .collect();
    Ok(Arc::new(KeyAuth {
        names,
        hide_credentials: c.hide_credentials,
        anonymous: c.anonymous.clone(),
        in_header: c.key_in_header,
        in_query: c.key_in_query,
        in_body: c.key_in_body,
        run_on_preflight: c.run_on_preflight,
        www_authenticate,
    }))
}

// === shared by the auth plugins ===

/// Kong's `set_consumer` of the auth plugins: authenticates the request and tells the
/// upstream who it is (clearing what a client may have sent in those headers).
pub(crate) fn set_consumer(
    cx: &mut Ctx<'_>,
    headers: &mut HeaderMap,
    consumer: Arc<ConsumerInfo>,
    credential: Option<Credential>,
) {
    // On the stack: the id is written once, into the header value.
    let mut id = uuid::Uuid::encode_buffer();
    let id: &str = consumer.id.hyphenated().encode_lower(&mut id);
    set_or_clear(headers, "x-consumer-id", Some(id));
    set_or_clear(
        headers,
        "x-consumer-custom-id",
        consumer.custom_id.as_deref(),
    );
    set_or_clear(headers, "x-consumer-username", consumer.username.as_deref());
    set_or_clear(
        headers,
        "x-credential-identifier",
        credential.as_ref().map(|c| c.identifier.as_str()),
    );
    set_or_clear(
        headers,
        "x-anonymous-consumer",
        credential.is_none().then_some("true"),
    );
    cx.authenticate(consumer, credential);
}

fn set_or_clear(headers: &mut HeaderMap, name: &'static str, value: Option<&str>) {
    let name = HeaderName::from_static(name);
    match value.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// Authentication failed and `anonymous` is set: the request goes on as that consumer.
/// Kong 3.9 answers 500 when it does not exist rather than letting the request through.
pub(crate) fn fall_back_to_anonymous(cx: &mut Ctx<'_>, req: &mut Req, anonymous: &str) -> Flow {
    let consumers = cx.consumers;
    match consumers.find(anonymous) {
        Some(c) => {
            set_consumer(cx, &mut req.headers, c.clone(), None);
            Flow::Continue
        }
        None => {
            tracing::error!(
                anonymous,
                "anonymous consumer is configured but doesn't exist"
            );
            Flow::Exit(Exit::error(
                500,
                format!("anonymous consumer {anonymous} is configured but doesn't exist"),
            ))
        }
    }
}

/// Compares in time independent of where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// === impl KeyAuth ===

/// What the key names turned up, in Kong's order: for each name in turn its header,
/// query argument, then body field.
#[derive(Debug, PartialEq, Eq)]
enum Search {
    Found {
        name: usize,
        key: String,
    },
    /// The name appears more than once in the first place it appears.
    Duplicate,
    Missing,
    /// The body must be looked at before the search can go on.
    NeedBody,
}

/// A value under one name in a header map, query string or body.
enum Value {
    Absent,
    /// Found, but not a string (Kong's `?apikey` without `=`, a JSON number): skipped.
    NotString,
    One(String),
    Many,
}

/// A request body as Kong's `kong.request.get_body()` sees it.
enum Parsed {
    /// No readable content type, or a body that does not parse (Kong logs it and goes on).
    Empty,
    Form(Bytes),
    Json(serde_json::Map<String, serde_json::Value>),
}

#[derive(Debug)]
enum Failure {
    Unauthorized(&'static str),
    Unexpected,
}

impl KeyAuth {
    fn search(&self, req: &Req, body: Option<&Parsed>) -> Search {
        for (i, n) in self.names.iter().enumerate() {
            let mut v = Value::Absent;
            if self.in_header {
                v = header_value(&req.headers, n.header.as_ref());
            }
            if matches!(v, Value::Absent) && self.in_query {
                v = query_value(req.query.as_deref(), &n.name);
            }
            if matches!(v, Value::Absent) && self.in_body {
                match body {
                    None => return Search::NeedBody,
                    Some(b) => v = body_value(b, &n.name),
                }
            }
            match v {
                Value::One(key) => return Search::Found { name: i, key },
                Value::Many => return Search::Duplicate,
                Value::Absent | Value::NotString => {}
            }
        }
        Search::Missing
    }

    /// Authenticates from the search result; `body` is the parsed body when it was read.
    fn finish(
        &self,
        cx: &mut Ctx<'_>,
        req: &mut Req,
        search: Search,
        body: Option<Parsed>,
    ) -> Result<(), Failure> {
        let key = match search {
            Search::Found { name, key } => {
                if self.hide_credentials {
                    self.hide(req, &self.names[name], body);
                }
                key
            }
            Search::Duplicate => return Err(Failure::Unauthorized(ERR_DUPLICATE_API_KEY)),
            Search::Missing | Search::NeedBody => {
                return Err(Failure::Unauthorized(ERR_NO_API_KEY))
            }
        };
        if key.is_empty() {
            return Err(Failure::Unauthorized(ERR_NO_API_KEY));
        }
        let consumers = cx.consumers;
        let Some(cred) = consumers.key(&key) else {
            return Err(Failure::Unauthorized(ERR_INVALID_AUTH_CRED));
        };
        // A credential's ttl ends it for good; Kong's DB drops the row at that moment.
        if cred.expires_at.is_some_and(|t| cx.now >= t as f64) {
            return Err(Failure::Unauthorized(ERR_INVALID_AUTH_CRED));
        }
        let Some(consumer) = consumers.get(&cred.consumer) else {
            tracing::error!(credential = %cred.id, consumer = %cred.consumer, "key-auth credential without its consumer");
            return Err(Failure::Unexpected);
        };
        let credential = Credential {
            id: cred.id,
            identifier: cred.id.to_string(),
        };
        set_consumer(cx, &mut req.headers, consumer.clone(), Some(credential));
        Ok(())
    }

    /// Takes the key out of what goes upstream: the header and query argument always,
    /// the body field when the body is searched.
    fn hide(&self, req: &mut Req, name: &KeyName, body: Option<Parsed>) {
        if let Some(h) = &name.header {
            req.headers.remove(h);
        }
        if let Some(q) = req.query.as_deref() {
            if query_value(Some(q), &name.name).is_present() {
                let kept = without_arg(q, &name.name);
                req.query = (!kept.is_empty()).then_some(kept);
            }
        }
        let replaced = match body {
            Some(Parsed::Form(raw)) => {
                let text = String::from_utf8_lossy(&raw);
                query_value(Some(&text), &name.name)
                    .is_present()
                    .then(|| Bytes::from(without_arg(&text, &name.name)))
            }
            Some(Parsed::Json(mut obj)) => obj
                .shift_remove(&name.name)
                .map(|_| Bytes::from(serde_json::Value::Object(obj).to_string())),
            Some(Parsed::Empty) | None => None,
        };
        if let Some(b) = replaced {
            req.headers
                .insert(CONTENT_LENGTH, HeaderValue::from(b.len()));
            req.body.replace(b);
        }
    }

    fn fail(&self, cx: &mut Ctx<'_>, req: &mut Req, failure: Failure) -> Flow {
        if let Some(anonymous) = &self.anonymous {
            return fall_back_to_anonymous(cx, req, anonymous);
        }
        Flow::Exit(match failure {
            Failure::Unauthorized(msg) => {
                let mut e = Exit::error(401, msg);
                e.headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    self.www_authenticate.clone(),
                );
                e
            }
            Failure::Unexpected => Exit::error(500, ERR_UNEXPECTED),
        })
    }

    async fn with_body(&self, cx: &mut Ctx<'_>, req: &mut Req, search: Search) -> Flow {
        let parsed = match read_body(req).await {
            Ok(p) => p,
            Err(e) => return Flow::Exit(e),
        };
        let search = match search {
            Search::NeedBody => self.search(req, Some(&parsed)),
            s => s,
        };
        match self.finish(cx, req, search, Some(parsed)) {
            Ok(()) => Flow::Continue,
            Err(f) => self.fail(cx, req, f),
        }
    }
}

impl Plugin for KeyAuth {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        if !self.run_on_preflight && req.method == Method::OPTIONS {
            return Access::CONTINUE;
        }
        // With `anonymous` set, auth plugins are alternatives: one that already
        // authenticated the request is enough.
        if self.anonymous.is_some() && cx.credential.is_some() {
            return Access::CONTINUE;
        }
        let search = self.search(req, None);
        let needs_body = search == Search::NeedBody
            || (self.hide_credentials && self.in_body && matches!(search, Search::Found { .. }));
        if needs_body {
            return Access::Pending(Box::pin(self.with_body(cx, req, search)));
        }
        Access::Done(match self.finish(cx, req, search, None) {
            Ok(()) => Flow::Continue,
            Err(f) => self.fail(cx, req, f),
        })
    }
}

// === where keys are found ===

impl Value {
    fn is_present(&self) -> bool {
        !matches!(self, Value::Absent)
    }
}

fn header_value(headers: &HeaderMap, name: Option<&HeaderName>) -> Value {
    let Some(name) = name else {
        return Value::Absent;
    };
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Value::Absent,
        (Some(v), None) => Value::One(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        (Some(_), Some(_)) => Value::Many,
    }
}

/// The value of argument `name` in a query string or form body, decoded as nginx's
/// `get_uri_args` does (`+` is a space).
fn query_value(query: Option<&str>, name: &str) -> Value {
    let mut found = Value::Absent;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        if !arg_is(k, name) {
            continue;
        }
        found = match found {
            Value::Absent => match v {
                Some(v) => Value::One(String::from_utf8_lossy(&percent_decode(v)).into_owned()),
                None => Value::NotString,
            },
            _ => return Value::Many,
        };
    }
    found
}

/// The query string without argument `name`, the others as they were sent.
fn without_arg(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| !arg_is(p.split_once('=').map_or(*p, |(k, _)| k), name))
        .collect::<Vec<_>>()
        .join("&")
}

fn body_value(body: &Parsed, name: &str) -> Value {
    match body {
        Parsed::Empty => Value::Absent,
        Parsed::Form(raw) => query_value(Some(&String::from_utf8_lossy(raw)), name),
        Parsed::Json(obj) => match obj.get(name) {
            None | Some(serde_json::Value::Null) => Value::Absent,
            Some(serde_json::Value::String(s)) => Value::One(s.clone()),
            Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Value::Many,
            Some(_) => Value::NotString,
        },
    }
}

/// Whether the (encoded) argument name `raw` is `name`; decodes only when it must.
fn arg_is(raw: &str, name: &str) -> bool {
    if raw.contains(['%', '+']) {
        percent_decode(raw) == name.as_bytes()
    } else {
        raw == name
    }
}

/// Reads and parses the body when its content type is one Kong's `get_body` reads
/// (form or JSON); otherwise leaves it streaming and searches nothing in it.
async fn read_body(req: &mut Req) -> Result<Parsed, Exit> {
    let kind = req
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let kind = match kind.as_deref() {
        Some(t) if t.starts_with("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(t) if t.starts_with("application/json") => BodyKind::Json,
        _ => return Ok(Parsed::Empty),
    };
    let raw = match req.body.read(BODY_LIMIT).await {
        Ok(b) => b.clone(),
        Err(BodyError::TooLarge { limit }) => {
            tracing::info!(
                limit,
                "key-auth: request body too large to look for a key in"
            );
            return Err(Exit::error(413, "Request size limit exceeded"));
        }
        Err(BodyError::Read(e)) => {
            tracing::info!(error = %e, "key-auth: cannot read the request body");
            return Err(Exit::error(400, "Cannot process request body"));
        }
    };
    Ok(match kind {
        BodyKind::Form => Parsed::Form(raw),
        BodyKind::Json => match serde_json::from_slice(&raw) {
            Ok(serde_json::Value::Object(obj)) => Parsed::Json(obj),
            Ok(_) | Err(_) => {
                tracing::info!("key-auth: request body is not a JSON object");
                Parsed::Empty
            }
        },
    })
}

enum BodyKind {
    Form,
    Json,
}

#[cfg(test)]
pub(crate) mod tests;
