//! Scale: what a real DP process costs and how fast it serves as the config grows.
//!
//! Run: `cargo bench -p tidegate --bench scale [-- --sizes 10k,100k,1m --cold-routes 100k]`
//!      (`--rows entities,consumers` picks the rows, `--cold-reps N` the cold starts;
//!      `--cold-reps 0` skips the cold-start config altogether; `SCALE_DP_BIN=path` and
//!      `SCALE_CP_BIN=path` run the DPs or CPs from another tidegate binary, e.g. to
//!      compare two builds of the DP against one CP)
//!      `cargo bench -p tidegate --bench scale -- --smoke`   (tiny sizes, seconds)
//!
//! For each size N, two rows, each with a fresh CP process and a fresh DP process:
//! - `entities`: N entities, N/2 services with one route each;
//! - `consumers`: N consumers with one key-auth credential each (2N entities), one
//!   service, one route and a global key-auth plugin.
//!
//! The config goes in through the CP's real path: one CP process (`role =
//! control_plane`, sled with fsync) and one `POST /config` of a generated declarative
//! file (Raft log, `Machine::execute`). Then a DP process (`role = data_plane`, fresh
//! prefix, real cache) is started against it, through a counting TCP relay in this
//! process (the bytes the relay counts are the TLS bytes on the wire). Measured:
//! - apply: process start → `/status` shows the CP's hash (snapshot transfer, decode,
//!   hash check, cache write with fsync, swap) → a proxied request that needs the new
//!   config is answered by the origin (router and plugins built);
//! - peak RSS (VmHWM) and steady RSS (VmRSS 2 s after the change below);
//! - one PATCH of one entity (a route's paths; a credential's key): CP→DP bytes on the
//!   wire (relay) and the payload the CP records for the DP, and the time from sending
//!   the PATCH to the DP's `/status` showing the new hash and to a proxied request using
//!   the change being answered.
//!
//! Cold start: a config of `--cold-routes` routes (10 per service) is synced to a DP,
//! then the CP is killed and the DP restarted from its cache alone: process start →
//! `/status/ready` 200, and → the first proxied request answered by the origin.
//!
//! There is no peer in the same run: Kong is not installed here.
//!
//! The bench fails (non-zero exit) when a DP does not reach the CP's hash.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, http, wait_for};

/// Big enough for a 1M-consumer snapshot in one message (the setting's maximum is 1 GiB).
const MAX_PAYLOAD: usize = 1 << 30;
/// How long a DP may take to converge before the bench fails.
const CONVERGE: Duration = Duration::from_secs(600);

struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 30 s).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (VmHWM, VmRSS) in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Opts {
    sizes: Vec<usize>,
    rows: Vec<Kind>,
    cold_routes: usize,
    cold_reps: usize,
}

fn parse_size(s: &str) -> usize {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix('k') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1_000_000)
    } else {
        (s.as_str(), 1)
    };
    num.parse::<usize>().expect("a size: 10k, 100k, 1m, 500") * mult
}

fn args() -> Opts {
    let mut opts = Opts {
        sizes: vec![10_000, 100_000, 1_000_000],
        rows: vec![Kind::Entities, Kind::Consumers],
        cold_routes: 100_000,
        cold_reps: 3,
    };
    let a: Vec<String> = std::env::args().collect();
    if a.iter().any(|x| x == "--smoke") {
        opts = Opts {
            sizes: vec![200, 2_000],
            rows: vec![Kind::Entities, Kind::Consumers],
            cold_routes: 2_000,
            cold_reps: 1,
        };
    }
    for w in a.windows(2) {
        match w[0].as_str() {
            "--sizes" => opts.sizes = w[1].split(',').map(parse_size).collect(),
            "--cold-routes" => opts.cold_routes = parse_size(&w[1]),
            "--cold-reps" => opts.cold_reps = w[1].parse().expect("--cold-reps N"),
            "--rows" => {
                opts.rows = w[1]
                    .split(',')
                    .map(|r| match r {
                        "entities" => Kind::Entities,
                        "consumers" => Kind::Consumers,
                        other => panic!("--rows entities,consumers: not {other}"),
                    })
                    .collect()
            }
            _ => {}
        }
    }
    opts
}

// === fixtures ===

struct Certs {
    cert: PathBuf,
    key: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    let pair = tidegate_tls::gen_cert(unix_now(), 30).unwrap();
    let (cert, key) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    Certs { cert, key }
}

