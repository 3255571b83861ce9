//! One DP's stream: Hello and the version check, then config pushes for as long as the
//! stream lives. The session is the only owner of what it has sent that DP.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use semver::Version;
use tidegate_model::ConfigHash;
use tidegate_proto::cluster::{
    self as pb, cp_message, dp_message, snapshot_request, CpMessage, DpMessage,
};
use tidegate_state::{encode_event, encode_snapshot, DpReport, Event, Machine, SentCounters};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tonic::{Request, Status, Streaming};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use super::fanout::{Encoded, EncodedSnapshot, Fanout};
use super::{Shared, MAX_EVENTS_PER_MESSAGE};
use crate::backend::Backend;
use crate::compat::{check_plugins, check_version, Incompatible, SyncStatus};

/// Limits on what a DP may announce: status rows are replicated to every CP.
const MAX_HOSTNAME: usize = 255;
const MAX_PLUGINS: usize = 512;
const MAX_NAME: usize = 128;
const MAX_LABELS: usize = 64;
const MAX_LABEL_KEY: usize = 64;
const MAX_LABEL_VALUE: usize = 256;
const MAX_DETAIL: usize = 1024;
/// Room for the message framing around Events bodies.
const FRAME_SLACK: usize = 4096;

/// What the transport says about the DP.
pub(crate) struct Peer {
    ip: IpAddr,
    cert_expiry: Option<i64>,
}

impl Peer {
    pub(crate) fn of<T>(req: &Request<T>) -> Self {
        Peer {
            ip: req
                .remote_addr()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            cert_expiry: req
                .peer_certs()
                .and_then(|certs| certs.first().and_then(|c| tidegate_tls::cert_expiry(c))),
        }
    }
}

/// A Hello, validated.
struct Dp {
    id: Uuid,
    hostname: String,
    version: Version,
    plugins: BTreeMap<String, Version>,
    /// As announced, for the status row (versions that are not semver included).
    plugin_list: Vec<(String, String)>,
    labels: BTreeMap<String, String>,
    last: Option<(u64, String)>,
}

fn too_long(what: &str, max: usize) -> String {
    format!("{what} is longer than {max} bytes")
}

impl Dp {
    fn from_hello(h: pb::Hello) -> Result<Dp, String> {
        let id = Uuid::try_parse(&h.node_id)
            .ok()
            .filter(|id| !id.is_nil())
            .ok_or_else(|| format!("node_id '{}' is not a UUID", truncate(&h.node_id, 64)))?;
        if h.hostname.len() > MAX_HOSTNAME {
            return Err(too_long("hostname", MAX_HOSTNAME));
        }
        let version = Version::parse(&h.version).map_err(|e| {
            format!(
                "version '{}' is not a semantic version: {e}",
                truncate(&h.version, 64)
            )
        })?;
        if h.plugins.len() > MAX_PLUGINS {
            return Err(format!("more than {MAX_PLUGINS} plugins announced"));
        }
        let mut plugins = BTreeMap::new();
        let mut plugin_list = Vec::with_capacity(h.plugins.len());
        for p in h.plugins {
            if p.name.len() > MAX_NAME || p.version.len() > MAX_NAME {
                return Err(too_long("a plugin name or version", MAX_NAME));
            }
            // A version that is not semver cannot match any CP plugin: it is left out
            // of the check, so a config using that plugin holds back as "missing".
            if let Ok(v) = Version::parse(&p.version) {
                plugins.insert(p.name.clone(), v);
            }
            plugin_list.push((p.name, p.version));
        }
        if h.labels.len() > MAX_LABELS {
            return Err(format!("more than {MAX_LABELS} labels"));
        }
        if h.labels
            .iter()
            .any(|(k, v)| k.len() > MAX_LABEL_KEY || v.len() > MAX_LABEL_VALUE)
        {
            return Err(format!(
                "a label key is longer than {MAX_LABEL_KEY} bytes or a value longer than {MAX_LABEL_VALUE}"
            ));
        }
        let last = match (h.last_version, h.last_hash) {
            (Some(v), Some(hash)) if hash.len() <= 64 => Some((v, hash)),
            _ => None,
        };
        Ok(Dp {
            id,
            hostname: h.hostname,
            version,
            plugins,
            plugin_list,
            labels: h.labels.into_iter().collect(),
            last,
        })
    }

