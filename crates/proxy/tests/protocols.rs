//! Websocket upgrades passed through, and gRPC over HTTP/2 (h2c to the client, h2c to a
//! grpc service) with trailers.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn websocket_upgrade_echoes_through() {
    let up = Upstream::start("ws", Mode::Echo).await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:{}\n  routes:\n  - name: r\n    paths: [/ws]\n",
        up.port()
    );
    let h = Harness::start(&doc).await;
    let mut s = TcpStream::connect(h.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
    h.stop().await;
}

/// A body of data frames then trailers, as a gRPC server sends.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

async fn grpc_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let version = format!("{:?}", req.version());
                    let te = req
                        .headers()
                        .get("te")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    trailers.insert("grpc-message", "fine".parse().unwrap());
                    let reply = format!("{path} {version} te={te:?} {}", body.len());
                    let frames = VecDeque::from([
                        Frame::data(Bytes::from(reply)),
                        Frame::trailers(trailers),
                    ]);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .body(Frames(frames))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// An HTTP/2 client with prior knowledge (h2c) on a new connection to `addr`.
async fn h2c(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    s
}

#[tokio::test]
async fn grpc_over_h2c_with_trailers() {
    let addr = grpc_upstream().await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: g\n  url: grpc://127.0.0.1:{}\n  routes:\n  - name: r\n    protocols: [grpc]\n    paths: [/pkg.Greeter/]\n    strip_path: false\n",
        addr.port()
    );
    let h = Harness::start(&doc).await;
    let mut s = h2c(h.h2c).await;
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", h.h2c))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x05hello")))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/grpc"
    );
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers passed through");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("grpc-message").unwrap(), "fine");
    let body = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    assert_eq!(
        body,
        "/pkg.Greeter/SayHello HTTP/2.0 te=Some(\"trailers\") 10"
    );
    h.stop().await;
}

#[tokio::test]
async fn plain_text_grpc_on_a_grpcs_route_gets_grpc_status_1() {
    let doc = "_format_version: \"3.0\"\nservices:\n- name: g\n  url: grpcs://127.0.0.1:1\n  routes:\n  - name: r\n    protocols: [grpcs]\n    paths: [/pkg.Greeter/]\n";
    let h = Harness::start(doc).await;
    let mut s = h2c(h.h2c).await;
    let req = Request::post(format!("http://{}/pkg.Greeter/SayHello", h.h2c))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("grpc-status").unwrap(), "1");
    assert_eq!(
        resp.headers().get("grpc-message").unwrap(),
        "gRPC request matched gRPCs route"
    );
    h.stop().await;
}

/// Errors on gRPC requests are gRPC-shaped, as Kong's `kong.response` sends them: the
/// HTTP status kept, `grpc-status` mapped from it, `grpc-message`, no JSON body.
#[tokio::test]
async fn errors_on_grpc_requests_carry_grpc_status_not_json() {
    let dead = closed_port().await;
    let doc = format!(
        "_format_version: \"3.0\"\nservices:\n- name: g\n  url: grpc://127.0.0.1:{dead}\n  routes:\n  - name: r\n    protocols: [grpc]\n    paths: [/pkg.Greeter/]\n    strip_path: false\n  - name: locked\n    protocols: [grpc]\n    paths: [/pkg.Locked/]\n    plugins:\n    - name: key-auth\n  - name: gone\n    protocols: [grpc]\n    paths: [/pkg.Gone/]\n    plugins:\n    - name: request-termination\n      config:\n        status_code: 403\n        message: closed for today\n"
    );
    let h = Harness::start(&doc).await;
    let mut s = h2c(h.h2c).await;
    let cases = [
        ("/pkg.Greeter/SayHello", 502, "13", "Internal"),
        ("/nowhere/Call", 404, "5", "NotFound"),
        ("/pkg.Locked/Call", 401, "16", "Unauthenticated"),
        ("/pkg.Gone/Call", 403, "7", "closed for today"),
    ];
    for (path, status, code, message) in cases {
        let req = Request::post(format!("http://{}{path}", h.h2c))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\x05hello")))
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let h = resp.headers();
        assert_eq!(h.get("content-type").unwrap(), "application/grpc", "{path}");
        assert_eq!(h.get("grpc-status").unwrap(), code, "{path}");
        assert_eq!(h.get("grpc-message").unwrap(), message, "{path}");
        assert_eq!(h.get("x-tidegate-request-id").map(|v| v.len()), Some(32));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{path}: no JSON body, got {body:?}");
    }
    h.stop().await;
}
