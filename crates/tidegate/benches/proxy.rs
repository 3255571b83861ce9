//! Proxy: tidegate's proxy next to nginx and HAProxy in front of one origin, in one run.
//!
//! Run: `cargo bench -p tidegate --bench proxy -- [--scenario plain|plugins|churn|all]
//! [--duration 10s] [--reps 3] [--smoke]`
//!
//! The origin is Debian's nginx answering `200 hello` with keepalive. Each proxy under
//! test forwards to it with upstream keepalive: tidegate (`role = traditional`, one
//! service and route made through its Admin API), nginx (`proxy_pass` to an `upstream`
//! with `keepalive`, one worker) and HAProxy (`nbthread 1`, `http-reuse always`). The
//! proxies and the origin share core 1 and the load generators run on core 0, so the load
//! never competes with the process under test; nginx and HAProxy get the X-Forwarded-*
//! work a gateway does too.
//!
//! Figures, per target and repetition (the order of targets rotates every repetition,
//! tables show medians):
//! - RPS: `wrk -t1 -c50` for the duration (Debian's wrk, pinned to core 0).
//! - CPU µs/req, the main figure on a shared machine: utime+stime of the process under
//!   test (every thread, from /proc/<pid>/stat) over the wrk window, divided by the
//!   requests wrk completed. Wall-clock throughput moves with whatever else runs; the CPU
//!   one request costs barely does.
//! - p50/p99 at a fixed rate: Debian has no wrk2 and wrk cannot hold a rate, so this
//!   bench carries its own generator: 50 keep-alive connections each sending on a fixed
//!   schedule (2,000 req/s in all). A request whose slot came while its connection was
//!   still busy is timed from its slot, as wrk2 does, so a stall shows up in the tail
//!   instead of being hidden by the generator waiting (coordinated omission).
//! - Added hop latency: one connection, one request at a time, with every process allowed
//!   on both cores; p50 through the proxy minus p50 straight to the origin, in rounds of
//!   short windows (the origin and every proxy back to back, the order rotating and
//!   reversed every other round), median over the rounds, so the VM's drift between
//!   moments cancels.
//! - How busy the machine was in each window, from /proc/stat: CPU of core 1 used by
//!   anything but the proxy and the origin, core 0, and steal; a window is flagged `!`
//!   (disturbed) above 10% others or 5% steal. Each table is followed by the medians of
//!   RPS and CPU over the quiet wrk windows only, and by each proxy's CPU per request
//!   over the origin's in the same window: the origin does the same work behind every
//!   proxy, so that ratio factors out how fast the shared VM ran in the window.
//!
//! Scenarios: `plain` (all three proxies and the origin direct); `plugins` (tidegate with
//! key-auth and rate-limiting on the route, next to the same tidegate's plain route);
//! `churn` (tidegate's p99 at the fixed rate while 10 admin writes a second hit its Admin
//! API, next to the same without). `--smoke` is one short repetition of each, for CI:
//! the same tables, no speed asserted.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    cell, clk_tck, core_times, first_line, kill_children_on_signal, machine, median, proc_ticks,
    ratio, us, Conn, CoreTimes, Proc, LONG,
};
use serde_json::{json, Value};
use support::{free_port, http, proxy_get, wait_for};

const LOAD_CORE: &str = "0";
const SERVER_CORE: &str = "1";
const CONNECTIONS: usize = 50;
/// One window of a hop round: long enough for a few hundred requests one by one.
const HOP_WINDOW: Duration = Duration::from_millis(250);
const RATE: f64 = 2000.0;
const CHURN_PER_SEC: f64 = 10.0;
/// Share of core 1 used by other processes above which a window is flagged.
const BUSY_FLAG_PCT: f64 = 10.0;
/// Steal above this also flags a window: the hypervisor took the vCPUs away often
/// enough that every process's CPU per request rises (the origin's too).
const STEAL_FLAG_PCT: f64 = 5.0;
const API_KEY: &str = "tidegate-bench-key";
const RATE_LIMIT: u64 = 10_000_000;

// === processes ===

fn on_core(core: &str, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core, program]);
    c
}

/// Moves every thread of `pid` to `cores` (threads made later inherit it).
fn pin(pid: u32, cores: &str) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -p -c {cores} {pid} failed");
}

fn ensure_tools() {
    common::ensure_tools(&[
        ("nginx", "nginx"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
        ("taskset", "util-linux"),
    ]);
}

// === the origin and the peers ===

/// Ready once a request through `addr` gets the origin's `hello`; panics with the log
/// when `p` exits first.
fn wait_hello(p: &mut Proc, addr: &str, path: &str) {
    let name = p.name.clone();
    wait_for(&name, LONG, || {
        p.check_alive();
        proxy_get(addr, path, "bench.test").filter(|r| r.0 == 200 && r.2.starts_with("hello"))
    });
}

fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    // Every path nginx may write to lives in the temp dir, so /etc/nginx and /var are
    // never read or written.
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/{name}.pid;\n\
         error_log {d}/{name}.error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n\
         client_body_temp_path {d}/{name}-body;\n  proxy_temp_path {d}/{name}-proxy;\n\
         fastcgi_temp_path {d}/{name}-fastcgi;\n  uwsgi_temp_path {d}/{name}-uwsgi;\n\
         scgi_temp_path {d}/{name}-scgi;\n  keepalive_timeout 300s;\n\
         keepalive_requests 100000000;\n"
    )
}

