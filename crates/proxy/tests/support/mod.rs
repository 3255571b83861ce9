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
    /// An HTTP/1.1 listener on `[::1]`, when started with [`Harness::with_ipv6`].
    pub http6: Option<SocketAddr>,
    pub configs: Configs,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(doc: &str) -> Harness {
        Self::with_options(doc, ProxyOptions::default()).await
    }

    pub async fn with_options(doc: &str, options: ProxyOptions) -> Harness {
        Self::launch(doc, options, false).await
    }

    /// Also listens on `[::1]` (plain HTTP/1.1), for clients with an IPv6 address.
    pub async fn with_ipv6(doc: &str) -> Harness {
        Self::launch(doc, ProxyOptions::default(), true).await
    }

    async fn launch(doc: &str, options: ProxyOptions, ipv6: bool) -> Harness {
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
        let http6 = if ipv6 {
            Some(
                TcpListener::bind("[::1]:0")
                    .await
                    .expect("an IPv6 loopback"),
            )
        } else {
            None
        };
        let http6_addr = http6.as_ref().map(|l| l.local_addr().unwrap());
        let mut listeners = vec![
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
        if let Some(listener) = http6 {
            listeners.push(Bound {
                listener,
                ssl: false,
                http2: false,
            });
        }
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
            http6: http6_addr,
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
    /// Answers 200 with these headers and this body, whatever the request.
    Reply {
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
    },
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
        Mode::Reply { headers, body } => {
            let mut b = Response::builder();
            for (k, v) in *headers {
                b = b.header(*k, *v);
            }
            return Ok(b
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap());
        }
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

/// One request with any body (a streamed one goes out chunked) over a new HTTP/1.1
/// connection.
pub async fn send_body<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(s.send_request(req).await.expect("proxy answers")).await
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

// === redis ===

/// A `redis-server` child process on a free loopback port, with no persistence; killed
/// (and reaped) when dropped, so a failing test leaves no server behind.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one with `extra` settings (`["--requirepass", "x"]`) and waits until it
    /// answers PING.
    pub async fn start(extra: &[&str]) -> RedisServer {
        // A free port may be taken between the check and redis binding it: then the
        // server exits at once and another port is tried.
        for _ in 0..10 {
            let port = closed_port().await;
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (Debian: apt-get install -y redis-server)");
            let mut server = RedisServer {
                port,
                child: Some(child),
            };
            if server.wait_ready().await {
                return server;
            }
            server.stop();
        }
        panic!("redis-server did not start on any of 10 ports");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
            if exited {
                return false;
            }
            // PING before AUTH is refused with NOAUTH: an answer all the same.
            if let Ok(r) = redis_command(self.port, &[], &["PING"]).await {
                if r == "PONG" || r.starts_with("ERR NOAUTH") || r.starts_with("NOAUTH") {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command after `login` commands (AUTH, SELECT), on a new connection; the
    /// reply as text (`nil` for a null bulk string, errors as their message).
    pub async fn command(&self, login: &[&[&str]], args: &[&str]) -> String {
        redis_command(self.port, login, args)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `login` commands then `args` to 127.0.0.1:`port`; returns the last reply.
async fn redis_command(port: u16, login: &[&[&str]], args: &[&str]) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut out = Vec::new();
    for cmd in login.iter().copied().chain([args]) {
        out.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
        for a in cmd {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    s.write_all(&out).await?;
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    while replies.len() < login.len() + 1 {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("redis did not answer"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Simple replies, integers and bulk strings are all this needs to read.
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[1..end]).to_string();
            let (reply, used) = match buf[0] {
                b'$' => {
                    let len: i64 = line.parse().unwrap_or(-1);
                    if len < 0 {
                        ("nil".to_string(), end + 2)
                    } else if buf.len() >= end + 2 + len as usize + 2 {
                        let start = end + 2;
                        (
                            String::from_utf8_lossy(&buf[start..start + len as usize]).to_string(),
                            start + len as usize + 2,
                        )
                    } else {
                        break;
                    }
                }
                _ => (line, end + 2),
            };
            buf.drain(..used);
            replies.push(reply);
        }
    }
    Ok(replies.pop().unwrap_or_default())
}

/// A TCP listener that accepts connections and never answers (a hung server).
pub async fn silent_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}
