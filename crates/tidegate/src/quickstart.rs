//! `tidegate quickstart`: the hybrid picture on one machine for a newcomer. Three control
//! planes in one Raft group and two data planes, each a `tidegate start` child process of
//! this very binary, with its settings file, data and log in one directory; plus a small
//! upstream that echoes requests, so that the printed curl lines work offline.
//!
//! ```text
//!  dir/quickstart.json   marks the directory (and the base port it was made with)
//!  dir/cluster.{crt,key}            shared-mode pair (`hybrid gen_cert`), every node
//!  dir/raft-ca.crt, raft-cpN.{crt,key}   the Raft link's own CA and certificates
//!  dir/{cp1..cp3,dp1,dp2}.conf      the settings of each node (`tidegate start -c`)
//!  dir/{cp1..}.log, dir/{cp1..}/    its log and its prefix
//! ```
//!
//! Every step waits on a real condition (the Admin API answers, the CPs agree on a
//! leader, a DP reports the CP's config hash) with a deadline, and a failure names the
//! log to read. It stays in the foreground; SIGINT or SIGTERM stops every node with
//! SIGTERM and waits for each.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const DEFAULT_DIR: &str = "tidegate-quickstart";
pub const DEFAULT_BASE_PORT: u16 = 8000;
/// How long one step (a node coming up, a leader, a DP in sync) may take.
pub const DEFAULT_STEP_TIMEOUT_SECS: u64 = 60;
const CONTROL_PLANES: u16 = 3;
const DATA_PLANES: u16 = 2;
/// The file that makes a directory a quickstart's; it records the base port because the
/// CPs' Raft membership (in their prefixes) holds the addresses they were made with.
const MARKER: &str = "quickstart.json";
/// How long a node may drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Validity of the generated certificates, as `hybrid gen_cert`'s default.
const CERT_DAYS: u32 = 1095;
/// Lines of a node's log shown with an error about it.
const LOG_TAIL_LINES: usize = 20;
/// Connections the example upstream serves at once.
const UPSTREAM_MAX_CONNECTIONS: usize = 64;

#[derive(clap::Args)]
pub struct QuickstartArgs {
    /// Directory for the nodes' settings, certificates, data and logs. A previous
    /// quickstart directory is reused (its nodes keep their config); any other non-empty
    /// directory is refused.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Shift every port: each one is this plus a fixed offset (8000 gives the Admin APIs
    /// 8001/8011/8021 and the proxies 8000/8010). Default: 8000, or what the directory
    /// was set up with.
    #[arg(long)]
    base_port: Option<u16>,
    /// Seconds each step may take before the quickstart gives up.
    #[arg(long, default_value_t = DEFAULT_STEP_TIMEOUT_SECS)]
    timeout: u64,
}

pub fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(quickstart(args))
}

// === the port layout ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ControlPlane,
    DataPlane,
}

/// One node of the cluster: `cp1`…`cp3`, `dp1`, `dp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeId {
    kind: Kind,
    /// 1-based; a CP's `raft_node_id`.
    n: u16,
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = match self.kind {
            Kind::ControlPlane => "cp",
            Kind::DataPlane => "dp",
        };
        write!(f, "{prefix}{}", self.n)
    }
}

/// Every port is `base` plus an offset: node `n` uses the block `base + 10 (n - 1)`, with
/// Kong's habits inside it (proxy +0, Admin API +1, console +2 where Kong Manager is,
/// cluster +5) and the Raft and status listeners next to them; the example upstream sits
/// at `base + 80`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    base: u16,
}

const OFFSET_PROXY: u16 = 0;
const OFFSET_ADMIN: u16 = 1;
const OFFSET_CONSOLE: u16 = 2;
const OFFSET_CLUSTER: u16 = 5;
const OFFSET_RAFT: u16 = 7;
const OFFSET_CP_STATUS: u16 = 8;
const OFFSET_DP_STATUS: u16 = 9;
const OFFSET_UPSTREAM: u16 = 80;

impl Layout {
    fn new(base: u16) -> anyhow::Result<Layout> {
        if base == 0 || base > u16::MAX - OFFSET_UPSTREAM {
            bail!(
                "--base-port {base} is out of range: the quickstart uses ports up to base + \
                 {OFFSET_UPSTREAM}, so pick 1 to {}",
                u16::MAX - OFFSET_UPSTREAM
            );
        }
        Ok(Layout { base })
    }

    fn port(&self, n: u16, offset: u16) -> u16 {
        self.base + 10 * (n - 1) + offset
    }

    fn admin(&self, cp: u16) -> u16 {
        self.port(cp, OFFSET_ADMIN)
    }

    fn console(&self, cp: u16) -> u16 {
        self.port(cp, OFFSET_CONSOLE)
    }

    fn cluster(&self, cp: u16) -> u16 {
        self.port(cp, OFFSET_CLUSTER)
    }

