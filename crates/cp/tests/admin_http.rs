//! The Admin API over real HTTP against the in-process backend of `support`: services,
//! routes, lists, bodies, idempotency, write failures, clustering and shutdown.

mod support;

use serde_json::{json, Value};
use support::*;
use tidegate_cp::{Backend, MemberChangeError, WriteError};
use tidegate_model::EntityKind;
use tidegate_state::Op;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use uuid::Uuid;

// === GET / and /status ===

#[tokio::test]
async fn root_reports_the_kong_version_node_and_plugins() {
    let srv = start().await;
    let r = srv.get("/").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["version"], "3.9.0");
    assert_eq!(body["tidegate_version"], VERSION);
    assert_eq!(body["tagline"], "Welcome to tidegate");
    assert_eq!(body["node_id"], id(0xc0ffee).to_string());
    assert_eq!(body["hostname"], "cp-test");
    assert_eq!(
        body["configuration"],
        json!({"role": "control_plane", "database": "raft", "admin_listen": ["127.0.0.1:8001"]})
    );
    let available = body["plugins"]["available_on_server"].as_object().unwrap();
    let bundled = tidegate_model::plugins::bundled();
    assert_eq!(available.len(), bundled.len());
    for p in &bundled {
        assert_eq!(
            available[p.name],
            json!({"version": p.version, "priority": p.priority}),
            "{}",
            p.name
        );
    }
    assert_eq!(body["plugins"]["enabled_in_cluster"], json!([]));

    // Plugins in use show up once each, whatever they hang off.
    for _ in 0..2 {
        let op = Op::Create {
            kind: EntityKind::Plugin,
            body: json!({"name": "cors"}).to_string(),
        };
        srv.backend.write(op, None).await.unwrap().outcome.ok();
    }
    let op = Op::Create {
        kind: EntityKind::Plugin,
        body: json!({"name": "acl", "config": {"allow": ["a"]}}).to_string(),
    };
    srv.backend.write(op, None).await.unwrap().outcome.unwrap();
    let body = srv.get("/").await.json();
    assert_eq!(
        body["plugins"]["enabled_in_cluster"],
        json!(["acl", "cors"])
    );
    srv.stop().await;
}

#[tokio::test]
async fn status_reports_the_config_hash_and_counters() {
    let srv = start().await;
    let body = srv.get("/status").await.json();
    assert_eq!(body["database"], json!({"reachable": true}));
    assert_eq!(body["configuration_hash"], "0".repeat(32));
    assert_eq!(body["server"]["total_requests"], 1);
    assert_eq!(body["server"]["connections_accepted"], 1);
    assert_eq!(body["server"]["connections_handled"], 1);
    assert_eq!(body["server"]["connections_active"], 1);

    srv.post("/services", json!({"host": "a.example"})).await;
    let body = srv.get("/status/").await.json();
    let hash = srv.backend.read(|m| m.config.hash().to_hex());
    assert_ne!(hash, "0".repeat(32));
    assert_eq!(body["configuration_hash"], hash);
    assert_eq!(body["server"]["total_requests"], 3);
    assert_eq!(body["server"]["connections_accepted"], 3);
    srv.stop().await;
}

// === services ===

