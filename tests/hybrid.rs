//! Hybrid mode end to end: real CP and DP processes over mutual TLS on loopback.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{data_planes, dp_status, wait_for, Cluster, Node};

const LONG: Duration = Duration::from_secs(60);

fn service(n: usize) -> Value {
    json!({"name": format!("svc-{n}"), "url": format!("http://upstream-{n}.test:8080/p")})
}

fn create(cp: &Node, path: &str, body: Value) -> Value {
    let r = cp.post(path, &body).expect("the CP answers");
    assert!(r.status == 201, "POST {path}: {} {}", r.status, r.body);
    r.body
}

fn delete(cp: &Node, path: &str) {
    let r = support::http(&cp.admin, "DELETE", path, None, &[]).expect("the CP answers");
    assert_eq!(r.status, 204, "DELETE {path}: {}", r.body);
}

/// Waits until the DP serves `hash`.
/// On a timeout it shows what the DP last reported and its log, so that a failure on a
/// loaded CI machine says why.
fn wait_dp_hash(dp: &Node, hash: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = dp_status(dp);
        if seen.as_ref().is_some_and(|(h, _)| h == hash) {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for dp{} to serve {hash}; last status: {seen:?}; log:\n{}",
                dp.id,
                dp.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `cp` lists every DP in `ids` as connected with `hash`.
fn wait_listed(cp: &Node, ids: &BTreeSet<String>, hash: &str, timeout: Duration) {
    wait_for(
        &format!("cp{} to list {} DPs at {hash}", cp.id, ids.len()),
        timeout,
        || {
            let rows = data_planes(cp)?;
            let good: BTreeSet<String> = rows
                .iter()
                .filter(|r| {
                    r["config_hash"] == hash
                        && r["connected"] == true
                        && r["sync_status"] == "normal"
                })
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            ids.is_subset(&good).then_some(())
        },
    );
}

fn node_id(dp: &Node) -> String {
    std::fs::read_to_string(dp.prefix.join("node_id"))
        .unwrap()
        .trim()
        .to_string()
}

/// Three CPs, ten DPs spread over them: a write on any CP reaches every DP, and every
/// CP lists every DP with the new hash. Prints the write → last-DP-applied latency.
#[test]
fn writes_reach_every_dp_and_every_cp_lists_them() {
    let mut c = Cluster::start(3);
    c.wait_leader(LONG);
    for n in 1..=10u64 {
        // DPs start on different CPs (and fail over along the list).
        let order = match n % 3 {
            0 => [1, 2, 3],
            1 => [2, 3, 1],
            _ => [3, 1, 2],
        };
        c.start_dp(n, &order, &[]);
    }
    let initial = c.cp_hash(1).unwrap();
    for dp in &c.dps {
        wait_dp_hash(dp, &initial, LONG);
    }
    let ids: BTreeSet<String> = c.dps.iter().map(node_id).collect();
    let mut latencies = Vec::new();
    for round in 0..5usize {
        let cp = c.node(1 + (round as u64 % 3));
        let started = Instant::now();
        create(cp, "/services", service(round));
        let hash = c.cp_hash(cp.id).unwrap();
        for dp in &c.dps {
            wait_dp_hash(dp, &hash, LONG);
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "admin write -> last of 10 DPs serving it: min {:?}, median {:?}, max {:?} (3 CPs, 5 writes)",
        latencies[0], latencies[2], latencies[4]
    );
    let hash = c.cp_hash(1).unwrap();
    for id in 1..=3 {
        assert_eq!(c.cp_hash(id).unwrap(), hash);
        wait_listed(c.node(id), &ids, &hash, LONG);
    }
    // Kong's fields are all there.
    let rows = data_planes(c.node(2)).unwrap();
    assert_eq!(rows.len(), 10);
    for r in &rows {
        for field in [
            "id",
            "ip",
            "hostname",
            "version",
            "sync_status",
            "config_hash",
            "last_seen",
            "labels",
            "cert_details",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert_eq!(r["ip"], "127.0.0.1");
        assert!(r["cert_details"]["expiry_timestamp"].as_i64().unwrap() > 0);
    }
    // A DP that stops is shown disconnected on every CP.
    let gone = node_id(c.dp(4));
    c.dp_mut(4).terminate();
    for id in 1..=3 {
        wait_for("the stopped DP to show disconnected", LONG, || {
            data_planes(c.node(id))?
                .iter()
                .any(|r| r["id"] == gone.as_str() && r["connected"] == false)
                .then_some(())
        });
    }
}

/// DPs keep serving with every CP down, restart from their cache, provision a new DP
/// from an exported cache, and catch up by themselves when the CPs return.
#[test]
fn dps_live_without_cps_and_catch_up_after() {
    let mut c = Cluster::start(3);
    c.wait_leader(LONG);
    c.start_dp(1, &[1, 2, 3], &[]);
    c.start_dp(2, &[2, 3, 1], &[]);
    for n in 0..3 {
        create(c.node(1), "/services", service(n));
    }
    let hash = c.cp_hash(1).unwrap();
    wait_dp_hash(c.dp(1), &hash, LONG);
    wait_dp_hash(c.dp(2), &hash, LONG);

    for id in 1..=3 {
        c.node_mut(id).kill9();
    }
    // Still serving, and still saying so after a restart with no CP in reach.
    assert_eq!(dp_status(c.dp(1)).unwrap().0, hash);
    c.dp_mut(1).terminate().expect("dp1 was running");
    c.dp_mut(1).start();
    wait_dp_hash(c.dp(1), &hash, LONG);
    assert!(c.dp(1).log_text().contains("serving the cached config"));

    // Provision dp3 from dp2's exported cache while the CPs are down.
    let export = c.dir.path().join("dp2-export.cache");
    let out = std::process::Command::new(support::binary())
        .args(["config", "export-cache"])
        .arg(&export)
        .arg("-p")
        .arg(&c.dp(2).prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "export-cache: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&hash));
    let dp3_prefix = c.dir.path().join("dp3");
    let out = std::process::Command::new(support::binary())
        .args(["config", "import-cache"])
        .arg(&export)
        .arg("-p")
        .arg(&dp3_prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "import-cache: {out:?}");
    c.start_dp(3, &[3, 1, 2], &[]);
    wait_dp_hash(c.dp(3), &hash, LONG);
    let ready = c.dp(3).get("/status/ready").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);

    // CPs back: DPs reconnect and follow new writes.
    for id in 1..=3 {
        c.node_mut(id).start();
    }
    c.wait_leader(LONG);
    create(c.node(2), "/services", service(99));
    let new_hash = c.cp_hash(2).unwrap();
    assert_ne!(new_hash, hash);
    for n in 1..=3 {
        wait_dp_hash(c.dp(n), &new_hash, LONG);
    }
}

/// The version check at connection and the plugin check at every push, end to end.
#[test]
fn incompatible_dps_are_held_back_with_the_reason_shown() {
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    c.start_dp(1, &[1], &[]);
    // Another major: refused at Hello.
    c.start_dp(2, &[1], &[("TIDEGATE_DEBUG_DP_VERSION", "1.0.0")]);
    // No rate-limiting installed.
    c.start_dp(3, &[1], &[("TIDEGATE_PLUGINS", "cors,key-auth")]);
    // cors in another minor.
    c.start_dp(
        4,
        &[1],
        &[("TIDEGATE_DEBUG_DP_PLUGIN_VERSIONS", "cors=3.8.0")],
    );
    let base = c.cp_hash(1).unwrap();
    for n in [1, 3, 4] {
        wait_dp_hash(c.dp(n), &base, LONG);
    }
    let cp = c.node(1);
    let dp2 = node_id(c.dp(2));
    wait_for("dp2 refused as kong_version_incompatible", LONG, || {
        data_planes(cp)?
            .iter()
            .any(|r| r["id"] == dp2.as_str() && r["sync_status"] == "kong_version_incompatible")
            .then_some(())
    });
    assert!(cp
        .log_text()
        .contains("unable to send updated configuration to DP node with hostname: "));
    assert!(cp
        .log_text()
        .contains("reason: version mismatches, CP version: 0.1 DP version: 1.0"));
    let st = c.dp(2).get("/status").unwrap();
    assert_eq!(
        st.body["control_plane"]["rejected"]["sync_status"],
        "kong_version_incompatible"
    );

    // A plugin dp3 lacks: dp3 holds its old config, the others advance.
    let plugin = create(
        cp,
        "/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 10, "policy": "local"}}),
    );
    let with_rl = c.cp_hash(1).unwrap();
    wait_dp_hash(c.dp(1), &with_rl, LONG);
    wait_dp_hash(c.dp(4), &with_rl, LONG);
    let dp3 = node_id(c.dp(3));
    wait_for("dp3 plugin_set_incompatible", LONG, || {
        data_planes(cp)?
            .iter()
            .any(|r| r["id"] == dp3.as_str() && r["sync_status"] == "plugin_set_incompatible")
            .then_some(())
    });
    assert!(cp.log_text().contains("reason: CP and DP does not have same set of plugins installed or their versions might differ"));
    assert_eq!(dp_status(c.dp(3)).unwrap().0, base);

    // The same picture in /metrics on both sides.
    let cp_metrics = wait_for("the CP's metrics to count the held DP", LONG, || {
        let text = support::get_text(&cp.status, "/metrics")?;
        (support::metric(
            &text,
            "tidegate_cp_data_planes{sync_status=\"plugin_set_incompatible\",connected=\"true\"}",
        ) == Some(1.0))
        .then_some(text)
    });
    assert_eq!(
        support::metric(&cp_metrics, "tidegate_raft_leader"),
        Some(1.0)
    );
    let dp2_metrics = support::get_text(&c.dp(2).admin, "/metrics").unwrap();
    assert_eq!(
        support::metric(
            &dp2_metrics,
            "tidegate_dp_rejected{sync_status=\"kong_version_incompatible\"}"
        ),
        Some(1.0)
    );
    let dp1_metrics = support::get_text(&c.dp(1).admin, "/metrics").unwrap();
    assert_eq!(
        support::metric(&dp1_metrics, "tidegate_dp_control_plane_connected"),
        Some(1.0)
    );
    println!("--- CP /metrics ---\n{cp_metrics}--- DP /metrics ---\n{dp1_metrics}");

    // cors in use: dp4 (cors 3.8) is held, dp3 (cors 3.9) is not — but dp3 still lacks
    // rate-limiting. Remove rate-limiting: dp3 catches up; dp4 stays held by cors.
    create(cp, "/plugins", json!({"name": "cors"}));
    let dp4 = node_id(c.dp(4));
    wait_for("dp4 plugin_version_incompatible", LONG, || {
        data_planes(cp)?
            .iter()
            .any(|r| r["id"] == dp4.as_str() && r["sync_status"] == "plugin_version_incompatible")
            .then_some(())
    });
    delete(cp, &format!("/plugins/{}", plugin["id"].as_str().unwrap()));
    let final_hash = c.cp_hash(1).unwrap();
    wait_dp_hash(c.dp(3), &final_hash, LONG);
    wait_dp_hash(c.dp(1), &final_hash, LONG);
    assert_eq!(dp_status(c.dp(4)).unwrap().0, with_rl);
}

/// Large configs: one change costs one Event on the wire; a DP away longer than the
/// Event tail gets a snapshot.
#[test]
fn one_change_sends_one_event_and_a_long_absence_a_snapshot() {
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    let big = |prefix: &str| {
        let services: Vec<Value> = (0..5_000)
            .map(|n| json!({"name": format!("{prefix}-{n}"), "url": "http://u.test", "routes": [{"name": format!("{prefix}-r{n}"), "paths": [format!("/{prefix}/{n}")]}]}))
            .collect();
        json!({"_format_version": "3.0", "services": services})
    };
    let r = support::http(&c.node(1).admin, "POST", "/config", Some(&big("a")), &[]).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    c.start_dp(1, &[1], &[]);
    let hash = c.cp_hash(1).unwrap();
    wait_dp_hash(c.dp(1), &hash, LONG);
    let id = node_id(c.dp(1));
    // (snapshots, events, bytes) pushed over the DP's current stream, once its row
    // shows `hash`.
    let sent = |c: &Cluster, hash: &str| -> Option<(u64, u64, u64)> {
        let rows = data_planes(c.node(1))?;
        let r = rows
            .iter()
            .find(|r| r["id"] == id.as_str() && r["config_hash"] == hash)?;
        let s = &r["sent"];
        Some((
            s["snapshots"].as_u64()?,
            s["events"].as_u64()?,
            s["bytes"].as_u64()?,
        ))
    };
    let before = wait_for("the first push recorded", LONG, || {
        sent(&c, &hash).filter(|s| s.0 == 1)
    });
    println!("10,000 entities: initial snapshot {} bytes", before.2);
    let r = support::http(
        &c.node(1).admin,
        "PATCH",
        "/services/a-17",
        Some(&json!({"retries": 9})),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let hash = c.cp_hash(1).unwrap();
    wait_dp_hash(c.dp(1), &hash, LONG);
    let after = wait_for("the change recorded", LONG, || {
        sent(&c, &hash).filter(|s| s.1 > before.1)
    });
    println!(
        "one PATCH with 10,000 entities configured: {} event(s), {} bytes on the wire",
        after.1 - before.1,
        after.2 - before.2
    );
    assert_eq!(after.0, before.0, "no snapshot for one change");
    assert_eq!(after.1 - before.1, 1);
    assert!(after.2 - before.2 < 2_000, "{after:?} {before:?}");

    // Away for 20,000 Events (more than the CP's tail of 10,000): a snapshot.
    c.dp_mut(1).terminate();
    let r = support::http(&c.node(1).admin, "POST", "/config", Some(&big("b")), &[]).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let hash = c.cp_hash(1).unwrap();
    c.dp_mut(1).start();
    wait_dp_hash(c.dp(1), &hash, LONG);
    let back = wait_for("the catch-up recorded", LONG, || {
        sent(&c, &hash).filter(|s| s.0 >= 1)
    });
    assert_eq!(back.0, 1, "caught up by one snapshot: {back:?}");
    assert_eq!(back.1, 0, "and no Events: {back:?}");
}

/// Certificates: a DP with another cluster certificate is refused; the cluster
/// certificate is refused on the Raft port.
#[test]
fn wrong_certificates_are_refused() {
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    let (cert, key) = support::gen_cert(c.dir.path(), "stranger");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    c.start_dp(
        1,
        &[1],
        &[
            ("TIDEGATE_CLUSTER_CERT", cert.as_str()),
            ("TIDEGATE_CLUSTER_CERT_KEY", key.as_str()),
        ],
    );
    wait_for("the CP to log the refused handshake", LONG, || {
        c.node(1)
            .log_text()
            .contains("refused a cluster connection")
            .then_some(())
    });
    let st = c.dp(1).get("/status").unwrap();
    assert!(st.body["control_plane"]["connected_to"].is_null());
    assert!(data_planes(c.node(1)).unwrap().is_empty());

    // The cluster certificate at the Raft listener: refused there, while a certificate
    // from the Raft CA gets through (so the refusal is about the certificate).
    let raft = c.node(1).raft.clone();
    let (cc, ck) = c.cluster_cert.clone();
    let ca = c.pki.ca.clone();
    let err = support::tls_handshake_error(&raft, &cc, &ck, &ca);
    assert!(
        err.is_some(),
        "the Raft port accepted the cluster certificate"
    );
    let (rc, rk) = c.pki.issue("raft-client");
    let ok = support::tls_handshake_error(&raft, &rc, &rk, &ca);
    assert!(ok.is_none(), "a Raft CA certificate was refused: {ok:?}");
}

/// kill -9 while a DP stores a large config: its cache always holds a complete config
/// whose hash verifies, the old one or the new one.
#[test]
fn a_dp_killed_mid_apply_restarts_on_a_complete_config() {
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    c.start_dp(1, &[1], &[]);
    let config = |round: usize| {
        let services: Vec<Value> = (0..2_000)
            .map(|n| json!({"name": format!("s{round}-{n}"), "url": "http://u.test", "tags": [format!("round-{round}")]}))
            .collect();
        json!({"_format_version": "3.0", "services": services})
    };
    let mut known = BTreeSet::new();
    known.insert(c.cp_hash(1).unwrap());
    for round in 0..8usize {
        let r = support::http(
            &c.node(1).admin,
            "POST",
            "/config",
            Some(&config(round)),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        known.insert(c.cp_hash(1).unwrap());
        // Kill at a different point of the apply each round.
        std::thread::sleep(Duration::from_millis(15 * round as u64));
        c.dp_mut(1).kill9();
        let export = c.dir.path().join(format!("check-{round}.cache"));
        let out = std::process::Command::new(support::binary())
            .args(["config", "export-cache"])
            .arg(&export)
            .arg("-p")
            .arg(&c.dp(1).prefix)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            assert!(
                known.iter().any(|h| stdout.contains(h.as_str())),
                "round {round}: the cache holds a config no CP had: {stdout}"
            );
        } else {
            // Killed before the first store: no cache yet is fine, a torn one is not.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("no config cache"),
                "round {round}: {stderr}"
            );
        }
        c.dp_mut(1).start();
        wait_dp_hash(c.dp(1), &c.cp_hash(1).unwrap(), LONG);
    }
}

/// A DP with no cache starts from `declarative_config` (also given as
/// TIDEGATE_DECLARATIVE_CONFIG) before any CP answers, serves no Admin API, and takes the
/// CP's config once one answers.
#[test]
fn a_dp_without_cache_starts_from_declarative_config_and_has_no_admin_api() {
    let mut c = Cluster::start(1);
    c.wait_leader(LONG);
    let file = c.dir.path().join("kong.yml");
    std::fs::write(
        &file,
        "_format_version: \"3.0\"\nservices:\n- name: local\n  url: http://local.test\n  routes:\n  - name: r\n    paths: [/local]\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::binary())
        .args(["config", "parse"])
        .arg(&file)
        .output()
        .unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout).to_string();
    let file_hash = parsed
        .lines()
        .find_map(|l| l.strip_prefix("config hash: "))
        .expect("config parse prints the hash")
        .to_string();
    // The CP is not in reach: a port nothing listens on.
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    let f = file.display().to_string();
    let admin = format!("127.0.0.1:{}", support::free_port());
    c.start_dp(
        1,
        &[],
        &[
            ("TIDEGATE_ADMIN_LISTEN", admin.as_str()),
            ("TIDEGATE_CLUSTER_CONTROL_PLANE", nowhere.as_str()),
            ("TIDEGATE_DECLARATIVE_CONFIG", f.as_str()),
        ],
    );
    wait_dp_hash(c.dp(1), &file_hash, LONG);
    // The file is served before the first attempt to reach the CP has failed.
    let st = wait_for("the DP to report the CP out of reach", LONG, || {
        c.dp(1)
            .get("/status")
            .filter(|st| st.body["control_plane"]["last_error"].is_string())
    });
    assert_eq!(st.body["from_control_plane"], false);
    // No Admin API: nothing listens on admin_listen.
    assert!(std::net::TcpStream::connect(&admin).is_err());

    // Pointed at the CP (restart with the right address): the CP's config replaces it.
    c.dp_mut(1).terminate();
    c.dps.retain(|d| d.id != 1);
    c.start_dp(1, &[1], &[("TIDEGATE_DECLARATIVE_CONFIG", f.as_str())]);
    let cp_hash = c.cp_hash(1).unwrap();
    assert_ne!(cp_hash, file_hash);
    wait_dp_hash(c.dp(1), &cp_hash, LONG);
}
