//! The newcomer's path, as the README gives it: the walkthrough's commands run as written
//! against the real binary and a real upstream, and `tidegate quickstart` brought up,
//! used through what it prints, and stopped.
//!
//! The walkthrough is the ```sh block between `<!-- walkthrough:start -->` and
//! `<!-- walkthrough:end -->` in README.md. It runs with these substitutions only, each of
//! which must occur in the block, so that a README edit cannot make this test run
//! something else without failing:
//! - `./target/debug/tidegate` → the binary cargo built for this test (the same file in a
//!   checkout; the commands run in a scratch directory, so the path is made absolute);
//! - `localhost:8001` and `localhost:8000` → 127.0.0.1 on free ports, which the
//!   `tidegate start` command is given through `TIDEGATE_ADMIN_LISTEN` and
//!   `TIDEGATE_PROXY_LISTEN` (settings the README introduces);
//! - `http://httpbin.org` → a local echo upstream;
//! - `cargo …` lines are not run: the harness built the binary already.
//!
//! `tidegate start` stays in the foreground, where the reader leaves it in its own
//! terminal: the test runs it in the background and, as the reader does, waits until it
//! answers before the next command. The last command is the proxied request; a new route
//! reaches the proxy a moment after the Admin API answered, so that one is retried until
//! it answers, within a deadline.
#![allow(clippy::disallowed_methods)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    binary, children_of, echo_upstream, free_port, free_port_block, http, process_alive, signal,
    wait_for,
};

const LONG: Duration = Duration::from_secs(60);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/tidegate sits two levels below the repo root")
}

/// Debian's curl, installed when missing: the README's commands use it.
fn ensure_curl() {
    if Command::new("curl").arg("--version").output().is_ok() {
        return;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "curl is not installed and apt-get could not install it");
}

/// The commands of the walkthrough block, continuation lines joined, comment-only and
/// blank lines dropped.
fn walkthrough(readme: &str) -> Vec<String> {
    let start = readme
        .find("<!-- walkthrough:start")
        .expect("README.md has a <!-- walkthrough:start --> marker");
    let end = readme[start..]
        .find("<!-- walkthrough:end -->")
        .expect("README.md has a <!-- walkthrough:end --> marker after the start")
        + start;
    let block = &readme[start..end];
    let open = block
        .find("```sh\n")
        .expect("a ```sh fence between the walkthrough markers")
        + "```sh\n".len();
    let close = block[open..]
        .find("```")
        .expect("the walkthrough's fence is closed before the end marker")
        + open;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block[open..close].lines() {
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let command = std::mem::take(&mut current);
        let command = command.trim();
        if !command.is_empty() && !command.starts_with('#') {
            commands.push(command.to_string());
        }
    }
    commands
}

/// Runs `command` with `sh -c` in `cwd`; panics if it does not finish within `timeout`.
fn run_sh(command: &str, cwd: &Path, env: &[(&str, String)], timeout: Duration) -> Output {
    let child = sh(command, cwd, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("the command's output can be read"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("`{command}` did not finish within {timeout:?}");
        }
    }
}

