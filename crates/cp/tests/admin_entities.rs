//! Every entity of Kong 3.x over real HTTP: consumers, credentials, plugins, upstreams
//! and targets, certificates with SNIs, CA certificates; PUT/PATCH semantics, cascades,
//! form and multipart bodies, Kong's error bodies.

mod support;

use serde_json::{json, Value};
use support::*;
use tidegate_model::entities::hash_password;
use tidegate_model::EntityKind;
use uuid::Uuid;

const SCHEMA: &str = "schema violation";
const UNIQUE: &str = "unique constraint violation";

// === consumers ===

#[tokio::test]
async fn consumers_create_put_patch_delete() {
    let srv = start().await;
    let r = srv.post("/consumers", json!({"username": "bob"})).await;
    let bob = json!({"id": id(1), "created_at": T0 + 1, "updated_at": T0 + 1,
                     "username": "bob", "custom_id": null, "tags": null});
    assert_eq!(r.sj(), (201, bob.clone()));
    assert_eq!(srv.get("/consumers/bob").await.sj(), (200, bob.clone()));
    assert_eq!(
        srv.get(&format!("/consumers/{}", id(1))).await.sj(),
        (200, bob)
    );

    let r = srv.post("/consumers", json!({"username": "bob"})).await;
    assert_eq!(
        r.sj(),
        (
            409,
            kong_error(
                5,
                UNIQUE,
                "UNIQUE violation detected on '{username=\"bob\"}'",
                json!({"username": "bob"})
            )
        )
    );
    let msg = "at least one of these fields must be non-empty: 'custom_id', 'username'";
    assert_eq!(
        srv.post("/consumers", json!({"tags": ["x"]})).await.sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                &format!("schema violation ({msg})"),
                json!({"@entity": [msg]})
            )
        )
    );

    // PATCH merges; `null` clears.
    let r = srv
        .send("PATCH", "/consumers/bob", json!({"custom_id": "c1"}))
        .await;
    assert_eq!(
        (
            r.status,
            r.json()["custom_id"].clone(),
            r.json()["username"].clone()
        ),
        (200, json!("c1"), json!("bob"))
    );
    let r = srv
        .send(
            "PATCH",
            "/consumers/bob",
            json!({"custom_id": null, "tags": ["t"]}),
        )
        .await;
    assert_eq!(
        (r.json()["custom_id"].clone(), r.json()["tags"].clone()),
        (Value::Null, json!(["t"]))
    );

    // PUT replaces: the URL's username wins, the rest returns to defaults, the id and
    // creation time stay.
    let r = srv
        .send(
            "PUT",
            "/consumers/bob",
            json!({"username": "other", "custom_id": "c2"}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            200,
            json!({"id": id(1), "created_at": T0 + 1, "updated_at": T0 + 6,
                   "username": "bob", "custom_id": "c2", "tags": null})
        )
    );
    // PUT creates, by name or by id.
    let r = srv.send("PUT", "/consumers/alice", json!({})).await;
    assert_eq!(
        (
            r.status,
            r.json()["username"].clone(),
            r.json()["id"].clone()
        ),
        (200, json!("alice"), json!(id(7)))
    );
    let fixed = Uuid::from_u128(0xabc);
    let r = srv
        .send(
            "PUT",
            &format!("/consumers/{fixed}"),
            json!({"id": id(99), "username": "carol"}),
        )
        .await;
    assert_eq!((r.status, r.json()["id"].clone()), (200, json!(fixed)));
    assert_eq!(srv.backend.count(EntityKind::Consumer), 3);

    assert_eq!(srv.delete("/consumers/carol").await.status, 204);
    assert_eq!(srv.delete("/consumers/carol").await.status, 204);
    assert_eq!(srv.get("/consumers/carol").await.sj(), not_found());
    assert_eq!(srv.backend.count(EntityKind::Consumer), 2);
    srv.stop().await;
}

// === credentials ===

