//! ops/haproxy/haproxy.cfg in front of three real CPs: admin clients and DPs talk to
//! HAProxy only, a CP is killed, and both keep working.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{data_planes, dp_status, free_port, http, wait_for, Cluster};

const LONG: Duration = Duration::from_secs(60);

/// Debian's haproxy, installed when missing (CI installs it up front).
fn haproxy() -> &'static str {
    if Command::new("haproxy").arg("-v").output().is_err() {
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "haproxy is not installed and apt-get could not install it"
        );
    }
    "haproxy"
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn haproxy_in_front_of_three_cps_survives_losing_one() {
    let bin = haproxy();
    let mut c = Cluster::start(3);
    c.wait_leader(LONG);

    // The shipped config, with this test's addresses.
    let mut cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ops/haproxy/haproxy.cfg"
    ))
    .unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let cluster = format!("127.0.0.1:{}", free_port());
    cfg = cfg
        .replace("bind 0.0.0.0:8001", &format!("bind {admin}"))
        .replace("bind 0.0.0.0:8005", &format!("bind {cluster}"));
    for id in 1..=3u64 {
        cfg = cfg
            .replace(&format!("cp{id}:8001"), &c.node(id).admin)
            .replace(&format!("cp{id}:8005"), &c.node(id).cluster);
    }
    let cfg_path = c.dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let check = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(check.status.success(), "haproxy -c: {check:?}");
    let log = std::fs::File::create(c.dir.path().join("haproxy.log")).unwrap();
    let _proxy = Haproxy(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let post = |name: &str| {
        http(
            &admin,
            "POST",
            "/services",
            Some(&json!({"name": name, "url": "http://u.test"})),
            &[],
        )
        .filter(|r| r.status == 201)
    };
    wait_for("a write through haproxy", LONG, || post("first"));

    for n in 1..=2 {
        c.start_dp(
            n,
            &[],
            &[("TIDEGATE_CLUSTER_CONTROL_PLANE", cluster.as_str())],
        );
    }
    let hash = c.cp_hash(1).unwrap();
    for n in 1..=2 {
        wait_for("the DP to sync through haproxy", LONG, || {
            dp_status(c.dp(n)).filter(|(h, _)| *h == hash)
        });
    }

    // Kill the CP that DP 1 talks to.
    let dp1 = std::fs::read_to_string(c.dp(1).prefix.join("node_id")).unwrap();
    let victim = wait_for("DP 1's CP in the status", LONG, || {
        data_planes(c.node(1))?
            .iter()
            .find(|r| r["id"] == dp1.trim() && r["connected"] == true)?["control_plane"]
            .as_u64()
    });
    c.node_mut(victim).kill9();
    let alive = (1..=3).find(|id| *id != victim).unwrap();

    // Admin writes through haproxy keep working (a client may see one failed attempt
    // while haproxy marks the CP down; it retries, as decK does).
    wait_for("a write through haproxy after the kill", LONG, || {
        post("second")
    });
    let hash = wait_for("the surviving CPs to agree", LONG, || {
        let h = c.cp_hash(alive)?;
        (c.node(alive).get("/services/second")?.status == 200).then_some(h)
    });
    for n in 1..=2 {
        wait_for("the DP to follow through haproxy", LONG, || {
            dp_status(c.dp(n)).filter(|(h, _)| *h == hash)
        });
    }
}