/// A TCP relay to `target`, counting the bytes each way: (address, cp→dp, dp→cp).
fn start_relay(target: String) -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let down = Arc::new(AtomicU64::new(0));
    let up = Arc::new(AtomicU64::new(0));
    let (d, u) = (down.clone(), up.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(dp) = conn else { continue };
            let Ok(cp) = TcpStream::connect(&target) else {
                continue;
            };
            let _ = dp.set_nodelay(true);
            let _ = cp.set_nodelay(true);
            let pipe = |mut from: TcpStream, mut to: TcpStream, count: Arc<AtomicU64>| {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                count.fetch_add(n as u64, Ordering::Relaxed);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                });
            };
            pipe(cp.try_clone().unwrap(), dp.try_clone().unwrap(), d.clone());
            pipe(dp, cp, u.clone());
        }
    });
    (addr, down, up)
}

/// One HTTP/1.1 request with a raw body, a request id and a long timeout: (status, body).
fn request(addr: &str, method: &str, path: &str, body: &[u8], id: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1200))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Request-Id: {id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, rest.to_string()))
}

struct Cp {
    proc: Proc,
    admin: String,
    cluster: String,
}

fn start_cp(dir: &Path, certs: &Certs) -> Cp {
    let admin = format!("127.0.0.1:{}", free_port());
    let cluster = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let log = dir.join("cp.log");
    let binary = std::env::var("SCALE_CP_BIN").unwrap_or_else(|_| support::binary().into());
    let child = Command::new(binary)
        .args(["start", "-p"])
        .arg(dir.join("cp"))
        .env("TIDEGATE_ROLE", "control_plane")
        .env("TIDEGATE_ADMIN_LISTEN", &admin)
        .env("TIDEGATE_CLUSTER_LISTEN", &cluster)
        .env("TIDEGATE_RAFT_LISTEN", &raft)
        .env("TIDEGATE_CLUSTER_CERT", &certs.cert)
        .env("TIDEGATE_CLUSTER_CERT_KEY", &certs.key)
        .env("TIDEGATE_CLUSTER_MAX_PAYLOAD", MAX_PAYLOAD.to_string())
        .env("TIDEGATE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let cp = Cp {
        proc: Proc {
            child,
            name: "the CP".into(),
            log,
        },
        admin,
        cluster,
    };
    wait_for("the CP's Admin API", Duration::from_secs(60), || {
        http(&cp.admin, "GET", "/status", None, &[]).filter(|r| r.status == 200)
    });
    cp
}

impl Cp {
    /// POST /config, retried with the same request id while the CP has no leader yet
    /// (503) or did not confirm the commit in time (504); returns the time from the first
    /// attempt to the answer.
    fn load(&self, body: &[u8]) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(600);
        let id = format!("5ca1e000-0000-4000-8000-{:012x}", unix_now());
        let t = Instant::now();
        loop {
            let r = request(&self.admin, "POST", "/config", body, &id);
            match r {
                Some((201, _)) | Some((200, _)) => return t.elapsed(),
                Some((503 | 504, _)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                other => panic!(
                    "POST /config failed: {:?}\nCP log:\n{}",
                    other.map(|(s, b)| (s, b.chars().take(2000).collect::<String>())),
                    self.proc.log_tail()
                ),
            }
        }
    }

    /// (config_version, config_hash)
    fn state(&self) -> (u64, String) {
        let r = http(&self.admin, "GET", "/clustering/control-planes", None, &[])
            .expect("the CP answers");
        (
            r.body["config_version"].as_u64().expect("config_version"),
            r.body["config_hash"]
                .as_str()
                .expect("config_hash")
                .to_string(),
        )
    }

    /// The CP's counters of what it pushed to the only DP showing `hash`:
    /// (snapshots, events, bytes).
    fn sent(&self, hash: &str) -> Option<(u64, u64, u64)> {
        let r = http(&self.admin, "GET", "/clustering/data-planes", None, &[])?;
        let rows = r.body["data"].as_array()?;
        let row = rows.iter().find(|r| r["config_hash"] == hash)?;
        let s = &row["sent"];
        Some((
            s["snapshots"].as_u64()?,
            s["events"].as_u64()?,
            s["bytes"].as_u64()?,
        ))
    }

    fn patch(&self, path: &str, body: Value) {
        let r = http(&self.admin, "PATCH", path, Some(&body), &[]).expect("the CP answers");
        assert_eq!(r.status, 200, "PATCH {path}: {}", r.body);
    }
}