#[tokio::test]
async fn credentials_nested_and_top_level() {
    let srv = start().await;
    srv.post("/consumers", json!({"username": "bob"})).await; // 1
    srv.post("/consumers", json!({"username": "eve"})).await; // 2
    let bob = json!({"id": id(1)});

    let r = srv
        .post("/consumers/bob/key-auth", json!({"key": "secret"}))
        .await;
    assert_eq!(
        r.sj(),
        (
            201,
            json!({"id": id(3), "created_at": T0 + 3, "consumer": bob, "key": "secret",
                   "ttl": null, "tags": null})
        )
    );
    // A missing key is generated from the write's entropy (write 4 here).
    let r = srv.post("/consumers/bob/key-auth", json!({})).await;
    assert_eq!(
        (r.status, r.json()["key"].clone()),
        (201, json!(format!("{:032x}", 4)))
    );

    // Lookups by key are scoped to the consumer in the URL.
    assert_eq!(
        srv.get("/consumers/bob/key-auth/secret").await.json()["id"],
        json!(id(3))
    );
    assert_eq!(
        srv.get(&format!("/consumers/bob/key-auth/{}", id(3)))
            .await
            .status,
        200
    );
    assert_eq!(
        srv.get("/consumers/eve/key-auth/secret").await.sj(),
        not_found()
    );
    assert_eq!(
        srv.get(&format!("/consumers/eve/key-auth/{}", id(3)))
            .await
            .sj(),
        not_found()
    );
    assert_eq!(
        srv.get("/key-auths/secret").await.json()["id"],
        json!(id(3))
    );
    assert_eq!(
        srv.get("/key-auths/secret/consumer").await.json()["username"],
        "bob"
    );
    let ids = |v: Value| list_of(&v, "id");
    assert_eq!(
        ids(srv.get("/consumers/bob/key-auth").await.json()),
        [json!(id(3)), json!(id(4))]
    );
    assert_eq!(
        ids(srv.get("/consumers/eve/key-auth").await.json()),
        Vec::<Value>::new()
    );
    assert_eq!(ids(srv.get("/key-auths").await.json()).len(), 2);
    assert_eq!(
        srv.get("/consumers/nobody/key-auth").await.sj(),
        not_found()
    );
    assert_eq!(
        srv.post("/consumers/nobody/acls", json!({"group": "g"}))
            .await
            .sj(),
        not_found()
    );

    // Basic-auth passwords are stored as Kong hashes them.
    let r = srv
        .post(
            "/consumers/bob/basic-auth",
            json!({"username": "bu", "password": "pw"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["password"], json!(hash_password(id(1), "pw")));
    assert_eq!(
        srv.get("/basic-auths/bu/consumer").await.json()["id"],
        json!(id(1))
    );

    // ACL groups are unique per consumer, looked up by group under the consumer.
    let r = srv
        .post("/consumers/bob/acls", json!({"group": "admins"}))
        .await;
    assert_eq!(r.status, 201);
    let bob_acl = r.json()["id"].clone();
    assert_eq!(
        srv.post("/consumers/eve/acls", json!({"group": "admins"}))
            .await
            .status,
        201
    );
    let r = srv
        .post("/consumers/bob/acls", json!({"group": "admins"}))
        .await;
    assert_eq!(
        r.sj(),
        (
            409,
            kong_error(
                5,
                UNIQUE,
                &format!(
                    "UNIQUE violation detected on '{{consumer={{id=\"{}\"}},group=\"admins\"}}'",
                    id(1)
                ),
                json!({"consumer": {"id": id(1)}, "group": "admins"})
            )
        )
    );
    assert_eq!(
        srv.get("/consumers/bob/acls/admins").await.json()["id"],
        bob_acl
    );
    // PUT by group updates the consumer's own ACL rather than adding one.
    let r = srv
        .send("PUT", "/consumers/bob/acls/admins", json!({"tags": ["t"]}))
        .await;
    assert_eq!(
        (r.status, r.json()["id"].clone(), r.json()["tags"].clone()),
        (200, bob_acl.clone(), json!(["t"]))
    );
    assert_eq!(srv.delete("/consumers/eve/acls/admins").await.status, 204);
    assert_eq!(
        srv.delete("/consumers/eve/acls/admins").await.sj(),
        not_found()
    );
    assert_eq!(srv.get("/consumers/bob/acls/admins").await.status, 200);
    assert_eq!(srv.backend.count(EntityKind::Acl), 1);

    // PATCH under the consumer keeps it there.
    let r = srv
        .send(
            "PATCH",
            "/consumers/bob/key-auth/secret",
            json!({"ttl": 60}),
        )
        .await;
    assert_eq!(
        (
            r.status,
            r.json()["ttl"].clone(),
            r.json()["consumer"].clone()
        ),
        (200, json!(60), bob)
    );
    assert_eq!(srv.delete("/key-auths/secret").await.status, 204);
    assert_eq!(srv.delete("/key-auths/secret").await.status, 204);
    assert_eq!(srv.backend.count(EntityKind::KeyauthCredential), 1);
    srv.stop().await;
}

#[tokio::test]
async fn deleting_a_consumer_cascades_to_credentials_and_plugins() {
    let srv = start().await;
    for name in ["bob", "eve"] {
        srv.post("/consumers", json!({"username": name})).await;
        let base = format!("/consumers/{name}");
        for (path, body) in [
            ("key-auth", json!({"key": format!("k-{name}")})),
            (
                "basic-auth",
                json!({"username": format!("u-{name}"), "password": "p"}),
            ),
            ("acls", json!({"group": "g"})),
            (
                "plugins",
                json!({"name": "rate-limiting", "config": {"minute": 1}}),
            ),
        ] {
            let r = srv.post(&format!("{base}/{path}"), body).await;
            assert_eq!(r.status, 201, "{path}: {:?}", r.json());
        }
    }
    let kinds = [
        EntityKind::KeyauthCredential,
        EntityKind::BasicauthCredential,
        EntityKind::Acl,
        EntityKind::Plugin,
    ];
    for k in kinds {
        assert_eq!(srv.backend.count(k), 2, "{k}");
    }
    assert_eq!(srv.delete("/consumers/bob").await.status, 204);
    for k in kinds {
        assert_eq!(srv.backend.count(k), 1, "{k}");
    }
    assert_eq!(srv.get("/key-auths/k-bob").await.sj(), not_found());
    assert_eq!(srv.get("/key-auths/k-eve").await.status, 200);
    assert_eq!(
        list_of(&srv.get("/plugins").await.json(), "consumer"),
        [json!({"id": id(6)})]
    );
    srv.stop().await;
}

// === plugins ===

#[tokio::test]
async fn plugins_scoped_merged_and_replaced() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s", "host": "a.example"}))
        .await; // 1
    srv.post("/services/s/routes", json!({"name": "r", "paths": ["/"]}))
        .await; // 2
    let not_enabled = "plugin 'foo' not enabled; add it to the 'plugins' configuration property";
    assert_eq!(
        srv.post("/plugins", json!({"name": "foo"})).await.sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                &format!("schema violation (name: {not_enabled})"),
                json!({"name": not_enabled})
            )
        )
    );

    let r = srv
        .post(
            "/services/s/plugins",
            json!({"name": "rate-limiting", "config": {"minute": 5}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let p = r.json();
    assert_eq!(p["id"], json!(id(4)));
    assert_eq!(p["service"], json!({"id": id(1)}));
    assert_eq!(
        (p["route"].clone(), p["consumer"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(p["config"]["minute"], json!(5));
    assert_eq!(p["config"]["hour"], Value::Null);
    assert_eq!(p["config"]["policy"], "local");
    assert_eq!(p["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    assert_eq!(p["enabled"], true);

    // One plugin of a name per scope.
    let r = srv
        .post(
            "/plugins",
            json!({"name": "rate-limiting", "service": {"name": "s"}, "config": {"second": 1}}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            409,
            kong_error(
                5,
                UNIQUE,
                &format!(
                    "UNIQUE violation detected on '{{consumer=null,name=\"rate-limiting\",route=null,service={{id=\"{}\"}}}}'",
                    id(1)
                ),
                json!({"consumer": null, "name": "rate-limiting", "route": null,
                       "service": {"id": id(1)}})
            )
        )
    );

    // PATCH merges `config` field by field; `null` clears one.
    let path = format!("/plugins/{}", id(4));
    let r = srv
        .send("PATCH", &path, json!({"config": {"hour": 100}}))
        .await;
    assert_eq!(
        (
            r.json()["config"]["minute"].clone(),
            r.json()["config"]["hour"].clone()
        ),
        (json!(5), json!(100))
    );
    let r = srv
        .send(
            "PATCH",
            &format!("/services/s/plugins/{}", id(4)),
            json!({"config": {"minute": null}}),
        )
        .await;
    assert_eq!(
        (
            r.json()["config"]["minute"].clone(),
            r.json()["config"]["hour"].clone()
        ),
        (Value::Null, json!(100))
    );
    assert_eq!(r.json()["service"], json!({"id": id(1)}));
    assert_eq!(
        srv.get(&format!("{path}/service")).await.json()["name"],
        "s"
    );

    // PUT replaces: no service any more, the config back to defaults but what is given.
    let r = srv
        .send(
            "PUT",
            &path,
            json!({"name": "rate-limiting", "config": {"second": 1}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["service"], Value::Null);
    assert_eq!(
        (
            r.json()["config"]["second"].clone(),
            r.json()["config"]["hour"].clone()
        ),
        (json!(1), Value::Null)
    );
    assert_eq!(srv.get(&format!("{path}/service")).await.sj(), not_found());
    assert_eq!(
        list_of(&srv.get("/services/s/plugins").await.json(), "id"),
        Vec::<Value>::new()
    );

    // Route and consumer scopes; auth plugins cannot be scoped to a consumer.
    let r = srv.post("/routes/r/plugins", json!({"name": "cors"})).await;
    assert_eq!(r.json()["route"], json!({"id": id(2)}));
    let cors = r.json()["id"].clone();
    assert_eq!(
        srv.get(&format!("/plugins/{}/route", cors.as_str().unwrap()))
            .await
            .json()["name"],
        "r"
    );
    assert_eq!(
        list_of(&srv.get("/routes/r/plugins").await.json(), "id"),
        std::slice::from_ref(&cors)
    );
    srv.post("/consumers", json!({"username": "bob"})).await;
    assert_eq!(
        srv.post("/consumers/bob/plugins", json!({"name": "key-auth"}))
            .await
            .sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                "schema violation (consumer: value must be null)",
                json!({"consumer": "value must be null"})
            )
        )
    );
    // The plugin under another parent is not found here.
    assert_eq!(
        srv.get(&format!("/services/s/plugins/{}", cors.as_str().unwrap()))
            .await
            .sj(),
        not_found()
    );

    // instance_name is the endpoint key.
    let r = srv
        .post(
            "/plugins",
            json!({"name": "correlation-id", "instance_name": "my-cid"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        srv.get("/plugins/my-cid").await.json()["name"],
        "correlation-id"
    );

    // Deleting the service's route cascades to the route's plugins.
    assert_eq!(srv.delete("/routes/r").await.status, 204);
    assert_eq!(
        srv.get(&format!("/plugins/{}", cors.as_str().unwrap()))
            .await
            .sj(),
        not_found()
    );

    let enabled = srv.get("/plugins/enabled").await;
    let mut names: Vec<&str> = tidegate_model::plugins::bundled()
        .iter()
        .map(|p| p.name)
        .collect();
    names.sort_unstable();
    assert_eq!(enabled.sj(), (200, json!({ "enabled_plugins": names })));
    srv.stop().await;
}

// === upstreams and targets ===

#[tokio::test]
async fn upstream_targets_by_id_or_target() {
    let srv = start().await;
    let r = srv.post("/upstreams", json!({"name": "up"})).await; // 1
    assert_eq!(r.status, 201);
    assert_eq!(
        (r.json()["algorithm"].clone(), r.json()["slots"].clone()),
        (json!("round-robin"), json!(10000))
    );
    srv.post("/upstreams", json!({"name": "up2"})).await; // 2
    let r = srv
        .post("/upstreams/up/targets", json!({"target": "10.0.0.1"}))
        .await; // 3
    assert_eq!(
        r.sj(),
        (
            201,
            json!({"id": id(3), "created_at": T0 + 3, "updated_at": T0 + 3,
                   "upstream": {"id": id(1)}, "target": "10.0.0.1:8000", "weight": 100,
                   "tags": null})
        )
    );
    for key in [
        "10.0.0.1".to_string(),
        "10.0.0.1:8000".to_string(),
        id(3).to_string(),
    ] {
        assert_eq!(
            srv.get(&format!("/upstreams/up/targets/{key}"))
                .await
                .json()["id"],
            json!(id(3)),
            "{key}"
        );
        assert_eq!(
            srv.get(&format!("/upstreams/up2/targets/{key}")).await.sj(),
            not_found(),
            "{key}"
        );
    }
    let r = srv
        .post("/upstreams/up/targets", json!({"target": "10.0.0.1:8000"}))
        .await;
    assert_eq!(
        r.sj(),
        (
            409,
            kong_error(
                5,
                UNIQUE,
                &format!(
                    "UNIQUE violation detected on '{{target=\"10.0.0.1:8000\",upstream={{id=\"{}\"}}}}'",
                    id(1)
                ),
                json!({"target": "10.0.0.1:8000", "upstream": {"id": id(1)}})
            )
        )
    );
    // The same target under another upstream is another target.
    assert_eq!(
        srv.post("/upstreams/up2/targets", json!({"target": "10.0.0.1"}))
            .await
            .status,
        201
    );

    let r = srv
        .send(
            "PATCH",
            "/upstreams/up/targets/10.0.0.1",
            json!({"weight": 5}),
        )
        .await;
    assert_eq!((r.status, r.json()["weight"].clone()), (200, json!(5)));
    let r = srv
        .send(
            "PUT",
            "/upstreams/up/targets/10.0.0.2:80",
            json!({"weight": 7}),
        )
        .await;
    assert_eq!(
        (
            r.status,
            r.json()["target"].clone(),
            r.json()["weight"].clone()
        ),
        (200, json!("10.0.0.2:80"), json!(7))
    );
    assert_eq!(
        list_of(&srv.get("/upstreams/up/targets").await.json(), "target"),
        [json!("10.0.0.1:8000"), json!("10.0.0.2:80")]
    );
    assert_eq!(srv.get("/upstreams/nope/targets").await.sj(), not_found());
    assert_eq!(srv.get("/targets").await.sj(), not_found());
    assert_eq!(
        srv.get(&format!("/targets/{}", id(3))).await.sj(),
        not_found()
    );

    assert_eq!(
        srv.delete("/upstreams/up/targets/10.0.0.1").await.status,
        204
    );
    assert_eq!(
        srv.delete("/upstreams/up/targets/10.0.0.1").await.sj(),
        not_found()
    );
    assert_eq!(srv.backend.count(EntityKind::Target), 2);
    // Deleting an upstream cascades to its targets.
    assert_eq!(srv.delete("/upstreams/up").await.status, 204);
    assert_eq!(srv.backend.count(EntityKind::Target), 1);
    srv.stop().await;
}

// === certificates and SNIs ===

#[tokio::test]
async fn certificates_with_snis_in_one_write() {
    let srv = start().await;
    let (cert, key) = cert_pem(false);
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert, "key": key, "snis": ["b.example", "a.example"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(srv.writes(), 1, "certificate and SNIs are one write");
    let a = r.json();
    let a_id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["snis"], json!(["a.example", "b.example"]));
    assert_eq!(
        (a["cert"].clone(), a["key"].clone(), a["cert_alt"].clone()),
        (json!(cert), json!(key), Value::Null)
    );
    assert_eq!(srv.backend.count(EntityKind::Sni), 2);

    // The certificate by id or by one of its SNIs; lists carry the names too.
    assert_eq!(
        srv.get(&format!("/certificates/{a_id}")).await.sj(),
        (200, a.clone())
    );
    assert_eq!(
        srv.get("/certificates/a.example").await.sj(),
        (200, a.clone())
    );
    assert_eq!(srv.get("/certificates").await.json()["data"], json!([a]));
    let sni = srv.get("/snis/a.example").await.json();
    assert_eq!(sni["certificate"], json!({"id": a_id}));
    assert_eq!(
        srv.get("/snis/a.example/certificate").await.json()["snis"],
        json!(["a.example", "b.example"])
    );
    assert_eq!(
        list_of(
            &srv.get("/certificates/b.example/snis").await.json(),
            "name"
        ),
        [json!("a.example"), json!("b.example")]
    );
    assert_eq!(
        srv.get("/certificates/nope.example").await.sj(),
        (404, json!({"message": "SNI not found"}))
    );
    assert_eq!(
        srv.delete("/certificates/nope.example").await.sj(),
        (404, json!({"message": "SNI not found"}))
    );

    // Names are checked before anything is written.
    let (cert2, key2) = cert_pem(false);
    let taken = format!("a.example already associated with existing certificate '{a_id}'");
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert2, "key": key2, "snis": ["z.example", "a.example"]}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                &format!("schema violation (snis: {taken})"),
                json!({"snis": taken})
            )
        )
    );
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert2, "key": key2, "snis": ["c.example", "d.example", "c.example"]}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                "schema violation (snis: c.example is duplicated)",
                json!({"snis": "c.example is duplicated"})
            )
        )
    );
    // A bad name is refused by the SNI's schema, and the certificate goes with it.
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert2, "key": key2, "snis": ["ok.example", "a.*.example"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], 2);
    assert_eq!(srv.backend.count(EntityKind::Certificate), 1);
    assert_eq!(srv.backend.count(EntityKind::Sni), 2);

    // PATCH with snis replaces the set: a kept name keeps its row.
    let b_row = srv.get("/snis/b.example").await.json()["id"].clone();
    let r = srv
        .send(
            "PATCH",
            &format!("/certificates/{a_id}"),
            json!({"snis": ["c.example", "b.example"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["snis"].clone()),
        (200, json!(["b.example", "c.example"]))
    );
    assert_eq!(srv.get("/snis/a.example").await.sj(), not_found());
    assert_eq!(srv.get("/snis/b.example").await.json()["id"], b_row);
    // Without snis, PATCH and PUT keep them.
    let r = srv
        .send("PATCH", "/certificates/c.example", json!({"tags": ["t"]}))
        .await;
    assert_eq!(
        (r.json()["tags"].clone(), r.json()["snis"].clone()),
        (json!(["t"]), json!(["b.example", "c.example"]))
    );
    let r = srv
        .send(
            "PUT",
            &format!("/certificates/{a_id}"),
            json!({"cert": cert, "key": key}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["tags"].clone(), r.json()["snis"].clone()),
        (200, Value::Null, json!(["b.example", "c.example"]))
    );
    // PUT by an unknown SNI name creates a certificate with that name.
    let r = srv
        .send(
            "PUT",
            "/certificates/new.example",
            json!({"cert": cert2, "key": key2}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["snis"].clone()),
        (200, json!(["new.example"]))
    );
    let new_id = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, a_id);
    // `null` empties the list.
    let r = srv
        .send("PATCH", "/certificates/new.example", json!({"snis": null}))
        .await;
    assert_eq!(r.json()["snis"], json!([]));

    // A service that uses the certificate keeps it from being deleted.
    let r = srv
        .post(
            "/services",
            json!({"name": "tls", "url": "https://a.example", "client_certificate": {"id": a_id}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(
        srv.get("/services/tls/client_certificate").await.json()["id"],
        json!(a_id)
    );
    assert_eq!(
        list_of(
            &srv.get(&format!("/certificates/{a_id}/services"))
                .await
                .json(),
            "name"
        ),
        [json!("tls")]
    );
    assert_eq!(
        srv.delete("/certificates/b.example").await.sj(),
        (
            400,
            kong_error(
                4,
                "foreign key violation",
                "an existing 'services' entity references this 'certificates' entity",
                json!({"@referenced_by": "services"})
            )
        )
    );
    assert_eq!(srv.delete("/services/tls").await.status, 204);
    // Deleting a certificate (named by an SNI) takes its SNIs along.
    assert_eq!(srv.delete("/certificates/b.example").await.status, 204);
    assert_eq!(srv.backend.count(EntityKind::Sni), 0);
    assert_eq!(srv.backend.count(EntityKind::Certificate), 1);
    assert_eq!(
        srv.delete(&format!("/certificates/{}", id(999)))
            .await
            .status,
        204
    );
    srv.stop().await;
}

#[tokio::test]
async fn certificate_batches_retry_once_and_have_a_size_limit() {
    let srv = start().await;
    let (cert, key) = cert_pem(false);
    let body = json!({"cert": cert, "key": key, "snis": ["r.example"]}).to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "5b0e7f5a-0c1d-4e2f-9a3b-4c5d6e7f8091"),
    ];
    // The certificate's id is drawn before the write; a retry still gets the first one.
    let first = srv
        .call("POST", "/certificates", &headers, Some(body.as_bytes()))
        .await;
    let again = srv
        .call("POST", "/certificates", &headers, Some(body.as_bytes()))
        .await;
    assert_eq!(first.status, 201, "{:?}", first.json());
    assert_eq!(again.sj(), first.sj());
    assert_eq!(srv.backend.count(EntityKind::Certificate), 1);
    assert_eq!(srv.backend.count(EntityKind::Sni), 1);

    // One op per SNI plus the certificate: a batch holds at most 1,000 (ours, not Kong's).
    let names: Vec<String> = (0..1000).map(|i| format!("n{i:04}.example")).collect();
    let (cert, key) = cert_pem(false);
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert, "key": key, "snis": names}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            405,
            json!({"code": 12, "name": "operation unsupported",
                   "message": "a batch holds at most 1000 operations"})
        )
    );
    assert_eq!(srv.backend.count(EntityKind::Certificate), 1);
    let r = srv
        .post(
            "/certificates",
            json!({"cert": cert, "key": key, "snis": names[..999]}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["snis"].as_array().unwrap().len(), 999);
    srv.stop().await;
}

