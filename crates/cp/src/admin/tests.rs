//! Unit tests of the pure parts: paths, query strings, list arguments, member bodies.
//! The HTTP behaviour is tested end to end in `tests/admin_http.rs`.

use serde_json::json;
use tidegate_model::EntityKind::{
    Acl, BasicauthCredential, Certificate, Consumer, KeyauthCredential, Plugin, Route, Service,
    Sni, Target as Target_, Upstream,
};
use uuid::Uuid;

use super::cluster::parse_member;
use super::coerce::coerce;
use super::form::{decode, multipart, urlencoded};
use super::pagination::{decode_offset, encode_offset, parse_size, parse_tags, TagFilter};
use super::reply::integral_floats_as_integers;
use super::request::{escape_uri, is_json, percent_decode, raw_segments, Query};
use super::routing::{endpoints, Target};

fn segs(path: &str) -> Vec<String> {
    raw_segments(path)
        .iter()
        .map(|s| String::from_utf8(percent_decode(s, false)).unwrap())
        .collect()
}

#[test]
fn paths_map_to_targets() {
    let s = |x: &str| x.to_string();
    let cases: Vec<(&str, Option<Target>)> = vec![
        ("/", Some(Target::Root)),
        ("", Some(Target::Root)),
        ("/status/", Some(Target::Status)),
        ("/services", Some(Target::Collection(Service))),
        ("/services//", Some(Target::Collection(Service))),
        ("/routes/r1", Some(Target::Entity(Route, s("r1")))),
        ("/services/a%20b", Some(Target::Entity(Service, s("a b")))),
        (
            "/services/s1/routes",
            Some(Target::NestedCollection {
                parent: Service,
                parent_key: s("s1"),
                kind: Route,
                field: "service",
            }),
        ),
        (
            "/services/s1/routes/r1/",
            Some(Target::NestedEntity {
                parent: Service,
                parent_key: s("s1"),
                kind: Route,
                key: s("r1"),
                field: "service",
            }),
        ),
        (
            "/routes/r1/service",
            Some(Target::ForeignEntity {
                kind: Route,
                key: s("r1"),
                field: "service",
                parent: Service,
            }),
        ),
        ("/clustering/control-planes", Some(Target::ControlPlanes)),
        (
            "/clustering/control-planes/3",
            Some(Target::ControlPlane(s("3"))),
        ),
        (
            "/consumers/bob/key-auth/k1",
            Some(Target::NestedEntity {
                parent: Consumer,
                parent_key: s("bob"),
                kind: KeyauthCredential,
                key: s("k1"),
                field: "consumer",
            }),
        ),
        ("/key-auths", Some(Target::Collection(KeyauthCredential))),
        (
            "/basic-auths/x",
            Some(Target::Entity(BasicauthCredential, s("x"))),
        ),
        ("/acls", Some(Target::Collection(Acl))),
        (
            "/consumers/c/acls",
            Some(Target::NestedCollection {
                parent: Consumer,
                parent_key: s("c"),
                kind: Acl,
                field: "consumer",
            }),
        ),
        (
            "/services/s1/plugins",
            Some(Target::NestedCollection {
                parent: Service,
                parent_key: s("s1"),
                kind: Plugin,
                field: "service",
            }),
        ),
        (
            "/services/s1/client_certificate",
            Some(Target::ForeignEntity {
                kind: Service,
                key: s("s1"),
                field: "client_certificate",
                parent: Certificate,
            }),
        ),
        (
            "/snis/a.example/certificate",
            Some(Target::ForeignEntity {
                kind: Sni,
                key: s("a.example"),
                field: "certificate",
                parent: Certificate,
            }),
        ),
        (
            "/upstreams/u/targets/10.0.0.1:80",
            Some(Target::NestedEntity {
                parent: Upstream,
                parent_key: s("u"),
                kind: Target_,
                key: s("10.0.0.1:80"),
                field: "upstream",
            }),
        ),
        ("/plugins/enabled", Some(Target::PluginsEnabled)),
        ("/plugins/p1", Some(Target::Entity(Plugin, s("p1")))),
        ("/endpoints", Some(Target::Endpoints)),
        ("/config", Some(Target::Config)),
        ("/tags", Some(Target::Tags)),
        ("/tags/a%2Fb", Some(Target::Tag(s("a/b")))),
        ("/schemas/services", Some(Target::Schema(s("services")))),
        ("/schemas/plugins", Some(Target::Schema(s("plugins")))),
        (
            "/schemas/plugins/key-auth",
            Some(Target::PluginSchema(s("key-auth"))),
        ),
        (
            "/schemas/plugins/validate",
            Some(Target::PluginSchemaValidate),
        ),
        (
            "/schemas/routes/validate",
            Some(Target::SchemaValidate(s("routes"))),
        ),
        // Not Kong paths: targets live only under upstreams, credentials under their
        // nested names, and nothing nests a kind under itself.
        ("/targets", None),
        ("/targets/t/upstream", None),
        ("/keyauth_credentials", None),
        ("/consumers/c/key-auths", None),
        ("/consumers/c/keyauth_credentials", None),
        ("/routes/r1/routes", None),
        ("/services/s1/services", None),
        ("/routes/r1/services/s1", None),
        ("/services/s1/routes/r1/extra", None),
        ("/nope", None),
    ];
    for (path, want) in cases {
        assert_eq!(Target::parse(&segs(path)), want, "{path}");
    }
}