    fn raft(&self, cp: u16) -> u16 {
        self.port(cp, OFFSET_RAFT)
    }

    fn proxy(&self, dp: u16) -> u16 {
        self.port(dp, OFFSET_PROXY)
    }

    /// The status API: a CP's answers `/status/ready` once it knows a leader, a DP's
    /// reports its config hash.
    fn status(&self, node: NodeId) -> u16 {
        match node.kind {
            Kind::ControlPlane => self.port(node.n, OFFSET_CP_STATUS),
            Kind::DataPlane => self.port(node.n, OFFSET_DP_STATUS),
        }
    }

    fn upstream(&self) -> u16 {
        self.base + OFFSET_UPSTREAM
    }

    fn nodes() -> Vec<NodeId> {
        let cps = (1..=CONTROL_PLANES).map(|n| NodeId {
            kind: Kind::ControlPlane,
            n,
        });
        let dps = (1..=DATA_PLANES).map(|n| NodeId {
            kind: Kind::DataPlane,
            n,
        });
        cps.chain(dps).collect()
    }

    /// Every port with what it is for, as an operator needs to read it in an error.
    fn ports(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for node in Self::nodes() {
            match node.kind {
                Kind::ControlPlane => {
                    out.push((self.admin(node.n), format!("{node} admin_listen")));
                    out.push((self.console(node.n), format!("{node} admin_gui_listen")));
                    out.push((self.cluster(node.n), format!("{node} cluster_listen")));
                    out.push((self.raft(node.n), format!("{node} raft_listen")));
                }
                Kind::DataPlane => {
                    out.push((self.proxy(node.n), format!("{node} proxy_listen")));
                }
            }
            out.push((self.status(node), format!("{node} status_listen")));
        }
        out.push((self.upstream(), "the example upstream".to_string()));
        out
    }

    fn raft_peers(&self) -> String {
        (1..=CONTROL_PLANES)
            .map(|n| format!("{n}@127.0.0.1:{}", self.raft(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The CPs a DP dials, starting from a different one on each DP so that the streams
    /// spread over the CPs.
    fn control_planes_for(&self, dp: u16) -> String {
        (0..CONTROL_PLANES)
            .map(|i| (dp - 1 + i) % CONTROL_PLANES + 1)
            .map(|n| format!("127.0.0.1:{}", self.cluster(n)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

// === the directory ===

/// The directory to run in: (absolute path, base port, whether a previous run made it).
fn prepare_dir(dir: &Path, base_port: Option<u16>) -> anyhow::Result<(PathBuf, u16, bool)> {
    let marker = dir.join(MARKER);
    let (base, reused) = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (base_port.unwrap_or(DEFAULT_BASE_PORT), false)
        }
        Err(e) => bail!("cannot use --dir {}: {e}", dir.display()),
        Ok(_) if marker.exists() => {
            let text = std::fs::read_to_string(&marker)
                .with_context(|| format!("cannot read {}", marker.display()))?;
            let recorded = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["base_port"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    anyhow!(
                        "{} is damaged (no base_port); remove the directory {} to start afresh",
                        marker.display(),
                        dir.display()
                    )
                })?;
            if let Some(asked) = base_port.filter(|p| *p != recorded) {
                bail!(
                    "{} was set up with --base-port {recorded}, and its control planes' Raft \
                     membership holds those addresses: run with --base-port {recorded}, or \
                     choose another --dir for --base-port {asked}",
                    dir.display()
                );
            }
            (recorded, true)
        }
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty and is not a quickstart directory (it has no {MARKER}): \
                     choose another --dir, or an empty or missing one",
                    dir.display()
                );
            }
            (base_port.unwrap_or(DEFAULT_BASE_PORT), false)
        }
    };
    Layout::new(base)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the path of {}", dir.display()))?;
    Ok((dir, base, reused))
}

/// Makes `dir` a quickstart directory for `base`; done once its ports proved free, so
/// that a first run refused for a busy port can be retried with another `--base-port`.
fn mark(dir: &Path, base: u16) -> anyhow::Result<()> {
    let text = json!({
        "base_port": base,
        "created_by": format!("tidegate {}", env!("CARGO_PKG_VERSION")),
    });
    crate::hybrid_cmd::write_file(&dir.join(MARKER), &format!("{text:#}\n"), 0o644)
}

struct Files {
    cluster_cert: PathBuf,
    cluster_key: PathBuf,
    raft_ca: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            cluster_cert: dir.join("cluster.crt"),
            cluster_key: dir.join("cluster.key"),
            raft_ca: dir.join("raft-ca.crt"),
        }
    }

    fn raft_pair(dir: &Path, cp: u16) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("raft-cp{cp}.crt")),
            dir.join(format!("raft-cp{cp}.key")),
        )
    }

    fn all(&self, dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![
            self.cluster_cert.clone(),
            self.cluster_key.clone(),
            self.raft_ca.clone(),
        ];
        for cp in 1..=CONTROL_PLANES {
            let (c, k) = Self::raft_pair(dir, cp);
            out.extend([c, k]);
        }
        out
    }
}