    fn report(&self, peer: &Peer, cp_id: u64, now: i64, status: SyncStatus) -> DpReport {
        DpReport {
            id: self.id,
            ip: peer.ip.to_string(),
            hostname: self.hostname.clone(),
            version: self.version.to_string(),
            sync_status: status.as_str().to_string(),
            config_hash: self.last.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
            config_version: self.last.as_ref().map(|l| l.0),
            last_seen: now,
            labels: self.labels.clone(),
            cert_expiry: peer.cert_expiry,
            connected: true,
            control_plane: cp_id,
            plugins: self.plugin_list.clone(),
            sent: SentCounters::default(),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn msg(m: cp_message::Msg) -> CpMessage {
    CpMessage { msg: Some(m) }
}

pub(crate) async fn run<B: Backend>(
    shared: Arc<Shared<B>>,
    peer: Peer,
    mut inbound: Streaming<DpMessage>,
    tx: mpsc::Sender<Result<CpMessage, Status>>,
) {
    let hello = match tokio::time::timeout(shared.settings.hello_timeout, inbound.message()).await {
        Ok(Ok(Some(DpMessage {
            msg: Some(dp_message::Msg::Hello(h)),
        }))) => h,
        other => {
            let why = match other {
                Err(_) => "no Hello in time".to_string(),
                Ok(Err(s)) => s.message().to_string(),
                Ok(Ok(None)) => "the stream closed before Hello".to_string(),
                Ok(Ok(Some(_))) => "the first message must be Hello".to_string(),
            };
            debug!(ip = %peer.ip, why, "data plane stream refused");
            let _ = tx.send(Err(Status::invalid_argument(why))).await;
            return;
        }
    };
    let dp = match Dp::from_hello(hello) {
        Ok(dp) => dp,
        Err(why) => {
            warn!(ip = %peer.ip, why, "refused a data plane's Hello");
            let _ = tx
                .send(Err(Status::invalid_argument(format!(
                    "invalid Hello: {why}"
                ))))
                .await;
            return;
        }
    };
    let settings = &shared.settings;
    let now = shared.clock.now_unix();
    if let Err(inc) = check_version(&settings.cp_version, &dp.version) {
        warn!("{}", inc.log_line(&dp.hostname, peer.ip));
        let mut report = dp.report(&peer, settings.cp_id, now, inc.sync_status());
        report.connected = false;
        shared.registry.record_once(report);
        let rejected = pb::Rejected {
            sync_status: inc.sync_status().as_str().to_string(),
            reason: inc.reason(),
        };
        let _ = tx.send(Ok(msg(cp_message::Msg::Rejected(rejected)))).await;
        return;
    }
    let session_id =
        shared
            .registry
            .open(dp.report(&peer, settings.cp_id, now, SyncStatus::Unknown));
    info!(dp = %dp.id, hostname = %dp.hostname, ip = %peer.ip, version = %dp.version, held = ?dp.last.as_ref().map(|l| l.0), "data plane connected");
    let ack = pb::Ack {
        cp_id: settings.cp_id.to_string(),
        cp_version: settings.cp_version.to_string(),
    };
    let mut session = Session {
        sent: dp.last.as_ref().map(|l| l.0),
        dp,
        peer,
        session_id,
        shared: shared.clone(),
        need_snapshot: false,
        status: SyncStatus::Unknown,
        warned_at: None,
        ahead_since: None,
        counters: SentCounters::default(),
        snapshot_in_flight: None,
    };
    let why = if tx.send(Ok(msg(cp_message::Msg::Ack(ack)))).await.is_err() {
        "the data plane hung up".to_string()
    } else {
        session.serve(&mut inbound, &tx).await
    };
    let now = shared.clock.now_unix();
    shared
        .registry
        .close(session.dp.id, session.session_id, now);
    info!(dp = %session.dp.id, hostname = %session.dp.hostname, ip = %session.peer.ip, why, "data plane disconnected");
}

struct Session<B> {
    dp: Dp,
    peer: Peer,
    session_id: u64,
    shared: Arc<Shared<B>>,
    /// The config version the DP holds once it applied what was sent; None: nothing
    /// usable, send a snapshot.
    sent: Option<u64>,
    need_snapshot: bool,
    status: SyncStatus,
    /// The config version at which the last incompatibility was logged: once per
    /// version, not once per wake-up.
    warned_at: Option<u64>,
    /// Since when the DP holds a newer version than this CP.
    ahead_since: Option<Instant>,
    counters: SentCounters,
    /// The last snapshot sent (version, when, whether it replaced a newer config), until
    /// the DP reports it applied: its round trip is logged.
    snapshot_in_flight: Option<(u64, Instant, bool)>,
}

async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// What one push does, decided under the state lock.
enum Plan {
    UpToDate,
    Hold {
        problem: Incompatible,
        version: u64,
    },
    Ahead {
        cp: u64,
    },
    Send {
        /// Shared with every session sending the same: copied out after the state lock.
        messages: Arc<Encoded>,
        version: u64,
        /// For a snapshot: its entities and how long taking and encoding it took (by
        /// the session that encoded it; the others share it).
        snapshot: Option<(usize, Duration)>,
    },
    TooBig {
        bytes: usize,
        version: u64,
    },
}

impl<B: Backend> Session<B> {
    /// Pushes and listens until the stream ends; returns why it ended.
    async fn serve(
        &mut self,
        inbound: &mut Streaming<DpMessage>,
        tx: &mpsc::Sender<Result<CpMessage, Status>>,
    ) -> String {
        let mut applied = self.shared.reader.applied();
        let mut shutdown = self.shared.shutdown.clone();
        let idle = self.shared.settings.idle_timeout;
        let mut last_heard = Instant::now();
        // The config version of the last push: a wake-up that changed none of what a
        // push depends on (a DP's Status, a Raft write of DP status rows) pushes nothing,
        // so it costs no state lock and no plan. A push depends on the config (version),
        // `need_snapshot`, and the wait of a DP that is ahead.
        let mut pushed_at: Option<u64> = None;
        loop {
            let version = applied.borrow_and_update().config_version;
            if pushed_at != Some(version) || self.need_snapshot || self.ahead_since.is_some() {
                if let Err(why) = self.push(tx).await {
                    return why;
                }
                pushed_at = Some(version);
            }
            let wake = self
                .ahead_since
                .map(|t| t + self.shared.settings.newer_dp_wait);
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(m)) => {
                        last_heard = Instant::now();
                        if let Err(why) = self.on_message(m) {
                            let _ = tx.send(Err(Status::invalid_argument(why.clone()))).await;
                            return why;
                        }
                    }
                    Ok(None) => return "the data plane closed the stream".into(),
                    Err(s) => return format!("stream error: {}", s.message()),
                },
                r = applied.changed() => if r.is_err() {
                    return "the control plane is shutting down".into();
                },
                () = stopped(&mut shutdown) => return "the control plane is shutting down".into(),
                () = sleep_until(last_heard + idle) => {
                    return format!("no heartbeat for {}s", idle.as_secs());
                }
                () = sleep_until(wake.unwrap_or(last_heard + idle)), if wake.is_some() => {}
            }
        }
    }