#[tokio::test]
async fn ca_certificates_are_checked_and_unique() {
    let srv = start().await;
    let (ca, _) = cert_pem(true);
    let r = srv.post("/ca_certificates", json!({"cert": ca})).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let digest = r.json()["cert_digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = srv.post("/ca_certificates", json!({"cert": ca})).await;
    assert_eq!(
        r.sj(),
        (
            409,
            kong_error(
                5,
                UNIQUE,
                &format!("UNIQUE violation detected on '{{cert_digest=\"{digest}\"}}'"),
                json!({"cert_digest": digest})
            )
        )
    );
    let (leaf, _) = cert_pem(false);
    let msg =
        "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint";
    assert_eq!(
        srv.post("/ca_certificates", json!({"cert": leaf}))
            .await
            .sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                &format!("schema violation ({msg})"),
                json!({"@entity": [msg]})
            )
        )
    );
    assert_eq!(srv.backend.count(EntityKind::CaCertificate), 1);
    srv.stop().await;
}

// === error paths shared by every kind ===

#[tokio::test]
async fn kong_errors_for_every_code_path() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s", "host": "a.example"}))
        .await;
    // Code 13: a foreign key by name that names nothing.
    let r = srv
        .post(
            "/routes",
            json!({"paths": ["/"], "service": {"name": "nope"}}),
        )
        .await;
    let detail = "the foreign key cannot be resolved with '{name=\"nope\"}' for an existing 'services' entity";
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                13,
                "foreign keys unresolved",
                &format!("foreign key unresolved (service.name: {detail})"),
                json!({"service": {"name": detail}})
            )
        )
    );
    // Code 4: a foreign key by id that names nothing.
    let missing = id(77);
    let r = srv
        .post(
            "/routes",
            json!({"paths": ["/"], "service": {"id": missing}}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                4,
                "foreign key violation",
                &format!("the foreign key '{{id=\"{missing}\"}}' does not reference an existing 'services' entity."),
                json!({"service": {"id": missing}})
            )
        )
    );
    // Code 3: an id that is taken.
    let r = srv
        .post("/services", json!({"id": id(1), "host": "b.example"}))
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                3,
                "primary key violation",
                &format!("primary key violation on key '{{id=\"{}\"}}'", id(1)),
                json!({"id": id(1)})
            )
        )
    );
    // Code 6: PATCH of what is not there.
    let r = srv
        .send("PATCH", "/upstreams/nope", json!({"slots": 20}))
        .await;
    assert_eq!(
        r.sj(),
        (
            404,
            kong_error(
                6,
                "not found",
                "could not find the entity with primary key '{id=\"nope\"}'",
                json!({"id": "nope"})
            )
        )
    );
    // Code 2 with several fields, from a form body.
    let r = srv
        .form("POST", "/services", "port=eighty&enabled=yes&path=x")
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            kong_error(
                2,
                SCHEMA,
                "4 schema violations (enabled: expected a boolean; host: required field missing; path: should start with: /; port: expected an integer)",
                json!({"enabled": "expected a boolean", "host": "required field missing",
                       "path": "should start with: /", "port": "expected an integer"})
            )
        )
    );
    // A nested child under a parent that does not exist, and a PUT under one.
    assert_eq!(
        srv.send("PUT", "/services/nope/routes/r", json!({"paths": ["/"]}))
            .await
            .sj(),
        not_found()
    );
    assert_eq!(
        srv.send("PATCH", "/consumers/nope/acls/g", json!({}))
            .await
            .sj(),
        not_found()
    );
    assert_eq!(srv.backend.count(EntityKind::Route), 0);
    srv.stop().await;
}

