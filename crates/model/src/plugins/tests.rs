use super::*;

use serde_json::json;

fn ok(name: &str, config: Value) -> PluginConfig {
    match PluginConfig::read(name, Some(&config)).expect("bundled") {
        Ok(c) => c,
        Err(e) => panic!("{name} {config}: {}", e.to_json()),
    }
}

fn err(name: &str, config: Value) -> Value {
    match PluginConfig::read(name, Some(&config)).expect("bundled") {
        Ok(c) => panic!("{name} {config} was accepted: {c:?}"),
        Err(e) => e.to_json(),
    }
}

fn shown(name: &str, config: Value) -> Value {
    serde_json::to_value(ok(name, config)).unwrap()
}

/// The smallest valid config of every bundled plugin.
fn minimal() -> Vec<(&'static str, Value)> {
    vec![
        ("correlation-id", json!({})),
        ("cors", json!({})),
        ("key-auth", json!({})),
        ("basic-auth", json!({})),
        ("ip-restriction", json!({"allow": ["10.0.0.0/8"]})),
        ("request-size-limiting", json!({})),
        ("acl", json!({"allow": ["admins"]})),
        ("rate-limiting", json!({"minute": 5})),
        ("request-termination", json!({})),
        ("request-transformer", json!({})),
        ("response-transformer", json!({})),
    ]
}

const HEADER_MSG: &str = "allowed characters are A-Z, a-z, 0-9, '_', and '-'";

// --- registry ---

#[test]
fn unknown_plugin_is_none() {
    assert!(PluginConfig::read("no-such-plugin", None).is_none());
    assert!(PluginConfig::read_parts("no-such-plugin", Some(&json!({}))).is_none());
    assert!(info("no-such-plugin").is_none());
}

#[test]
fn bundled_in_priority_order() {
    let all = bundled();
    let got: Vec<(&str, i64)> = all.iter().map(|p| (p.name, p.priority)).collect();
    assert_eq!(
        got,
        vec![
            ("correlation-id", 100_001),
            ("cors", 2000),
            ("key-auth", 1250),
            ("basic-auth", 1100),
            ("ip-restriction", 990),
            ("request-size-limiting", 951),
            ("acl", 950),
            ("rate-limiting", 910),
            ("request-transformer", 801),
            ("response-transformer", 800),
            ("request-termination", 2),
        ]
    );
    assert!(all.iter().all(|p| p.version == "3.9.0"));
    let no_consumer: Vec<&str> = all
        .iter()
        .filter(|p| p.no_consumer)
        .map(|p| p.name)
        .collect();
    assert_eq!(no_consumer, ["cors", "key-auth", "basic-auth", "acl"]);
    for p in &all {
        assert!(
            p.default_protocols.iter().all(|d| p.protocols.contains(d)),
            "{}",
            p.name
        );
    }
    let ip = info("ip-restriction").unwrap();
    assert_eq!(
        ip.default_protocols,
        ["http", "https", "tcp", "tls", "grpc", "grpcs"]
    );
    assert!(ip.protocols.contains(&"udp"));
    let rt = info("request-transformer").unwrap();
    assert_eq!(rt.default_protocols, HTTP_PROTOCOLS);
    assert!(rt.protocols.contains(&"tcp"));
    assert_eq!(info("rate-limiting").unwrap().protocols, HTTP_PROTOCOLS);
    assert_eq!(minimal().len(), all.len());
}

#[test]
fn json_is_the_bare_config_and_reads_back() {
    for (name, config) in minimal() {
        let c = ok(name, config);
        assert_eq!(c.name(), name);
        let v = serde_json::to_value(&c).unwrap();
        let obj = v.as_object().expect("an object");
        assert!(!obj.contains_key(name) && obj.keys().all(|k| !k.starts_with(char::is_uppercase)));
        assert_eq!(ok(name, v.clone()), c, "{name}: {v}");
    }
}

