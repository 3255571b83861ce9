//! Kong's router rules and upstream path rules, end to end: a real proxy, a real echo
//! upstream, a real client.

mod support;

use support::*;

fn route_config(up: &Upstream) -> String {
    let port = up.port();
    // Each route has a service whose path names the route, so the upstream URI tells
    // which route matched.
    let routes = [
        ("host-plain", r#"hosts: [example.com]"#),
        ("host-wild", r#"hosts: ["*.wild.com"]"#),
        ("host-port", r#"hosts: ["port.com:8000"]"#),
        ("prefix", r#"paths: [/prefix]"#),
        ("long", r#"paths: [/long]"#),
        ("longer", r#"paths: [/long/longer]"#),
        ("regex", r#"paths: ["~/users/\\d+$"]"#),
        ("api-prefix", r#"paths: [/api]"#),
        ("api-regex", r#"paths: ["~/api/v\\d"]"#),
        ("m-any", r#"paths: [/m]"#),
        ("m-post", "paths: [/m]\n    methods: [POST]"),
        ("h-any", r#"paths: [/h]"#),
        ("h-v2", "paths: [/h]\n    headers: {x-version: [v2]}"),
        ("h-re", "paths: [/h]\n    headers: {x-re: [\"~*^ab+c$\"]}"),
        ("both-host", r#"hosts: [both.com]"#),
        ("both-path", r#"paths: [/both]"#),
        (
            "prio-low",
            "paths: [\"~/prio/\\\\w+\"]\n    regex_priority: 1",
        ),
        ("prio-high", "paths: [\"~/prio/x\"]\n    regex_priority: 5"),
    ];
    let mut doc = String::from("_format_version: \"3.0\"\nservices:\n");
    for (name, rule) in routes {
        doc.push_str(&format!(
            "- name: {name}\n  url: http://127.0.0.1:{port}/{name}\n  routes:\n  - name: {name}\n    strip_path: false\n    {rule}\n"
        ));
    }
    doc
}

/// The route that served `req`: the first segment of the upstream URI.
async fn which(
    h: &Harness,
    req: hyper::Request<http_body_util::Full<hyper::body::Bytes>>,
) -> String {
    let r = send(h.http, req).await;
    if r.status == 404 {
        return "404".into();
    }
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let uri = r.json()["uri"].as_str().unwrap().to_string();
    uri.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn with(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Request<http_body_util::Full<hyper::body::Bytes>> {
    let mut b = hyper::Request::builder().method(method).uri(path);
    if !host.is_empty() {
        b = b.header("host", host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Default::default()).unwrap()
}

#[tokio::test]
async fn every_router_rule_we_rely_on() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = Harness::start(&route_config(&up)).await;
    let rows: Vec<(&str, _, &str)> = vec![
        ("plain host", get("example.com", "/"), "host-plain"),
        (
            "plain host, default port given",
            get("example.com:80", "/"),
            "host-plain",
        ),
        ("wildcard host", get("a.wild.com", "/"), "host-wild"),
        ("host with port", get("port.com:8000", "/"), "host-port"),
        (
            "host with port, other port",
            get("port.com:9000", "/"),
            "404",
        ),
        ("prefix path", get("x", "/prefix/deeper"), "prefix"),
        ("longest prefix wins", get("x", "/long/longer/x"), "longer"),
        ("shorter prefix", get("x", "/long/x"), "long"),
        ("regex path", get("x", "/users/42"), "regex"),
        (
            "regex anchored at both ends as written",
            get("x", "/users/42/x"),
            "404",
        ),
        (
            "regex before prefix",
            get("x", "/api/v1/things"),
            "api-regex",
        ),
        (
            "prefix when regex fails",
            get("x", "/api/things"),
            "api-prefix",
        ),
        (
            "more fields win (method)",
            with("POST", "x", "/m", &[]),
            "m-post",
        ),
        (
            "method not matching falls back",
            with("GET", "x", "/m", &[]),
            "m-any",
        ),
        (
            "header value, case-insensitive",
            with("GET", "x", "/h", &[("x-version", "V2")]),
            "h-v2",
        ),
        (
            "header regex",
            with("GET", "x", "/h", &[("x-re", "ABBBC")]),
            "h-re",
        ),
        (
            "header not matching",
            with("GET", "x", "/h", &[("x-version", "v3")]),
            "h-any",
        ),
        ("hosts beat paths", get("both.com", "/both"), "both-host"),
        ("paths alone", get("other.com", "/both"), "both-path"),
        ("regex_priority", get("x", "/prio/x"), "prio-high"),
        (
            "regex_priority, only low matches",
            get("x", "/prio/y"),
            "prio-low",
        ),
        ("nothing matches", get("nothing.com", "/nothing"), "404"),
    ];
    for (rule, req, want) in rows {
        assert_eq!(which(&h, req).await, want, "rule: {rule}");
    }
    h.stop().await;
}

#[tokio::test]
async fn strip_path_and_path_handling_as_kong_documents() {
    let up = Upstream::start("u", Mode::Echo).await;
    let port = up.port();
    // Kong's path_handling table (docs, "Proxy reference"): request = route path + "req".
    let rows = [
        ("/fv0", false, "v0", "/s/fv0req"),
        ("/fv1", false, "v1", "/sfv1req"),
        ("/tv0", true, "v0", "/s/req"),
        ("/tv1", true, "v1", "/sreq"),
        ("/fv0/", false, "v0", "/s/fv0/req"),
        ("/fv1/", false, "v1", "/sfv1/req"),
        ("/tv0/", true, "v0", "/s/req"),
        ("/tv1/", true, "v1", "/sreq"),
    ];
    let mut doc = format!("_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{port}/s\n  routes:\n");
    for (i, (path, strip, handling, _)) in rows.iter().enumerate() {
        doc.push_str(&format!(
            "  - name: r{i}\n    paths: [\"{path}\"]\n    strip_path: {strip}\n    path_handling: {handling}\n"
        ));
    }
    doc.push_str(&format!(
        "- name: root\n  url: http://127.0.0.1:{port}\n  routes:\n  - name: strip\n    paths: [/strip]\n  - name: keep\n    paths: [/keep]\n    strip_path: false\n  - name: pres\n    hosts: [preserved.com]\n    preserve_host: true\n  - name: nopres\n    hosts: [replaced.com]\n"
    ));
    let h = Harness::start(&doc).await;
    for (path, _, _, want) in rows {
        let r = send(h.http, get("x", &format!("{path}req"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["uri"], want, "route {path}");
    }
    let uri = |r: &Reply| r.json()["uri"].as_str().unwrap().to_string();
    assert_eq!(
        uri(&send(h.http, get("x", "/strip/a/b?q=1&r=%20")).await),
        "/a/b?q=1&r=%20"
    );
    assert_eq!(uri(&send(h.http, get("x", "/strip")).await), "/");
    assert_eq!(uri(&send(h.http, get("x", "/keep/a?x")).await), "/keep/a?x");
    // Unreserved escapes are decoded by normalisation; what cannot appear raw is escaped again.
    assert_eq!(
        uri(&send(h.http, get("x", "/keep/%41%20b")).await),
        "/keep/A%20b"
    );

    let r = send(h.http, get("preserved.com", "/")).await;
    assert_eq!(r.upstream_header("host").as_deref(), Some("preserved.com"));
    let r = send(h.http, get("replaced.com", "/")).await;
    assert_eq!(r.upstream_header("host"), Some(format!("127.0.0.1:{port}")));
    h.stop().await;
}

#[tokio::test]
async fn forwarded_headers_via_latency_and_hop_by_hop() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/pre]\n",
        up.port()
    );
    let h = Harness::start(&doc).await;
    let req = hyper::Request::get("/pre/x?y=1")
        .header("host", "client.example:1234")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "6.6.6.6")
        .header("connection", "x-drop")
        .header("x-drop", "1")
        .header("keep-alive", "timeout=5")
        .header("x-keep", "1")
        .body(Default::default())
        .unwrap();
    let r = send(h.http, req).await;
    assert_eq!(r.status, 200);
    let up_h = |n: &str| r.upstream_header(n);
    assert_eq!(
        up_h("x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(up_h("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        up_h("x-forwarded-proto").as_deref(),
        Some("http"),
        "untrusted client values are replaced"
    );
    assert_eq!(up_h("x-forwarded-host").as_deref(), Some("client.example"));
    assert_eq!(up_h("x-forwarded-port"), Some(h.http.port().to_string()));
    assert_eq!(up_h("x-forwarded-path").as_deref(), Some("/pre/x"));
    assert_eq!(up_h("x-forwarded-prefix").as_deref(), Some("/pre"));
    assert_eq!(up_h("x-keep").as_deref(), Some("1"));
    assert_eq!(up_h("x-drop"), None, "named in Connection");
    assert_eq!(up_h("keep-alive"), None);
    assert_eq!(
        r.header("via"),
        Some(tidegate_proxy::SERVER_TOKEN)
            .map(|t| format!("1.1 {t}"))
            .as_deref()
    );
    assert!(r
        .header("x-tidegate-upstream-latency")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert!(r
        .header("x-tidegate-proxy-latency")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    assert_eq!(r.header("x-upstream"), Some("u"));
    assert_eq!(r.header("x-tidegate-request-id").map(str::len), Some(32));
    h.stop().await;
}

#[tokio::test]
async fn kong_header_names_when_asked() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/]\n",
        up.port()
    );
    let options = tidegate_proxy::ProxyOptions {
        header_naming: tidegate_proxy::HeaderNaming::Kong,
        ..Default::default()
    };
    let h = Harness::with_options(&doc, options).await;
    let r = send(h.http, get("x", "/")).await;
    assert!(r.header("x-kong-upstream-latency").is_some());
    assert!(r.header("x-kong-proxy-latency").is_some());
    assert!(r.header("x-kong-request-id").is_some());
    assert!(r.header("x-tidegate-proxy-latency").is_none());
    h.stop().await;
}

/// `trusted_ips` with `real_ip_header = X-Forwarded-For` and `real_ip_recursive = on`,
/// as Kong sets nginx's realip module up: a trusted proxy's forwarding headers pass,
/// the client address is the last untrusted one of its list, plugins and upstream see
/// that address, and its X-Forwarded-Proto is the scheme the protocol check takes.
#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_and_its_headers() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/pre]\n  - name: secure\n    protocols: [https]\n    paths: [/secure]\n    plugins:\n    - name: ip-restriction\n      config:\n        deny: [203.0.113.7]\n",
        up.port()
    );
    let trusted = |list: &[&str]| tidegate_proxy::RealIp {
        trusted: tidegate_model::ipset::IpSet::build(list).unwrap(),
        header: hyper::header::HeaderName::from_static("x-forwarded-for"),
        recursive: true,
    };
    let options = |list: &[&str]| tidegate_proxy::ProxyOptions {
        real_ip: Some(std::sync::Arc::new(trusted(list))),
        ..tidegate_proxy::ProxyOptions::default()
    };
    let forwarded = |path: &str, xff: &str| {
        hyper::Request::get(path)
            .header("host", "gw.example")
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "public.example")
            .header("x-forwarded-port", "443")
            .header("x-forwarded-prefix", "/outer")
            .body(Default::default())
            .unwrap()
    };

    // The test client is 127.0.0.1, trusted along with the 10/8 hop in the list.
    let h = Harness::with_options(&doc, options(&["127.0.0.1", "10.0.0.0/8"])).await;
    let r = send(
        h.http,
        forwarded("/pre/x", "198.51.100.1, 192.0.2.9, 10.1.1.1"),
    )
    .await;
    assert_eq!(r.status, 200);
    let up_h = |n: &str| r.upstream_header(n);
    assert_eq!(up_h("x-real-ip").as_deref(), Some("192.0.2.9"));
    assert_eq!(
        up_h("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 192.0.2.9, 10.1.1.1, 192.0.2.9"),
        "nginx's $proxy_add_x_forwarded_for appends the realip address"
    );
    assert_eq!(up_h("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(up_h("x-forwarded-host").as_deref(), Some("public.example"));
    assert_eq!(up_h("x-forwarded-port").as_deref(), Some("443"));
    assert_eq!(up_h("x-forwarded-prefix").as_deref(), Some("/outer"));
    assert_eq!(up_h("x-forwarded-path").as_deref(), Some("/pre/x"));
    // An https-only route over plain HTTP is served: the trusted proxy says https.
    let r = send(h.http, forwarded("/secure", "192.0.2.9")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Plugins see the forwarded client.
    let r = send(h.http, forwarded("/secure", "203.0.113.7")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "IP address not allowed: 203.0.113.7");
    h.stop().await;

    // The same request from a peer that is not trusted: everything is replaced.
    let h = Harness::with_options(&doc, options(&["10.0.0.0/8"])).await;
    let r = send(h.http, forwarded("/pre/x", "192.0.2.9")).await;
    let up_h = |n: &str| r.upstream_header(n);
    assert_eq!(up_h("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        up_h("x-forwarded-for").as_deref(),
        Some("192.0.2.9, 127.0.0.1")
    );
    assert_eq!(up_h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(up_h("x-forwarded-host").as_deref(), Some("gw.example"));
    assert_eq!(up_h("x-forwarded-port"), Some(h.http.port().to_string()));
    assert_eq!(up_h("x-forwarded-prefix").as_deref(), Some("/pre"));
    let r = send(h.http, forwarded("/secure", "192.0.2.9")).await;
    assert_eq!(r.status, 426);
    h.stop().await;
}