fn start_nginx(dir: &Path, name: &'static str, server: &str) -> Proc {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, format!("{}{server}}}\n", nginx_common(dir, name))).unwrap();
    let mut cmd = on_core(SERVER_CORE, "nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join(format!("{name}.error.log")))
        .arg("-c")
        .arg(&conf);
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

fn start_origin(dir: &Path) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server =
        format!("  server {{ listen {addr}; location / {{ return 200 \"hello\\n\"; }} }}\n");
    let mut p = start_nginx(dir, "origin", &server);
    wait_hello(&mut p, &addr, "/");
    (p, addr)
}

fn start_nginx_proxy(dir: &Path, origin: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let server = format!(
        "  upstream origin {{ server {origin}; keepalive 64; keepalive_requests 100000000; }}\n\
         server {{\n    listen {addr};\n    location / {{\n\
         proxy_pass http://origin;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_set_header X-Forwarded-Proto $scheme;\n\
         proxy_set_header X-Forwarded-Host $host;\n\
         proxy_set_header X-Forwarded-Port $server_port;\n    }}\n  }}\n"
    );
    let mut p = start_nginx(dir, "nginx-proxy", &server);
    wait_hello(&mut p, &addr, "/plain");
    (p, addr)
}

fn start_haproxy(dir: &Path, origin: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 1\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 300s\n\
             timeout server 300s\n  timeout http-keep-alive 300s\n  option http-keep-alive\n\
             option forwardfor\n  http-reuse always\n\
             frontend fe\n  bind {addr}\n  default_backend be\n\
             backend be\n  server origin {origin}\n"
        ),
    )
    .unwrap();
    let mut cmd = on_core(SERVER_CORE, "haproxy");
    cmd.arg("-db").arg("-f").arg(&conf);
    let mut p = Proc::spawn("haproxy", cmd, dir.join("haproxy.log"));
    wait_hello(&mut p, &addr, "/plain");
    (p, addr)
}

struct Tidegate {
    proc: Proc,
    admin: String,
    proxy: String,
}

impl Tidegate {
    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> support::Reply {
        http(&self.admin, method, path, body, &[])
            .unwrap_or_else(|| panic!("tidegate's Admin API did not answer {method} {path}"))
    }

    fn must(&self, method: &str, path: &str, body: Value, status: u16) -> Value {
        let r = self.admin(method, path, Some(&body));
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        r.body
    }
}

fn start_tidegate(dir: &Path, origin: &str) -> Tidegate {
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = format!("127.0.0.1:{}", free_port());
    let mut cmd = on_core(SERVER_CORE, support::binary());
    // One worker, as nginx's one worker process and HAProxy's one thread (on one allowed
    // core `auto` would choose one as well).
    cmd.args(["start", "-p"])
        .arg(dir.join("tidegate"))
        .env("TIDEGATE_WORKER_THREADS", "1")
        .env("TIDEGATE_ADMIN_LISTEN", &admin)
        .env("TIDEGATE_PROXY_LISTEN", &proxy)
        .env("TIDEGATE_ADMIN_GUI_LISTEN", "off")
        .env("TIDEGATE_LOG_LEVEL", "warn");
    let mut t = Tidegate {
        proc: Proc::spawn("tidegate", cmd, dir.join("tidegate.log")),
        admin,
        proxy,
    };
    let admin = t.admin.clone();
    wait_for("tidegate's Admin API", LONG, || {
        t.proc.check_alive();
        http(&admin, "GET", "/status", None, &[]).filter(|r| r.status == 200)
    });
    t.must(
        "POST",
        "/services",
        json!({"name": "origin", "url": format!("http://{origin}")}),
        201,
    );
    t.must(
        "POST",
        "/services/origin/routes",
        json!({"name": "plain", "paths": ["/plain"]}),
        201,
    );
    // The route the churn scenario rewrites; never requested.
    t.must(
        "POST",
        "/services/origin/routes",
        json!({"name": "churn", "paths": ["/churn"]}),
        201,
    );
    let proxy = t.proxy.clone();
    wait_hello(&mut t.proc, &proxy, "/plain");
    t
}

/// The threads of a running process, by name and count.
fn threads(pid: u32) -> String {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| {
                std::fs::read_to_string(e.ok()?.path().join("comm"))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out: Vec<String> = Vec::new();
    for n in names.chunk_by(|a, b| a == b) {
        out.push(format!("{} × {}", n.len(), n[0]));
    }
    out.join(", ")
}

// === CPU accounting ===

struct Snapshot {
    at: Instant,
    ticks: Vec<u64>,
    cores: Vec<CoreTimes>,
}

impl Snapshot {
    fn take(pids: &[u32]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            ticks: pids.iter().map(|p| proc_ticks(*p)).collect(),
            cores: core_times(),
        }
    }
}

/// How busy the machine was over one window.
#[derive(Clone, Copy, Default)]
struct Busy {
    /// Core 1 used by anything but the measured processes, %.
    others_core1: f64,
    core0: f64,
    steal: f64,
}

impl Busy {
    fn flagged(&self) -> bool {
        self.others_core1 > BUSY_FLAG_PCT || self.steal > STEAL_FLAG_PCT
    }

    fn text(&self) -> String {
        format!(
            "core1 others {:>3.0}%{} core0 {:>3.0}% steal {:>2.0}%",
            self.others_core1,
            if self.flagged() { "!" } else { " " },
            self.core0,
            self.steal
        )
    }
}

