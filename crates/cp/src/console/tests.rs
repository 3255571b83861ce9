//! The console's JSON and HTTP answers, on a real single-node Raft group in memory.
//! The page itself is tested in a browser by `tests/console.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use serde_json::{json, Value};
use tidegate_model::EntityKind;
use tidegate_raft::network::Network;
use tidegate_raft::{raft_config, MemStorage, Proposer, Raft};
use tidegate_state::{DpReport, EntityRef, Op, SentCounters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::view::{self, RaftFacts};
use crate::backend::{Backend, ClusterMember, ClusterStatus, NodeInfo};
use crate::node::{initial_members, initialize_if_first, Clock, Entropy, NodeSettings, RaftNode};

const T0: i64 = 1_700_000_000;
const VERSION: &str = "0.1.0-test";

struct FixedClock;

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        T0
    }
}

#[derive(Default)]
struct Counter(AtomicU64);

impl Entropy for Counter {
    fn next_u128(&self) -> u128 {
        u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A one-node group that keeps only `tail` Events, led by itself.
async fn single_node(tail: usize) -> Arc<RaftNode> {
    let (log, sm) = MemStorage::new().open_with_event_tail(tail).unwrap();
    let reader = sm.reader();
    let network = Network::new(None);
    let raft = Raft::new(
        1,
        Arc::new(raft_config("console-test")),
        network.clone(),
        log,
        sm,
    )
    .await
    .unwrap();
    initialize_if_first(&raft, 1, initial_members(1, "127.0.0.1:1", &[]))
        .await
        .unwrap();
    raft.wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "the only node leads")
        .await
        .unwrap();
    Arc::new(RaftNode::new(
        Proposer::new(raft),
        reader,
        network,
        NodeSettings {
            node_id: 1,
            info: NodeInfo {
                node_id: Uuid::from_u128(0xc0ffee),
                hostname: "cp-test".into(),
                role: "control_plane".into(),
                tidegate_version: VERSION.into(),
                admin_listen: Vec::new(),
            },
            leader_wait: Duration::from_secs(3),
            apply_wait: Duration::from_secs(10),
        },
        Arc::new(FixedClock),
        Arc::new(Counter::default()),
    ))
}

async fn write(node: &RaftNode, op: Op) -> Uuid {
    let ok = node.write(op, None).await.expect("the write commits");
    let applied = ok.outcome.expect("the write is valid");
    applied.entity.map(|(_, id)| id).unwrap_or_default()
}

fn create(kind: EntityKind, body: Value) -> Op {
    Op::Create {
        kind,
        body: body.to_string(),
    }
}

fn dp(n: u128, config_version: Option<u64>, last_seen: i64, hash: &str) -> DpReport {
    DpReport {
        id: Uuid::from_u128(0xd0 + n),
        ip: format!("10.0.0.{n}"),
        hostname: format!("dp-{n}.<internal>"),
        version: VERSION.into(),
        sync_status: "normal".into(),
        config_hash: hash.into(),
        config_version,
        last_seen,
        labels: BTreeMap::new(),
        cert_expiry: None,
        connected: true,
        control_plane: 1,
        plugins: vec![("cors".into(), "1.0.0".into())],
        sent: SentCounters::default(),
    }
}

#[tokio::test]
async fn the_json_shows_raft_data_planes_counts_and_the_recent_tail() {
    let node = single_node(4).await;
    write(
        &node,
        create(
            EntityKind::Service,
            json!({"name": "billing", "host": "billing.internal"}),
        ),
    )
    .await;
    write(
        &node,
        create(
            EntityKind::Service,
            json!({"name": "old", "host": "old.internal"}),
        ),
    )
    .await;
    let alice = write(
        &node,
        create(EntityKind::Consumer, json!({"username": "alice"})),
    )
    .await;
    write(
        &node,
        create(
            EntityKind::KeyauthCredential,
            json!({"consumer": {"id": alice}, "key": "s3cret-key"}),
        ),
    )
    .await;
    write(
        &node,
        Op::Delete {
            kind: EntityKind::Service,
            key: EntityRef::Key("old".into()),
        },
    )
    .await;
    let (version, hash) = node.read(|m| (m.config.version(), m.config.hash().to_hex()));
    assert_eq!(version, 5);
    let stale = T0 - 2 * crate::sync::STALE_AFTER.as_secs() as i64;
    write(
        &node,
        Op::DataPlanes {
            reports: vec![
                dp(1, Some(5), T0 - 1, &hash),
                dp(2, Some(3), T0 - 1, "0123456789abcdef0123456789abcdef"),
                dp(3, None, stale, ""),
            ],
            purge_before: 0,
        },
    )
    .await;

    let v = view::cluster(&node).await;
    assert_eq!(v["refresh_ms"], 2000);
    assert_eq!(v["now"], T0);
    assert_eq!(
        v["node"],
        json!({"raft_id": 1, "node_id": Uuid::from_u128(0xc0ffee), "hostname": "cp-test",
               "role": "control_plane", "version": VERSION, "health": null})
    );
    let raft = &v["raft"];
    assert_eq!(raft["state"], "leader");
    assert_eq!(raft["leader"], 1);
    assert!(raft["term"].as_u64().unwrap() >= 1, "{raft}");
    assert_eq!(raft["last_log_index"], raft["last_applied"], "{raft}");
    assert_eq!(
        v["control_planes"],
        json!([{"id": 1, "address": "127.0.0.1:1", "kind": "voter", "leader": true,
                "this_node": true, "reachable": true,
                "matched_index": raft["last_log_index"], "lag": 0}])
    );
    assert_eq!(v["config"], json!({"version": 5, "hash": hash}));

    let dps = &v["data_planes"];
    assert_eq!(
        (&dps["total"], &dps["connected"], &dps["in_sync"]),
        (&json!(3), &json!(2), &json!(1)),
        "{dps}"
    );
    let rows = dps["rows"].as_array().unwrap();
    let summary: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!([
                r["id"],
                r["config_hash"],
                r["connected"],
                r["lag"],
                r["hostname"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!([Uuid::from_u128(0xd1), hash, true, 0, "dp-1.<internal>"]),
            json!([
                Uuid::from_u128(0xd2),
                "0123456789abcdef0123456789abcdef",
                true,
                2,
                "dp-2.<internal>"
            ]),
            // A row nobody refreshed for a while reads as disconnected, as in
            // /clustering/data-planes; a DP that reported no version has no lag.
            json!([Uuid::from_u128(0xd3), null, false, null, "dp-3.<internal>"]),
        ]
    );
    assert!(rows.iter().all(|r| r.get("plugins").is_none()), "{dps}");
    assert_eq!(rows[0]["sync_status"], "normal");
    assert_eq!(rows[0]["last_seen"], T0 - 1);

    let counts: BTreeMap<String, u64> = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.len(), EntityKind::ALL.len());
    assert_eq!(counts["services"], 1);
    assert_eq!(counts["consumers"], 1);
    assert_eq!(counts["keyauth_credentials"], 1);
    assert_eq!(counts.values().sum::<u64>(), 3);

    // The state machine kept 4 Events: the newest first, and DP status is not one.
    let changes: Vec<Value> = v["recent_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!([c["version"], c["op"], c["kind"], c["name"]]))
        .collect();
    assert_eq!(
        changes,
        vec![
            json!([5, "delete", "services", null]),
            json!([4, "put", "keyauth_credentials", null]),
            json!([3, "put", "consumers", "alice"]),
            json!([2, "put", "services", "old"]),
        ]
    );
    assert_eq!(v["recent_changes"][1]["id"].as_str().unwrap().len(), 36);
    assert!(
        !v.to_string().contains("s3cret-key"),
        "a key-auth key is a secret: {v}"
    );
}

#[tokio::test]
async fn replication_lag_is_the_leaders_view_and_followers_say_they_do_not_know() {
    let node = single_node(10).await;
    let member =
        |id: u64, leader: bool, reachable: Option<bool>, matched: Option<u64>| ClusterMember {
            id,
            address: format!("10.0.0.{id}:8007"),
            kind: "voter".into(),
            leader,
            reachable,
            matched_index: matched,
        };
    let status = |node_id: u64, members: Vec<ClusterMember>| ClusterStatus {
        node_id,
        leader: Some(1),
        term: 4,
        last_applied: Some(9),
        config_version: 0,
        config_hash: "00000000000000000000000000000000".into(),
        members,
    };
    let lags = |v: &Value| -> Vec<Value> {
        v["control_planes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["lag"].clone())
            .collect()
    };

    let leader = status(
        1,
        vec![
            member(1, true, Some(true), Some(9)),
            member(2, false, Some(true), Some(4)),
            member(3, false, Some(false), None),
        ],
    );
    let facts = RaftFacts {
        state: "leader",
        last_log_index: Some(9),
        millis_since_quorum_ack: Some(120),
    };
    let v = view::render(&node, &leader, &facts, &[]);
    assert_eq!(lags(&v), vec![json!(0), json!(5), Value::Null]);
    assert_eq!(v["raft"]["millis_since_quorum_ack"], 120);
    assert_eq!(v["control_planes"][2]["reachable"], false);

    let follower = status(
        2,
        vec![
            member(1, true, None, None),
            member(2, false, None, None),
            member(3, false, None, None),
        ],
    );
    let facts = RaftFacts {
        state: "follower",
        last_log_index: Some(9),
        millis_since_quorum_ack: None,
    };
    let v = view::render(&node, &follower, &facts, &[]);
    assert_eq!(lags(&v), vec![Value::Null; 3]);
    assert_eq!(v["control_planes"][1]["this_node"], true);
    assert_eq!(v["raft"]["state"], "follower");
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn call(addr: std::net::SocketAddr, method: &str, path: &str) -> Answer {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("the console answers");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

#[tokio::test]
async fn the_page_its_assets_and_the_json_are_served_read_only() {
    let node = single_node(10).await;
    write(
        &node,
        create(
            EntityKind::Service,
            json!({"name": "billing", "host": "billing.internal"}),
        ),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve(listener, node.clone(), async move {
        let _ = stopped.await;
    }));

    let page = call(addr, "GET", "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .body
        .contains(r#"<script src="console.js" defer></script>"#));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        page.header("server"),
        Some(format!("tidegate/{VERSION}").as_str())
    );

    let js = call(addr, "GET", "/console.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.contains("api/cluster"));
    assert!(
        !js.body.contains("innerHTML"),
        "names are user input: the page builds nodes with textContent"
    );
    let css = call(addr, "GET", "/console.css").await;
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );

    let api = call(addr, "GET", "/api/cluster?t=1").await;
    assert_eq!(api.status, 200);
    assert_eq!(
        api.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(api.header("cache-control"), Some("no-store"));
    let v: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(v["config"]["version"], 1);
    assert_eq!(v["recent_changes"][0]["name"], "billing");
    assert_eq!(v["raft"]["state"], "leader");

    let head = call(addr, "HEAD", "/api/cluster").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let post = call(addr, "POST", "/api/cluster").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(call(addr, "DELETE", "/").await.status, 405);
    assert_eq!(call(addr, "GET", "/services").await.status, 404);
    assert_eq!(call(addr, "GET", "/../Cargo.toml").await.status, 404);
    // Nothing was written through the console.
    assert_eq!(node.read(|m| m.config.version()), 1);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
