//! key-auth, basic-auth, acl and rate-limiting through the real proxy, against real
//! upstream servers and (for the redis policy) a real `redis-server`.
//!
//! Each test reads time from a clock of its own that it sets and moves, so windows and
//! TTLs do not depend on when the test runs.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use support::{send, silent_listener, Harness, Mode, RedisServer, Reply, Upstream};
use tidegate_proxy::ProxyOptions;

// === clocks ===

/// One per test, so that tests sharing a process (`cargo test`) do not move each
/// other's time.
static CLOCKS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn clock<const N: usize>() -> f64 {
    f64::from_bits(CLOCKS[N].load(Ordering::SeqCst))
}

fn set_clock<const N: usize>(t: f64) {
    CLOCKS[N].store(t.to_bits(), Ordering::SeqCst);
}

/// 2023-11-14T22:13:20Z: 20 s into a minute, 13 min 20 s into an hour. The harness
/// creates the entities of its first config one second later.
const T: f64 = 1_700_000_000.0;
const CREATED: f64 = T + 1.0;

async fn harness<const N: usize>(doc: &str) -> Harness {
    set_clock::<N>(T);
    Harness::with_options(
        doc,
        ProxyOptions {
            wall_clock: clock::<N>,
            ..Default::default()
        },
    )
    .await
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn message(r: &Reply) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_string()
}

const ALICE: &str = "00000000-0000-0000-0000-0000000000a1";
const ALICE_KEY: &str = "00000000-0000-0000-0000-0000000000f1";
const ALICE_BASIC: &str = "00000000-0000-0000-0000-0000000000f3";

fn auth_config(upstream: &Upstream) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - {{name: key, paths: [/key], plugins: [{{name: key-auth}}]}}
      - name: hidden
        paths: [/hidden]
        plugins: [{{name: key-auth, config: {{hide_credentials: true, realm: api}}}}]
      - name: anon
        paths: [/anon]
        plugins: [{{name: key-auth, config: {{anonymous: anon}}}}]
      - name: ghost
        paths: [/ghost]
        plugins: [{{name: key-auth, config: {{anonymous: ghost}}}}]
      - name: basic
        paths: [/basic]
        plugins: [{{name: basic-auth}}]
      - name: basic-hidden
        paths: [/bhidden]
        plugins: [{{name: basic-auth, config: {{hide_credentials: true, realm: kong}}}}]
      - name: groups
        paths: [/groups]
        plugins: [{{name: key-auth}}, {{name: acl, config: {{allow: [admins]}}}}]
      - name: nobody
        paths: [/nobody]
        plugins: [{{name: acl, config: {{deny: [banned]}}}}]
consumers:
  - username: alice
    id: {ALICE}
    custom_id: alice-7
    keyauth_credentials:
      - {{id: {ALICE_KEY}, key: alice-key}}
      - {{id: 00000000-0000-0000-0000-0000000000f2, key: temp-key, ttl: 60}}
    basicauth_credentials:
      - {{id: {ALICE_BASIC}, username: alice, password: "s3cret:x"}}
    acls: [{{group: admins}}, {{group: ops}}]
  - username: bob
    keyauth_credentials: [{{key: bob-key}}]
  - username: anon
"#,
        upstream.target()
    )
}

#[tokio::test]
async fn key_auth_challenges_then_tells_the_upstream_who_called() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<0>(&auth_config(&up)).await;

    let r = send(h.http, get("/key", &[])).await;
    assert_eq!(r.status, 401);
    assert_eq!(message(&r), "No API key found in request");
    assert!(r.json()["request_id"].is_string());
    assert_eq!(r.header("www-authenticate"), Some("Key"));

    let r = send(h.http, get("/key", &[("apikey", "nope")])).await;
    assert_eq!((r.status, message(&r)), (401, "Unauthorized".into()));
    assert_eq!(r.header("www-authenticate"), Some("Key"));
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "refused requests stay here"
    );

    let r = send(
        h.http,
        get(
            "/key?x=1",
            &[("apikey", "alice-key"), ("x-anonymous-consumer", "true")],
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some(ALICE));
    assert_eq!(
        r.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        r.upstream_header("x-consumer-custom-id").as_deref(),
        Some("alice-7")
    );
    assert_eq!(
        r.upstream_header("x-credential-identifier").as_deref(),
        Some(ALICE_KEY)
    );
    assert_eq!(r.upstream_header("x-anonymous-consumer"), None);
    assert_eq!(r.upstream_header("apikey").as_deref(), Some("alice-key"));

    // In the query, with hide_credentials: the upstream sees neither the argument nor
    // the header, and the other arguments as they were.
    let r = send(h.http, get("/hidden?a=1&apikey=alice-key&b=2", &[])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/?a=1&b=2");
    assert_eq!(
        r.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );
    let r = send(h.http, get("/hidden", &[("apikey", "bob-key")])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("apikey"), None);
    let r = send(h.http, get("/hidden", &[])).await;
    assert_eq!(r.header("www-authenticate"), Some("Key realm=\"api\""));
    h.stop().await;
}

#[tokio::test]
async fn a_key_auth_credential_stops_working_when_its_ttl_runs_out() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<1>(&auth_config(&up)).await;
    let call = || send(h.http, get("/key", &[("apikey", "temp-key")]));
    set_clock::<1>(CREATED + 59.0);
    assert_eq!(call().await.status, 200);
    set_clock::<1>(CREATED + 60.0);
    let r = call().await;
    assert_eq!((r.status, message(&r)), (401, "Unauthorized".into()));
    // Keys without a ttl are not affected.
    set_clock::<1>(CREATED + 86_400.0 * 365.0);
    assert_eq!(
        send(h.http, get("/key", &[("apikey", "alice-key")]))
            .await
            .status,
        200
    );
    h.stop().await;
}