#[test]
fn query_strings_decode_like_nginx() {
    let q = Query::parse("size=2&tags=a%2Cb&x&offset=ab+c%3D%3D&tags=z&bad=%zz");
    assert_eq!(q.first("size"), Some("2"));
    assert_eq!(q.first("tags"), Some("a,b"));
    assert_eq!(q.all("tags").collect::<Vec<_>>(), ["a,b", "z"]);
    assert_eq!(q.first("x"), Some(""));
    assert_eq!(q.first("offset"), Some("ab c=="));
    assert_eq!(q.first("bad"), Some("%zz"));
    assert_eq!(q.first("missing"), None);
    assert_eq!(percent_decode("a+b%2B", false), b"a+b+");
    assert_eq!(escape_uri("a b/c=+~"), "a%20b%2Fc%3D%2B~");
}

#[test]
fn json_content_types() {
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/problem+json",
    ] {
        assert!(is_json(ct), "{ct}");
    }
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
    ] {
        assert!(!is_json(ct), "{ct}");
    }
}

#[test]
fn size_follows_lua_tonumber_and_kong_bounds() {
    for (raw, want) in [
        ("1", 1),
        ("1000", 1000),
        (" 7 ", 7),
        ("1e2", 100),
        ("10.0", 10),
        ("0x10", 16),
    ] {
        assert_eq!(parse_size(raw).unwrap(), want, "{raw}");
    }
    let range = "size must be an integer between 1 and 1000";
    for (raw, msg) in [
        ("abc", "size must be a number"),
        ("", "size must be a number"),
        ("inf", "size must be a number"),
        ("nan", "size must be a number"),
        ("0", range),
        ("-1", range),
        ("1001", range),
        ("1.5", range),
    ] {
        let e = parse_size(raw).unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"code": 9, "name": "invalid size", "message": msg}),
            "{raw}"
        );
    }
}

#[test]
fn tag_filters_follow_kong_regexes() {
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(parse_tags("a").unwrap(), TagFilter::All(v(&["a"])));
    assert_eq!(parse_tags("a,b").unwrap(), TagFilter::All(v(&["a", "b"])));
    assert_eq!(parse_tags("a,b,").unwrap(), TagFilter::All(v(&["a", "b"])));
    assert_eq!(parse_tags("a/b").unwrap(), TagFilter::Any(v(&["a", "b"])));
    assert_eq!(
        parse_tags("é x/ü").unwrap(),
        TagFilter::Any(v(&["é x", "ü"]))
    );
    for bad in ["", ",", "a,,b", ",a", "a,b/c", "a\tb", "/a"] {
        let e = parse_tags(bad).unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"code": 11, "name": "invalid options",
                   "message": "invalid option (tags: invalid filter syntax)",
                   "options": {"tags": "invalid filter syntax"}}),
            "{bad:?}"
        );
    }
    assert!(parse_tags("1,2,3,4,5").is_ok());
    let e = parse_tags("1/2/3/4/5/6").unwrap_err();
    assert_eq!(
        e.message,
        "invalid option (tags: cannot query more than 5 tags)"
    );
}

#[test]
fn tag_filter_semantics() {
    let tags = vec!["a".to_string(), "b".to_string()];
    let all = |xs: &[&str]| TagFilter::All(xs.iter().map(|x| x.to_string()).collect());
    let any = |xs: &[&str]| TagFilter::Any(xs.iter().map(|x| x.to_string()).collect());
    assert!(all(&["a", "b"]).matches(Some(&tags)));
    assert!(!all(&["a", "c"]).matches(Some(&tags)));
    assert!(any(&["c", "b"]).matches(Some(&tags)));
    assert!(!any(&["c", "d"]).matches(Some(&tags)));
    assert!(!any(&["a"]).matches(None));
}

