//! The sync client against a scripted fake CP, over real gRPC on 127.0.0.1.
//!
//! Each test drives the CP's side of one or more streams by hand (`Conn`) and waits on
//! the DP's watch channels or on what the DP sends, always with a timeout; no sleep is
//! a condition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidegate_dp::{plaintext_connect, Cache, Current, DpSync, HelloInfo, SyncSettings, SyncStatus};
use tidegate_model::{EntityKind, Fixed};
use tidegate_proto::cluster as pb;
use tidegate_proto::cluster::cluster_server::{Cluster, ClusterServer};
use tidegate_proto::cluster::snapshot_request::Reason;
use tidegate_proto::cluster::{cp_message, dp_message};
use tidegate_state::{encode_event, encode_snapshot, Command, ConfigState, Event, Machine, Op};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);
const NODE: Uuid = Uuid::from_u128(0xd9_0001);

// ===== configs =====

/// Events creating services svc-1..svc-n; event k takes version k.
fn history(n: u64) -> Vec<Event> {
    let mut m = Machine::new();
    let mut events = Vec::new();
    for i in 1..=n {
        let c = Command {
            request_id: Uuid::from_u128(i.into()),
            fixed: Fixed {
                id: Uuid::from_u128(0x1000 + u128::from(i)),
                now: 1_700_000_000,
                entropy: i.into(),
            },
            op: Op::Create {
                kind: EntityKind::Service,
                body: json!({"name": format!("svc-{i}"), "url": "http://upstream:8080/x"})
                    .to_string(),
            },
        };
        let (outcome, evs) = m.execute(&c);
        outcome.expect("valid service");
        events.extend(evs);
    }
    assert!(events.iter().zip(1..).all(|(e, v)| e.version == v));
    events
}

fn state_at(history: &[Event], version: u64) -> ConfigState {
    let mut s = ConfigState::new();
    for e in &history[..version as usize] {
        s.apply(e).unwrap();
    }
    s
}

fn snapshot(state: &ConfigState) -> pb::Snapshot {
    pb::Snapshot {
        version: state.version(),
        hash: state.hash().to_string(),
        compression: pb::Compression::None as i32,
        body: encode_snapshot(&state.snapshot()),
    }
}

fn events(events: &[Event]) -> pb::Events {
    pb::Events {
        events: events.iter().map(encode_event).collect(),
    }
}

fn ack() -> cp_message::Msg {
    cp_message::Msg::Ack(pb::Ack {
        cp_id: "1".into(),
        cp_version: "0.1.0".into(),
    })
}

// ===== the fake CP =====

/// The CP's end of one stream, after the DP's Hello.
struct Conn {
    hello: pb::Hello,
    from_dp: mpsc::UnboundedReceiver<pb::DpMessage>,
    to_dp: mpsc::UnboundedSender<Result<pb::CpMessage, Status>>,
}

impl Conn {
    fn send(&self, msg: impl ToDp) {
        self.to_dp
            .send(Ok(pb::CpMessage {
                msg: Some(msg.into_msg()),
            }))
            .expect("stream to the DP open");
    }

    /// The DP's next message; `None` when it closed the stream.
    async fn recv(&mut self) -> Option<dp_message::Msg> {
        let m = timeout(WAIT, self.from_dp.recv())
            .await
            .expect("the DP sent nothing")?;
        Some(m.msg.expect("a DpMessage with a body"))
    }

    /// The next message that is not a heartbeat.
    async fn next_request(&mut self) -> pb::SnapshotRequest {
        loop {
            match self.recv().await.expect("stream open") {
                dp_message::Msg::Status(_) => continue,
                dp_message::Msg::SnapshotRequest(r) => return r,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The first Status for `version`, skipping others.
    async fn status_for(&mut self, version: u64) -> pb::Status {
        loop {
            match self.recv().await.expect("stream open") {
                dp_message::Msg::Status(s) if s.version == version => return s,
                dp_message::Msg::Status(_) => continue,
                other => panic!("unexpected {other:?} while waiting for Status {version}"),
            }
        }
    }
}

/// What a test hands to `Conn::send`.
trait ToDp {
    fn into_msg(self) -> cp_message::Msg;
}

impl ToDp for cp_message::Msg {
    fn into_msg(self) -> cp_message::Msg {
        self
    }
}

impl ToDp for pb::Snapshot {
    fn into_msg(self) -> cp_message::Msg {
        cp_message::Msg::Snapshot(self)
    }
}

impl ToDp for pb::Events {
    fn into_msg(self) -> cp_message::Msg {
        cp_message::Msg::Events(self)
    }
}

struct FakeService {
    conns: mpsc::UnboundedSender<Conn>,
}

#[tonic::async_trait]
impl Cluster for FakeService {
    type SyncStream = UnboundedReceiverStream<Result<pb::CpMessage, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<pb::DpMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::aborted("no Hello"))?;
        let Some(dp_message::Msg::Hello(hello)) = first.msg else {
            return Err(Status::invalid_argument("Hello first"));
        };
        let (from_tx, from_dp) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if from_tx.send(m).is_err() {
                    break;
                }
            }
        });
        let (to_dp, to_rx) = mpsc::unbounded_channel();
        let _ = self.conns.send(Conn {
            hello,
            from_dp,
            to_dp,
        });
        Ok(Response::new(UnboundedReceiverStream::new(to_rx)))
    }
}

