//! `POST /config` and `GET /config` over HTTP: every body form, Kong's code-14 errors,
//! `check_hash`, the larger body limit, and a 10,000-service file imported in one write
//! and exported back unchanged.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tidegate_cp::Backend;
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_model::{Entity, EntityKind};
use tokio::time::Instant;
use uuid::Uuid;

const YAML: &str = r#"_format_version: "3.0"
services:
- name: my-service
  url: http://a.example:8080/v1
  routes:
  - name: my-route
    paths: [/a]
consumers:
- username: my-user
  keyauth_credentials:
  - key: k1
"#;

fn uuid(s: &str) -> Uuid {
    s.parse().unwrap()
}

/// Ids Kong derives for these names (from Kong's own spec tests).
fn my_service() -> Uuid {
    uuid("0855b320-0dd2-547d-891d-601e9b38647f")
}
fn my_route() -> Uuid {
    uuid("481a9539-f49c-51b6-b2e2-fe99ee68866c")
}
fn my_user() -> Uuid {
    uuid("4b1b701d-de2b-5588-9aa2-3b97061d9f52")
}

fn sorted(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| (e.kind(), e.id()));
    entities
}

fn state_entities(srv: &Server) -> Vec<Entity> {
    srv.backend
        .read(|m| m.config.iter().cloned().collect::<Vec<_>>())
}

/// The entities a `GET /config` export reads back as.
async fn exported(srv: &Server) -> Vec<Entity> {
    let r = srv
        .call_within("GET", "/config", &[], None, Duration::from_secs(300))
        .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "only `config`");
    let yaml = body["config"].as_str().expect("config is YAML text");
    let opts = ParseOptions { now: 1, entropy: 1 };
    declarative::parse(yaml, opts)
        .unwrap_or_else(|e| panic!("the export does not load: {}", e.to_json()))
        .entities
}

#[tokio::test]
async fn config_loads_from_every_body_form_in_one_write() {
    let srv = start().await;
    let r = srv.post("/config", json!({ "config": YAML })).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.writes(), 1);
    let body = r.json();
    let kinds: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        kinds,
        ["services", "routes", "consumers", "keyauth_credentials"]
    );
    // Keyed by kind, then id; each entity in full, as stored.
    let svc = &body["services"][my_service().to_string()];
    assert_eq!(
        svc,
        &srv.get("/services/my-service").await.json(),
        "the body shows the stored entity"
    );
    assert_eq!(
        (
            svc["port"].clone(),
            svc["path"].clone(),
            svc["created_at"].clone()
        ),
        (json!(8080), json!("/v1"), json!(T0))
    );
    assert_eq!(
        body["routes"][my_route().to_string()]["service"],
        json!({"id": my_service()})
    );
    assert_eq!(
        body["consumers"][my_user().to_string()]["username"],
        "my-user"
    );
    assert_eq!(body["keyauth_credentials"].as_object().unwrap().len(), 1);

    // Nothing would change: 304, no write.
    let r = srv
        .call(
            "POST",
            "/config?check_hash=1",
            &[("Content-Type", "application/json")],
            Some(json!({ "config": YAML }).to_string().as_bytes()),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(srv.writes(), 1);
    // Without check_hash the same file is written (and changes nothing).
    let version = srv.backend.read(|m| m.config.version());
    assert_eq!(
        srv.post("/config", json!({ "config": YAML })).await.status,
        201
    );
    assert_eq!(srv.writes(), 2);
    assert_eq!(srv.backend.read(|m| m.config.version()), version);

    // A raw YAML body that differs: the config becomes exactly the file.
    let changed = "_format_version: \"2.1\"\nservices:\n- name: other\n  host: b.example\n  routes:\n  - name: rx\n    paths: [\"/x$\"]\n";
    let r = srv
        .call(
            "POST",
            "/config?check_hash=1",
            &[("Content-Type", "application/x-yaml")],
            Some(changed.as_bytes()),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.writes(), 3);
    assert_eq!(srv.get("/services/my-service").await.sj(), not_found());
    assert_eq!(srv.backend.count(EntityKind::Consumer), 0);
    // 2.1 files migrate: a regex path gets its `~`.
    assert_eq!(srv.get("/routes/rx").await.json()["paths"], json!(["~/x$"]));

    // The document itself as JSON, and a form field.
    let doc = json!({"_format_version": "3.0", "upstreams": [{"name": "up", "targets": [{"target": "t.example"}]}]});
    let r = srv.post("/config", doc).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.backend.count(EntityKind::Service), 0);
    assert_eq!(
        list_of(&srv.get("/upstreams/up/targets").await.json(), "target"),
        [json!("t.example:8000")]
    );
    let form: String = YAML
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = srv.form("POST", "/config", &format!("config={form}")).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.backend.count(EntityKind::Upstream), 0);
    assert_eq!(srv.get("/key-auths/k1").await.status, 200);

    // The export loads back to the same entities.
    assert_eq!(sorted(exported(&srv).await), sorted(state_entities(&srv)));
    srv.stop().await;
}

