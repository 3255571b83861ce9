//! One row per rule: routes, a request, the route Kong picks. Rows marked "Kong" are
//! ported from `spec/01-unit/08-router_spec.lua` or read off `traditional.lua`.

use serde_json::{json, Value};
use tidegate_model::entities::Route;
use tidegate_model::Fk;
use uuid::Uuid;

use super::*;

// === fixtures ===

fn route(name: &str, spec: &Value) -> Route {
    let strs = |k: &str| -> Option<Vec<String>> {
        spec.get(k).map(|v| {
            v.as_array()
                .expect("list")
                .iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        })
    };
    let headers = spec.get("headers").map(|h| {
        h.as_object()
            .expect("map")
            .iter()
            .map(|(k, v)| {
                let vals = v.as_array().expect("list");
                let vals = vals.iter().map(|s| s.as_str().expect("str").to_string());
                (k.clone(), vals.collect())
            })
            .collect()
    });
    let int = |k: &str, d: i64| spec.get(k).and_then(Value::as_i64).unwrap_or(d);
    Route {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        created_at: int("created_at", 0),
        updated_at: 0,
        name: Some(name.to_string()),
        protocols: strs("protocols").unwrap_or_else(|| vec!["http".into(), "https".into()]),
        methods: strs("methods"),
        hosts: strs("hosts"),
        paths: strs("paths"),
        headers,
        https_redirect_status_code: int("https_redirect_status_code", 426),
        regex_priority: int("regex_priority", 0),
        strip_path: spec
            .get("strip_path")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        path_handling: "v0".into(),
        preserve_host: false,
        request_buffering: true,
        response_buffering: true,
        snis: strs("snis"),
        sources: None,
        destinations: None,
        tags: None,
        service: Some(Fk {
            id: Uuid::new_v5(&Uuid::NAMESPACE_OID, b"service"),
        }),
    }
}

fn routes(spec: &Value) -> Vec<Route> {
    spec.as_object()
        .expect("name -> route")
        .iter()
        .map(|(name, r)| route(name, r))
        .collect()
}

#[derive(Clone)]
struct Req {
    method: &'static str,
    host: Option<&'static str>,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    sni: Option<&'static str>,
    scheme: Scheme,
}

fn get(host: &'static str, path: &'static str) -> Req {
    Req {
        method: "GET",
        host: (!host.is_empty()).then_some(host),
        path,
        headers: Vec::new(),
        sni: None,
        scheme: Scheme::Http,
    }
}

impl Req {
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.push((k, v));
        self
    }
    fn https(mut self, sni: &'static str) -> Self {
        self.scheme = Scheme::Https;
        self.sni = (!sni.is_empty()).then_some(sni);
        self
    }
    fn find<'r>(&self, router: &'r Router) -> Option<Match<'r>> {
        router.find(&RequestView {
            method: self.method,
            host: self.host,
            path: self.path,
            headers: &self.headers,
            sni: self.sni,
            scheme: self.scheme,
        })
    }
}

fn name_of(m: &Option<Match<'_>>) -> Option<String> {
    m.as_ref().and_then(|m| m.route.name.clone())
}

// === the table ===

struct Row {
    rule: &'static str,
    routes: Value,
    req: Req,
    want: Option<&'static str>,
}

fn row(rule: &'static str, routes: Value, req: Req, want: Option<&'static str>) -> Row {
    Row {
        rule,
        routes,
        req,
        want,
    }
}