    fn on_message(&mut self, m: DpMessage) -> Result<(), String> {
        let now = self.shared.clock.now_unix();
        match m.msg {
            Some(dp_message::Msg::Status(s)) => {
                if s.hash.len() > 64 {
                    return Err("status hash longer than 64 bytes".into());
                }
                let (cp_version, cp_hash) = self
                    .shared
                    .reader
                    .read(|m| (m.config.version(), m.config.hash()));
                if let Some((version, at, replaced_newer)) = self.snapshot_in_flight {
                    // A DP that was ahead may report its old, higher version before it
                    // takes the snapshot.
                    if s.version == version || (s.version > version && !replaced_newer) {
                        info!(dp = %self.dp.id, hostname = %self.dp.hostname, version, round_trip_ms = at.elapsed().as_millis() as u64, "data plane applied the snapshot (transfer, decode, build and cache fsync)");
                        self.snapshot_in_flight = None;
                    }
                }
                if s.version == cp_version && s.hash != cp_hash.to_string() {
                    warn!(dp = %self.dp.id, hostname = %self.dp.hostname, version = s.version, dp_hash = %s.hash, cp_hash = %cp_hash, "data plane holds another config at this version; sending it a snapshot");
                    self.need_snapshot = true;
                }
                self.shared
                    .registry
                    .update(self.dp.id, self.session_id, |r| {
                        let changed =
                            r.config_version != Some(s.version) || r.config_hash != s.hash;
                        r.config_version = Some(s.version);
                        r.config_hash = s.hash;
                        r.last_seen = now;
                        changed
                    });
            }
            Some(dp_message::Msg::SnapshotRequest(r)) => {
                let reason = snapshot_request::Reason::try_from(r.reason)
                    .map_or("unknown", |r| r.as_str_name());
                info!(dp = %self.dp.id, hostname = %self.dp.hostname, reason, detail = truncate(&r.detail, MAX_DETAIL), "data plane asked for a snapshot");
                self.need_snapshot = true;
                self.touch(now);
            }
            Some(dp_message::Msg::Hello(_)) => return Err("Hello may be sent only once".into()),
            // A message type from a newer DP: not understood, not fatal.
            None => self.touch(now),
        }
        Ok(())
    }