#[test]
fn postcard_round_trip_of_defaults() {
    for (name, config) in minimal() {
        let c = ok(name, config);
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(
            postcard::from_bytes::<PluginConfig>(&bytes).unwrap(),
            c,
            "{name}"
        );
    }
}

#[test]
fn postcard_round_trip_of_full_configs() {
    let configs = [
        (
            "rate-limiting",
            json!({"second": 1.5, "hour": 100, "policy": "redis", "sync_rate": 0.5,
                   "redis": {"host": "redis.local", "password": "", "ssl": true},
                   "limit_by": "header", "header_name": "X-Tenant", "error_code": 503}),
        ),
        (
            "cors",
            json!({"origins": ["*"], "max_age": 3600, "headers": ["X-A"]}),
        ),
        (
            "ip-restriction",
            json!({"deny": ["::1"], "status": 401, "message": "no"}),
        ),
        (
            "request-transformer",
            json!({"replace": {"uri": "/x", "headers": ["a:b"]}}),
        ),
    ];
    for (name, config) in configs {
        let c = ok(name, config);
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(
            postcard::from_bytes::<PluginConfig>(&bytes).unwrap(),
            c,
            "{name}"
        );
    }
}

#[test]
fn config_must_be_a_record() {
    assert_eq!(err("cors", json!([])), json!("expected a record"));
    assert_eq!(
        err("key-auth", json!({"nope": 1})),
        json!({"nope": "unknown field"})
    );
}

// --- correlation-id ---

#[test]
fn correlation_id() {
    assert_eq!(
        shown("correlation-id", json!({})),
        json!({"header_name": "Kong-Request-ID", "generator": "uuid#counter", "echo_downstream": false})
    );
    assert_eq!(
        err("correlation-id", json!({"generator": "random"})),
        json!({"generator": "expected one of: uuid, uuid#counter, tracker"})
    );
    assert_eq!(
        err(
            "correlation-id",
            json!({"header_name": "", "echo_downstream": "yes"})
        ),
        json!({"header_name": "length must be at least 1", "echo_downstream": "expected a boolean"})
    );
    // A plain string in Kong, not a validated header name.
    ok("correlation-id", json!({"header_name": "X.Request.Id"}));
}

// --- cors ---

#[test]
fn cors_defaults() {
    assert_eq!(
        shown("cors", json!({})),
        json!({
            "origins": null, "headers": null, "exposed_headers": null,
            "methods": ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"],
            "max_age": null, "credentials": false, "private_network": false,
            "preflight_continue": false, "allow_origin_absent": true,
        })
    );
    let c = shown(
        "cors",
        json!({"origins": ["*", "https://example.com", "https://(.*)\\.example\\.org"], "max_age": 3600}),
    );
    assert_eq!(c["max_age"], json!(3600));
}

#[test]
fn cors_invalid() {
    assert_eq!(
        err("cors", json!({"origins": ["*", "[", "*.example.com"]})),
        json!({"origins": [null, "'[' is not a valid regex", "'*.example.com' is not a valid regex"]})
    );
    assert_eq!(
        err(
            "cors",
            json!({"methods": ["GET", "FETCH"], "max_age": "1h"})
        ),
        json!({
            "methods": [null, "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT"],
            "max_age": "expected a number",
        })
    );
    assert_eq!(
        err("cors", json!({"headers": [""]})),
        json!({"headers": ["length must be at least 1"]})
    );
}

// --- key-auth ---

#[test]
fn key_auth_defaults() {
    assert_eq!(
        shown("key-auth", json!({})),
        json!({
            "key_names": ["apikey"], "hide_credentials": false, "anonymous": null,
            "key_in_header": true, "key_in_query": true, "key_in_body": false,
            "run_on_preflight": true, "realm": null,
        })
    );
    let PluginConfig::KeyAuth(c) = ok(
        "key-auth",
        json!({"key_names": ["x-api_key"], "realm": "api"}),
    ) else {
        panic!()
    };
    assert_eq!(
        (c.key_names, c.realm),
        (vec!["x-api_key".to_string()], Some("api".to_string()))
    );
}