fn rows() -> Vec<Row> {
    vec![
        // --- hosts
        row(
            "plain host",
            json!({"a": {"hosts": ["example.com"]}}),
            get("example.com", "/"),
            Some("a"),
        ),
        row(
            "plain host mismatch",
            json!({"a": {"hosts": ["example.com"]}}),
            get("example.org", "/"),
            None,
        ),
        row(
            "no Host header",
            json!({"a": {"hosts": ["example.com"]}}),
            get("", "/"),
            None,
        ),
        row(
            "Kong: request port ignored by a portless host",
            json!({"a": {"hosts": ["example.com"]}}),
            get("example.com:8080", "/"),
            Some("a"),
        ),
        row(
            "Kong: host with port",
            json!({"a": {"hosts": ["example.com:8080"]}}),
            get("example.com:8080", "/"),
            Some("a"),
        ),
        row(
            "Kong: host with other port",
            json!({"a": {"hosts": ["example.com:8080"]}}),
            get("example.com:9090", "/"),
            None,
        ),
        row(
            "Kong: host with port, request without",
            json!({"a": {"hosts": ["example.com:8080"]}}),
            get("example.com", "/"),
            None,
        ),
        row(
            "Kong: plain host with default port needs it sent",
            json!({"a": {"hosts": ["example.com:80"]}}),
            get("example.com", "/"),
            None,
        ),
        row(
            "host is case-sensitive as in Kong",
            json!({"a": {"hosts": ["example.com"]}}),
            get("Example.com", "/"),
            None,
        ),
        row(
            "wildcard prefix",
            json!({"a": {"hosts": ["*.example.com"]}}),
            get("api.example.com", "/"),
            Some("a"),
        ),
        row(
            "wildcard prefix needs a label",
            json!({"a": {"hosts": ["*.example.com"]}}),
            get("example.com", "/"),
            None,
        ),
        row(
            "wildcard suffix",
            json!({"a": {"hosts": ["example.*"]}}),
            get("example.org", "/"),
            Some("a"),
        ),
        row(
            "wildcard and request port",
            json!({"a": {"hosts": ["*.example.com"]}}),
            get("api.example.com:8443", "/"),
            Some("a"),
        ),
        row(
            "wildcard with port",
            json!({"a": {"hosts": ["*.example.com:8000"]}}),
            get("a.example.com:8000", "/"),
            Some("a"),
        ),
        row(
            "wildcard with port, request on default",
            json!({"a": {"hosts": ["*.example.com:8000"]}}),
            get("a.example.com", "/"),
            None,
        ),
        row(
            "wildcard with default port matches portless request",
            json!({"a": {"hosts": ["*.example.com:443"]}}),
            get("a.example.com", "/").https(""),
            Some("a"),
        ),
        row(
            "plain host beats wildcard",
            json!({"a": {"hosts": ["*.example.com"], "created_at": 1}, "b": {"hosts": ["api.example.com"], "created_at": 2}}),
            get("api.example.com", "/"),
            Some("b"),
        ),
        row(
            "Kong: wildcard host with port beats plain host",
            json!({"a": {"hosts": ["api.example.com"]}, "b": {"hosts": ["*.example.com:80"]}}),
            get("api.example.com:80", "/"),
            Some("b"),
        ),
        row(
            "Kong: ...unless the request host indexes the plain route",
            json!({"a": {"hosts": ["api.example.com"]}, "b": {"hosts": ["*.example.com:80"]}}),
            get("api.example.com", "/"),
            Some("a"),
        ),
        // --- paths
        row(
            "prefix path",
            json!({"a": {"paths": ["/users"]}}),
            get("", "/users/1"),
            Some("a"),
        ),
        row(
            "Kong: prefix is a plain string prefix",
            json!({"a": {"paths": ["/foo"]}}),
            get("", "/foobar"),
            Some("a"),
        ),
        row(
            "prefix mismatch",
            json!({"a": {"paths": ["/foo"]}}),
            get("", "/fo"),
            None,
        ),
        row(
            "longer prefix wins",
            json!({"a": {"paths": ["/a"]}, "b": {"paths": ["/a/b"]}}),
            get("", "/a/b/c"),
            Some("b"),
        ),
        row(
            "longer prefix loses when it does not match",
            json!({"a": {"paths": ["/a"]}, "b": {"paths": ["/a/b"]}}),
            get("", "/a/c"),
            Some("a"),
        ),
        row(
            "regex path",
            json!({"a": {"paths": ["~/users/\\d+$"]}}),
            get("", "/users/42"),
            Some("a"),
        ),
        row(
            "regex anchored at start",
            json!({"a": {"paths": ["~/bar"]}}),
            get("", "/foo/bar"),
            None,
        ),
        row(
            "regex beats longer prefix",
            json!({"a": {"paths": ["/users/42/profile"]}, "b": {"paths": ["~/users/\\d+"]}}),
            get("", "/users/42/profile"),
            Some("b"),
        ),
        row(
            "higher regex_priority first",
            json!({"a": {"paths": ["~/x/\\d+"], "created_at": 1}, "b": {"paths": ["~/x/.*"], "regex_priority": 5, "created_at": 2}}),
            get("", "/x/1"),
            Some("b"),
        ),
        row(
            "equal regex_priority: older route",
            json!({"a": {"paths": ["~/x/\\d+"], "created_at": 2}, "b": {"paths": ["~/x/.*"], "created_at": 1}}),
            get("", "/x/1"),
            Some("b"),
        ),
        row(
            "regex_priority ignored for prefix paths",
            json!({"a": {"paths": ["/x/y"], "regex_priority": 0}, "b": {"paths": ["/x"], "regex_priority": 9}}),
            get("", "/x/y"),
            Some("a"),
        ),
        row(
            "equal prefix length: older route",
            json!({"a": {"paths": ["/ab"], "created_at": 5}, "b": {"paths": ["/ab"], "created_at": 3}}),
            get("", "/ab"),
            Some("b"),
        ),
        row(
            "each of several paths sorts on its own",
            json!({"a": {"paths": ["/s", "/a/very/long"]}, "b": {"paths": ["/a/very"]}}),
            get("", "/a/very/long/x"),
            Some("a"),
        ),
        row(
            "query string ignored",
            json!({"a": {"paths": ["/p"]}, "b": {"paths": ["/p?x"]}}),
            get("", "/p?x=1"),
            Some("a"),
        ),
        row(
            "Kong: path normalised (dot segments)",
            json!({"a": {"paths": ["/p"]}}),
            get("", "/a/../p"),
            Some("a"),
        ),
        row(
            "Kong: path normalised (percent-encoded unreserved)",
            json!({"a": {"paths": ["/p"]}}),
            get("", "/%70"),
            Some("a"),
        ),
        row(
            "Kong: path normalised (merged slashes)",
            json!({"a": {"paths": ["/p/q"]}}),
            get("", "//p//q"),
            Some("a"),
        ),
        // --- headers
        row(
            "header value case-insensitive",
            json!({"a": {"headers": {"x-version": ["V1"]}}}),
            get("", "/").header("X-Version", "v1"),
            Some("a"),
        ),
        row(
            "header: any listed value",
            json!({"a": {"headers": {"x-version": ["v1", "v2"]}}}),
            get("", "/").header("x-version", "v2"),
            Some("a"),
        ),
        row(
            "header mismatch",
            json!({"a": {"headers": {"x-version": ["v1"]}}}),
            get("", "/").header("x-version", "v3"),
            None,
        ),
        row(
            "header absent",
            json!({"a": {"headers": {"x-version": ["v1"]}}}),
            get("", "/"),
            None,
        ),
        row(
            "header: any request value",
            json!({"a": {"headers": {"x-version": ["v1"]}}}),
            get("", "/")
                .header("x-version", "zz")
                .header("x-version", "v1"),
            Some("a"),
        ),
        row(
            "header ~* regex on the lower-cased value",
            json!({"a": {"headers": {"x-version": ["~*v[0-9]+"]}}}),
            get("", "/").header("x-version", "V12"),
            Some("a"),
        ),
        row(
            "header ~* regex mismatch",
            json!({"a": {"headers": {"x-version": ["~*^v[0-9]+$"]}}}),
            get("", "/").header("x-version", "beta"),
            None,
        ),
        row(
            "all route headers required",
            json!({"a": {"headers": {"x-a": ["1"], "x-b": ["2"]}}}),
            get("", "/").header("x-a", "1"),
            None,
        ),
        row(
            "more headers first",
            json!({"a": {"headers": {"x-a": ["1"]}, "created_at": 1}, "b": {"headers": {"x-a": ["1"], "x-b": ["2"]}, "created_at": 2}}),
            get("", "/").header("x-a", "1").header("x-b", "2"),
            Some("b"),
        ),
        // --- methods and snis
        row(
            "method",
            json!({"a": {"methods": ["POST"]}}),
            get("", "/").method("POST"),
            Some("a"),
        ),
        row(
            "method mismatch",
            json!({"a": {"methods": ["POST"]}}),
            get("", "/"),
            None,
        ),
        row(
            "Kong: method is case-sensitive",
            json!({"a": {"methods": ["GET"]}}),
            get("", "/").method("get"),
            None,
        ),
        row(
            "sni",
            json!({"a": {"snis": ["a.com"], "protocols": ["https"]}}),
            get("", "/").https("a.com"),
            Some("a"),
        ),
        row(
            "sni mismatch",
            json!({"a": {"snis": ["a.com"], "protocols": ["https"]}}),
            get("", "/").https("b.com"),
            None,
        ),
        row(
            "Kong: trailing dot of a route sni dropped",
            json!({"a": {"snis": ["a.com."], "protocols": ["https"]}}),
            get("", "/").https("a.com"),
            Some("a"),
        ),
        row(
            "Kong: an sni rule passes a plain-text request",
            json!({"a": {"paths": ["/p"], "snis": ["a.com"]}}),
            get("", "/p"),
            Some("a"),
        ),
        row(
            "Kong: ...but the request's own category is tried first",
            json!({"a": {"paths": ["/p"], "snis": ["a.com"]}, "b": {"paths": ["/p"]}}),
            get("", "/p"),
            Some("b"),
        ),
        // --- categories
        row(
            "more fields beat fewer",
            json!({"a": {"paths": ["/p"], "created_at": 1}, "b": {"paths": ["/p"], "methods": ["GET"], "created_at": 2}}),
            get("", "/p"),
            Some("b"),
        ),
        row(
            "fewer fields when more fail",
            json!({"a": {"paths": ["/p"]}, "b": {"paths": ["/p"], "methods": ["POST"]}}),
            get("", "/p"),
            Some("a"),
        ),
        row(
            "hosts beat paths",
            json!({"a": {"paths": ["/p"]}, "b": {"hosts": ["h"]}}),
            get("h", "/p"),
            Some("b"),
        ),
        row(
            "hosts beat headers",
            json!({"a": {"headers": {"x": ["1"]}}, "b": {"hosts": ["h"]}}),
            get("h", "/").header("x", "1"),
            Some("b"),
        ),
        row(
            "headers beat paths",
            json!({"a": {"paths": ["/p"]}, "b": {"headers": {"x": ["1"]}}}),
            get("", "/p").header("x", "1"),
            Some("b"),
        ),
        row(
            "paths beat methods",
            json!({"a": {"methods": ["GET"]}, "b": {"paths": ["/p"]}}),
            get("", "/p"),
            Some("b"),
        ),
        row(
            "methods beat snis",
            json!({"a": {"snis": ["s.com"], "protocols": ["https"]}, "b": {"methods": ["GET"]}}),
            get("", "/").https("s.com"),
            Some("b"),
        ),
        row(
            "host+method beat header+path",
            json!({"a": {"headers": {"x": ["1"]}, "paths": ["/p"]}, "b": {"hosts": ["h"], "methods": ["GET"]}}),
            get("h", "/p").header("x", "1"),
            Some("b"),
        ),
        row(
            "Kong: the indexed candidates are tried before the category",
            json!({"a": {"hosts": ["h.com:8080"], "paths": ["/x"]}, "b": {"hosts": ["h.com"], "paths": ["/x/y"]}}),
            get("h.com:8080", "/x/y"),
            Some("a"),
        ),
        row(
            "nothing set matches nothing",
            json!({"a": {"paths": ["/p"]}}),
            get("", "/q"),
            None,
        ),
        row(
            "stream routes are not in the http router",
            json!({"a": {"snis": ["a.com"], "protocols": ["tls"]}}),
            get("", "/").https("a.com"),
            None,
        ),
    ]
}

