use super::*;

use std::sync::OnceLock;

use serde_json::json;

use crate::entities::hash_password;
use crate::{ConfigHash, ErrorCode};

const OPTS: ParseOptions = ParseOptions {
    now: 1_700_000_000,
    entropy: 42,
};

// Kong's spec values (research §3.6) and ids computed independently with Python's
// `uuid.uuid5(uuid.uuid5(NS_ROOT, entity), key)`.
const SERVICE_ID: &str = "0855b320-0dd2-547d-891d-601e9b38647f";
const CONSUMER_ID: &str = "4b1b701d-de2b-5588-9aa2-3b97061d9f52";
const ROUTE_ID: &str = "481a9539-f49c-51b6-b2e2-fe99ee68866c";
const UPSTREAM_ID: &str = "f9792964-6797-482c-bfdf-08220a4f6839";
const CERT_ID: &str = "6f1f4b1a-2c7e-4a52-9a37-0c6f0f3b1d11";
/// `targets:*:f9792964-6797-482c-bfdf-08220a4f6839:10.244.0.12:80`
const TARGET_1_ID: &str = "48322e4a-b3b0-591b-8ed6-fd95a6d75019";
/// `targets:*:f9792964-6797-482c-bfdf-08220a4f6839:10.244.0.13`
const TARGET_2_ID: &str = "64753250-0d89-5477-b5a6-748f6eb5e4bb";
/// `plugins:*:correlation-id:::`
const GLOBAL_PLUGIN_ID: &str = "bc9b9ec8-e779-5314-8006-15d16c0092d5";
/// `plugins:*:correlation-id::<service id>:`
const SERVICE_PLUGIN_ID: &str = "833276be-f05c-58de-8c41-b3954b066fec";
/// `plugins:*:correlation-id:<route id>::`
const ROUTE_PLUGIN_ID: &str = "98de8241-5ab9-53a6-a1af-20ce0998ad98";
/// `plugins:*:correlation-id:::<consumer id>`
const CONSUMER_PLUGIN_ID: &str = "3fddb1f5-b2df-50b5-8874-1a9f6b345bdc";
/// `acls:*:<consumer id>:admins`
const ACL_ID: &str = "b7895788-38db-57a4-b035-9c48ec23549b";
/// `basicauth_credentials:*:my-user-basic`
const BASICAUTH_ID: &str = "fb3b5857-7fdc-5086-8f75-2d68517a7653";
/// `keyauth_credentials:*:my-key` (our deviation: Kong's latest code picks a random id)
const KEYAUTH_ID: &str = "c3079092-b808-5c3c-a5e4-5a52ae4eab33";
/// `example.com` in the snis namespace
const SNI_ID: &str = "1944977b-55fa-5e55-99c8-9160e78bbbb4";
/// `sha1("secret" .. CONSUMER_ID)`
const SECRET_HASH: &str = "5b6fa7495e0470557f4e20541cf187b707000e71";

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

/// A self-signed cert and key for example.com, one per test run so that every fixture
/// spells the same certificate.
fn cert_pair() -> &'static (String, String) {
    static PAIR: OnceLock<(String, String)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.com".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    })
}

/// A self-signed CA certificate, for `ca_certificates`.
fn ca_cert() -> &'static str {
    static CA: OnceLock<String> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    })
}

/// Fixture text with `{{CERT}}`/`{{KEY}}` replaced by JSON strings (valid YAML too).
fn with_cert(text: &str) -> String {
    let (cert, key) = cert_pair();
    text.replace("{{CERT}}", &serde_json::to_string(cert).unwrap())
        .replace("{{KEY}}", &serde_json::to_string(key).unwrap())
}

macro_rules! fixture {
    ($name:literal) => {
        with_cert(include_str!(concat!("../../tests/declarative/", $name)))
    };
}

fn load(text: &str) -> Declarative {
    load_with(text, OPTS)
}

fn load_with(text: &str, opts: ParseOptions) -> Declarative {
    parse(text, opts).unwrap_or_else(|e| panic!("{}", e.to_json()))
}

fn load_value(v: Value) -> Declarative {
    parse_value(v, OPTS).unwrap_or_else(|e| panic!("{}", e.to_json()))
}

fn sorted(d: &Declarative) -> Vec<Entity> {
    let mut v = d.entities.clone();
    v.sort_by_key(|e| (e.kind(), e.id()));
    v
}

fn get(d: &Declarative, kind: EntityKind, id: &str) -> Entity {
    let id = uuid(id);
    d.entities
        .iter()
        .find(|e| e.kind() == kind && e.id() == id)
        .unwrap_or_else(|| panic!("no {kind} {id} in {:#?}", ids(d)))
        .clone()
}

fn ids(d: &Declarative) -> Vec<(EntityKind, Uuid)> {
    d.entities.iter().map(|e| (e.kind(), e.id())).collect()
}

fn count(d: &Declarative, kind: EntityKind) -> usize {
    d.entities.iter().filter(|e| e.kind() == kind).count()
}

/// The foreign key named `field` of `e`.
fn fk(e: &Entity, field: &str) -> Option<Uuid> {
    let i = e
        .kind()
        .relations()
        .iter()
        .position(|r| r.field == field)
        .unwrap_or_else(|| panic!("{} has no foreign key {field}", e.kind()));
    e.foreign_keys()[i]
}

fn json_field(e: &Entity, field: &str) -> Value {
    e.to_json()[field].clone()
}

fn err(text: &str) -> KongError {
    match parse(text, OPTS) {
        Ok(d) => panic!("expected an error, got {:#?}", ids(&d)),
        Err(e) => e,
    }
}

fn err_value(v: Value) -> KongError {
    match parse_value(v, OPTS) {
        Ok(d) => panic!("expected an error, got {:#?}", ids(&d)),
        Err(e) => e,
    }
}

