//! rate-limiting: counts requests per window and refuses those over the limit.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PluginSchema;
use crate::error::Errors;
use crate::input::{Reader, MAX_SAFE_INT};
use crate::typedefs;

/// The windows, shortest first.
pub const PERIODS: &[&str] = &["second", "minute", "hour", "day", "month", "year"];
pub const LIMIT_BY: &[&str] = &["consumer", "credential", "ip", "service", "header", "path"];
/// `cluster` needs a database: tidegate refuses it as a DB-less Kong does.
pub const POLICIES: &[&str] = &["local", "redis"];
pub const SYNC_RATE_REALTIME: f64 = -1.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitingConfig {
    #[serde(with = "super::number::option")]
    pub second: Option<f64>,
    #[serde(with = "super::number::option")]
    pub minute: Option<f64>,
    #[serde(with = "super::number::option")]
    pub hour: Option<f64>,
    #[serde(with = "super::number::option")]
    pub day: Option<f64>,
    #[serde(with = "super::number::option")]
    pub month: Option<f64>,
    #[serde(with = "super::number::option")]
    pub year: Option<f64>,
    pub limit_by: String,
    pub header_name: Option<String>,
    pub path: Option<String>,
    pub policy: String,
    pub fault_tolerant: bool,
    pub redis: RedisConfig,
    pub hide_client_headers: bool,
    #[serde(with = "super::number")]
    pub error_code: f64,
    pub error_message: String,
    #[serde(with = "super::number")]
    pub sync_rate: f64,
}

/// `kong.tools.redis.schema` (3.6.1+: port defaults to 6379, no host/port pairing check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisConfig {
    pub host: Option<String>,
    pub port: i64,
    pub timeout: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub server_name: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: None,
            port: 6379,
            timeout: 2000,
            username: None,
            password: None,
            database: 0,
            ssl: false,
            ssl_verify: false,
            server_name: None,
        }
    }
}

impl RateLimitingConfig {
    pub fn limits(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("second", self.second),
            ("minute", self.minute),
            ("hour", self.hour),
            ("day", self.day),
            ("month", self.month),
            ("year", self.year),
        ]
    }
}

fn read_redis(r: &mut Reader<'_>) -> RedisConfig {
    let d = RedisConfig::default();
    RedisConfig {
        host: r.string_with("host", typedefs::host),
        port: r.int_between("port", 0, 65535).unwrap_or(d.port),
        timeout: r
            .int_between("timeout", 0, typedefs::MAX_TIMEOUT)
            .unwrap_or(d.timeout),
        username: r.string("username"),
        password: super::string_len0(r, "password"),
        database: r.integer("database").unwrap_or(d.database),
        ssl: r.boolean("ssl").unwrap_or(d.ssl),
        ssl_verify: r.boolean("ssl_verify").unwrap_or(d.ssl_verify),
        server_name: r.string_with("server_name", typedefs::sni),
    }
}

/// The deprecated flat fields and the `redis` key each maps to.
const SHORTHANDS: &[(&str, &str, Shorthand)] = &[
    ("redis_host", "host", Shorthand::String),
    ("redis_port", "port", Shorthand::Integer),
    ("redis_password", "password", Shorthand::StringLen0),
    ("redis_username", "username", Shorthand::String),
    ("redis_ssl", "ssl", Shorthand::Boolean),
    ("redis_ssl_verify", "ssl_verify", Shorthand::Boolean),
    ("redis_server_name", "server_name", Shorthand::String),
    ("redis_timeout", "timeout", Shorthand::Integer),
    ("redis_database", "database", Shorthand::Integer),
];

#[derive(Clone, Copy)]
enum Shorthand {
    String,
    StringLen0,
    Integer,
    Boolean,
}

/// Validates a shorthand against its own tiny schema, as Kong does before mapping it.
fn read_shorthand(r: &mut Reader<'_>, key: &'static str, kind: Shorthand) -> Option<Value> {
    match kind {
        Shorthand::String => r.string(key).map(Value::from),
        Shorthand::StringLen0 => super::string_len0(r, key).map(Value::from),
        Shorthand::Integer => r.integer(key).map(Value::from),
        Shorthand::Boolean => r.boolean(key).map(Value::from),
    }
}

