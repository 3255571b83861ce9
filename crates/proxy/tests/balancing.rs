//! Upstreams and targets through the proxy: weighted round-robin, consistent hashing,
//! and health checks taking a target out and bringing it back.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

async fn names(
    h: &Harness,
    n: usize,
    req: impl Fn(usize) -> hyper::Request<http_body_util::Full<hyper::body::Bytes>>,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let r = send(h.http, req(i)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        *seen
            .entry(r.header("x-upstream").unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let (a, b, c) = (
        Upstream::start("a", Mode::Echo).await,
        Upstream::start("b", Mode::Echo).await,
        Upstream::start("c", Mode::Echo).await,
    );
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: rr.up\n  targets:\n  - {{target: {}, weight: 300}}\n  - {{target: {}, weight: 100}}\n  - {{target: {}, weight: 0}}\nservices:\n- name: s\n  host: rr.up\n  routes:\n  - name: r\n    paths: [/]\n",
        a.target(), b.target(), c.target()
    );
    let h = Harness::start(&doc).await;
    let seen = names(&h, 400, |_| get("x", "/")).await;
    let (na, nb) = (seen["a"], seen["b"]);
    assert!(
        (285..=315).contains(&na) && (85..=115).contains(&nb),
        "3:1 within 5%: {seen:?}"
    );
    assert!(!seen.contains_key("c"), "weight 0 gets nothing: {seen:?}");
    h.stop().await;
}

#[tokio::test]
async fn consistent_hashing_on_a_header_is_sticky() {
    let ups = [
        Upstream::start("a", Mode::Echo).await,
        Upstream::start("b", Mode::Echo).await,
        Upstream::start("c", Mode::Echo).await,
    ];
    let targets: String = ups
        .iter()
        .map(|u| format!("  - target: {}\n", u.target()))
        .collect();
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: hash.up\n  algorithm: consistent-hashing\n  hash_on: header\n  hash_on_header: x-user\n  hash_fallback: ip\n  targets:\n{targets}services:\n- name: s\n  host: hash.up\n  routes:\n  - name: r\n    paths: [/]\n"
    );
    let h = Harness::start(&doc).await;
    let user = |u: usize| {
        move |_| {
            hyper::Request::get("/")
                .header("host", "x")
                .header("x-user", format!("user-{u}"))
                .body(Default::default())
                .unwrap()
        }
    };
    let mut homes = BTreeMap::new();
    for u in 0..30 {
        let seen = names(&h, 5, user(u)).await;
        assert_eq!(seen.len(), 1, "user {u} stuck to one target: {seen:?}");
        *homes
            .entry(seen.keys().next().unwrap().clone())
            .or_insert(0) += 1;
    }
    assert_eq!(
        homes.len(),
        3,
        "30 users spread over the 3 targets: {homes:?}"
    );
    // Without the header, the fallback (client IP, always 127.0.0.1 here) is sticky too.
    let seen = names(&h, 10, |_| get("x", "/")).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    h.stop().await;
}

#[tokio::test]
async fn consistent_hashing_on_a_cookie_sets_one_when_missing() {
    let ups = [
        Upstream::start("a", Mode::Echo).await,
        Upstream::start("b", Mode::Echo).await,
    ];
    let targets: String = ups
        .iter()
        .map(|u| format!("  - target: {}\n", u.target()))
        .collect();
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: c.up\n  algorithm: consistent-hashing\n  hash_on: cookie\n  hash_on_cookie: sticky\n  targets:\n{targets}services:\n- name: s\n  host: c.up\n  routes:\n  - name: r\n    paths: [/]\n"
    );
    let h = Harness::start(&doc).await;
    let r = send(h.http, get("x", "/")).await;
    let set = r
        .header("set-cookie")
        .expect("a made-up cookie")
        .to_string();
    assert!(
        set.starts_with("sticky=") && set.ends_with("; Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let home = r.header("x-upstream").unwrap().to_string();
    let seen = names(&h, 10, |_| {
        hyper::Request::get("/")
            .header("host", "x")
            .header("cookie", cookie.as_str())
            .body(Default::default())
            .unwrap()
    })
    .await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec![&home]);
    h.stop().await;
}

