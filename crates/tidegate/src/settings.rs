//! Process settings: a `tidegate.conf` in Kong's `key = value` syntax, every key
//! overridable by `TIDEGATE_<KEY>` in the environment, then validated into [`Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

pub const DEFAULT_PREFIX: &str = "./tidegate-data";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8001";
/// Where Kong Manager lives in Kong; here, the cluster console.
pub const DEFAULT_ADMIN_GUI_LISTEN: &str = "127.0.0.1:8002";
pub const DEFAULT_RAFT_LISTEN: &str = "0.0.0.0:8007";
pub const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8005";
pub const DEFAULT_PROXY_LISTEN: &str = "0.0.0.0:8000, 0.0.0.0:8443 ssl";
/// More threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;
/// A settings file is small; anything larger is a mistake.
const MAX_CONF_BYTES: u64 = 1 << 20;

/// Every key tidegate understands, with its default ("" when unset).
const KEYS: &[(&str, &str)] = &[
    ("role", "traditional"),
    ("prefix", DEFAULT_PREFIX),
    ("proxy_listen", DEFAULT_PROXY_LISTEN),
    ("admin_listen", DEFAULT_ADMIN_LISTEN),
    ("admin_gui_listen", DEFAULT_ADMIN_GUI_LISTEN),
    ("status_listen", "off"),
    ("cluster_listen", DEFAULT_CLUSTER_LISTEN),
    ("cluster_control_plane", "127.0.0.1:8005"),
    ("cluster_mtls", "shared"),
    ("cluster_cert", ""),
    ("cluster_cert_key", ""),
    ("cluster_ca_cert", ""),
    ("cluster_server_name", ""),
    ("cluster_dp_labels", ""),
    ("cluster_max_payload", "16777216"),
    ("cluster_data_plane_purge_delay", "1209600"),
    ("declarative_config", ""),
    ("trusted_ips", ""),
    ("real_ip_header", "X-Real-IP"),
    ("real_ip_recursive", "off"),
    ("plugins", "bundled"),
    ("log_level", "notice"),
    ("worker_threads", "auto"),
    ("raft_node_id", "1"),
    ("raft_listen", DEFAULT_RAFT_LISTEN),
    ("raft_advertise", ""),
    ("raft_peers", ""),
    ("raft_cert", ""),
    ("raft_cert_key", ""),
    ("raft_ca_cert", ""),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Traditional,
    ControlPlane,
    DataPlane,
}

#[derive(Debug, Clone)]
pub struct RaftFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Validated settings. Only what the built roles use is typed here; the rest is checked
/// for syntax so that a typo fails at start-up rather than later.
#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    pub prefix: PathBuf,
    pub admin_listen: SocketAddr,
    /// `admin_gui_listen`: the cluster console of a CP (`control_plane`, `traditional`);
    /// None when `off`. A DP serves none.
    pub admin_gui_listen: Option<SocketAddr>,
    pub log_level: String,
    /// `worker_threads` (as Kong's `nginx_worker_processes`): None for `auto`, one per
    /// core the process may run on.
    pub worker_threads: Option<usize>,
    pub raft_node_id: u64,
    pub raft_listen: SocketAddr,
    /// The address peers dial; defaults to `raft_listen`.
    pub raft_advertise: String,
    /// The initial group: `(id, address)`; empty for a single-node group.
    pub raft_peers: Vec<(u64, String)>,
    pub raft_tls: Option<RaftFiles>,
    pub cluster: ClusterSettings,
    /// `declarative_config`: what a DP without a cache starts from.
    pub declarative_config: Option<PathBuf>,
    /// `plugins`, resolved to names: what a DP advertises and may run.
    pub plugins: Vec<String>,
    /// `status_listen`, None when `off`.
    pub status_listen: Option<SocketAddr>,
    /// `proxy_listen`; empty when `off`. Used by `data_plane` and `traditional`.
    pub proxy_listen: Vec<tidegate_proxy::Listen>,
    /// `trusted_ips` with `real_ip_header` and `real_ip_recursive`; None when no
    /// address is trusted (Kong's default).
    pub real_ip: Option<std::sync::Arc<tidegate_proxy::RealIp>>,
}

