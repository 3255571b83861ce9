//! Entity validation against Kong 3.x: the defaults of minimal inputs and the exact error
//! bodies (code, name, message, fields) of invalid ones, table-driven per kind.

use serde_json::{json, Value};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use tidegate_model::entities::{hash_password, normalize_target};
use tidegate_model::{Ctx, Entity, EntityKind, Fixed, Lookup};
use uuid::Uuid;

const ID: &str = "11111111-1111-4111-8111-111111111111";
const SERVICE_ID: &str = "22222222-2222-4222-8222-222222222222";
const CONSUMER_ID: &str = "33333333-3333-4333-8333-333333333333";
const UPSTREAM_ID: &str = "44444444-4444-4444-8444-444444444444";
const CERT_ID: &str = "55555555-5555-4555-8555-555555555555";
const ROUTE_ID: &str = "66666666-6666-4666-8666-666666666666";
const UNKNOWN_ID: &str = "99999999-9999-4999-8999-999999999999";
const NOW: i64 = 1_700_000_000;
const ENTROPY: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;

/// Knows one entity of each parent kind, by id and by endpoint key.
struct TestLookup;

impl Lookup for TestLookup {
    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<Uuid> {
        let id = match (kind, key) {
            (EntityKind::Service, "svc") => SERVICE_ID,
            (EntityKind::Consumer, "alice") => CONSUMER_ID,
            (EntityKind::Upstream, "up") => UPSTREAM_ID,
            (EntityKind::Route, "r1") => ROUTE_ID,
            _ => return None,
        };
        Some(id.parse().unwrap())
    }
    fn exists(&self, kind: EntityKind, id: Uuid) -> bool {
        let known = match kind {
            EntityKind::Service => SERVICE_ID,
            EntityKind::Consumer => CONSUMER_ID,
            EntityKind::Upstream => UPSTREAM_ID,
            EntityKind::Certificate => CERT_ID,
            EntityKind::Route => ROUTE_ID,
            _ => return false,
        };
        id == known.parse::<Uuid>().unwrap()
    }
}

fn fixed(now: i64) -> Fixed {
    Fixed {
        id: ID.parse().unwrap(),
        now,
        entropy: ENTROPY,
    }
}

fn read_with(kind: EntityKind, input: &Value, now: i64, transform: bool) -> Result<Value, Value> {
    let ctx = Ctx {
        fixed: fixed(now),
        lookup: &TestLookup,
        force_id: None,
        transform,
    };
    Entity::from_json(kind, input, &ctx)
        .map(|e| e.to_json())
        .map_err(|e| e.to_json())
}

fn read(kind: EntityKind, input: &Value) -> Result<Value, Value> {
    read_with(kind, input, NOW, true)
}

/// Kong's schema-violation body.
fn sv(message: &str, fields: Value) -> Value {
    json!({"code": 2, "name": "schema violation", "message": message, "fields": fields})
}

/// `N schema violations (…)` from the parts, the way Kong joins them.
fn svs(parts: &[&str], fields: Value) -> Value {
    let message = if parts.len() == 1 {
        format!("schema violation ({})", parts[0])
    } else {
        format!("{} schema violations ({})", parts.len(), parts.join("; "))
    };
    sv(&message, fields)
}

fn unresolved(field: &str, key: &str, value: &str, parent: &str) -> Value {
    let detail = format!(
        "the foreign key cannot be resolved with '{{{key}=\"{value}\"}}' for an existing '{parent}' entity"
    );
    json!({
        "code": 13,
        "name": "foreign keys unresolved",
        "message": format!("foreign key unresolved ({field}.{key}: {detail})"),
        "fields": {field: {key: detail}},
    })
}

fn fk_violation(field: &str, id: &str, parent: &str) -> Value {
    json!({
        "code": 4,
        "name": "foreign key violation",
        "message": format!("the foreign key '{{id=\"{id}\"}}' does not reference an existing '{parent}' entity."),
        "fields": {field: {"id": id}},
    })
}

