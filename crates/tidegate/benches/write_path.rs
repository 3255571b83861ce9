//! Write path: admin writes through Raft on tidegate control planes, next to etcd puts
//! measured in the same run on the same machine, at the same concurrency and the same
//! durability (both fsync before they answer).
//!
//! Run: `cargo bench -p tidegate --bench write_path -- [--reps 3] [--writes 2000]
//! [--clients 1,16] [--nodes 1,3] [--smoke]`
//!
//! tidegate: real `tidegate start` processes with `role = control_plane` (sled, an fsync
//! before a log entry counts), one node alone and a group of three over mutual-TLS Raft.
//! Each write is `POST /services` with a new name. etcd (Debian's `etcd-server`, 3.4): one
//! member, and a cluster of three, with their data on the same disk and etcd's defaults.
//! Each write is `POST /v3/kv/put` through etcd's HTTP gateway, a new key per write whose
//! value is the JSON tidegate gets.
//!
//! Every client holds keep-alive HTTP/1.1 connections opened before the clock starts and
//! sends one request at a time; `--writes` requests are shared by the clients of a window
//! (each takes the next number). On three nodes the clients are spread over every node
//! (a lone client rotates over one connection per node; followers forward to the leader)
//! and, separately, all on the leader.
//!
//! Figures per window: writes/s (writes ÷ wall time), p50/p99/max latency of a write, and
//! the main one on a shared machine: CPU µs per write of the server processes (utime +
//! stime from /proc/<pid>/stat of every node of the topology, summed, over the window,
//! divided by the writes). Also the bench's own CPU per write (the clients) and how many
//! cores other processes kept busy during the window (from /proc/stat). The order of the
//! targets rotates every repetition; tables show medians over the repetitions and the
//! ratio tidegate / etcd of each figure. `--smoke` is one short repetition for CI: the same
//! tables, no speed asserted; the exit status is non-zero when a write failed or a server
//! died.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    base64, cell, clk_tck, core_times, median, percentile, post_json, proc_ticks, ratio, us, Conn,
    Cps, Etcd,
};
use serde_json::json;

/// A write that takes longer than this fails the window.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

struct Opts {
    reps: usize,
    writes: usize,
    warmup: usize,
    clients: Vec<usize>,
    nodes: Vec<usize>,
    smoke: bool,
}

fn list(s: &str, flag: &str) -> Vec<usize> {
    s.split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("{flag} N,N,…")))
        .collect()
}

fn opts() -> Opts {
    let a: Vec<String> = std::env::args().collect();
    let mut o = Opts {
        reps: 3,
        writes: 2000,
        warmup: 100,
        clients: vec![1, 16],
        nodes: vec![1, 3],
        smoke: false,
    };
    let mut writes = None;
    let mut i = 1;
    while i < a.len() {
        let next = a.get(i + 1).cloned().unwrap_or_default();
        match a[i].as_str() {
            "--reps" => {
                o.reps = next.parse().expect("--reps N");
                i += 1;
            }
            "--writes" => {
                writes = Some(next.parse().expect("--writes N"));
                i += 1;
            }
            "--clients" => {
                o.clients = list(&next, "--clients");
                i += 1;
            }
            "--nodes" => {
                o.nodes = list(&next, "--nodes");
                i += 1;
            }
            "--smoke" => o.smoke = true,
            _ => {}
        }
        i += 1;
    }
    if o.smoke {
        o.reps = 1;
        o.writes = 100;
        o.warmup = 10;
    }
    if let Some(w) = writes {
        o.writes = w;
    }
    assert!(o.reps > 0, "--reps must be at least 1");
    assert!(o.writes > 0, "--writes must be at least 1");
    assert!(
        o.clients.iter().all(|c| *c > 0),
        "--clients must be at least 1"
    );
    o
}

// === targets ===

#[derive(Clone, Copy, PartialEq)]
enum System {
    Tidegate,
    Etcd,
}

/// One topology of one system, with where its clients go.
#[derive(Clone)]
struct Target {
    label: String,
    system: System,
    /// Index into `World::cps` or `World::etcd`.
    group: usize,
    leader_only: bool,
}

struct World {
    cps: Vec<Cps>,
    etcd: Vec<Etcd>,
}

