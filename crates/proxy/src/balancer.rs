//! An upstream's load balancer: its targets, the algorithm that picks one
//! (weighted round-robin, consistent hashing, least-connections) and their health, as
//! passive checks (outcomes of proxied requests) and active probes update it.
//!
//! A balancer outlives config versions that leave its upstream and targets unchanged, so
//! health and in-flight counts survive unrelated config changes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::header::HeaderValue;
use tidegate_model::entities::{Target, Upstream};

mod active;

pub(crate) use active::spawn_active_checks;

/// How a request went, as far as health checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    TcpFailure,
    Timeout,
    Status(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    RoundRobin,
    ConsistentHashing,
    LeastConnections,
}

/// Which request value the hash is taken over (`hash_on` / `hash_fallback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    None,
    Consumer,
    Ip,
    Header(String),
    Cookie { name: String, path: String },
    Path,
    QueryArg(String),
    UriCapture(String),
}

pub struct TargetState {
    pub host: Arc<str>,
    pub port: u16,
    /// `Host` sent to this target (`host[:port]`) when nothing else sets it; whether
    /// the port shows depends on the service's scheme, so both forms are kept.
    host_headers: [Option<HeaderValue>; 2],
    pub weight: u32,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    successes: u32,
    tcp_failures: u32,
    timeouts: u32,
    http_failures: u32,
}

pub struct Balancer {
    pub upstream: Upstream,
    /// The upstream's `host_header`, ready to send.
    pub host_header: Option<HeaderValue>,
    /// The targets as configured (weight 0 included), to tell whether a new config
    /// changed them.
    source: Vec<Target>,
    /// Targets with a weight above 0, in a stable order (by `target`).
    pub targets: Vec<TargetState>,
    algorithm: Algorithm,
    pub hash_on: HashOn,
    pub hash_fallback: HashOn,
    /// Consistent-hashing ring: (point, target index), sorted by point.
    ring: Vec<(u64, usize)>,
    /// Smooth weighted round-robin state (nginx's algorithm).
    rr: Mutex<Vec<i64>>,
    /// Spreads requests without a hash value over the ring.
    counter: AtomicU32,
    pub(crate) checks_started: AtomicBool,
}

/// Holds a target's in-flight slot for least-connections; released on drop.
pub struct InFlight {
    balancer: Arc<Balancer>,
    target: usize,
}