/// A code-14 error with exactly these `fields` and `message`.
fn assert_declarative(e: &KongError, fields: Value, message: &str) {
    assert_eq!(e.code, ErrorCode::DeclarativeConfig);
    let body = e.to_json();
    assert_eq!(body["code"], 14);
    assert_eq!(body["name"], "invalid declarative configuration");
    assert_eq!(e.fields_json().unwrap(), fields, "fields of {body}");
    assert_eq!(e.message, message);
}

/// Only the fields; for trees whose Lua rendering adds nothing.
fn assert_fields(e: &KongError, fields: Value) {
    assert_eq!(e.code, ErrorCode::DeclarativeConfig, "{}", e.to_json());
    assert_eq!(e.fields_json().unwrap(), fields);
    assert!(e.message.starts_with("declarative config is invalid: {"));
}

const SERVICE: &str = "host: backend.internal";

// --- one config, many spellings ------------------------------------------------------------

#[test]
fn every_format_and_shape_gives_the_same_entities_and_hash() {
    let reference = load(&fixture!("nested-3.0.yaml"));
    assert_eq!(reference.entities.len(), 15);
    for (kind, n) in [
        (EntityKind::Service, 1),
        (EntityKind::Route, 1),
        (EntityKind::Consumer, 1),
        (EntityKind::KeyauthCredential, 1),
        (EntityKind::BasicauthCredential, 1),
        (EntityKind::Acl, 1),
        (EntityKind::Upstream, 1),
        (EntityKind::Target, 2),
        (EntityKind::Certificate, 1),
        (EntityKind::Sni, 1),
        (EntityKind::Plugin, 4),
    ] {
        assert_eq!(count(&reference, kind), n, "{kind}");
    }
    let hash = ConfigHash::of(&reference.entities);
    for (name, text) in [
        ("nested-2.1.yaml", fixture!("nested-2.1.yaml")),
        ("nested-1.1.yaml", fixture!("nested-1.1.yaml")),
        ("flat-3.0.yaml", fixture!("flat-3.0.yaml")),
        ("flat-2.1.json", fixture!("flat-2.1.json")),
    ] {
        let d = load(&text);
        assert_eq!(d.format_version, "3.0", "{name}");
        assert!(d.transform, "{name}");
        assert_eq!(sorted(&d), sorted(&reference), "{name}");
        assert_eq!(ConfigHash::of(&d.entities), hash, "{name}");
    }
}

#[test]
fn older_formats_migrate_regex_paths_only() {
    for text in [fixture!("nested-2.1.yaml"), fixture!("nested-1.1.yaml")] {
        let d = load(&text);
        let route = get(&d, EntityKind::Route, ROUTE_ID);
        assert_eq!(
            json_field(&route, "paths"),
            json!(["~/users/\\d+", "/plain"])
        );
    }
    // 3.0 files are taken as written: this path is a prefix.
    let d = load("_format_version: '3.0'\nroutes:\n- name: r\n  paths: ['/users/\\d+']\n");
    assert_eq!(json_field(&d.entities[0], "paths"), json!(["/users/\\d+"]));
}

#[test]
fn migration_covers_top_level_routes_and_service_routes_only() {
    // Kong migrates `routes` and `services[].routes`; routes under
    // `certificates[].services[]` keep their path as written.
    let (cert, key) = cert_pair();
    let doc = json!({
        "_format_version": "1.1",
        "routes": [{"name": "top", "paths": ["/a/\\d+", "/a%2Eb"]}],
        "certificates": [{
            "cert": cert, "key": key,
            // A client certificate needs https.
            "services": [{"name": "deep", "host": "h.internal", "protocol": "https",
                "routes": [{"name": "deep-route", "paths": ["/b/\\d+"]}]}]
        }]
    });
    let d = load_value(doc);
    let path_of = |name: &str| {
        d.entities
            .iter()
            .find(|e| e.kind() == EntityKind::Route && e.endpoint_key().as_deref() == Some(name))
            .map(|e| json_field(e, "paths"))
            .unwrap()
    };
    assert_eq!(path_of("top"), json!(["~/a/\\d+", "/a.b"]));
    assert_eq!(path_of("deep-route"), json!(["/b/\\d+"]));
    assert_eq!(d.format_version, "3.0");
}

// --- ids ---------------------------------------------------------------------------------

#[test]
fn ids_follow_kongs_uuidv5_scheme() {
    let d = load(&fixture!("nested-3.0.yaml"));
    let service = get(&d, EntityKind::Service, SERVICE_ID);
    let route = get(&d, EntityKind::Route, ROUTE_ID);
    let consumer = get(&d, EntityKind::Consumer, CONSUMER_ID);
    let upstream = get(&d, EntityKind::Upstream, UPSTREAM_ID);
    let cert = get(&d, EntityKind::Certificate, CERT_ID);
    assert_eq!(fk(&route, "service"), Some(service.id()));

    let t1 = get(&d, EntityKind::Target, TARGET_1_ID);
    let t2 = get(&d, EntityKind::Target, TARGET_2_ID);
    assert_eq!(fk(&t1, "upstream"), Some(upstream.id()));
    assert_eq!(fk(&t2, "upstream"), Some(upstream.id()));
    // The id hashes the target as written; the stored value gets the default port.
    assert_eq!(json_field(&t2, "target"), "10.244.0.13:8000");

    let global = get(&d, EntityKind::Plugin, GLOBAL_PLUGIN_ID);
    assert_eq!(
        [
            fk(&global, "route"),
            fk(&global, "service"),
            fk(&global, "consumer")
        ],
        [None, None, None]
    );
    let on_service = get(&d, EntityKind::Plugin, SERVICE_PLUGIN_ID);
    assert_eq!(
        [
            fk(&on_service, "route"),
            fk(&on_service, "service"),
            fk(&on_service, "consumer")
        ],
        [None, Some(service.id()), None]
    );
    // Only the immediate parent is set: a route's plugin has no service.
    let on_route = get(&d, EntityKind::Plugin, ROUTE_PLUGIN_ID);
    assert_eq!(
        [
            fk(&on_route, "route"),
            fk(&on_route, "service"),
            fk(&on_route, "consumer")
        ],
        [Some(route.id()), None, None]
    );
    let on_consumer = get(&d, EntityKind::Plugin, CONSUMER_PLUGIN_ID);
    assert_eq!(
        [
            fk(&on_consumer, "route"),
            fk(&on_consumer, "service"),
            fk(&on_consumer, "consumer")
        ],
        [None, None, Some(consumer.id())]
    );

    for (kind, id) in [
        (EntityKind::Acl, ACL_ID),
        (EntityKind::BasicauthCredential, BASICAUTH_ID),
        (EntityKind::KeyauthCredential, KEYAUTH_ID),
    ] {
        assert_eq!(
            fk(&get(&d, kind, id), "consumer"),
            Some(consumer.id()),
            "{kind}"
        );
    }
    let sni = get(&d, EntityKind::Sni, SNI_ID);
    assert_eq!(fk(&sni, "certificate"), Some(cert.id()));
}

