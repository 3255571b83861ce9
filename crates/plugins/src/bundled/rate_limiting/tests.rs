use std::net::{IpAddr, Ipv4Addr};

use tidegate_model::plugins::PluginConfig;

use super::*;
use crate::bundled::key_auth::tests::{consumers, new_cx, req, run};
use crate::consumers::Consumers;
use crate::context::Credential;

// === windows ===

/// 2023-11-14T22:13:20Z.
const T: i64 = 1_700_000_000;

#[test]
fn windows_start_on_the_utc_calendar() {
    let cases = [
        // (now, period, start, end)
        (T, Period::Second, T, T + 1),
        (T, Period::Minute, 1_699_999_980, 1_700_000_040),
        (T, Period::Hour, 1_699_999_200, 1_700_002_800),
        (T, Period::Day, 1_699_920_000, 1_700_006_400),
        // 2023-11-01 .. 2023-12-01
        (T, Period::Month, 1_698_796_800, 1_701_388_800),
        // 2023-01-01 .. 2024-01-01
        (T, Period::Year, 1_672_531_200, 1_704_067_200),
        // 2024-02-29T12:00Z: a leap February, 29 days.
        (1_709_208_000, Period::Month, 1_706_745_600, 1_709_251_200),
        (1_709_208_000, Period::Year, 1_704_067_200, 1_735_689_600),
        // 2023-12-31T23:59:59Z: December ends with the year.
        (1_704_067_199, Period::Month, 1_701_388_800, 1_704_067_200),
        (1_704_067_199, Period::Day, 1_703_980_800, 1_704_067_200),
        // The first second of a window is in it.
        (1_704_067_200, Period::Year, 1_704_067_200, 1_735_689_600),
        // Before the epoch: 1969-12-31T23:59:59Z.
        (-1, Period::Minute, -60, 0),
        (-1, Period::Day, -86_400, 0),
        (-1, Period::Month, -2_678_400, 0),
        (-1, Period::Year, -31_536_000, 0),
    ];
    for (now, period, start, end) in cases {
        assert_eq!(period.start(now), start, "{period:?} start at {now}");
        assert_eq!(period.end(start), end, "{period:?} end after {start}");
    }
}

#[test]
fn kongs_expiration_table() {
    let got: Vec<(&str, i64)> = Period::ALL
        .iter()
        .map(|p| (p.name(), p.expiration()))
        .collect();
    assert_eq!(
        got,
        [
            ("second", 1),
            ("minute", 60),
            ("hour", 3_600),
            ("day", 86_400),
            ("month", 2_592_000),
            ("year", 31_536_000)
        ]
    );
}

// === local counters ===

fn key(n: u128, start: i64) -> Key {
    Key {
        plugin: Uuid::from_u128(1),
        ident: Ident::Uuid(Uuid::from_u128(n)),
        period: Period::Minute,
        start,
    }
}

#[test]
fn counters_count_per_key_and_forget_ended_windows() {
    let c = LocalCounters::default();
    let (a, b) = (key(1, 0), key(2, 0));
    assert_eq!(c.get(&a, 0), 0);
    assert_eq!(c.incr(&a, 60, 0), 1);
    assert_eq!(c.incr(&a, 60, 30), 2);
    assert_eq!(c.incr(&b, 60, 30), 1);
    assert_eq!((c.get(&a, 59), c.get(&b, 59)), (2, 1));
    // Once the window ended the count is gone, even before a sweep.
    assert_eq!(c.get(&a, 60), 0);
    assert_eq!(c.incr(&a, 120, 60), 1);
}

#[test]
fn ended_windows_are_swept_on_insert() {
    let c = LocalCounters::default();
    for n in 0..2_000 {
        c.incr(&key(n, 0), 60, 0);
    }
    assert_eq!(c.len(), 2_000);
    // New windows' inserts touch every shard (2,000 keys over 64 shards) and each
    // drops what ended there.
    for n in 0..2_000 {
        c.incr(&key(n, 60), 120, 60);
    }
    assert_eq!(c.len(), 2_000);
}