#[tokio::test]
async fn anonymous_consumers_and_a_missing_one() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<2>(&auth_config(&up)).await;
    let r = send(h.http, get("/anon", &[("apikey", "wrong")])).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-anonymous-consumer").as_deref(),
        Some("true")
    );
    assert_eq!(
        r.upstream_header("x-consumer-username").as_deref(),
        Some("anon")
    );
    assert_eq!(r.upstream_header("x-credential-identifier"), None);

    let r = send(h.http, get("/anon", &[("apikey", "bob-key")])).await;
    assert_eq!(
        r.upstream_header("x-consumer-username").as_deref(),
        Some("bob")
    );
    assert_eq!(r.upstream_header("x-anonymous-consumer"), None);

    let r = send(h.http, get("/ghost", &[])).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        message(&r),
        "anonymous consumer ghost is configured but doesn't exist"
    );
    h.stop().await;
}

#[tokio::test]
async fn basic_auth_challenges_and_authenticates() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<3>(&auth_config(&up)).await;

    let r = send(h.http, get("/basic", &[])).await;
    assert_eq!((r.status, message(&r)), (401, "Unauthorized".into()));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"service\"")
    );
    // alice:wrong
    let r = send(
        h.http,
        get("/basic", &[("authorization", "Basic YWxpY2U6d3Jvbmc=")]),
    )
    .await;
    assert_eq!((r.status, message(&r)), (401, "Unauthorized".into()));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"service\"")
    );

    // The password holds a colon: only the first one separates.
    let good = "Basic YWxpY2U6czNjcmV0Ong=".to_string(); // alice:s3cret:x
    let r = send(h.http, get("/basic", &[("authorization", &good)])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-consumer-id").as_deref(), Some(ALICE));
    assert_eq!(
        r.upstream_header("x-credential-identifier").as_deref(),
        Some("alice")
    );
    assert_eq!(r.upstream_header("authorization"), Some(good.clone()));

    let r = send(h.http, get("/bhidden", &[("proxy-authorization", &good)])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("proxy-authorization"), None);
    assert_eq!(
        r.upstream_header("x-consumer-username").as_deref(),
        Some("alice")
    );
    let r = send(h.http, get("/bhidden", &[])).await;
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"kong\""));
    h.stop().await;
}

#[tokio::test]
async fn acl_lets_groups_through_and_refuses_the_others() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<4>(&auth_config(&up)).await;
    let r = send(h.http, get("/groups", &[("apikey", "alice-key")])).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-consumer-groups").as_deref(),
        Some("admins, ops")
    );
    let r = send(h.http, get("/groups", &[("apikey", "bob-key")])).await;
    assert_eq!(
        (r.status, message(&r)),
        (403, "You cannot consume this service".into())
    );
    // No auth plugin identified anyone.
    let r = send(h.http, get("/nobody", &[])).await;
    assert_eq!((r.status, message(&r)), (401, "Unauthorized".into()));
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
    h.stop().await;
}

// === rate limiting ===

const LIMITED_ROUTE: &str = "00000000-0000-0000-0000-0000000000b1";

fn limit_config(upstream: &Upstream, redis: Option<(u16, &str)>) -> String {
    let policy = match redis {
        None => String::new(),
        Some((port, extra)) => {
            format!(", policy: redis, redis: {{host: 127.0.0.1, port: {port}{extra}}}")
        }
    };
    format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - id: {LIMITED_ROUTE}
        name: limited
        paths: [/limited]
        plugins: [{{name: rate-limiting, config: {{minute: 2, hour: 10{policy}}}}}]
      - name: per-consumer
        paths: [/consumer]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: {{minute: 1}}
consumers:
  - username: vip
    keyauth_credentials: [{{key: vip-key}}]
    plugins: [{{name: rate-limiting, config: {{minute: 3}}}}]
  - username: regular
    keyauth_credentials: [{{key: regular-key}}]
"#,
        upstream.target()
    )
}

