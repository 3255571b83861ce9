//! cors: answers preflight requests itself (unless told to pass them on) and adds the
//! CORS headers to every other response, the upstream's or a plugin's.
//!
//! Origins are matched as Kong's handler does: one origin that looks like a plain
//! origin (only `[A-Za-z0-9.:/-]`) is sent back as configured whatever the request's
//! `Origin`; otherwise each entry is tried in order, a plain one against the request's
//! origin normalised to `scheme://host[:port]` (default ports dropped), one with other
//! characters as a regex anchored at both ends, over the request's host alone when the
//! entry has no `:` and over the normalised origin when it has.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;
use tidegate_model::plugins::cors::CorsConfig;

use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Plugin};
use crate::runtime::Runtime;

const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ORIGIN_VALUE: HeaderValue = HeaderValue::from_static("Origin");

pub struct Cors {
    origins: Origins,
    credentials: bool,
    /// `headers` joined; `None` echoes the request's `Access-Control-Request-Headers`.
    allow_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    exposed_headers: Option<HeaderValue>,
    private_network: bool,
    preflight_continue: bool,
    allow_origin_absent: bool,
}

enum Origins {
    /// No origins, or only `*`.
    Any,
    /// A single plain origin, sent as configured.
    Fixed(HeaderValue),
    /// Entries tried in order against the request's origin.
    List { entries: Vec<Entry>, has_any: bool },
}

enum Entry {
    Exact(String),
    Regex { re: Regex, by_host: bool },
}

/// Per request: the request's `Origin` (the response phase no longer sees the request),
/// or that this was a preflight and the response is not ours to decorate.
#[derive(Clone)]
enum Seen {
    Origin(Option<HeaderValue>),
    Preflight,
}

pub fn build(c: &CorsConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(Cors::new(c)?))
}

/// Kong's test for "this does not look like a regex".
fn is_plain(origin: &str) -> bool {
    !origin.is_empty()
        && origin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'-'))
}

fn joined(list: &[String]) -> Result<Option<HeaderValue>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    let s = list.join(",");
    HeaderValue::from_str(&s)
        .map(Some)
        .map_err(|_| format!("'{s}' is not a valid header value"))
}

/// Lua's `tostring` of a number: integers without a fraction.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

// === impl Cors ===

impl Cors {
    fn new(c: &CorsConfig) -> Result<Cors, String> {
        let list = c.origins.as_deref().unwrap_or_default();
        let origins = match list {
            [] => Origins::Any,
            [one] if one == "*" => Origins::Any,
            [one] if is_plain(one) => Origins::Fixed(
                HeaderValue::from_str(one)
                    .map_err(|_| format!("origin '{one}' is not a valid header value"))?,
            ),
            many => {
                let mut entries = Vec::with_capacity(many.len());
                let mut has_any = false;
                for entry in many {
                    if entry == "*" {
                        has_any = true;
                    } else if is_plain(entry) || entry.is_empty() {
                        entries.push(Entry::Exact(normalize(entry).domain.into_owned()));
                    } else {
                        // Kong 0.x did not anchor origins; Kong anchors them at the end
                        // unless the user did, and matches from the start.
                        let body = entry.strip_prefix('^').unwrap_or(entry);
                        let anchored = if body.ends_with('$') {
                            format!("^(?:{body})")
                        } else {
                            format!("^(?:{body}$)")
                        };
                        let re = Regex::new(&anchored)
                            .map_err(|e| format!("origin '{entry}' is not a valid regex: {e}"))?;
                        entries.push(Entry::Regex {
                            re,
                            by_host: !entry.contains(':'),
                        });
                    }
                }
                Origins::List { entries, has_any }
            }
        };
        let max_age = c
            .max_age
            .map(|n| HeaderValue::from_str(&lua_number(n)))
            .transpose()
            .map_err(|_| "max_age is not a valid header value".to_string())?;
        Ok(Cors {
            origins,
            credentials: c.credentials,
            allow_headers: joined(c.headers.as_deref().unwrap_or_default())?,
            // An empty list is sent as an empty header, as Kong's `concat` gives "".
            methods: HeaderValue::from_str(&c.methods.join(","))
                .map_err(|_| "methods are not a valid header value".to_string())?,
            max_age,
            exposed_headers: joined(c.exposed_headers.as_deref().unwrap_or_default())?,
            private_network: c.private_network,
            preflight_continue: c.preflight_continue,
            allow_origin_absent: c.allow_origin_absent,
        })
    }

