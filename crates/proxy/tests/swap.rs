//! Config swaps: requests in flight finish on the config they started with, and a swap
//! under load drops nothing. Also: upstream connections are kept alive and reused.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::net::TcpStream;
use tokio::sync::Notify;

fn to(up: &Upstream, path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [\"{path}\"]\n",
        up.port()
    )
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_its_config() {
    let gate = Arc::new(Notify::new());
    let old = Upstream::start("old", Mode::Gate(gate.clone())).await;
    let new = Upstream::start("new", Mode::Echo).await;
    let mut h = Harness::start(&to(&old, "/")).await;
    let addr = h.http;
    let in_flight = tokio::spawn(async move { send(addr, get("x", "/")).await });
    wait_until(
        Duration::from_secs(5),
        "request reached the old upstream",
        || async { old.hits.load(Ordering::SeqCst) == 1 },
    )
    .await;
    h.load(&to(&new, "/")).await;
    let r = send(h.http, get("x", "/")).await;
    assert_eq!(
        r.header("x-upstream"),
        Some("new"),
        "new requests use the new config"
    );
    gate.notify_one();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-upstream"),
        Some("old"),
        "the old request finished where it started"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_load_drop_nothing() {
    let a = Upstream::start("a", Mode::Echo).await;
    let b = Upstream::start("b", Mode::Echo).await;
    let mut h = Harness::start(&to(&a, "/")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (addr, stop, ok) = (h.http, stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            // One keep-alive connection per client, as a load generator would.
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut bad = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let resp = s
                    .send_request(get("x", "/"))
                    .await
                    .expect("no dropped request");
                let r = collect(resp).await;
                match (r.status, r.header("x-upstream")) {
                    (200, Some("a" | "b")) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => bad.push(format!("{other:?}")),
                }
            }
            bad
        }));
    }
    // 20 swaps between two configs, each waited for, while the clients run.
    for i in 0..20 {
        let target = if i % 2 == 0 { &b } else { &a };
        h.load(&to(target, "/")).await;
        let floor = ok.load(Ordering::SeqCst) + 8;
        wait_until(
            Duration::from_secs(5),
            "traffic flows after a swap",
            || async { ok.load(Ordering::SeqCst) >= floor },
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let bad = c.await.unwrap();
        assert!(bad.is_empty(), "responses from neither config: {bad:?}");
    }
    assert!(ok.load(Ordering::SeqCst) > 160);
    assert!(a.hits.load(Ordering::SeqCst) > 0 && b.hits.load(Ordering::SeqCst) > 0);
    h.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let up = Upstream::start("u", Mode::Echo).await;
    let h = Harness::start(&to(&up, "/")).await;
    for _ in 0..20 {
        assert_eq!(send(h.http, get("x", "/")).await.status, 200);
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 20);
    // The connection returns to the pool just after the response ends, so a request
    // racing that return may open a second one; never one per request.
    assert!(
        up.conns.load(Ordering::SeqCst) <= 2,
        "pooled: {} connections",
        up.conns.load(Ordering::SeqCst)
    );
    h.stop().await;
}

/// A connection whose response was chunked goes back to the pool too: its end shows
/// only as the body's last frame, not as a length run out.
#[tokio::test]
async fn connections_with_chunked_responses_are_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head, one chunked answer, as long as the peer keeps the
                    // connection.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{port}\n  routes:\n  - name: r\n    paths: [\"/\"]\n"
    );
    let h = Harness::start(&doc).await;
    for _ in 0..20 {
        let r = send(h.http, get("x", "/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"hello world");
    }
    // As for other bodies, a request racing the return may open a second connection;
    // never one per request.
    let n = conns.load(Ordering::SeqCst);
    assert!(n <= 2, "pooled: {n} connections for 20 chunked responses");
    server.abort();
    h.stop().await;
}
