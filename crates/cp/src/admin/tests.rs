//! Unit tests of the pure parts: paths, query strings, list arguments, member bodies.
//! The HTTP behaviour is tested end to end in `tests/admin_http.rs`.

use serde_json::json;
use tidegate_model::EntityKind::{Route, Service};
use uuid::Uuid;

use super::cluster::parse_member;
use super::pagination::{decode_offset, encode_offset, parse_size, parse_tags, TagFilter};
use super::request::{escape_uri, is_json, percent_decode, raw_segments, Query};
use super::routing::Target;

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
        // Not served yet, or not Kong paths at all.
        ("/consumers", None),
        ("/services/s1/plugins", None),
        ("/services/s1/client_certificate", None),
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