#[test]
fn key_auth_invalid() {
    assert_eq!(
        err(
            "key-auth",
            json!({"key_names": ["apikey", "bad key", "x.key"]})
        ),
        json!({"key_names": [
            null,
            format!("bad header name 'bad key', {HEADER_MSG}"),
            format!("bad header name 'x.key', {HEADER_MSG}"),
        ]})
    );
    assert_eq!(
        err(
            "key-auth",
            json!({"hide_credentials": "yes", "anonymous": ""})
        ),
        json!({"hide_credentials": "expected a boolean", "anonymous": "length must be at least 1"})
    );
    assert_eq!(
        err("key-auth", json!({"key_names": "apikey"})),
        json!({"key_names": "expected an array"})
    );
}

// --- basic-auth ---

#[test]
fn basic_auth() {
    assert_eq!(
        shown("basic-auth", json!({})),
        json!({"anonymous": null, "hide_credentials": false, "realm": "service"})
    );
    assert_eq!(
        err("basic-auth", json!({"realm": ""})),
        json!({"realm": "length must be at least 1"})
    );
    assert_eq!(
        err("basic-auth", json!({"anonymous": 5, "hide_credentials": 1})),
        json!({"anonymous": "expected a string", "hide_credentials": "expected a boolean"})
    );
}

// --- ip-restriction ---

#[test]
fn ip_restriction_defaults() {
    assert_eq!(
        shown("ip-restriction", json!({"allow": ["10.0.0.0/8"]})),
        json!({"allow": ["10.0.0.0/8"], "deny": null, "status": null, "message": null})
    );
    // Both lists at once are fine.
    let c = shown(
        "ip-restriction",
        json!({"allow": ["::/0", "127.0.0.1/8"], "deny": ["::/128"], "status": 401, "message": "go away"}),
    );
    assert_eq!(c["status"], json!(401));
}

#[test]
fn ip_restriction_invalid() {
    let entity = json!({"@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]});
    assert_eq!(err("ip-restriction", json!({})), entity);
    assert_eq!(
        err("ip-restriction", json!({"allow": [], "deny": []})),
        entity
    );
    assert_eq!(
        err(
            "ip-restriction",
            json!({"allow": ["1.2.3.4", "::/129", "hello"]})
        ),
        json!({"allow": [null, "invalid ip or cidr range: '::/129'", "invalid ip or cidr range: 'hello'"]})
    );
    assert_eq!(
        err(
            "ip-restriction",
            json!({"deny": ["0.0.0.0/33"], "status": "403"})
        ),
        json!({"deny": ["invalid ip or cidr range: '0.0.0.0/33'"], "status": "expected a number"})
    );
    assert_eq!(
        err("ip-restriction", json!({"allow": "10.0.0.1"})),
        json!({"allow": "expected an array"})
    );
    // Kong reports entity checks at the plugin's top level; `read_parts` keeps them apart.
    let parts = PluginConfig::read_parts("ip-restriction", Some(&json!({"message": 1})))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        parts.entity,
        ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]
    );
    assert_eq!(
        parts.config.unwrap().to_json(),
        json!({"message": "expected a string"})
    );
}

// --- request-size-limiting ---

#[test]
fn request_size_limiting() {
    assert_eq!(
        shown("request-size-limiting", json!({})),
        json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
    );
    let PluginConfig::RequestSizeLimiting(c) = ok(
        "request-size-limiting",
        json!({"allowed_payload_size": 10, "size_unit": "kilobytes"}),
    ) else {
        panic!()
    };
    assert_eq!(c.limit_bytes(), 10 * 1024);
    assert_eq!(
        err("request-size-limiting", json!({"size_unit": "gigabytes"})),
        json!({"size_unit": "expected one of: megabytes, kilobytes, bytes"})
    );
    assert_eq!(
        err(
            "request-size-limiting",
            json!({"allowed_payload_size": 1.5, "require_content_length": "no"})
        ),
        json!({"allowed_payload_size": "expected an integer", "require_content_length": "expected a boolean"})
    );
}