impl World {
    /// The addresses the clients use and the pids whose CPU counts, right now.
    fn resolve(&self, t: &Target) -> Result<(Vec<String>, Vec<u32>), String> {
        match t.system {
            System::Tidegate => {
                let g = &self.cps[t.group];
                let mut addrs = g.admins();
                if t.leader_only {
                    addrs = vec![addrs[g.leader()?].clone()];
                }
                Ok((addrs, g.pids()))
            }
            System::Etcd => {
                let g = &self.etcd[t.group];
                let mut addrs = g.clients();
                if t.leader_only {
                    addrs = vec![addrs[g.leader()?].clone()];
                }
                Ok((addrs, g.pids()))
            }
        }
    }

    fn alive(&mut self) -> Result<(), String> {
        self.cps.iter_mut().try_for_each(Cps::alive)?;
        self.etcd.iter_mut().try_for_each(Etcd::alive)
    }
}

/// The request of write `i` of a window tagged `tag`, and the status that means success.
fn write_request(system: System, addr: &str, tag: &str, i: usize) -> (Vec<u8>, u16) {
    let service = json!({"name": format!("{tag}-{i}"), "host": "example.com"}).to_string();
    match system {
        System::Tidegate => (post_json(addr, "/services", &service), 201),
        System::Etcd => {
            let key = base64(format!("{tag}-{i}").as_bytes());
            let body = json!({"key": key, "value": base64(service.as_bytes())}).to_string();
            (post_json(addr, "/v3/kv/put", &body), 200)
        }
    }
}

// === one window ===

