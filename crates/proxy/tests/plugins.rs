//! The bundled plugins end to end, with Kong's status codes, bodies and headers: a real
//! proxy, real upstreams that echo what they got, a real client.

mod support;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Frame};
use hyper::Request;
use serde_json::{json, Value};
use support::*;

/// One service on `up` with `routes` (each `{name, paths, plugins?}`), and global
/// `plugins`.
fn doc(up: &Upstream, routes: Value, plugins: Value) -> String {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": "s",
            "url": format!("http://127.0.0.1:{}", up.port()),
            "routes": routes,
        }],
        "plugins": plugins,
    })
    .to_string()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// A body sent in chunks with no length known up front: it goes out chunked.
struct Chunked(VecDeque<Bytes>);

impl Chunked {
    fn new(total: usize, chunk: usize) -> Chunked {
        Chunked(
            vec![b'x'; total]
                .chunks(chunk)
                .map(Bytes::copy_from_slice)
                .collect(),
        )
    }
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A chunked POST of `total` bytes in chunks of `chunk`. Over a limit, the proxy stops
/// reading at the chunk that crosses it; tests keep what follows that chunk small, so
/// the proxy drains it and closes cleanly rather than resetting a connection whose
/// response the client has not read yet.
fn chunked(path: &str, total: usize, chunk: usize) -> Request<Chunked> {
    Request::post(path)
        .header("host", "test")
        .body(Chunked::new(total, chunk))
        .unwrap()
}

/// Kong's `kong.response.error` answer.
fn assert_kong_error(r: &Reply, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(body["message"], message);
    assert_eq!(
        body["request_id"].as_str(),
        r.header("x-tidegate-request-id"),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}

fn all<'r>(r: &'r Reply, name: &str) -> Vec<&'r str> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The upstream's echo of every value of request header `name`.
fn upstream_all(r: &Reply, name: &str) -> Vec<String> {
    r.json()["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

const CORS_HEADERS: [&str; 7] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
    "vary",
];

// === cors ===

#[tokio::test]
async fn cors_preflight_is_answered_with_kongs_headers() {
    let up = Upstream::start("u", Mode::Echo).await;
    let cors = json!({
        "name": "cors",
        "config": {
            "origins": ["http://a.test", "https://(.*\\.)?b\\.test"],
            "methods": ["GET", "POST"],
            "headers": ["x-a", "x-b"],
            "exposed_headers": ["x-e"],
            "credentials": true,
            "max_age": 3600,
        },
    });
    let routes = json!([{"name": "r", "paths": ["/"], "plugins": [cors]}]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;

    let preflight = |origin: &'static str| {
        request(
            "OPTIONS",
            "/x",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-ignored"),
            ],
            "",
        )
    };
    let r = send(h.http, preflight("http://a.test")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.test")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-a,x-b"));
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert_eq!(r.header("access-control-expose-headers"), None);

    // A regex origin is echoed normalised; one that matches nothing gets no ACAO.
    let r = send(h.http, preflight("https://x.b.test:443")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://x.b.test")
    );
    let r = send(h.http, preflight("http://evil.test")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "preflights are answered by the proxy"
    );