/// `sh -c command` with no TIDEGATE_* from this process's environment, plus `env`.
fn sh(command: &str, cwd: &Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDEGATE_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A background process stopped with SIGTERM (and its clean exit checked) by the test,
/// killed if the test fails first.
struct Background {
    child: Option<Child>,
    log: PathBuf,
}

impl Background {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM, then the exit status within `timeout`.
    fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("still running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "no exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

#[test]
fn the_readme_walkthrough_proxies_a_request_to_a_real_upstream() {
    ensure_curl();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let commands = walkthrough(&readme);
    let scratch = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = format!("127.0.0.1:{}", free_port());
    let upstream = echo_upstream("readme", 64);
    // `cargo build -p tidegate` (the dev profile) makes <target>/debug/tidegate, which is
    // ./target/debug/tidegate unless CARGO_TARGET_DIR moves it.
    assert!(
        binary().ends_with("/debug/tidegate"),
        "the README names the dev build, ./target/debug/tidegate; this test runs {}",
        binary()
    );
    let substitutions = [
        ("./target/debug/tidegate", binary().to_string()),
        ("localhost:8001", admin.clone()),
        ("localhost:8000", proxy.clone()),
        ("http://httpbin.org", format!("http://{upstream}")),
    ];
    let text = commands.join("\n");
    for (from, _) in &substitutions {
        assert!(
            text.contains(from),
            "the walkthrough no longer mentions {from}: update README.md or the substitutions \
             of tests/readme_walkthrough.rs\n{text}"
        );
    }
    let substitute = |c: &str| {
        let out = substitutions
            .iter()
            .fold(c.to_string(), |c, (from, to)| c.replace(from, to));
        assert!(
            !out.contains("localhost"),
            "`{c}` talks to a localhost address this test does not substitute"
        );
        out
    };
    let env = [
        ("TIDEGATE_ADMIN_LISTEN", admin.clone()),
        ("TIDEGATE_PROXY_LISTEN", proxy.clone()),
        // The walkthrough does not use the console; its default port may be taken here.
        (
            "TIDEGATE_ADMIN_GUI_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ),
    ];

    let (last, setup) = commands.split_last().expect("the walkthrough has commands");
    assert!(
        setup.iter().any(|c| c.contains("tidegate start")),
        "the walkthrough starts tidegate before it proxies"
    );
    let mut transcript = String::new();
    let mut server: Option<Background> = None;
    for command in setup {
        if command.starts_with("cargo ") {
            transcript.push_str(&format!("$ {command}\n(built by the test harness)\n"));
            continue;
        }
        let run = substitute(command);
        transcript.push_str(&format!("$ {run}\n"));
        if command.contains("tidegate start") {
            assert!(server.is_none(), "the walkthrough starts tidegate once");
            let log = scratch.path().join("tidegate.log");
            let file = std::fs::File::create(&log).unwrap();
            // `exec` keeps the handle on tidegate itself, for the SIGTERM at the end.
            let child = sh(&format!("exec {run}"), scratch.path(), &env)
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("sh runs");
            let mut bg = Background {
                child: Some(child),
                log,
            };
            wait_for("tidegate start to answer on its Admin API", LONG, || {
                if let Some(status) = bg.exited() {
                    panic!("`{run}` exited ({status}); log:\n{}", bg.log_text());
                }
                http(&admin, "GET", "/status", None, &[]).filter(|r| r.status == 200)
            });
            server = Some(bg);
            continue;
        }
        let out = run_sh(&run, scratch.path(), &env, LONG);
        transcript.push_str(&String::from_utf8_lossy(&out.stdout));
        transcript.push('\n');
        assert!(
            out.status.success(),
            "`{run}` failed ({}): {}\ntranscript:\n{transcript}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // An Admin API write answers with the entity it made (a Kong error body otherwise).
        if run.contains(&admin) && run.contains("-X POST") {
            let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            assert!(
                body["id"].is_string(),
                "`{run}` did not create anything\ntranscript:\n{transcript}"
            );
        }
    }
    let mut server = server.expect("the walkthrough ran tidegate start");

    let run = substitute(last);
    let answer = wait_for(
        "the README's proxied request to reach the upstream",
        LONG,
        || {
            let out = run_sh(&run, scratch.path(), &env, LONG);
            let body = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && body.starts_with("readme ")).then_some(body)
        },
    );
    assert_eq!(
        answer,
        format!("readme GET /get host={upstream}"),
        "transcript:\n{transcript}$ {run}\n{answer}"
    );

    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "tidegate start exited with {status}");
    assert!(
        scratch.path().join("tidegate-data").is_dir(),
        "the embedded default keeps its data in ./tidegate-data"
    );
}

// === tidegate quickstart ===

/// A `tidegate quickstart` process with its output collected line by line.
struct Quickstart {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
    stderr: PathBuf,
    dir: PathBuf,
}

impl Quickstart {
    fn spawn(args: &[&str], dir: &Path, scratch: &Path) -> Quickstart {
        let stderr = scratch.join("quickstart.stderr");
        let mut child = Command::new(binary())
            .arg("quickstart")
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("tidegate runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Quickstart {
            child: Some(child),
            lines,
            output: Vec::new(),
            stderr,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn report(&self) -> String {
        let mut out = format!(
            "stdout:\n{}\nstderr:\n{}",
            self.output.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        for node in ["cp1", "cp2", "cp3", "dp1", "dp2"] {
            let log = self.dir.join(format!("{node}.log"));
            if let Ok(text) = std::fs::read_to_string(log) {
                out.push_str(&format!("\n--- {node}.log ---\n{text}"));
            }
        }
        out
    }

    /// Reads output until a line contains `marker`; panics when the process ends first.
    fn read_until(&mut self, marker: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    self.output.push(line);
                    if done {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no '{marker}' within {timeout:?}\n{}", self.report())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("quickstart ended before '{marker}'\n{}", self.report())
                }
            }
        }
    }

    /// Waits for the process to exit; the rest of its output is read first.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.output.push(line);
            }
            if let Some(status) = child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.output.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!(
                    "quickstart did not exit within {timeout:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything after "label" on the line that starts with it: the URLs it lists.
    fn urls(&self, label: &str) -> Vec<String> {
        let line = self
            .output
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no '{label}' line\n{}", self.report()));
        line.split_whitespace()
            .filter_map(|w| w.strip_prefix("http://"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Quickstart {
    /// A failed test must not leave the cluster running: the children are killed too,
    /// since a killed quickstart cannot stop them.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let children = children_of(c.id());
            c.kill().ok();
            c.wait().ok();
            for pid in children {
                signal(pid, "KILL");
            }
        }
    }
}

#[test]
fn quickstart_serves_a_write_through_both_proxies_and_sigterm_stops_every_node() {
    ensure_curl();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("qs");
    let base = free_port_block(81);
    let mut qs = Quickstart::spawn(&["--base-port", &base.to_string()], &dir, scratch.path());
    qs.read_until("Ctrl-C stops every node", Duration::from_secs(180));

    // Three CPs and two DPs, the very processes it started.
    let pids: Vec<u32> = qs
        .output
        .iter()
        .filter_map(|l| {
            let rest = l.split("(pid ").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 5, "{}", qs.report());
    let mut children = children_of(qs.pid());
    children.sort();
    let mut printed = pids.clone();
    printed.sort();
    assert_eq!(children, printed, "its children are the nodes it printed");
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(cmdline.contains(" start -c "), "{cmdline}");
    }
    let admins = qs.urls("Admin API");
    let proxies = qs.urls("Proxy");
    assert_eq!(admins.len(), 3, "{}", qs.report());
    assert_eq!(proxies.len(), 2, "{}", qs.report());
    assert_eq!(admins[0], format!("127.0.0.1:{}", base + 1));
    let consoles = qs.urls("Cluster console");
    assert_eq!(consoles.len(), 3, "{}", qs.report());
    assert_eq!(consoles[0], format!("127.0.0.1:{}", base + 2));
    for console in &consoles {
        let r = http(console, "GET", "/api/cluster", None, &[]).unwrap();
        let members = r.body["control_planes"].as_array().map(Vec::len);
        assert_eq!(members, Some(3), "{console}: {}", r.body);
    }
    let leaders: Vec<Value> = admins
        .iter()
        .map(|a| {
            let r = http(a, "GET", "/clustering/control-planes", None, &[]).unwrap();
            assert_eq!(
                r.body["members"].as_array().unwrap().len(),
                3,
                "{:?}",
                r.body
            );
            r.body["leader"].clone()
        })
        .collect();
    assert!(leaders.iter().all(|l| l == &leaders[0] && l.is_u64()));

    // The printed lines, as printed: the write through the first Admin API, then a
    // request through each proxy.
    let curls: Vec<String> = qs
        .output
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect();
    assert_eq!(curls.len(), 5, "{}", qs.report());
    for write in curls.iter().filter(|c| c.contains("-X PUT")) {
        assert!(write.contains(&admins[0]), "{write}");
        let out = run_sh(write, scratch.path(), &[], LONG);
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(body["id"].is_string(), "`{write}`: {body}");
    }
    for (proxy, read) in proxies
        .iter()
        .zip(curls.iter().filter(|c| c.contains("/example/hello")))
    {
        assert!(read.contains(proxy.as_str()), "{read}");
        let port = proxy.rsplit(':').next().unwrap();
        let echoed = wait_for("the write to reach this proxy", LONG, || {
            let out = run_sh(read, scratch.path(), &[], LONG);
            let body: Value = serde_json::from_slice(&out.stdout).ok()?;
            (body["path"] == "/hello").then_some(body)
        });
        assert_eq!(echoed["method"], "GET");
        // The upstream saw the request come through this very data plane.
        assert_eq!(echoed["headers"]["x-forwarded-port"], port, "{echoed}");
    }
    let listing = curls.last().unwrap();
    assert!(listing.ends_with("/clustering/data-planes"), "{listing}");
    let hash = http(&admins[0], "GET", "/clustering/control-planes", None, &[])
        .unwrap()
        .body["config_hash"]
        .clone();
    wait_for("both data planes listed in sync", LONG, || {
        let out = run_sh(listing, scratch.path(), &[], LONG);
        let body: Value = serde_json::from_slice(&out.stdout).ok()?;
        let rows = body["data"].as_array()?;
        (rows.len() == 2
            && rows
                .iter()
                .all(|r| r["connected"] == true && r["config_hash"] == hash))
        .then_some(())
    });

    // SIGTERM stops every node cleanly, and nothing is left holding a port.
    signal(qs.pid(), "TERM");
    let status = qs.wait_exit(LONG);
    assert!(status.success(), "exit {status}\n{}", qs.report());
    assert!(
        qs.output.iter().any(|l| l == "every node has stopped"),
        "{}",
        qs.report()
    );
    for pid in &pids {
        assert!(!process_alive(*pid), "node pid {pid} outlived quickstart");
    }
    for node in ["cp1", "cp2", "cp3", "dp1", "dp2"] {
        let log = std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap();
        // A line, not the last one: openraft's replication tasks may still log a
        // failed connect to a peer that stopped first while the node shuts down.
        assert!(
            log.lines().any(|l| l.trim_end().ends_with("stopped")),
            "{node} did not drain and stop on SIGTERM:\n{log}"
        );
    }
    for a in admins.iter().chain(&proxies).chain(&consoles) {
        assert!(TcpListener::bind(a.as_str()).is_ok(), "{a} is still held");
    }
}

#[test]
fn quickstart_refuses_busy_ports_and_names_a_failing_nodes_log() {
    let scratch = tempfile::tempdir().unwrap();
    let base = free_port_block(81);

    // A port of the layout is taken: nothing starts, and the way out is named.
    let dir = scratch.path().join("busy");
    let holder = TcpListener::bind(("127.0.0.1", base + 11)).unwrap();
    let mut qs = Quickstart::spawn(&["--base-port", &base.to_string()], &dir, scratch.path());
    let status = qs.wait_exit(LONG);
    let err = std::fs::read_to_string(&qs.stderr).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&format!("{} (cp2 admin_listen)", base + 11)) && err.contains("--base-port"),
        "{err}"
    );
    assert!(!dir.join("cp1.log").exists(), "no node was started");
    assert!(
        !dir.join("quickstart.json").exists(),
        "the directory is not tied to a base port whose ports were busy"
    );
    drop(holder);

    // A node that cannot start: the error names its log and shows why, and the nodes
    // already started are stopped.
    let dir = scratch.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("quickstart.json"),
        format!("{{\"base_port\": {base}}}"),
    )
    .unwrap();
    std::fs::write(dir.join("cp2.conf"), "rolle = control_plane\n").unwrap();
    let mut qs = Quickstart::spawn(&[], &dir, scratch.path());
    let status = qs.wait_exit(LONG);
    let err = std::fs::read_to_string(&qs.stderr).unwrap();
    assert!(!status.success());
    assert!(err.contains("cp2 exited"), "{err}");
    assert!(
        err.contains(&dir.join("cp2.log").display().to_string()),
        "{err}"
    );
    assert!(err.contains("unknown setting 'rolle'"), "{err}");
    assert!(
        qs.output.iter().any(|l| l.starts_with("cp1 stopped")),
        "cp1 was stopped\n{}",
        qs.report()
    );
    let cp1_pid = qs
        .output
        .iter()
        .find_map(|l| l.strip_prefix("starting cp1 ... ready (pid "))
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse::<u32>().ok())
        .expect("cp1 started");
    assert!(!process_alive(cp1_pid));
}
