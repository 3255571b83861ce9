//! Kong's status codes and bodies for what goes wrong, timeouts and retries.

mod support;

use support::*;

fn assert_kong_error(r: &Reply, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["message"], message);
    let id = body["request_id"].as_str().expect("request_id in the body");
    assert_eq!(id.len(), 32);
    assert_eq!(
        r.header("x-tidegate-request-id"),
        Some(id),
        "the same id in the header"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("server"), Some(tidegate_proxy::SERVER_TOKEN));
    assert!(r.header("x-tidegate-response-latency").is_some());
}

#[tokio::test]
async fn no_route_is_404_and_an_empty_config_serves_it_too() {
    let h = Harness::start("_format_version: \"3.0\"\n").await;
    let r = send(h.http, get("x", "/")).await;
    assert_kong_error(&r, 404, "no Route matched with those values");
    h.stop().await;
}

#[tokio::test]
async fn refused_connection_is_502_after_the_retries() {
    let dead = closed_port().await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{dead}\n  retries: 2\n  routes:\n  - name: r\n    paths: [/]\n"
    );
    let h = Harness::start(&doc).await;
    let r = send(h.http, get("x", "/")).await;
    assert_kong_error(
        &r,
        502,
        "An invalid response was received from the upstream server",
    );
    h.stop().await;
}

#[tokio::test]
async fn a_hanging_upstream_is_504_after_read_timeout() {
    let up = Upstream::start("hang", Mode::Hang).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  read_timeout: 200\n  routes:\n  - name: r\n    paths: [/]\n",
        up.port()
    );
    let h = Harness::start(&doc).await;
    let started = tokio::time::Instant::now();
    let r = send(h.http, get("x", "/")).await;
    assert_kong_error(&r, 504, "The upstream server is timing out");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a request that reached the upstream is not retried"
    );
    h.stop().await;
}

/// Kong's `write_timeout`: an upstream that stops reading the request body fails it
/// with 504 after write_timeout, long before read_timeout.
#[tokio::test]
async fn an_upstream_that_stops_reading_is_504_after_write_timeout() {
    let (port, listener) = silent_listener().await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{port}\n  write_timeout: 300\n  read_timeout: 30000\n  routes:\n  - name: r\n    paths: [/]\n"
    );
    let h = Harness::start(&doc).await;
    // Far more than the socket buffers on both sides hold.
    let body = hyper::body::Bytes::from(vec![b'x'; 64 << 20]);
    let req = hyper::Request::post("/")
        .header("host", "x")
        .body(http_body_util::Full::new(body))
        .unwrap();
    let started = tokio::time::Instant::now();
    let r = send(h.http, req).await;
    assert_kong_error(&r, 504, "The upstream server is timing out");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(300) && took < std::time::Duration::from_secs(20),
        "answered after {took:?}"
    );
    listener.abort();
    h.stop().await;
}

#[tokio::test]
async fn route_without_service_is_503() {
    let doc = "_format_version: \"3.0\"\nroutes:\n- name: r\n  paths: [/]\n";
    let h = Harness::start(doc).await;
    let r = send(h.http, get("x", "/")).await;
    assert_kong_error(&r, 503, "no Service found with those values");
    h.stop().await;
}

#[tokio::test]
async fn disabled_service_routes_are_not_matched() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  enabled: false\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/]\n",
        up.port()
    );
    let h = Harness::start(&doc).await;
    assert_eq!(send(h.http, get("x", "/")).await.status, 404);
    h.stop().await;
}

#[tokio::test]
async fn https_only_routes_answer_426_or_redirect_over_http() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: upgrade\n    paths: [/426]\n    protocols: [https]\n  - name: redirect\n    paths: [/301]\n    protocols: [https]\n    https_redirect_status_code: 301\n",
        up.port()
    );
    let h = Harness::start(&doc).await;
    let r = send(h.http, get("secure.example:8000", "/426/x?a=1")).await;
    assert_kong_error(&r, 426, "Please use HTTPS protocol");
    assert_eq!(r.header("upgrade"), Some("TLS/1.2, HTTP/1.1"));
    let r = send(h.http, get("secure.example:8000", "/301/x?a=1")).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://secure.example/301/x?a=1")
    );
    h.stop().await;
}

#[tokio::test]
async fn upstream_with_no_healthy_target_is_503() {
    let doc = "_format_version: \"3.0\"\nupstreams:\n- name: empty.up\nservices:\n- name: s\n  host: empty.up\n  routes:\n  - name: r\n    paths: [/]\n";
    let h = Harness::start(doc).await;
    let r = send(h.http, get("x", "/")).await;
    assert_kong_error(&r, 503, "failure to get a peer from the ring-balancer");
    h.stop().await;
}

#[tokio::test]
async fn retries_move_past_a_dead_target() {
    let up = Upstream::start("live", Mode::Echo).await;
    let dead = closed_port().await;
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: pair.up\n  targets:\n  - target: 127.0.0.1:{dead}\n  - target: {}\nservices:\n- name: s\n  host: pair.up\n  retries: 1\n  routes:\n  - name: r\n    paths: [/]\n",
        up.target()
    );
    let h = Harness::start(&doc).await;
    for _ in 0..20 {
        let r = send(h.http, get("x", "/")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["name"], "live");
    }
    h.stop().await;
}

#[tokio::test]
async fn request_body_limit_is_413() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/]\n",
        up.port()
    );
    let options = tidegate_proxy::ProxyOptions {
        max_request_body: Some(10),
        ..Default::default()
    };
    let h = Harness::with_options(&doc, options).await;
    let big = hyper::Request::post("/")
        .header("host", "x")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            vec![b'a'; 11],
        )))
        .unwrap();
    let r = send(h.http, big).await;
    assert_kong_error(&r, 413, "Payload too large");
    let small = hyper::Request::post("/")
        .header("host", "x")
        .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
            b"0123456789",
        )))
        .unwrap();
    let r = send(h.http, small).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "0123456789");
    h.stop().await;
}

#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/]\n",
        up.port()
    );
    let options = tidegate_proxy::ProxyOptions {
        max_header_bytes: 16 * 1024,
        ..Default::default()
    };
    let h = Harness::with_options(&doc, options).await;
    let req = hyper::Request::get("/")
        .header("host", "x")
        .header("x-big", "a".repeat(32 * 1024))
        .body(Default::default())
        .unwrap();
    let r = send(h.http, req).await;
    assert_eq!(r.status, 431, "hyper's answer to a head over the limit");
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    h.stop().await;
}
