//! The operator's kit under ops/ holds together: every YAML file parses, every setting it
//! names is one tidegate knows (the `KEYS` table of crates/tidegate/src/settings.rs), the
//! Kubernetes objects, the compose services and the systemd units agree with each other
//! and with the ports their settings give, and the certificate scripts make certificates
//! that pass a real mutual-TLS handshake in the modes the manifests use.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml::Value;
use tidegate_tls::ClusterTls;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/tidegate sits two levels below the repo root")
}

fn ops() -> PathBuf {
    repo_root().join("ops")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The keys of settings.rs's `KEYS` table: what `tidegate.conf` and `TIDEGATE_<KEY>` take.
fn settings_keys() -> BTreeSet<String> {
    let src = read(&repo_root().join("crates/tidegate/src/settings.rs"));
    let start = src
        .find("const KEYS: &[(&str, &str)] = &[")
        .expect("settings.rs declares `const KEYS: &[(&str, &str)] = &[`");
    let table = &src[start..];
    let table = &table[..table.find("\n];").expect("the KEYS table ends with `];`")];
    let keys: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(\"")?.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(
        keys.len() >= 20 && keys.contains("role") && keys.contains("raft_peers"),
        "could not read the KEYS table of settings.rs: {keys:?}"
    );
    keys
}

/// Panics unless `var` is `TIDEGATE_<KEY>` for a real setting.
fn assert_setting_var(keys: &BTreeSet<String>, var: &str, place: &str) {
    let key = var
        .strip_prefix("TIDEGATE_")
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| panic!("{place}: {var} is not a TIDEGATE_<KEY> variable"));
    assert!(
        keys.contains(&key),
        "{place}: {var} is not a setting; settings.rs knows {keys:?}"
    );
}

fn assert_setting_key(keys: &BTreeSet<String>, key: &str, place: &str) {
    assert!(
        keys.contains(key),
        "{place}: `{key}` is not a setting; settings.rs knows {keys:?}"
    );
}

/// The documents of a YAML file (split at `---` lines), with merge keys applied.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|doc| {
            let mut v: Value = serde_yaml::from_str(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, got {v:?}"))
}

/// The port of `host:port` (the first address of a list such as proxy_listen).
fn port_of(addr: &str) -> u16 {
    let first = addr.split(',').next().unwrap().trim();
    let first = first.split_whitespace().next().unwrap();
    first
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("'{addr}' has no port"))
}

