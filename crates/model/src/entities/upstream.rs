//! `upstreams`: a virtual hostname with a load-balancing ring of targets and health checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::{Errors, FieldError};
use crate::input::{check_one_of, Reader};
use crate::kind::EntityKind;
use crate::typedefs::{self, nonempty};

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
const CHECK_TYPES: &[&str] = &["tcp", "http", "https", "grpc", "grpcs"];
const HTTP_STATUS_MIN: i64 = 100;
const HTTP_STATUS_MAX: i64 = 999;
/// `one_byte_integer`.
const MAX_COUNTER: i64 = 255;
/// `seconds`.
const MAX_SECONDS: f64 = 65535.0;
/// `positive_int`: 1..2^31.
const MAX_CONCURRENCY: i64 = 1 << 31;

/// Fields in Kong's declaration order (`name` before `updated_at`, as Kong declares it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub id: Uuid,
    pub created_at: i64,
    pub name: String,
    pub updated_at: i64,
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
    pub https_sni: Option<String>,
    pub https_verify_certificate: bool,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
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

/// A `number` between `lo` and `hi`.
fn number_between(r: &mut Reader<'_>, key: &'static str, lo: f64, hi: f64, default: f64) -> f64 {
    let Some(n) = r.number(key) else {
        return default;
    };
    match crate::input::check_between(n, lo, hi) {
        Ok(()) => n,
        Err(m) => {
            r.error(key, m);
            default
        }
    }
}