// --- acl ---

#[test]
fn acl() {
    assert_eq!(
        shown("acl", json!({"allow": ["admins"]})),
        json!({"allow": ["admins"], "deny": null, "hide_groups_header": false, "always_use_authenticated_groups": false})
    );
    ok(
        "acl",
        json!({"deny": ["banned"], "hide_groups_header": true}),
    );
    assert_eq!(
        err("acl", json!({})),
        json!({"@entity": [
            "exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        ]})
    );
    assert_eq!(
        err("acl", json!({"allow": ["a"], "deny": ["b"]})),
        json!({"@entity": ["exactly one of these fields must be non-empty: 'config.allow', 'config.deny'"]})
    );
    assert_eq!(
        err("acl", json!({"allow": ["a"], "hide_groups_header": "no"})),
        json!({"hide_groups_header": "expected a boolean"})
    );
}

// --- rate-limiting ---

#[test]
fn rate_limiting_defaults() {
    assert_eq!(
        shown("rate-limiting", json!({"minute": 5})),
        json!({
            "second": null, "minute": 5, "hour": null, "day": null, "month": null, "year": null,
            "limit_by": "consumer", "header_name": null, "path": null, "policy": "local",
            "fault_tolerant": true,
            "redis": {
                "host": null, "port": 6379, "timeout": 2000, "username": null, "password": null,
                "database": 0, "ssl": false, "ssl_verify": false, "server_name": null,
            },
            "hide_client_headers": false, "error_code": 429,
            "error_message": "API rate limit exceeded", "sync_rate": -1,
        })
    );
    let v = shown("rate-limiting", json!({"second": 0.5, "minute": 30}));
    assert_eq!(
        (v["second"].clone(), v["minute"].clone()),
        (json!(0.5), json!(30))
    );
}

#[test]
fn rate_limiting_needs_a_window() {
    assert_eq!(
        err("rate-limiting", json!({})),
        json!({"@entity": ["at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"]})
    );
    assert_eq!(
        err("rate-limiting", json!({"minute": 0, "error_code": -1})),
        json!({"minute": "value must be greater than 0", "error_code": "value must be greater than 0"})
    );
}

#[test]
fn rate_limiting_refuses_cluster() {
    for policy in ["cluster", ""] {
        assert_eq!(
            err("rate-limiting", json!({"minute": 5, "policy": policy})),
            json!({"policy": "expected one of: local, redis"})
        );
    }
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "limit_by": "consumer-group"})
        ),
        json!({"limit_by": "expected one of: consumer, credential, ip, service, header, path"})
    );
}

#[test]
fn rate_limiting_record_validator() {
    assert_eq!(
        err("rate-limiting", json!({"second": 5, "minute": 2})),
        json!("The limit for minute(2.0) cannot be lower than the limit for second(5.0)")
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 10, "hour": 20, "day": 15.5})
        ),
        json!("The limit for day(15.5) cannot be lower than the limit for hour(20.0)")
    );
    assert_eq!(
        err("rate-limiting", json!({"minute": 5, "sync_rate": 1})),
        json!("sync_rate can only be used with the redis policy")
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "policy": "redis", "redis": {"host": "r"}, "sync_rate": 0.01})
        ),
        json!("sync_rate must be greater than 0.02, or -1 to disable")
    );
    ok(
        "rate-limiting",
        json!({"minute": 5, "policy": "redis", "redis": {"host": "r"}, "sync_rate": 0.5}),
    );
    // Field errors come first: the record validator does not run.
    assert_eq!(
        err(
            "rate-limiting",
            json!({"second": 5, "minute": 2, "hour": "x"})
        ),
        json!({"hour": "expected a number"})
    );
}