#[test]
fn live_counters_are_bounded() {
    let c = LocalCounters::with_capacity(local::SHARDS * 4);
    for n in 0..10_000 {
        c.incr(&key(n, 0), 60, 0);
    }
    assert!(c.len() <= local::SHARDS * 4, "{} counters", c.len());
    assert!(c.len() >= local::SHARDS, "{} counters", c.len());
}

#[test]
fn concurrent_increments_are_all_counted() {
    let c = Arc::new(LocalCounters::default());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    c.incr(&key(1, 0), 60, 0);
                    c.incr(&key(100 + t, 0), 60, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.get(&key(1, 0), 0), 8_000);
    assert_eq!(c.get(&key(100, 0), 0), 1_000);
}

#[test]
fn get_then_incr_counts_only_what_it_allows() {
    let c = LocalCounters::default();
    let a = key(1, 0);
    let seen = c.get_then_incr(&a, 60, 0, |n| (true, n));
    assert_eq!((seen, c.get(&a, 0)), (0, 1));
    let seen = c.get_then_incr(&a, 60, 1, |n| (false, n));
    assert_eq!((seen, c.get(&a, 1)), (1, 1));
    let seen = c.get_then_incr(&a, 60, 2, |n| (n < 5, n));
    assert_eq!((seen, c.get(&a, 2)), (1, 2));
    // An ended window reads as 0 and starts over.
    let seen = c.get_then_incr(&a, 120, 60, |n| (true, n));
    assert_eq!((seen, c.get(&a, 60)), (0, 1));
}

#[test]
fn header_numbers_are_written_as_http_writes_integers() {
    for n in (-1_000..=1_000)
        .chain([i64::MIN, i64::MIN + 1, i64::MAX, 9_999_999, 10_000_000])
        .chain((0..19).map(|e| 10i64.pow(e)))
    {
        assert_eq!(super::integer(n), HeaderValue::from(n), "{n}");
    }
    assert_eq!(super::number(10_000_000.0), "10000000");
    assert_eq!(super::number(2.5), "2.5");
}

// === the plugin, local policy ===

fn limiter(config: serde_json::Value, rt: &Runtime) -> RateLimiting {
    let Some(Ok(PluginConfig::RateLimiting(c))) =
        PluginConfig::read("rate-limiting", Some(&config))
    else {
        panic!("bad config {config}");
    };
    RateLimiting::new(&c, rt).unwrap()
}

/// What a request got: status (200 when let through) and the rate-limit headers.
async fn hit(p: &RateLimiting, consumers: &Consumers, now: i64) -> (u16, Vec<(String, String)>) {
    hit_as(p, consumers, now, |_| {}).await
}