/// `raft_peers`: (id, host, port) for each entry.
fn raft_peers(v: &str) -> Vec<(u64, String, u16)> {
    v.split(',')
        .map(|item| {
            let (id, addr) = item.trim().split_once('@').expect("id@host:port");
            let (host, port) = addr.rsplit_once(':').expect("host:port");
            (id.parse().unwrap(), host.to_string(), port.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_yaml_file_under_ops_parses() {
    let yaml: Vec<PathBuf> = files_under(&ops())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    for must in [
        "docker/compose.yml",
        "k8s/kustomization.yaml",
        "examples/tidegate.yml",
    ] {
        assert!(
            yaml.contains(&ops().join(must)),
            "ops/{must} is missing (found {yaml:?})"
        );
    }
    for path in &yaml {
        assert!(!yaml_docs(path).is_empty(), "{} is empty", path.display());
    }
}

#[test]
fn every_tidegate_variable_named_in_ops_is_a_setting() {
    let keys = settings_keys();
    let mut seen = BTreeSet::new();
    for path in files_under(&ops()) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(i) = rest.find("TIDEGATE_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let var = &tail[..end];
            rest = &tail[end..];
            // `TIDEGATE_<KEY>` in prose is the pattern, not a variable.
            if var == "TIDEGATE_" {
                continue;
            }
            assert_setting_var(&keys, var, &path.display().to_string());
            seen.insert(var.to_string());
        }
    }
    // Not a vacuous pass: the kit names the settings of both roles.
    for var in [
        "TIDEGATE_ROLE",
        "TIDEGATE_RAFT_PEERS",
        "TIDEGATE_CLUSTER_CONTROL_PLANE",
        "TIDEGATE_PROXY_LISTEN",
    ] {
        assert!(seen.contains(var), "no file under ops/ names {var}");
    }
}

// === Kubernetes ===

struct Workload {
    kind: String,
    name: String,
    spec: Value,
    labels: BTreeMap<String, String>,
    container: Value,
    /// envFrom ConfigMaps, then env values: the settings the container runs with.
    env: BTreeMap<String, String>,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    };
                    (s(k, "a key").to_string(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_hang_together() {
    let keys = settings_keys();
    let dir = ops().join("k8s");
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))[0];
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| s(r, "a resource").to_string())
        .collect();
    let on_disk: BTreeSet<String> = files_under(&dir)
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml")
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        resources, on_disk,
        "kustomization.yaml lists every manifest"
    );
    let docs: Vec<Value> = resources
        .iter()
        .flat_map(|r| yaml_docs(&dir.join(r)))
        .collect();
    let of_kind =
        |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };

    let configmaps: BTreeMap<String, BTreeMap<String, String>> = of_kind("ConfigMap")
        .into_iter()
        .map(|c| {
            (
                s(&c["metadata"]["name"], "name").to_string(),
                string_map(&c["data"]),
            )
        })
        .collect();
    for (name, data) in &configmaps {
        for k in data.keys() {
            assert_setting_var(&keys, k, &format!("ConfigMap {name}"));
        }
    }
    let secrets: BTreeMap<String, BTreeSet<String>> = kustomization["secretGenerator"]
        .as_sequence()
        .expect("the Secrets come from secretGenerator")
        .iter()
        .map(|g| {
            let files = g["files"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|f| s(f, "a file").split('=').next().unwrap().to_string())
                .collect();
            (s(&g["name"], "name").to_string(), files)
        })
        .collect();

    let workloads: Vec<Workload> = of_kind("StatefulSet")
        .into_iter()
        .chain(of_kind("Deployment"))
        .map(|w| {
            let kind = s(&w["kind"], "kind").to_string();
            let name = s(&w["metadata"]["name"], "name").to_string();
            let template = &w["spec"]["template"];
            let labels = string_map(&template["metadata"]["labels"]);
            assert!(
                selects(&string_map(&w["spec"]["selector"]["matchLabels"]), &labels),
                "{kind} {name}: its selector matches its pods"
            );
            let container = template["spec"]["containers"][0].clone();
            let mut env = BTreeMap::new();
            for from in container["envFrom"].as_sequence().into_iter().flatten() {
                let cm = s(&from["configMapRef"]["name"], "configMapRef");
                let data = configmaps
                    .get(cm)
                    .unwrap_or_else(|| panic!("{kind} {name}: no ConfigMap {cm}"));
                env.extend(data.clone());
            }
            for e in container["env"].as_sequence().into_iter().flatten() {
                let var = s(&e["name"], "env name");
                if var.starts_with("TIDEGATE_") {
                    assert_setting_var(&keys, var, &format!("{kind} {name}"));
                }
                if let Some(v) = e["value"].as_str() {
                    env.insert(var.to_string(), v.to_string());
                }
            }
            Workload {
                kind,
                name,
                spec: w["spec"].clone(),
                labels,
                container,
                env,
            }
        })
        .collect();
    let cp = workloads
        .iter()
        .find(|w| w.kind == "StatefulSet")
        .expect("the control planes are a StatefulSet");
    let dp = workloads
        .iter()
        .find(|w| w.kind == "Deployment")
        .expect("the data planes are a Deployment");
    assert_eq!(cp.env["TIDEGATE_ROLE"], "control_plane");
    assert_eq!(dp.env["TIDEGATE_ROLE"], "data_plane");

    // The StatefulSet: three replicas behind a headless Service that exists.
    assert_eq!(
        cp.spec["replicas"].as_u64(),
        Some(3),
        "three control planes"
    );
    assert_eq!(
        cp.spec["podManagementPolicy"], "Parallel",
        "the pods must start together: none is ready before a majority runs"
    );
    let headless_name = s(&cp.spec["serviceName"], "serviceName");
    let services = of_kind("Service");
    let headless = services
        .iter()
        .find(|svc| svc["metadata"]["name"] == headless_name)
        .unwrap_or_else(|| panic!("serviceName {headless_name} names no Service"));
    assert_eq!(
        headless["spec"]["clusterIP"], "None",
        "{headless_name} is headless"
    );
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"], true,
        "peers must resolve before a leader exists"
    );
    assert!(selects(
        &string_map(&headless["spec"]["selector"]),
        &cp.labels
    ));

    // Container ports are the ports of the listen settings, and nothing else.
    for w in &workloads {
        let mut wanted: BTreeMap<String, u16> = BTreeMap::new();
        for (var, port_name) in [
            ("TIDEGATE_ADMIN_LISTEN", "admin"),
            ("TIDEGATE_CLUSTER_LISTEN", "cluster"),
            ("TIDEGATE_RAFT_LISTEN", "raft"),
            ("TIDEGATE_STATUS_LISTEN", "status"),
        ] {
            if let Some(v) = w.env.get(var) {
                wanted.insert(port_name.to_string(), port_of(v));
            }
        }
        if let Some(v) = w.env.get("TIDEGATE_PROXY_LISTEN") {
            for l in v.split(',') {
                let name = if l.trim().ends_with(" ssl") {
                    "proxy-ssl"
                } else {
                    "proxy"
                };
                wanted.insert(name.to_string(), port_of(l));
            }
        }
        let ports: BTreeMap<String, u16> = w.container["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{} {} declares its ports", w.kind, w.name))
            .iter()
            .map(|p| {
                (
                    s(&p["name"], "port name").to_string(),
                    p["containerPort"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        assert_eq!(
            ports, wanted,
            "{} {}: container ports vs settings",
            w.kind, w.name
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = s(&w.container[probe]["httpGet"]["port"], "probe port");
            assert_eq!(
                port, "status",
                "{} {}: {probe} asks the status API",
                w.kind, w.name
            );
        }
        assert_eq!(
            w.container["readinessProbe"]["httpGet"]["path"],
            "/status/ready"
        );
        // The node runs `tidegate start` (the image's entrypoint is `tidegate`).
        let command: Vec<&str> = w.container["command"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(w.container["args"].as_sequence().into_iter().flatten())
            .map(|a| s(a, "an argument"))
            .collect();
        let line = command.join(" ");
        assert!(
            line.contains("tidegate start") || command == ["start"],
            "{} {} runs `{line}`",
            w.kind,
            w.name
        );
        // The prefix is the data volume.
        let data_mount = w.container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "data")
            .unwrap_or_else(|| panic!("{} {} mounts a data volume", w.kind, w.name));
        assert_eq!(
            w.env["TIDEGATE_PREFIX"],
            s(&data_mount["mountPath"], "mountPath")
        );
    }
    let cp_args = cp.container["args"][0].as_str().unwrap();
    assert!(
        cp_args.contains("TIDEGATE_RAFT_NODE_ID=") && cp_args.contains("POD_NAME"),
        "each control plane takes its raft_node_id from its pod name: {cp_args}"
    );

    // raft_peers names each pod through the headless Service, on the Raft port.
    let raft_port = port_of(&cp.env["TIDEGATE_RAFT_LISTEN"]);
    let pods: Vec<String> = (0..3).map(|i| format!("{}-{i}", cp.name)).collect();
    let peers = raft_peers(&cp.env["TIDEGATE_RAFT_PEERS"]);
    let expected: Vec<(u64, String, u16)> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| (i as u64 + 1, format!("{pod}.{headless_name}"), raft_port))
        .collect();
    assert_eq!(peers, expected, "raft_peers: pod i is node i+1");

    // Every Service reaches named ports of the pods it selects.
    for svc in &services {
        let name = s(&svc["metadata"]["name"], "name");
        let selector = string_map(&svc["spec"]["selector"]);
        let target = workloads
            .iter()
            .find(|w| selects(&selector, &w.labels))
            .unwrap_or_else(|| panic!("Service {name} selects no pods"));
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let port = s(&p["targetPort"], "targetPort (by name)");
            assert!(
                target.container["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|cp| cp["name"] == port),
                "Service {name}: {} has no port named {port}",
                target.name
            );
        }
    }
    // The data planes dial a Service that leads to the control planes' cluster port.
    let (host, port) = dp.env["TIDEGATE_CLUSTER_CONTROL_PLANE"]
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse::<u64>().unwrap()))
        .unwrap();
    let svc = services
        .iter()
        .find(|svc| svc["metadata"]["name"] == host.as_str())
        .unwrap_or_else(|| panic!("cluster_control_plane names no Service {host}"));
    assert!(selects(&string_map(&svc["spec"]["selector"]), &cp.labels));
    assert!(
        svc["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["port"].as_u64() == Some(port) && p["targetPort"] == "cluster"),
        "Service {host} forwards {port} to the cluster port"
    );

    // Certificate paths point into mounted Secrets, at keys those Secrets have.
    for w in &workloads {
        let volumes = w.spec["template"]["spec"]["volumes"].as_sequence().unwrap();
        let mounts: Vec<(String, String)> = w.container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|m| {
                let vol = volumes.iter().find(|v| v["name"] == m["name"])?;
                let secret = vol["secret"]["secretName"].as_str()?;
                Some((
                    s(&m["mountPath"], "mountPath").to_string(),
                    secret.to_string(),
                ))
            })
            .collect();
        for var in [
            "TIDEGATE_CLUSTER_CERT",
            "TIDEGATE_CLUSTER_CERT_KEY",
            "TIDEGATE_RAFT_CERT",
            "TIDEGATE_RAFT_CERT_KEY",
            "TIDEGATE_RAFT_CA_CERT",
        ] {
            let Some(path) = w.env.get(var) else { continue };
            let pods_here: Vec<String> = if path.contains("$(POD_NAME)") {
                pods.clone()
            } else {
                vec![String::new()]
            };
            for pod in pods_here {
                let path = path.replace("$(POD_NAME)", &pod);
                let (mount, secret) = mounts
                    .iter()
                    .find(|(m, _)| path.starts_with(&format!("{m}/")))
                    .unwrap_or_else(|| {
                        panic!(
                            "{} {}: {var}={path} is in no mounted Secret",
                            w.kind, w.name
                        )
                    });
                let key = &path[mount.len() + 1..];
                let keys_of = secrets
                    .get(secret)
                    .unwrap_or_else(|| panic!("no secretGenerator makes {secret}"));
                assert!(
                    keys_of.contains(key),
                    "Secret {secret} has no key {key} ({var})"
                );
            }
        }
    }

    // The secretGenerator's files are what ops/certs/shared.sh makes for these pods.
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("certs");
    let hosts: Vec<String> = peers.iter().map(|(_, h, _)| h.clone()).collect();
    run_script("shared.sh", &out, &hosts, &[]);
    for g in kustomization["secretGenerator"].as_sequence().unwrap() {
        for f in g["files"].as_sequence().unwrap() {
            let source = s(f, "a file").split_once('=').unwrap().1;
            let rel = source
                .strip_prefix("certs/")
                .unwrap_or_else(|| panic!("{source} is not under ops/k8s/certs"));
            assert!(out.join(rel).is_file(), "shared.sh does not make {source}");
        }
    }
}

