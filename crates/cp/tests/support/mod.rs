//! The harness of the Admin API tests: an in-process backend (a `Machine` behind a
//! mutex that executes each Op as a Command with ids and times from a counter, so every
//! id and timestamp in a body is known in advance) and a raw HTTP/1.1 client.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tidegate_cp::admin::serve;
use tidegate_cp::{
    Backend, ClusterMember, ClusterStatus, MemberChangeError, NodeInfo, WriteError, WriteOk,
};
use tidegate_model::{EntityKind, Fixed};
use tidegate_state::{Command, Machine, Op};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const T0: i64 = 1_700_000_000;
pub const VERSION: &str = "0.1.0-test";

// === the test backend ===

/// Holds a write until the test releases it, and says when the write arrived.
pub struct Gate {
    pub arrived: oneshot::Sender<()>,
    pub release: oneshot::Receiver<()>,
}

#[derive(Default)]
pub struct TestBackend {
    pub machine: Mutex<Machine>,
    /// Fixed ids and times: the n-th write gets id n and time T0 + n.
    pub writes: AtomicU64,
    pub entropy_calls: AtomicU64,
    pub fail_next: Mutex<Option<WriteError>>,
    pub gate: Mutex<Option<Gate>>,
    pub member_error: Mutex<Option<MemberChangeError>>,
    pub member_calls: Mutex<Vec<String>>,
    /// The node's `plugins` setting; None: every bundled plugin.
    pub enabled_plugins: Mutex<Option<Vec<String>>>,
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

impl TestBackend {
    pub fn count(&self, kind: EntityKind) -> usize {
        self.read(|m| m.config.count(kind))
    }

    pub fn canned_status(&self, extra: Option<(u64, String)>) -> ClusterStatus {
        let (version, hash) = self.read(|m| (m.config.version(), m.config.hash().to_hex()));
        let mut members = vec![ClusterMember {
            id: 1,
            address: "127.0.0.1:8007".into(),
            kind: "voter".into(),
            leader: true,
            reachable: Some(true),
            matched_index: Some(7),
        }];
        if let Some((id, address)) = extra {
            members.push(ClusterMember {
                id,
                address,
                kind: "learner".into(),
                leader: false,
                reachable: None,
                matched_index: None,
            });
        }
        ClusterStatus {
            node_id: 1,
            leader: Some(1),
            term: 3,
            last_applied: Some(7),
            config_version: version,
            config_hash: hash,
            members,
        }
    }
}

impl Backend for TestBackend {
    async fn write(&self, op: Op, request_id: Option<Uuid>) -> Result<WriteOk, WriteError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.arrived.send(());
            let _ = gate.release.await;
        }
        let failure = self.fail_next.lock().unwrap().take();
        if let Some(e) = failure {
            return Err(e);
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let cmd = Command {
            request_id: request_id.unwrap_or(Uuid::from_u128((1 << 64) + n as u128)),
            fixed: Fixed {
                id: id(n as u128),
                now: T0 + n as i64,
                entropy: n as u128,
            },
            op,
        };
        let (outcome, _) = self.machine.lock().unwrap().execute(&cmd);
        Ok(WriteOk { outcome })
    }

    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T {
        f(&self.machine.lock().unwrap())
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            node_id: id(0xc0ffee),
            hostname: "cp-test".into(),
            role: "control_plane".into(),
            tidegate_version: VERSION.into(),
            admin_listen: vec!["127.0.0.1:8001".into()],
        }
    }

    fn now_unix(&self) -> i64 {
        T0
    }

    fn enabled_plugins(&self) -> Option<Vec<String>> {
        self.enabled_plugins.lock().unwrap().clone()
    }

    /// A counter, so generated ids are known in advance: 0xe0000 + n for the n-th call.
    fn entropy(&self) -> u128 {
        0xe0000 + u128::from(self.entropy_calls.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn cluster_status(&self) -> ClusterStatus {
        self.canned_status(None)
    }

    async fn add_member(
        &self,
        id: u64,
        address: String,
    ) -> Result<ClusterStatus, MemberChangeError> {
        self.member_calls
            .lock()
            .unwrap()
            .push(format!("add {id} {address}"));
        let err = self.member_error.lock().unwrap().take();
        match err {
            Some(e) => Err(e),
            None => Ok(self.canned_status(Some((id, address)))),
        }
    }

    async fn remove_member(&self, id: u64) -> Result<ClusterStatus, MemberChangeError> {
        self.member_calls
            .lock()
            .unwrap()
            .push(format!("remove {id}"));
        let err = self.member_error.lock().unwrap().take();
        match err {
            Some(e) => Err(e),
            None => Ok(self.canned_status(None)),
        }
    }
}

// === the server and a raw HTTP/1.1 client ===

pub struct Server {
    pub addr: SocketAddr,
    pub backend: Arc<TestBackend>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Status and body together, so a failure shows both.
    pub fn sj(&self) -> (u16, Value) {
        (self.status, self.json())
    }
}

pub async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(TestBackend::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, backend.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        backend,
        stop: Some(stop),
        task,
    }
}