struct FakeCp {
    address: String,
    conns: mpsc::UnboundedReceiver<Conn>,
}

impl FakeCp {
    async fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn on(listener: TcpListener) -> Self {
        let address = listener.local_addr().unwrap().to_string();
        let (tx, conns) = mpsc::unbounded_channel();
        let service = ClusterServer::new(FakeService { conns: tx });
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        FakeCp { address, conns }
    }

    async fn accept(&mut self) -> Conn {
        timeout(WAIT, self.conns.recv())
            .await
            .expect("no DP connected")
            .expect("server running")
    }
}

/// An address nothing listens on (for as long as no one else takes the port).
async fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

// ===== the DP =====

fn hello_info() -> HelloInfo {
    HelloInfo {
        node_id: NODE,
        hostname: "dp-1".into(),
        version: "0.1.0".into(),
        plugins: vec![
            ("key-auth".into(), "0.1.0".into()),
            ("rate-limiting".into(), "0.2.1".into()),
        ],
        labels: BTreeMap::from([("region".into(), "eu-west".into())]),
    }
}

fn settings(addresses: &[&str]) -> SyncSettings {
    let mut s = SyncSettings::new(
        addresses.iter().map(|a| a.to_string()).collect(),
        hello_info(),
        7,
    );
    s.backoff_base = Duration::from_millis(10);
    s.backoff_cap = Duration::from_millis(100);
    // Out of the way unless a test asks for heartbeats.
    s.heartbeat = Duration::from_secs(600);
    s.handshake_timeout = Duration::from_secs(5);
    s
}

struct Dp {
    config: watch::Receiver<Arc<Current>>,
    status: watch::Receiver<SyncStatus>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start(settings: SyncSettings, prefix: &Path, initial: Current) -> Dp {
    start_with(settings, Cache::open(prefix).unwrap(), initial)
}

fn start_with(settings: SyncSettings, cache: Cache, initial: Current) -> Dp {
    let sync = DpSync::new(settings, cache, initial, plaintext_connect());
    let (config, status) = (sync.config(), sync.status());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(sync.run(async move {
        let _ = stopped.await;
    }));
    Dp {
        config,
        status,
        stop,
        task,
    }
}

impl Dp {
    /// Waits until the DP serves `version` from the CP.
    async fn serving(&mut self, version: u64) -> Arc<Current> {
        let c = timeout(
            WAIT,
            self.config
                .wait_for(|c| c.from_cluster && c.state.version() == version),
        )
        .await
        .unwrap_or_else(|_| panic!("the DP never served version {version}"))
        .unwrap();
        c.clone()
    }

    async fn status_until(&mut self, what: impl FnMut(&SyncStatus) -> bool) -> SyncStatus {
        let s = timeout(WAIT, self.status.wait_for(what))
            .await
            .expect("status never got there")
            .unwrap();
        s.clone()
    }

    fn served(&self) -> Arc<Current> {
        self.config.borrow().clone()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.task)
            .await
            .expect("run did not return on shutdown")
            .unwrap();
    }
}

fn prefix() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    (dir, prefix)
}

fn cached(prefix: &Path) -> ConfigState {
    Cache::open(prefix)
        .unwrap()
        .load()
        .unwrap()
        .expect("a cache")
}

fn empty() -> Current {
    Current::local(ConfigState::new())
}

// ===== tests =====

