//! key-auth against a consumers index built from a declarative config; the helpers are
//! shared by the other auth plugins' tests.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_model::plugins::PluginConfig;
use tidegate_state::{Command, Machine, Op};
use uuid::Uuid;

use super::*;
use crate::body::RequestBody;
use crate::bundled::testing;
use crate::consumers::Consumers;
use crate::phase::ExitBody;
use crate::registry::Registry;

/// When the test configs are imported: credentials are created at this second.
pub(crate) const CREATED: i64 = 1_700_000_000;

/// The consumers and credentials of a declarative config.
pub(crate) fn consumers(doc: &str) -> Consumers {
    let parsed = declarative::parse(
        doc,
        ParseOptions {
            now: CREATED,
            entropy: 1,
        },
    )
    .unwrap_or_else(|e| panic!("bad test config: {e:?}"));
    let mut m = Machine::new();
    let (outcome, _) = m.execute(&Command {
        request_id: Uuid::from_u128(1),
        fixed: tidegate_model::Fixed {
            id: Uuid::from_u128(2),
            now: CREATED,
            entropy: 1,
        },
        op: Op::Import {
            entities: parsed.entities,
        },
    });
    outcome.unwrap_or_else(|e| panic!("import refused: {e:?}"));
    Consumers::rebuild(&m.config)
}

/// An instance of bundled plugin `name` with `config`.
pub(crate) fn plugin(name: &str, config: serde_json::Value) -> Arc<dyn Plugin> {
    let c = PluginConfig::read(name, Some(&config))
        .expect("a bundled plugin")
        .unwrap_or_else(|e| panic!("bad {name} config: {e:?}"));
    Registry::bundled()
        .get(name)
        .expect("registered")
        .build(&c, &Runtime::new())
        .unwrap_or_else(|e| panic!("{name} not built: {e}"))
}

pub(crate) fn new_cx(consumers: &Consumers, now: f64) -> Ctx<'_> {
    Ctx::new(
        "req-1",
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        crate::Protocol::Http,
        consumers,
        now,
    )
}

/// A request to `target` (path and query) with `headers` and an optional body.
pub(crate) fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Req {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Req {
        method: method.parse().unwrap(),
        path,
        query,
        headers: testing::headers(headers),
        body: RequestBody::stream(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed_unsync(),
        ),
        upstream_path: None,
    }
}

/// Runs the access phase; `Err` is the exit's status, message and headers.
pub(crate) async fn run(
    p: &dyn Plugin,
    cx: &mut Ctx<'_>,
    req: &mut Req,
) -> Result<(), (u16, String, HeaderMap)> {
    match testing::access(p, cx, req).await {
        Flow::Continue => Ok(()),
        Flow::Exit(e) => Err((
            e.status.as_u16(),
            match e.body {
                ExitBody::Error(m) => m,
                other => format!("{other:?}"),
            },
            e.headers,
        )),
    }
}

pub(crate) fn header<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.headers.get(name).map(|v| v.to_str().unwrap())
}

pub(crate) async fn body(req: &mut Req) -> String {
    String::from_utf8(req.body.read(1 << 20).await.unwrap().to_vec()).unwrap()
}

const DOC: &str = r#"
_format_version: "3.0"
consumers:
  - username: alice
    custom_id: a-1
    keyauth_credentials:
      - key: alice-key
      - key: short-lived
        ttl: 60
  - username: anon
  - custom_id: only-custom
    keyauth_credentials:
      - key: custom-key
"#;

fn alice(c: &Consumers) -> Arc<ConsumerInfo> {
    c.find("alice").unwrap().clone()
}

#[tokio::test]
async fn a_key_in_a_header_authenticates_and_the_upstream_learns_who() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "GET",
        "/",
        &[("apikey", "alice-key"), ("x-anonymous-consumer", "true")],
        "",
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    let cred = c.key("alice-key").unwrap();
    assert_eq!(cx.consumer.as_ref().unwrap().id, alice(&c).id);
    assert_eq!(
        cx.credential,
        Some(Credential {
            id: cred.id,
            identifier: cred.id.to_string()
        })
    );
    assert_eq!(
        header(&r, "x-consumer-id"),
        Some(&*alice(&c).id.to_string())
    );
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(header(&r, "x-consumer-custom-id"), Some("a-1"));
    assert_eq!(
        header(&r, "x-credential-identifier"),
        Some(&*cred.id.to_string())
    );
    // A client cannot pass itself off as anonymous (or anyone else).
    assert_eq!(header(&r, "x-anonymous-consumer"), None);
    // Not hidden by default.
    assert_eq!(header(&r, "apikey"), Some("alice-key"));
}

#[tokio::test]
async fn a_consumer_without_username_gets_no_username_header() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "GET",
        "/",
        &[("apikey", "custom-key"), ("x-consumer-username", "forged")],
        "",
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), None);
    assert_eq!(header(&r, "x-consumer-custom-id"), Some("only-custom"));
}

