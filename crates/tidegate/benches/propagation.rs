//! Propagation: an admin write on a CP → applied on every one of N DPs, next to etcd's
//! put → N watchers measured in the same run on the same machine.
//!
//! Run: `cargo bench -p tidegate --bench propagation [-- --dps 10,100,1000 --writes 40]
//! [--cache-dir /dev/shm] [--smoke]`
//!
//! tidegate: one real CP process (`role = control_plane`, sled, fsync) and N sync clients
//! in this process running the real DP code (`tidegate_dp::DpSync`) over mutual TLS to
//! the CP's cluster port, each with its own connection. Up to 100 DPs each persist to a
//! real disk cache (fsync per apply, as a DP does); beyond that the clients keep the
//! config in memory only — a thousand fsyncs per write on one disk would measure the disk,
//! not the fan-out, and real DPs have a disk each. `--cache-dir DIR` puts those caches
//! under DIR instead (a tmpfs such as /dev/shm: the same writes and fsyncs, without the
//! one disk shared by every DP), to tell the disk from the fan-out. A write is timed from the moment its
//! request is sent to the moment the last DP published the new version.
//!
//! etcd (Debian's `etcd-server`, installed when missing): one member with its data on
//! disk, N watchers on one key through its HTTP gateway (`/v3/watch`), puts through
//! `/v3/kv/put`; timed from the put being sent to the last watcher receiving the event.
//!
//! Each size prints both systems' p50/p99/max and the ratio tidegate / etcd. `--smoke` is
//! 10 DPs and 10 writes, for CI: the same lines in seconds, no speed asserted; a failed
//! write, a DP that never applies, or a server that died fails the run.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{base64, percentile, ratio, Cps};
use serde_json::json;
use support::http;
use tidegate_dp::sync::{Connect, Current, DpSync, HelloInfo, SyncSettings};
use tidegate_dp::{Cache, ConfigStore, Delta, StoreFuture};
use tidegate_state::ConfigState;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// DPs beyond this many keep their config in memory only (see the module docs).
const DISK_DPS: usize = 100;

struct MemoryStore;

impl ConfigStore for MemoryStore {
    fn store(&self, _state: Arc<ConfigState>, _delta: Delta) -> StoreFuture {
        Box::pin(async { Ok(()) })
    }
}

/// p50 and p99 of the write → last DP (or watcher) latencies of one size.
struct Figures {
    last: String,
    each: String,
    p50: Duration,
    p99: Duration,
}

fn summary(lat: &mut [Duration]) -> String {
    lat.sort();
    format!(
        "p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        lat[lat.len() - 1]
    )
}

/// Where the disk-backed DPs keep their caches: the bench's temp dir (the machine's
/// disk), or `--cache-dir DIR` (e.g. /dev/shm, a tmpfs: the same code and fsyncs, without
/// the one disk that 100 DPs share here).
struct Args {
    dps: Vec<usize>,
    writes: usize,
    cache_dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut dps = vec![10, 100, 1000];
    let mut writes = 40;
    let mut cache_dir = None;
    let a: Vec<String> = std::env::args().collect();
    if a.iter().any(|x| x == "--smoke") {
        dps = vec![10];
        writes = 10;
    }
    for w in a.windows(2) {
        match w[0].as_str() {
            "--dps" => {
                dps = w[1]
                    .split(',')
                    .map(|n| n.parse().expect("--dps N,N"))
                    .collect()
            }
            "--writes" => writes = w[1].parse().expect("--writes N"),
            "--cache-dir" => cache_dir = Some(std::path::PathBuf::from(&w[1])),
            _ => {}
        }
    }
    Args {
        dps,
        writes,
        cache_dir,
    }
}

// === tidegate ===