/// Kong's `trusted_ips`, `real_ip_header` and `real_ip_recursive`.
fn real_ip(
    values: &BTreeMap<String, String>,
) -> anyhow::Result<Option<std::sync::Arc<tidegate_proxy::RealIp>>> {
    let list: Vec<&str> = values["trusted_ips"]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.iter().any(|e| e.starts_with("unix:")) {
        bail!("trusted_ips: unix: sockets are not supported (the proxy listens on TCP only)");
    }
    let trusted = tidegate_model::ipset::IpSet::build(&list)
        .map_err(|e| anyhow!("trusted_ips: {e} (a comma-separated list of IPs and CIDRs)"))?;
    let header = values["real_ip_header"].trim();
    if header.eq_ignore_ascii_case("proxy_protocol") {
        bail!(
            "real_ip_header = proxy_protocol is not supported: tidegate's listeners do not              read the PROXY protocol; use X-Real-IP or X-Forwarded-For"
        );
    }
    let header = hyper::header::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
        .map_err(|_| anyhow!("real_ip_header = '{header}' is not a header name"))?;
    let recursive = match values["real_ip_recursive"].as_str() {
        "on" => true,
        "off" => false,
        other => bail!("real_ip_recursive = '{other}' must be on or off"),
    };
    Ok((!trusted.is_empty()).then(|| {
        std::sync::Arc::new(tidegate_proxy::RealIp {
            trusted,
            header,
            recursive,
        })
    }))
}

/// The CP ↔ DP link (`cluster_*`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub listen: SocketAddr,
    /// `cluster_control_plane`: where a DP dials, in order.
    pub control_planes: Vec<String>,
    /// `shared` or `pki`.
    pub mtls: String,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub dp_labels: BTreeMap<String, String>,
    pub max_payload: usize,
    pub purge_delay_secs: u64,
}

/// Kong's `cluster_dp_labels`: `key:value` pairs separated by commas.
fn dp_labels(v: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    let mut out = BTreeMap::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, val) = item.split_once(':').ok_or_else(|| {
            anyhow!("cluster_dp_labels entry '{item}' must be key:value (e.g. region:eu-west-1)")
        })?;
        if !valid(k) || !valid(val) {
            bail!(
                "cluster_dp_labels entry '{item}': keys and values are 1-63 characters of \
                 letters, digits and -._~"
            );
        }
        if out.insert(k.to_string(), val.to_string()).is_some() {
            bail!("cluster_dp_labels sets '{k}' twice");
        }
    }
    Ok(out)
}

/// Kong's `plugins`: `bundled`, `off`, or a list of names and `bundled`. A custom
/// build's own plugins are named explicitly, as in Kong.
fn plugin_names(v: &str) -> anyhow::Result<Vec<String>> {
    let bundled: Vec<String> = tidegate_model::plugins::bundled()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let installed: Vec<String> = tidegate_model::plugins::installed()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "off" => {}
            "bundled" => out.extend(bundled.iter().cloned()),
            name if installed.iter().any(|b| b == name) => out.push(name.to_string()),
            name => bail!(
                "plugins: '{name}' is not installed in this build (installed plugins: {})",
                installed.join(", ")
            ),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads `key = value` lines; `#` starts a comment unless escaped as `\#`.
pub fn parse_conf(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let mut line = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'#') => {
                    line.push('#');
                    chars.next();
                }
                '#' => break,
                c => line.push(c),
            }
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("line {}: expected 'key = value', got '{line}'", n + 1))?;
        let key = k.trim().to_ascii_lowercase();
        if !KEYS.iter().any(|(known, _)| *known == key) {
            bail!("line {}: unknown setting '{key}'", n + 1);
        }
        out.insert(key, v.trim().to_string());
    }
    Ok(out)
}