/// Runs every row and reports all mismatches at once.
fn check_rows(kind: EntityKind, rows: &[(Value, Value)]) {
    let mut failures = Vec::new();
    for (i, (input, want)) in rows.iter().enumerate() {
        let got = match read(kind, input) {
            Ok(v) => json!({"accepted": v}),
            Err(e) => e,
        };
        if &got != want {
            failures.push(format!("row {i}: {input}\n   want {want}\n   got  {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{kind}: {} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Like [`check_rows`] but without the message: for errors nested two levels deep, whose
/// message Kong pretty-prints (see `nested_error_messages_like_kong`).
fn check_rows_but_message(kind: EntityKind, rows: &[(Value, Value)]) {
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("message");
        }
        v
    };
    let rows: Vec<(Value, Value)> = rows
        .iter()
        .map(|(i, w)| (i.clone(), strip(w.clone())))
        .collect();
    let mut failures = Vec::new();
    for (i, (input, want)) in rows.iter().enumerate() {
        let got = strip(read(kind, input).err().unwrap_or(Value::Null));
        if &got != want {
            failures.push(format!("row {i}: {input}\n   want {want}\n   got  {got}"));
        }
    }
    assert!(failures.is_empty(), "{kind}:\n{}", failures.join("\n"));
}

/// The entity's JSON equals `want`, fields in the same order.
fn assert_entity(kind: EntityKind, input: Value, want: Value) {
    let got = read(kind, &input).unwrap_or_else(|e| panic!("{kind} {input} rejected: {e}"));
    assert_eq!(got, want, "{kind} {input}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want), "{kind}: field order");
}

fn accepted_field(kind: EntityKind, input: Value, field: &str) -> Value {
    let got = read(kind, &input).unwrap_or_else(|e| panic!("{kind} {input} rejected: {e}"));
    got[field].clone()
}

const COND_PROTOCOL: &str = "failed conditional validation given value of field 'protocol'";
const COND_HASH_ON: &str = "failed conditional validation given value of field 'hash_on'";
const COND_HASH_FALLBACK: &str =
    "failed conditional validation given value of field 'hash_fallback'";
const ALL_PROTOCOLS: &str =
    "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp";

// ---------------------------------------------------------------------------------------
// services

#[test]
fn service_defaults() {
    assert_entity(
        EntityKind::Service,
        json!({"host": "example.com"}),
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "name": null, "retries": 5,
            "protocol": "http", "host": "example.com", "port": 80, "path": null,
            "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
            "tags": null, "client_certificate": null, "tls_verify": null,
            "tls_verify_depth": null, "ca_certificates": null, "enabled": true
        }),
    );
}

#[test]
fn service_url_shorthand() {
    let parts = |url: Value, extra: Value| {
        let mut input = json!({"url": url});
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let s = read(EntityKind::Service, &input).unwrap_or_else(|e| panic!("{input}: {e}"));
        json!([s["protocol"], s["host"], s["port"], s["path"]])
    };
    let none = json!({});
    assert_eq!(
        parts(json!("https://example.com/api?x=1#frag"), none.clone()),
        json!(["https", "example.com", 443, "/api"])
    );
    // Kong only derives 443 for `https`; every other scheme gets 80.
    assert_eq!(
        parts(json!("grpcs://example.com"), none.clone()),
        json!(["grpcs", "example.com", 80, null])
    );
    // No scheme: the protocol comes from the port.
    assert_eq!(
        parts(json!("//example.com:443"), none.clone()),
        json!(["https", "example.com", 443, null])
    );
    assert_eq!(
        parts(json!("tcp://user:pw@[::1]:9000"), none.clone()),
        json!(["tcp", "::1", 9000, null])
    );
    // The shorthand overwrites explicit values, path included.
    assert_eq!(
        parts(
            json!("http://example.com"),
            json!({"protocol": "https", "port": 8443, "path": "/x", "host": "other"})
        ),
        json!(["http", "example.com", 80, null])
    );
    let s = read(EntityKind::Service, &json!({"url": "http://example.com/a"})).unwrap();
    assert!(s.get("url").is_none(), "url is write-only");
}

#[test]
fn service_errors() {
    let rows = vec![
        (json!({}), svs(&["host: required field missing"], json!({"host": "required field missing"}))),
        (
            json!({"path": "foo"}),
            sv(
                "2 schema violations (host: required field missing; path: should start with: /)",
                json!({"host": "required field missing", "path": "should start with: /"}),
            ),
        ),
        (
            // A url without scheme is a path, as luasocket parses it.
            json!({"url": "example.com"}),
            sv(
                "2 schema violations (host: required field missing; path: should start with: /)",
                json!({"host": "required field missing", "path": "should start with: /"}),
            ),
        ),
        (
            json!({"host": "example.com", "protocol": "ws"}),
            svs(&[&format!("protocol: {ALL_PROTOCOLS}")], json!({"protocol": ALL_PROTOCOLS})),
        ),
        (
            json!({"host": "example.com:80"}),
            svs(&["host: must not have a port"], json!({"host": "must not have a port"})),
        ),
        (
            json!({"host": "exa mple.com"}),
            svs(&["host: invalid value: exa mple.com"], json!({"host": "invalid value: exa mple.com"})),
        ),
        (
            json!({"host": "x", "port": 65536}),
            svs(&["port: value should be between 0 and 65535"], json!({"port": "value should be between 0 and 65535"})),
        ),
        (
            json!({"host": "x", "port": "80"}),
            svs(&["port: expected an integer"], json!({"port": "expected an integer"})),
        ),
        (
            json!({"host": "x", "retries": -1}),
            svs(&["retries: value should be between 0 and 32767"], json!({"retries": "value should be between 0 and 32767"})),
        ),
        (
            json!({"host": "x", "connect_timeout": 0}),
            svs(
                &["connect_timeout: value should be between 1 and 2147483646"],
                json!({"connect_timeout": "value should be between 1 and 2147483646"}),
            ),
        ),
        (
            json!({"host": "x", "read_timeout": 2147483647}),
            svs(
                &["read_timeout: value should be between 1 and 2147483646"],
                json!({"read_timeout": "value should be between 1 and 2147483646"}),
            ),
        ),
        (
            json!({"host": "x", "protocol": "tcp", "path": "/a"}),
            svs(&[COND_PROTOCOL, "path: value must be null"], json!({"@entity": [COND_PROTOCOL], "path": "value must be null"})),
        ),
        (
            // The conditional's message replaces the field's own error.
            json!({"host": "x", "protocol": "grpc", "path": "foo"}),
            svs(&[COND_PROTOCOL, "path: value must be null"], json!({"@entity": [COND_PROTOCOL], "path": "value must be null"})),
        ),
        (
            json!({"host": "x", "tls_verify": true}),
            svs(&[COND_PROTOCOL, "tls_verify: value must be null"], json!({"@entity": [COND_PROTOCOL], "tls_verify": "value must be null"})),
        ),
        (
            json!({"host": "x", "protocol": "http", "tls_verify": true, "tls_verify_depth": 3}),
            svs(
                &[COND_PROTOCOL, COND_PROTOCOL, "tls_verify: value must be null", "tls_verify_depth: value must be null"],
                json!({
                    "@entity": [COND_PROTOCOL, COND_PROTOCOL],
                    "tls_verify": "value must be null",
                    "tls_verify_depth": "value must be null"
                }),
            ),
        ),
        (
            json!({"host": "x", "client_certificate": {"id": CERT_ID}}),
            svs(
                &[COND_PROTOCOL, "client_certificate: value must be null"],
                json!({"@entity": [COND_PROTOCOL], "client_certificate": "value must be null"}),
            ),
        ),
        (
            json!({"host": "x", "protocol": "udp", "ca_certificates": [CERT_ID]}),
            svs(
                &[COND_PROTOCOL, "ca_certificates: value must be null"],
                json!({"@entity": [COND_PROTOCOL], "ca_certificates": "value must be null"}),
            ),
        ),
        (
            json!({"host": "x", "protocol": "https", "tls_verify_depth": 65}),
            svs(&["tls_verify_depth: value should be between 0 and 64"], json!({"tls_verify_depth": "value should be between 0 and 64"})),
        ),
        (
            json!({"host": "x", "protocol": "https", "ca_certificates": [CERT_ID, "nope"]}),
            svs(&["ca_certificates.2: expected a valid UUID"], json!({"ca_certificates": [null, "expected a valid UUID"]})),
        ),
        (
            // A shorthand of the wrong type is the only error reported.
            json!({"url": 5, "port": "x"}),
            svs(&["url: expected a string"], json!({"url": "expected a string"})),
        ),
        (
            json!({"url": "http://exa mple.com"}),
            svs(&["host: invalid value: exa mple.com"], json!({"host": "invalid value: exa mple.com"})),
        ),
        (
            json!({"url": "HTTP://example.com"}),
            svs(&[&format!("protocol: {ALL_PROTOCOLS}")], json!({"protocol": ALL_PROTOCOLS})),
        ),
        (
            json!({"url": "http://example.com:99999"}),
            svs(&["port: value should be between 0 and 65535"], json!({"port": "value should be between 0 and 65535"})),
        ),
        (
            json!({"url": "http://example.com:8o"}),
            svs(&["port: expected an integer"], json!({"port": "expected an integer"})),
        ),
        (
            json!({"host": "x", "name": "my service"}),
            svs(
                &["name: invalid value 'my service': the only accepted ascii characters are alphanumerics or ., -, _, and ~"],
                json!({"name": "invalid value 'my service': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
            ),
        ),
        (
            json!({"host": "x", "foo": 1}),
            svs(&["foo: unknown field"], json!({"foo": "unknown field"})),
        ),
        (
            json!({"host": "x", "enabled": "yes"}),
            svs(&["enabled: expected a boolean"], json!({"enabled": "expected a boolean"})),
        ),
        (
            json!({"host": "x", "path": "/a b"}),
            svs(
                &["path: invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"],
                json!({"path": "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"}),
            ),
        ),
        (
            json!({"host": "x", "path": "/a%zz"}),
            svs(&["path: invalid url-encoded value: '%zz'"], json!({"path": "invalid url-encoded value: '%zz'"})),
        ),
        (
            json!({"host": "x", "path": "/a//b"}),
            svs(&["path: must not have empty segments"], json!({"path": "must not have empty segments"})),
        ),
        (
            json!({"host": "x", "tags": ["ok", "a,b"]}),
            svs(
                &["tags.2: invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"],
                json!({"tags": [null, "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"]}),
            ),
        ),
        (
            json!({"host": "x", "protocol": "https", "client_certificate": {"id": UNKNOWN_ID}}),
            fk_violation("client_certificate", UNKNOWN_ID, "certificates"),
        ),
    ];
    check_rows(EntityKind::Service, &rows);
}

// ---------------------------------------------------------------------------------------
// routes

fn route_defaults(extra: Value) -> Value {
    let mut v = json!({
        "id": ID, "created_at": NOW, "updated_at": NOW, "name": null,
        "protocols": ["http", "https"], "methods": null, "hosts": null, "paths": null,
        "headers": null, "https_redirect_status_code": 426, "regex_priority": 0,
        "strip_path": true, "path_handling": "v0", "preserve_host": false,
        "request_buffering": true, "response_buffering": true, "snis": null,
        "sources": null, "destinations": null, "tags": null, "service": null
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

#[test]
fn route_defaults_and_normalisation() {
    assert_entity(
        EntityKind::Route,
        json!({"paths": ["/"]}),
        route_defaults(json!({"paths": ["/"]})),
    );
    // grpc's subschema turns the strip_path default off.
    assert_entity(
        EntityKind::Route,
        json!({"protocols": ["grpc"], "paths": ["/"]}),
        route_defaults(json!({"protocols": ["grpc"], "paths": ["/"], "strip_path": false})),
    );
    assert_entity(
        EntityKind::Route,
        json!({"protocols": ["tcp"], "destinations": [{"ip": "10.0.0.0/8"}]}),
        route_defaults(
            json!({"protocols": ["tcp"], "destinations": [{"ip": "10.0.0.0/8", "port": null}]}),
        ),
    );
    assert_entity(
        EntityKind::Route,
        json!({"protocols": ["https"], "snis": ["a.example.com"]}),
        route_defaults(json!({"protocols": ["https"], "snis": ["a.example.com"]})),
    );
    // Sets drop duplicates; arrays keep them.
    assert_eq!(
        accepted_field(
            EntityKind::Route,
            json!({"methods": ["GET", "GET", "POST"]}),
            "methods"
        ),
        json!(["GET", "POST"])
    );
    assert_eq!(
        accepted_field(
            EntityKind::Route,
            json!({"hosts": ["*.a.com", "b.*", "c.com:8080", "[::1]:80"]}),
            "hosts"
        ),
        json!(["*.a.com", "b.*", "c.com:8080", "[::1]:80"])
    );
    assert_eq!(
        accepted_field(
            EntityKind::Route,
            json!({"paths": ["/"], "service": {"name": "svc"}}),
            "service"
        ),
        json!({"id": SERVICE_ID})
    );
    assert_eq!(
        accepted_field(
            EntityKind::Route,
            json!({"headers": {"x-v": ["1", "~*^v[0-9]$"]}}),
            "headers"
        ),
        json!({"x-v": ["1", "~*^v[0-9]$"]})
    );
}

#[test]
fn route_errors() {
    const HTTPS_NEED: &str =
        "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'";
    const SNIS_ONLY: &str =
        "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'";
    const MUTEX: &str =
        "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp')";
    const STREAM: &str = "'tcp', 'tls', 'tls_passthrough' or 'udp'";
    let one = |field: &str, msg: &str| svs(&[&format!("{field}: {msg}")], json!({ field: msg }));
    let item = |field: &str, i: usize, msg: &str| {
        let mut arr = vec![Value::Null; i - 1];
        arr.push(json!(msg));
        svs(&[&format!("{field}.{i}: {msg}")], json!({ field: arr }))
    };
    let entity = |msg: &str| svs(&[msg], json!({"@entity": [msg]}));
    let rows = vec![
        (json!({}), entity(HTTPS_NEED)),
        (
            json!({"protocols": ["http"]}),
            entity("must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"),
        ),
        (
            json!({"protocols": ["tcp", "tls"]}),
            entity("must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"),
        ),
        (
            json!({"protocols": ["tls_passthrough"]}),
            entity("must set snis when 'protocols' is 'tls_passthrough'"),
        ),
        (
            json!({"protocols": ["grpc"]}),
            entity("must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"),
        ),
        (
            json!({"protocols": ["grpc", "grpcs"], "headers": {}}),
            entity("must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"),
        ),
        (
            json!({"protocols": ["https"], "hosts": [], "paths": []}),
            entity(HTTPS_NEED),
        ),
        // No subschema for the protocols: nothing else is checked.
        (json!({"protocols": ["foo"], "paths": ["bad"]}), one("protocols", "unknown type: foo")),
        (json!({"protocols": [], "paths": ["/"]}), one("protocols", "unknown type: nil")),
        (json!({"protocols": "http", "paths": ["/"]}), one("protocols", "expected a set")),
        (json!({"protocols": ["http", "tcp"], "paths": ["/"]}), one("protocols", MUTEX)),
        (
            json!({"protocols": ["http", "tcp", "tls_passthrough"], "paths": ["/"]}),
            one("protocols", "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough')"),
        ),
        (json!({"protocols": ["http", "foo"], "paths": ["/"]}), item("protocols", 2, ALL_PROTOCOLS)),
        // Duplicates are dropped before the elements are checked.
        (json!({"protocols": ["http", "http", "foo"], "paths": ["/"]}), item("protocols", 2, ALL_PROTOCOLS)),
        (
            json!({"protocols": ["tcp"], "hosts": ["a.com"], "sources": [{"ip": "10.0.0.1"}]}),
            one("hosts", &format!("cannot set 'hosts' when 'protocols' is {STREAM}")),
        ),
        (
            json!({"protocols": ["tls"], "paths": [], "snis": ["a.com"]}),
            one("paths", &format!("cannot set 'paths' when 'protocols' is {STREAM}")),
        ),
        (
            json!({"protocols": ["udp"], "methods": ["GET"], "sources": [{"port": 53}]}),
            one("methods", &format!("cannot set 'methods' when 'protocols' is {STREAM}")),
        ),
        (
            json!({"protocols": ["tcp"], "headers": {"a": ["b"]}, "destinations": [{"port": 1}]}),
            one("headers", &format!("cannot set 'headers' when 'protocols' is {STREAM}")),
        ),
        (
            json!({"protocols": ["http"], "sources": [{"ip": "10.0.0.1"}], "paths": ["/"]}),
            one("sources", "cannot set 'sources' when 'protocols' is 'http' or 'https'"),
        ),
        (
            json!({"destinations": "anything", "paths": ["/"]}),
            one("destinations", "cannot set 'destinations' when 'protocols' is 'http' or 'https'"),
        ),
        (
            json!({"protocols": ["grpc"], "methods": ["GET"], "paths": ["/"]}),
            one("methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"),
        ),
        (
            json!({"protocols": ["grpc"], "strip_path": true, "paths": ["/"]}),
            one("strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"),
        ),
        (
            json!({"protocols": ["grpcs"], "destinations": [{"port": 80}], "paths": ["/"]}),
            one("destinations", "cannot set 'destinations' when 'protocols' is 'grpc' or 'grpcs'"),
        ),
        (json!({"methods": ["get"]}), item("methods", 1, "invalid value: get")),
        (json!({"hosts": ["*.*.example.com"]}), item("hosts", 1, "invalid wildcard: must have at most one wildcard")),
        (
            json!({"hosts": ["a.*.example.com"]}),
            item("hosts", 1, "invalid wildcard: must be placed at leftmost or rightmost label"),
        ),
        (json!({"hosts": ["ok.com", "exa mple.com"]}), item("hosts", 2, "invalid hostname: exa mple.com")),
        (json!({"hosts": ["*.exa mple.com"]}), item("hosts", 1, "invalid hostname: abc.exa mple.com")),
        (json!({"hosts": ["example.com:99999"]}), item("hosts", 1, "invalid port number")),
        (json!({"hosts": ["1.2.3.999"]}), item("hosts", 1, "invalid ipv4 address: 1.2.3.999")),
        (json!({"hosts": [""]}), item("hosts", 1, "length must be at least 1")),
        (json!({"hosts": "a.com"}), one("hosts", "expected an array")),
        (json!({"paths": ["foo"]}), item("paths", 1, "should start with: / (fixed path) or ~/ (regex path)")),
        (json!({"paths": ["/a//b"]}), item("paths", 1, "must not have empty segments")),
        (json!({"paths": ["/a/../b"]}), item("paths", 1, "non-normalized path, consider use '/b' instead")),
        (json!({"paths": ["/%7Euser"]}), item("paths", 1, "non-normalized path, consider use '/~user' instead")),
        (json!({"paths": ["/foo%zz"]}), item("paths", 1, "invalid url-encoded value: '%zz'")),
        (
            json!({"paths": ["/ok", "~/foo("]}),
            item("paths", 2, "invalid regex: '/foo(' (PCRE returned: unclosed group)"),
        ),
        (
            json!({"headers": {"Host": ["a.com"]}}),
            one("headers", "cannot contain 'host' header, which must be specified in the 'hosts' attribute"),
        ),
        (
            json!({"headers": {"x y": ["a"]}}),
            one("headers", "bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
        ),
        (json!({"headers": {"x-a": "b"}}), one("headers", "expected an array")),
        (json!({"headers": ["x"]}), one("headers", "expected a map")),
        (json!({"headers": {"x-a": ["ok", 5]}}), item("headers", 2, "expected a string")),
        (
            json!({"protocols": ["http"], "snis": ["a.com"], "paths": ["/"]}),
            svs(&[SNIS_ONLY, "snis: length must be 0"], json!({"@entity": [SNIS_ONLY], "snis": "length must be 0"})),
        ),
        (
            json!({"protocols": ["tcp"], "snis": ["a.com"]}),
            svs(&[SNIS_ONLY, "snis: length must be 0"], json!({"@entity": [SNIS_ONLY], "snis": "length must be 0"})),
        ),
        (
            json!({"protocols": ["http"], "snis": ["10.0.0.1"], "paths": ["/"]}),
            svs(&[SNIS_ONLY, "snis.1: must not be an IP"], json!({"@entity": [SNIS_ONLY], "snis": ["must not be an IP"]})),
        ),
        (json!({"snis": ["*.a.com"], "paths": ["/"]}), item("snis", 1, "invalid value: *.a.com")),
        (json!({"snis": ["a.com:443"]}), item("snis", 1, "must not have a port")),
        (
            json!({"paths": ["/"], "https_redirect_status_code": 300}),
            one("https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308"),
        ),
        (json!({"paths": ["/"], "path_handling": "v2"}), one("path_handling", "expected one of: v0, v1")),
        (json!({"paths": ["/"], "regex_priority": 1.5}), one("regex_priority", "expected an integer")),
        (json!({"paths": ["/"], "strip_path": "no"}), one("strip_path", "expected a boolean")),
        (
            json!({"paths": ["/"], "name": "a b"}),
            one("name", "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"),
        ),
        (
            json!({"paths": ["/"], "service": {"id": "nope"}}),
            svs(&["service.id: expected a valid UUID"], json!({"service": {"id": "expected a valid UUID"}})),
        ),
        (json!({"paths": ["/"], "service": {"name": "ghost"}}), unresolved("service", "name", "ghost", "services")),
        (json!({"paths": ["/"], "service": {"id": UNKNOWN_ID}}), fk_violation("service", UNKNOWN_ID, "services")),
    ];
    check_rows(EntityKind::Route, &rows);
}

// ---------------------------------------------------------------------------------------
// consumers

#[test]
fn consumer_defaults() {
    assert_entity(
        EntityKind::Consumer,
        json!({"username": "alice"}),
        json!({"id": ID, "created_at": NOW, "updated_at": NOW, "username": "alice", "custom_id": null, "tags": null}),
    );
    assert_entity(
        EntityKind::Consumer,
        json!({"custom_id": "c-1", "tags": ["a", "a", "b"]}),
        json!({"id": ID, "created_at": NOW, "updated_at": NOW, "username": null, "custom_id": "c-1", "tags": ["a", "b"]}),
    );
}

#[test]
fn consumer_errors() {
    const ONE: &str = "at least one of these fields must be non-empty: 'custom_id', 'username'";
    let rows = vec![
        (json!({}), svs(&[ONE], json!({"@entity": [ONE]}))),
        (
            // The entity check sees "" as empty even though the field itself is invalid.
            json!({"username": ""}),
            svs(
                &[ONE, "username: length must be at least 1"],
                json!({"@entity": [ONE], "username": "length must be at least 1"}),
            ),
        ),
        (
            json!({"username": 5}),
            svs(
                &["username: expected a string"],
                json!({"username": "expected a string"}),
            ),
        ),
        (
            json!({"custom_id": "c", "tags": "x"}),
            svs(&["tags: expected a set"], json!({"tags": "expected a set"})),
        ),
        (
            json!({"username": "u", "id": "x"}),
            svs(
                &["id: expected a valid UUID"],
                json!({"id": "expected a valid UUID"}),
            ),
        ),
    ];
    check_rows(EntityKind::Consumer, &rows);
}

// ---------------------------------------------------------------------------------------
// plugins

#[test]
fn plugin_defaults() {
    assert_entity(
        EntityKind::Plugin,
        json!({"name": "correlation-id", "service": {"name": "svc"}}),
        json!({
            "id": ID, "name": "correlation-id", "instance_name": null,
            "created_at": NOW, "updated_at": NOW, "route": null,
            "service": {"id": SERVICE_ID}, "consumer": null,
            "config": {"header_name": "Kong-Request-ID", "generator": "uuid#counter", "echo_downstream": false},
            "protocols": ["grpc", "grpcs", "http", "https"], "enabled": true, "tags": null
        }),
    );
}

#[test]
fn plugin_errors() {
    let not_enabled = "plugin 'foo' not enabled; add it to the 'plugins' configuration property";
    let rows = vec![
        (json!({"name": "foo"}), svs(&[&format!("name: {not_enabled}")], json!({"name": not_enabled}))),
        // The unknown name stops validation: other bad fields go unreported.
        (json!({"name": "foo", "enabled": "x", "config": 1}), svs(&[&format!("name: {not_enabled}")], json!({"name": not_enabled}))),
        (json!({"enabled": true}), svs(&["name: required field missing"], json!({"name": "required field missing"}))),
        (
            json!({"name": "correlation-id", "protocols": ["tcp"]}),
            svs(&["protocols.1: expected one of: grpc, grpcs, http, https"], json!({"protocols": ["expected one of: grpc, grpcs, http, https"]})),
        ),
        (
            json!({"name": "correlation-id", "route": {"id": "bad"}}),
            svs(&["route.id: expected a valid UUID"], json!({"route": {"id": "expected a valid UUID"}})),
        ),
        (
            json!({"name": "correlation-id", "config": {"bogus": 1}}),
            svs(&["config.bogus: unknown field"], json!({"config": {"bogus": "unknown field"}})),
        ),
        (
            json!({"name": "key-auth", "consumer": {"id": CONSUMER_ID}}),
            svs(&["consumer: value must be null"], json!({"consumer": "value must be null"})),
        ),
        (
            json!({"name": "correlation-id", "instance_name": "a b"}),
            svs(
                &["instance_name: invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"],
                json!({"instance_name": "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"}),
            ),
        ),
        (json!({"name": "correlation-id", "consumer": {"username": "ghost"}}), unresolved("consumer", "username", "ghost", "consumers")),
        (json!({"name": "correlation-id", "route": {"id": UNKNOWN_ID}}), fk_violation("route", UNKNOWN_ID, "routes")),
    ];
    check_rows(EntityKind::Plugin, &rows);
}

// ---------------------------------------------------------------------------------------
// upstreams

fn upstream_defaults(extra: Value) -> Value {
    let mut v = json!({
        "id": ID, "created_at": NOW, "name": "example.upstream", "updated_at": NOW,
        "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
        "hash_on_header": null, "hash_fallback_header": null, "hash_on_cookie": null,
        "hash_on_cookie_path": "/", "hash_on_query_arg": null, "hash_fallback_query_arg": null,
        "hash_on_uri_capture": null, "hash_fallback_uri_capture": null, "slots": 10000,
        "healthchecks": {
            "active": {
                "type": "http", "timeout": 1.0, "concurrency": 10, "http_path": "/",
                "https_sni": null, "https_verify_certificate": true, "headers": null,
                "healthy": {"interval": 0.0, "http_statuses": [200, 302], "successes": 0},
                "unhealthy": {
                    "interval": 0.0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                    "tcp_failures": 0, "timeouts": 0, "http_failures": 0
                }
            },
            "passive": {
                "type": "http",
                "healthy": {
                    "http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308],
                    "successes": 0
                },
                "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0, "http_failures": 0}
            },
            "threshold": 0.0
        },
        "tags": null, "host_header": null, "client_certificate": null, "use_srv_name": false
    });
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

#[test]
fn upstream_defaults_and_shorthands() {
    assert_entity(
        EntityKind::Upstream,
        json!({"name": "example.upstream"}),
        upstream_defaults(json!({})),
    );
    let algo = |input: Value| {
        let u = read(EntityKind::Upstream, &input).unwrap_or_else(|e| panic!("{input}: {e}"));
        json!([u["algorithm"], u["hash_on"]])
    };
    assert_eq!(
        algo(json!({"name": "u", "hash_on": "ip"})),
        json!(["consistent-hashing", "ip"])
    );
    assert_eq!(
        algo(json!({"name": "u", "algorithm": "least-connections", "hash_on": "ip"})),
        json!(["least-connections", "none"])
    );
    assert_eq!(
        algo(json!({"name": "u", "algorithm": "consistent-hashing", "hash_on": "none"})),
        json!(["round-robin", "none"])
    );
    assert_eq!(
        algo(json!({"name": "u", "algorithm": "latency"})),
        json!(["latency", "none"])
    );
    assert_eq!(
        algo(
            json!({"name": "u", "algorithm": "round-robin", "hash_on": "header", "hash_on_header": "X-Id"})
        ),
        json!(["consistent-hashing", "header"])
    );
    let hc = accepted_field(
        EntityKind::Upstream,
        json!({"name": "u", "healthchecks": {"active": {"healthy": {"interval": 5}}, "threshold": 25}}),
        "healthchecks",
    );
    assert_eq!(
        hc["active"]["healthy"],
        json!({"interval": 5.0, "http_statuses": [200, 302], "successes": 0})
    );
    assert_eq!(hc["active"]["timeout"], json!(1.0));
    assert_eq!(hc["threshold"], json!(25.0));
}

#[test]
fn upstream_errors() {
    let one = |field: &str, msg: &str| svs(&[&format!("{field}: {msg}")], json!({ field: msg }));
    let cond = |if_msg: &str, field: &str, msg: &str| {
        svs(
            &[if_msg, &format!("{field}: {msg}")],
            json!({"@entity": [if_msg], field: msg}),
        )
    };
    let hc = |path: &str, summary: &str, fields: Value| {
        svs(
            &[&format!("healthchecks.{path}: {summary}")],
            json!({"healthchecks": fields}),
        )
    };
    const BAD_COOKIE: &str = "contains one or more invalid characters. ASCII control characters (0-31;127), space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed.";
    let rows = vec![
        (json!({}), one("name", "required field missing")),
        (json!({"name": "10.0.0.1"}), one("name", "Invalid name ('10.0.0.1'); no ip addresses allowed")),
        (json!({"name": "a.com:80"}), one("name", "Invalid name ('a.com:80'); no port allowed")),
        (json!({"name": "a b"}), one("name", "Invalid name ('a b'); must be a valid hostname")),
        (json!({"name": "u", "hash_on": "header"}), cond(COND_HASH_ON, "hash_on_header", "required field missing")),
        (
            json!({"name": "u", "hash_on": "ip", "hash_fallback": "header"}),
            cond(COND_HASH_FALLBACK, "hash_fallback_header", "required field missing"),
        ),
        (json!({"name": "u", "hash_on": "cookie"}), cond(COND_HASH_ON, "hash_on_cookie", "required field missing")),
        (
            json!({"name": "u", "hash_on": "consumer", "hash_fallback": "cookie"}),
            cond(COND_HASH_FALLBACK, "hash_on_cookie", "required field missing"),
        ),
        (json!({"name": "u", "hash_fallback": "ip"}), cond(COND_HASH_ON, "hash_fallback", "expected one of: none")),
        (
            json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "c", "hash_fallback": "ip"}),
            cond(COND_HASH_ON, "hash_fallback", "expected one of: none"),
        ),
        (
            json!({"name": "u", "hash_on": "consumer", "hash_fallback": "consumer"}),
            cond(COND_HASH_ON, "hash_fallback", "expected one of: none, ip, header, cookie, path, query_arg, uri_capture"),
        ),
        (
            json!({"name": "u", "hash_on": "ip", "hash_fallback": "ip"}),
            cond(COND_HASH_ON, "hash_fallback", "expected one of: none, consumer, header, cookie, path, query_arg, uri_capture"),
        ),
        (
            json!({"name": "u", "hash_on": "path", "hash_fallback": "path"}),
            cond(COND_HASH_ON, "hash_fallback", "expected one of: none, consumer, header, cookie, query_arg, ip, uri_capture"),
        ),
        (
            json!({"name": "u", "hash_on": "header", "hash_on_header": "X-A", "hash_fallback": "header", "hash_fallback_header": "X-A"}),
            svs(
                &["values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'"],
                json!({"@entity": ["values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'"]}),
            ),
        ),
        (
            json!({"name": "u", "hash_on": "query_arg", "hash_on_query_arg": "a", "hash_fallback": "query_arg", "hash_fallback_query_arg": "a"}),
            svs(
                &["values of these fields must be distinct: 'hash_on_query_arg', 'hash_fallback_query_arg'"],
                json!({"@entity": ["values of these fields must be distinct: 'hash_on_query_arg', 'hash_fallback_query_arg'"]}),
            ),
        ),
        (json!({"name": "u", "hash_on": "query_arg"}), cond(COND_HASH_ON, "hash_on_query_arg", "required field missing")),
        (json!({"name": "u", "hash_on": "uri_capture"}), cond(COND_HASH_ON, "hash_on_uri_capture", "required field missing")),
        (
            json!({"name": "u", "hash_on": "header", "hash_on_header": "X-A", "hash_fallback": "uri_capture"}),
            cond(COND_HASH_FALLBACK, "hash_fallback_uri_capture", "required field missing"),
        ),
        (
            json!({"name": "u", "hash_on": "header", "hash_on_header": "bad header"}),
            cond(COND_HASH_ON, "hash_on_header", "bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
        ),
        (
            json!({"name": "u", "hash_on": "cookie", "hash_on_cookie": "a;b"}),
            cond(COND_HASH_ON, "hash_on_cookie", BAD_COOKIE),
        ),
        (json!({"name": "u", "hash_on_cookie": "a b"}), one("hash_on_cookie", BAD_COOKIE)),
        (
            json!({"name": "u", "algorithm": "fastest"}),
            one("algorithm", "expected one of: consistent-hashing, least-connections, round-robin, latency"),
        ),
        // A shorthand of the wrong type is the only error reported.
        (json!({"name": "a b", "hash_on": 5}), one("hash_on", "expected a string")),
        (json!({"name": "u", "hash_on": "bogus"}), one("hash_on", "expected one of: none, consumer, ip, header, cookie, path, query_arg, uri_capture")),
        (json!({"name": "u", "slots": 5}), one("slots", "value should be between 10 and 65536")),
        (json!({"name": "u", "hash_on_cookie_path": "x"}), one("hash_on_cookie_path", "should start with: /")),
        (json!({"name": "u", "host_header": "a b"}), one("host_header", "invalid hostname: a b")),
        (json!({"name": "u", "host_header": "a.com:99999"}), one("host_header", "invalid port number")),
        (json!({"name": "u", "hash_on_query_arg": ""}), one("hash_on_query_arg", "length must be at least 1")),
        (
            json!({"name": "u", "healthchecks": {"threshold": 101}}),
            hc("threshold", "value should be between 0 and 100", json!({"threshold": "value should be between 0 and 100"})),
        ),
        (json!({"name": "u", "client_certificate": {"id": UNKNOWN_ID}}), fk_violation("client_certificate", UNKNOWN_ID, "certificates")),
    ];
    check_rows(EntityKind::Upstream, &rows);
}

// ---------------------------------------------------------------------------------------
// errors nested two levels deep

/// Kong's `schema_violation` prints such values with `pl.pretty.write(v)`: multi-line,
/// two-space indent, ` = `, strings quoted.
fn nested_route_rows() -> Vec<(Value, Value)> {
    vec![
        (
            json!({"protocols": ["tcp"], "sources": [{}]}),
            svs(
                &["sources.1: {\n  [\"@entity\"] = {\n    \"at least one of these fields must be non-empty: 'ip', 'port'\"\n  }\n}"],
                json!({"sources": [{"@entity": ["at least one of these fields must be non-empty: 'ip', 'port'"]}]}),
            ),
        ),
        (
            // The check sees "" as empty although `ip` itself is invalid.
            json!({"protocols": ["tcp"], "sources": [{"ip": ""}]}),
            svs(
                &["sources.1: {\n  [\"@entity\"] = {\n    \"at least one of these fields must be non-empty: 'ip', 'port'\"\n  },\n  ip = \"length must be at least 1\"\n}"],
                json!({"sources": [{"@entity": ["at least one of these fields must be non-empty: 'ip', 'port'"], "ip": "length must be at least 1"}]}),
            ),
        ),
        (
            json!({"protocols": ["tcp"], "sources": [{"ip": "10.0.0.1/33"}]}),
            svs(
                &["sources.1: {\n  ip = \"invalid ip or cidr range: '10.0.0.1/33'\"\n}"],
                json!({"sources": [{"ip": "invalid ip or cidr range: '10.0.0.1/33'"}]}),
            ),
        ),
        (
            json!({"protocols": ["tcp"], "destinations": [{"ip": "10.0.0.1"}, {"port": 70000}]}),
            svs(
                &["destinations.2: {\n  port = \"value should be between 0 and 65535\"\n}"],
                json!({"destinations": [null, {"port": "value should be between 0 and 65535"}]}),
            ),
        ),
        (
            json!({"protocols": ["tcp"], "sources": [{"ip": "10.0.0.1", "host": "x"}]}),
            svs(&["sources.1: {\n  host = \"unknown field\"\n}"], json!({"sources": [{"host": "unknown field"}]})),
        ),
    ]
}

fn nested_upstream_rows() -> Vec<(Value, Value)> {
    let hc = |path: &str, summary: &str, fields: Value| {
        svs(
            &[&format!("healthchecks.{path}: {summary}")],
            json!({"healthchecks": fields}),
        )
    };
    vec![
        (
            json!({"name": "u", "healthchecks": {"active": {"timeout": 70000}}}),
            hc("active", "{\n  timeout = \"value should be between 0 and 65535\"\n}", json!({"active": {"timeout": "value should be between 0 and 65535"}})),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"concurrency": 0}}}),
            hc("active", "{\n  concurrency = \"value should be between 1 and 2147483648\"\n}", json!({"active": {"concurrency": "value should be between 1 and 2147483648"}})),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"type": "udp"}}}),
            hc("active", "{\n  type = \"expected one of: tcp, http, https, grpc, grpcs\"\n}", json!({"active": {"type": "expected one of: tcp, http, https, grpc, grpcs"}})),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"https_sni": "1.2.3.4"}}}),
            hc("active", "{\n  https_sni = \"must not be an IP\"\n}", json!({"active": {"https_sni": "must not be an IP"}})),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"headers": {"x y": ["a"]}}}}),
            hc(
                "active",
                "{\n  headers = \"bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'\"\n}",
                json!({"active": {"headers": "bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'"}}),
            ),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"healthy": {"successes": 256}}}}),
            hc(
                "active",
                "{\n  healthy = {\n    successes = \"value should be between 0 and 255\"\n  }\n}",
                json!({"active": {"healthy": {"successes": "value should be between 0 and 255"}}}),
            ),
        ),
        (
            json!({"name": "u", "healthchecks": {"active": {"unhealthy": {"interval": -1}}}}),
            hc(
                "active",
                "{\n  unhealthy = {\n    interval = \"value should be between 0 and 65535\"\n  }\n}",
                json!({"active": {"unhealthy": {"interval": "value should be between 0 and 65535"}}}),
            ),
        ),
        (
            json!({"name": "u", "healthchecks": {"passive": {"unhealthy": {"http_statuses": [500, 99]}}}}),
            hc(
                "passive",
                "{\n  unhealthy = {\n    http_statuses = {\n      [2] = \"value should be between 100 and 999\"\n    }\n  }\n}",
                json!({"passive": {"unhealthy": {"http_statuses": [null, "value should be between 100 and 999"]}}}),
            ),
        ),
        (
            json!({"name": "u", "healthchecks": {"passive": {"healthy": {"interval": 5}}}}),
            hc(
                "passive",
                "{\n  healthy = {\n    interval = \"unknown field\"\n  }\n}",
                json!({"passive": {"healthy": {"interval": "unknown field"}}}),
            ),
        ),
    ]
}

