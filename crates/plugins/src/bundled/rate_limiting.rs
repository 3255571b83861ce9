//! rate-limiting: counts the requests of each client (consumer, credential, IP, service,
//! header value or path) per second/minute/hour/day/month/year window and refuses those
//! over a limit, as Kong 3.x does.
//!
//! Policies: `local` keeps the counters in this process ([`local`]); `redis` keeps them
//! in redis under Kong's own keys, so that DPs (ours or Kong's) share them ([`redis`]).
//! Kong's `cluster` policy needs Kong's database; the config model refuses it, as a
//! DB-less Kong does.

pub mod local;
pub mod redis;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tidegate_model::plugins::rate_limiting::RateLimitingConfig;
use uuid::Uuid;

use self::local::{Ident, Key, LocalCounters};
use self::redis::{Pipeline, Pool, Pools, Settings};
use self::window::Period;
use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::runtime::Runtime;

/// The bound on each redis step when `redis.timeout` is 0: none at all would let a hung
/// server hold requests forever. (nginx's default socket timeout.)
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(60);

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const ERR_UNEXPECTED: &str = "An unexpected error occurred";
/// Route or service id of an instance not scoped to one, in Kong's redis keys.
const EMPTY_UUID: Uuid = Uuid::nil();

pub struct RateLimiting {
    /// The configured limits, shortest window first.
    limits: Box<[(Period, f64)]>,
    /// Each limit as its header shows it, made once rather than per request.
    limit_values: Box<[HeaderValue]>,
    limit_by: LimitBy,
    policy: Policy,
    fault_tolerant: bool,
    hide_client_headers: bool,
    error_code: u16,
    error_message: String,
}

enum LimitBy {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(HeaderName),
    Path(Arc<str>),
}

enum Policy {
    Local(Arc<LocalCounters>),
    Redis(Arc<Pool>),
}

pub fn build(c: &RateLimitingConfig, rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(RateLimiting::new(c, rt)?))
}