fn limit_headers(r: &Reply) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.contains("ratelimit") || k == "retry-after"
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

/// Two requests pass, the third is refused with every header Kong sends; the next
/// minute lets requests through again. Shared by the local and redis policies.
async fn two_a_minute(h: &Harness, up: &Upstream, next_minute: impl Fn()) {
    let shown = |minute_left: &str, hour_left: &str, reset: &str| {
        pairs(&[
            ("x-ratelimit-limit-minute", "2"),
            ("x-ratelimit-remaining-minute", minute_left),
            ("x-ratelimit-limit-hour", "10"),
            ("x-ratelimit-remaining-hour", hour_left),
            ("ratelimit-limit", "2"),
            ("ratelimit-remaining", minute_left),
            ("ratelimit-reset", reset),
        ])
    };
    let hits = up.hits.load(Ordering::SeqCst);
    let r = send(h.http, get("/limited", &[])).await;
    assert_eq!((r.status, limit_headers(&r)), (200, shown("1", "9", "40")));
    let r = send(h.http, get("/limited", &[])).await;
    assert_eq!((r.status, limit_headers(&r)), (200, shown("0", "8", "40")));
    let r = send(h.http, get("/limited", &[])).await;
    let mut refused = shown("0", "8", "40");
    refused.push(("retry-after".into(), "40".into()));
    refused.sort();
    assert_eq!((r.status, limit_headers(&r)), (429, refused));
    assert_eq!(message(&r), "API rate limit exceeded");
    assert_eq!(up.hits.load(Ordering::SeqCst), hits + 2);
    next_minute();
    let r = send(h.http, get("/limited", &[])).await;
    // The new minute has just begun: 60 s to go.
    assert_eq!((r.status, limit_headers(&r)), (200, shown("1", "7", "60")));
}

#[tokio::test]
async fn local_policy_refuses_with_kongs_headers_and_retry_after() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<5>(&limit_config(&up, None)).await;
    two_a_minute(&h, &up, || set_clock::<5>(T + 40.0)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_consumer_scoped_limit_overrides_the_routes() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = harness::<6>(&limit_config(&up, None)).await;
    let call = |key: &'static str| send(h.http, get("/consumer", &[("apikey", key)]));
    assert_eq!(call("regular-key").await.status, 200);
    assert_eq!(call("regular-key").await.status, 429);
    for left in ["2", "1", "0"] {
        let r = call("vip-key").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit-minute"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some(left));
    }
    assert_eq!(call("vip-key").await.status, 429);
    h.stop().await;
}