    fn touch(&self, now: i64) {
        self.shared
            .registry
            .update(self.dp.id, self.session_id, |r| {
                r.last_seen = now;
                false
            });
    }

    fn set_status(&mut self, status: SyncStatus) {
        if self.status != status {
            self.status = status;
            self.shared
                .registry
                .update(self.dp.id, self.session_id, |r| {
                    r.sync_status = status.as_str().to_string();
                    true
                });
        }
    }

    /// Whether this CP has applied everything the cluster committed until now: a barrier
    /// write through Raft (an empty status batch, which changes nothing) is answered
    /// only once this node applied the log up to it. A follower cut off from the leader
    /// cannot pass it.
    async fn confirmed_current(&self) -> bool {
        let barrier = tidegate_state::Op::DataPlanes {
            reports: Vec::new(),
            purge_before: i64::MIN,
        };
        match self.shared.backend.write(barrier, None).await {
            Ok(_) => true,
            Err(e) => {
                info!(dp = %self.dp.id, error = %e, "cannot confirm this control plane is current; keeping the data plane's newer config");
                false
            }
        }
    }

    /// Sends what the DP lacks, if it may have it.
    async fn push(&mut self, tx: &mpsc::Sender<Result<CpMessage, Status>>) -> Result<(), String> {
        // A DP ahead of this CP is taken backwards only when the wait is over *and* this
        // CP proved it is current: a stale follower must never roll DPs back to a config
        // the cluster has moved past (found by the simulator, seeds 38 and 161).
        let mut replace_newer = false;
        if self
            .ahead_since
            .is_some_and(|t| Instant::now() >= t + self.shared.settings.newer_dp_wait)
        {
            if self.confirmed_current().await {
                replace_newer = true;
            } else {
                self.ahead_since = Some(Instant::now());
            }
        }
        let plan = self.shared.reader.with_tail(|m, tail| {
            plan(
                m,
                tail,
                &self.shared.fanout,
                &self.shared.settings,
                &self.dp.plugins,
                self.sent,
                self.need_snapshot,
                replace_newer,
            )
        });
        match plan {
            Plan::UpToDate => {
                self.ahead_since = None;
                self.set_status(SyncStatus::Normal);
            }
            Plan::Hold { problem, version } => {
                self.set_status(problem.sync_status());
                if self.warned_at != Some(version) {
                    warn!("{}", problem.log_line(&self.dp.hostname, self.peer.ip));
                    warn!(dp = %self.dp.id, version, reason = %problem, "holding back config from a data plane");
                    self.warned_at = Some(version);
                }
            }
            Plan::Ahead { cp } => {
                if self.ahead_since.is_none() {
                    info!(dp = %self.dp.id, dp_version = ?self.sent, cp_version = cp, "data plane holds a newer config version than this control plane; waiting for this node to catch up");
                    self.ahead_since = Some(Instant::now());
                }
            }
            Plan::TooBig { bytes, version } => {
                if self.warned_at != Some(version) {
                    error!(dp = %self.dp.id, bytes, max = self.shared.settings.max_payload, "the config is larger than cluster_max_payload and cannot be sent; raise cluster_max_payload on control planes and data planes");
                    self.warned_at = Some(version);
                }
            }
            Plan::Send {
                messages: encoded,
                version,
                snapshot,
            } => {
                let Encoded::Messages {
                    messages,
                    events,
                    bytes,
                } = &*encoded
                else {
                    unreachable!("a Send plan carries messages");
                };
                let (events, bytes) = (*events, *bytes);
                if replace_newer && snapshot.is_some() {
                    warn!(dp = %self.dp.id, hostname = %self.dp.hostname, dp_version = ?self.sent, cp_version = version, "data plane holds a config version this cluster never reached; replacing its config with this cluster's");
                }
                let sending = Instant::now();
                for m in messages {
                    tx.send(Ok(m.clone()))
                        .await
                        .map_err(|_| "the data plane hung up".to_string())?;
                }
                if let Some((entities, encode)) = snapshot {
                    // The send time is the wait for room in the stream's bounded queue: long
                    // when the DP reads slowly. The round trip is logged when it reports.
                    info!(dp = %self.dp.id, hostname = %self.dp.hostname, version, entities, bytes, encode_ms = encode.as_millis() as u64, send_ms = sending.elapsed().as_millis() as u64, "sent a snapshot to a data plane");
                    self.snapshot_in_flight = Some((version, Instant::now(), replace_newer));
                }
                let snapshot = snapshot.is_some();
                debug!(dp = %self.dp.id, version, snapshot, events, bytes, "pushed config");
                self.sent = Some(version);
                self.need_snapshot = false;
                self.ahead_since = None;
                self.counters.snapshots += u64::from(snapshot);
                self.counters.events += events;
                self.counters.bytes += bytes;
                let counters = self.counters;
                self.shared
                    .registry
                    .update(self.dp.id, self.session_id, |r| {
                        r.sent = counters;
                        true
                    });
                self.set_status(SyncStatus::Normal);
            }
        }
        Ok(())
    }
}

