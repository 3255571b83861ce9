//! Active health checks: a task per balancer probes its targets at Kong's intervals
//! (`healthy.interval` for healthy targets, `unhealthy.interval` for unhealthy ones; 0
//! disables) and feeds the results to the same counters passive checks use. The task
//! holds a weak reference and ends when a new config drops the balancer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsConnector;

use super::{Balancer, Outcome};

/// The shortest probe interval we honour, whatever the config says.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Starts the probes of `b` if its upstream enables them and they are not running yet.
pub(crate) fn spawn_active_checks(b: &Arc<Balancer>) {
    let a = &b.upstream.healthchecks.active;
    let secs = |s: f64| (s > 0.0).then(|| Duration::from_secs_f64(s).max(MIN_INTERVAL));
    let (healthy_every, unhealthy_every) = (secs(a.healthy.interval), secs(a.unhealthy.interval));
    if (healthy_every.is_none() && unhealthy_every.is_none()) || b.targets.is_empty() {
        return;
    }
    if b.checks_started
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        b.checks_started
            .store(false, std::sync::atomic::Ordering::SeqCst);
        return;
    };
    let tick = [healthy_every, unhealthy_every]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MIN_INTERVAL);
    handle.spawn(run(Arc::downgrade(b), tick, healthy_every, unhealthy_every));
}

async fn run(
    weak: Weak<Balancer>,
    tick: Duration,
    healthy_every: Option<Duration>,
    unhealthy_every: Option<Duration>,
) {
    let start = Instant::now();
    let (mut last_healthy, mut last_unhealthy) = (start, start);
    loop {
        tokio::time::sleep(tick).await;
        let Some(b) = weak.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due = |every: Option<Duration>, last: Instant| every.is_some_and(|e| now - last >= e);
        let (probe_healthy, probe_unhealthy) = (
            due(healthy_every, last_healthy),
            due(unhealthy_every, last_unhealthy),
        );
        if probe_healthy {
            last_healthy = now;
        }
        if probe_unhealthy {
            last_unhealthy = now;
        }
        let a = &b.upstream.healthchecks.active;
        let limit = usize::try_from(a.concurrency).unwrap_or(1).max(1);
        let probe_timeout = Duration::from_secs_f64(a.timeout.max(0.001));
        let mut set = JoinSet::new();
        for i in 0..b.targets.len() {
            let healthy = b.is_healthy(i);
            if !((healthy && probe_healthy) || (!healthy && probe_unhealthy)) {
                continue;
            }
            while set.len() >= limit {
                if let Some(Ok((i, o))) = set.join_next().await {
                    b.report_active(i, o);
                }
            }
            let t = &b.targets[i];
            let (host, port) = (t.host.clone(), t.port);
            let path = a.http_path.clone();
            let kind = probe_kind(&a.kind);
            let sni = a.https_sni.clone();
            set.spawn(async move {
                let o = probe(&host, port, &path, kind, sni.as_deref(), probe_timeout).await;
                (i, o)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((i, o)) = r {
                b.report_active(i, o);
            }
        }
    }
}

/// What a probe does, from the check's `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `tcp`, and `grpc`/`grpcs` (whose gRPC health protocol is not implemented): a
    /// connection that opens counts as a success.
    Connect,
    Http,
    /// TLS without certificate verification (`https_verify_certificate` is not
    /// honoured yet), SNI `https_sni` or the target host.
    Https,
}

fn probe_kind(kind: &str) -> Probe {
    match kind {
        "http" => Probe::Http,
        "https" => Probe::Https,
        _ => Probe::Connect,
    }
}

/// One probe: connect, and for http(s) checks `GET http_path` and read the status.
async fn probe(
    host: &str,
    port: u16,
    path: &str,
    kind: Probe,
    sni: Option<&str>,
    limit: Duration,
) -> Outcome {
    let tcp = match timeout(limit, TcpStream::connect((host, port))).await {
        Err(_) => return Outcome::Timeout,
        Ok(Err(_)) => return Outcome::TcpFailure,
        Ok(Ok(s)) => s,
    };
    match kind {
        // 200 is in Kong's default `healthy.http_statuses`.
        Probe::Connect => Outcome::Status(200),
        Probe::Http => http_status(tcp, host, port, path, limit).await,
        Probe::Https => {
            let spec = crate::tls::ClientTls {
                verify: false,
                cas: Vec::new(),
                client_cert: None,
                h2: false,
            };
            let (Ok(config), Ok(name)) = (
                crate::tls::client_config(&spec, None),
                crate::tls::server_name(sni.unwrap_or(host)),
            ) else {
                return Outcome::TcpFailure;
            };
            match timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
                Err(_) => Outcome::Timeout,
                Ok(Err(_)) => Outcome::TcpFailure,
                Ok(Ok(tls)) => http_status(tls, host, port, path, limit).await,
            }
        }
    }
}

async fn http_status<I>(io: I, host: &str, port: u16, path: &str, limit: Duration) -> Outcome
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let exchange = async {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let host_header = if port == 80 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let req = Request::get(path)
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::USER_AGENT, crate::USER_AGENT)
            .body(Empty::new());
        // An unusable `http_path` counts as neither success nor failure.
        let Ok(req) = req else { return Ok(0) };
        send.send_request(req).await.map(|r| r.status().as_u16())
    };
    match timeout(limit, exchange).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(_)) => Outcome::TcpFailure,
        Ok(Ok(status)) => Outcome::Status(status),
    }
}