#[tokio::test]
async fn a_snapshot_then_events_are_applied_in_order_and_persisted() {
    let (_dir, prefix) = prefix();
    let h = history(6);
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&cp.address]), &prefix, empty());
    let mut conn = cp.accept().await;

    let hello = &conn.hello;
    assert_eq!(hello.node_id, NODE.to_string());
    assert_eq!(hello.hostname, "dp-1");
    assert_eq!(hello.version, "0.1.0");
    let plugins: Vec<_> = hello
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(plugins, [("key-auth", "0.1.0"), ("rate-limiting", "0.2.1")]);
    assert_eq!(hello.labels["region"], "eu-west");
    // Not from the cluster: no version, so the CP sends a snapshot.
    assert_eq!(hello.last_version, None);
    assert_eq!(hello.last_hash, None);
    assert_eq!(
        hello.entity_schema,
        u32::from(tidegate_state::ENTITY_SCHEMA)
    );
    assert_eq!(
        hello.snapshot_format,
        u32::from(tidegate_state::SNAPSHOT_FORMAT)
    );

    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 3)));
    conn.send(events(&h[3..5]));
    conn.send(events(&h[5..6]));
    let current = dp.serving(6).await;
    let expected = state_at(&h, 6);
    assert_eq!(*current.state, expected);

    let reported = conn.status_for(6).await;
    assert_eq!(reported.hash, expected.hash().to_string());
    assert_eq!(reported.hash.len(), 32);
    let status = dp.status.borrow().clone();
    assert_eq!(status.connected_to.as_deref(), Some(cp.address.as_str()));
    assert_eq!(status.applied_version, Some(6));
    assert_eq!(status.rejected, None);

    // Persisted before it was served.
    let on_disk = cached(&prefix);
    assert_eq!(on_disk.version(), 6);
    assert_eq!(on_disk.hash(), expected.hash());
    dp.stop().await;
}

#[tokio::test]
async fn a_restarted_dp_resumes_from_its_cache() {
    let (_dir, prefix) = prefix();
    let h = history(6);
    let v4 = state_at(&h, 4);
    Cache::open(&prefix).unwrap().store(&v4).unwrap();

    let mut cp = FakeCp::start().await;
    let mut dp = start(
        settings(&[&cp.address]),
        &prefix,
        Current::from_cache(cached(&prefix)),
    );
    // Served before any CP answers.
    assert_eq!(dp.served().state.version(), 4);
    assert_eq!(dp.status.borrow().applied_version, Some(4));

    let mut conn = cp.accept().await;
    assert_eq!(conn.hello.last_version, Some(4));
    assert_eq!(conn.hello.last_hash, Some(v4.hash().to_string()));
    conn.send(ack());
    // Right after the Ack: what it holds.
    match conn.recv().await {
        Some(dp_message::Msg::Status(s)) => {
            assert_eq!((s.version, s.hash), (4, v4.hash().to_string()))
        }
        other => panic!("expected a Status, got {other:?}"),
    }
    // 3 and 4 are duplicates (a resend): skipped.
    conn.send(events(&h[2..6]));
    let current = dp.serving(6).await;
    assert_eq!(*current.state, state_at(&h, 6));
    assert_eq!(cached(&prefix).version(), 6);
    dp.stop().await;
}

#[tokio::test]
async fn a_failed_cache_store_is_reported_and_the_config_served_anyway() {
    let (_dir, prefix) = prefix();
    let h = history(3);
    let mut cp = FakeCp::start().await;
    // Too small for any config: every store fails.
    let cache = Cache::open(&prefix).unwrap().with_max_bytes(16);
    let mut dp = start_with(settings(&[&cp.address]), cache, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 3)));
    dp.serving(3).await;
    conn.status_for(3).await;
    let status = dp.status.borrow().clone();
    let error = status.last_error.expect("the store error is shown");
    assert!(error.starts_with("config cache:"), "{error}");
    assert_eq!(status.applied_version, Some(3));
    assert!(cached_none(&prefix));
    dp.stop().await;
}

#[tokio::test]
async fn a_gap_asks_for_a_snapshot_and_recovers() {
    let (_dir, prefix) = prefix();
    let h = history(6);
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&cp.address]), &prefix, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());

    // Events on a config that is not the cluster's have no base.
    conn.send(events(&h[0..1]));
    let r = conn.next_request().await;
    assert_eq!(r.reason, Reason::VersionGap as i32);
    assert!(!dp.served().from_cluster);

    conn.send(snapshot(&state_at(&h, 2)));
    dp.serving(2).await;
    conn.send(events(&h[3..4]));
    let r = conn.next_request().await;
    assert_eq!(r.reason, Reason::VersionGap as i32);
    assert!(r.detail.contains("event version 4"), "{}", r.detail);
    assert_eq!(dp.served().state.version(), 2);

    conn.send(snapshot(&state_at(&h, 5)));
    conn.send(events(&h[5..6]));
    let current = dp.serving(6).await;
    assert_eq!(*current.state, state_at(&h, 6));
    dp.stop().await;
}