#[test]
fn nested_errors() {
    check_rows_but_message(EntityKind::Route, &nested_route_rows());
    check_rows_but_message(EntityKind::Upstream, &nested_upstream_rows());
}

#[test]
fn nested_error_messages_like_kong() {
    check_rows(EntityKind::Route, &nested_route_rows());
    check_rows(EntityKind::Upstream, &nested_upstream_rows());
}

// ---------------------------------------------------------------------------------------
// targets

#[test]
fn target_defaults_and_normalisation() {
    assert_entity(
        EntityKind::Target,
        json!({"upstream": {"name": "up"}, "target": "a.com"}),
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "upstream": {"id": UPSTREAM_ID},
            "target": "a.com:8000", "weight": 100, "tags": null
        }),
    );
    for (given, stored) in [
        ("001.002.003.004", "1.2.3.4:8000"),
        ("10.0.0.1:80", "10.0.0.1:80"),
        ("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
        (
            "[FE80::1]:81",
            "[fe80:0000:0000:0000:0000:0000:0000:0001]:81",
        ),
        ("Example.COM", "Example.COM:8000"),
    ] {
        assert_eq!(normalize_target(given).as_deref(), Ok(stored), "{given}");
        let t = accepted_field(
            EntityKind::Target,
            json!({"upstream": {"id": UPSTREAM_ID}, "target": given}),
            "target",
        );
        assert_eq!(t, json!(stored), "{given}");
    }
}