#[tokio::test]
async fn services_create_get_patch_put_delete() {
    let srv = start().await;
    let r = srv
        .post("/services", json!({"name": "svc", "host": "example.com"}))
        .await;
    assert_eq!(r.sj(), (201, service_body(1, "svc", "example.com")));

    for path in [
        "/services/svc",
        "/services/svc/",
        &format!("/services/{}", id(1)),
    ] {
        assert_eq!(
            srv.get(path).await.sj(),
            (200, service_body(1, "svc", "example.com")),
            "{path}"
        );
    }

    // PATCH merges: only the named fields change.
    let r = srv
        .send(
            "PATCH",
            "/services/svc",
            json!({"retries": 9, "path": "/v1"}),
        )
        .await;
    let mut want = service_body(1, "svc", "example.com");
    want["retries"] = json!(9);
    want["path"] = json!("/v1");
    want["updated_at"] = json!(T0 + 2);
    assert_eq!(r.sj(), (200, want.clone()));
    assert_eq!(srv.get("/services/svc").await.sj(), (200, want));

    // PUT replaces: unspecified fields return to their defaults.
    let r = srv
        .send("PUT", "/services/svc", json!({"host": "other.example"}))
        .await;
    let mut want = service_body(1, "svc", "other.example");
    want["updated_at"] = json!(T0 + 3);
    assert_eq!(r.sj(), (200, want));

    // PUT creates when absent, the name in the URL winning over the body's.
    let r = srv
        .send(
            "PUT",
            "/services/fresh",
            json!({"name": "ignored", "host": "f.example"}),
        )
        .await;
    assert_eq!(r.sj(), (200, service_body(4, "fresh", "f.example")));
    assert_eq!(srv.backend.count(EntityKind::Service), 2);

    let r = srv.delete("/services/svc").await;
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(srv.get("/services/svc").await.sj(), not_found());
    assert_eq!(
        srv.get(&format!("/services/{}", id(1))).await.sj(),
        not_found()
    );
    // Kong answers 204 for deleting what is not there.
    assert_eq!(srv.delete("/services/svc").await.status, 204);
    assert_eq!(
        srv.delete(&format!("/services/{}", id(99))).await.status,
        204
    );
    assert_eq!(srv.backend.count(EntityKind::Service), 1);

    // PATCH of a missing entity is the DAO's not-found error.
    let r = srv
        .send("PATCH", "/services/nope", json!({"retries": 1}))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], 6);
    srv.stop().await;
}

#[tokio::test]
async fn kong_schema_violation_body_verbatim() {
    let srv = start().await;
    let r = srv.post("/services", json!({"path": "foo"})).await;
    let want: Value = serde_json::from_str(
        r#"{"code":2,"name":"schema violation","message":"2 schema violations (host: required field missing; path: should start with: /)","fields":{"host":"required field missing","path":"should start with: /"}}"#,
    )
    .unwrap();
    assert_eq!(r.sj(), (400, want));
    assert_eq!(srv.backend.count(EntityKind::Service), 0);
    srv.stop().await;
}

#[tokio::test]
async fn unique_violation_is_409() {
    let srv = start().await;
    assert_eq!(
        srv.post("/services", json!({"name": "x", "host": "a.example"}))
            .await
            .status,
        201
    );
    let r = srv
        .post("/services", json!({"name": "x", "host": "b.example"}))
        .await;
    let want: Value = serde_json::from_str(
        r#"{"code":5,"name":"unique constraint violation","message":"UNIQUE violation detected on '{name=\"x\"}'","fields":{"name":"x"}}"#,
    )
    .unwrap();
    assert_eq!(r.sj(), (409, want));
    assert_eq!(srv.backend.count(EntityKind::Service), 1);
    srv.stop().await;
}

#[tokio::test]
async fn deleting_a_service_with_routes_is_refused_with_code_4() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s", "host": "a.example"}))
        .await;
    let r = srv
        .post("/services/s/routes", json!({"paths": ["/a"]}))
        .await;
    assert_eq!(r.status, 201);
    let r = srv.delete("/services/s").await;
    assert_eq!(
        r.sj(),
        (
            400,
            json!({"code": 4, "name": "foreign key violation",
                   "message": "an existing 'routes' entity references this 'services' entity",
                   "fields": {"@referenced_by": "routes"}})
        )
    );
    assert_eq!(srv.get("/services/s").await.status, 200);
    srv.stop().await;
}

// === routes ===

