//! `upstreams`: a virtual hostname with a load-balancing ring of targets and health checks.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::typedefs;

pub const DEFAULT_SLOTS: i64 = 10_000;
const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];
const ALGORITHMS: &[&str] = &[
    "consistent-hashing",
    "least-connections",
    "round-robin",
    "latency",
];
const HTTP_STATUS_MIN: i64 = 100;
const HTTP_STATUS_MAX: i64 = 999;
const MAX_COUNTER: i64 = 255;
const MAX_INTERVAL: f64 = 65535.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: String,
    pub algorithm: String,
    pub hash_on: String,
    pub hash_fallback: String,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    pub hash_on_cookie_path: String,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    pub slots: i64,
    pub healthchecks: Healthchecks,
    pub tags: Option<Vec<String>>,
    pub host_header: Option<String>,
    pub client_certificate: Option<Fk>,
    pub use_srv_name: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthchecks {
    pub active: ActiveCheck,
    pub passive: PassiveCheck,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveCheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub timeout: f64,
    pub concurrency: i64,
    pub http_path: String,
    pub https_verify_certificate: bool,
    pub https_sni: Option<String>,
    pub headers: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub healthy: Healthy,
    pub unhealthy: Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveCheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

/// Active checks of healthy targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthy {
    /// Seconds between probes of a healthy target; 0 disables them.
    pub interval: f64,
    pub http_statuses: Vec<i64>,
    pub successes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unhealthy {
    pub interval: f64,
    pub http_statuses: Vec<i64>,
    pub tcp_failures: i64,
    pub timeouts: i64,
    pub http_failures: i64,
}

/// Passive checks have no probe interval in Kong's schema, so they are types of their own
/// (a skipped field would break the positional binary encoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<i64>,
    pub successes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<i64>,
    pub tcp_failures: i64,
    pub timeouts: i64,
    pub http_failures: i64,
}

const ACTIVE_HEALTHY: &[i64] = &[200, 302];
const ACTIVE_UNHEALTHY: &[i64] = &[429, 404, 500, 501, 502, 503, 504, 505];
const PASSIVE_HEALTHY: &[i64] = &[
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308,
];
const PASSIVE_UNHEALTHY: &[i64] = &[429, 500, 503];

fn read_interval(r: &mut Reader<'_>) -> f64 {
    let interval = r.number("interval").unwrap_or(0.0);
    if !(0.0..=MAX_INTERVAL).contains(&interval) {
        r.error("interval", format!("value should be between 0 and {MAX_INTERVAL}"));
    }
    interval
}

fn read_statuses(r: &mut Reader<'_>, default: &[i64]) -> Vec<i64> {
    r.integers("http_statuses", HTTP_STATUS_MIN, HTTP_STATUS_MAX)
        .unwrap_or_else(|| default.to_vec())
}

fn read_counter(r: &mut Reader<'_>, key: &'static str) -> i64 {
    r.int_between(key, 0, MAX_COUNTER).unwrap_or(0)
}

fn read_healthy(r: &mut Reader<'_>) -> Healthy {
    Healthy {
        interval: read_interval(r),
        http_statuses: read_statuses(r, ACTIVE_HEALTHY),
        successes: read_counter(r, "successes"),
    }
}

fn read_unhealthy(r: &mut Reader<'_>) -> Unhealthy {
    Unhealthy {
        interval: read_interval(r),
        http_statuses: read_statuses(r, ACTIVE_UNHEALTHY),
        tcp_failures: read_counter(r, "tcp_failures"),
        timeouts: read_counter(r, "timeouts"),
        http_failures: read_counter(r, "http_failures"),
    }
}

fn read_passive_healthy(r: &mut Reader<'_>) -> PassiveHealthy {
    PassiveHealthy {
        http_statuses: read_statuses(r, PASSIVE_HEALTHY),
        successes: read_counter(r, "successes"),
    }
}

fn read_passive_unhealthy(r: &mut Reader<'_>) -> PassiveUnhealthy {
    PassiveUnhealthy {
        http_statuses: read_statuses(r, PASSIVE_UNHEALTHY),
        tcp_failures: read_counter(r, "tcp_failures"),
        timeouts: read_counter(r, "timeouts"),
        http_failures: read_counter(r, "http_failures"),
    }
}