#[test]
fn rate_limiting_conditionals() {
    assert_eq!(
        err("rate-limiting", json!({"minute": 5, "policy": "redis"})),
        json!({
            "@entity": ["failed conditional validation given value of field 'config.policy'"],
            "redis": {"host": "required field missing"},
        })
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "policy": "redis", "redis": {"port": 70000}})
        ),
        json!({
            "@entity": ["failed conditional validation given value of field 'config.policy'"],
            "redis": {"host": "required field missing", "port": "value should be between 0 and 65535"},
        })
    );
    assert_eq!(
        err("rate-limiting", json!({"minute": 5, "limit_by": "header"})),
        json!({
            "@entity": ["failed conditional validation given value of field 'config.limit_by'"],
            "header_name": "required field missing",
        })
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "limit_by": "path", "path": "a"})
        ),
        json!({"path": "should start with: /"})
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "limit_by": "header", "header_name": "X Tenant"})
        ),
        json!({"header_name": format!("bad header name 'X Tenant', {HEADER_MSG}")})
    );
    ok(
        "rate-limiting",
        json!({"minute": 5, "limit_by": "path", "path": "/v1/things"}),
    );
    // Entity messages first, then the plugin's own when folded into `config`.
    assert_eq!(
        err("rate-limiting", json!({"policy": "redis"})),
        json!({
            "@entity": [
                "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'",
                "failed conditional validation given value of field 'config.policy'",
            ],
            "redis": {"host": "required field missing"},
        })
    );
}

#[test]
fn rate_limiting_redis_record_and_shorthands() {
    let PluginConfig::RateLimiting(c) = ok(
        "rate-limiting",
        json!({"minute": 5, "policy": "redis", "redis_host": "redis.local", "redis_port": 6380,
               "redis_password": "", "redis_ssl": true, "redis_timeout": 100, "redis_database": 2}),
    ) else {
        panic!()
    };
    assert_eq!(c.redis.host.as_deref(), Some("redis.local"));
    assert_eq!(
        (c.redis.port, c.redis.timeout, c.redis.database),
        (6380, 100, 2)
    );
    assert_eq!(c.redis.password.as_deref(), Some(""));
    assert!(c.redis.ssl);
    // Shorthands are not kept as fields of their own.
    let v = serde_json::to_value(PluginConfig::RateLimiting(c)).unwrap();
    assert!(v.get("redis_host").is_none());
    assert_eq!(v["redis"]["host"], json!("redis.local"));

    // The same value twice is fine; different values are refused at the shorthand.
    ok(
        "rate-limiting",
        json!({"minute": 5, "redis_host": "a", "redis": {"host": "a"}}),
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "redis_host": "a", "redis": {"host": "b"}})
        ),
        json!({"redis_host": "both deprecated and new field are used but their values mismatch: redis_host = a vs redis.host = b"})
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "redis_port": 6380, "redis": {"port": 6379}})
        ),
        json!({"redis_port": "both deprecated and new field are used but their values mismatch: redis_port = 6380 vs redis.port = 6379"})
    );
    // A shorthand is checked against its own type, then as the field it maps to.
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "redis_port": "6379", "redis_ssl": 1})
        ),
        json!({"redis_port": "expected an integer", "redis_ssl": "expected a boolean"})
    );
    assert_eq!(
        err("rate-limiting", json!({"minute": 5, "redis_port": 70000})),
        json!({"redis": {"port": "value should be between 0 and 65535"}})
    );
    assert_eq!(
        err(
            "rate-limiting",
            json!({"minute": 5, "redis": {"host": "redis:6379", "server_name": "10.0.0.1", "foo": 1}})
        ),
        json!({"redis": {"host": "must not have a port", "server_name": "must not be an IP", "foo": "unknown field"}})
    );
    assert_eq!(
        err("rate-limiting", json!({"minute": 5, "redis": "localhost"})),
        json!({"redis": "expected a record"})
    );
}