struct Dp {
    proc: Proc,
    proxy: String,
    status: String,
}

fn start_dp(dir: &Path, prefix: &Path, certs: &Certs, cp_cluster: &str, n: usize) -> Dp {
    let proxy = format!("127.0.0.1:{}", free_port());
    let status = format!("127.0.0.1:{}", free_port());
    let log = dir.join(format!("dp-{n}.log"));
    // Another build's DP against this build's CP, to compare two DPs on one machine.
    let binary = std::env::var("SCALE_DP_BIN").unwrap_or_else(|_| support::binary().into());
    let child = Command::new(binary)
        .args(["start", "-p"])
        .arg(prefix)
        .env("TIDEGATE_ROLE", "data_plane")
        .env("TIDEGATE_CLUSTER_CONTROL_PLANE", cp_cluster)
        .env("TIDEGATE_CLUSTER_CERT", &certs.cert)
        .env("TIDEGATE_CLUSTER_CERT_KEY", &certs.key)
        .env("TIDEGATE_CLUSTER_MAX_PAYLOAD", MAX_PAYLOAD.to_string())
        .env("TIDEGATE_PROXY_LISTEN", &proxy)
        .env("TIDEGATE_STATUS_LISTEN", &status)
        .env("TIDEGATE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    Dp {
        proc: Proc {
            child,
            name: "the DP".into(),
            log,
        },
        proxy,
        status,
    }
}

impl Dp {
    fn hash(&self) -> Option<String> {
        let r = http(&self.status, "GET", "/status", None, &[])?;
        Some(r.body["configuration_hash"].as_str()?.to_string())
    }