    /// Kong's `configure_origin` and `configure_credentials` over `headers`. In the
    /// header filter (`filter`) `Vary` is added to the upstream's; on a preflight it is
    /// set.
    fn allow_origin(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap, filter: bool) {
        let vary = |h: &mut HeaderMap| {
            if filter {
                h.append(VARY, ORIGIN_VALUE);
            } else {
                h.insert(VARY, ORIGIN_VALUE);
            }
        };
        let allow_all = match &self.origins {
            Origins::Any => {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                true
            }
            Origins::Fixed(v) => {
                vary(headers);
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v.clone());
                false
            }
            Origins::List { entries, has_any } => {
                vary(headers);
                match origin {
                    // Kong returns at a `*` entry before trying any other.
                    Some(_) if *has_any => {
                        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                        true
                    }
                    Some(o) => {
                        let raw = String::from_utf8_lossy(o.as_bytes());
                        let n = normalize(&raw);
                        let found = entries.iter().any(|e| match e {
                            Entry::Exact(d) => *d == n.domain,
                            Entry::Regex { re, by_host } => {
                                re.is_match(if *by_host { n.host } else { &n.domain })
                            }
                        });
                        match HeaderValue::from_str(&n.domain) {
                            Ok(v) if found => {
                                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
                            }
                            _ => {
                                headers.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
                            }
                        }
                        false
                    }
                    None => {
                        headers.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
                        false
                    }
                }
            }
        };
        if !self.credentials {
            return;
        }
        if !allow_all {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        } else if let Some(o) = origin {
            // `*` cannot go with credentials, so the request's origin is echoed.
            vary(headers);
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
    }

    fn preflight(&self, req: &Req) -> Exit {
        let mut e = Exit::empty(200);
        let h = &mut e.headers;
        self.allow_origin(req.headers.get(ORIGIN), h, false);
        match (
            &self.allow_headers,
            req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
        ) {
            (Some(v), _) | (None, Some(v)) => {
                h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            (None, None) => {}
        }
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(v) = &self.max_age {
            h.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if self.private_network
            && req
                .headers
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes() == b"true")
        {
            h.insert(ALLOW_PRIVATE_NETWORK, TRUE);
        }
        e
    }
}

impl Plugin for Cors {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        let origin = req.headers.get(ORIGIN);
        let is_preflight = req.method == Method::OPTIONS
            && origin.is_some()
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !is_preflight {
            cx.extensions.insert(Seen::Origin(origin.cloned()));
            return Access::CONTINUE;
        }
        // A preflight passed on is the upstream's to answer; one answered here already
        // has every header it needs.
        cx.extensions.insert(Seen::Preflight);
        if self.preflight_continue {
            return Access::CONTINUE;
        }
        Access::exit(self.preflight(req))
    }

