//! The proxy in real processes: `traditional` (Admin API and proxy in one process) and a
//! DP that keeps proxying with every CP down, against real upstream servers.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{echo_upstream, proxy_get, wait_for, Cluster, Node};

const LONG: Duration = Duration::from_secs(60);

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn traditional_proxies_what_its_admin_api_configures() {
    let upstream = echo_upstream("alpha", 1_000);
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", support::free_port());
    let node = Node::spawn(1, dir.path().join("t"), Vec::new(), admin, String::new());
    wait_for("the Admin API", LONG, || {
        node.get("/status").filter(|r| r.status == 200)
    });
    // Nothing configured: Kong's 404.
    let (status, _, body) = wait_for("the proxy", LONG, || proxy_get(&node.proxy, "/x", "a.test"));
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "no Route matched with those values");

    let svc = node
        .post(
            "/services",
            &json!({"name": "echo", "url": format!("http://{upstream}/base")}),
        )
        .unwrap();
    assert_eq!(svc.status, 201, "{}", svc.body);
    let route = node
        .post(
            "/services/echo/routes",
            &json!({"name": "r", "paths": ["/echo"]}),
        )
        .unwrap();
    assert_eq!(route.status, 201, "{}", route.body);
    let (status, headers, body) = wait_for("the route to be served", LONG, || {
        proxy_get(&node.proxy, "/echo/hello?q=1", "client.test").filter(|r| r.0 == 200)
    });
    assert_eq!(status, 200);
    // strip_path (default true) and the service path, as Kong joins them.
    assert!(
        body.starts_with("alpha GET /base/hello?q=1 host="),
        "{body}"
    );
    assert!(header(&headers, "via").is_some_and(|v| v.contains("tidegate/")));

    // A change is served at once: point the service elsewhere.
    let beta = echo_upstream("beta", 1_000);
    let r = support::http(
        &node.admin,
        "PATCH",
        "/services/echo",
        Some(&json!({"url": format!("http://{beta}/")})),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("the new upstream", LONG, || {
        proxy_get(&node.proxy, "/echo/x", "client.test").filter(|r| r.2.starts_with("beta GET /x"))
    });
}

#[test]
fn a_dp_keeps_proxying_with_every_cp_down_and_after_a_restart() {
    let upstream = echo_upstream("origin", 1_000);
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    c.start_dp(1, &[1], &[]);
    let cp = c.node(1);
    let svc = cp
        .post(
            "/services",
            &json!({"name": "o", "url": format!("http://{upstream}")}),
        )
        .unwrap();
    assert_eq!(svc.status, 201);
    let r = cp
        .post(
            "/services/o/routes",
            &json!({"name": "r", "hosts": ["api.test"]}),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let through =
        |c: &Cluster| proxy_get(&c.dp(1).proxy, "/v1/items", "api.test").filter(|r| r.0 == 200);
    wait_for("the DP to proxy", LONG, || through(&c));

    c.node_mut(1).kill9();
    let (_, _, body) = through(&c).expect("still proxying with the CP gone");
    // preserve_host is off: the upstream sees its own address as Host, as in Kong.
    assert_eq!(body, format!("origin GET /v1/items host={upstream}"));

    c.dp_mut(1).terminate();
    c.dp_mut(1).start();
    let (_, _, body) = wait_for("the restarted DP to proxy from its cache", LONG, || {
        through(&c)
    });
    assert!(body.starts_with("origin GET /v1/items"), "{body}");
    // Other hosts: Kong's 404 from the same cached config.
    let (status, _, _) = proxy_get(&c.dp(1).proxy, "/", "other.test").unwrap();
    assert_eq!(status, 404);
}
