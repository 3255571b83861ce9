//! A quick in-process load check: N keep-alive HTTP/1.1 clients for a fixed time, first
//! straight to an in-process upstream, then through the proxy; prints RPS and p50/p99.
//! Not the benchmark kit (that compares with nginx); a sanity number for the proxy path.
//!
//! `cargo run --release -p tidegate-proxy --example loadgen [clients] [seconds]`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_proxy::{Bound, Proxy, ProxyOptions};
use tidegate_state::{Command, ConfigState, Machine, Op};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"hello world",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn load(addr: SocketAddr, clients: usize, secs: u64) -> (f64, Duration, Duration) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let _ = tcp.set_nodelay(true);
            let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            while Instant::now() < end {
                let req = Request::get("/bench")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let resp = s.send_request(req).await.unwrap();
                assert!(resp.status().is_success());
                resp.into_body().collect().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    (n as f64 / secs as f64, all[n / 2], all[n * 99 / 100])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let up = upstream().await;
        let doc = format!(
            "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://{up}\n  routes:\n  - name: r\n    paths: [/bench]\n    strip_path: false\n"
        );
        let parsed = declarative::parse(&doc, ParseOptions { now: 0, entropy: 0 }).unwrap();
        let mut m = Machine::new();
        let cmd = Command {
            request_id: uuid::Uuid::from_u128(1),
            fixed: tidegate_model::Fixed { id: uuid::Uuid::from_u128(2), now: 0, entropy: 0 },
            op: Op::Import { entities: parsed.entities },
        };
        m.execute(&cmd).0.unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(m.config.clone()));
        let proxy = Arc::new(
            Proxy::start(rx, |s: &Arc<ConfigState>| s.clone(), ProxyOptions::default()).await.unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let p = proxy.clone();
        tokio::spawn(async move {
            p.serve(vec![Bound { listener: l, ssl: false, http2: false }], std::future::pending())
                .await
                .unwrap();
        });
        for (what, target) in [("direct ", up), ("proxied", addr)] {
            let (rps, p50, p99) = load(target, clients, secs).await;
            println!("{what}: {clients} clients, {rps:>9.0} req/s, p50 {p50:?}, p99 {p99:?}");
        }
    });
}