/// A server that stops answering fails the test instead of hanging it.
pub const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends raw bytes on a fresh connection and reads the response to EOF.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    send_raw_within(addr, bytes, CALL_DEADLINE).await
}

/// [`send_raw`] with a deadline of its own, for requests known to be slow.
pub async fn send_raw_within(
    addr: SocketAddr,
    bytes: &[u8],
    deadline: std::time::Duration,
) -> Resp {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(deadline, exchange)
        .await
        .expect("no response within the deadline");
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        body.truncate(len.parse().unwrap());
    }
    let resp = Resp {
        status,
        headers,
        body,
    };
    // Every response, errors included, carries these.
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{resp:?}"
    );
    assert_eq!(
        resp.header("server"),
        Some(format!("tidegate/{VERSION}").as_str())
    );
    resp
}

impl Server {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        self.call_within(method, path, headers, body, CALL_DEADLINE)
            .await
    }

    pub async fn call_within(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        deadline: std::time::Duration,
    ) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        send_raw_within(self.addr, &bytes, deadline).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, &[], None).await
    }

    /// A JSON body, sent as `application/json`.
    pub async fn send(&self, method: &str, path: &str, body: Value) -> Resp {
        let text = body.to_string();
        self.call(
            method,
            path,
            &[("Content-Type", "application/json")],
            Some(text.as_bytes()),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, body).await
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

pub fn not_found() -> (u16, Value) {
    (404, json!({"message": "Not found"}))
}

/// The full body of a service created from `{"name": name, "host": host}` by write `n`.
pub fn service_body(n: u128, name: &str, host: &str) -> Value {
    json!({
        "id": id(n), "created_at": T0 + n as i64, "updated_at": T0 + n as i64,
        "name": name, "retries": 5, "protocol": "http", "host": host, "port": 80,
        "path": null, "connect_timeout": 60000, "write_timeout": 60000,
        "read_timeout": 60000, "tags": null, "client_certificate": null,
        "tls_verify": null, "tls_verify_depth": null, "ca_certificates": null,
        "enabled": true,
    })
}

impl Server {
    /// A form body, sent as `application/x-www-form-urlencoded`.
    pub async fn form(&self, method: &str, path: &str, body: &str) -> Resp {
        self.call(
            method,
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
        .await
    }

    /// A `multipart/form-data` body of text parts.
    pub async fn multipart(&self, method: &str, path: &str, parts: &[(&str, &str)]) -> Resp {
        let boundary = "tidegate-test-boundary";
        let mut body = String::new();
        for (name, value) in parts {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.call(
            method,
            path,
            &[("Content-Type", ct.as_str())],
            Some(body.as_bytes()),
        )
        .await
    }

    /// How many writes reached the backend so far.
    pub fn writes(&self) -> u64 {
        self.backend.writes.load(Ordering::SeqCst)
    }
}

/// A fresh self-signed certificate and its key, PEM-encoded.
pub fn cert_pem(ca: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["example.com".into()]).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A Kong error body with code `code`, for comparing whole bodies.
pub fn kong_error(code: u16, name: &str, message: &str, fields: Value) -> Value {
    json!({"code": code, "name": name, "message": message, "fields": fields})
}

/// The `data` of a list, by one field of each item.
pub fn list_of(page: &Value, field: &str) -> Vec<Value> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {page}"))
        .iter()
        .map(|e| e[field].clone())
        .collect()
}