/// CPU seconds of each pid over the window, and how busy the machine was.
fn window(before: &Snapshot, after: &Snapshot, tck: f64) -> (Vec<f64>, Duration, Busy) {
    let secs: Vec<f64> = before
        .ticks
        .iter()
        .zip(&after.ticks)
        .map(|(b, a)| (a - b) as f64 / tck)
        .collect();
    let d = |i: usize| {
        let (b, a) = (before.cores[i], after.cores[i]);
        (
            (a.busy - b.busy) as f64,
            (a.total - b.total).max(1) as f64,
            (a.steal - b.steal) as f64,
        )
    };
    let mut busy = Busy::default();
    if before.cores.len() >= 2 {
        let (b0, t0, s0) = d(0);
        let (b1, t1, s1) = d(1);
        let ours: f64 = secs.iter().sum::<f64>() * tck;
        busy.core0 = 100.0 * b0 / t0;
        busy.others_core1 = (100.0 * (b1 - ours) / t1).max(0.0);
        busy.steal = 100.0 * (s0 + s1) / (t0 + t1);
    }
    (secs, after.at - before.at, busy)
}

// === load: wrk ===

struct Wrk {
    requests: u64,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn parse_latency(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let us = match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    };
    Some(Duration::from_nanos((us * 1e3) as u64))
}

fn run_wrk(t: &Target, dur: Duration) -> Result<Wrk, String> {
    let secs = dur.as_secs_f64().ceil().max(1.0) as u64;
    let mut cmd = on_core(LOAD_CORE, "wrk");
    cmd.args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s")])
        .args(["--latency", "--timeout", "10s"]);
    if let Some((k, v)) = &t.header {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    cmd.arg(format!("http://{}{}", t.addr, t.path));
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Every request must have been answered 200: a 401, 404 or 502 would measure an
    // error path.
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors against {}:\n{text}", t.label));
    }
    let mut w = Wrk {
        requests: 0,
        rps: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    };
    for line in text.lines() {
        let l = line.trim();
        let mut parts = l.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("50%"), Some(v)) => w.p50 = parse_latency(v).unwrap_or_default(),
            (Some("99%"), Some(v)) => w.p99 = parse_latency(v).unwrap_or_default(),
            (Some("Requests/sec:"), Some(v)) => w.rps = v.parse().unwrap_or(0.0),
            (Some(n), Some("requests")) => w.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    if w.requests == 0 {
        return Err(format!("no requests completed:\n{text}"));
    }
    Ok(w)
}

// === load: the fixed-rate generator ===

fn request_bytes(t: &Target) -> Arc<[u8]> {
    let mut r = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", t.path, t.addr);
    if let Some((k, v)) = &t.header {
        let _ = write!(r, "{k}: {v}\r\n");
    }
    r.push_str("\r\n");
    Arc::from(r.into_bytes())
}

struct Latencies {
    sorted: Vec<Duration>,
    errors: usize,
    achieved_rate: f64,
}

impl Latencies {
    fn pct(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.sorted.len() as f64 - 1.0) * p).round() as usize;
        self.sorted[i]
    }
}

/// `conns` connections sending `rate` requests a second in all, each on its own fixed
/// schedule; a late request is timed from its slot.
async fn fixed_rate(
    addr: &str,
    req: Arc<[u8]>,
    conns: usize,
    rate: f64,
    dur: Duration,
) -> Latencies {
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let t0 = Instant::now() + Duration::from_millis(50);
    let end = t0 + dur;
    let mut tasks = Vec::new();
    for i in 0..conns {
        let addr = addr.to_string();
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut conn = Conn::open(&addr).await.ok();
            let mut slot = t0 + interval.mul_f64(i as f64 / conns as f64);
            while slot < end {
                let now = Instant::now();
                let from = if now < slot {
                    tokio::time::sleep_until(slot.into()).await;
                    // On time: the timer's own lateness is not the server's.
                    Instant::now()
                } else {
                    slot
                };
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match Conn::open(&addr).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            errors += 1;
                            slot += interval;
                            continue;
                        }
                    },
                };
                match c.request(&req).await {
                    Ok(200) => lat.push(from.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = None;
                    }
                }
                slot += interval;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    all.sort();
    Latencies {
        achieved_rate: all.len() as f64 / dur.as_secs_f64(),
        sorted: all,
        errors,
    }
}

/// One connection, one request at a time.
async fn one_by_one(addr: &str, req: Arc<[u8]>, dur: Duration) -> Latencies {
    let mut conn = Conn::open(addr).await.expect("connect");
    let end = Instant::now() + dur;
    let mut lat = Vec::new();
    let mut errors = 0;
    while Instant::now() < end {
        let t = Instant::now();
        match conn.request(&req).await {
            Ok(200) => lat.push(t.elapsed()),
            _ => errors += 1,
        }
    }
    lat.sort();
    Latencies {
        achieved_rate: lat.len() as f64 / dur.as_secs_f64(),
        sorted: lat,
        errors,
    }
}

// === measuring ===

#[derive(Clone)]
struct Target {
    label: String,
    /// The process whose CPU is the figure; the origin's own pid for "origin direct".
    pid: u32,
    addr: String,
    path: String,
    header: Option<(String, String)>,
}