    /// Polls until `/status` shows `hash`; fails the bench after [`CONVERGE`].
    fn wait_hash(&self, hash: &str, cp: &Cp) -> Instant {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if self.hash().as_deref() == Some(hash) {
                return Instant::now();
            }
            if Instant::now() > deadline {
                panic!(
                    "the DP did not converge to the CP's hash {hash} within {CONVERGE:?} (it shows {:?})\nDP log:\n{}\nCP log:\n{}",
                    self.hash(),
                    self.proc.log_tail(),
                    cp.proc.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls until a proxied `GET path` is answered by the origin.
    fn wait_proxied(&self, path: &str, headers: &[(&str, &str)]) -> Instant {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if self.proxied(path, headers) {
                return Instant::now();
            }
            if Instant::now() > deadline {
                panic!(
                    "the DP did not proxy {path} within {CONVERGE:?}\nDP log:\n{}",
                    self.proc.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn proxied(&self, path: &str, headers: &[(&str, &str)]) -> bool {
        http(&self.proxy, "GET", path, None, headers).is_some_and(|r| {
            r.status == 200
                && r.body
                    .as_str()
                    .is_some_and(|b| b.starts_with("origin GET "))
        })
    }
}

// === configs ===

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// N entities: N/2 services, one route each.
    Entities,
    /// N consumers with a key-auth credential each, one key-auth plugin.
    Consumers,
    /// N routes, 10 per service (the cold-start config).
    Routes,
}

impl Kind {
    fn label(self, n: usize) -> String {
        match self {
            Kind::Entities => format!("{} entities (services+routes)", human(n)),
            Kind::Consumers => format!("{} consumers + {} key-auth", human(n), human(n)),
            Kind::Routes => format!("{} routes ({} services)", human(n), human(n / 10)),
        }
    }

    fn body(self, n: usize, origin: &str) -> Vec<u8> {
        let mut out = String::with_capacity(n * 80);
        out.push_str(r#"{"_format_version":"3.0","services":["#);
        match self {
            Kind::Entities => {
                for i in 0..n / 2 {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!(
                        r#"{{"name":"s{i}","url":"http://{origin}","routes":[{{"name":"r{i}","paths":["/r/{i}"]}}]}}"#
                    ));
                }
                out.push_str("]}");
            }
            Kind::Routes => {
                for s in 0..n.div_ceil(10) {
                    if s > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!(
                        r#"{{"name":"s{s}","url":"http://{origin}","routes":["#
                    ));
                    for i in s * 10..((s + 1) * 10).min(n) {
                        if i > s * 10 {
                            out.push(',');
                        }
                        out.push_str(&format!(r#"{{"name":"r{i}","paths":["/r/{i}"]}}"#));
                    }
                    out.push_str("]}");
                }
                out.push_str("]}");
            }
            Kind::Consumers => {
                out.push_str(&format!(
                    r#"{{"name":"auth","url":"http://{origin}","routes":[{{"name":"auth","paths":["/auth"]}}]}}],"plugins":[{{"name":"key-auth"}}],"consumers":["#
                ));
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!(
                        r#"{{"username":"c{i}","keyauth_credentials":[{{"key":"k{i}"}}]}}"#
                    ));
                }
                out.push_str("]}");
            }
        }
        out.into_bytes()
    }

    /// A proxied request that only the loaded config answers with the origin.
    fn probe(self, n: usize) -> (String, Option<String>) {
        match self {
            Kind::Entities => (format!("/r/{}", n / 2 - 1), None),
            Kind::Routes => (format!("/r/{}", n - 1), None),
            Kind::Consumers => ("/auth".into(), Some(format!("k{}", n - 1))),
        }
    }
}

fn human(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    }
}

fn headers(key: &Option<String>) -> Vec<(&str, &str)> {
    key.as_deref()
        .map(|k| vec![("apikey", k)])
        .unwrap_or_default()
}

// === one row ===

struct Row {
    label: String,
    entities: usize,
    cp_load: Duration,
    cp_rss: u64,
    snapshot_bytes: u64,
    applied: Duration,
    serving: Duration,
    peak: u64,
    steady: u64,
    change_wire: u64,
    change_payload: u64,
    change_applied: Duration,
    change_serving: Duration,
}

/// Syncs a fresh DP from a fresh CP holding `kind`×`n`, then one PATCH. Returns the row,
/// and the CP and DP still running (for the cold start).
fn run_row(kind: Kind, n: usize, root: &Path, certs: &Certs, origin: &str) -> (Row, Cp, Dp) {
    let dir = root.join(format!(
        "{}-{n}",
        kind.label(n).replace([' ', '(', ')', '+'], "_")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cp = start_cp(&dir, certs);
    let body = kind.body(n, origin);
    let cp_load = cp.load(&body);
    drop(body);
    let (_, hash) = cp.state();
    let (relay, down, _up) = start_relay(cp.cluster.clone());

    let started = Instant::now();
    let dp = start_dp(&dir, &dir.join("dp"), certs, &relay, n);
    let applied = dp.wait_hash(&hash, &cp) - started;
    let (path, key) = kind.probe(n);
    let serving = dp.wait_proxied(&path, &headers(&key)) - started;
    let (peak, _) = rss(dp.proc.pid());
    let (_, cp_rss) = rss(cp.proc.pid());
    let initial = wait_for(
        "the CP's record of the snapshot",
        Duration::from_secs(30),
        || cp.sent(&hash).filter(|s| s.0 >= 1),
    );

    // One change of one entity.
    std::thread::sleep(Duration::from_millis(500));
    let wire_before = down.load(Ordering::Relaxed);
    let sent = Instant::now();
    let (probe, probe_key) = match kind {
        Kind::Entities | Kind::Routes => {
            cp.patch(&format!("/routes/r{}", n / 4), json!({"paths": ["/moved"]}));
            ("/moved".to_string(), None)
        }
        Kind::Consumers => {
            cp.patch(&format!("/key-auths/k{}", n / 2), json!({"key": "moved"}));
            ("/auth".to_string(), Some("moved".to_string()))
        }
    };
    let (_, hash2) = cp.state();
    let change_applied = dp.wait_hash(&hash2, &cp) - sent;
    let change_serving = dp.wait_proxied(&probe, &headers(&probe_key)) - sent;
    let after = wait_for(
        "the CP's record of the change",
        Duration::from_secs(30),
        || cp.sent(&hash2).filter(|s| s.1 > initial.1),
    );
    assert_eq!(after.0, initial.0, "one change must not send a snapshot");
    std::thread::sleep(Duration::from_millis(300));
    let change_wire = down.load(Ordering::Relaxed) - wire_before;
    std::thread::sleep(Duration::from_millis(1700));
    let (peak2, steady) = rss(dp.proc.pid());
    let row = Row {
        label: kind.label(n),
        entities: match kind {
            Kind::Entities => n / 2 * 2,
            Kind::Consumers => 2 * n + 3,
            Kind::Routes => n + n.div_ceil(10),
        },
        cp_load,
        cp_rss,
        snapshot_bytes: initial.2,
        applied,
        serving,
        peak: peak.max(peak2),
        steady,
        change_wire,
        change_payload: after.2 - initial.2,
        change_applied,
        change_serving,
    };
    println!(
        "{:<34} CP load {:>8}  DP applied {:>8}  serving {:>8}  peak {:>9}  steady {:>9}  snapshot {:>11} B  change: wire {:>5} B (payload {:>4} B) applied {:>7} serving {:>7}  (CP RSS {})",
        row.label,
        ms(row.cp_load),
        ms(row.applied),
        ms(row.serving),
        mib(row.peak),
        mib(row.steady),
        row.snapshot_bytes,
        row.change_wire,
        row.change_payload,
        ms(row.change_applied),
        ms(row.change_serving),
        mib(row.cp_rss),
    );
    (row, cp, dp)
}

/// Restarts the DP from its cache with no CP in reach: (ready, first proxied, peak RSS).
fn cold_start(dp: Option<Dp>, dir: &Path, certs: &Certs, n: usize) -> (Duration, Duration, u64) {
    let prefix = dir.join("dp");
    if let Some(dp) = dp {
        dp.proc.stop();
    }
    // No CP answers at this address: the DP serves its cache alone.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let dp = start_dp(dir, &prefix, certs, &nowhere, n);
    let ready = {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if http(&dp.status, "GET", "/status/ready", None, &[]).is_some_and(|r| r.status == 200)
            {
                break Instant::now() - started;
            }
            assert!(
                Instant::now() < deadline,
                "the DP never became ready from its cache\n{}",
                dp.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let first = dp.wait_proxied(&format!("/r/{}", n - 1), &[]) - started;
    let (peak, _) = rss(dp.proc.pid());
    dp.proc.stop();
    (ready, first, peak)
}

fn main() {
    let opts = args();
    let root = tempfile::tempdir().unwrap();
    let certs = certs(root.path());
    // The tests' echo upstream: `origin <METHOD> <path> host=<Host>`, connection: close.
    let origin = support::echo_upstream("origin", usize::MAX);
    println!(
        "scale: one CP process (POST /config through Raft), one DP process per row (fresh prefix, disk cache), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("no peer in this run: Kong is not installed here");
    let mut rows = Vec::new();
    for &n in &opts.sizes {
        for &kind in &opts.rows {
            let (row, cp, dp) = run_row(kind, n, root.path(), &certs, &origin);
            dp.proc.stop();
            cp.proc.stop();
            rows.push(row);
        }
    }
    let n = opts.cold_routes;
    let mut colds = Vec::new();
    // The cold-start row costs a CP import of its own: skipped when no rep is asked for,
    // so that one row can be measured alone.
    let mut dp = None;
    if opts.cold_reps > 0 {
        let (row, cp, started) = run_row(Kind::Routes, n, root.path(), &certs, &origin);
        rows.push(row);
        cp.proc.stop();
        dp = Some(started);
    }
    let dir = root.path().join(format!(
        "{}-{n}",
        Kind::Routes.label(n).replace([' ', '(', ')', '+'], "_")
    ));
    for rep in 0..opts.cold_reps {
        let (ready, first, peak) = cold_start(dp.take(), &dir, &certs, n);
        println!(
            "cold start {} from the cache (rep {}): ready {:>8}  first proxied {:>8}  peak {:>9}",
            Kind::Routes.label(n),
            rep + 1,
            ms(ready),
            ms(first),
            mib(peak)
        );
        colds.push((ready, first, peak));
    }

    println!();
    println!("| config | entities | CP POST /config | DP start → hash | → proxied | peak RSS | steady RSS | snapshot | one change: wire (payload) | → hash | → proxied |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} MB | {} B ({} B) | {} | {} |",
            r.label,
            r.entities,
            ms(r.cp_load),
            ms(r.applied),
            ms(r.serving),
            mib(r.peak),
            mib(r.steady),
            r.snapshot_bytes as f64 / 1e6,
            r.change_wire,
            r.change_payload,
            ms(r.change_applied),
            ms(r.change_serving),
        );
    }
    colds.sort_by_key(|c| c.1);
    let Some(&(ready, first, peak)) = colds.get(colds.len() / 2) else {
        return;
    };
    println!(
        "\ncold start, {} from the cache, median of {}: process start → /status/ready {}, → first proxied request {}, peak RSS {}",
        Kind::Routes.label(n),
        colds.len(),
        ms(ready),
        ms(first),
        mib(peak)
    );
}