    // Other requests reach the upstream and get the response headers.
    let r = send(
        h.http,
        request("GET", "/x", &[("origin", "https://b.test")], ""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("u"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://b.test")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("x-e"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(all(&r, "vary"), ["Origin"]);
    assert_eq!(r.header("access-control-allow-methods"), None);
    assert_eq!(r.header("access-control-max-age"), None);

    let r = send(
        h.http,
        request("GET", "/x", &[("origin", "http://a.test.evil.test")], ""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-expose-headers"), Some("x-e"));
    h.stop().await;
}

#[tokio::test]
async fn cors_defaults_preflight_continue_and_other_plugins_exits() {
    let up = Upstream::start("u", Mode::Echo).await;
    let routes = json!([
        {"name": "defaults", "paths": ["/defaults"], "plugins": [{"name": "cors"}]},
        {"name": "continue", "paths": ["/continue"], "plugins": [
            {"name": "cors", "config": {"preflight_continue": true, "origins": ["http://a.test"]}},
        ]},
        {"name": "denied", "paths": ["/denied"], "plugins": [
            {"name": "cors"},
            {"name": "ip-restriction", "config": {"deny": ["127.0.0.1"]}},
        ]},
    ]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;

    let r = send(
        h.http,
        request(
            "OPTIONS",
            "/defaults",
            &[
                ("origin", "origin1.com"),
                ("access-control-request-method", "GET"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    for absent in &CORS_HEADERS[2..] {
        assert_eq!(r.header(absent), None, "{absent}");
    }

    // Passed on: the upstream answers the preflight, and no CORS header is added.
    let r = send(
        h.http,
        request(
            "OPTIONS",
            "/continue",
            &[
                ("origin", "http://a.test"),
                ("access-control-request-method", "GET"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["method"], "OPTIONS");
    for absent in CORS_HEADERS {
        assert_eq!(r.header(absent), None, "{absent}");
    }

    // A later plugin's refusal still carries the CORS headers.
    let r = send(
        h.http,
        request("GET", "/denied", &[("origin", "http://x.test")], ""),
    )
    .await;
    assert_kong_error(&r, 403, "IP address not allowed: 127.0.0.1");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
    h.stop().await;
}

// === ip-restriction ===

#[tokio::test]
async fn ip_restriction_over_ipv4_and_ipv6() {
    let up = Upstream::start("u", Mode::Echo).await;
    let ipr = |config: Value| json!([{"name": "ip-restriction", "config": config}]);
    let routes = json!([
        {"name": "deny-v4", "paths": ["/deny-v4"], "plugins": ipr(json!({"deny": ["127.0.0.0/8"]}))},
        {"name": "allow-v4", "paths": ["/allow-v4"], "plugins": ipr(json!({"allow": ["10.0.0.0/8", "127.0.0.1"]}))},
        {"name": "deny-v6", "paths": ["/deny-v6"], "plugins": ipr(json!({"deny": ["::/120"]}))},
        {"name": "allow-v6", "paths": ["/allow-v6"], "plugins": ipr(json!({"allow": ["::1/128"]}))},
        {"name": "custom", "paths": ["/custom"], "plugins": ipr(json!({"deny": ["127.0.0.1", "::1"], "status": 401, "message": "Go away"}))},
    ]);
    let h = Harness::with_ipv6(&doc(&up, routes, json!([]))).await;
    let v6 = h.http6.expect("listening on [::1]");
    let get = |path: &str| request("GET", path, &[], "");

    let r = send(h.http, get("/deny-v4")).await;
    assert_kong_error(&r, 403, "IP address not allowed: 127.0.0.1");
    assert_eq!(send(h.http, get("/allow-v4")).await.status, 200);
    let r = send(v6, get("/allow-v4")).await;
    assert_kong_error(&r, 403, "IP address not allowed: ::1");
    assert_eq!(send(v6, get("/deny-v4")).await.status, 200);

    let r = send(v6, get("/deny-v6")).await;
    assert_kong_error(&r, 403, "IP address not allowed: ::1");
    assert_eq!(send(h.http, get("/deny-v6")).await.status, 200);
    assert_eq!(send(v6, get("/allow-v6")).await.status, 200);
    let r = send(h.http, get("/allow-v6")).await;
    assert_kong_error(&r, 403, "IP address not allowed: 127.0.0.1");

    assert_kong_error(&send(h.http, get("/custom")).await, 401, "Go away");
    assert_kong_error(&send(v6, get("/custom")).await, 401, "Go away");
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        4,
        "refused requests never reach it"
    );
    h.stop().await;
}

// === request-size-limiting ===

#[tokio::test]
async fn request_size_limiting_with_and_without_content_length() {
    let up = Upstream::start("u", Mode::Echo).await;
    let rsl = |config: Value| json!([{"name": "request-size-limiting", "config": config}]);
    let routes = json!([
        {"name": "limit", "paths": ["/limit"], "plugins": rsl(json!({"allowed_payload_size": 10, "size_unit": "bytes"}))},
        {"name": "kb", "paths": ["/kb"], "plugins": rsl(json!({"allowed_payload_size": 1, "size_unit": "kilobytes"}))},
        {"name": "require", "paths": ["/require"], "plugins": rsl(json!({
            "allowed_payload_size": 10, "size_unit": "bytes", "require_content_length": true,
        }))},
    ]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;
    const TOO_LARGE: &str = "Request size limit exceeded";

    // With Content-Length.
    let r = send(h.http, request("POST", "/limit", &[], "12345678901")).await;
    assert_kong_error(&r, 413, TOO_LARGE);
    let r = send(h.http, request("POST", "/limit", &[], "1234567890")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "1234567890");
    let r = send(
        h.http,
        request(
            "POST",
            "/limit",
            &[("expect", "100-continue")],
            "12345678901",
        ),
    )
    .await;
    assert_kong_error(&r, 417, TOO_LARGE);
    let r = send(h.http, request("POST", "/kb", &[], &"x".repeat(1025))).await;
    assert_kong_error(&r, 413, TOO_LARGE);
    assert_eq!(
        send(h.http, request("POST", "/kb", &[], &"x".repeat(1024)))
            .await
            .status,
        200
    );

    // Chunked: the body is read and measured, and what was read goes upstream.
    let r = send_body(h.http, chunked("/limit", 11, 4)).await;
    assert_kong_error(&r, 413, TOO_LARGE);
    let r = send_body(h.http, chunked("/limit", 10, 4)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "x".repeat(10));
    let r = send_body(h.http, chunked("/kb", 1025, 1025)).await;
    assert_kong_error(&r, 413, TOO_LARGE);

    // require_content_length: chunked bodies are measured, no length at all is 411.
    let r = send(h.http, request("GET", "/require", &[], "")).await;
    assert_kong_error(&r, 411, "A valid Content-Length header is required");
    assert_eq!(
        send_body(h.http, chunked("/require", 10, 4)).await.status,
        200
    );
    let r = send_body(h.http, chunked("/require", 11, 4)).await;
    assert_kong_error(&r, 413, TOO_LARGE);
    assert_eq!(
        send(h.http, request("POST", "/require", &[], "1"))
            .await
            .status,
        200
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 5);
    h.stop().await;
}

// === request-transformer ===

#[tokio::test]
async fn request_transformer_as_the_upstream_sees_it() {
    let up = Upstream::start("u", Mode::Echo).await;
    let config = json!({
        "remove": {"headers": ["x-remove"], "querystring": ["drop"], "body": ["secret"]},
        "rename": {"headers": ["x-old:x-new"], "querystring": ["old:new"], "body": ["old:new"]},
        "replace": {
            "headers": ["x-rep:replaced"],
            "querystring": ["rep:R"],
            "body": ["rep:R"],
            "uri": "/replaced/path",
        },
        "add": {"headers": ["x-add:added", "x-keep:unused"], "querystring": ["add:a b"], "body": ["add:A"]},
        "append": {"headers": ["x-keep:second"], "querystring": ["app:2"], "body": ["app:2"]},
    });
    let routes = json!([
        {"name": "all", "paths": ["/all"], "plugins": [{"name": "request-transformer", "config": config}]},
        {"name": "form", "paths": ["/form"], "plugins": [{"name": "request-transformer", "config": {
            "http_method": "GET",
            "remove": {"body": ["drop"]},
            "add": {"body": ["add:x"]},
        }}]},
        {"name": "host", "paths": ["/host"], "plugins": [{"name": "request-transformer", "config": {
            "replace": {"headers": ["host:rewritten.test"]},
        }}]},
    ]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;

    let r = send(
        h.http,
        request(
            "POST",
            "/all?drop=1&old=o&rep=r&app=1&keep=%41",
            &[
                ("content-type", "application/json"),
                ("x-remove", "gone"),
                ("x-old", "moved"),
                ("x-rep", "original"),
                ("x-keep", "first"),
            ],
            r#"{"secret":"s","old":"o","rep":"r","app":"1","keep":true}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(
        echo["uri"],
        "/replaced/path?add=a%20b&app=1&app=2&keep=A&new=o&rep=R"
    );
    assert!(upstream_all(&r, "x-remove").is_empty());
    assert!(upstream_all(&r, "x-old").is_empty());
    assert_eq!(upstream_all(&r, "x-new"), ["moved"]);
    assert_eq!(upstream_all(&r, "x-rep"), ["replaced"]);
    assert_eq!(upstream_all(&r, "x-add"), ["added"]);
    assert_eq!(upstream_all(&r, "x-keep"), ["first", "second"]);
    let body = echo["body"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"rep": "R", "app": ["1", "2"], "keep": true, "new": "o", "add": "A"})
    );
    assert_eq!(upstream_all(&r, "content-length"), [body.len().to_string()]);
    assert_eq!(
        upstream_all(&r, "host"),
        [format!("127.0.0.1:{}", up.port())]
    );

    // A form body of a request turned into a GET goes into the query as well; the
    // body is transformed after that.
    let r = send(
        h.http,
        request(
            "POST",
            "/form?q=1",
            &[("content-type", "application/x-www-form-urlencoded")],
            "drop=1&q=2&f=a+b",
        ),
    )
    .await;
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    // strip_path leaves `/` of the route path `/form`.
    assert_eq!(echo["uri"], "/?drop=1&f=a%20b&q=1&q=2");
    assert_eq!(echo["body"], "add=x&f=a%20b&q=2");

    // Replacing Host sets the Host the upstream gets.
    let r = send(h.http, request("GET", "/host", &[], "")).await;
    assert_eq!(upstream_all(&r, "host"), ["rewritten.test"]);
    h.stop().await;
}

#[tokio::test]
async fn request_transformer_passes_multipart_and_chunked_bodies() {
    let up = Upstream::start("u", Mode::Echo).await;
    let routes = json!([{"name": "r", "paths": ["/"], "plugins": [
        {"name": "request-transformer", "config": {"add": {"body": ["a:1"]}}},
    ]}]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;
    let multipart = "--b\r\ncontent-disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
    let r = send(
        h.http,
        request(
            "POST",
            "/",
            &[("content-type", "multipart/form-data; boundary=b")],
            multipart,
        ),
    )
    .await;
    assert_eq!(r.json()["body"], multipart, "sent unchanged");

    let req = Request::post("/")
        .header("host", "test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Chunked(VecDeque::from([
            Bytes::from("b=2&"),
            Bytes::from("c=3"),
        ])))
        .unwrap();
    let r = send_body(h.http, req).await;
    assert_eq!(r.json()["body"], "a=1&b=2&c=3");
    assert_eq!(upstream_all(&r, "content-length"), ["11"]);
    assert!(upstream_all(&r, "transfer-encoding").is_empty());
    h.stop().await;
}

// === response-transformer ===

#[tokio::test]
async fn response_transformer_as_the_client_sees_it() {
    let json_up = Upstream::start(
        "json",
        Mode::Reply {
            headers: &[
                ("content-type", "application/json"),
                ("x-one", "1"),
                ("x-two", "a"),
                ("x-two", "b"),
                ("x-remove", "r"),
            ],
            body: r#"{"keep":"k","drop":true,"old":"v","rep":"x","n":{"deep":1}}"#,
        },
    )
    .await;
    let text_up = Upstream::start(
        "text",
        Mode::Reply {
            headers: &[("content-type", "text/plain"), ("x-remove", "r")],
            body: r#"{"drop":true}"#,
        },
    )
    .await;
    let config = json!({
        "remove": {"headers": ["x-remove"], "json": ["drop"]},
        "rename": {"headers": ["x-two:x-pair"], "json": ["old:new"]},
        "replace": {"headers": ["x-one:uno"], "json": ["rep:9"], "json_types": ["number"]},
        "add": {"headers": ["x-added:yes"], "json": ["added:true", "n:ignored"], "json_types": ["boolean"]},
        "append": {"headers": ["x-one:dos"], "json": ["keep:more"]},
    });
    let transformer = json!([{"name": "response-transformer", "config": config}]);
    let doc = json!({
        "_format_version": "3.0",
        "services": [
            {"name": "json", "url": format!("http://127.0.0.1:{}", json_up.port()),
             "routes": [{"name": "json", "paths": ["/json"], "plugins": transformer}]},
            {"name": "text", "url": format!("http://127.0.0.1:{}", text_up.port()),
             "routes": [{"name": "text", "paths": ["/text"], "plugins": transformer}]},
        ],
    })
    .to_string();
    let h = Harness::start(&doc).await;

    let r = send(h.http, request("GET", "/json", &[], "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-remove"), None);
    assert_eq!(all(&r, "x-two"), Vec::<&str>::new());
    assert_eq!(all(&r, "x-pair"), ["a", "b"]);
    assert_eq!(all(&r, "x-one"), ["uno", "dos"]);
    assert_eq!(r.header("x-added"), Some("yes"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(
        r.json(),
        json!({"keep": ["k", "more"], "rep": 9, "n": {"deep": 1}, "new": "v", "added": true})
    );

    // Headers change whatever the body; a body that is not JSON does not.
    let r = send(h.http, request("GET", "/text", &[], "")).await;
    assert_eq!(r.header("x-remove"), None);
    assert_eq!(r.header("x-added"), Some("yes"));
    assert_eq!(&r.body[..], br#"{"drop":true}"#);
    h.stop().await;
}

#[tokio::test]
async fn response_transformer_applies_to_a_later_plugins_own_response() {
    let up = Upstream::start("u", Mode::Echo).await;
    let routes = json!([{"name": "r", "paths": ["/"], "plugins": [
        {"name": "request-termination", "config": {"status_code": 403, "message": "Closed"}},
        {"name": "response-transformer", "config": {
            "add": {"headers": ["x-added:1"], "json": ["extra:e"]},
            "rename": {"json": ["message:error"]},
        }},
    ]}]);
    let h = Harness::start(&doc(&up, routes, json!([]))).await;
    let r = send(h.http, request("GET", "/", &[], "")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-added"), Some("1"));
    assert_eq!(r.json(), json!({"error": "Closed", "extra": "e"}));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    h.stop().await;
}

// === scoping and enabled ===

#[tokio::test]
async fn a_route_instance_overrides_the_global_one_and_disabled_ones_do_not_run() {
    let up = Upstream::start("u", Mode::Echo).await;
    let tag = |value: &str| json!({"add": {"headers": [format!("x-scope:{value}")]}});
    let routes = json!([
        {"name": "plain", "paths": ["/plain"]},
        {"name": "own", "paths": ["/own"], "plugins": [
            {"name": "request-transformer", "config": tag("route")},
        ]},
        {"name": "disabled", "paths": ["/disabled"], "plugins": [
            {"name": "request-transformer", "config": tag("disabled"), "enabled": false},
            {"name": "ip-restriction", "config": {"deny": ["127.0.0.1"]}, "enabled": false},
        ]},
    ]);
    let global = json!([{"name": "request-transformer", "config": tag("global")}]);
    let mut h = Harness::start(&doc(&up, routes.clone(), global)).await;

    let scope = |r: Reply| upstream_all(&r, "x-scope");
    assert_eq!(
        scope(send(h.http, request("GET", "/plain", &[], "")).await),
        ["global"]
    );
    assert_eq!(
        scope(send(h.http, request("GET", "/own", &[], "")).await),
        ["route"]
    );
    // A disabled instance is not loaded: the global one applies, and the disabled
    // ip-restriction refuses nobody.
    let r = send(h.http, request("GET", "/disabled", &[], "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(scope(r), ["global"]);

    // Disabling the global instance leaves only the route's.
    let global =
        json!([{"name": "request-transformer", "config": tag("global"), "enabled": false}]);
    h.load(&doc(&up, routes, global)).await;
    assert!(scope(send(h.http, request("GET", "/plain", &[], "")).await).is_empty());
    assert_eq!(
        scope(send(h.http, request("GET", "/own", &[], "")).await),
        ["route"]
    );
    h.stop().await;
}