/// One repetition's figures for one target; NaN where not measured.
#[derive(Clone, Copy)]
struct Sample {
    rps: f64,
    cpu_us: f64,
    sat_p99: f64,
    p50: f64,
    p99: f64,
    hop_p50: f64,
    /// RPS and CPU of the wrk window when it was not flagged (else NaN): medians over
    /// the quiet windows only.
    quiet_rps: f64,
    quiet_cpu_us: f64,
    /// The proxy's CPU per request over the origin's in the same wrk window. The origin
    /// does the same work for every proxy, so this factors out how fast the shared VM
    /// ran in that window (its own CPU per request varied 13–24 µs here).
    per_origin: f64,
    /// Pinned windows measured, and those flagged as disturbed.
    windows: u32,
    flagged: u32,
    /// wrk windows measured, and those not flagged.
    wrk_windows: u32,
    wrk_quiet: u32,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            rps: f64::NAN,
            cpu_us: f64::NAN,
            sat_p99: f64::NAN,
            p50: f64::NAN,
            p99: f64::NAN,
            hop_p50: f64::NAN,
            quiet_rps: f64::NAN,
            quiet_cpu_us: f64::NAN,
            per_origin: f64::NAN,
            windows: 0,
            flagged: 0,
            wrk_windows: 0,
            wrk_quiet: 0,
        }
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    origin_pid: u32,
    tck: f64,
    dur: Duration,
    hop_dur: Duration,
    /// Windows in which another process used core 1 heavily.
    flagged: usize,
    windows: usize,
}

impl Bench {
    fn pids(&self, t: &Target) -> Vec<u32> {
        if t.pid == self.origin_pid {
            vec![t.pid]
        } else {
            vec![t.pid, self.origin_pid]
        }
    }

    fn note(&mut self, busy: &Busy, s: &mut Sample) {
        self.windows += 1;
        s.windows += 1;
        if busy.flagged() {
            self.flagged += 1;
            s.flagged += 1;
        }
    }

    /// wrk at 50 connections: RPS, CPU per request, wrk's own p99 at saturation.
    fn saturate(&mut self, t: &Target, s: &mut Sample) -> Result<(), String> {
        let pids = self.pids(t);
        let before = Snapshot::take(&pids);
        let w = run_wrk(t, self.dur)?;
        let after = Snapshot::take(&pids);
        let (cpu, _, busy) = window(&before, &after, self.tck);
        self.note(&busy, s);
        s.rps = w.rps;
        s.cpu_us = cpu[0] * 1e6 / w.requests as f64;
        s.sat_p99 = us(w.p99);
        s.wrk_windows += 1;
        if !busy.flagged() {
            s.wrk_quiet += 1;
            s.quiet_rps = s.rps;
            s.quiet_cpu_us = s.cpu_us;
        }
        let origin = if cpu.len() > 1 {
            let origin_us = cpu[1] * 1e6 / w.requests as f64;
            s.per_origin = s.cpu_us / origin_us;
            format!("  origin {:>5.1} µs/req", origin_us)
        } else {
            String::new()
        };
        println!(
            "  {:<18} wrk      {:>8.0} req/s  {:>6.1} µs/req  p50 {:>6.0} µs  p99 {:>6.0} µs{origin}  [{}]",
            t.label,
            w.rps,
            s.cpu_us,
            us(w.p50),
            s.sat_p99,
            busy.text()
        );
        Ok(())
    }

    /// The fixed-rate generator; `during` runs beside it (the churn).
    fn at_rate(&mut self, t: &Target, s: &mut Sample, tag: &str) -> Result<(), String> {
        let pids = self.pids(t);
        let req = request_bytes(t);
        let before = Snapshot::take(&pids);
        let lat = self
            .rt
            .block_on(fixed_rate(&t.addr, req, CONNECTIONS, RATE, self.dur));
        let after = Snapshot::take(&pids);
        let (cpu, _, busy) = window(&before, &after, self.tck);
        self.note(&busy, s);
        if lat.errors > 0 || lat.sorted.is_empty() {
            return Err(format!(
                "{}: {} failed requests at the fixed rate",
                t.label, lat.errors
            ));
        }
        s.p50 = us(lat.pct(0.5));
        s.p99 = us(lat.pct(0.99));
        println!(
            "  {:<18} {tag:<8} {:>8.0} req/s  {:>6.1} µs/req  p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs  [{}]",
            t.label,
            lat.achieved_rate,
            cpu[0] * 1e6 / lat.sorted.len() as f64,
            s.p50,
            s.p99,
            us(*lat.sorted.last().unwrap()),
            busy.text()
        );
        Ok(())
    }

    /// Added hop latency for each target (NaN for the origin itself): rounds of short
    /// one-connection windows, the origin straight and every proxy back to back in an
    /// order that rotates each round and is reversed every other one, every process
    /// allowed on both cores. A round gives each proxy's p50 minus the origin's from the
    /// same round, so how fast the shared VM ran, which drifts over seconds, cancels out;
    /// the figure is the median over the rounds. (Measured once per proxy at different
    /// moments, two runs with the same plain route read 0.97× and 1.51× nginx's.)
    fn hops(
        &mut self,
        targets: &[Target],
        direct: &Target,
        all_pids: &[u32],
    ) -> Result<Vec<f64>, String> {
        for p in all_pids {
            pin(*p, "0,1");
        }
        pin(std::process::id(), "0,1");
        let rounds = (self.hop_dur.as_millis() / HOP_WINDOW.as_millis()).max(3) as usize;
        let result = self.hop_rounds(targets, direct, rounds);
        for p in all_pids {
            pin(*p, SERVER_CORE);
        }
        pin(std::process::id(), LOAD_CORE);
        let added: Vec<f64> = result?
            .into_iter()
            .map(|d| if d.is_empty() { f64::NAN } else { median(d) })
            .collect();
        for (t, a) in targets.iter().zip(&added) {
            if !a.is_nan() {
                println!(
                    "  {:<18} 1 conn   added p50 {:>5.0} µs  (median of {rounds} rounds of {} ms, each against the origin straight; unpinned)",
                    t.label,
                    a,
                    HOP_WINDOW.as_millis()
                );
            }
        }
        Ok(added)
    }