#[test]
fn target_errors() {
    let up = json!({"id": UPSTREAM_ID});
    let bad = |t: &str| {
        let m = format!("Invalid target ('{t}'); not a valid hostname or ip address");
        svs(&[&format!("target: {m}")], json!({"target": m}))
    };
    let rows = vec![
        (
            json!({"target": "a.com"}),
            svs(
                &["upstream: required field missing"],
                json!({"upstream": "required field missing"}),
            ),
        ),
        (
            json!({"upstream": up}),
            svs(
                &["target: required field missing"],
                json!({"target": "required field missing"}),
            ),
        ),
        (json!({"upstream": up, "target": "a b"}), bad("a b")),
        (
            json!({"upstream": up, "target": "a.com:99999"}),
            bad("a.com:99999"),
        ),
        (
            json!({"upstream": up, "target": "1.2.3.256"}),
            bad("1.2.3.256"),
        ),
        (json!({"upstream": up, "target": "[::1]x"}), bad("[::1]x")),
        (
            json!({"upstream": up, "target": "a.com", "weight": 65536}),
            svs(
                &["weight: value should be between 0 and 65535"],
                json!({"weight": "value should be between 0 and 65535"}),
            ),
        ),
        (
            json!({"upstream": {"name": "nope"}, "target": "a.com"}),
            unresolved("upstream", "name", "nope", "upstreams"),
        ),
        (
            json!({"upstream": {"id": UNKNOWN_ID}, "target": "a.com"}),
            fk_violation("upstream", UNKNOWN_ID, "upstreams"),
        ),
    ];
    check_rows(EntityKind::Target, &rows);
}

