//! Shared fixtures for the end-to-end tests: real `tidegate` processes on loopback
//! ports, a tiny HTTP/1.1 client, test certificates, and waiting on conditions.
#![allow(dead_code)]
// Real processes, real clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn binary() -> &'static str {
    // The stock binary for the suite in crates/tidegate; the custom build for the
    // example plugin's tests, which include this module too.
    option_env!("CARGO_BIN_EXE_tidegate")
        .or(option_env!("CARGO_BIN_EXE_tidegate-custom"))
        .expect("tests/support is included by tests of a package that builds a tidegate binary")
}

/// A free port on 127.0.0.1, below the kernel's ephemeral range (32768+ by default):
/// a port the OS hands out with `bind(0)` comes from that range, and between the test
/// releasing it and a child process binding it, an outgoing connection of a parallel test
/// may take it. Ports are walked from a per-process start so that test processes (one
/// per test under nextest) rarely try the same ones.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n * 7) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Polls `cond` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = cond() {
            return t;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// One HTTP/1.1 request with `Connection: close`; `None` when the node does not answer.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body_text = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let body = if body_text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body_text).unwrap_or(Value::String(body_text))
    };
    Some(Reply { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A CA and per-node certificates for the Raft link, written to `dir`.
pub struct Pki {
    pub ca: PathBuf,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        Pki {
            ca,
            ca_key,
            ca_params: params,
            dir: dir.to_path_buf(),
        }
    }

    /// A certificate for 127.0.0.1/localhost signed by this CA: (cert path, key path).
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = self.dir.join(format!("{name}.crt"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A `tidegate start` child process; killed when dropped.
pub struct Node {
    pub id: u64,
    /// The Admin API of a CP; the status API (`status_listen`) of a DP.
    pub admin: String,
    /// `cluster_listen` of a CP (empty for a DP).
    pub cluster: String,
    /// `status_listen`, when set.
    pub status: String,
    /// `admin_gui_listen` (the cluster console of a CP), when set.
    pub console: String,
    /// `proxy_listen` (plain HTTP) of a DP or a traditional node.
    pub proxy: String,
    pub raft: String,
    pub prefix: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn spawn(
        id: u64,
        prefix: PathBuf,
        env: Vec<(String, String)>,
        admin: String,
        raft: String,
    ) -> Node {
        let log = prefix.with_extension("log");
        let cluster = env
            .iter()
            .find(|(k, _)| k == "TIDEGATE_CLUSTER_LISTEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let status = env
            .iter()
            .find(|(k, _)| k == "TIDEGATE_STATUS_LISTEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let console = env
            .iter()
            .find(|(k, _)| k == "TIDEGATE_ADMIN_GUI_LISTEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let proxy = env
            .iter()
            .find(|(k, _)| k == "TIDEGATE_PROXY_LISTEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let mut n = Node {
            id,
            cluster,
            status,
            console,
            proxy,
            admin,
            raft,
            prefix,
            env,
            child: None,
            log,
        };
        n.start();
        n
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already runs", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary())
            .arg("start")
            .arg("-p")
            .arg(&self.prefix)
            .env("TIDEGATE_ADMIN_LISTEN", &self.admin)
            .env("TIDEGATE_PROXY_LISTEN", &self.proxy)
            // Parallel tests would all take the default 127.0.0.1:8002.
            .env("TIDEGATE_ADMIN_GUI_LISTEN", "off")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tidegate starts");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe_sigterm(c.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                c.kill().ok();
                c.wait().ok();
                panic!(
                    "node {} did not exit within 20 s of SIGTERM; log:\n{}",
                    self.id,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<Reply> {
        http(&self.admin, "GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Option<Reply> {
        http(&self.admin, "POST", path, Some(body), &[])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_sigterm(pid: u32) {
    // `kill -TERM` keeps the test free of unsafe code and of a libc dependency.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// A cluster of `n` control planes with mutual-TLS Raft, started together, and the data
/// planes started against it (shared-mode cluster certificate from `hybrid gen_cert`).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub dps: Vec<Node>,
    pub pki: Pki,
    /// The shared cluster certificate and key.
    pub cluster_cert: (PathBuf, PathBuf),
    peers: String,
}

/// Makes a shared-mode pair with the real CLI.
pub fn gen_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(binary())
        .args(["hybrid", "gen_cert"])
        .arg(&cert)
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "gen_cert: {out:?}");
    (cert, key)
}

fn pair(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

impl Cluster {
    pub fn start(n: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "raft");
        let raft_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers = (1..=n)
            .map(|id| format!("{id}@127.0.0.1:{}", raft_ports[id as usize - 1]))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_cert = gen_cert(dir.path(), "cluster");
        let mut c = Cluster {
            dir,
            nodes: Vec::new(),
            dps: Vec::new(),
            pki,
            cluster_cert,
            peers,
        };
        for id in 1..=n {
            let raft = format!("127.0.0.1:{}", raft_ports[id as usize - 1]);
            c.add_node(id, raft, &c.peers.clone());
        }
        c
    }

    /// Starts another CP process with the given peer list (it joins; it does not form a
    /// group unless it has the lowest id).
    pub fn add_node(&mut self, id: u64, raft: String, peers: &str) -> usize {
        let (cert, key) = self.pki.issue(&format!("cp{id}"));
        let admin = format!("127.0.0.1:{}", free_port());
        let env = vec![
            ("TIDEGATE_ROLE".to_string(), "control_plane".to_string()),
            ("TIDEGATE_RAFT_NODE_ID".to_string(), id.to_string()),
            ("TIDEGATE_RAFT_LISTEN".to_string(), raft.clone()),
            ("TIDEGATE_RAFT_PEERS".to_string(), peers.to_string()),
            ("TIDEGATE_RAFT_CERT".to_string(), cert.display().to_string()),
            (
                "TIDEGATE_RAFT_CERT_KEY".to_string(),
                key.display().to_string(),
            ),
            (
                "TIDEGATE_RAFT_CA_CERT".to_string(),
                self.pki.ca.display().to_string(),
            ),
            ("TIDEGATE_LOG_LEVEL".to_string(), "info".to_string()),
            pair(
                "TIDEGATE_CLUSTER_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            pair("TIDEGATE_CLUSTER_CERT", self.cluster_cert.0.display()),
            pair("TIDEGATE_CLUSTER_CERT_KEY", self.cluster_cert.1.display()),
            pair(
                "TIDEGATE_STATUS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
            pair(
                "TIDEGATE_ADMIN_GUI_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ),
        ];
        let prefix = self.dir.path().join(format!("cp{id}"));
        self.nodes.push(Node::spawn(id, prefix, env, admin, raft));
        self.nodes.len() - 1
    }

    pub fn peers(&self) -> &str {
        &self.peers
    }

    /// The id of the leader, once every running node agrees on one.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        wait_for("an agreed leader", timeout, || {
            let mut seen = None;
            for n in self.nodes.iter().filter(|n| n.running()) {
                let r = n.get("/clustering/control-planes")?;
                let leader = r.body.get("leader")?.as_u64()?;
                if seen.is_some_and(|s| s != leader) {
                    return None;
                }
                seen = Some(leader);
            }
            seen
        })
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("a node with that id")
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node with that id")
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- cp{} ---\n{}", n.id, n.log_text()))
            .chain(
                self.dps
                    .iter()
                    .map(|n| format!("--- dp{} ---\n{}", n.id, n.log_text())),
            )
            .collect()
    }

    /// The `cluster_listen` addresses of the given CPs, comma-separated.
    pub fn cluster_addrs(&self, cps: &[u64]) -> String {
        cps.iter()
            .map(|id| self.node(*id).cluster.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts DP number `n` (its prefix is `dp{n}`) dialling `cps` in that order, with
    /// the shared cluster certificate; `env` adds or overrides settings.
    pub fn start_dp(&mut self, n: u64, cps: &[u64], env: &[(&str, &str)]) -> usize {
        let mut vars = vec![
            pair("TIDEGATE_ROLE", "data_plane"),
            pair("TIDEGATE_CLUSTER_CONTROL_PLANE", self.cluster_addrs(cps)),
            pair("TIDEGATE_CLUSTER_CERT", self.cluster_cert.0.display()),
            pair("TIDEGATE_CLUSTER_CERT_KEY", self.cluster_cert.1.display()),
            pair("TIDEGATE_LOG_LEVEL", "info"),
        ];
        // Odd DPs run on one thread (a current-thread runtime), even ones on `auto`, so
        // that every hybrid test covers both runtimes.
        if n % 2 == 1 {
            vars.push(pair("TIDEGATE_WORKER_THREADS", "1"));
        }
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            vars.push(pair(k, v));
        }
        let status = format!("127.0.0.1:{}", free_port());
        vars.insert(0, pair("TIDEGATE_STATUS_LISTEN", &status));
        let prefix = self.dir.path().join(format!("dp{n}"));
        self.dps
            .push(Node::spawn(n, prefix, vars, status, String::new()));
        self.dps.len() - 1
    }

    pub fn dp(&self, n: u64) -> &Node {
        self.dps
            .iter()
            .find(|d| d.id == n)
            .expect("a DP with that number")
    }

    pub fn dp_mut(&mut self, n: u64) -> &mut Node {
        self.dps
            .iter_mut()
            .find(|d| d.id == n)
            .expect("a DP with that number")
    }

    /// The config hash the CP reports.
    pub fn cp_hash(&self, id: u64) -> Option<String> {
        let r = self.node(id).get("/clustering/control-planes")?;
        Some(r.body["config_hash"].as_str()?.to_string())
    }
}

/// A DP's `/status`: (configuration_hash, config_version).
pub fn dp_status(dp: &Node) -> Option<(String, u64)> {
    let r = dp.get("/status")?;
    Some((
        r.body["configuration_hash"].as_str()?.to_string(),
        r.body["config_version"].as_u64()?,
    ))
}

/// `/clustering/data-planes` of a CP, by DP id.
pub fn data_planes(cp: &Node) -> Option<Vec<Value>> {
    let r = cp.get("/clustering/data-planes")?;
    if r.status != 200 {
        return None;
    }
    Some(r.body["data"].as_array()?.clone())
}

/// Every service name a node lists (following pagination).
pub fn service_names(node: &Node) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut path = "/services?size=1000".to_string();
    loop {
        let r = node.get(&path)?;
        if r.status != 200 {
            return None;
        }
        for s in r.body["data"].as_array()? {
            names.push(s["name"].as_str()?.to_string());
        }
        match r.body["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => return Some(names),
        }
    }
}

/// Calls the Raft service at `addr` as a client with `cert`/`key`, trusting `ca` for the
/// server (whose certificate names localhost). `Some(error)` when the connection was
/// refused; None when the server got as far as reading the (empty, invalid) request.
pub fn tls_handshake_error(addr: &str, cert: &Path, key: &Path, ca: &Path) -> Option<String> {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let tls = tidegate_tls::ClusterTls::from_pem(
        "pki",
        &read(cert),
        &read(key),
        Some(&read(ca)),
        Some("localhost"),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = match tidegate_tls::channel(addr, &tls).await {
            Err(e) => return Some(e),
            Ok(c) => c,
        };
        let mut client = tidegate_proto::raft::raft_client::RaftClient::new(channel);
        match client
            .vote(tidegate_proto::raft::Frame { payload: vec![] })
            .await
        {
            Err(s) if s.code() == tonic::Code::InvalidArgument => None,
            Err(s) => Some(format!("{s}")),
            Ok(_) => None,
        }
    })
}

/// One sample of a Prometheus text exposition: the value of the first line that starts
/// with `series` (name plus labels as printed).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// GET `path` on `addr`, as text.
pub fn get_text(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(body.to_string())
}

/// A plain HTTP/1.1 upstream on 127.0.0.1 answering every request with
/// `<name> <METHOD> <path> host=<Host>`; serves at most `max` connections, then stops.
pub fn echo_upstream(name: &'static str, max: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(max) {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut lines = head.lines();
                let request = lines.next().unwrap_or_default();
                let mut parts = request.split(' ');
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let host = lines
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let body = format!("{name} {method} {path} host={host}");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// A proxied response: (status, headers with lower-cased names, body).
pub type Proxied = (u16, Vec<(String, String)>, String);

/// GET `path` through a proxy at `addr`.
pub fn proxy_get(addr: &str, path: &str, host: &str) -> Option<Proxied> {
    proxy_get_with(addr, path, host, &[])
}

/// GET `path` through a proxy at `addr` with extra request headers.
pub fn proxy_get_with(
    addr: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Option<Proxied> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, headers, body))
}

/// The first of `span` consecutive free ports on 127.0.0.1, for a process that lays its
/// ports out from one base (`tidegate quickstart --base-port`). Taken from 10000..20000,
/// where [`free_port`] never looks, so that another test's single port cannot land inside
/// the block between this check and the process binding it.
pub fn free_port_block(span: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const HIGH: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(span);
    let slots = (HIGH - LOW) / span;
    let start = std::process::id().wrapping_mul(2_654_435_761) % slots;
    for _ in 0..slots {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = LOW + ((start + n) % slots) * span;
        if (base..base + span).all(|p| TcpListener::bind(("127.0.0.1", p as u16)).is_ok()) {
            return base as u16;
        }
    }
    panic!("no {span} consecutive free ports in {LOW}..{HIGH}")
}

/// The pids of the running processes whose parent is `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // "pid (comm) state ppid …": comm may hold spaces but not ')'.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let ppid = fields.next()?.parse::<u32>().ok()?;
                    Some(ppid == pid && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a process with this pid exists (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            Some(rest.split_whitespace().next()? != "Z")
        })
        .unwrap_or(false)
}

/// Sends `sig` (e.g. "TERM", "KILL") to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A `redis-server` child process on a free loopback port, with no persistence; killed
/// and reaped when dropped, so a failing test leaves no server behind.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one with `extra` settings and waits until it answers PING.
    pub fn start(extra: &[&str]) -> RedisServer {
        // The port may be taken between the check and redis binding it: then the
        // server exits at once and another port is tried.
        for _ in 0..10 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (Debian: apt-get install -y redis-server)");
            let mut server = RedisServer {
                port,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(c) = server.child.as_mut() {
                    if !matches!(c.try_wait(), Ok(None)) {
                        break;
                    }
                }
                if server.command(&["PING"]).as_deref() == Some("PONG") {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            server.stop();
        }
        panic!("redis-server did not start on any of 10 ports");
    }

    /// SIGKILL and reap.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command on a new connection; the reply as text (`nil` for a null bulk
    /// string), `None` when the server does not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                continue;
            };
            let line = String::from_utf8_lossy(&buf[1..end]).to_string();
            if buf[0] != b'$' {
                return Some(line);
            }
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some("nil".into());
            }
            let body = end + 2..end + 2 + len as usize;
            if buf.len() >= body.end {
                return Some(String::from_utf8_lossy(&buf[body]).to_string());
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
