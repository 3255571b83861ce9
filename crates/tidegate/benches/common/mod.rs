//! Shared by the benches (proxy, propagation, write_path): child processes that die with
//! the bench, CPU time from /proc, medians and percentiles, a keep-alive HTTP/1.1 client,
//! and the two systems most scenarios start: tidegate control planes and etcd members.
//!
//! Each bench includes it with `mod common;` next to `tests/support` (as `mod support;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, free_port, http, wait_for};

/// How long a server may take to come up.
pub const LONG: Duration = Duration::from_secs(60);

// === processes ===

/// Pids of every child still running, for the Ctrl-C handler (Drop does not run there).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Temp dirs to remove on Ctrl-C or SIGTERM, for the same reason.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` (a bench's temp dir) also when the bench is interrupted.
pub fn remove_on_signal(dir: &Path) {
    DIRS.lock().unwrap().push(dir.to_path_buf());
}

/// A child process with its stderr in a log file; killed and reaped when dropped (also
/// when the bench panics and unwinds).
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: impl Into<String>, mut cmd: Command, log: PathBuf) -> Proc {
        let name = name.into();
        let err = std::fs::File::create(&log).expect("a log file in the temp dir");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        CHILDREN.lock().unwrap().push(child.id());
        Proc { name, child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Err with the log when the process has exited.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); log:\n{}",
                self.name,
                self.log_text()
            )),
            _ => Ok(()),
        }
    }

    /// Panics with the log when the process has exited.
    pub fn check_alive(&mut self) {
        if let Err(e) = self.alive() {
            panic!("{e}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        CHILDREN.lock().unwrap().retain(|p| *p != self.child.id());
    }
}

/// On Ctrl-C or SIGTERM the Drop guards do not run: kill the children and remove the
/// registered temp dirs from here.
pub fn kill_children_on_signal() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).unwrap();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        for pid in CHILDREN.lock().unwrap().iter() {
            support::signal(*pid, "KILL");
        }
        // Give the killed children a moment to let go of their files.
        std::thread::sleep(Duration::from_millis(200));
        for dir in DIRS.lock().unwrap().iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    });
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the Debian packages of the missing `(command, package)` pairs (CI installs
/// them up front), then panics if a command is still missing.
pub fn ensure_tools(tools: &[(&str, &str)]) {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        println!("installing {} (Debian)", missing.join(" "));
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {}",
                    missing.join(" ")
                ),
            ])
            .status();
    }
    for (cmd, pkg) in tools {
        assert!(
            have(cmd),
            "{cmd} is needed and could not be installed (apt-get install {pkg})"
        );
    }
}

/// The first line a command prints (stdout, then stderr): a version banner.
pub fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut all = o.stdout;
            all.extend(o.stderr);
            String::from_utf8_lossy(&all)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// === CPU accounting and the machine ===

pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of every thread of `pid`, in clock ticks.
pub fn proc_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // "pid (comm) state ppid …": comm may hold spaces but not ')'.
    let (_, rest) = s.rsplit_once(')').unwrap();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the stat line; `f` starts at field 4.
    f[10] + f[11]
}

#[derive(Clone, Copy, Default)]
pub struct CoreTimes {
    pub busy: u64,
    pub total: u64,
    pub steal: u64,
}

/// Per core, from /proc/stat (ticks).
pub fn core_times() -> Vec<CoreTimes> {
    let s = std::fs::read_to_string("/proc/stat").unwrap();
    s.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal guest guest_nice; guest time
            // is already inside user.
            let total: u64 = v.iter().take(8).sum();
            let idle = v[3] + v[4];
            CoreTimes {
                busy: total - idle,
                total,
                steal: v[7],
            }
        })
        .collect()
}

/// The three load averages, as /proc/loadavg prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// "2 cores (model); loadavg a b c".
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    format!(
        "{} cores ({model}); loadavg {}",
        core_times().len(),
        loadavg()
    )
}

// === statistics and tables ===

/// The `p` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The median, ignoring NaN (NaN when nothing is left).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A number for a table, or "—" for NaN.
pub fn cell(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "—".to_string()
    } else {
        format!("{x:.decimals$}")
    }
}

/// `a / b` as "1.23×", or "—".
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "—".to_string()
    } else {
        format!("{:.2}×", a / b)
    }
}

// === a keep-alive HTTP/1.1 client ===

