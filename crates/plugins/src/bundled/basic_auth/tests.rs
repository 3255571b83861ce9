use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::bundled::key_auth::tests::{consumers, header, new_cx, plugin, req, run, CREATED};

const DOC: &str = r#"
_format_version: "3.0"
consumers:
  - username: bob
    basicauth_credentials:
      - username: bob
        password: kong
      - username: colon
        password: "pass:word"
  - username: anon
"#;

fn basic(user_pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

#[test]
fn header_values_parse_as_kongs_regexes_match_them() {
    let b64 = |s: &str| STANDARD.encode(s);
    let cases: Vec<(String, Option<(&str, &str)>)> = vec![
        (basic("bob:kong"), Some(("bob", "kong"))),
        (format!("basic {}", b64("bob:kong")), Some(("bob", "kong"))),
        (
            format!("Basic    {}", b64("bob:kong")),
            Some(("bob", "kong")),
        ),
        // Only the first letter's case varies.
        (format!("BASIC {}", b64("bob:kong")), None),
        // Unanchored: found after other text.
        (
            format!("x Basic {}", b64("bob:kong")),
            Some(("bob", "kong")),
        ),
        (basic("user:pass:word"), Some(("user", "pass:word"))),
        (basic("user:"), Some(("user", ""))),
        (basic(":a:b"), Some(("a", "b"))),
        (basic(":nouser"), None),
        (basic("nocolon"), None),
        (basic("user:line\nnext"), Some(("user", "line"))),
        ("Basic".to_string(), None),
        ("Basic !!!".to_string(), None),
        // Unpadded base64 decodes, as nginx's decoder allows.
        (
            format!("Basic {}", b64("bob:kong").trim_end_matches('=')),
            Some(("bob", "kong")),
        ),
        ("Bearer abc".to_string(), None),
    ];
    for (value, want) in cases {
        let got = parse(value.as_bytes());
        assert_eq!(
            got.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            want,
            "{value:?}"
        );
    }
}

#[tokio::test]
async fn valid_credentials_authenticate_with_the_username_as_identifier() {
    let c = consumers(DOC);
    let p = plugin("basic-auth", serde_json::json!({}));
    for (h, user) in [
        ("authorization", "bob:kong"),
        ("proxy-authorization", "bob:kong"),
        ("authorization", "colon:pass:word"),
    ] {
        let mut cx = new_cx(&c, CREATED as f64);
        let mut r = req("GET", "/", &[(h, &basic(user))], "");
        run(&*p, &mut cx, &mut r).await.unwrap();
        let username = user.split(':').next().unwrap();
        let cred = c.basic(username).unwrap();
        assert_eq!(cx.credential.as_ref().unwrap().id, cred.id);
        assert_eq!(header(&r, "x-credential-identifier"), Some(username));
        assert_eq!(header(&r, "x-consumer-username"), Some("bob"));
        // Not hidden by default.
        assert!(r.headers.contains_key(h));
    }
}

#[tokio::test]
async fn failures_are_401_with_the_configured_realm() {
    let c = consumers(DOC);
    for (config, challenge) in [
        (serde_json::json!({}), "Basic realm=\"service\""),
        (serde_json::json!({"realm": "kong"}), "Basic realm=\"kong\""),
    ] {
        let p = plugin("basic-auth", config);
        for headers in [
            vec![],
            vec![("authorization", basic("bob:wrong"))],
            vec![("authorization", basic("nobody:kong"))],
            vec![("authorization", "Basic !!!".to_string())],
            vec![("authorization", "Bearer x".to_string())],
            // A proxy header naming nobody falls back to an absent Authorization.
            vec![("proxy-authorization", basic("nobody:x"))],
        ] {
            let mut cx = new_cx(&c, CREATED as f64);
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut r = req("GET", "/", &h, "");
            let (s, m, hs) = run(&*p, &mut cx, &mut r).await.unwrap_err();
            assert_eq!((s, m.as_str()), (401, "Unauthorized"), "{headers:?}");
            assert_eq!(hs.get("www-authenticate").unwrap(), challenge);
        }
    }
}

#[tokio::test]
async fn the_proxy_header_is_tried_first_then_authorization() {
    let c = consumers(DOC);
    let p = plugin("basic-auth", serde_json::json!({}));
    // The proxy header names nobody: Authorization decides.
    let mut cx = new_cx(&c, CREATED as f64);
    let (a, pa) = (basic("bob:kong"), basic("nobody:x"));
    let mut r = req(
        "GET",
        "/",
        &[("authorization", &a), ("proxy-authorization", &pa)],
        "",
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    // The proxy header names a credential with a wrong password: refused, whatever
    // Authorization holds.
    let mut cx = new_cx(&c, CREATED as f64);
    let pa = basic("bob:wrong");
    let mut r = req(
        "GET",
        "/",
        &[("authorization", &a), ("proxy-authorization", &pa)],
        "",
    );
    assert!(run(&*p, &mut cx, &mut r).await.is_err());
}

#[tokio::test]
async fn hidden_credentials_leave_the_request() {
    let c = consumers(DOC);
    let p = plugin("basic-auth", serde_json::json!({"hide_credentials": true}));
    let mut cx = new_cx(&c, CREATED as f64);
    let (a, pa) = (basic("bob:kong"), basic("nobody:x"));
    let mut r = req(
        "GET",
        "/",
        &[("authorization", &a), ("proxy-authorization", &pa)],
        "",
    );
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "authorization"), None);
    assert_eq!(header(&r, "proxy-authorization"), None);
}

#[tokio::test]
async fn anonymous_and_a_missing_anonymous() {
    let c = consumers(DOC);
    let p = plugin("basic-auth", serde_json::json!({"anonymous": "anon"}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-consumer-username"), Some("anon"));
    assert_eq!(header(&r, "x-anonymous-consumer"), Some("true"));

    let p = plugin("basic-auth", serde_json::json!({"anonymous": "ghost"}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[], "");
    let (s, m, _) = run(&*p, &mut cx, &mut r).await.unwrap_err();
    assert_eq!(s, 500);
    assert_eq!(
        m,
        "anonymous consumer ghost is configured but doesn't exist"
    );
}
