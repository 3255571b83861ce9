//! The control plane as real processes: 3-CP clusters over mutual-TLS Raft, writes through
//! every node, kill -9 of the leader mid-stream, quorum loss, membership changes, and
//! crash-restarts that must not lose an acknowledged write.

// End-to-end tests run real processes against the real clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{http, service_names, wait_for, Cluster, Node};

const ELECTION: Duration = Duration::from_secs(30);

fn create_service(node: &Node, name: &str) -> Option<u16> {
    node.post(
        "/services",
        &json!({"name": name, "host": "upstream.example"}),
    )
    .map(|r| r.status)
}

#[test]
fn writes_through_every_cp_are_read_on_every_cp() {
    let c = Cluster::start(3);
    c.wait_leader(ELECTION);
    for n in &c.nodes {
        let name = format!("svc-from-cp{}", n.id);
        let r = n
            .post("/services", &json!({"name": name, "host": "example.com"}))
            .expect("the node answers");
        assert_eq!(r.status, 201, "cp{}: {:?}\n{}", n.id, r.body, c.logs());
        // Read-your-writes on the node that took the write, immediately.
        let got = n.get(&format!("/services/{name}")).unwrap();
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert_eq!(got.body["host"], json!("example.com"));
    }
    for n in &c.nodes {
        let names: BTreeSet<String> = wait_for("all three services everywhere", ELECTION, || {
            let names: BTreeSet<String> = service_names(n)?.into_iter().collect();
            (names.len() == 3).then_some(names)
        });
        assert_eq!(
            names,
            BTreeSet::from([
                "svc-from-cp1".into(),
                "svc-from-cp2".into(),
                "svc-from-cp3".into()
            ])
        );
    }
    // Kong's error bodies travel back through forwarding unchanged.
    let follower = c
        .nodes
        .iter()
        .find(|n| n.id != c.wait_leader(ELECTION))
        .unwrap();
    let dup = follower
        .post(
            "/services",
            &json!({"name": "svc-from-cp1", "host": "x.com"}),
        )
        .unwrap();
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body["code"], json!(5));
}

#[test]
fn a_retried_request_id_applies_once_across_nodes() {
    let c = Cluster::start(3);
    c.wait_leader(ELECTION);
    let rid = "6a0b2c1d-0000-4000-8000-00000000abcd";
    let body = json!({"name": "once", "host": "example.com"});
    let mut bodies = Vec::new();
    for n in &c.nodes {
        let r = http(
            &n.admin,
            "POST",
            "/services",
            Some(&body),
            &[("X-Request-Id", rid)],
        )
        .unwrap();
        assert_eq!(r.status, 201, "{:?}", r.body);
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let status = c.nodes[0].get("/clustering/control-planes").unwrap();
    assert_eq!(status.body["config_version"], json!(1), "{:?}", status.body);
    for n in &c.nodes {
        let names = wait_for("the service", ELECTION, || {
            service_names(n).filter(|v| !v.is_empty())
        });
        assert_eq!(names, vec!["once".to_string()]);
    }
}

#[test]
fn killing_the_leader_mid_stream_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(ELECTION);
    let admins: Vec<(u64, String)> = c.nodes.iter().map(|n| (n.id, n.admin.clone())).collect();

    // (name, sent, acknowledged)
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant, Instant)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // One client per CP, as behind a TCP proxy: a write stuck on one node (waiting out
    // an election) does not hold back the others.
    let writers: Vec<_> = admins
        .iter()
        .map(|(id, addr)| {
            let acked = acked.clone();
            let stop = stop.clone();
            let addr = addr.clone();
            let id = *id;
            std::thread::spawn(move || {
                // Bounded: at most 3 000 attempts per client, and it stops when told.
                for i in 0..3_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("stream-{id}-{i}");
                    let body = json!({"name": name, "host": "example.com"});
                    let sent = Instant::now();
                    if let Some(r) = http(&addr, "POST", "/services", Some(&body), &[]) {
                        if r.status == 201 {
                            acked.lock().unwrap().push((name, sent, Instant::now()));
                        }
                    }
                }
            })
        })
        .collect();
    wait_for("some acknowledged writes", ELECTION, || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    });
    let killed_at = Instant::now();
    c.node_mut(leader).kill9();
    // Writes succeed again within 5 s of losing the leader: the first write that was
    // *sent* after the kill and acknowledged.
    let recovered = wait_for("a write sent after the kill to succeed", ELECTION, || {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, sent, _)| *sent > killed_at)
            .map(|(_, _, acked)| *acked)
            .min()
    });
    let gap = recovered - killed_at;
    eprintln!("writes resumed {gap:?} after the leader was killed");
    assert!(
        gap < Duration::from_secs(5),
        "writes resumed only after {gap:?}\n{}",
        c.logs()
    );
    wait_for("more writes after the new election", ELECTION, || {
        (acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, sent, _)| *sent > killed_at)
            .count()
            >= 20)
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let acked: BTreeSet<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _, _)| n.clone())
        .collect();
    for n in c.nodes.iter().filter(|n| n.running()) {
        let names: BTreeSet<String> = wait_for("survivors to apply everything", ELECTION, || {
            let have: BTreeSet<String> = service_names(n)?.into_iter().collect();
            acked.is_subset(&have).then_some(have)
        });
        assert!(acked.is_subset(&names));
    }

    // The killed CP comes back from its own disk and catches up.
    c.node_mut(leader).start();
    let back = c.node(leader);
    wait_for("the restarted CP to catch up", ELECTION, || {
        let have: BTreeSet<String> = service_names(back)?.into_iter().collect();
        acked.is_subset(&have).then_some(())
    });
}