/// Lua's `tostring` of a scalar, for the mismatch message.
fn lua_tostring(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INT as f64 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `redis` with the shorthands merged in: the record's own value wins, and a shorthand
/// that disagrees with it is an error at the shorthand (Kong 3.8+).
fn merged_redis(r: &mut Reader<'_>) -> Option<Value> {
    let mut shorthands = Vec::new();
    for (key, target, kind) in SHORTHANDS {
        if let Some(v) = read_shorthand(r, key, *kind) {
            shorthands.push((*key, *target, v));
        }
    }
    let raw = r.raw("redis").cloned();
    let mut record = match raw {
        None => Map::new(),
        Some(Value::Object(o)) => o,
        // Not a record: reported as such when read; the shorthands cannot merge into it.
        Some(other) => return Some(other),
    };
    for (key, target, v) in shorthands {
        match record.get(target) {
            Some(cur) if !cur.is_null() => {
                if !same_value(cur, &v) {
                    r.error(
                        key,
                        format!(
                            "both deprecated and new field are used but their values mismatch: \
                             {key} = {} vs redis.{target} = {}",
                            lua_tostring(&v),
                            lua_tostring(cur)
                        ),
                    );
                }
            }
            _ => {
                record.insert(target.to_string(), v);
            }
        }
    }
    if record.is_empty() && !r.present("redis") {
        None
    } else {
        Some(Value::Object(record))
    }
}

impl PluginSchema for RateLimitingConfig {
    const NAME: &'static str = "rate-limiting";
    const PRIORITY: i64 = 910;
    const VERSION: &'static str = "3.9.0";

    fn read(r: &mut Reader<'_>) -> Self {
        let [second, minute, hour, day, month, year] =
            ["second", "minute", "hour", "day", "month", "year"]
                .map(|k| super::positive_number(r, k));
        let limit_by = r
            .one_of("limit_by", LIMIT_BY)
            .unwrap_or_else(|| "consumer".into());
        let header_name = r.string_with("header_name", super::header_name);
        let path = r.string_with("path", typedefs::path);
        let policy = read_policy(r).unwrap_or_else(|| "local".into());
        let fault_tolerant = r.boolean("fault_tolerant").unwrap_or(true);
        let redis = match merged_redis(r) {
            None => RedisConfig::default(),
            Some(v) => match Reader::new(&v) {
                Err(e) => {
                    r.nested_error("redis", e);
                    RedisConfig::default()
                }
                Ok(mut rr) => {
                    let redis = read_redis(&mut rr);
                    if let Err(e) = rr.finish_nested() {
                        r.nested_error("redis", e);
                    }
                    redis
                }
            },
        };
        RateLimitingConfig {
            second,
            minute,
            hour,
            day,
            month,
            year,
            limit_by,
            header_name,
            path,
            policy,
            fault_tolerant,
            redis,
            hide_client_headers: r.boolean("hide_client_headers").unwrap_or(false),
            error_code: super::positive_number(r, "error_code").unwrap_or(429.0),
            error_message: r
                .string("error_message")
                .unwrap_or_else(|| "API rate limit exceeded".into()),
            sync_rate: r.number("sync_rate").unwrap_or(SYNC_RATE_REALTIME),
        }
    }

    fn custom_validator(&self) -> Result<(), String> {
        let limits = self.limits();
        for (i, (lower, v1)) in limits.iter().enumerate() {
            let Some(v1) = v1 else { continue };
            for (upper, v2) in &limits[i + 1..] {
                if let Some(v2) = v2 {
                    if v2 < v1 {
                        return Err(format!(
                            "The limit for {upper}({v2:.1}) cannot be lower than the limit for {lower}({v1:.1})"
                        ));
                    }
                }
            }
        }
        if self.policy != "redis" && self.sync_rate != SYNC_RATE_REALTIME {
            return Err("sync_rate can only be used with the redis policy".into());
        }
        if self.policy == "redis" && self.sync_rate != SYNC_RATE_REALTIME && self.sync_rate < 0.02
        {
            return Err("sync_rate must be greater than 0.02, or -1 to disable".into());
        }
        Ok(())
    }

    // Kong reports the messages at the plugin's top-level `@entity`, and the missing fields
    // under `config`.
    fn entity_checks(raw: &Map<String, Value>, errs: &mut Errors) {
        super::at_least_one_of(raw, PERIODS, errs);
        let is = |key: &str, want: &str| raw.get(key).and_then(Value::as_str) == Some(want);
        // Of the three redis conditionals only `host` can fail: port and timeout default.
        if is("policy", "redis") {
            let set = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
            let record = raw.get("redis").and_then(Value::as_object);
            if !set(record.and_then(|o| o.get("host"))) && !set(raw.get("redis_host")) {
                super::conditional_required(errs, "policy", &["redis", "host"]);
            }
        }
        if is("limit_by", "header") && raw.get("header_name").is_none_or(Value::is_null) {
            super::conditional_required(errs, "limit_by", &["header_name"]);
        }
        if is("limit_by", "path") && raw.get("path").is_none_or(Value::is_null) {
            super::conditional_required(errs, "limit_by", &["path"]);
        }
    }
}

/// `policy` has `len_min = 0`, so `""` gets the `one_of` message rather than a length one.
fn read_policy(r: &mut Reader<'_>) -> Option<String> {
    match r.raw("policy")? {
        Value::String(s) => match crate::input::check_one_of(s, POLICIES) {
            Ok(()) => Some(s.clone()),
            Err(m) => {
                r.error("policy", m);
                None
            }
        },
        _ => {
            r.error("policy", "expected a string");
            None
        }
    }
}