#[tokio::test]
async fn bad_config_files_are_code_14_and_write_nothing() {
    let srv = start().await;
    let nothing = (
        400,
        json!({"message": "expected a declarative configuration"}),
    );
    assert_eq!(srv.call("POST", "/config", &[], None).await.sj(), nothing);
    assert_eq!(srv.form("POST", "/config", "other=1").await.sj(), nothing);
    assert_eq!(
        srv.call(
            "POST",
            "/config",
            &[("Content-Type", "application/json")],
            Some(b"{\"config\": ")
        )
        .await
        .sj(),
        (400, json!({"message": "Cannot parse JSON body"}))
    );

    let cases: Vec<(Value, Value, &str)> = vec![
        (
            json!({"config": "services: []"}),
            json!({"_format_version": "required field missing"}),
            "declarative config is invalid: {_format_version=\"required field missing\"}",
        ),
        (
            json!({"_format_version": "3.0", "services": [{"name": "s"}]}),
            json!({"services": [{"host": "required field missing"}]}),
            "declarative config is invalid: {services={{host=\"required field missing\"}}}",
        ),
        (
            json!({"config": "_format_version: \"3.0\"\nroutes:\n- name: r\n  paths: [/]\n  service: nope\n"}),
            json!({"routes": {"r": ["invalid reference 'service: nope' (no such entry in 'services')"]}}),
            "declarative config is invalid: {routes={r={\"invalid reference 'service: nope' (no such entry in 'services')\"}}}",
        ),
        (
            json!({"config": "_format_version: \"3.0\"\nservices:\n- name: a\n  host: x\n- name: a\n  host: y\n"}),
            json!({"services": [null, "uniqueness violation: 'services' entity with name set to 'a' already declared"]}),
            "declarative config is invalid: {services={[2]=\"uniqueness violation: 'services' entity with name set to 'a' already declared\"}}",
        ),
    ];
    for (body, fields, message) in cases {
        let r = srv.post("/config", body.clone()).await;
        assert_eq!(
            r.sj(),
            (
                400,
                json!({"code": 14, "name": "invalid declarative configuration",
                       "message": message, "fields": fields})
            ),
            "{body}"
        );
    }
    let r = srv
        .call(
            "POST",
            "/config",
            &[("Content-Type", "text/yaml")],
            Some(b"services: [unclosed"),
        )
        .await;
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(14)));
    let why = r.json()["fields"]["error"].as_str().unwrap().to_string();
    assert!(
        why.starts_with("failed parsing declarative configuration: "),
        "{why}"
    );
    assert_eq!(srv.writes(), 0);
    assert_eq!(srv.backend.read(|m| m.config.len()), 0);
    srv.stop().await;
}

#[tokio::test]
async fn config_bodies_may_exceed_the_8_mib_of_other_endpoints() {
    let srv = start().await;
    // A 9 MiB file: the padding is a comment, which Kong allows anywhere.
    let padding = "x".repeat(9 << 20);
    let doc = json!({"_format_version": "3.0", "_comment": padding,
                     "consumers": [{"username": "big"}]});
    let text = doc.to_string();
    assert!(text.len() > 9 << 20);
    let r = srv
        .call_within(
            "POST",
            "/config",
            &[("Content-Type", "application/json")],
            Some(text.as_bytes()),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.get("/consumers/big").await.status, 200);
    // A body that size is too large for an entity endpoint (refused on its declared
    // length, so only the head is sent).
    let head = format!(
        "POST /consumers HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        text.len()
    );
    let r = send_raw(srv.addr, head.as_bytes()).await;
    assert_eq!(
        r.sj(),
        (
            413,
            json!({"message": "request body exceeds 8388608 bytes"})
        )
    );
    // Declared beyond 64 MiB: refused before reading.
    let head = "POST /config HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
                Content-Length: 67108865\r\n\r\n";
    let r = send_raw(srv.addr, head.as_bytes()).await;
    assert_eq!(
        r.sj(),
        (
            413,
            json!({"message": "request body exceeds 67108864 bytes"})
        )
    );
    srv.stop().await;
}

#[tokio::test]
async fn ten_thousand_services_import_in_one_write_and_export_back() {
    const N: usize = 10_000;
    let srv = start().await;
    let mut yaml = String::from("_format_version: \"3.0\"\nservices:\n");
    for i in 0..N {
        yaml.push_str(&format!(
            "- name: svc-{i:05}\n  host: svc-{i:05}.internal\n  port: {}\n  tags: [bulk]\n  routes:\n  - name: route-{i:05}\n    paths: [/svc-{i:05}]\n    methods: [GET, POST]\n",
            8000 + i % 1000
        ));
    }
    let started = Instant::now();
    let r = srv
        .call_within(
            "POST",
            "/config",
            &[("Content-Type", "application/x-yaml")],
            Some(yaml.as_bytes()),
            Duration::from_secs(600),
        )
        .await;
    let import = started.elapsed();
    assert_eq!(
        r.status,
        201,
        "{}",
        String::from_utf8_lossy(&r.body[..r.body.len().min(2000)])
    );
    assert_eq!(srv.writes(), 1, "one Command for the whole file");
    assert_eq!(srv.backend.count(EntityKind::Service), N);
    assert_eq!(srv.backend.count(EntityKind::Route), N);
    let body = r.json();
    assert_eq!(body["services"].as_object().unwrap().len(), N);
    assert_eq!(body["routes"].as_object().unwrap().len(), N);

    let started = Instant::now();
    let back = exported(&srv).await;
    let export = started.elapsed();
    assert_eq!(back.len(), 2 * N);
    assert_eq!(sorted(back), sorted(state_entities(&srv)));
    eprintln!(
        "10k services + 10k routes ({} bytes of YAML): import {import:?} (one write), export + reload {export:?}",
        yaml.len()
    );
    srv.stop().await;
}
