//! What the proxy counts for `/metrics`: requests by route, service and status, the
//! latency until the response headers were ready, and target health — the series of
//! Kong's prometheus plugin, under tidegate's names.
//!
//! Recording costs one uncontended lock and a small map update per request; names are
//! looked up only when rendering, from the config served at that moment.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use crate::config::{Live, ProxyConfig};

/// Upper bounds of the latency buckets in milliseconds (Kong's prometheus defaults).
const BUCKETS_MS: [u64; 17] = [
    1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000,
];

/// Routes tracked one by one; requests on more (a config that churns through routes)
/// are counted together under `route="other"`.
const MAX_ROUTES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// Matched a route (and maybe its service).
    Route { route: Uuid, service: Option<Uuid> },
    /// Matched nothing (404) or was refused before routing.
    Unrouted,
    /// Beyond `MAX_ROUTES`.
    Other,
}

#[derive(Default)]
struct Series {
    /// (status, count), a handful per route.
    statuses: Vec<(u16, u64)>,
    buckets: [u64; BUCKETS_MS.len()],
    count: u64,
    sum_ms: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// Updated on every request: foldhash rather than SipHash. Keys are route and
    /// service ids from the config.
    series: Mutex<HashMap<Key, Series, foldhash::fast::RandomState>>,
}

impl Metrics {
    pub(crate) fn record(
        &self,
        route: Option<(Uuid, Option<Uuid>)>,
        status: u16,
        latency: Duration,
    ) {
        let mut map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = match route {
            Some((route, service)) => Key::Route { route, service },
            None => Key::Unrouted,
        };
        if map.len() >= MAX_ROUTES && !map.contains_key(&key) {
            key = Key::Other;
        }
        let s = map.entry(key).or_default();
        match s.statuses.iter_mut().find(|(code, _)| *code == status) {
            Some((_, n)) => *n += 1,
            None => s.statuses.push((status, 1)),
        }
        let ms = latency.as_secs_f64() * 1000.0;
        let i = BUCKETS_MS.partition_point(|b| (*b as f64) < ms);
        if let Some(b) = s.buckets.get_mut(i) {
            *b += 1;
        }
        s.count += 1;
        s.sum_ms += ms;
    }

    /// The series in Prometheus text format, named after the entities of `config`
    /// (an id when a route or service is gone or has no name).
    fn render(&self, config: &ProxyConfig, out: &mut String) {
        let map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let routes: HashMap<Uuid, Option<&str>> = config
            .router
            .routes()
            .map(|r| (r.id, r.name.as_deref()))
            .collect();
        let mut rows: Vec<(String, &Series)> = map
            .iter()
            .map(|(key, s)| (labels(config, &routes, key), s))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(
            out,
            "# HELP tidegate_http_requests_total Requests the proxy answered, by service, route and status."
        );
        let _ = writeln!(out, "# TYPE tidegate_http_requests_total counter");
        for (l, s) in &rows {
            let mut statuses = s.statuses.clone();
            statuses.sort_unstable();
            for (code, n) in statuses {
                let _ = writeln!(
                    out,
                    "tidegate_http_requests_total{{{l},code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tidegate_request_latency_ms Time from receiving a request to its response headers being ready, in milliseconds."
        );
        let _ = writeln!(out, "# TYPE tidegate_request_latency_ms histogram");
        for (l, s) in &rows {
            let mut cumulative = 0;
            for (le, n) in BUCKETS_MS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "tidegate_request_latency_ms_bucket{{{l},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "tidegate_request_latency_ms_bucket{{{l},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(out, "tidegate_request_latency_ms_sum{{{l}}} {}", s.sum_ms);
            let _ = writeln!(out, "tidegate_request_latency_ms_count{{{l}}} {}", s.count);
        }
    }
}

fn labels(config: &ProxyConfig, routes: &HashMap<Uuid, Option<&str>>, key: &Key) -> String {
    match key {
        Key::Route { route, service } => {
            let route_name = routes
                .get(route)
                .copied()
                .flatten()
                .map_or_else(|| route.to_string(), str::to_string);
            let service_name = service
                .map(|id| {
                    config
                        .services
                        .get(&id)
                        .and_then(|s| s.name.clone())
                        .unwrap_or_else(|| id.to_string())
                })
                .unwrap_or_default();
            format!(
                "service=\"{}\",route=\"{}\"",
                escape(&service_name),
                escape(&route_name)
            )
        }
        Key::Unrouted => "service=\"\",route=\"\"".to_string(),
        Key::Other => "service=\"\",route=\"other\"".to_string(),
    }
}

/// A label value escaped as the text format wants.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The proxy's series and the health of the targets it serves, for `/metrics`.
#[derive(Clone)]
pub struct ProxyStats {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) live: Arc<Live>,
}

impl ProxyStats {
    pub fn render(&self) -> String {
        let config = self.live.load();
        let mut out = String::new();
        self.metrics.render(&config, &mut out);
        let _ = writeln!(
            out,
            "# HELP tidegate_upstream_target_health 1 for the state each target of an upstream is in (healthy or unhealthy)."
        );
        let _ = writeln!(out, "# TYPE tidegate_upstream_target_health gauge");
        let mut names: Vec<&String> = config.balancers.keys().collect();
        names.sort();
        for name in names {
            let b = &config.balancers[name];
            for (i, t) in b.targets.iter().enumerate() {
                let healthy = b.is_healthy(i);
                for (state, v) in [("healthy", healthy), ("unhealthy", !healthy)] {
                    let _ = writeln!(
                        out,
                        "tidegate_upstream_target_health{{upstream=\"{}\",target=\"{}:{}\",state=\"{state}\"}} {}",
                        escape(name),
                        escape(&t.host),
                        t.port,
                        u8::from(v)
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_statuses_counted() {
        let m = Metrics::default();
        let r = Some((Uuid::from_u128(1), None));
        m.record(r, 200, Duration::from_micros(500));
        m.record(r, 200, Duration::from_millis(12));
        m.record(r, 502, Duration::from_secs(10));
        m.record(None, 404, Duration::from_micros(10));
        let mut out = String::new();
        m.render(&ProxyConfig::empty(), &mut out);
        let route = "service=\"\",route=\"00000000-0000-0000-0000-000000000001\"";
        for line in [
            format!("tidegate_http_requests_total{{{route},code=\"200\"}} 2"),
            format!("tidegate_http_requests_total{{{route},code=\"502\"}} 1"),
            "tidegate_http_requests_total{service=\"\",route=\"\",code=\"404\"} 1".to_string(),
            format!("tidegate_request_latency_ms_bucket{{{route},le=\"1\"}} 1"),
            format!("tidegate_request_latency_ms_bucket{{{route},le=\"10\"}} 1"),
            format!("tidegate_request_latency_ms_bucket{{{route},le=\"15\"}} 2"),
            format!("tidegate_request_latency_ms_bucket{{{route},le=\"6000\"}} 2"),
            format!("tidegate_request_latency_ms_bucket{{{route},le=\"+Inf\"}} 3"),
            format!("tidegate_request_latency_ms_count{{{route}}} 3"),
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
        }
    }

    #[test]
    fn routes_beyond_the_cap_are_counted_together() {
        let m = Metrics::default();
        for i in 0..(MAX_ROUTES as u128 + 5) {
            m.record(Some((Uuid::from_u128(i), None)), 200, Duration::ZERO);
        }
        let map = m.series.lock().unwrap();
        assert_eq!(map.len(), MAX_ROUTES + 1);
        assert_eq!(map[&Key::Other].count, 5);
    }
}