impl RateLimiting {
    fn new(c: &RateLimitingConfig, rt: &Runtime) -> Result<RateLimiting, String> {
        let limits: Box<[(Period, f64)]> = c
            .limits()
            .into_iter()
            .filter_map(|(name, limit)| Some((Period::from_name(name)?, limit?)))
            .collect();
        if limits.is_empty() {
            return Err("no limit configured".into());
        }
        let limit_by = match c.limit_by.as_str() {
            "consumer" => LimitBy::Consumer,
            "credential" => LimitBy::Credential,
            "ip" => LimitBy::Ip,
            "service" => LimitBy::Service,
            "header" => {
                let name = c
                    .header_name
                    .as_deref()
                    .ok_or("limit_by header needs header_name")?;
                LimitBy::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("header_name '{name}' is not a valid header name"))?,
                )
            }
            "path" => LimitBy::Path(Arc::from(
                c.path.as_deref().ok_or("limit_by path needs path")?,
            )),
            other => return Err(format!("unknown limit_by '{other}'")),
        };
        let policy = match c.policy.as_str() {
            "local" => Policy::Local(rt.shared::<LocalCounters>()),
            "redis" => {
                let r = &c.redis;
                let host = r.host.clone().ok_or("policy redis needs redis.host")?;
                let timeout = match u64::try_from(r.timeout) {
                    Ok(0) | Err(_) => DEFAULT_REDIS_TIMEOUT,
                    Ok(ms) => Duration::from_millis(ms),
                };
                Policy::Redis(rt.shared::<Pools>().get(&Settings {
                    host,
                    port: u16::try_from(r.port).map_err(|_| "redis.port out of range")?,
                    database: r.database,
                    username: r.username.clone(),
                    password: r.password.clone(),
                    timeout,
                    ssl: r.ssl,
                }))
            }
            other => return Err(format!("policy '{other}' is not available on this node")),
        };
        let error_code = u16::try_from(c.error_code as i64)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| format!("error_code {} is not an HTTP status", c.error_code))?;
        Ok(RateLimiting {
            limit_values: limits.iter().map(|&(_, l)| number(l)).collect(),
            limits,
            limit_by,
            policy,
            fault_tolerant: c.fault_tolerant,
            hide_client_headers: c.hide_client_headers,
            error_code,
            error_message: c.error_message.clone(),
        })
    }

    /// Kong's `get_identifier`: whom this request counts against, the client IP when the
    /// configured one is not known.
    fn identifier(&self, cx: &Ctx<'_>, req: &Req) -> Ident {
        let found = match &self.limit_by {
            LimitBy::Consumer => cx
                .consumer
                .as_ref()
                .map(|c| c.id)
                .or(cx.credential.as_ref().map(|c| c.id))
                .map(Ident::Uuid),
            LimitBy::Credential => cx.credential.as_ref().map(|c| Ident::Uuid(c.id)),
            LimitBy::Ip => None,
            LimitBy::Service => cx.service_id.map(Ident::Uuid),
            LimitBy::Header(h) => req
                .headers
                .get(h)
                .map(|v| Ident::Text(Arc::from(String::from_utf8_lossy(v.as_bytes())))),
            LimitBy::Path(p) => (req.path == **p).then(|| Ident::Text(p.clone())),
        };
        found.unwrap_or(Ident::Ip(cx.client_ip))
    }

    /// Decides on the usage of each configured window (in `self.limits` order) and
    /// sets the client headers, as Kong's handler does.
    fn decide(&self, cx: &mut Ctx<'_>, usage: &[u64], now: i64) -> Flow {
        let remaining = |i: usize| self.limits[i].1 - usage[i] as f64;
        // Kong keeps the last exceeded window it meets; only whether there is one
        // matters for the headers.
        let stop = (0..self.limits.len()).rev().find(|&i| remaining(i) <= 0.0);
        let mut reset = None;
        if !self.hide_client_headers {
            // The window shown in `RateLimit-*`: least remaining, then the longest.
            let mut shown: Option<(usize, i64, f64)> = None;
            for (i, &(period, _)) in self.limits.iter().enumerate() {
                let mut left = remaining(i);
                if stop.is_none() || stop == Some(i) {
                    left -= 1.0;
                }
                let left = left.max(0.0);
                let window = period.expiration();
                let better = match shown {
                    None => true,
                    Some((_, w, r)) => left < r || (left == r && window > w),
                };
                if better {
                    shown = Some((i, window, left));
                    reset = Some((window - (now - period.start(now))).max(1));
                }
                let h = &mut cx.response_headers;
                h.insert(period.limit_header(), self.limit_values[i].clone());
                h.insert(period.remaining_header(), number(left));
            }
            if let (Some((i, _, left)), Some(reset)) = (shown, reset) {
                let h = &mut cx.response_headers;
                h.insert(RATELIMIT_LIMIT, self.limit_values[i].clone());
                h.insert(RATELIMIT_REMAINING, number(left));
                h.insert(RATELIMIT_RESET, integer(reset));
            }
        }
        if stop.is_none() {
            return Flow::Continue;
        }
        if let Some(reset) = reset {
            cx.response_headers.insert(RETRY_AFTER, integer(reset));
        }
        Flow::Exit(Exit::error(self.error_code, self.error_message.clone()))
    }

    fn local(&self, counters: &LocalCounters, cx: &mut Ctx<'_>, ident: Ident, now: i64) -> Flow {
        let plugin = cx.plugin.id;
        if let [(period, _)] = *self.limits {
            // The common case, one window: its count read and bumped under one lock.
            let start = period.start(now);
            let key = Key {
                plugin,
                ident,
                period,
                start,
            };
            return counters.get_then_incr(&key, period.end(start), now, |count| {
                let flow = self.decide(cx, &[count], now);
                // Only requests let through count, as in Kong.
                (matches!(flow, Flow::Continue), flow)
            });
        }
        let keys: [Option<Key>; Period::ALL.len()] = std::array::from_fn(|i| {
            self.limits.get(i).map(|&(period, _)| Key {
                plugin,
                ident: ident.clone(),
                period,
                start: period.start(now),
            })
        });
        let mut usage = [0u64; Period::ALL.len()];
        for (u, k) in usage.iter_mut().zip(keys.iter().flatten()) {
            *u = counters.get(k, now);
        }
        let flow = self.decide(cx, &usage[..self.limits.len()], now);
        // Only requests let through count, as in Kong.
        if matches!(flow, Flow::Continue) {
            for k in keys.iter().flatten() {
                counters.incr(k, k.period.end(k.start), now);
            }
        }
        flow
    }

    /// Kong's `get_local_key`, which its redis policy uses as the key.
    fn redis_key(cx: &Ctx<'_>, ident: &Ident, period: Period, now: i64) -> String {
        format!(
            "ratelimit:{}:{}:{}:{}:{}",
            cx.plugin.route.unwrap_or(EMPTY_UUID),
            cx.plugin.service.unwrap_or(EMPTY_UUID),
            ident,
            period.start(now) * 1000,
            period.name()
        )
    }

    async fn redis(&self, pool: &Pool, cx: &mut Ctx<'_>, ident: Ident, now: i64) -> Flow {
        let keys: Vec<(String, Period)> = self
            .limits
            .iter()
            .map(|&(p, _)| (Self::redis_key(cx, &ident, p, now), p))
            .collect();
        let mut gets = Pipeline::new();
        for (k, _) in &keys {
            gets.cmd(&[b"GET", k.as_bytes()]);
        }
        let usage = match pool.run(&gets).await.and_then(|replies| {
            replies
                .iter()
                .map(redis::Reply::counter)
                .collect::<Result<Vec<u64>, _>>()
        }) {
            Ok(u) => u,
            Err(e) if self.fault_tolerant => {
                tracing::error!(error = %e, "rate-limiting: failed to get usage; the request goes through (fault_tolerant)");
                return Flow::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "rate-limiting: failed to get usage");
                return Flow::Exit(Exit::error(500, ERR_UNEXPECTED));
            }
        };
        let flow = self.decide(cx, &usage, now);
        if matches!(flow, Flow::Continue) {
            // Counted before the request goes on (Kong counts in a timer right after),
            // so the next request, on any DP, sees it.
            let mut incr = Pipeline::new();
            for (k, p) in &keys {
                incr.cmd(&[b"INCRBY", k.as_bytes(), b"1"]);
                incr.cmd(&[
                    b"EXPIRE",
                    k.as_bytes(),
                    p.expiration().to_string().as_bytes(),
                ]);
            }
            match pool.run(&incr).await {
                Ok(replies) => {
                    if let Some(redis::Reply::Error(e)) =
                        replies.iter().find(|r| matches!(r, redis::Reply::Error(_)))
                    {
                        tracing::error!(error = %e, "rate-limiting: failed to increment in redis");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "rate-limiting: failed to increment in redis")
                }
            }
        }
        flow
    }
}

impl Plugin for RateLimiting {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        // Kong counts in whole seconds (`ngx.time()`).
        let now = cx.now.floor() as i64;
        let ident = self.identifier(cx, req);
        match &self.policy {
            Policy::Local(counters) => Access::Done(self.local(counters, cx, ident, now)),
            Policy::Redis(pool) => Access::Pending(Box::pin(self.redis(pool, cx, ident, now))),
        }
    }
}

/// A number as Lua prints it in a header: integers without a fraction.
fn number(v: f64) -> HeaderValue {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        integer(v as i64)
    } else {
        HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// Seconds to a reset are mostly these: no allocation for them.
const SMALL: [&str; 61] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48",
    "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60",
];

/// `n` in decimal, as `HeaderValue::from(i64)` writes it, with one exact allocation
/// (or none) instead of its two: four to six of these go out with every request.
fn integer(n: i64) -> HeaderValue {
    if let Some(s) = usize::try_from(n).ok().and_then(|i| SMALL.get(i)) {
        return HeaderValue::from_static(s);
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    HeaderValue::from_bytes(&buf[at..]).expect("digits and a sign are a valid header value")
}

#[cfg(test)]
mod tests;
