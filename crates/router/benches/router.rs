//! Route lookup cost with 1k and 10k routes: a mix of hosts, wildcard hosts, prefix
//! and regex paths, headers and methods, the way large Kong configs look.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tidegate_model::entities::Route;
use tidegate_router::{RequestView, Router, Scheme};
use uuid::Uuid;

fn config(n: usize) -> Vec<Route> {
    (0..n)
        .map(|i| {
            let list = |s: String| Some(vec![s]);
            let (mut hosts, mut paths, mut headers) = (None, None, None);
            match i % 4 {
                0 => paths = list(format!("/svc{i}/api")),
                1 => paths = list(format!("~/svc{i}/items/(?P<id>\\d+)$")),
                2 => {
                    hosts = list(format!("h{i}.example.com"));
                    paths = list(format!("/h{i}"));
                }
                _ => {
                    hosts = list(format!("*.t{i}.example.com"));
                    headers = Some([("x-tenant".to_string(), vec![format!("t{i}")])].into());
                }
            }
            Route {
                id: Uuid::from_u128(i as u128 + 1),
                created_at: i as i64,
                updated_at: 0,
                name: Some(format!("r{i}")),
                protocols: vec!["http".into(), "https".into()],
                methods: (i % 3 == 0).then(|| vec!["GET".into(), "POST".into()]),
                hosts,
                paths,
                headers,
                https_redirect_status_code: 426,
                regex_priority: 0,
                strip_path: true,
                path_handling: "v0".into(),
                preserve_host: false,
                request_buffering: true,
                response_buffering: true,
                snis: None,
                sources: None,
                destinations: None,
                tags: None,
                service: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for n in [1_000usize, 10_000] {
        let routes = config(n);
        let router = Router::build(&routes).expect("bench routes compile");
        let k = n / 2;
        let cases = [
            ("prefix", None, format!("/svc{k}/api/x"), None),
            ("regex", None, format!("/svc{}/items/42", k + 1), None),
            (
                "host+path",
                Some(format!("h{}.example.com", k + 2)),
                format!("/h{}", k + 2),
                None,
            ),
            (
                "wildcard+header",
                Some(format!("a.t{}.example.com", k + 3)),
                "/".to_string(),
                Some(format!("t{}", k + 3)),
            ),
            (
                "miss",
                Some("nowhere.test".to_string()),
                "/nothing/here".to_string(),
                None,
            ),
        ];
        for (label, host, path, tenant) in cases {
            let headers: Vec<(&str, &str)> =
                tenant.iter().map(|t| ("x-tenant", t.as_str())).collect();
            let view = RequestView {
                method: "GET",
                host: host.as_deref(),
                path: &path,
                headers: &headers,
                sni: None,
                scheme: Scheme::Http,
            };
            let hit = router.find(&view).is_some();
            assert_eq!(hit, label != "miss", "{label} at {n} routes");
            c.bench_function(&format!("find/{n}/{label}"), |b| {
                b.iter(|| black_box(router.find(black_box(&view)).is_some()))
            });
        }
        c.bench_function(&format!("build/{n}"), |b| {
            b.iter(|| black_box(Router::build(&routes).expect("compile").len()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
