//! Kong's tooling against real `tidegate` processes: Debian's decK 1.4 pings, syncs a
//! state file, dumps it back and diffs to no changes, against a single CP and against a
//! follower of a 3-CP cluster; and `tidegate config db_export|db_import` round-trip a
//! config between running nodes.

// End-to-end tests run real processes against the real clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, http, wait_for, Cluster, Node};

const ELECTION: Duration = Duration::from_secs(30);
const READY: Duration = Duration::from_secs(20);
/// The state file; `__CERT__` and `__KEY__` are filled in at test time.
const STATE: &str = include_str!("fixtures/deck/state.yaml");
const CERT_ID: &str = "7a1d5a3b-1c4e-4f6a-9b2d-0e5f3c8a9d10";
const BASIC_AUTH_PASSWORD: &str = "s3cret-plain";
/// Entities in the state file, as decK counts them (SNIs, targets and credentials
/// included).
const STATE_ENTITIES: u32 = 22;
/// decK's warning for basic-auth, printed against Kong and against us alike.
const BASIC_AUTH_WARNING: &str =
    "import/export of basic-authcredentials using decK doesn't work due to hashing of passwords";

// === decK ===

/// Installs decK with apt when it is missing. Without it the test fails: the issue
/// requires decK to work, so a missing decK must not pass as a skip.
fn ensure_deck() {
    if deck_version().is_none() {
        let install = || {
            Command::new("apt-get")
                // Tests of this file run in parallel processes: apt waits for the one
                // that holds dpkg's lock, then finds decK installed.
                .args(["-o", "DPkg::Lock::Timeout=120", "install", "-y", "deck"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
        };
        let first = install();
        if !first.as_ref().is_ok_and(|o| o.status.success()) {
            // A fresh machine may have no package lists yet.
            let _ = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=120", "update"])
                .output();
            let second = install();
            if deck_version().is_none() {
                panic!(
                    "decK is not installed and `apt-get install -y deck` failed (it needs root \
                     and Debian's package lists); install Debian's `deck` package (1.4) and \
                     rerun.\nfirst attempt: {}\nsecond attempt: {}",
                    describe(&first),
                    describe(&second)
                );
            }
        }
    }
    let version = deck_version().expect("decK runs after its installation");
    // The assertions below (summary block, flags, defaults) are decK 1.4's.
    assert!(
        version.starts_with("decK 1.4."),
        "these tests target Debian's decK 1.4; `deck version` says {version:?}"
    );
}

fn deck_version() -> Option<String> {
    let out = Command::new("deck").arg("version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn describe(r: &std::io::Result<Output>) -> String {
    match r {
        Ok(o) => format!(
            "{} {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => e.to_string(),
    }
}

/// One decK run: its exit code and everything it printed.
struct DeckRun {
    code: Option<i32>,
    out: String,
}

impl DeckRun {
    /// decK 1.4's closing block: `Summary:` then `Created: n`, `Updated: n`, `Deleted: n`.
    fn summary(&self) -> Option<(u32, u32, u32)> {
        let block = &self.out[self.out.find("Summary:")?..];
        let count = |label: &str| -> Option<u32> {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))?
                .trim()
                .parse()
                .ok()
        };
        Some((count("Created:")?, count("Updated:")?, count("Deleted:")?))
    }
}

/// Runs decK against `addr` with a home of its own (no `~/.deck.yaml`) and no analytics.
fn run_deck(home: &Path, addr: &str, args: &[&str]) -> DeckRun {
    let out = Command::new("deck")
        .args(args)
        .arg("--kong-addr")
        .arg(format!("http://{addr}"))
        .arg("--no-color")
        .env("HOME", home)
        .env("DECK_ANALYTICS", "off")
        .output()
        .expect("decK runs");
    DeckRun {
        code: out.status.code(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

// === fixtures ===

/// A self-signed certificate for the state's SNIs: (cert PEM, key PEM).
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec![
        "example.test".to_string(),
        "www.example.test".to_string(),
    ])
    .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The state file with the certificate filled in, written to `dir/name`.
fn write_state(dir: &Path, name: &str, cert: &(String, String), password: &str) -> PathBuf {
    let indent = |pem: &str| pem.trim().lines().collect::<Vec<_>>().join("\n    ");
    let text = STATE
        .replace("__CERT__", &indent(&cert.0))
        .replace("__KEY__", &indent(&cert.1))
        .replace(
            &format!("password: {BASIC_AUTH_PASSWORD}"),
            &format!("password: {password}"),
        );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn single_node(dir: &Path, name: &str) -> Node {
    let admin = format!("127.0.0.1:{}", free_port());
    let node = Node::spawn(1, dir.join(name), Vec::new(), admin, String::new());
    wait_for("the node's Admin API", READY, || {
        node.get("/status").filter(|r| r.status == 200)
    });
    node
}

// === Admin API checks ===

fn get(node: &Node, path: &str) -> Value {
    let r = node
        .get(path)
        .unwrap_or_else(|| panic!("GET {path}: no answer\n{}", node.log_text()));
    assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
    r.body
}

fn data(node: &Node, path: &str) -> Vec<Value> {
    let body = get(node, path);
    assert_eq!(body["next"], Value::Null, "GET {path}: one page expected");
    body["data"].as_array().cloned().unwrap_or_default()
}

fn config_hash(node: &Node) -> Option<String> {
    let r = node.get("/status")?;
    r.body["configuration_hash"].as_str().map(str::to_string)
}

/// Kong's basic-auth hash: `sha1(password .. consumer_id)` in hex.
fn basic_auth_hash(password: &str, consumer_id: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{password}{consumer_id}").as_bytes(),
    );
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every entity of the state file, read back through `node`'s Admin API with the fields
/// the file gave it.
fn assert_state_entities(node: &Node, cert_pem: &str) {
    let orders = get(node, "/services/orders");
    assert_eq!(orders["host"], json!("orders.internal"));
    assert_eq!(orders["port"], json!(8080));
    assert_eq!(orders["path"], json!("/v1"));
    assert_eq!(orders["tags"], json!(["deck-test"]));
    let billing = get(node, "/services/billing");
    assert_eq!(billing["port"], json!(9000));

    let routes = data(node, "/services/orders/routes");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["name"], json!("orders-route"));
    assert_eq!(routes[0]["paths"], json!(["/orders"]));
    assert_eq!(routes[0]["methods"], json!(["GET", "POST"]));
    assert_eq!(routes[0]["strip_path"], json!(true));
    let billing_route = get(node, "/routes/billing-route");
    assert_eq!(billing_route["hosts"], json!(["billing.example.com"]));
    assert_eq!(billing_route["service"]["id"], billing["id"]);

    let mut service_plugins: BTreeMap<String, Value> = data(node, "/services/orders/plugins")
        .into_iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p))
        .collect();
    assert_eq!(
        service_plugins.keys().cloned().collect::<Vec<_>>(),
        ["acl", "cors", "key-auth"]
    );
    let key_auth = service_plugins.remove("key-auth").unwrap();
    assert_eq!(key_auth["config"]["key_names"], json!(["apikey"]));
    let acl = service_plugins.remove("acl").unwrap();
    assert_eq!(acl["config"]["allow"], json!(["admins"]));
    assert_eq!(acl["config"]["hide_groups_header"], json!(true));
    let cors = service_plugins.remove("cors").unwrap();
    assert_eq!(
        cors["config"]["origins"],
        json!(["https://app.example.com"])
    );
    assert_eq!(cors["config"]["max_age"], json!(3600));
    let route_plugins = data(node, "/routes/orders-route/plugins");
    assert_eq!(route_plugins.len(), 1, "{route_plugins:?}");
    assert_eq!(route_plugins[0]["name"], json!("rate-limiting"));
    assert_eq!(route_plugins[0]["config"]["minute"], json!(20));
    assert_eq!(route_plugins[0]["config"]["policy"], json!("local"));
    let all_plugins = data(node, "/plugins");
    assert_eq!(all_plugins.len(), 6, "{all_plugins:?}");
    let global: Vec<&Value> = all_plugins
        .iter()
        .filter(|p| p["service"].is_null() && p["route"].is_null() && p["consumer"].is_null())
        .collect();
    assert_eq!(global.len(), 1, "{global:?}");
    assert_eq!(global[0]["name"], json!("correlation-id"));
    assert_eq!(global[0]["config"]["header_name"], json!("X-Trace"));

    let alice = get(node, "/consumers/alice");
    assert_eq!(alice["custom_id"], json!("alice-1"));
    let alice_id = alice["id"].as_str().unwrap();
    let keys = data(node, "/consumers/alice/key-auth");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["key"], json!("alice-secret-key"));
    let basic = data(node, "/consumers/alice/basic-auth");
    assert_eq!(basic.len(), 1, "{basic:?}");
    assert_eq!(basic[0]["username"], json!("alice"));
    // Stored hashed, as Kong stores it: never the plain password decK sent.
    assert_eq!(
        basic[0]["password"],
        json!(basic_auth_hash(BASIC_AUTH_PASSWORD, alice_id))
    );
    let groups = |c: &str| -> Vec<Value> {
        data(node, &format!("/consumers/{c}/acls"))
            .into_iter()
            .map(|a| a["group"].clone())
            .collect()
    };
    assert_eq!(groups("alice"), vec![json!("admins")]);
    assert_eq!(groups("bob"), vec![json!("users")]);
    let bob_plugins = data(node, "/consumers/bob/plugins");
    assert_eq!(bob_plugins.len(), 1, "{bob_plugins:?}");
    assert_eq!(bob_plugins[0]["name"], json!("request-termination"));
    assert_eq!(bob_plugins[0]["config"]["status_code"], json!(403));

    let upstream = get(node, "/upstreams/orders.upstream");
    assert_eq!(upstream["algorithm"], json!("round-robin"));
    // An integer, as Kong's JSON writes it: decK decodes this field into an int.
    assert_eq!(upstream["healthchecks"]["active"]["timeout"], json!(1));
    let targets: BTreeMap<String, Value> = data(node, "/upstreams/orders.upstream/targets")
        .into_iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["weight"].clone(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        BTreeMap::from([
            ("10.0.0.1:8080".to_string(), json!(100)),
            ("10.0.0.2:8080".to_string(), json!(50)),
        ])
    );

    let cert = get(node, &format!("/certificates/{CERT_ID}"));
    assert_eq!(cert["snis"], json!(["example.test", "www.example.test"]));
    assert_eq!(cert["cert"].as_str().map(str::trim), Some(cert_pem.trim()));
    let sni = get(node, "/snis/www.example.test");
    assert_eq!(sni["certificate"]["id"], json!(CERT_ID));
}

// === the round trip ===

/// ping, sync, dump, diff (of the state and of the dump), then drift and repair, all
/// against `node`'s Admin API.
fn deck_round_trip(node: &Node, dir: &Path, logs: &dyn Fn() -> String) {
    let home = dir.join("deck-home");
    std::fs::create_dir_all(&home).unwrap();
    let addr = node.admin.as_str();
    let cert = certificate();
    let state = write_state(dir, "state.yaml", &cert, BASIC_AUTH_PASSWORD);
    let state_arg = state.to_str().unwrap();

    let ping = run_deck(&home, addr, &["ping"]);
    assert_eq!(ping.code, Some(0), "{}", ping.out);
    assert!(
        ping.out.contains("Successfully connected to Kong!"),
        "{}",
        ping.out
    );
    assert!(
        ping.out.contains(&format!(
            "Kong version:  {}",
            tidegate_model::KONG_COMPAT_VERSION
        )),
        "{}",
        ping.out
    );

    let sync = run_deck(&home, addr, &["sync", "-s", state_arg]);
    assert_eq!(sync.code, Some(0), "{}\n{}", sync.out, logs());
    // decK's Summary tallies the creates of concurrent workers and was once one short
    // (Created: 21, with all 22 "creating" lines printed): the operations it printed are
    // what it did, and `assert_state_entities` below checks what was stored.
    let created = sync
        .out
        .lines()
        .filter(|l| l.trim_start().starts_with("creating "))
        .count();
    assert_eq!(created, STATE_ENTITIES as usize, "{}", sync.out);
    assert_eq!(
        sync.summary()
            .map(|(_, updated, deleted)| (updated, deleted)),
        Some((0, 0)),
        "{}",
        sync.out
    );
    assert!(
        sync.out.contains("creating sni www.example.test"),
        "{}",
        sync.out
    );
    assert_state_entities(node, &cert.0);

    let dump = dir.join("dump.yaml");
    let dumped = run_deck(&home, addr, &["dump", "-o", dump.to_str().unwrap()]);
    assert_eq!(dumped.code, Some(0), "{}", dumped.out);
    let dump_doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    assert_eq!(dump_doc["_format_version"], json!("1.1"));
    let names = |list: &str, field: &str| -> Vec<Value> {
        dump_doc[list]
            .as_array()
            .map(|a| a.iter().map(|e| e[field].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        names("services", "name"),
        [json!("billing"), json!("orders")]
    );
    assert_eq!(
        names("consumers", "username"),
        [json!("alice"), json!("bob")]
    );
    assert_eq!(names("upstreams", "name"), [json!("orders.upstream")]);
    assert_eq!(names("plugins", "name"), [json!("correlation-id")]);
    assert_eq!(
        dump_doc["certificates"][0]["snis"],
        json!([{"name": "example.test"}, {"name": "www.example.test"}])
    );
    assert_eq!(
        dump_doc["upstreams"][0]["targets"].as_array().map(Vec::len),
        Some(2)
    );
    let alice_id = get(node, "/consumers/alice")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // As from Kong, the dump holds the hash and not the password.
    assert_eq!(
        dump_doc["consumers"][0]["basicauth_credentials"][0]["password"],
        json!(basic_auth_hash(BASIC_AUTH_PASSWORD, &alice_id))
    );

    for file in [state_arg, dump.to_str().unwrap()] {
        let diff = run_deck(&home, addr, &["diff", "-s", file, "--non-zero-exit-code"]);
        assert_eq!(diff.code, Some(0), "diff of {file}: {}", diff.out);
        assert_eq!(
            diff.summary(),
            Some((0, 0, 0)),
            "diff of {file}: {}",
            diff.out
        );
        assert!(diff.out.contains(BASIC_AUTH_WARNING), "{}", diff.out);
    }
    let again = run_deck(&home, addr, &["sync", "-s", state_arg]);
    assert_eq!(again.code, Some(0), "{}", again.out);
    assert_eq!(again.summary(), Some((0, 0, 0)), "{}", again.out);

    // decK ignores basic-auth passwords when it compares (state.BasicAuth.EqualWithOpts
    // with ignorePassword), so a changed password is no change — exactly as with Kong,
    // which shows only a hash decK cannot compare with a plain password.
    let other = write_state(dir, "other-password.yaml", &cert, "another-password");
    let diff = run_deck(&home, addr, &["diff", "-s", other.to_str().unwrap()]);
    assert_eq!(diff.code, Some(0), "{}", diff.out);
    assert_eq!(diff.summary(), Some((0, 0, 0)), "{}", diff.out);

    // A change made behind decK's back is seen, and sync undoes it.
    let patched = http(
        addr,
        "PATCH",
        "/services/billing",
        Some(&json!({"port": 9001})),
        &[],
    )
    .expect("the node answers");
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let drift = run_deck(
        &home,
        addr,
        &["diff", "-s", state_arg, "--non-zero-exit-code"],
    );
    assert_eq!(drift.code, Some(2), "{}", drift.out);
    assert_eq!(drift.summary(), Some((0, 1, 0)), "{}", drift.out);
    assert!(
        drift.out.contains("updating service billing"),
        "{}",
        drift.out
    );
    let repair = run_deck(&home, addr, &["sync", "-s", state_arg]);
    assert_eq!(repair.summary(), Some((0, 1, 0)), "{}", repair.out);
    assert_eq!(get(node, "/services/billing")["port"], json!(9000));
    let clean = run_deck(
        &home,
        addr,
        &["diff", "-s", state_arg, "--non-zero-exit-code"],
    );
    assert_eq!(clean.code, Some(0), "{}", clean.out);
    assert_eq!(clean.summary(), Some((0, 0, 0)), "{}", clean.out);

    assert_state_entities(node, &cert.0);
}

#[test]
fn deck_syncs_dumps_and_diffs_clean_against_a_single_cp() {
    ensure_deck();
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path(), "cp");
    deck_round_trip(&node, dir.path(), &|| node.log_text());
}

#[test]
fn deck_syncs_dumps_and_diffs_clean_against_a_cluster_follower() {
    ensure_deck();
    let c = Cluster::start(3);
    let leader = c.wait_leader(ELECTION);
    let follower = c.nodes.iter().find(|n| n.id != leader).expect("a follower");
    let dir = tempfile::tempdir().unwrap();
    deck_round_trip(follower, dir.path(), &|| c.logs());
    // The leader (and the other follower) hold what decK wrote through the follower.
    let want = config_hash(follower).expect("the follower answers");
    for n in &c.nodes {
        wait_for(
            &format!("cp{} to apply decK's writes", n.id),
            ELECTION,
            || (config_hash(n)? == want).then_some(()),
        );
    }
    let cert = get(follower, &format!("/certificates/{CERT_ID}"))["cert"]
        .as_str()
        .unwrap()
        .to_string();
    for n in &c.nodes {
        assert_state_entities(n, &cert);
    }
}

/// decK lists with `size=1000` and follows `offset`: more than a page must come back whole.
#[test]
fn deck_dumps_more_than_one_page() {
    ensure_deck();
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path(), "cp");
    const N: usize = 1_050;
    let services: Vec<Value> = (0..N)
        .map(|i| {
            json!({
                "name": format!("svc-{i:04}"),
                "host": format!("h{i}.test"),
                "routes": [{"name": format!("route-{i:04}"), "paths": [format!("/p{i}")]}],
            })
        })
        .collect();
    let file = json!({"_format_version": "3.0", "services": services});
    let loaded = http(&node.admin, "POST", "/config", Some(&file), &[]).expect("an answer");
    assert_eq!(loaded.status, 201, "{:?}", loaded.body);

    let home = dir.path().join("deck-home");
    std::fs::create_dir_all(&home).unwrap();
    let dump = dir.path().join("dump.yaml");
    let dumped = run_deck(&home, &node.admin, &["dump", "-o", dump.to_str().unwrap()]);
    assert_eq!(dumped.code, Some(0), "{}", dumped.out);
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let services = doc["services"].as_array().expect("services");
    assert_eq!(services.len(), N);
    let routes: usize = services
        .iter()
        .map(|s| s["routes"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(routes, N);
    let diff = run_deck(
        &home,
        &node.admin,
        &["diff", "-s", dump.to_str().unwrap(), "--non-zero-exit-code"],
    );
    assert_eq!(diff.code, Some(0), "{}", diff.out);
    assert_eq!(diff.summary(), Some((0, 0, 0)), "{}", diff.out);
}

// === tidegate config db_export | db_import ===

fn tidegate(args: &[&str], cwd: &Path) -> Output {
    Command::new(support::binary())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the tidegate binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn db_export_and_db_import_round_trip_between_running_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = single_node(d, "a");
    let b = single_node(d, "b");
    let url_a = format!("http://{}", a.admin);
    let url_b = format!("http://{}", b.admin);

    // decK's state file is also a Kong declarative file (format 1.1).
    let cert = certificate();
    let state = write_state(d, "state.yaml", &cert, BASIC_AUTH_PASSWORD);
    let out = tidegate(
        &[
            "config",
            "db_import",
            state.to_str().unwrap(),
            "--admin-url",
            &url_a,
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        a.log_text()
    );
    // stdout is the result, as scripts read it; the stages went to stderr.
    let printed = text(&out.stdout);
    assert!(printed.starts_with("import successful\n"), "{printed}");
    let progress = text(&out.stderr);
    let stages: Vec<&str> = progress.lines().collect();
    assert_eq!(stages.len(), 4, "{progress}");
    assert!(
        stages[0].starts_with(&format!("read {}: ", state.display()))
            && stages[0].ends_with(" KiB"),
        "{progress}"
    );
    assert!(stages[1].starts_with("parsed in "), "{progress}");
    assert!(
        stages[1].contains(&format!(": {STATE_ENTITIES} entities ("))
            && stages[1].contains(" services: 2,")
            && stages[1].contains(" snis: 2,"),
        "{progress}"
    );
    assert!(
        stages[2].starts_with("uploaded ")
            && stages[2].ends_with("; waiting for the cluster to apply it"),
        "{progress}"
    );
    let hash = config_hash(&a).unwrap();
    assert!(stages[3].starts_with("applied in "), "{progress}");
    assert!(
        stages[3].contains(&format!(", config hash {hash}; ")) && stages[3].ends_with(" in all"),
        "{progress}"
    );
    for line in [
        "  services: 2\n",
        "  snis: 2\n",
        "  plugins: 6\n",
        "  basicauth_credentials: 1\n",
    ] {
        assert!(printed.contains(line), "missing {line:?} in {printed}");
    }
    assert_state_entities(&a, &cert.0);

    let out = tidegate(&["config", "db_export", "a.yml", "--admin-url", &url_a], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = std::fs::read_to_string(d.join("a.yml")).unwrap();
    assert!(
        exported.starts_with("_format_version: '3.0'\n"),
        "{exported}"
    );
    let stdout_export = tidegate(&["config", "db_export", "--admin-url", &url_a], d);
    assert!(stdout_export.status.success());
    assert_eq!(text(&stdout_export.stdout), exported);
    let refused = tidegate(&["config", "db_export", "a.yml", "--admin-url", &url_a], d);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("a.yml already exists; pass --force to overwrite it"),
        "{}",
        text(&refused.stderr)
    );

    // A file the CP refuses changes nothing and is explained field by field.
    let empty_hash = config_hash(&b).unwrap();
    std::fs::write(
        d.join("bad.yml"),
        "_format_version: \"3.0\"\nservices:\n- name: x\n  host: x.test\n  port: 99999\n",
    )
    .unwrap();
    let bad = tidegate(
        &["config", "db_import", "bad.yml", "--admin-url", &url_b],
        d,
    );
    assert_eq!(bad.status.code(), Some(1));
    // The CP's verdict, placed in the file.
    let why = text(&bad.stderr);
    assert!(
        why.contains(
            "\nError: Failed importing:\nbad.yml:5:3: services[0].port: value should be between 0 and 65535\n"
        ),
        "{why}"
    );
    assert_eq!(config_hash(&b).unwrap(), empty_hash);

    let out = tidegate(&["config", "db_import", "a.yml", "--admin-url", &url_b], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tidegate(&["config", "db_export", "b.yml", "--admin-url", &url_b], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(d.join("b.yml")).unwrap(), exported);
    assert_eq!(config_hash(&b), config_hash(&a));
    assert_ne!(config_hash(&b).unwrap(), empty_hash);
    assert_state_entities(&b, &cert.0);
}

#[test]
fn db_commands_say_when_the_admin_api_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kong.yml"), "_format_version: \"3.0\"\n").unwrap();
    // A port the OS just handed out and nobody listens on.
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["config", "db_export", "--admin-url", url.as_str()],
        vec![
            "config",
            "db_import",
            "kong.yml",
            "--admin-url",
            url.as_str(),
        ],
    ] {
        let out = tidegate(&args, d);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("Error: cannot reach the Admin API at {url} (")),
            "{args:?}: {err}"
        );
        assert!(
            err.trim_end()
                .ends_with("; start the node or pass --admin-url"),
            "{args:?}: {err}"
        );
        assert!(text(&out.stdout).is_empty());
    }
    let https = tidegate(
        &[
            "config",
            "db_export",
            "--admin-url",
            "https://127.0.0.1:8444",
        ],
        d,
    );
    assert_eq!(https.status.code(), Some(1));
    assert!(
        text(&https.stderr).contains("only http:// Admin API addresses are supported here"),
        "{}",
        text(&https.stderr)
    );
}
