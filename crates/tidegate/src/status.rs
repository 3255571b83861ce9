//! `status_listen`: Kong's `/status` (with `configuration_hash`) and `/status/ready`, and
//! `/metrics` in Prometheus text format, for load balancers, orchestrators and
//! operators. A DP reports its config and sync; a CP its Raft state and its DPs;
//! `traditional` both.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tidegate_cp::node::RaftNode;
use tidegate_cp::Backend;
use tidegate_dp::sync::{Current, SyncStatus};
use tokio::sync::watch;
use tracing::debug;

use crate::start::SystemClock;

/// Connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

/// The DP side: the config it serves and its sync client's state.
#[derive(Clone)]
pub struct DpSources {
    pub config: watch::Receiver<Arc<Current>>,
    pub status: watch::Receiver<SyncStatus>,
    /// Unix seconds of the last config swap (or of start-up).
    pub changed_at: Arc<AtomicI64>,
    /// The proxy's requests, latencies and target health, once it runs (it starts
    /// after the status listener).
    pub proxy: Arc<std::sync::OnceLock<tidegate_proxy::ProxyStats>>,
}

impl DpSources {
    /// Also starts the task that notes when the config changes.
    pub fn new(config: watch::Receiver<Arc<Current>>, status: watch::Receiver<SyncStatus>) -> Self {
        let changed_at = Arc::new(AtomicI64::new(SystemClock.now()));
        let mut rx = config.clone();
        let at = changed_at.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                at.store(SystemClock.now(), Ordering::Relaxed);
            }
        });
        DpSources {
            config,
            status,
            changed_at,
            proxy: Arc::default(),
        }
    }
}

#[derive(Clone, Default)]
pub struct Sources {
    pub dp: Option<DpSources>,
    pub cp: Option<Arc<RaftNode>>,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a static response builds")
}

fn json_reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    reply(code, "application/json; charset=utf-8", body.to_string())
}

async fn status(sources: &Sources) -> Value {
    let mut out = json!({});
    if let Some(dp) = &sources.dp {
        let config = dp.config.borrow().clone();
        let sync = dp.status.borrow().clone();
        out["configuration_hash"] = json!(config.state.hash().to_string());
        out["config_version"] = json!(config.state.version());
        out["entities"] = json!(config.state.len());
        out["from_control_plane"] = json!(config.from_cluster);
        out["control_plane"] = json!({
            "connected_to": sync.connected_to,
            "last_error": sync.last_error,
            "rejected": sync.rejected.as_ref().map(|(s, r)| json!({"sync_status": s, "reason": r})),
        });
    }
    if let Some(cp) = &sources.cp {
        let c = cp.cluster_status().await;
        out.as_object_mut()
            .expect("an object")
            .entry("configuration_hash")
            .or_insert(json!(c.config_hash));
        out["raft"] = json!({
            "node_id": c.node_id,
            "leader": c.leader,
            "term": c.term,
            "last_applied": c.last_applied,
            "config_version": c.config_version,
            "healthy": cp.health().is_ok(),
        });
    }
    out
}