/// `writes` writes by `clients` concurrent clients; every latency, sorted, and the wall
/// time from the first request to the last answer.
async fn drive(
    system: System,
    addrs: &[String],
    clients: usize,
    writes: usize,
    tag: &str,
) -> Result<(Vec<Duration>, Duration), String> {
    // A client with fewer peers than nodes rotates over one connection per node.
    let mut sets = Vec::with_capacity(clients);
    for c in 0..clients {
        let mine: Vec<&String> = if clients >= addrs.len() {
            vec![&addrs[c % addrs.len()]]
        } else {
            (0..addrs.len())
                .map(|k| &addrs[(c + k) % addrs.len()])
                .collect()
        };
        let mut conns = Vec::new();
        for a in mine {
            let conn = Conn::open(a)
                .await
                .map_err(|e| format!("connect to {a}: {e}"))?;
            conns.push((a.clone(), conn));
        }
        sets.push(conns);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = sets
        .into_iter()
        .map(|mut conns| {
            let next = next.clone();
            let tag = tag.to_string();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut k = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= writes {
                        return Ok(lat);
                    }
                    let n = conns.len();
                    let (addr, conn) = &mut conns[k % n];
                    k += 1;
                    let (req, want) = write_request(system, addr, &tag, i);
                    let t = Instant::now();
                    let r = tokio::time::timeout(WRITE_TIMEOUT, conn.request_body(&req)).await;
                    let took = t.elapsed();
                    match r {
                        Ok(Ok((status, _))) if status == want => lat.push(took),
                        Ok(Ok((status, body))) => {
                            return Err(format!(
                                "write {i} to {addr}: {status}, want {want}: {}",
                                String::from_utf8_lossy(&body)
                            ))
                        }
                        Ok(Err(e)) => return Err(format!("write {i} to {addr}: {e}")),
                        Err(_) => {
                            return Err(format!(
                                "write {i} to {addr}: no answer within {WRITE_TIMEOUT:?}"
                            ))
                        }
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(writes);
    let mut first_err = None;
    for t in tasks {
        match t.await.map_err(|e| format!("a client panicked: {e}"))? {
            Ok(lat) => all.extend(lat),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let wall = started.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    all.sort();
    Ok((all, wall))
}

/// One window's figures; NaN where not measured.
#[derive(Clone, Copy)]
struct Sample {
    wps: f64,
    p50: f64,
    p99: f64,
    max: f64,
    cpu_us: f64,
    client_us: f64,
    /// Cores kept busy by processes other than the servers under test and the bench.
    others: f64,
}

struct Bench {
    rt: tokio::runtime::Runtime,
    tck: f64,
    windows: usize,
    others: Vec<f64>,
}

impl Bench {
    fn window(
        &mut self,
        w: &World,
        t: &Target,
        clients: usize,
        writes: usize,
    ) -> Result<Sample, String> {
        self.windows += 1;
        let tag = format!("wp{}-{}", std::process::id(), self.windows);
        let (addrs, pids) = w.resolve(t)?;
        let me = std::process::id();
        let ticks = |pids: &[u32]| pids.iter().map(|p| proc_ticks(*p)).sum::<u64>();
        let busy = || {
            core_times()
                .iter()
                .fold((0u64, 0u64), |(b, t), c| (b + c.busy, t + c.total))
        };
        let (srv0, me0, (busy0, total0)) = (ticks(&pids), proc_ticks(me), busy());
        let (lat, wall) = self
            .rt
            .block_on(drive(t.system, &addrs, clients, writes, &tag))?;
        let (srv1, me1, (busy1, total1)) = (ticks(&pids), proc_ticks(me), busy());
        let cores = core_times().len().max(1) as f64;
        let (srv, mine) = ((srv1 - srv0) as f64, (me1 - me0) as f64);
        let others = ((busy1 - busy0) as f64 - srv - mine).max(0.0)
            / ((total1 - total0).max(1) as f64)
            * cores;
        self.others.push(others);
        let n = lat.len() as f64;
        Ok(Sample {
            wps: n / wall.as_secs_f64(),
            p50: us(percentile(&lat, 0.5)),
            p99: us(percentile(&lat, 0.99)),
            max: us(*lat.last().unwrap_or(&Duration::ZERO)),
            cpu_us: srv / self.tck * 1e6 / n,
            client_us: mine / self.tck * 1e6 / n,
            others,
        })
    }
}

fn medians(samples: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Sample {
        wps: m(|s| s.wps),
        p50: m(|s| s.p50),
        p99: m(|s| s.p99),
        max: m(|s| s.max),
        cpu_us: m(|s| s.cpu_us),
        client_us: m(|s| s.client_us),
        others: m(|s| s.others),
    }
}

const LABEL: usize = 44;

fn ms(x: f64) -> String {
    cell(x / 1000.0, 2)
}

fn row(label: &str, s: &Sample) {
    println!(
        "| {label:<LABEL$} | {:>8} | {:>7} | {:>7} | {:>7} | {:>9} | {:>9} | {:>7} |",
        cell(s.wps, 0),
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        cell(s.cpu_us, 0),
        cell(s.client_us, 0),
        cell(s.others, 2),
    );
}

fn ratio_row(label: &str, a: &Sample, b: &Sample) {
    println!(
        "| {label:<LABEL$} | {:>8} | {:>7} | {:>7} | {:>7} | {:>9} | {:>9} | {:>7} |",
        ratio(a.wps, b.wps),
        ratio(a.p50, b.p50),
        ratio(a.p99, b.p99),
        ratio(a.max, b.max),
        ratio(a.cpu_us, b.cpu_us),
        "",
        "",
    );
}

fn print_table(clients: usize, reps: usize, targets: &[Target], samples: &[Vec<Sample>]) {
    println!(
        "\n{clients} client{}, median of {reps} (ratios: tidegate's figure over etcd's)",
        if clients == 1 { "" } else { "s" }
    );
    println!(
        "| {:<LABEL$} | {:>8} | {:>7} | {:>7} | {:>7} | {:>9} | {:>9} | {:>7} |",
        "", "writes/s", "p50 ms", "p99 ms", "max ms", "CPU µs/w", "bench µs", "others"
    );
    println!(
        "|{:-<w$}|{:->10}|{:->9}|{:->9}|{:->9}|{:->11}|{:->11}|{:->9}|",
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
    // Targets come in pairs: tidegate, then etcd on the same topology.
    for (pair, s) in targets.chunks(2).zip(samples.chunks(2)) {
        let (a, b) = (medians(&s[0]), medians(&s[1]));
        row(&pair[0].label, &a);
        row(&pair[1].label, &b);
        ratio_row("  tidegate / etcd", &a, &b);
    }
}

fn targets(o: &Opts) -> Vec<Target> {
    let mut out = Vec::new();
    let t = |label: &str, system, group, leader_only| Target {
        label: label.to_string(),
        system,
        group,
        leader_only,
    };
    for (g, n) in o.nodes.iter().enumerate() {
        if *n == 1 {
            out.push(t("tidegate, 1 CP", System::Tidegate, g, false));
            out.push(t("etcd, 1 member", System::Etcd, g, false));
        } else {
            out.push(t(
                &format!("tidegate, {n} CPs, clients on every CP"),
                System::Tidegate,
                g,
                false,
            ));
            out.push(t(
                &format!("etcd, {n} members, clients on every member"),
                System::Etcd,
                g,
                false,
            ));
            out.push(t(
                &format!("tidegate, {n} CPs, clients on the leader"),
                System::Tidegate,
                g,
                true,
            ));
            out.push(t(
                &format!("etcd, {n} members, clients on the leader"),
                System::Etcd,
                g,
                true,
            ));
        }
    }
    out
}

fn run(o: &Opts, w: &mut World, b: &mut Bench) -> Result<(), String> {
    let targets = targets(o);
    // Warm-up: connections, the leader's replication streams, the first sled pages.
    for t in &targets {
        b.window(w, t, 1, o.warmup)
            .map_err(|e| format!("{} (warm-up): {e}", t.label))?;
    }
    // samples[clients index][target index] = one Sample per repetition.
    let mut samples = vec![vec![Vec::new(); targets.len()]; o.clients.len()];
    for rep in 0..o.reps {
        for (ci, &clients) in o.clients.iter().enumerate() {
            println!(
                "rep {}/{}, {clients} client(s), loadavg {}",
                rep + 1,
                o.reps,
                common::loadavg()
            );
            let mut order: Vec<usize> = (0..targets.len()).collect();
            order.rotate_left(rep % targets.len());
            for i in order {
                let t = &targets[i];
                let s = b
                    .window(w, t, clients, o.writes)
                    .map_err(|e| format!("{}, {clients} client(s): {e}", t.label))?;
                w.alive()?;
                println!(
                    "  {:<LABEL$} {:>6.0} writes/s  p50 {:>7} ms  p99 {:>7} ms  max {:>7} ms  {:>5.0} µs CPU/write  bench {:>4.0} µs/write  others {:.2} cores",
                    t.label,
                    s.wps,
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max),
                    s.cpu_us,
                    s.client_us,
                    s.others
                );
                samples[ci][i].push(s);
            }
        }
    }
    for (ci, &clients) in o.clients.iter().enumerate() {
        print_table(clients, o.reps, &targets, &samples[ci]);
    }
    Ok(())
}

fn main() {
    let o = opts();
    common::kill_children_on_signal();
    // The data on the same disk as the build (not a tmpfs), for both systems.
    let dir = tempfile::Builder::new()
        .prefix("write-path-bench")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    common::remove_on_signal(dir.path());
    println!("write path bench: {}", common::machine());
    println!(
        "{}; tidegate {}",
        common::etcd_version(),
        env!("CARGO_PKG_VERSION")
    );
    let mut w = World {
        cps: Vec::new(),
        etcd: Vec::new(),
    };
    for n in &o.nodes {
        w.cps.push(common::start_cps(
            &dir.path().join(format!("tidegate-{n}")),
            *n as u64,
        ));
        w.etcd.push(common::start_etcd(
            &dir.path().join(format!("etcd-{n}")),
            *n,
        ));
    }
    println!(
        "{} writes per window, clients {:?}, {} rep(s), order rotated each rep; CPU: utime+stime of every node of the topology",
        o.writes, o.clients, o.reps
    );
    let mut b = Bench {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        tck: clk_tck(),
        windows: 0,
        others: Vec::new(),
    };
    let result = run(&o, &mut w, &mut b);
    if !b.others.is_empty() {
        let lo = b.others.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = b.others.iter().cloned().fold(0.0, f64::max);
        println!(
            "\nother processes kept {lo:.2}–{hi:.2} of {} cores busy across the {} windows; loadavg at the end: {}",
            core_times().len(),
            b.others.len(),
            common::loadavg()
        );
    }
    drop(w);
    drop(dir);
    if let Err(e) = result {
        eprintln!("\n!!! write path FAILED: {e}");
        std::process::exit(1);
    }
}