// === form and multipart bodies ===

#[tokio::test]
async fn form_and_multipart_bodies_for_every_kind() {
    let srv = start().await;
    let r = srv
        .form(
            "POST",
            "/services",
            "name=s&url=http://a.example:8080/v1&retries=3",
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(
        (
            r.json()["port"].clone(),
            r.json()["path"].clone(),
            r.json()["retries"].clone()
        ),
        (json!(8080), json!("/v1"), json!(3))
    );
    let r = srv
        .form(
            "POST",
            "/services/s/routes",
            "name=r&paths[]=/a&paths[]=/b&methods=GET&hosts=a.example&hosts=b.example&strip_path=false&regex_priority=3",
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let route = r.json();
    assert_eq!(route["paths"], json!(["/a", "/b"]));
    assert_eq!(route["methods"], json!(["GET"]));
    assert_eq!(route["hosts"], json!(["a.example", "b.example"]));
    assert_eq!(
        (route["strip_path"].clone(), route["regex_priority"].clone()),
        (json!(false), json!(3))
    );
    assert_eq!(route["service"], json!({"id": id(1)}));

    let r = srv
        .form(
            "POST",
            "/plugins",
            &format!(
                "name=rate-limiting&config.minute=5&config.policy=local&config.fault_tolerant=false&service.id={}",
                id(1)
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let plugin = r.json();
    assert_eq!(plugin["config"]["minute"], json!(5));
    assert_eq!(plugin["config"]["fault_tolerant"], json!(false));
    assert_eq!(plugin["service"], json!({"id": id(1)}));
    // PATCH forms are typed by the stored plugin (the body has no name).
    let r = srv
        .form("PATCH", &format!("/plugins/{}", id(3)), "config.hour=7")
        .await;
    assert_eq!(
        (
            r.status,
            r.json()["config"]["hour"].clone(),
            r.json()["config"]["minute"].clone()
        ),
        (200, json!(7), json!(5))
    );
    // An empty value clears a field.
    let r = srv.form("PATCH", "/services/s", "path=").await;
    assert_eq!((r.status, r.json()["path"].clone()), (200, Value::Null));

    srv.post("/consumers", json!({"username": "bob"})).await;
    let r = srv
        .multipart(
            "POST",
            "/consumers/bob/key-auth",
            &[("key", "from-multipart"), ("ttl", "30"), ("tags[]", "m")],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(
        (
            r.json()["key"].clone(),
            r.json()["ttl"].clone(),
            r.json()["tags"].clone()
        ),
        (json!("from-multipart"), json!(30), json!(["m"]))
    );
    let r = srv
        .form(
            "POST",
            "/upstreams",
            "name=up&slots=20&healthchecks.active.healthy.interval=5",
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["slots"], json!(20));
    // (The model prints this `number` as `5.0`; Kong prints `5`. Both read as 5.)
    assert_eq!(
        r.json()["healthchecks"]["active"]["healthy"]["interval"].as_f64(),
        Some(5.0)
    );
    let r = srv
        .form(
            "POST",
            "/upstreams/up/targets",
            "target=t.example:81&weight=0",
        )
        .await;
    assert_eq!((r.status, r.json()["weight"].clone()), (201, json!(0)));

    // Certificate files and SNI names as multipart parts.
    let (cert, key) = cert_pem(false);
    let r = srv
        .multipart(
            "POST",
            "/certificates",
            &[
                ("cert", &cert),
                ("key", &key),
                ("snis[]", "m.example"),
                ("snis[]", "l.example"),
            ],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["snis"], json!(["l.example", "m.example"]));
    assert_eq!(r.json()["cert"], json!(cert));
    srv.stop().await;
}

// === tags ===

#[tokio::test]
async fn tags_list_every_tagged_entity() {
    let srv = start().await;
    srv.post(
        "/services",
        json!({"name": "s", "host": "a.example", "tags": ["a", "b"]}),
    )
    .await; // 1
    srv.post("/services/s/routes", json!({"paths": ["/"], "tags": ["a"]}))
        .await; // 2
    srv.post("/consumers", json!({"username": "u", "tags": ["b"]}))
        .await; // 3
    srv.post("/consumers", json!({"username": "untagged"}))
        .await; // 4
    let row = |kind: &str, n: u128, tag: &str| json!({"entity_name": kind, "entity_id": id(n), "tag": tag});
    assert_eq!(
        srv.get("/tags").await.sj(),
        (
            200,
            json!({"data": [row("services", 1, "a"), row("services", 1, "b"),
                            row("routes", 2, "a"), row("consumers", 3, "b")],
                   "next": null})
        )
    );
    assert_eq!(
        srv.get("/tags/b").await.json()["data"],
        json!([row("services", 1, "b"), row("consumers", 3, "b")])
    );
    assert_eq!(
        srv.get("/tags/zzz").await.sj(),
        (200, json!({"data": [], "next": null}))
    );

    let p1 = srv.get("/tags?size=3").await.json();
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    let next = p1["next"].as_str().unwrap();
    assert!(next.starts_with("/tags?offset="), "{next}");
    assert!(next.ends_with("&size=3"), "{next}");
    assert_eq!(
        srv.get(next).await.json(),
        json!({"data": [row("consumers", 3, "b")], "next": null})
    );
    let p = srv.get("/tags/a?size=1").await.json();
    assert_eq!(p["data"], json!([row("services", 1, "a")]));
    let next = p["next"].as_str().unwrap();
    assert!(next.starts_with("/tags/a?offset="), "{next}");
    assert_eq!(
        srv.get(next).await.json()["data"],
        json!([row("routes", 2, "a")])
    );

    assert_eq!(
        srv.get("/tags?offset=%21").await.sj(),
        (
            400,
            json!({"code": 7, "name": "invalid offset",
                   "message": "'!' is not a valid offset: bad base64 encoding"})
        )
    );
    assert_eq!(
        srv.get("/tags?size=0").await.json()["message"],
        "size must be an integer between 1 and 1000"
    );
    srv.stop().await;
}