// ---------------------------------------------------------------------------------------
// certificates, snis, ca_certificates

struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn generate(alg: &'static rcgen::SignatureAlgorithm, ca: bool) -> Pem {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn ec() -> Pem {
    generate(&rcgen::PKCS_ECDSA_P256_SHA256, false)
}

fn ed() -> Pem {
    generate(&rcgen::PKCS_ED25519, false)
}

#[test]
fn certificate_defaults() {
    let a = ec();
    assert_entity(
        EntityKind::Certificate,
        json!({"cert": a.cert, "key": a.key}),
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "cert": a.cert, "key": a.key,
            "cert_alt": null, "key_alt": null, "tags": null
        }),
    );
    // An alternative pair of the other key type.
    let b = ed();
    let got = read(
        EntityKind::Certificate,
        &json!({"cert": a.cert, "key": a.key, "cert_alt": b.cert, "key_alt": b.key, "snis": ["a.com"]}),
    )
    .unwrap();
    assert_eq!(got["cert_alt"], json!(b.cert));
    assert_eq!(got["key_alt"], json!(b.key));
    // Expired certificates are accepted (only CA certificates are checked for expiry).
    assert!(read_with(
        EntityKind::Certificate,
        &json!({"cert": a.cert, "key": a.key}),
        i64::MAX / 2,
        true
    )
    .is_ok());
}