#[test]
fn kong_spec_ids() {
    let d = load(
        "_format_version: '3.0'\n\
         services: [{name: my-service, host: h.internal}]\n\
         consumers: [{username: my-user}]\n\
         routes: [{name: my-route, paths: [/]}]\n\
         upstreams:\n\
         - {name: u, id: f9792964-6797-482c-bfdf-08220a4f6839, targets: [{target: '10.244.0.12:80'}]}\n",
    );
    get(
        &d,
        EntityKind::Service,
        "0855b320-0dd2-547d-891d-601e9b38647f",
    );
    get(
        &d,
        EntityKind::Consumer,
        "4b1b701d-de2b-5588-9aa2-3b97061d9f52",
    );
    get(
        &d,
        EntityKind::Route,
        "481a9539-f49c-51b6-b2e2-fe99ee68866c",
    );
    get(
        &d,
        EntityKind::Target,
        "48322e4a-b3b0-591b-8ed6-fd95a6d75019",
    );
    // A global key-auth plugin: the key and the id Kong's spec expects.
    let body = json!({"name": "key-auth"});
    let key = id_key(EntityKind::Plugin, body.as_object().unwrap(), None).unwrap();
    assert_eq!(key, "plugins:*:key-auth:::");
    assert_eq!(
        derived_id(EntityKind::Plugin, &key),
        uuid("6b4f38d1-e026-540b-a5ea-8634739dd2a7")
    );
    let d = load("_format_version: '3.0'\nplugins: [{name: key-auth}]\n");
    get(
        &d,
        EntityKind::Plugin,
        "6b4f38d1-e026-540b-a5ea-8634739dd2a7",
    );
}

#[test]
fn a_reference_by_name_is_hashed_as_written() {
    // Kong puts the reference into the cache key as written: by name it differs from the
    // nested form's parent id, while the foreign key resolves to the same entity.
    let d = load(&format!(
        "_format_version: '3.0'\n\
         services: [{{name: my-service, {SERVICE}}}]\n\
         upstreams: [{{name: my-upstream}}]\n\
         plugins: [{{name: correlation-id, service: my-service}}]\n\
         targets: [{{target: 10.244.0.13, upstream: my-upstream}}]\n"
    ));
    // uuid5 of `plugins:*:correlation-id::my-service:` and `targets:*:my-upstream:10.244.0.13`
    let plugin = get(
        &d,
        EntityKind::Plugin,
        "49694c3d-8f3a-59dc-8949-02f27d137577",
    );
    assert_eq!(fk(&plugin, "service"), Some(uuid(SERVICE_ID)));
    let target = get(
        &d,
        EntityKind::Target,
        "edb3c6b7-746c-515c-b2c8-83f9813c0782",
    );
    assert_eq!(
        fk(&target, "upstream"),
        Some(uuid("00402a2c-1725-5592-97af-b204bc733b7a"))
    );
}

#[test]
fn an_explicit_id_is_kept_and_children_hash_it() {
    let id = "11111111-2222-4333-8444-555555555555";
    let d = load(&format!(
        "_format_version: '3.0'\n\
         services:\n\
         - {{id: {id}, name: my-service, {SERVICE}, plugins: [{{name: correlation-id}}]}}\n"
    ));
    get(&d, EntityKind::Service, id);
    let plugin_id = derived_id(
        EntityKind::Plugin,
        &format!("plugins:*:correlation-id::{id}:"),
    );
    let plugin = get(&d, EntityKind::Plugin, &plugin_id.to_string());
    assert_eq!(fk(&plugin, "service"), Some(uuid(id)));
}

#[test]
fn loading_twice_gives_identical_entities() {
    // Entities Kong would give random ids (no name, consumer by custom_id only,
    // certificates) get ids derived from the file instead, whatever the entropy.
    let (cert, key) = cert_pair();
    let doc = json!({
        "_format_version": "3.0",
        "services": [{"host": "a.internal", "routes": [{"paths": ["/a"]}]},
                     {"host": "a.internal"}],
        "consumers": [{"custom_id": "only-custom"}],
        "certificates": [{"cert": cert, "key": key, "snis": [{"name": "example.com"}]}],
        "plugins": [{"name": "correlation-id"}],
    })
    .to_string();
    let a = load_with(&doc, OPTS);
    let b = load_with(
        &doc,
        ParseOptions {
            now: OPTS.now,
            entropy: 7,
        },
    );
    assert_eq!(a, b);
    assert_eq!(a.entities.len(), 7);
    // Two services with the same content are still two entities.
    let services: Vec<Uuid> = a
        .entities
        .iter()
        .filter(|e| e.kind() == EntityKind::Service)
        .map(Entity::id)
        .collect();
    assert_eq!(services.len(), 2);
    assert_ne!(services[0], services[1]);

    for text in [fixture!("nested-3.0.yaml"), fixture!("flat-2.1.json")] {
        assert_eq!(
            load(&text),
            load_with(
                &text,
                ParseOptions {
                    now: OPTS.now,
                    entropy: 9
                }
            )
        );
    }
}

