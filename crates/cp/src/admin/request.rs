//! Reading a request: path segments, query arguments, the body (JSON or a form) and the
//! request id.

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::form;
use super::reply::Reply;
use super::MAX_BODY_BYTES;

/// The header a client sets so that a retried write applies once.
pub(super) const REQUEST_ID_HEADER: &str = "x-request-id";

pub(super) struct AdminRequest {
    pub method: Method,
    /// Percent-decoded path segments, trailing slashes dropped; `None` when a segment is
    /// not UTF-8 (no entity can be named by it).
    pub segments: Option<Vec<String>>,
    /// Segments as they came, for `next` links.
    pub raw_segments: Vec<String>,
    pub query: Query,
    headers: HeaderMap,
    body: Option<Incoming>,
}

// === impl AdminRequest ===

impl AdminRequest {
    pub fn new(req: Request<Incoming>) -> Self {
        let (parts, body) = req.into_parts();
        let raw_segments = raw_segments(parts.uri.path());
        let segments = raw_segments
            .iter()
            .map(|s| String::from_utf8(percent_decode(s, false)).ok())
            .collect();
        AdminRequest {
            method: parts.method,
            segments,
            raw_segments,
            query: Query::parse(parts.uri.query().unwrap_or("")),
            headers: parts.headers,
            body: Some(body),
        }
    }

    /// `X-Request-Id`, which must be a UUID when present.
    pub fn request_id(&self) -> Result<Option<Uuid>, Reply> {
        let Some(v) = self.headers.get(REQUEST_ID_HEADER) else {
            return Ok(None);
        };
        let text = v.to_str().unwrap_or("").trim();
        Uuid::parse_str(text).map(Some).map_err(|_| {
            Reply::bad_request(format!(
                "X-Request-Id must be a UUID (e.g. 0b4e5b29-6f53-4a52-9a3c-4c1a1b3c0f5e), got '{}'",
                String::from_utf8_lossy(v.as_bytes())
            ))
        })
    }

    pub fn content_type(&self) -> Option<String> {
        self.headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The raw body, at most `limit` bytes (413 beyond, before reading when the length
    /// is declared).
    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, Reply> {
        let too_large = || {
            Reply::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {limit} bytes"),
            )
        };
        let declared = self
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(Reply::bad_request(format!("Cannot read request body: {e}"))),
        }
    }

    /// The body by its Content-Type: JSON (also when none is given), or a form
    /// (`application/x-www-form-urlencoded`, `multipart/form-data`) decoded with Kong's
    /// key syntax into a tree of strings. Empty is `{}`.
    pub async fn body(&mut self) -> Result<Body, Reply> {
        let bytes = self.bytes(MAX_BODY_BYTES).await?;
        let content_type = self.content_type();
        parse_body(&bytes, content_type.as_deref())
    }

    /// The body as JSON whatever its encoding; forms stay strings (for bodies without an
    /// entity schema to coerce by).
    pub async fn json_body(&mut self) -> Result<Value, Reply> {
        Ok(self.body().await?.into_value())
    }
}

/// A request body, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Body {
    Json(Value),
    /// Form fields as strings, `""` already turned into `null` as Kong does; values are
    /// coerced to the schema's types by the caller.
    Form(Value),
}

impl Body {
    pub fn into_value(self) -> Value {
        match self {
            Body::Json(v) | Body::Form(v) => v,
        }
    }
}

/// What media type a Content-Type names, lower-cased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub(super) fn is_form(content_type: &str) -> bool {
    media_type(content_type) == "application/x-www-form-urlencoded"
}

pub(super) fn is_multipart(content_type: &str) -> bool {
    media_type(content_type) == "multipart/form-data"
}

pub(super) fn parse_body(bytes: &[u8], content_type: Option<&str>) -> Result<Body, Reply> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Json(Value::Object(Map::new())));
    }
    match content_type {
        None => parse_json(bytes).map(Body::Json),
        Some(ct) if is_json(ct) => parse_json(bytes).map(Body::Json),
        Some(ct) if is_form(ct) => Ok(Body::Form(form::decode(form::urlencoded(bytes)))),
        Some(ct) if is_multipart(ct) => {
            let parts = form::multipart(bytes, ct).map_err(|why| {
                Reply::bad_request(format!("Cannot parse multipart/form-data body: {why}"))
            })?;
            Ok(Body::Form(form::decode(parts)))
        }
        // Kong ignores a body it cannot read and validates what is left; we say why.
        Some(ct) => Err(Reply::message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type: {ct}; send application/json, \
                 application/x-www-form-urlencoded or multipart/form-data"
            ),
        )),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice(bytes).map_err(|_| Reply::bad_request("Cannot parse JSON body"))
}

/// `application/json` and `application/*+json`, any parameters.
pub(super) fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Path segments as sent, without the leading slash and without trailing slashes (Kong
/// accepts `/services/`).
pub(super) fn raw_segments(path: &str) -> Vec<String> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split('/').map(str::to_string).collect()
}

/// Decodes `%XX`; `plus_is_space` for query strings. A `%` not followed by two hex digits
/// stays as it is, as nginx leaves it.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)),
            _ => None,
        };
        match (escaped, b[i]) {
            (Some((h, l)), _) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (None, b'+') if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Escapes everything but RFC 3986 unreserved characters, as `ngx.escape_uri` does for
/// Kong's `next` links.
pub(super) fn escape_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Query arguments in order; a name may repeat.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Query(pub Vec<(String, String)>);

// === impl Query ===

impl Query {
    pub fn parse(q: &str) -> Self {
        let pairs = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let dec = |s: &str| String::from_utf8_lossy(&percent_decode(s, true)).into_owned();
                (dec(k), dec(v))
            })
            .collect();
        Query(pairs)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