/// Reads a nested record, or its defaults when the input leaves it out.
fn record_or_default<T>(r: &mut Reader<'_>, key: &'static str, f: fn(&mut Reader<'_>) -> T) -> T {
    r.record(key, f)
        .unwrap_or_else(|| f(&mut Reader::of(&serde_json::Map::new())))
}

fn read_active(r: &mut Reader<'_>) -> ActiveCheck {
    let kind = r
        .one_of("type", &["tcp", "http", "https", "grpc", "grpcs"])
        .unwrap_or_else(|| "http".into());
    let timeout = r.number("timeout").unwrap_or(1.0);
    let concurrency = r.int_between("concurrency", 1, 2_147_483_648).unwrap_or(10);
    let http_path = r
        .string_with("http_path", typedefs::path)
        .unwrap_or_else(|| "/".into());
    let https_verify_certificate = r.boolean("https_verify_certificate").unwrap_or(true);
    let https_sni = r.string_with("https_sni", typedefs::sni);
    let headers = r.map("headers", |_, v| crate::input::read_strings(v, false, |_| Ok(())));
    let healthy = record_or_default(r, "healthy", read_healthy);
    let unhealthy = record_or_default(r, "unhealthy", read_unhealthy);
    ActiveCheck {
        kind,
        timeout,
        concurrency,
        http_path,
        https_verify_certificate,
        https_sni,
        headers,
        healthy,
        unhealthy,
    }
}

fn read_passive(r: &mut Reader<'_>) -> PassiveCheck {
    let kind = r
        .one_of("type", &["tcp", "http", "https", "grpc", "grpcs"])
        .unwrap_or_else(|| "http".into());
    let healthy = record_or_default(r, "healthy", read_passive_healthy);
    let unhealthy = record_or_default(r, "unhealthy", read_passive_unhealthy);
    PassiveCheck {
        kind,
        healthy,
        unhealthy,
    }
}

fn read_healthchecks(r: &mut Reader<'_>) -> Healthchecks {
    let active = record_or_default(r, "active", read_active);
    let passive = record_or_default(r, "passive", read_passive);
    let threshold = r.number("threshold").unwrap_or(0.0);
    if !(0.0..=100.0).contains(&threshold) {
        r.error("threshold", "value should be between 0 and 100");
    }
    Healthchecks {
        active,
        passive,
        threshold,
    }
}

impl EntityKindImpl for Upstream {
    const KIND: EntityKind = EntityKind::Upstream;

    fn id(&self) -> Uuid {
        self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let name = r.req_string("name").and_then(|n| match typedefs::host(&n) {
            Ok(()) => Some(n),
            Err(_) => {
                r.error("name", "Invalid name; must be a valid hostname");
                None
            }
        });
        let algorithm = r.one_of("algorithm", ALGORITHMS).unwrap_or_else(|| "round-robin".into());
        let hash_on = r.one_of("hash_on", HASH_ON).unwrap_or_else(|| "none".into());
        let hash_fallback = r.one_of("hash_fallback", HASH_ON).unwrap_or_else(|| "none".into());
        let hash_on_header = r.string_with("hash_on_header", typedefs::header_name);
        let hash_fallback_header = r.string_with("hash_fallback_header", typedefs::header_name);
        let hash_on_cookie = r.string("hash_on_cookie");
        let hash_on_cookie_path = r
            .string_with("hash_on_cookie_path", typedefs::path)
            .unwrap_or_else(|| "/".into());
        let hash_on_query_arg = r.string("hash_on_query_arg");
        let hash_fallback_query_arg = r.string("hash_fallback_query_arg");
        let hash_on_uri_capture = r.string("hash_on_uri_capture");
        let hash_fallback_uri_capture = r.string("hash_fallback_uri_capture");
        let slots = r.int_between("slots", 10, 65536).unwrap_or(DEFAULT_SLOTS);
        let healthchecks = record_or_default(r, "healthchecks", read_healthchecks);
        let tags = cx.tags(r);
        let host_header = r.string_with("host_header", typedefs::host);
        let client_certificate = cx.foreign(r, "client_certificate", EntityKind::Certificate);
        let use_srv_name = r.boolean("use_srv_name").unwrap_or(false);

        if !r.has_errors() {
            // Kong's entity checks on the hashing inputs.
            for (prefix, on, header, query_arg, uri_capture) in [
                ("hash_on", &hash_on, &hash_on_header, &hash_on_query_arg, &hash_on_uri_capture),
                (
                    "hash_fallback",
                    &hash_fallback,
                    &hash_fallback_header,
                    &hash_fallback_query_arg,
                    &hash_fallback_uri_capture,
                ),
            ] {
                let missing = match on.as_str() {
                    "header" if header.is_none() => Some("header"),
                    "query_arg" if query_arg.is_none() => Some("query_arg"),
                    "uri_capture" if uri_capture.is_none() => Some("uri_capture"),
                    _ => None,
                };
                if let Some(f) = missing {
                    r.error(&format!("{prefix}_{f}"), "required field missing");
                }
            }
            if (hash_on == "cookie" || hash_fallback == "cookie") && hash_on_cookie.is_none() {
                r.error("hash_on_cookie", "required field missing");
            }
            if hash_on == "none" && hash_fallback != "none" {
                r.error("hash_fallback", "must be 'none'");
            }
            if hash_on == "cookie" && hash_fallback != "none" {
                r.error("hash_fallback", "must be 'none'");
            }
            if hash_fallback != "none" && hash_on == hash_fallback && !["header", "query_arg", "uri_capture"].contains(&hash_on.as_str()) {
                r.error("hash_fallback", "must not equal 'hash_on'");
            }
            if hash_on == "header" && hash_fallback == "header" && hash_on_header.as_deref().map(str::to_ascii_lowercase) == hash_fallback_header.as_deref().map(str::to_ascii_lowercase) {
                r.entity_error("values of these fields must be distinct: 'hash_on_header', 'hash_fallback_header'");
            }
        }

        Upstream {
            id,
            created_at,
            updated_at,
            name: name.unwrap_or_default(),
            algorithm,
            hash_on,
            hash_fallback,
            hash_on_header,
            hash_fallback_header,
            hash_on_cookie,
            hash_on_cookie_path,
            hash_on_query_arg,
            hash_fallback_query_arg,
            hash_on_uri_capture,
            hash_fallback_uri_capture,
            slots,
            healthchecks,
            tags,
            host_header,
            client_certificate,
            use_srv_name,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.client_certificate.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("name", self.name.clone())]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }
}