#[test]
fn certificate_errors() {
    let (a, b, c, d) = (ec(), ec(), ed(), ed());
    const SAME_TYPE: &str = "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), the provided certificates were both of the same type";
    const ALL_OR_NONE: &str = "all or none of these fields must be set: 'cert_alt', 'key_alt'";
    let entity = |msgs: &[&str]| svs(msgs, json!({"@entity": msgs}));
    let rows = vec![
        (
            json!({}),
            sv(
                "2 schema violations (cert: required field missing; key: required field missing)",
                json!({"cert": "required field missing", "key": "required field missing"}),
            ),
        ),
        (
            json!({"cert": a.cert, "key": b.key}),
            entity(&["certificate does not match key"]),
        ),
        (
            json!({"cert": a.cert, "key": a.key, "cert_alt": c.cert}),
            entity(&[ALL_OR_NONE]),
        ),
        (
            json!({"cert": a.cert, "key": a.key, "key_alt": c.key}),
            entity(&[ALL_OR_NONE]),
        ),
        (
            json!({"cert": a.cert, "key": a.key, "cert_alt": c.cert, "key_alt": d.key}),
            entity(&["alternative certificate does not match key"]),
        ),
        (
            json!({"cert": a.cert, "key": a.key, "cert_alt": b.cert, "key_alt": b.key}),
            entity(&[SAME_TYPE]),
        ),
        (
            // Every check that applies is reported, in Kong's order.
            json!({"cert": a.cert, "key": c.key, "cert_alt": b.cert}),
            entity(&[ALL_OR_NONE, "certificate does not match key", SAME_TYPE]),
        ),
        (
            json!({"cert": a.cert, "key": a.key, "snis": ["a.com", "b.com", "a.com"]}),
            svs(
                &["snis: a.com is duplicated"],
                json!({"snis": "a.com is duplicated"}),
            ),
        ),
    ];
    check_rows(EntityKind::Certificate, &rows);

    // The parser's own reason is ours, not OpenSSL's; Kong's prefixes are kept.
    let e = read(
        EntityKind::Certificate,
        &json!({"cert": "nope", "key": a.key}),
    )
    .unwrap_err();
    assert_eq!(e["code"], json!(2));
    assert!(
        e["fields"]["cert"]
            .as_str()
            .unwrap()
            .starts_with("invalid certificate: "),
        "{e}"
    );
    let e = read(
        EntityKind::Certificate,
        &json!({"cert": a.cert, "key": "nope"}),
    )
    .unwrap_err();
    assert!(
        e["fields"]["key"]
            .as_str()
            .unwrap()
            .starts_with("invalid key: "),
        "{e}"
    );
    assert_eq!(
        e["fields"].as_object().unwrap().len(),
        1,
        "no match check on an invalid key: {e}"
    );
}