#[test]
fn derived_ids_follow_content_not_position() {
    let only = |text: &str| {
        let d = load(text);
        let e = d
            .entities
            .iter()
            .find(|e| e.kind() == EntityKind::Service)
            .unwrap();
        e.id()
    };
    let a = only(
        "{\"_format_version\": \"3.0\", \"services\": [{\"host\": \"a.internal\", \"port\": 81}]}",
    );
    // Key order and an unrelated item before it do not matter.
    let b = only(
        "{\"_format_version\": \"3.0\", \"consumers\": [{\"custom_id\": \"x\"}], \"services\": [{\"port\": 81, \"host\": \"a.internal\"}]}",
    );
    assert_eq!(a, b);
    // The content does.
    let c = only(
        "{\"_format_version\": \"3.0\", \"services\": [{\"host\": \"a.internal\", \"port\": 82}]}",
    );
    assert_ne!(a, c);
}

#[test]
fn entities_come_parents_first() {
    let d = load(&fixture!("flat-2.1.json"));
    let kinds: Vec<EntityKind> = d.entities.iter().map(Entity::kind).collect();
    let mut expected = kinds.clone();
    expected.sort();
    assert_eq!(kinds, expected);
}

#[test]
fn a_keyauth_credential_without_a_key_gets_one_from_entropy() {
    let text = "_format_version: '3.0'\nconsumers: [{username: u, keyauth_credentials: [{}]}]\n";
    let a = load_with(text, OPTS);
    let b = load_with(text, OPTS);
    let c = load_with(
        text,
        ParseOptions {
            now: OPTS.now,
            entropy: 43,
        },
    );
    assert_eq!(a, b);
    let key = |d: &Declarative| {
        let e = d
            .entities
            .iter()
            .find(|e| e.kind() == EntityKind::KeyauthCredential)
            .unwrap();
        (e.id(), json_field(e, "key"))
    };
    assert_ne!(key(&a).0, key(&c).0);
    assert_ne!(key(&a).1, key(&c).1);
    assert_eq!(key(&a).1.as_str().unwrap().len(), 32);
}

// --- meta keys -------------------------------------------------------------------------