#[test]
fn offsets_round_trip_and_reject_garbage() {
    let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let token = encode_offset(id);
    assert_eq!(decode_offset(&token).unwrap(), id);
    // What an unescaped `+` turns into in a query string.
    assert_eq!(decode_offset(&token.replace('+', " ")).unwrap(), id);
    let msg = |t: &str| decode_offset(t).unwrap_err().to_json();
    assert_eq!(
        msg("!!!"),
        json!({"code": 7, "name": "invalid offset",
               "message": "'!!!' is not a valid offset: bad base64 encoding"})
    );
    // base64 of `hello`
    assert_eq!(
        msg("aGVsbG8=")["message"],
        "'aGVsbG8=' is not a valid offset: bad json encoding"
    );
    // base64 of `["x"]`
    assert_eq!(
        msg("WyJ4Il0=")["message"],
        "'WyJ4Il0=' is not a valid offset: not an offset of this listing"
    );
}

#[test]
fn member_bodies() {
    assert_eq!(
        parse_member(&json!({"id": 4, "address": "10.0.0.4:8007"})),
        Ok((4, "10.0.0.4:8007".to_string()))
    );
    assert_eq!(
        parse_member(&json!({"id": 4, "address": "[::1]:8007"})),
        Ok((4, "[::1]:8007".to_string()))
    );
    for bad in [
        json!([]),
        json!({"address": "a:1"}),
        json!({"id": -1, "address": "a:1"}),
        json!({"id": "4", "address": "a:1"}),
        json!({"id": 4}),
        json!({"id": 4, "address": "nohost"}),
        json!({"id": 4, "address": ":80"}),
        json!({"id": 4, "address": "a:99999"}),
        json!({"id": 4, "address": "a:1", "voter": true}),
    ] {
        assert!(parse_member(&bad).is_err(), "{bad}");
    }
}

// === forms ===

fn form(body: &str) -> serde_json::Value {
    decode(urlencoded(body.as_bytes()))
}

#[test]
fn form_names_follow_kong_syntax() {
    assert_eq!(
        form("name=svc&host=a.example&port=80"),
        json!({"name": "svc", "host": "a.example", "port": "80"})
    );
    // Nesting with dots, as `config.minute=5` and `service.id=…`.
    assert_eq!(
        form("config.minute=5&config.policy=local&service.id=x"),
        json!({"config": {"minute": "5", "policy": "local"}, "service": {"id": "x"}})
    );
    // Arrays: `[]` appends, `[n]` places, a repeated name collects.
    assert_eq!(
        form("paths[]=/a&paths[]=/b"),
        json!({"paths": ["/a", "/b"]})
    );
    assert_eq!(
        form("paths[2]=/b&paths[1]=/a"),
        json!({"paths": ["/a", "/b"]})
    );
    assert_eq!(
        form("hosts=a&hosts=b&hosts=c"),
        json!({"hosts": ["a", "b", "c"]})
    );
    assert_eq!(
        form("config.add.headers[]=x:1&config.add.headers[]=y:2"),
        json!({"config": {"add": {"headers": ["x:1", "y:2"]}}})
    );
    // Percent-decoding and `+` as a space, in names and values.
    assert_eq!(
        form("tags%5B%5D=a+b&tags%5B%5D=c%2Cd"),
        json!({"tags": ["a b", "c,d"]})
    );
    // An empty value is `null` (Kong's `infer`), so a form can clear a field.
    assert_eq!(form("path=&name=x"), json!({"path": null, "name": "x"}));
    // A name that starts or ends with a dot is taken as it is.
    assert_eq!(form(".a=1&b.=2"), json!({".a": "1", "b.": "2"}));
    assert_eq!(form(""), json!({}));
}