#[test]
fn sni_defaults() {
    // Kong keeps the name as given.
    assert_entity(
        EntityKind::Sni,
        json!({"name": "*.Example.com", "certificate": {"id": CERT_ID}}),
        json!({
            "id": ID, "name": "*.Example.com", "created_at": NOW, "updated_at": NOW,
            "tags": null, "certificate": {"id": CERT_ID}
        }),
    );
    assert_eq!(
        accepted_field(
            EntityKind::Sni,
            json!({"name": "example.*", "certificate": {"id": CERT_ID}}),
            "name"
        ),
        json!("example.*")
    );
}

#[test]
fn sni_errors() {
    let cert = json!({"id": CERT_ID});
    let one = |msg: &str| svs(&[&format!("name: {msg}")], json!({"name": msg}));
    let rows = vec![
        (json!({"name": "*.a.*", "certificate": cert}), one("only one wildcard must be specified")),
        (json!({"name": "a.*.com", "certificate": cert}), one("wildcard must be leftmost or rightmost character")),
        (json!({"name": "10.0.0.1", "certificate": cert}), one("must not be an IP")),
        (json!({"name": "a.com:443", "certificate": cert}), one("must not have a port")),
        (json!({"name": "exa mple.com", "certificate": cert}), one("invalid value: exa mple.com")),
        (
            json!({"name": "*.exa mple.com"}),
            sv(
                "2 schema violations (certificate: required field missing; name: invalid value: wildcard.exa mple.com)",
                json!({"certificate": "required field missing", "name": "invalid value: wildcard.exa mple.com"}),
            ),
        ),
        (json!({"name": "a.com", "certificate": {"id": UNKNOWN_ID}}), fk_violation("certificate", UNKNOWN_ID, "certificates")),
    ];
    check_rows(EntityKind::Sni, &rows);
}