impl TargetState {
    /// The `Host` for a service over TLS (`tls`) or not.
    pub fn host_header(&self, tls: bool) -> Option<HeaderValue> {
        self.host_headers[usize::from(tls)].clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.balancer.targets[self.target]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Balancer ===

impl Balancer {
    /// `targets`: the upstream's targets in any order.
    pub fn new(upstream: &Upstream, mut targets: Vec<Target>) -> Balancer {
        targets.sort_by(|a, b| a.target.cmp(&b.target));
        let live: Vec<TargetState> = targets
            .iter()
            .filter(|t| t.weight > 0)
            .filter_map(|t| {
                let (host, port) = split_target(&t.target)?;
                let header =
                    |tls| HeaderValue::from_str(&crate::proxy::host_port(&host, port, tls)).ok();
                Some(TargetState {
                    host_headers: [header(false), header(true)],
                    host: host.into(),
                    port,
                    weight: u32::try_from(t.weight).unwrap_or(u32::MAX),
                    healthy: AtomicBool::new(true),
                    in_flight: AtomicUsize::new(0),
                    counters: Mutex::new(Counters::default()),
                })
            })
            .collect();
        let algorithm = match upstream.algorithm.as_str() {
            "consistent-hashing" => Algorithm::ConsistentHashing,
            "least-connections" => Algorithm::LeastConnections,
            // `latency` (EWMA) is not implemented; round-robin is the closest.
            _ => Algorithm::RoundRobin,
        };
        let ring = if algorithm == Algorithm::ConsistentHashing {
            build_ring(&live)
        } else {
            Vec::new()
        };
        Balancer {
            host_header: upstream
                .host_header
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
            hash_on: hash_on(upstream, false),
            hash_fallback: hash_on(upstream, true),
            upstream: upstream.clone(),
            source: targets,
            rr: Mutex::new(vec![0; live.len()]),
            targets: live,
            algorithm,
            ring,
            counter: AtomicU32::new(0),
            checks_started: AtomicBool::new(false),
        }
    }

    /// Whether this balancer was built from exactly these entities.
    pub fn same_source(&self, upstream: &Upstream, targets: &[Target]) -> bool {
        if self.upstream != *upstream || self.source.len() != targets.len() {
            return false;
        }
        let mut sorted: Vec<&Target> = targets.iter().collect();
        sorted.sort_by(|a, b| a.target.cmp(&b.target));
        sorted.iter().zip(&self.source).all(|(a, b)| *a == b)
    }

    pub fn uses_hash(&self) -> bool {
        self.algorithm == Algorithm::ConsistentHashing
    }

    pub fn is_healthy(&self, i: usize) -> bool {
        self.targets[i].healthy.load(Ordering::Relaxed)
    }

    /// Picks a healthy target not in `tried` (tried ones are used again only when nothing
    /// else is healthy). `hash` is the value consistent hashing keys on.
    pub fn pick(&self, hash: Option<&str>, tried: &[usize]) -> Option<usize> {
        let ok = |i: usize| self.is_healthy(i) && !tried.contains(&i);
        let any_healthy = |i: usize| self.is_healthy(i);
        match self.algorithm {
            Algorithm::RoundRobin => self.pick_rr(&ok).or_else(|| self.pick_rr(&any_healthy)),
            Algorithm::LeastConnections => self.pick_lc(&ok).or_else(|| self.pick_lc(&any_healthy)),
            Algorithm::ConsistentHashing => {
                let point = match hash {
                    Some(v) => hash64(v.as_bytes()),
                    None => {
                        let n = self.counter.fetch_add(1, Ordering::Relaxed);
                        hash64(&n.to_le_bytes())
                    }
                };
                self.pick_ring(point, &ok)
                    .or_else(|| self.pick_ring(point, &any_healthy))
            }
        }
    }

    /// Counts a request in flight to target `i` until the guard drops.
    pub fn start(self: &Arc<Self>, i: usize) -> InFlight {
        self.targets[i].in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            balancer: self.clone(),
            target: i,
        }
    }

    /// Passive health checks: the outcome of a proxied request.
    pub fn report_passive(&self, i: usize, outcome: Outcome) {
        let p = &self.upstream.healthchecks.passive;
        let th = Thresholds {
            successes: p.healthy.successes,
            healthy_statuses: &p.healthy.http_statuses,
            tcp_failures: p.unhealthy.tcp_failures,
            timeouts: p.unhealthy.timeouts,
            http_failures: p.unhealthy.http_failures,
            unhealthy_statuses: &p.unhealthy.http_statuses,
        };
        self.report(i, outcome, &th);
    }

    /// Active health checks: the outcome of a probe.
    pub fn report_active(&self, i: usize, outcome: Outcome) {
        let a = &self.upstream.healthchecks.active;
        let th = Thresholds {
            successes: a.healthy.successes,
            healthy_statuses: &a.healthy.http_statuses,
            tcp_failures: a.unhealthy.tcp_failures,
            timeouts: a.unhealthy.timeouts,
            http_failures: a.unhealthy.http_failures,
            unhealthy_statuses: &a.unhealthy.http_statuses,
        };
        self.report(i, outcome, &th);
    }

    /// lua-resty-healthcheck's counting: an event whose threshold is 0 is ignored
    /// (the counter is disabled); otherwise it resets the counters of the other kind,
    /// and reaching the threshold flips the target's state.
    fn report(&self, i: usize, outcome: Outcome, th: &Thresholds<'_>) {
        let status = |s: u16, list: &[i64]| list.contains(&i64::from(s));
        let threshold = match outcome {
            Outcome::TcpFailure => th.tcp_failures,
            Outcome::Timeout => th.timeouts,
            Outcome::Status(s) if status(s, th.unhealthy_statuses) => th.http_failures,
            Outcome::Status(s) if status(s, th.healthy_statuses) => th.successes,
            Outcome::Status(_) => 0,
        };
        if threshold <= 0 {
            return;
        }
        let t = &self.targets[i];
        let mut c = t.counters.lock().expect("health counters lock poisoned");
        let healthy = t.healthy.load(Ordering::Relaxed);
        let limit = |n: i64| u32::try_from(n).unwrap_or(0);
        let fail = |c: &mut Counters, bump: fn(&mut Counters) -> &mut u32, threshold: i64| {
            c.successes = 0;
            let n = bump(c);
            *n = n.saturating_add(1);
            let reached = limit(threshold) > 0 && *n >= limit(threshold);
            if reached {
                *c = Counters::default();
            }
            reached
        };
        let flip_to_unhealthy = match outcome {
            Outcome::TcpFailure => fail(&mut c, |c| &mut c.tcp_failures, th.tcp_failures),
            Outcome::Timeout => fail(&mut c, |c| &mut c.timeouts, th.timeouts),
            Outcome::Status(s) if th.unhealthy_statuses.contains(&i64::from(s)) => {
                fail(&mut c, |c| &mut c.http_failures, th.http_failures)
            }
            Outcome::Status(s) if th.healthy_statuses.contains(&i64::from(s)) => {
                c.tcp_failures = 0;
                c.timeouts = 0;
                c.http_failures = 0;
                c.successes = c.successes.saturating_add(1);
                if !healthy && limit(th.successes) > 0 && c.successes >= limit(th.successes) {
                    *c = Counters::default();
                    t.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(upstream = %self.upstream.name, target = %t.host, port = t.port, "target healthy");
                }
                false
            }
            Outcome::Status(_) => false,
        };
        if flip_to_unhealthy && healthy {
            t.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(upstream = %self.upstream.name, target = %t.host, port = t.port, ?outcome, "target unhealthy");
        }
    }

    fn pick_rr(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.rr.lock().expect("round-robin lock poisoned");
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, t) in self.targets.iter().enumerate() {
            if !ok(i) {
                continue;
            }
            let w = i64::from(t.weight);
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }

    fn pick_lc(&self, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        // Fewest in flight per unit of weight; ties go round-robin through the counter.
        let start = self.counter.fetch_add(1, Ordering::Relaxed) as usize;
        let n = self.targets.len();
        let mut best: Option<(u128, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !ok(i) {
                continue;
            }
            let t = &self.targets[i];
            let load = (t.in_flight.load(Ordering::Relaxed) as u128 + 1) * 1_000_000
                / u128::from(t.weight.max(1));
            if best.is_none_or(|(l, _)| load < l) {
                best = Some((load, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn pick_ring(&self, point: u64, ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|(p, _)| *p < point);
        let n = self.ring.len();
        (0..n)
            .map(|k| self.ring[(start + k) % n].1)
            .find(|&i| ok(i))
    }
}

struct Thresholds<'a> {
    successes: i64,
    healthy_statuses: &'a [i64],
    tcp_failures: i64,
    timeouts: i64,
    http_failures: i64,
    unhealthy_statuses: &'a [i64],
}

fn hash_on(u: &Upstream, fallback: bool) -> HashOn {
    let (kind, header, query, capture) = if fallback {
        (
            u.hash_fallback.as_str(),
            &u.hash_fallback_header,
            &u.hash_fallback_query_arg,
            &u.hash_fallback_uri_capture,
        )
    } else {
        (
            u.hash_on.as_str(),
            &u.hash_on_header,
            &u.hash_on_query_arg,
            &u.hash_on_uri_capture,
        )
    };
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    match kind {
        "consumer" => HashOn::Consumer,
        "ip" => HashOn::Ip,
        "header" => HashOn::Header(s(header).to_ascii_lowercase()),
        "cookie" => HashOn::Cookie {
            name: s(&u.hash_on_cookie),
            path: u.hash_on_cookie_path.clone(),
        },
        "path" => HashOn::Path,
        "query_arg" => HashOn::QueryArg(s(query)),
        "uri_capture" => HashOn::UriCapture(s(capture)),
        _ => HashOn::None,
    }
}

/// `host:port` as Kong stores targets (IPv6 in brackets).
pub fn split_target(t: &str) -> Option<(String, u16)> {
    let (host, port) = t.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

/// Points on the ring per 100 of weight (ketama's 160 per server).
const POINTS_PER_100_WEIGHT: u64 = 160;
/// The most points one target gets, whatever its weight.
const MAX_POINTS_PER_TARGET: u64 = 16_000;

/// Points on the ring in proportion to weight (at least one per target), each at the
/// hash of `host:port#n`. A target's points depend only on itself, so adding or
/// removing a target moves only the keys next to its points. Kong's `slots` is not
/// used: its ring is a different construction.
fn build_ring(targets: &[TargetState]) -> Vec<(u64, usize)> {
    let mut ring = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let points =
            (u64::from(t.weight) * POINTS_PER_100_WEIGHT / 100).clamp(1, MAX_POINTS_PER_TARGET);
        for n in 0..points {
            let key = format!("{}:{}#{n}", t.host, t.port);
            ring.push((hash64(key.as_bytes()), i));
        }
    }
    ring.sort_unstable();
    ring
}

/// FNV-1a with a splitmix64 finaliser: stable across builds and processes, well spread.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