#[tokio::test]
async fn active_health_checks_take_a_failing_target_out_and_bring_it_back() {
    let (a, b) = (
        Upstream::start("a", Mode::Echo).await,
        Upstream::start("b", Mode::Echo).await,
    );
    let doc = format!(
        r#"_format_version: "3.0"
upstreams:
- name: hc.up
  healthchecks:
    active:
      http_path: /status
      timeout: 1
      healthy: {{interval: 0.02, successes: 2}}
      unhealthy: {{interval: 0.02, http_failures: 2}}
  targets:
  - target: {}
  - target: {}
services:
- name: s
  host: hc.up
  routes:
  - name: r
    paths: [/]
"#,
        a.target(),
        b.target()
    );
    let h = Harness::start(&doc).await;
    a.healthy.store(false, Ordering::SeqCst);
    // Taken out: every request goes to b.
    wait_until(Duration::from_secs(5), "a taken out", || async {
        !names(&h, 4, |_| get("x", "/")).await.contains_key("a")
    })
    .await;
    let before = a.hits.load(Ordering::SeqCst);
    assert_eq!(names(&h, 20, |_| get("x", "/")).await["b"], 20);
    assert_eq!(a.hits.load(Ordering::SeqCst), before);
    // Brought back.
    a.healthy.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(5), "a back", || async {
        names(&h, 4, |_| get("x", "/")).await.contains_key("a")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn passive_health_checks_take_a_refusing_target_out() {
    let a = Upstream::start("a", Mode::Echo).await;
    let dead = closed_port().await;
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: p.up\n  healthchecks:\n    passive:\n      unhealthy: {{tcp_failures: 1}}\n  targets:\n  - target: {}\n  - target: 127.0.0.1:{dead}\nservices:\n- name: s\n  host: p.up\n  retries: 0\n  routes:\n  - name: r\n    paths: [/]\n",
        a.target()
    );
    let h = Harness::start(&doc).await;
    let mut failures = 0;
    for _ in 0..20 {
        if send(h.http, get("x", "/")).await.status == 502 {
            failures += 1;
        }
    }
    assert_eq!(
        failures, 1,
        "one refused connection, then the target is out"
    );
    h.stop().await;
}

/// least-connections: while one target holds a request open, every new request goes to
/// the other (round-robin would send every second one into the held target); once the
/// held request finishes, both take requests again.
#[tokio::test]
async fn least_connections_sends_new_requests_past_a_busy_target() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let slow = Upstream::start("slow", Mode::Gate(gate.clone())).await;
    let quick = Upstream::start("quick", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nupstreams:\n- name: lc.up\n  algorithm: least-connections\n  targets:\n  - target: {}\n  - target: {}\nservices:\n- name: s\n  host: lc.up\n  routes:\n  - name: r\n    paths: [/]\n",
        slow.target(),
        quick.target()
    );
    let h = Harness::start(&doc).await;
    // Requests go out until one is held by the slow target.
    let mut held = Vec::new();
    for _ in 0..4 {
        let addr = h.http;
        held.push(tokio::spawn(async move { send(addr, get("x", "/")).await }));
        let hits = slow.hits.clone();
        let quick_hits = quick.hits.clone();
        let sent = held.len();
        wait_until(Duration::from_secs(5), "the request reached a target", || {
            let (hits, quick_hits) = (hits.clone(), quick_hits.clone());
            async move { hits.load(Ordering::SeqCst) + quick_hits.load(Ordering::SeqCst) >= sent }
        })
        .await;
        if slow.hits.load(Ordering::SeqCst) == 1 {
            break;
        }
    }
    assert_eq!(slow.hits.load(Ordering::SeqCst), 1, "one request is held");
    let seen = names(&h, 20, |_| get("x", "/")).await;
    assert_eq!(
        seen.get("quick"),
        Some(&20),
        "all went past the busy target: {seen:?}"
    );
    gate.notify_waiters();
    for r in held {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200);
    }
    // With nothing in flight, the slow target is chosen again (within two requests:
    // ties alternate).
    let mut more = Vec::new();
    for _ in 0..2 {
        let addr = h.http;
        more.push(tokio::spawn(async move { send(addr, get("x", "/")).await }));
    }
    let hits = slow.hits.clone();
    wait_until(
        Duration::from_secs(5),
        "the idle slow target chosen again",
        || {
            let hits = hits.clone();
            async move { hits.load(Ordering::SeqCst) == 2 }
        },
    )
    .await;
    gate.notify_waiters();
    for r in more {
        assert_eq!(r.await.unwrap().status, 200);
    }
    h.stop().await;
}