#[test]
fn comment_and_ignore_are_accepted_anywhere_and_checked() {
    // The fixtures carry them at top level and at two depths.
    load(&fixture!("nested-3.0.yaml"));

    let e = err("_format_version: '3.0'\n_comment: 1\n");
    assert_declarative(
        &e,
        json!({"_comment": "expected a string"}),
        "declarative config is invalid: {_comment=\"expected a string\"}",
    );
    let e = err(&format!(
        "_format_version: '3.0'\nservices:\n- {{name: s, {SERVICE}, _ignore: {{a: 1}}}}\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [{"_ignore": "expected an array"}]}),
        "declarative config is invalid: {services={{_ignore=\"expected an array\"}}}",
    );
    let e = err(&format!(
        "_format_version: '3.0'\nservices:\n- {{name: s, {SERVICE}, routes: [{{paths: [/], _comment: [x]}}]}}\n"
    ));
    assert_fields(
        &e,
        json!({"services": [{"routes": [{"_comment": "expected a string"}]}]}),
    );
    // `_transform` is top-level only.
    let e = err(&format!(
        "_format_version: '3.0'\nservices:\n- {{name: s, {SERVICE}, _transform: false}}\n"
    ));
    assert_fields(&e, json!({"services": [{"_transform": "unknown field"}]}));
}

#[test]
fn transform_decides_whether_passwords_are_hashed() {
    let text = |transform: &str| {
        format!(
            "_format_version: '3.0'\n{transform}\
             consumers:\n- username: my-user\n  basicauth_credentials: [{{username: b, password: secret}}]\n"
        )
    };
    let password = |d: &Declarative| {
        let e = d
            .entities
            .iter()
            .find(|e| e.kind() == EntityKind::BasicauthCredential)
            .unwrap();
        json_field(e, "password")
    };
    let d = load(&text(""));
    assert!(d.transform);
    assert_eq!(password(&d), SECRET_HASH);
    assert_eq!(SECRET_HASH, hash_password(uuid(CONSUMER_ID), "secret"));
    let d = load(&text("_transform: true\n"));
    assert_eq!(password(&d), SECRET_HASH);
    let d = load(&text("_transform: false\n"));
    assert!(!d.transform);
    assert_eq!(password(&d), "secret");

    let e = err(&text("_transform: 'no'\n"));
    assert_declarative(
        &e,
        json!({"_transform": "expected a boolean"}),
        "declarative config is invalid: {_transform=\"expected a boolean\"}",
    );
}

// --- errors ----------------------------------------------------------------------------

#[test]
fn format_version_errors() {
    let e = err("services: []\n");
    assert_declarative(
        &e,
        json!({"_format_version": "required field missing"}),
        "declarative config is invalid: {_format_version=\"required field missing\"}",
    );
    let e = err("_format_version: '4.0'\n");
    assert_declarative(
        &e,
        json!({"_format_version": "expected one of: 1.1, 2.1, 3.0"}),
        "declarative config is invalid: {_format_version=\"expected one of: 1.1, 2.1, 3.0\"}",
    );
    // Unquoted in YAML it is a number.
    for text in [
        "_format_version: 1.1\n",
        "_format_version: 3.0\n",
        "{\"_format_version\": 3}",
    ] {
        let e = err(text);
        assert_declarative(
            &e,
            json!({"_format_version": "expected a string"}),
            "declarative config is invalid: {_format_version=\"expected a string\"}",
        );
    }
}

#[test]
fn unknown_top_level_keys() {
    let e = err("_format_version: '3.0'\nabnormal_extra_field: 123\n");
    assert_declarative(
        &e,
        json!({"abnormal_extra_field": "unknown field"}),
        "declarative config is invalid: {abnormal_extra_field=\"unknown field\"}",
    );
    let e = err("_format_version: '3.0'\n_workspace: foo\n");
    assert_fields(&e, json!({"_workspace": "unknown field"}));
}

#[test]
fn collections_must_be_arrays_of_records() {
    let e = err("_format_version: '3.0'\nservices: 123\n");
    assert_declarative(
        &e,
        json!({"services": "expected an array"}),
        "declarative config is invalid: {services=\"expected an array\"}",
    );
    let e = err(&format!(
        "_format_version: '3.0'\nservices: [{{name: s, {SERVICE}, routes: 123}}]\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [{"routes": "expected an array"}]}),
        "declarative config is invalid: {services={{routes=\"expected an array\"}}}",
    );
    let e = err("_format_version: '3.0'\nservices: [1]\n");
    assert_declarative(
        &e,
        json!({"services": ["expected a record"]}),
        "declarative config is invalid: {services={\"expected a record\"}}",
    );
    // Nested snis are records, not the Admin API's string shorthand.
    let (cert, key) = cert_pair();
    let e = err_value(json!({
        "_format_version": "3.0",
        "certificates": [{"cert": cert, "key": key, "snis": ["a.example.com"]}]
    }));
    assert_fields(
        &e,
        json!({"certificates": [{"snis": ["expected a record"]}]}),
    );
    // An empty collection is fine.
    let d = load("_format_version: '3.0'\nservices:\nroutes: []\n");
    assert!(d.entities.is_empty());
}

#[test]
fn nested_schema_errors_mirror_the_file() {
    let e = err(&format!(
        "_format_version: '3.0'\n\
         services:\n\
         - {{name: ok, {SERVICE}}}\n\
         - name: s\n\
         \x20 {SERVICE}\n\
         \x20 routes:\n\
         \x20 - {{name: fine, paths: [/]}}\n\
         \x20 - {{paths: [bad]}}\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [null, {"routes": [null, {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}]}]}),
        "declarative config is invalid: {services={[2]={routes={[2]={paths={\"should start with: / (fixed path) or ~/ (regex path)\"}}}}}}",
    );
    let e = err(&format!(
        "_format_version: '3.0'\nservices: [{{name: s, {SERVICE}, plugins: [{{config: {{}}}}]}}]\n"
    ));
    assert_fields(
        &e,
        json!({"services": [{"plugins": [{"name": "required field missing"}]}]}),
    );
    let e = err("_format_version: '3.0'\nplugins: [{name: no-such-plugin}]\n");
    assert_fields(
        &e,
        json!({"plugins": [{"name": "plugin 'no-such-plugin' not enabled; add it to the 'plugins' configuration property"}]}),
    );
    let e = err(
        "_format_version: '3.0'\nplugins: [{name: correlation-id, config: {generator: nope}}]\n",
    );
    assert_fields(
        &e,
        json!({"plugins": [{"config": {"generator": "expected one of: uuid, uuid#counter, tracker"}}]}),
    );
}

#[test]
fn every_schema_error_is_reported_at_once() {
    // Kong validates the whole file before reporting: top-level, nesting and entity
    // errors come back together.
    let e = err(&format!(
        "_format_version: '3.0'\n\
         abnormal_extra_field: 1\n\
         services:\n\
         - name: s\n\
         \x20 {SERVICE}\n\
         \x20 port: 99999\n\
         \x20 plugins: [{{name: correlation-id, consumer: c}}]\n"
    ));
    assert_fields(
        &e,
        json!({
            "abnormal_extra_field": "unknown field",
            "services": [{
                "port": "value should be between 0 and 65535",
                "plugins": [{"consumer": "value must be null"}]
            }]
        }),
    );
}

#[test]
fn a_top_level_reference_is_a_string_or_an_id_record() {
    let e = err("_format_version: '3.0'\nroutes: [{paths: [/], service: 123}]\n");
    assert_fields(&e, json!({"routes": [{"service": "expected a string"}]}));
    // A malformed id is a schema error, not a dangling reference.
    let e = err_value(json!({
        "_format_version": "3.0",
        "routes": [{"paths": ["/"], "service": {"id": "nope"}}]
    }));
    assert_fields(
        &e,
        json!({"routes": [{"service": {"id": "expected a valid UUID"}}]}),
    );
}

#[test]
fn a_nested_child_may_set_no_foreign_key() {
    let e = err(&format!(
        "_format_version: '3.0'\n\
         consumers: [{{username: c}}]\n\
         services: [{{name: s, {SERVICE}, plugins: [{{name: correlation-id, consumer: c}}]}}]\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [{"plugins": [{"consumer": "value must be null"}]}]}),
        "declarative config is invalid: {services={{plugins={{consumer=\"value must be null\"}}}}}",
    );
    // Not even its own parent's.
    let e = err(&format!(
        "_format_version: '3.0'\nservices: [{{name: s, {SERVICE}, routes: [{{paths: [/], service: s}}]}}]\n"
    ));
    assert_fields(
        &e,
        json!({"services": [{"routes": [{"service": "value must be null"}]}]}),
    );
    // null is allowed.
    load(&format!(
        "_format_version: '3.0'\nservices: [{{name: s, {SERVICE}, routes: [{{paths: [/], service: null}}]}}]\n"
    ));
}

#[test]
fn a_plugin_that_identifies_consumers_cannot_hang_off_one() {
    let e =
        err("_format_version: '3.0'\nconsumers: [{username: c, plugins: [{name: key-auth}]}]\n");
    assert_fields(
        &e,
        json!({"consumers": [{"plugins": [{"consumer": "value must be null"}]}]}),
    );
}

#[test]
fn duplicate_names() {
    let e = err(&format!(
        "_format_version: '3.0'\nservices:\n- {{name: foo, {SERVICE}}}\n- {{name: foo, {SERVICE}}}\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [null, "uniqueness violation: 'services' entity with name set to 'foo' already declared"]}),
        "declarative config is invalid: {services={[2]=\"uniqueness violation: 'services' entity with name set to 'foo' already declared\"}}",
    );
    // Nested: reported at the index in its own list, not under the parent.
    let e = err("_format_version: '3.0'\n\
         consumers:\n\
         - {username: a, keyauth_credentials: [{key: k1}, {key: TestKey123}]}\n\
         - {username: b, keyauth_credentials: [{key: TestKey123}]}\n");
    assert_declarative(
        &e,
        json!({"keyauth_credentials": ["uniqueness violation: 'keyauth_credentials' entity with key set to 'TestKey123' already declared"]}),
        "declarative config is invalid: {keyauth_credentials={\"uniqueness violation: 'keyauth_credentials' entity with key set to 'TestKey123' already declared\"}}",
    );
}

#[test]
fn duplicate_ids() {
    let id = "11111111-2222-4333-8444-555555555555";
    let e = err(&format!(
        "_format_version: '3.0'\nservices:\n- {{id: {id}, name: a, {SERVICE}}}\n- {{id: {id}, name: b, {SERVICE}}}\n"
    ));
    assert_declarative(
        &e,
        json!({"services": [null, format!("uniqueness violation: 'services' entity with primary key set to '{id}' already declared")]}),
        &format!("declarative config is invalid: {{services={{[2]=\"uniqueness violation: 'services' entity with primary key set to '{id}' already declared\"}}}}"),
    );
    // Generated ids collide too: the same plugin twice.
    let e =
        err("_format_version: '3.0'\nplugins: [{name: correlation-id}, {name: correlation-id}]\n");
    assert_fields(
        &e,
        json!({"plugins": [null, format!("uniqueness violation: 'plugins' entity with primary key set to '{GLOBAL_PLUGIN_ID}' already declared")]}),
    );
    // Nested: one level down, under the immediate parent.
    let e = err(
        "_format_version: '3.0'\n\
         upstreams:\n\
         - {name: a}\n\
         - {name: b, targets: [{target: '10.0.0.1:80'}, {target: '10.0.0.2:80'}, {target: '10.0.0.1:80'}]}\n",
    );
    let b = derived_id(EntityKind::Upstream, "b");
    let dup = derived_id(EntityKind::Target, &format!("targets:*:{b}:10.0.0.1:80"));
    assert_fields(
        &e,
        json!({"upstreams": [null, {"targets": [null, null, format!("uniqueness violation: 'targets' entity with primary key set to '{dup}' already declared")]}]}),
    );
}

#[test]
fn duplicates_are_found_in_kongs_order() {
    // Kong walks the kinds parents first (services before plugins), whatever the order
    // of the file, and a nested plugin before top-level ones: the top-level copy is the
    // duplicate.
    let e = err(&format!(
        "_format_version: '3.0'\n\
         plugins: [{{name: correlation-id, service: {SERVICE_ID}}}]\n\
         services: [{{name: my-service, {SERVICE}, plugins: [{{name: correlation-id}}]}}]\n"
    ));
    assert_fields(
        &e,
        json!({"plugins": [format!("uniqueness violation: 'plugins' entity with primary key set to '{SERVICE_PLUGIN_ID}' already declared")]}),
    );
    let e = err("_format_version: '3.0'\n\
         keyauth_credentials: [{key: k, consumer: a}]\n\
         consumers: [{username: a, keyauth_credentials: [{key: k}]}]\n");
    assert_fields(
        &e,
        json!({"keyauth_credentials": ["uniqueness violation: 'keyauth_credentials' entity with key set to 'k' already declared"]}),
    );
}

#[test]
fn dangling_references() {
    let e = err("_format_version: '3.0'\nroutes: [{name: my-route, service: foo, paths: [/]}]\n");
    assert_declarative(
        &e,
        json!({"routes": {"my-route": ["invalid reference 'service: foo' (no such entry in 'services')"]}}),
        "declarative config is invalid: {routes={[\"my-route\"]={\"invalid reference 'service: foo' (no such entry in 'services')\"}}}",
    );
    // Without an endpoint key the entry is keyed by the referencing item's id; a table
    // reference is shown as JSON.
    let missing = "00000000-0000-4000-8000-000000000001";
    let e = err_value(json!({
        "_format_version": "3.0",
        "targets": [{"target": "10.0.0.1", "upstream": {"id": missing}}],
        "plugins": [{"name": "correlation-id", "route": "r", "consumer": "c"}],
    }));
    let target = derived_id(EntityKind::Target, "targets:*:10.0.0.1");
    let plugin = derived_id(EntityKind::Plugin, "plugins:*:correlation-id:r::c");
    assert_fields(
        &e,
        json!({
            "targets": {target.to_string(): [format!("invalid reference 'upstream: {{\"id\":\"{missing}\"}}' (no such entry in 'upstreams')")]},
            "plugins": {plugin.to_string(): [
                "invalid reference 'route: r' (no such entry in 'routes')",
                "invalid reference 'consumer: c' (no such entry in 'consumers')"
            ]}
        }),
    );
    // A reference is by endpoint key (name, username) or id; certificates only by id.
    load(&format!(
        "_format_version: '3.0'\n\
         consumers: [{{username: my-user}}]\n\
         keyauth_credentials: [{{key: a, consumer: my-user}}, {{key: b, consumer: {CONSUMER_ID}}}]\n"
    ));
}

#[test]
fn schema_errors_come_alone_then_references_with_duplicates() {
    // A schema error hides reference and duplicate errors.
    let e = err(&format!(
        "_format_version: '3.0'\n\
         services: [{{name: foo, {SERVICE}}}, {{name: foo, {SERVICE}}}]\n\
         routes: [{{name: r, service: nope, paths: [bad]}}]\n"
    ));
    assert_fields(
        &e,
        json!({"routes": [{"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}]}),
    );
    // Duplicates and dangling references come together.
    let e = err(&format!(
        "_format_version: '3.0'\n\
         services: [{{name: foo, {SERVICE}}}, {{name: foo, {SERVICE}}}]\n\
         routes: [{{name: r, service: nope, paths: [/]}}]\n"
    ));
    assert_fields(
        &e,
        json!({
            "services": [null, "uniqueness violation: 'services' entity with name set to 'foo' already declared"],
            "routes": {"r": ["invalid reference 'service: nope' (no such entry in 'services')"]}
        }),
    );
    // Other unique fields are checked last.
    let e = err("_format_version: '3.0'\n\
         consumers: [{username: foo, custom_id: x}, {username: bar, custom_id: x}]\n\
         routes: [{name: r, service: nope, paths: [/]}]\n");
    assert_fields(
        &e,
        json!({"routes": {"r": ["invalid reference 'service: nope' (no such entry in 'services')"]}}),
    );
}

#[test]
fn duplicate_custom_id() {
    let e = err("_format_version: '3.0'\nconsumers: [{username: foo, custom_id: conflict}, {username: bar, custom_id: conflict}]\n");
    assert_declarative(
        &e,
        json!({"consumers": {"bar": "uniqueness violation: 'consumers' entity with custom_id set to 'conflict' already declared"}}),
        "declarative config is invalid: {consumers={bar=\"uniqueness violation: 'consumers' entity with custom_id set to 'conflict' already declared\"}}",
    );
    // Without a username: keyed by id. Kong keeps only the last hit per entity kind.
    let e = err("_format_version: '3.0'\n\
         consumers:\n\
         - {username: a, custom_id: x}\n\
         - {username: b, custom_id: x}\n\
         - {id: 00000000-0000-4000-8000-000000000009, custom_id: y}\n\
         - {custom_id: y, id: 00000000-0000-4000-8000-00000000000a}\n");
    assert_fields(
        &e,
        json!({"consumers": {"00000000-0000-4000-8000-00000000000a": "uniqueness violation: 'consumers' entity with custom_id set to 'y' already declared"}}),
    );
}

#[test]
fn composite_keys_are_unique_too() {
    // Kong would load both (their ids differ); the store keeps one target per address.
    let e = err("_format_version: '3.0'\n\
         upstreams: [{name: u}]\n\
         targets:\n\
         - {id: 00000000-0000-4000-8000-000000000001, upstream: u, target: '10.0.0.1:80'}\n\
         - {id: 00000000-0000-4000-8000-000000000002, upstream: u, target: '10.0.0.1:80'}\n");
    assert_fields(
        &e,
        json!({"targets": {"10.0.0.1:80": "uniqueness violation: 'targets' entity with target set to '10.0.0.1:80' already declared"}}),
    );
}

#[test]
fn unparsable_documents() {
    for text in [
        "_format_version: '3.0'\nservices: [ {name: x\n",
        "{\"_format_version\": \"3.0\",",
        "a: b: c\n",
    ] {
        let e = err(text);
        assert_eq!(e.code, ErrorCode::DeclarativeConfig);
        let fields = e.fields_json().unwrap();
        let obj = fields.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{fields}");
        let msg = obj["error"].as_str().unwrap();
        assert!(
            msg.starts_with("failed parsing declarative configuration: ") && msg.len() > 42,
            "{msg}"
        );
        assert_eq!(
            e.message,
            format!(
                "declarative config is invalid: {{error={}}}",
                crate::error::lua_string(msg)
            )
        );
    }
}

#[test]
fn documents_must_be_objects() {
    // Kong reads a YAML/JSON array as a Lua table and goes on to report each element as
    // an unknown field; an array is no config, so we say so.
    for text in ["- a\n- b\n", "just a string\n", "", "42", "[1, 2]", "null"] {
        let e = err(text);
        assert_declarative(
            &e,
            json!({"error": "failed parsing declarative configuration: expected an object"}),
            "declarative config is invalid: {error=\"failed parsing declarative configuration: expected an object\"}",
        );
    }
    let e = err_value(json!(["x"]));
    assert_fields(
        &e,
        json!({"error": "failed parsing declarative configuration: expected an object"}),
    );
}

#[test]
fn json_and_yaml_read_alike() {
    let yaml = load(&fixture!("flat-3.0.yaml"));
    let as_json: Value = serde_yaml::from_str(&fixture!("flat-3.0.yaml")).unwrap();
    let json = load(&as_json.to_string());
    assert_eq!(yaml, json);
    let pretty = load(&serde_json::to_string_pretty(&as_json).unwrap());
    assert_eq!(yaml, pretty);
    // Not JSON, but a YAML flow mapping: Kong falls back to YAML.
    let d = load(&format!(
        "{{_format_version: '3.0', services: [{{name: s, {SERVICE}}}]}}"
    ));
    assert_eq!(d.entities.len(), 1);
}

// --- export ----------------------------------------------------------------------------

fn assert_round_trip(d: &Declarative) {
    let hash = ConfigHash::of(&d.entities);
    let exported = export(&d.entities);
    let again = load_value(exported.clone());
    assert_eq!(sorted(&again), sorted(d));
    assert_eq!(ConfigHash::of(&again.entities), hash);
    let text = export_yaml(&d.entities);
    let again = load(&text);
    assert_eq!(sorted(&again), sorted(d));
    assert_eq!(ConfigHash::of(&again.entities), hash);
    // The same through JSON text.
    let again = load(&exported.to_string());
    assert_eq!(sorted(&again), sorted(d));
}

#[test]
fn export_round_trips() {
    let d = load(&fixture!("nested-3.0.yaml"));
    assert_round_trip(&d);

    let doc = export(&d.entities);
    assert_eq!(doc["_format_version"], "3.0");
    assert_eq!(doc["_transform"], false);
    // Flat, with foreign keys as id strings and every field present.
    let routes = doc["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["service"], SERVICE_ID);
    assert_eq!(routes[0]["id"], ROUTE_ID);
    assert!(routes[0].as_object().unwrap().contains_key("hosts"));
    assert!(doc["services"][0].get("routes").is_none());
    assert_eq!(doc["plugins"].as_array().unwrap().len(), 4);
    assert_eq!(doc["basicauth_credentials"][0]["password"], SECRET_HASH);
    assert_eq!(doc["snis"][0]["certificate"], CERT_ID);
    assert_eq!(doc["targets"].as_array().unwrap().len(), 2);
    assert_eq!(doc["certificates"][0]["cert"], cert_pair().0.as_str());
    let yaml = export_yaml(&d.entities);
    assert!(yaml.contains("_format_version: '3.0'"), "{yaml}");
    assert!(yaml.contains("_transform: false"), "{yaml}");
}

#[test]
fn export_round_trips_every_kind() {
    let (cert, key) = cert_pair();
    let doc = json!({
        "_format_version": "3.0",
        "certificates": [{"cert": cert, "key": key, "tags": ["t"],
            "snis": [{"name": "example.com"}, {"name": "www.example.com"}],
            "upstreams": [{"name": "tls-up"}]}],
        "ca_certificates": [{"cert": ca_cert()}],
        "services": [{"name": "s", "url": "https://api.internal:8443/v1", "retries": 3,
            "routes": [{"name": "r", "hosts": ["a.example.com"], "methods": ["GET"],
                "headers": {"x-a": ["1"]}, "strip_path": false,
                "plugins": [{"name": "correlation-id", "enabled": false}]}]}],
        "upstreams": [{"name": "u", "algorithm": "least-connections",
            "healthchecks": {"threshold": 25,
                "active": {"type": "https", "https_sni": "example.com", "concurrency": 3,
                    "healthy": {"interval": 10, "http_statuses": [200], "successes": 3},
                    "unhealthy": {"interval": 10, "tcp_failures": 2, "timeouts": 2, "http_failures": 4}},
                "passive": {"unhealthy": {"http_failures": 5}}},
            "targets": [{"target": "10.0.0.1:80", "weight": 10}, {"target": "[::1]:81"}]}],
        "consumers": [{"username": "c", "custom_id": "c-1", "tags": ["a", "b"],
            "keyauth_credentials": [{"key": "k", "ttl": 3600}, {}],
            "basicauth_credentials": [{"username": "cb", "password": "pw"}],
            "acls": [{"group": "g1"}, {"group": "g2"}]}],
        "plugins": [
            {"name": "correlation-id", "instance_name": "cid",
                "protocols": ["http"], "config": {"generator": "uuid"}},
            {"name": "key-auth", "service": "s",
                "config": {"key_names": ["x-key"], "hide_credentials": true}},
            {"name": "request-termination", "route": "r",
                "config": {"status_code": 403, "message": "closed"}},
            {"name": "rate-limiting", "consumer": "c",
                "config": {"minute": 10, "hour": 100, "policy": "local"}},
            {"name": "acl", "service": "s", "config": {"allow": ["g1"]}},
            {"name": "cors", "config": {"origins": ["https://a.example.com"], "max_age": 60}},
        ],
    });
    let d = load_value(doc);
    assert_eq!(d.entities.len(), 23, "{:#?}", ids(&d));
    assert_eq!(count(&d, EntityKind::Plugin), 7);
    for kind in EntityKind::ALL {
        assert!(count(&d, kind) > 0, "{kind}");
    }
    assert_round_trip(&d);
    // The basic-auth hash survives the round trip because export says `_transform: false`.
    let cred = d
        .entities
        .iter()
        .find(|e| e.kind() == EntityKind::BasicauthCredential)
        .unwrap();
    let consumer = d
        .entities
        .iter()
        .find(|e| e.kind() == EntityKind::Consumer)
        .unwrap();
    assert_eq!(
        json_field(cred, "password"),
        hash_password(consumer.id(), "pw")
    );
}

#[test]
fn exported_files_keep_the_transform_flag_false() {
    // Loading an export with `_transform: true` would hash the hash: the flag matters.
    let d = load(&fixture!("nested-3.0.yaml"));
    let mut doc = export(&d.entities);
    doc["_transform"] = Value::Bool(true);
    let again = load_value(doc);
    assert_ne!(sorted(&again), sorted(&d));
}

#[test]
fn entities_are_counted_as_the_file_writes_them_nested_ones_included() {
    let doc = parse_document(
        "_format_version: '3.0'\n\
         services:\n\
         - name: s\n\
         \x20 ca_certificates: [00000000-0000-4000-8000-000000000001]\n\
         \x20 routes: [{paths: [/a], plugins: [{name: cors}]}, {paths: [/b]}]\n\
         \x20 plugins: [{name: cors}]\n\
         consumers: [{username: u, keyauth_credentials: [{key: k}]}]\n\
         plugins: [{name: cors}, not-a-record]\n",
    )
    .unwrap();
    let counts: Vec<(&str, usize)> = count_entities(&doc)
        .into_iter()
        .map(|(k, n)| (k.table(), n))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("services", 1),
            ("routes", 2),
            ("consumers", 1),
            ("plugins", 3),
            ("keyauth_credentials", 1),
        ]
    );
}