#[test]
fn ca_certificate_defaults() {
    let ca = generate(&rcgen::PKCS_ECDSA_P256_SHA256, true);
    let digest = hex::encode(Sha256::digest(&ca.der));
    assert_entity(
        EntityKind::CaCertificate,
        json!({"cert": ca.cert, "cert_digest": "ignored"}),
        json!({
            "id": ID, "created_at": NOW, "updated_at": NOW, "cert": ca.cert,
            "cert_digest": digest, "tags": null
        }),
    );
}

#[test]
fn ca_certificate_errors() {
    let ca = generate(&rcgen::PKCS_ECDSA_P256_SHA256, true);
    let leaf = ec();
    let entity = |msg: &str| svs(&[msg], json!({"@entity": [msg]}));
    let rows = vec![
        (json!({}), svs(&["cert: required field missing"], json!({"cert": "required field missing"}))),
        (
            json!({"cert": leaf.cert}),
            entity("certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"),
        ),
        (
            json!({"cert": format!("{}{}", ca.cert, ca.cert)}),
            entity("please submit only one certificate at a time"),
        ),
        (json!({"cert": ca.cert, "cert_digest": 5}), svs(&["cert_digest: expected a string"], json!({"cert_digest": "expected a string"}))),
    ];
    check_rows(EntityKind::CaCertificate, &rows);

    let expired = read_with(
        EntityKind::CaCertificate,
        &json!({"cert": ca.cert}),
        100_000_000_000,
        true,
    );
    assert_eq!(
        expired,
        Err(entity(
            "certificate expired, \"Not After\" time is in the past"
        ))
    );
}

// ---------------------------------------------------------------------------------------
// credentials

#[test]
fn keyauth_defaults() {
    assert_entity(
        EntityKind::KeyauthCredential,
        json!({"consumer": {"id": CONSUMER_ID}, "key": "secret"}),
        json!({"id": ID, "created_at": NOW, "consumer": {"id": CONSUMER_ID}, "key": "secret", "ttl": null, "tags": null}),
    );
    let key = accepted_field(
        EntityKind::KeyauthCredential,
        json!({"consumer": {"username": "alice"}}),
        "key",
    );
    assert_eq!(key, json!(format!("{ENTROPY:032x}")));
}

#[test]
fn keyauth_errors() {
    let c = json!({"id": CONSUMER_ID});
    let rows = vec![
        (
            json!({}),
            svs(
                &["consumer: required field missing"],
                json!({"consumer": "required field missing"}),
            ),
        ),
        (
            json!({"consumer": c, "key": ""}),
            svs(
                &["key: length must be at least 1"],
                json!({"key": "length must be at least 1"}),
            ),
        ),
        (
            json!({"consumer": c, "ttl": 100_000_001}),
            svs(
                &["ttl: value should be between 0 and 100000000"],
                json!({"ttl": "value should be between 0 and 100000000"}),
            ),
        ),
        (
            json!({"consumer": {"username": "ghost"}}),
            unresolved("consumer", "username", "ghost", "consumers"),
        ),
        (
            json!({"consumer": {"id": UNKNOWN_ID}}),
            fk_violation("consumer", UNKNOWN_ID, "consumers"),
        ),
    ];
    check_rows(EntityKind::KeyauthCredential, &rows);
}

#[test]
fn basicauth_password_hashing() {
    let mut h = Sha1::new();
    h.update(format!("s3cret{CONSUMER_ID}").as_bytes());
    let expected = hex::encode(h.finalize());
    assert_eq!(
        hash_password(CONSUMER_ID.parse().unwrap(), "s3cret"),
        expected
    );
    assert_entity(
        EntityKind::BasicauthCredential,
        json!({"consumer": {"username": "alice"}, "username": "bob", "password": "s3cret"}),
        json!({
            "id": ID, "created_at": NOW, "consumer": {"id": CONSUMER_ID},
            "username": "bob", "password": expected, "tags": null
        }),
    );
    // `_transform: false`: the value is already the stored digest.
    let kept = read_with(
        EntityKind::BasicauthCredential,
        &json!({"consumer": {"id": CONSUMER_ID}, "username": "bob", "password": expected}),
        NOW,
        false,
    )
    .unwrap();
    assert_eq!(kept["password"], json!(expected));
}

#[test]
fn basicauth_errors() {
    const NEEDS: &str = "all or none of these fields must be set: 'password', 'consumer.id'";
    let rows = vec![
        (
            json!({}),
            sv(
                "3 schema violations (consumer: required field missing; password: required field missing; username: required field missing)",
                json!({"consumer": "required field missing", "password": "required field missing", "username": "required field missing"}),
            ),
        ),
        (
            json!({"username": "u", "password": "p"}),
            svs(&[NEEDS, "consumer: required field missing"], json!({"@entity": [NEEDS], "consumer": "required field missing"})),
        ),
        (
            json!({"consumer": {"id": CONSUMER_ID}, "username": "u", "password": ""}),
            svs(&["password: length must be at least 1"], json!({"password": "length must be at least 1"})),
        ),
    ];
    check_rows(EntityKind::BasicauthCredential, &rows);
}

#[test]
fn acl_defaults_and_errors() {
    assert_entity(
        EntityKind::Acl,
        json!({"consumer": {"username": "alice"}, "group": "admins", "tags": ["t"]}),
        json!({"id": ID, "created_at": NOW, "consumer": {"id": CONSUMER_ID}, "group": "admins", "tags": ["t"]}),
    );
    let rows = vec![
        (
            json!({"consumer": {"id": CONSUMER_ID}}),
            svs(
                &["group: required field missing"],
                json!({"group": "required field missing"}),
            ),
        ),
        (
            json!({"consumer": {"id": CONSUMER_ID}, "group": 1}),
            svs(
                &["group: expected a string"],
                json!({"group": "expected a string"}),
            ),
        ),
        (
            json!({"consumer": {"id": UNKNOWN_ID}, "group": "g"}),
            fk_violation("consumer", UNKNOWN_ID, "consumers"),
        ),
    ];
    check_rows(EntityKind::Acl, &rows);
}