/// Decides a push against one state. Pure apart from encoding, which is shared: the
/// first session at a version encodes, the others take the same bytes from `fanout`.
#[allow(clippy::too_many_arguments)]
fn plan(
    m: &Machine,
    tail: &dyn Fn(u64) -> Option<Vec<Event>>,
    fanout: &Fanout,
    settings: &super::SyncSettings,
    dp_plugins: &BTreeMap<String, Version>,
    sent: Option<u64>,
    force_snapshot: bool,
    replace_newer: bool,
) -> Plan {
    let config = &m.config;
    let at = fanout.at(config, &settings.cp_plugins);
    let version = at.version;
    if let Err(problem) = check_plugins(&at.used, dp_plugins) {
        if !crate::planted::skip_plugin_check() {
            return Plan::Hold { problem, version };
        }
    }
    if !force_snapshot {
        match sent {
            Some(s) if s == version => return Plan::UpToDate,
            Some(s) if s > version && !replace_newer => return Plan::Ahead { cp: version },
            Some(s) if s > version => {}
            Some(s) => {
                let max = settings.max_payload;
                if let Some(events) =
                    at.events_since(s, || tail(s).map(|events| encode_events(&events, max)))
                {
                    return send_plan(events, version, None);
                }
            }
            None => {}
        }
    }
    let snapshot = at.snapshot(|| {
        let started = Instant::now();
        let encoded = encode_snapshot_message(
            config.snapshot(),
            version,
            config.hash(),
            settings.max_payload,
        );
        EncodedSnapshot {
            encoded: Arc::new(encoded),
            entities: config.len(),
            encode: started.elapsed(),
        }
    });
    send_plan(
        snapshot.encoded.clone(),
        version,
        Some((snapshot.entities, snapshot.encode)),
    )
}

fn send_plan(encoded: Arc<Encoded>, version: u64, snapshot: Option<(usize, Duration)>) -> Plan {
    match &*encoded {
        Encoded::TooBig { bytes } => Plan::TooBig {
            bytes: *bytes,
            version,
        },
        Encoded::Messages { .. } => Plan::Send {
            messages: encoded,
            version,
            snapshot,
        },
    }
}

/// The snapshot message, or TooBig.
fn encode_snapshot_message(
    snapshot: tidegate_state::Snapshot,
    version: u64,
    hash: ConfigHash,
    max_payload: usize,
) -> Encoded {
    let body = encode_snapshot(&snapshot);
    let m = msg(cp_message::Msg::Snapshot(pb::Snapshot {
        version,
        hash: hash.to_string(),
        compression: pb::Compression::None as i32,
        body,
    }));
    let bytes = m.encoded_len();
    if bytes > max_payload {
        return Encoded::TooBig { bytes };
    }
    Encoded::Messages {
        messages: vec![m],
        events: 0,
        bytes: bytes as u64,
    }
}

/// Events in as few messages as the payload limit allows.
fn encode_events(events: &[Event], max_payload: usize) -> Encoded {
    let budget = max_payload.saturating_sub(FRAME_SLACK);
    let mut messages = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut size = 0;
    let mut total = 0u64;
    for e in events {
        let body = encode_event(e);
        if body.len() > budget {
            return Encoded::TooBig { bytes: body.len() };
        }
        if !batch.is_empty()
            && (size + body.len() > budget || batch.len() >= MAX_EVENTS_PER_MESSAGE)
        {
            let m = msg(cp_message::Msg::Events(pb::Events {
                events: std::mem::take(&mut batch),
            }));
            total += m.encoded_len() as u64;
            messages.push(m);
            size = 0;
        }
        size += body.len() + 8;
        batch.push(body);
    }
    if !batch.is_empty() {
        let m = msg(cp_message::Msg::Events(pb::Events { events: batch }));
        total += m.encoded_len() as u64;
        messages.push(m);
    }
    Encoded::Messages {
        messages,
        events: events.len() as u64,
        bytes: total,
    }
}