#[tokio::test]
async fn a_corrupt_event_is_refused_and_the_old_config_kept() {
    let (_dir, prefix) = prefix();
    let h = history(5);
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&cp.address]), &prefix, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 3)));
    let before = dp.serving(3).await;
    conn.status_for(3).await;

    // A good event then garbage, in one message: none of it is applied.
    conn.send(pb::Events {
        events: vec![encode_event(&h[3]), vec![0xff, 0xff, 0xff]],
    });
    let r = conn.next_request().await;
    assert_eq!(r.reason, Reason::ApplyFailed as i32);
    assert!(r.detail.contains("event 2 of 2"), "{}", r.detail);
    let served = dp.served();
    assert!(
        Arc::ptr_eq(&served, &before),
        "the old config is still served"
    );
    assert_eq!(cached(&prefix).version(), 3);

    conn.send(snapshot(&state_at(&h, 5)));
    let current = dp.serving(5).await;
    assert_eq!(*current.state, state_at(&h, 5));
    // A holder of the old config still has it, whole.
    assert_eq!(*before.state, state_at(&h, 3));
    dp.stop().await;
}

#[tokio::test]
async fn a_bad_snapshot_is_refused_once_until_a_good_one_arrives() {
    let (_dir, prefix) = prefix();
    let h = history(4);
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&cp.address]), &prefix, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());

    let mut wrong_hash = snapshot(&state_at(&h, 2));
    wrong_hash.hash = state_at(&h, 1).hash().to_string();
    conn.send(wrong_hash);
    let r = conn.next_request().await;
    assert_eq!(r.reason, Reason::HashMismatch as i32);
    assert!(!dp.served().from_cluster);

    // While the request is outstanding, more unusable messages do not repeat it: the
    // next thing the DP sends is the Status for the good snapshot.
    let mut torn = snapshot(&state_at(&h, 2));
    torn.body.truncate(torn.body.len() / 2);
    conn.send(torn);
    conn.send(events(&h[3..4]));
    conn.send(snapshot(&state_at(&h, 2)));
    match conn.recv().await {
        Some(dp_message::Msg::Status(s)) => assert_eq!(s.version, 2),
        other => panic!("expected the Status for version 2, got {other:?}"),
    }
    dp.serving(2).await;

    // A good snapshot ends the wait: the next failure is reported again.
    let mut wrong_version = snapshot(&state_at(&h, 3));
    wrong_version.version = 9;
    conn.send(wrong_version);
    let r = conn.next_request().await;
    assert_eq!(r.reason, Reason::ApplyFailed as i32);
    assert!(r.detail.contains("version 9"), "{}", r.detail);
    assert_eq!(dp.served().state.version(), 2);
    dp.stop().await;
}

#[tokio::test]
async fn an_unknown_compression_drops_the_stream() {
    let (_dir, prefix) = prefix();
    let h = history(2);
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&cp.address]), &prefix, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());
    let mut compressed = snapshot(&state_at(&h, 2));
    compressed.compression = 7;
    conn.send(compressed);

    // Not understood: no snapshot request (it would get the same), but a new stream.
    assert_eq!(conn.recv().await, None);
    let again = cp.accept().await;
    let status = dp
        .status_until(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("compression"))
        })
        .await;
    assert!(status.rejected.is_none());
    assert!(!dp.served().from_cluster);
    again.send(ack());
    again.send(snapshot(&state_at(&h, 2)));
    dp.serving(2).await;
    dp.stop().await;
}