#[tokio::test]
async fn redis_policy_counts_in_redis_under_kongs_keys_for_every_proxy() {
    let redis = RedisServer::start(&[]).await;
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = limit_config(&up, Some((redis.port, "")));
    let h = harness::<7>(&doc).await;
    two_a_minute(&h, &up, || set_clock::<7>(T + 40.0)).await;

    let key = |minute_start: i64, period: &str| {
        format!(
            "ratelimit:{LIMITED_ROUTE}:00000000-0000-0000-0000-000000000000:127.0.0.1:{}:{period}",
            minute_start * 1000
        )
    };
    assert_eq!(
        redis
            .command(&[], &["GET", &key(1_699_999_980, "minute")])
            .await,
        "2"
    );
    assert_eq!(
        redis
            .command(&[], &["GET", &key(1_700_000_040, "minute")])
            .await,
        "1"
    );
    assert_eq!(
        redis
            .command(&[], &["GET", &key(1_699_999_200, "hour")])
            .await,
        "3"
    );
    let ttl: i64 = redis
        .command(&[], &["TTL", &key(1_700_000_040, "minute")])
        .await
        .parse()
        .unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    // A second proxy on the same redis (another DP) shares the counts: one more
    // request this minute, then refused.
    let h2 = Harness::with_options(
        &doc,
        ProxyOptions {
            wall_clock: clock::<7>,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(send(h2.http, get("/limited", &[])).await.status, 200);
    assert_eq!(send(h2.http, get("/limited", &[])).await.status, 429);
    assert_eq!(send(h.http, get("/limited", &[])).await.status, 429);
    h.stop().await;
    h2.stop().await;
}

#[tokio::test]
async fn redis_policy_logs_in_and_selects_its_database() {
    let redis = RedisServer::start(&[
        "--requirepass",
        "default-pw",
        "--user",
        "tg",
        "on",
        ">tg-pw",
        "~*",
        "&*",
        "+@all",
    ])
    .await;
    let up = Upstream::start("u", Mode::Echo).await;
    let extra = ", username: tg, password: tg-pw, database: 2";
    let h = harness::<8>(&limit_config(&up, Some((redis.port, extra)))).await;
    assert_eq!(send(h.http, get("/limited", &[])).await.status, 200);
    let key = format!(
        "ratelimit:{LIMITED_ROUTE}:00000000-0000-0000-0000-000000000000:127.0.0.1:1699999980000:minute"
    );
    let login: &[&[&str]] = &[&["AUTH", "tg", "tg-pw"], &["SELECT", "2"]];
    assert_eq!(redis.command(login, &["GET", &key]).await, "1");
    let login: &[&[&str]] = &[&["AUTH", "tg", "tg-pw"]];
    assert_eq!(redis.command(login, &["GET", &key]).await, "nil");

    // A wrong password is a redis failure: fault tolerant by default, so the request
    // goes through, uncounted and without headers.
    let h2 = harness::<8>(&limit_config(
        &up,
        Some((redis.port, ", username: tg, password: wrong")),
    ))
    .await;
    let r = send(h2.http, get("/limited", &[])).await;
    assert_eq!(r.status, 200);
    assert_eq!(limit_headers(&r), vec![]);
    h.stop().await;
    h2.stop().await;
}

#[tokio::test]
async fn without_redis_fault_tolerant_lets_through_and_strict_answers_500() {
    let mut redis = RedisServer::start(&[]).await;
    let up = Upstream::start("u", Mode::Echo).await;
    let (silent, _task) = silent_listener().await;
    let doc = format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: tolerant
        paths: [/tolerant]
        plugins: [{{name: rate-limiting, config: {{minute: 5, policy: redis, redis: {{host: 127.0.0.1, port: {p}}}}}}}]
      - name: strict
        paths: [/strict]
        plugins: [{{name: rate-limiting, config: {{minute: 5, fault_tolerant: false, policy: redis, redis: {{host: 127.0.0.1, port: {p}}}}}}}]
      - name: hung-tolerant
        paths: [/hung-tolerant]
        plugins: [{{name: rate-limiting, config: {{minute: 5, policy: redis, redis: {{host: 127.0.0.1, port: {silent}, timeout: 200}}}}}}]
      - name: hung-strict
        paths: [/hung-strict]
        plugins: [{{name: rate-limiting, config: {{minute: 5, fault_tolerant: false, policy: redis, redis: {{host: 127.0.0.1, port: {silent}, timeout: 200}}}}}}]
"#,
        up.target(),
        p = redis.port,
    );
    let h = harness::<9>(&doc).await;
    for path in ["/tolerant", "/strict"] {
        let r = send(h.http, get(path, &[])).await;
        assert_eq!(r.status, 200, "{path} while redis runs");
        assert_eq!(r.header("x-ratelimit-remaining-minute"), Some("4"));
    }
    redis.stop();
    let r = send(h.http, get("/tolerant", &[])).await;
    assert_eq!((r.status, limit_headers(&r)), (200, vec![]));
    let r = send(h.http, get("/strict", &[])).await;
    assert_eq!(
        (r.status, message(&r)),
        (500, "An unexpected error occurred".into())
    );

    // A server that never answers: the command timeout decides.
    let started = tokio::time::Instant::now();
    let r = send(h.http, get("/hung-tolerant", &[])).await;
    assert_eq!((r.status, limit_headers(&r)), (200, vec![]));
    let r = send(h.http, get("/hung-strict", &[])).await;
    assert_eq!(
        (r.status, message(&r)),
        (500, "An unexpected error occurred".into())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    h.stop().await;
}

#[tokio::test]
async fn limits_per_header_value_fall_back_to_the_client_ip() {
    let up = Upstream::start("u", Mode::Echo).await;
    let doc = format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: tenants
        paths: [/t]
        plugins: [{{name: rate-limiting, config: {{minute: 1, limit_by: header, header_name: x-tenant}}}}]
"#,
        up.target()
    );
    let h = harness::<10>(&doc).await;
    let call = |tenant: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
        send(h.http, get("/t", &headers))
    };
    assert_eq!(call(Some("a")).await.status, 200);
    assert_eq!(call(Some("a")).await.status, 429);
    assert_eq!(call(Some("b")).await.status, 200);
    assert_eq!(call(None).await.status, 200);
    assert_eq!(call(None).await.status, 429);
    h.stop().await;
}