/// The shared-mode cluster pair every node presents (what `hybrid gen_cert` makes), and
/// the Raft link's own CA with one certificate per CP: a DP's certificate must never be
/// accepted on the Raft port. The CA key is not kept: nothing else will be signed by it.
fn generate_certificates(dir: &Path, files: &Files) -> anyhow::Result<()> {
    let now = crate::start::SystemClock.now();
    let shared = tidegate_tls::gen_cert(now, CERT_DAYS).map_err(anyhow::Error::msg)?;
    crate::hybrid_cmd::write_file(&files.cluster_key, &shared.key_pem, 0o600)?;
    crate::hybrid_cmd::write_file(&files.cluster_cert, &shared.cert_pem, 0o644)?;
    let ca = tidegate_tls::gen_ca(now, CERT_DAYS, "tidegate quickstart Raft CA")
        .map_err(anyhow::Error::msg)?;
    crate::hybrid_cmd::write_file(&files.raft_ca, &ca.cert_pem, 0o644)?;
    for cp in 1..=CONTROL_PLANES {
        let pair = raft_cert(&ca, now, CERT_DAYS, cp)?;
        let (cert, key) = Files::raft_pair(dir, cp);
        crate::hybrid_cmd::write_file(&key, &pair.key_pem, 0o600)?;
        crate::hybrid_cmd::write_file(&cert, &pair.cert_pem, 0o644)?;
    }
    Ok(())
}

/// CP `cp`'s Raft certificate, for 127.0.0.1 (the address its peers dial and check it
/// against) and localhost. Each CP both accepts and dials on the Raft link, so `issue`
/// makes it good as a server and as a client.
fn raft_cert(
    ca: &tidegate_tls::GeneratedCa,
    now: i64,
    days: u32,
    cp: u16,
) -> anyhow::Result<tidegate_tls::GeneratedCert> {
    let localhost = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    tidegate_tls::issue(
        ca,
        now,
        days,
        &format!("cp{cp}"),
        &["localhost"],
        &[localhost],
    )
    .map_err(anyhow::Error::msg)
}

/// A settings value in kong.conf syntax, where `#` starts a comment.
fn conf_value(v: &str) -> String {
    v.replace('#', "\\#")
}

/// The settings of `node`: what tests/support gives its CPs and DPs, on this layout.
fn conf_text(node: NodeId, layout: &Layout, dir: &Path) -> String {
    let files = Files::new(dir);
    let path = |p: &Path| conf_value(&p.display().to_string());
    let mut lines: Vec<(&str, String)> = vec![("prefix", path(&dir.join(node.to_string())))];
    match node.kind {
        Kind::ControlPlane => {
            let (cert, key) = Files::raft_pair(dir, node.n);
            lines.extend([
                ("role", "control_plane".to_string()),
                (
                    "admin_listen",
                    format!("127.0.0.1:{}", layout.admin(node.n)),
                ),
                (
                    "admin_gui_listen",
                    format!("127.0.0.1:{}", layout.console(node.n)),
                ),
                (
                    "status_listen",
                    format!("127.0.0.1:{}", layout.status(node)),
                ),
                (
                    "cluster_listen",
                    format!("127.0.0.1:{}", layout.cluster(node.n)),
                ),
                ("cluster_cert", path(&files.cluster_cert)),
                ("cluster_cert_key", path(&files.cluster_key)),
                ("raft_node_id", node.n.to_string()),
                ("raft_listen", format!("127.0.0.1:{}", layout.raft(node.n))),
                ("raft_peers", layout.raft_peers()),
                ("raft_cert", path(&cert)),
                ("raft_cert_key", path(&key)),
                ("raft_ca_cert", path(&files.raft_ca)),
                // A control plane does not proxy; `off` says so.
                ("proxy_listen", "off".to_string()),
            ]);
        }
        Kind::DataPlane => lines.extend([
            ("role", "data_plane".to_string()),
            (
                "proxy_listen",
                format!("127.0.0.1:{}", layout.proxy(node.n)),
            ),
            (
                "status_listen",
                format!("127.0.0.1:{}", layout.status(node)),
            ),
            ("cluster_control_plane", layout.control_planes_for(node.n)),
            ("cluster_cert", path(&files.cluster_cert)),
            ("cluster_cert_key", path(&files.cluster_key)),
        ]),
    }
    lines.push(("log_level", "info".to_string()));
    let mut out = format!(
        "# {node} of `tidegate quickstart` (ports from --base-port {}).\n\
         # Run it by hand with: tidegate start -c {}\n",
        layout.base,
        dir.join(format!("{node}.conf")).display()
    );
    for (k, v) in lines {
        let _ = writeln!(out, "{k} = {v}");
    }
    out
}