/// N in-process DPs; returns their config watches once all hold the CP's version.
async fn start_dps(
    cp: &Cps,
    n: usize,
    dir: &std::path::Path,
    stop: watch::Receiver<bool>,
) -> Vec<watch::Receiver<Arc<Current>>> {
    let tls = cp.tls.clone();
    let connect: Connect = Arc::new(move |addr: String| {
        let tls = tls.clone();
        Box::pin(async move { tidegate_tls::channel(&addr, &tls).await })
    });
    let mut watches = Vec::with_capacity(n);
    for i in 0..n {
        let hello = HelloInfo {
            node_id: uuid::Uuid::from_u128(0xd9_0000_0000 + i as u128),
            hostname: format!("bench-dp-{i}"),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: tidegate_model::plugins::bundled()
                .iter()
                .map(|p| (p.name.to_string(), p.version.to_string()))
                .collect(),
            labels: BTreeMap::new(),
        };
        let settings = SyncSettings::new(vec![cp.cps[0].cluster.clone()], hello, i as u64);
        let initial = Current::local(ConfigState::new());
        let store: Arc<dyn ConfigStore> = if n <= DISK_DPS {
            let cache = Cache::open(&dir.join(format!("dp-{n}-{i}"))).unwrap();
            Arc::new(tidegate_dp::DiskStore::new(cache))
        } else {
            Arc::new(MemoryStore)
        };
        let sync = DpSync::with_store(settings, store, initial, connect.clone());
        watches.push(sync.config());
        let mut stop = stop.clone();
        tokio::spawn(sync.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    watches
}

async fn cp_version(admin: &str) -> u64 {
    let admin = admin.to_string();
    tokio::task::spawn_blocking(move || {
        http(&admin, "GET", "/clustering/control-planes", None, &[])
            .unwrap()
            .body["config_version"]
            .as_u64()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn wait_all(watches: &[watch::Receiver<Arc<Current>>], version: u64) -> Vec<Instant> {
    let waits = watches.iter().cloned().map(|mut w| {
        tokio::spawn(async move {
            w.wait_for(|c| c.from_cluster && c.state.version() >= version)
                .await
                .expect("the DP runs");
            Instant::now()
        })
    });
    let mut out = Vec::new();
    for h in waits.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

async fn bench_tidegate(cp: &Cps, n: usize, writes: usize, dir: &std::path::Path) -> Figures {
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Instant::now();
    let watches = start_dps(cp, n, dir, stop_rx).await;
    let base = cp_version(&cp.cps[0].admin).await;
    wait_all(&watches, base).await;
    let connected = connecting.elapsed();
    // For profilers attached to the CP and this process: the writes begin.
    eprintln!("propagation: {n} DPs connected, writes start");
    let mut last = Vec::with_capacity(writes);
    let mut every = Vec::with_capacity(writes * n);
    for w in 0..writes {
        let admin = cp.cps[0].admin.clone();
        let target = base + w as u64 + 1;
        let sent = Instant::now();
        let waiting = wait_all(&watches, target);
        let post = tokio::task::spawn_blocking(move || {
            let body = json!({"name": format!("prop-{n}-{w}"), "host": "example.com"});
            http(&admin, "POST", "/services", Some(&body), &[])
                .unwrap()
                .status
        });
        let (applied, status) = tokio::join!(waiting, post);
        assert_eq!(status.unwrap(), 201);
        let lat: Vec<Duration> = applied.iter().map(|t| *t - sent).collect();
        last.push(*lat.iter().max().unwrap());
        every.extend(lat);
    }
    eprintln!("propagation: {n} DPs, writes done");
    let _ = stop_tx.send(true);
    let last_line = summary(&mut last);
    Figures {
        last: format!(
            "write -> last of {n:>4} DPs  {last_line}  (all {n} connected and synced in {connected:.2?})"
        ),
        each: format!("write -> each DP            {}", summary(&mut every)),
        p50: percentile(&last, 0.5),
        p99: percentile(&last, 0.99),
    }
}

// === etcd ===

const B64_KEY: &str = "cHJvcA=="; // "prop"

/// One watcher: an HTTP/1.1 streaming POST to /v3/watch; sends the time of every event.
async fn etcd_watcher(
    addr: String,
    events: tokio::sync::mpsc::UnboundedSender<Instant>,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) {
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let body = json!({"create_request": {"key": B64_KEY}}).to_string();
    let req = format!(
        "POST /v3/watch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    // Headers.
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    // Chunked: size line, then the chunk (one JSON message per chunk, or a part).
    let mut pending = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
            continue;
        };
        if size == 0 {
            return;
        }
        let mut buf = vec![0; size + 2];
        if r.read_exact(&mut buf).await.is_err() {
            return;
        }
        pending.push_str(&String::from_utf8_lossy(&buf[..size]));
        while let Some(end) = pending.find('\n') {
            let msg: String = pending.drain(..=end).collect();
            if msg.contains("\"created\":true") {
                let _ = ready.send(());
            }
            if msg.contains("\"events\"") {
                let _ = events.send(Instant::now());
            }
        }
    }
}

async fn bench_etcd(addr: &str, n: usize, writes: usize) -> Figures {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        receivers.push(rx);
        tokio::spawn(etcd_watcher(addr.to_string(), tx, ready_tx.clone()));
    }
    for _ in 0..n {
        ready_rx.recv().await.expect("every watcher is created");
    }
    let mut last = Vec::with_capacity(writes);
    let mut every = Vec::with_capacity(writes * n);
    for w in 0..writes {
        let addr = addr.to_string();
        let sent = Instant::now();
        let put = tokio::task::spawn_blocking(move || {
            let value = base64(format!("value-{w}").as_bytes());
            let body = json!({"key": B64_KEY, "value": value});
            http(&addr, "POST", "/v3/kv/put", Some(&body), &[])
                .unwrap()
                .status
        });
        let mut lat = Vec::with_capacity(n);
        for rx in receivers.iter_mut() {
            let t = rx.recv().await.expect("the watcher runs");
            lat.push(t - sent);
        }
        assert_eq!(put.await.unwrap(), 200);
        last.push(*lat.iter().max().unwrap());
        every.extend(lat);
    }
    let last_line = summary(&mut last);
    Figures {
        last: format!("put   -> last of {n:>4} watchers {last_line}"),
        each: format!("put   -> each watcher        {}", summary(&mut every)),
        p50: percentile(&last, 0.5),
        p99: percentile(&last, 0.99),
    }
}

fn main() {
    let Args {
        dps,
        writes,
        cache_dir,
    } = args();
    common::kill_children_on_signal();
    let dir = tempfile::tempdir().unwrap();
    common::remove_on_signal(dir.path());
    let caches = match &cache_dir {
        Some(d) => tempfile::tempdir_in(d).expect("a temp dir in --cache-dir"),
        None => tempfile::tempdir_in(dir.path()).unwrap(),
    };
    common::remove_on_signal(caches.path());
    let mut cp = common::start_cps(&dir.path().join("tidegate"), 1);
    let mut etcd = common::start_etcd(&dir.path().join("etcd"), 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("propagation bench: {}", common::machine());
    println!("propagation, {writes} writes per size (tidegate: 1 CP process, in-process DP sync clients over mTLS; etcd: 1 member, HTTP gateway watchers)");
    println!(
        "DP caches (up to {DISK_DPS} DPs; beyond, in memory): {}",
        match &cache_dir {
            Some(d) => format!("under --cache-dir {} (not the bench's disk)", d.display()),
            None => "on this machine's disk (the bench's temp dir), fsync per apply".into(),
        }
    );
    let mut rows = Vec::new();
    for n in dps {
        let t = rt.block_on(bench_tidegate(&cp, n, writes, caches.path()));
        println!("tidegate  {}\n          {}", t.last, t.each);
        let e = rt.block_on(bench_etcd(&etcd.members[0].client, n, writes));
        println!("etcd      {}\n          {}", e.last, e.each);
        let r = |a: Duration, b: Duration| ratio(a.as_secs_f64(), b.as_secs_f64());
        println!(
            "tidegate / etcd (to the last one): p50 {}  p99 {}",
            r(t.p50, e.p50),
            r(t.p99, e.p99)
        );
        rows.push((n, t, e));
        if let Err(e) = cp.alive().and_then(|_| etcd.alive()) {
            panic!("{e}");
        }
    }
    println!("\n| N | tidegate write → last DP p50 / p99 | etcd put → last watcher p50 / p99 | ratio (p99) |");
    println!("|---|---|---|---|");
    for (n, t, e) in rows {
        println!(
            "| {n} | {:.1?} / {:.1?} | {:.1?} / {:.1?} | {} |",
            t.p50,
            t.p99,
            e.p50,
            e.p99,
            ratio(t.p99.as_secs_f64(), e.p99.as_secs_f64())
        );
    }
    println!("loadavg at the end: {}", common::loadavg());
    drop(rt);
    drop(caches);
}