/// (config, target, headers, the exit: status, message, WWW-Authenticate).
type RefusalCase<'a> = (
    serde_json::Value,
    &'a str,
    &'a [(&'a str, &'a str)],
    (u16, &'a str, Option<&'a str>),
);

#[tokio::test]
async fn refusals_carry_kongs_messages_and_challenge() {
    let c = consumers(DOC);
    let cases: &[RefusalCase] = &[
        (
            serde_json::json!({}),
            "/",
            &[],
            (401, "No API key found in request", Some("Key")),
        ),
        (
            serde_json::json!({"realm": "kong"}),
            "/",
            &[],
            (
                401,
                "No API key found in request",
                Some("Key realm=\"kong\""),
            ),
        ),
        (
            serde_json::json!({}),
            "/",
            &[("apikey", "nope")],
            (401, "Unauthorized", Some("Key")),
        ),
        (
            serde_json::json!({}),
            "/",
            &[("apikey", "alice-key"), ("apikey", "alice-key")],
            (401, "Duplicate API key found", Some("Key")),
        ),
        (
            serde_json::json!({}),
            "/?apikey=a&apikey=b",
            &[],
            (401, "Duplicate API key found", Some("Key")),
        ),
        // An empty key stops the search and is no key.
        (
            serde_json::json!({}),
            "/?apikey=",
            &[],
            (401, "No API key found in request", Some("Key")),
        ),
        // `?apikey` without a value is not a string: skipped.
        (
            serde_json::json!({}),
            "/?apikey",
            &[],
            (401, "No API key found in request", Some("Key")),
        ),
        (
            serde_json::json!({"key_in_header": false}),
            "/",
            &[("apikey", "alice-key")],
            (401, "No API key found in request", Some("Key")),
        ),
        (
            serde_json::json!({"key_in_query": false}),
            "/?apikey=alice-key",
            &[],
            (401, "No API key found in request", Some("Key")),
        ),
    ];
    for (config, target, headers, (status, msg, challenge)) in cases {
        let p = plugin("key-auth", config.clone());
        let mut cx = new_cx(&c, CREATED as f64);
        let mut r = req("GET", target, headers, "");
        let (s, m, h) = run(&*p, &mut cx, &mut r)
            .await
            .expect_err(&format!("{config} {target} {headers:?} refused"));
        assert_eq!(
            (s, m.as_str()),
            (*status, *msg),
            "{config} {target} {headers:?}"
        );
        assert_eq!(
            h.get("www-authenticate").map(|v| v.to_str().unwrap()),
            *challenge,
            "{config} {target}"
        );
        assert!(cx.consumer.is_none());
    }
}

#[tokio::test]
async fn key_names_are_searched_in_order_header_then_query_per_name() {
    let c = consumers(DOC);
    let p = plugin(
        "key-auth",
        serde_json::json!({"key_names": ["first", "second"]}),
    );
    let mut cx = new_cx(&c, CREATED as f64);
    // `first` in the query wins over `second` in a header.
    let mut r = req("GET", "/?first=alice-key", &[("second", "custom-key")], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    // Header names are case-insensitive; `_` in a key name matches `-` in a header.
    let p = plugin("key-auth", serde_json::json!({"key_names": ["Api_Key"]}));
    let mut cx2 = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[("api-key", "alice-key")], "");
    run(&*p, &mut cx2, &mut r).await.unwrap();
    assert!(cx2.consumer.is_some());
}

#[tokio::test]
async fn query_keys_are_decoded_and_hidden_leaving_the_rest() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({"hide_credentials": true}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/?a=1&api%6bey=alice%2Dkey&b=x+y", &[], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(r.query.as_deref(), Some("a=1&b=x+y"));

    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/?apikey=alice-key", &[("apikey", "alice-key")], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(r.query, None);
    assert_eq!(header(&r, "apikey"), None);
}

#[tokio::test]
async fn a_key_past_its_ttl_is_refused() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({}));
    for (now, ok) in [
        (CREATED, true),
        (CREATED + 59, true),
        (CREATED + 60, false),
        (CREATED + 3600, false),
    ] {
        let mut cx = new_cx(&c, now as f64);
        let mut r = req("GET", "/", &[("apikey", "short-lived")], "");
        let got = run(&*p, &mut cx, &mut r).await;
        match ok {
            true => assert!(got.is_ok(), "at +{}", now - CREATED),
            false => assert_eq!(
                got.map_err(|(s, m, _)| (s, m)),
                Err((401, "Unauthorized".to_string())),
                "at +{}",
                now - CREATED
            ),
        }
    }
}