/// Ready: a DP once it holds a config (an empty one from nowhere is not one, as in Kong);
/// a CP while its Raft runs and knows a leader.
fn ready(sources: &Sources) -> Result<(), String> {
    if let Some(dp) = &sources.dp {
        let c = dp.config.borrow();
        if !c.from_cluster && c.state.is_empty() {
            return Err("no configuration available (empty configuration present)".into());
        }
    }
    if let Some(cp) = &sources.cp {
        cp.health()?;
        if cp.raft().metrics().borrow().current_leader.is_none() {
            return Err("no control plane leader is known".into());
        }
    }
    Ok(())
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A label value escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(sources: &Sources) -> String {
    let mut out = String::new();
    if let Some(dp) = &sources.dp {
        let config = dp.config.borrow().clone();
        let sync = dp.status.borrow().clone();
        let one = |v: f64| vec![(String::new(), v)];
        gauge(
            &mut out,
            "tidegate_dp_config_version",
            "Config version this data plane serves.",
            &one(config.state.version() as f64),
        );
        gauge(
            &mut out,
            "tidegate_dp_config_entities",
            "Entities in the served config.",
            &one(config.state.len() as f64),
        );
        gauge(
            &mut out,
            "tidegate_dp_seconds_since_config_change",
            "Seconds since the served config last changed (or since start).",
            &one((SystemClock.now() - dp.changed_at.load(Ordering::Relaxed)) as f64),
        );
        gauge(
            &mut out,
            "tidegate_dp_control_plane_connected",
            "1 while a control plane stream is open.",
            &one(f64::from(u8::from(sync.connected_to.is_some()))),
        );
        let rejected = sync
            .rejected
            .map(|(s, _)| vec![(format!("{{sync_status=\"{}\"}}", label(&s)), 1.0)])
            .unwrap_or_default();
        gauge(
            &mut out,
            "tidegate_dp_rejected",
            "1 when the last control plane refused this data plane.",
            &rejected,
        );
        if let Some(proxy) = dp.proxy.get() {
            out.push_str(&proxy.render());
        }
    }
    if let Some(cp) = &sources.cp {
        cp_metrics(&mut out, cp).await;
    }
    out
}

async fn cp_metrics(out: &mut String, cp: &RaftNode) {
    let c = cp.cluster_status().await;
    let m = cp.raft().metrics().borrow().clone();
    let one = |v: f64| vec![(String::new(), v)];
    gauge(
        out,
        "tidegate_raft_leader",
        "1 on the Raft leader.",
        &one(f64::from(u8::from(c.leader == Some(c.node_id)))),
    );
    gauge(
        out,
        "tidegate_raft_term",
        "Current Raft term.",
        &one(c.term as f64),
    );
    gauge(
        out,
        "tidegate_raft_last_log_index",
        "Last index in this node's Raft log.",
        &one(m.last_log_index.unwrap_or(0) as f64),
    );
    gauge(
        out,
        "tidegate_raft_last_applied_index",
        "Last Raft index applied to this node's state machine.",
        &one(c.last_applied.unwrap_or(0) as f64),
    );
    gauge(
        out,
        "tidegate_raft_members",
        "Control planes in the Raft membership.",
        &one(c.members.len() as f64),
    );
    gauge(
        out,
        "tidegate_cp_config_version",
        "Config version of this control plane.",
        &one(c.config_version as f64),
    );
    let now = cp.now_unix();
    let (by_status, lag) = cp.read(|mach| {
        let mut by_status = std::collections::BTreeMap::<(String, bool), u64>::new();
        let mut lag = Vec::new();
        for r in mach.data_planes.iter() {
            let connected =
                r.connected && now - r.last_seen <= tidegate_cp::sync::STALE_AFTER.as_secs() as i64;
            *by_status
                .entry((r.sync_status.clone(), connected))
                .or_default() += 1;
            if connected {
                let behind = c
                    .config_version
                    .saturating_sub(r.config_version.unwrap_or(0));
                lag.push((
                    format!("{{id=\"{}\",hostname=\"{}\"}}", r.id, label(&r.hostname)),
                    behind as f64,
                ));
            }
        }
        (by_status, lag)
    });
    let by_status: Vec<(String, f64)> = by_status
        .into_iter()
        .map(|((s, connected), n)| {
            (
                format!(
                    "{{sync_status=\"{}\",connected=\"{connected}\"}}",
                    label(&s)
                ),
                n as f64,
            )
        })
        .collect();
    gauge(
        out,
        "tidegate_cp_data_planes",
        "Data planes known to the cluster, by sync_status and whether connected.",
        &by_status,
    );
    gauge(
        out,
        "tidegate_cp_data_plane_lag_versions",
        "Config versions a connected data plane is behind this control plane.",
        &lag,
    );
}

async fn answer(path: &str, sources: &Sources) -> Response<Full<Bytes>> {
    match path {
        "/status" => json_reply(StatusCode::OK, status(sources).await),
        "/status/ready" => match ready(sources) {
            Ok(()) => json_reply(StatusCode::OK, json!({"message": "ready"})),
            Err(why) => json_reply(StatusCode::SERVICE_UNAVAILABLE, json!({"message": why})),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(sources).await,
        ),
        _ => json_reply(StatusCode::NOT_FOUND, json!({"message": "Not found"})),
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => return,
        };
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "status accept failed"); continue; }
            },
            () = &mut shutdown => return,
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(answer(req.uri().path(), &sources).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