#[tokio::test]
async fn a_rejected_dp_keeps_its_config_and_retries_later() {
    let (_dir, prefix) = prefix();
    let h = history(2);
    let mut cp = FakeCp::start().await;
    let mut s = settings(&[&cp.address]);
    s.backoff_cap = Duration::from_millis(400);
    let declarative = Current::local(state_at(&h, 1));
    let mut dp = start(s, &prefix, declarative);
    let mut conn = cp.accept().await;
    conn.send(cp_message::Msg::Rejected(pb::Rejected {
        sync_status: "kong_version_incompatible".into(),
        reason: "DP 0.1 is newer than CP 0.0".into(),
    }));
    let status = dp.status_until(|s| s.rejected.is_some()).await;
    let rejected_at = Instant::now();
    assert_eq!(
        status.rejected,
        Some((
            "kong_version_incompatible".to_string(),
            "DP 0.1 is newer than CP 0.0".to_string()
        ))
    );
    assert_eq!(status.connected_to, None);
    assert_eq!(conn.recv().await, None, "the DP closes a rejected stream");
    let served = dp.served();
    assert_eq!((served.state.version(), served.from_cluster), (1, false));

    // Retries after the cap (jittered to at least half of it).
    let again = cp.accept().await;
    assert!(rejected_at.elapsed() >= Duration::from_millis(150));
    again.send(ack());
    let status = dp
        .status_until(|s| s.rejected.is_none() && s.connected_to.is_some())
        .await;
    assert_eq!(status.connected_to.as_deref(), Some(cp.address.as_str()));
    again.send(snapshot(&state_at(&h, 2)));
    dp.serving(2).await;
    dp.stop().await;
}

#[tokio::test]
async fn a_dp_started_while_the_cp_is_down_serves_and_connects_when_it_is_up() {
    let (_dir, prefix) = prefix();
    let h = history(3);
    let address = dead_address().await;
    let mut dp = start(
        settings(&[&address]),
        &prefix,
        Current::local(state_at(&h, 1)),
    );
    let status = dp.status_until(|s| s.last_error.is_some()).await;
    assert!(
        status.last_error.unwrap().starts_with(&address),
        "the error names the address"
    );
    assert_eq!(dp.served().state.version(), 1);
    assert!(cached_none(&prefix));

    let mut cp = FakeCp::on(TcpListener::bind(&address).await.unwrap());
    let mut conn = cp.accept().await;
    assert_eq!(conn.hello.last_version, None);
    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 3)));
    dp.serving(3).await;
    conn.status_for(3).await;
    dp.stop().await;
}

fn cached_none(prefix: &Path) -> bool {
    Cache::open(prefix).unwrap().load().unwrap().is_none()
}

#[tokio::test]
async fn it_fails_over_to_the_next_address_and_resumes_from_its_version() {
    let (_dir, prefix) = prefix();
    let h = history(4);
    let dead = dead_address().await;
    let mut cp = FakeCp::start().await;
    let mut dp = start(settings(&[&dead, &cp.address]), &prefix, empty());
    let conn = cp.accept().await;
    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 2)));
    dp.serving(2).await;
    let status = dp.status.borrow().clone();
    assert_eq!(status.connected_to.as_deref(), Some(cp.address.as_str()));
    assert!(status.last_error.unwrap().starts_with(&dead));

    // The CP ends the stream: the DP goes round the list and comes back with its version.
    drop(conn);
    dp.status_until(|s| s.connected_to.is_none()).await;
    let conn = cp.accept().await;
    assert_eq!(conn.hello.last_version, Some(2));
    assert_eq!(
        conn.hello.last_hash,
        Some(state_at(&h, 2).hash().to_string())
    );
    conn.send(ack());
    conn.send(events(&h[2..4]));
    dp.serving(4).await;
    dp.stop().await;
}

#[tokio::test]
async fn heartbeats_report_the_served_config() {
    let (_dir, prefix) = prefix();
    let h = history(2);
    let mut cp = FakeCp::start().await;
    let mut s = settings(&[&cp.address]);
    s.heartbeat = Duration::from_millis(30);
    let mut dp = start(s, &prefix, empty());
    let mut conn = cp.accept().await;
    conn.send(ack());
    conn.send(snapshot(&state_at(&h, 2)));
    dp.serving(2).await;
    let hash = state_at(&h, 2).hash().to_string();
    for _ in 0..4 {
        let s = conn.status_for(2).await;
        assert_eq!(s.hash, hash);
    }
    dp.stop().await;
}

#[tokio::test]
async fn shutdown_stops_a_dp_with_no_cp_and_with_no_address() {
    let (_dir, prefix) = prefix();
    let dead = dead_address().await;
    let mut dp = start(settings(&[&dead]), &prefix, empty());
    dp.status_until(|s| s.last_error.is_some()).await;
    dp.stop().await;

    let dp = start(settings(&[]), &prefix, empty());
    dp.stop().await;
}