    fn hop_rounds(
        &mut self,
        targets: &[Target],
        direct: &Target,
        rounds: usize,
    ) -> Result<Vec<Vec<f64>>, String> {
        let proxies: Vec<usize> = (0..targets.len())
            .filter(|i| targets[*i].pid != self.origin_pid)
            .collect();
        let mut added = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            let mut order: Vec<Option<usize>> = std::iter::once(None)
                .chain(proxies.iter().copied().map(Some))
                .collect();
            let n = order.len();
            order.rotate_left(round % n);
            // Reversed every other round, so that each proxy's window follows the
            // origin's as often as it precedes it: with rotation alone one proxy would
            // mostly come just after the origin and another just before, and a steady
            // drift would move their medians apart.
            if round % 2 == 1 {
                order.reverse();
            }
            let mut p50s = vec![f64::NAN; targets.len()];
            let mut straight = f64::NAN;
            for o in order {
                let t = o.map_or(direct, |i| &targets[i]);
                let lat = self
                    .rt
                    .block_on(one_by_one(&t.addr, request_bytes(t), HOP_WINDOW));
                if lat.errors > 0 || lat.sorted.is_empty() {
                    return Err(format!(
                        "{}: {} failed requests, one by one",
                        t.label, lat.errors
                    ));
                }
                let p50 = us(lat.pct(0.5));
                match o {
                    None => straight = p50,
                    Some(i) => p50s[i] = p50,
                }
            }
            for &i in &proxies {
                added[i].push(p50s[i] - straight);
            }
        }
        Ok(added)
    }
}

fn medians(samples: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Sample {
        rps: m(|s| s.rps),
        cpu_us: m(|s| s.cpu_us),
        sat_p99: m(|s| s.sat_p99),
        p50: m(|s| s.p50),
        p99: m(|s| s.p99),
        hop_p50: m(|s| s.hop_p50),
        quiet_rps: m(|s| s.quiet_rps),
        quiet_cpu_us: m(|s| s.quiet_cpu_us),
        per_origin: m(|s| s.per_origin),
        windows: samples.iter().map(|s| s.windows).sum(),
        flagged: samples.iter().map(|s| s.flagged).sum(),
        wrk_windows: samples.iter().map(|s| s.wrk_windows).sum(),
        wrk_quiet: samples.iter().map(|s| s.wrk_quiet).sum(),
    }
}

const LABEL: usize = 28;

fn print_table(title: &str, rows: &[(String, Sample)], ratios: &[(usize, usize, &str)]) {
    println!("\n{title} (ratios: tidegate's figure over the peer's)");
    println!(
        "| {:<LABEL$} | {:>8} | {:>10} | {:>9} | {:>9} | {:>12} | {:>12} | {:>7} |",
        "", "RPS", "CPU µs/req", "p50 µs", "p99 µs", "wrk p99 µs", "hop +p50 µs", "busy!"
    );
    println!(
        "|{:-<w$}|{:->10}|{:->12}|{:->11}|{:->11}|{:->14}|{:->14}|{:->9}|",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        w = LABEL + 2
    );
    for (name, s) in rows {
        println!(
            "| {:<LABEL$} | {:>8} | {:>10} | {:>9} | {:>9} | {:>12} | {:>12} | {:>7} |",
            name,
            cell(s.rps, 0),
            cell(s.cpu_us, 1),
            cell(s.p50, 0),
            cell(s.p99, 0),
            cell(s.sat_p99, 0),
            cell(s.hop_p50, 0),
            format!("{}/{}", s.flagged, s.windows)
        );
    }
    for (a, b, label) in ratios {
        let (x, y) = (&rows[*a].1, &rows[*b].1);
        println!(
            "| {:<LABEL$} | {:>8} | {:>10} | {:>9} | {:>9} | {:>12} | {:>12} | {:>7} |",
            label,
            ratio(x.rps, y.rps),
            ratio(x.cpu_us, y.cpu_us),
            ratio(x.p50, y.p50),
            ratio(x.p99, y.p99),
            ratio(x.sat_p99, y.sat_p99),
            ratio(x.hop_p50, y.hop_p50),
            ""
        );
    }
    println!(
        "\nquiet wrk windows only (core {SERVER_CORE} others <= {BUSY_FLAG_PCT}%, steal <= {STEAL_FLAG_PCT}%), medians; and CPU per request over the origin's in the same window (the VM's speed factored out), medians of all windows:"
    );
    for (name, s) in rows {
        println!(
            "  {:<LABEL$} {:>5} quiet  RPS {:>8}  CPU µs/req {:>6}  over the origin's {:>5}",
            name,
            format!("{}/{}", s.wrk_quiet, s.wrk_windows),
            cell(s.quiet_rps, 0),
            cell(s.quiet_cpu_us, 1),
            cell(s.per_origin, 2)
        );
    }
    for (a, b, label) in ratios {
        let (x, y) = (&rows[*a].1, &rows[*b].1);
        println!(
            "  {:<LABEL$}              RPS {:>8}  CPU µs/req {:>6}  over the origin's {:>5}",
            label,
            ratio(x.quiet_rps, y.quiet_rps),
            ratio(x.quiet_cpu_us, y.quiet_cpu_us),
            ratio(x.per_origin, y.per_origin)
        );
    }
}