#[test]
fn table() {
    let rows = rows();
    assert!(rows.len() >= 40);
    let mut failures = Vec::new();
    for r in &rows {
        let config = routes(&r.routes);
        let router = Router::build(&config).expect("routes compile");
        let got = name_of(&r.req.find(&router));
        if got.as_deref() != r.want {
            failures.push(format!("{}: want {:?}, got {got:?}", r.rule, r.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every row again with its routes in every rotation and reversed: Kong's order is
/// decided by the sort, never by the order routes are given in.
#[test]
fn result_does_not_depend_on_input_order() {
    for r in rows() {
        let config = routes(&r.routes);
        let mut orders = Vec::new();
        for k in 0..config.len() {
            let mut c = config.clone();
            c.rotate_left(k);
            orders.push(c.clone());
            c.reverse();
            orders.push(c);
        }
        for order in orders {
            let router = Router::build(&order).expect("routes compile");
            assert_eq!(
                name_of(&r.req.find(&router)).as_deref(),
                r.want,
                "{}",
                r.rule
            );
        }
    }
}

/// A larger config shuffled with a fixed LCG, checked over many requests.
#[test]
fn shuffled_config_routes_the_same() {
    let config = generated(300);
    let reference = Router::build(&config).expect("compile");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..8 {
        let mut shuffled = config.clone();
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let router = Router::build(&shuffled).expect("compile");
        for i in 0..300 {
            let host = format!("h{}.example.com", i % 17);
            let path = format!("/svc{}/x/{}", i % 23, i);
            let headers = vec![("x-tenant", if i % 2 == 0 { "a" } else { "b" })];
            let view = RequestView {
                method: if i % 3 == 0 { "POST" } else { "GET" },
                host: Some(&host),
                path: &path,
                headers: &headers,
                sni: None,
                scheme: Scheme::Http,
            };
            let a = reference.find(&view).map(|m| m.route.id);
            let b = router.find(&view).map(|m| m.route.id);
            assert_eq!(a, b, "{host} {path}");
        }
    }
}

pub(crate) fn generated(n: usize) -> Vec<Route> {
    (0..n)
        .map(|i| {
            let mut spec = json!({"created_at": (i * 7 % 13) as i64});
            let o = spec.as_object_mut().expect("object");
            match i % 5 {
                0 => o.insert("paths".into(), json!([format!("/svc{}", i % 23)])),
                1 => o.insert("paths".into(), json!([format!("~/svc{}/x/\\d+$", i % 23)])),
                2 => o.insert("hosts".into(), json!([format!("h{}.example.com", i % 17)])),
                3 => o.insert("hosts".into(), json!(["*.example.com"])),
                _ => o.insert("headers".into(), json!({"x-tenant": ["a"]})),
            };
            if i % 3 == 0 {
                o.insert("methods".into(), json!(["POST"]));
            }
            if i % 4 == 0 {
                o.insert("paths".into(), json!([format!("/svc{}/x", i % 23)]));
            }
            route(&format!("r{i}"), &spec)
        })
        .collect()
}

/// A small LCG so the differential test is reproducible without a rand dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize % n
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

fn random_route(rng: &mut Lcg, i: usize) -> Route {
    let k = rng.below(12);
    // Wide enough that one literal-prefix bucket holds a RegexSet's worth of regexes.
    let k2 = rng.below(48);
    let hosts = [
        format!("h{k}.ex.com"),
        format!("h{k}.ex.com:8080"),
        "h1.ex.com:80".to_string(),
        "*.ex.com".to_string(),
        format!("*.h{k}.ex.com"),
        format!("h{k}.*"),
        "*.ex.com:8080".to_string(),
        "*.ex.com:443".to_string(),
        "*x.com".to_string(),
        "*".to_string(),
        "*.e[x].com".to_string(),
        "[::1]".to_string(),
        "a".to_string(),
    ];
    let paths = [
        "/".to_string(),
        "/a".to_string(),
        "/a/b".to_string(),
        "/a/b/c".to_string(),
        format!("/svc{k}"),
        format!("/svc{k}/x"),
        "/a.c".to_string(),
        "/p?x".to_string(),
        "~/a/\\d+".to_string(),
        format!("~/svc{k}/x/\\d+$"),
        "~/(?i)A/b".to_string(),
        "~/a|/b".to_string(),
        "~(?P<x>/a)/.*".to_string(),
        "~/a.c".to_string(),
        "~/ab?c".to_string(),
        "~/[ab]/x".to_string(),
        format!("~/a/(?P<id>\\d+)/{k}"),
        format!("~/r/(x{k2}|y)"),
        format!("~/s/[a-z]+{k2}"),
        format!("~/s/{k}\\.+"),
        "~".to_string(),
    ];
    let headers = [
        json!({"x-a": ["1"]}),
        json!({"x-a": ["2"], "x-b": ["1"]}),
        json!({"x-c": ["~*v\\d"]}),
        json!({"X-B": ["1", "3"]}),
    ];
    let mut spec = json!({
        "created_at": rng.below(4) as i64,
        "regex_priority": rng.below(3) as i64,
        "strip_path": rng.chance(50),
    });
    let o = spec.as_object_mut().expect("object");
    if rng.chance(40) {
        let n = 1 + rng.below(2);
        let hs: Vec<String> = (0..n).map(|_| rng.pick(&hosts)).collect();
        o.insert("hosts".into(), json!(hs));
    }
    if rng.chance(60) {
        let n = 1 + rng.below(3);
        let ps: Vec<String> = (0..n).map(|_| rng.pick(&paths)).collect();
        o.insert("paths".into(), json!(ps));
    }
    if rng.chance(20) {
        o.insert("headers".into(), rng.pick(&headers));
    }
    if rng.chance(30) {
        let m = rng.pick(&[["GET"].as_slice(), &["POST"], &["GET", "POST"], &["get"]]);
        o.insert("methods".into(), json!(m));
    }
    if rng.chance(10) {
        o.insert("snis".into(), json!([rng.pick(&["s1.com", "s2.com."])]));
    }
    if rng.chance(10) {
        let p = rng.pick(&[
            ["https"].as_slice(),
            &["grpc", "grpcs"],
            &["tls"],
            &["http"],
        ]);
        o.insert("protocols".into(), json!(p));
    }
    if !["hosts", "paths", "headers", "methods", "snis"]
        .iter()
        .any(|k| o.contains_key(*k))
    {
        o.insert("paths".into(), json!([rng.pick(&paths)]));
    }
    route(&format!("r{i}"), &spec)
}

/// The indexed lookup against the linear scan it replaced, over random configs and
/// requests drawn from overlapping vocabularies.
#[test]
fn indexed_lookup_equals_linear_scan() {
    let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
    let config: Vec<Route> = (0..2_000).map(|i| random_route(&mut rng, i)).collect();
    let router = Router::build(&config).expect("compile");
    let hosts = [
        "h1.ex.com",
        "h2.ex.com:8080",
        "h1.ex.com:80",
        "h3.ex.com:443",
        "x.h4.ex.com",
        "x.ex.com:8080",
        "h5.org",
        "h6.org:81",
        "x.com",
        "ex.com",
        "a",
        "a:80",
        "[::1]",
        "[::1]:8443",
        "::1",
        "e.ex.com",
        "y.ex.com:99",
    ];
    let paths = [
        "/",
        "/a",
        "/a/b/c",
        "/a/12",
        "/a/12/3",
        "/svc3/x/7",
        "/svc4/x",
        "/svc11/x/1/2",
        "/r/x3",
        "/r/y",
        "/s/abc",
        "/s/abc7",
        "/s/abc23",
        "/r/x40",
        "/s/4..",
        "/a.c",
        "/abc",
        "/ac",
        "/p?x=1",
        "/A/b",
        "/b",
        "//a//b",
        "/b/x",
        "",
        "/%61/b",
        "/a/../svc2",
    ];
    let mut diffs = Vec::new();
    for _ in 0..2_000 {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for _ in 0..rng.below(3) {
            let h = rng.pick(&[
                ("x-a", "1"),
                ("x-a", "2"),
                ("X-B", "1"),
                ("x-c", "V9"),
                ("x-b", "3"),
            ]);
            headers.push(h);
        }
        let tls = rng.chance(30);
        let view = RequestView {
            method: rng.pick(&["GET", "POST", "get", "PUT"]),
            host: rng.chance(80).then(|| rng.pick(&hosts)),
            path: rng.pick(&paths),
            headers: &headers,
            sni: (tls && rng.chance(70)).then(|| rng.pick(&["s1.com", "s2.com", "s3.com"])),
            scheme: if tls { Scheme::Https } else { Scheme::Http },
        };
        let want = format!("{:?}", router.find_linear(&view));
        let got = format!("{:?}", router.find(&view));
        if want != got {
            diffs.push(format!(
                "{} {:?} {} {headers:?} {:?}\n  want {want}\n  got  {got}",
                view.method, view.host, view.path, view.sni
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differ:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(5)].join("\n")
    );
}

/// Kong trusts the request-wide regex hit for any route holding the same path value,
/// prefix routes included; the indexes must offer such a route as a candidate.
#[test]
fn kong_prefix_route_trusts_regex_hit_of_same_value() {
    let config =
        routes(&json!({"a": {"paths": ["~/a.c"]}, "b": {"paths": ["/a.c"], "methods": ["GET"]}}));
    let router = Router::build(&config).expect("compile");
    let req = get("", "/abc");
    assert_eq!(name_of(&req.find(&router)).as_deref(), Some("b"));
    let view = RequestView {
        method: req.method,
        host: None,
        path: req.path,
        headers: &req.headers,
        sni: None,
        scheme: Scheme::Http,
    };
    assert_eq!(
        format!("{:?}", router.find(&view)),
        format!("{:?}", router.find_linear(&view))
    );
}

// === what a match carries ===

#[test]
fn kong_uri_captures() {
    let config =
        routes(&json!({"a": {"paths": ["~/users/(?P<user_id>\\d+)/profile/?(?P<scope>[a-z]*)"]}}));
    let router = Router::build(&config).expect("compile");
    let m = get("domain.org", "/users/1984/profile")
        .find(&router)
        .expect("match");
    let c = m.captures.expect("captures");
    assert_eq!(c.name("user_id"), Some("1984"));
    assert_eq!(c.name("scope"), Some(""));
    assert_eq!(
        c.numbered,
        vec![
            Some("/users/1984/profile".to_string()),
            Some("1984".into()),
            Some("".into())
        ]
    );
    assert_eq!(
        m.matched_uri,
        Some("/users/(?P<user_id>\\d+)/profile/?(?P<scope>[a-z]*)")
    );
}

#[test]
fn regex_without_groups_has_no_captures() {
    let config = routes(&json!({"a": {"paths": ["~/users/\\d+"]}}));
    let router = Router::build(&config).expect("compile");
    let m = get("", "/users/1/x").find(&router).expect("match");
    assert!(m.captures.is_none());
    assert_eq!(m.uri_prefix.as_deref(), Some("/users/1"));
    assert_eq!(m.uri_postfix.as_deref(), Some("/x"));
    assert_eq!(m.prefix.as_deref(), Some("/users/1"));
}

#[test]
fn prefix_match_and_strip() {
    let config = routes(&json!({
        "a": {"paths": ["/api"], "hosts": ["*.example.com"]},
        "b": {"paths": ["/keep"], "strip_path": false},
    }));
    let router = Router::build(&config).expect("compile");
    let m = get("x.example.com", "/api/v1")
        .find(&router)
        .expect("match");
    assert_eq!(m.matched_host, Some("*.example.com"));
    assert_eq!(m.uri_prefix.as_deref(), Some("/api"));
    assert_eq!(m.uri_postfix.as_deref(), Some("/v1"));
    assert_eq!(m.prefix.as_deref(), Some("/api"));
    assert_eq!(crate::upstream_path(&m, Some("/base")), "/base/v1");
    assert_eq!(m.route.service_id, config[0].service.map(|s| s.id));

    let m = get("", "/keep/it").find(&router).expect("match");
    assert_eq!(m.prefix, None);
    assert_eq!(crate::upstream_path(&m, None), "/keep/it");
}

#[test]
fn kong_postfix_dot_segments_sanitised() {
    assert_eq!(sanitize_postfix(".."), "");
    assert_eq!(sanitize_postfix("./x"), "x");
    assert_eq!(sanitize_postfix("../x"), "x");
    assert_eq!(sanitize_postfix("/x"), "/x");
}

#[test]
fn matched_headers_method_sni() {
    let config = routes(
        &json!({"a": {"headers": {"X-Env": ["Prod"]}, "methods": ["GET"], "snis": ["a.com"]}}),
    );
    let router = Router::build(&config).expect("compile");
    let m = get("", "/")
        .header("x-env", "PROD")
        .https("a.com")
        .find(&router)
        .expect("match");
    assert_eq!(m.matched_headers, vec![("x-env", "prod".to_string())]);
    assert_eq!(m.matched_method.as_deref(), Some("GET"));
    assert_eq!(m.matched_sni.as_deref(), Some("a.com"));
}

// === protocols ===

#[test]
fn protocol_checks_after_matching() {
    let config = routes(&json!({
        "only_https": {"paths": ["/s"], "protocols": ["https"]},
        "redirect": {"paths": ["/r"], "protocols": ["https"], "https_redirect_status_code": 301},
        "only_http": {"paths": ["/h"], "protocols": ["http"]},
        "only_grpcs": {"paths": ["/g"], "protocols": ["grpcs"]},
        "grpc": {"paths": ["/pb"], "protocols": ["grpc", "grpcs"]},
    }));
    let router = Router::build(&config).expect("compile");
    let check = |path: &'static str, https: bool| {
        let req = if https {
            get("", path).https("")
        } else {
            get("", path)
        };
        let m = req
            .find(&router)
            .expect("Kong matches regardless of scheme");
        m.protocol_check(https)
    };
    assert_eq!(
        check("/s", false),
        ProtocolCheck::HttpsRequired { status: 426 }
    );
    assert_eq!(check("/s", true), ProtocolCheck::Proceed);
    assert_eq!(
        check("/r", false),
        ProtocolCheck::HttpsRequired { status: 301 }
    );
    // Kong serves an http-only route over https: its access phase only checks https-only.
    assert_eq!(check("/h", true), ProtocolCheck::Proceed);
    assert_eq!(check("/g", false), ProtocolCheck::GrpcsRequired);
    assert_eq!(check("/pb", false), ProtocolCheck::Proceed);
    let m = get("", "/pb").find(&router).expect("match");
    assert!(m.route.is_grpc());
}

// === building ===

#[test]
fn build_errors() {
    let bad = routes(&json!({"a": {"paths": ["~/(unclosed"]}}));
    assert!(matches!(Router::build(&bad), Err(BuildError::Regex { .. })));
    let bad = routes(&json!({"a": {"headers": {"x": ["~*(x"]}}}));
    assert!(matches!(Router::build(&bad), Err(BuildError::Regex { .. })));
    let empty = routes(&json!({"a": {}}));
    assert!(matches!(
        Router::build(&empty),
        Err(BuildError::NoMatchingFields(_))
    ));
}

#[test]
fn kong_split_port() {
    use crate::host::split_port;
    type Row<'a> = (&'a str, Option<u16>, (&'a str, &'a str, bool));
    let rows: &[Row<'_>] = &[
        (
            "example.com",
            Some(80),
            ("example.com", "example.com:80", false),
        ),
        (
            "example.com:8080",
            Some(80),
            ("example.com", "example.com:8080", true),
        ),
        (
            "example.com:",
            Some(80),
            ("example.com", "example.com:80", false),
        ),
        ("[::1]", Some(443), ("::1", "[::1]:443", false)),
        ("[::1]:8443", Some(443), ("::1", "[::1]:8443", true)),
        ("::1", Some(80), ("::1", "[::1]:80", false)),
        (
            "*.example.com:8000",
            None,
            ("*.example.com", "*.example.com:8000", true),
        ),
    ];
    for &(input, port, want) in rows {
        let (h, hp, p) = split_port(input, port);
        assert_eq!((h, hp.as_ref(), p), want, "{input}");
    }
}
