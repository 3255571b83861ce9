//! Plugins in hybrid mode, end to end: a CP and two DP processes, rate limits that the
//! DPs share through one redis.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{dp_status, echo_upstream, proxy_get, wait_for, Cluster, Node, RedisServer};

const LONG: Duration = Duration::from_secs(60);

fn create(cp: &Node, path: &str, body: Value) -> Value {
    let r = cp.post(path, &body).expect("the CP answers");
    assert_eq!(r.status, 201, "POST {path}: {}", r.body);
    r.body
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Five requests a minute on one route, counted in redis: three through DP1 and two
/// through DP2 use them up, the sixth (through DP2) is refused, and so is the next one
/// through DP1.
#[test]
fn two_dps_share_rate_limits_through_one_redis() {
    let redis = RedisServer::start(&[]);
    let upstream = echo_upstream("up", 64);
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    c.start_dp(1, &[1], &[]);
    c.start_dp(2, &[1], &[]);

    let cp = c.node(1);
    create(
        cp,
        "/services",
        json!({"name": "s", "url": format!("http://{upstream}")}),
    );
    let route = create(
        cp,
        "/services/s/routes",
        json!({"name": "limited", "paths": ["/limited"]}),
    );
    create(
        cp,
        "/routes/limited/plugins",
        json!({"name": "rate-limiting", "config": {
            "minute": 5,
            "policy": "redis",
            "redis": {"host": "127.0.0.1", "port": redis.port},
            "fault_tolerant": false,
        }}),
    );
    let hash = c.cp_hash(1).expect("the CP reports its config hash");
    for dp in &c.dps {
        wait_for(&format!("dp{} to serve {hash}", dp.id), LONG, || {
            dp_status(dp).filter(|(h, _)| *h == hash).map(|_| ())
        });
    }

    // The DPs count in whole minutes of the real clock: start early in one so that the
    // seven requests below fall in the same window.
    wait_for("a minute with 15 s or more to go", LONG, || {
        (unix_now() % 60 < 45).then_some(())
    });
    let minute_start = unix_now() / 60 * 60;

    let (dp1, dp2) = (c.dp(1).proxy.clone(), c.dp(2).proxy.clone());
    let call = |proxy: &str| proxy_get(proxy, "/limited", "example.test").expect("the DP answers");
    for (proxy, left) in [
        (&dp1, "4"),
        (&dp1, "3"),
        (&dp1, "2"),
        (&dp2, "1"),
        (&dp2, "0"),
    ] {
        let (status, headers, body) = call(proxy);
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-ratelimit-limit-minute"), Some("5"));
        assert_eq!(header(&headers, "x-ratelimit-remaining-minute"), Some(left));
    }
    for proxy in [&dp2, &dp1] {
        let (status, headers, body) = call(proxy);
        assert_eq!(status, 429, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["message"],
            "API rate limit exceeded"
        );
        assert!(header(&headers, "retry-after").is_some());
    }
    assert_eq!(
        unix_now() / 60 * 60,
        minute_start,
        "the requests crossed a minute boundary"
    );

    // Kong's key: the route the instance is scoped to, no service, the client IP.
    let key = format!(
        "ratelimit:{}:00000000-0000-0000-0000-000000000000:127.0.0.1:{}:minute",
        route["id"].as_str().unwrap(),
        minute_start * 1000
    );
    assert_eq!(redis.command(&["GET", &key]).as_deref(), Some("5"));
}
