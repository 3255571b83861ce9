//! What clients read about the API itself: `/endpoints`, `/schemas/…` (derived from the
//! model's readers) and schema validation without a write.

mod support;

use serde_json::{json, Value};
use support::*;
use tidegate_model::EntityKind;

/// The definition of `name` in a Kong `fields` array.
fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .unwrap_or_else(|| panic!("not a fields array: {fields}"))
        .iter()
        .find_map(|f| f.get(name))
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

fn names(fields: &Value) -> Vec<String> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn endpoints_lists_kong_paths() {
    let srv = start().await;
    let r = srv.get("/endpoints").await;
    assert_eq!(r.status, 200);
    let data: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    for path in [
        "/",
        "/consumers/{consumers}/acls/{acls}",
        "/key-auths",
        "/plugins/{plugins}/consumer",
        "/schemas/{name}",
    ] {
        assert!(data.iter().any(|p| p == path), "{path} missing");
    }
    // Every listed entity path answers (here: 200 for each top-level collection).
    let readable =
        |p: &&String| !p.contains('{') && !p.contains("clustering") && !p.ends_with("/validate");
    for p in data.iter().filter(readable) {
        assert_eq!(srv.get(p).await.status, 200, "{p}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn entity_schemas_carry_types_defaults_and_choices() {
    let srv = start().await;
    let services = srv.get("/schemas/services").await.json()["fields"].clone();
    assert_eq!(
        names(&services),
        [
            "id",
            "created_at",
            "updated_at",
            "name",
            "retries",
            "protocol",
            "host",
            "port",
            "path",
            "connect_timeout",
            "write_timeout",
            "read_timeout",
            "tags",
            "client_certificate",
            "tls_verify",
            "tls_verify_depth",
            "ca_certificates",
            "enabled"
        ]
    );
    assert_eq!(
        field(&services, "id"),
        &json!({"type": "string", "uuid": true, "auto": true})
    );
    assert_eq!(
        field(&services, "created_at"),
        &json!({"type": "integer", "timestamp": true, "auto": true})
    );
    assert_eq!(
        field(&services, "protocol"),
        &json!({"type": "string", "default": "http",
                "one_of": ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"]})
    );
    assert_eq!(
        field(&services, "port"),
        &json!({"type": "integer", "default": 80, "between": [0, 65535]})
    );
    assert_eq!(
        field(&services, "host"),
        &json!({"type": "string", "required": true})
    );
    assert_eq!(field(&services, "retries")["default"], json!(5));
    assert_eq!(field(&services, "connect_timeout")["default"], json!(60000));
    assert_eq!(
        field(&services, "enabled"),
        &json!({"type": "boolean", "default": true})
    );
    // Only allowed for https services: typed through a second base.
    assert_eq!(
        field(&services, "tls_verify_depth"),
        &json!({"type": "integer", "between": [0, 64]})
    );
    assert_eq!(
        field(&services, "ca_certificates"),
        &json!({"type": "array", "elements": {"type": "string"}})
    );
    assert_eq!(
        field(&services, "tags"),
        &json!({"type": "set", "elements": {"type": "string"}})
    );
    assert_eq!(
        field(&services, "client_certificate"),
        &json!({"type": "foreign", "reference": "certificates"})
    );

    let routes = srv.get("/schemas/routes").await.json()["fields"].clone();
    assert_eq!(
        field(&routes, "protocols"),
        &json!({"type": "set", "default": ["http", "https"],
                "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"]}})
    );
    assert_eq!(
        field(&routes, "https_redirect_status_code"),
        &json!({"type": "integer", "default": 426, "one_of": [426, 301, 302, 307, 308]})
    );
    assert_eq!(field(&routes, "strip_path")["default"], json!(true));
    assert_eq!(field(&routes, "headers"), &json!({"type": "map"}));
    assert_eq!(
        field(&routes, "sources"),
        &json!({"type": "set", "elements": {"type": "record"}})
    );

    // Nested records with their own fields and defaults.
    let upstreams = srv.get("/schemas/upstreams").await.json()["fields"].clone();
    let healthchecks = field(&upstreams, "healthchecks");
    let active = field(&healthchecks["fields"], "active");
    let healthy = field(&active["fields"], "healthy");
    assert_eq!(
        field(&healthy["fields"], "http_statuses"),
        &json!({"type": "array", "default": [200, 302],
                "elements": {"type": "integer", "between": [100, 999]}})
    );

    let keyauth = srv.get("/schemas/keyauth_credentials").await.json()["fields"].clone();
    assert_eq!(
        field(&keyauth, "consumer"),
        &json!({"type": "foreign", "reference": "consumers", "required": true})
    );
    // A generated key is no default.
    assert_eq!(
        field(&keyauth, "key"),
        &json!({"type": "string", "auto": true})
    );

    let certs = srv.get("/schemas/certificates").await.json()["fields"].clone();
    assert_eq!(
        names(&certs),
        [
            "id",
            "created_at",
            "updated_at",
            "cert",
            "key",
            "cert_alt",
            "key_alt",
            "tags"
        ]
    );
    assert_eq!(
        field(&certs, "cert"),
        &json!({"type": "string", "required": true})
    );

    let plugins = srv.get("/schemas/plugins").await.json()["fields"].clone();
    assert_eq!(
        field(&plugins, "config"),
        &json!({"type": "record", "abstract": true, "required": true})
    );

    assert_eq!(
        srv.get("/schemas/nope").await.sj(),
        (404, json!({"message": "No entity named 'nope'"}))
    );
    // Every kind has a schema whose fields all say their type.
    for kind in EntityKind::ALL {
        let r = srv.get(&format!("/schemas/{}", kind.table())).await;
        assert_eq!(r.status, 200, "{kind}");
        for f in r.json()["fields"].as_array().unwrap() {
            let (name, def) = f.as_object().unwrap().iter().next().unwrap();
            assert!(def.get("type").is_some(), "{kind}.{name}: {def}");
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn plugin_schemas_describe_their_config() {
    let srv = start().await;
    let rl = srv.get("/schemas/plugins/rate-limiting").await;
    assert_eq!(rl.status, 200);
    let fields = rl.json()["fields"].clone();
    let config = field(&fields, "config");
    assert_eq!(config["type"], "record");
    let cf = config["fields"].clone();
    assert_eq!(field(&cf, "minute"), &json!({"type": "number"}));
    assert_eq!(field(&cf, "policy")["default"], json!("local"));
    assert_eq!(field(&cf, "policy")["type"], json!("string"));
    assert_eq!(
        field(&cf, "limit_by")["one_of"],
        json!(["consumer", "credential", "ip", "service", "header", "path"])
    );
    assert_eq!(
        field(&cf, "fault_tolerant"),
        &json!({"type": "boolean", "default": true})
    );
    assert_eq!(
        field(&fields, "protocols")["default"],
        json!(["grpc", "grpcs", "http", "https"])
    );

    let cors = srv.get("/schemas/plugins/cors").await.json()["fields"].clone();
    let cf = field(&cors, "config")["fields"].clone();
    assert_eq!(
        field(&cf, "credentials"),
        &json!({"type": "boolean", "default": false})
    );
    assert_eq!(field(&cf, "max_age"), &json!({"type": "number"}));

    // Every bundled plugin: a config record whose fields all have a type.
    for p in tidegate_model::plugins::bundled() {
        let r = srv.get(&format!("/schemas/plugins/{}", p.name)).await;
        assert_eq!(r.status, 200, "{}", p.name);
        let config = field(&r.json()["fields"], "config").clone();
        let cf = config["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: {config}", p.name));
        assert!(!cf.is_empty(), "{}", p.name);
        for f in cf {
            let (name, def) = f.as_object().unwrap().iter().next().unwrap();
            assert!(def.get("type").is_some(), "{}.config.{name}: {def}", p.name);
        }
    }
    assert_eq!(
        srv.get("/schemas/plugins/nope").await.sj(),
        (404, json!({"message": "No plugin named 'nope'"}))
    );
    srv.stop().await;
}

#[tokio::test]
async fn validate_judges_the_schema_and_writes_nothing() {
    let srv = start().await;
    let ok = (200, json!({"message": "schema validation successful"}));
    assert_eq!(
        srv.post("/schemas/services/validate", json!({"host": "a.example"}))
            .await
            .sj(),
        ok
    );
    let r = srv
        .post("/schemas/services/validate", json!({"path": "foo"}))
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                2,
                "schema violation",
                "2 schema violations (host: required field missing; path: should start with: /)",
                json!({"host": "required field missing", "path": "should start with: /"})
            )
        )
    );
    // Foreign keys are not looked up: only the shape is judged.
    assert_eq!(
        srv.post(
            "/schemas/routes/validate",
            json!({"paths": ["/"], "service": {"id": id(42)}})
        )
        .await
        .sj(),
        ok
    );
    assert_eq!(
        srv.post("/schemas/plugins/validate", json!({"name": "cors"}))
            .await
            .sj(),
        ok
    );
    let r = srv
        .post(
            "/schemas/plugins/validate",
            json!({"name": "rate-limiting", "config": {"minute": "x"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["fields"]["config"]["minute"], "expected a number");
    // Forms are typed before they are judged.
    let r = srv
        .form(
            "POST",
            "/schemas/plugins/validate",
            "name=rate-limiting&config.minute=5",
        )
        .await;
    assert_eq!(r.sj(), ok);
    assert_eq!(
        srv.post("/schemas/nope/validate", json!({})).await.sj(),
        (404, json!({"message": "No entity named 'nope'"}))
    );
    assert_eq!(srv.writes(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn upstream_health_says_it_is_not_supported_yet() {
    let srv = start().await;
    let missing = srv.get("/upstreams/nope.internal/health").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"message": "Not found"}));

    let created = srv.post("/upstreams", json!({"name": "up.internal"})).await;
    assert_eq!(created.status, 201);
    let r = srv.get("/upstreams/up.internal/health").await;
    assert_eq!(r.status, 501);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("reported by data planes"),
        "{:?}",
        r.json()
    );
}

/// The `plugins` setting narrows what this node lists and accepts, with Kong's message,
/// for single writes and declarative imports alike; nothing is written on a refusal.
#[tokio::test]
async fn the_plugins_setting_limits_what_the_node_accepts() {
    let srv = start().await;
    *srv.backend.enabled_plugins.lock().unwrap() = Some(vec!["cors".into(), "key-auth".into()]);

    let r = srv.get("/plugins/enabled").await;
    assert_eq!(r.json()["enabled_plugins"], json!(["cors", "key-auth"]));
    let root = srv.get("/").await.json();
    let available: Vec<&String> = root["plugins"]["available_on_server"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(available, ["cors", "key-auth"]);

    let msg = "plugin 'acl' not enabled; add it to the 'plugins' configuration property";
    let r = srv
        .post(
            "/plugins",
            json!({"name": "acl", "config": {"allow": ["a"]}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({
            "code": 2,
            "name": "schema violation",
            "message": format!("schema violation (name: {msg})"),
            "fields": {"name": msg},
        })
    );
    let doc = "_format_version: '3.0'\nplugins:\n- name: acl\n  config:\n    allow: [a]\n";
    let r = srv.post("/config", json!({ "config": doc })).await;
    assert_eq!(r.status, 400, "{:?}", r.json());
    assert_eq!(r.json()["fields"]["name"], json!(msg));
    assert_eq!(srv.writes(), 0);

    let r = srv.post("/plugins", json!({"name": "cors"})).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    srv.stop().await;
}