// === compose ===

fn env_of(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                let (k, v) = s(i, "KEY=value").split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => string_map(other),
    }
}

/// HAProxy sections: name → (bind ports, servers as (name, host, port)).
type Sections = BTreeMap<String, (Vec<u16>, Vec<(String, String, u16)>)>;

fn haproxy_sections(cfg: &str) -> Sections {
    let mut out = Sections::new();
    let mut current = None;
    for line in cfg.lines() {
        let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
        match words.as_slice() {
            [kind @ ("frontend" | "backend"), name, ..] => {
                let key = format!("{kind} {name}");
                out.entry(key.clone()).or_default();
                current = Some(key);
            }
            ["global" | "defaults", ..] => current = None,
            ["bind", addr, ..] => {
                if let Some(c) = &current {
                    out.get_mut(c).unwrap().0.push(port_of(addr));
                }
            }
            ["server", name, addr, ..] => {
                if let Some(c) = &current {
                    let (host, port) = addr.rsplit_once(':').unwrap();
                    out.get_mut(c).unwrap().1.push((
                        name.to_string(),
                        host.to_string(),
                        port.parse().unwrap(),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn compose_runs_three_cps_two_dps_and_haproxy_with_the_shipped_config() {
    let keys = settings_keys();
    let dir = ops().join("docker");
    let compose = &yaml_docs(&dir.join("compose.yml"))[0];
    let services = compose["services"].as_mapping().expect("services");
    let by_role = |role: &str| -> Vec<(String, BTreeMap<String, String>)> {
        services
            .iter()
            .map(|(k, v)| (s(k, "service").to_string(), env_of(v)))
            .filter(|(_, env)| env.get("TIDEGATE_ROLE").map(String::as_str) == Some(role))
            .collect()
    };
    let cps = by_role("control_plane");
    let dps = by_role("data_plane");
    assert_eq!(cps.len(), 3, "three control planes");
    assert_eq!(dps.len(), 2, "two data planes");
    for (name, env) in cps.iter().chain(&dps) {
        for var in env.keys() {
            assert_setting_var(&keys, var, &format!("compose service {name}"));
        }
    }

    // One Raft group: the same peers everywhere, each id once, each peer a CP service.
    let peers = raft_peers(&cps[0].1["TIDEGATE_RAFT_PEERS"]);
    let mut ids = BTreeSet::new();
    for (name, env) in &cps {
        assert_eq!(raft_peers(&env["TIDEGATE_RAFT_PEERS"]), peers, "{name}");
        let id: u64 = env["TIDEGATE_RAFT_NODE_ID"].parse().unwrap();
        assert!(ids.insert(id), "raft_node_id {id} twice");
        let (_, host, port) = peers
            .iter()
            .find(|(p, _, _)| *p == id)
            .unwrap_or_else(|| panic!("{name}: node {id} is not in raft_peers"));
        assert_eq!(host, name, "raft_peers names node {id} by its service");
        assert_eq!(*port, port_of(&env["TIDEGATE_RAFT_LISTEN"]));
    }

    // HAProxy runs ops/haproxy/haproxy.cfg, whose servers are the CP services.
    let haproxy = &compose["services"]["haproxy"];
    assert!(haproxy.is_mapping(), "a haproxy service");
    let cfg_mount = haproxy["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| s(v, "a volume"))
        .find(|v| v.contains("/usr/local/etc/haproxy/haproxy.cfg"))
        .expect("haproxy mounts its configuration");
    let source = dir.join(cfg_mount.split(':').next().unwrap());
    assert!(source.is_file(), "{} does not exist", source.display());
    assert_eq!(
        std::fs::canonicalize(&source).unwrap(),
        std::fs::canonicalize(ops().join("haproxy/haproxy.cfg")).unwrap(),
        "compose uses the haproxy.cfg that tests/haproxy.rs runs"
    );
    let sections = haproxy_sections(&read(&source));
    let cp_names: BTreeSet<String> = cps.iter().map(|(n, _)| n.clone()).collect();
    for (backend, var) in [
        ("backend control_planes_admin", "TIDEGATE_ADMIN_LISTEN"),
        ("backend control_planes_cluster", "TIDEGATE_CLUSTER_LISTEN"),
    ] {
        let servers = &sections
            .get(backend)
            .unwrap_or_else(|| panic!("haproxy.cfg has no {backend}"))
            .1;
        let hosts: BTreeSet<String> = servers.iter().map(|(_, h, _)| h.clone()).collect();
        assert_eq!(hosts, cp_names, "{backend} lists the CP services");
        for (_, host, port) in servers {
            let env = &cps.iter().find(|(n, _)| n == host).unwrap().1;
            assert_eq!(*port, port_of(&env[var]), "{backend}: {host}'s {var}");
        }
    }
    let binds = |frontend: &str| sections[frontend].0.clone();
    for (name, env) in &dps {
        let (host, port) = env["TIDEGATE_CLUSTER_CONTROL_PLANE"]
            .rsplit_once(':')
            .unwrap();
        assert_eq!(
            host, "haproxy",
            "{name} dials the control planes through haproxy"
        );
        assert_eq!(
            binds("frontend cluster"),
            vec![port.parse::<u16>().unwrap()]
        );
    }
    let published = s(&haproxy["ports"][0], "a port");
    assert_eq!(
        published
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
        binds("frontend admin")[0],
        "the Admin API is published from haproxy"
    );
    assert!(
        published.starts_with("127.0.0.1:"),
        "the Admin API has no authentication: publish it on loopback only"
    );

    // The certs service runs ops/certs/shared.sh as the image holds it; every certificate
    // path the nodes use is a file that command makes.
    let dockerfile = read(&dir.join("Dockerfile"));
    assert!(
        dockerfile.contains("COPY ops/certs/ /usr/share/tidegate/certs/"),
        "the image carries ops/certs where the certs service runs it"
    );
    let certs = &compose["services"]["certs"];
    let entrypoint: Vec<&str> = certs["entrypoint"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| s(a, "entrypoint"))
        .collect();
    assert_eq!(
        entrypoint,
        ["/bin/bash", "/usr/share/tidegate/certs/shared.sh"]
    );
    let args: Vec<String> = certs["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| s(a, "command").to_string())
        .collect();
    let out_at = args
        .iter()
        .position(|a| a == "-o")
        .expect("shared.sh -o DIR");
    let mount = args[out_at + 1].clone();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("certs");
    let mut local_args = args.clone();
    local_args[out_at + 1] = out.display().to_string();
    let run = Command::new("bash")
        .arg(ops().join("certs/shared.sh"))
        .args(&local_args)
        .env("TIDEGATE", support::binary())
        .output()
        .unwrap();
    assert!(run.status.success(), "shared.sh {args:?}: {run:?}");
    for (name, env) in cps.iter().chain(&dps) {
        let service = &compose["services"][name.as_str()];
        let volumes: Vec<&str> = service["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| s(v, "a volume"))
            .collect();
        assert!(
            volumes.contains(&format!("certs:{mount}:ro").as_str()),
            "{name} mounts the certificates read-only at {mount}: {volumes:?}"
        );
        for (var, path) in env
            .iter()
            .filter(|(k, _)| k.ends_with("_CERT") || k.ends_with("_KEY"))
        {
            let rel = path
                .strip_prefix(&format!("{mount}/"))
                .unwrap_or_else(|| panic!("{name}: {var}={path} is outside {mount}"));
            assert!(out.join(rel).is_file(), "{name}: shared.sh makes no {path}");
        }
    }

    // The Dockerfile: multi-stage, a slim Debian runtime, an unprivileged user.
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build");
    assert!(froms.last().unwrap().contains("debian:") && froms.last().unwrap().contains("-slim"));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"tidegate\"]"));
    let ignore = read(&dir.join("Dockerfile.dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "target/ stays out of the context"
    );
}

// === systemd ===

/// `[Section]` → key → values, as systemd reads a unit (comments and blanks skipped).
fn unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry(section.clone())
            .or_default()
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    out
}

/// An EnvironmentFile: `KEY=value` lines, quotes stripped as systemd does.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn systemd_units_start_the_right_role_with_real_settings() {
    let keys = settings_keys();
    let dir = ops().join("systemd");
    let mut envs = BTreeMap::new();
    for (unit_name, role) in [
        ("tidegate-cp", "control_plane"),
        ("tidegate-dp", "data_plane"),
    ] {
        let u = unit(&read(&dir.join(format!("{unit_name}.service"))));
        let service = &u["Service"];
        let one = |k: &str| -> &str {
            let v = service
                .get(k)
                .unwrap_or_else(|| panic!("{unit_name}: no {k}="));
            assert_eq!(v.len(), 1, "{unit_name}: one {k}=");
            &v[0]
        };
        let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
        assert!(
            exec[0].starts_with('/') && exec[0].ends_with("/tidegate") && exec[1] == "start",
            "{unit_name}: ExecStart={exec:?} runs `tidegate start`"
        );
        let state = one("StateDirectory");
        let prefix = exec
            .windows(2)
            .find(|w| w[0] == "-p")
            .map(|w| w[1])
            .expect("ExecStart sets the prefix with -p");
        assert_eq!(
            prefix,
            format!("/var/lib/{state}"),
            "{unit_name}: the prefix is its StateDirectory"
        );
        let vars: BTreeMap<String, String> = service
            .get("Environment")
            .into_iter()
            .flatten()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        assert_eq!(
            vars.get("TIDEGATE_ROLE").map(String::as_str),
            Some(role),
            "{unit_name}"
        );
        for var in vars.keys() {
            assert_setting_var(&keys, var, unit_name);
        }
        assert_eq!(one("KillSignal"), "SIGTERM");
        let user = one("User");
        assert!(user != "root" && user != "0", "{unit_name} runs as {user}");

        let file = one("EnvironmentFile");
        let example = dir.join(format!(
            "{}.example",
            Path::new(file).file_name().unwrap().to_string_lossy()
        ));
        let env = env_file(&read(&example));
        for var in env.keys() {
            assert_setting_var(&keys, var, &example.display().to_string());
        }
        for fixed in ["TIDEGATE_ROLE", "TIDEGATE_PREFIX"] {
            assert!(
                !env.contains_key(fixed),
                "{}: {fixed} belongs to the unit (an EnvironmentFile would override it)",
                example.display()
            );
        }
        envs.insert(role, env);
    }
    let cp = &envs["control_plane"];
    let dp = &envs["data_plane"];
    let id: u64 = cp["TIDEGATE_RAFT_NODE_ID"].parse().unwrap();
    let peers = raft_peers(&cp["TIDEGATE_RAFT_PEERS"]);
    assert!(peers
        .iter()
        .any(|(p, _, port)| *p == id && *port == port_of(&cp["TIDEGATE_RAFT_LISTEN"])));
    for var in [
        "TIDEGATE_RAFT_CERT",
        "TIDEGATE_RAFT_CERT_KEY",
        "TIDEGATE_RAFT_CA_CERT",
    ] {
        assert!(cp.contains_key(var), "Raft is always mutual TLS: {var}");
    }
    for addr in dp["TIDEGATE_CLUSTER_CONTROL_PLANE"].split(',') {
        assert_eq!(
            port_of(addr),
            port_of(&cp["TIDEGATE_CLUSTER_LISTEN"]),
            "{addr}"
        );
    }
}

// === certificates ===

/// Runs ops/certs/<script> -o out -c host… -p name….
fn run_script(script: &str, out: &Path, cps: &[String], dps: &[&str]) -> String {
    let mut c = Command::new("bash");
    c.arg(ops().join("certs").join(script)).arg("-o").arg(out);
    for h in cps {
        c.arg("-c").arg(h);
    }
    for d in dps {
        c.arg("-p").arg(d);
    }
    let run = c.env("TIDEGATE", support::binary()).output().unwrap();
    assert!(
        run.status.success(),
        "{script}: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Debian's openssl, installed when missing: pki.sh uses it.
fn ensure_openssl() {
    if Command::new("openssl").arg("version").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "openssl is not installed and apt-get could not install it"
    );
}

/// A node's tls.conf, as settings: every key checked, paths moved from the install
/// directory to where the script wrote them.
fn tls_conf(dir: &Path, keys: &BTreeSet<String>) -> BTreeMap<String, String> {
    let path = dir.join("tls.conf");
    read(&path)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key = value");
            let (k, v) = (k.trim(), v.trim());
            assert_setting_key(keys, k, &path.display().to_string());
            let v = match v.strip_prefix("/etc/tidegate/certs/") {
                Some(file) => dir.join(file).display().to_string(),
                None => v.to_string(),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// The cluster credentials a node's tls.conf describes.
fn cluster_tls(conf: &BTreeMap<String, String>) -> ClusterTls {
    let ca = conf.get("cluster_ca_cert").map(|p| read(Path::new(p)));
    ClusterTls::from_pem(
        &conf["cluster_mtls"],
        &read(Path::new(&conf["cluster_cert"])),
        &read(Path::new(&conf["cluster_cert_key"])),
        ca.as_deref(),
        conf.get("cluster_server_name").map(String::as_str),
    )
    .unwrap()
}

/// The Raft credentials, checked the way the Raft client checks a peer: against the CA
/// and the host it dials.
fn raft_tls(conf: &BTreeMap<String, String>, host: &str) -> ClusterTls {
    ClusterTls::from_pem(
        "pki",
        &read(Path::new(&conf["raft_cert"])),
        &read(Path::new(&conf["raft_cert_key"])),
        Some(&read(Path::new(&conf["raft_ca_cert"]))),
        Some(host),
    )
    .unwrap()
}

/// Ok when `server` completes a mutual-TLS handshake with `client`: it does so only after
/// the client verified it and presented a certificate it accepts. Err carries the
/// client's error when the client refused.
fn handshake(server: &ClusterTls, client: &ClusterTls) -> Result<(), String> {
    use tokio_stream::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut accepted = tidegate_tls::incoming(listener, server.server_config().unwrap());
        let client = client.clone();
        let mut dial = tokio::spawn(async move { tidegate_tls::channel(&addr, &client).await });
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        let mut dialled = None;
        loop {
            tokio::select! {
                a = accepted.next() => return match a {
                    Some(Ok(_)) => Ok(()),
                    other => Err(format!("the server stopped: {}", other.is_some())),
                },
                d = &mut dial, if dialled.is_none() => match d.unwrap() {
                    Err(e) => return Err(e),
                    Ok(c) => dialled = Some(c),
                },
                () = &mut deadline => return Err("the server completed no handshake".into()),
            }
        }
    })
}

#[test]
fn cert_scripts_are_valid_bash_and_their_certificates_pass_mutual_tls() {
    for script in files_under(&ops())
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
    {
        let check = Command::new("bash").arg("-n").arg(script).output().unwrap();
        assert!(
            check.status.success(),
            "bash -n {}: {check:?}",
            script.display()
        );
    }
    ensure_openssl();
    let keys = settings_keys();
    let scratch = tempfile::tempdir().unwrap();

    // pki: a CP on 127.0.0.1 and a DP. The DP checks the CP against cluster_server_name;
    // the CP checks the DP against the cluster CA; Raft peers check each other by host.
    let pki = scratch.path().join("pki");
    run_script(
        "pki.sh",
        &pki,
        &["127.0.0.1".into(), "cp2.example".into()],
        &["dp1"],
    );
    let cp = tls_conf(&pki.join("127.0.0.1"), &keys);
    let dp = tls_conf(&pki.join("dp1"), &keys);
    assert_eq!(cp["cluster_mtls"], "pki");
    assert_eq!(dp["cluster_server_name"], "tidegate-cp");
    handshake(&cluster_tls(&cp), &cluster_tls(&dp)).expect("a pki DP reaches its CP");
    handshake(&raft_tls(&cp, "127.0.0.1"), &raft_tls(&cp, "127.0.0.1"))
        .expect("Raft peers accept each other on the address they dial");
    let err = handshake(&raft_tls(&cp, "127.0.0.1"), &raft_tls(&cp, "cp2.example")).unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    // A DP's certificate is not signed by the Raft CA: it cannot speak Raft.
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(pki.join("raft-ca.crt"))
        .arg(pki.join("dp1/cluster.crt"))
        .output()
        .unwrap();
    assert!(
        !verify.status.success(),
        "the Raft CA must not vouch for a DP"
    );
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(pki.join("raft-ca.crt"))
        .arg(pki.join("cp2.example/raft.crt"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    // A second run reuses the CAs and issues only what is new.
    let again = run_script(
        "pki.sh",
        &pki,
        &["127.0.0.1".into(), "cp3.example".into()],
        &[],
    );
    assert!(again.contains("reusing the tidegate Raft CA"), "{again}");
    handshake(
        &raft_tls(&tls_conf(&pki.join("cp3.example"), &keys), "127.0.0.1"),
        &raft_tls(&cp, "cp3.example"),
    )
    .expect("a CP added later is trusted by the first ones");

    // shared: every node presents the gen_cert pair.
    let shared = scratch.path().join("shared");
    run_script("shared.sh", &shared, &["127.0.0.1".into()], &["dp1"]);
    let cp = tls_conf(&shared.join("127.0.0.1"), &keys);
    let dp = tls_conf(&shared.join("dp1"), &keys);
    assert_eq!(cp["cluster_mtls"], "shared");
    assert!(
        !dp.contains_key("raft_cert"),
        "a DP gets no Raft credentials"
    );
    handshake(&cluster_tls(&cp), &cluster_tls(&dp)).expect("a shared-mode DP reaches its CP");
    handshake(&raft_tls(&cp, "127.0.0.1"), &raft_tls(&cp, "127.0.0.1"))
        .expect("shared mode's Raft certificates work too");
}