// --- request-termination ---

#[test]
fn request_termination() {
    assert_eq!(
        shown("request-termination", json!({})),
        json!({"status_code": 503, "message": null, "content_type": null, "body": null, "echo": false, "trigger": null})
    );
    ok(
        "request-termination",
        json!({"status_code": 200, "body": "{}", "content_type": "application/json"}),
    );
    ok(
        "request-termination",
        json!({"echo": true, "trigger": "X-Debug", "message": "hi"}),
    );
    assert_eq!(
        err(
            "request-termination",
            json!({"status_code": 600, "trigger": "x y"})
        ),
        json!({"status_code": "value should be between 100 and 599", "trigger": format!("bad header name 'x y', {HEADER_MSG}")})
    );
    assert_eq!(
        err("request-termination", json!({"status_code": "404"})),
        json!({"status_code": "expected an integer"})
    );
    assert_eq!(
        err("request-termination", json!({"message": "x", "body": "y"})),
        json!("message cannot be used with content_type or body")
    );
    assert_eq!(
        err("request-termination", json!({"content_type": "text/plain"})),
        json!("content_type requires a body")
    );
    assert_eq!(
        err("request-termination", json!({"echo": true, "body": "x"})),
        json!("echo cannot be used with content_type and body")
    );
}

// --- request-transformer ---

#[test]
fn request_transformer_defaults() {
    let empty = json!({"body": [], "headers": [], "querystring": []});
    assert_eq!(
        shown("request-transformer", json!({})),
        json!({
            "http_method": null, "remove": empty, "rename": empty,
            "replace": {"body": [], "headers": [], "querystring": [], "uri": null},
            "add": empty, "append": empty,
        })
    );
    ok(
        "request-transformer",
        json!({
            "http_method": "POST",
            "remove": {"headers": ["x-internal"], "querystring": ["debug"]},
            "rename": {"headers": ["x-old:x-new"], "body": ["a:b"]},
            "replace": {"uri": "/v2/$(uri_captures.id)", "headers": ["host:example.com"]},
            "add": {"headers": ["x-forwarded-host:$(headers.host)", "x-empty-ok:a b"], "querystring": ["k:v:w"]},
            "append": {"body": ["tag:$(query_params[\"t\"] or 'none')"]},
        }),
    );
}

#[test]
fn request_transformer_invalid() {
    assert_eq!(
        err("request-transformer", json!({"http_method": "get"})),
        json!({"http_method": "invalid value: get"})
    );
    assert_eq!(
        err(
            "request-transformer",
            json!({"add": {"headers": ["x-foo", "bad name:1", "x:a\r\nb"], "body": ["a", "b:"]}})
        ),
        json!({"add": {
            "headers": ["invalid value: x-foo", "'bad name' is not a valid header", "'a\r\nb' is not a valid header"],
            "body": ["key 'a' has no value", "key 'b' has no value"],
        }})
    );
    assert_eq!(
        err(
            "request-transformer",
            json!({"rename": {"headers": ["a:b c", ":x"]}, "remove": {"headers": ["bad header", ":y"]}})
        ),
        json!({
            "rename": {"headers": ["'b c' is not a valid header", "invalid value: :x"]},
            "remove": {"headers": ["'bad header' is not a valid header", "'nil' is not a valid header"]},
        })
    );
    assert_eq!(
        err(
            "request-transformer",
            json!({"replace": {"body": ["a:$(b c)"], "uri": ""}})
        ),
        json!({"replace": {
            "body": ["value '$(b c)' is not in supported format, error:[string \"TMP\"]:4: ')' expected near 'c'"],
            "uri": "length must be at least 1",
        }})
    );
    assert_eq!(
        err(
            "request-transformer",
            json!({"append": "x", "add": {"nope": []}})
        ),
        json!({"append": "expected a record", "add": {"nope": "unknown field"}})
    );
}