#[test]
fn multipart_parts_become_fields() {
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nsvc\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"paths[]\"\r\n\r\n/a\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"paths[]\"\r\n\r\n/b\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"cert\"; filename=\"c.pem\"\r\n\
                Content-Type: application/x-pem-file\r\n\r\nline1\r\nline2\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"config\"\r\n\
                Content-Type: application/json\r\n\r\n{\"minute\": 5}\r\n\
                --XyZ--\r\n";
    let parts = multipart(body.as_bytes(), "multipart/form-data; boundary=XyZ").unwrap();
    assert_eq!(
        decode(parts),
        json!({"name": "svc", "paths": ["/a", "/b"], "cert": "line1\r\nline2",
               "config": {"minute": 5}})
    );
    // A quoted boundary.
    let quoted = "--b c\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b c--";
    let parts = multipart(quoted.as_bytes(), "multipart/form-data; boundary=\"b c\"").unwrap();
    assert_eq!(decode(parts), json!({"x": "1"}));

    for (body, ct, why) in [
        (
            "x",
            "multipart/form-data",
            "no boundary in the Content-Type",
        ),
        (
            "nothing here",
            "multipart/form-data; boundary=q",
            "no part delimiter",
        ),
        (
            "--q\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunclosed",
            "multipart/form-data; boundary=q",
            "the last part is not closed",
        ),
    ] {
        assert_eq!(multipart(body.as_bytes(), ct).unwrap_err(), why, "{body:?}");
    }
    let binary = b"--q\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\xff\xfe\r\n--q--";
    assert_eq!(
        multipart(binary, "multipart/form-data; boundary=q").unwrap_err(),
        "part 'x' is not UTF-8 text"
    );
}

#[test]
fn forms_take_the_types_the_schema_expects() {
    let mut svc = form("name=123&host=a.example&port=8080&retries=0x10&enabled=false&tags=one");
    coerce(Service, &mut svc, None);
    assert_eq!(
        svc,
        json!({"name": "123", "host": "a.example", "port": 8080, "retries": 16,
               "enabled": false, "tags": ["one"]})
    );

    // Plugin configs by the plugin's own schema; numbers stay numbers, set items too.
    let mut plugin = form("name=rate-limiting&config.minute=5&config.hour=1.5&config.fault_tolerant=true&protocols=http");
    coerce(Plugin, &mut plugin, None);
    assert_eq!(
        plugin,
        json!({"name": "rate-limiting", "protocols": ["http"],
               "config": {"minute": 5, "hour": 1.5, "fault_tolerant": true}})
    );

    // Items of an integer array, after the lone value became an array.
    let mut up = form("name=u&healthchecks.active.healthy.http_statuses=200");
    coerce(Upstream, &mut up, None);
    assert_eq!(
        up["healthchecks"]["active"]["healthy"]["http_statuses"],
        json!([200])
    );

    // What does not convert stays as it was, for the write to refuse with Kong's message.
    let mut bad = form("host=a.example&port=eighty&enabled=yes");
    coerce(Service, &mut bad, None);
    assert_eq!(
        bad,
        json!({"host": "a.example", "port": "eighty", "enabled": "yes"})
    );

    // A PATCH body is judged merged into the stored entity: here the plugin's name.
    let stored = json!({"name": "rate-limiting", "config": {"minute": 1}});
    let mut patch = form("config.second=2");
    coerce(Plugin, &mut patch, Some(&stored));
    assert_eq!(patch, json!({"config": {"second": 2}}));
}

#[test]
fn endpoints_are_kong_shaped_and_sorted() {
    let all = endpoints();
    for path in [
        "/services",
        "/services/{services}",
        "/services/{services}/routes/{routes}",
        "/services/{services}/plugins",
        "/routes/{routes}/service",
        "/consumers/{consumers}/key-auth/{keyauth_credentials}",
        "/key-auths/{keyauth_credentials}/consumer",
        "/upstreams/{upstreams}/targets/{targets}",
        "/certificates/{certificates}/snis",
        "/snis/{snis}/certificate",
        "/schemas/plugins/{name}",
        "/config",
    ] {
        assert!(all.iter().any(|p| p == path), "{path} missing");
    }
    assert!(!all.iter().any(|p| p.starts_with("/targets")));
    // `/` sorts below every character, so `/services/…` comes before `/services_x`.
    let pos = |p: &str| all.iter().position(|x| x == p).unwrap();
    assert!(pos("/services/{services}/routes") < pos("/snis"));
    assert!(pos("/plugins") < pos("/plugins/enabled"));
    let mut dedup = all.clone();
    dedup.dedup();
    assert_eq!(dedup, all);
}

#[test]
fn whole_numbers_go_out_as_integers_as_cjson_writes_them() {
    let mut v = json!({
        "timeout": 1.0,
        "nested": [{"ratio": 0.5}, 2.0, -3.0, 7],
        "huge": 1e300,
        "name": "1.0",
    });
    integral_floats_as_integers(&mut v);
    assert_eq!(serde_json::to_string(&v["timeout"]).unwrap(), "1");
    assert_eq!(
        serde_json::to_string(&v["nested"]).unwrap(),
        r#"[{"ratio":0.5},2,-3,7]"#
    );
    // Beyond 2^53 a double is left as it is.
    assert!(v["huge"].is_f64());
    assert_eq!(v["name"], json!("1.0"));
}