/// Ports already taken, each with what it is for.
fn busy_ports(layout: &Layout) -> Vec<(u16, String)> {
    layout
        .ports()
        .into_iter()
        .filter(|(port, _)| StdListener::bind(("127.0.0.1", *port)).is_err())
        .collect()
}

/// What is in the way, and the ways out.
fn busy_ports_error(dir: &Path, base: u16, reused: bool, busy: &[(u16, String)]) -> anyhow::Error {
    let mut msg = String::from("these ports on 127.0.0.1 are in use:");
    for (port, what) in busy {
        let _ = write!(msg, "\n  {port} ({what})");
    }
    let mut told = false;
    for node in Layout::nodes() {
        match holder(dir, node) {
            Some(Holder::Quickstart(pid)) if !told => {
                told = true;
                let _ = write!(
                    msg,
                    "\na quickstart already runs in {} as pid {pid}: stop it with Ctrl-C in its \
                     terminal or `kill {pid}`",
                    dir.display()
                );
            }
            Some(Holder::Orphan(pid)) => {
                let _ = write!(
                    msg,
                    "\n{node} of an earlier quickstart still runs as pid {pid} (that quickstart \
                     was killed before it could stop it): `kill {pid}`"
                );
            }
            _ => {}
        }
    }
    let other = base.saturating_add(1000).min(u16::MAX - OFFSET_UPSTREAM);
    // A reused directory keeps its ports (its Raft membership holds them).
    let elsewhere = if reused { " --dir <new dir>" } else { "" };
    anyhow!(
        "{msg}\nfree them, or move every port: tidegate quickstart{elsewhere} --base-port {other}"
    )
}

/// Who still holds `node`'s ports from an earlier start with `dir`, from its pid file:
/// a quickstart that runs now (its pid), or a node left behind by one that was killed.
enum Holder {
    Quickstart(u32),
    Orphan(u32),
}

fn holder(dir: &Path, node: NodeId) -> Option<Holder> {
    let pid: u32 = std::fs::read_to_string(dir.join(format!("{node}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = |pid: &str| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
    };
    let conf = dir.join(format!("{node}.conf"));
    let own = cmdline(&pid.to_string());
    if !own.contains("tidegate") || !own.contains(&*conf.to_string_lossy()) {
        return None;
    }
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, not ')'.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .unwrap_or("");
    if cmdline(ppid).contains("quickstart") {
        return ppid.parse().ok().map(Holder::Quickstart);
    }
    Some(Holder::Orphan(pid))
}

// === the nodes ===

/// The child processes, each waited for by its own task so that an exit is noticed at
/// once and reaped.
struct Fleet {
    dir: PathBuf,
    nodes: Vec<Started>,
    waits: JoinSet<(usize, std::io::Result<ExitStatus>)>,
}

struct Started {
    id: NodeId,
    pid: u32,
    exited: Option<String>,
}

impl Fleet {
    fn log(&self, node: NodeId) -> PathBuf {
        self.dir.join(format!("{node}.log"))
    }

    fn spawn(&mut self, node: NodeId) -> anyhow::Result<u32> {
        let exe = std::env::current_exe()
            .context("cannot find the tidegate binary to start the nodes with")?;
        let log_path = self.log(node);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        writeln!(log, "--- tidegate quickstart starts {node} ---")
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        let conf = self.dir.join(format!("{node}.conf"));
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("start")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the log file")?)
            .stderr(log)
            // The safety net if this process unwinds without stopping them.
            .kill_on_drop(true);
        // Each node is described by its settings file alone: a TIDEGATE_* variable left in
        // the caller's shell would override it silently.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TIDEGATE_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {node} ({})", exe.display()))?;
        let pid = child.id().context("a just-spawned child has a pid")?;
        let _ = std::fs::write(self.dir.join(format!("{node}.pid")), format!("{pid}\n"));
        let index = self.nodes.len();
        self.nodes.push(Started {
            id: node,
            pid,
            exited: None,
        });
        self.waits.spawn(async move { (index, child.wait().await) });
        Ok(pid)
    }

    /// Records the exits that happened since the last call.
    fn reap(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(done) = self.waits.try_join_next() {
            if let Ok((i, status)) = done {
                self.record(i, status);
                out.push(i);
            }
        }
        out
    }

    fn record(&mut self, i: usize, status: std::io::Result<ExitStatus>) {
        let s = &mut self.nodes[i];
        s.exited = Some(match status {
            Ok(st) => st.to_string(),
            Err(e) => format!("cannot be waited for: {e}"),
        });
        let _ = std::fs::remove_file(self.dir.join(format!("{}.pid", s.id)));
    }

    fn running(&self) -> impl Iterator<Item = &Started> {
        self.nodes.iter().filter(|s| s.exited.is_none())
    }

    /// An error naming `node`'s log, with its last lines.
    fn failure(&self, node: NodeId, what: &str) -> anyhow::Error {
        let log = self.log(node);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        anyhow!(
            "{what}; read {} (its last lines follow)\n{tail}",
            log.display()
        )
    }

    /// Fails when one of `nodes` has exited.
    fn ensure_running(&mut self, nodes: &[NodeId]) -> anyhow::Result<()> {
        self.reap();
        for s in &self.nodes {
            if let (true, Some(status)) = (nodes.contains(&s.id), &s.exited) {
                return Err(self.failure(s.id, &format!("{} exited ({status})", s.id)));
            }
        }
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM (which it returns), reporting nodes that exit on
    /// their way; fails once every node has exited.
    async fn run_until(&mut self, signals: &mut Signals) -> anyhow::Result<&'static str> {
        loop {
            tokio::select! {
                sig = signals.recv() => return Ok(sig),
                Some(done) = self.waits.join_next() => {
                    if let Ok((i, status)) = done {
                        self.record(i, status);
                        let id = self.nodes[i].id;
                        println!(
                            "{id} exited ({}); its log: {}",
                            self.nodes[i].exited.as_deref().unwrap_or(""),
                            self.log(id).display()
                        );
                    }
                    if self.running().next().is_none() {
                        bail!("every node has exited; their logs are in {}", self.dir.display());
                    }
                }
            }
        }
    }

    /// SIGTERM to every running node (data planes first: they are the clients), then
    /// waits for each; a node still there after [`STOP_TIMEOUT`] is killed.
    async fn stop(&mut self) -> anyhow::Result<()> {
        self.reap();
        let mut order: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].exited.is_none())
            .collect();
        order.sort_by_key(|i| self.nodes[*i].id.kind == Kind::ControlPlane);
        if order.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = order
            .iter()
            .map(|i| self.nodes[*i].id.to_string())
            .collect();
        println!("stopping {} ...", names.join(", "));
        for i in &order {
            signal_pid(self.nodes[*i].pid, "TERM");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut killed = Vec::new();
        while self.running().next().is_some() {
            match tokio::time::timeout_at(deadline, self.waits.join_next()).await {
                Ok(Some(Ok((i, status)))) => {
                    self.record(i, status);
                    let s = &self.nodes[i];
                    println!("{} stopped ({})", s.id, s.exited.as_deref().unwrap_or(""));
                }
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) => {
                    for s in self.running() {
                        signal_pid(s.pid, "KILL");
                        killed.push(s.id.to_string());
                    }
                    // The wait tasks reap the killed nodes; their exits are noted below.
                    while let Some(Ok((i, status))) = self.waits.join_next().await {
                        self.record(i, status);
                    }
                }
            }
        }
        if !killed.is_empty() {
            bail!(
                "{} did not stop within {} s of SIGTERM and were killed; their logs are in {}",
                killed.join(", "),
                STOP_TIMEOUT.as_secs(),
                self.dir.display()
            );
        }
        Ok(())
    }
}

