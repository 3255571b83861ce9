//! The proxy in real processes: `traditional` (Admin API and proxy in one process) and a
//! DP that keeps proxying with every CP down, against real upstream servers.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{echo_upstream, proxy_get, wait_for, Cluster, Node};

const LONG: Duration = Duration::from_secs(60);

/// A `traditional` node in `dir`, once its Admin API answers.
fn traditional(dir: &std::path::Path) -> Node {
    let admin = format!("127.0.0.1:{}", support::free_port());
    // On one thread, as the proxy bench runs it: the swaps-under-load test then covers
    // the current-thread runtime with admin writes and proxying on the same thread.
    let env = vec![("TIDEGATE_WORKER_THREADS".to_string(), "1".to_string())];
    let node = Node::spawn(1, dir.join("t"), env, admin, String::new());
    wait_for("the Admin API", LONG, || {
        node.get("/status").filter(|r| r.status == 200)
    });
    node
}

/// Creates service `name` for `url` and one route on it with `route` (a JSON object).
fn service_with_route(cp: &Node, name: &str, url: &str, route: serde_json::Value) {
    let svc = cp
        .post("/services", &json!({"name": name, "url": url}))
        .unwrap();
    assert_eq!(svc.status, 201, "{}", svc.body);
    let r = cp
        .post(&format!("/services/{name}/routes"), &route)
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn traditional_proxies_what_its_admin_api_configures() {
    let upstream = echo_upstream("alpha", 1_000);
    let dir = tempfile::tempdir().unwrap();
    let node = traditional(dir.path());
    // Nothing configured: Kong's 404.
    let (status, _, body) = wait_for("the proxy", LONG, || proxy_get(&node.proxy, "/x", "a.test"));
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "no Route matched with those values");

    service_with_route(
        &node,
        "echo",
        &format!("http://{upstream}/base"),
        json!({"name": "r", "paths": ["/echo"]}),
    );
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
    service_with_route(
        c.node(1),
        "o",
        &format!("http://{upstream}"),
        json!({"name": "r", "hosts": ["api.test"]}),
    );
    let through =
        |c: &Cluster| proxy_get(&c.dp(1).proxy, "/v1/items", "api.test").filter(|r| r.0 == 200);
    wait_for("the DP to proxy", LONG, || through(&c));

    // The DP's /metrics counts what it proxied, by service, route and status.
    let metrics = support::get_text(&c.dp(1).admin, "/metrics").unwrap();
    let labels = "service=\"o\",route=\"r\"";
    let served = support::metric(
        &metrics,
        &format!("tidegate_http_requests_total{{{labels},code=\"200\"}}"),
    );
    assert!(served.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(
        support::metric(
            &metrics,
            &format!("tidegate_request_latency_ms_count{{{labels}}}")
        ),
        support::metric(
            &metrics,
            &format!("tidegate_request_latency_ms_bucket{{{labels},le=\"+Inf\"}}")
        ),
        "{metrics}"
    );

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

/// Debian's nginx, installed when missing (CI installs it up front).
fn nginx() -> &'static str {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        let ok = std::process::Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "nginx is not installed and apt-get could not install it"
        );
    }
    "nginx"
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real nginx as the upstream: the request travels client → tidegate → nginx.
#[test]
fn proxies_to_a_real_nginx() {
    let bin = nginx();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let conf = dir.path().join("nginx.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ default_type text/plain; return 200 \"nginx saw $request_method $request_uri host=$host xff=$http_x_forwarded_for\"; }}\n\
               }}\n}}\n"
        ),
    )
    .unwrap();
    let _nginx = Killed(
        std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let upstream = format!("127.0.0.1:{port}");
    wait_for("nginx", LONG, || {
        std::net::TcpStream::connect(&upstream).ok()
    });

    let node = traditional(dir.path());
    service_with_route(
        &node,
        "n",
        &format!("http://{upstream}/api"),
        json!({"name": "r", "paths": ["/shop"], "preserve_host": true}),
    );
    let (_, headers, body) = wait_for("the request through nginx", LONG, || {
        proxy_get(&node.proxy, "/shop/items?id=7", "shop.test").filter(|r| r.0 == 200)
    });
    assert_eq!(
        body,
        "nginx saw GET /api/items?id=7 host=shop.test xff=127.0.0.1"
    );
    assert!(header(&headers, "via").is_some());
    assert!(header(&headers, "x-tidegate-upstream-latency").is_some());
}

const LOAD_ENV: &str = "TIDEGATE_TEST_LOAD_TARGET";
/// Requests the load process sends, one connection each, back to back.
const LOAD_REQUESTS: usize = 1_500;

/// The load generator, run as a second process by the swap test: sends
/// `LOAD_REQUESTS` requests and prints one line per answer.
#[test]
fn load_child() {
    let Ok(target) = std::env::var(LOAD_ENV) else {
        return;
    };
    for _ in 0..LOAD_REQUESTS {
        match proxy_get(&target, "/swap/x", "swap.test") {
            Some((status, _, body)) => println!("ANSWER {status} {body}"),
            None => println!("ANSWER failed"),
        }
    }
}

/// Ten admin changes a second while a second process sends requests: every answer is
/// the old config's or the new one's, none is dropped.
#[test]
fn config_swaps_under_load_drop_nothing() {
    let alpha = echo_upstream("alpha", 10_000);
    let beta = echo_upstream("beta", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let node = traditional(dir.path());
    service_with_route(
        &node,
        "s",
        &format!("http://{alpha}"),
        json!({"name": "r", "paths": ["/swap"]}),
    );
    wait_for("the route", LONG, || {
        proxy_get(&node.proxy, "/swap/x", "swap.test").filter(|r| r.0 == 200)
    });

    let load = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["load_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(LOAD_ENV, &node.proxy)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut load = Killed(load);
    // Drained as it comes: a full pipe would stop the load process.
    let mut stdout = load.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        use std::io::Read;
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let mut changes = 0;
    let started = std::time::Instant::now();
    // Ten changes a second until the load process is done.
    while load.0.try_wait().unwrap().is_none() {
        let target = if changes % 2 == 0 { &beta } else { &alpha };
        let r = support::http(
            &node.admin,
            "PATCH",
            "/services/s",
            Some(&json!({"url": format!("http://{target}")})),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        changes += 1;
        let next = started + Duration::from_millis(100 * changes as u64);
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    let out = reader.join().unwrap();
    // libtest may print "test load_child ... " in front of the first line.
    let answers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.find("ANSWER ").map(|i| &l[i..]))
        .collect();
    assert_eq!(
        answers.len(),
        LOAD_REQUESTS,
        "the load process did not finish"
    );
    let (mut a, mut b) = (0, 0);
    for line in &answers {
        if line.starts_with("ANSWER 200 alpha GET /x") {
            a += 1;
        } else if line.starts_with("ANSWER 200 beta GET /x") {
            b += 1;
        } else {
            panic!("a request was dropped or answered wrongly: {line}");
        }
    }
    println!(
        "{LOAD_REQUESTS} requests during {changes} config changes: {a} alpha, {b} beta, 0 failed"
    );
    assert!(
        changes >= 5,
        "the load ended before the changes began ({changes})"
    );
    assert!(a > 0 && b > 0, "both configs served: {a} / {b}");
}