#[tokio::test]
async fn routes_crud_and_route_service() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s", "host": "a.example"}))
        .await;
    let r = srv
        .post(
            "/routes",
            json!({"name": "r", "paths": ["/a"], "service": {"name": "s"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let created = r.json();
    assert_eq!(created["id"], id(2).to_string());
    assert_eq!(created["service"], json!({"id": id(1)}));
    assert_eq!(created["protocols"], json!(["http", "https"]));
    assert_eq!(created["strip_path"], true);
    assert_eq!(created["hosts"], Value::Null);
    let stored = srv
        .backend
        .read(|m| m.config.get(EntityKind::Route, id(2)).unwrap().to_json());
    assert_eq!(created, stored);
    assert_eq!(srv.get("/routes/r").await.sj(), (200, stored));

    let r = srv
        .send("PATCH", "/routes/r", json!({"hosts": ["h.example"]}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["hosts"], json!(["h.example"]));
    assert_eq!(r.json()["paths"], json!(["/a"]));

    // The route's service, through the foreign key.
    assert_eq!(
        srv.get("/routes/r/service").await.sj(),
        (200, service_body(1, "s", "a.example"))
    );
    let r = srv
        .send("PATCH", "/routes/r/service", json!({"retries": 1}))
        .await;
    assert_eq!((r.status, r.json()["retries"].clone()), (200, json!(1)));
    assert_eq!(
        srv.delete("/routes/r/service").await.sj(),
        (405, json!({"message": "Method not allowed"}))
    );
    assert_eq!(srv.get("/routes/nope/service").await.sj(), not_found());

    // A route without a service has no /service.
    srv.post("/routes", json!({"name": "lone", "paths": ["/l"]}))
        .await;
    assert_eq!(srv.get("/routes/lone/service").await.sj(), not_found());
    assert_eq!(srv.delete("/routes/lone/service").await.sj(), not_found());
    // PUT creates one and attaches the route to it.
    let r = srv
        .send(
            "PUT",
            "/routes/lone/service",
            json!({"host": "new.example"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let new_service = r.json()["id"].clone();
    assert_eq!(r.json()["host"], "new.example");
    assert_eq!(
        srv.get("/routes/lone").await.json()["service"],
        json!({"id": new_service})
    );

    let r = srv.send("PUT", "/routes/r", json!({"paths": ["/b"]})).await;
    assert_eq!(r.status, 200);
    // PUT replaces: the service is gone, the hosts too.
    assert_eq!(r.json()["service"], Value::Null);
    assert_eq!(r.json()["hosts"], Value::Null);

    assert_eq!(srv.delete("/routes/r").await.status, 204);
    assert_eq!(srv.get("/routes/r").await.sj(), not_found());
    assert_eq!(srv.delete("/routes/r").await.status, 204);
    srv.stop().await;
}

#[tokio::test]
async fn nested_routes_belong_to_their_service() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s1", "host": "a.example"}))
        .await;
    srv.post("/services", json!({"name": "s2", "host": "b.example"}))
        .await;
    // The service in the URL wins over one in the body.
    let r = srv
        .post(
            "/services/s1/routes",
            json!({"name": "r1", "paths": ["/1"], "service": {"id": id(2)}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["service"], json!({"id": id(1)}));
    let r = srv
        .post(
            &format!("/services/{}/routes", id(2)),
            json!({"name": "r2", "paths": ["/2"]}),
        )
        .await;
    assert_eq!(r.json()["service"], json!({"id": id(2)}));
    assert_eq!(
        srv.post("/services/nope/routes", json!({"paths": ["/x"]}))
            .await
            .sj(),
        not_found()
    );

    let list = srv.get("/services/s1/routes").await.json();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1"]);
    assert_eq!(list["next"], Value::Null);
    assert_eq!(srv.get("/services/nope/routes").await.sj(), not_found());

    assert_eq!(srv.get("/services/s1/routes/r1").await.json()["name"], "r1");
    // r2 exists but belongs to s2.
    assert_eq!(srv.get("/services/s1/routes/r2").await.sj(), not_found());
    assert_eq!(
        srv.send("PATCH", "/services/s1/routes/r2", json!({"paths": ["/z"]}))
            .await
            .sj(),
        not_found()
    );
    assert_eq!(srv.delete("/services/s1/routes/r2").await.sj(), not_found());
    assert_eq!(
        srv.delete("/services/s1/routes/none").await.sj(),
        not_found()
    );
    assert_eq!(
        srv.delete("/services/none/routes/r1").await.sj(),
        not_found()
    );
    assert_eq!(srv.get("/routes/r2").await.json()["paths"], json!(["/2"]));

    let r = srv
        .send(
            "PATCH",
            "/services/s1/routes/r1",
            json!({"paths": ["/one"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["paths"], json!(["/one"]));
    assert_eq!(r.json()["service"], json!({"id": id(1)}));

    // PUT, as in Kong, upserts under the service in the URL.
    let r = srv
        .send(
            "PUT",
            "/services/s1/routes/r2",
            json!({"paths": ["/moved"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["service"], json!({"id": id(1)}));
    assert_eq!(r.json()["id"], id(4).to_string());

    assert_eq!(srv.delete("/services/s1/routes/r1").await.status, 204);
    assert_eq!(srv.get("/routes/r1").await.sj(), not_found());
    srv.stop().await;
}

// === routing ===

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let srv = start().await;
    srv.post("/services", json!({"name": "s", "host": "a.example"}))
        .await;
    for path in [
        "/nope",
        "/targets",
        "/keyauth_credentials",
        "/consumers/c/keyauth_credentials",
        "/services/nope/plugins",
        "/services/s/routes/r/x",
        "/services/%FF",
    ] {
        assert_eq!(srv.get(path).await.sj(), not_found(), "{path}");
    }
    let not_allowed = (405, json!({"message": "Method not allowed"}));
    for (method, path) in [
        ("DELETE", "/services"),
        ("PUT", "/services"),
        ("POST", "/services/s"),
        ("POST", "/"),
        ("PATCH", "/status"),
        ("POST", "/routes/x/service"),
        ("GET", "/clustering/control-planes/2"),
        ("POST", "/endpoints"),
        ("DELETE", "/plugins/enabled"),
        ("PUT", "/config"),
        ("POST", "/tags"),
        ("GET", "/schemas/services/validate"),
        ("POST", "/schemas/plugins/key-auth"),
        ("DELETE", "/consumers/c/plugins"),
    ] {
        let r = srv.call(method, path, &[], None).await;
        assert_eq!(r.sj(), not_allowed, "{method} {path}");
    }
    srv.stop().await;
}

// === lists ===

fn ids_of(page: &Value) -> Vec<Uuid> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn pagination_with_size_offset_and_next() {
    let srv = start().await;
    assert_eq!(
        srv.get("/services").await.sj(),
        (200, json!({"data": [], "next": null}))
    );
    for i in 1..=5 {
        srv.post(
            "/services",
            json!({"name": format!("s{i}"), "host": "a.example"}),
        )
        .await;
    }
    let all = srv.get("/services").await.json();
    assert_eq!(ids_of(&all), (1..=5).map(id).collect::<Vec<_>>());
    assert_eq!(all["next"], Value::Null);
    assert!(all.get("offset").is_none());
    assert_eq!(all["data"][0], service_body(1, "s1", "a.example"));

    let p1 = srv.get("/services?size=2").await.json();
    assert_eq!(ids_of(&p1), [id(1), id(2)]);
    let offset = p1["offset"].as_str().unwrap().to_string();
    let next = p1["next"].as_str().unwrap().to_string();
    assert!(next.starts_with("/services?offset="), "{next}");
    assert!(next.ends_with("&size=2"), "{next}");

    let p2 = srv.get(&next).await.json();
    assert_eq!(ids_of(&p2), [id(3), id(4)]);
    let p3 = srv.get(p2["next"].as_str().unwrap()).await.json();
    assert_eq!(ids_of(&p3), [id(5)]);
    assert_eq!(p3["next"], Value::Null);
    assert!(p3.get("offset").is_none());

    // The offset alone (escaped by the client) continues the same way.
    let escaped: String = offset
        .bytes()
        .map(|b| match b {
            b'+' | b'/' | b'=' => format!("%{b:02X}"),
            b => (b as char).to_string(),
        })
        .collect();
    let again = srv
        .get(&format!("/services?size=2&offset={escaped}"))
        .await
        .json();
    assert_eq!(ids_of(&again), [id(3), id(4)]);

    // A page that ends exactly at the last entity is the last page.
    let exact = srv.get("/services?size=5").await.json();
    assert_eq!(ids_of(&exact).len(), 5);
    assert_eq!(exact["next"], Value::Null);

    // Nested lists page the same way, under their own path.
    for i in 1..=3 {
        srv.post(
            "/services/s1/routes",
            json!({"name": format!("r{i}"), "paths": ["/x"]}),
        )
        .await;
    }
    let n1 = srv.get("/services/s1/routes?size=2").await.json();
    assert_eq!(ids_of(&n1), [id(6), id(7)]);
    let next = n1["next"].as_str().unwrap();
    assert!(next.starts_with("/services/s1/routes?offset="), "{next}");
    let n2 = srv.get(next).await.json();
    assert_eq!(ids_of(&n2), [id(8)]);
    assert_eq!(n2["next"], Value::Null);
    srv.stop().await;
}

#[tokio::test]
async fn bad_size_and_offset_are_kong_errors() {
    let srv = start().await;
    let range = json!({"code": 9, "name": "invalid size",
                       "message": "size must be an integer between 1 and 1000"});
    for q in ["size=0", "size=1001", "size=1.5", "size=-3"] {
        assert_eq!(
            srv.get(&format!("/services?{q}")).await.sj(),
            (400, range.clone()),
            "{q}"
        );
    }
    let nan = json!({"code": 9, "name": "invalid size", "message": "size must be a number"});
    for q in ["size=abc", "size=", "size=1&size=2"] {
        assert_eq!(
            srv.get(&format!("/routes?{q}")).await.sj(),
            (400, nan.clone()),
            "{q}"
        );
    }
    assert_eq!(srv.get("/services?size=1000").await.status, 200);

    assert_eq!(
        srv.get("/services?offset=%21%21").await.sj(),
        (
            400,
            json!({"code": 7, "name": "invalid offset",
                   "message": "'!!' is not a valid offset: bad base64 encoding"})
        )
    );
    // base64 of `nope`
    assert_eq!(
        srv.get("/services?offset=bm9wZQ%3D%3D").await.json()["message"],
        "'bm9wZQ==' is not a valid offset: bad json encoding"
    );
    // A missing parent is reported before a bad argument, as Kong does.
    assert_eq!(
        srv.get("/services/nope/routes?size=0").await.sj(),
        not_found()
    );
    srv.stop().await;
}

#[tokio::test]
async fn tag_filters_and_or_and_limits() {
    let srv = start().await;
    for (name, tags) in [
        ("a", json!(["a"])),
        ("b", json!(["b"])),
        ("ab", json!(["a", "b"])),
        ("none", json!(null)),
    ] {
        let r = srv
            .post(
                "/services",
                json!({"name": name, "host": "x.example", "tags": tags}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let names = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(srv.get("/services?tags=a").await.json()), ["a", "ab"]);
    assert_eq!(names(srv.get("/services?tags=a,b").await.json()), ["ab"]);
    assert_eq!(names(srv.get("/services?tags=a%2Cb").await.json()), ["ab"]);
    assert_eq!(
        names(srv.get("/services?tags=a/b").await.json()),
        ["a", "b", "ab"]
    );
    assert_eq!(
        names(srv.get("/services?tags=zzz").await.json()),
        Vec::<String>::new()
    );

    // Tags carry into `next`.
    let p1 = srv.get("/services?tags=a/b&size=2").await.json();
    assert_eq!(names(p1.clone()), ["a", "b"]);
    let next = p1["next"].as_str().unwrap();
    assert!(next.contains("&tags=a%2Fb"), "{next}");
    assert_eq!(names(srv.get(next).await.json()), ["ab"]);

    assert_eq!(
        srv.get("/services?tags=1,2,3,4,5,6").await.sj(),
        (
            400,
            json!({"code": 11, "name": "invalid options",
                   "message": "invalid option (tags: cannot query more than 5 tags)",
                   "options": {"tags": "cannot query more than 5 tags"}})
        )
    );
    assert_eq!(srv.get("/services?tags=1,2,3,4,5").await.status, 200);
    let mixed = srv.get("/services?tags=a,b/c").await;
    assert_eq!(
        mixed.sj(),
        (
            400,
            json!({"code": 11, "name": "invalid options",
                   "message": "invalid option (tags: invalid filter syntax)",
                   "options": {"tags": "invalid filter syntax"}})
        )
    );
    srv.stop().await;
}

// === bodies ===

#[tokio::test]
async fn bodies_json_and_forms_with_kong_messages() {
    let srv = start().await;
    let json_ct = [("Content-Type", "application/json")];
    let r = srv
        .call("POST", "/services", &json_ct, Some(b"{\"host\": "))
        .await;
    assert_eq!(r.sj(), (400, json!({"message": "Cannot parse JSON body"})));

    // Forms are read as Kong reads them; their strings take the schema's types.
    let r = srv
        .call(
            "POST",
            "/services",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(b"host=a.example&port=8080&name=form&tags[]=x&tags[]=y"),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let mut want = service_body(1, "form", "a.example");
    want["port"] = json!(8080);
    want["tags"] = json!(["x", "y"]);
    assert_eq!(r.json(), want);

    // Anything else is named, rather than ignored as Kong does.
    let r = srv
        .call(
            "POST",
            "/services",
            &[("Content-Type", "text/plain")],
            Some(b"host=a.example"),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            415,
            json!({"message": "Unsupported Content-Type: text/plain; send application/json, application/x-www-form-urlencoded or multipart/form-data"})
        )
    );
    let r = srv
        .call(
            "POST",
            "/services",
            &[("Content-Type", "multipart/form-data")],
            Some(b"host=a.example"),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            400,
            json!({"message": "Cannot parse multipart/form-data body: no boundary in the Content-Type"})
        )
    );

    // An empty body is `{}`: the schema then names what is missing.
    let r = srv.call("POST", "/services", &json_ct, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "schema violation (host: required field missing)"
    );
    // A body without a Content-Type is read as JSON.
    let r = srv
        .call("POST", "/services", &[], Some(br#"{"host":"a.example"}"#))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(srv.backend.count(EntityKind::Service), 2);
    srv.stop().await;
}

#[tokio::test]
async fn bodies_over_8_mib_are_413() {
    let srv = start().await;
    let too_large = (
        413,
        json!({"message": "request body exceeds 8388608 bytes"}),
    );
    // Declared too large: refused before the body is read, so none is sent.
    let head = "POST /services HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
                Content-Length: 8388609\r\n\r\n";
    let r = send_raw(srv.addr, head.as_bytes()).await;
    assert_eq!(r.sj(), too_large);

    // A chunked body has no declared length: it is cut off at the limit.
    let over = 8 * 1024 * 1024 + 1;
    let mut req = format!(
        "POST /services HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{over:x}\r\n"
    )
    .into_bytes();
    // The chunk is sent without its terminator: the server stops reading at the limit,
    // so nothing is left unread to turn its close into a reset.
    req.resize(req.len() + over, b' ');
    let r = send_raw(srv.addr, &req).await;
    assert_eq!(r.sj(), too_large);

    // Exactly at the limit is read (and then judged as JSON).
    let mut body = vec![b' '; 8 * 1024 * 1024];
    body[0] = b'x';
    let r = srv
        .call(
            "POST",
            "/services",
            &[("Content-Type", "application/json")],
            Some(&body),
        )
        .await;
    assert_eq!(r.sj(), (400, json!({"message": "Cannot parse JSON body"})));
    srv.stop().await;
}

// === idempotency ===

#[tokio::test]
async fn request_id_makes_a_retry_apply_once() {
    let srv = start().await;
    let rid = "7d4f6a3e-3c56-4c1b-9a57-7f1d2c3b4a59";
    let headers = [("Content-Type", "application/json"), ("X-Request-Id", rid)];
    let body = br#"{"host":"a.example"}"#;
    let first = srv.call("POST", "/services", &headers, Some(body)).await;
    let second = srv.call("POST", "/services", &headers, Some(body)).await;
    let mut want = service_body(1, "", "a.example");
    want["name"] = Value::Null;
    assert_eq!(first.sj(), (201, want));
    assert_eq!(second.sj(), first.sj());
    assert_eq!(srv.backend.count(EntityKind::Service), 1);

    // A different id is a different request.
    let other = [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "2f1e0d3c-1b2a-4c3d-8e4f-5a6b7c8d9e0f"),
    ];
    assert_eq!(
        srv.call("POST", "/services", &other, Some(body))
            .await
            .status,
        201
    );
    assert_eq!(srv.backend.count(EntityKind::Service), 2);

    let bad = [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "abc"),
    ];
    let r = srv.call("POST", "/services", &bad, Some(body)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("X-Request-Id must be a UUID"),
        "{:?}",
        r.json()
    );
    assert_eq!(srv.backend.count(EntityKind::Service), 2);
    // Reads do not care about the header.
    let r = srv
        .call("GET", "/services", &[("X-Request-Id", "abc")], None)
        .await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}

// === write failures ===

#[tokio::test]
async fn undecided_writes_are_5xx_with_advice() {
    let srv = start().await;
    let cases = [
        (
            WriteError::NoLeader {
                detail: "no quorum".into(),
            },
            503,
            "no control plane leader is reachable: no quorum",
        ),
        (
            WriteError::Timeout {
                detail: "10s".into(),
            },
            504,
            "the write was not confirmed in time: 10s",
        ),
        (
            WriteError::Storage {
                detail: "disk full".into(),
            },
            503,
            "storage failure on this control plane: disk full",
        ),
        (
            WriteError::ShuttingDown,
            503,
            "this control plane is shutting down",
        ),
    ];
    for (err, status, prefix) in cases {
        *srv.backend.fail_next.lock().unwrap() = Some(err);
        let r = srv.post("/services", json!({"host": "a.example"})).await;
        assert_eq!(r.status, status, "{prefix}");
        let body = r.json();
        let msg = body["message"].as_str().unwrap();
        assert!(msg.starts_with(prefix), "{msg}");
        assert!(msg.len() > prefix.len() + 20, "no advice in {msg}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    }
    assert!(srv.get("/services/x").await.status == 404);
    assert_eq!(srv.backend.count(EntityKind::Service), 0);
    srv.stop().await;
}

// === clustering ===

#[tokio::test]
async fn clustering_control_planes() {
    let srv = start().await;
    let status = srv.backend.canned_status(None);
    assert_eq!(
        srv.get("/clustering/control-planes").await.sj(),
        (200, serde_json::to_value(&status).unwrap())
    );

    let r = srv
        .post(
            "/clustering/control-planes",
            json!({"id": 4, "address": "10.0.0.4:8007"}),
        )
        .await;
    let want = srv.backend.canned_status(Some((4, "10.0.0.4:8007".into())));
    assert_eq!(r.sj(), (201, serde_json::to_value(&want).unwrap()));

    let r = srv
        .post(
            "/clustering/control-planes",
            json!({"address": "10.0.0.4:8007"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("'id'"));

    *srv.backend.member_error.lock().unwrap() = Some(MemberChangeError::Invalid(
        "node 4 is already a member".into(),
    ));
    let r = srv
        .post(
            "/clustering/control-planes",
            json!({"id": 4, "address": "10.0.0.4:8007"}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (400, json!({"message": "node 4 is already a member"}))
    );

    *srv.backend.member_error.lock().unwrap() = Some(MemberChangeError::Busy(
        "another membership change is running on this node".into(),
    ));
    let r = srv
        .post(
            "/clustering/control-planes",
            json!({"id": 4, "address": "10.0.0.4:8007"}),
        )
        .await;
    assert_eq!(
        r.sj(),
        (
            409,
            json!({"message": "another membership change is running on this node"})
        )
    );

    let r = srv.delete("/clustering/control-planes/4").await;
    assert_eq!(r.sj(), (200, serde_json::to_value(&status).unwrap()));
    *srv.backend.member_error.lock().unwrap() =
        Some(MemberChangeError::Write(WriteError::Timeout {
            detail: "slow".into(),
        }));
    assert_eq!(srv.delete("/clustering/control-planes/4").await.status, 504);
    assert_eq!(
        srv.delete("/clustering/control-planes/four").await.status,
        400
    );

    assert_eq!(
        *srv.backend.member_calls.lock().unwrap(),
        [
            "add 4 10.0.0.4:8007",
            "add 4 10.0.0.4:8007",
            "add 4 10.0.0.4:8007",
            "remove 4",
            "remove 4"
        ]
    );
    srv.stop().await;
}

// === shutdown ===

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_in_flight_requests() {
    let mut srv = start().await;
    let (arrived_tx, arrived) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    *srv.backend.gate.lock().unwrap() = Some(Gate {
        arrived: arrived_tx,
        release: release_rx,
    });
    let addr = srv.addr;
    let in_flight = tokio::spawn(async move {
        let body = br#"{"host":"late.example"}"#;
        let req = format!(
            "POST /services HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        send_raw(addr, &bytes).await
    });
    arrived.await.unwrap();

    let _ = srv.stop.take().unwrap().send(());
    // Wait until the listener is gone: new connections are refused.
    let refused = tokio::time::timeout(CALL_DEADLINE, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => break,
                Ok(s) => drop(s),
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener still accepts after shutdown");
    assert!(
        !srv.task.is_finished(),
        "serve returned with a request in flight"
    );

    release.send(()).unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["host"], "late.example");
    srv.task.await.unwrap().unwrap();
    assert_eq!(srv.backend.count(EntityKind::Service), 1);
}