/// A keep-alive HTTP/1.1 connection that sends prepared requests and reads each answer.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub async fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(4096),
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The status, once the whole response (Content-Length or chunked) is read.
    pub async fn request(&mut self, req: &[u8]) -> std::io::Result<u16> {
        self.request_body(req).await.map(|(status, _)| status)
    }

    /// The status and the body (de-chunked), once the whole response is read.
    pub async fn request_body(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.s.write_all(req).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let mut body = Vec::new();
        let end = if let Some(n) = header("content-length:") {
            let end = head_end + n.parse::<usize>().map_err(|_| bad())?;
            while self.buf.len() < end {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[head_end..end]);
            end
        } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            let mut at = head_end;
            loop {
                let Some(eol) = find(&self.buf[at..], b"\r\n") else {
                    self.fill().await?;
                    continue;
                };
                let size = std::str::from_utf8(&self.buf[at..at + eol])
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                    .ok_or_else(bad)?;
                let next = at + eol + 2 + size + 2;
                while self.buf.len() < next {
                    self.fill().await?;
                }
                body.extend_from_slice(&self.buf[at + eol + 2..at + eol + 2 + size]);
                at = next;
                if size == 0 {
                    break at;
                }
            }
        } else {
            head_end
        };
        self.buf.drain(..end);
        Ok((status, body))
    }
}

/// A request with a JSON body, ready to send on a keep-alive connection.
pub fn post_json(addr: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// === tidegate control planes ===

/// One `tidegate start` with `role = control_plane`.
pub struct Cp {
    pub proc: Proc,
    /// The Raft node id (1 for a single node).
    pub id: u64,
    pub admin: String,
    /// `cluster_listen`, where DPs connect.
    pub cluster: String,
}

/// One CP or a Raft group of them, sharing one cluster certificate (shared mode).
pub struct Cps {
    pub cps: Vec<Cp>,
    /// The cluster certificate as a DP presents it.
    pub tls: tidegate_tls::ClusterTls,
}

/// Starts `n` CP processes with their data under `dir`: one node without Raft peers, or
/// a group of `n` with mutual-TLS Raft (a CA and a certificate per node); returns once
/// every Admin API answers and, for a group, every node names the same leader. Logging
/// is at `warn`, so the figures carry no per-request log line.
pub fn start_cps(dir: &Path, n: u64) -> Cps {
    std::fs::create_dir_all(dir).unwrap();
    let pair = tidegate_tls::gen_cert(unix_now(), 30).unwrap();
    let (cert, key) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert, &pair.cert_pem).unwrap();
    std::fs::write(&key, &pair.key_pem).unwrap();
    let pki = (n > 1).then(|| support::Pki::new(dir, "raft"));
    let raft: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peers = raft
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}@{a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut cps = Vec::new();
    for id in 1..=n {
        let admin = format!("127.0.0.1:{}", free_port());
        let cluster = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(support::binary());
        cmd.args(["start", "-p"])
            .arg(dir.join(format!("cp{id}")))
            .env("TIDEGATE_ROLE", "control_plane")
            .env("TIDEGATE_ADMIN_LISTEN", &admin)
            .env("TIDEGATE_CLUSTER_LISTEN", &cluster)
            .env("TIDEGATE_RAFT_LISTEN", &raft[id as usize - 1])
            .env("TIDEGATE_CLUSTER_CERT", &cert)
            .env("TIDEGATE_CLUSTER_CERT_KEY", &key)
            // The console's default port (8002) would be taken by the first CP.
            .env("TIDEGATE_ADMIN_GUI_LISTEN", "off")
            .env("TIDEGATE_LOG_LEVEL", "warn");
        if let Some(pki) = &pki {
            let (c, k) = pki.issue(&format!("cp{id}"));
            cmd.env("TIDEGATE_RAFT_NODE_ID", id.to_string())
                .env("TIDEGATE_RAFT_PEERS", &peers)
                .env("TIDEGATE_RAFT_CERT", c)
                .env("TIDEGATE_RAFT_CERT_KEY", k)
                .env("TIDEGATE_RAFT_CA_CERT", &pki.ca);
        }
        let proc = Proc::spawn(
            format!("tidegate cp{id}"),
            cmd,
            dir.join(format!("cp{id}.log")),
        );
        cps.push(Cp {
            proc,
            id,
            admin,
            cluster,
        });
    }
    let mut group = Cps {
        cps,
        tls: tidegate_tls::ClusterTls::from_pem(
            "shared",
            &pair.cert_pem,
            &pair.key_pem,
            None,
            None,
        )
        .unwrap(),
    };
    for i in 0..group.cps.len() {
        let admin = group.cps[i].admin.clone();
        wait_for("a CP's Admin API", LONG, || {
            group.cps[i].proc.check_alive();
            http(&admin, "GET", "/status", None, &[]).filter(|r| r.status == 200)
        });
    }
    if n > 1 {
        wait_for("the CPs to agree on a leader", LONG, || group.leader().ok());
    }
    group
}