/// Defaults, then the file, then `TIDEGATE_*` from `env`.
pub fn load(
    conf: Option<&Path>,
    prefix_flag: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Settings> {
    let mut values: BTreeMap<String, String> = KEYS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(path) = conf {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read settings file {}", path.display()))?;
        if meta.len() > MAX_CONF_BYTES {
            bail!(
                "settings file {} is larger than {MAX_CONF_BYTES} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read settings file {}", path.display()))?;
        let parsed = parse_conf(&text).with_context(|| format!("in {}", path.display()))?;
        values.extend(parsed);
    }
    for (k, v) in env {
        if let Some(key) = k.strip_prefix("TIDEGATE_") {
            let key = key.to_ascii_lowercase();
            if KEYS.iter().any(|(known, _)| *known == key) {
                values.insert(key, v);
            }
        }
    }
    if let Some(p) = prefix_flag {
        values.insert("prefix".into(), p.display().to_string());
    }
    validate(&values)
}

fn addr(values: &BTreeMap<String, String>, key: &str) -> anyhow::Result<SocketAddr> {
    let v = &values[key];
    v.parse()
        .map_err(|_| anyhow!("{key} = '{v}' is not an ip:port address (e.g. 127.0.0.1:8001)"))
}

fn validate(values: &BTreeMap<String, String>) -> anyhow::Result<Settings> {
    let role = match values["role"].as_str() {
        "traditional" => Role::Traditional,
        "control_plane" => Role::ControlPlane,
        "data_plane" => Role::DataPlane,
        other => bail!("role = '{other}' must be one of traditional, control_plane, data_plane"),
    };
    let log_level = values["log_level"].clone();
    let known_levels = [
        "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
    ];
    if !known_levels.contains(&log_level.as_str()) {
        bail!(
            "log_level = '{log_level}' must be one of {}",
            known_levels.join(", ")
        );
    }
    let raft_node_id: u64 = values["raft_node_id"].parse().map_err(|_| {
        anyhow!(
            "raft_node_id = '{}' must be a positive integer",
            values["raft_node_id"]
        )
    })?;
    if raft_node_id == 0 {
        bail!("raft_node_id must be a positive integer, not 0");
    }
    let raft_listen = addr(values, "raft_listen")?;
    let raft_advertise = match values["raft_advertise"].as_str() {
        "" => raft_listen.to_string(),
        a => a.to_string(),
    };
    let mut raft_peers = Vec::new();
    for item in values["raft_peers"]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| anyhow!("raft_peers entry '{item}' must be id@host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| anyhow!("raft_peers entry '{item}': '{id}' is not a node id"))?;
        if address.rsplit_once(':').is_none() {
            bail!("raft_peers entry '{item}': '{address}' must be host:port");
        }
        if raft_peers.iter().any(|(other, _)| *other == id) {
            bail!("raft_peers lists node {id} twice");
        }
        raft_peers.push((id, address.to_string()));
    }
    if !raft_peers.is_empty() && !raft_peers.iter().any(|(id, _)| *id == raft_node_id) {
        bail!("raft_peers must include this node (raft_node_id = {raft_node_id})");
    }
    let files = ["raft_cert", "raft_cert_key", "raft_ca_cert"].map(|k| values[k].clone());
    let raft_tls = match files.iter().filter(|f| !f.is_empty()).count() {
        0 => None,
        3 => Some(RaftFiles {
            cert: files[0].clone().into(),
            key: files[1].clone().into(),
            ca: files[2].clone().into(),
        }),
        _ => bail!("set all of raft_cert, raft_cert_key and raft_ca_cert, or none"),
    };
    if raft_peers.len() > 1 && raft_tls.is_none() {
        bail!(
            "a multi-node control plane (raft_peers) needs raft_cert, raft_cert_key and raft_ca_cert: \
             Raft traffic is always mutual TLS"
        );
    }
    if role == Role::Traditional && raft_peers.len() > 1 {
        bail!("role = traditional is a single node; use role = control_plane for a cluster");
    }
    let number = |key: &str| {
        values[key]
            .parse::<u64>()
            .map_err(|_| anyhow!("{key} = '{}' must be a non-negative integer", values[key]))
    };
    let worker_threads = match values["worker_threads"].as_str() {
        "auto" => None,
        n => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_WORKER_THREADS).contains(&n) => Some(n),
            _ => bail!(
                "worker_threads = '{n}' must be auto or a number of threads from 1 to \
                 {MAX_WORKER_THREADS}"
            ),
        },
    };
    let max_payload = number("cluster_max_payload")?;
    if !(4096..=(1 << 30)).contains(&max_payload) {
        bail!("cluster_max_payload = {max_payload} must be between 4096 and 1073741824 bytes");
    }
    let purge_delay_secs = number("cluster_data_plane_purge_delay")?;
    if purge_delay_secs < 60 {
        bail!("cluster_data_plane_purge_delay must be 60 or greater");
    }
    let path = |key: &str| Some(PathBuf::from(&values[key])).filter(|p| !p.as_os_str().is_empty());
    let cluster = ClusterSettings {
        listen: addr(values, "cluster_listen")?,
        control_planes: values["cluster_control_plane"]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        mtls: values["cluster_mtls"].clone(),
        cert: path("cluster_cert"),
        key: path("cluster_cert_key"),
        ca: path("cluster_ca_cert"),
        server_name: Some(values["cluster_server_name"].clone()).filter(|s| !s.is_empty()),
        dp_labels: dp_labels(&values["cluster_dp_labels"])?,
        max_payload: max_payload as usize,
        purge_delay_secs,
    };
    if !["shared", "pki"].contains(&cluster.mtls.as_str()) {
        bail!("cluster_mtls = '{}' must be shared or pki", cluster.mtls);
    }
    if role != Role::Traditional {
        if cluster.cert.is_none() || cluster.key.is_none() {
            bail!(
                "cluster certificate and key must be provided to use Hybrid mode \
                 (cluster_cert and cluster_cert_key; `tidegate hybrid gen_cert` makes a pair)"
            );
        }
        if cluster.mtls == "pki" && cluster.ca.is_none() {
            bail!("cluster_mtls = pki needs cluster_ca_cert");
        }
    }
    for a in &cluster.control_planes {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            bail!("cluster_control_plane entry '{a}' must be host:port");
        }
    }
    if role == Role::DataPlane && cluster.control_planes.is_empty() {
        bail!("role = data_plane needs cluster_control_plane (host:port of a control plane)");
    }
    let status_listen = match values["status_listen"].as_str() {
        "off" | "" => None,
        _ => Some(addr(values, "status_listen")?),
    };
    let admin_gui_listen = match values["admin_gui_listen"].as_str() {
        "off" | "" => None,
        _ => Some(addr(values, "admin_gui_listen")?),
    };
    let proxy_listen = tidegate_proxy::parse_proxy_listen(&values["proxy_listen"])
        .map_err(|e| anyhow!("proxy_listen = '{}': {e}", values["proxy_listen"]))?;
    Ok(Settings {
        real_ip: real_ip(values)?,
        proxy_listen,
        cluster,
        declarative_config: path("declarative_config"),
        plugins: plugin_names(&values["plugins"])?,
        status_listen,
        role,
        prefix: PathBuf::from(&values["prefix"]),
        admin_listen: addr(values, "admin_listen")?,
        admin_gui_listen,
        log_level,
        worker_threads,
        raft_node_id,
        raft_listen,
        raft_advertise,
        raft_peers,
        raft_tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_settings_is_the_embedded_default() {
        let s = load(None, None, env(&[])).unwrap();
        assert_eq!(s.role, Role::Traditional);
        assert_eq!(s.prefix, PathBuf::from("./tidegate-data"));
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8001");
        assert_eq!(s.admin_gui_listen.unwrap().to_string(), "127.0.0.1:8002");
        assert!(s.raft_peers.is_empty());
    }

    #[test]
    fn worker_threads_are_auto_or_a_bounded_count() {
        let threads = |v: &str| load(None, None, env(&[("TIDEGATE_WORKER_THREADS", v)]));
        assert_eq!(load(None, None, env(&[])).unwrap().worker_threads, None);
        assert_eq!(threads("auto").unwrap().worker_threads, None);
        assert_eq!(threads("1").unwrap().worker_threads, Some(1));
        assert_eq!(threads("16").unwrap().worker_threads, Some(16));
        for bad in ["0", "-1", "two", "1025"] {
            let e = threads(bad).unwrap_err().to_string();
            assert!(e.contains("worker_threads"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_console_listens_where_told_or_nowhere() {
        let gui = |v: &str| load(None, None, env(&[("TIDEGATE_ADMIN_GUI_LISTEN", v)]));
        assert_eq!(
            gui("0.0.0.0:9002")
                .unwrap()
                .admin_gui_listen
                .unwrap()
                .to_string(),
            "0.0.0.0:9002"
        );
        assert_eq!(gui("off").unwrap().admin_gui_listen, None);
        assert!(gui("8002")
            .unwrap_err()
            .to_string()
            .contains("admin_gui_listen = '8002' is not an ip:port address"));
        let conf = parse_conf("admin_gui_listen = off\n").unwrap();
        assert_eq!(conf["admin_gui_listen"], "off");
    }

    #[test]
    fn trusted_ips_and_the_real_ip_header() {
        let with = |vars: &[(&str, &str)]| load(None, None, env(vars));
        assert!(
            with(&[]).unwrap().real_ip.is_none(),
            "nobody is trusted by default"
        );
        let s = with(&[
            ("TIDEGATE_TRUSTED_IPS", "10.0.0.0/8, ::1"),
            ("TIDEGATE_REAL_IP_HEADER", "X-Forwarded-For"),
            ("TIDEGATE_REAL_IP_RECURSIVE", "on"),
        ])
        .unwrap();
        let real = s.real_ip.expect("trusted");
        assert!(real.trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(real.trusted.contains("::1".parse().unwrap()));
        assert!(!real.trusted.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(real.header.as_str(), "x-forwarded-for");
        assert!(real.recursive);
        let s = with(&[("TIDEGATE_TRUSTED_IPS", "0.0.0.0/0,::/0")]).unwrap();
        let real = s.real_ip.expect("all trusted");
        assert_eq!(real.header.as_str(), "x-real-ip");
        assert!(!real.recursive);

        let err = |vars: &[(&str, &str)]| with(vars).unwrap_err().to_string();
        assert!(err(&[("TIDEGATE_TRUSTED_IPS", "10.0.0.0/33")])
            .contains("trusted_ips: invalid ip or cidr range: '10.0.0.0/33'"));
        assert!(err(&[
            ("TIDEGATE_TRUSTED_IPS", "10.0.0.1"),
            ("TIDEGATE_REAL_IP_HEADER", "proxy_protocol")
        ])
        .contains("proxy_protocol is not supported"));
        assert!(err(&[("TIDEGATE_REAL_IP_RECURSIVE", "yes")])
            .contains("real_ip_recursive = 'yes' must be on or off"));
    }

    #[test]
    fn conf_syntax_comments_and_escapes() {
        let m = parse_conf("# a comment\nrole = control_plane # trailing\n\nlog_level=warn\ncluster_dp_labels = a\\#b\n").unwrap();
        assert_eq!(m["role"], "control_plane");
        assert_eq!(m["log_level"], "warn");
        assert_eq!(m["cluster_dp_labels"], "a#b");
        assert!(parse_conf("nonsense")
            .unwrap_err()
            .to_string()
            .contains("expected 'key = value'"));
        assert!(parse_conf("rolle = x")
            .unwrap_err()
            .to_string()
            .contains("unknown setting 'rolle'"));
    }

    #[test]
    fn env_overrides_file_and_flag_overrides_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("tidegate.conf");
        std::fs::write(&conf, "admin_listen = 127.0.0.1:9001\nlog_level = warn\n").unwrap();
        let s = load(
            Some(&conf),
            Some(Path::new("/tmp/p")),
            env(&[("TIDEGATE_LOG_LEVEL", "debug"), ("UNRELATED", "x")]),
        )
        .unwrap();
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9001");
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.prefix, PathBuf::from("/tmp/p"));
    }

    #[test]
    fn bad_values_say_what_to_do() {
        let err = |pairs: &[(&str, &str)]| load(None, None, env(pairs)).unwrap_err().to_string();
        assert!(err(&[("TIDEGATE_ROLE", "leader")]).contains("must be one of traditional"));
        assert!(err(&[("TIDEGATE_ADMIN_LISTEN", "localhost")]).contains("not an ip:port"));
        assert!(err(&[("TIDEGATE_RAFT_NODE_ID", "0")]).contains("not 0"));
        assert!(err(&[
            ("TIDEGATE_ROLE", "control_plane"),
            ("TIDEGATE_RAFT_PEERS", "1@a:1,2@b:1")
        ])
        .contains("needs raft_cert"));
        assert!(err(&[
            ("TIDEGATE_ROLE", "control_plane"),
            ("TIDEGATE_RAFT_NODE_ID", "3"),
            ("TIDEGATE_RAFT_PEERS", "1@a:1"),
        ])
        .contains("must include this node"));
        assert!(err(&[("TIDEGATE_RAFT_PEERS", "1@a:1,1@b:2")]).contains("twice"));
        assert!(err(&[("TIDEGATE_RAFT_CERT", "/x")]).contains("or none"));
    }

    #[test]
    fn hybrid_settings_parse_and_bad_ones_say_what_to_do() {
        let dp = [
            ("TIDEGATE_ROLE", "data_plane"),
            ("TIDEGATE_CLUSTER_CERT", "c"),
            ("TIDEGATE_CLUSTER_CERT_KEY", "k"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut v = dp.to_vec();
            v.extend_from_slice(extra);
            load(None, None, env(&v))
        };
        let s = with(&[
            ("TIDEGATE_CLUSTER_CONTROL_PLANE", "cp1:8005, cp2:8005"),
            ("TIDEGATE_CLUSTER_DP_LABELS", "region:eu-west-1,tier:gold"),
            ("TIDEGATE_PLUGINS", "cors, key-auth,cors"),
            ("TIDEGATE_STATUS_LISTEN", "127.0.0.1:8100"),
        ])
        .unwrap();
        assert_eq!(s.cluster.control_planes, vec!["cp1:8005", "cp2:8005"]);
        assert_eq!(s.cluster.dp_labels["region"], "eu-west-1");
        assert_eq!(s.plugins, vec!["cors", "key-auth"]);
        assert_eq!(s.status_listen.unwrap().to_string(), "127.0.0.1:8100");
        assert_eq!(
            with(&[]).unwrap().plugins.len(),
            tidegate_model::plugins::bundled().len()
        );
        assert!(with(&[("TIDEGATE_PLUGINS", "off")])
            .unwrap()
            .plugins
            .is_empty());
        let err = |extra: &[(&str, &str)]| with(extra).unwrap_err().to_string();
        assert!(err(&[("TIDEGATE_PLUGINS", "bundled,nope")]).contains("'nope' is not installed"));
        assert!(err(&[("TIDEGATE_CLUSTER_DP_LABELS", "region")]).contains("must be key:value"));
        assert!(err(&[("TIDEGATE_CLUSTER_DP_LABELS", "a:b,a:c")]).contains("twice"));
        assert!(err(&[("TIDEGATE_CLUSTER_CONTROL_PLANE", "cp1")]).contains("host:port"));
        assert!(err(&[("TIDEGATE_CLUSTER_MTLS", "none")]).contains("shared or pki"));
        assert!(err(&[("TIDEGATE_CLUSTER_MTLS", "pki")]).contains("cluster_ca_cert"));
        assert!(err(&[("TIDEGATE_CLUSTER_DATA_PLANE_PURGE_DELAY", "59")]).contains("60 or greater"));
        assert!(err(&[("TIDEGATE_CLUSTER_MAX_PAYLOAD", "10")]).contains("between 4096"));
        assert!(
            err(&[("TIDEGATE_CLUSTER_CONTROL_PLANE", "")]).contains("needs cluster_control_plane")
        );
    }

    #[test]
    fn peers_parse() {
        let s = load(
            None,
            None,
            env(&[
                ("TIDEGATE_ROLE", "control_plane"),
                ("TIDEGATE_RAFT_NODE_ID", "2"),
                (
                    "TIDEGATE_RAFT_PEERS",
                    "1@10.0.0.1:8007, 2@10.0.0.2:8007,3@[::1]:8007",
                ),
                ("TIDEGATE_RAFT_CERT", "c"),
                ("TIDEGATE_RAFT_CERT_KEY", "k"),
                ("TIDEGATE_RAFT_CA_CERT", "ca"),
                ("TIDEGATE_CLUSTER_CERT", "cc"),
                ("TIDEGATE_CLUSTER_CERT_KEY", "ck"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.raft_peers,
            vec![
                (1, "10.0.0.1:8007".to_string()),
                (2, "10.0.0.2:8007".to_string()),
                (3, "[::1]:8007".to_string())
            ]
        );
    }
}
