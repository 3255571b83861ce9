//! Propagation: an admin write on a CP → applied on every one of N DPs, next to etcd's
//! put → N watchers measured in the same run on the same machine.
//!
//! Run: `cargo bench -p tidegate --bench propagation [-- --dps 10,100,1000 --writes 40]`
//!
//! tidegate: one real CP process (`role = control_plane`, sled, fsync) and N sync clients
//! in this process running the real DP code (`tidegate_dp::DpSync`) over mutual TLS to
//! the CP's cluster port, each with its own connection. Up to 100 DPs each persist to a
//! real disk cache (fsync per apply, as a DP does); beyond that the clients keep the
//! config in memory only — a thousand fsyncs per write on one disk would measure the disk,
//! not the fan-out, and real DPs have a disk each. A write is timed from the moment its
//! request is sent to the moment the last DP published the new version.
//!
//! etcd (Debian's `etcd-server`, installed when missing): one member with its data on
//! disk, N watchers on one key through its HTTP gateway (`/v3/watch`), puts through
//! `/v3/kv/put`; timed from the put being sent to the last watcher receiving the event.

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{free_port, http, wait_for};
use tidegate_dp::sync::{Connect, Current, DpSync, HelloInfo, SyncSettings};
use tidegate_dp::{Cache, ConfigStore, StoreFuture};
use tidegate_state::ConfigState;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// DPs beyond this many keep their config in memory only (see the module docs).
const DISK_DPS: usize = 100;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct MemoryStore;

impl ConfigStore for MemoryStore {
    fn store(&self, _state: Arc<ConfigState>) -> StoreFuture {
        Box::pin(async { Ok(()) })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
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

fn args() -> (Vec<usize>, usize) {
    let mut dps = vec![10, 100, 1000];
    let mut writes = 40;
    let a: Vec<String> = std::env::args().collect();
    for w in a.windows(2) {
        match w[0].as_str() {
            "--dps" => {
                dps = w[1]
                    .split(',')
                    .map(|n| n.parse().expect("--dps N,N"))
                    .collect()
            }
            "--writes" => writes = w[1].parse().expect("--writes N"),
            _ => {}
        }
    }
    (dps, writes)
}

// === tidegate ===

struct Cp {
    _proc: Proc,
    admin: String,
    cluster: String,
    tls: tidegate_tls::ClusterTls,
}

fn start_cp(dir: &std::path::Path) -> Cp {
    let pair = tidegate_tls::gen_cert(unix_now(), 30).unwrap();
    let (cert, key) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let cluster = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("cp.log")).unwrap();
    let child = Command::new(support::binary())
        .args(["start", "-p"])
        .arg(dir.join("cp"))
        .env("TIDEGATE_ROLE", "control_plane")
        .env("TIDEGATE_ADMIN_LISTEN", &admin)
        .env("TIDEGATE_CLUSTER_LISTEN", &cluster)
        .env("TIDEGATE_RAFT_LISTEN", &raft)
        .env("TIDEGATE_CLUSTER_CERT", &cert)
        .env("TIDEGATE_CLUSTER_CERT_KEY", &key)
        .env("TIDEGATE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let cp = Cp {
        _proc: Proc(child),
        admin,
        cluster,
        tls: tidegate_tls::ClusterTls::from_pem(
            "shared",
            &pair.cert_pem,
            &pair.key_pem,
            None,
            None,
        )
        .unwrap(),
    };
    wait_for("the CP's Admin API", Duration::from_secs(30), || {
        http(&cp.admin, "GET", "/status", None, &[]).filter(|r| r.status == 200)
    });
    cp
}

/// N in-process DPs; returns their config watches once all hold the CP's version.
async fn start_dps(
    cp: &Cp,
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
        let settings = SyncSettings::new(vec![cp.cluster.clone()], hello, i as u64);
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

async fn bench_tidegate(
    cp: &Cp,
    n: usize,
    writes: usize,
    dir: &std::path::Path,
) -> (String, String) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Instant::now();
    let watches = start_dps(cp, n, dir, stop_rx).await;
    let base = cp_version(&cp.admin).await;
    wait_all(&watches, base).await;
    let connected = connecting.elapsed();
    let mut last = Vec::with_capacity(writes);
    let mut every = Vec::with_capacity(writes * n);
    for w in 0..writes {
        let admin = cp.admin.clone();
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
    let _ = stop_tx.send(true);
    (
        format!(
            "write -> last of {n:>4} DPs  {}  (all {n} connected and synced in {connected:.2?})",
            summary(&mut last)
        ),
        format!("write -> each DP            {}", summary(&mut every)),
    )
}

// === etcd ===

fn etcd_binary() -> Option<&'static str> {
    if Command::new("etcd").arg("--version").output().is_err() {
        let _ = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server",
            ])
            .status();
    }
    Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "etcd")
}

fn start_etcd(dir: &std::path::Path) -> Option<(Proc, String)> {
    let bin = etcd_binary()?;
    let client = format!("127.0.0.1:{}", free_port());
    let peer = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .arg(format!("--listen-client-urls=http://{client}"))
        .arg(format!("--advertise-client-urls=http://{client}"))
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .arg(format!("--initial-cluster=default=http://{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let proc = Proc(child);
    wait_for("etcd", Duration::from_secs(30), || {
        http(&client, "GET", "/health", None, &[]).filter(|r| r.status == 200)
    });
    Some((proc, client))
}

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

async fn bench_etcd(addr: &str, n: usize, writes: usize) -> (String, String) {
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
            let value = base64_encode(format!("value-{w}").as_bytes());
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
    (
        format!("put   -> last of {n:>4} watchers {}", summary(&mut last)),
        format!("put   -> each watcher        {}", summary(&mut every)),
    )
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn main() {
    let (dps, writes) = args();
    let dir = tempfile::tempdir().unwrap();
    let cp = start_cp(dir.path());
    let etcd = start_etcd(dir.path());
    if etcd.is_none() {
        println!("etcd is not available (apt-get install etcd-server): measuring tidegate only");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("propagation, {writes} writes per size (tidegate: 1 CP process, in-process DP sync clients over mTLS; etcd: 1 member, HTTP gateway watchers)");
    for n in dps {
        let (a, b) = rt.block_on(bench_tidegate(&cp, n, writes, dir.path()));
        println!("tidegate  {a}\n          {b}");
        if let Some((_, addr)) = &etcd {
            let (a, b) = rt.block_on(bench_etcd(addr, n, writes));
            println!("etcd      {a}\n          {b}");
        }
    }
}
