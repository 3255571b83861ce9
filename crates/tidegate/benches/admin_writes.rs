//! Admin write latency and throughput on 1 and 3 control planes: real `tidegate`
//! processes, real sled stores, mutual-TLS Raft, HTTP/1.1 clients on loopback.
//!
//! Run: `cargo bench -p tidegate --bench admin_writes`
//!
//! Prints, per topology: one client's latency (p50, p99) and the throughput of 16
//! concurrent clients spread over every CP (followers forward to the leader).

// A benchmark measures wall time by definition.
#![allow(clippy::disallowed_methods)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{http, Cluster, Node};

const SERIAL_WRITES: usize = 300;
const CONCURRENT_CLIENTS: usize = 16;
const CONCURRENT_WRITES_PER_CLIENT: usize = 150;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn measure(label: &str, admins: Vec<String>) {
    // Names allow no spaces: "1 CP" becomes "1-CP".
    let tag = label.replace(' ', "-");
    // One client, one write at a time: the latency of the full write path.
    let mut lat = Vec::with_capacity(SERIAL_WRITES);
    for i in 0..SERIAL_WRITES {
        let addr = &admins[i % admins.len()];
        let body = json!({"name": format!("{tag}-serial-{i}"), "host": "example.com"});
        let t = Instant::now();
        let r = http(addr, "POST", "/services", Some(&body), &[]).expect("the CP answers");
        lat.push(t.elapsed());
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    lat.sort();
    println!(
        "{label}: 1 client, {SERIAL_WRITES} writes: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    // Many clients at once, spread over every CP.
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|c| {
            let addr = admins[c % admins.len()].clone();
            let ok = ok.clone();
            let tag = tag.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(CONCURRENT_WRITES_PER_CLIENT);
                for i in 0..CONCURRENT_WRITES_PER_CLIENT {
                    let body = json!({"name": format!("{tag}-c{c}-{i}"), "host": "example.com"});
                    let t = Instant::now();
                    if let Some(r) = http(&addr, "POST", "/services", Some(&body), &[]) {
                        if r.status == 201 {
                            ok.fetch_add(1, Ordering::Relaxed);
                            lat.push(t.elapsed());
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    lat.sort();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{label}: {CONCURRENT_CLIENTS} clients, {n} writes in {elapsed:.2?}: {:.0} writes/s, p50 {:.2?}, p99 {:.2?}",
        n as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", support::free_port());
    let single = Node::spawn(
        1,
        dir.path().join("single"),
        vec![],
        admin.clone(),
        String::new(),
    );
    support::wait_for("the single node", Duration::from_secs(30), || {
        single.get("/services?size=1").filter(|r| r.status == 200)
    });
    measure("1 CP", vec![admin]);
    drop(single);

    let cluster = Cluster::start(3);
    cluster.wait_leader(Duration::from_secs(30));
    let admins = cluster.nodes.iter().map(|n| n.admin.clone()).collect();
    measure("3 CPs", admins);
}