    fn response_headers(&self, cx: &mut Ctx<'_>, resp: &mut http::response::Parts) {
        let origin = match cx.extensions.get::<Seen>() {
            Some(Seen::Origin(o)) => o.as_ref(),
            Some(Seen::Preflight) => return,
            None => None,
        };
        if origin.is_none() && !self.allow_origin_absent {
            return;
        }
        self.allow_origin(origin, &mut resp.headers, true);
        if let Some(v) = &self.exposed_headers {
            resp.headers
                .insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

// === origin normalisation ===

/// An origin as Kong compares it (`normalize_origin`): `domain` is
/// `scheme://host[:port]` without the scheme's default port, `host` the host alone.
/// Something LuaSocket finds no host in is both, unchanged.
#[derive(Debug, PartialEq)]
struct Normalized<'a> {
    domain: Cow<'a, str>,
    host: &'a str,
}

/// LuaSocket's `url.parse`, as far as the scheme, host and port go.
fn normalize(origin: &str) -> Normalized<'_> {
    let unchanged = Normalized {
        domain: Cow::Borrowed(origin),
        host: origin,
    };
    // `^([%w][%w%+%-%.]*)%:`
    let b = origin.as_bytes();
    let scheme_len = if b.first().is_some_and(u8::is_ascii_alphanumeric) {
        let n = b
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            .count();
        (b.get(n) == Some(&b':')).then_some(n)
    } else {
        None
    };
    let (scheme, rest) = match scheme_len {
        Some(n) => (Some(&origin[..n]), &origin[n + 1..]),
        None => (None, origin),
    };
    // `^//([^/]*)`
    let Some(after) = rest.strip_prefix("//") else {
        return unchanged;
    };
    let mut authority = &after[..after.find('/').unwrap_or(after.len())];
    // `^([^@]*)@`
    if let Some(at) = authority.find('@') {
        authority = &authority[at + 1..];
    }
    // `:([^:%]]*)$`
    let mut port = None;
    if let Some(colon) = authority.rfind(':') {
        let p = &authority[colon + 1..];
        if !p.contains(']') {
            port = Some(p);
            authority = &authority[..colon];
        }
    }
    if authority.is_empty() {
        return unchanged;
    }
    // `^%[(.+)%]$`
    let host = authority
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| !h.is_empty())
        .unwrap_or(authority);
    if matches!(
        (scheme, port),
        (Some("http"), Some("80")) | (Some("https"), Some("443"))
    ) {
        port = None;
    }
    let mut domain = String::with_capacity(origin.len());
    if let Some(s) = scheme {
        domain.push_str(s);
        domain.push_str("://");
    }
    domain.push_str(host);
    if let Some(p) = port {
        domain.push(':');
        domain.push_str(p);
    }
    Normalized {
        domain: Cow::Owned(domain),
        host,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bundled::testing;
    use crate::consumers::Consumers;
    use crate::phase::{ExitBody, Flow};

    fn plugin(config: serde_json::Value) -> Cors {
        Cors::new(&testing::typed_config!(Cors, "cors", config)).expect("builds")
    }

    fn req(method: Method, headers: &[(&str, &str)]) -> Req {
        testing::req(method, "/", None, headers, testing::buffered(""))
    }

    /// The headers a request gets back: a preflight's own response, or what the
    /// response phase adds to an upstream response with `upstream` headers.
    fn respond(p: &Cors, r: &mut Req, upstream: &[(&str, &str)]) -> (u16, HeaderMap) {
        let consumers = Consumers::default();
        let mut cx = testing::cx(&consumers);
        let (status, headers) = match testing::access_now(p, &mut cx, r, "cors") {
            Flow::Exit(e) => {
                assert!(matches!(e.body, ExitBody::Empty));
                (e.status.as_u16(), e.headers)
            }
            Flow::Continue => (200, testing::response_parts(upstream).headers),
        };
        let mut parts = http::Response::new(()).into_parts().0;
        parts.headers = headers;
        p.response_headers(&mut cx, &mut parts);
        (status, parts.headers)
    }

    fn acao(p: &Cors, origin: &str) -> Option<String> {
        let mut r = req(
            Method::OPTIONS,
            &[("origin", origin), ("access-control-request-method", "GET")],
        );
        let (status, h) = respond(p, &mut r, &[]);
        assert_eq!(status, 200);
        h.get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn get(h: &HeaderMap, name: HeaderName) -> Option<&str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    /// Kong's own regex test cases (spec/03-plugins/13-cors): `true` accepts and echoes
    /// the origin, a string accepts with that value, `false` rejects.
    #[test]
    fn origin_matching_follows_kongs_cases() {
        enum A {
            Echo,
            Is(&'static str),
            No,
        }
        use A::*;
        const ORIGINS: [&str; 11] = [
            "http://evil.test",
            "http://foo.test",
            "http://foo.test.evil.test",
            "http://something.foo.test",
            "http://evilfoo.test",
            "http://foo.test:80",
            "http://foo.test:8000",
            "https://foo.test:8000",
            "http://foo.test:90",
            "http://foobtest",
            "https://bar.test:1234",
        ];
        let cases: Vec<(serde_json::Value, [A; 11])> = vec![
            (
                json!(["foo.test"]),
                [
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                    Is("foo.test"),
                ],
            ),
            (
                json!(["https://bar.test:1234"]),
                [
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                    Is("https://bar.test:1234"),
                ],
            ),
            (
                json!(["foo\\.test"]),
                [
                    No,
                    Echo,
                    No,
                    No,
                    No,
                    Is("http://foo.test"),
                    Echo,
                    Echo,
                    Echo,
                    No,
                    No,
                ],
            ),
            (
                json!(["(.*[./])?foo\\.test"]),
                [
                    No,
                    Echo,
                    No,
                    Echo,
                    No,
                    Is("http://foo.test"),
                    Echo,
                    Echo,
                    Echo,
                    No,
                    No,
                ],
            ),
            (
                json!(["(.*[./])?foo\\.test:8000"]),
                [No, No, No, No, No, No, Echo, Echo, No, No, No],
            ),
            (
                json!(["https://(.*[.])?foo\\.test:8000"]),
                [No, No, No, No, No, No, No, Echo, No, No, No],
            ),
            (
                json!(["^http://(.*[.])?foo\\.test(:(80|90))?$"]),
                [
                    No,
                    Echo,
                    No,
                    Echo,
                    No,
                    Is("http://foo.test"),
                    No,
                    No,
                    Echo,
                    No,
                    No,
                ],
            ),
            (
                json!(["foo.test", "bar.test"]),
                [No, No, No, No, No, No, No, No, No, No, No],
            ),
            (
                json!(["http://foo.test", "https://bar.test:1234"]),
                [
                    No,
                    Echo,
                    No,
                    No,
                    No,
                    Is("http://foo.test"),
                    No,
                    No,
                    No,
                    No,
                    Echo,
                ],
            ),
            (
                json!(["bar.test", "foo\\.test"]),
                [
                    No,
                    Echo,
                    No,
                    No,
                    No,
                    Is("http://foo.test"),
                    Echo,
                    Echo,
                    Echo,
                    No,
                    No,
                ],
            ),
            (
                json!(["bar.test", "(.*\\.)?foo\\.test"]),
                [
                    No,
                    Echo,
                    No,
                    Echo,
                    No,
                    Is("http://foo.test"),
                    Echo,
                    Echo,
                    Echo,
                    No,
                    No,
                ],
            ),
            (
                json!(["bar.test", "(.*[./])?foo\\.test:8000"]),
                [No, No, No, No, No, No, Echo, Echo, No, No, No],
            ),
            (
                json!(["bar.test", "https://(.*\\.)?foo\\.test:8000"]),
                [No, No, No, No, No, No, No, Echo, No, No, No],
            ),
        ];
        for (origins, expected) in cases {
            let p = plugin(json!({ "origins": origins }));
            for (origin, want) in ORIGINS.iter().zip(expected) {
                let want = match want {
                    Echo => Some(origin.to_string()),
                    Is(s) => Some(s.to_string()),
                    No => None,
                };
                assert_eq!(acao(&p, origin), want, "{origins} with {origin}");
            }
        }
    }

    #[test]
    fn preflight_defaults() {
        let p = plugin(json!({}));
        let mut r = req(
            Method::OPTIONS,
            &[
                ("origin", "origin1.com"),
                ("access-control-request-method", "GET"),
            ],
        );
        let (status, h) = respond(&p, &mut r, &[]);
        assert_eq!(status, 200);
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        for absent in [
            ACCESS_CONTROL_ALLOW_HEADERS,
            ACCESS_CONTROL_EXPOSE_HEADERS,
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ACCESS_CONTROL_MAX_AGE,
            VARY,
        ] {
            assert_eq!(h.get(&absent), None, "{absent}");
        }
    }

    #[test]
    fn preflight_with_options() {
        let p = plugin(json!({
            "origins": ["example.com"],
            "methods": ["GET"],
            "headers": ["origin", "type", "accepts"],
            "exposed_headers": ["x-auth-token"],
            "max_age": 23,
            "credentials": true,
        }));
        let mut r = req(
            Method::OPTIONS,
            &[
                ("origin", "origin5.com"),
                ("access-control-request-method", "GET"),
            ],
        );
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_METHODS), Some("GET"));
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("example.com"));
        assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("23"));
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_HEADERS),
            Some("origin,type,accepts")
        );
        assert_eq!(get(&h, VARY), Some("Origin"));
        assert_eq!(h.get(ACCESS_CONTROL_EXPOSE_HEADERS), None);
    }

    #[test]
    fn wildcard_with_credentials_echoes_the_origin() {
        let p = plugin(json!({"origins": ["*"], "credentials": true}));
        let mut r = req(
            Method::OPTIONS,
            &[
                ("origin", "origin5.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "origin,accepts"),
            ],
        );
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("origin5.com"));
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_HEADERS),
            Some("origin,accepts")
        );
        assert_eq!(
            h.get_all(VARY).iter().count(),
            1,
            "set, not added, on a preflight"
        );
    }

    #[test]
    fn private_network() {
        let p = plugin(json!({"private_network": true}));
        let mut r = req(
            Method::OPTIONS,
            &[
                ("origin", "a.test"),
                ("access-control-request-method", "GET"),
                ("access-control-request-private-network", "true"),
            ],
        );
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ALLOW_PRIVATE_NETWORK), Some("true"));
        let p = plugin(json!({}));
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(h.get(ALLOW_PRIVATE_NETWORK), None);
    }

    #[test]
    fn preflight_continue_leaves_the_response_alone() {
        let p = plugin(json!({"preflight_continue": true, "origins": ["example.com"]}));
        let mut r = req(
            Method::OPTIONS,
            &[
                ("origin", "a.test"),
                ("access-control-request-method", "GET"),
            ],
        );
        let (status, h) = respond(&p, &mut r, &[("x-upstream", "1")]);
        assert_eq!(status, 200);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn normal_requests() {
        // An OPTIONS without Access-Control-Request-Method is not a preflight.
        let p = plugin(json!({}));
        let mut r = req(Method::OPTIONS, &[("origin", "a.test")]);
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_METHODS), None);
        assert_eq!(h.get(VARY), None);

        let p = plugin(json!({
            "origins": ["example.com"],
            "exposed_headers": ["x-auth-token", "x-other"],
            "credentials": true,
        }));
        let mut r = req(Method::GET, &[]);
        let (_, h) = respond(&p, &mut r, &[("vary", "Accept-Encoding")]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("example.com"));
        assert_eq!(
            get(&h, ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("x-auth-token,x-other")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        let vary: Vec<_> = h
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            vary,
            ["Accept-Encoding", "Origin"],
            "added to the upstream's"
        );
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_METHODS), None);
        assert_eq!(h.get(ACCESS_CONTROL_MAX_AGE), None);

        // A rejected origin clears what the upstream said.
        let p = plugin(json!({"origins": ["http://a.test", "http://b.test"]}));
        let mut r = req(Method::GET, &[("origin", "http://evil.test")]);
        let (_, h) = respond(&p, &mut r, &[("access-control-allow-origin", "*")]);
        assert_eq!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN), None);
        assert_eq!(get(&h, VARY), Some("Origin"));

        // A `*` among other origins answers `*` to any origin.
        let p = plugin(json!({"origins": ["http://a.test", "*"]}));
        let mut r = req(Method::GET, &[("origin", "http://evil.test")]);
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    }

    #[test]
    fn allow_origin_absent() {
        let p = plugin(json!({"allow_origin_absent": false}));
        let mut r = req(Method::GET, &[]);
        let (_, h) = respond(&p, &mut r, &[]);
        assert!(h.is_empty(), "{h:?}");
        let mut r = req(Method::GET, &[("origin", "a.test")]);
        let (_, h) = respond(&p, &mut r, &[]);
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    }

    #[test]
    fn normalisation() {
        let n = |s| {
            let n = normalize(s);
            (n.domain.into_owned(), n.host.to_string())
        };
        let own = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(n("http://foo.test:80"), own("http://foo.test", "foo.test"));
        assert_eq!(
            n("https://foo.test:443"),
            own("https://foo.test", "foo.test")
        );
        assert_eq!(
            n("https://foo.test:80"),
            own("https://foo.test:80", "foo.test")
        );
        assert_eq!(
            n("http://u@foo.test:8000/x"),
            own("http://foo.test:8000", "foo.test")
        );
        assert_eq!(n("http://[::1]:8080"), own("http://::1:8080", "::1"));
        assert_eq!(n("//foo.test"), own("foo.test", "foo.test"));
        // No `//` after the scheme: no host, left as is.
        assert_eq!(n("foo.test"), own("foo.test", "foo.test"));
        assert_eq!(n("localhost:8080"), own("localhost:8080", "localhost:8080"));
        assert_eq!(n(""), own("", ""));
        assert_eq!(lua_number(23.0), "23");
        assert_eq!(lua_number(1.5), "1.5");
    }
}