/// `kill -<sig> pid`: the binary has no libc binding and no unsafe code, and the
/// command is on every system it runs on (tests/support does the same).
fn signal_pid(pid: u32, sig: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        eprintln!("cannot send SIG{sig} to pid {pid} (is `kill` installed?)");
    }
}

/// SIGINT and SIGTERM, registered before any child is started so that neither can kill
/// this process with a node left behind.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

// === waiting on conditions ===

/// GET `path` on 127.0.0.1:`port`: the status and the body as JSON (`Null` when it is
/// not JSON); None when nothing answers.
async fn get_json(port: u16, path: &str) -> Option<(StatusCode, Value)> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
            .body(Empty::<Bytes>::new())
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        let status = res.status();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

/// Polls `probe` until it gives a value; fails when one of `nodes` exits, or after
/// `timeout` with an error that names `log_of`'s log.
async fn wait_for<T, F, Fut>(
    fleet: &mut Fleet,
    nodes: &[NodeId],
    log_of: NodeId,
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        fleet.ensure_running(nodes)?;
        if Instant::now() >= deadline {
            return Err(fleet.failure(
                log_of,
                &format!("timed out after {} s waiting for {what}", timeout.as_secs()),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Starts a step's line; [`done`] ends it with how long the step took.
fn step(text: &str) -> Instant {
    print!("{text} ... ");
    let _ = std::io::stdout().flush();
    Instant::now()
}

fn done(started: Instant, text: impl std::fmt::Display) {
    println!("{text} [{:.1}s]", started.elapsed().as_secs_f64());
}

/// Spawns `node` and waits until `/status` on its `port` (its `api`) answers; its pid.
async fn start_node(
    fleet: &mut Fleet,
    node: NodeId,
    port: u16,
    api: &str,
    timeout: Duration,
) -> anyhow::Result<u32> {
    let pid = fleet.spawn(node)?;
    wait_for(
        fleet,
        &[node],
        node,
        timeout,
        &format!("{node}'s {api} on 127.0.0.1:{port}"),
        || async move {
            get_json(port, "/status")
                .await
                .filter(|(s, _)| s.is_success())
        },
    )
    .await?;
    Ok(pid)
}

/// Starts the nodes and waits until the cluster serves: every CP's Admin API, one
/// leader they agree on, every DP in sync with it.
async fn bring_up(fleet: &mut Fleet, layout: &Layout, timeout: Duration) -> anyhow::Result<()> {
    let began = Instant::now();
    let cps: Vec<NodeId> = Layout::nodes()
        .into_iter()
        .filter(|n| n.kind == Kind::ControlPlane)
        .collect();
    let dps: Vec<NodeId> = Layout::nodes()
        .into_iter()
        .filter(|n| n.kind == Kind::DataPlane)
        .collect();
    for &cp in &cps {
        let started = step(&format!("starting {cp}"));
        let admin = layout.admin(cp.n);
        let pid = start_node(fleet, cp, admin, "Admin API", timeout).await?;
        done(
            started,
            format_args!(
                "ready (pid {pid}, Admin API http://127.0.0.1:{admin}, console http://127.0.0.1:{})",
                layout.console(cp.n)
            ),
        );
    }

    let started = step("waiting for a leader");
    let admins: Vec<u16> = cps.iter().map(|cp| layout.admin(cp.n)).collect();
    let (leader, term) = wait_for(
        fleet,
        &cps,
        cps[0],
        timeout,
        "the control planes to agree on a leader",
        || {
            let admins = admins.clone();
            async move {
                let mut agreed = None;
                for port in admins {
                    let (_, body) = get_json(port, "/clustering/control-planes").await?;
                    let leader = body["leader"].as_u64()?;
                    let members = body["members"].as_array()?.len();
                    if members != usize::from(CONTROL_PLANES)
                        || agreed.is_some_and(|(l, _)| l != leader)
                    {
                        return None;
                    }
                    agreed = Some((leader, body["term"].as_u64().unwrap_or(0)));
                }
                agreed
            }
        },
    )
    .await?;
    done(started, format_args!("cp{leader} leads (term {term})"));

    for &dp in &dps {
        let started = step(&format!("starting {dp}"));
        let pid = start_node(fleet, dp, layout.status(dp), "status API", timeout).await?;
        done(
            started,
            format_args!(
                "ready (pid {pid}, proxy http://127.0.0.1:{})",
                layout.proxy(dp.n)
            ),
        );
    }
    let leader_admin = layout.admin(u16::try_from(leader).unwrap_or(1));
    for &dp in &dps {
        let status = layout.status(dp);
        let started = step(&format!("syncing {dp}"));
        let (hash, via) = wait_for(
            fleet,
            &[dp],
            dp,
            timeout,
            &format!("{dp} to connect to a control plane and take its config"),
            || async move {
                let (_, cp) = get_json(leader_admin, "/clustering/control-planes").await?;
                let (_, st) = get_json(status, "/status").await?;
                let via = st["control_plane"]["connected_to"].as_str()?.to_string();
                let hash = st["configuration_hash"].as_str()?.to_string();
                (cp["config_hash"].as_str()? == hash).then_some((hash, via))
            },
        )
        .await?;
        done(
            started,
            format_args!("connected to {via}, in sync with the leader: config hash {hash}"),
        );
    }
    done(
        began,
        format_args!(
            "{} control planes and {} data planes up and in sync",
            cps.len(),
            dps.len()
        ),
    );
    Ok(())
}

fn urls(ports: impl Iterator<Item = u16>) -> String {
    ports
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// What a newcomer needs next: where everything is and lines to paste.
fn summary(layout: &Layout, dir: &Path) -> String {
    let admin = layout.admin(1);
    let statuses = Layout::nodes()
        .into_iter()
        .map(|n| format!("{n} http://127.0.0.1:{}", layout.status(n)))
        .collect::<Vec<_>>()
        .join("  ");
    let names: Vec<String> = Layout::nodes().iter().map(ToString::to_string).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ntidegate quickstart is running: {CONTROL_PLANES} control planes, {DATA_PLANES} data \
         planes, in {}\n",
        dir.display()
    );
    let _ = writeln!(
        out,
        "  Admin API         {}   (any control plane takes writes)",
        urls((1..=CONTROL_PLANES).map(|n| layout.admin(n)))
    );
    let _ = writeln!(
        out,
        "  Cluster console   {}   (open one in a browser)",
        urls((1..=CONTROL_PLANES).map(|n| layout.console(n)))
    );
    let _ = writeln!(
        out,
        "  Proxy             {}",
        urls((1..=DATA_PLANES).map(|n| layout.proxy(n)))
    );
    let _ = writeln!(out, "  Status            {statuses}");
    let _ = writeln!(
        out,
        "  Example upstream  http://127.0.0.1:{}   (answers each request with what it received)",
        layout.upstream()
    );
    let _ = writeln!(
        out,
        "  Settings, logs    {}/{{{}}}.{{conf,log}}\n",
        dir.display(),
        names.join(",")
    );
    let _ = writeln!(
        out,
        "Try it: a service and a route through the Admin API, then a request through each proxy:\n"
    );
    let _ = writeln!(
        out,
        "  curl -s -X PUT http://127.0.0.1:{admin}/services/example -d url=http://127.0.0.1:{}",
        layout.upstream()
    );
    let _ = writeln!(
        out,
        "  curl -s -X PUT http://127.0.0.1:{admin}/services/example/routes/example -d 'paths[]=/example'"
    );
    for dp in 1..=DATA_PLANES {
        let _ = writeln!(
            out,
            "  curl -s http://127.0.0.1:{}/example/hello",
            layout.proxy(dp)
        );
    }
    let _ = writeln!(
        out,
        "  curl -s http://127.0.0.1:{admin}/clustering/data-planes\n"
    );
    let _ = writeln!(
        out,
        "Ctrl-C stops every node; `tidegate quickstart --dir {}` starts them again with their data.",
        dir.display()
    );
    out
}

async fn quickstart(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let (dir, base, reused) = prepare_dir(&args.dir, args.base_port)?;
    let layout = Layout::new(base)?;
    let busy = busy_ports(&layout);
    if !busy.is_empty() {
        return Err(busy_ports_error(&dir, base, reused, &busy));
    }
    if !reused {
        mark(&dir, base)?;
    }
    let mut signals = Signals::new()?;

    let files = Files::new(&dir);
    if files.all(&dir).iter().all(|p| p.exists()) {
        println!("reusing the certificates in {}", dir.display());
    } else {
        let started = step("generating certificates");
        generate_certificates(&dir, &files)?;
        done(
            started,
            "done (cluster.crt: shared mode, every node; raft-*.crt: the control planes' Raft link)",
        );
    }
    for node in Layout::nodes() {
        let conf = dir.join(format!("{node}.conf"));
        if !conf.exists() {
            crate::hybrid_cmd::write_file(&conf, &conf_text(node, &layout, &dir), 0o644)?;
        }
    }
    let upstream = StdListener::bind(("127.0.0.1", layout.upstream()))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for the example upstream",
                layout.upstream()
            )
        })?;
    tokio::spawn(serve_example_upstream(upstream));

    let mut fleet = Fleet {
        dir: dir.clone(),
        nodes: Vec::new(),
        waits: JoinSet::new(),
    };
    let started = tokio::select! {
        r = bring_up(&mut fleet, &layout, timeout) => r.map(|()| true),
        sig = signals.recv() => {
            println!("\n{sig} received");
            Ok(false)
        }
    };
    let started = match started {
        Ok(started) => started,
        Err(e) => {
            println!();
            return Err(match fleet.stop().await {
                Ok(()) => e,
                Err(s) => e.context(s),
            });
        }
    };
    if started {
        print!("{}", summary(&layout, &dir));
        let _ = std::io::stdout().flush();
        let sig = fleet.run_until(&mut signals).await?;
        println!("\n{sig} received");
    }
    fleet.stop().await?;
    println!("every node has stopped");
    Ok(ExitCode::SUCCESS)
}

// === the example upstream ===

/// An HTTP/1.1 server that answers every request with its method, path and headers as
/// JSON, so that the printed curl lines show what the proxy forwarded.
async fn serve_example_upstream(listener: tokio::net::TcpListener) {
    let permits = Arc::new(tokio::sync::Semaphore::new(UPSTREAM_MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(echo(&req))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn echo(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    let body = json!({
        "upstream": "tidegate quickstart example upstream",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!("{body:#}\n"))))
        .expect("a static response builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_kongs_habits_and_shift_with_the_base() {
        let l = Layout::new(8000).unwrap();
        let cps: Vec<u16> = (1..=3).map(|n| l.admin(n)).collect();
        assert_eq!(cps, vec![8001, 8011, 8021]);
        assert_eq!((l.proxy(1), l.proxy(2)), (8000, 8010));
        assert_eq!((l.cluster(1), l.raft(1)), (8005, 8007));
        let consoles: Vec<u16> = (1..=3).map(|n| l.console(n)).collect();
        assert_eq!(consoles, vec![8002, 8012, 8022]);
        assert_eq!(l.upstream(), 8080);
        assert_eq!(
            l.raft_peers(),
            "1@127.0.0.1:8007,2@127.0.0.1:8017,3@127.0.0.1:8027"
        );
        assert_eq!(
            l.control_planes_for(2),
            "127.0.0.1:8015,127.0.0.1:8025,127.0.0.1:8005"
        );
        let mut ports: Vec<u16> = l.ports().iter().map(|(p, _)| *p).collect();
        let n = ports.len();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), n, "every port is used once");
        let shifted = Layout::new(20_000).unwrap();
        assert_eq!(shifted.admin(2), 20_011);
        assert!(Layout::new(65_500)
            .unwrap_err()
            .to_string()
            .contains("pick 1 to 65455"));
    }

    #[test]
    fn conf_files_are_valid_settings_for_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(9000).unwrap();
        for node in Layout::nodes() {
            let path = dir.path().join(format!("{node}.conf"));
            std::fs::write(&path, conf_text(node, &layout, dir.path())).unwrap();
            let s = crate::settings::load(Some(&path), None, Vec::new()).unwrap();
            assert_eq!(s.prefix, dir.path().join(node.to_string()));
            assert_eq!(s.log_level, "info");
            assert_eq!(s.status_listen.unwrap().port(), layout.status(node));
            match node.kind {
                Kind::ControlPlane => {
                    assert_eq!(s.role, crate::settings::Role::ControlPlane);
                    assert_eq!(s.raft_node_id, u64::from(node.n));
                    assert_eq!(s.raft_peers.len(), 3);
                    assert!(s.raft_tls.is_some());
                    assert_eq!(s.admin_listen.port(), layout.admin(node.n));
                    assert_eq!(
                        s.admin_gui_listen.map(|a| a.port()),
                        Some(layout.console(node.n))
                    );
                    assert!(s.proxy_listen.is_empty());
                }
                Kind::DataPlane => {
                    assert_eq!(s.role, crate::settings::Role::DataPlane);
                    assert_eq!(s.cluster.control_planes.len(), 3);
                    assert_eq!(s.proxy_listen.len(), 1);
                }
            }
        }
    }

    #[test]
    fn a_directory_is_reused_only_when_a_quickstart_made_it() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("qs");
        let (abs, base, reused) = prepare_dir(&fresh, Some(9100)).unwrap();
        assert_eq!((base, reused), (9100, false));
        assert!(abs.is_absolute() && !abs.join(MARKER).exists());
        // Not marked yet (its ports were not checked): another base port is fine.
        assert_eq!(prepare_dir(&fresh, Some(9300)).unwrap().1, 9300);
        mark(&abs, base).unwrap();
        // The next run takes the base port it was made with.
        assert_eq!(prepare_dir(&fresh, None).unwrap().1, 9100);
        assert!(prepare_dir(&fresh, None).unwrap().2);
        let err = prepare_dir(&fresh, Some(9200)).unwrap_err().to_string();
        assert!(err.contains("--base-port 9100"), "{err}");

        let foreign = root.path().join("other");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = prepare_dir(&foreign, None).unwrap_err().to_string();
        assert!(err.contains("not a quickstart directory"), "{err}");

        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(prepare_dir(&empty, None).unwrap().1, DEFAULT_BASE_PORT);
    }

    /// The Raft link verifies its peers with webpki against `raft_ca_cert` and the IP it
    /// dials; the cluster link's `pki` mode runs the same verification, so a handshake
    /// there proves the certificates `generate_certificates` writes.
    #[tokio::test]
    async fn raft_certificates_pass_mutual_tls_for_127_0_0_1_only() {
        use tokio_stream::StreamExt;
        let now = crate::start::SystemClock.now();
        let ca = tidegate_tls::gen_ca(now, 30, "test CA").unwrap();
        let a = raft_cert(&ca, now, 30, 1).unwrap();
        let b = raft_cert(&ca, now, 30, 2).unwrap();
        let tls = |p: &tidegate_tls::GeneratedCert, ca: &str, name: &str| {
            tidegate_tls::ClusterTls::from_pem("pki", &p.cert_pem, &p.key_pem, Some(ca), Some(name))
                .unwrap()
        };
        let server = tls(&a, &ca.cert_pem, "127.0.0.1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut accepted = tidegate_tls::incoming(listener, server.server_config().unwrap());

        // A peer of the same CA dialling 127.0.0.1: the server completes the handshake
        // only after the client verified it and sent its own certificate.
        let client = tls(&b, &ca.cert_pem, "127.0.0.1");
        let target = addr.clone();
        let dial = tokio::spawn(async move { tidegate_tls::channel(&target, &client).await });
        let conn = tokio::time::timeout(Duration::from_secs(10), accepted.next())
            .await
            .expect("the server completes a handshake");
        assert!(matches!(conn, Some(Ok(_))));
        dial.abort();

        // Another CA's peer does not trust this server, nor does a name it lacks.
        let other = tidegate_tls::gen_ca(now, 30, "other CA").unwrap();
        let stranger = raft_cert(&other, now, 30, 9).unwrap();
        let err = tidegate_tls::channel(&addr, &tls(&stranger, &other.cert_pem, "127.0.0.1"))
            .await
            .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
        let err = tidegate_tls::channel(&addr, &tls(&b, &ca.cert_pem, "10.0.0.1"))
            .await
            .unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    }
}