/// Every figure for each target, `reps` times in a rotating order; each repetition ends
/// with the added hop of every proxy, measured in paired rounds.
fn measure(
    b: &mut Bench,
    targets: &[Target],
    direct: &Target,
    reps: usize,
    all_pids: &[u32],
    procs: &mut [&mut Proc],
) -> Result<Vec<Vec<Sample>>, String> {
    let mut out = vec![Vec::new(); targets.len()];
    for rep in 0..reps {
        println!("rep {}/{reps}", rep + 1);
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.rotate_left(rep % targets.len());
        for i in order {
            let t = &targets[i];
            let mut s = Sample::default();
            b.saturate(t, &mut s)?;
            b.at_rate(t, &mut s, "2000/s")?;
            out[i].push(s);
            for p in procs.iter_mut() {
                p.check_alive();
            }
        }
        let added = b.hops(targets, direct, all_pids)?;
        for (samples, a) in out.iter_mut().zip(added) {
            if let Some(s) = samples.last_mut() {
                s.hop_p50 = a;
            }
        }
    }
    Ok(out)
}

// === scenarios ===

struct World {
    origin: Proc,
    origin_addr: String,
    tidegate: Tidegate,
    nginx: (Proc, String),
    haproxy: (Proc, String),
}

impl World {
    fn all_pids(&self) -> Vec<u32> {
        vec![
            self.origin.pid(),
            self.tidegate.proc.pid(),
            self.nginx.0.pid(),
            self.haproxy.0.pid(),
        ]
    }

    fn target(&self, label: &str, pid: u32, addr: &str, path: &str) -> Target {
        Target {
            label: label.to_string(),
            pid,
            addr: addr.to_string(),
            path: path.to_string(),
            header: None,
        }
    }

    fn direct(&self) -> Target {
        self.target(
            "origin direct",
            self.origin.pid(),
            &self.origin_addr,
            "/plain",
        )
    }

    fn tidegate_plain(&self) -> Target {
        self.target(
            "tidegate",
            self.tidegate.proc.pid(),
            &self.tidegate.proxy,
            "/plain",
        )
    }
}

fn scenario_plain(w: &mut World, b: &mut Bench, reps: usize) -> Result<Vec<Sample>, String> {
    println!("\n== plain: GET through each proxy to the origin ==");
    let targets = vec![
        w.tidegate_plain(),
        w.target("nginx", w.nginx.0.pid(), &w.nginx.1, "/plain"),
        w.target("haproxy", w.haproxy.0.pid(), &w.haproxy.1, "/plain"),
        w.direct(),
    ];
    let pids = w.all_pids();
    let direct = w.direct();
    let samples = {
        let World {
            origin,
            tidegate,
            nginx,
            haproxy,
            ..
        } = w;
        measure(
            b,
            &targets,
            &direct,
            reps,
            &pids,
            &mut [origin, &mut tidegate.proc, &mut nginx.0, &mut haproxy.0],
        )?
    };
    let rows: Vec<(String, Sample)> = targets
        .iter()
        .zip(&samples)
        .map(|(t, s)| (t.label.clone(), medians(s)))
        .collect();
    print_table(
        &format!("plain, median of {reps}"),
        &rows,
        &[(0, 1, "tidegate / nginx"), (0, 2, "tidegate / haproxy")],
    );
    Ok(samples[0].clone())
}