// --- response-transformer ---

#[test]
fn response_transformer_defaults() {
    let json_record = json!({"json": [], "json_types": [], "headers": []});
    assert_eq!(
        shown("response-transformer", json!({})),
        json!({
            "remove": {"json": [], "headers": []},
            "rename": {"json": [], "headers": []},
            "replace": json_record, "add": json_record, "append": json_record,
        })
    );
    ok(
        "response-transformer",
        json!({
            "remove": {"json": ["secret"], "headers": ["server"]},
            "rename": {"json": ["a:b"], "headers": ["x-a:x-b"]},
            "add": {"json": ["n:1", "s:x"], "json_types": ["number", "string"], "headers": ["x-c:d e"]},
        }),
    );
}

#[test]
fn response_transformer_invalid() {
    assert_eq!(
        err(
            "response-transformer",
            json!({"add": {"json_types": ["int"], "json": ["nocolon"]}})
        ),
        json!({"add": {"json_types": ["expected one of: boolean, number, string"], "json": ["invalid value: nocolon"]}})
    );
    assert_eq!(
        err(
            "response-transformer",
            json!({"rename": {"headers": ["a"]}, "append": {"headers": ["bad header:1"]}})
        ),
        json!({
            "rename": {"headers": ["invalid value: a"]},
            "append": {"headers": ["'bad header' is not a valid header"]},
        })
    );
    assert_eq!(
        err("response-transformer", json!({"replace": {"headers": "x"}})),
        json!({"replace": {"headers": "expected an array"}})
    );
}

/// A custom build's plugin: read through its own schema, shown as its bare config, and
/// carried through the binary encoding with its name.
#[test]
fn a_custom_plugin_is_read_through_its_schema_and_round_trips() {
    fn read(c: &Map<String, Value>) -> Result<Map<String, Value>, Errors> {
        let mut out = Map::new();
        match c.get("greeting") {
            None => {
                out.insert("greeting".into(), json!("hello"));
            }
            Some(Value::String(s)) => {
                out.insert("greeting".into(), json!(s));
            }
            Some(_) => {
                let mut e = Errors::default();
                e.field("greeting", "expected a string");
                return Err(e);
            }
        }
        Ok(out)
    }
    let schema = CustomSchema {
        name: "x-test-greeting",
        priority: 5,
        version: "1.2.3",
        protocols: HTTP_PROTOCOLS,
        read,
    };
    register_custom(schema).unwrap();
    let clash = CustomSchema {
        name: "cors",
        ..schema
    };
    assert!(register_custom(clash).unwrap_err().contains("bundled"));
    let bad_version = CustomSchema {
        name: "x-other",
        version: "1.2",
        ..schema
    };
    assert!(register_custom(bad_version).unwrap_err().contains("semver"));

    let c = ok("x-test-greeting", json!({}));
    assert_eq!(c.name(), "x-test-greeting");
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"greeting": "hello"})
    );
    let bytes = postcard::to_allocvec(&c).unwrap();
    let back: PluginConfig = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, c);
    // Bundled plugins keep their encoding: a custom variant comes after all of them.
    let cors = ok("cors", json!({}));
    let back: PluginConfig = postcard::from_bytes(&postcard::to_allocvec(&cors).unwrap()).unwrap();
    assert_eq!(back, cors);

    assert_eq!(
        err("x-test-greeting", json!({"greeting": 1})),
        json!({"greeting": "expected a string"})
    );
    assert_eq!(info("x-test-greeting").unwrap().version, "1.2.3");
    assert!(installed().iter().any(|p| p.name == "x-test-greeting"));
    assert!(!bundled().iter().any(|p| p.name == "x-test-greeting"));
}