#[test]
fn losing_the_quorum_fails_writes_fast_and_keeps_reads() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(ELECTION);
    assert_eq!(create_service(c.node(leader), "before"), Some(201));
    let others: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    let survivor = others[0];
    wait_for("the survivor to have the write", ELECTION, || {
        service_names(c.node(survivor)).filter(|v| v.contains(&"before".to_string()))
    });
    c.node_mut(leader).terminate();
    c.node_mut(others[1]).terminate();

    let n = c.node(survivor);
    for i in 0..3 {
        let started = Instant::now();
        let r = n
            .post(
                "/services",
                &json!({"name": format!("after-{i}"), "host": "x.com"}),
            )
            .expect("the survivor answers");
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("majority"),
            "{:?}",
            r.body
        );
        assert!(
            took < Duration::from_secs(5),
            "a write without quorum took {took:?}"
        );
    }
    let read = n.get("/services/before").unwrap();
    assert_eq!(read.status, 200);
    assert_eq!(service_names(n).unwrap(), vec!["before".to_string()]);
}

#[test]
fn a_cp_is_added_and_removed_at_runtime() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(ELECTION);
    assert_eq!(create_service(c.node(leader), "existing"), Some(201));

    let raft = format!("127.0.0.1:{}", support::free_port());
    let peers = format!("{},4@{raft}", c.peers());
    c.add_node(4, raft.clone(), &peers);
    let added = http(
        &c.node(leader).admin,
        "POST",
        "/clustering/control-planes",
        Some(&json!({"id": 4, "address": raft})),
        &[],
    )
    .unwrap();
    assert_eq!(added.status, 201, "{:?}\n{}", added.body, c.logs());
    let members = added.body["members"].as_array().unwrap();
    assert!(
        members
            .iter()
            .any(|m| m["id"] == json!(4) && m["kind"] == json!("voter")),
        "{members:?}"
    );

    // The new CP has the config that existed before it joined.
    wait_for("the new CP to catch up", ELECTION, || {
        service_names(c.node(4)).filter(|v| v.contains(&"existing".to_string()))
    });

    let removed = http(
        &c.node(leader).admin,
        "DELETE",
        "/clustering/control-planes/4",
        None,
        &[],
    )
    .unwrap();
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert!(!removed.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == json!(4)));

    // Asking a follower names the leader instead of acting.
    let follower = c
        .nodes
        .iter()
        .find(|n| n.id != leader && n.id != 4)
        .unwrap();
    let refused = http(
        &follower.admin,
        "DELETE",
        "/clustering/control-planes/3",
        None,
        &[],
    )
    .unwrap();
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("leader"));
}

/// A single node killed with SIGKILL in the middle of a write stream, over and over:
/// every write it acknowledged is there after each restart.
#[test]
fn kill9_during_writes_never_loses_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", support::free_port());
    let mut node = Node::spawn(
        1,
        dir.path().join("node"),
        vec![("TIDEGATE_LOG_LEVEL".into(), "info".into())],
        admin.clone(),
        String::new(),
    );
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut n = 0u64;
    for round in 0..6 {
        wait_for("the node to serve", ELECTION, || {
            node.get("/services?size=1").filter(|r| r.status == 200)
        });
        let have: BTreeSet<String> = service_names(&node).unwrap().into_iter().collect();
        assert!(
            acked.is_subset(&have),
            "round {round}: lost {:?}",
            acked.difference(&have).collect::<Vec<_>>()
        );

        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let stop = stop.clone();
            let got = got.clone();
            let admin = admin.clone();
            let start = n;
            std::thread::spawn(move || {
                for i in start..start + 2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w-{i}");
                    match http(
                        &admin,
                        "POST",
                        "/services",
                        Some(&json!({"name": name, "host": "h.com"})),
                        &[],
                    ) {
                        Some(r) if r.status == 201 => got.lock().unwrap().push(name),
                        Some(_) => {}
                        None => break,
                    }
                }
            })
        };
        wait_for("writes in flight", ELECTION, || {
            (got.lock().unwrap().len() >= 10 + round).then_some(())
        });
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let got = got.lock().unwrap();
        n += 2_000;
        acked.extend(got.iter().cloned());
        node.start();
    }
    wait_for("the node to serve", ELECTION, || {
        node.get("/services?size=1").filter(|r| r.status == 200)
    });
    let have: BTreeSet<String> = service_names(&node).unwrap().into_iter().collect();
    assert!(
        acked.is_subset(&have),
        "lost {:?}",
        acked.difference(&have).collect::<Vec<_>>()
    );
    assert!(
        acked.len() >= 60,
        "only {} writes were acknowledged",
        acked.len()
    );

    // SIGTERM drains and exits cleanly.
    let status = node.terminate().unwrap();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        node.log_text()
    );
}