/// Adds key-auth and rate-limiting on a route of their own; Err when either does not
/// take effect (the Admin API refused it, or requests pass without a key, or the
/// rate-limiting headers are missing).
fn plugins_on(t: &Tidegate) -> Result<(), String> {
    let post = |path: &str, body: Value| -> Result<Value, String> {
        let r = t.admin("POST", path, Some(&body));
        if r.status == 201 {
            Ok(r.body)
        } else {
            Err(format!("POST {path} {body} → {}: {}", r.status, r.body))
        }
    };
    post(
        "/services/origin/routes",
        json!({"name": "auth", "paths": ["/auth"]}),
    )?;
    post("/consumers", json!({"username": "bench"}))?;
    post("/consumers/bench/key-auth", json!({"key": API_KEY}))?;
    post("/routes/auth/plugins", json!({"name": "key-auth"}))?;
    post(
        "/routes/auth/plugins",
        json!({"name": "rate-limiting", "config": {"second": RATE_LIMIT, "policy": "local"}}),
    )?;

    // The route and each plugin reach the proxy as separate config versions: poll until
    // both plugins act, and fail with what is still wrong at the deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let problems = plugin_problems(&t.proxy);
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(problems.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What is wrong with key-auth and rate-limiting on /auth, as a client sees it.
fn plugin_problems(proxy: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match support::proxy_get_with(proxy, "/auth", "bench.test", &[("apikey", API_KEY)]) {
        Some((200, headers, _)) => {
            let limit = headers
                .iter()
                .find(|(k, _)| k == "x-ratelimit-limit-second" || k == "ratelimit-limit");
            if limit.is_none() {
                problems.push(format!(
                    "rate-limiting did not act: no X-RateLimit-Limit-Second / RateLimit-Limit \
                     header on a keyed request (headers: {headers:?})"
                ));
            }
        }
        other => problems.push(format!(
            "a request with the key did not get 200: {:?}",
            other.map(|r| (r.0, r.2))
        )),
    }
    match proxy_get(proxy, "/auth", "bench.test") {
        Some((401, _, _)) => {}
        other => problems.push(format!(
            "key-auth did not act: a request without the key got {:?} (want 401)",
            other.map(|r| (r.0, r.2))
        )),
    }
    problems
}

fn plugins_off(t: &Tidegate) {
    let r = t.admin("GET", "/routes/auth/plugins?size=1000", None);
    for p in r.body["data"].as_array().cloned().unwrap_or_default() {
        if let Some(id) = p["id"].as_str() {
            t.admin("DELETE", &format!("/plugins/{id}"), None);
        }
    }
    t.admin("DELETE", "/routes/auth", None);
    t.admin("DELETE", "/consumers/bench", None);
}

fn scenario_plugins(
    w: &mut World,
    b: &mut Bench,
    reps: usize,
    plain: Option<&[Sample]>,
) -> Result<(), String> {
    println!(
        "\n== plugins: key-auth + rate-limiting (local, second = {RATE_LIMIT}) on the route =="
    );
    let set = plugins_on(&w.tidegate);
    if let Err(e) = set {
        plugins_off(&w.tidegate);
        return Err(format!(
            "the plugins did not take effect, nothing measured:\n{e}"
        ));
    }
    let mut with = w.target(
        "tidegate + plugins",
        w.tidegate.proc.pid(),
        &w.tidegate.proxy,
        "/auth",
    );
    with.header = Some(("apikey".to_string(), API_KEY.to_string()));
    let targets = vec![w.tidegate_plain(), with];
    let pids = w.all_pids();
    let direct = w.direct();
    let result = measure(
        b,
        &targets,
        &direct,
        reps,
        &pids,
        &mut [&mut w.tidegate.proc, &mut w.origin],
    );
    plugins_off(&w.tidegate);
    let samples = result?;
    let mut rows: Vec<(String, Sample)> = targets
        .iter()
        .zip(&samples)
        .map(|(t, s)| (t.label.clone(), medians(s)))
        .collect();
    let mut ratios = vec![(1, 0, "plugins / plain (this run)")];
    if let Some(p) = plain {
        rows.push(("tidegate (plain scenario)".to_string(), medians(p)));
        ratios.push((1, 2, "plugins / plain scenario"));
    }
    print_table(&format!("plugins, median of {reps}"), &rows, &ratios);
    Ok(())
}

struct Churn {
    writes: usize,
    failed: usize,
    lat: Vec<Duration>,
    rate: f64,
}

/// PATCHes the churn route's tags on a fixed schedule until `stop`.
fn churn(admin: String, stop: Arc<AtomicBool>) -> Churn {
    let interval = Duration::from_secs_f64(1.0 / CHURN_PER_SEC);
    let start = Instant::now();
    let mut next = start;
    let mut c = Churn {
        writes: 0,
        failed: 0,
        lat: Vec::new(),
        rate: 0.0,
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
            continue;
        }
        let body = json!({"tags": [format!("churn-{}", c.writes)]});
        let t = Instant::now();
        let r = http(&admin, "PATCH", "/routes/churn", Some(&body), &[]);
        c.lat.push(t.elapsed());
        c.writes += 1;
        if r.is_none_or(|r| r.status != 200) {
            c.failed += 1;
        }
        next += interval;
    }
    c.rate = c.writes as f64 / start.elapsed().as_secs_f64();
    c.lat.sort();
    c
}

fn scenario_churn(w: &mut World, b: &mut Bench, reps: usize) -> Result<(), String> {
    println!(
        "\n== churn: p99 at {RATE} req/s while {CHURN_PER_SEC} admin writes/s (PATCH a route's tags) hit the Admin API =="
    );
    let t = w.tidegate_plain();
    let mut quiet = Vec::new();
    let mut busy = Vec::new();
    for rep in 0..reps {
        println!("rep {}/{reps}", rep + 1);
        for with_churn in [rep % 2 == 1, rep % 2 == 0] {
            let mut s = Sample::default();
            if with_churn {
                let stop = Arc::new(AtomicBool::new(false));
                let writer = {
                    let (admin, stop) = (w.tidegate.admin.clone(), stop.clone());
                    std::thread::spawn(move || churn(admin, stop))
                };
                let r = b.at_rate(&t, &mut s, "churn");
                stop.store(true, Ordering::Relaxed);
                let c = writer.join().unwrap();
                r?;
                let pct = |p: f64| c.lat[((c.lat.len() as f64 - 1.0) * p).round() as usize];
                println!(
                    "  {:<18} admin    {} writes ({:.1}/s), {} failed, PATCH p50 {:.2?} p99 {:.2?}",
                    "",
                    c.writes,
                    c.rate,
                    c.failed,
                    pct(0.5),
                    pct(0.99)
                );
                if c.failed > 0 {
                    return Err(format!("{} of {} admin writes failed", c.failed, c.writes));
                }
                busy.push(s);
            } else {
                b.at_rate(&t, &mut s, "2000/s")?;
                quiet.push(s);
            }
            w.tidegate.proc.check_alive();
        }
    }
    let (q, c) = (medians(&quiet), medians(&busy));
    println!("\nchurn, median of {reps}; disturbed windows (core {SERVER_CORE} >{BUSY_FLAG_PCT}% others or >{STEAL_FLAG_PCT}% steal): no churn {}/{}, churn {}/{}", q.flagged, q.windows, c.flagged, c.windows);
    println!(
        "| {:<24} | {:>9} | {:>9} |",
        "tidegate at 2000 req/s", "p50 µs", "p99 µs"
    );
    println!("|{:-<26}|{:->11}|{:->11}|", "", "", "");
    println!(
        "| {:<24} | {:>9} | {:>9} |",
        "no churn",
        cell(q.p50, 0),
        cell(q.p99, 0)
    );
    println!(
        "| {:<24} | {:>9} | {:>9} |",
        format!("{CHURN_PER_SEC} admin writes/s"),
        cell(c.p50, 0),
        cell(c.p99, 0)
    );
    println!(
        "| {:<24} | {:>9} | {:>9} |",
        "churn / no churn",
        ratio(c.p50, q.p50),
        ratio(c.p99, q.p99)
    );
    Ok(())
}

// === main ===

struct Opts {
    scenarios: Vec<String>,
    duration: Duration,
    reps: usize,
    smoke: bool,
}

fn parse_duration(s: &str) -> Duration {
    let s = s.trim();
    let (n, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = n.parse().expect("--duration like 10s, 1500ms or 1m");
    Duration::from_secs_f64(v * mult)
}

fn opts() -> Opts {
    let a: Vec<String> = std::env::args().collect();
    let mut o = Opts {
        scenarios: vec!["plain".into(), "plugins".into(), "churn".into()],
        duration: Duration::from_secs(10),
        reps: 3,
        smoke: false,
    };
    let mut i = 1;
    while i < a.len() {
        let next = a.get(i + 1).cloned().unwrap_or_default();
        match a[i].as_str() {
            "--scenario" => {
                o.scenarios = match next.as_str() {
                    "all" => o.scenarios.clone(),
                    "plain" | "plugins" | "churn" => vec![next],
                    other => panic!("--scenario plain|plugins|churn|all, not {other:?}"),
                };
                i += 1;
            }
            "--duration" => {
                o.duration = parse_duration(&next);
                i += 1;
            }
            "--reps" => {
                o.reps = next.parse().expect("--reps N");
                i += 1;
            }
            "--smoke" => o.smoke = true,
            _ => {}
        }
        i += 1;
    }
    if o.smoke {
        // About 20 s in all on the dev build (CI runs it after the test suite).
        o.reps = 1;
        o.duration = Duration::from_secs(1);
    }
    assert!(o.reps > 0, "--reps must be at least 1");
    o
}

fn main() {
    let o = opts();
    kill_children_on_signal();
    ensure_tools();
    assert!(
        core_times().len() >= 2,
        "the bench pins the load to core 0 and the servers to core 1: it needs 2 cores"
    );
    pin(std::process::id(), LOAD_CORE);
    let dir = tempfile::tempdir().unwrap();
    common::remove_on_signal(dir.path());
    let (origin, origin_addr) = start_origin(dir.path());
    let tidegate = start_tidegate(dir.path(), &origin_addr);
    let nginx = start_nginx_proxy(dir.path(), &origin_addr);
    let haproxy = start_haproxy(dir.path(), &origin_addr);
    let mut w = World {
        origin,
        origin_addr,
        tidegate,
        nginx,
        haproxy,
    };
    let hop_dur = (o.duration / 2).max(Duration::from_secs(1));
    println!("proxy bench: {}", machine());
    println!(
        "{}; {}; {}",
        first_line("nginx", &["-v"]),
        first_line("haproxy", &["-v"]),
        first_line("wrk", &["--version"])
    );
    println!(
        "tidegate threads (worker_threads = 1, a current-thread runtime; tokio's blocking pool threads are named tokio-rt-worker): {}\nproxies and origin on core {SERVER_CORE}, load on core {LOAD_CORE}",
        threads(w.tidegate.proc.pid())
    );
    println!(
        "each window: wrk -t1 -c{CONNECTIONS} for {:?} (RPS, CPU), {CONNECTIONS} connections at {RATE} req/s for {:?} (p50/p99), 1 connection unpinned in rounds of {} ms, {:?} per target (hop); {} rep(s)",
        o.duration, o.duration, HOP_WINDOW.as_millis(), hop_dur, o.reps
    );
    let mut b = Bench {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        origin_pid: w.origin.pid(),
        tck: clk_tck(),
        dur: o.duration,
        hop_dur,
        flagged: 0,
        windows: 0,
    };
    let mut failures = Vec::new();
    let mut plain = None;
    for s in &o.scenarios {
        let r = match s.as_str() {
            "plain" => scenario_plain(&mut w, &mut b, o.reps).map(|p| plain = Some(p)),
            "plugins" => scenario_plugins(&mut w, &mut b, o.reps, plain.as_deref()),
            _ => scenario_churn(&mut w, &mut b, o.reps),
        };
        if let Err(e) = r {
            eprintln!("\n!!! scenario {s} FAILED: {e}\n");
            failures.push(s.clone());
        }
    }
    println!(
        "\n{} of {} windows were disturbed (core {SERVER_CORE} more than {BUSY_FLAG_PCT}% busy with other processes, or steal over {STEAL_FLAG_PCT}%); loadavg at the end: {}",
        b.flagged,
        b.windows,
        machine().rsplit("loadavg ").next().unwrap_or("")
    );
    drop(w);
    drop(dir);
    if !failures.is_empty() {
        eprintln!("FAILED scenarios: {}", failures.join(", "));
        std::process::exit(1);
    }
}
