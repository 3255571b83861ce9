//! Fixtures: configs built through `Machine` with `Op::Import`, a proxy on
//! 127.0.0.1:0, in-process upstream servers, and a small client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_proxy::{Bound, Proxy, ProxyOptions};
use tidegate_state::{Command, ConfigState, Machine, Op};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

// === config ===

pub struct Configs {
    machine: Machine,
    n: u128,
    pub tx: watch::Sender<Arc<ConfigState>>,
}

impl Configs {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(ConfigState::new()));
        Configs {
            machine: Machine::new(),
            n: 0,
            tx,
        }
    }

    /// Replaces the whole config with a declarative document (YAML or JSON) and
    /// publishes it. Returns the new version.
    pub fn import(&mut self, doc: &str) -> u64 {
        self.n += 1;
        let parsed = declarative::parse(
            doc,
            ParseOptions {
                now: 1_700_000_000 + self.n as i64,
                entropy: self.n,
            },
        )
        .unwrap_or_else(|e| panic!("bad test config: {e:?}"));
        let cmd = Command {
            request_id: Uuid::from_u128(self.n),
            fixed: tidegate_model::Fixed {
                id: Uuid::from_u128(0xf000 + self.n),
                now: 1_700_000_000 + self.n as i64,
                entropy: self.n,
            },
            op: Op::Import {
                entities: parsed.entities,
            },
        };
        let (outcome, _) = self.machine.execute(&cmd);
        outcome.unwrap_or_else(|e| panic!("import refused: {e:?}"));
        let state = Arc::new(self.machine.config.clone());
        let v = state.version();
        self.tx.send_replace(state);
        v
    }
}

// === proxy ===

pub struct Harness {
    pub proxy: Arc<Proxy>,
    pub http: SocketAddr,
    pub h2c: SocketAddr,
    pub https: SocketAddr,
    pub configs: Configs,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(doc: &str) -> Harness {
        Self::with_options(doc, ProxyOptions::default()).await
    }

    pub async fn with_options(doc: &str, options: ProxyOptions) -> Harness {
        let mut configs = Configs::new();
        configs.import(doc);
        let proxy = Arc::new(
            Proxy::start(
                configs.tx.subscribe(),
                |s: &Arc<ConfigState>| s.clone(),
                options,
            )
            .await
            .expect("proxy starts"),
        );
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (http, h2c, https) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let addrs = (
            http.local_addr().unwrap(),
            h2c.local_addr().unwrap(),
            https.local_addr().unwrap(),
        );
        let listeners = vec![
            Bound {
                listener: http,
                ssl: false,
                http2: false,
            },
            Bound {
                listener: h2c,
                ssl: false,
                http2: true,
            },
            Bound {
                listener: https,
                ssl: true,
                http2: true,
            },
        ];
        let stop = Arc::new(Notify::new());
        let (p, s) = (proxy.clone(), stop.clone());
        let task = tokio::spawn(async move {
            p.serve(listeners, async move { s.notified().await })
                .await
                .expect("serve");
        });
        Harness {
            proxy,
            http: addrs.0,
            h2c: addrs.1,
            https: addrs.2,
            configs,
            stop,
            task,
        }
    }

    /// Imports `doc` and waits until the proxy serves it.
    pub async fn load(&mut self, doc: &str) {
        let v = self.configs.import(doc);
        let mut served = self.proxy.served_version();
        tokio::time::timeout(Duration::from_secs(10), served.wait_for(|s| *s >= v))
            .await
            .expect("config served within 10 s")
            .expect("proxy alive");
    }

    pub async fn stop(self) {
        self.stop.notify_one();
        self.task.await.unwrap();
    }
}

// === upstream servers ===

/// What an upstream does with a request.
#[derive(Clone)]
pub enum Mode {
    /// Answers 200 with a JSON echo of the request.
    Echo,
    /// Accepts and never answers.
    Hang,
    /// Waits for the notify, then echoes.
    Gate(Arc<Notify>),
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// `/status` answers 200 while true, 500 otherwise.
    pub healthy: Arc<AtomicBool>,
}

impl Upstream {
    pub async fn start(name: &str, mode: Mode) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(AtomicUsize::new(0));
        let (n, h, ok, c) = (
            name.to_string(),
            hits.clone(),
            healthy.clone(),
            conns.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, h, ok, mode) = (n.clone(), h.clone(), ok.clone(), mode.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (n, h, ok, mode) = (n.clone(), h.clone(), ok.clone(), mode.clone());
                        async move { upstream_answer(&n, &h, &ok, &mode, req).await }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            hits,
            conns,
            healthy,
        }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn upstream_answer(
    name: &str,
    hits: &AtomicUsize,
    healthy: &AtomicBool,
    mode: &Mode,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/status" {
        let s = if healthy.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Ok(Response::builder()
            .status(s)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::SeqCst);
    match mode {
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Gate(n) => n.notified().await,
        Mode::Echo => {}
    }
    if req.headers().contains_key(hyper::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_insert_with(Vec::new)
            .push(v.to_str().unwrap_or("").to_string());
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let echo = json!({
        "name": name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(echo.to_string())))
        .unwrap())
}

// === client ===

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The upstream's echo of the request header `name` (first value).
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_string)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request over a new HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    send_on(tcp, req).await
}

pub async fn send_on<I>(io: I, req: Request<Full<Bytes>>) -> Reply
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(s.send_request(req).await.expect("proxy answers")).await
}

pub async fn collect(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    let mut b = Request::get(path);
    if !host.is_empty() {
        b = b.header("host", host);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Polls `cond` every 10 ms until it holds; panics after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