async fn hit_as(
    p: &RateLimiting,
    consumers: &Consumers,
    now: i64,
    setup: impl FnOnce(&mut Ctx<'_>),
) -> (u16, Vec<(String, String)>) {
    let mut cx = new_cx(consumers, now as f64 + 0.75);
    cx.plugin.id = Uuid::from_u128(0x1);
    setup(&mut cx);
    let mut r = req("GET", "/p", &[], "");
    let status = match run(p, &mut cx, &mut r).await {
        Ok(()) => 200,
        Err((s, m, _)) => {
            assert!(m == "API rate limit exceeded" || s != 429, "{m}");
            s
        }
    };
    let mut headers: Vec<(String, String)> = cx
        .response_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    (status, headers)
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_minute_limit_counts_down_then_refuses_with_retry_after() {
    let rt = Runtime::new();
    let c = Consumers::default();
    let p = limiter(serde_json::json!({"minute": 3}), &rt);
    // T is 20 s into its minute: 40 s to go.
    for left in ["2", "1", "0"] {
        assert_eq!(
            hit(&p, &c, T).await,
            (
                200,
                h(&[
                    ("x-ratelimit-limit-minute", "3"),
                    ("x-ratelimit-remaining-minute", left),
                    ("ratelimit-limit", "3"),
                    ("ratelimit-remaining", left),
                    ("ratelimit-reset", "40"),
                ])
            )
        );
    }
    let refused = (
        429,
        h(&[
            ("x-ratelimit-limit-minute", "3"),
            ("x-ratelimit-remaining-minute", "0"),
            ("ratelimit-limit", "3"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", "30"),
            ("retry-after", "30"),
        ]),
    );
    assert_eq!(hit(&p, &c, T + 10).await, refused);
    // The next minute starts afresh.
    assert_eq!(hit(&p, &c, T + 40).await.0, 200);
}

#[tokio::test]
async fn the_window_with_least_left_is_shown_the_longest_on_a_tie() {
    let rt = Runtime::new();
    let c = Consumers::default();
    let p = limiter(serde_json::json!({"second": 5, "minute": 10}), &rt);
    let (_, got) = hit(&p, &c, T).await;
    assert!(
        got.contains(&("ratelimit-remaining".into(), "4".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("ratelimit-reset".into(), "1".into())),
        "{got:?}"
    );
    assert!(got.contains(&("x-ratelimit-remaining-minute".into(), "9".into())));

    let p = limiter(serde_json::json!({"minute": 5, "hour": 5}), &Runtime::new());
    let (_, got) = hit(&p, &c, T).await;
    // T is 13 min 20 s into its hour.
    assert!(
        got.contains(&("ratelimit-reset".into(), "2800".into())),
        "{got:?}"
    );
}

#[tokio::test]
async fn refused_requests_do_not_count() {
    let rt = Runtime::new();
    let c = Consumers::default();
    let p = limiter(serde_json::json!({"minute": 2, "hour": 10}), &rt);
    hit(&p, &c, T).await;
    hit(&p, &c, T).await;
    let (status, got) = hit(&p, &c, T).await;
    assert_eq!(status, 429);
    // The hour is not the exceeded window: shown as it is, not less one.
    assert!(
        got.contains(&("x-ratelimit-remaining-hour".into(), "8".into())),
        "{got:?}"
    );
    let (status, got) = hit(&p, &c, T + 60).await;
    assert_eq!(status, 200);
    assert!(
        got.contains(&("x-ratelimit-remaining-hour".into(), "7".into())),
        "{got:?}"
    );
}

#[tokio::test]
async fn hidden_headers_and_a_custom_error() {
    let rt = Runtime::new();
    let c = Consumers::default();
    let p = limiter(
        serde_json::json!({"minute": 1, "hide_client_headers": true, "error_code": 503, "error_message": "slow down"}),
        &rt,
    );
    assert_eq!(hit(&p, &c, T).await, (200, vec![]));
    let mut cx = new_cx(&c, T as f64);
    cx.plugin.id = Uuid::from_u128(0x1);
    let mut r = req("GET", "/", &[], "");
    let (s, m, headers) = run(&p, &mut cx, &mut r).await.unwrap_err();
    assert_eq!((s, m.as_str()), (503, "slow down"));
    // Kong computes Retry-After with the headers it would show: none here.
    assert!(headers.is_empty() && cx.response_headers.is_empty());
}

#[tokio::test]
async fn instances_count_apart_and_across_config_versions() {
    let rt = Runtime::new();
    let c = Consumers::default();
    let config = serde_json::json!({"minute": 1});
    let v1 = limiter(config.clone(), &rt);
    assert_eq!(hit(&v1, &c, T).await.0, 200);
    // The same instance rebuilt for a new config version keeps its count.
    let v2 = limiter(config, &rt);
    assert_eq!(hit(&v2, &c, T).await.0, 429);
    // Another instance has its own.
    let other = hit_as(&v2, &c, T, |cx| cx.plugin.id = Uuid::from_u128(0x2)).await;
    assert_eq!(other.0, 200);
}

/// What a test does to the context before the plugin runs.
type Setup<'a> = Box<dyn Fn(&mut Ctx<'_>) + 'a>;

#[tokio::test]
async fn whom_a_request_counts_against() {
    let rt = Runtime::new();
    let doc = "_format_version: '3.0'\nconsumers: [{username: a}, {username: b}]\n";
    let c = consumers(doc);
    let a = c.find("a").unwrap().clone();
    let cred = Credential {
        id: Uuid::from_u128(0xc),
        identifier: "k".into(),
    };
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n));
    let svc = Uuid::from_u128(0x5);
    let r = req("GET", "/exact", &[("x-tenant", "t1")], "");
    let cases: Vec<(serde_json::Value, Setup<'_>, Ident)> = vec![
        (
            serde_json::json!({"minute": 1}),
            Box::new(|cx: &mut Ctx<'_>| cx.authenticate(a.clone(), Some(cred.clone()))),
            Ident::Uuid(a.id),
        ),
        // No consumer: the client IP.
        (
            serde_json::json!({"minute": 1}),
            Box::new(|_: &mut Ctx<'_>| {}),
            Ident::Ip(ip(1)),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "credential"}),
            Box::new(|cx: &mut Ctx<'_>| cx.authenticate(a.clone(), Some(cred.clone()))),
            Ident::Uuid(cred.id),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "credential"}),
            Box::new(|cx: &mut Ctx<'_>| cx.authenticate(a.clone(), None)),
            Ident::Ip(ip(1)),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "service"}),
            Box::new(move |cx: &mut Ctx<'_>| cx.service_id = Some(svc)),
            Ident::Uuid(svc),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "header", "header_name": "X-Tenant"}),
            Box::new(|_: &mut Ctx<'_>| {}),
            Ident::Text(Arc::from("t1")),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "header", "header_name": "x-other"}),
            Box::new(|_: &mut Ctx<'_>| {}),
            Ident::Ip(ip(1)),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "path", "path": "/exact"}),
            Box::new(|_: &mut Ctx<'_>| {}),
            Ident::Text(Arc::from("/exact")),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "path", "path": "/other"}),
            Box::new(|_: &mut Ctx<'_>| {}),
            Ident::Ip(ip(1)),
        ),
        (
            serde_json::json!({"minute": 1, "limit_by": "ip"}),
            Box::new(|cx: &mut Ctx<'_>| cx.authenticate(a.clone(), Some(cred.clone()))),
            Ident::Ip(ip(1)),
        ),
    ];
    for (config, setup, want) in cases {
        let p = limiter(config.clone(), &rt);
        let mut cx = new_cx(&c, T as f64);
        cx.client_ip = ip(1);
        setup(&mut cx);
        assert_eq!(p.identifier(&cx, &r), want, "{config}");
    }
}

#[test]
fn redis_keys_are_kongs() {
    let c = Consumers::default();
    let mut cx = new_cx(&c, T as f64);
    let ident = Ident::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    assert_eq!(
        RateLimiting::redis_key(&cx, &ident, Period::Minute, T),
        "ratelimit:00000000-0000-0000-0000-000000000000:00000000-0000-0000-0000-000000000000:127.0.0.1:1699999980000:minute"
    );
    cx.plugin.route = Some(Uuid::from_u128(0xa));
    cx.plugin.service = Some(Uuid::from_u128(0xb));
    assert_eq!(
        RateLimiting::redis_key(&cx, &Ident::Uuid(Uuid::from_u128(0xc)), Period::Month, T),
        "ratelimit:00000000-0000-0000-0000-00000000000a:00000000-0000-0000-0000-00000000000b:00000000-0000-0000-0000-00000000000c:1698796800000:month"
    );
}

#[test]
fn numbers_print_as_lua_prints_them() {
    assert_eq!(number(5.0), "5");
    assert_eq!(number(0.0), "0");
    assert_eq!(number(2.5), "2.5");
}