#[tokio::test]
async fn anonymous_takes_over_when_authentication_fails() {
    let c = consumers(DOC);
    let anon = c.find("anon").unwrap().clone();
    for anonymous in ["anon".to_string(), anon.id.to_string()] {
        let p = plugin("key-auth", serde_json::json!({"anonymous": anonymous}));
        let mut cx = new_cx(&c, CREATED as f64);
        let mut r = req(
            "GET",
            "/",
            &[("apikey", "wrong"), ("x-credential-identifier", "x")],
            "",
        );
        run(&*p, &mut cx, &mut r).await.unwrap();
        assert_eq!(cx.consumer.as_ref().unwrap().id, anon.id);
        assert_eq!(cx.credential, None);
        assert_eq!(header(&r, "x-anonymous-consumer"), Some("true"));
        assert_eq!(header(&r, "x-consumer-username"), Some("anon"));
        assert_eq!(header(&r, "x-credential-identifier"), None);
    }
    // A valid key still authenticates as its consumer.
    let p = plugin("key-auth", serde_json::json!({"anonymous": "anon"}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[("apikey", "alice-key")], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(header(&r, "x-anonymous-consumer"), None);
}

#[tokio::test]
async fn an_anonymous_consumer_that_does_not_exist_is_a_500() {
    let c = consumers(DOC);
    let ghost = Uuid::from_u128(0xdead);
    let p = plugin(
        "key-auth",
        serde_json::json!({"anonymous": ghost.to_string()}),
    );
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[], "");
    let (s, m, _) = run(&*p, &mut cx, &mut r).await.unwrap_err();
    assert_eq!(s, 500);
    assert_eq!(
        m,
        format!("anonymous consumer {ghost} is configured but doesn't exist")
    );
}

#[tokio::test]
async fn with_anonymous_an_earlier_credential_is_enough() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({"anonymous": "anon"}));
    let mut cx = new_cx(&c, CREATED as f64);
    cx.authenticate(
        alice(&c),
        Some(Credential {
            id: Uuid::from_u128(9),
            identifier: "from-basic-auth".into(),
        }),
    );
    let mut r = req("GET", "/", &[], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(
        cx.credential.as_ref().unwrap().identifier,
        "from-basic-auth"
    );
    assert_eq!(header(&r, "x-anonymous-consumer"), None);
}

#[tokio::test]
async fn preflight_requests_pass_when_told_to() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({"run_on_preflight": false}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("OPTIONS", "/", &[], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert!(cx.consumer.is_none());
    let mut r = req("GET", "/", &[], "");
    assert!(run(&*p, &mut cx, &mut r).await.is_err());
}

#[tokio::test]
async fn keys_in_form_and_json_bodies_are_found_and_hidden() {
    let c = consumers(DOC);
    let p = plugin(
        "key-auth",
        serde_json::json!({"key_in_body": true, "hide_credentials": true}),
    );
    let form = "a=1&apikey=alice-key&b=2";
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "POST",
        "/",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", &form.len().to_string()),
        ],
        form,
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(body(&mut r).await, "a=1&b=2");
    assert_eq!(header(&r, "content-length"), Some("7"));

    let json = r#"{"z":1,"apikey":"custom-key","a":[1]}"#;
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "POST",
        "/",
        &[("content-type", "application/json; charset=utf-8")],
        json,
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-custom-id"), Some("only-custom"));
    assert_eq!(body(&mut r).await, r#"{"z":1,"a":[1]}"#);

    // Found in a header, the key still leaves the body when hidden.
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "POST",
        "/",
        &[
            ("apikey", "alice-key"),
            ("content-type", "application/json"),
        ],
        r#"{"apikey":"other","keep":true}"#,
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("alice"));
    assert_eq!(body(&mut r).await, r#"{"keep":true}"#);
}

#[tokio::test]
async fn body_values_kong_does_not_take_as_a_key() {
    let c = consumers(DOC);
    let p = plugin("key-auth", serde_json::json!({"key_in_body": true}));
    let cases = [
        (
            "application/json",
            r#"{"apikey":["a","b"]}"#,
            "Duplicate API key found",
        ),
        (
            "application/json",
            r#"{"apikey":12}"#,
            "No API key found in request",
        ),
        (
            "application/json",
            "not json",
            "No API key found in request",
        ),
        (
            "text/plain",
            "apikey=alice-key",
            "No API key found in request",
        ),
        (
            "application/x-www-form-urlencoded",
            "apikey=a&apikey=b",
            "Duplicate API key found",
        ),
    ];
    for (ct, b, msg) in cases {
        let mut cx = new_cx(&c, CREATED as f64);
        let mut r = req("POST", "/", &[("content-type", ct)], b);
        let (s, m, _) = run(&*p, &mut cx, &mut r).await.unwrap_err();
        assert_eq!((s, m.as_str()), (401, msg), "{ct} {b}");
    }
    // A body that is not searched stays streaming, untouched.
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req(
        "POST",
        "/",
        &[("content-type", "text/plain"), ("apikey", "alice-key")],
        "x",
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert!(r.body.buffered().is_none());
}

#[test]
fn percent_decoding_keeps_malformed_escapes() {
    for (input, want) in [
        ("a%20b", "a b"),
        ("a+b", "a b"),
        ("%41%4a%4A", "AJJ"),
        ("100%", "100%"),
        ("%zz", "%zz"),
        ("%4", "%4"),
    ] {
        assert_eq!(
            String::from_utf8(percent_decode(input)).unwrap(),
            want,
            "{input}"
        );
    }
}