impl Cps {
    pub fn admins(&self) -> Vec<String> {
        self.cps.iter().map(|c| c.admin.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.cps.iter().map(|c| c.proc.pid()).collect()
    }

    /// The index in `cps` of the leader every node names.
    pub fn leader(&self) -> Result<usize, String> {
        let mut seen = None;
        for c in &self.cps {
            let r = http(&c.admin, "GET", "/clustering/control-planes", None, &[])
                .ok_or_else(|| format!("cp{} does not answer", c.id))?;
            let leader = r.body["leader"]
                .as_u64()
                .ok_or_else(|| format!("cp{} names no leader: {}", c.id, r.body))?;
            if seen.is_some_and(|s| s != leader) {
                return Err("the CPs name different leaders".into());
            }
            seen = Some(leader);
        }
        let id = seen.ok_or("no CPs")?;
        self.cps
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| format!("the leader {id} is not one of ours"))
    }

    pub fn alive(&mut self) -> Result<(), String> {
        self.cps.iter_mut().try_for_each(|c| c.proc.alive())
    }
}

// === etcd ===

/// One etcd member: its process and its client URL's address.
pub struct EtcdMember {
    pub proc: Proc,
    pub client: String,
}

pub struct Etcd {
    pub members: Vec<EtcdMember>,
}

/// etcd's version banner ("etcd Version: 3.4.23").
pub fn etcd_version() -> String {
    first_line("etcd", &["--version"])
}

/// Starts an etcd cluster of `n` members (Debian's `etcd-server`, installed when
/// missing) with their data under `dir` and etcd's defaults otherwise (an fsync of the
/// WAL per batch of proposals); returns once every member reports itself healthy.
pub fn start_etcd(dir: &Path, n: usize) -> Etcd {
    ensure_tools(&[("etcd", "etcd-server")]);
    std::fs::create_dir_all(dir).unwrap();
    let addrs: Vec<(String, String)> = (0..n)
        .map(|_| {
            (
                format!("127.0.0.1:{}", free_port()),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect();
    let initial = addrs
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (i, (client, peer)) in addrs.iter().enumerate() {
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name=e{i}"))
            .arg("--data-dir")
            .arg(dir.join(format!("etcd{i}")))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-state=new")
            .arg(format!(
                "--initial-cluster-token=bench-{}",
                std::process::id()
            ));
        let proc = Proc::spawn(format!("etcd e{i}"), cmd, dir.join(format!("etcd{i}.log")));
        members.push(EtcdMember {
            proc,
            client: client.clone(),
        });
    }
    let mut etcd = Etcd { members };
    for i in 0..n {
        let client = etcd.members[i].client.clone();
        wait_for("an etcd member to be healthy", LONG, || {
            etcd.members[i].proc.check_alive();
            http(&client, "GET", "/health", None, &[]).filter(|r| r.status == 200)
        });
    }
    etcd
}

impl Etcd {
    pub fn clients(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.proc.pid()).collect()
    }

    /// The index of the member that is the leader (from each member's status).
    pub fn leader(&self) -> Result<usize, String> {
        for (i, m) in self.members.iter().enumerate() {
            let r = http(
                &m.client,
                "POST",
                "/v3/maintenance/status",
                Some(&json!({})),
                &[],
            )
            .ok_or("etcd does not answer")?;
            // uint64 fields come as strings through the gateway.
            let me = r.body["header"]["member_id"].as_str();
            if me.is_some() && me == r.body["leader"].as_str() {
                return Ok(i);
            }
        }
        Err("no etcd member says it leads".into())
    }

    pub fn alive(&mut self) -> Result<(), String> {
        self.members.iter_mut().try_for_each(|m| m.proc.alive())
    }
}