fn read_interval(r: &mut Reader<'_>) -> f64 {
    number_between(r, "interval", 0.0, MAX_SECONDS, 0.0)
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

/// Reads a nested record, or its defaults when the input leaves it out (Kong makes every
/// record of an entity required, so a missing one is filled in).
fn record_or_default<T>(r: &mut Reader<'_>, key: &'static str, f: fn(&mut Reader<'_>) -> T) -> T {
    r.record(key, f)
        .unwrap_or_else(|| f(&mut Reader::of(&serde_json::Map::new())))
}

fn read_check_type(r: &mut Reader<'_>) -> String {
    r.one_of("type", CHECK_TYPES)
        .unwrap_or_else(|| "http".into())
}

fn read_active(r: &mut Reader<'_>) -> ActiveCheck {
    let kind = read_check_type(r);
    let timeout = number_between(r, "timeout", 0.0, MAX_SECONDS, 1.0);
    let concurrency = r
        .int_between("concurrency", 1, MAX_CONCURRENCY)
        .unwrap_or(10);
    let http_path = r
        .string_with("http_path", typedefs::path)
        .unwrap_or_else(|| "/".into());
    let https_sni = r.string_with("https_sni", typedefs::sni);
    let https_verify_certificate = r.boolean("https_verify_certificate").unwrap_or(true);
    let headers = match r.raw("headers") {
        None => None,
        Some(v) => match typedefs::headers_map(v, typedefs::header_name, |_| Ok(())) {
            Ok(h) => Some(h),
            Err(e) => {
                r.nested_error("headers", e);
                None
            }
        },
    };
    let healthy = record_or_default(r, "healthy", read_healthy);
    let unhealthy = record_or_default(r, "unhealthy", read_unhealthy);
    ActiveCheck {
        kind,
        timeout,
        concurrency,
        http_path,
        https_sni,
        https_verify_certificate,
        headers,
        healthy,
        unhealthy,
    }
}

fn read_passive(r: &mut Reader<'_>) -> PassiveCheck {
    let kind = read_check_type(r);
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
    let threshold = number_between(r, "threshold", 0.0, 100.0, 0.0);
    Healthchecks {
        active,
        passive,
        threshold,
    }
}

/// A string field whose raw value the entity checks need later.
fn read_simple<'a>(
    r: &mut Reader<'a>,
    raws: &mut BTreeMap<&'static str, Option<&'a Value>>,
    key: &'static str,
    check: fn(&str) -> Result<(), String>,
) -> Option<String> {
    raws.insert(key, r.raw(key));
    r.string_with(key, check)
}

fn no_check(_: &str) -> Result<(), String> {
    Ok(())
}

/// `Invalid name ('x'); …` (input is always valid UTF-8 here, so the name is shown).
fn validate_name(name: &str) -> Result<(), String> {
    let prefix = format!("Invalid name ('{name}')");
    match typedefs::normalize_ip(name) {
        Err(_) => Err(format!("{prefix}; must be a valid hostname")),
        Ok(n) if n.kind != typedefs::HostKind::Name => {
            Err(format!("{prefix}; no ip addresses allowed"))
        }
        Ok(n) if n.port.is_some() => Err(format!("{prefix}; no port allowed")),
        Ok(_) => Ok(()),
    }
}

/// The shorthand fields `algorithm` then `hash_on`: their effective values, or the
/// shorthand type errors (which Kong reports alone).
fn shorthands(
    raw_algorithm: Option<&Value>,
    raw_hash_on: Option<&Value>,
) -> Result<(Option<Value>, Option<Value>), Errors> {
    let mut errs = Errors::default();
    let mut algorithm = raw_algorithm.cloned();
    // `Some(None)`: the shorthand ran with null.
    let mut hash_on: Option<Option<Value>> = raw_hash_on.map(|v| Some(v.clone()));
    if let Some(v) = raw_algorithm {
        match typedefs::value_str(v) {
            Ok("least-connections" | "latency") => hash_on = Some(None),
            Ok(_) => {}
            Err(m) => errs.field("algorithm", m),
        }
    }
    let mut hash = None;
    match hash_on {
        None => {}
        Some(None) => hash = Some(Value::from("none")),
        Some(Some(v)) => match typedefs::value_str(&v) {
            Ok("none") => {
                hash = Some(v.clone());
                algorithm = Some(Value::from("round-robin"));
            }
            Ok(_) => {
                hash = Some(v.clone());
                algorithm = Some(Value::from("consistent-hashing"));
            }
            Err(m) => errs.field("hash_on", m),
        },
    }
    if errs.is_empty() {
        Ok((algorithm, hash))
    } else {
        Err(errs)
    }
}

/// Validates an `one_of` string field given as a raw value.
fn one_of_value(
    r: &mut Reader<'_>,
    key: &str,
    v: Option<&Value>,
    allowed: &[&str],
    default: &str,
) -> Option<String> {
    let Some(v) = v else {
        return Some(default.to_string());
    };
    match typedefs::value_str(v).and_then(|s| check_one_of(s, allowed).map(|_| s)) {
        Ok(s) => Some(s.to_string()),
        Err(m) => {
            r.error(key, m);
            None
        }
    }
}

impl EntityKindImpl for Upstream {
    const KIND: EntityKind = EntityKind::Upstream;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let name = r.req_string("name").and_then(|n| match validate_name(&n) {
            Ok(()) => Some(n),
            Err(m) => {
                r.error("name", m);
                None
            }
        });
        let updated_at = cx.updated_at(r);

        let raw_algorithm = r.raw("algorithm");
        let raw_hash_on = r.raw("hash_on");
        let (shorthand_errors, algorithm_v, hash_on_v) =
            match shorthands(raw_algorithm, raw_hash_on) {
                Ok((a, h)) => (None, a, h),
                Err(e) => (Some(e), raw_algorithm.cloned(), raw_hash_on.cloned()),
            };
        let algorithm = one_of_value(
            r,
            "algorithm",
            algorithm_v.as_ref(),
            ALGORITHMS,
            "round-robin",
        );
        let hash_on = one_of_value(r, "hash_on", hash_on_v.as_ref(), HASH_ON, "none");
        let raw_hash_fallback = r.raw("hash_fallback");
        let hash_fallback = one_of_value(r, "hash_fallback", raw_hash_fallback, HASH_ON, "none");

        let mut raws = BTreeMap::new();
        let hash_on_header = read_simple(r, &mut raws, "hash_on_header", typedefs::header_name);
        let hash_fallback_header =
            read_simple(r, &mut raws, "hash_fallback_header", typedefs::header_name);
        let hash_on_cookie = read_simple(r, &mut raws, "hash_on_cookie", typedefs::http_token);
        let hash_on_cookie_path = r
            .string_with("hash_on_cookie_path", typedefs::path)
            .unwrap_or_else(|| "/".into());
        let hash_on_query_arg = read_simple(r, &mut raws, "hash_on_query_arg", no_check);
        let hash_fallback_query_arg =
            read_simple(r, &mut raws, "hash_fallback_query_arg", no_check);
        let hash_on_uri_capture = read_simple(r, &mut raws, "hash_on_uri_capture", no_check);
        let hash_fallback_uri_capture =
            read_simple(r, &mut raws, "hash_fallback_uri_capture", no_check);
        let slots = r.int_between("slots", 10, 65536).unwrap_or(DEFAULT_SLOTS);
        let healthchecks = record_or_default(r, "healthchecks", read_healthchecks);
        let tags = cx.tags(r);
        let host_header = r.string_with("host_header", typedefs::host_with_optional_port);
        let client_certificate = cx.foreign(r, "client_certificate", EntityKind::Certificate);
        let use_srv_name = r.boolean("use_srv_name").unwrap_or(false);

        // Kong's 16 entity checks, in order. A conditional only applies when its
        // `if_field` holds a valid value; its then-field is checked as given.
        let checks_for = |field: &str| -> fn(&str) -> Result<(), String> {
            match field {
                "hash_on_header" | "hash_fallback_header" => typedefs::header_name,
                "hash_on_cookie" => typedefs::http_token,
                _ => no_check,
            }
        };
        let required = |r: &mut Reader<'_>, if_field: &str, then_field: &'static str| {
            let err = match raws[then_field] {
                None => Some("required field missing".to_string()),
                Some(v) => typedefs::value_str(v)
                    .and_then(|s| checks_for(then_field)(s))
                    .err(),
            };
            if let Some(m) = err {
                typedefs::conditional_failed(
                    r,
                    then_field,
                    FieldError::Msg(m),
                    typedefs::conditional_msg(if_field),
                );
            }
        };
        let fallback_one_of = |r: &mut Reader<'_>, allowed: &[&str]| {
            let v = raw_hash_fallback.cloned().unwrap_or(Value::from("none"));
            let res = typedefs::value_str(&v).and_then(|s| check_one_of(s, allowed));
            if let Err(m) = res {
                typedefs::conditional_failed(
                    r,
                    "hash_fallback",
                    FieldError::Msg(m),
                    typedefs::conditional_msg("hash_on"),
                );
            }
        };
        let distinct = |r: &mut Reader<'_>, a: &'static str, b: &'static str| {
            if let (Some(x), Some(y)) = (raws[a], raws[b]) {
                if nonempty(Some(x)) && x == y {
                    r.entity_error(format!(
                        "values of these fields must be distinct: '{a}', '{b}'"
                    ));
                }
            }
        };
        let on = hash_on.as_deref();
        let fallback = hash_fallback.as_deref();
        if on == Some("header") {
            required(r, "hash_on", "hash_on_header");
        }
        if fallback == Some("header") {
            required(r, "hash_fallback", "hash_fallback_header");
        }
        if on == Some("cookie") {
            required(r, "hash_on", "hash_on_cookie");
        }
        if fallback == Some("cookie") {
            required(r, "hash_fallback", "hash_on_cookie");
        }
        match on {
            Some("none") | Some("cookie") => fallback_one_of(r, &["none"]),
            _ => {}
        }
        match on {
            Some("consumer") => fallback_one_of(
                r,
                &[
                    "none",
                    "ip",
                    "header",
                    "cookie",
                    "path",
                    "query_arg",
                    "uri_capture",
                ],
            ),
            Some("ip") => fallback_one_of(
                r,
                &[
                    "none",
                    "consumer",
                    "header",
                    "cookie",
                    "path",
                    "query_arg",
                    "uri_capture",
                ],
            ),
            Some("path") => fallback_one_of(
                r,
                &[
                    "none",
                    "consumer",
                    "header",
                    "cookie",
                    "query_arg",
                    "ip",
                    "uri_capture",
                ],
            ),
            _ => {}
        }
        distinct(r, "hash_on_header", "hash_fallback_header");
        if on == Some("query_arg") {
            required(r, "hash_on", "hash_on_query_arg");
        }
        if fallback == Some("query_arg") {
            required(r, "hash_fallback", "hash_fallback_query_arg");
        }
        distinct(r, "hash_on_query_arg", "hash_fallback_query_arg");
        if on == Some("uri_capture") {
            required(r, "hash_on", "hash_on_uri_capture");
        }
        if fallback == Some("uri_capture") {
            required(r, "hash_fallback", "hash_fallback_uri_capture");
        }
        distinct(r, "hash_on_uri_capture", "hash_fallback_uri_capture");

        if let Some(only) = shorthand_errors {
            *r.errors_mut() = only;
        }

        Upstream {
            id,
            created_at,
            name: name.unwrap_or_default(),
            updated_at,
            algorithm: algorithm.unwrap_or_else(|| "round-robin".into()),
            hash_on: hash_on.unwrap_or_else(|| "none".into()),
            hash_fallback: hash_fallback.unwrap_or_else(|| "none".into()),
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
}
